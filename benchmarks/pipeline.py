"""Benchmark: curate's CLI against the Polars and DuckDB scripts a capable user would write for the same jobs.

    python benchmarks/pipeline.py                         # 10k and 50k prompts x 16 (best-of-n2 and `all` at 10k)
    python benchmarks/pipeline.py --prompts 10000 50000 200000 --big-join-max 50000
    python benchmarks/pipeline.py --prompts 200000 --repeat 3            # each method's fastest of 3 runs, in turn
    python benchmarks/pipeline.py --prompts 200000 --tmp /dev/shm        # files in memory: no disk write-back in the times

For each size it writes a synthetic samples file (seeded; per prompt a base answer of ~150 words
(lognormal lengths) and 16 responses that keep a random prefix of it, change 10% of the words and
add a tail sentence; 4 models, rewards, `correct`/`answer`/`gold`, policy and reference log-probs),
then runs every job three ways, each as its own process (wall time and peak RSS of that process):

- curate: the CLI command, validation, lineage and drop counts included;
- polars: a hand-written script (lazy scan, the same computation, streaming sink, no checks);
- duckdb: the same as one SQL statement (`COPY (...) TO`), where SQL can express it.

Outputs are compared (row counts, and a checksum of a few columns) before the table is printed:
seconds, peak RSS (MB), and curate's time over the faster script's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# benchmarks/scorers.py is named like the `scorers` package: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

CURATE = [sys.executable, "-m", "curate.cli"]
TAILS = [
    "I hope this helps.", "Let me know if you need more detail.", "In short, that is the answer.", "This follows from the steps above.",
    "Check the result against the original question.", "The reasoning is complete.", "So the final answer stands.", "",
]  # fmt: skip


def make_samples(prompts: int, responses: int = 16, seed: int = 0, first: int = 0) -> pl.DataFrame:
    """Synthetic samples with realistic lengths and shared content per prompt (see the module docstring); ids from `first`."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)], dtype=object)
    lengths = np.clip(rng.lognormal(np.log(150), 0.35, prompts).astype(int), 20, 600)
    bases = [" ".join(vocab[rng.integers(0, len(vocab), n)]) for n in lengths]
    n = prompts * responses
    # the base text of each response, repeated by index (a numpy string array of 3.2 M long texts would need 46 GB)
    frame = pl.DataFrame({"base": pl.Series(bases, dtype=pl.String).gather(np.repeat(np.arange(prompts), responses)), "keep": rng.uniform(0.6, 1.0, n), "tail": rng.integers(0, len(TAILS), n),
                          "flip": rng.integers(0, 1 << 30, n)})  # fmt: skip
    words = pl.col("base").str.split(" ")
    kept = words.list.head((words.list.len() * pl.col("keep")).cast(pl.Int64))
    # change about one word in ten, different words in each response: the row's seed rides as the list's first element
    seeded = pl.concat_list(pl.col("flip").cast(pl.String), kept)
    seed = pl.element().first().cast(pl.UInt64)
    flip = (pl.element().hash(7) ^ seed.hash(11)) % 10 == 0
    changed = seeded.list.eval(pl.when(flip).then(pl.lit("changed")).otherwise(pl.element())).list.slice(1)
    response = changed.list.join(" ") + pl.lit(" ") + pl.col("tail").map_elements(lambda i: TAILS[i], return_dtype=pl.String)
    frame = frame.select(response.alias("response"))
    answers = rng.integers(0, 4, n)
    return frame.with_columns(
        pl.Series("prompt_id", np.repeat([f"q{i:07d}" for i in range(first, first + prompts)], responses)),
        pl.Series("prompt", np.repeat([f"Question {i}: explain step by step." for i in range(first, first + prompts)], responses)),
        pl.Series("model", np.tile(np.array(["m0", "m1", "m2", "m3"]), n // 4 + 1)[:n]),
        pl.Series("reward", np.round(rng.normal(0, 2, n), 2)),
        pl.Series("answer", answers.astype(str)),
        pl.Series("gold", np.repeat(["0"], n)),
        pl.Series("correct", answers == 0),
        pl.Series("logp", -rng.uniform(20, 300, n)),
        pl.Series("ref_logp", -rng.uniform(20, 300, n)),
        pl.Series("n_tokens", rng.integers(20, 600, n)),
    ).select("prompt_id", "prompt", "response", "model", "reward", "correct", "answer", "gold", "logp", "ref_logp", "n_tokens")


def write_samples(prompts: int, path: Path, chunk: int = 50_000) -> None:
    """`make_samples` written chunk by chunk (seeded per chunk): the generator's word lists of 200k prompts at once do not fit in 24 GiB."""
    import pyarrow.parquet as pq

    writer = None
    for i, first in enumerate(range(0, prompts, chunk)):
        table = make_samples(min(chunk, prompts - first), seed=i, first=first).to_arrow()
        writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=65_536)
    writer.close()


# --- the hand-written baselines ----------------------------------------------------------------------------------------

POLARS = {
    "pairs correct-vs-incorrect": """
        s = pl.scan_parquet(SRC).with_row_index("row")
        n = pl.len().over("prompt_id"); pc = pl.col("correct").sum().over("prompt_id")
        wrong = s.filter(~pl.col("correct")).with_columns(pl.len().over("prompt_id", "answer").alias("cls"))
        wrong = wrong.filter(pl.col("cls") == pl.col("cls").max().over("prompt_id"))
        wrong = wrong.filter(pl.col("answer") == pl.col("answer").sort_by("row").first().over("prompt_id"))
        rej = wrong.filter(pl.col("row") == pl.col("row").min().over("prompt_id")).select("prompt_id", rejected="response", pe="cls")
        s = s.with_columns(n=n, pc=pc)
        cho = s.filter(pl.col("correct")).filter(pl.col("row") == pl.col("row").min().over("prompt_id"))
        out = cho.join(rej, on="prompt_id").select("prompt_id", "prompt", chosen="response", rejected="rejected",
            weight=pl.max_horizontal(1.0, 1 + pl.col("pe") / pl.col("pc") + 1 / pl.col("n")), first="row")
        gold = s.filter(pl.col("pc") == 0).group_by("prompt_id").agg(pl.col("prompt").first(), pl.col("gold").first(), pl.col("n").first(),
            first=pl.col("row").min()).join(rej, on="prompt_id").select("prompt_id", "prompt", chosen="gold", rejected="rejected",
            weight=1 + pl.col("pe") / pl.col("n"), first="first")
        pl.concat([out, gold]).sort("first").drop("first").sink_parquet(OUT)""",
    "pairs best-vs-worst": """
        s = pl.scan_parquet(SRC).with_row_index("row")
        best = s.filter(pl.col("row") == pl.col("row").sort_by([pl.col("reward"), pl.col("row")], descending=[True, False]).first().over("prompt_id"))
        worst = s.filter(pl.col("row") == pl.col("row").sort_by(["reward", "row"]).first().over("prompt_id"))
        out = best.select("prompt_id", "prompt", "row", chosen="response", chosen_reward="reward").join(
            worst.select("prompt_id", rejected="response", rejected_reward="reward"), on="prompt_id")
        out.filter(pl.col("chosen_reward") > pl.col("rejected_reward")).sort("row").drop("row").sink_parquet(OUT)""",
    "pairs all": """
        s = pl.scan_parquet(SRC).with_row_index("row")
        side = lambda r: {r: "response", f"{r}_model": "model", f"{r}_reward": "reward", f"{r}_correct": "correct", f"{r}_logps": "logp",
                          f"ref_{r}_logps": "ref_logp", f"{r}_n_tokens": "n_tokens", f"{r}_answer": "answer", f"{r}_row": "row"}
        c = s.select("prompt_id", "prompt", "gold", *[pl.col(v).alias(k) for k, v in side("chosen").items()])
        r = s.select("prompt_id", *[pl.col(v).alias(k) for k, v in side("rejected").items()])
        out = c.join(r, on="prompt_id").filter(pl.col("chosen_reward") > pl.col("rejected_reward")).sort("chosen_row", "rejected_row")
        out = out.with_columns(pair_id=pl.concat_str("prompt_id", "chosen_row", "rejected_row", separator=":"), weight=pl.lit(1.0))
        out.select("prompt_id", "prompt", "chosen", "rejected", "chosen_model", "rejected_model", "chosen_reward", "rejected_reward",
                   "chosen_correct", "rejected_correct", "pair_id", "chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
                   "chosen_n_tokens", "rejected_n_tokens", "weight", "chosen_answer", "gold", "rejected_answer").sink_parquet(OUT)""",
    "pairs best-of-n2": """
        import numpy as np
        from rapidfuzz.distance import Levenshtein
        from rapidfuzz.process import cpdist
        s = pl.scan_parquet(SRC).with_row_index("row").select("prompt_id", "prompt", "row", "response", "reward", "ref_logp").collect()
        ids = s["prompt_id"].unique(maintain_order=True)
        parts = []
        for k in range(0, len(ids), 2000):  # a chunk of prompts at a time: every pair's word-level Levenshtein
            chunk = s.filter(pl.col("prompt_id").is_in(ids[k : k + 2000].implode()))
            c = chunk.rename({"response": "chosen", "reward": "chosen_reward", "row": "c_row", "ref_logp": "c_ref"})
            r = chunk.select("prompt_id", rejected="response", rejected_reward="reward", r_row="row", r_ref="ref_logp")
            p = c.join(r, on="prompt_id").filter(pl.col("chosen_reward") > pl.col("rejected_reward"))
            d = cpdist(p["chosen"].to_list(), p["rejected"].to_list(), scorer=Levenshtein.distance, processor=str.split, workers=-1, dtype=np.int64)
            m = pl.col("chosen_reward") - pl.col("rejected_reward")
            dp = (pl.col("c_ref") - pl.col("r_ref")).abs()
            p = p.with_columns(d=pl.Series(d)).filter(pl.col("d") > 0).with_columns(dcrm=(1 / (1 + (-m).exp()) - 0.5) / (pl.col("d") + dp + 1.0))
            top = pl.int_range(pl.len()).over("prompt_id", order_by=[-pl.col("dcrm"), -m, dp, pl.col("d"), pl.col("c_row"), pl.col("r_row")])
            parts.append(p.filter(top == 0))
        pl.concat(parts).sort("c_row").drop("c_row", "r_row").write_parquet(OUT)""",
    "score difficulty --per-prompt": """
        s = pl.scan_parquet(SRC).with_row_index("row")
        w = s.filter(~pl.col("correct")).group_by("prompt_id", "answer").len().group_by("prompt_id").agg(pe=pl.col("len").max())
        g = s.group_by("prompt_id").agg(pl.col("row").min(), pl.col("prompt").first(), n=pl.len(), pc=pl.col("correct").sum())
        g = g.join(w, on="prompt_id", how="left").with_columns(pl.col("pe").fill_null(0))
        wt = pl.when(pl.col("pc") == 0).then(1 + pl.col("pe") / pl.col("n")).otherwise(pl.max_horizontal(1.0, 1 + pl.col("pe") / pl.col("pc") + 1 / pl.col("n")))
        g.with_columns(difficulty_weight=wt).sort("row").drop("row").sink_parquet(OUT)""",
    "score alignment_potential": """
        p = pl.scan_parquet(SRC)
        z = lambda x: (x - x.mean()) / x.std(ddof=0)
        mex = pl.col("chosen_reward") - pl.col("rejected_reward")
        mim = (pl.col("chosen_logps") / pl.col("chosen_n_tokens") - pl.col("rejected_logps") / pl.col("rejected_n_tokens")).abs()
        p.with_columns(alignment_potential=z(mex) - z(mim)).sink_parquet(OUT)""",
    "select --where": """
        pl.scan_parquet(SRC).filter((pl.col("chosen_reward") - pl.col("rejected_reward")) > 1).sink_parquet(OUT)""",
    "select --top 0.4": """
        p = pl.scan_parquet(SRC).with_row_index("row")
        n = p.select(pl.len()).collect().item()
        m = pl.col("chosen_reward") - pl.col("rejected_reward")
        p.sort([m, pl.col("row")], descending=[True, False]).head(int(0.4 * n)).sort("row").drop("row").sink_parquet(OUT)""",
    "sql group-by": """
        pl.scan_parquet(SRC).group_by("model").agg(pl.col("reward").mean().alias("mean_reward"), pl.len().alias("n")).sort("model").sink_parquet(OUT)""",
    "export TRL jsonl": """
        pl.scan_parquet(SRC).select("prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps", "weight", "pair_id").sink_ndjson(OUT)""",
    "export hf": """
        import os
        os.makedirs(OUT + "/data", exist_ok=True)
        pl.scan_parquet(SRC).sink_parquet(OUT + "/data/train-00000-of-00001.parquet")""",
}

DUCKDB = {
    "pairs best-vs-worst": """
        WITH s AS (SELECT *, row_number() OVER () - 1 AS row FROM read_parquet('SRC')),
        b AS (SELECT * FROM s QUALIFY row_number() OVER (PARTITION BY prompt_id ORDER BY reward DESC, row) = 1),
        w AS (SELECT * FROM s QUALIFY row_number() OVER (PARTITION BY prompt_id ORDER BY reward, row) = 1)
        SELECT b.prompt_id, b.prompt, b.response AS chosen, w.response AS rejected, b.reward AS chosen_reward, w.reward AS rejected_reward
        FROM b JOIN w USING (prompt_id) WHERE b.reward > w.reward ORDER BY b.row""",
    "pairs all": """
        WITH s AS (SELECT *, row_number() OVER () - 1 AS row FROM read_parquet('SRC'))
        SELECT c.prompt_id, c.prompt, c.response AS chosen, r.response AS rejected, c.model AS chosen_model, r.model AS rejected_model,
          c.reward AS chosen_reward, r.reward AS rejected_reward, c.correct AS chosen_correct, r.correct AS rejected_correct,
          concat_ws(':', c.prompt_id, c.row, r.row) AS pair_id, c.logp AS chosen_logps, r.logp AS rejected_logps,
          c.ref_logp AS ref_chosen_logps, r.ref_logp AS ref_rejected_logps, c.n_tokens AS chosen_n_tokens, r.n_tokens AS rejected_n_tokens,
          1.0::DOUBLE AS weight, c.answer AS chosen_answer, c.gold, r.answer AS rejected_answer
        FROM s c JOIN s r ON c.prompt_id = r.prompt_id AND c.reward > r.reward ORDER BY c.row, r.row""",
    "score difficulty --per-prompt": """
        WITH s AS (SELECT *, row_number() OVER () - 1 AS row FROM read_parquet('SRC')),
        w AS (SELECT prompt_id, max(k) AS pe FROM (SELECT prompt_id, answer, count(*) AS k FROM s WHERE NOT correct GROUP BY 1, 2) GROUP BY 1),
        g AS (SELECT prompt_id, min(row) AS row, first(prompt) AS prompt, count(*) AS n, sum(correct::int) AS pc FROM s GROUP BY 1)
        SELECT g.prompt_id, g.prompt, g.n, g.pc, CASE WHEN pc = 0 THEN 1 + coalesce(pe, 0) / n
            ELSE greatest(1.0, 1 + coalesce(pe, 0) / pc + 1 / n) END AS difficulty_weight FROM g LEFT JOIN w USING (prompt_id) ORDER BY row""",
    "score alignment_potential": """
        SELECT *, (chosen_reward - rejected_reward - avg(chosen_reward - rejected_reward) OVER ()) / stddev_pop(chosen_reward - rejected_reward) OVER ()
          - (abs(chosen_logps / chosen_n_tokens - rejected_logps / rejected_n_tokens) - avg(abs(chosen_logps / chosen_n_tokens - rejected_logps / rejected_n_tokens)) OVER ())
            / stddev_pop(abs(chosen_logps / chosen_n_tokens - rejected_logps / rejected_n_tokens)) OVER () AS alignment_potential
        FROM read_parquet('SRC')""",
    "select --where": "SELECT * FROM read_parquet('SRC') WHERE chosen_reward - rejected_reward > 1",
    "select --top 0.4": """
        WITH p AS (SELECT *, row_number() OVER () AS row FROM read_parquet('SRC'))
        SELECT * EXCLUDE (row) FROM (SELECT * FROM p ORDER BY chosen_reward - rejected_reward DESC, row
          LIMIT (SELECT floor(0.4 * count(*))::BIGINT FROM p)) ORDER BY row""",
    "sql group-by": "SELECT model, avg(reward) AS mean_reward, count(*) AS n FROM read_parquet('SRC') GROUP BY 1 ORDER BY 1",
    "export TRL jsonl": "SELECT prompt, chosen, rejected, ref_chosen_logps, ref_rejected_logps, weight, pair_id FROM read_parquet('SRC')",
}


def curate_args(job: str, src: Path, out: Path) -> list[str]:
    strategy = job.split(" ", 1)[1] if job.startswith("pairs ") else None
    if strategy:
        return ["pairs", str(src), "--strategy", strategy, "-o", str(out)]
    return {
        "score difficulty --per-prompt": ["score", str(src), "--scorer", "difficulty", "--per-prompt", "-o", str(out)],
        "score alignment_potential": ["score", str(src), "--scorer", "alignment_potential", "-o", str(out)],
        "select --where": ["select", str(src), "--where", "chosen_reward - rejected_reward > 1", "-o", str(out)],
        "select --top 0.4": ["select", str(src), "--top", "0.4", "--by", "reward_margin", "-o", str(out)],
        "sql group-by": ["sql", "select model, avg(reward) as mean_reward, count(*) as n from samples group by 1 order by 1", "--samples", str(src),
                         "-o", str(out)],  # fmt: skip
        "export TRL jsonl": ["export", str(src), "-o", str(out), "--trl"],
        "export hf": ["export", str(src), "-o", str(out), "--format", "hf"],
    }[job]


def compile_curate() -> None:
    """Write curate's bytecode first, as an installed package has it: with PYTHONDONTWRITEBYTECODE set (as on the machine
    these figures come from), an editable checkout would otherwise recompile its modules in every timed process."""
    import importlib.util

    for package in ("curate", "scorers"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            subprocess.run([sys.executable, "-m", "compileall", "-q", *spec.submodule_search_locations], check=True, capture_output=True)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def script_cmd(code: str, src: Path, out: Path) -> list[str]:
    body = "import polars as pl\nSRC, OUT = %r, %r\n" % (str(src), str(out)) + textwrap.dedent(code)
    return [sys.executable, "-c", body]


def duckdb_cmd(sql: str, src: Path, out: Path) -> list[str]:
    fmt = "(FORMAT json)" if out.suffix == ".jsonl" else "(FORMAT parquet)"
    query = textwrap.dedent(sql).replace("SRC", str(src))
    body = f"import duckdb\nduckdb.connect().execute({f'COPY ({query}) TO {str(out)!r} {fmt}'!r})"
    return [sys.executable, "-c", body]


CHECKSUM = {"pairs correct-vs-incorrect": ["weight"], "pairs best-vs-worst": ["chosen_reward", "rejected_reward"],
            "pairs all": ["chosen_reward", "rejected_reward", "chosen_logps", "ref_rejected_logps", "weight"], "pairs best-of-n2": ["chosen_reward", "rejected_reward"],
            "score difficulty --per-prompt": ["difficulty_weight"], "score alignment_potential": ["alignment_potential"],
            "select --where": ["chosen_reward"], "select --top 0.4": ["chosen_reward"], "sql group-by": ["mean_reward"],
            "export TRL jsonl": ["weight"], "export hf": ["chosen_reward"]}  # fmt: skip


def summary(path: Path, job: str) -> tuple[int, float | None]:
    """Row count and a checksum of the job's numeric columns, to check that the outputs agree."""
    if path.is_dir():
        frame = pl.scan_parquet(sorted(path.glob("data/*.parquet")))
    elif path.suffix == ".jsonl":
        frame = pl.scan_ndjson(path)
    else:
        frame = pl.scan_parquet(path)
    cols = CHECKSUM[job]
    row = frame.select(pl.len().alias("n"), *[pl.col(c).cast(pl.Float64).sum().alias(c) for c in cols]).collect().row(0)
    return row[0], round(sum(v or 0.0 for v in row[1:]), 3) if cols else None


def run_size(prompts: int, big_join_max: int, tmp: Path, only: set[str] | None, repeat: int = 1) -> list[dict]:
    samples = tmp / f"samples_{prompts}.parquet"
    t0 = time.perf_counter()
    # made in a child process: a large parent would inflate every child's peak RSS (fork copies the page tables)
    subprocess.run([sys.executable, __file__, "--make", str(prompts), str(samples)], check=True)
    print(f"\n{prompts:,} prompts x 16 responses: {samples.stat().st_size / 1e6:.0f} MB of parquet, made in {time.perf_counter() - t0:.0f}s", flush=True)
    pairs = tmp / f"pairs_{prompts}.parquet"  # the input of the score/select/export jobs: pairs with logps
    subprocess.run([*CURATE, "pairs", str(samples), "--strategy", "best-vs-worst", "-o", str(pairs)], check=True, capture_output=True)
    all_pairs = tmp / f"all_{min(prompts, big_join_max)}.parquet"
    rows = []
    for job in POLARS:
        if only and job not in only:
            continue
        big = job in ("pairs best-of-n2", "pairs all", "score alignment_potential")
        n = min(prompts, big_join_max) if big else prompts
        src = samples if job.startswith(("pairs", "score difficulty", "sql")) else pairs
        small = samples  # the samples of the first n prompts
        if big and n != prompts:
            small = tmp / f"samples_{n}.parquet"
            if not small.exists():
                pl.scan_parquet(samples).filter(pl.col("prompt_id") < f"q{n:07d}").sink_parquet(small)
            if job.startswith("pairs"):
                src = small
        if job == "score alignment_potential":  # scored over every pair of the first n prompts' samples
            if not all_pairs.exists():
                subprocess.run([*CURATE, "pairs", str(small), "--strategy", "all", "-o", str(all_pairs)], check=True, capture_output=True)
            src = all_pairs
        ext = ".jsonl" if "jsonl" in job else ("" if job == "export hf" else ".parquet")
        result = {"job": job, "prompts": n}
        outs = {}
        for _ in range(repeat):  # round robin: a slow spell of the machine hits every method alike; each keeps its fastest run
            for method in ("curate", "polars", "duckdb"):
                out = tmp / f"{method}_{job.replace(' ', '_').replace('-', '')}{ext}"
                if method == "curate":
                    cmd = [*CURATE, *curate_args(job, src, out)]
                elif method == "polars":
                    cmd = script_cmd(POLARS[job], src, out)
                elif job in DUCKDB:
                    cmd = duckdb_cmd(DUCKDB[job], src, out)
                else:
                    continue
                if out.exists():  # each run writes a new file, as the first does
                    shutil.rmtree(out) if out.is_dir() else out.unlink()
                seconds, mb = timed(cmd)
                result[method] = min(seconds, result.get(method, seconds))
                result[f"{method}_rss"] = max(mb, result.get(f"{method}_rss", mb))
                outs[method] = summary(out, job)
        counts = {m: s[0] for m, s in outs.items()}
        result["agree"] = len(set(counts.values())) == 1
        sums = {m: s[1] for m, s in outs.items() if s[1] is not None}
        result["sums_agree"] = len(sums) < 2 or max(sums.values()) - min(sums.values()) <= 1e-6 * max(1.0, max(abs(v) for v in sums.values()))
        fastest = min(result[m] for m in ("polars", "duckdb") if m in result)
        result["ratio"] = result["curate"] / fastest
        rows.append(result)
        print(f"  {job:32s} {n:>8,} prompts  curate {result['curate']:6.2f}s {result['curate_rss']:6.0f}MB   polars {result['polars']:6.2f}s"
              + (f"   duckdb {result['duckdb']:6.2f}s" if "duckdb" in result else "               ")
              + f"   ratio {result['ratio']:.2f}   rows agree: {result['agree']} {counts}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--big-join-max", type=int, default=10_000, help="prompts for best-of-n2, `all` and alignment potential (N² pairs)")
    ap.add_argument("--jobs", nargs="*", help="only these jobs (names as printed)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--repeat", type=int, default=1, help="runs per method and job, in turn; the table keeps each one's fastest (and its largest RSS)")
    ap.add_argument("--tmp", type=Path, help="folder for the samples and every output (default: the system's temp folder); a tmpfs such as "
                    "/dev/shm takes the disk's write-back out of the times")
    ap.add_argument("--make", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.make:
        write_samples(int(a.make[0]), Path(a.make[1]))
        return
    import duckdb

    print(f"cores: {os.cpu_count()}, polars {pl.__version__}, duckdb {duckdb.__version__}, files in {a.tmp or tempfile.gettempdir()}")
    compile_curate()
    results = []
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        for prompts in a.prompts:
            results += run_size(prompts, a.big_join_max, Path(tmp), set(a.jobs) if a.jobs else None, a.repeat)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    print("\n| job | prompts | curate s | curate MB | polars s | polars MB | duckdb s | duckdb MB | curate / faster | outputs agree |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        duck = f"{r['duckdb']:.2f} | {r['duckdb_rss']:.0f}" if "duckdb" in r else "— | —"
        print(f"| {r['job']} | {r['prompts']:,} | {r['curate']:.2f} | {r['curate_rss']:.0f} | {r['polars']:.2f} | {r['polars_rss']:.0f} | {duck} | "
              f"{r['ratio']:.2f}x | {'yes' if r['agree'] and r['sums_agree'] else 'NO'} |")  # fmt: skip
    _ = resource  # peak RSS comes from wait4's rusage


if __name__ == "__main__":
    main()
