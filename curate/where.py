"""`--where`: one DuckDB SQL predicate, checked to be a single expression, evaluated batch by batch in a sandbox.

The predicate is parsed by DuckDB (`json_serialize_sql`) before anything runs: it must be one
expression over the table's columns — no `;`, no second statement, no subquery, no table function —
so a shared command line or a recipe cannot read or write files through it. It is then evaluated by
DuckDB on each batch Polars streams (zero-copy Arrow), in connections whose external access is
disabled (`SET enable_external_access = false`): the output streams, and the semantics are
DuckDB's. `allow_file_access=True` lifts both limits (subqueries may read files); the predicate
then runs once over the whole table, as a query.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import polars as pl

from curate.errors import CurateError

_local = threading.local()


def _connection(sandboxed: bool = True) -> Any:
    """One DuckDB connection per thread (Polars calls batch functions from its worker threads)."""
    import duckdb

    key = "sandboxed" if sandboxed else "open"
    con = getattr(_local, key, None)
    if con is None:
        con = duckdb.connect()
        if sandboxed:
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        setattr(_local, key, con)
    return con


def parse_predicate(predicate: str, *, allow_file_access: bool = False) -> dict[str, Any]:
    """The parsed WHERE clause of `SELECT * FROM t WHERE (predicate)`; refuses anything but one plain expression."""
    text = predicate.strip()
    if not text:
        raise CurateError("--where is empty; give a SQL predicate such as \"reward_margin > 1\".")
    con = _connection()
    quoted = text.replace("'", "''")
    tree = json.loads(con.sql(f"SELECT json_serialize_sql('SELECT * FROM t WHERE ({quoted})')").fetchall()[0][0])
    if tree.get("error"):
        raise CurateError(f"--where {predicate!r} is not one SQL expression: {tree.get('error_message', 'it does not parse')}.")
    statements = tree.get("statements", [])
    if len(statements) != 1:
        raise CurateError(f"--where {predicate!r} holds {len(statements)} statements; give one predicate (no `;`).")
    node = statements[0]["node"]
    extra = node.get("modifiers") or node.get("group_expressions") or node.get("having") or node.get("qualify") or node.get("cte_map", {}).get("map")
    if node.get("from_table", {}).get("type") != "BASE_TABLE" or node.get("select_list", [{}])[0].get("class") != "STAR" or extra:
        raise CurateError(f"--where {predicate!r} is not a single predicate (it closes the parenthesis or adds clauses).")
    if not allow_file_access:
        found = sorted(_kinds(node.get("where_clause")) & {"SUBQUERY", "TABLE_FUNCTION"})
        if found:
            raise CurateError(
                f"--where {predicate!r} contains a {found[0].lower().replace('_', ' ')}: a --where is one expression over the "
                "table's columns. (It runs SQL on this machine; pass --allow-file-access to let it read other tables or files.)"
            )
    return node["where_clause"]


def _kinds(node: Any) -> set[str]:
    """Every `class`/`type` value in a parsed expression tree."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key in ("class", "type"):
            if isinstance(node.get(key), str):
                out.add(node[key])
        for value in node.values():
            out |= _kinds(value)
    elif isinstance(node, list):
        for value in node:
            out |= _kinds(value)
    return out


def _columns(node: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        if node.get("class") == "COLUMN_REF":
            out.add(node["column_names"][-1])
        for value in node.values():
            out |= _columns(value)
    elif isinstance(node, list):
        for value in node:
            out |= _columns(value)
    return out


def predicate_mask(predicate: str, schema: pl.Schema, *, allow_file_access: bool = False) -> pl.Expr:
    """A Boolean expression: the DuckDB predicate evaluated per batch (null counts as false)."""
    tree = parse_predicate(predicate, allow_file_access=allow_file_access)
    used = [c for c in schema.names() if c in _columns(tree) or c.lower() in {n.lower() for n in _columns(tree)}]
    _check_binds(predicate, schema, used)
    sql = f"SELECT ({predicate}) AS m FROM batch"

    def evaluate(batch: pl.Series) -> pl.Series:
        frame = batch.struct.unnest() if used else pl.DataFrame({"__n": pl.Series([None] * len(batch))})
        con = _connection(sandboxed=not allow_file_access)
        con.register("batch", frame.to_arrow())
        try:
            mask = pl.from_arrow(con.sql(sql).to_arrow_table()).to_series()
        finally:
            con.unregister("batch")
        return mask.cast(pl.Boolean).fill_null(False)

    columns = [pl.col(c) for c in used] or [pl.lit(0).alias("__n")]
    return pl.struct(columns).map_batches(evaluate, return_dtype=pl.Boolean, is_elementwise=True)


def _check_binds(predicate: str, schema: pl.Schema, used: list[str]) -> None:
    """Bind the predicate against an empty table with the columns it uses: unknown columns and type errors show now."""
    import duckdb

    empty = pl.DataFrame(schema={c: schema[c] for c in used}) if used else pl.DataFrame({"__n": pl.Series([], dtype=pl.Int64)})
    con = _connection()
    con.register("batch", empty.to_arrow())
    try:
        con.sql(f"SELECT ({predicate}) AS m FROM batch").to_arrow_table()
    except duckdb.Error as exc:
        raise CurateError(f"--where {predicate!r} is not a valid DuckDB predicate over this table: {exc}") from exc
    finally:
        con.unregister("batch")
