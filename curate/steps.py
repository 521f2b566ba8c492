"""Run one pipeline step in one execution: read, validate, build lazily, stream to the output with every count.

The input's row checks, the step's drop counts and the output are computed by one Polars
`collect_all` (curate.sinks.execute): scorers and joins run once, the output streams to a temporary
path, and it is renamed into place only when the checks passed, with its lineage (every count known).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import polars as pl

from curate.console import spinner
from curate.errors import CurateError, SchemaError
from curate.io import Source, load
from curate.lineage import Lineage, Step
from curate.schema import read_error
from curate.sinks import CardFn, execute

Build = Callable[[pl.LazyFrame, Step], pl.LazyFrame]


def inputs_of(src: Source) -> list[str]:
    return [str(src)] if isinstance(src, (str, os.PathLike)) else [str(s) for s in src]


def run_step(
    name: str,
    params: dict[str, object],
    src: Source,
    kind: str | None,
    build: Build,
    output: str | os.PathLike,
    fmt: str | None = None,
    *,
    dedup: bool | None = False,
    drop_invalid: bool = False,
    split: str | None = None,
    rehash_prompt_ids: bool | None = False,
    drop_hint: bool = True,
    card: str | CardFn | Callable[..., str] | None = None,
    card_meta: dict | None = None,
    step: Step | None = None,
    uses: set[str] | None = None,
    count_in_plan: bool = False,
) -> Step:
    """Apply `build` to the table at `src` and write the result to `output`; return the step's record.

    `card(schema, rows, written, lineage, kind)` may write a dataset card for folder outputs. `uses`
    names the input columns the output depends on: the row checks look at those only.
    `count_in_plan` (for a `build` that only selects and maps columns): a JSON Lines output's rows are
    counted by the plan, beside the sink, instead of read back from the file.
    """
    step = step or Step(name, params=params, inputs=inputs_of(src))
    step.deferred_checks = True  # `execute` settles the step before the output is renamed into place
    table = load(src, kind, dedup=dedup, drop_invalid=drop_invalid, step=step, split=split, rehash_prompt_ids=rehash_prompt_ids,
                 deferred=True, drop_hint=drop_hint, only=uses)  # fmt: skip
    try:
        frame = build(table.frame, step)
    except CurateError as exc:
        # a builder that read the data may fail on rows the checks would reject: the checks' error comes first
        try:
            table.checked.settle(table.checked.stats.collect().row(0, named=True))
        except pl.exceptions.PolarsError as read_exc:
            raise read_error(read_exc, table.source) from None
        if isinstance(exc, SchemaError):
            raise exc.with_source(table.source) from None
        raise CurateError(f"{table.source}: {exc}") from None
    except pl.exceptions.PolarsError as exc:
        raise read_error(exc, table.source) from exc
    internal = [c for c in frame.collect_schema().names() if c.startswith("__")]
    frame = frame.drop(internal) if internal else frame
    pending = step.pending_counts()
    lineage = Lineage(sources=table.lineage.sources, steps=[*table.lineage.steps, step])

    def finish(values: list[pl.DataFrame], rows: int, distinct: int | None) -> Lineage:
        checks = values[0].row(0, named=True)
        table.checked.settle(checks)
        step.settle(values[1 : 1 + len(pending)])
        if step.unpaired is not None:  # every input prompt gave output or is counted once: prompts in − prompts written
            step.settle_unpaired(checks["__prompts"], distinct or 0)
        step.rows_out = rows
        return lineage

    card_fn = None if card is None or isinstance(card, str) else (lambda schema, rows, written: card(schema, rows, written, lineage, table.kind))
    try:
        with spinner(f"{name}: computing and writing {output}"):
            execute(frame, output, fmt, stats=[table.checked.stats, *pending], finish=finish, card=card_fn or card, card_meta=card_meta,
                    inputs=inputs_of(src), track="prompt_id" if step.unpaired is not None else None, count_in_plan=count_in_plan)  # fmt: skip
    except SchemaError as exc:  # the input checks, or a step's own (`Step.require`), settled with the output
        raise exc.with_source(table.source) from None
    except CurateError:
        raise
    except pl.exceptions.PolarsError as exc:
        raise read_error(exc, table.source) from exc
    return step
