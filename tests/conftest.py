"""Shared fixtures: offline settings, paths to bundled data, and small hand-made tables written to disk."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Ray: token authentication (its default for new clusters) with this session's own token, kept out of ~/.ray; set before
# Ray is imported (it reads them once)
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data"
GSM8K = DATA / "gsm8k_6systems.parquet"
ARENA = DATA / "arena_v1_17models.parquet"
GAME24 = DATA / "game24_gpt4_100samples.parquet"


def curate_here(*args: object) -> str:
    """Run a curate command in this process and return its output (reference outputs, without an interpreter start-up each)."""
    from typer.testing import CliRunner

    from curate.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def write_parquet(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    pl.DataFrame(data).write_parquet(path)
    return path


@pytest.fixture
def reward_samples() -> pl.DataFrame:
    """Three prompts with rewards, worked through by hand in the tests.

    A: a1=3, a2=1, a3=2      -> reward-ordered pairs (a1,a2) (a1,a3) (a3,a2)
    B: b1=5, b2=5            -> a tie: no pair
    C: c1=0, c2=null, c3=4   -> c2 is ungraded: only (c3,c1)
    """
    return pl.DataFrame(
        {
            "prompt_id": ["A", "A", "A", "B", "B", "C", "C", "C"],
            "prompt": ["pa", "pa", "pa", "pb", "pb", "pc", "pc", "pc"],
            "response": ["a1", "a2", "a3", "b1", "b2", "c1", "c2", "c3"],
            "model": ["m1", "m2", "m3", "m1", "m2", "m1", "m2", "m3"],
            "reward": [3.0, 1.0, 2.0, 5.0, 5.0, 0.0, None, 4.0],
        }
    )


@pytest.fixture
def math_samples() -> pl.DataFrame:
    """Three math prompts with answers, worked through by hand in the tests.

    P: p1 correct (answer 4); p2, p3 wrong with answer 7; p4 wrong with answer 9.
       N=4, P_c=1, P_e=2 -> w = max(1, 1 + 1*2/1 + 1/4) = 3.25; rejected from class "7".
    Q: all wrong, answers 5 and 6, gold "G".  N=2, P_c=0, P_e=1 -> w = 1 + 1*1/2 = 1.5; chosen = gold.
    R: all correct -> no pair.
    """
    return pl.DataFrame(
        {
            "prompt_id": ["P", "P", "P", "P", "Q", "Q", "R", "R"],
            "prompt": ["pp"] * 4 + ["pq"] * 2 + ["pr"] * 2,
            "response": ["p1", "p2", "p3", "p4", "q1", "q2", "r1", "r2"],
            "model": ["m"] * 8,
            "correct": [True, False, False, False, False, False, True, True],
            "answer": ["4", "7", "7", "9", "5", "6", "1", "1"],
            "gold": ["4", "4", "4", "4", "G", "G", "1", "1"],
        }
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama (hidden 128, 2 layers, 2 heads of dim 64, vocab 512) built offline once per session."""
    pytest.importorskip("torch")
    from curate.models.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def preference_frames(n: int = 64) -> dict[str, pl.DataFrame]:
    """A learnable synthetic task: the right answer to "i plus 1" beats "bad answer"."""
    prompts = [f"{i} plus 1 is" for i in range(n)]
    right = [f"{i + 1}. The answer is {i + 1}." for i in range(n)]
    short = [f"{i + 1}." for i in range(n)]
    return {
        "pairs": pl.DataFrame({"prompt": prompts, "chosen": right, "rejected": ["bad answer"] * n}),
        "triplets": pl.DataFrame({"prompt": prompts, "chosen": right, "chosen_target": short, "rejected": ["bad answer"] * n}),
        "ranked": pl.DataFrame({"prompt": prompts, "responses": [[r, s, "bad answer"] for r, s in zip(right, short, strict=True)],
                                "rewards": [[3.0, 2.0, 1.0]] * n}),  # fmt: skip
    }


@pytest.fixture(scope="session")
def tiny_plain(tmp_path_factory) -> Path:
    """The tiny Llama without a chat template."""
    pytest.importorskip("torch")
    from curate.models.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny_plain") / "llama", chat_template=False)


