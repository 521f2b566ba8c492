"""Export to Parquet, JSONL, a Hub dataset folder (with a dataset card) or a `save_to_disk` folder."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate import messages as msg
from curate.errors import CurateError
from curate.formats import to_style
from curate.io import Source, format_of, load, write
from curate.report import Lineage, Step

# TRL DPOTrainer's column names; `weight` is curate's per-sample weight (TRL itself ignores it: see curate.trl).
TRL_COLUMNS = ("prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps", "weight")
TAGS = ("curate", "preference-data", "dpo")


@dataclass
class Exported:
    path: str
    format: str
    rows: int
    style: str = "standard"
    weights: dict[str, float] | None = None  # weight statistics of what was written
    notes: list[str] = field(default_factory=list)


def export(
    src: Source,
    out: str | os.PathLike,
    fmt: str | None = None,
    *,
    trl: bool = False,
    style: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    license: str | None = None,
    split: str | None = None,
    drop_invalid: bool = False,
) -> Exported:
    """Write the table at `src` to `out` (atomically); `trl` keeps only TRL's pair columns.

    `style` is TRL's `conversational` or `standard` format (default: like the input); turning a
    conversational table into strings needs the chat template of `tokenizer`. `license` goes into
    the dataset card (default: the input card's license).
    """
    fmt = format_of(out, fmt)
    step = Step("export", params={"format": fmt, "trl": trl, "style": style, "license": license}, inputs=[str(src)] if isinstance(src, (str, os.PathLike)) else [str(s) for s in src])
    table = load(src, kind=None, step=step, split=split, drop_invalid=drop_invalid)
    frame = table.frame
    if trl:
        if table.kind != "pairs":
            raise CurateError(f"{table.source}: --trl exports `pairs` tables; this one is a `{table.kind}` table.")
        names = frame.collect_schema().names()
        frame = frame.select([c for c in TRL_COLUMNS if c in names])
    tok = _tokenizer(tokenizer) if tokenizer is not None else None
    frame = to_style(frame, style, tokenizer=tok)
    written_style = msg.style_of(frame.collect_schema())
    license = license or (table.card or {}).get("license")
    lineage = Lineage(sources=table.lineage.sources, steps=[*table.lineage.steps, step])

    def card(schema: pl.Schema, rows: int, written: pl.LazyFrame) -> str:
        step.rows_out = rows
        stats = weight_stats(written)
        return dataset_card(schema, rows, stats, lineage, table.kind, Path(out).name, written_style)

    rows = write(frame, out, fmt, lineage=lineage, card=card if fmt in ("hf", "arrow") else None,
                 card_meta={"license": license, "tags": list(TAGS)})  # fmt: skip
    step.rows_out = rows
    stats = written_weight_stats(out, fmt)
    done = Exported(path=str(out), format=fmt, rows=rows, style=written_style, weights=stats)
    if trl and stats and stats["min"] != stats["max"]:
        done.notes.append(
            f"the weights (min {stats['min']:.4g}, max {stats['max']:.4g}) are in the `weight` column; TRL's DPOTrainer ignores "
            "that column, so train with `curate train` or with `curate.trl.WeightedDPOTrainer` (pip install 'curate-prefs[trl]') "
            "to apply them."
        )
    return done


def _tokenizer(path: str | os.PathLike) -> Any:
    from transformers import AutoTokenizer

    p = Path(path)
    if not p.is_dir():
        raise CurateError(f"--tokenizer {path}: not a local model or tokenizer folder (curate never downloads).")
    tok = AutoTokenizer.from_pretrained(p)
    if not getattr(tok, "chat_template", None):
        raise CurateError(f"--tokenizer {path}: the tokenizer has no chat template to render conversations with.")
    return tok


def written_weight_stats(out: str | os.PathLike, fmt: str) -> dict[str, float] | None:
    """Weight statistics read back from the written output (one column of a file just written, not the plan again)."""
    from curate.io import scan

    frame, _ = scan(out)
    if "weight" not in frame.collect_schema().names():
        return None
    return weight_stats(frame)


def weight_stats(frame: pl.LazyFrame | pl.DataFrame) -> dict[str, float] | None:
    """Count, mean, std, min, median and max of `weight`, or None without a weight column (or without rows)."""
    lazy = frame.lazy()
    if "weight" not in lazy.collect_schema().names():
        return None
    w = pl.col("weight").cast(pl.Float64)
    row = lazy.select(
        w.count().alias("count"), w.mean().alias("mean"), w.std().alias("std"), w.min().alias("min"), w.median().alias("median"), w.max().alias("max")
    ).collect().row(0, named=True)
    if not row["count"]:
        return None
    return {k: float(v if v is not None else 0.0) for k, v in row.items()}


def dataset_card(schema: pl.Schema, rows: int, stats: dict[str, float] | None, lineage: Lineage, kind: str, name: str, style: str) -> str:
    """The body of a dataset card (README.md): how to load it, sources, steps with parameters and row counts, columns, weights."""
    lines = [
        f"# {name}",
        "",
        f"A `{kind}` table written by [curate](https://pypi.org/project/curate-prefs/): {rows:,} rows, TRL's {style} format.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("{name}", split="train")   # this folder, or its Hub repo id once pushed',
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
        params, dropped = params.replace("|", r"\|"), dropped.replace("|", r"\|")
        lines.append(f"| {i} | {s.name} | {params} | {_n(s.rows_in)} | {_n(s.rows_out)} | {dropped} |")
    lines += ["", "## Columns", "", "| column | type |", "|---|---|"]
    lines += [f"| `{c}` | {t} |" for c, t in schema.items()]
    lines += ["", "## Weights", ""]
    if stats:
        lines += ["| statistic | value |", "|---|---|"] + [f"| {k} | {v:.6g} |" for k, v in stats.items()]
        lines += ["", "TRL's `DPOTrainer` ignores `weight`; `curate train` and `curate.trl.WeightedDPOTrainer` apply it."]
    else:
        lines.append("No `weight` column (every row weighs 1).")
    return "\n".join(lines) + "\n"


def _n(v: int | None) -> str:
    return "—" if v is None else f"{v:,}"
