"""`difficulty`: per-prompt weights from multiple sampling (seed 000, arXiv 2412.20996; FORMULAS A1)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from scorers.base import Scorer, register


@dataclass
class DifficultyParams:
    alpha: float = 1.0
    epsilon: float = 1.0
    error_count: str = "mode"  # "mode": P_e = largest wrong-answer class; "total": P_e = N - P_c


def wrong_class_size(has_answer: bool, error_count: str = "mode") -> pl.Expr:
    """Per response: the size of its wrong-answer class within the prompt (0 for correct/ungraded rows)."""
    wrong = pl.col("correct").eq(False)
    if has_answer and error_count == "mode":
        size = pl.len().over("prompt_id", "answer", "correct")
    else:  # without `answer` every wrong response counts toward one class
        size = wrong.sum().over("prompt_id")
    return pl.when(wrong).then(size).otherwise(0)


def difficulty_weight(n: pl.Expr, p_c: pl.Expr, p_e: pl.Expr, alpha: float, epsilon: float) -> pl.Expr:
    """w = 1 + α·P_e/N if P_c = 0, else max(1, 1 + α·P_e/P_c + ε/N) (seed 000; FORMULAS A1)."""
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

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        p = self.params
        has_answer = "answer" in frame.collect_schema().names()
        graded = pl.col("correct").is_not_null()
        n = graded.sum().over("prompt_id")
        p_c = pl.col("correct").fill_null(False).sum().over("prompt_id")
        p_e = wrong_class_size(has_answer, p.error_count).max().over("prompt_id")
        uniq = pl.col("answer").drop_nulls().n_unique().over("prompt_id") if has_answer else pl.lit(None, pl.UInt32)
        return frame.with_columns(
            n.cast(pl.Int64).alias("n_samples"),
            p_c.cast(pl.Int64).alias("n_correct"),
            p_e.cast(pl.Int64).alias("n_wrong_mode"),
            uniq.cast(pl.Int64).alias("n_unique_answers"),
        ).with_columns(
            difficulty_weight(pl.col("n_samples"), pl.col("n_correct"), pl.col("n_wrong_mode"), p.alpha, p.epsilon).alias(
                "difficulty_weight"
            )
        )
