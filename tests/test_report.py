"""`curate report`: one offline HTML file per run, drawn in a real headless Chromium, with chart data that match the input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("altair")
pytest.importorskip("vl_convert")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--virtual-time-budget=15000"]  # fmt: skip


def chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("no chromium here (.ci/run installs Debian's chromium)")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def specs(page: Path) -> dict[str, dict]:
    text = page.read_text()
    return {m.group(1): json.loads(m.group(2).replace("<\\/", "</")) for m in re.finditer(r"data-chart='([\w-]+)'>(.*?)</script>", text, re.S)}


@pytest.mark.parametrize("recipe", ["demo", "dcrm_arena", "difficulty_dpo", "alignment_potential", "dual_margin", "madpo", "wrpo", "multi_dpo",
                                    "delta"])  # fmt: skip
def test_report_draws_every_chart_offline_without_console_errors(ran, recipe, tmp_path):
    page = ran[recipe] / "report.html"
    assert page.stat().st_size < 5_000_000
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "") or "<script src=" not in text  # nothing fetched: no external script
    assert "<script src=" not in text and "<link " not in text
    charts = specs(page)
    assert charts, "the report has charts"
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    drawn = re.search(r'data-drawn="(\d+)"', dom.stdout)
    assert drawn and int(drawn.group(1)) == len(charts), "every chart drew"
    for chart_id in charts:  # a non-empty SVG with marks inside each chart's div
        body = dom.stdout.split(f'id="{chart_id}"', 1)[1].split('class="chart"', 1)[0]
        assert "<svg" in body and re.search(r'class="mark-[a-z]+ role-mark', body), chart_id
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if re.search(r"error|Uncaught|failed", line, re.I)], console
    shot = tmp_path / f"{recipe}.png"
    assert chromium(page, tmp_path, "--window-size=1200,2400", f"--screenshot={shot}").returncode == 0 and shot.stat().st_size > 20_000


def test_histogram_counts_sum_to_the_rows(ran):
    page = ran["dcrm_arena"] / "report.html"
    pairs = pl.read_parquet(ran["dcrm_arena"] / "pairs.parquet")
    hists = [s for s in specs(page).values() if s.get("title", "").startswith("dcrm (")]
    assert hists, "a dcrm histogram"
    counts = hists[0]["data"]["values"]
    assert sum(b["count"] for b in counts) == pairs["dcrm"].drop_nulls().len() == pairs.height
    edges = sorted(b["start"] for b in counts)
    assert edges[0] == pytest.approx(pairs["dcrm"].min())
    demo = specs(ran["demo"] / "report.html")
    steps = [s["data"]["values"] for s in demo.values() if s.get("title") == "rows out of each step"]
    selected = next(v for v in steps if v[-1]["step"].endswith("select"))  # the selected pairs' lineage: ingest, pairs, select
    assert [v["step"] for v in selected] == ["1. ingest", "2. pairs", "3. select"]
    assert selected[-1]["rows out"] == pl.read_parquet(ran["demo"] / "selected.parquet").height


def test_report_of_a_million_rows_stays_small(tmp_path):
    import numpy as np

    from curate.report import report

    rng = np.random.default_rng(0)
    n = 1_000_000
    path = tmp_path / "big.parquet"
    pl.DataFrame({"prompt_id": [f"q{i // 4}" for i in range(n)], "prompt": ["p"] * n, "chosen": ["a b c"] * n, "rejected": ["a b d e"] * n,
                  "chosen_reward": rng.normal(1, 1, n), "rejected_reward": rng.normal(0, 1, n), "weight": rng.uniform(0, 2, n)}).write_parquet(path)  # fmt: skip
    report([path], tmp_path / "big.html")
    assert (tmp_path / "big.html").stat().st_size < 5_000_000


def test_the_overview_says_what_validation_found(tmp_path):
    """Duplicates and converted columns are notes in the table's overview (a Python warning would reach no reader of a page)."""
    import warnings

    from curate.report import _Ids, table_sections

    path = tmp_path / "dup.parquet"
    pl.DataFrame({"prompt_id": [1, 1, 2], "prompt": ["p", "p", "q"], "response": ["x", "x", "y"]}).write_parquet(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        overview = table_sections(path, _Ids())[0]
    notes = [h for h in overview.html if h.startswith("<p>Note:")]
    assert notes == [f"<p>Note: `prompt_id` holds Int64 values in {path}; read as text.</p>",
                     f"<p>Note: 1 duplicate (prompt_id, response, model) row(s) in {path}; `curate ingest --dedup` drops them.</p>"]  # fmt: skip
