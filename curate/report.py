"""`curate report`: one self-contained HTML page about tables and training runs (Vega-Lite charts, inlined).

For each input it shows what it is; for a table: the rows per step and every drop reason (from its
lineage), a per-model table (count, mean reward, accuracy), histograms of `weight` and of each scorer
column present, the reward margin against the edit distance (DCRM's picture) and the distribution of
difficulty weights; for a training folder: loss, margin, accuracy and weight curves from
`metrics.jsonl` (with the eval points). Charts are built with Altair and drawn by Vega-Lite, whose
JavaScript (`vl-convert-python`'s bundle) is inlined, so the file opens offline. Every chart gets
binned or sampled data (histograms: counts per bin; scatter plots: at most 5,000 points), so the page
stays small whatever the table's size. Needs the `report` extra.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import CurateError

SCATTER_POINTS = 5_000
BINS = 30
_SCORER_HINTS = ("reward_margin", "implicit_margin", "logp_margin_norm", "edit_distance", "dcrm", "alignment_potential", "dual_margin",
                 "madpo_weight", "sample_delta", "generator_delta", "embedding_distance", "difficulty_weight")  # fmt: skip


@dataclass
class Chart:
    """One Vega-Lite chart: its id, title, spec, and the summary data behind it (kept for checks)."""

    id: str
    title: str
    spec: dict[str, Any]
    data: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Section:
    title: str
    html: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)


def _alt():
    try:
        import altair as alt
    except ImportError as exc:
        raise CurateError("`curate report` needs altair and vl-convert-python (pip install 'curate-prefs[report]').") from exc
    return alt


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def histogram(values: pl.Series, column: str, chart_id: str, title: str) -> Chart:
    """Counts of `values` in BINS equal bins (non-null, finite values only)."""
    alt = _alt()
    v = values.cast(pl.Float64)
    v = v.filter(v.is_not_null() & v.is_finite())
    if v.len() == 0:
        data = []
    else:
        lo, hi = float(v.min()), float(v.max())
        width = (hi - lo) / BINS if hi > lo else 1.0
        idx = ((v - lo) / width).floor().clip(0, BINS - 1).cast(pl.Int64) if hi > lo else pl.Series([0] * v.len())
        counts = idx.value_counts().sort(idx.name or "")
        data = [{"start": lo + int(i) * width, "end": lo + (int(i) + 1) * width, "count": int(n)} for i, n in counts.iter_rows()]
    frame = alt.Data(values=data)
    spec = (
        alt.Chart(frame, title=title)
        .mark_bar()
        .encode(x=alt.X("start:Q", bin="binned", title=column), x2="end:Q", y=alt.Y("count:Q", title="rows"), tooltip=["start:Q", "end:Q", "count:Q"])
        .properties(width=360, height=200)
    )
    return Chart(chart_id, title, spec.to_dict(), data)


def scatter(frame: pl.DataFrame, x: str, y: str, chart_id: str, title: str, color: str | None = None) -> Chart:
    alt = _alt()
    sample = frame.select([c for c in (x, y, color) if c]).drop_nulls()
    if sample.height > SCATTER_POINTS:
        sample = sample.sample(SCATTER_POINTS, seed=0)
    data = sample.to_dicts()
    enc = {"x": alt.X(f"{x}:Q"), "y": alt.Y(f"{y}:Q"), "tooltip": [f"{x}:Q", f"{y}:Q"]}
    if color:
        enc["color"] = alt.Color(f"{color}:N")
    spec = alt.Chart(alt.Data(values=data), title=title).mark_circle(size=18, opacity=0.5).encode(**enc).properties(width=360, height=260)
    return Chart(chart_id, title, spec.to_dict(), data)


def lines(rows: list[dict[str, Any]], keys: list[str], chart_id: str, title: str) -> Chart:
    alt = _alt()
    data = [{"step": r["step"], "metric": k, "value": r[k]} for r in rows for k in keys if isinstance(r.get(k), (int, float))]
    spec = (
        alt.Chart(alt.Data(values=data), title=title)
        .mark_line(point=True)
        .encode(x="step:Q", y="value:Q", color="metric:N", tooltip=["step:Q", "metric:N", "value:Q"])
        .properties(width=360, height=220)
    )
    return Chart(chart_id, title, spec.to_dict(), data)


def bars(data: list[dict[str, Any]], x: str, y: str, chart_id: str, title: str) -> Chart:
    alt = _alt()
    spec = alt.Chart(alt.Data(values=data), title=title).mark_bar().encode(
        x=alt.X(f"{x}:N", sort=None), y=alt.Y(f"{y}:Q"), tooltip=[f"{x}:N", f"{y}:Q"]
    ).properties(width=360, height=220)
    return Chart(chart_id, title, spec.to_dict(), data)


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"chart-{self.n}"


def table_sections(path: str | os.PathLike, ids: _Ids) -> list[Section]:
    """The sections for one table: lineage and drops, per model, histograms, DCRM picture, difficulty."""
    import scorers
    from curate.io import load
    from curate.lineage import Step

    read = Step("read")  # what validation found (duplicates, converted columns) goes into the overview
    table = load(path, kind=None, step=read, dedup=None)  # validated: conversational completions are read as text
    frame, lineage, kind = table.frame, table.lineage, table.kind
    names = frame.collect_schema().names()
    numeric = [c for c, t in frame.collect_schema().items() if t.is_numeric()]
    produced = {c for cls in scorers.registry().values() for c in cls.produces} | set(_SCORER_HINTS)
    wanted = [c for c in numeric if c == "weight" or c in produced]
    extra = []
    if {"chosen_reward", "rejected_reward"} <= set(names) and "reward_margin" not in names:
        extra.append((pl.col("chosen_reward") - pl.col("rejected_reward")).alias("reward_margin"))
        wanted.append("reward_margin")
    cols = sorted(set(wanted) | {c for c in ("model", "chosen_model", "reward", "correct", "chosen_reward", "prompt_id") if c in names})
    df = frame.with_columns(extra).select(cols).collect() if cols else pl.DataFrame()
    name = Path(str(path)).name
    out = []

    overview = Section(f"{name}: a `{kind}` table")
    overview.html.append(f"<p>{df.height:,} rows; columns: {html.escape(', '.join(names))}.</p>")
    overview.html.extend(f"<p>Note: {html.escape(note)}.</p>" for note in read.warnings)
    steps = lineage.steps
    if steps:
        rows = [{"#": i, "step": s.name, "rows in": s.rows_in, "rows out": s.rows_out,
                 "parameters": ", ".join(f"{k}={json.dumps(v)}" for k, v in s.params.items() if v is not None)} for i, s in enumerate(steps, 1)]  # fmt: skip
        overview.html.append(_table(rows, ["#", "step", "rows in", "rows out", "parameters"]))
        overview.charts.append(bars([{"step": f"{i}. {s.name}", "rows out": s.rows_out or 0} for i, s in enumerate(steps, 1)], "step", "rows out",
                                    ids(), "rows out of each step"))  # fmt: skip
        drops = [{"step": f"{i}. {s.name}", "reason": r, "unit": s.units.get(r, "rows"), "count": n}
                 for i, s in enumerate(steps, 1) for r, n in s.counts.items()]  # fmt: skip
        overview.html.append("<h3>Drop reasons</h3>" + (_table(drops, ["step", "reason", "unit", "count"]) if drops else "<p>Nothing was dropped.</p>"))
        sources = ", ".join(html.escape(s) for s in lineage.sources)
        overview.html.append(f"<p>Sources: {sources or '—'}.</p>")
    out.append(overview)

    model = "model" if "model" in df.columns else "chosen_model" if "chosen_model" in df.columns else None
    reward = "reward" if "reward" in df.columns else "chosen_reward" if "chosen_reward" in df.columns else None
    if model is not None:
        aggs = [pl.len().alias("rows")]
        if reward:
            aggs.append(pl.col(reward).mean().alias("mean reward"))
        if "correct" in df.columns:
            aggs.append(pl.col("correct").cast(pl.Float64).mean().alias("accuracy"))
        per = df.group_by(model).agg(aggs).sort(model)
        sec = Section(f"{name}: per model" + (" (the chosen side)" if model == "chosen_model" else ""))
        sec.html.append(_table(per.rename({model: "model"}).to_dicts(), ["model", *[c for c in per.columns if c != model]]))
        out.append(sec)

    hist = Section(f"{name}: distributions")
    for c in [c for c in wanted if c in df.columns]:
        hist.charts.append(histogram(df[c], c, ids(), f"{c} ({df[c].drop_nulls().len():,} rows)"))
    if kind == "samples" and "correct" in df.columns and "difficulty_weight" not in df.columns:
        per_prompt = scorers.score(frame, ["difficulty"]).group_by("prompt_id").agg(pl.col("difficulty_weight").first()).collect()
        hist.charts.append(histogram(per_prompt["difficulty_weight"], "difficulty_weight", ids(), f"difficulty weight per prompt ({per_prompt.height:,} prompts)"))
    if hist.charts:
        out.append(hist)

    if kind == "pairs" and {"chosen_reward", "rejected_reward"} <= set(names):
        pic = Section(f"{name}: reward margin against edit distance (DCRM)")
        sample = frame.with_columns(extra)
        if "edit_distance" not in names:
            sample = scorers.score(sample.head(SCATTER_POINTS), ["edit_distance"])
        pts = sample.select("reward_margin", "edit_distance").collect()
        pic.charts.append(scatter(pts, "edit_distance", "reward_margin", ids(), "each pair: reward margin vs edit distance (words)"))
        out.append(pic)
    return out


def training_sections(folder: Path, ids: _Ids) -> list[Section]:
    """Curves of one training run from its metrics.jsonl."""
    rows = []
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    sec = Section(f"training run {folder.name}: {len(rows)} logged steps")
    if not rows:
        sec.html.append("<p>No metrics yet.</p>")
        return [sec]
    last = rows[-1]
    sec.html.append(_table([{k: last[k] for k in ("step", "loss", "rewards/margins", "rewards/accuracies", "lr") if k in last}],
                           [k for k in ("step", "loss", "rewards/margins", "rewards/accuracies", "lr") if k in last]))  # fmt: skip
    for keys, title in ((["loss", "eval/loss"], "loss"), (["rewards/margins", "eval/rewards/margins"], "reward margin"),
                        (["rewards/accuracies", "eval/rewards/accuracies"], "reward accuracy"), (["weight_mean"], "mean weight")):  # fmt: skip
        present = [k for k in keys if any(k in r for r in rows)]
        if present:
            sec.charts.append(lines(rows, present, ids(), title))
    return [sec]


_CSS = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}h1{font-size:1.6rem}h2{margin-top:2.2rem;
border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;
text-align:left}.charts{display:flex;flex-wrap:wrap;gap:1.2rem}.chart{min-width:380px}"""


