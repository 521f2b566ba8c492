"""Ranked multi-response lists for Multi-DPO (arXiv 2412.07812; FORMULAS B)."""

from __future__ import annotations

import polars as pl

from curate.errors import CurateError
from curate.lineage import Step
from curate.roles import KEY, PROMPT_ORDER, finish, require_column, with_row_numbers

RANKED_ORDER = ("prompt_id", "prompt", "responses", "rewards", "models", "pair_id", "ref_logps", "logps", "n_tokens", "weight")
_LISTS = {"response": "responses", "reward": "rewards", "model": "models", "ref_logp": "ref_logps", "logp": "logps", "n_tokens": "n_tokens"}


def rank(samples: pl.LazyFrame, *, min_responses: int = 2, max_responses: int | None = None, step: Step | None = None) -> pl.LazyFrame:
    """One row per prompt: its graded responses sorted by reward, best first (ties keep input order).

    Prompts with fewer than `min_responses` graded responses are dropped and counted; `max_responses`
    keeps only the top of each list.
    """
    if min_responses < 2:
        raise CurateError(f"min_responses must be at least 2 (got {min_responses}).")
    if max_responses is not None and max_responses < min_responses:
        raise CurateError(f"max_responses ({max_responses}) is below min_responses ({min_responses}).")
    schema = samples.collect_schema()
    names = schema.names()
    require_column(schema, "reward", "ranking needs a `reward` column", "Run `curate reward` to add rewards.")
    step = step if step is not None else Step("rank")
    rows = with_row_numbers(samples)
    graded = rows.filter(pl.col("reward").is_not_null())
    lists = []
    for src, dst in _LISTS.items():
        if src in names:
            ranked = pl.col(src).sort_by(["reward", "__row"], descending=[True, False])
            lists.append((ranked.head(max_responses) if max_responses else ranked).alias(dst))
    grouped = graded.group_by(KEY).agg(
        pl.col("prompt").first(), pl.col(PROMPT_ORDER).first(), pl.len().alias("__n"), (pl.col("reward").n_unique() == 1).alias("__tied"), *lists
    )
    enough = pl.col("__n") >= min_responses
    step.count("responses with null reward (ungraded)", rows.select(pl.col("reward").is_null().sum()), unit="samples")
    short = rows.select(pl.col(KEY).n_unique().alias("n")).join(grouped.filter(enough).select(pl.len().alias("m")), how="cross")
    step.count(f"prompts with fewer than {min_responses} graded responses", short.select(pl.col("n") - pl.col("m")), unit="prompts")
    step.count("prompts whose graded responses all have the same reward (no ranking to learn)", grouped.filter(enough & pl.col("__tied")).select(pl.len()), unit="prompts")
    out = grouped.filter(enough & ~pl.col("__tied")).with_columns(pl.lit(1.0).alias("weight"), pl.col(KEY).alias("pair_id"))
    return finish(out, RANKED_ORDER, [PROMPT_ORDER])
