"""Each built-in scorer against values worked out by hand or from the paper's definition."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from curate.lineage import Step
from curate.scoring import score_table
from scorers.dual_margin import m2_threshold


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def levenshtein(a: list, b: list) -> int:
    """Textbook dynamic programme, the reference for the rapidfuzz path."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def score(data: dict, names, **params) -> pl.DataFrame:
    return curate.score(pl.LazyFrame(data), names, **params).collect()


# --- edit_distance -----------------------------------------------------------------------------


def test_edit_distance_units_by_hand():
    data = {
        "chosen": ["the cat sat", "kitten", "a  b\tc\n", "", None],
        "rejected": ["the dog sat down", "sitting", "a b c", "a b", "x"],
    }
    assert score(data, "edit_distance")["edit_distance"].to_list() == [2, 1, 0, 2, None]
    assert score(data, "edit_distance", unit="char")["edit_distance"].to_list() == [8, 3, 3, 3, None]


def test_edit_distance_prefers_token_ids():
    data = {"chosen": ["x", "y"], "rejected": ["u", "v"], "chosen_token_ids": [[1, 2, 3], [5]], "rejected_token_ids": [[1, 3], []]}
    assert score(data, "edit_distance")["edit_distance"].to_list() == [1, 1]
    assert score(data, "edit_distance", unit="word")["edit_distance"].to_list() == [1, 1]
    with pytest.raises(curate.CurateError, match="curate logps"):
        score({"chosen": ["a"], "rejected": ["b"]}, "edit_distance", unit="token")


words = st.lists(st.sampled_from(["a", "b", "c", "dd", "é", "a\u00e9"]), max_size=12)
spaces = st.sampled_from([" ", "  ", "\t", "\n", "\x0b", "\x1c", "\x1f", "\x85", "\u00a0", "\u2028", "\u3000"])  # all whitespace to str.split()
ends = st.sampled_from(["", " ", "  ", "\n", " \t "])  # whitespace before the first word or after the last


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(words, words, spaces, ends, ends), min_size=1, max_size=8))
def test_edit_distance_matches_reference_and_is_symmetric(rows):
    chosen = [lead + sp.join(a) + trail for a, _, sp, lead, trail in rows]
    rejected = [" ".join(b) for _, b, *_ in rows]
    fwd = score({"chosen": chosen, "rejected": rejected}, "edit_distance")["edit_distance"].to_list()
    back = score({"chosen": rejected, "rejected": chosen}, "edit_distance")["edit_distance"].to_list()
    assert fwd == back == [levenshtein(c.split(), r.split()) for c, r in zip(chosen, rejected, strict=True)]
    chars = score({"chosen": chosen, "rejected": rejected}, "edit_distance", unit="char")["edit_distance"].to_list()
    assert chars == [levenshtein(list(c), list(r)) for c, r in zip(chosen, rejected, strict=True)]


# --- dcrm and best-of-n2 ---------------------------------------------------------------------------


def test_dcrm_by_hand():
    data = {"chosen": ["a b c"] * 2, "rejected": ["a x c"] * 2, "chosen_reward": [2.0, 2.0], "rejected_reward": [1.0, 1.0]}
    assert score(data, "dcrm")["dcrm"].to_list() == pytest.approx([(sig(1) - 0.5) / 2] * 2)
    with_ref = {**data, "ref_chosen_logps": [-10.0, -10.0], "ref_rejected_logps": [-13.0, -9.5]}
    # d_prob = |-10 + 13| = 3 and 0.5
    assert score(with_ref, "dcrm")["dcrm"].to_list() == pytest.approx([(sig(1) - 0.5) / 5, (sig(1) - 0.5) / 2.5])
    assert score(with_ref, "dcrm", prob_distance=False)["dcrm"].to_list() == pytest.approx([(sig(1) - 0.5) / 2] * 2)
    assert score(data, "dcrm", epsilon=0.5)["dcrm"].to_list() == pytest.approx([(sig(1) - 0.5) / 1.5] * 2)
    with pytest.raises(curate.SchemaError, match="curate logps --ref-model"):
        score(data, "dcrm", prob_distance=True)


