"""Writing outputs: atomic paths, one batch writer per format, and `execute`, which runs a plan once.

`execute` streams a LazyFrame's batches into the output's writer while Polars computes, in the same
`collect_all`, every statistic the step needs (validation checks, drop counts): the plan runs once,
memory stays bounded by the batch size (except where the plan itself must hold data, e.g. a sort),
and the file's footer, card and lineage are written last, once the counts are known. The output
goes to a temporary path beside the target (named with the process id) and is renamed onto it only
when everything succeeded, so an earlier output is never left half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from curate import hub
from curate.errors import CurateError
from curate.footer import fill_reserved, num_rows
from curate.lineage import Lineage

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("parquet", "jsonl", "hf", "arrow")
FORMAT_ALIASES = {"hub": "hf"}
LINEAGE_KEY = "curate"
LINEAGE_FILE = "curate_lineage.json"  # in every folder curate writes: its lineage, and the mark of a curate output
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
ROW_GROUP_ROWS = 65_536
CardFn = Callable[[pl.Schema, int, pl.LazyFrame], str]  # (schema, rows, the written rows) -> card body


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The output format: `fmt` when given, else from the file extension (a path without one is a Hub folder)."""
    if fmt is not None:
        fmt = FORMAT_ALIASES.get(fmt, fmt)
        if fmt not in FORMATS:
            raise CurateError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)} (hub = hf).")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    if suffix == "" or Path(path).is_dir():
        return "hf"
    raise CurateError(f"{path}: cannot tell the output format from {suffix!r}; pass --format parquet|jsonl|hf|arrow.")


# --- atomic paths ------------------------------------------------------------------------------------------------


def _temp_prefix(target: Path) -> str:
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
    """Before writing `target`: put back an output left aside by a killed folder swap, remove temporaries of dead processes."""
    parent = target.parent
    if not parent.is_dir():
        return
    old = sorted(parent.glob(f".{target.name}.*.old"))
    if old and not target.exists():
        os.replace(old[-1], target)  # killed between the two renames of a folder swap: the earlier output comes back
        old = old[:-1]
    for entry in [*old, *parent.glob(f".{target.name}.*.tmp")]:
        pid = entry.name[len(target.name) + 2 :].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue  # another live process is writing it
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


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
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    _chmod_default(tmp)
    try:
        with _terminate_as_exit():
            yield tmp
            move_into_place(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def move_into_place(tmp: Path, target: Path) -> None:
    """Rename `tmp` onto `target`; an earlier folder there is set aside first and removed after (two renames: if the
    process dies between them, `clean_stale` puts the earlier folder back on the next write)."""
    if tmp.is_dir() and target.exists():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit while an output is being written, so its temporary is removed (SIGINT already raises)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_exit)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _chmod_default(path: Path) -> None:
    """mkstemp/mkdtemp create private (0600/0700) paths; give outputs the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def check_target(path: str | os.PathLike, fmt: str, inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse to replace what curate did not write, or a folder that holds one of the inputs."""
    target = Path(path)
    for src in inputs:
        s = Path(str(src))
        if target.exists() and target.is_dir() and s.exists() and s.resolve().is_relative_to(target.resolve()):
            raise CurateError(f"the output folder {target} holds the input {src}; replacing the folder would delete it. Choose another output path.")
        if s.exists() and s.resolve() == target.resolve() and s.is_dir():
            raise CurateError(f"the output {target} is the input folder itself; choose another output path.")
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


# --- writers -------------------------------------------------------------------------------------------------------


def _arrow(df: pl.DataFrame) -> pa.Table:
    import pyarrow  # noqa: F401  (Polars converts to Arrow through it)

    return df.to_arrow(compat_level=pl.CompatLevel.oldest())


