"""WRPO triplets and ranked lists on hand-made tables."""

from __future__ import annotations

import polars as pl
import pytest

import curate
from curate.lineage import Step

# Prompt A: target T has t1=2, t2=5, t3=1; sources s1=4, s2=6 (u1 ungraded).
# Prompt B: T has one response only -> no on-policy triplet; with rejected_from="any": y_l = lowest below t (s3=0).
# Prompt C: no source response graded -> no triplet.
SAMPLES = pl.DataFrame(
    {
        "prompt_id": ["A"] * 6 + ["B"] * 3 + ["C"] * 3,
        "prompt": ["pa"] * 6 + ["pb"] * 3 + ["pc"] * 3,
        "response": ["t1", "t2", "t3", "s1", "s2", "u1", "t4", "s3", "s4", "t5", "t6", "s5"],
        "model": ["T", "T", "T", "S1", "S2", "S3", "T", "S1", "S2", "T", "T", "S1"],
        "reward": [2.0, 5.0, 1.0, 4.0, 6.0, None, 3.0, 0.0, 9.0, 1.0, 2.0, None],
        "ref_logp": [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0, -10.0, -11.0, -12.0],
    }
)


def test_triplets_on_policy_recipe():
    step = Step("triplets")
    t = curate.triplets(SAMPLES.lazy(), target_model="T", step=step).collect()
    assert t.select("prompt_id", "chosen", "chosen_target", "rejected").rows() == [("A", "s2", "t2", "t3")]
    row = t.row(0, named=True)
    assert (row["chosen_reward"], row["chosen_target_reward"], row["rejected_reward"]) == (6.0, 5.0, 1.0)
    assert (row["ref_chosen_logps"], row["ref_chosen_target_logps"], row["ref_rejected_logps"]) == (-5.0, -2.0, -3.0)
    assert (row["chosen_model"], row["chosen_target_model"], row["rejected_model"], row["weight"]) == ("S2", "T", "T", 1.0)
    assert step.dropped == {
        "prompts with no graded source-model response": 1,
        "prompts where T has no two responses with different rewards (WRPO needs several target samples; "
        "--rejected-from any takes y_l from any model)": 1,
    }


def test_triplets_rejected_from_any():
    t = curate.triplets(SAMPLES.lazy(), target_model="T", rejected_from="any").collect()
    assert t.select("prompt_id", "chosen", "chosen_target", "rejected").rows() == [("A", "s2", "t2", "t3"), ("B", "s4", "t4", "s3")]


def test_triplets_target_without_rewards_is_explained():
    df = SAMPLES.with_columns(pl.when(pl.col("model") == "T").then(None).otherwise(pl.col("reward")).alias("reward"))
    with pytest.raises(curate.CurateError, match=r"'T' has no rewards \(6 responses, every `reward` is null\).*graded target: S1, S2"):
        curate.triplets(df.lazy(), target_model="T")
    with pytest.raises(curate.CurateError, match="does not occur"):
        curate.triplets(df.lazy(), target_model="nobody")


def test_rank_sorted_best_first_with_stable_ties():
    step = Step("rank")
    r = curate.rank(SAMPLES.lazy(), step=step).collect()
    assert r["prompt_id"].to_list() == ["A", "B", "C"]
    a = r.row(0, named=True)
    assert a["responses"] == ["s2", "t2", "s1", "t1", "t3"] and a["rewards"] == [6.0, 5.0, 4.0, 2.0, 1.0]
    assert a["models"] == ["S2", "T", "S1", "T", "T"] and a["ref_logps"] == [-5.0, -2.0, -4.0, -1.0, -3.0]
    assert step.dropped == {"responses with null reward (ungraded)": 2}
    ties = pl.DataFrame({"prompt_id": ["X"] * 3, "prompt": ["p"] * 3, "response": ["a", "b", "c"], "reward": [1.0, 2.0, 1.0]})
    assert curate.rank(ties.lazy()).collect()["responses"].to_list() == [["b", "a", "c"]]


def test_rank_min_and_max_responses():
    step = Step("rank")
    r = curate.rank(SAMPLES.lazy(), min_responses=3, max_responses=3, step=step).collect()
    assert r["prompt_id"].to_list() == ["A", "B"]
    assert r["responses"].to_list() == [["s2", "t2", "s1"], ["s4", "t4", "s3"]]
    assert step.dropped["prompts with fewer than 3 graded responses"] == 1
