"""Trainer configuration: one dataclass, loadable from YAML, with the CLI's defaults."""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import CurateError

SCHEDULERS = ("linear", "cosine", "constant")
WEIGHT_MODES = ("loss", "logits")
REDUCTIONS = ("mean", "normalized")


@dataclass
class TrainConfig:
    """Everything a training run needs; `curate train` fills it from options or `--config FILE.yaml`."""

    data: str
    model: str
    output_dir: str
    loss: str = "dpo"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)  # beta, label_smoothing, gamma_beta_ratio, ...
    ref_model: str | None = None  # default: the initial policy (`model`)
    learning_rate: float = 1e-6
    batch_size: int = 4  # per process, per micro-batch
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    scheduler: str = "linear"
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float | None = 1.0
    seed: int = 0
    shuffle: bool = True
    max_length: int = 1024
    max_prompt_length: int = 512
    use_weights: bool = True  # read the data's `weight` column
    wrap_plain_prompts: bool = False  # plain-string prompts through the chat template as one user turn (TRL: no template)
    split: str | None = None  # the split of a dataset folder to train on
    allow_negative_weights: bool = False  # a negative weight pushes the model away from the chosen response
    eval_data: str | None = None  # a held-out pairs/triplets/ranked table
    eval_fraction: float | None = None  # or: this fraction of the prompts, held out (seeded)
    eval_steps: int | None = None  # evaluate every N steps (and at the end); default: at the end only
    save_best: bool = False  # keep the model with the lowest eval loss in OUTPUT/best
    report_to: list[str] = field(default_factory=list)  # "tensorboard": event files in OUTPUT/runs
    diagnostics: bool = True  # OUTPUT/diagnostics.parquet: one row per (pair, epoch) and per eval
    amapo_stats: str = "micro"  # AMaPO's μ, s: "micro" (this forward pass, all processes; the official code) or "global"
    lora_r: int | None = None  # LoRA rank (peft); None: full fine-tuning
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None  # default: every linear layer but the output head
    merge_lora: bool = False  # also save the merged model in OUTPUT/merged
    weight_mode: str = "loss"
    reduction: str = "mean"
    save_steps: int | None = None
    resume_from: str | None = None  # a checkpoint folder, or "auto" for the latest in output_dir
    stop_after_steps: int | None = None  # end the run early (as a preemption would), checkpointing first
    logging_steps: int = 1
    gradient_checkpointing: bool = False
    bf16: bool | None = None  # None: bf16 autocast on CUDA, fp32 on CPU
    logps_chunk_size: int = 32  # output-head positions per chunk (curate.train.logps.CHUNK_SIZE)
    fsdp: bool = False
    device: str | None = None
    save_model: bool = True
    progress: bool = True

    def validate(self) -> "TrainConfig":
        from curate.train.losses import LOSSES

        check_types(self)
        if self.loss not in LOSSES:
            raise CurateError(f"unknown loss {self.loss!r}; use one of {', '.join(sorted(LOSSES))}.")
        check_loss_kwargs(self.loss, self.loss_kwargs)
        for name in ("learning_rate", "epochs", "warmup_ratio", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise CurateError(f"{name} must be a finite number ≥ 0 (got {value!r}).")
        for name, value, allowed in (("scheduler", self.scheduler, SCHEDULERS), ("weight_mode", self.weight_mode, WEIGHT_MODES),
                                     ("reduction", self.reduction, REDUCTIONS)):  # fmt: skip
            if value not in allowed:
                raise CurateError(f"{name} must be one of {', '.join(allowed)} (got {value!r}).")
        if self.amapo_stats not in ("micro", "global"):
            raise CurateError(f"amapo_stats must be micro or global (got {self.amapo_stats!r}).")
        if self.eval_data is not None and self.eval_fraction is not None:
            raise CurateError("use --eval-data FILE or --eval-fraction F, not both.")
        if self.eval_fraction is not None and not 0 < self.eval_fraction < 1:
            raise CurateError(f"--eval-fraction must be in (0, 1) (got {self.eval_fraction}).")
        unknown = sorted(set(self.report_to) - {"tensorboard"})
        if unknown:
            raise CurateError(f"--report-to {unknown[0]!r}: only `tensorboard` is supported (metrics.jsonl is always written).")
        if self.lora_r is not None and self.lora_r < 1:
            raise CurateError(f"--lora-r must be at least 1 (got {self.lora_r}).")
        if self.eval_data is not None and not Path(self.eval_data).exists():
            raise CurateError(f"--eval-data {self.eval_data}: no such file or folder.")
        for name in ("batch_size", "grad_accum", "logging_steps"):
            if getattr(self, name) < 1:
                raise CurateError(f"{name} must be at least 1 (got {getattr(self, name)}).")
        if not Path(self.model).exists():
            raise CurateError(f"--model {self.model}: no such local folder (curate never downloads weights).")
        if self.ref_model is not None and not Path(self.ref_model).exists():
            raise CurateError(f"--ref-model {self.ref_model}: no such local folder.")
        if not Path(self.data).exists():
            raise CurateError(f"{self.data}: no such file or folder.")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" line {where.line + 1}, column {where.column + 1}:" if where is not None else ""
            raise CurateError(f"{path}:{line} not valid YAML ({getattr(exc, 'problem', None) or exc}).") from None
        except OSError as exc:
            raise CurateError(f"{path}: cannot read the config ({exc.strerror}).") from None
        if not isinstance(raw, dict):
            raise CurateError(f"{path}: a config is a mapping of TrainConfig fields (key: value), not a {type(raw).__name__}.")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise CurateError(f"{path}: unknown option(s) {', '.join(unknown)}.")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _accepts(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_accepts(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin is list or hint is list:
        return isinstance(value, list)
    return isinstance(value, hint) if isinstance(hint, type) else True


def check_types(cfg: "TrainConfig") -> None:
    """Every field holds a value of its declared type (a YAML string where a number goes is named with its key)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not _accepts(value, hints[f.name]):
            want = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            raise CurateError(f"config `{f.name}` must be {want} (got {value!r}, a {type(value).__name__}).")
    if isinstance(cfg.learning_rate, int):
        cfg.learning_rate = float(cfg.learning_rate)


def check_loss_kwargs(loss: str, kwargs: dict[str, Any]) -> None:
    """Loss hyper-parameters the loss function accepts, with finite numeric values."""
    from curate.train.losses import LOSSES

    sig = inspect.signature(LOSSES[loss])
    tensors = {n for n in sig.parameters if n.startswith(("policy_", "reference_")) or n.endswith("_lengths") or n in
               ("lengths", "mask", "rewards", "step", "total_steps", "logit_weights", "queue", "batch_margins")}  # fmt: skip
    allowed = sorted(n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY and n not in tensors)
    for key, value in kwargs.items():
        if key not in allowed:
            raise CurateError(f"loss `{loss}` has no hyper-parameter `{key}`; its hyper-parameters are: {', '.join(allowed) or '(none)'}.")
        if isinstance(value, float) and not math.isfinite(value):
            raise CurateError(f"loss hyper-parameter `{key}` must be finite (got {value!r}).")
