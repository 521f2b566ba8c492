"""The trainer on a tiny Llama built offline: log-probs, weighting, accumulation, learning, resume, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402

from conftest import preference_frames  # noqa: E402
from curate.train import TrainConfig, Trainer, train  # noqa: E402
from curate.train.data import collate  # noqa: E402
from curate.train.logps import sequence_logps  # noqa: E402


def write(tmp_path: Path, kind: str, n: int = 64, **extra) -> Path:
    df = preference_frames(n)[kind]
    if extra:
        df = df.with_columns(**{k: pl.Series(v) for k, v in extra.items()})
    path = tmp_path / f"{kind}.parquet"
    df.write_parquet(path)
    return path


def config(data: Path, model: Path, out: Path, **kw) -> TrainConfig:
    base = dict(learning_rate=1e-3, batch_size=8, warmup_ratio=0.0, progress=False, max_length=64)
    return TrainConfig(data=str(data), model=str(model), output_dir=str(out), **{**base, **kw})


def full_logps(model, batch) -> torch.Tensor:
    """Reference: log-softmax of the full logits, summed over response tokens."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    lp = logits[:, :-1].log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return (lp * batch.loss_mask[:, 1:]).sum(-1)


def test_chunked_logps_equal_full_logits(tiny_model, tmp_path):
    trainer = Trainer(config(write(tmp_path, "pairs", 8), tiny_model, tmp_path / "o", loss="simpo"))
    batch = collate(trainer.data, list(range(8)), trainer.pad_id)
    assert batch.input_ids.shape[0] == 16 and (batch.attention_mask.sum(1) < batch.input_ids.shape[1]).any()  # padded
    lm = trainer._unwrapped()
    want = full_logps(lm, batch)
    for chunk in (1, 5, 256):
        got, n = sequence_logps(lm, batch.input_ids, batch.attention_mask, batch.loss_mask, chunk)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert n.tolist() == batch.loss_mask[:, 1:].sum(1).tolist()
    # prompt tokens are masked out: the first response token follows the chat-template prompt
    first = trainer.data.examples[0]
    assert batch.loss_mask[0].tolist()[: len(first.prompt)] == [0] * len(first.prompt)
    assert first.responses[0][-1] == trainer.tokenizer.eos_token_id


def _grads(trainer: Trainer, steps_micro: list[list[int]]) -> dict[str, torch.Tensor]:
    trainer.optimizer.step = lambda *a, **k: None  # keep the gradients, skip the update
    trainer.optimizer.zero_grad = lambda *a, **k: None
    trainer.scheduler.step = lambda *a, **k: None
    trainer.train_step(steps_micro)
    return {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_weighted_gradient_matches_hand_derivation(tmp_path):
    from curate.models.tiny import build_tiny_llama

    model = build_tiny_llama(tmp_path / "one_layer", num_layers=1)
    weights = [2.0] * 4 + [1.0] * 4
    data = write(tmp_path, "pairs", 8, weight=weights)
    beta = 0.1
    trainer = Trainer(config(data, model, tmp_path / "o", loss="dpo", loss_kwargs={"beta": beta}, max_grad_norm=None))
    got = {name.removeprefix("lm."): g for name, g in _grads(trainer, [list(range(8))]).items()}

    # by hand: d/dθ (1/N) Σ w_i·(−log σ(β h_i)) = (1/N) Σ w_i·(−β σ(−β h_i))·dh_i/dθ
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    batch = collate(trainer.data, list(range(8)), trainer.pad_id)
    lp = full_logps(fresh, batch).view(2, 8).T
    ref = torch.tensor([e.ref for e in trainer.data.examples], dtype=torch.float32)
    h = (lp[:, 0] - ref[:, 0]) - (lp[:, 1] - ref[:, 1])
    w = torch.tensor(weights)
    coef = (w * -beta * torch.sigmoid(-beta * h)).detach() / 8
    (coef * h).sum().backward()
    for name, p in fresh.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert torch.count_nonzero(w - 1) == 4  # the weights really differ


@pytest.mark.parametrize("reduction", ["mean", "normalized"])
def test_accumulation_gives_the_same_update(tiny_model, tmp_path, reduction):
    data = write(tmp_path, "pairs", 16, weight=[3.0, 1.0] * 8)
    params = []
    for bs, accum in ((8, 1), (2, 4)):
        t = Trainer(config(data, tiny_model, tmp_path / f"o{bs}", loss="dpo", batch_size=bs, grad_accum=accum, reduction=reduction,
                           max_steps=1, save_model=False))  # fmt: skip
        t.train()
        params.append({n: p.detach().clone() for n, p in t.model.named_parameters()})
    for name in params[0]:
        torch.testing.assert_close(params[0][name], params[1][name], rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("loss,kind,kw", [
    ("dpo", "pairs", {}), ("simpo", "pairs", {}), ("wrpo", "triplets", {"beta": 0.1, "alpha": 0.5}), ("multi_dpo", "ranked", {}),
])  # fmt: skip
def test_training_learns_the_preference(tiny_model, tmp_path, loss, kind, kw):
    r = train(config(write(tmp_path, kind), tiny_model, tmp_path / "out", loss=loss, loss_kwargs=kw, max_steps=30))
    first, last = r.metrics[:5], r.metrics[-5:]
    mean = lambda rows, k: sum(x[k] for x in rows) / len(rows)  # noqa: E731
    assert mean(last, "loss") < 0.5 * mean(first, "loss")
    assert mean(last, "rewards/accuracies") > mean(first, "rewards/accuracies") and last[-1]["rewards/accuracies"] == 1.0
    assert mean(last, "rewards/margins") > mean(first, "rewards/margins")
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30 and {"loss", "rewards/chosen", "grad_norm", "lr", "tokens_per_s", "weight_mean"} <= set(json.loads(lines[0]))
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "tokenizer.json").exists()


@pytest.mark.parametrize("loss", ["dpo", "gamma_po"])
def test_resume_is_exact(tiny_model, tmp_path, loss):
    data = write(tmp_path, "pairs", 40)  # 5 steps per epoch: the run crosses an epoch boundary
    common = dict(loss=loss, max_steps=10, scheduler="cosine", warmup_steps=2)
    train(config(data, tiny_model, tmp_path / "full", **common))
    cut = train(config(data, tiny_model, tmp_path / "cut", save_steps=6, stop_after_steps=6, **common))
    assert cut.steps == 6 and (tmp_path / "cut" / "checkpoint-6").is_dir() and not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = train(config(data, tiny_model, tmp_path / "cut", save_steps=6, resume_from="auto", **common))
    assert resumed.steps == 10 and resumed.reference_source in ("cache", "none")
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))


