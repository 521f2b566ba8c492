"""Lazy readers and atomic writers: Parquet, JSONL, CSV, Arrow, Hub-layout and `save_to_disk` folders.

Inputs can be one file, a glob (`"data/*.parquet"`), a list of files, a Hub dataset folder
(`data/<split>-*.parquet` + README.md `configs`), or a `datasets` `save_to_disk` folder (a `Dataset` or a
`DatasetDict`, one split at a time). Outputs are written to a temporary path beside the target and
renamed onto it, so an earlier output is never left half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from curate import hub
from curate.errors import CurateError, SchemaError
from curate.report import Lineage, Step
from curate.schema import detect_kind, validate

FORMATS = ("parquet", "jsonl", "hf", "arrow")
FORMAT_ALIASES = {"hub": "hf"}
LINEAGE_KEY = "curate"
LINEAGE_FILE = "curate_lineage.json"  # in every folder curate writes: its lineage, and the mark of a curate output
_JSONL = {".jsonl", ".ndjson", ".json"}

Source = str | os.PathLike | Sequence[str | os.PathLike]
CardFn = Callable[[pl.Schema, int, pl.LazyFrame], str]  # (schema, rows, the written rows) -> card body


@dataclass
class Table:
    """A validated lazy table with its kind, where it came from, and its lineage."""

    frame: pl.LazyFrame
    kind: str
    source: str
    lineage: Lineage = field(default_factory=Lineage)
    card: dict | None = None  # the YAML front matter of the input's dataset card, when it has one


def source_name(path: Source) -> str:
    """How a source is named in messages: the path, or the first path and how many more."""
    if isinstance(path, (str, os.PathLike)):
        return str(path)
    paths = [str(p) for p in path]
    return paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"


def resolve(path: Source, split: str | None = None) -> tuple[list[Path], Path | None, dict | None]:
    """The data files behind `path` (or one `save_to_disk` folder), and the dataset card's front matter."""
    if not isinstance(path, (str, os.PathLike)):
        files = [f for p in path for f in resolve(p, split)[0]]
        if not files:
            raise CurateError("no input files given.")
        return files, None, None
    text = str(path)
    if hub.is_glob(text) and not Path(text).exists():
        files = hub.expand(text)
        if not files:
            raise CurateError(f"{text}: no file matches this pattern.")
        return files, None, None
    p = Path(text)
    if not p.exists():
        raise CurateError(f"{p}: no such file or folder.")
    if p.is_dir():
        found = hub.locate(p, split)
        return found.files, found.arrow_dir, found.card
    if split is not None:
        raise CurateError(f"{p}: --split applies to dataset folders, not to a single file.")
    return [p], None, None


def scan(path: Source, *, split: str | None = None) -> tuple[pl.LazyFrame, Lineage]:
    """Open `path` lazily (no validation) and return the frame and the lineage stored with it."""
    return _scan(path, split)[:2]


