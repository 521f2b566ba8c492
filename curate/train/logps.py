"""Sequence log-probs over response tokens only (FORMULAS D), chunked over the sequence.

The causal LM's decoder runs once; the output head and log-softmax run on `chunk_size` positions at a
time, so the full [B, T, V] float32 logits never exist at once. With gradients on, each chunk is
recomputed in the backward pass (activation checkpointing), so the logits are not kept either.
Shared by the trainer and `curate logps`.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

Tensor = torch.Tensor
# Positions per chunk of the output head. Small chunks cost little speed (measured faster on CPU: one
# [rows x 32, hidden] @ [hidden, vocab] matmul is still large) and bound the float32 logits held at once.
CHUNK_SIZE = 32


def _chunk_logps(head: torch.nn.Module, hidden: Tensor, labels: Tensor, mask: Tensor, scale: float | None) -> Tensor:
    logits = head(hidden).float()
    if scale is not None:
        logits = logits * scale
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


def _decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    model = getattr(model, "module", model)  # DDP / FSDP wrappers
    if hasattr(model, "get_base_model"):  # a peft model: the causal LM with the adapters injected
        model = model.get_base_model()
    head = model.get_output_embeddings()
    decoder = getattr(model, "base_model", None)
    if head is None or decoder is None or decoder is model:
        raise ValueError(f"{type(model).__name__}: expected a causal LM with an output head and a base model")
    return decoder, head


def sequence_logps(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    loss_mask: Tensor,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """Sum of log p(token) over positions where `loss_mask` is 1, and the number of such tokens, per row.

    `loss_mask[b, t]` marks response token t (its log-prob comes from the logits at t − 1).
    """
    decoder, head = _decoder_and_head(model)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, H]
    scale = getattr(getattr(model, "config", None), "logit_scale", None)
    hidden, labels, mask = hidden[:, :-1], input_ids[:, 1:], loss_mask[:, 1:].to(hidden.dtype)
    total = hidden.new_zeros(input_ids.shape[0], dtype=torch.float32)
    for start in range(0, hidden.shape[1], chunk_size):
        sl = slice(start, start + chunk_size)
        if torch.is_grad_enabled() and hidden.requires_grad:
            part = checkpoint(_chunk_logps, head, hidden[:, sl], labels[:, sl], mask[:, sl].float(), scale, use_reentrant=False)
        else:
            part = _chunk_logps(head, hidden[:, sl], labels[:, sl], mask[:, sl].float(), scale)
        total = total + part
    return total, loss_mask[:, 1:].sum(-1)


class LogpsModel(torch.nn.Module):
    """A causal LM whose forward returns `sequence_logps`, so DDP/FSDP see (and sync) every parameter it uses."""

    def __init__(self, lm: torch.nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: Tensor, attention_mask: Tensor, loss_mask: Tensor, chunk_size: int = CHUNK_SIZE) -> tuple[Tensor, Tensor]:
        return sequence_logps(self.lm, input_ids, attention_mask, loss_mask, chunk_size)
