"""Whole-table statistics merged from blocks (what `--engine ray` runs), or computed in a first pass of their own
(what `curate score` and `curate select` run), give what one pass over the whole table gives.

No Ray here: the table is cut into blocks of whole prompts by hand, each block computes its partial,
the merge runs as the driver runs it, and the blocks' outputs are compared with the single pass.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import scorers
from curate.lineage import Step
from curate.schema import SOURCE_ROW
from curate.scoring import statistics_pass as score_statistics
from curate.selection import given_by_phases, select, select_phases
from curate.selection import statistics_pass as select_statistics
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


def with_odd_values(table: pl.DataFrame, odd: str | None) -> pl.DataFrame:
    """`margin` with every third value NaN or null (`odd`), or unchanged."""
    if odd is None:
        return table
    return table.with_columns(pl.when(pl.int_range(pl.len()) % 3 == 0).then(float("nan") if odd == "nan" else None).otherwise("margin").alias("margin"))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_blocks=st.integers(1, 6), top=st.sampled_from([0.1, 0.4, 1.0]), k=st.integers(1, 300),
       use_k=st.booleans(), normalize=st.booleans(), where=st.sampled_from([None, "chosen_reward > 2"]), odd=st.sampled_from([None, "nan", "null"]))  # fmt: skip
def test_select_from_blocks_equals_one_pass(seed, n_blocks, top, k, use_k, normalize, where, odd):
    table = with_odd_values(pairs_table(150, seed).with_columns(margin=pl.col("chosen_reward") - pl.col("rejected_reward")), odd)
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


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), top=st.sampled_from([0.1, 0.4, 1.0]), k=st.integers(1, 300), use_k=st.booleans(),
       normalize=st.booleans(), where=st.sampled_from([None, "chosen_reward > 2"]), odd=st.sampled_from([None, "nan", "null"]))  # fmt: skip
def test_select_after_a_statistics_pass_equals_one_pass(seed, top, k, use_k, normalize, where, odd):
    """The cut and mean weight from a first pass keep the rows the one-pass rank keeps, with the same weights and drop
    counts; NaN values rank last (as in the one-pass rank) and null ones are dropped, counted."""
    table = with_odd_values(pairs_table(150, seed).with_columns(margin=pl.col("chosen_reward") - pl.col("rejected_reward")), odd)
    opts = {"where": where, "top": None if use_k else top, "top_k": k if use_k else None, "by": "margin",
            "normalize_weights": "mean" if normalize else None}  # fmt: skip
    one, two = Step("select"), Step("select")
    whole = select(table.lazy(), step=one, **opts).collect()
    found = select_statistics(table.lazy(), **opts)
    assert found is not None and "cut" in found
    out = select(table.lazy(), step=two, given=found, **opts).collect()
    assert_frame_equal(out, whole, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)
    assert two.dropped == one.dropped


def test_select_needs_no_statistics_pass_without_a_whole_table_value():
    table = pairs_table(30, 1).lazy()
    assert select_statistics(table, where="chosen_reward > 2") is None
    assert select_statistics(table, top=0.5, by="chosen_reward", per_prompt=True) is None
    assert select_statistics(table, top=0.5, by="chosen_reward", allow_file_access=True) is None  # one DuckDB query, one pass
    assert select_statistics(table, normalize_weights="mean") == {"mean_weight": pytest.approx(table.collect()["weight"].mean())}


@pytest.mark.parametrize("top", [None, 0.5])
def test_block_phases_with_a_weight_column_run_nothing_and_report_its_bad_values(monkeypatch, top):
    """A phase's partial plans its rows without running the `--weight` check (the writing pass runs it, with the output);
    a negative weight that makes the merged mean unusable is still reported as itself, with its row, not as that mean."""
    table = pairs_table(30, 3).with_columns(w=pl.Series([-40.0] + [1.0] * 29))  # mean -0.37: no mean to divide by
    opts = {"top": top, "by": "chosen_reward" if top else None, "weight": "w", "normalize_weights": "mean"}
    parts = blocks_of(table, 3, 0)
    collected: list[str] = []
    original = pl.LazyFrame.collect
    monkeypatch.setattr(pl.LazyFrame, "collect", lambda self, *a, **k: collected.append("collect") or original(self, *a, **k))
    known: dict = {}
    for phase in select_phases(**opts):
        plans = [phase.partial(b.lazy(), dict(known)) for b in parts]
        assert collected == [], phase.name  # planning a partial executes nothing
        known[phase.name] = phase.merge([original(plan).row(0, named=True) for plan in plans], dict(known))
    given_values = given_by_phases(known)
    assert given_values["mean_weight"] is None  # unusable: each block computes its own, and its checks report first
    first = next(b for b in parts if (b[SOURCE_ROW] == 0).any())
    step = Step("select")
    step.deferred_checks = True  # as the pass that writes a block runs it
    select(first.lazy(), step=step, given=given_values, **opts)
    with pytest.raises(scorers.SchemaError, match=r"--weight column has null, non-finite or negative values.*first rows \(0-based\): 0\."):
        step.settle(pl.collect_all(step.pending_counts()))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_score_after_a_statistics_pass_equals_one_pass(seed):
    table = pairs_table(240, seed).lazy()
    names, params = ["reward_margin", "alignment_potential", "dual_margin"], {"min_rows": 5, "mode": "mul"}
    whole = scorers.score(table, names, **params).collect()
    found = score_statistics(table, names, params)
    assert set(found) == {"alignment_potential", "dual_margin"}
    assert_frame_equal(scorers.score(table, names, statistics=found, **params).collect(), whole, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


def test_score_keeps_one_pass_when_a_whole_table_scorer_reads_a_model_scorer():
    """A scorer that is not `vectorized` (a model, Python per batch) is not run twice: no statistics pass reads it."""
    from scorers.base import _REGISTRY, Scorer

    class Rescored(Scorer):
        level = "pair"
        requires = ("chosen_reward",)
        produces = ("chosen_reward",)

        def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
            return frame.with_columns(pl.col("chosen_reward").map_batches(lambda s: s + 1.0, return_dtype=pl.Float64))

    scorers.registry()
    scorers.register("rescored")(Rescored)
    try:
        table = pairs_table(30, 2).lazy()
        assert score_statistics(table, ["rescored", "alignment_potential"], {}) is None
        assert score_statistics(table, ["alignment_potential", "rescored"], {}) is not None  # it runs after: not read
        assert score_statistics(table, ["reward_margin"], {}) is None  # row by row: nothing to compute first
    finally:
        _REGISTRY.pop("rescored", None)
