"""Benchmark: the same job through curate's CLI and through its Python API, each as its own process.

    python benchmarks/cli_vs_api.py                  # 10k prompts x 16 responses (the synthetic samples of pipeline.py)
    python benchmarks/cli_vs_api.py --prompts 50000 --jobs "pairs correct-vs-incorrect" "pairs best-vs-worst" \
        "select --where" "select --top 0.4" "export TRL jsonl"
    python benchmarks/cli_vs_api.py --prompts 200000 --tmp /dev/shm --jobs ...   # files in memory: no disk write-back in the times

The CLI validates, counts every drop and writes the lineage; the API script does what a user of the
library writes: `curate.write(curate.pairs(curate.read(SRC), ...), OUT)` (validation included, no drop
record). Both run their plan once, so they should take the same time (the issue's bar: ±10%). Rows of
the two outputs are compared. Prints a table of seconds, peak RSS and the ratio CLI / API.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("pipeline_bench", HERE / "pipeline.py")
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)

import polars as pl  # noqa: E402

API = {
    "pairs correct-vs-incorrect": "curate.write(curate.pairs(curate.read(SRC), strategy='correct-vs-incorrect'), OUT)",
    "pairs best-vs-worst": "curate.write(curate.pairs(curate.read(SRC), strategy='best-vs-worst'), OUT)",
    "pairs all": "curate.write(curate.pairs(curate.read(SRC), strategy='all'), OUT)",
    "pairs best-of-n2": "curate.write(curate.pairs(curate.read(SRC), strategy='best-of-n2'), OUT)",
    "select --where": "curate.write(curate.select(curate.read(SRC, 'pairs'), where='chosen_reward - rejected_reward > 1'), OUT)",
    "select --top 0.4": "curate.write(curate.select(curate.read(SRC, 'pairs'), top=0.4, by='reward_margin'), OUT)",
    "export TRL jsonl": "curate.write(curate.read(SRC, 'pairs').select('prompt', 'chosen', 'rejected', 'weight'), OUT)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the faster is kept")
    ap.add_argument("--jobs", nargs="*", help="only these jobs (names as printed; `pairs all` grows with N²: 3 GB at 10k prompts)")
    ap.add_argument("--tmp", type=Path, help="folder for the samples and outputs (default: the system's temp folder; e.g. /dev/shm)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp_name:
        tmp = Path(tmp_name)
        samples, pairs = tmp / "samples.parquet", tmp / "pairs.parquet"
        subprocess.run([sys.executable, str(HERE / "pipeline.py"), "--make", str(a.prompts), str(samples)], check=True)
        subprocess.run([*pipeline.CURATE, "pairs", str(samples), "--strategy", "best-vs-worst", "-o", str(pairs)], check=True, capture_output=True)
        print(f"{a.prompts:,} prompts x 16 responses; polars {pl.__version__}", flush=True)
        for job, code in API.items():
            if a.jobs and job not in a.jobs:
                continue
            src = samples if job.startswith("pairs") else pairs
            ext = ".jsonl" if "jsonl" in job else ".parquet"
            cli_out, api_out = tmp / f"cli{ext}", tmp / f"api{ext}"
            cli_cmd = [*pipeline.CURATE, *pipeline.curate_args(job, src, cli_out)]
            api_cmd = [sys.executable, "-c", f"import curate\nSRC, OUT = {str(src)!r}, {str(api_out)!r}\n{code}"]
            runs = [(pipeline.timed(cli_cmd), pipeline.timed(api_cmd)) for _ in range(a.repeat)]  # in turn: a slow spell hits both
            cli, api = (min((r[i] for r in runs), key=lambda t: t[0]) for i in (0, 1))
            read = pl.scan_ndjson if ext == ".jsonl" else pl.scan_parquet
            n_cli, n_api = (read(p).select(pl.len()).collect().item() for p in (cli_out, api_out))
            rows.append((job, cli, api, n_cli == n_api))
            print(f"  {job:28s} CLI {cli[0]:6.2f}s {cli[1]:6.0f}MB   API {api[0]:6.2f}s {api[1]:6.0f}MB   CLI/API {cli[0] / api[0]:.2f}"
                  f"   rows agree: {n_cli == n_api} ({n_cli:,})", flush=True)  # fmt: skip
    print("\n| job | CLI s | CLI MB | API s | API MB | CLI / API | rows agree |")
    print("|---|---|---|---|---|---|---|")
    for job, cli, api, agree in rows:
        print(f"| {job} | {cli[0]:.2f} | {cli[1]:.0f} | {api[0]:.2f} | {api[1]:.0f} | {cli[0] / api[0]:.2f}x | {'yes' if agree else 'NO'} |")


if __name__ == "__main__":
    main()
