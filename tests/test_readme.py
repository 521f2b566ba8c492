"""The README's tour runs as written: every `bash` and `python` block of the "Tour" section, in order, in a fresh folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytest.importorskip("torch")


def tour_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced bash/python block between `## Tour` and the next `## ` heading."""
    text = (ROOT / "README.md").read_text()
    tour = text[text.index("\n## Tour\n") :]
    tour = tour[: tour.index("\n## ", 1)]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(bash|python)\n(.*?)^```", tour, re.S | re.M)]


def test_the_tour_has_the_commands_it_promises():
    blocks = tour_blocks()
    code = "\n".join(c for _, c in blocks)
    for command in ("ingest", "sql", "pairs", "triplets", "rank", "select", "export", "score", "scorers", "tiny-models", "sample",
                    "verify", "reward", "logps", "embed", "judge", "augment", "train"):  # fmt: skip
        assert re.search(rf"\bcurate {command}\b", code), command
    assert sum(lang == "python" for lang, _ in blocks) >= 3


def test_every_tour_block_runs_as_written(tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")  # the tour runs from the repository root
    site = tmp_path / "site"  # `pip install ./examples/plugin` goes here, not into the test environment
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "PIP_TARGET": str(site),
        "PIP_NO_DEPS": "1",
        "PIP_NO_BUILD_ISOLATION": "false",  # pip reads "false" as --no-build-isolation: build with this environment's setuptools
        "PYTHONPATH": str(site),
        "COLUMNS": "200",
    }
    for i, (lang, code) in enumerate(tour_blocks()):
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"tour block {i} ({lang}) failed:\n{code}\n--- stderr ---\n{r.stderr[-4000:]}"
    # what the tour says it makes, it made
    for made in ("samples.parquet", "hh_pairs_hf/README.md", "pairs_arrow/state.json", "stage_pairs.parquet", "runs/dpo/metrics.jsonl",
                 "runs/simpo/model.safetensors", "runs/mdpo/metrics.jsonl", "runs/trl_weighted", "length_scored.parquet"):  # fmt: skip
        assert (work / made).exists(), made
