"""`alignment_potential`: "Larger or Smaller Reward Margins" (FORMULAS A4) [exact, official code]."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from scorers.base import Scorer, register
from scorers.functions import merge_moments, moments, zscore
from scorers.implicit_margin import logp_margin_norm_expr


@dataclass
class AlignmentPotentialParams:
    lambda_: float = 1.0


@register("alignment_potential")
class AlignmentPotential(Scorer):
    """z(m_ex) − λ·z(|m_im|), m_ex = reward margin, m_im = length-normalised policy margin; z over the whole table."""

    level = "pair"
    requires = ("chosen_reward", "rejected_reward", "chosen_logps", "rejected_logps", "chosen_n_tokens", "rejected_n_tokens")
    produces = ("alignment_potential",)
    vectorized = True
    citation = "Larger or Smaller Reward Margins to Select Preferences for Alignment? (alignment potential), FORMULAS A4"
    Params = AlignmentPotentialParams
    sql_macros = (
        """CREATE OR REPLACE MACRO alignment_potential(m_ex, m_im, lambda_ := 1.0) AS
        (m_ex - avg(m_ex) OVER ()) / stddev_pop(m_ex) OVER ()
        - lambda_ * (abs(m_im) - avg(abs(m_im)) OVER ()) / stddev_pop(abs(m_im)) OVER ()""",
    )

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        m_ex, m_im = _margins()
        given = self.statistics or {}
        z = zscore(m_ex, given.get("m_ex")) - self.params.lambda_ * zscore(m_im, given.get("m_im"))
        return frame.with_columns(z.alias("alignment_potential"))

    def table_statistics(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        m_ex, m_im = _margins()
        return frame.select(*moments(m_ex, "m_ex"), *moments(m_im, "m_im"))

    def merge_statistics(self, parts: list[dict]) -> dict[str, tuple[float, float]]:
        return {"m_ex": merge_moments(parts, "m_ex"), "m_im": merge_moments(parts, "m_im")}


def _margins() -> tuple[pl.Expr, pl.Expr]:
    """m_ex = the reward margin; |m_im| = the length-normalised policy margin's size."""
    return pl.col("chosen_reward") - pl.col("rejected_reward"), logp_margin_norm_expr().abs()
