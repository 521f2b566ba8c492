"""Best-of-N² by DCRM through the bound-and-cutoff shortcut equals the exhaustive ranking, ties included."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import curate
from conftest import ARENA
from curate.lineage import Step


def both(samples: pl.LazyFrame, **kw) -> tuple[pl.DataFrame, pl.DataFrame, Step, Step]:
    fast_step, slow_step = Step("pairs"), Step("pairs")
    fast = curate.pairs(samples, step=fast_step, **kw).collect()
    slow = curate.pairs(samples, step=slow_step, exhaustive=True, **kw).collect()
    return fast, slow, fast_step, slow_step


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("params", [{}, {"unit": "char"}, {"epsilon": 0.5}])
def test_equals_exhaustive_on_arena(k, params):
    samples = curate.read(ARENA, drop_invalid=True)
    fast, slow, fs, ss = both(samples, k=k, **params)
    assert fast.height > 250 and fast.equals(slow)
    assert fs.dropped == ss.dropped


def test_scores_far_fewer_pairs_than_it_has(monkeypatch):
    import curate.best_of_n2 as bon

    seen = []
    real = bon.top_k_by_dcrm

    def spy(*a, **kw):
        out = real(*a, **kw)
        seen.append(out)
        return out

    monkeypatch.setattr(bon, "top_k_by_dcrm", spy)
    curate.pairs(curate.read(ARENA, drop_invalid=True)).collect()
    (top,) = seen
    # the bucket bound skips about 70% of the arena pairs (the lengths' difference alone: half); the cutoff stops most of the rest early
    assert top.scored < 0.4 * top.candidates and top.exact < 0.2 * top.candidates


texts = st.lists(st.sampled_from(["a", "b", "c", "a b", "b a", "a a b", "c b a a", "a  b", "x y z w"]), min_size=1, max_size=7)


@settings(max_examples=80, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4), st.integers(1, 3), st.booleans(), st.randoms(use_true_random=False))
def test_equals_exhaustive_with_ties_and_identical_texts(groups, k, with_ref, rnd):
    rows = []
    for g, responses in enumerate(groups):
        for text in responses:
            rows.append({"prompt_id": f"P{g}", "prompt": f"p{g}", "response": text, "reward": float(rnd.randint(0, 3)),
                         "ref_logp": float(rnd.randint(-3, 0)) if with_ref else None})  # fmt: skip
    df = pl.DataFrame(rows)
    if not with_ref:
        df = df.drop("ref_logp")
    samples = curate.validate(df.lazy())
    fast, slow, fs, ss = both(samples, k=k)
    assert fast.equals(slow), (fast, slow)
    assert fs.dropped == ss.dropped


def test_token_unit_and_missing_token_ids_are_counted():
    df = pl.DataFrame({
        "prompt_id": ["A"] * 4 + ["B"] * 2, "prompt": ["a"] * 4 + ["b"] * 2, "response": ["w", "x", "y", "z", "u", "v"],
        "reward": [4.0, 3.0, 2.0, 1.0, 2.0, 1.0], "token_ids": [[1, 2, 3], [1, 2], [1, 2, 3], None, None, [5]],
    })  # fmt: skip
    fast, slow, fs, ss = both(curate.validate(df.lazy()))
    assert fast.equals(slow)
    # A: 6 pairs, 3 touch the response without token ids; (w, y) has identical ids; B's only pair has none
    assert fs.dropped["pairs with edit distance 0 (identical responses)"] == 1
    assert fs.dropped["pairs whose `dcrm` is null (a response without token_ids or a reference log-prob)"] == 4
    assert fast["prompt_id"].to_list() == ["A"] and fs.dropped["prompts left without a pair (fewer than two distinct graded rewards, or only identical or unscorable responses)"] == 1
    assert ss.dropped == fs.dropped


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 300), max_size=40), min_size=2, max_size=8), st.integers(1, 70))
def test_the_bucket_bound_never_exceeds_the_edit_distance(sequences, batch):
    """L(a, b) ≤ Levenshtein(a, b) (rapidfuzz, on the same symbols) and L ≥ the lengths' difference, for every pair, in batches of any size."""
    import numpy as np
    from rapidfuzz.distance import Levenshtein

    import curate.best_of_n2 as bon

    codes = np.array([0x100 + v for seq in sequences for v in seq], dtype=np.uint32)
    lengths = np.array([len(seq) for seq in sequences], dtype=np.int64)
    n = len(sequences)
    a, b = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
    old = bon._PAIRS_PER_BATCH
    bon._PAIRS_PER_BATCH = batch
    try:
        lower = bon.distance_lower_bound(bon.histograms(codes, lengths), a, b)
    finally:
        bon._PAIRS_PER_BATCH = old
    for i, j, low in zip(a, b, lower, strict=True):
        assert abs(len(sequences[i]) - len(sequences[j])) <= low <= Levenshtein.distance(sequences[i], sequences[j])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 200), max_size=30), max_size=8), st.integers(1, 4), st.integers(0, 300))
