"""`--engine ray` on a real two-node local Ray cluster: the same rows as the single-machine commands.

The cluster is `ray start --head --num-cpus 1` plus one worker node (`ray start --address ...`), started
once per session in a temporary folder and stopped at the end (no `local_mode`). Each test runs the
single-machine command and the Ray one on the bundled data and compares the outputs row for row after
the same sort (Ray writes one shard per bucket of prompts).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import ARENA, DATA, GAME24, GSM8K, curate_here, run_killing_a_worker
from tests.conftest import ray_env as env

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


def shards(folder: Path) -> pl.DataFrame:
    files = sorted((folder / "data").glob("*.parquet"))
    assert files, f"no shards in {folder}"
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical")


def same_rows(single: pl.DataFrame, distributed: pl.DataFrame, keys: list[str], *, rtol: float = 0.0) -> None:
    assert single.columns == distributed.columns
    assert single.height == distributed.height
    a, b = single.sort(keys), distributed.sort(keys)
    if rtol:
        assert_frame_equal(a, b, check_exact=False, rel_tol=rtol, abs_tol=rtol)
    else:
        assert_frame_equal(a, b)


def with_logps(tmp_path: Path, src: Path = ARENA) -> Path:
    """Arena samples with seeded policy/reference log-probs and token counts (for the margin scorers)."""
    df = pl.read_parquet(src).filter(pl.col("response").str.strip_chars() != "")
    rng = np.random.default_rng(7)
    n = df.height
    tokens = rng.integers(5, 60, n)
    df = df.with_columns(
        logp=pl.Series(-tokens * rng.uniform(0.5, 2.0, n)),
        ref_logp=pl.Series(-tokens * rng.uniform(0.5, 2.0, n)),
        n_tokens=pl.Series(tokens.astype(np.int64)),
    )
    path = tmp_path / "arena_logps.parquet"
    df.write_parquet(path, row_group_size=700)  # several read tasks
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", *args], capture_output=True, text=True, env=env(), timeout=600)


def both(cmd: list[str], src: Path, tmp_path: Path, name: str, *extra: str) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """The single-machine output and the Ray one (through the CLI), and the Ray run's stderr."""
    single = tmp_path / f"{name}.parquet"
    extra = (*extra, "--drop-invalid")  # the bundled arena data has blank responses: both engines drop and count them
    curate_here(*cmd, src, "-o", single, *extra)
    folder = tmp_path / f"{name}_ray"
    r2 = run(*cmd, str(src), "-o", str(folder), *extra, "--engine", "ray", "--buckets", "5")
    assert r2.returncode == 0, r2.stderr
    assert "starting a local Ray" not in r2.stderr  # it joined the two-node cluster
    return pl.read_parquet(single), shards(folder), r2.stderr


PAIR_KEYS = ["prompt_id", "pair_id"]


@pytest.mark.parametrize(
    "src,strategy",
    [(ARENA, "best-of-n2"), (ARENA, "best-vs-worst"), (ARENA, "all"), (GSM8K, "correct-vs-incorrect"), (GAME24, "correct-vs-incorrect")],
)
def test_pairs_equal_single_machine(cluster, tmp_path, src, strategy):
    single, distributed, err = both(["pairs", "--strategy", strategy], src, tmp_path, strategy)
    same_rows(single, distributed, PAIR_KEYS)
    # the drop accounting is the single-machine one, summed over buckets
    from curate.io import scan

    assert scan(tmp_path / f"{strategy}_ray")[1].steps[-1].counts == scan(tmp_path / f"{strategy}.parquet")[1].steps[-1].counts


def test_tables_without_a_prompt_column_equal_single_machine(cluster, tmp_path):
    """Conversations given as `messages`, and pairs in TRL's implicit-prompt form: the buckets key on the prompts
    validation takes from them (a `prompt` column was assumed before, and the read tasks failed)."""
    hh = DATA / "hh_harmless_conversations.parquet"
    single, distributed, _ = both(["pairs", "--strategy", "best-vs-worst"], hh, tmp_path, "hh")
    same_rows(single, distributed, PAIR_KEYS)
    explicit = single.select("prompt", "chosen", "rejected")
    implicit = tmp_path / "implicit.parquet"
    explicit.select(pl.concat_list("prompt", c).alias(c) for c in ("chosen", "rejected")).write_parquet(implicit, row_group_size=40)  # several read tasks
    single, distributed, _ = both(["export", "--trl"], implicit, tmp_path, "trl")
    same_rows(single, distributed, ["prompt", "chosen", "rejected"])
    assert single.height == explicit.height and single.sort("chosen")["prompt"].to_list() == explicit.sort("chosen")["prompt"].to_list()