def test_best_of_n2_dcrm_by_hand():
    # r1 "a b c"=3, r2 "a b d"=1, r3 "x y z w"=2, r4 "a b c"=0 (same text as r1)
    # (r1,r2): (σ(2)-.5)/(1+1); (r1,r3),(r3,r2): (σ(1)-.5)/(4+1); (r1,r4): d_edit 0 -> skipped
    # (r2,r4): (σ(1)-.5)/(1+1); (r3,r4): (σ(2)-.5)/(4+1)
    df = pl.DataFrame(
        {"prompt_id": ["P"] * 4, "prompt": ["p"] * 4, "response": ["a b c", "a b d", "x y z w", "a b c"], "reward": [3.0, 1.0, 2.0, 0.0]}
    )
    step = Step("pairs")
    p = curate.pairs(df.lazy(), strategy="best-of-n2", k=3, step=step).collect()
    assert list(zip(p["chosen"], p["rejected"], strict=True)) == [("a b c", "a b d"), ("a b d", "a b c"), ("x y z w", "a b c")]
    assert p["dcrm"].to_list() == pytest.approx([(sig(2) - 0.5) / 2, (sig(1) - 0.5) / 2, (sig(2) - 0.5) / 5])
    assert step.dropped["pairs with edit distance 0 (identical responses)"] == 1


def test_best_of_n2_dcrm_ties_go_to_larger_margin_then_order():
    # (a,b) and (c,d): Δr=1, d=1 -> equal; (e,f): equal too. All within one prompt: earliest chosen wins.
    df = pl.DataFrame(
        {"prompt_id": ["P"] * 4, "prompt": ["p"] * 4, "response": ["u v", "u w", "x y", "x z"], "reward": [1.0, 0.0, 1.0, 0.0]}
    )
    p = curate.pairs(df.lazy(), strategy="best-of-n2").collect()
    # candidates: (u v, u w) d=1 Δr=1; (u v, x z) d=2; (x y, u w) d=2; (x y, x z) d=1 -> tie with the first: earlier rows win
    assert list(zip(p["chosen"], p["rejected"], strict=True)) == [("u v", "u w")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(words, st.floats(-20, 20), st.floats(-50, 0)), min_size=2, max_size=7))
def test_dcrm_bounds(rows):
    df = pl.DataFrame(
        {
            "prompt_id": ["P"] * len(rows),
            "prompt": ["p"] * len(rows),
            "response": [" ".join(w) or "-" for w, _, _ in rows],
            "reward": [r for _, r, _ in rows],
            "ref_logp": [x for _, _, x in rows],
        }
    )
    p = curate.pairs(df.lazy(), strategy="all", by="dcrm").collect()
    # (σ(m) − ½) / (d + |Δp| + 1) < ½ in real numbers; in float64 σ(m) rounds to 1 for m ≥ ~37, so equal texts reach ½
    assert ((p["dcrm"] >= 0) & (p["dcrm"] <= 0.5)).all()
    assert (p["chosen_reward"] > p["rejected_reward"]).all()


# --- margins -------------------------------------------------------------------------------------------


def test_implicit_margin_by_hand():
    data = {"chosen_logps": [-5.0], "rejected_logps": [-8.0], "ref_chosen_logps": [-6.0], "ref_rejected_logps": [-7.0],
            "chosen_n_tokens": [5], "rejected_n_tokens": [4]}  # fmt: skip
    row = score(data, "implicit_margin").row(0, named=True)
    assert row["implicit_margin"] == pytest.approx((-5 + 6) - (-8 + 7))  # 2
    assert row["logp_margin_norm"] == pytest.approx(-5 / 5 - -8 / 4)  # 1
    only_ref = score({k: v for k, v in data.items() if "n_tokens" not in k}, "implicit_margin")
    assert "logp_margin_norm" not in only_ref.columns and only_ref["implicit_margin"].item() == pytest.approx(2)
    with pytest.raises(curate.SchemaError, match="curate logps"):
        score({"chosen_logps": [-1.0], "rejected_logps": [-2.0]}, "implicit_margin")


