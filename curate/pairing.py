"""Preference pairs from samples: `best-of-n2`, `correct-vs-incorrect`, `best-vs-worst`, `all`.

Every strategy is a lazy self-join on `prompt_id`: build candidate (chosen, rejected) pairs, score them,
then keep the top `k` per prompt. Best-of-N² by DCRM (the default) takes the exact shortcut of
`curate.best_of_n2`, which computes few edit distances. Outputs are sorted explicitly: prompts in
input order, then rank. Drops are recorded on the step as lazy counts (evaluated with the output, in
one execution), in one unit each: samples, pairs, or prompts (every input prompt either yields a
pair or is counted under one reason).
"""

from __future__ import annotations

from typing import Any

import polars as pl

import scorers
from curate.errors import CurateError, SchemaError
from curate.lineage import Step
from curate.roles import KEY, PAIR_ORDER, PROMPT_ORDER, ROW, as_role, finish, rank_within, require_column, shared_columns, with_row_numbers
from scorers.dcrm import REF, prob_distance_expr

STRATEGIES = ("best-of-n2", "correct-vs-incorrect", "best-vs-worst", "all")
C_ROW, R_ROW = "__chosen_row", "__rejected_row"
_DCRM_PARAMS = {"epsilon", "prob_distance", "unit", "distance"}


def pairs(
    samples: pl.LazyFrame,
    strategy: str = "best-of-n2",
    by: str | None = None,
    k: int = 1,
    seed: int = 0,
    *,
    step: Step | None = None,
    exhaustive: bool = False,
    **scorer_params: Any,
) -> pl.LazyFrame:
    """Build a `pairs` table from a validated `samples` LazyFrame with one of STRATEGIES.

    `by` ranks candidate pairs (any column, or any scorer output, computed on demand); `k` pairs are
    kept per prompt; `seed` makes random choices deterministic; extra keywords go to the scorers.
    `exhaustive` scores every candidate pair even where best-of-N² by DCRM has an exact shortcut.
    Rows and prompts that cannot form a pair are counted on `step` with the reason.
    """
    if strategy not in STRATEGIES:
        raise CurateError(f"unknown pairing strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")
    if k < 1:
        raise CurateError(f"k must be at least 1 (got {k}).")
    step = step if step is not None else Step("pairs")
    samples = with_row_numbers(samples)
    if strategy == "correct-vs-incorrect":
        return _correct_vs_incorrect(samples, k=k, seed=seed, step=step, **scorer_params)
    graded = _graded(samples, step)
    if strategy == "best-vs-worst":
        out = finish(with_scores(_best_vs_worst(graded), None, scorer_params), PAIR_ORDER, [PROMPT_ORDER])
        reason = "prompts whose graded responses all have the same reward (or fewer than two are graded)"
    elif strategy == "all":
        out = finish(with_scores(_all_pairs(graded), by, scorer_params), PAIR_ORDER, sort_by=[])  # already in order
        reason = "prompts with fewer than two distinct graded rewards (no pair)"
    else:
        by = by or default_rank_column()
        if by == "dcrm" and not exhaustive and set(scorer_params) <= _DCRM_PARAMS and scorer_params.get("distance", "edit") == "edit":
            out = _best_of_n2_dcrm(graded, k, step, **scorer_params)
        else:
            out = top_k_per_prompt(with_scores(_oriented_pairs(graded), by, scorer_params), by, k, step=step)
        reason = "prompts left without a pair (fewer than two distinct graded rewards, or only identical or unscorable responses)"
    step.count_unpaired(reason, samples, out)
    return out


def default_rank_column() -> str:
    """`dcrm` once that scorer is registered, else `reward_margin` (best-of-n2's default ranking)."""
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


def rank_order(by: str, names: list[str]) -> list[pl.Expr]:
    """Best first by `by`; ties to the larger reward margin, the smaller d_prob, the smaller edit distance, the earlier rows."""
    order = [-pl.col(by).cast(pl.Float64)]
    if {"chosen_reward", "rejected_reward"} <= set(names):
        order.append(-(pl.col("chosen_reward") - pl.col("rejected_reward")))
    if set(REF) <= set(names):
        order.append(prob_distance_expr())
    if "edit_distance" in names:
        order.append(pl.col("edit_distance"))
    return [*order, pl.col(C_ROW), pl.col(R_ROW)]


