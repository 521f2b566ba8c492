"""Trainer features for real runs: LoRA, eval split, TensorBoard, per-sample diagnostics in SQL, per-row β/margin, fidelity fixes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import polars as pl
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import curate  # noqa: E402
from conftest import ROOT, preference_frames  # noqa: E402
from curate.train import TrainConfig, Trainer  # noqa: E402
from curate.train.data import collate  # noqa: E402
from test_trainer import config, full_logps, write  # noqa: E402


def test_lora_learns_matches_full_fine_tuning_at_step_1_and_disabled_adapters_are_the_base(tiny_model, tmp_path):
    pytest.importorskip("peft")
    data = write(tmp_path, "pairs", 64)
    lora = Trainer(config(data, tiny_model, tmp_path / "lora", loss="dpo", lora_r=8, lora_alpha=16, learning_rate=1e-2, max_steps=30,
                          eval_fraction=0.25))  # fmt: skip
    before = lora.evaluate()
    result = lora.train()
    after = [r for r in result.metrics if "eval/loss" in r][-1]
    assert before["eval/rewards/accuracies"] == 0.0 and after["eval/rewards/accuracies"] > 0.7  # held-out prompts learned
    full = Trainer(config(data, tiny_model, tmp_path / "full", loss="dpo", max_steps=1, eval_fraction=0.25)).train()
    assert result.metrics[0]["loss"] == pytest.approx(full.metrics[0]["loss"], abs=1e-6)  # LoRA starts as the base model
    # the adapters are trained; disabled, the model is the base model again
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = collate(lora.data, list(range(8)), lora.pad_id)
    peft_model = lora._unwrapped()
    with peft_model.disable_adapter():
        off = full_logps(peft_model, batch)
    torch.testing.assert_close(off, full_logps(base, batch), rtol=0, atol=1e-6)
    assert (full_logps(peft_model, batch) - off).abs().max() > 1e-3
    assert (tmp_path / "lora" / "adapter_config.json").exists() and not (tmp_path / "lora" / "model.safetensors").exists()


def test_lora_merged_model_is_saved(tiny_model, tmp_path):
    pytest.importorskip("peft")
    data = write(tmp_path, "pairs", 16)
    Trainer(config(data, tiny_model, tmp_path / "o", loss="simpo", lora_r=4, merge_lora=True, max_steps=2)).train()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "o" / "merged")
    assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model).parameters())


def test_diagnostics_equal_losses_recomputed_independently(tiny_model, tmp_path):
    beta, margin = [0.1, 0.5] * 8, [0.0, 0.3, -0.2, 0.1] * 4
    df = preference_frames(16)["pairs"].with_columns(weight=pl.Series([1.0, 2.0] * 8), beta=pl.Series(beta), margin=pl.Series(margin),
                                                     ref_chosen_logps=pl.Series([-20.0] * 16), ref_rejected_logps=pl.Series([-15.0] * 16),
                                                     pair_id=pl.Series([f"p{i}" for i in range(16)]))  # fmt: skip
    path = tmp_path / "pairs.parquet"
    df.write_parquet(path)
    t = Trainer(config(path, tiny_model, tmp_path / "o", loss="dpo", batch_size=16, max_steps=1, shuffle=False, save_model=False))
    # independently: full logits of the untouched model, then DPO with each row's β and margin by hand
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = collate(t.data, list(range(16)), t.pad_id)
    with torch.no_grad():
        lp = full_logps(fresh, batch).view(2, 16).T
    want = []
    for i in range(16):
        h = (lp[i, 0].item() + 20.0) - (lp[i, 1].item() + 15.0)
        z = beta[i] * h - margin[i]
        want.append(-math.log(1 / (1 + math.exp(-z))))
    t.train()
    diag = pl.read_parquet(tmp_path / "o" / "diagnostics.parquet").sort("pair_id", descending=False)
    got = {r["pair_id"]: r for r in diag.iter_rows(named=True)}
    for i in range(16):
        row = got[f"p{i}"]
        assert row["loss"] == pytest.approx(want[i], abs=1e-6)
        assert (row["split"], row["epoch"], row["step"], row["weight"]) == ("train", 0, 1, [1.0, 2.0][i % 2])
        assert row["chosen_reward"] == pytest.approx(beta[i] * (lp[i, 0].item() + 20.0), abs=1e-5)
        assert row["correct"] == (row["chosen_reward"] > row["rejected_reward"])


def test_worked_example_pairs_never_learned(tiny_model, tmp_path):
    """README: train, join the diagnostics to the pairs in SQL, find what the model never learns, feed it to select."""
    pairs = tmp_path / "pairs.parquet"
    r = subprocess.run([sys.executable, "-m", "curate.cli", "pairs", ROOT / "examples/data/hh_harmless_conversations.parquet", "--strategy",
                        "best-vs-worst", "-o", pairs], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "curate.cli", "train", pairs, "--model", tiny_model, "--loss", "dpo", "--lr", "5e-3", "--batch-size", "8",
                        "--epochs", "3", "--max-length", "128", "--eval-fraction", "0.2", "-o", out], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    query = """
        select p.pair_id, avg(d.margin) as mean_margin, stddev_pop(d.margin) as margin_sd, avg(d.correct::int) as learned
        from diagnostics d join pairs p using (pair_id) where d.split = 'train'
        group by 1 having count(*) = 3 order by mean_margin limit 10
    """
    hard = tmp_path / "hard.parquet"
    r = subprocess.run([sys.executable, "-m", "curate.cli", "sql", query, "--pairs", pairs, "--diagnostics", out, "-o", hard], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    found = pl.read_parquet(hard)
    diag = pl.read_parquet(out / "diagnostics.parquet").filter(pl.col("split") == "train")
    # independently: the same aggregate in Polars
    want = diag.group_by("pair_id").agg(pl.col("margin").mean().alias("m"), pl.len().alias("n")).filter(pl.col("n") == 3).sort("m").head(10)
    assert found["pair_id"].to_list() == want["pair_id"].to_list()
    assert set(diag["epoch"].unique().to_list()) == {0, 1, 2}
    ids = ",".join(f"'{x}'" for x in found["pair_id"].to_list())
    sel = tmp_path / "again.parquet"
    r = subprocess.run([sys.executable, "-m", "curate.cli", "select", pairs, "--where", f"pair_id IN ({ids})", "-o", sel], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr and pl.read_parquet(sel).height == 10
    eval_rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "eval/loss" in line]
    assert eval_rows and {"eval/loss", "eval/loss_unweighted", "eval/rewards/accuracies", "eval/rewards/margins"} <= set(eval_rows[-1])


def test_eval_best_checkpoint_and_tensorboard(tiny_model, tmp_path):
    pytest.importorskip("tensorboard")
    data = write(tmp_path, "pairs", 48)
    r = Trainer(config(data, tiny_model, tmp_path / "o", loss="dpo", max_steps=6, eval_fraction=0.25, eval_steps=2, save_best=True,
                       report_to=["tensorboard"])).train()  # fmt: skip
    evals = [m for m in r.metrics if "eval/loss" in m]
    assert [m["step"] for m in evals] == [2, 4, 6]
    best = json.loads((tmp_path / "o" / "best" / "best.json").read_text())
    assert best["eval/loss"] == min(m["eval/loss"] for m in evals) and (tmp_path / "o" / "best" / "model.safetensors").exists()
    events = list((tmp_path / "o" / "runs").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert {"loss", "rewards/margins", "eval/loss", "logps/chosen"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("eval/loss")] == [2, 4, 6]


def test_logged_lr_is_the_one_the_step_used(tiny_model, tmp_path):
    data = write(tmp_path, "pairs", 32)
    r = Trainer(config(data, tiny_model, tmp_path / "o", loss="dpo", max_steps=4, learning_rate=1e-4, scheduler="linear", save_model=False)).train()
    assert [m["lr"] for m in r.metrics] == pytest.approx([1e-4, 0.75e-4, 0.5e-4, 0.25e-4])  # TRL logs 1e-4 first, too


def test_amapo_statistics_from_the_current_forward_pass(tiny_model, tmp_path):
    """Default (the official code): μ, s of each micro-batch; `global`: of the whole accumulated global batch."""
    from curate.train.losses import LOSSES

    data = write(tmp_path, "pairs", 16, weight=[1.0] * 16)
    for stats in ("micro", "global"):
        t = Trainer(config(data, tiny_model, tmp_path / stats, loss="amapo", batch_size=4, grad_accum=2, max_steps=1, shuffle=False,
                           amapo_stats=stats, save_model=False))  # fmt: skip
        micro = t._indices_for(0)
        batches = [collate(t.data, idx, t.pad_id) for idx in micro]
        with torch.no_grad():
            margins = []
            for b in batches:
                lp, n = t._policy_logps(b)
                margins.append((lp, n))
        # by hand from the same log-probs
        def loss(lp, n, batch_margins=None):
            return LOSSES["amapo"](policy_chosen_logps=lp[:, 0], policy_rejected_logps=lp[:, 1], chosen_lengths=n[:, 0], rejected_lengths=n[:, 1],
                                   batch_margins=batch_margins).losses  # fmt: skip
        all_m = torch.cat([lp[:, 0] / n[:, 0] - lp[:, 1] / n[:, 1] for lp, n in margins])
        want = [loss(lp, n, None if stats == "micro" else all_m) for lp, n in margins]
        expected = sum(float(w.sum()) for w in want) / 8
        row = t.train()
        assert row.metrics[0]["loss"] == pytest.approx(expected, abs=1e-5)


def test_select_top_keeps_int_fraction():
    from curate.lineage import Step

    df = pl.DataFrame({"prompt_id": [str(i) for i in range(299)], "prompt": ["p"] * 299, "chosen": ["a"] * 299, "rejected": ["b"] * 299,
                       "score": [float(i) for i in range(299)]})  # fmt: skip
    out = curate.select(df.lazy(), top=0.4, by="score", step=Step("s")).collect()
    assert out.height == int(0.4 * 299) == 119  # the alignment-potential code's int(), not a rounding (120)


def test_gpu_check_smoke_on_cpu():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    parts = {json.loads(line)["part"]: json.loads(line) for line in r.stdout.splitlines() if line.startswith('{"part"')}
    assert {"device", "curate", "trl", "fsdp", "pytest -m gpu"} <= set(parts)
    assert parts["curate"]["tokens_per_s"] > 0 and "error" not in parts["curate"] and "error" not in parts["trl"]


def test_margin_column_with_a_loss_that_ignores_it_is_refused(tiny_model, tmp_path):
    from curate.errors import CurateError

    data = write(tmp_path, "pairs", 8, margin=[0.1] * 8)
    with pytest.raises(CurateError, match="per-row margins work with dpo, simpo"):
        TrainConfig  # noqa: B018
        Trainer(config(data, tiny_model, tmp_path / "o", loss="ipo"))


def test_pair_ids_flow_from_pairs_through_export(tmp_path):
    pairs = curate.pairs(curate.read(ROOT / "examples/data/arena_v1_17models.parquet", drop_invalid=True), strategy="best-vs-worst").collect()
    assert pairs["pair_id"].n_unique() == pairs.height and pairs["pair_id"][0].count(":") == 2
    curate.write(pairs, tmp_path / "p.parquet")
    curate.export(tmp_path / "p.parquet", tmp_path / "t.jsonl", trl=True)
    assert pl.read_ndjson(tmp_path / "t.jsonl")["pair_id"].to_list() == pairs["pair_id"].to_list()
    ranked = curate.rank(curate.read(ROOT / "examples/data/arena_v1_17models.parquet", drop_invalid=True)).collect()
    assert ranked["pair_id"].to_list() == ranked["prompt_id"].to_list()


def test_per_row_margin_reaches_training(tiny_model, tmp_path):
    """Step 1, policy = reference: h = 0, so DPO's loss is −log σ(−m) = log(1 + e^m) per row, by hand."""
    data = write(tmp_path, "pairs", 8, margin=[0.0, 1.0, -1.0, 2.0] * 2)
    t = Trainer(config(data, tiny_model, tmp_path / "o", loss="dpo", batch_size=8, max_steps=1, shuffle=False, save_model=False))
    r = t.train()
    want = sum(math.log(1 + math.exp(m)) for m in [0.0, 1.0, -1.0, 2.0] * 2) / 8
    assert r.metrics[0]["loss"] == pytest.approx(want, abs=1e-5)


def test_diagnostics_across_epochs_and_resume(tiny_model, tmp_path):
    data = write(tmp_path, "pairs", 16)
    cfg = dict(loss="dpo", batch_size=8, epochs=3, save_steps=2)
    Trainer(config(data, tiny_model, tmp_path / "o", stop_after_steps=3, **cfg)).train()
    Trainer(config(data, tiny_model, tmp_path / "o", resume_from="auto", **cfg)).train()
    Trainer(config(data, tiny_model, tmp_path / "whole", **cfg)).train()
    a = pl.read_parquet(tmp_path / "o" / "diagnostics.parquet")
    b = pl.read_parquet(tmp_path / "whole" / "diagnostics.parquet")
    assert a.height == b.height == 16 * 3 and a.select("pair_id", "epoch", "step").equals(b.select("pair_id", "epoch", "step"))
    assert (a["loss"] - b["loss"]).abs().max() < 1e-5
    assert a.group_by("pair_id").len()["len"].to_list() == [3] * 16