def test_table_level_scorers_equal_single_machine(cluster, tmp_path):
    """alignment_potential (table z-scores) and dual_margin (data-driven M2) merge their statistics across buckets."""
    src = with_logps(tmp_path)
    pairs = tmp_path / "all.parquet"
    curate_here("pairs", src, "--strategy", "all", "-o", pairs, "--drop-invalid")
    single, distributed, _ = both(["score", "-s", "alignment_potential", "-s", "dual_margin"], pairs, tmp_path, "scored")
    same_rows(single, distributed, PAIR_KEYS, rtol=1e-12)
    import json

    manifest = json.loads((tmp_path / "scored_ray" / "curate_manifest.json").read_text())
    assert manifest["rows"] == single.height == sum(s["rows"] for s in manifest["shards"])


@pytest.fixture(scope="module")
def arena_pairs(tmp_path_factory) -> Path:
    pairs = tmp_path_factory.mktemp("arena") / "all.parquet"
    curate_here("pairs", ARENA, "--strategy", "all", "-o", pairs, "--drop-invalid")
    return pairs


@pytest.mark.parametrize(
    "args",
    [
        ["--top", "0.4", "--by", "reward_margin"],
        ["--top-k", "37", "--by", "reward_margin", "--normalize-weights", "mean"],
        ["--where", "chosen_reward - rejected_reward > 2", "--normalize-weights", "mean"],
        ["--top", "0.5", "--by", "reward_margin", "--per-prompt"],
    ],
)
def test_select_equal_single_machine(cluster, tmp_path, arena_pairs, args):
    pairs = arena_pairs
    single, distributed, _ = both(["select"], pairs, tmp_path, "selected", *args)
    same_rows(single, distributed, PAIR_KEYS, rtol=1e-12)


def test_triplets_rank_and_export_equal_single_machine(cluster, tmp_path):
    single, distributed, _ = both(["rank"], ARENA, tmp_path, "ranked")
    same_rows(single, distributed, ["prompt_id"])
    single, distributed, _ = both(["triplets", "--target-model", "gpt-3.5-turbo", "--rejected-from", "any"], ARENA, tmp_path, "triplets")
    same_rows(single, distributed, PAIR_KEYS)
    pairs = tmp_path / "bvw.parquet"
    curate_here("pairs", ARENA, "--strategy", "best-vs-worst", "-o", pairs, "--drop-invalid")
    single, distributed, _ = both(["export", "--trl"], pairs, tmp_path, "trl")
    same_rows(single, distributed, ["prompt", "chosen", "rejected"])


def test_bad_input_names_the_file_and_row(cluster, tmp_path):
    df = pl.read_parquet(ARENA).filter(pl.col("response").str.strip_chars() != "")
    df = df.with_columns(pl.when(pl.int_range(pl.len()) == 4321).then(float("nan")).otherwise(pl.col("reward")).alias("reward"))
    bad = tmp_path / "bad.parquet"
    df.write_parquet(bad, row_group_size=1000)
    out = tmp_path / "out"
    r = run("pairs", str(bad), "--strategy", "best-vs-worst", "-o", str(out), "--engine", "ray")
    assert r.returncode == 2, r.stderr
    err = " ".join(r.stderr.split())
    assert str(bad) in err and "4321" in err and "`reward`" in err and "Traceback" not in err, r.stderr
    assert not out.exists()


def test_worker_killed_mid_job_gives_the_same_output(cluster, tmp_path):
    """SIGKILL a Ray worker process while buckets run: Ray retries the task and the output is unchanged."""
    src = with_logps(tmp_path)
    single = tmp_path / "single.parquet"
    curate_here("pairs", src, "--strategy", "all", "-o", single, "--drop-invalid")
    folder = tmp_path / "killed"
    work = tmp_path / ".killed.curate-ray" / "steps"
    args = ["pairs", src, "--strategy", "all", "-o", folder, "--engine", "ray", "--buckets", 12, "--drop-invalid"]
    # once some buckets finished, others are running
    code, err, killed = run_killing_a_worker(args, lambda: work.is_dir() and any(work.iterdir()), "first_batch", timeout=600)
    assert code == 0, f"killed {killed}:\n" + err[-3000:]
    assert killed, "no worker was running a task to kill"
    same_rows(pl.read_parquet(single), shards(folder), PAIR_KEYS)


def test_a_split_of_a_hub_folder_reads_as_on_one_machine(cluster, tmp_path):
    """--split picks the input files; each bucket then reads its one file (no split left to apply)."""
    hub = tmp_path / "hub"
    curate_here("export", GSM8K, "-o", hub, "--format", "hf")
    single, distributed, _ = both(["pairs", "--strategy", "correct-vs-incorrect", "--split", "train"], hub, tmp_path, "split")
    same_rows(single, distributed, PAIR_KEYS)