def top_k_per_prompt(frame: pl.LazyFrame, by: str, k: int, *, step: Step | None = None) -> pl.LazyFrame:
    """Keep the `k` best pairs per prompt by `by` (descending), breaking ties deterministically (FORMULAS A2).

    Pairs with edit distance 0 (same text, different reward) are skipped, and so are pairs whose
    `by` is null (e.g. a response without token ids); both are counted.
    """
    names = frame.collect_schema().names()
    if "edit_distance" in names:
        identical = pl.col("edit_distance") == 0
        if step is not None:
            step.count("pairs with edit distance 0 (identical responses)", frame.select(identical.sum()), unit="pairs")
        frame = frame.filter(~identical.fill_null(False))
    if step is not None:
        why = f"pairs whose `{by}` is null" + (" (a response without token_ids or a reference log-prob)" if by == "dcrm" else "")
        step.count(why, frame.select(pl.col(by).is_null().sum()), unit="pairs")
    rank = pl.int_range(pl.len()).over(KEY, order_by=rank_order(by, names))
    scored = frame.filter(pl.col(by).is_not_null()).with_columns(rank.alias("__rank"))
    return finish(scored.filter(pl.col("__rank") < k), PAIR_ORDER, [PROMPT_ORDER, "__rank"])


def _best_of_n2_dcrm(graded: pl.LazyFrame, k: int, step: Step, *, epsilon: float = 1.0, prob_distance: bool | None = None,
                     unit: str = "auto", distance: str = "edit") -> pl.LazyFrame:  # fmt: skip
    """Best-of-N² by DCRM through `curate.best_of_n2` (few distances), joined back to the full rows; equal to the exhaustive path."""
    from curate.best_of_n2 import top_k_by_dcrm

    names = graded.collect_schema().names()
    narrow = [KEY, ROW, PROMPT_ORDER, "reward", *[c for c in ("response", "token_ids", "ref_logp") if c in names]]
    rows = graded.collect()  # read once: the distances need the texts, and the chosen pairs join back to these rows
    top = top_k_by_dcrm(rows.select(narrow), k, epsilon=epsilon, prob_distance=prob_distance, unit=unit)
    graded = rows.lazy()
    step.drop("pairs with edit distance 0 (identical responses)", top.identical, unit="pairs")
    step.drop("pairs whose `dcrm` is null (a response without token_ids or a reference log-prob)", top.null, unit="pairs")
    chosen = as_role(graded, "chosen", keep_shared=True)
    rejected = as_role(graded, "rejected", keep_shared=False)
    out = top.selected.lazy().join(chosen, on=[KEY, C_ROW], how="inner").join(rejected, on=[KEY, R_ROW], how="inner")
    pair_names = [*chosen.collect_schema().names(), *[c for c in rejected.collect_schema().names() if c != KEY]]
    extra = [] if "weight" in pair_names else [pl.lit(1.0).alias("weight")]
    out = out.with_columns(*extra, (pl.col("chosen_reward") - pl.col("rejected_reward")).alias("reward_margin"))
    order = [*pair_names, *(["weight"] if extra else []), "reward_margin", "edit_distance", "dcrm", "__rank"]
    return finish(out.select(order), PAIR_ORDER, [PROMPT_ORDER, "__rank"])


def _graded(samples: pl.LazyFrame, step: Step) -> pl.LazyFrame:
    schema = samples.collect_schema()
    require_column(schema, "reward", "this pairing strategy orders responses by `reward`, which the samples do not have",
                   "Run `curate reward` to add rewards, or use --strategy correct-vs-incorrect with a `correct` column.")
    step.count("responses with null reward (ungraded)", samples.select(pl.col("reward").is_null().sum()), unit="samples")
    return samples.filter(pl.col("reward").is_not_null())


def _oriented_pairs(graded: pl.LazyFrame) -> pl.LazyFrame:
    """Every pair of one prompt's responses, chosen = higher reward; reward ties are skipped."""
    chosen = as_role(graded, "chosen", keep_shared=True)
    rejected = as_role(graded, "rejected", keep_shared=False)
    return chosen.join(rejected, on=KEY, how="inner").filter(pl.col("chosen_reward") > pl.col("rejected_reward"))


