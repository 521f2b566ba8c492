"""Lazy readers and atomic writers: Parquet, JSONL, CSV, Arrow, Hub-layout and `save_to_disk` folders.

Inputs can be one file, a glob (`"data/*.parquet"`), a list of files, a Hub dataset folder
(`data/<split>-*.parquet` + README.md `configs`), or a `datasets` `save_to_disk` folder (a `Dataset` or a
`DatasetDict`, one split at a time). Outputs are written to a temporary path beside the target and
renamed onto it, so an earlier output is never left half-written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from curate import hub
from curate.errors import CurateError, SchemaError
from curate.lineage import Lineage, Step
from curate.schema import TEXT_COLUMNS, Checked, check, detect_kind, validate
from curate.sinks import (  # noqa: F401  (re-exported: the writing side of curate.io)
    FORMATS,
    JSONL_SUFFIXES as _JSONL,
    LINEAGE_FILE,
    LINEAGE_KEY,
    CardFn,
    atomic_path,
    check_target,
    execute,
    format_of,
)

if TYPE_CHECKING:
    import pyarrow as pa

Source = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass
class Table:
    """A validated lazy table with its kind, where it came from, and its lineage."""

    frame: pl.LazyFrame
    kind: str
    source: str
    lineage: Lineage = field(default_factory=Lineage)
    card: dict | None = None  # the YAML front matter of the input's dataset card, when it has one
    checked: Checked | None = None  # deferred validation (load(..., deferred=True))


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
    from curate.remote import is_url, public, restore_url

    if is_url(restore_url(path)):
        raise CurateError(f"{public(str(restore_url(path)))}: URLs (s3://, gs://, ...) are read by `--engine ray`; "
                          "on one machine, use a mounted path or a local copy.")  # fmt: skip
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
        frame, lineage = scan_arrow_folder(arrow_dir)
        return frame, lineage, card
    frame, lineage = _scan_files(files)
    folder_lineage = Path(str(path)) / LINEAGE_FILE if isinstance(path, (str, os.PathLike)) else None
    if folder_lineage is not None and folder_lineage.is_file():  # a folder curate wrote: its lineage file is the record
        lineage = Lineage.from_json(folder_lineage.read_text())
    return frame, lineage, card


def _scan_files(files: list[Path]) -> tuple[pl.LazyFrame, Lineage]:
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
        return frames[0], lineage
    if suffixes == {".parquet"}:
        frame = pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore")
    else:
        frame = pl.concat(frames, how="diagonal_relaxed")
    try:
        frame.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"the files do not share one schema ({_first_line(exc)})", source=source_name([str(f) for f in files])) from exc
    return frame, lineage


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _scan_file(p: Path) -> tuple[pl.LazyFrame, Lineage]:
    suffix = p.suffix.lower()
    lineage = Lineage(sources=[hub.relative_source(p)])
    try:
        if suffix == ".parquet":
            lineage = _parquet_lineage(p)
            frame = pl.scan_parquet(p)
            frame.collect_schema()
            return frame, lineage
        if suffix in _JSONL:
            return _scan_jsonl(p), lineage
        if suffix == ".csv":
            # types inferred from the whole file (a column may change type late); text columns are read as written, so
            # ids "007" and "7" stay apart and an answer "0.50" stays "0.50"
            frame = pl.scan_csv(p, infer_schema_length=None, schema_overrides={c: pl.String for c in TEXT_COLUMNS})
            frame.collect_schema()
            return frame, lineage
        return pl.from_arrow(_read_arrow(p)).lazy(), lineage
    except CurateError:
        raise
    except (pl.exceptions.PolarsError, _arrow_error(), OSError, ValueError) as exc:
        where = locate_text_error(p) if suffix in (*_JSONL, ".csv") else None
        raise SchemaError(
            where or f"could not read the file as {p.suffix.lstrip('.') or 'a table'}: it is truncated, corrupt, or not that format ({_first_line(exc)})",
            source=str(p),
        ) from exc


_BOM = b"\xef\xbb\xbf"


def _scan_jsonl(p: Path) -> pl.LazyFrame:
    if p.stat().st_size == 0:
        raise SchemaError("the file is empty (0 rows)", source=str(p))
    with p.open("rb") as fh:
        head = fh.read(3)
        start = (head[3:] if head == _BOM else head) + fh.read(4096)
    if p.suffix.lower() == ".json" and start.lstrip()[:1] == b"[":  # one JSON array of rows (as `datasets`' json builder reads it)
        return _read_json_array(p)
    if head == _BOM:  # a UTF-8 byte-order mark (e.g. from Windows tools): read without it
        import io as _io

        return pl.read_ndjson(_io.BytesIO(p.read_bytes()[3:]), infer_schema_length=None).lazy()
    frame = pl.scan_ndjson(p, infer_schema_length=None)
    frame.collect_schema()
    return frame


def _read_json_array(p: Path) -> pl.LazyFrame:
    """A JSON file whose whole text is an array of row objects, e.g. `[{"prompt": ..., "response": ...}, ...]` (read by Polars)."""
    import io as _io

    data = p.read_bytes().removeprefix(_BOM)
    try:
        frame = pl.read_json(_io.BytesIO(data), infer_schema_length=None)
    except pl.exceptions.PolarsError as exc:
        raise _json_array_error(data, str(p)) or SchemaError(f"could not read the JSON array ({_first_line(exc)})", source=str(p)) from None
    if frame.height == 0:
        raise SchemaError("the file is empty (0 rows)", source=str(p))
    return frame.lazy()


_JSON_KINDS = ((str, "text"), (list, "a list"), (dict, "an object"), ((int, float), "a number"))  # null fits any column


def _json_array_error(data: bytes, source: str) -> SchemaError | None:
    """Why a JSON array does not read as a table (on the error path only): where it does not parse, a row that is not an
    object, or the first column whose values differ in kind (text in one row, messages in another)."""
    try:
        rows = json.loads(data)
    except json.JSONDecodeError as exc:
        return SchemaError(f"line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})", source=source)
    except UnicodeDecodeError:
        return SchemaError("not UTF-8 text; save the file as UTF-8", source=source)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return SchemaError("a JSON file is read as rows: an array of objects, or one object per line (JSON Lines)", source=source)
    first: dict[str, tuple[str, int]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            kind = next((name for types, name in _JSON_KINDS if isinstance(value, types)), None)
            if kind is None:
                continue
            seen, row_seen = first.setdefault(key, (kind, i))
            if seen != kind:
                return SchemaError(f"the rows do not hold one type per column ({seen} in row {row_seen}, {kind} in row {i}); give every row the "
                                   "same form", source=source, column=key, rows=[i])  # fmt: skip
    return None


def locate_text_error(p: Path) -> str | None:
    """For a JSONL or CSV file that does not parse: the first line (1-based) and column that are not valid, or not UTF-8."""
    with p.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {number}, byte {exc.start + 1}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
            if p.suffix.lower() == ".csv" or not line.strip():
                continue
            try:
                json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                return f"line {number}, column {exc.colno}: not valid JSON ({exc.msg})"
    return None


def read(
    path: Source,
    kind: str | None = "samples",
    *,
    dedup: bool = False,
    drop_invalid: bool = False,
    split: str | None = None,
    rehash_prompt_ids: bool = False,
) -> pl.LazyFrame:
    """Read a `samples`/`pairs`/`triplets`/`ranked` table lazily and validate it; `kind=None` detects it."""
    return load(path, kind, dedup=dedup, drop_invalid=drop_invalid, split=split, rehash_prompt_ids=rehash_prompt_ids).frame


def load(
    path: Source,
    kind: str | None = "samples",
    *,
    dedup: bool | None = False,
    drop_invalid: bool = False,
    step: Step | None = None,
    split: str | None = None,
    rehash_prompt_ids: bool | None = False,
    deferred: bool = False,
    drop_hint: bool = True,
    only: set[str] | None = None,
) -> Table:
    """Like `read`, but also return the kind, the source, the lineage stored in the file and its card's metadata.

    With `deferred`, the row checks are planned, not run: `Table.checked` holds their statistics and
    `settle`, for the caller to evaluate in the same execution as its output. `drop_hint=False`,
    `rehash_prompt_ids=None` and `dedup=None` say the caller offers no `--drop-invalid`,
    `--rehash-prompt-ids` or `--dedup`, so the errors' hints and notes do not name them.
    """
    frame, lineage, card = _scan(path, split)
    if kind is None:
        kind = detect_kind(frame.collect_schema().names())
    name = source_name(path)
    if not lineage.sources:
        lineage.sources = [hub.relative_source(name)]
    opts = {"source": name, "dedup": dedup, "drop_invalid": drop_invalid, "step": step, "rehash_prompt_ids": rehash_prompt_ids, "drop_hint": drop_hint}
    if deferred:
        checked = check(frame, kind, **opts, only=only, keep_row=True)
        return Table(frame=checked.frame, kind=kind, source=name, lineage=lineage, card=card, checked=checked)
    frame = validate(frame, kind, **opts)
    return Table(frame=frame, kind=kind, source=name, lineage=lineage, card=card)


def _arrow_error() -> type[BaseException]:
    """pyarrow's error type once pyarrow is loaded (only Arrow files and Hub folders load it), else a type never raised."""
    import sys

    pa = sys.modules.get("pyarrow")
    return pa.ArrowException if pa is not None else _NeverRaised


