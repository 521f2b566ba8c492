"""Scale-out on Ray Data: one curate step over buckets of whole prompts, table statistics in phases.

`run_step` takes what `curate.steps.run_step` takes and runs that very function on every bucket,
inside Ray tasks, so validation, the step and its drop counts are the single-machine code:

1. Ray Data reads the input parquet files, one read task per row group, tags each row with its global
   input row (`__source_row`: the row number the single-machine command gives it, which tie-breaks,
   seeds and `pair_id` use) and a bucket (a hash of `prompt_id`: a bucket holds whole prompts), and
   writes each bucket's rows to the work folder, which every node sees (a shuffle through the shared
   filesystem the output needs anyway: no object-store memory, and a retried task rewrites only its files).
2. One task per bucket gathers its rows in input order.
3. A step that needs whole-table values (z-scores, dual-margin M2, `select --top`, mean weights)
   declares `Phase`s: each bucket computes a one-row partial, the driver merges them (mergeable
   moments, histograms, top-k candidates), and the next phase or the step gets the merged values.
4. Each bucket runs the step into one output shard; the driver sums the buckets' counts into one
   lineage step, writes `curate_lineage.json` and `curate_manifest.json`, and renames the work folder
   into place (nothing is replaced until every bucket has finished).

The output is a dataset folder (`data/train-XXXXX-of-YYYYY.parquet`) that curate, `datasets` and TRL
read. Its rows equal the single-machine output's; within a shard they keep the single-machine order,
and shards follow bucket order (sort by `prompt_id` and `pair_id` to compare). Floating-point
statistics merged across buckets (means, standard deviations) may differ from one pass over the whole
table in the last bits (summation order); integer statistics, cuts and counts are exact.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import CurateError
from curate.lineage import Lineage, Step
from curate.schema import SOURCE_ROW

BUCKET = "__bucket"
MANIFEST = "curate_manifest.json"
WORK_SUFFIX = ".curate-ray"


@dataclass
class Phase:
    """A whole-table statistic computed in two steps: a one-row partial per bucket, then a merge on the driver.

    `partial(frame, known)` gets a bucket's validated table and the values of earlier phases;
    `merge(rows, known)` gets every bucket's partial row (as dicts) and returns this phase's value.
    """

    name: str
    partial: Callable[[pl.LazyFrame, dict[str, Any]], pl.LazyFrame]
    merge: Callable[[list[dict[str, Any]], dict[str, Any]], Any]


# (frame, step, known statistics) -> the step's output for one bucket; the same builder the single-machine command runs
Builder = Callable[[pl.LazyFrame, Step, dict[str, Any]], pl.LazyFrame]


@dataclass
class Job:
    """One curate step as the buckets run it."""

    name: str
    params: dict[str, Any]
    kind: str | None
    build: Builder
    fmt: str = "parquet"
    read_opts: dict[str, Any] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)


@dataclass
class RayRun:
    """What `run_step` did: the merged step, the output folder, the shards and their rows."""

    step: Step
    output: Path
    shards: list[dict[str, Any]]
    buckets: int
    resumed: int = 0


def connect(address: str | None = None, *, say: Callable[[str], None] | None = None) -> None:
    """Join the Ray cluster at `address` (else $RAY_ADDRESS); with neither, start a local Ray and say so."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    say = say or (lambda text: print(text, file=sys.stderr))
    if not address:
        say("note: no --ray-address and no RAY_ADDRESS: starting a local Ray instance on this machine (it stops when the command ends).")
    try:
        ray.init(address=address or None, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise CurateError(f"cannot connect to the Ray cluster at {address!r}: {exc}. Start one with `ray start --head`.") from exc


def refuse_table_level(column: str | None, option: str, *, table: str | os.PathLike | None = None) -> None:
    """A column computed on demand by a scorer that reads the whole table cannot be computed bucket by bucket: say how to get it."""
    import scorers

    if column is None:
        return
    if table is not None:
        from curate.io import scan

        if column in scan(table)[0].collect_schema().names():
            return
    producer = scorers.producer_of(column)
    if producer is not None and scorers.registry()[producer].reads_whole_table():
        raise CurateError(
            f"{option} {column}: `{producer}` is computed over the whole table, not per bucket; with --engine ray add it first "
            f"(`curate score IN --scorer {producer} --engine ray -o scored`) and pass the scored table."
        )


def input_row_groups(files: list[Path]) -> list[dict[str, Any]]:
    """One read task per parquet row group, with the global input row of its first row."""
    import pyarrow.parquet as pq

    items, offset = [], 0
    for f in files:
        if f.suffix.lower() != ".parquet":
            raise CurateError(f"{f}: --engine ray reads parquet (files, globs or dataset folders); convert it first with `curate ingest {f} -o samples.parquet`.")
        meta = pq.read_metadata(f)
        for g in range(meta.num_row_groups):
            items.append({"path": str(f.resolve()), "group": g, "offset": offset})
            offset += meta.row_group(g).num_rows
    return items


def bucket_of(frame: pl.DataFrame, buckets: int, *, rehash: bool = False) -> pl.Series:
    """The bucket of each row: a stable hash of `prompt_id` (or of the prompt, where ids are derived from it)."""
    from curate.schema import prompt_hash

    if "prompt_id" in frame.columns and not rehash:
        key = frame["prompt_id"].cast(pl.String)
    else:
        key = prompt_hash(frame["prompt"])
    return (key.fill_null("").hash(seed=0) % buckets).cast(pl.Int64).alias(BUCKET)


class _Buckets:
    """The per-bucket work, shipped to the Ray tasks (everything in it pickles)."""

    def __init__(self, job: Job, work: Path, source_name: str, lineage_json: str, ext: str, bucket_count: int, rehash: bool) -> None:
        self.job, self.work, self.source_name, self.lineage_json = job, work, source_name, lineage_json
        self.ext, self.bucket_count, self.rehash = ext, bucket_count, rehash
        self.read_opts = {k: v for k, v in job.read_opts.items() if k != "split"}  # a bucket is one file: the split was chosen on reading

    def input_of(self, bucket: int) -> Path:
        return self.work / "in" / f"bucket-{bucket:05d}.parquet"

    def part_of(self, bucket: int) -> Path:
        return self.work / "data" / f"part-{bucket:05d}{self.ext}"

    def done_of(self, bucket: int) -> Path:
        return self.work / "steps" / f"bucket-{bucket:05d}.json"

    def scatter(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Read task: one row group, tagged with global input rows, split by bucket into the work folder."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from curate.io import write

        path, group, offset, index = str(batch["path"][0]), int(batch["group"][0]), int(batch["offset"][0]), int(batch["index"][0])
        done = self.work / "scatter" / f"group-{index:06d}.json"
        if done.exists():  # a retried task, or --resume
            return {"index": [index], "buckets": [done.read_text()]}
        table = pq.ParquetFile(path).read_row_group(group)
        table = table.append_column(SOURCE_ROW, pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64)))
        frame = pl.from_arrow(table)
        frame = frame.with_columns(bucket_of(frame, self.bucket_count, rehash=self.rehash))
        present = []
        for (bucket,), part in frame.partition_by(BUCKET, as_dict=True, maintain_order=True).items():
            target = self.work / "scatter" / f"bucket-{bucket:05d}" / f"group-{index:06d}.parquet"
            write(part.drop(BUCKET), target, "parquet")
            present.append(int(bucket))
        text = json.dumps(sorted(present))
        _write_text(done, text)
        return {"index": [index], "buckets": [text]}

    def gather(self, bucket: int) -> None:
        """One bucket's rows from every row group, in input order, as one file (the step's input)."""
        from curate.io import write

        path = self.input_of(bucket)
        if path.exists():
            return
        parts = sorted((self.work / "scatter" / f"bucket-{bucket:05d}").glob("group-*.parquet"))
        frame = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed").sort(SOURCE_ROW)
        write(frame, path, "parquet", lineage=Lineage.from_json(self.lineage_json))

    def first_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A bucket's first pass: gather it, then its first partial statistics or its shard."""
        out = []
        for b in batch["bucket"]:
            self.gather(int(b))
            out.append(json.dumps(self.partial(int(b), 0, {}) if self.job.phases else self.finish(int(b), {})))
        return {"bucket": batch["bucket"], "result": out}

    def partial(self, bucket: int, phase: int, known: dict[str, Any]) -> dict[str, Any]:
        """One phase's partial row over the bucket's validated table."""
        from curate.steps import run_step

        spec = self.job.phases[phase]
        out = self.work / "stats" / f"{spec.name}-{bucket:05d}.parquet"
        with self._named():
            run_step(f"{self.job.name} ({spec.name})", {}, self.input_of(bucket), self.job.kind, lambda f, s: spec.partial(f, known), out,
                     "parquet", drop_hint=False, **self.read_opts)  # fmt: skip
        row = pl.read_parquet(out).to_dicts()
        return row[0] if row else {}

    def finish(self, bucket: int, known: dict[str, Any]) -> dict[str, Any]:
        """The step on one bucket, into its shard; a bucket already finished (a retried task, --resume) is not redone."""
        from curate.steps import run_step

        done = self.done_of(bucket)
        if done.exists():
            return {**json.loads(done.read_text()), "resumed": True}
        build = self.job.build
        start = time.perf_counter()
        with self._named():
            step = run_step(self.job.name, self.job.params, self.input_of(bucket), self.job.kind, lambda f, s: build(f, s, known),
                            self.part_of(bucket), self.job.fmt, **self.read_opts)  # fmt: skip
        record = {**step.to_dict(), "seconds": round(time.perf_counter() - start, 4), "node": _node_id()}
        _write_text(done, json.dumps(record))
        return record

    def finish_batch(self, batch: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        return {"bucket": batch["bucket"], "result": [json.dumps(self.finish(int(b), known)) for b in batch["bucket"]]}

    def partial_batch(self, batch: dict[str, Any], phase: int, known: dict[str, Any]) -> dict[str, Any]:
        return {"bucket": batch["bucket"], "result": [json.dumps(self.partial(int(b), phase, known)) for b in batch["bucket"]]}

    def _named(self) -> Any:
        return _renamed_errors(str(self.work / "in"), self.source_name)


class _renamed_errors:
    """Errors raised on a bucket name the user's input, not the work folder's bucket file."""

    def __init__(self, folder: str, name: str) -> None:
        self.folder, self.name = folder, name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, CurateError) and self.folder in str(exc):
            import re

            text = re.sub(re.escape(self.folder) + r"/bucket-\d+\.parquet", self.name, str(exc))
            if "row(s)" in text:
                text += " (On Ray the rows are counted in one bucket of prompts; other buckets may hold more.)"
            raise CurateError(text) from None
        return False


