"""The weighted-loss preference trainer: AdamW, warmup + schedule, accumulation, clipping,
checkpoints with exact resume, metrics.jsonl, DDP/FSDP through torchrun.

Weights are applied over the *global* batch: every micro-batch contributes Σ_i w_i·l_i / D, with
D = the number of examples in the global batch (`reduction="mean"`) or Σ w over it (`"normalized"`),
so gradient accumulation and data parallelism give the update of one big batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from curate.errors import CurateError
from curate.lineage import Step
from curate.train import reference
from curate.train.config import TrainConfig
from curate.train.data import Batch, collate, load_preference_data
from curate.train.logps import LogpsModel
from curate.train.losses import LOSSES, NEEDS_REFERENCE, GapQueue, LossOutput

KIND_LOSSES = {"triplets": {"wrpo"}, "ranked": {"multi_dpo"}}
GLOBAL_STATS_LOSSES = {"amapo"}  # statistics over the global batch's margins


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    metrics: list[dict[str, float]] = field(default_factory=list)
    reference_source: str = "none"  # "data", "cache", "computed" or "none" (the loss needs no reference)
    data_step: Step | None = None


def uses_reference(cfg: TrainConfig) -> bool:
    """Whether the loss reads reference log-probs (some losses only in one of their forms)."""
    kw = cfg.loss_kwargs
    if cfg.loss == "gamma_po":
        return kw.get("gamma_base", "simpo") == "dpo"
    if cfg.loss == "wrpo":
        return kw.get("wrpo_base", "dpo") != "simpo"
    return cfg.loss in NEEDS_REFERENCE


def lr_lambda(warmup: int, total: int, kind: str):
    """Linear warmup to the peak, then linear or cosine decay to 0 (or constant)."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(max(progress, 0.0), 1.0)
        return 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


