"""Error types shared by `scorers` and `curate` (re-exported as `curate.CurateError` and `curate.SchemaError`)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class CurateError(Exception):
    """A user-facing error: bad input, bad options, or a step that cannot run."""


class SchemaError(CurateError):
    """A table does not match its schema; names the file, the column, the first offending rows and the count."""

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        column: str | None = None,
        rows: Sequence[int] = (),
        count: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.source = source
        self.column = column
        self.rows = list(rows)
        self.count = count
        self.hint = hint
        super().__init__(self._message())

    def with_source(self, source: str) -> "SchemaError":
        """The same error naming `source` (the file) when it named none."""
        if self.source is None:
            self.source = source
            self.args = (self._message(),)
        return self

    def _message(self) -> str:
        where = f"{self.source}: " if self.source else ""
        parts = [f"{where}{self.problem}"]
        if self.column is not None:
            parts.append(f"column `{self.column}`")
        if self.count is not None:
            parts.append(f"{self.count} row(s)")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows)
            more = ", ..." if self.count is not None and self.count > len(self.rows) else ""
            parts.append(f"first rows (0-based): {shown}{more}")
        msg = "; ".join(parts) + "."
        if self.hint:
            msg += f" {self.hint}"
        return msg


# --- how to rename columns: the hint an error gives when a column curate needs is there under another name ---------

_NOUNS = {"correct": "correctness labels"}


def ident(name: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def sql_command(sql: str, source: str | None, view: str = "samples") -> str:
    """`curate sql` running `sql` over the file `source` (else IN) registered as `view`, as a shell line."""
    return f"curate sql {shlex.quote(sql)} --{view} {shlex.quote(source or 'IN')} -o {view}.parquet"


def rename_hint(renames: dict[str, str], source: str | None = None, *, python: bool | None = False, view: str = "samples") -> str:
    """How to give columns the names curate reads (`{"score": "reward"}`): the `curate sql` command that renames them in
    the `view` table, or in Python (`python`; None: both) the Polars `rename`."""
    said = " and ".join(f"`{old}` holds the {_NOUNS.get(new, new.replace('_', ' ') + 's')}" for old, new in renames.items())
    in_python = f"frame.rename({renames!r})"
    if python:
        return f"If {said}, rename: {in_python}."
    command = sql_command(f"select * rename ({', '.join(f'{ident(old)} as {new}' for old, new in renames.items())}) from {view}", source, view)
    return f"If {said}, rename: {command}" + (f" (in Python, {in_python})." if python is None else "")
