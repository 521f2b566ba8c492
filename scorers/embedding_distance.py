"""`embedding_distance`: 1 − cosine(embedding(y_w), embedding(y_l)), a DCRM distance variant (FORMULAS A8)."""

from __future__ import annotations

import polars as pl

from scorers.base import Scorer, register


def cosine_distance(a: str, b: str) -> pl.Expr:
    """1 − a·b / (|a||b|) for two list columns of equal length."""
    dot = (pl.col(a) * pl.col(b)).list.sum()
    norm = lambda c: pl.col(c).list.eval(pl.element().cast(pl.Float64).pow(2)).list.sum().sqrt()  # noqa: E731
    return 1.0 - dot.cast(pl.Float64) / (norm(a) * norm(b))


@register("embedding_distance")
class EmbeddingDistance(Scorer):
    """Cosine distance between the chosen and rejected sentence embeddings."""

    level = "pair"
    requires = ("chosen_embedding", "rejected_embedding")
    produces = ("embedding_distance",)
    citation = "DCRM distance variant over sentence embeddings, FORMULAS A8"
    sql_macros = ("CREATE OR REPLACE MACRO embedding_distance(a, b) AS 1 - list_cosine_similarity(a, b)",)

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.with_columns(cosine_distance("chosen_embedding", "rejected_embedding").alias("embedding_distance"))
