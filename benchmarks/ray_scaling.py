"""Benchmark: one curate job on this machine vs on a two-node local Ray cluster, and what the per-bucket timings project.

    python benchmarks/ray_scaling.py                       # 200k prompts x 16 (benchmarks/pipeline.py's synthetic set)
    python benchmarks/ray_scaling.py --prompts 50000 --job "pairs correct-vs-incorrect"

It writes the synthetic samples (in chunks of 20k prompts, each seeded by its index; row groups of 64k
rows: one Ray read task each), runs the job as one
local process (`--engine local`), then starts a Ray head and one worker node on this machine (one CPU
each: the same two cores) and runs the job with `--engine ray`. It checks the outputs hold the same
rows, and prints wall times, the Ray overhead, and a projection for 8 and 64 nodes.

The projection is a simulation on paper, from the measured per-bucket step times in the output's
manifest. It assumes: (1) each node has the measured machine's per-core speed and `--cores` cores;
(2) a bucket's step time scales with its rows (buckets of the projected run are the measured ones,
resized); (3) reading and shuffling cost the measured core-seconds per row outside the buckets' steps
and parallelise perfectly (network and shared storage are never the bottleneck); (4) the driver's fixed
cost (connecting, planning, renaming: the wall time of a tiny job) is the same at any size. Buckets are
scheduled greedily, longest first, onto the cluster's cores (list scheduling), so the imbalance between
buckets shows in the makespan.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

CURATE = [sys.executable, "-m", "curate.cli"]
RAY = str(Path(sys.executable).with_name("ray"))
JOBS = {
    "pairs best-vs-worst": ["pairs", "--strategy", "best-vs-worst"],
    "pairs correct-vs-incorrect": ["pairs", "--strategy", "correct-vs-incorrect"],
    "pairs best-of-n2": ["pairs", "--strategy", "best-of-n2"],
}


def make(prompts: int, path: Path) -> None:
    spec = importlib.util.spec_from_file_location("pipeline_bench", Path(__file__).with_name("pipeline.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.write_samples(prompts, path, chunk=20_000)


def wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def makespan(times: list[float], slots: int) -> float:
    """Greedy list scheduling, longest first."""
    load = [0.0] * slots
    for t in sorted(times, reverse=True):
        i = int(np.argmin(load))
        load[i] += t
    return max(load)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=200_000)
    ap.add_argument("--job", default="pairs best-vs-worst", choices=sorted(JOBS))
    ap.add_argument("--buckets", type=int, default=16)
    ap.add_argument("--cores", type=int, default=16, help="cores per node in the projection")
    a = ap.parse_args()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "samples.parquet"
        t0 = time.perf_counter()
        make(a.prompts, src)
        rows = pl.scan_parquet(src).select(pl.len()).collect().item()
        print(f"{a.prompts:,} prompts, {rows:,} samples, {src.stat().st_size / 1e6:.0f} MB, made in {time.perf_counter() - t0:.0f}s", flush=True)
        tiny = tmp / "tiny.parquet"
        pl.scan_parquet(src).head(16_000).sink_parquet(tiny)

        single = wall([*CURATE, *JOBS[a.job], str(src), "-o", str(tmp / "single.parquet")], env)
        print(f"single machine (one process): {single:.1f}s", flush=True)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        address = f"127.0.0.1:{port}"
        common = ["--num-cpus", "1", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common], check=True, env=env, capture_output=True)
        try:
            subprocess.run([RAY, "start", "--address", address, *common], check=True, env=env, capture_output=True)
            ray_cmd = ["--engine", "ray", "--ray-address", address, "--buckets", str(a.buckets)]
            fixed = wall([*CURATE, *JOBS[a.job], str(tiny), "-o", str(tmp / "tiny_ray"), *ray_cmd], env)
            ray_wall = wall([*CURATE, *JOBS[a.job], str(src), "-o", str(tmp / "ray"), *ray_cmd], env)
        finally:
            subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
        manifest = json.loads((tmp / "ray" / "curate_manifest.json").read_text())
        out_single = pl.read_parquet(tmp / "single.parquet").sort("pair_id")
        out_ray = pl.read_parquet(tmp / "ray" / "data").sort("pair_id")
        same = out_single.equals(out_ray)
        print(f"2-node local Ray (1 CPU each): {ray_wall:.1f}s (fixed cost of a tiny job {fixed:.1f}s); outputs equal: {same}", flush=True)

        step_times = [s["seconds"] for s in manifest["shards"]]
        bucket_rows = rows / len(step_times)
        step_total = sum(step_times)
        # core-seconds outside the buckets' steps (reading, tagging, shuffling, storing the buckets), per row
        other = max(0.0, (ray_wall - fixed) * 2 - step_total) / rows
        print(f"buckets: {len(step_times)}, step time per bucket: mean {np.mean(step_times):.2f}s, max {max(step_times):.2f}s "
              f"(imbalance {max(step_times) / np.mean(step_times):.2f}); read+shuffle: {other * 1e6:.2f} core-µs per sample")  # fmt: skip

        print("\n| nodes x cores | samples | buckets | projected wall s | samples/s | speed-up vs 1 process |")
        print("|---|---|---|---|---|---|")
        per_row = np.array(step_times) / bucket_rows  # step core-seconds per sample, per measured bucket
        for nodes in (1, 2, 8, 64):
            cores = a.cores if nodes > 2 else (1 if nodes == 2 else 2)
            for scale in (1, 10):
                n_rows = rows * scale
                slots = nodes * cores
                buckets = 2 * slots
                rng = np.random.default_rng(0)
                times = (rng.choice(per_row, buckets) * (n_rows / buckets)).tolist()
                t = fixed + makespan(times, slots) + other * n_rows / slots
                print(f"| {nodes} x {cores} | {n_rows:,} | {buckets} | {t:.1f} | {n_rows / t:,.0f} | {single * scale / t:.1f}x |")
        print(f"\nmeasured: 1 process {single:.1f}s; 2 x 1 Ray {ray_wall:.1f}s ({ray_wall / single:.2f}x the single process on the same 2 cores)")


if __name__ == "__main__":
    main()
