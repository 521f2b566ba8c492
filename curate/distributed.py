"""Scale-out on Ray Data: one curate step over buckets of whole prompts, table statistics in phases.

`run_step` takes what `curate.steps.run_step` takes and runs that very function on every bucket,
inside Ray tasks, so validation, the step and its drop counts are the single-machine code:

1. Ray Data reads the input parquet files, one read task per row group, tags each row with its global
   input row (`__source_row`: the row number the single-machine command gives it, which tie-breaks,
   seeds and `pair_id` use) and a bucket (a hash of `prompt_id`: a bucket holds whole prompts), and
   writes each bucket's rows to the work folder beside the output, which every node sees: a shared disk
   or an object store named by URL (`curate.remote`; a shuffle through the storage the output needs
   anyway: no object-store memory, and a retried task rewrites only its files).
2. One task per bucket gathers its rows in input order.
3. A step that needs whole-table values (z-scores, dual-margin M2, `select --top`, mean weights)
   declares `Phase`s: each bucket computes a one-row partial, the driver merges them (mergeable
   moments, histograms, top-k candidates), and the next phase or the step gets the merged values.
4. Each bucket runs the step (on a local copy of its rows) into one output shard; the driver sums the
   buckets' counts into one lineage step, writes `curate_lineage.json` and `curate_manifest.json`, and
   renames the work folder into place (nothing is replaced until every bucket has finished; on an
   object store, which has no rename, the files are moved in one by one, the manifest last).

The output is a dataset folder (`data/train-XXXXX-of-YYYYY.parquet`) that curate, `datasets` and TRL
read. Its rows equal the single-machine output's; within a shard they keep the single-machine order,
and shards follow bucket order (sort by `prompt_id` and `pair_id` to compare). Floating-point
statistics merged across buckets (means, standard deviations) may differ from one pass over the whole
table in the last bits (summation order); integer statistics, cuts and counts are exact.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import CurateError
from curate.lineage import Lineage, Step
from curate.remote import Location, is_url, public, restore_url
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
    output: str
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
    producer = scorers.producer_of(column)
    if producer is None or not scorers.registry()[producer].reads_whole_table():
        return
    if table is not None and column in input_columns(table):
        return
    raise CurateError(
        f"{option} {column}: `{producer}` is computed over the whole table, not per bucket; with --engine ray add it first "
        f"(`curate score IN --scorer {producer} --engine ray -o scored`) and pass the scored table."
    )


def _names_a_url(src: str | os.PathLike | list) -> bool:
    """Whether any of the inputs `src` is a URL (else they are local paths, read by curate.io)."""
    return any(is_url(restore_url(s)) for s in (src if isinstance(src, list) else [src]))


def input_columns(src: str | os.PathLike | list) -> list[str]:
    """The column names of an input (its first parquet file's, for a URL)."""
    import pyarrow.parquet as pq

    if not _names_a_url(src):
        from curate.io import scan

        return scan(src)[0].collect_schema().names()
    with input_files(src)[0].open() as handle:
        return pq.read_schema(handle).names


def input_row_groups(files: list[Location]) -> list[dict[str, Any]]:
    """One read task per parquet row group (`file`: its index in `files`), with the global input row of its first row."""
    import pyarrow.parquet as pq

    items, offset = [], 0
    for i, f in enumerate(files):
        if not f.path.lower().endswith(".parquet"):
            raise CurateError(f"{f}: --engine ray reads parquet (files, globs or dataset folders); convert it first with `curate ingest {f} -o samples.parquet`.")
        with f.open() as handle:
            meta = pq.read_metadata(handle)
        for g in range(meta.num_row_groups):
            items.append({"file": i, "group": g, "offset": offset})
            offset += meta.row_group(g).num_rows
    return items


def input_files(src: str | os.PathLike | list, split: str | None = None) -> list[Location]:
    """The parquet files behind `src`: local paths (files, globs, dataset folders) or URLs (a file, or a folder of parquet files)."""
    from curate.io import resolve

    if not _names_a_url(src):
        return [Location.of(f) for f in resolve(src, split)[0]]
    return [f for s in (src if isinstance(src, list) else [src]) for f in _url_files(Location.of(s), split)]


_SHARD = re.compile(r"(?:.*/)?([A-Za-z0-9_.]+)-\d{5}-of-\d{5}\.parquet")


def _url_files(loc: Location, split: str | None) -> list[Location]:
    """A parquet file, or the parquet files of a folder (of one split, for a Hub layout: `data/<split>-NNNNN-of-NNNNN.parquet`)."""
    if loc.is_file():
        if split is not None:
            raise CurateError(f"{loc}: --split applies to dataset folders, not to a single file.")
        return [loc]
    if not loc.is_dir():
        raise CurateError(f"{loc}: no such file or folder.")
    files = loc.files(r"(?:[^./][^/]*/)*[^./_][^/]*\.parquet")
    split_of = {f.path: m.group(1) for f in files if (m := _SHARD.fullmatch(f.path[len(loc.path) + 1 :]))}
    splits = sorted(set(split_of.values()))
    if splits:
        chosen = split or ("train" if "train" in splits or len(splits) > 1 else splits[0])
        if chosen not in splits:
            raise CurateError(f"{loc}: no split {chosen!r}; the folder has {', '.join(splits)} (pick one with --split).")
        files = [f for f in files if split_of.get(f.path) == chosen]
    elif split is not None:
        raise CurateError(f"{loc}: --split {split}: the folder's files are not named by split (data/<split>-NNNNN-of-NNNNN.parquet).")
    if not files:
        raise CurateError(f"{loc}: the folder holds no parquet file.")
    return files


def input_lineage(src: str | os.PathLike | list, split: str | None, files: list[Location]) -> Lineage:
    """The lineage stored with the input: a folder's curate_lineage.json, else the first parquet file's footer."""
    import pyarrow.parquet as pq

    from curate.io import scan
    from curate.sinks import LINEAGE_FILE, LINEAGE_KEY

    if not _names_a_url(src):
        return scan(src, split=split)[1]
    folder = Location.of(src[0] if isinstance(src, list) else src)
    if folder.is_dir() and folder.child(LINEAGE_FILE).is_file():
        return Lineage.from_json(folder.child(LINEAGE_FILE).read_text())
    with files[0].open() as handle:
        meta = pq.read_metadata(handle).metadata or {}
    lineage = Lineage.from_json(meta.get(LINEAGE_KEY.encode()))
    return lineage if lineage.sources else Lineage(sources=[f.name for f in files], steps=lineage.steps)


def bucket_of(frame: pl.DataFrame, buckets: int, *, rehash: bool = False) -> pl.Series:
    """The bucket of each row: a stable hash of `prompt_id` (or of the prompt, where ids are derived from it).

    A table whose prompts are not a column of their own (`messages`, TRL's implicit-prompt pairs) is bucketed by the
    prompts that validation will take from it, so that each prompt's rows meet in one bucket.
    """
    from curate.schema import prompt_hash, prompts_of

    if "prompt_id" in frame.columns and not rehash:
        key = frame["prompt_id"].cast(pl.String)
    else:
        key = prompt_hash(prompts_of(frame))
    return (key.fill_null("").hash(seed=0) % buckets).cast(pl.Int64).alias(BUCKET)


class _Buckets:
    """The per-bucket work, shipped to the Ray tasks (everything in it pickles, the work folder's filesystem included)."""

    def __init__(self, job: Job, work: Location, files: list[Location], source_name: str, lineage_json: str, ext: str, bucket_count: int,
                 rehash: bool) -> None:  # fmt: skip
        self.job, self.work, self.files, self.source_name, self.lineage_json = job, work, files, source_name, lineage_json
        self.ext, self.bucket_count, self.rehash = ext, bucket_count, rehash
        self.read_opts = {k: v for k, v in job.read_opts.items() if k != "split"}  # a bucket is one file: the split was chosen on reading

    def input_of(self, bucket: int) -> Location:
        return self.work.child("in", f"bucket-{bucket:05d}.parquet")

    def part_of(self, bucket: int) -> Location:
        return self.work.child("data", f"part-{bucket:05d}{self.ext}")

    def done_of(self, bucket: int) -> Location:
        return self.work.child("steps", f"bucket-{bucket:05d}.json")

    def scatter(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Read task: one row group, tagged with global input rows, split by bucket into the work folder."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        file, group, offset, index = int(batch["file"][0]), int(batch["group"][0]), int(batch["offset"][0]), int(batch["index"][0])
        done = self.work.child("scatter", f"group-{index:06d}.json")
        if done.exists():  # a retried task, or --resume
            return {"index": [index], "buckets": [done.read_text()]}
        with self.files[file].open() as handle:
            table = pq.ParquetFile(handle).read_row_group(group)
        table = table.append_column(SOURCE_ROW, pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64)))
        frame = pl.from_arrow(table)
        frame = frame.with_columns(bucket_of(frame, self.bucket_count, rehash=self.rehash))
        present = []
        for (bucket,), part in frame.partition_by(BUCKET, as_dict=True, maintain_order=True).items():
            self.work.child("scatter", f"bucket-{bucket:05d}", f"group-{index:06d}.parquet").write_bytes(_parquet_bytes(part.drop(BUCKET)))
            present.append(int(bucket))
        text = json.dumps(sorted(present))
        done.write_text(text)  # written last: a task killed before it is redone whole
        return {"index": [index], "buckets": [text]}

    def gather(self, bucket: int) -> None:
        """One bucket's rows from every row group, in input order, as one file (the step's input)."""
        from curate.io import write

        target = self.input_of(bucket)
        if target.exists():
            return
        parts = self.work.child("scatter", f"bucket-{bucket:05d}").files()
        frame = pl.concat([pl.read_parquet(p.read_bytes()) for p in parts], how="diagonal_relaxed").sort(SOURCE_ROW)
        with tempfile.TemporaryDirectory(prefix="curate-bucket-") as tmp:
            local = Path(tmp) / target.basename
            write(frame, local, "parquet", lineage=Lineage.from_json(self.lineage_json))
            target.upload(local)

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
        with self.input_of(bucket).local_copy() as src, tempfile.TemporaryDirectory(prefix="curate-bucket-") as tmp:
            out = Path(tmp) / f"{spec.name}.parquet"
            with _renamed_errors(str(src), self.source_name):
                run_step(f"{self.job.name} ({spec.name})", {}, src, self.job.kind, lambda f, s: spec.partial(f, known), out, "parquet",
                         drop_hint=False, **self.read_opts)  # fmt: skip
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
        with self.input_of(bucket).local_copy() as src, tempfile.TemporaryDirectory(prefix="curate-bucket-") as tmp:
            out = Path(tmp) / f"part{self.ext}"
            with _renamed_errors(str(src), self.source_name):
                step = run_step(self.job.name, self.job.params, src, self.job.kind, lambda f, s: build(f, s, known), out, self.job.fmt,
                                **self.read_opts)  # fmt: skip
            if out.exists():
                self.part_of(bucket).upload(out)
        record = {**step.to_dict(), "seconds": round(time.perf_counter() - start, 4), "node": _node_id()}
        done.write_text(json.dumps(record))  # after the shard: a bucket with a record has its shard
        return record

    def finish_batch(self, batch: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        return {"bucket": batch["bucket"], "result": [json.dumps(self.finish(int(b), known)) for b in batch["bucket"]]}

    def partial_batch(self, batch: dict[str, Any], phase: int, known: dict[str, Any]) -> dict[str, Any]:
        return {"bucket": batch["bucket"], "result": [json.dumps(self.partial(int(b), phase, known)) for b in batch["bucket"]]}


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


class _renamed_errors:
    """Errors raised on a bucket name the user's input, not the bucket's file (`path`)."""

    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, CurateError) and self.path in str(exc):
            text = str(exc).replace(self.path, self.name)
            if "row(s)" in text:
                text += " (On Ray the rows are counted in one bucket of prompts; other buckets may hold more.)"
            raise CurateError(text) from None
        return False


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


