"""Export to Parquet, JSONL or an HF `datasets` folder with a dataset card (SPEC §6)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from curate.errors import CurateError
from curate.io import format_of, load, write
from curate.report import Lineage, Step

# TRL DPOTrainer's column names (SPEC §2.2); `weight` is curate's per-sample weight.
TRL_COLUMNS = ("prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps", "weight")


@dataclass
class Exported:
    path: str
    format: str
    rows: int


def export(src: str | os.PathLike, out: str | os.PathLike, fmt: str | None = None, *, trl: bool = False) -> Exported:
    """Write the table at `src` to `out` (parquet/jsonl/hf, atomically); `trl` keeps only TRL's pair columns."""
    fmt = format_of(out, fmt)
    step = Step("export", params={"format": fmt, "trl": trl}, inputs=[str(src)])
    table = load(src, kind=None, step=step)
    frame = table.frame
    if trl:
        if table.kind != "pairs":
            raise CurateError(f"{src}: --trl exports `pairs` tables; this one is a `{table.kind}` table.")
        names = frame.collect_schema().names()
        frame = frame.select([c for c in TRL_COLUMNS if c in names])
    step.rows_in = step.rows_out = frame.select(pl.len()).collect().item()
    lineage = Lineage(sources=table.lineage.sources, steps=[*table.lineage.steps, step])
    if fmt == "hf":
        df = frame.collect()
        rows = write(df, out, fmt, lineage=lineage, card=dataset_card(df, lineage, table.kind, Path(out).name))
    else:
        rows = write(frame, out, fmt, lineage=lineage)
    return Exported(path=str(out), format=fmt, rows=rows)


def weight_stats(frame: pl.DataFrame) -> dict[str, float] | None:
    """Count, mean, std, min, median and max of `weight`, or None without a weight column."""
    if "weight" not in frame.columns or frame.height == 0:
        return None
    w = frame["weight"].cast(pl.Float64)
    return {
        "count": float(w.count()),
        "mean": float(w.mean()),
        "std": float(w.std() or 0.0),
        "min": float(w.min()),
        "median": float(w.median()),
        "max": float(w.max()),
    }


def dataset_card(frame: pl.DataFrame, lineage: Lineage, kind: str, name: str) -> str:
    """A README.md for an exported `datasets` folder: sources, steps with parameters and row counts, weights."""
    lines = [
        "---",
        "tags: [curate, preference-data, dpo]",
        "---",
        f"# {name}",
        "",
        f"A `{kind}` table written by [curate](https://pypi.org/project/curate/): {frame.height} rows.",
        "",
        "```python",
        "from datasets import load_from_disk",
        f'ds = load_from_disk("{name}")',
        "```",
        "",
        "## Source files",
        "",
        *[f"- `{s}`" for s in lineage.sources or ["(unknown)"]],
        "",
        "## Pipeline steps",
        "",
        "| # | step | parameters | rows in | rows out | dropped (reason: count) |",
        "|---|---|---|---|---|---|",
    ]
    for i, s in enumerate(lineage.steps, 1):
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in s.params.items() if v is not None) or "—"
        dropped = "; ".join(f"{r}: {n}" for r, n in s.dropped.items()) or "—"
        lines.append(f"| {i} | {s.name} | {params} | {_n(s.rows_in)} | {_n(s.rows_out)} | {dropped} |")
    lines += ["", "## Columns", "", "| column | type |", "|---|---|"]
    lines += [f"| `{c}` | {t} |" for c, t in frame.schema.items()]
    stats = weight_stats(frame)
    lines += ["", "## Weights", ""]
    if stats:
        lines += ["| statistic | value |", "|---|---|"] + [f"| {k} | {v:.6g} |" for k, v in stats.items()]
    else:
        lines.append("No `weight` column (every row weighs 1).")
    return "\n".join(lines) + "\n"


def _n(v: int | None) -> str:
    return "—" if v is None else f"{v:,}"
