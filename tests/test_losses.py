"""Loss parity with TRL's formulas (written out here) and hand-computed values for the other losses."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from curate.train.losses import LOSSES, GapQueue, gamma_po_margins, wrpo_alpha  # noqa: E402

g = torch.Generator().manual_seed(0)
B = 16
PC, PR = -torch.rand(B, generator=g, dtype=torch.float64) * 50, -torch.rand(B, generator=g, dtype=torch.float64) * 50
RC, RR = -torch.rand(B, generator=g, dtype=torch.float64) * 50, -torch.rand(B, generator=g, dtype=torch.float64) * 50
NC, NR = torch.randint(1, 40, (B,), generator=g), torch.randint(1, 40, (B,), generator=g)
BASE = dict(policy_chosen_logps=PC, policy_rejected_logps=PR, reference_chosen_logps=RC, reference_rejected_logps=RR,
            chosen_lengths=NC, rejected_lengths=NR)  # fmt: skip


def close(a, b, tol=1e-6):
    torch.testing.assert_close(a, b, rtol=0, atol=tol)


def test_registry_holds_every_loss():
    assert set(LOSSES) == {"dpo", "ipo", "simpo", "dpop", "wrpo", "multi_dpo", "repo", "bpo", "amapo", "gamma_po"}


@pytest.mark.parametrize("beta,ls", [(0.1, 0.0), (0.5, 0.2)])
def test_dpo_equals_trl_sigmoid(beta, ls):
    # TRL DPOTrainer, loss_type="sigmoid": logits = (π_c − π_r) − (ref_c − ref_r)
    logits = (PC - PR) - (RC - RR)
    trl = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
    out = LOSSES["dpo"](**BASE, beta=beta, label_smoothing=ls)
    close(out.losses, trl)
    close(out.chosen_rewards, beta * (PC - RC))
    close(out.rejected_rewards, beta * (PR - RR))


def test_ipo_equals_trl_ipo():
    beta = 0.1
    # TRL: log-ratios averaged over completion tokens, loss = (Δ − 1/(2β))²
    delta = (PC - RC) / NC - (PR - RR) / NR
    close(LOSSES["ipo"](**BASE, beta=beta).losses, (delta - 1 / (2 * beta)) ** 2)


def test_simpo_equals_trl_cpo_simpo():
    beta, ratio = 2.0, 0.25
    simpo_gamma = ratio * beta  # CPOConfig(loss_type="simpo", simpo_gamma=γ, cpo_alpha=0)
    logits = PC / NC - PR / NR  # average_log_prob=True for simpo
    trl = -F.logsigmoid(beta * (logits - simpo_gamma / beta))
    out = LOSSES["simpo"](**BASE, beta=beta, gamma_beta_ratio=ratio)
    close(out.losses, trl)
    close(out.chosen_rewards, beta * PC / NC)


def one(**kw):
    return {k: torch.tensor([v], dtype=torch.float64) for k, v in kw.items()}


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_dpop_by_hand():
    x = one(policy_chosen_logps=-12.0, policy_rejected_logps=-20.0, reference_chosen_logps=-10.0, reference_rejected_logps=-15.0)
    # h = (-12+10) - (-20+15) = 3 ; penalty = max(0, -10 - -12) = 2 ; logit = 0.1*(3 - 50*2) = -9.7
    assert LOSSES["dpop"](**x).losses.item() == pytest.approx(-math.log(sig(-9.7)))
    x = one(policy_chosen_logps=-9.0, policy_rejected_logps=-20.0, reference_chosen_logps=-10.0, reference_rejected_logps=-15.0)
    assert LOSSES["dpop"](**x).losses.item() == pytest.approx(-math.log(sig(0.1 * 6)))  # no penalty: chosen above ref


def test_wrpo_by_hand_and_alpha_schedule():
    x = one(policy_chosen_logps=-5.0, policy_chosen_target_logps=-7.0, policy_rejected_logps=-9.0,
            reference_chosen_logps=-6.0, reference_chosen_target_logps=-6.0, reference_rejected_logps=-8.0)  # fmt: skip
    # u(ws)=1, u(wt)=-1, u(l)=-1 ; step 50 of 100 -> α_t = 0.1*0.5 = 0.05
    # logits = 0.05*1 + 0.95*(-1) - (-1) = 0.1 ; loss = -log σ(0.01*0.1)
    out = LOSSES["wrpo"](**x, step=50, total_steps=100)
    assert out.losses.item() == pytest.approx(-math.log(sig(0.001)))
    assert wrpo_alpha(0.1, 300, 100) == pytest.approx(0.1) and wrpo_alpha(0.1, 0, 100) == 0.0
    assert wrpo_alpha(0.3, 10, 100, "constant") == 0.3
    lens = {k: torch.tensor([2.0]) for k in ("chosen_lengths", "chosen_target_lengths", "rejected_lengths")}
    # simpo base: avg = -2.5, -3.5, -4.5 ; α=0.1 constant: mix = -3.4 ; logit = 0.01*(−3.4+4.5) − 0.25*0.01
    simpo = LOSSES["wrpo"](**x, **lens, alpha_schedule="constant", wrpo_base="simpo")
    assert simpo.losses.item() == pytest.approx(-math.log(sig(0.01 * 1.1 - 0.0025)))


def test_multi_dpo_k2_equals_dpo_and_by_hand():
    pl_ = torch.stack([PC, PR], 1)
    rl = torch.stack([RC, RR], 1)
    close(LOSSES["multi_dpo"](policy_logps=pl_, reference_logps=rl).losses, LOSSES["dpo"](**BASE).losses)
    # K=3, u = [1, 0, -2]: pairs (0,1): 1, (0,2): 3, (1,2): 2 ; beta 1
    u = torch.tensor([[1.0, 0.0, -2.0]], dtype=torch.float64)
    z = torch.zeros_like(u)
    d = lambda x: -math.log(sig(x))  # noqa: E731
    assert LOSSES["multi_dpo"](policy_logps=u, reference_logps=z, beta=1.0).losses.item() == pytest.approx((d(1) + d(3) + d(2)) / 3)
    rank_gap = (1 * d(1) + 2 * d(3) + 1 * d(2)) / 4
    assert LOSSES["multi_dpo"](policy_logps=u, reference_logps=z, beta=1.0, pair_weighting="rank_gap").losses.item() == pytest.approx(rank_gap)
    r = torch.tensor([[5.0, 4.0, 1.0]])
    reward_gap = (1 * d(1) + 4 * d(3) + 3 * d(2)) / 8
    got = LOSSES["multi_dpo"](policy_logps=u, reference_logps=z, beta=1.0, pair_weighting="reward_gap", rewards=r).losses.item()
    assert got == pytest.approx(reward_gap)
    # a masked third response drops to the K=2 loss
    mask = torch.tensor([[True, True, False]])
    assert LOSSES["multi_dpo"](policy_logps=u, reference_logps=z, beta=1.0, mask=mask).losses.item() == pytest.approx(d(1))


def test_repo_and_bpo_by_hand():
    x = one(policy_chosen_logps=-4.0, policy_rejected_logps=-9.0, chosen_lengths=2.0, rejected_lengths=3.0)
    assert LOSSES["repo"](**x).losses.item() == pytest.approx(0.0)  # margin -2 - -3 = 1 > 0.5
    assert LOSSES["repo"](**x, gamma=1.5).losses.item() == pytest.approx(0.5)
    y = one(policy_chosen_logps=-5.0, policy_rejected_logps=-9.0, reference_chosen_logps=-6.0, reference_rejected_logps=-10.0)
    # u_w = 1, u_l = 1 -> min(1, 0.3*-1) = -0.3; the default (the official config) is the hinge: relu(1 - 0.1*-0.3) = 1.03
    assert LOSSES["bpo"](**y).losses.item() == pytest.approx(1.03)
    assert LOSSES["bpo"](**y, bpo_variant="sigmoid").losses.item() == pytest.approx(-math.log(sig(-0.03)))


def test_amapo_by_hand():
    # avg margins m = [2, 0, -1]: μ = 1/3, s = sqrt(((5/3)^2 + (1/3)^2 + (4/3)^2)/2) = sqrt(7/3)
    x = {"policy_chosen_logps": torch.tensor([2.0, 0.0, -1.0], dtype=torch.float64), "policy_rejected_logps": torch.zeros(3, dtype=torch.float64),
         "chosen_lengths": torch.ones(3), "rejected_lengths": torch.ones(3)}  # fmt: skip
    mu, s, beta = 1 / 3, math.sqrt(7 / 3), 2.0
    expected = []
    for m in (2.0, 0.0, -1.0):
        gamma = beta * math.exp(((mu - m) / s) * mu) if m < mu else 0.0
        expected.append(-math.log(sig(beta * m - gamma)))
    assert LOSSES["amapo"](**x).losses.tolist() == pytest.approx(expected)


def test_gamma_po_mirror_descent_by_hand():
    gaps = torch.tensor([0.5, -0.2, 1.0], dtype=torch.float64)
    gamma0, tau = 0.5, 1.0
    # the update written out in plain Python
    Bn, p, lr = 3, [1 / 3] * 3, min(0.5 / tau, 1.0)
    for _ in range(20):
        gam = [gamma0 * Bn * pi for pi in p]
        grad = [tau * (1 + math.log(Bn * (pi + 1e-10))) + gamma0 * sig(gi - x) for pi, gi, x in zip(p, gam, gaps.tolist(), strict=True)]
        p = [pi * math.exp(-lr * gr) for pi, gr in zip(p, grad, strict=True)]
        p = [pi / sum(p) for pi in p]
    assert gamma_po_margins(gaps, gamma0, tau).tolist() == pytest.approx(gam)
    q = GapQueue(seed=3)
    assert len(q.gaps) == 8
    out = LOSSES["gamma_po"](policy_chosen_logps=torch.tensor([-2.0, -3.0]), policy_rejected_logps=torch.tensor([-4.0, -3.5]),
                             chosen_lengths=torch.tensor([2.0, 3.0]), rejected_lengths=torch.tensor([2.0, 1.0]), queue=q)  # fmt: skip
    assert len(q.gaps) == 10 and out.losses.shape == (2,) and torch.isfinite(out.losses).all()


def test_logit_weights_scale_the_logit():
    w = torch.full((B,), 2.0, dtype=torch.float64)
    scaled = LOSSES["dpo"](**BASE, logit_weights=w).losses
    close(scaled, -F.logsigmoid(2.0 * 0.1 * ((PC - RC) - (PR - RR))))


def test_per_row_beta_and_margin_by_hand():
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    x = dict(policy_chosen_logps=t(-5.0, -5.0), policy_rejected_logps=t(-9.0, -9.0), reference_chosen_logps=t(-6.0, -6.0),
             reference_rejected_logps=t(-8.0, -8.0))  # fmt: skip
    # h = (−5 − −6) − (−9 − −8) = 1 − (−1) = 2 for both rows
    out = LOSSES["dpo"](**x, beta=t(0.1, 0.5), margin=t(0.0, 0.4))
    assert out.losses.tolist() == pytest.approx([-math.log(sig(0.2)), -math.log(sig(1.0 - 0.4))])
    assert out.chosen_rewards.tolist() == pytest.approx([0.1, 0.5])  # β_i·u(y_w), u(y_w) = 1
    # SimPO with a per-row γ: avg_w = −5/5 = −1, avg_l = −9/3 = −3: β·2 − γ_i
    y = dict(policy_chosen_logps=t(-5.0, -5.0), policy_rejected_logps=t(-9.0, -9.0), chosen_lengths=t(5.0, 5.0), rejected_lengths=t(3.0, 3.0))
    s = LOSSES["simpo"](**y, beta=t(1.0, 2.0), margin=t(0.5, 3.0))
    assert s.losses.tolist() == pytest.approx([-math.log(sig(2.0 - 0.5)), -math.log(sig(4.0 - 3.0))])
    assert LOSSES["simpo"](**y, beta=2.0).losses.tolist() == pytest.approx([-math.log(sig(4.0 - 0.5))] * 2)  # γ = 0.25·2


@pytest.mark.parametrize("loss", ["wrpo", "amapo", "gamma_po"])
def test_label_smoothing_where_the_official_code_has_it(loss):
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    base = dict(policy_chosen_logps=t(-5.0), policy_rejected_logps=t(-9.0), reference_chosen_logps=t(-6.0), reference_rejected_logps=t(-8.0),
                chosen_lengths=t(5.0), rejected_lengths=t(3.0))  # fmt: skip
    if loss == "wrpo":
        base.update(policy_chosen_target_logps=t(-5.5), reference_chosen_target_logps=t(-6.0), chosen_target_lengths=t(4.0))
    if loss == "gamma_po":
        from curate.train.losses import GapQueue

        plain = LOSSES[loss](**base, queue=GapQueue(seed=1))
        smooth = LOSSES[loss](**base, queue=GapQueue(seed=1), label_smoothing=0.2)
    else:
        plain, smooth = LOSSES[loss](**base), LOSSES[loss](**base, label_smoothing=0.2)
    # −0.8·log σ(z) − 0.2·log σ(−z), with z recovered from the plain loss −log σ(z)
    z = -math.log(math.exp(plain.losses.item()) - 1)  # σ(z) = e^(−L)
    assert smooth.losses.item() == pytest.approx(-0.8 * math.log(sig(z)) - 0.2 * math.log(sig(-z)), rel=1e-9)
