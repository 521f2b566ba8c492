"""`curate.trl.WeightedDPOTrainer`: TRL's DPOTrainer with curate's per-sample weights, step for step equal to `curate train`."""

from __future__ import annotations

import polars as pl
import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from conftest import preference_frames  # noqa: E402

WEIGHTS = [0.25, 2.0, 1.0, 3.0, 0.5, 1.5, 4.0, 0.1] * 4  # 32 pairs, far from uniform


def _with_reference(tiny_model, tmp_path, n: int = 32):
    """Pairs with weights and reference log-probs (so both trainers read the same reference)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.train.data import load_preference_data
    from curate.train.reference import compute_reference

    path = tmp_path / "pairs.parquet"
    preference_frames(n)["pairs"].with_columns(weight=pl.Series(WEIGHTS[:n])).write_parquet(path)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    data = load_preference_data(path, tok)
    ref = compute_reference(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), data, pad_id=tok.pad_token_id, batch_size=8,
                            device=torch.device("cpu"))  # fmt: skip
    df = pl.read_parquet(path).with_columns(
        ref_chosen_logps=pl.Series([ref[i][0] for i in range(n)]), ref_rejected_logps=pl.Series([ref[i][1] for i in range(n)])
    )
    df.write_parquet(path)
    return path


def _trl_losses(tiny_model, path, tmp_path, loss_type: str, steps: int, reduction: str = "mean") -> list[float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.trl import WeightedDPOTrainer

    seen: list[float] = []

    class Recording(WeightedDPOTrainer):
        def _compute_loss(self, model, inputs, return_outputs):
            loss = super()._compute_loss(model, inputs, return_outputs)
            if self.model.training:
                seen.append(float(loss.detach()))
            return loss

    args = trl.DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, max_steps=steps, learning_rate=1e-3,
                         lr_scheduler_type="linear", warmup_steps=0, beta=0.1, loss_type=[loss_type], max_length=1024,
                         train_sampling_strategy="sequential", optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0, seed=0,
                         use_cpu=True, bf16=False, report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True)  # fmt: skip
    ds = datasets.Dataset.from_parquet(str(path))
    trainer = Recording(model=AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), args=args, train_dataset=ds,
                        processing_class=AutoTokenizer.from_pretrained(tiny_model), reduction=reduction)  # fmt: skip
    trainer.train()
    return seen


def _curate_losses(tiny_model, path, tmp_path, loss: str, steps: int, reduction: str = "mean") -> list[float]:
    from curate.train import TrainConfig, Trainer

    cfg = TrainConfig(data=str(path), model=str(tiny_model), output_dir=str(tmp_path / f"curate_{loss}"), loss=loss, loss_kwargs={"beta": 0.1},
                      learning_rate=1e-3, batch_size=4, max_steps=steps, warmup_ratio=0.0, scheduler="linear", shuffle=False,
                      max_grad_norm=1.0, reduction=reduction, progress=False, save_model=False)  # fmt: skip
    result = Trainer(cfg).train()
    assert result.reference_source == "data"
    return [m["loss"] for m in result.metrics]


@pytest.mark.parametrize("loss_type,loss", [("sigmoid", "dpo"), ("ipo", "ipo")])
def test_weighted_trl_training_equals_curate_train(tiny_model, tmp_path, loss_type, loss):
    path = _with_reference(tiny_model, tmp_path)
    got = _trl_losses(tiny_model, path, tmp_path, loss_type, steps=5)
    want = _curate_losses(tiny_model, path, tmp_path, loss, steps=5)
    assert len(got) == len(want) == 5
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-5)
    assert want[-1] != pytest.approx(want[0], abs=1e-3)  # it trained: the loss moved


def test_first_step_loss_is_the_weighted_mean_by_hand(tiny_model, tmp_path):
    """Step 1, before any update: policy = reference, so every DPO loss is log 2 and the weighted mean is log 2 too;
    with the sums of weights differing per batch, `normalized` gives the same, and a unit weight changes nothing."""
    import math

    path = _with_reference(tiny_model, tmp_path, n=8)
    got = _trl_losses(tiny_model, path, tmp_path, "sigmoid", steps=1)
    assert got[0] == pytest.approx(sum(WEIGHTS[:4]) / 4 * math.log(2), abs=1e-5)
    got = _trl_losses(tiny_model, path, tmp_path, "sigmoid", steps=1, reduction="normalized")
    assert got[0] == pytest.approx(math.log(2), abs=1e-5)


def test_unsupported_loss_type_is_refused(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.trl import WeightedDPOTrainer

    path = _with_reference(tiny_model, tmp_path, n=8)
    args = trl.DPOConfig(output_dir=str(tmp_path / "x"), loss_type=["hinge"], use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match="supports one loss_type among sigmoid, ipo"):
        WeightedDPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args, train_dataset=datasets.Dataset.from_parquet(str(path)),
                           processing_class=AutoTokenizer.from_pretrained(tiny_model))  # fmt: skip


def test_trl_export_says_where_the_weights_are(tmp_path):
    from test_cli import curate_cli

    path = tmp_path / "pairs.parquet"
    preference_frames(8)["pairs"].with_columns(weight=pl.Series(WEIGHTS[:8])).write_parquet(path)
    r = curate_cli("export", path, "-o", tmp_path / "trl.jsonl", "--trl")
    assert r.returncode == 0, r.stderr
    msg = " ".join(r.stderr.split())
    assert "`weight` column" in msg and "curate.trl.WeightedDPOTrainer" in msg and "curate train" in msg
    uniform = tmp_path / "uniform.parquet"
    preference_frames(8)["pairs"].write_parquet(uniform)
    r = curate_cli("export", uniform, "-o", tmp_path / "u.jsonl", "--trl")
    assert r.returncode == 0 and "WeightedDPOTrainer" not in r.stderr
