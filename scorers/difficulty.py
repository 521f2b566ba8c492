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
    vectorized = True
    citation = "Plug-and-play weighted training from multiple sampling (arXiv 2412.20996), FORMULAS A1"
    Params = DifficultyParams
    sql_macros = (
        """CREATE OR REPLACE MACRO difficulty_weight(n, p_c, p_e, alpha := 1.0, epsilon := 1.0) AS
        CASE WHEN n = 0 THEN NULL
             WHEN p_c = 0 THEN 1 + alpha * p_e / n
             ELSE greatest(1.0, 1 + alpha * p_e / p_c + epsilon / n) END""",
    )

    def prompt_table(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """One row per prompt_id: N (graded responses), P_c, P_e, distinct answers and the weight (group-bys, no windows).

        With answers, one group-by on (prompt, answer) counts each answer class (null answers form one
        class); the prompt's row is then built from its classes, a much shorter table.
        """
        p = self.params
        has_answer = "answer" in frame.collect_schema().names()
        correct = pl.col("correct")
        counts = [correct.is_not_null().sum().alias("n_samples"), correct.fill_null(False).sum().alias("n_correct"),
                  correct.eq(False).sum().alias("n_wrong_mode")]  # fmt: skip
        if has_answer:
            # P_e: the largest wrong-answer class ("mode"), or every wrong response ("total")
            p_e = pl.col("n_wrong_mode").max() if p.error_count == "mode" else pl.col("n_wrong_mode").sum()
            classes = frame.group_by("prompt_id", "answer").agg(counts)
            table = classes.group_by("prompt_id").agg(pl.col("n_samples").sum(), pl.col("n_correct").sum(), p_e,
                                                      pl.col("answer").is_not_null().sum().alias("n_unique_answers"))  # fmt: skip
        else:  # without `answer` every wrong response counts toward one class
            table = frame.group_by("prompt_id").agg(*counts, pl.lit(None, pl.UInt32).alias("n_unique_answers"))
        table = table.with_columns(pl.col(c).cast(pl.Int64) for c in self.produces[:-1])
        weight = difficulty_weight(pl.col("n_samples"), pl.col("n_correct"), pl.col("n_wrong_mode"), p.alpha, p.epsilon)
        return table.select("prompt_id", *self.produces[:-1], weight.alias("difficulty_weight"))

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.join(self.prompt_table(frame), on="prompt_id", how="left", nulls_equal=True, maintain_order="left")
