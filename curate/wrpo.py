"""WRPO triplets (Weighted-Reward Preference Optimization, arXiv 2412.03187; FORMULAS B): best source response, best and worst target response."""

from __future__ import annotations

import polars as pl

from curate.errors import CurateError
from curate.lineage import Step
from curate.roles import KEY, PROMPT_ORDER, TRIPLET_ORDER, as_role, finish, rank_within, require_column, with_row_numbers

REJECTED_FROM = ("target", "any")


def _first(order: list[str], descending: list[bool]) -> pl.Expr:
    return rank_within(order, descending) == 0


def _check_target(per_model: dict[str, list], target_model: str) -> None:
    """The target model must occur in the samples and have rewards (`per_model`: model, n, graded as lists)."""
    models = per_model["model"] or []
    counts = dict(zip(models, zip(per_model["n"], per_model["graded"], strict=True), strict=True))
    if target_model not in counts:
        raise CurateError(f"target model {target_model!r} does not occur in the samples; models present: {', '.join(models)}.")
    n, graded = counts[target_model]
    if graded == 0:
        raise CurateError(
            f"target model {target_model!r} has no rewards ({n} responses, every `reward` is null), "
            f"so its best and worst responses cannot be chosen. Run `curate reward` on its responses, or pick a graded "
            f"target: {', '.join(m for m in models if m != target_model and counts[m][1] > 0)}."
        )


def triplets(
    samples: pl.LazyFrame,
    target_model: str,
    *,
    rejected_from: str = "target",
    step: Step | None = None,
) -> pl.LazyFrame:
    """Build WRPO triplets: y_ws = highest-reward source response, y_wt / y_l = highest / lowest-reward target response.

    Source models are all models but `target_model`. `rejected_from="any"` takes y_l as the lowest-reward
    response of any model below y_wt, for data with one response per model (off-policy y_l: a fallback,
    not the paper's recipe). Reward ties go to the response that comes first in the input.
    """
    if rejected_from not in REJECTED_FROM:
        raise CurateError(f"rejected_from must be one of {', '.join(REJECTED_FROM)} (got {rejected_from!r}).")
    schema = samples.collect_schema()
    names = schema.names()
    require_column(schema, "reward", "WRPO triplets rank responses by `reward`, which the samples do not have", "Run `curate reward` to add rewards.")
    step = step if step is not None else Step("triplets")
    per_model = samples.group_by("model").agg(pl.len().alias("n"), pl.col("reward").is_not_null().sum().alias("graded")).sort("model")
    step.require("target model", per_model.select(pl.all().implode()), lambda found: _check_target(found, target_model))

    rows = with_row_numbers(samples)
    graded = rows.filter(pl.col("reward").is_not_null())
    is_target = pl.col("model") == target_model
    source = graded.filter(~is_target)
    tgt = graded.filter(is_target)
    best_source = source.filter(_first(["reward", "__row"], [True, False]))
    best_target = tgt.filter(_first(["reward", "__row"], [True, False]))
    pool = tgt if rejected_from == "target" else graded
    worst = pool.filter(_first(["reward", "__row"], [False, False]))

    out = (
        as_role(best_source, "chosen", keep_shared=True)
        .join(as_role(best_target, "chosen_target", keep_shared=False), on=KEY, how="inner")
        .join(as_role(worst, "rejected", keep_shared=False), on=KEY, how="inner")
    )
    valid = pl.col("rejected_reward") < pl.col("chosen_target_reward")
    # every prompt once: no source response, else no target response, else no target response below the best one
    keys = rows.select(KEY).unique()
    has_src, has_tgt = best_source.select(KEY, pl.lit(True).alias("s")), best_target.select(KEY, pl.lit(True).alias("t"))
    reasons = keys.join(has_src, on=KEY, how="left").join(has_tgt, on=KEY, how="left").join(
        out.filter(valid).select(KEY, pl.lit(True).alias("ok")), on=KEY, how="left"
    )
    why = (
        f"prompts where {target_model} has no two responses with different rewards (WRPO needs several target samples; "
        "--rejected-from any takes y_l from any model)"
        if rejected_from == "target"
        else f"prompts where no response scores below the best {target_model} response"
    )
    step.count("prompts with no graded source-model response", reasons.select(pl.col("s").is_null().sum()), unit="prompts")
    step.count(f"prompts with no graded {target_model} response", reasons.select((pl.col("s") & pl.col("t").is_null()).sum()), unit="prompts")
    step.count(why, reasons.select((pl.col("s") & pl.col("t") & pl.col("ok").is_null()).sum()), unit="prompts")
    out = out.filter(valid).with_columns(pl.lit(1.0).alias("weight"))
    return finish(out, TRIPLET_ORDER, [PROMPT_ORDER])