def _fingerprint(job: Job, files: list[Location], buckets: int) -> str:
    """What a --resume must match: the step, its options, the bucket count, and each input file's path, size and mtime."""
    from curate.fingerprint import digest

    read = {k: v for k, v in job.read_opts.items() if isinstance(v, (str, int, float, bool, type(None)))}
    stats = [(f.path if f.local else f.name, *f.stat()) for f in files]
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
    """Run `job` on `src` across a Ray cluster and write a sharded dataset folder at `output` (see the module docstring).

    `src` and `output` are local paths every node sees, or URLs of any pyarrow filesystem (`s3://...`, `gs://...`).
    """
    from curate.io import source_name

    try:
        import ray
    except ImportError as exc:
        raise CurateError("--engine ray needs Ray Data: pip install 'curate-prefs[ray]'.") from exc
    ext = {"parquet": ".parquet", "jsonl": ".jsonl"}.get(job.fmt)
    if ext is None:
        raise CurateError(f"--engine ray writes parquet or jsonl shards (got --format {job.fmt}); export the folder with `curate export` afterwards.")
    say = say or (lambda text: print(text, file=sys.stderr))

    src = [restore_url(s) for s in src] if isinstance(src, list) else restore_url(src)
    files = input_files(src, job.read_opts.get("split"))
    items = input_row_groups(files)
    target = Location.of(output)
    inputs = [public(str(s)) for s in (src if isinstance(src, list) else [src])]
    _check_target(target, inputs)
    lineage_in = input_lineage(src, job.read_opts.get("split"), files)
    connect(address, say=say)
    bucket_count = buckets or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    work = target.sibling(f".{target.basename}{WORK_SUFFIX}")
    fingerprint = _fingerprint(job, files, bucket_count)
    job_file = work.child("job.json")
    if work.exists() and not (resume and job_file.is_file() and json.loads(job_file.read_text()).get("fingerprint") == fingerprint):
        if resume and job_file.is_file():
            say(f"note: {work} was left by a different job (other inputs or options); starting over.")
        work.remove()
    job_file.write_text(json.dumps({"fingerprint": fingerprint, "name": job.name}))

    rehash = bool(job.read_opts.get("rehash_prompt_ids"))
    _quiet_task_errors()
    runner = _Buckets(job, work, files, public(source_name(src)), lineage_in.to_json(), ext, bucket_count, rehash)
    with curate_errors():
        items = [{**item, "index": i} for i, item in enumerate(items)]
        scattered = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(runner.scatter, batch_size=1,
                                                                                                  batch_format="numpy").take_all()  # fmt: skip
        present = sorted({b for r in scattered for b in json.loads(r["buckets"])})
        known: dict[str, Any] = {}
        if not present:  # no rows at all: the step on the (empty) input, here, gives the empty output and its counts
            results = {0: _empty_run(job, files[0], runner)}
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
    lineage = Lineage(sources=lineage_in.sources, steps=[*lineage_in.steps, step])
    shards = _name_shards(work, runner, results)
    from curate.sinks import LINEAGE_FILE

    work.child(LINEAGE_FILE).write_text(lineage.to_json())
    for sub in ("scatter", "in", "steps"):
        work.child(sub).remove()
    job_file.remove()
    manifest = json.dumps({"engine": "ray", "buckets": bucket_count, "rows": step.rows_out, "format": job.fmt, "shards": shards, "known": known},
                          indent=1, default=str)  # fmt: skip
    _publish(work, target, manifest)
    return RayRun(step=step, output=target.name, shards=shards, buckets=bucket_count, resumed=resumed)