def test_alignment_potential_by_hand():
    # m_ex = [1, 2, 3]; m_im = avg_w - avg_l = [0.5, -1, 0] -> |m_im| = [0.5, 1, 0]
    data = {"chosen_reward": [2.0, 3.0, 4.0], "rejected_reward": [1.0, 1.0, 1.0], "chosen_logps": [-1.5, -4.0, -2.0],
            "rejected_logps": [-2.0, -3.0, -2.0], "chosen_n_tokens": [1, 2, 1], "rejected_n_tokens": [1, 1, 1]}  # fmt: skip
    z = math.sqrt(1.5)  # (x - mean)/pop-std for [1,2,3] and for [0.5,1,0] -> ±sqrt(3/2)
    ap = score(data, "alignment_potential")["alignment_potential"].to_list()
    assert ap == pytest.approx([-z - 0, 0 - z, z + z])
    ap2 = score(data, "alignment_potential", lambda_=0.5)["alignment_potential"].to_list()
    assert ap2 == pytest.approx([-z, -0.5 * z, z + 0.5 * z])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5), st.floats(-50, -1), st.floats(-50, -1)), min_size=3, max_size=30))
def test_alignment_potential_mean_zero(rows):
    data = {"chosen_reward": [a for a, *_ in rows], "rejected_reward": [b for _, b, *_ in rows], "chosen_logps": [c for *_, c, _ in rows],
            "rejected_logps": [d for *_, d in rows], "chosen_n_tokens": [3] * len(rows), "rejected_n_tokens": [2] * len(rows)}  # fmt: skip
    m_ex = np.array(data["chosen_reward"]) - np.array(data["rejected_reward"])
    m_im = np.abs(np.array(data["chosen_logps"]) / 3 - np.array(data["rejected_logps"]) / 2)
    if m_ex.std() < 1e-6 or m_im.std() < 1e-6:
        return  # z-scores undefined for a constant column
    ap = score(data, "alignment_potential")["alignment_potential"].to_numpy()
    assert abs(ap.mean()) < 1e-9


def test_dual_margin_by_hand():
    base = {"chosen_reward": [3.0, 11.0], "rejected_reward": [1.0, 1.0], "chosen_logps": [-5.0, -5.0], "rejected_logps": [-8.0, -5.0],
            "ref_chosen_logps": [-6.0, -3.0], "ref_rejected_logps": [-6.0, -6.0]}  # fmt: skip
    # m_ex = [2, 10]; m_im = [(-5+6)-(-8+6), (-5+3)-(-5+6)] = [3, -3]
    assert score(base, "dual_margin", mode="add")["dual_margin"].to_list() == pytest.approx([5.0, 7.0])
    got = score(base, "dual_margin", m2_ex=6.0, m2_im=4.0)["dual_margin"].to_list()
    p_ex, p_im = (2 + 2) / 8, (3 + 2) / 6  # row 1; row 2: P_ex = 1 (clipped), P_im = 0 (clipped)
    assert got == pytest.approx([p_ex * p_im / (p_ex * p_im + (1 - p_ex) * (1 - p_im) + 1e-12), 0.0])


def test_m2_rule_by_hand():
    # [10]*5 + [0]*95, external (÷1.5): start int(10/1.5)=6; 5 rows in [6,10] < 30 -> 6
    assert m2_threshold(np.array([10.0] * 5 + [0.0] * 95), 1.5) == 6
    # 0..99, implicit (÷2): start 49; count(k) = 100-k >= max-k always, so step until 100-k < 30 -> k = 71
    assert m2_threshold(np.arange(100, dtype=float), 2.0) == 71
    assert m2_threshold(np.array([-7.0, -9.0]), 2.0) == -1.0  # clamped above M1 = -2


def test_madpo_weight_by_hand():
    def madpo(h, c_max=2.0, c_min=0.5, lam=1.0, tau=2.0):
        if h <= -tau:
            return 1.0
        c = c_min + (c_max - c_min) / (1 + ((c_max - 1) / (1 - c_min)) * math.exp(lam * (abs(h) - tau)))
        return sig(c * h) / sig(h)

    hs = [1.0, -1.0, -3.0, 5.0, 0.0]
    data = {"chosen_reward": [h + 1 for h in hs] + [None], "rejected_reward": [1.0] * 6}
    got = score(data, "madpo_weight")["madpo_weight"].to_list()
    assert got[:5] == pytest.approx([madpo(h) for h in hs]) and got[5] is None
    assert got[0] == pytest.approx(1.0894, abs=1e-4)  # c(1) = 1.3642; σ(1.3642)/σ(1)
    assert got[2] == 1.0 and got[4] == pytest.approx(1.0)