@example(sequences=[[1, 2], [], [70]], batch=1, repeats=300)  # a count past 255 in a later batch: the table widens
def test_histograms_count_each_texts_symbols_per_bucket(sequences, batch, repeats):
    """Bucket counts (code point mod HISTOGRAM_BUCKETS) per text equal a plain count, across batch boundaries and past 8-bit counts."""
    import numpy as np

    import curate.best_of_n2 as bon

    sequences = [*sequences, [7] * repeats]  # one symbol many times: past 255 the counts need a wider type
    codes = np.array([v for seq in sequences for v in seq], dtype=np.uint32)
    lengths = np.array([len(seq) for seq in sequences], dtype=np.uint32)
    expected = np.zeros((len(sequences), bon.HISTOGRAM_BUCKETS), dtype=np.int64)
    for i, seq in enumerate(sequences):
        for v in seq:
            expected[i, v % bon.HISTOGRAM_BUCKETS] += 1
    old = bon._TEXTS_PER_BATCH
    bon._TEXTS_PER_BATCH = batch
    try:
        got = bon.histograms(codes, lengths)
    finally:
        bon._TEXTS_PER_BATCH = old
    assert np.array_equal(got.astype(np.int64), expected)
    assert np.iinfo(got.dtype).max >= expected.max()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=25), st.randoms(use_true_random=False))
def test_candidate_pairs_match_brute_force(rows, rnd):
    """Every reward-ordered pair of one prompt's rows, in (prompt, chosen row, rejected row) order, from rows in any order."""
    import numpy as np

    from curate.best_of_n2 import candidate_pairs

    numbers = list(range(len(rows)))
    rnd.shuffle(numbers)  # row numbers need not follow the table's order
    prompt = np.array([p for p, _ in rows], dtype=np.int64)
    reward = np.array([r for _, r in rows], dtype=np.float64)
    row = np.array(numbers, dtype=np.int64)
    a, b = candidate_pairs(prompt, row, reward)
    expected = sorted((prompt[i], row[i], row[j]) for i in range(len(rows)) for j in range(len(rows)) if prompt[i] == prompt[j] and reward[i] > reward[j])
    assert [(prompt[x], row[x], row[y]) for x, y in zip(a, b, strict=True)] == expected


def test_bound_waves_by_hand():
    """Each prompt's pairs ranked by decreasing bound (ties in input order), in waves of ranks [0, m), [m, 3m), [3m, 7m), each in input order."""
    import numpy as np

    from curate.best_of_n2 import bound_waves

    prompt = np.array([0, 0, 0, 0, 0, 1, 1])
    bound = np.array([0.1, 0.5, 0.3, 0.5, 0.2, 0.9, 0.8])
    # prompt 0 by bound: 1 and 3 (a tie, input order), 2, 4, 0 (ranks 0-4); prompt 1: 5, 6 (ranks 0-1)
    assert [w.tolist() for w in bound_waves(prompt, bound, 1)] == [[1, 5], [2, 3, 6], [0, 4]]
    assert [w.tolist() for w in bound_waves(prompt, bound, 2)] == [[1, 3, 5, 6], [0, 2, 4]]
    assert [w.tolist() for w in bound_waves(prompt, bound, 5)] == [[0, 1, 2, 3, 4, 5, 6]]
    assert [w.tolist() for w in bound_waves(prompt[:0], bound[:0], 3)] == [[]]


@pytest.mark.parametrize("batch", [1, 2, 4096])
def test_as_strings_one_string_per_sequence(batch, monkeypatch):
    import numpy as np

    import scorers.edit_distance
    from scorers.edit_distance import as_strings

    monkeypatch.setattr(scorers.edit_distance, "_STRINGS_PER_BATCH", batch)
    got = as_strings(np.array([97, 98, 0x1F600, 99], dtype=np.uint32), np.array([2, 0, 2, 0]))
    assert got.tolist() == ["ab", "", "\U0001f600c", ""]
    assert as_strings(np.array([0xD7FF, 97], dtype=np.uint32), np.array([1, 1])).tolist() == ["\ud7ff", "a"]  # the separator skips the surrogates
    assert as_strings(np.array([0x10FFFF, 97], dtype=np.uint32), np.array([1, 1])).tolist() == ["\U0010ffff", "a"]  # no code point left
    assert as_strings(np.array([], dtype=np.uint32), np.array([0])).tolist() == [""]
    assert as_strings(np.array([], dtype=np.uint32), np.array([], dtype=np.int64)).tolist() == []
