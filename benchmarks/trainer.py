"""Benchmark: curate's DPO trainer vs TRL's DPOTrainer on the same model, data, batch and max length.

    pip install -e ".[bench]"          # trl (benchmark-only dependency)
    python benchmarks/trainer.py       # 512 GSM8K pairs, Llama hidden 256 x 4 layers, vocab 8k, 64 steps

The model is built offline (random init) and saved once; both trainers start from the same weights
and the same 512 pairs with precomputed reference log-probs (curate reads the `ref_*_logps` columns;
TRL, given `precompute_ref_log_probs=True`, computes them in its constructor, outside the timed part). Each trainer runs in its own child
process so its peak RSS is its own. Timed: the training loop only (`train()`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/scorers.py is named like the `scorers` package: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT / "examples" / "data" / "gsm8k_6systems.parquet"


def prepare(tmp: Path, n_pairs: int, vocab: int, hidden: int, layers: int) -> tuple[Path, Path]:
    import polars as pl

    import curate
    from curate.models.tiny import build_tiny_llama

    pairs = curate.pairs(curate.read(GSM8K), strategy="correct-vs-incorrect").collect()
    pairs = pairs.filter(pl.col("chosen_model") != "gold").head(n_pairs).select("prompt", "chosen", "rejected")
    texts = pl.read_parquet(GSM8K, columns=["prompt", "response"])
    model = build_tiny_llama(tmp / "model", texts=texts["prompt"].to_list() + texts["response"].to_list(), vocab_size=vocab,
                             hidden_size=hidden, num_layers=layers, num_heads=hidden // 64, intermediate_size=4 * hidden)  # fmt: skip
    data = tmp / "pairs.parquet"
    pairs.write_parquet(data)
    return model, data


def add_reference(model: Path, data: Path, max_length: int) -> None:
    """Precompute ref_chosen_logps / ref_rejected_logps with curate's log-prob code (shared by both runs)."""
    import polars as pl
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.train.data import load_preference_data
    from curate.train.reference import compute_reference

    tok = AutoTokenizer.from_pretrained(model)
    prepared = load_preference_data(data, tok, max_length=max_length, max_prompt_length=max_length // 2)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    ref = compute_reference(lm, prepared, pad_id=tok.pad_token_id, batch_size=16, device=torch.device("cpu"))
    df = pl.read_parquet(data)
    df.with_columns(
        ref_chosen_logps=pl.Series([ref[i][0] for i in range(df.height)]), ref_rejected_logps=pl.Series([ref[i][1] for i in range(df.height)])
    ).write_parquet(data)


def run_curate(model: Path, data: Path, out: Path, a: argparse.Namespace) -> dict:
    from curate.train import TrainConfig, Trainer

    cfg = TrainConfig(data=str(data), model=str(model), output_dir=str(out), loss="dpo", learning_rate=a.lr, batch_size=a.batch_size,
                      max_steps=a.steps, max_length=a.max_length, max_prompt_length=a.max_length // 2, warmup_ratio=0.0,
                      save_model=False, progress=False, seed=0)  # fmt: skip
    trainer = Trainer(cfg)
    assert trainer.reference_source == "data"
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    from curate.train.data import collate

    tokens = sum(collate(trainer.data, mb, trainer.pad_id).n_tokens for s in range(a.steps) for mb in trainer._indices_for(s))
    return {"seconds": seconds, "tokens": tokens, "final_loss": result.metrics[-1]["loss"]}


def run_trl(model: Path, data: Path, out: Path, a: argparse.Namespace) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(model)
    ds = datasets.Dataset.from_parquet(str(data)).remove_columns(["ref_chosen_logps", "ref_rejected_logps"])
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    args = DPOConfig(output_dir=str(out), per_device_train_batch_size=a.batch_size, max_steps=a.steps, learning_rate=a.lr,
                     lr_scheduler_type="linear", warmup_steps=0, max_length=a.max_length, beta=0.1, loss_type=["sigmoid"],
                     logging_steps=10, save_strategy="no", report_to=[], seed=0, use_cpu=True, bf16=False, fp16=False,
                     dataloader_num_workers=0, precompute_ref_log_probs=True, disable_tqdm=True)  # fmt: skip
    # TRL computes the reference log-probs in its constructor (untimed) and then keeps no reference model
    trainer = DPOTrainer(model=lm, args=args, train_dataset=ds, processing_class=tok)
    t0 = time.perf_counter()
    out_ = trainer.train()
    seconds = time.perf_counter() - t0
    lens = trainer.train_dataset.map(lambda ex: {"n": min(len(ex["prompt_ids"]) + len(ex["chosen_ids"]), a.max_length)
                                     + min(len(ex["prompt_ids"]) + len(ex["rejected_ids"]), a.max_length)})["n"]  # fmt: skip
    tokens = int(sum(lens) / len(lens) * a.batch_size * a.steps)
    return {"seconds": seconds, "tokens": tokens, "final_loss": out_.training_loss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--child", choices=["curate", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.child:
        r = (run_curate if a.child == "curate" else run_trl)(a.model, a.data, a.out, a)
        r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(r))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, data = prepare(tmp, a.pairs, a.vocab, a.hidden, a.layers)
        add_reference(model, data, a.max_length)
        print(f"{a.pairs} pairs, batch {a.batch_size}, max_length {a.max_length}, {a.steps} steps; Llama hidden {a.hidden} x {a.layers} "
              f"layers, vocab {a.vocab}; {os.cpu_count()} CPU cores")  # fmt: skip
        results = {}
        for name in ("curate", "trl"):
            cmd = [sys.executable, __file__, "--child", name, "--model", str(model), "--data", str(data), "--out", str(tmp / name),
                   "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--max-length", str(a.max_length), "--lr", str(a.lr)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stderr[-4000:]}")
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\n           steps/s   tokens/s   peak RSS MB   final loss")
    for name, r in results.items():
        print(f"{name:8s} {a.steps / r['seconds']:9.3f} {r['tokens'] / r['seconds']:10.0f} {r['peak_rss_mb']:13.0f} {r['final_loss']:12.4f}")
    c, t = results["curate"], results["trl"]
    print(f"\ncurate / TRL: steps/s {t['seconds'] / c['seconds']:.2f}x, peak RSS {c['peak_rss_mb'] / t['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