@pytest.fixture(scope="session")
def tiny_reward(tmp_path_factory) -> Path:
    """A tiny Llama sequence classifier with one label: a reward model."""
    pytest.importorskip("torch")
    from curate.models.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny_rm") / "rm", reward_model=True)


RECIPES = ROOT / "examples" / "recipes"


@pytest.fixture(scope="session")
def ran(tmp_path_factory) -> dict[str, Path]:
    """Every bundled recipe, run once per session (the recipe and report tests read their outputs)."""
    import subprocess
    import sys

    pytest.importorskip("torch")
    base = tmp_path_factory.mktemp("recipes")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    done = {}
    for recipe in sorted(RECIPES.glob("*.yaml")):
        # the demo recipe through `curate demo` (the same recipe: test_cli checks that command on this output)
        args = ["demo", "--out"] if recipe.stem == "demo" else ["run", str(recipe), "--workdir"]
        r = subprocess.run([sys.executable, "-m", "curate.cli", *args, str(base / recipe.stem)], capture_output=True, text=True, env=env,
                           timeout=900)  # fmt: skip
        assert r.returncode == 0, f"{recipe.name}:\n{r.stderr[-3000:]}"
        done[recipe.stem] = base / recipe.stem
    return done


# --- a real two-node Ray cluster -----------------------------------------------------------------------

RAY_BIN = Path(sys.executable).with_name("ray")


def ray_env() -> dict[str, str]:
    """The environment of the commands: this one's, with the cluster's RAY_ADDRESS once the fixture set it."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LAST_CLUSTER_TEST: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Note the last test that uses the Ray cluster: the cluster stops after it, not at the end of the session."""
    users = [item.nodeid for item in items if "cluster" in getattr(item, "fixturenames", ())]
    _LAST_CLUSTER_TEST[:] = users[-1:]


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _LAST_CLUSTER_TEST and item.nodeid == _LAST_CLUSTER_TEST[0]:
        _stop_cluster()


def _stop_cluster(*, always: bool = False) -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    if os.environ.pop("RAY_ADDRESS", None) is not None or always:
        subprocess.run([str(RAY_BIN), "stop", "--force"], env=ray_env(), capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> str:
    """`ray start --head --num-cpus 1` plus one worker node (`ray start --address ...`): the address to pass as --ray-address."""
    ray = pytest.importorskip("ray")
    tmp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--object-store-memory", str(300 * 2**20), "--disable-usage-stats"]
    head = [str(RAY_BIN), "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
            "--temp-dir", str(tmp), *common]  # fmt: skip
    subprocess.run(head, check=True, env=ray_env(), capture_output=True, timeout=180)
    try:
        subprocess.run([str(RAY_BIN), "start", "--address", address, "--node-ip-address", "127.0.0.1", *common], check=True, env=ray_env(),
                       capture_output=True, timeout=180)  # fmt: skip
        os.environ["RAY_ADDRESS"] = address
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        deadline = time.time() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.time() < deadline:
            time.sleep(0.5)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2, "the worker node did not join"
        yield address
    finally:
        _stop_cluster(always=True)  # if the last test that used it did not already (a second stop is harmless)


def run_killing_a_worker(args: list[object], ready, title_part: str, *, timeout: float = 600) -> tuple[int, str, list[str]]:
    """Run `curate ARGS`; once `ready()` holds, SIGKILL one Ray worker process whose title (`ray::...`) names `title_part`.

    Returns the command's exit code, its stderr, and the titles of the processes killed (none if it ended first).
    """
    import signal
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ray_env())  # fmt: skip
    killed: list[str] = []

    def kill_one() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            if ready():
                r = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True)
                for pid, what in (line.strip().split(None, 1) for line in r.stdout.splitlines()[1:]):
                    if what.startswith("ray::") and title_part in what:
                        os.kill(int(pid), signal.SIGKILL)
                        killed.append(what)
                        return
            time.sleep(0.05)

    thread = threading.Thread(target=kill_one)
    thread.start()
    _, err = proc.communicate(timeout=timeout)
    thread.join()
    return proc.returncode, err, killed
