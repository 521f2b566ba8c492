"""Trainer configuration (SPEC §8): one dataclass, loadable from YAML, with the CLI's defaults."""

from __future__ import annotations

import dataclasses
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

        if self.loss not in LOSSES:
            raise CurateError(f"unknown loss {self.loss!r}; use one of {', '.join(sorted(LOSSES))}.")
        for name, value, allowed in (("scheduler", self.scheduler, SCHEDULERS), ("weight_mode", self.weight_mode, WEIGHT_MODES),
                                     ("reduction", self.reduction, REDUCTIONS)):  # fmt: skip
            if value not in allowed:
                raise CurateError(f"{name} must be one of {', '.join(allowed)} (got {value!r}).")
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

        raw = yaml.safe_load(Path(path).read_text()) or {}
        raw.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise CurateError(f"{path}: unknown option(s) {', '.join(unknown)}.")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
