"""Selection: DuckDB --where, --top/--top-k (global and per prompt), weights; every drop counted."""

from __future__ import annotations

import polars as pl
import pytest

import curate
from curate.lineage import Step

PAIRS = pl.DataFrame(
    {
        "prompt_id": ["A", "A", "A", "B", "B", "C"],
        "prompt": ["p"] * 6,
        "chosen": list("abcdef"),
        "rejected": list("uvwxyz"),
        "score": [0.5, 0.9, None, 0.9, 0.1, 0.3],
        "reward_margin": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "weight": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    }
)


def _sel(**kw):
    step = Step("select")
    return curate.select(PAIRS.lazy(), step=step, **kw).collect(), step


def test_where_is_duckdb_sql_and_counts_drops():
    out, step = _sel(where="reward_margin >= 3 AND chosen <> 'e'")
    assert out["chosen"].to_list() == ["c", "d", "f"]
    assert step.dropped == {"rows where `reward_margin >= 3 AND chosen <> 'e'` is false or null": 3}


def test_top_fraction_keeps_input_order_and_breaks_ties_by_row():
    # non-null scores: b .9, d .9, a .5, f .3, e .1 -> 40% of 5 = 2 rows: b and d (tie, both kept)
    out, step = _sel(top=0.4, by="score")
    assert out["chosen"].to_list() == ["b", "d"]
    assert step.dropped == {"rows with null `score`": 1, "rows below the top 40% by `score`": 3}
    out, _ = _sel(top_k=1, by="score")
    assert out["chosen"].to_list() == ["b"]  # b and d tie at .9: the earlier row wins


def test_top_k_per_prompt():
    out, step = _sel(top_k=1, by="reward_margin", per_prompt=True)
    assert out["chosen"].to_list() == ["c", "e", "f"]
    assert step.dropped == {"rows below the top 1 by `reward_margin` per prompt": 3}


def test_weight_and_normalize_mean():
    out, _ = _sel(weight="reward_margin", normalize_weights="mean")
    assert out["weight"].to_list() == pytest.approx([x / 3.5 for x in [1, 2, 3, 4, 5, 6]])
    out, _ = _sel(where="prompt_id = 'A'", normalize_weights="mean")
    assert out["weight"].to_list() == pytest.approx([0.5, 1.0, 1.5])


