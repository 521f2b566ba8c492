"""Benchmark: best-of-N² pairing + DCRM on a synthetic table, against a pandas + Python baseline and the cdist floor.

    python benchmarks/scorers.py                       # 20,000 prompts x 16 responses of ~100 words
    python benchmarks/scorers.py --prompts 2000        # a quicker run
    python benchmarks/scorers.py --newlines            # a line break every 12 words, as in Markdown responses
    python benchmarks/scorers.py --save-data s.parquet # only write the samples; then time one method on them:
    python benchmarks/scorers.py --child curate --data s.parquet --out out.parquet

Each method runs in its own child process (so peak RSS is its own) on the same Parquet file, written
once by the parent. Printed: seconds, peak RSS, and each time as a ratio of curate's. The methods:

- curate:        `curate.pairs(samples, strategy="best-of-n2")` (DCRM, word edit distance), collected.
- pandas:        what an ad-hoc script does: pandas groupby, itertools.combinations over each prompt's
                 responses, rapidfuzz Levenshtein on `str.split()` words per pair, DCRM in Python, argmax.
- pure-python:   the same loop with a textbook Python Levenshtein (no rapidfuzz); run on a subset and
                 extrapolated linearly to all prompts (it would take hours in full).
- floor-words:   only the distances: rapidfuzz `cdist(words, words, workers=-1)` per prompt on split words.
- floor-encoded: only the distances on curate's encoding (one code point per word), per prompt.
The pandas/pure-python results are checked to pick the same pairs as curate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# this file is named like the `scorers` package: keep its folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

METHODS = ("curate", "pandas", "pure-python", "floor-words", "floor-encoded")


def make_samples(prompts: int, responses: int, words: int, seed: int = 0, newlines: bool = False) -> pl.DataFrame:
    """Each prompt has a base answer of ~`words` words; its responses are noisy copies (20% of words changed).

    `newlines`: every 12th space becomes a line break, as in the Markdown most responses are.
    """
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(8000)], dtype=object)
    texts = []
    for _ in range(prompts):
        base = rng.integers(0, len(vocab), words)
        for _ in range(responses):
            ids = base.copy()
            flip = rng.random(words) < 0.2
            ids[flip] = rng.integers(0, len(vocab), flip.sum())
            keep = ids[: words + rng.integers(-words // 5, words // 5 + 1)]
            texts.append(" ".join(vocab[keep]))
    n = prompts * responses
    response = pl.Series(texts)
    if newlines:
        response = response.str.replace_all(r"((?:\S+ ){11}\S+) ", "$1\n")
    return pl.DataFrame(
        {
            "prompt_id": np.repeat([f"q{i}" for i in range(prompts)], responses),
            "prompt": np.repeat([f"question {i}" for i in range(prompts)], responses),
            "response": response,
            "model": "policy",
            "reward": np.round(rng.normal(0, 2, n), 1),  # rounded: some reward ties, as with graded data
        }
    )


def dcrm(dr: float, d: int) -> float:
    return (1 / (1 + math.exp(-dr)) - 0.5) / (d + 1.0)


def levenshtein_py(a: list, b: list) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def run_pandas(path: Path, distance, limit: int | None = None) -> pl.DataFrame:
    import pandas as pd

    df = pd.read_parquet(path)
    if limit is not None:
        df = df[df["prompt_id"].isin(df["prompt_id"].unique()[:limit])]
    rows = []
    for pid, g in df.groupby("prompt_id", sort=False):
        recs = list(zip(g["response"], g["reward"], strict=True))
        split = [r.split() for r, _ in recs]
        best = None
        for i, j in itertools.combinations(range(len(recs)), 2):
            wi, wj = recs[i][1], recs[j][1]
            if wi == wj:
                continue
            c, r = (i, j) if wi > wj else (j, i)
            d = distance(split[c], split[r])
            if d == 0:
                continue
            dr = recs[c][1] - recs[r][1]
            key = (dcrm(dr, d), dr, -d, -c, -r)
            if best is None or key > best[0]:
                best = (key, c, r)
        if best is not None:
            rows.append({"prompt_id": pid, "chosen": recs[best[1]][0], "rejected": recs[best[2]][0], "dcrm": best[0][0]})
    return pl.DataFrame(rows)


def run_floor(path: Path, encoded: bool) -> pl.DataFrame:
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist

    from scorers.edit_distance import encode_words

    df = pl.read_parquet(path, columns=["prompt_id", "response"])
    counts = df.group_by("prompt_id", maintain_order=True).len()["len"].to_list()
    seqs = encode_words(df["response"]) if encoded else [r.split() for r in df["response"].to_list()]
    start = 0
    for n in counts:
        block = seqs[start : start + n]
        cdist(block, block, scorer=Levenshtein.distance, workers=-1)
        start += n
    return pl.DataFrame()


def child(method: str, path: Path, out: Path, limit: int | None) -> None:
    t0 = time.perf_counter()
    if method == "curate":
        import curate

        result = curate.pairs(curate.read(path), strategy="best-of-n2").select("prompt_id", "chosen", "rejected", "dcrm").collect()
    elif method == "pandas":
        from rapidfuzz.distance import Levenshtein

        result = run_pandas(path, Levenshtein.distance)
    elif method == "pure-python":
        result = run_pandas(path, levenshtein_py, limit=limit)
    else:
        result = run_floor(path, encoded=method == "floor-encoded")
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.write_parquet(out)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "rows": result.height}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=20_000)
    ap.add_argument("--responses", type=int, default=16)
    ap.add_argument("--words", type=int, default=100)
    ap.add_argument("--newlines", action="store_true", help="a line break in place of every 12th space (real responses are Markdown)")
    ap.add_argument("--pure-python-prompts", type=int, default=100, help="subset size for the extrapolated pure-Python baseline")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--save-data", type=Path, help="only write the synthetic samples to this Parquet file (to time --child runs on it)")
    ap.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data, args.out, args.pure_python_prompts)
        return
    if args.save_data:
        make_samples(args.prompts, args.responses, args.words, newlines=args.newlines).write_parquet(args.save_data)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "samples.parquet"
        t0 = time.perf_counter()
        make_samples(args.prompts, args.responses, args.words, newlines=args.newlines).write_parquet(data)
        print(f"synthetic samples: {args.prompts:,} prompts x {args.responses} responses (~{args.words} words) "
              f"in {time.perf_counter() - t0:.1f}s; cores: {os.cpu_count()}")  # fmt: skip
        results, outputs = {}, {}
        for method in args.methods.split(","):
            out = Path(tmp) / f"{method}.parquet"
            cmd = [sys.executable, __file__, "--child", method, "--data", str(data), "--out", str(out),
                   "--pure-python-prompts", str(args.pure_python_prompts)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{method} failed:\n{proc.stderr}")
            results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
            outputs[method] = pl.read_parquet(out)
            if method == "pure-python":  # extrapolate the subset linearly to all prompts
                results[method]["seconds"] *= args.prompts / args.pure_python_prompts
                results[method]["extrapolated"] = True
            print(f"  {method:14s} {results[method]['seconds']:9.2f}s  peak RSS {results[method]['peak_rss_mb']:8.0f} MB", flush=True)

    if "curate" in outputs:
        ref = outputs["curate"].sort("prompt_id")
        for method in ("pandas", "pure-python"):
            if method in outputs:
                other = outputs[method].sort("prompt_id")
                joined = ref.join(other, on="prompt_id", suffix="_b")
                same = (joined["chosen"] == joined["chosen_b"]) & (joined["rejected"] == joined["rejected_b"])
                assert joined.height == other.height and same.all(), f"{method} picked different pairs than curate"
                print(f"  {method} picks the same pair as curate on all {joined.height:,} prompts it covered")
    base = results.get("curate", {}).get("seconds")
    print("\nmethod          seconds   peak RSS MB   time / curate's")
    for method, r in results.items():
        ratio = f"{r['seconds'] / base:8.2f}x" if base else "-"
        note = "  (extrapolated)" if r.get("extrapolated") else ""
        print(f"{method:14s} {r['seconds']:9.2f} {r['peak_rss_mb']:12.0f}   {ratio}{note}")


if __name__ == "__main__":
    main()
