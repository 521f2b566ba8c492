"""Polars expression helpers shared by the scorers."""

from __future__ import annotations

import polars as pl


def sigmoid(x: pl.Expr) -> pl.Expr:
    """The logistic function σ(x) = 1 / (1 + e^(−x))."""
    return 1.0 / (1.0 + (-x).exp())


def zscore(x: pl.Expr, given: tuple[float, float] | None = None) -> pl.Expr:
    """(x − mean) / std over the whole table, with the population std (FORMULAS notation z); `given` = (mean, std) computed elsewhere."""
    if given is not None:
        return (x - given[0]) / given[1]
    return (x - x.mean()) / x.std(ddof=0)


def moments(x: pl.Expr, name: str) -> list[pl.Expr]:
    """Mergeable moments of `x` over one block: count, mean and sum of squared deviations (`{name}_n`, `_mean`, `_m2`)."""
    return [x.count().alias(f"{name}_n"), x.mean().alias(f"{name}_mean"), ((x - x.mean()) ** 2).sum().alias(f"{name}_m2")]


def merge_moments(parts: list[dict], name: str) -> tuple[float, float]:
    """(mean, population std) of the union of blocks from their `moments` (Chan, Golub and LeVeque's pairwise update)."""
    n, mean, m2 = 0, 0.0, 0.0
    for p in parts:
        nb = int(p.get(f"{name}_n") or 0)
        if nb == 0:
            continue
        mb, m2b = float(p[f"{name}_mean"]), float(p[f"{name}_m2"] or 0.0)
        total = n + nb
        delta = mb - mean
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    if n == 0:
        return float("nan"), float("nan")
    return mean, (m2 / n) ** 0.5


def length_normalised(logps: str, n_tokens: str) -> pl.Expr:
    """avg(y) = logp(y) / n(y) (FORMULAS notation)."""
    return pl.col(logps) / pl.col(n_tokens).cast(pl.Float64)