def render(sections: list[Section], title: str) -> str:
    """The HTML page: tables, one div per chart, its spec as JSON, and the inlined Vega bundle that draws them."""
    import vl_convert as vlc

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]  # fmt: skip
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts.extend(sec.html)
        if sec.charts:
            parts.append("<div class='charts'>")
            for c in sec.charts:
                spec = json.dumps(c.spec).replace("</", "<\\/")
                parts.append(f"<div class='chart' id='{c.id}'></div><script type='application/json' data-chart='{c.id}'>{spec}</script>")
            parts.append("</div>")
    snippet = """
        const specs = document.querySelectorAll('script[type="application/json"][data-chart]');
        let drawn = 0;
        Promise.all([...specs].map(el => vegaEmbed('#' + el.dataset.chart, JSON.parse(el.textContent), {renderer: 'svg', actions: false})
            .then(() => { drawn += 1; }))).then(() => { document.body.dataset.drawn = String(drawn); },
                                                   (err) => { console.error('chart failed: ' + err); });
    """
    bundle = vlc.javascript_bundle(snippet).replace("</script", "<\\/script")
    parts.append(f"<script type='module'>{bundle}</script></body></html>")
    return "".join(parts)


def build(inputs: list[str | os.PathLike], title: str | None = None) -> tuple[str, list[Section]]:
    """The report page for these inputs (tables and training folders) and its sections."""
    ids = _Ids()
    sections: list[Section] = []
    for item in inputs:
        p = Path(str(item))
        if p.is_dir() and (p / "metrics.jsonl").exists():
            sections += training_sections(p, ids)
        else:
            sections += table_sections(item, ids)
    names = ", ".join(Path(str(i)).name for i in inputs)
    title = title or f"curate report: {names}"
    return render(sections, title), sections


def report(inputs: list[str | os.PathLike], out: str | os.PathLike, title: str | None = None) -> list[Section]:
    """Write the report for `inputs` to `out` (atomically) and return its sections."""
    from curate.sinks import atomic_path

    page, sections = build(inputs, title)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return sections