class NativeSink:
    """A Parquet or JSON Lines file written by Polars' own parallel sink, inside the command's one `collect_all`.

    The lineage is only known once the counts are: a Parquet footer reserves room for it under
    LINEAGE_KEY (a marker padded with spaces) and `finish` fills it in place, padded to the same
    length (JSON allows the trailing spaces). The rows written come from the footer (or the lines of
    a JSON Lines file), and a tracked column's distinct values from reading that column back.
    """

    def __init__(self, path: Path, fmt: str, metadata: dict[str, str] | None = None) -> None:
        self.path, self.fmt, self.metadata = path, fmt, metadata or {}
        self.marker = f"curate-lineage-{os.getpid()}-{id(self):x}-".encode()
        self.rows = 0

    def plan(self, lazy: pl.LazyFrame) -> pl.LazyFrame:
        """The sink, to run in the step's one `collect_all`."""
        if self.fmt == "jsonl":
            return lazy.sink_ndjson(self.path, lazy=True)
        metadata = {**self.metadata, LINEAGE_KEY: self.marker.decode().ljust(LINEAGE_RESERVE)}
        return lazy.sink_parquet(self.path, compression="zstd", row_group_size=ROW_GROUP_ROWS, metadata=metadata, lazy=True)

    def written(self, track: str | None, rows: int | None = None) -> int | None:
        """After the plan ran: set the rows written (`rows` when the plan counted them, else from the footer, or the
        lines); return the distinct values of `track`.

        Those are read back from the written file, not computed by running the plan again.
        """
        if rows is not None:
            self.rows = rows
        else:
            self.rows = num_rows(self.path) if self.fmt == "parquet" else _count_lines(self.path)
        if track is None:
            return None
        if not self.rows:
            return 0
        scan = pl.scan_parquet(self.path) if self.fmt == "parquet" else pl.scan_ndjson(self.path)
        return scan.select(pl.col(track).n_unique()).collect().item()

    def finish(self, lineage: Lineage, empty: pl.DataFrame) -> None:
        if self.fmt == "parquet":
            fill_reserved(self.path, self.marker, LINEAGE_KEY, lineage.to_json(), LINEAGE_RESERVE)

    def abort(self) -> None:
        pass


LINEAGE_RESERVE = 16_384  # bytes kept in a Parquet footer for the lineage; a longer one rewrites the file


def _count_lines(path: Path) -> int:
    count, block = 0, bytearray(1 << 22)
    with path.open("rb", buffering=0) as fh:
        while size := fh.readinto(block):
            count += block.count(b"\n", 0, size)
    return count


