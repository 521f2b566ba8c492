"""Validation of the four table kinds: required columns, types, bad values, derived ids, duplicates."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from curate.lineage import Step
from conftest import write_parquet


def test_derived_prompt_id_is_sha1_prefix(tmp_path):
    path = write_parquet(tmp_path, "s.parquet", {"prompt": ["hello", "hello", "wörld"], "response": ["a", "b", "c"]})
    df = curate.read(path).collect()
    assert df["prompt_id"].to_list() == [
        hashlib.sha1(b"hello").hexdigest()[:16],
        hashlib.sha1(b"hello").hexdigest()[:16],
        hashlib.sha1("wörld".encode()).hexdigest()[:16],
    ]
    assert df.columns[0] == "prompt_id"
    assert df["model"].to_list() == ["policy"] * 3


def test_lossless_casts(tmp_path):
    path = write_parquet(
        tmp_path, "s.parquet", {"prompt": ["p"], "response": ["r"], "reward": [3], "correct": [1], "n_tokens": pl.Series([5], dtype=pl.Int32)}
    )
    df = curate.read(path).collect()
    assert df.schema["reward"] == pl.Float64 and df["reward"].item() == 3.0
    assert df.schema["correct"] == pl.Boolean and df["correct"].item() is True
    assert df.schema["n_tokens"] == pl.Int64


def test_type_that_cannot_be_cast(tmp_path):
    path = write_parquet(tmp_path, "s.parquet", {"prompt": ["p"], "response": ["r"], "reward": [[0.5]]})  # text: see below
    with pytest.raises(curate.SchemaError, match=r"s\.parquet.*type List\(Float64\), expected Float64.*`reward`"):
        curate.read(path)


def test_missing_required_column_names_file_and_column(tmp_path):
    path = write_parquet(tmp_path, "bad.parquet", {"prompt": ["p"], "answer": ["r"]})
    with pytest.raises(curate.SchemaError) as err:
        curate.read(path)
    msg = str(err.value)
    assert str(path) in msg and "response" in msg and "has columns: prompt, answer" in msg


def test_nan_reward_names_rows_and_count(tmp_path):
    path = write_parquet(
        tmp_path, "nan.parquet", {"prompt": ["p"] * 4, "response": list("abcd"), "reward": [1.0, float("nan"), None, float("inf")]}
    )
    with pytest.raises(curate.SchemaError) as err:
        curate.read(path)
    e = err.value
    # row 2 is null (allowed: ungraded); rows 1 (NaN) and 3 (inf) are not finite
    assert (e.column, e.rows, e.count) == ("reward", [1, 3], 2)
    assert "nan.parquet" in str(e)


def test_blank_response(tmp_path):
    path = write_parquet(tmp_path, "e.parquet", {"prompt": ["p"] * 3, "response": ["ok", "", "  \n"]})
    with pytest.raises(curate.SchemaError) as err:
        curate.read(path)
    assert (err.value.column, err.value.rows, err.value.count) == ("response", [1, 2], 2)


def test_drop_invalid_counts_each_reason(tmp_path):
    path = write_parquet(
        tmp_path, "e.parquet", {"prompt": ["p", "p", "", "p"], "response": ["ok", "", "x", "y"], "reward": [1.0, 2.0, 3.0, float("nan")]}
    )
    step = Step("read")
    df = curate.load(path, drop_invalid=True, step=step).frame.collect()
    assert df["response"].to_list() == ["ok"]
    assert step.dropped == {
        "invalid `prompt`: null or empty (blank) string": 1,
        "invalid `response`: null or empty (blank) string": 1,
        "invalid `reward`: NaN or infinite value": 1,
    }


def test_zero_rows(tmp_path):
    path = tmp_path / "empty.parquet"
    pl.DataFrame(schema={"prompt": pl.String, "response": pl.String}).write_parquet(path)
    with pytest.raises(curate.SchemaError, match="empty.parquet.*0 rows"):
        curate.read(path)


def test_empty_jsonl(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(curate.SchemaError, match="empty.jsonl.*0 rows"):
        curate.read(path)


def test_truncated_parquet(tmp_path):
    good = write_parquet(tmp_path, "good.parquet", {"prompt": ["p"] * 100, "response": [f"r{i}" for i in range(100)]})
    bad = tmp_path / "truncated.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(curate.SchemaError, match="truncated.parquet.*truncated, corrupt"):
        curate.read(bad)


def test_duplicates_reported_then_dropped(tmp_path):
    data = {"prompt_id": ["A", "A", "A"], "prompt": ["p"] * 3, "response": ["x", "x", "y"], "model": ["m", "m", "m"]}
    path = write_parquet(tmp_path, "d.parquet", data)
    step = Step("read")
    assert curate.load(path, step=step).frame.collect().height == 3
    assert step.warnings and "1 duplicate" in step.warnings[0]
    step = Step("read")
    assert curate.load(path, dedup=True, step=step).frame.collect()["response"].to_list() == ["x", "y"]
    assert step.dropped == {"duplicate (prompt_id, response, model)": 1}


def test_duplicates_counted_exactly_past_the_length_sketch(tmp_path):
    # "ab"/"cd" share (prompt_id, model, length) without being duplicates; "x" three times is two duplicates; the
    # copy of the NaN-reward row is no duplicate once that row is dropped (the count is over the rows kept)
    data = {"prompt_id": ["A", "A", "A", "A", "A", "B", "B"], "prompt": ["p"] * 5 + ["q"] * 2, "response": ["ab", "cd", "x", "x", "x", "z", "z"],
            "model": ["m"] * 7, "reward": [1.0, 2.0, 3.0, 4.0, 5.0, float("nan"), 1.0]}  # fmt: skip
    path = write_parquet(tmp_path, "d.parquet", data)
    step = Step("read")
    kept = curate.load(path, dedup=True, drop_invalid=True, step=step).frame.collect()
    assert step.dropped == {"invalid `reward`: NaN or infinite value": 1, "duplicate (prompt_id, response, model)": 2}
    assert kept["response"].to_list() == ["ab", "cd", "x", "z"]


def test_prompt_id_collision_dropped_rows_counted_exactly(tmp_path):
    # id A: rows 0 and 2 hold prompt "p", row 1 and row 3 hold "other": rows 1 and 3 collide; row 3 has a blank response
    # first, so it counts there, once
    data = {"prompt_id": ["A", "A", "A", "A"], "prompt": ["p", "other", "p", "other"], "response": ["a", "b", "c", " "]}
    path = write_parquet(tmp_path, "c.parquet", data)
    step = Step("read")
    kept = curate.load(path, drop_invalid=True, step=step).frame.collect()
    assert kept["response"].to_list() == ["a", "c"]
    assert step.dropped == {"invalid `response`: null or empty (blank) string": 1, "invalid `prompt_id`: one prompt_id, several prompts": 1}
    with pytest.raises(curate.SchemaError, match=r"prompt_id 'A' is given to different prompts \(rows 0 and 1 differ\)"):
        curate.read(write_parquet(tmp_path, "c2.parquet", {**data, "response": ["a", "b", "c", "d"]}))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, "a", "b", "c"]), st.sampled_from(["p", "q", "  ", None])), min_size=1, max_size=12))
def test_collision_check_and_prompt_count_match_brute_force(rows):
    """The one-pass check finds a collision exactly when some id holds two prompts among the valid rows (a non-blank
    prompt and an id: a null id is invalid), and counts the valid rows' distinct ids."""
    from curate.schema import check

    ids, prompts = zip(*rows, strict=True)
    frame = pl.LazyFrame({"prompt_id": list(ids), "prompt": list(prompts), "response": ["r"] * len(rows)},
                         schema={"prompt_id": pl.String, "prompt": pl.String, "response": pl.String})  # fmt: skip
    stats = check(frame, "samples").stats.collect().row(0, named=True)
    valid = [(i, p) for i, p in rows if i is not None and p is not None and p.strip()]
    assert stats["__prompts"] == len({i for i, _ in valid})
    prompts_of: dict[str, set[str]] = {}
    for i, p in valid:
        prompts_of.setdefault(i, set()).add(p)
    collision = max((k for k in stats if k.startswith("__c")), key=lambda k: int(k[3:]))  # the cross-row check comes last
    assert stats[collision] == sum(len(ps) - 1 for ps in prompts_of.values())


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["x", "y", "xy", "yx", " "]), st.sampled_from(["m", "n"])),
                min_size=1, max_size=12), st.booleans())  # fmt: skip
