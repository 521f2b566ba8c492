"""`reward_margin`: r(chosen) − r(rejected), the explicit reward margin of a pair (FORMULAS A2/A4)."""

from __future__ import annotations

import polars as pl

from scorers.base import Scorer, register


@register("reward_margin")
class RewardMargin(Scorer):
    """Explicit reward margin of a pair: chosen_reward − rejected_reward."""

    level = "pair"
    requires = ("chosen_reward", "rejected_reward")
    produces = ("reward_margin",)
    vectorized = True
    citation = "Explicit reward margin, r(y_w) − r(y_l) (FORMULAS A4, m_ex)"
    sql_macros = ("CREATE OR REPLACE MACRO reward_margin(chosen_reward, rejected_reward) AS chosen_reward - rejected_reward",)

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.with_columns((pl.col("chosen_reward") - pl.col("rejected_reward")).alias("reward_margin"))
