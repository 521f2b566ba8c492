"""`curate run`: the bundled recipes end to end, skipping what is up to date, surviving SIGKILL, and refusing bad recipes."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT

pytest.importorskip("torch")
RECIPES = ROOT / "examples" / "recipes"
BUNDLED = sorted(p.stem for p in RECIPES.glob("*.yaml"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def cli(*args: object, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)


def outputs(workdir: Path) -> dict[str, str]:
    """Content fingerprint of every output (the run state, which records timings, aside)."""
    from curate.fingerprint import content_hash

    return {p.name: content_hash([p]) for p in sorted(workdir.iterdir()) if not p.name.startswith(".")}


def test_every_bundled_recipe_runs_and_a_second_run_skips_everything_fast(ran):
    from rich.console import Console

    from curate.cli import invoke_command, recipe_commands
    from curate.recipes import Runner, load_recipe

    assert set(BUNDLED) >= {"demo", "difficulty_dpo", "dcrm_arena", "alignment_potential", "dual_margin", "madpo", "wrpo", "multi_dpo", "delta"}
    before = {name: outputs(w) for name, w in ran.items()}
    commands = recipe_commands()
    t0 = time.perf_counter()
    plans = {name: Runner(load_recipe(RECIPES / f"{name}.yaml", commands), commands, invoke_command, w).run(console=Console(quiet=True))
             for name, w in ran.items()}  # fmt: skip
    seconds = time.perf_counter() - t0
    assert seconds < 5.0, seconds  # every step of every recipe checked and skipped
    for name, workdir in ran.items():
        assert [p.action for p in plans[name]] == ["skip"] * len(plans[name]), name
        assert outputs(workdir) == before[name]
        assert (workdir / "report.html").exists()


def test_final_dataset_card_lists_every_step(ran):
    card = (ran["dcrm_arena"] / "hub" / "README.md").read_text()
    assert "| 1 | ingest |" in card and "| 2 | pairs |" in card and "| 3 | export |" in card
    assert "license: apache-2.0" in card


def test_recipe_headers_cite_their_paper():
    for name in BUNDLED:
        head = (RECIPES / f"{name}.yaml").read_text().split("\ntitle:")[0]
        assert head.startswith("#") and ("Section" in head or name == "demo"), name
        assert "Reconstruction" in head or name in ("demo",), name


DATA_RECIPE = """
inputs:
  gsm8k: {gsm8k}
steps:
  - id: verified
    run: verify
    with: {{task: math}}
  - id: pairs
    run: pairs
    with: {{strategy: correct-vs-incorrect}}
  - id: selected
    run: select
    with: {{normalize-weights: mean}}
  - id: hub
    run: export
    with: {{format: hf}}
"""


def test_killed_recipe_reruns_to_identical_outputs(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DATA_RECIPE.format(gsm8k=ROOT / "examples/data/gsm8k_6systems.parquet"))
    assert cli("run", recipe, "--workdir", tmp_path / "whole").returncode == 0
    want = outputs(tmp_path / "whole")
    rng = random.Random("curate-kill-recipe")
    work = tmp_path / "killed"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(recipe), "--workdir", str(work)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(0.5)  # verify's worker processes die with their parent: no orphan keeps running
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(work) not in ps, [line for line in ps.splitlines() if str(work) in line]
    r = cli("run", recipe, "--workdir", work)
    assert r.returncode == 0, r.stderr
    assert outputs(work) == want
    again = cli("run", recipe, "--workdir", work)
    assert re.findall(r"│ (run|skip)\s+│", again.stderr) == ["skip"] * 4


def test_an_interrupted_model_stage_resumes_and_stale_shards_are_removed(tmp_path):
    """A recipe step killed mid-stage leaves `OUT.shards`: the same step resumes from it; another step's leftovers are removed."""
    from curate.cli import invoke_command, recipe_commands
    from curate.recipes import Runner, load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(DATA_RECIPE.format(gsm8k=ROOT / "examples/data/gsm8k_6systems.parquet").replace("{task: math}", "{task: math, shard-size: 3000}"))
    assert cli("run", recipe, "--workdir", tmp_path / "whole").returncode == 0
    want = outputs(tmp_path / "whole")
    commands = recipe_commands()
    for running, note in ((None, "resuming from verified.parquet.shards"), ("0" * 40, "removing verified.parquet.shards")):
        work = tmp_path / f"w{note[:3]}"
        runner = Runner(load_recipe(recipe, commands), commands, invoke_command, work)
        verified = runner.plan()[0]
        work.mkdir()
        assert invoke_command([*verified.argv, "--max-shards", "1"]) == 0  # one of three shards done, as if killed then
        assert len(list((work / "verified.parquet.shards").glob("shard-*.parquet"))) == 1
        runner.state["running"] = {"step": "verified", "fingerprint": running or verified.fingerprint}
        runner._save_state()
        r = cli("run", recipe, "--workdir", work)
        assert r.returncode == 0 and note in " ".join(r.stderr.split()), r.stderr
        assert outputs(work) == want