class HubSink:
    """A Hub dataset folder: `data/<split>-NNNNN-of-NNNNN.parquet` shards (plain Arrow types), then README.md and lineage.

    Polars' sink writes one file (its ARROW:schema names the plain types `datasets` expects: string,
    list); when its data (uncompressed) exceeds `shard_bytes`, it is split after into that many shards
    of equal row counts, a row group at a time. The lineage goes into the last shard's footer and into
    `curate_lineage.json`.
    """

    def __init__(self, folder: Path, *, split: str, card: str | CardFn | None, card_meta: dict | None, shard_bytes: int, name: str) -> None:
        self.folder, self.split, self.card, self.shard_bytes, self.name = folder, split, card, shard_bytes, name
        self.meta = {"license": None, "tags": ["curate"], "task_categories": ["text-generation"], "pretty_name": None, **(card_meta or {})}
        self.data = folder / "data"
        self.data.mkdir()
        self.file: NativeSink | None = None
        self.schema: pa.Schema | None = None
        self.rows = self.num_bytes = 0

    def plan(self, lazy: pl.LazyFrame) -> pl.LazyFrame:
        import base64

        self.schema = hub.plain_schema(_arrow(pl.DataFrame(schema=lazy.collect_schema())).schema)
        plain = base64.b64encode(self.schema.serialize().to_pybytes()).decode()  # how Arrow stores a schema in a Parquet footer
        self.file = NativeSink(self.data / "whole.parquet", "parquet", metadata={"ARROW:schema": plain})
        return self.file.plan(lazy)

    def written(self, track: str | None, rows: int | None = None) -> int | None:
        assert self.file is not None
        distinct = self.file.written(track, rows)
        self.rows = self.file.rows
        return distinct

    def finish(self, lineage: Lineage, empty: pl.DataFrame) -> None:
        import pyarrow.parquet as pq

        assert self.file is not None and self.schema is not None
        whole = self.file.path
        meta = pq.read_metadata(whole)
        self.num_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        shards = max(1, -(-self.num_bytes // self.shard_bytes))
        names = hub.shard_names(self.split, shards)
        if shards == 1 and pq.read_schema(whole).remove_metadata() == self.schema:
            self.file.finish(lineage, empty)
            os.replace(whole, self.data / names[0])
        else:  # larger than a shard (or a writer that kept its own types): rewritten shard by shard, bounded by a row group
            _split_parquet(whole, [self.data / n for n in names], self.schema, self.rows, lineage)
            whole.unlink()
        download = sum((self.data / n).stat().st_size for n in names)
        header = hub.front_matter(self.schema, split=self.split, num_examples=self.rows, num_bytes=self.num_bytes, download_size=download,
                                  license=self.meta["license"], tags=self.meta["tags"], task_categories=self.meta["task_categories"],
                                  pretty_name=self.meta["pretty_name"])  # fmt: skip
        card = self.card
        if callable(card):
            written = pl.scan_parquet([self.data / n for n in names])
            card = card(written.collect_schema(), self.rows, written)
        (self.folder / "README.md").write_text(header + (card or f"# {self.name}\n"), encoding="utf-8")
        (self.folder / LINEAGE_FILE).write_text(lineage.to_json())

    def abort(self) -> None:
        pass


def _split_parquet(src: Path, shards: list[Path], schema: pa.Schema, rows: int, lineage: Lineage) -> None:
    """Copy `src` into `shards` of equal row counts (the last shorter), cast to `schema`; the lineage in the last footer."""
    import pyarrow.parquet as pq

    per_shard = max(1, -(-rows // len(shards)))
    reader = pq.ParquetFile(src)
    batches = reader.iter_batches(batch_size=min(per_shard, ROW_GROUP_ROWS))
    pending = None
    for i, path in enumerate(shards):
        last = i == len(shards) - 1
        meta = {LINEAGE_KEY: (lineage if last else Lineage()).to_json()}
        with pq.ParquetWriter(path, schema.with_metadata(meta), compression="zstd") as writer:
            left = per_shard if not last else rows
            while left > 0:
                batch = pending if pending is not None else next(batches, None)
                pending = None
                if batch is None:
                    break
                if batch.num_rows > left:
                    batch, pending = batch.slice(0, left), batch.slice(left)
                writer.write_table(_cast_batch(batch, schema), row_group_size=ROW_GROUP_ROWS)
                left -= batch.num_rows


def _cast_batch(batch: Any, schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_batches([batch]).cast(schema)


class ArrowSink:
    """A `datasets.save_to_disk` folder: one Arrow stream shard, state.json, dataset_info.json, card, lineage."""

    SHARD = "data-00000-of-00001.arrow"

    def __init__(self, folder: Path, *, card: str | CardFn | None) -> None:
        self.folder, self.card = folder, card
        self.sink: Any = None
        self.writer: Any = None
        self.schema: pa.Schema | None = None
        self.rows = 0

    def write(self, df: pl.DataFrame) -> None:
        table = _arrow(df)
        if self.schema is None:
            import pyarrow as pa

            self.schema = hub.plain_schema(table.schema)
            self.sink = pa.OSFile(str(self.folder / self.SHARD), "wb")
            self.writer = pa.ipc.new_stream(self.sink, self.schema)
        self.writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def finish(self, lineage: Lineage, empty: pl.DataFrame) -> None:
        if self.schema is None:
            self.write(empty)
        self.writer.close()
        self.sink.close()
        state = {
            "_data_files": [{"filename": self.SHARD}],
            "_fingerprint": hashlib.sha1(lineage.to_json().encode()).hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (self.folder / "state.json").write_text(json.dumps(state, indent=2))
        info = {"citation": "", "description": "Written by curate.", "homepage": "", "license": ""}
        (self.folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
        (self.folder / LINEAGE_FILE).write_text(lineage.to_json())
        card = self.card
        if callable(card):
            from curate.io import scan_arrow_folder

            written = scan_arrow_folder(self.folder)[0]
            card = card(written.collect_schema(), self.rows, written)
        if card is not None:
            (self.folder / "README.md").write_text(card, encoding="utf-8")

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.sink.close()


def _make_sink(fmt: str, tmp: Path, *, target: Path, split: str, card: str | CardFn | None, card_meta: dict | None, shard_bytes: int) -> Any:
    if fmt in ("parquet", "jsonl"):
        return NativeSink(tmp, fmt)
    if fmt == "arrow":
        return ArrowSink(tmp, card=card)
    return HubSink(tmp, split=split, card=card, card_meta=card_meta, shard_bytes=shard_bytes, name=target.name)


# --- one execution -----------------------------------------------------------------------------------------------------


@dataclass
class Executed:
    rows: int
    values: list[pl.DataFrame] = field(default_factory=list)  # the statistics, in the order given


def execute(
    frame: pl.LazyFrame | pl.DataFrame,
    path: str | os.PathLike,
    fmt: str | None = None,
    *,
    stats: Sequence[pl.LazyFrame] = (),
    finish: Callable[[list[pl.DataFrame], int, int | None], Lineage] | None = None,
    lineage: Lineage | None = None,
    card: str | CardFn | None = None,
    card_meta: dict | None = None,
    split: str = hub.DEFAULT_SPLIT,
    inputs: Sequence[str | os.PathLike] = (),
    shard_bytes: int = hub.SHARD_BYTES,
    chunk_size: int | None = None,
    track: str | None = None,
    count_in_plan: bool = False,
) -> Executed:
    """Run `frame` once, streaming it into `path` while computing `stats`, and write it atomically.

    `finish(stats_values, rows, distinct)` runs before anything is renamed into place: it may raise
    (the temporary output is then removed) and returns the lineage to store with the output;
    `distinct` is the number of distinct values of the `track` column in what was written (counted
    on the way out). Pairs and triplets with a conversational prompt are written in TRL's
    conversational form. `count_in_plan` counts a JSON Lines output's rows in the same execution
    (`select(pl.len())` beside the sink) instead of reading its lines back: only for a frame that is
    cheap to count again, a projection of a cached input (export), never one with a join or a scorer.
    """
    from curate.formats import wrap_completions

    fmt = format_of(path, fmt)
    check_target(path, fmt, inputs)
    target = Path(path)
    lazy = wrap_completions(frame.lazy())
    with atomic_path(target, folder=fmt in ("hf", "arrow")) as tmp:
        sink = _make_sink(fmt, tmp, target=target, split=split, card=card, card_meta=card_meta, shard_bytes=shard_bytes)
        seen: set[Any] = set()

        def write(df: pl.DataFrame) -> None:
            if track is not None:
                seen.update(df[track].unique().to_list())
            sink.write(df)

        try:
            if isinstance(sink, (NativeSink, HubSink)):
                counted = count_in_plan and fmt == "jsonl"  # a Parquet footer holds its rows already
                values = pl.collect_all([sink.plan(lazy), *stats, *([lazy.select(pl.len())] if counted else [])])[1:]
                distinct = sink.written(track, rows=values.pop().item() if counted else None)
            else:
                values = pl.collect_all([lazy.sink_batches(write, lazy=True, chunk_size=chunk_size, maintain_order=True), *stats])[1:]
                distinct = len(seen) if track is not None else None
            done = finish(list(values), sink.rows, distinct) if finish is not None else (lineage or Lineage())
            sink.finish(done, pl.DataFrame(schema=lazy.collect_schema()))
        except BaseException:
            sink.abort()
            raise
    return Executed(rows=sink.rows, values=list(values))