def _all_pairs(graded: pl.LazyFrame) -> pl.LazyFrame:
    """Every oriented pair, in output order (prompts in input order, then chosen and rejected rows), built index first.

    The pairs are formed and sorted on row numbers alone; the texts are joined on afterwards in that
    order, so the sink streams them out (memory holds one copy of the samples, not every pair's texts).
    """
    narrow = graded.select(KEY, PROMPT_ORDER, ROW, "reward")
    other = narrow.select(KEY, pl.col(ROW).alias(R_ROW), pl.col("reward").alias("__r_reward"))
    index = (
        narrow.join(other, on=KEY, how="inner")
        .filter(pl.col("reward") > pl.col("__r_reward"))
        .sort(PROMPT_ORDER, ROW, R_ROW)
        .select(KEY, pl.col(ROW).alias(C_ROW), R_ROW)
    )
    return _with_rows(index, graded, ordered=True)


def _with_rows(index: pl.LazyFrame, graded: pl.LazyFrame, *, ordered: bool = False) -> pl.LazyFrame:
    """The pairs of `index` (prompt id, chosen and rejected row numbers) with both responses' rows joined on, as pair columns.

    Pairs are chosen on narrow columns (row numbers, rewards, answers) and the texts joined on last:
    windows and filters over the narrow columns cost a fraction of the same over every column.
    `ordered` keeps the index's order.
    """
    keep = "left" if ordered else None
    chosen = as_role(graded, "chosen", keep_shared=True)
    rejected = as_role(graded, "rejected", keep_shared=False)
    out = index.join(chosen, on=[KEY, C_ROW], how="inner", maintain_order=keep)
    out = out.join(rejected, on=[KEY, R_ROW], how="inner", maintain_order=keep)
    return out.select(*chosen.collect_schema().names(), *[c for c in rejected.collect_schema().names() if c != KEY])


def _best_vs_worst(graded: pl.LazyFrame) -> pl.LazyFrame:
    """chosen = highest reward, rejected = lowest (first in input order among ties); equal rewards give none."""
    narrow = graded.select(KEY, ROW, "reward")
    best = narrow.filter(rank_within(["reward", ROW], [True, False]) == 0)
    best = best.select(KEY, pl.col(ROW).alias(C_ROW), pl.col("reward").alias("__c_reward"))
    worst = narrow.filter(rank_within(["reward", ROW], [False, False]) == 0)
    worst = worst.select(KEY, pl.col(ROW).alias(R_ROW), pl.col("reward").alias("__r_reward"))
    index = best.join(worst, on=KEY, how="inner").filter(pl.col("__c_reward") > pl.col("__r_reward")).select(KEY, C_ROW, R_ROW)
    return _with_rows(index, graded)


def _seeded_order(seed: int) -> pl.Expr:
    """A deterministic pseudo-random key per response (same seed, same order)."""
    return pl.struct(KEY, "response", "__row").hash(seed)


