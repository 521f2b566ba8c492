"""Applying scorers to a table, optionally collapsed to one row per prompt (`curate score`)."""

from __future__ import annotations

from typing import Any

import polars as pl

import scorers
from curate.errors import CurateError
from curate.lineage import Step


def score_table(frame: pl.LazyFrame, names: list[str], *, per_prompt: bool = False, statistics: dict[str, Any] | None = None,
                step: Step | None = None, **params: Any) -> pl.LazyFrame:  # fmt: skip
    """Run the scorers `names`; with `per_prompt`, keep one row per prompt (prompt_id, prompt, prompt-level columns).

    `statistics`: whole-table values of the scorers that need them, computed elsewhere (`score_phases`). With
    `per_prompt`, the samples a prompt-level scorer leaves out of its counts (a null `correct`: ungraded) are
    counted on `step`, in the same execution as the output.
    """
    if not per_prompt:
        return scorers.score(frame, names, statistics=statistics, **params)
    prompt_scorers = {n: scorers.registry()[n] for n in names if scorers.registry()[n].level == "prompt"}
    prompt_level = [c for cls in prompt_scorers.values() for c in cls.produces]
    if not prompt_level:
        raise CurateError(f"--per-prompt needs a prompt-level scorer; {', '.join(names)} score responses or pairs.")
    have = frame.collect_schema().names()
    for name, cls in prompt_scorers.items() if step is not None else ():
        for col in cls.requires:
            if col != "prompt_id" and col in have:
                step.count(f"responses with null `{col}` (ungraded), not counted by {name}", frame.select(pl.col(col).null_count()), unit="samples")
    keep = ["prompt"] if "prompt" in have else []
    found = scorers.instances(names, params)
    for s in found.values():
        s.check(frame)
    tables = [s.prompt_table(frame) if s.level == "prompt" else None for s in found.values()]
    if all(t is not None for t in tables):  # every scorer gives its prompt table directly: group-bys, no per-row columns
        if "__row" not in have:
            frame = frame.with_row_index("__row")
        out = frame.group_by("prompt_id").agg(pl.col("__row").min(), *[pl.col(c).first() for c in keep])
        for table in tables:
            out = out.join(table, on="prompt_id", how="left", nulls_equal=True)
        return out.sort("__row").drop("__row").select("prompt_id", *keep, *prompt_level)
    out = scorers.score(frame, names, statistics=statistics, **params)
    if "__row" not in out.collect_schema().names():
        out = out.with_row_index("__row")
    return (
        out.group_by("prompt_id")
        .agg(pl.col("__row").min(), *[pl.col(c).first() for c in keep + prompt_level])
        .sort("__row")
        .drop("__row")
    )


def statistics_pass(frame: pl.LazyFrame, names: list[str], params: dict[str, Any]) -> dict[str, Any] | None:
    """The whole-table statistics of the scorers `names` (z-score moments, thresholds) from one pass over the columns
    they read; None when no scorer reads the whole table.

    The first of two passes: given these values, the pass that writes scores row by row and streams,
    where a mean computed in the same plan holds the whole table, every column of it, until it is
    known. None also when a whole-table scorer reads the output of one that is not `vectorized`: this
    pass would run that scorer a second time, so the command keeps to one pass.
    """
    found = scorers.instances(names, params)
    order = list(found)
    whole = [n for n, s in found.items() if s.reads_whole_table()]
    if not whole:
        return None
    for name in whole:
        needs = set(found[name].requires)
        if any(not found[b].vectorized and needs & set(found[b].produces) for b in order[: order.index(name)]):
            return None
    rows = _statistics_rows(frame, order, found, whole, params)
    if not rows:  # e.g. dual_margin with fixed thresholds: nothing to compute over the table
        return None
    return _merged_statistics([pl.concat(rows, how="horizontal").collect().row(0, named=True)], found, whole)


def columns_used(names: list[str]) -> set[str]:
    """The input columns a per-prompt score reads: the prompt and what the scorers require."""
    out = {"prompt_id", "prompt"}
    for n in names:
        cls = scorers.registry().get(n)
        if cls is not None:
            out |= set(cls.requires) | {"answer", "correct"}
    return out


def score_phases(names: list[str], params: dict[str, Any]) -> list[Any]:
    """The whole-table statistics of the scorers `names` (z-score moments, thresholds) as one phase of a distributed run.

    Each block computes every such scorer's partial row over its table with the scorers before it
    applied (row-local ones); the driver merges them with the scorer's own `merge_statistics`.
    """
    from curate.distributed import Phase

    found = scorers.instances(names, params)
    table_level = [n for n, s in found.items() if s.reads_whole_table()]
    if not table_level:
        return []

    def partial(frame: pl.LazyFrame, known: dict[str, Any]) -> pl.LazyFrame:
        rows = _statistics_rows(frame, names, found, table_level, params)
        return pl.concat(rows, how="horizontal") if rows else frame.select(pl.lit(None).alias("none")).head(1)

    return [Phase("scorers", partial, lambda parts, known: _merged_statistics(parts, found, table_level))]


def _statistics_rows(frame: pl.LazyFrame, names: list[str], found: dict[str, Any], table_level: list[str], params: dict[str, Any]) -> list[pl.LazyFrame]:
    """Each whole-table scorer's one-row partial statistics (columns prefixed `name:`), over `frame` with the row-local
    scorers before it applied; a scorer with nothing to compute (fixed thresholds) gives none."""
    rows = []
    for i, name in enumerate(names):
        if name not in table_level:
            continue
        before = [n for n in names[:i] if n not in table_level]
        stats = found[name].table_statistics(scorers.score(frame, before, **_params_of(before, params)) if before else frame)
        if stats is not None:
            rows.append(stats.select(pl.all().name.prefix(f"{name}:")))
    return rows


def _merged_statistics(parts: list[dict[str, Any]], found: dict[str, Any], table_level: list[str]) -> dict[str, Any]:
    """Each whole-table scorer's statistics from every block's partial row (its `name:` columns), by its `merge_statistics`."""
    out = {}
    for name in table_level:
        mine = [{k.removeprefix(f"{name}:"): v for k, v in p.items() if k.startswith(f"{name}:")} for p in parts]
        if any(mine):
            out[name] = found[name].merge_statistics(mine)
    return out


def _params_of(names: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """The keywords of `params` that the scorers `names` declare."""
    import dataclasses

    fields = {f.name for n in names for f in dataclasses.fields(scorers.registry()[n].Params)}
    return {k: v for k, v in params.items() if k in fields}
