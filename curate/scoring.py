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
    if "__row" not in out.collect_schema().names():
        out = out.with_row_index("__row")
    return (
        out.group_by("prompt_id")
        .agg(pl.col("__row").min(), *[pl.col(c).first() for c in keep + prompt_level])
        .sort("__row")
        .drop("__row")
    )


def columns_used(names: list[str]) -> set[str]:
    """The input columns a per-prompt score reads: the prompt and what the scorers require."""
    out = {"prompt_id", "prompt"}
    for n in names:
        cls = scorers.registry().get(n)
        if cls is not None:
            out |= set(cls.requires) | {"answer", "correct"}
    return out
