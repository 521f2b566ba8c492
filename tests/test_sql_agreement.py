"""The DuckDB macros registered in `curate.sql` agree with the Polars scorers on the bundled real data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import curate
from conftest import ARENA, GAME24


def test_difficulty_polars_vs_sql_on_game24():
    samples = curate.read(GAME24)
    polars_w = curate.score(samples, "difficulty").group_by("prompt_id").agg(pl.col("difficulty_weight").first()).collect()
    # game24 has no `answer` column: P_e = N - P_c
    sql_w = curate.sql(
        "select prompt_id, difficulty_weight(count(*), sum(correct::int), count(*) - sum(correct::int)) as w from samples group by 1",
        samples=GAME24,
    )
    joined = polars_w.join(sql_w, on="prompt_id", how="inner")
    assert joined.height == 200 == polars_w.height
    np.testing.assert_allclose(joined["difficulty_weight"].to_numpy(), joined["w"].to_numpy(), rtol=0, atol=1e-9)
    alpha = curate.score(samples, "difficulty", alpha=2.5, epsilon=0.5).group_by("prompt_id").agg(pl.col("difficulty_weight").first()).collect()
    sql_alpha = curate.sql(
        "select prompt_id, difficulty_weight(count(*), sum(correct::int), count(*) - sum(correct::int), alpha := 2.5, epsilon := 0.5) as w "
        "from samples group by 1",
        samples=GAME24,
    )
    j = alpha.join(sql_alpha, on="prompt_id")
    np.testing.assert_allclose(j["difficulty_weight"].to_numpy(), j["w"].to_numpy(), rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def arena_pairs() -> pl.DataFrame:
    samples = curate.read(ARENA, drop_invalid=True).with_columns(
        # deterministic stand-ins for log-probs so the log-prob macros can be compared on real text
        (pl.col("response").str.len_chars().cast(pl.Float64) / -7.0).alias("logp"),
        (pl.col("response").str.len_chars().cast(pl.Float64) / -6.5 - 3.0).alias("ref_logp"),
        (pl.col("response").str.len_chars() // 4 + 1).alias("n_tokens"),
    )
    pairs = curate.pairs(samples, strategy="all").collect()
    return curate.score(pairs.lazy(), ["dcrm", "madpo_weight", "implicit_margin", "alignment_potential"]).collect()


def test_best_of_n2_on_arena_one_pair_per_gradable_prompt():
    samples = curate.read(ARENA, drop_invalid=True)
    pairs = curate.pairs(samples, strategy="best-of-n2").collect()
    # independent count: prompts with >= 2 graded responses of different reward (and different text)
    raw = pl.read_parquet(ARENA).filter(pl.col("response").str.strip_chars() != "").rows(named=True)
    rewards: dict[str, set[float]] = {}
    for row in raw:
        if row["reward"] is not None:
            rewards.setdefault(row["prompt_id"], set()).add(row["reward"])
    expected = {pid for pid, rs in rewards.items() if len(rs) >= 2}
    assert set(pairs["prompt_id"]) == expected and pairs.height == len(expected)
    assert (pairs["chosen_reward"] > pairs["rejected_reward"]).all()
    assert pairs.columns[:4] == ["prompt_id", "prompt", "chosen", "rejected"] and "dcrm" in pairs.columns


def test_dcrm_and_madpo_polars_vs_sql_on_arena(arena_pairs):
    sql = curate.sql(
        "select dcrm(reward_margin, edit_distance, abs(ref_chosen_logps - ref_rejected_logps)) as dcrm, "
        "madpo_weight(reward_margin) as madpo, "
        "implicit_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps) as im, "
        "alignment_potential(reward_margin, logp_margin_norm(chosen_logps, rejected_logps, chosen_n_tokens, rejected_n_tokens)) as ap "
        "from pairs",
        pairs=arena_pairs,
    )
    assert sql.height == arena_pairs.height > 10_000
    for ours, theirs in (("dcrm", "dcrm"), ("madpo_weight", "madpo"), ("implicit_margin", "im"), ("alignment_potential", "ap")):
        np.testing.assert_allclose(arena_pairs[ours].to_numpy(), sql[theirs].to_numpy(), rtol=0, atol=1e-9, err_msg=ours)


def test_char_edit_distance_matches_duckdb_levenshtein_on_ascii(arena_pairs):
    # DuckDB's levenshtein() counts UTF-8 bytes, so compare where bytes and characters coincide
    ascii_only = pl.col("chosen").str.len_bytes() == pl.col("chosen").str.len_chars()
    sub = arena_pairs.filter(ascii_only & (pl.col("rejected").str.len_bytes() == pl.col("rejected").str.len_chars())).head(300)
    assert sub.height == 300
    ours = curate.score(sub.drop("edit_distance").lazy(), "edit_distance", unit="char").collect()["edit_distance"]
    theirs = curate.sql("select levenshtein(chosen, rejected) as d from pairs", pairs=sub)["d"]
    assert ours.to_list() == theirs.to_list()
