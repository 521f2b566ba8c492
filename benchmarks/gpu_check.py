"""GPU proof for `curate train`, prepared for a lent device (one H200): throughput, MFU, memory; TRL on the same run; FSDP.

    python benchmarks/gpu_check.py                  # on the GPU machine (about 6 minutes on one H200)
    python benchmarks/gpu_check.py --smoke          # the same script on CPU with a tiny model, in seconds (CI runs it)

What it does, in order (each part prints one JSON line; a failing part is reported and the others still run):

1. `curate`: a Llama of about 1.1B parameters built from a config (hidden 2048, 22 layers, 16 heads, MLP 5632,
   vocab 32000: TinyLlama's shape; random init, nothing downloaded), trained with `curate train`'s Trainer
   for N steps of weighted DPO in bf16 autocast with gradient checkpointing, on synthetic pairs
   (prompt 128 + response 384 tokens); reports tokens/s, MFU (6·params·tokens/s over the GPU's dense bf16
   peak, 989 TFLOP/s for an H100/H200 SXM) and peak CUDA memory.
2. `trl`: TRL's DPOTrainer on the same model, data and batch (bf16, gradient checkpointing, precomputed
   reference log-probs), when TRL is installed; the same figures.
3. `fsdp`: a 1-GPU FSDP smoke run of `curate train --fsdp` through torchrun (2 steps), checking it finishes.
4. `pytest -m gpu`: the GPU-marked tests.

The device README asks a run to carry its own wheels: copy the project's virtual environment (or a
wheelhouse) with the working tree; nothing is fetched on the device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
PEAK_BF16_TFLOPS = 989.0  # H100/H200 SXM dense bf16


def build_model(out: Path, smoke: bool) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from curate.models.tiny import build_tokenizer

    words = [f"w{i}" for i in range(4000)]
    tok = build_tokenizer(out, texts=[" ".join(words[i : i + 50]) for i in range(0, 4000, 10)], vocab_size=512 if smoke else 32000)
    shape = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2) if smoke else dict(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=16, num_key_value_heads=4)  # fmt: skip
    cfg = LlamaConfig(vocab_size=max(len(tok), 512 if smoke else 32000), max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False, **shape)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True)
    return out


def make_pairs(path: Path, n: int, prompt_words: int, response_words: int) -> Path:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(4000)], dtype=object)
    text = lambda k: " ".join(words[rng.integers(0, len(words), k)])  # noqa: E731
    pl.DataFrame({"prompt": [text(prompt_words) for _ in range(n)], "chosen": [text(response_words) for _ in range(n)],
                  "rejected": [text(response_words) for _ in range(n)], "weight": rng.uniform(0.5, 2.0, n)}).write_parquet(path)  # fmt: skip
    return path


def n_params(model_dir: Path) -> int:
    from safetensors import safe_open

    import math

    total = 0
    for f in model_dir.glob("*.safetensors"):
        with safe_open(f, "pt") as fh:
            total += sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())
    return total


def run_curate(model: Path, data: Path, out: Path, a: argparse.Namespace) -> dict:
    import torch

    from curate.train import TrainConfig, Trainer

    cfg = TrainConfig(data=str(data), model=str(model), output_dir=str(out), loss="dpo", learning_rate=1e-5, batch_size=a.batch_size,
                      max_steps=a.steps, max_length=a.max_length, max_prompt_length=a.max_length // 4, warmup_ratio=0.0, save_model=False,
                      progress=False, gradient_checkpointing=not a.smoke, bf16=None if not a.smoke else False, diagnostics=False)  # fmt: skip
    trainer = Trainer(cfg)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    from curate.train.data import collate

    tokens = sum(collate(trainer.data, mb, trainer.pad_id).n_tokens for s in range(a.steps) for mb in trainer._indices_for(s))
    return {"seconds": seconds, "tokens": tokens, "loss_first": result.metrics[0]["loss"], "loss_last": result.metrics[-1]["loss"],
            "reference": result.reference_source, "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}  # fmt: skip


def run_trl(model: Path, data: Path, out: Path, a: argparse.Namespace) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(model)
    ds = datasets.Dataset.from_parquet(str(data))
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    args = DPOConfig(output_dir=str(out), per_device_train_batch_size=a.batch_size, max_steps=a.steps, learning_rate=1e-5, warmup_steps=0,
                     max_length=a.max_length, beta=0.1, loss_type=["sigmoid"], logging_steps=1, save_strategy="no", report_to=[], seed=0,
                     bf16=not a.smoke, gradient_checkpointing=not a.smoke, precompute_ref_log_probs=True, disable_tqdm=True,
                     use_cpu=a.smoke, dataloader_num_workers=0)  # fmt: skip
    trainer = DPOTrainer(model=lm, args=args, train_dataset=ds, processing_class=tok)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    ds_tok = trainer.train_dataset
    per_ex = [min(len(p) + len(c), a.max_length) + min(len(p) + len(r), a.max_length)
              for p, c, r in zip(ds_tok["prompt_ids"], ds_tok["chosen_ids"], ds_tok["rejected_ids"], strict=True)]  # fmt: skip
    tokens = int(sum(per_ex) / len(per_ex) * a.batch_size * a.steps)
    return {"seconds": seconds, "tokens": tokens, "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


def figures(r: dict, params: int) -> dict:
    tps = r["tokens"] / r["seconds"]
    return {**r, "tokens_per_s": round(tps, 1), "mfu": round(6 * params * tps / (PEAK_BF16_TFLOPS * 1e12), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model on CPU, a few steps (for CI)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--skip", nargs="*", default=[], choices=["curate", "trl", "fsdp", "pytest"])
    a = ap.parse_args()
    a.steps = a.steps or (2 if a.smoke else 30)
    a.batch_size = a.batch_size or (2 if a.smoke else 8)
    a.max_length = a.max_length or (64 if a.smoke else 512)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    print(json.dumps({"part": "device", "cuda": torch.cuda.is_available(), "name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                      "torch": torch.__version__}), flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_model(tmp / "model", a.smoke)
        params = n_params(model)
        data = make_pairs(tmp / "pairs.parquet", n=a.batch_size * a.steps, prompt_words=20 if a.smoke else 100, response_words=20 if a.smoke else 300)
        for part, fn in (("curate", run_curate), ("trl", run_trl)):
            if part in a.skip:
                continue
            try:
                r = figures(fn(model, data, tmp / part, a), params)
                print(json.dumps({"part": part, "params": params, **r}), flush=True)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other parts
                print(json.dumps({"part": part, "error": f"{type(exc).__name__}: {exc}"[:500]}), flush=True)
        if "fsdp" not in a.skip:
            if torch.cuda.is_available():
                cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "curate.cli", "train", str(data), "--model",
                       str(model), "--loss", "dpo", "--batch-size", "2", "--max-steps", "2", "--fsdp", "--max-length", str(a.max_length),
                       "-o", str(tmp / "fsdp")]  # fmt: skip
                t0 = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True)
                print(json.dumps({"part": "fsdp", "ok": r.returncode == 0, "seconds": round(time.perf_counter() - t0, 1),
                                  "tail": r.stderr[-800:] if r.returncode else ""}), flush=True)  # fmt: skip
            else:
                print(json.dumps({"part": "fsdp", "skipped": "no CUDA device"}), flush=True)
        if "pytest" not in a.skip:
            if torch.cuda.is_available():
                r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_trainer.py"], capture_output=True, text=True, cwd=ROOT)
                print(json.dumps({"part": "pytest -m gpu", "ok": r.returncode == 0, "tail": r.stdout[-600:]}), flush=True)
            else:
                print(json.dumps({"part": "pytest -m gpu", "skipped": "no CUDA device"}), flush=True)


if __name__ == "__main__":
    main()
