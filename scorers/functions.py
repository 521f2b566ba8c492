"""Polars expression helpers shared by the scorers."""

from __future__ import annotations

import polars as pl


def sigmoid(x: pl.Expr) -> pl.Expr:
    """The logistic function σ(x) = 1 / (1 + e^(−x))."""
    return 1.0 / (1.0 + (-x).exp())


def zscore(x: pl.Expr) -> pl.Expr:
    """(x − mean) / std over the whole table, with the population std (FORMULAS notation z)."""
    return (x - x.mean()) / x.std(ddof=0)


def length_normalised(logps: str, n_tokens: str) -> pl.Expr:
    """avg(y) = logp(y) / n(y) (FORMULAS notation)."""
    return pl.col(logps) / pl.col(n_tokens).cast(pl.Float64)