def test_duplicate_count_matches_brute_force(rows, dedup):
    """Duplicates are counted over the valid rows, exactly (texts of equal length that differ are no duplicates),
    whether the count is a warning (hashed rows) or --dedup's drop (rows compared whole)."""
    from curate.schema import check

    ids, responses, models = (list(c) for c in zip(*rows, strict=True))
    frame = pl.LazyFrame({"prompt_id": ids, "prompt": ["p"] * len(rows), "response": responses, "model": models})
    stats = check(frame, "samples", dedup=dedup).stats.collect().row(0, named=True)
    valid = [r for r in rows if r[1].strip()]
    assert stats["__dup"] == len(valid) - len(set(valid))


# the characters a blank text may hold: Unicode's White_Space, and the no-break, zero-width and direction marks curate adds
_SPACE_CHARS = {*map(chr, [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, 0x180E, *range(0x2000, 0x2010), *range(0x2028, 0x2030),
                           *range(0x205F, 0x2065), 0x3000, 0xFEFF])}  # fmt: skip
# every space, visible ASCII, control characters (not spaces), and letters of 2, 3 and 4 UTF-8 bytes
_TEXT_CHARS = sorted(_SPACE_CHARS) + ["a", "!", "~", "\x00", "\x1c", "\x7f", "é", "\u00a1", "\u1681", "\u2010", "\u4e2d", "\uff01", "\U0001f600"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(st.sampled_from(_TEXT_CHARS), max_size=4)), min_size=1, max_size=8))
def test_blank_is_null_or_only_spaces(texts):
    """A text is blank when null, empty or made only of spaces (checked with a byte test first, a search second)."""
    from curate.schema import blank

    got = pl.DataFrame({"t": texts}, schema={"t": pl.String}).select(blank(pl.col("t")))["t"].to_list()
    assert got == [t is None or all(ch in _SPACE_CHARS for ch in t) for t in texts]


