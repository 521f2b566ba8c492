"""Readers and atomic writers: parquet, jsonl, csv, HF folders; lineage survives a round trip."""

from __future__ import annotations

import json

import polars as pl
import pytest

import curate
from curate.io import atomic_path, scan, write
from curate.lineage import Lineage, Step

ROWS = {"prompt_id": ["a", "b"], "prompt": ["p1", "p2"], "response": ["r1", "r2"], "model": ["m", "m"], "reward": [1.5, -2.0]}


@pytest.mark.parametrize("name,fmt", [("t.parquet", None), ("t.jsonl", None), ("t_hf", "hf"), ("t_arrow", "arrow")])
def test_round_trip(tmp_path, name, fmt):
    out = tmp_path / name
    n = write(pl.DataFrame(ROWS).lazy(), out, fmt, lineage=Lineage(sources=["src.jsonl"], steps=[Step("ingest", rows_out=2)]))
    assert n == 2
    back = curate.read(out).collect()
    assert back.to_dict(as_series=False) == ROWS


def test_csv_is_read(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("prompt,response,reward\np,\"a, b\",1\np,c,2\n")
    df = curate.read(path).collect()
    assert df["response"].to_list() == ["a, b", "c"] and df["reward"].to_list() == [1.0, 2.0]


def test_lineage_kept_in_parquet_and_hf(tmp_path):
    lineage = Lineage(sources=["orig.parquet"], steps=[Step("pairs", params={"strategy": "all"}, rows_in=9, rows_out=3, counts={"tie": 1})])
    write(pl.DataFrame(ROWS), tmp_path / "x.parquet", lineage=lineage)
    write(pl.DataFrame(ROWS), tmp_path / "x_hf", "hf", lineage=lineage)
    write(pl.DataFrame(ROWS), tmp_path / "x_arrow", "arrow", lineage=lineage)
    for path in (tmp_path / "x.parquet", tmp_path / "x_hf", tmp_path / "x_arrow"):
        got = scan(path)[1]
        assert got.sources == ["orig.parquet"]
        assert [(s.name, s.params, s.rows_in, s.rows_out, s.dropped) for s in got.steps] == [("pairs", {"strategy": "all"}, 9, 3, {"tie": 1})]


@pytest.mark.parametrize("fmt", ["hf", "arrow"])
def test_folder_outputs_load_in_datasets(tmp_path, fmt):
    datasets = pytest.importorskip("datasets")
    data = {"prompt": ["p"], "chosen": ["c"], "rejected": ["r"], "weight": [2.0], "ids": [[1, 2, 3]]}
    write(pl.DataFrame(data), tmp_path / "out", fmt, lineage=Lineage())
    if fmt == "arrow":
        ds = datasets.load_from_disk(str(tmp_path / "out"))
    else:
        ds = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert ds.column_names == ["prompt", "chosen", "rejected", "weight", "ids"]
    assert ds[0] == {"prompt": "p", "chosen": "c", "rejected": "r", "weight": 2.0, "ids": [1, 2, 3]}
    assert str(ds.features["prompt"].dtype) == "string"


def test_failed_write_keeps_existing_output(tmp_path):
    out = tmp_path / "keep.parquet"
    pl.DataFrame(ROWS).write_parquet(out)
    before = out.read_bytes()
    bad = pl.LazyFrame({"x": ["1", "oops"]}).select(pl.col("x").cast(pl.Int64, strict=True))
    with pytest.raises(pl.exceptions.PolarsError):
        write(bad, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.parquet"]  # no temp file left behind


def test_atomic_folder_replaces_whole(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target, folder=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(curate.CurateError, match="no such file"):
        curate.read(tmp_path / "nope.parquet")
    odd = tmp_path / "x.xlsx"
    odd.write_text("x")
    with pytest.raises(curate.CurateError, match="unsupported file type"):
        curate.read(odd)


def test_bad_jsonl_line_names_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n{not json\n")
    with pytest.raises(curate.SchemaError, match="bad.jsonl"):
        curate.read(path)


def test_parquet_row_count_from_the_footer(tmp_path):
    """`parquet_rows` reads FileMetaData.num_rows itself: files by pyarrow (several row groups, key-value metadata) and Polars."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.footer import num_rows as parquet_rows

    table = pa.table({"a": list(range(2500)), "s": [f"text {i}" * (i % 7) for i in range(2500)], "l": [[i, i + 1] for i in range(2500)]})
    pq.write_table(table.replace_schema_metadata({"k": "v" * 300}), tmp_path / "pa.parquet", row_group_size=1000)
    pl.DataFrame({"x": [1.5, None, 3.0]}).write_parquet(tmp_path / "pl.parquet")
    pl.DataFrame({"x": []}, schema={"x": pl.String}).write_parquet(tmp_path / "empty.parquet")
    assert [parquet_rows(tmp_path / f) for f in ("pa.parquet", "pl.parquet", "empty.parquet")] == [2500, 3, 0]


@pytest.mark.parametrize("reserve", [16_384, 64])
def test_lineage_filled_into_the_footer_after_the_counts(tmp_path, monkeypatch, reserve):
    """The footer keeps room for the lineage, filled once the counts are known; a longer lineage rewrites the footer."""
    import pyarrow.parquet as pq

    import curate.sinks

    monkeypatch.setattr(curate.sinks, "LINEAGE_RESERVE", reserve)
    lineage = Lineage(sources=["src.jsonl"], steps=[Step("ingest", params={"note": "x" * 200}, rows_out=2)])
    out = tmp_path / "t.parquet"
    assert write(pl.DataFrame(ROWS).lazy(), out, lineage=lineage) == 2
    meta = pq.read_metadata(out).metadata[b"curate"]
    assert json.loads(meta) == json.loads(lineage.to_json())
    assert len(meta) == (reserve if reserve > len(lineage.to_json()) else len(lineage.to_json()))  # padded, or rewritten exactly
    assert pl.read_parquet(out).to_dict(as_series=False) == ROWS
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temporary left


def test_jsonl_rows_are_counted_from_the_lines(tmp_path):
    texts = ["line\nbreak", "quote \" and \\ backslash", "", "unicode \u2028 separator"]
    out = tmp_path / "t.jsonl"
    assert write(pl.LazyFrame({"prompt": texts}), out) == 4
    assert [json.loads(line)["prompt"] for line in out.read_bytes().split(b"\n")[:-1]] == texts  # one row per "\n", none inside
    assert write(pl.LazyFrame({"prompt": []}, schema={"prompt": pl.String}), tmp_path / "empty.jsonl") == 0


def test_a_json_file_holding_an_array_of_rows_is_read(tmp_path):
    # Alpaca-style `train.json`: one (pretty-printed) JSON array of objects; it failed as "NDJSON line expected"
    rows = [{"prompt": "p", "response": "a", "reward": 1}, {"prompt": [{"role": "user", "content": "q"}], "response": "b", "reward": 2.5}]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows[:1] + [{**rows[0], "response": "c", "reward": 2.5}], indent=2))
    df = curate.read(path).collect()
    assert df.select("prompt", "response", "reward").rows() == [("p", "a", 1.0), ("p", "c", 2.5)]
    datasets = pytest.importorskip("datasets")
    assert datasets.load_dataset("json", data_files=str(path), split="train").to_list() == [
        {k: r[k] for k in ("prompt", "response", "reward")} for r in df.to_dicts()]  # fmt: skip
    path.write_text('[{"prompt": "p", "response": "a"},\n {"prompt": "q" "response": "b"}]')  # column 17: the quote where a comma belongs
    with pytest.raises(curate.SchemaError, match=r"train\.json: line 2, column 17: not valid JSON \(Expecting ',' delimiter\)"):
        curate.read(path)
    path.write_text(json.dumps(rows))  # a text prompt and a conversation in one column
    with pytest.raises(curate.SchemaError, match="the rows do not hold one type per column"):
        curate.read(path)
