"""One execution per command: a command's plan runs once, and the rows it writes, its checks and its drop counts come from that run.

Two probes, both in this process (the commands run through `curate run`'s in-process entry point):
- a plugin scorer that counts the rows of every batch it is called on: it sees each candidate pair
  exactly once per command (a second execution of the plan, or a count that re-ran it, would double it);
- Polars' execution entry points, wrapped to count calls: every command executes one `collect_all`
  (output, checks and counts together) and nothing else, but for best-of-N² by DCRM, whose exact
  shortcut first collects the narrow (prompt, row, reward, response) table to find the few distances
  it needs, and for the commands that need a whole-table value (a z-score's mean and std, a global
  top's cut, a mean weight): they first collect it from the few numeric columns it reads (a
  statistics pass), so that the pass that writes streams instead of holding the table. Queries that
  read no input (over data already in memory, or reading back the command's own output) run no step
  again and are not counted.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

import pytest

from conftest import ARENA, GSM8K

ROWS_SEEN: list[int] = []


def _counting_scorer():
    import scorers
    from scorers import Scorer

    class Counted(Scorer):
        """len(chosen) − len(rejected), computed in a Python batch function that records the size of each batch it gets."""

        name = "counted"
        level = "pair"
        requires = ("chosen", "rejected")
        produces = ("counted",)
        citation = "test probe"

        def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
            def longer(s: pl.Series) -> pl.Series:
                ROWS_SEEN.append(len(s))
                return (s.struct.field("c") - s.struct.field("r")).cast(pl.Float64)

            both = pl.struct(c=pl.col("chosen").str.len_chars(), r=pl.col("rejected").str.len_chars())
            return frame.with_columns(both.map_batches(longer, return_dtype=pl.Float64).alias("counted"))

    scorers.registry()  # the built-ins first, then the probe
    scorers.register("counted")(Counted)
    return Counted


@pytest.fixture(scope="module")
def counted():
    from scorers.base import _REGISTRY

    cls = _counting_scorer()
    yield cls
    _REGISTRY.pop("counted", None)


def run(*args: object) -> None:
    from curate.cli import invoke_command

    assert invoke_command([str(a) for a in args]) == 0


def candidate_pairs(src: Path, **read: bool) -> int:
    """Reward-ordered pairs per prompt (graded rows, distinct rewards), worked out with plain Python from the file."""
    import curate

    frame = curate.read(src, **read).collect()
    total = 0
    for rewards in frame.filter(pl.col("reward").is_not_null()).group_by("prompt_id").agg("reward")["reward"].to_list():
        total += sum(1 for i, a in enumerate(rewards) for b in rewards[i + 1 :] if a != b)
    return total


@pytest.mark.parametrize("strategy", ["all", "best-of-n2"])
def test_a_ranking_scorer_sees_each_candidate_pair_once(counted, tmp_path, strategy):
    ROWS_SEEN.clear()
    out = tmp_path / "pairs.parquet"
    run("pairs", ARENA, "--drop-invalid", "--strategy", strategy, "--by", "counted", "-o", out)
    assert sum(ROWS_SEEN) == candidate_pairs(ARENA, drop_invalid=True) > 0
    if strategy == "all":
        assert pl.read_parquet(out).height == sum(ROWS_SEEN)


@pytest.mark.parametrize("strategy", ["all", "best-of-n2", "best-vs-worst", "correct-vs-incorrect"])
def test_score_sees_each_pair_once_for_every_strategy(counted, tmp_path, strategy):
    src, read = (GSM8K, []) if strategy == "correct-vs-incorrect" else (ARENA, ["--drop-invalid"])
    pairs = tmp_path / "pairs.parquet"
    run("pairs", src, *read, "--strategy", strategy, "-o", pairs)
    n = pl.read_parquet(pairs).height
    ROWS_SEEN.clear()
    run("score", pairs, "--scorer", "counted", "-o", tmp_path / "scored.parquet")
    assert sum(ROWS_SEEN) == n > 0
    ROWS_SEEN.clear()  # and with a filter and a top fraction on the scorer's output, in the same one run
    run("select", pairs, "--where", "weight > 0", "--top", 0.5, "--by", "counted", "-o", tmp_path / "top.parquet")
    assert sum(ROWS_SEEN) == n


def test_a_statistics_pass_runs_no_scorer_again(counted, tmp_path):
    """A z-score's statistics pass reads its own columns: a plugin scorer before it in the chain still runs once."""
    pairs = tmp_path / "pairs.parquet"
    run("pairs", ARENA, "--drop-invalid", "--strategy", "all", "-o", pairs)
    scored = with_logps(pairs, tmp_path / "logps.parquet")
    n = pl.read_parquet(scored).height
    ROWS_SEEN.clear()
    run("score", scored, "--scorer", "counted", "--scorer", "alignment_potential", "-o", tmp_path / "scored.parquet")
    assert sum(ROWS_SEEN) == n > 0


def test_statistics_passes_read_a_few_columns(columns_read, tmp_path):
    """The first pass of a global top, a mean weight or a z-score reads the numeric columns it needs, never the texts."""
    pairs = tmp_path / "pairs.parquet"
    run("pairs", ARENA, "--drop-invalid", "--strategy", "all", "-o", pairs)
    scored = with_logps(pairs, tmp_path / "logps.parquet")
    width = len(pl.read_parquet_schema(scored))
    commands = {  # the columns each pass needs: rewards (and weight); rewards, log-probs and token counts
        3: ["select", scored, "--top", 0.3, "--by", "reward_margin", "--normalize-weights", "mean", "-o", tmp_path / "t.parquet"],
        6: ["score", scored, "--scorer", "alignment_potential", "-o", tmp_path / "a.parquet"],
    }
    for most, args in commands.items():
        columns_read.clear()
        run(*args)
        assert columns_read and all(n <= most and of == width for n, of in columns_read), (args[0], columns_read, width)