def _write_text(path: Path, text: str) -> None:
    """A bucket's record, written atomically: a killed task leaves it whole or absent."""
    from curate.sinks import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


@contextmanager
def curate_errors() -> Iterator[None]:
    """A CurateError raised in a Ray task or actor reaches the user as curate's message; anything else is re-raised."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001
        inner = _unwrap(exc) or _curate_error_in(str(exc))
        if inner is not None:
            raise CurateError(str(inner)) from None
        raise


def _unwrap(exc: BaseException | None) -> CurateError | None:
    """The CurateError a Ray task raised, out of Ray's wrappers (which subclass it, with the remote traceback as text)."""
    from ray.exceptions import RayError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CurateError) and not isinstance(exc, RayError):
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
    return None


def _curate_error_in(text: str) -> CurateError | None:
    """A CurateError named in a remote traceback's text (Ray does not always keep the exception object)."""
    import re

    found = re.findall(r"(?:^|\n)\S*(?:CurateError|SchemaError): (.*?)(?:\n\n|\n\S|$)", text, re.S)
    return CurateError(found[-1].strip()) if found else None


def merged_step(name: str, params: dict[str, Any], inputs: list[str], records: list[dict[str, Any]]) -> Step:
    """One step from the buckets' records: rows and every drop reason summed (buckets hold disjoint prompts)."""
    step = Step(name, params=params, inputs=inputs)
    step.rows_in = sum(r.get("rows_in") or 0 for r in records)
    step.rows_out = sum(r.get("rows_out") or 0 for r in records)
    for r in records:
        step.absorb(r)
    return step