def test_pairs_kind_detected_and_required(tmp_path):
    path = write_parquet(tmp_path, "p.parquet", {"prompt": ["p"], "chosen": ["c"], "rejected": ["r"]})
    table = curate.load(path, kind=None)
    assert table.kind == "pairs"
    with pytest.raises(curate.SchemaError, match="chosen_target"):
        curate.read(path, kind="triplets")



def test_a_python_reader_is_warned_of_what_a_command_would_report(tmp_path):
    """Without a step, a converted column, duplicates and dropped rows are CurateWarnings at the caller's line."""
    data = {"prompt_id": [7, 7, 7, 8], "prompt": ["p", "p", "p", "q"], "response": ["x", "x", "y", "z"], "model": ["m"] * 4,
            "reward": [1.0, 2.0, 3.0, 0.5]}  # fmt: skip
    path = write_parquet(tmp_path, "d.parquet", data)
    with pytest.warns(curate.CurateWarning) as told:
        assert curate.read(path).collect().height == 4  # reported, kept
    assert [str(w.message) for w in told] == [
        f"`prompt_id` holds Int64 values in {path}; read as text",
        f"1 duplicate (prompt_id, response, model) row(s) in {path}; pass dedup=True to drop them",
    ]
    assert {w.filename for w in told} == {__file__}
    with pytest.warns(curate.CurateWarning) as told:
        assert curate.read(path, dedup=True).collect()["reward"].to_list() == [1.0, 3.0, 0.5]
    assert str(told[-1].message) == f"dropped 1 row of {path}: duplicate (prompt_id, response, model)"

    data["reward"][1], data["prompt_id"] = float("nan"), ["a", "a", "a", "b"]
    bad = write_parquet(tmp_path, "nan.parquet", data)
    with pytest.raises(curate.SchemaError, match="NaN") as err:
        curate.read(bad)
    assert str(err.value).endswith("Fix these rows, or pass drop_invalid=True to drop them (the drops are counted and reported).")
    bad_ids = write_parquet(tmp_path, "ids.parquet", {**data, "reward": [1.0] * 4, "prompt": ["p", "p", "other", "q"]})
    with pytest.raises(curate.SchemaError, match="given to different prompts") as err:  # a Python caller is told its keywords
        curate.read(bad_ids)
    assert str(err.value).endswith("Fix the ids, or pass rehash_prompt_ids=True to derive prompt_id from the prompt text.")
    with pytest.warns(curate.CurateWarning) as told:
        assert curate.read(bad_ids, rehash_prompt_ids=True).collect()["source_prompt_id"].to_list() == ["a", "a", "a", "b"]
    assert [str(w.message) for w in told] == [
        "prompt_id derived from the prompt text (rehash_prompt_ids=True); the given ids are kept as `source_prompt_id`",
        f"1 duplicate (prompt_id, response, model) row(s) in {bad_ids}; pass dedup=True to drop them",
    ]
    with pytest.warns(curate.CurateWarning) as told:
        assert curate.read(bad, drop_invalid=True).collect()["reward"].to_list() == [1.0, 3.0, 0.5]
    assert [str(w.message) for w in told] == [f"dropped 1 row of {bad}: invalid `reward`: NaN or infinite value"]


