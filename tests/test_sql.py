"""SQL over files and frames with DuckDB, and the scorer macros."""

from __future__ import annotations

import polars as pl
import pytest

import curate
from conftest import GSM8K


def test_per_model_accuracy_on_gsm8k():
    df = curate.sql("select model, avg(correct::int) as acc, count(*) as n from samples group by 1 order by 1", samples=GSM8K)
    assert df.height == 6 and df["n"].to_list() == [1319] * 6
    # reference: plain Python over the rows
    rows = pl.read_parquet(GSM8K).select("model", "correct").rows()
    for model, acc, _ in df.rows():
        hits = [c for m, c in rows if m == model]
        assert acc == pytest.approx(sum(hits) / len(hits))


def test_frames_are_registered_zero_copy():
    lf = pl.LazyFrame({"prompt_id": ["a", "a", "b"], "chosen_reward": [3.0, 2.0, 1.0], "rejected_reward": [1.0, 1.0, 1.0]})
    out = curate.sql("select prompt_id, reward_margin(chosen_reward, rejected_reward) as m from pairs order by m desc", pairs=lf)
    assert out.rows() == [("a", 2.0), ("a", 1.0), ("b", 0.0)]


def test_difficulty_weight_macro_by_hand():
    out = curate.sql(
        "select difficulty_weight(4, 1, 2) as a, difficulty_weight(2, 0, 1) as b, "
        "difficulty_weight(4, 1, 2, alpha := 2.0) as c, difficulty_weight(0, 0, 0) as d"
    )
    # a: max(1, 1 + 2/1 + 1/4) = 3.25 ; b: 1 + 1/2 = 1.5 ; c: 1 + 2*2/1 + 1/4 = 5.25 ; d: no graded responses
    assert out.row(0) == (3.25, 1.5, 5.25, None)


def test_sql_error_is_a_curate_error():
    with pytest.raises(curate.CurateError, match="SQL error"):
        curate.sql("select nope from samples", samples=GSM8K)


def test_result_types_match_duckdbs_own_polars_conversion():
    # the reference is DuckDB's `.pl()` (through pyarrow); curate reads the Arrow C stream instead
    import duckdb

    query = (
        "select 1.5::decimal(10, 2) as d, 12345678901234567890::hugeint as h, [1, 2] as l, {'a': 1} as s, map([1], [2]) as m, "
        "'x'::blob as b, 'a'::enum('a', 'b') as e, null as n, 1::utinyint as u, '2020-01-01'::date as dt, "
        "'2020-01-01 10:00'::timestamp as ts, [1, 2]::int[2] as arr, 'é'::varchar as v, 2.5::float as f, {'INTERVAL': 1} as named"
    )
    expected = duckdb.sql(query).pl()
    got = curate.sql(query)
    assert got.schema == expected.schema
    assert got.rows() == expected.rows()


@pytest.mark.parametrize(
    ("column", "hint"), [("interval 1 day", "epoch"), ("union_value(k := 1)", "VARCHAR"), ("{'a': [interval 1 day]}", "epoch"),
                         ("map([1], [union_value(k := 1)])", "VARCHAR")],
)  # fmt: skip
def test_a_type_polars_cannot_hold_is_a_clear_error(column, hint):
    with pytest.raises(curate.CurateError, match=f"column 'x' has DuckDB type .*cannot hold.*{hint}"):
        curate.sql(f"select {column} as x")
