"""Preference losses (FORMULAS C), one function each, registered by name in `LOSSES`.

Every loss takes [B] tensors of summed sequence log-probs (and token counts) by keyword and returns
`LossOutput(losses, chosen_rewards, rejected_rewards)` with the *unweighted* per-sample loss [B]; the
trainer applies the sample weights (`weight_mode="loss"`). `logit_weights` is the per-sample weight for
`weight_mode="logits"` [a reconstruction of arXiv 2412.20996]: it scales the preference logit inside the loss.
Notation as in FORMULAS.md: u(y) = logp(y) − ref(y), h = u(y_w) − u(y_l), avg(y) = logp(y)/n(y).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


class LossOutput(NamedTuple):
    losses: Tensor  # [B], unweighted
    chosen_rewards: Tensor  # [B], detached, for logging
    rejected_rewards: Tensor  # [B], detached, for logging


LOSSES: dict[str, Callable[..., LossOutput]] = {}
NEEDS_REFERENCE: set[str] = set()  # losses that read reference log-probs


def register(name: str, *, reference: bool) -> Callable:
    def deco(fn: Callable[..., LossOutput]) -> Callable[..., LossOutput]:
        LOSSES[name] = fn
        if reference:
            NEEDS_REFERENCE.add(name)
        return fn

    return deco


def _scale(logits: Tensor, logit_weights: Tensor | None) -> Tensor:
    return logits if logit_weights is None else logits * logit_weights


def _need(value: Tensor | None, name: str, loss: str) -> Tensor:
    if value is None:
        raise ValueError(f"loss `{loss}` needs `{name}`")
    return value


def _avg(logps: Tensor, lengths: Tensor | None, name: str, loss: str) -> Tensor:
    return logps / _need(lengths, name, loss).to(logps.dtype)


def sigmoid_loss(logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """−(1−ls)·log σ(z) − ls·log σ(−z) (DPO's loss with conservative label smoothing)."""
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


@register("dpo", reference=True)
def dpo(
    *,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float | Tensor = 0.1,
    label_smoothing: float = 0.0,
    margin: Tensor | None = None,
    logit_weights: Tensor | None = None,
) -> LossOutput:
    """DPO (Rafailov et al. 2023; FORMULAS C1): l = −(1−ls)·log σ(βh − m) − ls·log σ(−(βh − m)).

    `beta` may be per row ([B]); `margin` m ([B], default 0) is a target margin per row, the offset of
    ODPO (Amini et al. 2024, "Direct Preference Optimization with an Offset", arXiv 2402.10571).
    """
    u_w = policy_chosen_logps - _need(reference_chosen_logps, "reference_chosen_logps", "dpo")
    u_l = policy_rejected_logps - _need(reference_rejected_logps, "reference_rejected_logps", "dpo")
    logits = beta * (u_w - u_l) - (0.0 if margin is None else margin)
    losses = sigmoid_loss(_scale(logits, logit_weights), label_smoothing)
    return LossOutput(losses, beta * u_w.detach(), beta * u_l.detach())


@register("ipo", reference=True)
def ipo(
    *,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 0.1,
    logit_weights: Tensor | None = None,
) -> LossOutput:
    """IPO in TRL's form (Azar et al. 2023; FORMULAS C2): l = (h_avg − 1/(2β))², h_avg on length-averaged log-ratios."""
    u_w = _avg(policy_chosen_logps - _need(reference_chosen_logps, "reference_chosen_logps", "ipo"), chosen_lengths, "chosen_lengths", "ipo")
    u_l = _avg(policy_rejected_logps - _need(reference_rejected_logps, "reference_rejected_logps", "ipo"), rejected_lengths, "rejected_lengths", "ipo")
    losses = (_scale(u_w - u_l, logit_weights) - 1 / (2 * beta)) ** 2
    return LossOutput(losses, beta * u_w.detach(), beta * u_l.detach())


@register("simpo", reference=False)
def simpo(
    *,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float | Tensor = 2.0,
    gamma_beta_ratio: float = 0.25,
    label_smoothing: float = 0.0,
    margin: Tensor | None = None,
    logit_weights: Tensor | None = None,
) -> LossOutput:
    """SimPO (Meng et al. 2024, arXiv 2405.14734, Eq. 6; FORMULAS C3): l = −log σ(β·(avg(y_w) − avg(y_l)) − γ).

    γ = gamma_beta_ratio·β, or the per-row target margin `margin` ([B]) when given; `beta` may be per row.
    """
    a_w = _avg(policy_chosen_logps, chosen_lengths, "chosen_lengths", "simpo")
    a_l = _avg(policy_rejected_logps, rejected_lengths, "rejected_lengths", "simpo")
    gamma = gamma_beta_ratio * beta if margin is None else margin
    logits = beta * (a_w - a_l) - gamma
    losses = sigmoid_loss(_scale(logits, logit_weights), label_smoothing)
    return LossOutput(losses, beta * a_w.detach(), beta * a_l.detach())


@register("dpop", reference=True)
def dpop(
    *,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 0.1,
    lambda_: float = 50.0,
    logit_weights: Tensor | None = None,
) -> LossOutput:
    """DPO-Positive (Pal et al. 2024; FORMULAS C4): l = −log σ(β·(h − λ·max(0, ref(y_w) − logp(y_w))))."""
    ref_w = _need(reference_chosen_logps, "reference_chosen_logps", "dpop")
    u_w = policy_chosen_logps - ref_w
    u_l = policy_rejected_logps - _need(reference_rejected_logps, "reference_rejected_logps", "dpop")
    penalty = torch.clamp(ref_w - policy_chosen_logps, min=0)
    losses = -F.logsigmoid(_scale(beta * (u_w - u_l - lambda_ * penalty), logit_weights))
    return LossOutput(losses, beta * u_w.detach(), beta * u_l.detach())


def wrpo_alpha(alpha: float, step: int | None, total_steps: int | None, schedule: str = "linear") -> float:
    """α_t = α·min(1, step/T) (`linear`), or α (`constant`) (WRPO, arXiv 2412.03187; FORMULAS C5)."""
    if schedule == "constant" or step is None or not total_steps:
        return alpha
    return alpha * min(1.0, step / total_steps)


@register("wrpo", reference=True)
def wrpo(
    *,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    policy_chosen_target_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
    reference_chosen_target_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    chosen_target_lengths: Tensor | None = None,
    beta: float = 0.01,
    alpha: float = 0.1,
    step: int | None = None,
    total_steps: int | None = None,
    alpha_schedule: str = "linear",
    wrpo_base: str = "dpo",
    gamma_beta_ratio: float = 0.25,
    label_smoothing: float = 0.0,
    logit_weights: Tensor | None = None,
) -> LossOutput:
    """WRPO (WRPO, arXiv 2412.03187; FORMULAS C5): −log σ(β·(α_t·u(y_ws) + (1−α_t)·u(y_wt) − u(y_l))).

    `chosen` is y_ws (best source response), `chosen_target` y_wt, `rejected` y_l. `wrpo_base="simpo"`
    / `"ipo"` [reconstruction] mixes the chosen terms the same way inside the SimPO / IPO loss.
    """
    a = wrpo_alpha(alpha, step, total_steps, alpha_schedule)
    if wrpo_base == "simpo":
        ws = _avg(policy_chosen_logps, chosen_lengths, "chosen_lengths", "wrpo")
        wt = _avg(policy_chosen_target_logps, chosen_target_lengths, "chosen_target_lengths", "wrpo")
        lo = _avg(policy_rejected_logps, rejected_lengths, "rejected_lengths", "wrpo")
        mix = a * ws + (1 - a) * wt
        losses = sigmoid_loss(_scale(beta * (mix - lo) - gamma_beta_ratio * beta, logit_weights), label_smoothing)
        return LossOutput(losses, beta * mix.detach(), beta * lo.detach())
    ws = policy_chosen_logps - _need(reference_chosen_logps, "reference_chosen_logps", "wrpo")
    wt = policy_chosen_target_logps - _need(reference_chosen_target_logps, "reference_chosen_target_logps", "wrpo")
    lo = policy_rejected_logps - _need(reference_rejected_logps, "reference_rejected_logps", "wrpo")
    if wrpo_base == "ipo":
        ws = _avg(ws, chosen_lengths, "chosen_lengths", "wrpo")
        wt = _avg(wt, chosen_target_lengths, "chosen_target_lengths", "wrpo")
        lo = _avg(lo, rejected_lengths, "rejected_lengths", "wrpo")
        mix = a * ws + (1 - a) * wt
        losses = (_scale(mix - lo, logit_weights) - 1 / (2 * beta)) ** 2
        return LossOutput(losses, beta * mix.detach(), beta * lo.detach())
    if wrpo_base != "dpo":
        raise ValueError(f"wrpo_base must be dpo, simpo or ipo (got {wrpo_base!r})")
    mix = a * ws + (1 - a) * wt
    losses = sigmoid_loss(_scale(beta * (mix - lo), logit_weights), label_smoothing)
    return LossOutput(losses, beta * mix.detach(), beta * lo.detach())


@register("multi_dpo", reference=True)
def multi_dpo(
    *,
    policy_logps: Tensor,
    reference_logps: Tensor,
    lengths: Tensor | None = None,
    mask: Tensor | None = None,
    rewards: Tensor | None = None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    pair_weighting: str = "uniform",
    logit_weights: Tensor | None = None,
    **_: object,
) -> LossOutput:
    """Multi-DPO (arXiv 2412.07812; FORMULAS C6) [reconstruction]: Σ_{i<j} w_ij·dpo(y_i, y_j) / Σ w_ij over a ranked list.

    Tensors are [B, K], best first; `mask` marks the real entries. `pair_weighting`: uniform (w=1),
    rank_gap (j − i) or reward_gap (r_i − r_j, needs `rewards`). Equals `dpo` when K = 2.
    """
    B, K = policy_logps.shape
    mask = torch.ones_like(policy_logps, dtype=torch.bool) if mask is None else mask.bool()
    u = policy_logps - reference_logps  # [B, K]
    i, j = torch.triu_indices(K, K, offset=1, device=u.device)
    valid = mask[:, i] & mask[:, j]  # [B, P]
    if pair_weighting == "uniform":
        w = valid.to(u.dtype)
    elif pair_weighting == "rank_gap":
        w = (j - i).to(u.dtype).expand(B, -1) * valid
    elif pair_weighting == "reward_gap":
        r = _need(rewards, "rewards", "multi_dpo")
        w = (r[:, i] - r[:, j]).clamp(min=0).to(u.dtype) * valid
    else:
        raise ValueError(f"pair_weighting must be uniform, rank_gap or reward_gap (got {pair_weighting!r})")
    logits = beta * (u[:, i] - u[:, j])
    if logit_weights is not None:
        logits = logits * logit_weights[:, None]
    pair_losses = sigmoid_loss(logits, label_smoothing)
    losses = (w * pair_losses).sum(-1) / w.sum(-1).clamp(min=torch.finfo(u.dtype).tiny)
    last = mask.long().sum(-1).clamp(min=1) - 1  # the worst real response
    rejected = u.gather(1, last[:, None]).squeeze(1)
    return LossOutput(losses, beta * u[:, 0].detach(), beta * rejected.detach())


@register("repo", reference=False)
def repo(
    *,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    gamma: float = 0.5,
    logit_weights: Tensor | None = None,
) -> LossOutput:
    """RePO (FORMULAS C7): l = relu(γ − (avg(y_w) − avg(y_l)))."""
    a_w = _avg(policy_chosen_logps, chosen_lengths, "chosen_lengths", "repo")
    a_l = _avg(policy_rejected_logps, rejected_lengths, "rejected_lengths", "repo")
    losses = F.relu(gamma - _scale(a_w - a_l, logit_weights))
    return LossOutput(losses, a_w.detach(), a_l.detach())


@register("bpo", reference=True)
def bpo(
    *,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 0.1,
    alpha: float = 0.3,
    bpo_variant: str = "hinge",
    logit_weights: Tensor | None = None,
) -> LossOutput:
    """BPO (FORMULAS C8): relu(1 − β·min(u(y_w), α·(−u(y_l)))) by default (`hinge`, the official training config);
    `bpo_variant="sigmoid"`: −log σ(β·min(…))."""
    u_w = policy_chosen_logps - _need(reference_chosen_logps, "reference_chosen_logps", "bpo")
    u_l = policy_rejected_logps - _need(reference_rejected_logps, "reference_rejected_logps", "bpo")
    logits = _scale(beta * torch.minimum(u_w, alpha * -u_l), logit_weights)
    losses = F.relu(1 - logits) if bpo_variant == "hinge" else -F.logsigmoid(logits)
    return LossOutput(losses, beta * u_w.detach(), beta * u_l.detach())


@register("amapo", reference=False)
def amapo(
    *,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 2.0,
    label_smoothing: float = 0.0,
    batch_margins: Tensor | None = None,
    logit_weights: Tensor | None = None,
) -> LossOutput:
    """AMaPO (FORMULAS C9): m = avg(y_w) − avg(y_l); γ_i = β·exp(((μ − m_i)/s)·μ) if m_i < μ else 0; l = −log σ(β·m_i − γ_i).

    μ, s (unbiased) come from `batch_margins` when the trainer passes them (the current forward pass
    gathered over processes, as the official code does; or, with `amapo_stats="global"`, the whole
    accumulated global batch), else from this call's margins; both detached.
    """
    a_w = _avg(policy_chosen_logps, chosen_lengths, "chosen_lengths", "amapo")
    a_l = _avg(policy_rejected_logps, rejected_lengths, "rejected_lengths", "amapo")
    m = a_w - a_l
    stats = (m if batch_margins is None else batch_margins).detach()
    mu = stats.mean()
    s = stats.std(unbiased=True) if stats.numel() > 1 else torch.ones_like(mu)
    s = torch.where(s > 0, s, torch.ones_like(s))
    md = m.detach()
    gamma = torch.where(md < mu, beta * torch.exp(((mu - md) / s) * mu), torch.zeros_like(md))
    losses = sigmoid_loss(_scale(beta * m - gamma, logit_weights), label_smoothing)
    return LossOutput(losses, beta * a_w.detach(), beta * a_l.detach())


class GapQueue:
    """γ-PO's queue of past reward gaps (maxlen 2048, seeded with 8 draws of N(0,1)); trainer state."""

    def __init__(self, maxlen: int = 2048, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.gaps: collections.deque[float] = collections.deque(maxlen=maxlen)
        self.gaps.extend(torch.randn(8, generator=self.generator, dtype=torch.float64).tolist())

    def sample(self, k: int) -> Tensor:
        """k random past gaps (without replacement)."""
        k = min(k, len(self.gaps))
        if k <= 0:
            return torch.zeros(0, dtype=torch.float64)
        idx = torch.randperm(len(self.gaps), generator=self.generator)[:k]
        past = torch.tensor(list(self.gaps), dtype=torch.float64)
        return past[idx]

    def push(self, gaps: Tensor) -> None:
        self.gaps.extend(gaps.detach().double().cpu().tolist())

    def state_dict(self) -> dict:
        return {"gaps": list(self.gaps), "maxlen": self.gaps.maxlen, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gaps = collections.deque(state["gaps"], maxlen=state["maxlen"])
        self.generator.set_state(state["generator"])


def gamma_po_margins(gaps: Tensor, gamma0: float, tau: float, iterations: int = 20) -> Tensor:
    """Per-gap target margins γ_i by mirror descent on the sample weights p (γ-PO official code; FORMULAS C10)."""
    B = gaps.numel()
    p = torch.full_like(gaps, 1.0 / B)
    lr = min(0.5 / tau, 1.0)
    gamma = gamma0 * B * p
    for _ in range(iterations):
        gamma = gamma0 * B * p  # the 20th iteration's start is the one used
        grad = tau * (1 + torch.log(B * (p + 1e-10))) + gamma0 * torch.sigmoid(gamma - gaps)
        p = p * torch.exp(-lr * grad)
        p = p / p.sum()
    return gamma


@register("gamma_po", reference=False)
def gamma_po(
    *,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,
    reference_rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 2.0,
    gamma_beta_ratio: float = 0.25,
    tau: float = 1.0,
    gamma_base: str = "simpo",
    queue: GapQueue | None = None,
    max_gaps: int = 256,
    label_smoothing: float = 0.0,
    logit_weights: Tensor | None = None,
) -> LossOutput:
    """γ-PO (official code; FORMULAS C10): adaptive per-sample margins γ_i from past and current gaps.

    SimPO form: l = −log σ(g_i − γ_i), g = β·(avg(y_w) − avg(y_l)); DPO form (`gamma_base="dpo"`):
    l = −log σ(β·h − (γ_i − γ0)). The queue is updated in place (trainer state).
    """
    if gamma_base == "dpo":
        u_w = policy_chosen_logps - _need(reference_chosen_logps, "reference_chosen_logps", "gamma_po")
        u_l = policy_rejected_logps - _need(reference_rejected_logps, "reference_rejected_logps", "gamma_po")
        g, chosen, rejected = beta * (u_w - u_l), beta * u_w, beta * u_l
    else:
        chosen = beta * _avg(policy_chosen_logps, chosen_lengths, "chosen_lengths", "gamma_po")
        rejected = beta * _avg(policy_rejected_logps, rejected_lengths, "rejected_lengths", "gamma_po")
        g = chosen - rejected
    queue = queue if queue is not None else GapQueue()
    b = g.numel()
    past = queue.sample(max(0, max_gaps - b)).to(g.device)
    gamma0 = gamma_beta_ratio * beta
    gaps = torch.cat([past, g.detach().double()])
    gamma = gamma_po_margins(gaps, gamma0, tau)[-b:].to(g.dtype)
    queue.push(g)
    shift = gamma - gamma0 if gamma_base == "dpo" else gamma
    losses = sigmoid_loss(_scale(g - shift, logit_weights), label_smoothing)
    return LossOutput(losses, chosen.detach(), rejected.detach())


def loss_names() -> list[str]:
    return sorted(LOSSES)
