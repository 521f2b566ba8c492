"""Preference pairs from samples (SPEC §4): `best-of-n2`, `correct-vs-incorrect`, `best-vs-worst`, `all`.

Every strategy is a lazy self-join on `prompt_id`: build candidate (chosen, rejected) pairs, score them,
then keep the top `k` per prompt. Outputs are sorted explicitly: prompts in input order, then rank.
"""

from __future__ import annotations

from typing import Any

import polars as pl

import scorers
from scorers.dcrm import REF, prob_distance_expr
from curate.errors import CurateError, SchemaError
from curate.report import Step
from curate.roles import KEY, PAIR_ORDER, PROMPT_ORDER, ROW, as_role, finish, rank_within, shared_columns, with_row_numbers

STRATEGIES = ("best-of-n2", "correct-vs-incorrect", "best-vs-worst", "all")
C_ROW, R_ROW = "__chosen_row", "__rejected_row"


def pairs(
    samples: pl.LazyFrame,
    strategy: str = "best-of-n2",
    by: str | None = None,
    k: int = 1,
    seed: int = 0,
    *,
    step: Step | None = None,
    **scorer_params: Any,
) -> pl.LazyFrame:
    """Build a `pairs` table (SPEC §2.2) from a validated `samples` LazyFrame with one of STRATEGIES.

    `by` ranks candidate pairs (any column, or any scorer output, computed on demand); `k` pairs are
    kept per prompt; `seed` makes random choices deterministic; extra keywords go to the scorers.
    Rows and prompts that cannot form a pair are counted on `step` with the reason.
    """
    if strategy not in STRATEGIES:
        raise CurateError(f"unknown pairing strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")
    if k < 1:
        raise CurateError(f"k must be at least 1 (got {k}).")
    samples = with_row_numbers(samples)
    if strategy == "correct-vs-incorrect":
        out = _correct_vs_incorrect(samples, k=k, seed=seed, step=step, **scorer_params)
        return finish(out, PAIR_ORDER, [PROMPT_ORDER, C_ROW, R_ROW])
    graded = _graded(samples, step)
    if strategy == "best-vs-worst":
        out = _best_vs_worst(graded, step)
        return finish(with_scores(out, None, scorer_params), PAIR_ORDER, [PROMPT_ORDER])
    cands = _oriented_pairs(graded)
    if strategy == "all":
        out = with_scores(cands, by, scorer_params)
        return finish(out, PAIR_ORDER, [PROMPT_ORDER, C_ROW, R_ROW])
    by = by or default_rank_column()
    out = top_k_per_prompt(with_scores(cands, by, scorer_params), by, k, step=step)
    if step is not None:
        _count_unpaired_prompts(graded, out, step)
    return out


def default_rank_column() -> str:
    """`dcrm` once that scorer is registered, else `reward_margin` (SPEC §4, best-of-n2)."""
    return "dcrm" if "dcrm" in scorers.registry() else "reward_margin"


def with_scores(frame: pl.LazyFrame, by: str | None, params: dict[str, Any]) -> pl.LazyFrame:
    """Add `weight` (1.0 unless present) and, if `by` is not a column yet, the scorer that produces it."""
    names = frame.collect_schema().names()
    if "weight" not in names:
        frame = frame.with_columns(pl.lit(1.0).alias("weight"))
    if by is None or by in names:
        if params:
            raise CurateError(f"scorer parameter(s) {', '.join(params)} given but no scorer runs here.")
        return frame
    producer = scorers.producer_of(by)
    if producer is None:
        raise SchemaError(
            f"cannot rank by `{by}`: it is neither a column of the pairs nor produced by a registered scorer",
            column=by,
            hint="See `curate scorers` for the scorer outputs.",
        )
    return scorers.score(frame, [producer], **params)


def top_k_per_prompt(frame: pl.LazyFrame, by: str, k: int, *, step: Step | None = None) -> pl.LazyFrame:
    """Keep the `k` best pairs per prompt by `by` (descending), breaking ties deterministically (FORMULAS A2).

    Ties go to the larger reward margin, then the smaller d_prob, then the smaller edit distance, then
    the earlier responses. Pairs with edit distance 0 (same text, different reward) are skipped.
    """
    names = frame.collect_schema().names()
    if "edit_distance" in names:
        if step is not None:
            step.drop("pairs with edit distance 0 (identical responses)", frame.select((pl.col("edit_distance") == 0).sum()).collect().item())
        frame = frame.filter(pl.col("edit_distance") != 0)
    order = [-pl.col(by).cast(pl.Float64)]
    if {"chosen_reward", "rejected_reward"} <= set(names):
        order.append(-(pl.col("chosen_reward") - pl.col("rejected_reward")))
    if set(REF) <= set(names):
        order.append(prob_distance_expr())
    if "edit_distance" in names:
        order.append(pl.col("edit_distance"))
    order += [pl.col(C_ROW), pl.col(R_ROW)]
    rank = pl.int_range(pl.len()).over(KEY, order_by=order)
    scored = frame.filter(pl.col(by).is_not_null()).with_columns(rank.alias("__rank"))
    return finish(scored.filter(pl.col("__rank") < k), PAIR_ORDER, [PROMPT_ORDER, "__rank"])


def _graded(samples: pl.LazyFrame, step: Step | None) -> pl.LazyFrame:
    if "reward" not in samples.collect_schema().names():
        raise SchemaError(
            "this pairing strategy orders responses by `reward`, which the samples do not have",
            column="reward",
            hint="Run `curate reward` to add rewards, or use --strategy correct-vs-incorrect with a `correct` column.",
        )
    if step is not None:
        step.drop("responses with null reward (ungraded)", samples.select(pl.col("reward").is_null().sum()).collect().item())
    return samples.filter(pl.col("reward").is_not_null())


