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
from curate.io import Source
from curate.lineage import Lineage, Step
from curate.schema import detect_kind
from curate.sinks import format_of
from curate.steps import inputs_of

# TRL DPOTrainer's column names; `weight` is curate's per-sample weight (TRL itself ignores it: see curate.trl).
TRL_COLUMNS = ("prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps", "weight", "pair_id")
TAGS = ("curate", "preference-data", "dpo")


@dataclass
class Exported:
    path: str
    format: str
    rows: int
    style: str = "standard"
    weights: dict[str, float] | None = None  # weight statistics of what was written
    notes: list[str] = field(default_factory=list)
    step: Step | None = None


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
    """Write the table at `src` to `out` (atomically, in one pass); `trl` keeps only TRL's pair columns.

    `style` is TRL's `conversational` or `standard` format (default: like the input); turning a
    conversational table into strings needs the chat template of `tokenizer`. `license` goes into
    the dataset card (default: the input card's).
    """
    from curate.io import resolve
    from curate.steps import run_step

    fmt = format_of(out, fmt)
    tok = load_tokenizer(tokenizer) if tokenizer is not None else None
    card_license = license or (resolve(src, split)[2] or {}).get("license")
    written: dict[str, Any] = {}

    def build(frame: pl.LazyFrame, step: Step) -> pl.LazyFrame:
        frame = exported_frame(frame, step, trl=trl, style=style, tokenizer=tok)
        written["style"] = msg.style_of(frame.collect_schema())
        return frame

    def card(schema: pl.Schema, rows: int, frame: pl.LazyFrame, lineage: Lineage, kind: str) -> str:
        return dataset_card(schema, rows, _stats(step.extras.get("weights")), lineage, kind, Path(out).name, written["style"])

    step = Step("export", params={"format": fmt, "trl": trl, "style": style, "license": license}, inputs=inputs_of(src))
    # --trl writes TRL's columns only: the row checks read those (and prompt_id, for its collision check), not the whole file
    uses = {*TRL_COLUMNS, "prompt_id"} if trl else None
    # the exported frame selects and maps the checked input's columns: its rows are counted beside the sink, not read back
    step = run_step("export", step.params, src, None, build, out, fmt, split=split, drop_invalid=drop_invalid, card=card,
                    card_meta={"license": card_license, "tags": list(TAGS)}, step=step, uses=uses, count_in_plan=True)  # fmt: skip
    stats = _stats(step.extras.get("weights"))
    done = Exported(path=str(out), format=fmt, rows=step.rows_out or 0, style=written["style"], weights=stats, step=step)
    if trl and stats and stats["min"] != stats["max"]:
        done.notes.append(
            f"the weights (min {stats['min']:.4g}, max {stats['max']:.4g}) are in the `weight` column; TRL's DPOTrainer ignores "
            "that column, so train with `curate train` or with `curate.trl.WeightedDPOTrainer` (pip install 'curate-prefs[trl]') "
            "to apply them."
        )
    return done


def exported_frame(frame: pl.LazyFrame, step: Step, *, trl: bool = False, style: str | None = None, tokenizer: Any = None) -> pl.LazyFrame:
    """The table as exported: TRL's pair columns if `trl`, in TRL's `style`; the weights' statistics observed on `step`."""
    names = frame.collect_schema().names()
    kind = detect_kind(names)
    if trl:
        if kind != "pairs":
            raise CurateError(f"--trl exports `pairs` tables; this one is a `{kind}` table.")
        frame = frame.select([c for c in TRL_COLUMNS if c in names])
    frame = to_style(frame, style, tokenizer=tokenizer)
    if "weight" in frame.collect_schema().names():
        step.observe("weights", weight_stats_frame(frame))
    return frame


def load_tokenizer(path: str | os.PathLike) -> Any:
    from transformers import AutoTokenizer

    p = Path(path)
    if not p.is_dir():
        raise CurateError(f"--tokenizer {path}: not a local model or tokenizer folder (curate never downloads).")
    tok = AutoTokenizer.from_pretrained(p)
    if not getattr(tok, "chat_template", None):
        raise CurateError(f"--tokenizer {path}: the tokenizer has no chat template to render conversations with.")
    return tok


def weight_stats_frame(frame: pl.LazyFrame) -> pl.LazyFrame:
    """One row: count, mean, std, min, median and max of `weight`."""
    w = pl.col("weight").cast(pl.Float64)
    return frame.select(w.count().alias("count"), w.mean().alias("mean"), w.std().alias("std"), w.min().alias("min"),
                        w.median().alias("median"), w.max().alias("max"))  # fmt: skip


def _stats(row: dict[str, Any] | None) -> dict[str, float] | None:
    if not row or not row.get("count"):
        return None
    return {k: float(v if v is not None else 0.0) for k, v in row.items()}


def weight_stats(frame: pl.LazyFrame | pl.DataFrame) -> dict[str, float] | None:
    """Count, mean, std, min, median and max of `weight`, or None without a weight column (or without rows)."""
    lazy = frame.lazy()
    if "weight" not in lazy.collect_schema().names():
        return None
    return _stats(weight_stats_frame(lazy).collect().row(0, named=True))


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
        dropped = "; ".join(f"{r}: {n} {s.units.get(r, 'rows')}" for r, n in s.dropped.items()) or "—"
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