def _scan(path: Source, split: str | None) -> tuple[pl.LazyFrame, Lineage, dict | None]:
    files, arrow_dir, card = resolve(path, split)
    if arrow_dir is not None:
        frame, lineage = _scan_arrow_folder(arrow_dir)
        return frame, lineage, card
    suffixes = {f.suffix.lower() for f in files}
    unsupported = sorted(s for s in suffixes if s not in {".parquet", ".csv", ".arrow", *_JSONL})
    if unsupported:
        raise CurateError(f"{files[0]}: unsupported file type {unsupported[0]!r}; use .parquet, .jsonl, .csv, .arrow or a dataset folder.")
    frames, lineage = [], Lineage()
    for f in files:
        frame, file_lineage = _scan_file(f)
        frames.append(frame)
        lineage = lineage.merged(file_lineage) if lineage.sources or lineage.steps else file_lineage
    if len(frames) == 1:
        return frames[0], lineage, card
    if suffixes == {".parquet"}:
        frame = pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore")
    else:
        frame = pl.concat(frames, how="diagonal_relaxed")
    try:
        frame.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"the files do not share one schema ({_first_line(exc)})", source=source_name([str(f) for f in files])) from exc
    return frame, lineage, card


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _scan_file(p: Path) -> tuple[pl.LazyFrame, Lineage]:
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            lineage = _parquet_lineage(p)
            frame = pl.scan_parquet(p)
            frame.collect_schema()
            return frame, lineage
        if suffix in _JSONL:
            if p.stat().st_size == 0:
                raise SchemaError("the file is empty (0 rows)", source=str(p))
            frame = pl.scan_ndjson(p, infer_schema_length=None)
            frame.collect_schema()
            return frame, Lineage(sources=[hub.relative_source(p)])
        if suffix == ".csv":
            frame = pl.scan_csv(p, infer_schema_length=10_000)
            frame.collect_schema()
            return frame, Lineage(sources=[hub.relative_source(p)])
        return pl.from_arrow(_read_arrow(p)).lazy(), Lineage(sources=[hub.relative_source(p)])
    except CurateError:
        raise
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError, ValueError) as exc:
        raise SchemaError(
            f"could not read the file as {p.suffix.lstrip('.') or 'a table'}: it is truncated, corrupt, or not that format ({_first_line(exc)})",
            source=str(p),
        ) from exc


def read(path: Source, kind: str | None = "samples", *, dedup: bool = False, drop_invalid: bool = False, split: str | None = None) -> pl.LazyFrame:
    """Read a `samples`/`pairs`/`triplets`/`ranked` table lazily and validate it; `kind=None` detects it."""
    return load(path, kind, dedup=dedup, drop_invalid=drop_invalid, split=split).frame


def load(
    path: Source,
    kind: str | None = "samples",
    *,
    dedup: bool = False,
    drop_invalid: bool = False,
    step: Step | None = None,
    split: str | None = None,
) -> Table:
    """Like `read`, but also return the kind, the source, the lineage stored in the file and its card's metadata."""
    frame, lineage, card = _scan(path, split)
    if kind is None:
        kind = detect_kind(frame.collect_schema().names())
    name = source_name(path)
    if not lineage.sources:
        lineage.sources = [hub.relative_source(name)]
    frame = validate(frame, kind, source=name, dedup=dedup, drop_invalid=drop_invalid, step=step)
    return Table(frame=frame, kind=kind, source=name, lineage=lineage, card=card)


def _parquet_lineage(p: Path) -> Lineage:
    import pyarrow.parquet as pq

    meta = pq.read_metadata(p).metadata or {}
    lineage = Lineage.from_json(meta.get(LINEAGE_KEY.encode()))
    if not lineage.sources:
        lineage.sources = [hub.relative_source(p)]
    return lineage


def _read_arrow(p: Path) -> pa.Table:
    source = pa.memory_map(str(p))
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source).read_all()


