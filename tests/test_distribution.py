"""The distribution is `curate-prefs` (the import package stays `curate`): `curate` on PyPI is an unrelated project."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import distribution

from conftest import ROOT

NAME = "curate-prefs"


def test_installed_distribution_name_and_import_package():
    dist = distribution(NAME)
    assert dist.metadata["Name"] == NAME
    import curate

    assert curate.__version__ == dist.version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_pip_download_of_the_name_gets_this_project(tmp_path):
    """A wheel built from this tree is what `pip download curate-prefs` resolves to; nothing named `curate-*` comes along."""
    wheels, got = tmp_path / "wheels", tmp_path / "downloaded"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
                           capture_output=True, text=True)  # fmt: skip
    assert build.returncode == 0, build.stderr
    down = subprocess.run([sys.executable, "-m", "pip", "download", NAME, "--no-deps", "--no-index", "--find-links", str(wheels), "-d", str(got)],
                          capture_output=True, text=True)  # fmt: skip
    assert down.returncode == 0, down.stderr
    files = [p.name for p in got.iterdir()]
    assert len(files) == 1 and files[0].startswith("curate_prefs-")
    with zipfile.ZipFile(got / files[0]) as whl:
        names = whl.namelist()
        meta = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Name: {NAME}" in meta and any(n.startswith("curate/") for n in names) and any(n.startswith("scorers/") for n in names)


def test_plugin_example_depends_on_the_new_name():
    plugin = tomllib.loads((ROOT / "examples" / "plugin" / "pyproject.toml").read_text())
    assert plugin["project"]["dependencies"] == [NAME]