class _NeverRaised(Exception):
    pass


def _parquet_lineage(p: Path) -> Lineage:
    lineage = Lineage.from_json(pl.read_parquet_metadata(p).get(LINEAGE_KEY))
    if not lineage.sources:
        lineage.sources = [hub.relative_source(p)]
    return lineage


def _read_arrow(p: Path) -> pa.Table:
    import pyarrow as pa

    source = pa.memory_map(str(p))
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source).read_all()


def scan_arrow_folder(p: Path) -> tuple[pl.LazyFrame, Lineage]:
    state = p / "state.json"
    if not state.exists():
        raise CurateError(f"{p}: a folder is read as a `datasets.save_to_disk` folder, but it has no state.json.")
    files = [p / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    import pyarrow as pa

    tables = [_read_arrow(f) for f in files]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    lineage_file = p / LINEAGE_FILE
    if not lineage_file.exists() and (p.parent / LINEAGE_FILE).exists():
        lineage_file = p.parent / LINEAGE_FILE  # a split of a DatasetDict written by curate
    lineage = Lineage.from_json(lineage_file.read_text()) if lineage_file.exists() else Lineage(sources=[hub.relative_source(p)])
    return pl.from_arrow(table).lazy(), lineage


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
    """Write `frame` atomically as parquet/jsonl/hf (a Hub dataset folder)/arrow (`save_to_disk`) and return the rows written.

    The plan runs once, streamed batch by batch into the output. Pairs and triplets with a
    conversational prompt are written in TRL's conversational form (each completion one assistant
    message), so the file trains in TRL unchanged.
    """
    return execute(frame, path, fmt, lineage=lineage, card=card, card_meta=card_meta, split=split).rows


def lazy_count(frame: pl.LazyFrame) -> int:
    return frame.select(pl.len()).collect().item()
