"""Pairing strategies on small tables whose pairs are listed by hand (see conftest for the tables)."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from curate.lineage import Step


def _pairs(df: pl.DataFrame, **kw) -> pl.DataFrame:
    return curate.pairs(curate.validate(df.lazy()), **kw).collect()


def _ids(p: pl.DataFrame) -> list[tuple[str, str]]:
    return list(zip(p["chosen"].to_list(), p["rejected"].to_list(), strict=True))


def test_all_lists_every_reward_ordered_pair(reward_samples):
    step = Step("pairs")
    p = _pairs(reward_samples, strategy="all", step=step)
    assert _ids(p) == [("a1", "a2"), ("a1", "a3"), ("a3", "a2"), ("c3", "c1")]
    # B (a tie) gives no pair: counted once, as a prompt (issue: `all` used to say nothing)
    assert step.dropped == {"responses with null reward (ungraded)": 1, "prompts with fewer than two distinct graded rewards (no pair)": 1}
    assert step.units == {"responses with null reward (ungraded)": "samples", "prompts with fewer than two distinct graded rewards (no pair)": "prompts"}


def test_best_of_n2_by_reward_margin(reward_samples):
    step = Step("pairs")
    p = _pairs(reward_samples, strategy="best-of-n2", by="reward_margin", step=step)
    assert _ids(p) == [("a1", "a2"), ("c3", "c1")]
    assert p["reward_margin"].to_list() == [2.0, 4.0]
    assert step.dropped["prompts left without a pair (fewer than two distinct graded rewards, or only identical or unscorable responses)"] == 1  # B


def test_best_of_n2_top_k_and_tie_break():
    # margins: (x1,x4)=3, (x2,x4)=2, (x3,x4)=2, (x1,x2)=1, (x1,x3)=1; (x2,x3) is a tie and skipped
    df = pl.DataFrame({"prompt_id": ["X"] * 4, "prompt": ["p"] * 4, "response": ["x1", "x2", "x3", "x4"], "reward": [4.0, 3.0, 3.0, 1.0]})
    p = _pairs(df, strategy="best-of-n2", by="reward_margin", k=3)
    # equal margin 2: (x2,x4) and (x3,x4) -> the earlier chosen row first
    assert _ids(p) == [("x1", "x4"), ("x2", "x4"), ("x3", "x4")]


def test_best_vs_worst(reward_samples):
    step = Step("pairs")
    p = _pairs(reward_samples, strategy="best-vs-worst", step=step)
    assert _ids(p) == [("a1", "a2"), ("c3", "c1")]
    assert p["weight"].to_list() == [1.0, 1.0]
    assert step.dropped["prompts whose graded responses all have the same reward (or fewer than two are graded)"] == 1


def test_pair_columns_follow_spec(reward_samples):
    df = reward_samples.with_columns(
        pl.Series("ref_logp", [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0]),
        pl.Series("logp", [-1.5] * 8),
        pl.Series("n_tokens", [10, 20, 30, 40, 50, 60, 70, 80]),
    )
    p = _pairs(df, strategy="best-vs-worst")
    assert p.columns[:16] == [
        "prompt_id", "prompt", "chosen", "rejected", "chosen_model", "rejected_model", "chosen_reward",
        "rejected_reward", "pair_id", "chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
        "chosen_n_tokens", "rejected_n_tokens", "weight",
    ]  # fmt: skip
    assert p["pair_id"].to_list() == ["A:0:1", "C:7:5"]  # prompt id and the input rows of chosen and rejected
    row = p.row(0, named=True)  # (a1, a2)
    assert (row["ref_chosen_logps"], row["ref_rejected_logps"], row["chosen_n_tokens"], row["rejected_n_tokens"]) == (-1.0, -2.0, 10, 20)
    assert "chosen_correct" not in p.columns  # absent in the samples -> absent in the pairs


def test_correct_vs_incorrect_by_hand(math_samples):
    step = Step("pairs")
    p = _pairs(math_samples, strategy="correct-vs-incorrect", step=step)
    assert p["prompt_id"].to_list() == ["P", "Q"]
    P, Q = p.row(0, named=True), p.row(1, named=True)
    assert P["chosen"] == "p1" and P["rejected"] in {"p2", "p3"}  # the answer-7 class (size 2), not p4
    assert P["weight"] == pytest.approx(3.25) and P["difficulty_weight"] == pytest.approx(3.25)
    assert Q["chosen"] == "G" and Q["chosen_model"] == "gold" and Q["chosen_correct"] is True
    assert Q["rejected"] in {"q1", "q2"} and Q["weight"] == pytest.approx(1.5)
    # P: N=4, P_c=1, the mode of the wrong answers 2 (answer 7), answers 4, 7, 9; Q: N=2, no correct, mode 1, answers 5, 6
    assert [P[c] for c in ("n_samples", "n_correct", "n_wrong_mode", "n_unique_answers")] == [4, 1, 2, 3]
    assert [Q[c] for c in ("n_samples", "n_correct", "n_wrong_mode", "n_unique_answers")] == [2, 0, 1, 2]
    assert Q["chosen_answer"] is None and P["chosen_answer"] == "4" and P["rejected_answer"] == "7"
    # after TRL's columns: the chosen side's own columns, the prompt's (gold, then its difficulty), the rejected side's
    assert p.columns[p.columns.index("weight") + 1 :] == ["chosen_answer", "gold", "n_samples", "n_correct", "n_wrong_mode",
                                                           "n_unique_answers", "difficulty_weight", "rejected_answer"]  # fmt: skip
    assert step.dropped == {"prompts with no incorrect response (nothing to reject)": 1}


def test_correct_vs_incorrect_k_pairs_distinct_and_seeded(math_samples):
    more = pl.concat(
        [
            math_samples,
            pl.DataFrame({"prompt_id": ["P"] * 3, "prompt": ["pp"] * 3, "response": ["p5", "p6", "p7"], "model": ["m"] * 3,
                          "correct": [True, False, True], "answer": ["4", "7", "4"], "gold": ["4"] * 3}),
        ]
    )  # fmt: skip
    p = _pairs(more, strategy="correct-vs-incorrect", k=2).filter(pl.col("prompt_id") == "P")
    assert p.height == 2
    assert set(p["chosen"]) <= {"p1", "p5", "p7"} and p["chosen"].n_unique() == 2
    assert set(p["rejected"]) <= {"p2", "p3", "p6"} and p["rejected"].n_unique() == 2
    again = _pairs(more, strategy="correct-vs-incorrect", k=2).filter(pl.col("prompt_id") == "P")
    assert _ids(p) == _ids(again)


def test_correct_vs_incorrect_without_answer_uses_total_errors(math_samples):
    # without `answer`, P_e = N - P_c: P -> max(1, 1 + 3/1 + 1/4) = 4.25 ; Q -> 1 + 2/2 = 2
    p = _pairs(math_samples.drop("answer"), strategy="correct-vs-incorrect")
    assert p["weight"].to_list() == pytest.approx([4.25, 2.0])


def test_reward_strategy_without_reward_says_what_to_run(math_samples):
    with pytest.raises(curate.SchemaError, match="curate reward"):
        _pairs(math_samples, strategy="best-of-n2")


def test_unknown_rank_column(reward_samples):
    with pytest.raises(curate.SchemaError, match="cannot rank by `nope`"):
        _pairs(reward_samples, strategy="best-of-n2", by="nope")


rewards = st.lists(st.one_of(st.none(), st.integers(0, 4).map(float)), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(rewards, min_size=1, max_size=4))
def test_all_pairs_match_brute_force(groups):
    rows = [(f"P{g}", f"r{g}_{i}", r) for g, rs in enumerate(groups) for i, r in enumerate(rs)]
    df = pl.DataFrame(rows, schema=["prompt_id", "response", "reward"], orient="row").with_columns(prompt=pl.col("prompt_id"))
    expected = []
    for g, rs in enumerate(groups):
        for (i, a), (j, b) in itertools.combinations(enumerate(rs), 2):
            if a is not None and b is not None and a != b:
                expected.append((f"r{g}_{i}", f"r{g}_{j}") if a > b else (f"r{g}_{j}", f"r{g}_{i}"))
    if not any(r is not None for rs in groups for r in rs):
        return
    got = _pairs(df, strategy="all")
    assert sorted(_ids(got)) == sorted(expected)
    assert (got["chosen_reward"] > got["rejected_reward"]).all()
    best = _pairs(df, strategy="best-of-n2", by="reward_margin")
    assert best.height == len({c.split("_")[0] for c, _ in expected})  # one pair per prompt that has any


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.one_of(st.none(), st.integers(0, 3).map(float))), min_size=1, max_size=14))
def test_all_pairs_come_in_input_order(rows):
    """Prompts interleaved in the input: prompts by first appearance, then the chosen row, then the rejected row."""
    if all(r is None for _, r in rows):
        return
    df = pl.DataFrame(
        {"prompt_id": [f"P{p}" for p, _ in rows], "response": [f"row{i}" for i in range(len(rows))], "reward": [r for _, r in rows]}
    ).with_columns(prompt=pl.col("prompt_id"))
    first = {}
    for i, (p, _) in enumerate(rows):
        first.setdefault(p, i)
    expected = sorted(
        (first[p], i, j)
        for i, (p, a) in enumerate(rows)
        for j, (q, b) in enumerate(rows)
        if p == q and a is not None and b is not None and a > b
    )
    got = _pairs(df, strategy="all")
    assert _ids(got) == [(f"row{i}", f"row{j}") for _, i, j in expected]
    assert got["pair_id"].to_list() == [f"P{rows[i][0]}:{i}:{j}" for _, i, j in expected]
