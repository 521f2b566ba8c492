"""`difficulty`: per-prompt weights from multiple sampling (Plug-and-Play Training Framework for Preference Optimization, arXiv 2412.20996; FORMULAS A1)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from scorers.base import Scorer, register


@dataclass
class DifficultyParams:
    alpha: float = 1.0
    epsilon: float = 1.0
    error_count: str = "mode"  # "mode": P_e = largest wrong-answer class; "total": P_e = N - P_c


def difficulty_weight(n: pl.Expr, p_c: pl.Expr, p_e: pl.Expr, alpha: float, epsilon: float) -> pl.Expr:
    """w = 1 + α·P_e/N if P_c = 0, else max(1, 1 + α·P_e/P_c + ε/N): the difficulty weight of multiple sampling (arXiv 2412.20996)."""
    n, p_c, p_e = n.cast(pl.Float64), p_c.cast(pl.Float64), p_e.cast(pl.Float64)
    w = (
        pl.when(n == 0)
        .then(None)
        .when(p_c == 0)
        .then(1 + alpha * p_e / n)
        .otherwise(pl.max_horizontal(pl.lit(1.0), 1 + alpha * p_e / p_c + epsilon / n))
    )
    return w


@register("difficulty")
class Difficulty(Scorer):
    """Prompt-level difficulty from N samples: counts of correct, the wrong-answer mode, and the weight."""

    level = "prompt"
    requires = ("prompt_id", "correct")
    produces = ("n_samples", "n_correct", "n_wrong_mode", "n_unique_answers", "difficulty_weight")
    citation = "Plug-and-play weighted training from multiple sampling (arXiv 2412.20996), FORMULAS A1"
    Params = DifficultyParams
    sql_macros = (
        """CREATE OR REPLACE MACRO difficulty_weight(n, p_c, p_e, alpha := 1.0, epsilon := 1.0) AS
        CASE WHEN n = 0 THEN NULL
             WHEN p_c = 0 THEN 1 + alpha * p_e / n
             ELSE greatest(1.0, 1 + alpha * p_e / p_c + epsilon / n) END""",
    )

    def prompt_table(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """One row per prompt_id: N (graded responses), P_c, P_e, distinct answers and the weight (group-bys, no windows)."""
        p = self.params
        has_answer = "answer" in frame.collect_schema().names()
        wrong = frame.filter(pl.col("correct").eq(False))
        if has_answer and p.error_count == "mode":  # P_e: the largest wrong-answer class (null answers form one class)
            p_e = wrong.group_by("prompt_id", "answer").len().group_by("prompt_id").agg(pl.col("len").max().alias("n_wrong_mode"))
        else:  # without `answer` every wrong response counts toward one class
            p_e = wrong.group_by("prompt_id").agg(pl.len().alias("n_wrong_mode"))
        uniq = pl.col("answer").drop_nulls().n_unique() if has_answer else pl.lit(None, pl.UInt32)
        counts = frame.group_by("prompt_id").agg(
            pl.col("correct").is_not_null().sum().cast(pl.Int64).alias("n_samples"),
            pl.col("correct").fill_null(False).sum().cast(pl.Int64).alias("n_correct"),
            uniq.cast(pl.Int64).alias("n_unique_answers"),
        )
        table = counts.join(p_e, on="prompt_id", how="left", nulls_equal=True).with_columns(pl.col("n_wrong_mode").fill_null(0).cast(pl.Int64))
        weight = difficulty_weight(pl.col("n_samples"), pl.col("n_correct"), pl.col("n_wrong_mode"), p.alpha, p.epsilon)
        return table.select("prompt_id", *self.produces[:-1], weight.alias("difficulty_weight"))

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.join(self.prompt_table(frame), on="prompt_id", how="left", nulls_equal=True, maintain_order="left")
