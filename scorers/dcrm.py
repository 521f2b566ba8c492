"""`dcrm`: Distance Calibrated Reward Margin (arXiv 2506.14157; FORMULAS A2) [secondary]."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from scorers.base import Scorer, ensure, register
from scorers.errors import CurateError, SchemaError
from scorers.functions import sigmoid

REF = ("ref_chosen_logps", "ref_rejected_logps")


@dataclass
class DcrmParams:
    epsilon: float = 1.0
    prob_distance: bool | None = None  # None: use d_prob when ref log-probs are present
    unit: str = "auto"  # edit-distance unit, passed to `edit_distance`
    distance: str = "edit"  # "edit" (d_edit, FORMULAS A2) or "embedding" (1 − cosine, FORMULAS A8)


def prob_distance_expr() -> pl.Expr:
    """d_prob = |ref(y+) − ref(y−)| (FORMULAS A2)."""
    return (pl.col("ref_chosen_logps") - pl.col("ref_rejected_logps")).abs()


def dcrm_expr(distance: pl.Expr, d_prob: pl.Expr, epsilon: float) -> pl.Expr:
    """DCRM = (σ(Δr) − 0.5) / (d + d_prob + ε) over a `reward_margin` column (FORMULAS A2)."""
    return (sigmoid(pl.col("reward_margin")) - 0.5) / (distance + d_prob + epsilon)


def uses_prob_distance(requested: bool | None, names: list[str]) -> bool:
    have = all(c in names for c in REF)
    if requested and not have:
        raise SchemaError(
            "dcrm with prob_distance=True needs ref_chosen_logps and ref_rejected_logps",
            column="ref_chosen_logps",
            hint="Run `curate logps --ref-model` on the samples, or pass prob_distance=False.",
        )
    return have if requested is None else requested


@register("dcrm")
class Dcrm(Scorer):
    """DCRM = (σ(Δr) − 0.5) / (d + d_prob + ε), d = edit distance (or embedding distance); adds the inputs it computes."""

    level = "pair"
    requires = ("chosen", "rejected", "chosen_reward", "rejected_reward")
    produces = ("dcrm",)
    citation = "DCRM, 'Larger is not always better' (arXiv 2506.14157), FORMULAS A2"
    Params = DcrmParams
    sql_macros = (
        """CREATE OR REPLACE MACRO dcrm(reward_margin, edit_distance, prob_distance, eps := 1.0) AS
        (1.0 / (1.0 + exp(-reward_margin)) - 0.5) / (edit_distance + prob_distance + eps)""",
    )

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        p = self.params
        if p.distance not in ("edit", "embedding"):
            raise CurateError(f"dcrm distance must be edit or embedding (got {p.distance!r}).")
        frame = ensure(frame, "reward_margin")
        if p.distance == "edit":
            frame, dist = ensure(frame, "edit_distance", unit=p.unit), pl.col("edit_distance")
        else:
            frame, dist = ensure(frame, "embedding_distance"), pl.col("embedding_distance")
        d_prob = prob_distance_expr() if uses_prob_distance(p.prob_distance, frame.collect_schema().names()) else pl.lit(0.0)
        return frame.with_columns(dcrm_expr(dist, d_prob, p.epsilon).alias("dcrm"))
