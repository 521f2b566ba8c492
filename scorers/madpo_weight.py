"""`madpo_weight`: margin-adaptive DPO weights (MADPO; FORMULAS A6) [exact, official code]."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from scorers.base import Scorer, ensure, register
from scorers.functions import sigmoid


@dataclass
class MadpoParams:
    """MADPO's hyper-parameters. `tau`: the official code's default is 2; the paper's experiments use
    τ = ln(999) ≈ 6.91 (the margin at which a reward model is 99.9% sure), so pass `--param tau=6.91`
    to follow them."""

    c_max: float = 2.0
    c_min: float = 0.5
    lambda_: float = 1.0
    tau: float = 2.0  # the code default; the paper's experiments: math.log(999) ≈ 6.91


def madpo_expr(h: pl.Expr, p: MadpoParams) -> pl.Expr:
    """w(h) = σ(c(|h|)·h)/σ(h) if h > −τ else 1, c(|h|) = c_min + (c_max − c_min)/(1 + k·exp(λ(|h| − τ)))."""
    k = (p.c_max - 1.0) / (1.0 - p.c_min)
    c = p.c_min + (p.c_max - p.c_min) / (1.0 + k * (p.lambda_ * (h.abs() - p.tau)).exp())
    return pl.when(h > -p.tau).then(sigmoid(c * h) / sigmoid(h)).otherwise(pl.when(h.is_not_null()).then(1.0))


@register("madpo_weight")
class MadpoWeight(Scorer):
    """Per-pair weight from the reward margin h; use it as `weight` with the `dpo` loss."""

    level = "pair"
    requires = ("chosen_reward", "rejected_reward")
    produces = ("madpo_weight",)
    vectorized = True
    citation = "MADPO: margin-adaptive DPO (official code), FORMULAS A6"
    Params = MadpoParams
    sql_macros = (
        """CREATE OR REPLACE MACRO madpo_weight(h, c_max := 2.0, c_min := 0.5, lambda_ := 1.0, tau := 2.0) AS
        CASE WHEN h IS NULL THEN NULL WHEN h > -tau THEN
            (1.0 / (1.0 + exp(-(c_min + (c_max - c_min) / (1.0 + ((c_max - 1.0) / (1.0 - c_min)) * exp(lambda_ * (abs(h) - tau)))) * h)))
            / (1.0 / (1.0 + exp(-h)))
        ELSE 1.0 END""",
    )

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        frame = ensure(frame, "reward_margin")
        return frame.with_columns(madpo_expr(pl.col("reward_margin"), self.params).alias("madpo_weight"))