def test_a_failing_step_stops_the_recipe_with_exit_2(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DATA_RECIPE.format(gsm8k=ROOT / "examples/data/gsm8k_6systems.parquet").replace("{normalize-weights: mean}", "{where: \"no_such_column > 1\"}"))
    r = cli("run", recipe, "--workdir", tmp_path / "w")
    msg = " ".join(r.stderr.split())
    assert r.returncode == 2 and "step `selected` (curate select) failed with exit code 2" in msg, msg
    assert sorted(p.name for p in (tmp_path / "w").iterdir() if not p.name.startswith(".")) == ["pairs.parquet", "verified.parquet"]


def test_from_only_force_and_dry_run(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DATA_RECIPE.format(gsm8k=ROOT / "examples/data/gsm8k_6systems.parquet"))
    assert cli("run", recipe, "--workdir", tmp_path / "w").returncode == 0
    actions = lambda r: re.findall(r"│ (run|skip)\s+│", r.stderr)  # noqa: E731
    assert actions(cli("run", recipe, "--workdir", tmp_path / "w", "--from", "selected", "--dry-run")) == ["skip", "skip", "run", "run"]
    assert actions(cli("run", recipe, "--workdir", tmp_path / "w", "--only", "pairs", "--dry-run")) == ["skip", "run", "skip", "skip"]
    assert actions(cli("run", recipe, "--workdir", tmp_path / "w", "--force", "--dry-run")) == ["run"] * 4
    # a changed option changes the fingerprint of that step and of every step after it
    recipe.write_text(recipe.read_text().replace("normalize-weights: mean", "normalize-weights: mean, where: \"weight > 1\""))
    assert actions(cli("run", recipe, "--workdir", tmp_path / "w", "--dry-run")) == ["skip", "skip", "run", "run"]


HEAD = "inputs:\n  s: {gsm8k}\n"  # two lines
BAD = {
    "unknown_step": (HEAD + "steps:\n  - run: ingest\n  - run: teleport\n", 5, "unknown step `teleport`"),
    "unknown_option": (HEAD + "steps:\n  - run: ingest\n  - run: pairs\n    with:\n      stratgy: all\n", 7, "`pairs` has no option `stratgy`"),
    "missing_input": ("inputs:\n  s: nowhere.parquet\nsteps:\n  - run: ingest\n", 2, "input `s`: nowhere.parquet does not exist"),
    "cycle": (HEAD + "steps:\n  - id: a\n    run: ingest\n    input: b\n  - id: b\n    run: pairs\n    input: a\n", 6, "which a later step makes"),
    "unknown_reference": (HEAD + "steps:\n  - run: ingest\n    input: nothing\n", 5, "no input or earlier step has that name"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_recipes_name_the_line_and_run_nothing(tmp_path, case):
    text, line, needle = BAD[case]
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text.format(gsm8k=ROOT / "examples/data/gsm8k_6systems.parquet"))
    r = cli("run", recipe, "--workdir", tmp_path / "w")
    msg = " ".join(r.stderr.split())
    assert r.returncode == 2 and f"bad.yaml:{line}:" in msg and needle in msg, msg
    assert not (tmp_path / "w").exists()


def test_demo_is_the_bundled_recipe_and_no_library_module_imports_the_cli(tmp_path):
    assert not (ROOT / "curate" / "demo.py").exists()
    src = (ROOT / "curate" / "cli.py").read_text()
    assert 'examples" / "recipes" / "demo.yaml' in src
    for path in [*(ROOT / "curate").rglob("*.py"), *(ROOT / "scorers").rglob("*.py")]:
        if path.name != "cli.py":
            assert not re.search(r"^\s*(from curate\.cli|import curate\.cli)", path.read_text(), re.M), path


def test_recipe_outputs_are_those_of_the_commands(ran):
    """The DCRM recipe's pairs equal `curate.pairs` on the same samples (the runner adds nothing of its own)."""
    import curate

    got = pl.read_parquet(ran["dcrm_arena"] / "pairs.parquet")
    want = curate.pairs(curate.read(ROOT / "examples/data/arena_v1_17models.parquet", drop_invalid=True), strategy="best-of-n2", k=2).collect()
    assert got["pair_id"].to_list() == want["pair_id"].to_list()
