"""SQL over curate tables with DuckDB: views `samples`, `pairs`, `triplets`, `ranked` plus scorer macros."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Union

import polars as pl

from curate.errors import CurateError
from curate.io import resolve, scan
from curate.lineage import Lineage

VIEWS = ("samples", "pairs", "triplets", "ranked", "diagnostics")
if TYPE_CHECKING:
    import pyarrow as pa

TableLike = Union[str, os.PathLike, pl.LazyFrame, pl.DataFrame, "pa.Table"]


def connect(**tables: TableLike | None) -> tuple[Any, Lineage]:
    """One DuckDB connection with each given table registered as a view (zero-copy from Arrow/Polars).

    Files are scanned, not validated, so SQL can also repair a table that fails validation.
    Returns the connection and the merged lineage of the files.
    """
    import duckdb

    from scorers.base import sql_macros

    con = duckdb.connect()
    lineage = Lineage()
    for name, table in tables.items():
        if table is None:
            continue
        if not name.isidentifier():
            raise CurateError(f"table name {name!r} is not a valid SQL identifier.")
        if isinstance(table, (str, os.PathLike)):
            frame, file_lineage = scan(table)
            lineage = lineage.merged(file_lineage)
            files, arrow_dir, _ = resolve(table)
            if arrow_dir is None and files and all(f.suffix.lower() == ".parquet" for f in files):
                # DuckDB reads Parquet itself: projection and filter pushdown, streaming, no copy through Polars
                paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
                con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{paths}], union_by_name = true)')
                continue
            table = frame
        con.register(name, table)
    for macro in sql_macros():
        con.execute(macro)
    return con, lineage


def sql(query: str, **tables: TableLike | None) -> pl.DataFrame:
    """Run `query` in DuckDB over the given tables (e.g. `samples=`, `pairs=`) and return a Polars DataFrame."""
    return run(query, **tables)[0]


def _lacking_in_polars(kind: Any) -> str | None:
    """The DuckDB type in `kind` (itself, or nested in a struct, list, array or map) that Polars has no type for."""
    if kind.id in ("interval", "union"):
        return kind.id.upper()
    if kind.id in ("struct", "list", "array", "map"):
        for _, child in kind.children:
            found = _lacking_in_polars(child) if hasattr(child, "id") else None  # an array's size is a number
            if found:
                return found
    return None


def to_polars(result: Any) -> pl.DataFrame:
    """A DuckDB result as a Polars frame through the Arrow C stream interface (DuckDB's `.pl()` imports pyarrow, ~0.1 s).

    Polars has no type for DuckDB's INTERVAL and UNION (its Arrow import panics on them): such a
    column is a clear error that says how to cast it.
    """
    for name, kind in zip(result.columns, result.types):
        found = _lacking_in_polars(kind)
        if found:
            how = "epoch(col) gives an INTERVAL in seconds" if found == "INTERVAL" else "CAST(col AS VARCHAR) gives its text"
            raise CurateError(f"column {name!r} has DuckDB type {kind}, which Polars cannot hold; cast it in the query ({how}).")
    return pl.DataFrame(result)


def run(query: str, **tables: TableLike | None) -> tuple[pl.DataFrame, Lineage]:
    """Like `sql`, also returning the lineage of the input files."""
    import duckdb

    con, lineage = connect(**tables)
    try:
        result = con.sql(query)
        if result is None:
            raise CurateError("the SQL statement returned no rows (use a SELECT query).")
        return to_polars(result), lineage
    except duckdb.Error as exc:
        names = ", ".join(k for k, v in tables.items() if v is not None) or "(none)"
        raise CurateError(f"SQL error: {exc} (registered views: {names}).") from exc
    finally:
        con.close()