def _empty_run(job: Job, first: Location, runner: _Buckets) -> dict[str, Any]:
    """The step on an input without rows, here: the empty output (with its schema) and the step's counts."""
    from curate.steps import run_step as run_here

    with first.local_copy() as src, tempfile.TemporaryDirectory(prefix="curate-bucket-") as tmp:
        out = Path(tmp) / f"part{runner.ext}"
        record = run_here(job.name, job.params, src, job.kind, lambda f, s: job.build(f, s, {}), out, job.fmt, **runner.read_opts).to_dict()
        runner.part_of(0).upload(out)
    return record


def _check_target(target: Location, inputs: list[str]) -> None:
    """Refuse to replace what curate did not write (as on one machine); remove what a killed run left (local disks)."""
    from curate.sinks import LINEAGE_FILE, check_target, clean_stale

    if target.local:
        check_target(Path(target.path), "hf", inputs)
        clean_stale(Path(target.path))
        return
    if target.is_file():
        raise CurateError(f"{target} is a file; a Ray output is a folder. Choose another path.")
    if target.is_dir() and target.files() and not target.child(LINEAGE_FILE).is_file():
        raise CurateError(f"{target} exists and is not a folder curate wrote (it has no {LINEAGE_FILE}); curate only replaces its own "
                          "outputs. Choose a new output path, or remove the folder yourself.")  # fmt: skip
    if any(i.rstrip("/") == target.name or i.startswith(target.name + "/") for i in inputs):
        raise CurateError(f"the output {target} holds an input; replacing it would delete it. Choose another output path.")


