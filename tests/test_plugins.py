"""A third-party scorer registered through the `curate.scorers` entry point, used from the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT

PLUGIN = ROOT / "examples" / "plugin"


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """The example plugin made importable with its entry point, as `pip install ./examples/plugin` would."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(PLUGIN / "length_ratio_scorer.py", site)
    info = site / "curate_length_ratio-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: curate-length-ratio\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[curate.scorers]\nlength_ratio = length_ratio_scorer:LengthRatio\n")
    return site


def run(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "curate.cli", *args], capture_output=True, text=True, env=env)


def test_plugin_listed_and_used_from_cli(plugin_path, tmp_path):
    listed = run(["scorers"], plugin_path)
    assert listed.returncode == 0 and "length_ratio" in listed.stdout and "example plugin" in listed.stdout
    pairs = tmp_path / "pairs.parquet"
    pl.DataFrame({"prompt": ["p", "p"], "chosen": ["abcd", "one two three"], "rejected": ["ab", "one"]}).write_parquet(pairs)
    out = tmp_path / "scored.parquet"
    r = run(["score", str(pairs), "--scorer", "length_ratio", "--param", "unit=words", "-o", str(out)], plugin_path)
    assert r.returncode == 0, r.stderr
    assert pl.read_parquet(out)["length_ratio"].to_list() == [1.0, 3.0]


def test_plugin_absent_without_entry_point(tmp_path):
    r = run(["score", "x.parquet", "--scorer", "length_ratio", "-o", str(tmp_path / "o.parquet")], tmp_path)
    assert r.returncode == 2
