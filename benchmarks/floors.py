"""Benchmark: the least any implementation of three short jobs must spend, against the hand-written script and curate.

    python benchmarks/floors.py                                  # 200k prompts x 16, seven rounds, files in /dev/shm
    python benchmarks/floors.py --prompts 50000 --repeat 5 --tmp /tmp

`pipeline.py` compares curate with a script that does the job and nothing else. Three of its jobs
take well under two seconds, so what curate must do besides the job decides their ratio. For each,
a "floor" script does the hand-written script's work plus only what curate is asked to do there
and the script skips, written as lean as Polars and DuckDB allow:

- score difficulty --per-prompt: the `n_unique_answers` column the difficulty scorer writes, and
  the read checks of the columns the job reads (a blank prompt by its first byte, a null
  `prompt_id`, one `prompt_id` given to different prompts), in the same execution as the output,
  written to a temporary file and renamed;
- export TRL jsonl: the read checks of the columns it writes (blank and JSON-text prompts and
  responses by their first bytes, non-finite log-probs and weights, null and colliding ids), in the
  same execution, to a temporary file renamed;
- sql group-by: the same DuckDB `COPY`, in a process that has imported typer and rich (what a
  command line with help, errors and a summary table starts with); no checks.

Each floor leaves out work curate does (the rare texts whose first byte is not visible ASCII, row
numbers for the error message, lineage, the summary), so it is a lower bound. Every method runs as
its own process, in turn, `--repeat` times; the table gives medians (this 2-core VM varies by
±0.1 s between runs of the same command) and the ratios to the faster script.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

_spec = importlib.util.spec_from_file_location("pipeline_bench", Path(__file__).with_name("pipeline.py"))
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)  # its helpers: the samples, the scripts, the timing and the output checksums

_CHECKED_WRITE = """
    def blank(c):  # null, or a first byte that is not visible ASCII (a lower bound: curate also searches those few texts)
        lead = pl.col(c).cast(pl.Binary)
        return (pl.col(c).is_null() | ~((lead >= b"!") & (lead < b"\\x7f"))).sum().alias(f"{c} blank")
    def json_text(c):  # opens like a message written as JSON (curate then tests those few with a regex)
        lead = pl.col(c).cast(pl.Binary)
        return (((lead >= b'[{"') & (lead < b"[{#")) | ((lead >= b'{"') & (lead < b"{#"))).sum().alias(f"{c} json")
    def ids(s):  # a null id; one id given to different prompts (distinct (id, prompt) hashes against distinct ids)
        return [pl.col("prompt_id").is_null().sum().alias("null id"),
                ((pl.col("prompt_id").hash(1) ^ pl.col("prompt").hash()).n_unique().cast(pl.Int64)
                 - pl.col("prompt_id").n_unique().cast(pl.Int64)).alias("collisions")]
    def write(out, checks, sink):
        tmp = OUT + ".tmp"
        _, found = pl.collect_all([sink(out, tmp), checks])
        assert not any(found.row(0)), found
        os.replace(tmp, OUT)
