"""A Parquet file's footer, read and patched without decoding the data: its row count, and values filled into reserved room.

A Parquet file ends with its FileMetaData (Thrift compact protocol), the footer's length and
`PAR1`. A writer that only knows a key-value entry after writing the data (curate's lineage needs
the counts) reserves room for it: a string starting with a unique marker, padded with spaces; the
value is later written over it, padded to the same length, so no offset in the file moves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from curate.errors import CurateError


def read_footer(fh: BinaryIO, path: Path) -> tuple[int, bytes]:
    """A Parquet file's footer (the Thrift-encoded FileMetaData) and where it starts."""
    fh.seek(-8, os.SEEK_END)
    tail = fh.read(8)
    if tail[4:] != b"PAR1":
        raise CurateError(f"{path}: not a Parquet file (no PAR1 footer)")
    length = int.from_bytes(tail[:4], "little")
    start = fh.seek(-8 - length, os.SEEK_END)
    return start, fh.read(length)


def num_rows(path: Path) -> int:
    """The row count in a Parquet file's footer: FileMetaData field 3 (Thrift compact protocol), after fields 1-2."""
    with path.open("rb") as fh:
        footer = read_footer(fh, path)[1]
    reader = _Thrift(footer)
    last = 0
    while (header := reader.byte()) != 0:
        delta, kind = header >> 4, header & 0x0F
        field = last + delta if delta else reader.zigzag()
        if field == 3 and kind == 6:
            return reader.zigzag()
        reader.skip(kind)
        last = field
    raise CurateError(f"{path}: the Parquet footer has no row count")


class _Thrift:
    """Just enough of Thrift's compact protocol to step over fields of a Parquet footer."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def skip(self, kind: int) -> None:
        if kind in (1, 2):  # booleans live in the field header
            return
        if kind == 3:
            self.pos += 1
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            size = self.varint()  # read first: `self.pos += self.varint()` would add to the position before the length
            self.pos += size
        elif kind in (9, 10):
            header = self.byte()
            size = header >> 4 if header >> 4 != 15 else self.varint()
            for _ in range(size):
                self.pos += 1 if header & 0x0F in (1, 2) else 0
                if header & 0x0F not in (1, 2):
                    self.skip(header & 0x0F)
        elif kind == 11:
            size = self.varint()
            types = self.byte() if size else 0
            for _ in range(size):
                self.skip(types >> 4)
                self.skip(types & 0x0F)
        elif kind == 12:
            while (header := self.byte()) != 0:
                if not header >> 4:
                    self.zigzag()
                self.skip(header & 0x0F)
        else:
            raise ValueError(f"unknown Thrift type {kind}")


def fill_reserved(path: Path, marker: bytes, key: str, value: str, reserve: int) -> None:
    """Write `value` into the footer space a Parquet file reserved for `key` (a string starting with `marker`)."""
    with path.open("r+b") as fh:
        start, footer = read_footer(fh, path)
        at = footer.find(marker)
        data = value.encode()
        if at >= 0 and footer.find(marker, at + 1) < 0 and len(data) <= reserve:
            fh.seek(start + at)
            fh.write(data.ljust(reserve))
            return
    _rewrite_with_metadata(path, key, value)  # a value longer than the room kept for it: rewrite the file (rare)


def _rewrite_with_metadata(path: Path, key: str, value: str) -> None:
    """Copy the file row group by row group with `key` set to `value` (memory: one row group)."""
    import pyarrow.parquet as pq

    src = pq.ParquetFile(path)
    schema = src.schema_arrow.with_metadata({**(src.schema_arrow.metadata or {}), key.encode(): value.encode()})
    tmp = path.with_suffix(".footer.tmp")  # beside a temporary output, named like one: removed with it if this process dies
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for i in range(src.num_row_groups):
            group = src.read_row_group(i)
            writer.write_table(group, row_group_size=group.num_rows)
    os.replace(tmp, path)