def _fingerprint(job: Job, files: list[Path], buckets: int) -> str:
    """What a --resume must match: the step, its options, the bucket count, and each input file's path, size and mtime."""
    from curate.fingerprint import digest

    read = {k: v for k, v in job.read_opts.items() if isinstance(v, (str, int, float, bool, type(None)))}
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return digest({"name": job.name, "params": job.params, "kind": job.kind, "fmt": job.fmt, "buckets": buckets, "read": read, "files": stats})


def run_step(
    job: Job,
    src: str | os.PathLike | list[str],
    output: str | os.PathLike,
    *,
    address: str | None = None,
    buckets: int | None = None,
    resume: bool = False,
    say: Callable[[str], None] | None = None,
) -> RayRun:
    """Run `job` on `src` across a Ray cluster and write a sharded dataset folder at `output` (see the module docstring)."""
    from curate.io import resolve, scan, source_name
    from curate.sinks import LINEAGE_FILE, check_target, clean_stale, move_into_place

    try:
        import ray
    except ImportError as exc:
        raise CurateError("--engine ray needs Ray Data: pip install 'curate-prefs[ray]'.") from exc
    ext = {"parquet": ".parquet", "jsonl": ".jsonl"}.get(job.fmt)
    if ext is None:
        raise CurateError(f"--engine ray writes parquet or jsonl shards (got --format {job.fmt}); export the folder with `curate export` afterwards.")
    say = say or (lambda text: print(text, file=sys.stderr))

    files = resolve(src, job.read_opts.get("split"))[0]
    items = input_row_groups(files)
    target = Path(output).absolute()  # the Ray workers run in other folders
    inputs = [str(s) for s in (src if isinstance(src, list) else [src])]
    check_target(target, "hf", inputs)
    clean_stale(target)
    _, input_lineage = scan(src, split=job.read_opts.get("split"))
    connect(address, say=say)
    bucket_count = buckets or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    work = target.with_name(f".{target.name}{WORK_SUFFIX}")
    fingerprint = _fingerprint(job, files, bucket_count)
    job_file = work / "job.json"
    if work.exists() and not (resume and job_file.is_file() and json.loads(job_file.read_text()).get("fingerprint") == fingerprint):
        if resume and job_file.is_file():
            say(f"note: {work} was left by a different job (other inputs or options); starting over.")
        shutil.rmtree(work)
    for sub in ("scatter", "in", "data", "steps", "stats"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps({"fingerprint": fingerprint, "name": job.name}))

    rehash = bool(job.read_opts.get("rehash_prompt_ids"))
    _quiet_task_errors()
    runner = _Buckets(job, work, source_name(src), input_lineage.to_json(), ext, bucket_count, rehash)
    with curate_errors():
        items = [{**item, "index": i} for i, item in enumerate(items)]
        scattered = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(runner.scatter, batch_size=1,
                                                                                                  batch_format="numpy").take_all()  # fmt: skip
        present = sorted({b for r in scattered for b in json.loads(r["buckets"])})
        known: dict[str, Any] = {}
        if not present:  # no rows at all: the step on the (empty) input, here, gives the empty output and its counts
            from curate.steps import run_step as run_here

            results = {0: run_here(job.name, job.params, src, job.kind, lambda f, s: job.build(f, s, {}), runner.part_of(0), job.fmt,
                                   **job.read_opts).to_dict()}  # fmt: skip
        else:
            results = {int(r["bucket"]): json.loads(r["result"]) for r in _over_buckets(ray, present, runner.first_batch)}
        if job.phases and present:
            for i, phase in enumerate(job.phases):
                if i > 0:
                    rows = _over_buckets(ray, present, runner.partial_batch, phase=i, known=known)
                    results = {int(r["bucket"]): json.loads(r["result"]) for r in rows}
                known[phase.name] = phase.merge([results[b] for b in present], dict(known))
            rows = _over_buckets(ray, present, runner.finish_batch, known=known)
            results = {int(r["bucket"]): json.loads(r["result"]) for r in rows}

    present = sorted(results)
    step = merged_step(job.name, job.params, inputs, [results[b] for b in present])
    resumed = sum(1 for b in present if results[b].get("resumed"))
    lineage = Lineage(sources=input_lineage.sources, steps=[*input_lineage.steps, step])
    shards = _name_shards(work, runner, results)
    (work / LINEAGE_FILE).write_text(lineage.to_json())
    (work / MANIFEST).write_text(json.dumps({"engine": "ray", "buckets": bucket_count, "rows": step.rows_out, "format": job.fmt,
                                             "shards": shards, "known": known}, indent=1, default=str))  # fmt: skip
    for sub in ("scatter", "in", "steps", "stats"):
        shutil.rmtree(work / sub, ignore_errors=True)
    job_file.unlink(missing_ok=True)
    move_into_place(work, target)
    return RayRun(step=step, output=target, shards=shards, buckets=bucket_count, resumed=resumed)


