"""`--where`: one DuckDB SQL predicate, checked to be a single expression, evaluated batch by batch in a sandbox.

A plain predicate (columns, numbers, strings, `+ - *`, comparisons, AND/OR/NOT, IS [NOT] NULL) is
read by `curate.predicate_parser` into the tree DuckDB would give, and becomes a Polars expression
without importing DuckDB. Any other is parsed by DuckDB (`json_serialize_sql`) before anything runs: it must be one
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
    """A Boolean expression: the predicate (null counts as false), as a Polars expression when it is one whose
    meaning is the same in both engines (`as_polars`), else DuckDB's evaluation per batch."""
    from curate.predicate_parser import parse

    plain = parse(predicate)  # a plain predicate needs no DuckDB to parse (one expression, no subquery: nothing to refuse)
    native = as_polars(plain, schema) if plain is not None else None
    if native is not None:
        return native.fill_null(False)
    tree = parse_predicate(predicate, allow_file_access=allow_file_access)
    native = as_polars(tree, schema)
    if native is not None:
        return native.fill_null(False)
    return duckdb_mask(predicate, tree, schema, allow_file_access=allow_file_access)


def duckdb_mask(predicate: str, tree: dict[str, Any], schema: pl.Schema, *, allow_file_access: bool = False) -> pl.Expr:
    """The predicate evaluated by DuckDB on each batch Polars streams (zero-copy Arrow; null counts as false)."""
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

    try:
        _bind(predicate, {c: schema[c] for c in used})
    except duckdb.Error as exc:
        problem = exc
        try:  # again over every column, so that DuckDB's "Candidate bindings" are the table's own columns
            _bind(predicate, {c: t for c, t in schema.items() if not c.startswith("__")})  # not curate's internal columns
        except duckdb.Error as whole:
            problem = whole
        except Exception:  # noqa: BLE001 - a column DuckDB cannot take: the first message stands
            pass
        raise CurateError(f"--where {predicate!r} is not a valid DuckDB predicate over this table: {problem}") from exc


def _bind(predicate: str, columns: dict[str, pl.DataType]) -> None:
    """Plan the predicate over an empty table of `columns` (DuckDB raises what it cannot bind)."""
    empty = pl.DataFrame(schema=columns) if columns else pl.DataFrame({"__n": pl.Series([], dtype=pl.Int64)})
    con = _connection()
    con.register("batch", empty.to_arrow())
    try:
        con.sql(f"SELECT ({predicate}) AS m FROM batch").to_arrow_table()
    finally:
        con.unregister("batch")


# --- the predicates Polars evaluates with DuckDB's meaning -------------------------------------------------------------

_COMPARE = {
    "COMPARE_EQUAL": lambda a, b: a == b, "COMPARE_NOTEQUAL": lambda a, b: a != b,
    "COMPARE_LESSTHAN": lambda a, b: a < b, "COMPARE_GREATERTHAN": lambda a, b: a > b,
    "COMPARE_LESSTHANOREQUALTO": lambda a, b: a <= b, "COMPARE_GREATERTHANOREQUALTO": lambda a, b: a >= b,
}  # fmt: skip
_ARITHMETIC = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)


def as_polars(tree: dict[str, Any], schema: pl.Schema) -> pl.Expr | None:
    """The parsed predicate as a Polars expression, or None when it steps outside what both engines mean alike.

    Inside: columns (Float64, integers, Boolean, String), number and string literals, comparisons,
    `+ - *` on Float64 (integer arithmetic overflows differently: DuckDB raises, Polars wraps), unary
    minus, AND/OR/NOT (both use three-valued logic), IS [NOT] NULL. Both order NaN above every number
    and equal to itself. Division (DuckDB gives NULL for x/0, Polars inf), functions, casts and the rest
    go to DuckDB. `tests/test_select.py` checks the two agree on random tables and predicates.
    """
    typed = _typed(tree, schema)
    return typed[0] if typed is not None and typed[1] == "bool" else None


def _column(name: str, schema: pl.Schema) -> str | None:
    if name in schema:
        return name
    matches = [c for c in schema.names() if c.lower() == name.lower()]  # unquoted SQL names ignore case
    return matches[0] if len(matches) == 1 else None


def _typed(node: dict[str, Any], schema: pl.Schema) -> tuple[pl.Expr, str] | None:
    """(expression, kind) with kind one of float, int, bool, str, null; None outside the shared subset."""
    cls, kind = node.get("class"), node.get("type")
    if cls == "COLUMN_REF" and len(node["column_names"]) == 1:
        name = _column(node["column_names"][0], schema)
        dtype = schema.get(name) if name else None
        found = {pl.Float64: "float", pl.Boolean: "bool", pl.String: "str"}.get(dtype) or ("int" if dtype in _INTEGERS else None)
        return (pl.col(name), found) if found else None
    if cls == "CONSTANT":
        literal = node.get("literal", {})
        text, what = literal.get("text"), literal.get("kind")
        if what == "INTEGER" and text is not None and abs(int(text)) < 2**53:
            return pl.lit(int(text), dtype=pl.Int64), "int"
        if what == "NUMERIC" and text is not None:
            return pl.lit(float(text), dtype=pl.Float64), "float"
        if what == "STRING" and text is not None:
            return pl.lit(text, dtype=pl.String), "str"
        return None
    if cls == "COMPARISON" and kind in _COMPARE:
        left, right = _typed(node["left"], schema), _typed(node["right"], schema)
        if left is None or right is None:
            return None
        numbers = {"float", "int"}
        if not ((left[1] in numbers and right[1] in numbers) or left[1] == right[1] == "str" or left[1] == right[1] == "bool"):
            return None
        return _COMPARE[kind](left[0], right[0]), "bool"
    if cls == "FUNCTION" and node.get("is_operator") and node.get("function_name") in _ARITHMETIC and not node.get("distinct"):
        args = [_typed(a["expression"], schema) for a in node.get("arguments", [])]
        if any(a is None for a in args) or not args or any(a[1] not in ("float", "int") for a in args):
            return None
        if len(args) == 1 and node["function_name"] == "-" and args[0][1] == "float":
            return -args[0][0], "float"
        columns = [a for a in args if a[1] == "float"]
        if len(args) != 2 or not columns:  # an arithmetic between integers only stays with DuckDB
            return None
        return _ARITHMETIC[node["function_name"]](args[0][0].cast(pl.Float64), args[1][0].cast(pl.Float64)), "float"
    if cls == "CONJUNCTION" and kind in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
        parts = [_typed(c, schema) for c in node.get("children", [])]
        if any(p is None or p[1] != "bool" for p in parts) or len(parts) < 2:
            return None
        out = parts[0][0]
        for p in parts[1:]:
            out = (out & p[0]) if kind == "CONJUNCTION_AND" else (out | p[0])
        return out, "bool"
    if cls == "OPERATOR" and kind in ("OPERATOR_NOT", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL") and len(node.get("children", [])) == 1:
        child = _typed(node["children"][0], schema)
        if child is None:
            return None
        if kind == "OPERATOR_NOT":
            return (~child[0], "bool") if child[1] == "bool" else None
        return (child[0].is_null() if kind == "OPERATOR_IS_NULL" else child[0].is_not_null()), "bool"
    return None