def test_a_clean_table_or_a_step_gets_no_python_warning(tmp_path):
    """A clean table warns of nothing; with a step (the CLI's) what validation finds goes to the step only."""
    clean = write_parquet(tmp_path, "c.parquet", {"prompt_id": ["a", "a"], "prompt": ["p", "p"], "response": ["x", "y"]})
    dup = write_parquet(tmp_path, "d.parquet", {"prompt_id": ["a", "a"], "prompt": ["p", "p"], "response": ["x", "x"]})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curate.read(clean).collect()
        step = Step("read")
        curate.load(dup, step=step).frame.collect()
    assert step.warnings and "1 duplicate" in step.warnings[0]


def test_numbers_written_as_text_are_read_as_numbers_and_other_text_is_a_row_error(tmp_path):
    # JSON Lines from a script that quoted its rewards: "0.5" is 0.5, blank text is an ungraded (null) reward, "high" is
    # an error naming the row; the same for an integer column
    path = tmp_path / "quoted.jsonl"
    rows = [("x", "0.5", "12"), ("y", " 2 ", "3"), ("z", "", " "), ("w", "1e-1", "7")]
    path.write_text("".join(f'{{"prompt": "p", "response": "{r}", "reward": "{w}", "n_tokens": "{n}"}}\n' for r, w, n in rows))
    with pytest.warns(curate.CurateWarning) as told:
        df = curate.read(path).collect()
    assert df["reward"].to_list() == [0.5, 2.0, None, 0.1] and df["n_tokens"].to_list() == [12, 3, None, 7]
    assert df.schema["reward"] == pl.Float64 and df.schema["n_tokens"] == pl.Int64
    assert f"`reward` holds text in {path}; read as numbers (blank text as null)" in [str(w.message) for w in told]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "response": "x", "reward": "0.5"}\n{"prompt": "p", "response": "y", "reward": "high"}\n')
    with pytest.raises(curate.SchemaError) as err:
        curate.read(bad)
    assert str(err.value).startswith(f"{bad}: text that is not a number; column `reward`; 1 row(s); first rows (0-based): 1.")
    bad.write_text('{"prompt": "p", "response": "x", "n_tokens": "1.5"}\n')
    with pytest.raises(curate.SchemaError, match="text that is not an integer; column `n_tokens`"):
        curate.read(bad)
    flags = tmp_path / "flags.jsonl"  # a verifier's flags as text: true/false in any case, 1/0
    flags.write_text("".join(f'{{"prompt": "p", "response": "{i}", "correct": "{v}"}}\n' for i, v in enumerate(["True", "false", " 1", "0", ""])))
    with pytest.warns(curate.CurateWarning, match=r"`correct` holds text .*; read as true/false \(also 1/0\)"):
        assert curate.read(flags).collect()["correct"].to_list() == [True, False, True, False, None]
    flags.write_text('{"prompt": "p", "response": "x", "correct": "yes"}\n')
    with pytest.raises(curate.SchemaError, match="text that is not true/false; column `correct`"):
        curate.read(flags)
