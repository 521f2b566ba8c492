"""Whole-table statistics merged from blocks (what `--engine ray` runs) equal one pass over the whole table.

No Ray here: the table is cut into blocks of whole prompts by hand, each block computes its partial,
the merge runs as the driver runs it, and the blocks' outputs are compared with the single pass.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import scorers
from curate.lineage import Step
from curate.schema import SOURCE_ROW
from curate.selection import given_by_phases, select, select_phases
from scorers.dual_margin import m2_from_histogram, m2_threshold
from scorers.functions import merge_moments, moments


def blocks_of(frame: pl.DataFrame, n_blocks: int, seed: int) -> list[pl.DataFrame]:
    """Whole prompts per block (a seeded assignment), rows in input order, each row carrying its input row."""
    frame = frame.with_row_index(SOURCE_ROW).with_columns(pl.col(SOURCE_ROW).cast(pl.Int64))
    ids = frame["prompt_id"].unique().sort().to_list()
    rng = np.random.default_rng(seed)
    owner = dict(zip(ids, rng.integers(0, n_blocks, len(ids)).tolist(), strict=True))
    frame = frame.with_columns(pl.col("prompt_id").replace_strict(owner, return_dtype=pl.Int64).alias("__b"))
    return [frame.filter(pl.col("__b") == b).drop("__b") for b in range(n_blocks)]


def pairs_table(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "prompt_id": [f"q{i // 3:03d}" for i in range(n)],
        "chosen_reward": rng.normal(3, 2, n).round(1),  # rounded: ties at the cut happen
        "rejected_reward": rng.normal(0, 2, n).round(1),
        "chosen_logps": -rng.uniform(5, 60, n),
        "rejected_logps": -rng.uniform(5, 60, n),
        "ref_chosen_logps": -rng.uniform(5, 60, n),
        "ref_rejected_logps": -rng.uniform(5, 60, n),
        "chosen_n_tokens": rng.integers(3, 40, n),
        "rejected_n_tokens": rng.integers(3, 40, n),
        "weight": rng.uniform(0.1, 2.0, n),
    })  # fmt: skip


@given(values=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60), cuts=st.lists(st.integers(0, 60), max_size=5))
def test_merged_moments_equal_the_whole_column(values, cuts):
    x = np.array(values)
    edges = sorted({0, len(x), *[c for c in cuts if c < len(x)]})
    parts = [pl.DataFrame({"x": x[a:b]}).select(moments(pl.col("x"), "x")).row(0, named=True) for a, b in zip(edges, edges[1:], strict=False)]
    mean, std = merge_moments(parts, "x")
    assert abs(mean - x.mean()) <= 1e-9 * max(1.0, abs(x).max())
    assert abs(std - x.std()) <= 1e-7 * max(1.0, abs(x).max())


def test_merged_moments_by_hand():
    # blocks [1, 2] and [4]: mean 7/3, population variance ((4/3)² + (1/3)² + (5/3)²) / 3 = 14/9
    parts = [pl.DataFrame({"x": v}).select(moments(pl.col("x"), "x")).row(0, named=True) for v in ([1.0, 2.0], [4.0])]
    mean, std = merge_moments(parts, "x")
    assert abs(mean - 7 / 3) < 1e-15 and abs(std - (14 / 9) ** 0.5) < 1e-15


def test_m2_from_counts_by_hand():
    # max 9 → M2 starts at int(9 / 1.5) = 6; rows ≥ 6: 4 (6.5, 7, 8.2, 9) ≥ min_rows 3 and ≥ 9 − 6 → 7; rows ≥ 7: 3 ≥ 3 and ≥ 2 → 8;
    # rows ≥ 8: 2 < 3 → stop at 8
    v = np.array([0.5, 1.0, 6.5, 7.0, 8.2, 9.0])
    assert m2_threshold(v, 1.5, m1=-2.0, min_rows=3) == 8.0
    assert m2_from_histogram(9.0, {0.0: 1, 1.0: 1, 6.0: 1, 7.0: 1, 8.0: 1, 9.0: 1}, 1.5, -2.0, 3) == 8.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_blocks=st.integers(1, 6))
def test_table_scorers_from_blocks_equal_one_pass(seed, n_blocks):
    table = pairs_table(240, seed)
    whole = scorers.score(table.lazy(), ["alignment_potential", "dual_margin"], min_rows=5).collect()
    parts = blocks_of(table, n_blocks, seed)
    found = scorers.instances(["alignment_potential", "dual_margin"], {"min_rows": 5})
    stats = {name: s.merge_statistics([s.table_statistics(b.lazy()).collect().row(0, named=True) for b in parts]) for name, s in found.items()}
    out = pl.concat([scorers.score(b.lazy(), list(found), statistics=stats, min_rows=5).collect() for b in parts]).sort(SOURCE_ROW)
    assert_frame_equal(out.drop(SOURCE_ROW), whole, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_blocks=st.integers(1, 6), top=st.sampled_from([0.1, 0.4, 1.0]), k=st.integers(1, 300),
       use_k=st.booleans(), normalize=st.booleans(), where=st.sampled_from([None, "chosen_reward > 2"]))  # fmt: skip
def test_select_from_blocks_equals_one_pass(seed, n_blocks, top, k, use_k, normalize, where):
    table = pairs_table(150, seed).with_columns(margin=pl.col("chosen_reward") - pl.col("rejected_reward"))
    opts = {"where": where, "top": None if use_k else top, "top_k": k if use_k else None, "by": "margin",
            "normalize_weights": "mean" if normalize else None}  # fmt: skip
    one = Step("select")
    whole = select(table.lazy(), step=one, **opts).collect()
    parts = blocks_of(table, n_blocks, seed)
    known: dict = {}
    for phase in select_phases(**opts):
        known[phase.name] = phase.merge([phase.partial(b.lazy(), dict(known)).collect().row(0, named=True) for b in parts], dict(known))
    steps = [Step("select") for _ in parts]
    out = pl.concat([select(b.lazy(), step=s, given=given_by_phases(known), **opts).collect() for b, s in zip(parts, steps, strict=True)])
    assert_frame_equal(out.sort(SOURCE_ROW).drop(SOURCE_ROW), whole, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)
    merged: dict[str, int] = {}
    for s in steps:
        for reason, n in s.dropped.items():
            merged[reason] = merged.get(reason, 0) + n
    assert merged == one.dropped
