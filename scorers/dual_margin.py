"""`dual_margin`: external + implicit reward margins ("Less is More", FORMULAS A5) [exact text; M2 rule from a replication]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from scorers.base import Scorer, ensure, register
from scorers.errors import CurateError

MODES = ("mul", "add")
_EX_DIVISOR, _IM_DIVISOR = 1.5, 2.0


@dataclass
class DualMarginParams:
    mode: str = "mul"
    m1: float = -2.0
    m2_ex: float | None = None  # None: the data-driven rule of FORMULAS A5
    m2_im: float | None = None
    min_rows: int = 30


def m2_threshold(values: np.ndarray, divisor: float, m1: float = -2.0, min_rows: int = 30) -> float:
    """Upper clip M2: start at int(max/divisor), add 1 until fewer than `min_rows` rows (or fewer than max − M2) lie in [M2, max]."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return m1 + 1.0
    top = float(v.max())
    m2 = int(top / divisor)
    while True:
        count = int(((v >= m2) & (v <= top)).sum())
        if count < min_rows or count < top - m2:
            break
        m2 += 1
    return float(max(m2, m1 + 1.0))  # M2 must exceed M1 for the scaling to exist


def _m2_expr(col: str, fixed: float | None, divisor: float, p: DualMarginParams) -> pl.Expr:
    if fixed is not None:
        return pl.lit(float(fixed))
    return pl.col(col).map_batches(
        lambda s: pl.Series([m2_threshold(s.cast(pl.Float64).to_numpy(), divisor, p.m1, p.min_rows)]),
        return_dtype=pl.Float64,
        returns_scalar=True,
    )


def scaled(m: pl.Expr, m1: float, m2: pl.Expr) -> pl.Expr:
    """P(m) = (clip(m, M1, M2) − M1) / (M2 − M1)."""
    return (m.clip(m1, m2) - m1) / (m2 - m1)


@register("dual_margin")
class DualMargin(Scorer):
    """mode=add: m_ex + m_im; mode=mul: P_ex·P_im / (P_ex·P_im + (1−P_ex)(1−P_im) + 1e-12)."""

    level = "pair"
    requires = ("chosen_reward", "rejected_reward", "chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    produces = ("dual_margin",)
    citation = "Less is More: Improving LLM Alignment via Preference Data Selection (dual margin), FORMULAS A5"
    Params = DualMarginParams
    sql_macros = (
        "CREATE OR REPLACE MACRO dual_margin_p(m, m1, m2) AS (least(greatest(m, m1), m2) - m1) / (m2 - m1)",
        "CREATE OR REPLACE MACRO dual_margin_mul(p_ex, p_im) AS p_ex * p_im / (p_ex * p_im + (1 - p_ex) * (1 - p_im) + 1e-12)",
    )

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        p = self.params
        if p.mode not in MODES:
            raise CurateError(f"dual_margin mode must be one of {', '.join(MODES)} (got {p.mode!r}).")
        frame = ensure(ensure(frame, "reward_margin"), "implicit_margin")
        m_ex, m_im = pl.col("reward_margin"), pl.col("implicit_margin")
        if p.mode == "add":
            return frame.with_columns((m_ex + m_im).alias("dual_margin"))
        p_ex = scaled(m_ex, p.m1, _m2_expr("reward_margin", p.m2_ex, _EX_DIVISOR, p))
        p_im = scaled(m_im, p.m1, _m2_expr("implicit_margin", p.m2_im, _IM_DIVISOR, p))
        both = p_ex * p_im
        return frame.with_columns((both / (both + (1 - p_ex) * (1 - p_im) + 1e-12)).alias("dual_margin"))