def _correct_vs_incorrect(samples: pl.LazyFrame, *, k: int, seed: int, step: Step, **params: Any) -> pl.LazyFrame:
    """chosen = a correct response (gold if none), rejected = one from the largest wrong-answer class (FORMULAS A1)."""
    schema = samples.collect_schema()
    require_column(schema, "correct", "strategy correct-vs-incorrect needs a `correct` column", "Run `curate verify` to add it.")
    names = schema.names()
    step.count("responses with null `correct` (ungraded)", samples.select(pl.col("correct").is_null().sum()), unit="samples")
    rows = samples.filter(pl.col("correct").is_not_null())
    difficulty = scorers.instances(["difficulty"], params)["difficulty"]
    difficulty.check(rows)
    # one row per prompt, joined to the pairs at the end: joining it to every response (and carrying it through the
    # choice) took 0.6 s of 6 s at 200k prompts
    table = difficulty.prompt_table(rows)
    has_answer = "answer" in names
    error_count = params.get("error_count", "mode")
    graded = rows.with_columns(_seeded_order(seed).alias("__h"))
    # the responses are chosen on row numbers, answers and the seeded order alone; their rows are joined on last
    narrow = graded.select(KEY, ROW, "correct", "__h", *(["answer"] if has_answer else []))
    wrong = narrow.filter(~pl.col("correct"))
    if has_answer and error_count == "mode":
        # the largest wrong class; among equally large classes, the one holding the first response in seeded order
        wrong = wrong.with_columns(pl.len().over(KEY, "answer").alias("__class"))
        wrong = wrong.filter(pl.col("__class") == pl.col("__class").max().over(KEY))
        wrong = wrong.filter(pl.col("answer").eq_missing(pl.col("answer").sort_by("__h").first().over(KEY)))
    nth = pl.int_range(pl.len()).over(KEY, order_by=["__h", ROW]).alias("__i")
    rejected = wrong.with_columns(nth).filter(pl.col("__i") < k).select(KEY, pl.col(ROW).alias(R_ROW), "__i")
    right = narrow.filter(pl.col("correct")).with_columns(nth).filter(pl.col("__i") < k).select(KEY, pl.col(ROW).alias(C_ROW), "__i")
    parts = [_with_rows(right.join(rejected, on=[KEY, "__i"], how="inner").select(KEY, C_ROW, R_ROW), graded)]
    has_gold = "gold" in names
    if has_gold:
        parts.append(_gold_pairs(graded, rejected.select(KEY, R_ROW), table.filter(pl.col("n_correct") == 0).select(KEY)))
    out = pl.concat(parts, how="diagonal_relaxed").join(table, on=KEY, how="left", nulls_equal=True)
    # the columns as a per-response score would put them: the difficulty columns after the chosen side's
    scores = [c for c in table.collect_schema().names() if c != KEY]
    chosen_side = as_role(graded, "chosen", keep_shared=True).collect_schema().names()
    have = out.collect_schema().names()
    in_order = [c for c in chosen_side if c in have] + scores
    out = out.select(in_order + [c for c in have if c not in in_order]).with_columns(pl.col("difficulty_weight").alias("weight"))
    out = finish(out, PAIR_ORDER, [PROMPT_ORDER, C_ROW, R_ROW])
    gold_ok = _usable_gold(pl.col("gold").first()) if has_gold else pl.lit(False)
    stats = graded.group_by(KEY).agg(pl.col("correct").sum().alias("c"), (~pl.col("correct")).sum().alias("w"), gold_ok.alias("g"))
    no_wrong = stats.select((pl.col("w") == 0).sum().alias("n"))
    no_right = stats.select(((pl.col("c") == 0) & ~pl.col("g") & (pl.col("w") > 0)).sum().alias("n"))
    step.count("prompts with no incorrect response (nothing to reject)", no_wrong, unit="prompts")
    step.count("prompts with no correct response and no gold", no_right, unit="prompts")
    step.count_unpaired("prompts with no graded response (every `correct` is null)", samples, out,
                        less=("prompts with no incorrect response (nothing to reject)", "prompts with no correct response and no gold"))  # fmt: skip
    return out


def _usable_gold(gold: pl.Expr) -> pl.Expr:
    return gold.is_not_null() & (gold.str.len_bytes() > 0)


def _gold_pairs(graded: pl.LazyFrame, rejected: pl.LazyFrame, no_correct: pl.LazyFrame) -> pl.LazyFrame:
    """Prompts with no correct response (the keys `no_correct`): the gold answer is the chosen side (chosen_model = "gold").

    `rejected` holds the prompt id and row number of each rejected response.
    """
    shared = [c for c in shared_columns(graded.collect_schema().names()) if c != "gold"]
    gold = (
        graded.join(no_correct, on=KEY, how="semi", nulls_equal=True)
        .group_by(KEY)
        .agg(pl.col("gold").first(), *[pl.col(c).first() for c in shared])
        .filter(_usable_gold(pl.col("gold")))
        .with_columns(
            pl.col("gold").alias("chosen"),
            pl.lit("gold").alias("chosen_model"),
            pl.lit(True).alias("chosen_correct"),
            pl.lit(-1, dtype=pl.Int64).alias(C_ROW),
        )
    )
    rows = as_role(graded, "rejected", keep_shared=False)
    return gold.join(rejected, on=KEY, how="inner").join(rows, on=[KEY, R_ROW], how="inner")
