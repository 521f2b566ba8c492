"""Files named by URL or by path, through pyarrow filesystems: what `--engine ray` reads and writes.

A `Location` is a pyarrow filesystem and a path on it: a local path (`LocalFileSystem`) or a URL of
any filesystem pyarrow knows — `s3://bucket/prefix` (AWS or any S3-compatible store; options such as
`?endpoint_override=host:port&scheme=http&region=...` ride in the URL), `gs://`, `hdfs://`,
`abfs://`, `file://`. Credentials come from the usual places (environment, config files, instance
roles) or from the URL, and are never shown in messages or lineage. Locations pickle (the
filesystem with its options), so Ray tasks on other machines reach the same files.

Object stores have no rename: a file is written in one request (it appears whole or not at all), a
"move" is a copy and a delete, and a folder output is published file by file with its manifest last.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_COLLAPSED = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")  # what pathlib makes of a URL: `s3:/bucket/key`
_SECRET = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


def is_url(path: Any) -> bool:
    """Whether `path` names a file by URL (`scheme://...`) rather than by local path."""
    return isinstance(path, (str, os.PathLike)) and bool(_URL.match(str(path)))


def restore_url(path: Any) -> Any:
    """A URL that went through `pathlib.Path` (which folds `s3://b/k` to `s3:/b/k`) as the URL again; anything else as is."""
    if isinstance(path, os.PathLike) and not is_url(path) and _COLLAPSED.match(str(path)):
        scheme, rest = str(path).split(":/", 1)
        return f"{scheme}://{'/' if scheme == 'file' else ''}{rest}"
    return path


def public(url: str) -> str:
    """A URL without the credentials and options it may carry (`s3://KEY:SECRET@bucket/key?endpoint_override=...`): for messages and lineage."""
    return _SECRET.sub(r"\1", url).split("?", 1)[0] if is_url(url) else url


@dataclass(frozen=True)
class Location:
    """A file or folder: a pyarrow filesystem and a path on it, and how messages name it."""

    fs: Any
    path: str
    name: str

    @classmethod
    def of(cls, where: str | os.PathLike) -> "Location":
        """The location of a URL (any pyarrow filesystem) or of a local path (made absolute: Ray tasks run elsewhere)."""
        import pyarrow.fs as pafs

        where = restore_url(where)
        if is_url(where):
            try:
                fs, path = pafs.FileSystem.from_uri(str(where))
            except (ValueError, OSError) as exc:
                from curate.errors import CurateError

                raise CurateError(f"{public(str(where))}: not a URL pyarrow can open ({exc}).") from None
            return cls(fs, path.rstrip("/"), public(str(where)).rstrip("/"))
        path = str(Path(where).absolute())
        return cls(pafs.LocalFileSystem(), path, str(where))

    @property
    def local(self) -> bool:
        import pyarrow.fs as pafs

        return isinstance(self.fs, pafs.LocalFileSystem)

    def child(self, *parts: str) -> "Location":
        rel = "/".join(parts)
        return Location(self.fs, f"{self.path}/{rel}", f"{self.name}/{rel}")

    def sibling(self, name: str) -> "Location":
        """The location named `name` in the same folder."""
        head = self.path.rsplit("/", 1)[0]
        name_head = self.name.rsplit("/", 1)[0]
        return Location(self.fs, f"{head}/{name}", f"{name_head}/{name}")

    @property
    def basename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def _info(self) -> Any:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.File

    def stat(self) -> tuple[int, int]:
        """(size in bytes, modification time in ns; 0 where the store keeps none)."""
        info = self._info()
        return int(info.size or 0), int(info.mtime_ns or 0)

    def files(self, pattern: str | None = None) -> list["Location"]:
        """Every file below this folder (or matching `pattern`, a regular expression on the relative path), sorted by path."""
        import pyarrow.fs as pafs

        if not self.is_dir():
            return []
        out = []
        for info in self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True)):
            rel = info.path[len(self.path) :].lstrip("/")
            if info.type == pafs.FileType.File and (pattern is None or re.fullmatch(pattern, rel)):
                out.append(self.child(rel))
        return sorted(out, key=lambda loc: loc.path)

    def open(self) -> Any:
        """A random-access input file (for pyarrow.parquet)."""
        return self.fs.open_input_file(self.path)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_bytes(self, data: bytes) -> None:
        """Write the file whole: on a local disk through a temporary and a rename, on a store in one request."""
        parent = self.path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        if self.local:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.basename}.", suffix=".tmp", dir=parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
            return
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def upload(self, local: Path) -> None:
        """Put a local file here (moved, on a local disk)."""
        if self.local:
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.move(local, tmp)  # a rename, or a copy from another disk ...
            os.replace(tmp, target)  # ... and the file appears whole
            return
        import pyarrow.fs as pafs

        self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(str(local), self.path, destination_filesystem=self.fs)

    @contextmanager
    def local_copy(self) -> Iterator[Path]:
        """This file as a local path: the file itself on a local disk, else a temporary download."""
        if self.local:
            yield Path(self.path)
            return
        folder = Path(tempfile.mkdtemp(prefix="curate-"))
        try:
            target = folder / self.basename
            target.write_bytes(self.read_bytes())
            yield target
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def move_to(self, other: "Location") -> None:
        other.fs.create_dir(other.path.rsplit("/", 1)[0], recursive=True)
        self.fs.move(self.path, other.path)

    def remove(self) -> None:
        """Delete this file or folder (nothing if absent)."""
        import pyarrow.fs as pafs

        info = self._info()
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path)

    def __str__(self) -> str:
        return self.name