def reruns_nothing(plan: str) -> bool:
    """A plan that reads no input of the command: only the command's own temporary output, or nothing but in-memory data."""
    files = [f for scan in re.findall(r"SCAN \[([^\]]*)\]", plan) for f in scan.split(", ")]
    return all(re.search(r"/\.[^/]*\.tmp$", f) for f in files)


@pytest.fixture
def executions(monkeypatch):
    """Every call that executes a Polars plan, by name."""
    calls: list[str] = []

    def counting(owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            # a lazy sink is a plan, run later by `collect_all`; reading a column back from the output just written (its
            # temporary, `.NAME.PID.XXXX.tmp`) runs no step again, nor does a query over data already in memory (no scan:
            # e.g. the edit distance splitting a batch's texts into words on every core)
            if not kwargs.get("lazy") and not (name == "collect" and reruns_nothing(args[0].explain())):
                calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for name in ("collect", "collect_batches", "sink_parquet", "sink_ipc", "sink_csv", "sink_batches"):
        counting(pl.LazyFrame, name)
    counting(pl, "collect_all")
    return calls


@pytest.fixture
def columns_read(monkeypatch):
    """For every `collect` (a statistics pass), how many of its input file's columns it reads: (read, of)."""
    read: list[tuple[int, int]] = []
    original = pl.LazyFrame.collect

    def wrapper(self, *args, **kwargs):
        read.extend((int(a), int(b)) for a, b in re.findall(r"PROJECT (\d+)/(\d+) COLUMNS", self.explain()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pl.LazyFrame, "collect", wrapper)
    return read


def with_logps(src: Path, out: Path) -> Path:
    """The pairs at `src` with policy log-probs and token counts (made up from the texts' lengths), for the scorers that read them."""
    n_c, n_r = pl.col("chosen").str.len_chars() // 4 + 1, pl.col("rejected").str.len_chars() // 4 + 1
    pl.read_parquet(src).with_columns(chosen_logps=-1.5 * n_c, rejected_logps=-2.0 * n_r, chosen_n_tokens=n_c, rejected_n_tokens=n_r).write_parquet(out)
    return out


def test_each_command_executes_its_plan_once(executions, tmp_path):
    pairs = tmp_path / "all.parquet"
    commands = {
        "ingest": ["ingest", ARENA, "--drop-invalid", "--dedup", "-o", tmp_path / "s.parquet"],
        "pairs correct-vs-incorrect": ["pairs", GSM8K, "--strategy", "correct-vs-incorrect", "-o", tmp_path / "c.parquet"],
        "pairs best-vs-worst": ["pairs", ARENA, "--drop-invalid", "--strategy", "best-vs-worst", "-o", tmp_path / "b.parquet"],
        "pairs all": ["pairs", ARENA, "--drop-invalid", "--strategy", "all", "-o", pairs],
        "pairs best-of-n2 --by reward_margin": ["pairs", ARENA, "--drop-invalid", "--by", "reward_margin", "-o", tmp_path / "r.parquet"],
        "triplets": ["triplets", ARENA, "--drop-invalid", "--target-model", "Llama-2-70b-chat", "--rejected-from", "any", "-o", tmp_path / "t.parquet"],
        "rank": ["rank", ARENA, "--drop-invalid", "-o", tmp_path / "k.parquet"],
        "score": ["score", pairs, "--scorer", "reward_margin", "--scorer", "edit_distance", "-o", tmp_path / "sc.parquet"],
        "select": ["select", pairs, "--where", "reward_margin > 1", "--top", 0.5, "--by", "reward_margin", "--per-prompt", "-o", tmp_path / "sel.parquet"],
        "export": ["export", pairs, "--trl", "-o", tmp_path / "e.jsonl"],
    }
    for name, args in commands.items():
        executions.clear()
        run(*args)
        assert executions == ["collect_all"], (name, executions)
    # a whole-table value first (a statistics pass over a few numeric columns), then the one run that writes
    scored = with_logps(pairs, tmp_path / "logps.parquet")
    passes = {
        "select --top (global)": ["select", pairs, "--where", "reward_margin > 1", "--top", 0.5, "--by", "reward_margin", "-o", tmp_path / "g.parquet"],
        "select --normalize-weights": ["select", pairs, "--weight", "weight", "--normalize-weights", "mean", "-o", tmp_path / "n.parquet"],
        "score alignment_potential": ["score", scored, "--scorer", "alignment_potential", "-o", tmp_path / "ap.parquet"],
    }
    for name, args in passes.items():
        executions.clear()
        run(*args)
        assert executions == ["collect", "collect_all"], (name, executions)
    # a scorer that reads the whole table only for thresholds it was not given: given them (mode=add needs none), no first pass
    with_refs = tmp_path / "refs.parquet"
    pl.read_parquet(scored).with_columns(ref_chosen_logps=pl.col("chosen_logps") - 1, ref_rejected_logps=pl.col("rejected_logps")).write_parquet(with_refs)
    executions.clear()
    run("score", with_refs, "--scorer", "dual_margin", "--param", "mode=add", "-o", tmp_path / "dm.parquet")
    assert executions == ["collect_all"], executions
    executions.clear()
    run("pairs", ARENA, "--drop-invalid", "--strategy", "best-of-n2", "-o", tmp_path / "d.parquet")
    assert executions == ["collect", "collect_all"], executions  # the narrow table for the DCRM shortcut, then the one run
