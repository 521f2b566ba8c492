"""Quickstart: the Python API on the bundled GSM8K data (run: python examples/quickstart.py [OUT_DIR]).

The same steps as `curate demo`, written out: read + validate, SQL, pairs, select, export.
"""

import sys
from pathlib import Path

import curate

DATA = Path(__file__).parent / "data" / "gsm8k_6systems.parquet"
out = Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart-out")
out.mkdir(exist_ok=True)

samples = curate.read(DATA)  # a validated polars LazyFrame
print(curate.sql("select model, avg(correct::int) as accuracy from samples group by 1 order by 2 desc", samples=samples))

pairs = curate.pairs(samples, strategy="correct-vs-incorrect", seed=0)  # lazy; weight = difficulty_weight
kept = curate.select(pairs, where="chosen_model <> 'gold'", normalize_weights="mean").collect()
print(kept.select("prompt_id", "chosen_model", "rejected_model", "weight").head())

curate.write(kept, out / "pairs.parquet")
done = curate.export(out / "pairs.parquet", out / "pairs_trl.jsonl", "jsonl", trl=True)
print(f"{done.rows} TRL pairs in {done.path}")
