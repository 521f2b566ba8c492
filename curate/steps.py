"""Run one pipeline step: read and validate the input, build lazily, collect once, write atomically with lineage."""

from __future__ import annotations

import os
from collections.abc import Callable

import polars as pl

from curate.console import spinner
from curate.io import Source, load, write
from curate.report import Lineage, Step

Build = Callable[[pl.LazyFrame, Step], pl.LazyFrame]


def run_step(
    name: str,
    params: dict[str, object],
    src: Source,
    kind: str | None,
    build: Build,
    output: str | os.PathLike,
    fmt: str | None = None,
    *,
    dedup: bool = False,
    drop_invalid: bool = False,
    split: str | None = None,
) -> Step:
    """Apply `build` to the table at `src` and write the result to `output`; return the step's record."""
    inputs = [str(src)] if isinstance(src, (str, os.PathLike)) else [str(s) for s in src]
    step = Step(name, params=params, inputs=inputs)
    table = load(src, kind, dedup=dedup, drop_invalid=drop_invalid, step=step, split=split)
    frame = build(table.frame, step)
    with spinner(f"{name}: computing"):
        df = frame.collect()
    step.rows_out = df.height
    lineage = Lineage(sources=table.lineage.sources, steps=[*table.lineage.steps, step])
    with spinner(f"writing {output}"):
        write(df, output, fmt, lineage=lineage)
    return step