def test_sample_and_generator_delta():
    data = {"chosen_model": ["A", "B", "C"], "rejected_model": ["B", "A", "A"], "chosen_judge_coherence": [8.0, 5.0, 1.0],
            "rejected_judge_coherence": [5.0, 5.0, 1.0], "chosen_judge_factuality": [7.0, 9.0, 1.0], "rejected_judge_factuality": [9.0, 3.0, 1.0]}  # fmt: skip
    assert score(data, "sample_delta")["sample_delta"].to_list() == pytest.approx([0.5, 3.0, 0.0])
    assert score(data, "sample_delta", dims="coherence")["sample_delta"].to_list() == pytest.approx([3.0, 0.0, 0.0])
    with pytest.raises(curate.SchemaError, match="curate judge"):
        score(data, "sample_delta", dims=["precision"])
    gd = score(data, "generator_delta", capabilities={"A": 0.9, "B": 0.5})["generator_delta"].to_list()
    assert gd[:2] == pytest.approx([0.4, -0.4]) and gd[2] is None
    assert score(data, "generator_delta", capabilities={"A": 0.9, "B": 0.5}, default=0.0)["generator_delta"][2] == pytest.approx(-0.9)


def test_generator_delta_from_file(tmp_path):
    path = tmp_path / "caps.csv"
    path.write_text("model,capability\nA,0.75\nB,0.25\n")
    out = score({"chosen_model": ["A"], "rejected_model": ["B"]}, "generator_delta", capabilities=str(path))
    assert out["generator_delta"].item() == pytest.approx(0.5)


def test_embedding_distance_by_hand():
    data = {"chosen_embedding": [[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]], "rejected_embedding": [[0.0, 1.0], [2.0, 2.0], [1.0, 1.0]]}
    assert score(data, "embedding_distance")["embedding_distance"].to_list() == pytest.approx([1.0, 0.0, 1 - 1 / math.sqrt(2)])


def test_scorers_keep_every_row(reward_samples):
    pairs = curate.pairs(curate.validate(reward_samples.lazy()), strategy="all").collect()
    for name in ("reward_margin", "edit_distance", "dcrm", "madpo_weight"):
        assert curate.score(pairs.lazy(), name).collect().height == pairs.height


def test_single_response_and_all_tied_prompts_give_no_pair():
    df = pl.DataFrame(
        {"prompt_id": ["S", "T", "T", "U", "U"], "prompt": ["s", "t", "t", "u", "u"], "response": ["only one", "a", "b", "x y", "x z"],
         "reward": [5.0, 2.0, 2.0, 1.0, 0.0]}  # fmt: skip
    )
    step = Step("pairs")
    p = curate.pairs(df.lazy(), strategy="best-of-n2", step=step).collect()
    assert p["prompt_id"].to_list() == ["U"] and p["dcrm"].to_list() == pytest.approx([(sig(1) - 0.5) / 2])
    assert step.dropped["prompts left without a pair (fewer than two distinct graded rewards, or only identical or unscorable responses)"] == 2
    w = curate.score(df.with_columns(correct=pl.Series([True, False, False, True, True])).lazy(), "difficulty").collect()
    # S: one correct of one -> max(1, 1 + 0 + 1/1) = 2; T: all wrong, P_e = 2 (no answer: total) -> 1 + 2/2 = 2; U: all right -> 1.5
    assert w["difficulty_weight"].to_list() == pytest.approx([2.0, 2.0, 2.0, 1.5, 1.5])


