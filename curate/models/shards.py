"""Sharded, resumable execution of a model stage over a table (SPEC §7).

The input rows are cut into fixed shards; each finished shard is written atomically to
`OUT.shards/shard-NNNNN.parquet`, so a crashed run restarted with `--resume` skips the shards already
done and produces exactly the rows of an uninterrupted run. When every shard is done they are
concatenated, in order, into OUT (atomically) and the shard folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl

from curate.console import err_console
from curate.errors import CurateError
from curate.io import atomic_path, write
from curate.lineage import Lineage, Step

META = "stage.json"


def shard_dir(output: Path) -> Path:
    return output.with_name(output.name + ".shards")


def run_sharded(
    rows: pl.DataFrame,
    fn: Callable[[pl.DataFrame], pl.DataFrame],
    output: str | Path,
    *,
    step: Step,
    lineage: Lineage,
    shard_size: int,
    resume: bool = False,
    max_shards: int | None = None,
    fmt: str | None = None,
) -> int | None:
    """Apply `fn` shard by shard and write OUT; return its row count, or None if stopped by `max_shards`."""
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
    try:
        done = _run_shards(rows, fn, folder, step, n_shards, shard_size, max_shards)
    except BaseException:
        if not any(folder.glob("shard-*.parquet")):
            shutil.rmtree(folder, ignore_errors=True)  # nothing finished: leave no trace
        raise
    if done is None:
        return None
    shards = [folder / f"shard-{k:05d}.parquet" for k in range(n_shards)]
    result = pl.concat([pl.read_parquet(p) for p in shards], how="diagonal_relaxed")
    step.rows_out = result.height
    write(result, output, fmt, lineage=Lineage(sources=lineage.sources, steps=[*lineage.steps, step]))
    shutil.rmtree(folder, ignore_errors=True)
    return result.height


def _run_shards(rows, fn, folder: Path, step: Step, n_shards: int, shard_size: int, max_shards: int | None) -> int | None:
    """Compute the missing shards in order; None when stopped by `max_shards`."""
    done = 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(step.name), BarColumn(), MofNCompleteColumn(), TextColumn("shards"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal) as progress:
        task = progress.add_task(step.name, total=n_shards)
        for k in range(n_shards):
            path = folder / f"shard-{k:05d}.parquet"
            if path.exists():
                progress.advance(task)
                continue
            if max_shards is not None and done >= max_shards:
                err_console.print(f"stopped after {done} shard(s) (--max-shards); rerun with --resume to continue.", highlight=False)
                return None
            out = fn(rows.slice(k * shard_size, shard_size))
            with atomic_path(path) as tmp:
                out.write_parquet(tmp)
            done += 1
            progress.advance(task)
    return done
