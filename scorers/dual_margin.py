"""`dual_margin`: external + implicit reward margins ("Less is More", FORMULAS A5) [exact text; M2 rule from a replication]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from scorers.base import Scorer, ensure, register
from scorers.errors import CurateError

if TYPE_CHECKING:
    import numpy as np

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
    import numpy as np

    v = values[np.isfinite(values)]
    if v.size == 0:
        return m1 + 1.0
    floors, counts = np.unique(np.floor(v), return_counts=True)
    return m2_from_histogram(float(v.max()), dict(zip(floors.tolist(), counts.tolist(), strict=True)), divisor, m1, min_rows)


def m2_from_histogram(top: float | None, counts: dict[float, int], divisor: float, m1: float = -2.0, min_rows: int = 30) -> float:
    """`m2_threshold` from the maximum and the counts of ⌊v⌋ (mergeable across blocks: for an integer M2, v ≥ M2 ⇔ ⌊v⌋ ≥ M2)."""
    if top is None:
        return m1 + 1.0
    m2 = int(top / divisor)
    while True:
        count = sum(n for c, n in counts.items() if c >= m2)  # every v is at most top
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


_M2 = (("reward_margin", "m2_ex", _EX_DIVISOR), ("implicit_margin", "m2_im", _IM_DIVISOR))


def scaled(m: pl.Expr, m1: float, m2: pl.Expr) -> pl.Expr:
    """P(m) = (clip(m, M1, M2) − M1) / (M2 − M1)."""
    return (m.clip(m1, m2) - m1) / (m2 - m1)


@register("dual_margin")
class DualMargin(Scorer):
    """mode=add: m_ex + m_im; mode=mul: P_ex·P_im / (P_ex·P_im + (1−P_ex)(1−P_im) + 1e-12)."""

    level = "pair"
    requires = ("chosen_reward", "rejected_reward", "chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    produces = ("dual_margin",)
    vectorized = True
    citation = "Less is More: Improving LLM Alignment via Preference Data Selection (dual margin), FORMULAS A5"
    Params = DualMarginParams
    sql_macros = (
        "CREATE OR REPLACE MACRO dual_margin_p(m, m1, m2) AS (least(greatest(m, m1), m2) - m1) / (m2 - m1)",
        "CREATE OR REPLACE MACRO dual_margin_mul(p_ex, p_im) AS p_ex * p_im / (p_ex * p_im + (1 - p_ex) * (1 - p_im) + 1e-12)",
    )

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        p = self._checked_params()
        frame = ensure(ensure(frame, "reward_margin"), "implicit_margin")
        m_ex, m_im = pl.col("reward_margin"), pl.col("implicit_margin")
        if p.mode == "add":
            return frame.with_columns((m_ex + m_im).alias("dual_margin"))
        given = self.statistics or {}
        m2 = {col: _m2_expr(col, given.get(col, getattr(p, name)), divisor, p) for col, name, divisor in _M2}
        p_ex = scaled(m_ex, p.m1, m2["reward_margin"])
        p_im = scaled(m_im, p.m1, m2["implicit_margin"])
        both = p_ex * p_im
        return frame.with_columns((both / (both + (1 - p_ex) * (1 - p_im) + 1e-12)).alias("dual_margin"))

    def table_statistics(self, frame: pl.LazyFrame) -> pl.LazyFrame | None:
        p = self._checked_params()
        cols = [col for col, name, _ in _M2 if getattr(p, name) is None]
        if p.mode == "add" or not cols:
            return None
        frame = ensure(ensure(frame, "reward_margin"), "implicit_margin")
        finite = {c: pl.col(c).cast(pl.Float64).filter(pl.col(c).cast(pl.Float64).is_finite()) for c in cols}
        return frame.select(
            *[finite[c].max().alias(f"{c}_max") for c in cols],
            *[finite[c].floor().value_counts(name="n").implode().alias(f"{c}_counts") for c in cols],
        )

    def merge_statistics(self, parts: list[dict]) -> dict[str, float]:
        """M2 per margin from the blocks' maxima and ⌊v⌋ counts: the same threshold as over the whole table."""
        p = self.params
        out = {}
        for col, name, divisor in _M2:
            if getattr(p, name) is not None:
                continue
            tops = [row[f"{col}_max"] for row in parts if row.get(f"{col}_max") is not None]
            counts: dict[float, int] = {}
            for row in parts:
                for entry in row.get(f"{col}_counts") or []:
                    counts[entry[col]] = counts.get(entry[col], 0) + entry["n"]
            out[col] = m2_from_histogram(max(tops) if tops else None, counts, divisor, p.m1, p.min_rows)
        return out

    def _checked_params(self) -> DualMarginParams:
        if self.params.mode not in MODES:
            raise CurateError(f"dual_margin mode must be one of {', '.join(MODES)} (got {self.params.mode!r}).")
        return self.params