def test_difficulty_keeps_row_order_and_matches_hand_values():
    # prompts interleaved; answers: B's wrong classes are {"1": 2, null: 1}, A's one wrong ("2"); one ungraded row in A
    df = pl.DataFrame({"prompt_id": ["B", "A", "B", "A", "B", "A", "B"], "prompt": ["b", "a", "b", "a", "b", "a", "b"],
                       "response": [f"r{i}" for i in range(7)], "correct": [False, True, False, False, False, None, True],
                       "answer": ["1", "3", "1", "2", None, "3", "3"]})  # fmt: skip
    # B: N = 4, P_c = 1, P_e = 2 (answer "1" twice; the null answer is a class of one) -> max(1, 1 + 2/1 + 1/4) = 3.25
    # A: N = 2 graded (row 5 is null), P_c = 1, P_e = 1 -> max(1, 1 + 1/1 + 1/2) = 2.5; distinct answers: A {"3", "2"}, B {"1", "3"}
    out = curate.score(df.lazy(), "difficulty").collect()
    assert out["response"].to_list() == [f"r{i}" for i in range(7)]
    assert out["difficulty_weight"].to_list() == pytest.approx([3.25, 2.5, 3.25, 2.5, 3.25, 2.5, 3.25])
    assert out["n_samples"].to_list() == [4, 2, 4, 2, 4, 2, 4] and out["n_wrong_mode"].to_list() == [2, 1, 2, 1, 2, 1, 2]
    assert out["n_unique_answers"].to_list() == [2, 2, 2, 2, 2, 2, 2]
    per_prompt = score_table(df.lazy(), ["difficulty"], per_prompt=True).collect()
    assert per_prompt["prompt_id"].to_list() == ["B", "A"] and per_prompt["difficulty_weight"].to_list() == pytest.approx([3.25, 2.5])


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(st.sampled_from(["A", "B", "C", None]), st.sampled_from([True, False, None]), st.sampled_from(["1", "2", "3", None])),
                  min_size=1, max_size=40),
    error_count=st.sampled_from(["mode", "total"]),
    with_answer=st.booleans(),
)  # fmt: skip
def test_difficulty_prompt_table_against_a_count_by_hand(rows, error_count, with_answer):
    """N, P_c, P_e, the distinct answers and w per prompt, counted in plain Python (null ids and answers are values too)."""
    from collections import Counter

    import scorers

    data = {"prompt_id": [r[0] for r in rows], "correct": [r[1] for r in rows], **({"answer": [r[2] for r in rows]} if with_answer else {})}
    frame = pl.DataFrame(data, schema={"prompt_id": pl.String, "correct": pl.Boolean, **({"answer": pl.String} if with_answer else {})})
    table = scorers.get("difficulty", error_count=error_count).prompt_table(frame.lazy()).collect()
    got = {r["prompt_id"]: r for r in table.iter_rows(named=True)}
    assert len(got) == table.height == len({r[0] for r in rows})
    for pid in {r[0] for r in rows}:
        mine = [r for r in rows if r[0] == pid]
        n, p_c = sum(c is not None for _, c, _ in mine), sum(c is True for _, c, _ in mine)
        wrong = [a for _, c, a in mine if c is False]
        p_e = max(Counter(wrong).values(), default=0) if with_answer and error_count == "mode" else len(wrong)
        uniq = len({a for _, _, a in mine if a is not None}) if with_answer else None
        w = None if n == 0 else (1 + p_e / n if p_c == 0 else max(1.0, 1 + p_e / p_c + 1 / n))
        r = got[pid]
        assert (r["n_samples"], r["n_correct"], r["n_wrong_mode"], r["n_unique_answers"]) == (n, p_c, p_e, uniq)
        assert r["difficulty_weight"] == (None if w is None else pytest.approx(w))
    assert table.schema == pl.Schema({"prompt_id": pl.String, "n_samples": pl.Int64, "n_correct": pl.Int64, "n_wrong_mode": pl.Int64,
                                      "n_unique_answers": pl.Int64, "difficulty_weight": pl.Float64})  # fmt: skip


def test_dcrm_with_embedding_distance():
    data = {"chosen": ["a", "b"], "rejected": ["c", "d"], "chosen_reward": [2.0, 3.0], "rejected_reward": [1.0, 1.0],
            "chosen_embedding": [[1.0, 0.0], [1.0, 1.0]], "rejected_embedding": [[0.0, 1.0], [1.0, 1.0]]}  # fmt: skip
    out = score(data, "dcrm", distance="embedding")
    # d_emb = 1 and 0: (σ(1) − .5)/(1 + 1), (σ(2) − .5)/(0 + 1)
    assert out["dcrm"].to_list() == pytest.approx([(sig(1) - 0.5) / 2, sig(2) - 0.5])
    assert "edit_distance" not in out.columns
