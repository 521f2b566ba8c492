"""The `curate` command line, run as a user runs it (a subprocess), on the bundled data and on bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import ARENA, GAME24, GSM8K, write_parquet


def curate_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "curate.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, env={"COLUMNS": "200", **_env()}
    )


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "COLUMNS"}


def test_help_imports_no_heavy_modules():
    code = "import sys; sys.argv=['curate','--help']\nfrom curate.cli import app\nprint(sorted(m for m in ('torch','duckdb','transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    helped = curate_cli("--help")
    assert helped.returncode == 0
    for cmd in ("ingest", "pairs", "triplets", "rank", "select", "sql", "export", "scorers", "demo"):
        assert cmd in helped.stdout


_HEAVY = ("torch", "transformers", "duckdb", "pydantic", "pyarrow", "numpy", "rapidfuzz")
_RUN_AND_LIST = (
    "import sys, runpy\nsys.argv = ['curate', *sys.argv[1:]]\ntry:\n    runpy.run_module('curate.cli', run_name='__main__')\n"
    f"except SystemExit as exc:\n    print(exc.code, sorted(m for m in {_HEAVY!r} if m in sys.modules))"
)


@pytest.mark.parametrize(
    ("command", "needs"),
    [
        (["pairs", GSM8K, "--strategy", "correct-vs-incorrect"], []),
        (["score", GSM8K, "--scorer", "difficulty", "--per-prompt"], []),
        (["sql", "select model, count(*) as n from samples group by 1", "--samples", GSM8K], ["duckdb"]),
        (["select", GSM8K, "--where", "NOT correct AND model <> 'gpt-4-1106-preview'"], []),  # a plain predicate: Polars alone
        (["select", GSM8K, "--where", "length(response) > 100"], ["duckdb", "numpy", "pyarrow"]),  # a function: DuckDB, on Arrow batches
    ],
)
def test_core_commands_start_without_heavy_modules(tmp_path, command, needs):
    """Start-up: a core command imports only what it uses (no pydantic through the CLI parser, no pyarrow for SQL results)."""
    out = subprocess.run([sys.executable, "-c", _RUN_AND_LIST, *map(str, command), "-o", str(tmp_path / "out.parquet")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip().split(None, 1) == ["0", str(needs)], out.stdout + out.stderr


def test_sql_per_model_accuracy_table():
    r = curate_cli("sql", "select model, avg(correct::int) as acc from samples group by 1 order by 1", "--samples", GSM8K)
    assert r.returncode == 0, r.stderr
    models = sorted(pl.read_parquet(GSM8K)["model"].unique().to_list())
    lines = [line for line in r.stdout.splitlines() if any(m in line for m in models)]
    assert len(lines) == 6 and "(6 rows)" in r.stdout
    assert "gpt-4-1106-preview" in lines[0] and "0.8567" in lines[0]  # 1130/1319 correct


def test_pairs_correct_vs_incorrect_is_trl_compatible(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "pairs.parquet"
    r = curate_cli("pairs", GSM8K, "--strategy", "correct-vs-incorrect", "-o", out)
    assert r.returncode == 0, r.stderr
    # independent count: prompts with at least one wrong response (all have gold, so all can be paired)
    raw = pl.read_parquet(GSM8K).rows(named=True)
    with_wrong = {row["prompt_id"] for row in raw if not row["correct"]}
    all_prompts = {row["prompt_id"] for row in raw}
    ds = datasets.Dataset.from_parquet(str(out))
    assert ds.num_rows == len(with_wrong)
    assert f"{len(all_prompts) - len(with_wrong)}" in r.stderr and "no incorrect response" in r.stderr
    assert ds.column_names[:4] == ["prompt_id", "prompt", "chosen", "rejected"]
    assert {"chosen_model", "rejected_model", "chosen_correct", "rejected_correct", "weight"} <= set(ds.column_names)
    assert not any(ds["rejected_correct"])
    assert all(ds["chosen_correct"]) and min(ds["weight"]) >= 1.0


def test_triplets_untargetable_then_graded_target(tmp_path):
    out = tmp_path / "t.parquet"
    r = curate_cli("triplets", ARENA, "--drop-invalid", "--target-model", "vicuna-13b-v1.5", "-o", out)
    assert r.returncode == 2 and "has no rewards" in r.stderr and "Llama-2-70b-chat" in r.stderr
    assert not out.exists()
    r = curate_cli("triplets", ARENA, "--drop-invalid", "--target-model", "Llama-2-70b-chat", "--rejected-from", "any", "-o", out)
    assert r.returncode == 0, r.stderr
    t = pl.read_parquet(out)
    assert t.height > 100
    assert (t["chosen_target_model"] == "Llama-2-70b-chat").all() and (t["chosen_model"] != "Llama-2-70b-chat").all()
    assert (t["rejected_reward"] < t["chosen_target_reward"]).all()
    assert t.columns[:5] == ["prompt_id", "prompt", "chosen", "chosen_target", "rejected"]


def test_rank_on_arena(tmp_path):
    out = tmp_path / "r.parquet"
    r = curate_cli("rank", ARENA, "--drop-invalid", "-o", out)
    assert r.returncode == 0, r.stderr
    ranked = pl.read_parquet(out)
    assert ranked.columns[:5] == ["prompt_id", "prompt", "responses", "rewards", "models"]
    assert all(rw == sorted(rw, reverse=True) for rw in ranked["rewards"].to_list())
    # two vicuna models are ungraded, 27 responses blank: at most 15 graded per prompt
    assert max(len(x) for x in ranked["responses"].to_list()) == 15


BAD = {
    "missing_response.parquet": ({"prompt": ["p"], "text": ["r"]}, "response"),
    "nan_reward.parquet": ({"prompt": ["p", "p"], "response": ["a", "b"], "reward": [1.0, float("nan")]}, "reward"),
    "empty_response.parquet": ({"prompt": ["p", "p"], "response": ["a", ""], "reward": [1.0, 0.0]}, "response"),
}


@pytest.mark.parametrize("name", [*BAD, "truncated.parquet", "zero_rows.parquet"])
def test_bad_input_exit_2_and_no_output(tmp_path, name):
    if name in BAD:
        path = write_parquet(tmp_path, name, BAD[name][0])
    elif name == "truncated.parquet":
        good = write_parquet(tmp_path, "good.parquet", {"prompt": ["p"] * 50, "response": [f"r{i}" for i in range(50)]})
        path = tmp_path / name
        path.write_bytes(good.read_bytes()[:-40])
    else:
        path = tmp_path / name
        pl.DataFrame(schema={"prompt": pl.String, "response": pl.String}).write_parquet(path)
    out = tmp_path / "out" / "pairs.parquet"
    out.parent.mkdir()
    out.write_text("previous result")
    r = curate_cli("pairs", path, "--strategy", "all", "-o", out)
    assert r.returncode == 2
    msg = r.stderr.strip()
    assert msg.startswith("error:") and str(path) in msg.replace("\n", "") and "Traceback" not in msg
    if name in BAD:
        assert f"`{BAD[name][1]}`" in msg
    if name in ("nan_reward.parquet", "empty_response.parquet"):
        assert "first rows (0-based): 1" in msg and "1 row(s)" in msg
    assert out.read_text() == "previous result"
    assert sorted(p.name for p in out.parent.iterdir()) == ["pairs.parquet"]


def test_select_export_and_card(tmp_path):
    pairs = tmp_path / "pairs.parquet"
    assert curate_cli("pairs", GSM8K, "--strategy", "correct-vs-incorrect", "-o", pairs).returncode == 0
    sel = tmp_path / "sel.parquet"
    r = curate_cli("select", pairs, "--where", "chosen_model <> 'gold'", "--normalize-weights", "mean", "-o", sel)
    assert r.returncode == 0, r.stderr
    gold_rows = pl.read_parquet(pairs).filter(pl.col("chosen_model") == "gold").height
    assert f"{gold_rows}" in r.stderr
    assert pl.read_parquet(sel)["weight"].mean() == pytest.approx(1.0)
    hf = tmp_path / "hf"
    assert curate_cli("export", sel, "-o", hf, "--format", "hf").returncode == 0
    card = (hf / "README.md").read_text()
    assert "| 1 | pairs |" in card and "| 2 | select |" in card and "| 3 | export |" in card
    assert str(GSM8K.relative_to(Path.cwd())) in card and str(GSM8K) not in card and "| mean | 1 |" in card
    jl = tmp_path / "trl.jsonl"
    assert curate_cli("export", sel, "-o", jl, "--trl").returncode == 0
    first = json.loads(jl.read_text().splitlines()[0])
    assert list(first) == ["prompt", "chosen", "rejected", "weight", "pair_id"]


def test_export_reports_its_drops(tmp_path):
    # the arena file has 27 blank responses (examples/data/README.md): export said only "wrote … 5,073 rows" before
    r = curate_cli("export", ARENA, "--drop-invalid", "-o", tmp_path / "a.jsonl")
    assert r.returncode == 0, r.stderr
    lines = [" ".join(line.strip("│ ").split()) for line in r.stderr.splitlines()]
    assert "rows in │ 5,100" in lines and "dropped (rows): invalid `response`: null or empty (blank) string │ 27" in lines
    assert "rows out │ 5,073" in lines and lines[-1] == f"wrote {tmp_path / 'a.jsonl'} (jsonl, 5,073 rows, TRL standard format)"


def test_scorers_lists_builtins():
    r = curate_cli("scorers")
    assert r.returncode == 0 and "difficulty_weight" in r.stdout and "reward_margin" in r.stdout


def test_demo_end_to_end(ran):
    d = ran["demo"]  # `curate demo --out DIR`, run once per session by the `ran` fixture
    assert {p.name for p in d.iterdir()} >= {"samples.parquet", "pairs.parquet", "selected.parquet", "pairs_trl.jsonl", "pairs_hf",
                                            "accuracy.parquet", "stage_pairs.parquet", "report.html"}
    # per-model accuracy, worked out from the raw file
    raw = pl.read_parquet(GSM8K)
    acc = {m: round(sum(g) / len(g), 4) for m, g in raw.group_by("model").agg(pl.col("correct").cast(pl.Int64)).rows()}
    got = dict(pl.read_parquet(d / "accuracy.parquet").select("model", "accuracy").rows())
    assert got == pytest.approx(acc)
    selected = pl.read_parquet(d / "selected.parquet")
    assert "gold" not in selected["chosen_model"].to_list() and selected["weight"].mean() == pytest.approx(1.0)
    assert len((d / "pairs_trl.jsonl").read_text().splitlines()) == selected.height
    assert (d / "tiny_dpo" / "metrics.jsonl").exists() and (d / "stage_dpo" / "metrics.jsonl").exists()
    again = curate_cli("demo", "--out", d)  # a second run finds every step up to date
    assert again.returncode == 0 and "up to date" in again.stdout + again.stderr


def test_ingest_keeps_file_order(tmp_path):
    out = tmp_path / "s.parquet"
    assert curate_cli("ingest", GSM8K, "-o", out).returncode == 0
    assert pl.read_parquet(out)["response"].to_list() == pl.read_parquet(GSM8K)["response"].to_list()


def test_quickstart_script_runs(tmp_path):
    script = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "qs")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # pairs whose chosen side is self-generated: prompts with at least one correct and one wrong response
    by_prompt: dict[str, set[bool]] = {}
    for pid, ok in pl.read_parquet(GSM8K).select("prompt_id", "correct").rows():
        by_prompt.setdefault(pid, set()).add(ok)
    expected = sum(1 for v in by_prompt.values() if v == {True, False})
    assert f"{expected} TRL pairs" in r.stdout


def test_score_difficulty_on_game24_one_weight_per_prompt(tmp_path):
    out = tmp_path / "w.parquet"
    r = curate_cli("score", GAME24, "--scorer", "difficulty", "--per-prompt", "-o", out)
    assert r.returncode == 0, r.stderr
    w = pl.read_parquet(out)
    raw = pl.read_parquet(GAME24)
    assert w.height == raw["prompt_id"].n_unique() == 200 and w["prompt_id"].is_unique().all()
    # by hand from the raw rows: game24 has no `answer`, so P_e = N - P_c
    counts: dict[str, list[int]] = {}
    for pid, ok in raw.select("prompt_id", "correct").rows():
        c = counts.setdefault(pid, [0, 0])
        c[0] += 1
        c[1] += int(ok)
    for pid, weight in w.select("prompt_id", "difficulty_weight").rows():
        n, p_c = counts[pid]
        expected = 1 + (n - p_c) / n if p_c == 0 else max(1.0, 1 + (n - p_c) / p_c + 1 / n)
        assert weight == pytest.approx(expected)
    full = tmp_path / "rows.parquet"
    assert curate_cli("score", GAME24, "--scorer", "difficulty", "-o", full).returncode == 0
    assert pl.read_parquet(full).height == 20_000


def test_score_per_prompt_counts_the_ungraded_responses(tmp_path):
    # difficulty's N counts graded responses only: the per-prompt summary says how many it left out, as `pairs` does
    path = tmp_path / "s.parquet"
    pl.DataFrame({"prompt": ["a"] * 4 + ["b"] * 3, "response": list("xyzwpqr"), "correct": [True, False, None, False, None, None, True],
                  "answer": ["1", "2", None, "2", "3", "4", "5"]}).write_parquet(path)  # fmt: skip
    r = curate_cli("score", path, "--scorer", "difficulty", "--per-prompt", "-o", tmp_path / "w.parquet")
    assert r.returncode == 0 and "dropped (samples): responses with null `correct` (ungraded), not counted by difficulty │ 3" in " ".join(r.stderr.split())
    assert pl.read_parquet(tmp_path / "w.parquet").select("n_samples", "n_correct", "n_wrong_mode").rows() == [(3, 1, 2), (1, 1, 0)]  # by hand
    r = curate_cli("score", GAME24, "--scorer", "difficulty", "--per-prompt", "-o", tmp_path / "g.parquet")
    assert r.returncode == 0 and "ungraded" not in r.stderr  # every game24 response is graded