"""

FLOORS = {
    "score difficulty --per-prompt": _CHECKED_WRITE + """
    s = pl.scan_parquet(SRC).with_row_index("row").cache()
    # the answer classes of every response (not only the wrong ones): the largest wrong class and the distinct answers from one
    # group-by (the leanest of three ways tried; a group-by of its own for the distinct answers costs 0.13 s more at 200k)
    c = s.group_by("prompt_id", "answer").agg(wrong=(~pl.col("correct")).sum())
    w = c.group_by("prompt_id").agg(pe=pl.col("wrong").max(), n_unique_answers=pl.col("answer").is_not_null().sum())
    g = s.group_by("prompt_id").agg(pl.col("row").min(), pl.col("prompt").first(), n=pl.len(), pc=pl.col("correct").sum())
    g = g.join(w, on="prompt_id", how="left").with_columns(pl.col("pe").fill_null(0))
    wt = pl.when(pl.col("pc") == 0).then(1 + pl.col("pe") / pl.col("n")).otherwise(pl.max_horizontal(1.0, 1 + pl.col("pe") / pl.col("pc") + 1 / pl.col("n")))
    out = g.with_columns(difficulty_weight=wt).sort("row").drop("row")
    write(out, s.select(blank("prompt"), json_text("prompt"), *ids(s)), lambda f, p: f.sink_parquet(p, lazy=True))""",
    "export TRL jsonl": _CHECKED_WRITE + """
    s = pl.scan_parquet(SRC).cache()
    out = s.select("prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps", "weight", "pair_id")
    texts = ("prompt", "chosen", "rejected")
    finite = [(pl.col(c).is_not_null() & ~pl.col(c).is_finite()).sum().alias(f"{c} finite") for c in ("ref_chosen_logps", "ref_rejected_logps", "weight")]
    write(out, s.select(*map(blank, texts), *map(json_text, texts), *finite, *ids(s)), lambda f, p: f.sink_ndjson(p, lazy=True))""",
}


def floor_cmd(job: str, src: Path, out: Path) -> list[str]:
    if job == "sql group-by":
        sql = textwrap.dedent(pipeline.DUCKDB[job]).replace("SRC", str(src))
        body = f"import typer, rich.console, duckdb\nduckdb.connect().execute({f'COPY ({sql}) TO {str(out)!r} (FORMAT parquet)'!r})"
        return [sys.executable, "-c", body]
    body = "import os\nimport polars as pl\nSRC, OUT = %r, %r\n" % (str(src), str(out)) + textwrap.dedent(FLOORS[job])
    return [sys.executable, "-c", body]


JOBS = ("score difficulty --per-prompt", "sql group-by", "export TRL jsonl")


def run(prompts: int, tmp: Path, repeat: int) -> list[dict]:
    samples, pairs = tmp / "samples.parquet", tmp / "pairs.parquet"
    subprocess.run([sys.executable, str(Path(__file__).with_name("pipeline.py")), "--make", str(prompts), str(samples)], check=True)
    subprocess.run([*pipeline.CURATE, "pairs", str(samples), "--strategy", "best-vs-worst", "-o", str(pairs)], check=True, capture_output=True)
    rows = []
    for job in JOBS:
        src = pairs if job.startswith("export") else samples
        ext = ".jsonl" if "jsonl" in job else ".parquet"
        methods = {
            "polars": lambda out: pipeline.script_cmd(pipeline.POLARS[job], src, out),
            "duckdb": lambda out: pipeline.duckdb_cmd(pipeline.DUCKDB[job], src, out),
            "floor": lambda out: floor_cmd(job, src, out),
            "curate": lambda out: [*pipeline.CURATE, *pipeline.curate_args(job, src, out)],
        }
        times: dict[str, list[float]] = {m: [] for m in methods}
        sums = {}
        for _ in range(repeat):  # in turn: a slow spell of the machine hits every method alike
            for method, cmd in methods.items():
                out = tmp / f"{method}{ext}"
                if out.exists():
                    shutil.rmtree(out) if out.is_dir() else out.unlink()
                times[method].append(pipeline.timed(cmd(out))[0])
                sums[method] = pipeline.summary(out, job)
        med = {m: statistics.median(t) for m, t in times.items()}
        script = min(med["polars"], med["duckdb"])
        row = {"job": job, "prompts": prompts, **med, "floor_ratio": med["floor"] / script, "curate_ratio": med["curate"] / script,
               "over_floor": med["curate"] / med["floor"], "agree": len(set(sums.values())) == 1}  # fmt: skip
        rows.append(row)
        print(f"  {job:30s} script {script:.2f}s  floor {med['floor']:.2f}s ({row['floor_ratio']:.2f}x)  curate {med['curate']:.2f}s "
              f"({row['curate_ratio']:.2f}x)  outputs agree: {row['agree']} {sums}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=7, help="rounds of every method, in turn (medians)")
    ap.add_argument("--tmp", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None, help="folder for the files")
    a = ap.parse_args()
    print(f"cores: {os.cpu_count()}, {a.prompts:,} prompts x 16, {a.repeat} rounds, files in {a.tmp or tempfile.gettempdir()}", flush=True)
    pipeline.compile_curate()
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        rows = run(a.prompts, Path(tmp), a.repeat)
    print("\n| job | prompts | faster script s | floor s | curate s | floor / script | curate / script | curate / floor | outputs agree |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        script = min(r["polars"], r["duckdb"])
        print(f"| {r['job']} | {r['prompts']:,} | {script:.2f} | {r['floor']:.2f} | {r['curate']:.2f} | {r['floor_ratio']:.2f}x | "
              f"{r['curate_ratio']:.2f}x | {r['over_floor']:.2f}x | {'yes' if r['agree'] else 'NO'} |")  # fmt: skip


if __name__ == "__main__":
    main()
