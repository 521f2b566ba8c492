"""The scorer registry and protocol, and the `difficulty` / `reward_margin` scorers on hand-made frames."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
import scorers


def test_registry_lists_builtins_with_metadata():
    reg = scorers.registry()
    assert {"difficulty", "reward_margin"} <= set(reg)
    d = reg["difficulty"]
    assert d.level == "prompt"
    assert d.produces == ("n_samples", "n_correct", "n_wrong_mode", "n_unique_answers", "difficulty_weight")


def test_missing_columns_name_the_command_that_adds_them():
    with pytest.raises(curate.SchemaError) as err:
        curate.score(pl.LazyFrame({"prompt_id": ["a"]}), ["difficulty"])
    assert "correct" in str(err.value) and "curate verify" in str(err.value)


def test_unknown_scorer_and_param():
    with pytest.raises(curate.CurateError, match="unknown scorer 'nope'"):
        curate.score(pl.LazyFrame({"a": [1]}), ["nope"])
    with pytest.raises(curate.CurateError, match="belong to none"):
        curate.score(pl.LazyFrame({"prompt_id": ["a"], "correct": [True]}), ["difficulty"], beta=1)


def test_difficulty_by_hand(math_samples):
    out = curate.score(math_samples.lazy(), "difficulty").collect()
    assert out.height == math_samples.height  # keeps every row
    per_prompt = out.group_by("prompt_id").agg(pl.all().exclude("prompt_id").first()).sort("prompt_id")
    got = per_prompt.select("prompt_id", "n_samples", "n_correct", "n_wrong_mode", "n_unique_answers", "difficulty_weight").rows()
    assert got == [
        ("P", 4, 1, 2, 3, pytest.approx(3.25)),  # max(1, 1 + 2/1 + 1/4)
        ("Q", 2, 0, 1, 2, pytest.approx(1.5)),  # 1 + 1/2
        ("R", 2, 2, 0, 1, pytest.approx(1.5)),  # max(1, 1 + 0/2 + 1/2)
    ]


def test_difficulty_params_and_null_correct():
    df = pl.LazyFrame({"prompt_id": ["a"] * 4, "correct": [True, False, False, None], "answer": ["1", "2", "3", None]})
    out = curate.score(df, "difficulty", alpha=2.0, epsilon=0.0, error_count="total").collect().row(0, named=True)
    # graded N=3, P_c=1, P_e (total) = 2 -> max(1, 1 + 2*2/1 + 0/3) = 5
    assert (out["n_samples"], out["n_correct"], out["n_wrong_mode"], out["difficulty_weight"]) == (3, 1, 2, 5.0)


def test_reward_margin_by_hand():
    out = curate.score(pl.LazyFrame({"chosen_reward": [3.0, None], "rejected_reward": [1.5, 1.0]}), "reward_margin").collect()
    assert out["reward_margin"].to_list() == [1.5, None]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=12), st.floats(0, 5), st.floats(0, 5))
def test_difficulty_weight_at_least_one_and_matches_formula(rows, alpha, eps):
    df = pl.LazyFrame({"prompt_id": ["p"] * len(rows), "correct": [c for c, _ in rows], "answer": [str(a) for _, a in rows]})
    w = curate.score(df, "difficulty", alpha=alpha, epsilon=eps).collect()["difficulty_weight"][0]
    n, p_c = len(rows), sum(c for c, _ in rows)
    wrong = [a for c, a in rows if not c]
    p_e = max((wrong.count(a) for a in set(wrong)), default=0)
    expected = 1 + alpha * p_e / n if p_c == 0 else max(1.0, 1 + alpha * p_e / p_c + eps / n)
    assert w >= 1.0 and w == pytest.approx(expected)
