"""Applying scorers to a table, optionally collapsed to one row per prompt (`curate score`)."""

from __future__ import annotations

from typing import Any

import polars as pl

import scorers
from curate.errors import CurateError


def score_table(frame: pl.LazyFrame, names: list[str], *, per_prompt: bool = False, **params: Any) -> pl.LazyFrame:
    """Run the scorers `names`; with `per_prompt`, keep one row per prompt (prompt_id, prompt, prompt-level columns)."""
    out = scorers.score(frame, names, **params)
    if not per_prompt:
        return out
    prompt_level = [c for n in names if scorers.registry()[n].level == "prompt" for c in scorers.registry()[n].produces]
    if not prompt_level:
        raise CurateError(f"--per-prompt needs a prompt-level scorer; {', '.join(names)} score responses or pairs.")
    keep = ["prompt"] if "prompt" in out.collect_schema().names() else []
    return (
        out.with_row_index("__row")
        .group_by("prompt_id")
        .agg(pl.col("__row").min(), *[pl.col(c).first() for c in keep + prompt_level])
        .sort("__row")
        .drop("__row")
    )
