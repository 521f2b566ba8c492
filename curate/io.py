"""Lazy readers and atomic writers for Parquet, JSONL, CSV and HF `datasets` folders (SPEC §2)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from curate.errors import CurateError, SchemaError
from curate.report import Lineage, Step
from curate.schema import detect_kind, validate

FORMATS = ("parquet", "jsonl", "hf")
LINEAGE_KEY = "curate"
LINEAGE_FILE = "curate_lineage.json"
_JSONL = {".jsonl", ".ndjson", ".json"}


@dataclass
class Table:
    """A validated lazy table with its kind, where it came from, and its lineage."""

    frame: pl.LazyFrame
    kind: str
    source: str
    lineage: Lineage = field(default_factory=Lineage)


def scan(path: str | os.PathLike) -> tuple[pl.LazyFrame, Lineage]:
    """Open `path` lazily (no validation) and return the frame and the lineage stored with it."""
    p = Path(path)
    if not p.exists():
        raise CurateError(f"{p}: no such file or folder.")
    try:
        if p.is_dir():
            return _scan_hf_folder(p)
        suffix = p.suffix.lower()
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
            return frame, Lineage(sources=[str(p)])
        if suffix == ".csv":
            frame = pl.scan_csv(p, infer_schema_length=10_000)
            frame.collect_schema()
            return frame, Lineage(sources=[str(p)])
        if suffix == ".arrow":
            return pl.from_arrow(_read_arrow(p)).lazy(), Lineage(sources=[str(p)])
    except CurateError:
        raise
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SchemaError(
            f"could not read the file as {p.suffix.lstrip('.') or 'a table'}: it is truncated, corrupt, or not that format ({first})",
            source=str(p),
        ) from exc
    raise CurateError(f"{p}: unsupported file type {p.suffix!r}; use .parquet, .jsonl, .csv, .arrow or a `datasets` folder.")


def read(path: str | os.PathLike, kind: str | None = "samples", *, dedup: bool = False, drop_invalid: bool = False) -> pl.LazyFrame:
    """Read a `samples`/`pairs`/`triplets`/`ranked` table lazily and validate it (SPEC §2); `kind=None` detects it."""
    return load(path, kind, dedup=dedup, drop_invalid=drop_invalid).frame


def load(
    path: str | os.PathLike,
    kind: str | None = "samples",
    *,
    dedup: bool = False,
    drop_invalid: bool = False,
    step: Step | None = None,
) -> Table:
    """Like `read`, but also return the kind, the source path and the lineage stored in the file."""
    frame, lineage = scan(path)
    if kind is None:
        kind = detect_kind(frame.collect_schema().names())
    if not lineage.sources:
        lineage.sources = [str(path)]
    frame = validate(frame, kind, source=str(path), dedup=dedup, drop_invalid=drop_invalid, step=step)
    return Table(frame=frame, kind=kind, source=str(path), lineage=lineage)


def _parquet_lineage(p: Path) -> Lineage:
    import pyarrow.parquet as pq

    meta = pq.read_metadata(p).metadata or {}
    lineage = Lineage.from_json(meta.get(LINEAGE_KEY.encode()))
    if not lineage.sources:
        lineage.sources = [str(p)]
    return lineage


def _read_arrow(p: Path) -> pa.Table:
    source = pa.memory_map(str(p))
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source).read_all()


def _scan_hf_folder(p: Path) -> tuple[pl.LazyFrame, Lineage]:
    state = p / "state.json"
    if not state.exists():
        raise CurateError(f"{p}: a folder is read as a `datasets.save_to_disk` folder, but it has no state.json.")
    files = [p / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    tables = [_read_arrow(f) for f in files]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    lineage_file = p / LINEAGE_FILE
    lineage = Lineage.from_json(lineage_file.read_text()) if lineage_file.exists() else Lineage(sources=[str(p)])
    return pl.from_arrow(table).lazy(), lineage


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The output format: `fmt` when given, else from the file extension (default parquet)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise CurateError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}.")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in _JSONL:
        return "jsonl"
    if suffix in {".parquet", ""} and not Path(path).is_dir():
        return "parquet"
    if Path(path).is_dir() or suffix == "":
        return "hf"
    raise CurateError(f"{path}: cannot tell the output format from {suffix!r}; pass --format parquet|jsonl|hf.")


@contextmanager
def atomic_path(path: str | os.PathLike, *, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on failure remove it.

    The temporary lives in the same folder so the final rename is atomic and an existing output
    is never left half-written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    _chmod_default(tmp)
    try:
        yield tmp
        if folder and target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
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


def write(
    frame: pl.LazyFrame | pl.DataFrame,
    path: str | os.PathLike,
    fmt: str | None = None,
    *,
    lineage: Lineage | None = None,
    card: str | None = None,
) -> int:
    """Write `frame` atomically as parquet/jsonl/hf and return the number of rows written."""
    fmt = format_of(path, fmt)
    lineage = lineage or Lineage()
    lazy = frame.lazy()
    if fmt == "parquet":
        with atomic_path(path) as tmp:
            lazy.sink_parquet(tmp, metadata={LINEAGE_KEY: lineage.to_json()})
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows
    if fmt == "jsonl":
        with atomic_path(path) as tmp:
            lazy.sink_ndjson(tmp)
        return lazy_count(pl.scan_ndjson(path)) if Path(path).stat().st_size else 0
    return write_hf(lazy.collect(), path, lineage=lineage, card=card)


def lazy_count(frame: pl.LazyFrame) -> int:
    return frame.select(pl.len()).collect().item()


def _plain_arrow(table: pa.Table) -> pa.Table:
    """Cast large/view string and list types to the plain ones `datasets` maps to Value('string') / List."""

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return pa.string()
        if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_list(t):
            return pa.list_(plain(t.value_type))
        return t

    schema = pa.schema([f.with_type(plain(f.type)) for f in table.schema])
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowCapacityError):  # > 2 GiB of text in one column: keep large types
        return table


def write_hf(frame: pl.DataFrame, path: str | os.PathLike, *, lineage: Lineage, card: str | None = None) -> int:
    """Write a folder that `datasets.load_from_disk` opens: one Arrow stream shard, state.json, info, card."""
    table = _plain_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))
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
        if card is not None:
            (tmp / "README.md").write_text(card)
    return table.num_rows
