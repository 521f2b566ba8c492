"""Sharded, resumable execution of a model stage over a table.

The input rows are cut into fixed shards; each finished shard is written atomically to
`OUT.shards/shard-NNNNN.parquet` (with its drop counts beside it), so a crashed run restarted with
`--resume` skips the shards already done and produces exactly the rows of an uninterrupted run. When
every shard is done they are concatenated, in order, into OUT (atomically) and the shard folder is
removed. The shards run in this process, or on a pool of Ray actors (`curate.models.actors`): the
shards, their seeds (from the global row) and so their rows are the same either way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from curate.console import err_console
from curate.errors import CurateError
from curate.io import atomic_path, write
from curate.lineage import Lineage, Step
from curate.models.stages import ROW, ShardFn, Stage

if TYPE_CHECKING:  # pragma: no cover
    from curate.models.actors import Pool

META = "stage.json"


def shard_dir(output: Path) -> Path:
    return output.with_name(output.name + ".shards")


def run_sharded(
    rows: pl.DataFrame,
    stage: Stage,
    output: str | Path,
    *,
    step: Step,
    lineage: Lineage,
    shard_size: int,
    resume: bool = False,
    max_shards: int | None = None,
    fmt: str | None = None,
    pool: Pool | None = None,
) -> int | None:
    """Run `stage` shard by shard (here, or on a Ray actor `pool`) and write OUT; return its row count, or None if stopped by `max_shards`."""
    output = Path(output)
    folder = shard_dir(output)
    n_shards = max(1, -(-rows.height // shard_size))
    # the input's content, not only its row count: a changed file with as many rows must not mix with old shards
    content = hashlib.sha1(rows.hash_rows(seed=0).to_numpy().tobytes()).hexdigest()
    meta = {"step": step.name, "params": step.params, "rows": rows.height, "shard_size": shard_size, "content": content, "polars": pl.__version__}
    if folder.exists():
        old = json.loads((folder / META).read_text()) if (folder / META).exists() else None
        if not resume:
            raise CurateError(f"{folder} holds shards of an unfinished run; pass --resume to continue it, or delete the folder.")
        if old != json.loads(json.dumps(meta)):
            changed = sorted(k for k in set(old or {}) | set(meta) if (old or {}).get(k) != json.loads(json.dumps(meta)).get(k))
            what = "the input's content changed" if changed == ["content"] else f"other {', '.join(changed)}"
            raise CurateError(f"{folder} holds shards of a run with {what}; delete the folder, or resume with the same input and options.")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).write_text(json.dumps(meta))
    missing = [k for k in range(n_shards) if not shard_path(folder, k).exists()]
    todo = missing if max_shards is None else missing[:max_shards]
    try:
        if pool is None:
            finished = run_here(stage, rows, todo, shard_size, step.name)
        else:
            from curate.models.actors import run_on_pool

            finished = run_on_pool(stage, rows, todo, shard_size, step.name, pool)
        _write_shards(finished, folder, step.name, n_shards, n_shards - len(missing))
    except BaseException:
        if not any(folder.glob("shard-*.parquet")):
            shutil.rmtree(folder, ignore_errors=True)  # nothing finished: leave no trace
        raise
    if len(todo) < len(missing):
        err_console.print(f"stopped after {len(todo)} shard(s) (--max-shards); rerun with --resume to continue.", highlight=False)
        return None
    result = pl.concat([pl.read_parquet(shard_path(folder, k)) for k in range(n_shards)], how="diagonal_relaxed")
    for k in range(n_shards):  # drops counted in each shard (judge's unparseable answers, verify's timeouts), resumed ones included
        record = folder / f"drops-{k:05d}.json"
        if record.exists():
            step.absorb(json.loads(record.read_text()))
    step.rows_out = result.height
    write(result, output, fmt, lineage=Lineage(sources=lineage.sources, steps=[*lineage.steps, step]))
    shutil.rmtree(folder, ignore_errors=True)
    return result.height


def shard_path(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:05d}.parquet"


# (shard number, its output rows, its step record: drops and warnings)
Finished = Iterator[tuple[int, pl.DataFrame, dict[str, Any]]]


def run_here(stage: Stage, rows: pl.DataFrame, todo: list[int], shard_size: int, name: str) -> Finished:
    """The shards `todo`, in order, in this process (the stage's model is loaded before the first)."""
    fn = stage.build()
    for k in todo:
        yield k, *shard_output(fn, rows.slice(k * shard_size, shard_size), name)


def shard_output(fn: ShardFn, shard: pl.DataFrame, name: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One shard through the stage, with the drops it recorded (the same code here and in a Ray actor)."""
    scratch = Step(name)
    out = fn(shard, scratch).drop(ROW, strict=False)
    return out, scratch.to_dict()


def _write_shards(finished: Finished, folder: Path, name: str, total: int, already: int) -> None:
    """Write each finished shard atomically as it arrives (its drop record first), with a progress bar over the shards."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(name), BarColumn(), MofNCompleteColumn(), TextColumn("shards"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal) as progress:
        task = progress.add_task(name, total=total, completed=already)
        for k, out, record in finished:
            with atomic_path(folder / f"drops-{k:05d}.json") as tmp:
                tmp.write_text(json.dumps(record))
            with atomic_path(shard_path(folder, k)) as tmp:
                out.write_parquet(tmp)
            progress.advance(task)
