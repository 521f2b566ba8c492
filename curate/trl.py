"""Per-sample weights in TRL: `WeightedDPOTrainer`, a TRL 1.x `DPOTrainer` that reads the `weight` column.

TRL's DPOTrainer drops unknown columns, so a curate export trained with it loses its weights. This
subclass keeps the `weight` column through TRL's preprocessing and collation and replaces the batch
mean of the per-sample losses by the weighted objective `curate train` uses, mean_i(w_i·l_i)
(`reduction="mean"`) or Σ w_i·l_i / Σ w_i (`"normalized"`, per device). Everything else is TRL's:
its tokenisation, its fused log-prob head, its reference handling (precomputed, a reference model,
or the base model with PEFT adapters disabled) and its logged metrics. The per-sample losses are
curate's own (`curate.train.losses`), which equal TRL's `sigmoid` and `ipo` losses.

    from curate.trl import WeightedDPOTrainer
    trainer = WeightedDPOTrainer(model=model, args=DPOConfig(...), train_dataset=load_dataset("my_export")["train"],
                                 processing_class=tokenizer)

Needs the `trl` extra (`pip install 'curate-prefs[trl]'`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

try:
    from trl import DPOTrainer
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("curate.trl needs TRL: pip install 'curate-prefs[trl]'") from exc

from curate.train.losses import LOSSES

WEIGHT = "weight"
# TRL loss_type -> curate loss with the same per-sample formula
SUPPORTED = {"sigmoid": "dpo", "ipo": "ipo"}
REDUCTIONS = ("mean", "normalized")


class WeightedCollator:
    """TRL's preference collator, plus a [B] float tensor of the examples' weights (1 where absent)."""

    def __init__(self, collator: Any, column: str = WEIGHT) -> None:
        self.collator, self.column = collator, column

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        weights = [1.0 if ex.get(self.column) is None else float(ex[self.column]) for ex in examples]
        batch = self.collator([{k: v for k, v in ex.items() if k != self.column} for ex in examples])
        batch[self.column] = torch.tensor(weights, dtype=torch.float32)
        return batch


class WeightedDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer with curate's per-sample weights (the dataset's `weight` column) on the sigmoid or ipo loss."""

    def __init__(self, *args: Any, weight_column: str = WEIGHT, reduction: str = "mean", **kwargs: Any) -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)} (got {reduction!r})")
        self.weight_column, self.reduction = weight_column, reduction
        super().__init__(*args, **kwargs)
        unsupported = [t for t in self.loss_types if t not in SUPPORTED]
        if unsupported or len(self.loss_types) != 1:
            raise ValueError(f"WeightedDPOTrainer supports one loss_type among {', '.join(SUPPORTED)}; got {self.loss_types}")
        if self.f_divergence_type != "reverse_kl" or self.use_weighting or self.ld_alpha is not None or self.aux_loss_enabled:
            raise ValueError("WeightedDPOTrainer supports the plain DPO objective (f_divergence_type=reverse_kl, no use_weighting, "
                             "ld_alpha or router aux loss)")  # fmt: skip
        self.data_collator = WeightedCollator(self.data_collator, weight_column)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.weight_column not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, self.weight_column]

    def _sequence_logps(self, model: Any, model_kwargs: dict[str, Any], labels: torch.Tensor, seq_len: int) -> torch.Tensor:
        out = model(**model_kwargs, labels=labels, fused_lm_head=True)
        return out.log_probs[:, -seq_len:].sum(dim=1)

    def _reference_logps(self, inputs: dict[str, Any], model_kwargs: dict[str, Any], labels: torch.Tensor, seq_len: int) -> torch.Tensor:
        if "ref_chosen_logps" in inputs and "ref_rejected_logps" in inputs:
            return torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]]).float()
        from trl.models.utils import disable_gradient_checkpointing

        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if self.ref_model is not None:
                return self._sequence_logps(self.ref_model, model_kwargs, labels, seq_len)
            unwrapped = self.accelerator.unwrap_model(self.model)
            disable = getattr(unwrapped, "disable_adapter", None)
            if disable is None:
                raise ValueError("no reference: pass ref_model, precompute_ref_log_probs=True, ref_*_logps columns, or a PEFT model")
            with disable() if callable(disable) else contextlib.nullcontext():
                return self._sequence_logps(self.model, model_kwargs, labels, seq_len)

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool):
        """The weighted objective over the batch; logs TRL's reward metrics and the weight mean."""
        mode = "train" if self.model.training else "eval"
        weights = inputs.pop(self.weight_column, None)
        completion_mask = inputs["completion_mask"]
        model_kwargs = {k: v for k, v in inputs.items() if k not in {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}}
        model_kwargs["use_cache"] = False
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        seq_len = completion_mask.size(1) - 1
        logps = self._sequence_logps(model, model_kwargs, labels, seq_len)
        ref = self._reference_logps(inputs, model_kwargs, labels, seq_len).to(logps.device)
        chosen, rejected = logps.chunk(2)
        ref_chosen, ref_rejected = ref.chunk(2)
        lengths = completion_mask.sum(dim=1).clamp(min=1)
        n_chosen, n_rejected = lengths.chunk(2)
        loss_fn = LOSSES[SUPPORTED[self.loss_types[0]]]
        kw = {"beta": self.beta} if self.loss_types[0] == "ipo" else {"beta": self.beta, "label_smoothing": 0.0}
        out = loss_fn(policy_chosen_logps=chosen, policy_rejected_logps=rejected, reference_chosen_logps=ref_chosen,
                      reference_rejected_logps=ref_rejected, chosen_lengths=n_chosen, rejected_lengths=n_rejected, **kw)  # fmt: skip
        w = torch.ones_like(out.losses) if weights is None else weights.to(out.losses.device, out.losses.dtype)
        denom = w.sum() if self.reduction == "normalized" else torch.tensor(float(w.numel()), device=w.device)
        loss = (w * out.losses).sum() / denom * self.loss_weights[0]
        self._log_metrics(mode, out.chosen_rewards, out.rejected_rewards, chosen.detach(), rejected.detach(), w)
        if return_outputs:
            return loss, {"chosen_logps": chosen.detach(), "rejected_logps": rejected.detach()}
        return loss

    def _log_metrics(self, mode: str, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps, weights) -> None:
        gather = self.accelerator.gather
        c, r = gather(chosen_rewards), gather(rejected_rewards)
        m = self._metrics[mode]
        m["rewards/chosen"].append(c.mean().item())
        m["rewards/rejected"].append(r.mean().item())
        m["rewards/accuracies"].append((c > r).float().mean().item())
        m["rewards/margins"].append((c - r).mean().item())
        m["logps/chosen"].append(gather(chosen_logps).mean().item())
        m["logps/rejected"].append(gather(rejected_logps).mean().item())
        m["weight_mean"].append(gather(weights.detach()).mean().item())
