"""Every class of bad input × every command: exit code 2, a message naming file/row/column, earlier output untouched,
no temporary left, and (with --drop-invalid) counts that add up."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.io import scan
from test_cli import curate_cli

GOOD = {"prompt_id": ["a", "a", "a", "b", "b"], "prompt": ["pa", "pa", "pa", "pb", "pb"],
        "response": ["one", "two", "three", "four", "five"], "model": ["m1", "m2", "m1", "m1", "m2"], "reward": [3.0, 1.0, 2.0, 1.0, 0.0]}  # fmt: skip


def _parquet(path: Path, **change) -> Path:
    pl.DataFrame({**GOOD, **change}).write_parquet(path)
    return path


def _jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def make(kind: str, tmp: Path) -> tuple[Path, str | None, list[int] | None]:
    """A bad file of one class, the column its error must name, and the rows (0-based) it must name."""
    if kind == "missing_column":
        pl.DataFrame({"prompt": ["p"], "text": ["r"], "reward": [1.0]}).write_parquet(tmp / "f.parquet")
        return tmp / "f.parquet", "response", None
    if kind == "nan_reward":
        return _parquet(tmp / "f.parquet", reward=[3.0, float("nan"), 2.0, 1.0, 0.0]), "reward", [1]
    if kind == "unicode_blank_response":
        return _parquet(tmp / "f.parquet", response=["one", "two", "\u00a0\u200b", "four", "five"]), "response", [2]
    if kind == "truncated":
        good = _parquet(tmp / "g.parquet")
        (tmp / "f.parquet").write_bytes(good.read_bytes()[:-30])
        return tmp / "f.parquet", None, None
    if kind == "zero_rows":
        pl.DataFrame(schema={"prompt": pl.String, "response": pl.String, "reward": pl.Float64}).write_parquet(tmp / "f.parquet")
        return tmp / "f.parquet", None, None
    if kind == "prompt_id_collision":
        return _parquet(tmp / "f.parquet", prompt=["pa", "pa", "other", "pb", "pb"]), "prompt_id", [2]
    if kind == "bad_messages":
        rows = [{"prompt": [{"role": "user", "content": "q"}], "response": "r", "reward": 1.0},
                {"prompt": [{"role": "wizard", "content": "q"}], "response": "s", "reward": 0.0}]  # fmt: skip
        return _jsonl(tmp / "f.jsonl", [json.dumps(r).encode() + b"\n" for r in rows]), "prompt", [1]
    if kind == "bad_json_line":
        return _jsonl(tmp / "f.jsonl", [b'{"prompt": "p", "response": "r", "reward": 1}\n', b'{"prompt": "p", "response": \n']), None, None
    if kind == "not_utf8":
        return _jsonl(tmp / "f.jsonl", [b'{"prompt": "p", "response": "r", "reward": 1}\n', b'{"prompt": "p", "response": "\xff", "reward": 0}\n']), None, None
    raise ValueError(kind)


CLASSES = ["missing_column", "nan_reward", "unicode_blank_response", "truncated", "zero_rows", "prompt_id_collision", "bad_messages",
           "bad_json_line", "not_utf8"]  # fmt: skip
COMMANDS = {
    "ingest": ["ingest"],
    "pairs-all": ["pairs", "--strategy", "all"],
    "pairs-best-of-n2": ["pairs", "--strategy", "best-of-n2"],
    "rank": ["rank"],
    "triplets": ["triplets", "--target-model", "m1", "--rejected-from", "any"],
    "export": ["export"],
}
LINE = {"bad_json_line": "line 2", "not_utf8": "line 2"}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", CLASSES)
def test_bad_input_matrix(tmp_path, kind, command):
    src, column, rows = make(kind, tmp_path)
    out = tmp_path / "out" / "result.parquet"
    out.parent.mkdir()
    out.write_bytes(b"previous result")
    r = curate_cli(*COMMANDS[command], src, "-o", out)
    msg = " ".join(r.stderr.split())
    assert r.returncode == 2, r.stderr
    assert msg.startswith("error:") and str(src) in msg.replace(" ", "") or str(src) in msg, msg
    assert "Traceback" not in r.stderr
    if column is not None:
        assert f"`{column}`" in msg, msg
    if rows is not None:
        assert f"first rows (0-based): {', '.join(map(str, rows))}" in msg, msg
    if kind in LINE:
        assert LINE[kind] in msg, msg
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.parquet"]  # no temporary left behind


def _last_step(path: Path):
    return scan(path)[1].steps[-1]


@pytest.mark.parametrize("command", ["ingest", "export", "pairs-all", "pairs-best-of-n2", "rank", "triplets"])
@pytest.mark.parametrize("kind", ["nan_reward", "unicode_blank_response"])
def test_drop_invalid_counts_add_up(tmp_path, kind, command):
    src, _, rows = make(kind, tmp_path)
    out = tmp_path / "out.parquet"
    r = curate_cli(*COMMANDS[command], src, "--drop-invalid", "-o", out)
    assert r.returncode == 0, r.stderr
    step = _last_step(out)
    n_in = pl.read_parquet(src).height
    dropped_rows = sum(n for reason, n in step.counts.items() if step.units.get(reason, "rows") == "rows")
    assert step.rows_in == n_in and dropped_rows == len(rows)  # one reason per invalid row
    assert len(set(step.units.values()) - {"rows", "samples", "prompts", "pairs"}) == 0
    if command in ("ingest", "export"):
        assert step.rows_out == n_in - dropped_rows == pl.read_parquet(out).height
    else:  # every valid prompt either gave output or is counted once, as a prompt
        valid = pl.read_parquet(src).with_row_index().filter(~pl.col("index").is_in(rows))
        prompts_out = pl.read_parquet(out)["prompt_id"].n_unique()
        dropped_prompts = sum(n for reason, n in step.counts.items() if step.units[reason] == "prompts")
        assert valid["prompt_id"].n_unique() == prompts_out + dropped_prompts, step.counts


@pytest.mark.parametrize("kind", ["nan_reward", "unicode_blank_response"])
def test_drop_invalid_export_to_json_lines_reports_the_lines_it_wrote(tmp_path, kind):
    # JSON Lines has no footer: the rows written are counted by the plan, beside the sink
    src, _, rows = make(kind, tmp_path)
    out = tmp_path / "out.jsonl"
    r = curate_cli("export", src, "--drop-invalid", "-o", out)
    assert r.returncode == 0, r.stderr
    lines = out.read_bytes().count(b"\n")
    assert lines == len(GOOD["prompt"]) - len(rows)
    assert f"(jsonl, {lines} rows" in " ".join((r.stdout + r.stderr).split()), r.stderr