def test_the_command_ranks_and_normalises_after_a_statistics_pass(tmp_path, capsys):
    """`curate select` finds the global cut and the mean weight first, then streams: the API's one-pass answer."""
    from curate.cli import invoke_command

    src, out = tmp_path / "pairs.parquet", tmp_path / "top.parquet"
    PAIRS.with_columns(bad=pl.Series([1.0, -20.0, 1.0, 1.0, 1.0, 1.0])).write_parquet(src)
    assert invoke_command(["select", str(src), "--top", "0.4", "--by", "score", "--normalize-weights", "mean", "-o", str(out)]) == 0
    got = pl.read_parquet(out)  # b and d (0.9, a tie kept): weights 2 and 4 over their mean, 3
    assert got["chosen"].to_list() == ["b", "d"] and got["weight"].to_list() == pytest.approx([2 / 3, 4 / 3])
    # a --weight column with a negative value is reported as such (its row named), not as the mean below 0 it makes
    assert invoke_command(["select", str(src), "--weight", "bad", "--normalize-weights", "mean", "-o", str(tmp_path / "w.parquet")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # one paragraph, however the console wrapped it
    assert "--weight column has null, non-finite or negative values; column `bad`; 1 row(s); first rows (0-based): 1." in err
    assert not (tmp_path / "w.parquet").exists()


def test_bad_options_and_bad_sql():
    with pytest.raises(curate.CurateError, match="need --by"):
        _sel(top=0.5)
    with pytest.raises(curate.CurateError, match="not both"):
        _sel(top=0.5, top_k=2, by="score")
    with pytest.raises(curate.SchemaError, match="`nope`"):
        _sel(top_k=1, by="nope")
    with pytest.raises(curate.CurateError, match="not a valid DuckDB predicate"):
        _sel(where="reward_margin >>> 1")
    with pytest.raises(curate.CurateError, match="not found") as misspelt:  # DuckDB's suggestions are the table's columns
        _sel(where="reward_mragin > 1")
    assert '"reward_margin"' in str(misspelt.value) and '"__' not in str(misspelt.value)
    with pytest.raises(curate.SchemaError, match=r"--weight column has null.*first rows \(0-based\): 2"):
        _sel(weight="score")


def test_a_selection_that_keeps_nothing_writes_an_empty_table_with_the_schema(tmp_path):
    from curate.io import scan
    from curate.steps import run_step

    src = tmp_path / "pairs.parquet"
    PAIRS.write_parquet(src)
    out = tmp_path / "none.parquet"
    step = run_step("select", {}, src, None, lambda f, s: curate.select(f, step=s, where="reward_margin > 100"), out, "parquet")
    assert step.rows_out == 0 and step.dropped == {"rows where `reward_margin > 100` is false or null": 6}
    frame, lineage = scan(out)
    assert frame.collect().height == 0 and frame.collect_schema().names() == PAIRS.columns
    assert lineage.steps[-1].rows_out == 0


# --- --where: the predicates Polars evaluates must mean what they mean in DuckDB ---------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_FLOATS = [-2.5, -1.0, 0.0, 0.5, 1.0, 3.0, float("nan"), float("inf"), float("-inf"), None]
_NUMBERS = st.sampled_from(["x", "y", "n", "1", "-2", "0.5", "1e1", "2.25"])


def _number(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return _NUMBERS
    inner = _number(depth - 1)
    return st.one_of(_NUMBERS, st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
                     inner.map(lambda a: f"-({a})"))  # fmt: skip


def _predicate(depth: int) -> st.SearchStrategy[str]:
    compare = st.sampled_from(["=", "<>", "<", ">", "<=", ">="])
    atom = st.one_of(
        st.tuples(_number(2), compare, _number(2)).map(" ".join),
        st.tuples(st.sampled_from(["m"]), compare, st.sampled_from(["'a'", "'B'", "''", "'it''s'"])).map(" ".join),
        st.sampled_from(["ok", "x IS NULL", "m IS NOT NULL", "n IS NULL", "ok = true"]),
    )
    if depth == 0:
        return atom
    inner = _predicate(depth - 1)
    return st.one_of(atom, inner.map(lambda p: f"NOT ({p})"),
                     st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(st.sampled_from(_FLOATS), st.sampled_from(_FLOATS), st.sampled_from([-3, 0, 1, 2, None]),
                            st.sampled_from([True, False, None]), st.sampled_from(["a", "b", "B", "", "it's", None])), min_size=1, max_size=30),
    predicate=_predicate(2),
)  # fmt: skip
def test_where_in_polars_agrees_with_duckdb(rows, predicate):
    """NaN, infinities, nulls (three-valued logic), mixed int/float arithmetic and string order: the same rows either way."""
    from curate.where import as_polars, duckdb_mask, parse_predicate

    frame = pl.DataFrame(rows, schema={"x": pl.Float64, "y": pl.Float64, "n": pl.Int64, "ok": pl.Boolean, "m": pl.String}, orient="row")
    tree = parse_predicate(predicate)
    native = as_polars(tree, frame.schema)
    if native is None:  # outside the shared subset: integer-only arithmetic, or a type mix DuckDB may cast its own way
        return
    want = frame.select(duckdb_mask(predicate, tree, frame.schema).alias("m"))["m"].to_list()
    assert frame.select(native.fill_null(False).alias("m"))["m"].to_list() == want, predicate


# --- plain predicates are parsed without DuckDB, into DuckDB's own tree ------------------------------------------------

_TREE_KEYS = {"class", "type", "column_names", "literal", "function_name", "is_operator", "distinct", "arguments", "expression", "left",
              "right", "children"}  # fmt: skip


def _duckdb_tree(predicate: str):
    """DuckDB's parse of the WHERE clause (the keys curate.where reads), or None when DuckDB refuses the text."""
    import json

    import duckdb

    quoted = predicate.replace("'", "''")
    tree = json.loads(duckdb.sql(f"SELECT json_serialize_sql('SELECT * FROM t WHERE ({quoted})')").fetchall()[0][0])
    if tree.get("error") or len(tree["statements"]) != 1:
        return None

    def keep(node):
        if isinstance(node, dict):
            return {k: v if k == "literal" else keep(v) for k, v in node.items() if k in _TREE_KEYS}
        return [keep(v) for v in node] if isinstance(node, list) else node

    return keep(tree["statements"][0]["node"]["where_clause"])


_PLAIN = ["chosen_reward - rejected_reward > 1", "weight >= 0.5 AND chosen_correct AND NOT rejected_correct", "chosen_model = 'm''s'",
          "prompt_id IS NOT NULL OR x ISNULL", "-a * b <= -1.5e3", "(a + b) * c <> .5", "a != 2 or b == 3 and c < 01", '"A b" > - 7',
          "NOT NOT a IS NULL IS NOT NULL", "a AND (b AND c) AND (d OR e OR (f OR g))", "a>-1", "a<-1", "a*-b>=1.", "x notnull"]
_NOT_PLAIN = ["a / 2 > 1", "a > 1 -- comment", "a > 1 /* c */", "abs(a) > 1", "a::INT > 1", "a BETWEEN 1 AND 2", "a IN (1, 2)", "a LIKE 'x%'",
              "a IS TRUE", "a = NULL", "a = TRUE", "a > +1", "a > -(1)", "a > - -1", "t.a > 1", "a = e'x'", "a = 'x' 'y'", "a$b > 1",
              "a = 1 = 1", "a!=-1", "a > 1_000", "a > 0x10", "(SELECT 1) > 0", "a > 1) OR (1 = 1", "a > 1; DROP TABLE t", "",
              "select > 1", "é > 1", "a > ²", "a > \u0661", "a ** 2 > 1", "a || b = 'x'", "a\u00a0> 1"]  # fmt: skip


def test_plain_predicates_parse_to_duckdbs_tree_without_duckdb():
    """The common predicates are read here, giving the very tree DuckDB gives; anything else is left to DuckDB."""
    from curate.predicate_parser import parse

    for predicate in _PLAIN:
        assert parse(predicate) is not None, predicate
        assert parse(predicate) == _duckdb_tree(predicate), predicate
    for predicate in _NOT_PLAIN:
        assert parse(predicate) is None, predicate
    assert parse("(" * 3000 + "a" + ")" * 3000) is None and parse("NOT " * 3000 + "a") is None  # too deep to read here


def test_the_parsers_keywords_are_duckdbs():
    """An unquoted word DuckDB does not read as a plain column name must be left to DuckDB: the list is DuckDB's own."""
    import duckdb

    from curate.predicate_parser import _KEYWORDS

    rows = duckdb.sql("SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <> 'unreserved'").fetchall()
    assert _KEYWORDS == {r[0] for r in rows}


_PIECES = st.sampled_from(["a", "B", '"x y"', '"a""b"', "reward", "select", "1", "01", "1.5", ".5", "1.", "1e3", "2E-1", "1_0", "'s'", "''",
                           "'it''s'", "TRUE", "NULL", "+", "-", "*", "/", "%", "<", ">", "=", "==", "!=", "<>", "<=", ">=", "^", "||", "AND",
                           "and", "OR", "NOT", "IS", "IS NOT", "ISNULL", "NOTNULL", "(", ")", ".", "::", "e'x'", "f(a)"])  # fmt: skip


def _plainish(depth: int) -> st.SearchStrategy[str]:
    """Mostly well-formed predicates over the plain subset, with a random spacing (none, space, newline) around each operator."""
    gap = st.sampled_from(["", " ", "  ", "\n", "\t"])
    operand = st.sampled_from(["a", "B", '"x y"', "1", "01", "2.5", ".5", "1e2", "'s'", "'it''s'", "-1", "- 2.5", "-a", "NULL", "TRUE"])
    if depth == 0:
        return operand
    inner = _plainish(depth - 1)
    binary = st.sampled_from(["+", "-", "*", "<", ">", "=", "==", "!=", "<>", "<=", ">=", "AND", "OR", "and"])
    return st.one_of(
        operand,
        st.tuples(inner, gap, binary, gap, inner).map("".join),
        st.tuples(st.sampled_from(["NOT ", "-", "- ", "("]), inner).map(lambda t: t[0] + t[1] + (")" if t[0] == "(" else "")),
        st.tuples(inner, st.sampled_from([" IS NULL", " IS NOT NULL", " ISNULL", " NOTNULL"])).map("".join),
    )


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(_plainish(3), st.lists(st.tuples(_PIECES, st.sampled_from(["", " ", "\n"])), min_size=1, max_size=8).map(
    lambda parts: "".join(p + g for p, g in parts))))  # fmt: skip
def test_a_predicate_read_here_is_read_as_duckdb_reads_it(text):
    """Whatever the spacing, precedence, quoting or number form: when the text is read here, DuckDB reads the same tree."""
    from curate.predicate_parser import parse

    mine = parse(text)
    if mine is not None:
        assert mine == _duckdb_tree(text), text