def _scan_arrow_folder(p: Path) -> tuple[pl.LazyFrame, Lineage]:
    state = p / "state.json"
    if not state.exists():
        raise CurateError(f"{p}: a folder is read as a `datasets.save_to_disk` folder, but it has no state.json.")
    files = [p / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    tables = [_read_arrow(f) for f in files]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    lineage_file = p / LINEAGE_FILE
    if not lineage_file.exists() and (p.parent / LINEAGE_FILE).exists():
        lineage_file = p.parent / LINEAGE_FILE  # a split of a DatasetDict written by curate
    lineage = Lineage.from_json(lineage_file.read_text()) if lineage_file.exists() else Lineage(sources=[hub.relative_source(p)])
    return pl.from_arrow(table).lazy(), lineage


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The output format: `fmt` when given, else from the file extension (a path without one is a Hub folder)."""
    if fmt is not None:
        fmt = FORMAT_ALIASES.get(fmt, fmt)
        if fmt not in FORMATS:
            raise CurateError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)} (hub = hf).")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in _JSONL:
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    if suffix == "" or Path(path).is_dir():
        return "hf"
    raise CurateError(f"{path}: cannot tell the output format from {suffix!r}; pass --format parquet|jsonl|hf|arrow.")


def _temp_name(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path) -> None:
    """Before writing `target`: put back an output left aside by a killed swap, and remove temporaries of dead processes."""
    parent = target.parent
    if not parent.is_dir():
        return
    old = sorted(parent.glob(f".{target.name}.*.old"))
    if old and not target.exists():
        os.replace(old[-1], target)  # a kill between the two renames of a folder swap
        old = old[:-1]
    for entry in [*old, *parent.glob(f".{target.name}.*.tmp")]:
        pid = entry.name[len(target.name) + 2 :].split(".")[0]
        if pid.isdigit() and _pid_alive(int(pid)) and int(pid) != os.getpid():
            continue  # another live process is writing it
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike, *, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it onto `path`, on failure remove it.

    The temporary lives in the same folder (named with this process's id) so the final rename is
    atomic. A folder replaces an earlier one by two renames; if the process dies between them, the
    next write to the same target puts the earlier folder back first (`clean_stale`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_name(target), suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=_temp_name(target), suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    _chmod_default(tmp)
    try:
        yield tmp
        if folder and target.exists():
            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _chmod_default(path: Path) -> None:
    """mkstemp/mkdtemp create private (0600/0700) paths; give outputs the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def check_target(path: str | os.PathLike, fmt: str) -> None:
    """Refuse to replace what curate did not write: a folder without curate's lineage file, or a folder where a file goes."""
    target = Path(path)
    if not target.exists():
        return
    folder_format = fmt in ("hf", "arrow")
    if target.is_dir() and not folder_format:
        raise CurateError(f"{target} is a folder; a {fmt} output is one file. Choose a file name (e.g. {target}/out.{fmt}).")
    if target.is_dir() and not (target / LINEAGE_FILE).is_file():
        raise CurateError(
            f"{target} exists and is not a folder curate wrote (it has no {LINEAGE_FILE}); curate only replaces its own "
            "outputs. Choose a new output path, or remove the folder yourself."
        )
    if folder_format and not target.is_dir():
        raise CurateError(f"{target} is a file; a {fmt} output is a folder. Choose another path.")


def write(
    frame: pl.LazyFrame | pl.DataFrame,
    path: str | os.PathLike,
    fmt: str | None = None,
    *,
    lineage: Lineage | None = None,
    card: str | CardFn | None = None,
    card_meta: dict | None = None,
    split: str = hub.DEFAULT_SPLIT,
) -> int:
    """Write `frame` atomically as parquet/jsonl/hf (Hub layout)/arrow (`save_to_disk`) and return the rows written.

    Pairs and triplets with a conversational prompt are written in TRL's conversational form (each
    completion one assistant message), so the file trains in TRL unchanged.
    """
    from curate.formats import wrap_completions

    fmt = format_of(path, fmt)
    check_target(path, fmt)
    lineage = lineage or Lineage()
    lazy = wrap_completions(frame.lazy())
    if fmt == "parquet":
        with atomic_path(path) as tmp:
            lazy.sink_parquet(tmp, metadata={LINEAGE_KEY: lineage.to_json()})
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows
    if fmt == "jsonl":
        with atomic_path(path) as tmp:
            lazy.sink_ndjson(tmp)
        return lazy_count(pl.scan_ndjson(path)) if Path(path).stat().st_size else 0
    if fmt == "arrow":
        return write_arrow_folder(lazy.collect(), path, lineage=lineage, card=card)
    return write_hub(lazy, path, lineage=lineage, card=card, card_meta=card_meta, split=split)


def lazy_count(frame: pl.LazyFrame) -> int:
    return frame.select(pl.len()).collect().item()


def write_hub(
    frame: pl.LazyFrame,
    path: str | os.PathLike,
    *,
    lineage: Lineage,
    card: str | CardFn | None = None,
    card_meta: dict | None = None,
    split: str = hub.DEFAULT_SPLIT,
    shard_bytes: int = hub.SHARD_BYTES,
    batch_rows: int = 65_536,
) -> int:
    """A Hub dataset folder: `data/<split>-NNNNN-of-NNNNN.parquet` shards streamed in order, README.md, lineage.

    Rows are streamed batch by batch (memory does not grow with the table) and a new shard starts
    when one reaches `shard_bytes` of Arrow data. `card` is the card's body (or a function of the
    schema, the row count and the written rows that returns it); `card_meta` may give
    `license`, `tags`, `task_categories`, `pretty_name` for its YAML header.
    """
    import pyarrow.parquet as pq

    meta = {"license": None, "tags": ["curate"], "task_categories": ["text-generation"], "pretty_name": None, **(card_meta or {})}
    with atomic_path(path, folder=True) as tmp:
        data = tmp / "data"
        data.mkdir()
        shards: list[Path] = []
        writer, schema, shard_size, rows, num_bytes = None, None, 0, 0, 0
        try:
            for batch in frame.collect_batches(chunk_size=batch_rows, maintain_order=True):
                table = batch.to_arrow(compat_level=pl.CompatLevel.oldest())
                if schema is None:
                    schema = hub.plain_schema(table.schema).with_metadata({LINEAGE_KEY: lineage.to_json()})
                table = table.cast(schema)
                if writer is None or shard_size >= shard_bytes:
                    if writer is not None:
                        writer.close()
                    shards.append(data / f"shard-{len(shards):05d}.parquet")
                    writer, shard_size = pq.ParquetWriter(shards[-1], schema), 0
                writer.write_table(table)
                shard_size += table.nbytes
                num_bytes += table.nbytes
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        if schema is None:  # no batch at all: an empty table with the plan's schema
            empty = frame.clear().collect().to_arrow(compat_level=pl.CompatLevel.oldest())
            schema = hub.plain_schema(empty.schema).with_metadata({LINEAGE_KEY: lineage.to_json()})
            shards.append(data / "shard-00000.parquet")
            pq.write_table(empty.cast(schema), shards[-1])
        names = hub.shard_names(split, len(shards))
        for shard, name in zip(shards, names, strict=True):
            os.replace(shard, data / name)
        download = sum((data / n).stat().st_size for n in names)
        header = hub.front_matter(schema.remove_metadata(), split=split, num_examples=rows, num_bytes=num_bytes, download_size=download,
                                  license=meta["license"], tags=meta["tags"], task_categories=meta["task_categories"],
                                  pretty_name=meta["pretty_name"])  # fmt: skip
        if callable(card):
            written = pl.scan_parquet([data / n for n in names])
            card = card(written.collect_schema(), rows, written)
        (tmp / "README.md").write_text(header + (card or f"# {Path(path).name}\n"), encoding="utf-8")
        (tmp / LINEAGE_FILE).write_text(lineage.to_json())
    return rows


def write_arrow_folder(frame: pl.DataFrame, path: str | os.PathLike, *, lineage: Lineage, card: str | CardFn | None = None) -> int:
    """A folder that `datasets.load_from_disk` opens: one Arrow stream shard, state.json, info, card."""
    import hashlib

    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    try:
        table = table.cast(hub.plain_schema(table.schema))
    except (pa.ArrowInvalid, pa.ArrowCapacityError):  # > 2 GiB of text in one column: keep large types
        pass
    shard = "data-00000-of-00001.arrow"
    with atomic_path(path, folder=True) as tmp:
        with pa.OSFile(str(tmp / shard), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        state = {
            "_data_files": [{"filename": shard}],
            "_fingerprint": hashlib.sha1(lineage.to_json().encode()).hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
        info = {"citation": "", "description": "Written by curate.", "homepage": "", "license": ""}
        (tmp / "dataset_info.json").write_text(json.dumps(info, indent=2))
        (tmp / LINEAGE_FILE).write_text(lineage.to_json())
        if callable(card):
            card = card(frame.schema, frame.height, frame.lazy())
        if card is not None:
            (tmp / "README.md").write_text(card)
    return table.num_rows