def test_reference_from_data_is_used_and_cache_reused(tiny_model, tmp_path):
    data = write(tmp_path, "pairs", 16, ref_chosen_logps=[-20.0] * 16, ref_rejected_logps=[-30.0] * 16)
    t = Trainer(config(data, tiny_model, tmp_path / "a", loss="dpo", max_steps=1))
    assert t.reference_source == "data" and not (tmp_path / "a" / "reference_logps.pt").exists()
    assert [e.ref for e in t.data.examples[:2]] == [[-20.0, -30.0]] * 2
    plain = write(tmp_path, "pairs", 16)
    assert Trainer(config(plain, tiny_model, tmp_path / "b", loss="dpo", max_steps=1)).reference_source == "computed"
    assert Trainer(config(plain, tiny_model, tmp_path / "b", loss="dpo", max_steps=1)).reference_source == "cache"
    assert Trainer(config(plain, tiny_model, tmp_path / "c", loss="simpo", max_steps=1)).reference_source == "none"


def test_truncation_reports_identical_pairs(tiny_model, tmp_path):
    df = pl.DataFrame({"prompt": ["p"] * 10, "chosen": ["same start then good"] * 10, "rejected": ["same start then bad"] * 5 + ["x"] * 5})
    df.write_parquet(tmp_path / "p.parquet")
    t = Trainer(config(tmp_path / "p.parquet", tiny_model, tmp_path / "o", loss="simpo", batch_size=2, max_length=12, max_prompt_length=8))
    assert t.data.step.dropped == {"examples whose responses became identical after truncation": 5} and len(t.data) == 5


def test_reference_pass_computes_only_what_the_run_uses(tiny_model, tmp_path):
    data = write(tmp_path, "pairs", 64)
    first = Trainer(config(data, tiny_model, tmp_path / "o", loss="dpo", max_steps=1, save_model=False))
    cached = torch.load(tmp_path / "o" / "reference_logps.pt", weights_only=True)["ref"]
    assert first.reference_source == "computed" and sorted(cached) == sorted(first._global_batch(0)) and len(cached) == 8
    longer = Trainer(config(data, tiny_model, tmp_path / "o", loss="dpo", max_steps=3, save_model=False))
    cached = torch.load(tmp_path / "o" / "reference_logps.pt", weights_only=True)["ref"]
    assert longer.reference_source == "computed" and len(cached) == 24
    assert Trainer(config(data, tiny_model, tmp_path / "o", loss="dpo", max_steps=2, save_model=False)).reference_source == "cache"
    # the examples the run trains on have their reference; the others were never computed
    assert all(longer.data.examples[i].ref is not None for s in range(3) for i in longer._global_batch(s))
    assert sum(e.ref is None for e in longer.data.examples) == 40


def test_loss_and_table_kind_must_match(tiny_model, tmp_path):
    from curate.errors import CurateError

    with pytest.raises(CurateError, match="does not train on a `pairs` table"):
        Trainer(config(write(tmp_path, "pairs", 8), tiny_model, tmp_path / "o", loss="wrpo"))
    with pytest.raises(CurateError, match="no such local folder"):
        Trainer(config(write(tmp_path, "pairs", 8), tmp_path / "nope", tmp_path / "o"))


def test_torchrun_two_processes_match_one(tiny_model, tmp_path):
    data = write(tmp_path, "pairs", 40, weight=[1.0, 2.0, 0.5, 1.5] * 10)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {tiny_model}\nloss: dpo\nlearning_rate: 0.001\nmax_steps: 5\nwarmup_ratio: 0.0\nmax_length: 64\nreduction: normalized\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    one = subprocess.run([sys.executable, "-m", "curate.cli", "train", str(data), "--config", str(cfg), "-o", str(tmp_path / "one"),
                          "--batch-size", "8"], capture_output=True, text=True, env=env)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m", "curate.cli",
                          "train", str(data), "--config", str(cfg), "-o", str(tmp_path / "two"), "--batch-size", "4"],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert two.returncode == 0, two.stderr
    losses = [[json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    # Adam divides by sqrt(v): an entry whose gradient is ~0 can move by up to lr per step on float noise alone,
    # so parameters are compared to a tenth of the learning rate (1e-3) after 5 steps
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-4, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_training_learns(tiny_model, tmp_path):
    r = train(config(write(tmp_path, "pairs"), tiny_model, tmp_path / "out", loss="dpo", max_steps=20, device="cuda"))
    assert r.metrics[-1]["loss"] < r.metrics[0]["loss"] and r.metrics[-1]["rewards/accuracies"] == 1.0