def _publish(work: Location, target: Location, manifest: str) -> None:
    """Put the finished work folder in place of `target`, its manifest last.

    On a local disk: two renames (`curate.sinks.move_into_place`). On an object store, which has no
    rename: an earlier output is deleted, then each file is moved (copied) in, the manifest last, so a
    reader that sees the manifest sees a complete output.
    """
    from curate.sinks import move_into_place

    if target.local:
        work.child(MANIFEST).write_text(manifest)
        move_into_place(Path(work.path), Path(target.path))
        return
    target.remove()
    for f in work.files():
        f.move_to(target.child(f.path[len(work.path) + 1 :]))
    target.child(MANIFEST).write_text(manifest)
    work.remove()


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


def _name_shards(work: Location, runner: _Buckets, results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rename the buckets' parts to Hub shard names (train-00000-of-00008.parquet) in bucket order, with each one's rows,
    the step's time on it (benchmarks/ray_scaling.py) and the Ray node that ran it."""
    parts = [b for b in sorted(results) if runner.part_of(b).exists()]
    shards = []
    for i, b in enumerate(parts):
        final = work.child("data", f"train-{i:05d}-of-{len(parts):05d}{runner.ext}")
        runner.part_of(b).move_to(final)
        shards.append({"file": f"data/{final.basename}", "rows": results[b].get("rows_out"), "bucket": b, "seconds": results[b].get("seconds"),
                       "node": results[b].get("node")})  # fmt: skip
    return shards