def _quiet_task_errors() -> None:
    """A failed task's error reaches the user once, as curate's message (Ray Data's log file keeps the traceback)."""
    import logging

    import ray.data  # noqa: F401  (configures the `ray.data` logger)

    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.addFilter(lambda record: record.levelno < logging.ERROR)


def _over_buckets(ray: Any, present: list[int], fn: Callable[..., Any], **kwargs: Any) -> list[dict[str, Any]]:
    ds = ray.data.from_items([{"bucket": b} for b in present], override_num_blocks=max(1, len(present)))
    return ds.map_batches(fn, batch_size=1, batch_format="numpy", fn_kwargs=kwargs).take_all()


def _name_shards(work: Path, runner: _Buckets, results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rename the buckets' parts to Hub shard names (train-00000-of-00008.parquet) in bucket order, with each one's rows,
    the step's time on it (benchmarks/ray_scaling.py) and the Ray node that ran it."""
    parts = [b for b in sorted(results) if runner.part_of(b).exists()]
    shards = []
    for i, b in enumerate(parts):
        final = work / "data" / f"train-{i:05d}-of-{len(parts):05d}{runner.ext}"
        os.replace(runner.part_of(b), final)
        shards.append({"file": f"data/{final.name}", "rows": results[b].get("rows_out"), "bucket": b, "seconds": results[b].get("seconds"),
                       "node": results[b].get("node")})  # fmt: skip
    return shards