class Trainer:
    """One training run; `train()` runs it to the end (or to `stop_after_steps`) and returns the metrics."""

    def __init__(self, config: TrainConfig) -> None:
        from transformers import AutoTokenizer

        self.cfg = config.validate()
        self.dist = DistInfo.from_env()
        if self.dist.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        self.device = torch.device(config.device) if config.device else (
            torch.device("cuda", self.dist.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        )  # fmt: skip
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.bf16 = self.device.type == "cuda" if config.bf16 is None else config.bf16
        if config.fsdp and self.device.type != "cuda":
            raise CurateError("--fsdp needs CUDA GPUs; use DDP (the default under torchrun) on CPU.")
        self.out = Path(config.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        _seed_everything(config.seed)

        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.data = load_preference_data(
            config.data, self.tokenizer, max_length=config.max_length, max_prompt_length=config.max_prompt_length, use_weights=config.use_weights,
            wrap_plain_prompts=config.wrap_plain_prompts, split=config.split, allow_negative_weights=config.allow_negative_weights,
        )
        allowed = KIND_LOSSES.get(self.data.kind, set(LOSSES) - {"wrpo", "multi_dpo"})
        if config.loss not in allowed:
            raise CurateError(f"loss `{config.loss}` does not train on a `{self.data.kind}` table; use {', '.join(sorted(allowed))}.")
        self.eval_data = None
        if config.eval_data is not None:
            self.eval_data = load_preference_data(
                config.eval_data, self.tokenizer, max_length=config.max_length, max_prompt_length=config.max_prompt_length,
                use_weights=config.use_weights, wrap_plain_prompts=config.wrap_plain_prompts, allow_negative_weights=config.allow_negative_weights,
            )  # fmt: skip
        elif config.eval_fraction is not None:
            self.data, self.eval_data = self.data.split_by_prompt(config.eval_fraction, config.seed)
        margin_ok = {"dpo", "simpo"}
        for d in (self.data, self.eval_data):
            if d is not None and d.has_margin and config.loss not in margin_ok:
                raise CurateError(f"the data has a `margin` column, which loss `{config.loss}` does not use; per-row margins work with "
                                  f"{', '.join(sorted(margin_ok))}.")  # fmt: skip

        self.global_batch = config.batch_size * config.grad_accum * self.dist.world
        self.steps_per_epoch = len(self.data) // self.global_batch
        if self.steps_per_epoch == 0:
            raise CurateError(f"{len(self.data)} examples are fewer than one global batch ({self.global_batch}); lower --batch-size/--grad-accum.")
        self.total_steps = config.max_steps or max(1, math.ceil(config.epochs * self.steps_per_epoch))
        self.resume_dir = self._find_resume()
        self.reference_source = "none"
        if config.lora_r is not None:  # the policy first: the reference is the same model with its adapters disabled
            self.model = self._load_policy()
            if uses_reference(config):
                self._prepare_reference()
        else:
            if uses_reference(config):
                self._prepare_reference()
            self.model = self._load_policy()
        self.gap_queue = GapQueue(seed=config.seed) if config.loss == "gamma_po" else None
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon, weight_decay=config.weight_decay
        )
        warmup = config.warmup_steps if config.warmup_steps is not None else int(config.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(warmup, self.total_steps, config.scheduler))
        self.step = 0
        self.fingerprint = self._fingerprint()
        if self.resume_dir is not None:
            self._check_fingerprint(self.resume_dir)
            self._load_state(self.resume_dir)
        self.diagnostics: list[tuple] = []  # (split, pair_id, epoch, step, weight, loss, chosen, rejected)
        self.best_eval: float | None = None
        self.board = None
        if "tensorboard" in config.report_to and self.dist.main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise CurateError("--report-to tensorboard needs the tensorboard package (pip install 'curate-prefs[tensorboard]').") from exc
            self.board = SummaryWriter(log_dir=str(self.out / "runs"))

    # --- setup -----------------------------------------------------------------------------------

    RESUME_KEYS = ("loss", "loss_kwargs", "batch_size", "grad_accum", "learning_rate", "scheduler", "warmup_ratio", "warmup_steps",
                   "max_length", "max_prompt_length", "use_weights", "weight_mode", "reduction", "seed", "shuffle", "wrap_plain_prompts",
                   "split", "epochs", "max_steps")  # fmt: skip

    def _fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint: the data's content and the training settings."""
        from curate.fingerprint import data_hash

        cfg = self.cfg.to_dict()
        return {"data": data_hash(self.cfg.data), "examples": len(self.data), "world_size": self.dist.world,
                **{k: cfg[k] for k in self.RESUME_KEYS}}  # fmt: skip

    def _check_fingerprint(self, folder: Path) -> None:
        from curate.fingerprint import differences

        state = folder / "trainer_state.json"
        old = json.loads(state.read_text()).get("fingerprint") if state.exists() else None
        if old is None:
            raise CurateError(f"{folder}: the checkpoint records no data/settings fingerprint; it cannot be checked, so it is not resumed.")
        changed = differences(old, json.loads(json.dumps(self.fingerprint)))
        if changed:
            what = "; ".join(f"{k}: {old.get(k)!r} then, {self.fingerprint.get(k)!r} now" for k in changed if k != "data")
            data = "the data file's content changed" if "data" in changed else ""
            raise CurateError(
                f"{folder} was written by a run with other data or settings ({'; '.join(x for x in (data, what) if x)}); resuming would "
                "mix two runs. Resume with the same data and options, or write to a new --output."
            )

    def _find_resume(self) -> Path | None:
        if self.dist.main:  # temporaries of checkpoints interrupted while being written
            for tmp in self.out.glob(".checkpoint-*.tmp"):
                shutil.rmtree(tmp, ignore_errors=True)
        r = self.cfg.resume_from
        if r is None:
            return None
        if r == "auto":
            found = sorted(self.out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
            return found[-1] if found else None
        if not Path(r).is_dir():
            raise CurateError(f"--resume-from {r}: no such checkpoint folder.")
        return Path(r)

    def _load_model(self, path: str | Path) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(self.device)

    def _load_policy(self) -> torch.nn.Module:
        model = getattr(self, "_policy", None)
        if model is None:
            model = self._load_model(self.cfg.model if self.cfg.lora_r is not None else (self.resume_dir or self.cfg.model))
        self._policy = None
        if self.cfg.lora_r is not None:
            model = self._with_lora(model)
        for m in model.modules():  # preference training runs without dropout, as TRL does
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        if self.cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        model.train()
        model = LogpsModel(model)
        if self.cfg.fsdp:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            return FSDP(model, device_id=self.device, use_orig_params=True)
        if self.dist.enabled:
            return torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return model

    def _with_lora(self, model: torch.nn.Module) -> torch.nn.Module:
        """LoRA adapters on `model` (peft): new ones, or those of the checkpoint being resumed."""
        try:
            from peft import LoraConfig, PeftModel, get_peft_model
        except ImportError as exc:
            raise CurateError("--lora-r needs peft (pip install 'curate-prefs[lora]').") from exc
        if self.resume_dir is not None:
            return PeftModel.from_pretrained(model, str(self.resume_dir), is_trainable=True)
        cfg = LoraConfig(r=self.cfg.lora_r, lora_alpha=self.cfg.lora_alpha, lora_dropout=self.cfg.lora_dropout, task_type="CAUSAL_LM",
                         target_modules=self.cfg.lora_target_modules or "all-linear")  # fmt: skip
        return get_peft_model(model, cfg)

    def _prepare_reference(self) -> None:
        """Reference log-probs from the data, the cache, or one no-grad pass (never a 2nd model in the loop).

        Only the examples this run will train on (its steps' global batches) are computed; the cache
        in the output folder keeps them, and a later, longer run computes just the ones still missing.
        """
        ref_path = self.cfg.ref_model or self.cfg.model
        needed = sorted({i for step in range(self.total_steps) for i in self._global_batch(step)})
        jobs = [] if self.data.has_reference else [(self.data, needed, reference.CACHE_NAME, self.cfg.data, "train")]
        if self.eval_data is not None and not self.eval_data.has_reference:
            jobs.append((self.eval_data, list(range(len(self.eval_data))), "reference_logps_eval.pt", self.cfg.eval_data or self.cfg.data,
                         f"eval {self.cfg.eval_fraction}"))  # fmt: skip
        if not jobs:
            self.reference_source = "data"
            return
        model, computed = None, False
        for data, wanted, name, source, tag in jobs:
            key = reference.cache_key(source, ref_path, self.cfg.max_length, self.cfg.max_prompt_length, len(data), tag)
            known = reference.load_cache(self.out / name, key) or {}
            missing = [i for i in wanted if i not in known]
            if missing:
                if model is None:
                    model = self._reference_model(ref_path)
                with self._adapters_disabled(model):
                    ref = reference.compute_reference(model, data, pad_id=self.pad_id, batch_size=self.cfg.batch_size, device=self.device,
                                                      chunk_size=self.cfg.logps_chunk_size, indices=missing[self.dist.rank :: self.dist.world],
                                                      autocast=self.bf16, progress=self.dist.main and self.cfg.progress)  # fmt: skip
                if self.dist.enabled:
                    parts: list[dict] = [{} for _ in range(self.dist.world)]
                    dist.all_gather_object(parts, ref)
                    ref = {k: v for part in parts for k, v in part.items()}
                known.update(ref)
                if self.dist.main:
                    reference.save_cache(self.out / name, key, known)
                computed = True
            reference.attach(data, known, wanted)
        self.reference_source = "computed" if computed else "cache"
        if model is not None and self.cfg.lora_r is None and self.cfg.ref_model is None and self.resume_dir is None:
            self._policy = model  # the reference was the initial policy: train this very model

    def _reference_model(self, ref_path: str) -> torch.nn.Module:
        """The policy itself under LoRA (its adapters are disabled while the reference is computed), else the reference model."""
        if self.cfg.lora_r is not None and self.cfg.ref_model is None:
            return self._unwrapped()
        return self._load_model(ref_path)

    def _adapters_disabled(self, model: torch.nn.Module):
        disable = getattr(model, "disable_adapter", None)
        return disable() if self.cfg.lora_r is not None and callable(disable) else contextlib.nullcontext()

    # --- one optimizer step ---------------------------------------------------------------------------

    def _global_batch(self, step: int) -> list[int]:
        """The example indices of a global step (an epoch is a seeded permutation; the same whatever the world size)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        n = len(self.data)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed + epoch)) if self.cfg.shuffle else torch.arange(n)
        return perm[k * self.global_batch : (k + 1) * self.global_batch].tolist()

    def _indices_for(self, step: int) -> list[list[int]]:
        """This process's micro-batches for a global step (the same global batch whatever the world size)."""
        batch = self._global_batch(step)
        per_rank = self.cfg.batch_size * self.cfg.grad_accum
        mine = batch[self.dist.rank * per_rank : (self.dist.rank + 1) * per_rank]
        return [mine[i : i + self.cfg.batch_size] for i in range(0, len(mine), self.cfg.batch_size)]

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _policy_logps(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        lp, n = self.model(batch.input_ids, batch.attention_mask, batch.loss_mask, self.cfg.logps_chunk_size)
        B = batch.index.numel()
        return lp.view(batch.n_responses, B).T, n.view(batch.n_responses, B).T

    def loss_on(self, batch: Batch, step: int, extra: dict[str, Any] | None = None) -> LossOutput:
        """The unweighted per-example losses of a batch under the configured loss (policy log-probs kept in `last_logps`)."""
        lp, n = self._policy_logps(batch)
        self.last_logps = lp.detach()
        ref = batch.ref
        kw: dict[str, Any] = {**self.cfg.loss_kwargs, **(extra or {})}
        if self.cfg.weight_mode == "logits":
            kw["logit_weights"] = batch.weights
        if self.gap_queue is not None:
            kw["queue"] = self.gap_queue
        if batch.beta is not None:
            kw["beta"] = batch.beta.to(lp.dtype)  # per-row β from the data
        if batch.margin is not None:
            kw["margin"] = batch.margin.to(lp.dtype)  # per-row target margin from the data
        if self.cfg.loss == "amapo" and self.cfg.amapo_stats == "micro" and self.dist.enabled and "batch_margins" not in kw:
            kw["batch_margins"] = self._gather((lp[:, 0] / n[:, 0] - lp[:, 1] / n[:, 1]).detach().float())
        fn = LOSSES[self.cfg.loss]
        if self.data.kind == "ranked":
            return fn(policy_logps=lp, reference_logps=ref, lengths=n, mask=batch.response_mask, rewards=batch.rewards, **kw)
        col = lambda t, r: None if t is None else t[:, r]  # noqa: E731
        if self.data.kind == "triplets":
            return fn(policy_chosen_logps=lp[:, 0], policy_chosen_target_logps=lp[:, 1], policy_rejected_logps=lp[:, 2],
                      reference_chosen_logps=col(ref, 0), reference_chosen_target_logps=col(ref, 1), reference_rejected_logps=col(ref, 2),
                      chosen_lengths=n[:, 0], chosen_target_lengths=n[:, 1], rejected_lengths=n[:, 2],
                      step=step, total_steps=self.total_steps, **kw)  # fmt: skip
        return fn(policy_chosen_logps=lp[:, 0], policy_rejected_logps=lp[:, 1], reference_chosen_logps=col(ref, 0),
                  reference_rejected_logps=col(ref, 1), chosen_lengths=n[:, 0], rejected_lengths=n[:, 1], **kw)  # fmt: skip

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        """`t` from every process, concatenated (micro-batches of equal size)."""
        parts = [torch.zeros_like(t) for _ in range(self.dist.world)]
        dist.all_gather(parts, t)
        return torch.cat(parts)

    def _all_sum(self, values: list[float]) -> list[float]:
        if not self.dist.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def _global_margins(self, batches: list[Batch]) -> torch.Tensor:
        """AMaPO's batch statistics over the whole global batch: a no-grad pass, gathered across processes."""
        with torch.no_grad(), self._autocast():
            ms = []
            for b in batches:
                lp, n = self._policy_logps(b)
                ms.append(lp[:, 0] / n[:, 0] - lp[:, 1] / n[:, 1])
        m = torch.cat(ms).float()
        if self.dist.enabled:
            parts = [torch.zeros_like(m) for _ in range(self.dist.world)]
            dist.all_gather(parts, m)
            m = torch.cat(parts)
        return m

    def train_step(self, micro: list[list[int]]) -> dict[str, float]:
        """Forward/backward over this process's micro-batches, then one optimizer step; returns the step's metrics."""
        t0 = time.perf_counter()
        batches = [collate(self.data, idx, self.pad_id).to(self.device) for idx in micro]
        local_w = float(sum(b.weights.sum() for b in batches))
        if self.cfg.reduction == "normalized" and self.cfg.weight_mode == "loss":
            denom = self._all_sum([local_w])[0]
        else:
            denom = float(self.global_batch)
        extra = {}
        if self.cfg.loss in GLOBAL_STATS_LOSSES and self.cfg.amapo_stats == "global" and (len(batches) > 1 or self.dist.enabled):
            extra["batch_margins"] = self._global_margins(batches)
        sums = dict.fromkeys(("loss", "chosen", "rejected", "acc", "n", "tokens", "weight", "logps_chosen", "logps_rejected"), 0.0)
        epoch = self.step // self.steps_per_epoch
        for j, b in enumerate(batches):
            sync = self.dist.enabled and not self.cfg.fsdp and j < len(batches) - 1
            ctx = self.model.no_sync() if sync else contextlib.nullcontext()
            with ctx:
                with self._autocast():
                    out = self.loss_on(b, self.step, extra)
                losses = out.losses.float()
                per = losses * b.weights if self.cfg.weight_mode == "loss" else losses
                objective = per.sum() / denom
                (objective * self.dist.world).backward()  # DDP averages gradients over processes
            sums["loss"] += float(objective.detach())
            sums["chosen"] += float(out.chosen_rewards.float().sum())
            sums["rejected"] += float(out.rejected_rewards.float().sum())
            sums["acc"] += float((out.chosen_rewards > out.rejected_rewards).float().sum())
            sums["n"] += b.index.numel()
            sums["tokens"] += b.n_tokens
            sums["weight"] += float(b.weights.sum())
            sums["logps_chosen"] += float(self.last_logps[:, 0].float().sum())
            sums["logps_rejected"] += float(self.last_logps[:, -1].float().sum())
            if self.cfg.diagnostics:
                self._record("train", b, out, losses, epoch, self.step + 1)
        grad_norm = self._clip()
        lr = self.scheduler.get_last_lr()[0]  # the rate this step uses (TRL logs the same)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        keys = list(sums)
        totals = dict(zip(keys, self._all_sum([sums[k] for k in keys]), strict=True))
        n = totals["n"]
        elapsed = time.perf_counter() - t0
        return {
            "loss": totals["loss"],
            "rewards/chosen": totals["chosen"] / n,
            "rewards/rejected": totals["rejected"] / n,
            "rewards/margins": (totals["chosen"] - totals["rejected"]) / n,
            "rewards/accuracies": totals["acc"] / n,
            "logps/chosen": totals["logps_chosen"] / n,
            "logps/rejected": totals["logps_rejected"] / n,
            "weight_mean": totals["weight"] / n,
            "grad_norm": grad_norm,
            "lr": lr,
            "tokens_per_s": totals["tokens"] / elapsed if elapsed > 0 else float("nan"),
        }

    def _record(self, split: str, b: Batch, out: LossOutput, losses: torch.Tensor, epoch: int, step: int) -> None:
        """Per-example diagnostics from the forward pass that was computed anyway (no extra compute)."""
        data = self.data if split == "train" else self.eval_data
        ids = [data.examples[i].pair_id for i in b.index.tolist()]
        rows = zip(ids, b.weights.tolist(), losses.detach().tolist(), out.chosen_rewards.float().tolist(), out.rejected_rewards.float().tolist(),
                   strict=True)  # fmt: skip
        self.diagnostics.extend((split, pid, epoch, step, w, loss, c, r) for pid, w, loss, c, r in rows)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss (weighted as in training, and unweighted), rewards, margins and accuracies on the eval data, one no-grad pass."""
        data = self.eval_data
        mine = list(range(self.dist.rank, len(data), self.dist.world))
        self.model.eval()
        sums = dict.fromkeys(("wloss", "loss", "w", "chosen", "rejected", "acc", "wacc", "n"), 0.0)
        epoch = self.step // self.steps_per_epoch
        train_data, self.data = self.data, data  # loss_on reads the table kind and lengths from self.data
        try:
            for start in range(0, len(mine), self.cfg.batch_size):
                b = collate(data, mine[start : start + self.cfg.batch_size], self.pad_id).to(self.device)
                with self._autocast():
                    out = self.loss_on(b, self.step)
                losses, w = out.losses.float(), b.weights
                won = (out.chosen_rewards > out.rejected_rewards).float()
                sums["wloss"] += float((w * losses).sum())
                sums["loss"] += float(losses.sum())
                sums["w"] += float(w.sum())
                sums["chosen"] += float(out.chosen_rewards.float().sum())
                sums["rejected"] += float(out.rejected_rewards.float().sum())
                sums["acc"] += float(won.sum())
                sums["wacc"] += float((w * won).sum())
                sums["n"] += b.index.numel()
                if self.cfg.diagnostics:
                    self._record_eval(b, out, losses, epoch)
        finally:
            self.data = train_data
            self.model.train()
        keys = list(sums)
        t = dict(zip(keys, self._all_sum([sums[k] for k in keys]), strict=True))
        n, w = max(t["n"], 1.0), t["w"] or 1.0
        return {"eval/loss": t["wloss"] / n, "eval/loss_unweighted": t["loss"] / n, "eval/rewards/chosen": t["chosen"] / n,
                "eval/rewards/rejected": t["rejected"] / n, "eval/rewards/margins": (t["chosen"] - t["rejected"]) / n,
                "eval/rewards/accuracies": t["acc"] / n, "eval/rewards/accuracies_weighted": t["wacc"] / w}  # fmt: skip

    def _record_eval(self, b: Batch, out: LossOutput, losses: torch.Tensor, epoch: int) -> None:
        ids = [self.eval_data.examples[i].pair_id for i in b.index.tolist()]
        rows = zip(ids, b.weights.tolist(), losses.tolist(), out.chosen_rewards.float().tolist(), out.rejected_rewards.float().tolist(), strict=True)
        self.diagnostics.extend(("eval", pid, epoch, self.step, w, loss, c, r) for pid, w, loss, c, r in rows)

    def write_diagnostics(self) -> Path | None:
        """OUTPUT/diagnostics.parquet: one row per (example, epoch) of training and per evaluation, gathered from every process."""
        if not self.cfg.diagnostics:
            return None
        rows = self.diagnostics
        if self.dist.enabled:
            parts: list[list] = [[] for _ in range(self.dist.world)]
            dist.all_gather_object(parts, rows)
            rows = [r for part in parts for r in part]
        if not self.dist.main:
            return None
        import polars as pl

        from curate.io import write

        cols = ["split", "pair_id", "epoch", "step", "weight", "loss", "chosen_reward", "rejected_reward"]
        df = pl.DataFrame(rows, schema=dict(zip(cols, (pl.String, pl.String, pl.Int64, pl.Int64, pl.Float64, pl.Float64, pl.Float64, pl.Float64),
                                                       strict=True)), orient="row")  # fmt: skip
        df = df.with_columns((pl.col("chosen_reward") - pl.col("rejected_reward")).alias("margin"),
                             (pl.col("chosen_reward") > pl.col("rejected_reward")).alias("correct")).sort("split", "step", "pair_id",
                                                                                                          maintain_order=True)  # fmt: skip
        path = self.out / "diagnostics.parquet"
        write(df, path)
        return path

    def _resume_diagnostics(self) -> None:
        """Rows an interrupted run recorded up to the step resumed from (later rows are recomputed)."""
        path = self.out / "diagnostics.parquet"
        if self.resume_dir is None or not path.exists() or not self.cfg.diagnostics:
            return
        import polars as pl

        old = pl.read_parquet(path).filter(pl.col("step") <= self.step).select("split", "pair_id", "epoch", "step", "weight", "loss",
                                                                            "chosen_reward", "rejected_reward")  # fmt: skip
        if self.dist.main:
            self.diagnostics = [tuple(r) for r in old.iter_rows()]

    def _log(self, row: dict[str, Any], metrics_path: Path) -> None:
        if not self.dist.main:
            return
        with metrics_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.board is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.board.add_scalar(k, v, row["step"])
            self.board.flush()

    def _after_eval(self, metrics: dict[str, float]) -> None:
        """Keep the model with the lowest eval loss in OUTPUT/best (with --save-best)."""
        loss = metrics["eval/loss"]
        if not self.cfg.save_best or (self.best_eval is not None and loss >= self.best_eval):
            return
        self.best_eval = loss
        best = self.out / "best"
        tmp = self._empty_folder(self.out / ".best.tmp")
        self._save_model(tmp)
        if self.dist.main:
            (tmp / "best.json").write_text(json.dumps({"step": self.step, **metrics}, indent=2))
            shutil.rmtree(best, ignore_errors=True)
            os.replace(tmp, best)

    def _clip(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm is not None else float("inf")
        if self.cfg.fsdp:
            return float(self.model.clip_grad_norm_(max_norm))
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    # --- the loop ------------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Run to `total_steps` (or `stop_after_steps`), checkpointing and logging; save the model at the end."""
        metrics_path = self.out / "metrics.jsonl"
        history = self._metrics_until(metrics_path, self.step)
        self._resume_diagnostics()
        stop = min(self.total_steps, self.cfg.stop_after_steps or self.total_steps)
        progress = _Progress(self.dist.main and self.cfg.progress, self.total_steps, self.step)
        with progress:
            while self.step < stop:
                row = self.train_step(self._indices_for(self.step))
                self.step += 1
                row = {"step": self.step, "epoch": self.step / self.steps_per_epoch, **row}
                due = self.eval_data is not None and ((self.cfg.eval_steps and self.step % self.cfg.eval_steps == 0) or self.step == self.total_steps)
                if due:
                    evaluation = self.evaluate()
                    row.update(evaluation)
                    self._after_eval(evaluation)
                history.append(row)
                if self.step % self.cfg.logging_steps == 0 or self.step == stop or due:
                    self._log(row, metrics_path)
                progress.update(row)
                if self.cfg.save_steps and self.step % self.cfg.save_steps == 0 and self.step < self.total_steps:
                    self.save_checkpoint()
        if self.step < self.total_steps and (not self.cfg.save_steps or self.step % self.cfg.save_steps):
            self.save_checkpoint()  # stopped early: leave a checkpoint to resume from
        if self.step >= self.total_steps and self.cfg.save_model:
            self.save_final()
        self.write_diagnostics()
        if self.board is not None:
            self.board.close()
        if self.dist.enabled:
            dist.barrier()
        return TrainResult(self.out, self.step, history, self.reference_source, self.data.step)

    def _metrics_until(self, path: Path, step: int) -> list[dict[str, float]]:
        """Earlier metrics (kept up to the resumed step; later lines came from a run that was cut off)."""
        if not path.exists():
            return []
        rows, torn = [], 0
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                torn += 1  # a line cut off when the run was killed while writing it
        if torn and self.dist.main:
            from curate.console import err_console

            err_console.print(f"[yellow]note:[/] {path}: dropped {torn} incomplete line(s) left by an interrupted run", highlight=False)
        keep = [r for r in rows if r.get("step", step + 1) <= step]
        if self.dist.main and (len(keep) != len(rows) or torn):
            path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        if self.dist.enabled:
            dist.barrier()
        return keep

    # --- checkpoints -------------------------------------------------------------------------------

    def _unwrapped(self) -> torch.nn.Module:
        """The transformers model inside the DDP/FSDP and log-prob wrappers."""
        return getattr(self.model, "module", self.model).lm

    def _full_state_dict(self) -> dict[str, torch.Tensor] | None:
        if not self.cfg.fsdp:
            return None
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
            return {k.removeprefix("lm."): v for k, v in self.model.state_dict().items()}

    def _save_model(self, folder: Path) -> None:
        state = self._full_state_dict()
        if self.dist.main:
            self._unwrapped().save_pretrained(folder, state_dict=state)
            self.tokenizer.save_pretrained(folder)

    def _empty_folder(self, path: Path) -> Path:
        """`path` as a new empty folder (made by the main rank; every rank waits for it)."""
        if self.dist.main:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        if self.dist.enabled:
            dist.barrier()
        return path

    def save_checkpoint(self) -> Path:
        """Model, optimizer, scheduler, RNG, data position and loss state: an exact resume point (diagnostics so far too)."""
        self.write_diagnostics()
        final = self.out / f"checkpoint-{self.step}"
        tmp = self._empty_folder(self.out / f".checkpoint-{self.step}.tmp")
        self._save_model(tmp)
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "rng": _rng_state(), "gap_queue": self.gap_queue.state_dict() if self.gap_queue else None},
            tmp / f"state_rank{self.dist.rank}.pt",
        )
        if self.dist.main:
            torch.save({"scheduler": self.scheduler.state_dict(), "step": self.step}, tmp / "trainer_state.pt")
            (tmp / "trainer_state.json").write_text(json.dumps({"step": self.step, "total_steps": self.total_steps, "world_size": self.dist.world,
                                                                "fingerprint": self.fingerprint, "config": self.cfg.to_dict()}, indent=2))  # fmt: skip
        if self.dist.enabled:
            dist.barrier()
        if self.dist.main:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        if self.dist.enabled:
            dist.barrier()
        return final

    def _load_state(self, folder: Path) -> None:
        shared = load_checkpoint_file(folder / "trainer_state.pt")
        mine = folder / f"state_rank{self.dist.rank}.pt"
        if not mine.exists():
            raise CurateError(f"{folder}: no state for process {self.dist.rank}; resume with the same number of processes.")
        state = load_checkpoint_file(mine)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(shared["scheduler"])
        if self.gap_queue is not None and state["gap_queue"] is not None:
            self.gap_queue.load_state_dict(state["gap_queue"])
        _set_rng_state(state["rng"])
        self.step = int(shared["step"])

    def save_final(self) -> None:
        """The trained model (with LoRA: the adapters, and with `merge_lora` the merged model in OUTPUT/merged) and the config."""
        self._save_model(self.out)
        if self.cfg.lora_r is not None and self.cfg.merge_lora and self.dist.main:
            import copy

            merged = copy.deepcopy(self._unwrapped()).merge_and_unload()
            merged.save_pretrained(self.out / "merged")
            self.tokenizer.save_pretrained(self.out / "merged")
        if self.dist.main:
            import yaml

            (self.out / "train_config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))


def train(config: TrainConfig | dict | str) -> TrainResult:
    """Train with `config` (a TrainConfig, a dict of its fields, or a YAML file path)."""
    if isinstance(config, str):
        config = TrainConfig.from_yaml(config)
    elif isinstance(config, dict):
        config = TrainConfig(**config)
    return Trainer(config).train()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """A checkpoint state file, loaded with `weights_only=True`: tensors and plain values only, never pickled code."""
    import pickle

    try:
        return torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CurateError(
            f"{path}: refused to load: it is not a checkpoint curate wrote (only tensors and plain values are read, no pickled "
            f"objects; {first[:200]}). Resume from a checkpoint this version of curate saved, or start afresh."
        ) from None


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values (loadable with weights_only=True)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _Progress:
    """A rich progress bar over optimizer steps showing the latest loss (only on the main process)."""

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self.enabled, self.total, self.start = enabled, total, start
        self._p = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from curate.console import err_console

            self._p = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                               TimeRemainingColumn(), console=err_console, disable=not err_console.is_terminal)  # fmt: skip
            self._p.__enter__()
            self._task = self._p.add_task("train", total=self.total, completed=self.start, info="")
        return self

    def update(self, row: dict[str, float]) -> None:
        if self._p is not None:
            info = f"loss {row['loss']:.4f}  acc {row['rewards/accuracies']:.2f}"
            self._p.update(self._task, completed=row["step"], info=info)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