def _oriented_pairs(graded: pl.LazyFrame) -> pl.LazyFrame:
    """Every pair of one prompt's responses, chosen = higher reward; reward ties are skipped."""
    chosen = as_role(graded, "chosen", keep_shared=True)
    rejected = as_role(graded, "rejected", keep_shared=False)
    return chosen.join(rejected, on=KEY, how="inner").filter(pl.col("chosen_reward") > pl.col("rejected_reward"))


def _best_vs_worst(graded: pl.LazyFrame, step: Step | None) -> pl.LazyFrame:
    """chosen = highest reward, rejected = lowest (first in input order among ties); equal rewards give none."""
    best = rank_within(["reward", ROW], [True, False]) == 0
    worst = rank_within(["reward", ROW], [False, False]) == 0
    chosen = as_role(graded.filter(best), "chosen", keep_shared=True)
    rejected = as_role(graded.filter(worst), "rejected", keep_shared=False)
    out = chosen.join(rejected, on=KEY, how="inner")
    if step is not None:
        tied = out.filter(pl.col("chosen_reward") <= pl.col("rejected_reward")).select(pl.len()).collect().item()
        step.drop("prompts whose graded responses all have the same reward (or only one response)", tied)
    return out.filter(pl.col("chosen_reward") > pl.col("rejected_reward"))


def _count_unpaired_prompts(graded: pl.LazyFrame, out: pl.LazyFrame, step: Step) -> None:
    n_prompts, n_paired = pl.collect_all(
        [graded.select(pl.col(KEY).n_unique()), out.select(pl.col(KEY).n_unique())]
    )
    step.drop("prompts with fewer than two distinct graded rewards (no pair)", n_prompts.item() - n_paired.item())


def _seeded_order(seed: int) -> pl.Expr:
    """A deterministic pseudo-random key per response (same seed, same order)."""
    return pl.struct(KEY, "response", "__row").hash(seed)


def _correct_vs_incorrect(samples: pl.LazyFrame, *, k: int, seed: int, step: Step | None, **params: Any) -> pl.LazyFrame:
    """chosen = a correct response (gold if none), rejected = one from the largest wrong-answer class (FORMULAS A1)."""
    names = samples.collect_schema().names()
    if "correct" not in names:
        raise SchemaError(
            "strategy correct-vs-incorrect needs a `correct` column",
            column="correct",
            hint="Run `curate verify` to add it.",
        )
    if step is not None:
        step.drop("responses with null `correct` (ungraded)", samples.select(pl.col("correct").is_null().sum()).collect().item())
    graded = scorers.score(samples.filter(pl.col("correct").is_not_null()), ["difficulty"], **params)
    has_answer = "answer" in names
    error_count = params.get("error_count", "mode")
    h = _seeded_order(seed)
    graded = graded.with_columns(h.alias("__h"))
    wrong = graded.filter(~pl.col("correct"))
    if has_answer and error_count == "mode":
        # the largest wrong class; among equally large classes, the one holding the first response in seeded order
        wrong = wrong.with_columns(pl.len().over(KEY, "answer").alias("__class"))
        wrong = wrong.filter(pl.col("__class") == pl.col("__class").max().over(KEY))
        wrong = wrong.filter(pl.col("answer").eq_missing(pl.col("answer").sort_by("__h").first().over(KEY)))
    nth = pl.int_range(pl.len()).over(KEY, order_by=["__h", ROW]).alias("__i")
    rejected = as_role(wrong.with_columns(nth).filter(pl.col("__i") < k), "rejected", keep_shared=False)
    right = graded.filter(pl.col("correct")).with_columns(nth).filter(pl.col("__i") < k)
    self_chosen = as_role(right, "chosen", keep_shared=True).rename({"__chosen_i": "__i"})
    self_pairs = self_chosen.join(rejected.rename({"__rejected_i": "__i"}), on=[KEY, "__i"], how="inner")
    parts = [self_pairs.drop("__i")]
    if "gold" in names:
        parts.append(_gold_pairs(graded, rejected.drop("__rejected_i")))
    out = pl.concat(parts, how="diagonal_relaxed").with_columns(pl.col("difficulty_weight").alias("weight"))
    if step is not None:
        stats = graded.group_by(KEY).agg(
            pl.col("correct").sum().alias("c"), (~pl.col("correct")).sum().alias("w"), pl.col("gold").first().is_not_null().alias("g") if "gold" in names else pl.lit(False).alias("g")
        ).collect()
        step.drop("prompts with no incorrect response (nothing to reject)", stats.filter(pl.col("w") == 0).height)
        step.drop("prompts with no correct response and no gold", stats.filter((pl.col("c") == 0) & ~pl.col("g") & (pl.col("w") > 0)).height)
    return out


def _gold_pairs(graded: pl.LazyFrame, rejected: pl.LazyFrame) -> pl.LazyFrame:
    """Prompts with no correct response: the gold answer is the chosen side (chosen_model = "gold")."""
    shared = [c for c in shared_columns(graded.collect_schema().names()) if c != "gold"]
    gold = (
        graded.filter(pl.col("n_correct") == 0)
        .group_by(KEY)
        .agg(pl.col("gold").first(), *[pl.col(c).first() for c in shared])
        .filter(pl.col("gold").is_not_null() & (pl.col("gold").str.len_bytes() > 0))
        .with_columns(
            pl.col("gold").alias("chosen"),
            pl.lit("gold").alias("chosen_model"),
            pl.lit(True).alias("chosen_correct"),
            pl.lit(-1, dtype=pl.Int64).alias(C_ROW),
        )
    )
    return gold.join(rejected, on=KEY, how="inner")
