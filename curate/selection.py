"""Selection and weights: `--where` (a DuckDB predicate), `--top`/`--top-k` by a column, `--weight`."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from curate.errors import CurateError, SchemaError
from curate.lineage import Step
from curate.schema import SOURCE_ROW

NORMALIZE = ("mean",)
_ROW = "__select_row"


def select(
    frame: pl.LazyFrame,
    *,
    where: str | None = None,
    top: float | None = None,
    top_k: int | None = None,
    by: str | None = None,
    per_prompt: bool = False,
    weight: str | None = None,
    normalize_weights: str | None = None,
    step: Step | None = None,
    allow_file_access: bool = False,
    given: dict[str, Any] | None = None,
) -> pl.LazyFrame:
    """Filter rows by `where`, keep the `top` fraction / `top_k` rows by `by` (descending), then set weights.

    Rows keep their input order. `per_prompt` applies top/top-k within each `prompt_id`. Every drop is
    counted on `step` with its reason; ties at the cut keep the earlier row. `where` is one DuckDB
    predicate, run sandboxed (curate.where); `allow_file_access` lets it read other tables or files.
    `given` holds whole-table values computed elsewhere (a distributed run, `select_phases`): the
    cut of a global top (`cut`: the last kept (value, row), None to keep all) and the mean weight.
    """
    given = given or {}
    step = step if step is not None else Step("select")
    if top is not None and top_k is not None:
        raise CurateError("use either --top FRACTION or --top-k N, not both.")
    if top is not None and not 0 < top <= 1:
        raise CurateError(f"--top is a fraction in (0, 1] (got {top}); use --top-k for a row count.")
    if top_k is not None and top_k < 1:
        raise CurateError(f"--top-k must be at least 1 (got {top_k}).")
    if (top is not None or top_k is not None) and by is None:
        raise CurateError("--top/--top-k need --by COLUMN to rank the rows.")
    if normalize_weights is not None and normalize_weights not in NORMALIZE:
        raise CurateError(f"--normalize-weights must be one of {', '.join(NORMALIZE)} (got {normalize_weights!r}).")
    names = frame.collect_schema().names()
    for col, opt in ((by, "--by"), (weight, "--weight")):
        if col is not None and col not in names:
            import scorers

            producer = scorers.producer_of(col)
            if producer is None:
                raise SchemaError(f"{opt} names a column the table does not have (nor a scorer output)", column=col, hint=f"Columns: {', '.join(n for n in names if not n.startswith('__'))}.")
            # a scorer output, computed on demand (e.g. --by reward_margin), once: the output and every count read that one result
            frame = scorers.score(frame, [producer]).cache()
            names = frame.collect_schema().names()
    if per_prompt and "prompt_id" not in names:
        raise SchemaError("--per-prompt needs a `prompt_id` column", column="prompt_id")

    # the input's row number (a block of a distributed run carries the whole input's): ties and order follow it
    frame = frame.with_columns(pl.col(SOURCE_ROW).alias(_ROW)) if SOURCE_ROW in names else frame.with_row_index(_ROW)
    if where:
        frame = where_filter(frame, where, step, allow_file_access=allow_file_access)
    if by is not None and (top is not None or top_k is not None):
        if "cut" in given and not per_prompt:
            frame = _cut(frame, by=by, what=_what(top, top_k), cut=given["cut"], step=step)
        else:
            frame = _top(frame, by=by, top=top, top_k=top_k, per_prompt=per_prompt, step=step)
    if weight is not None:
        frame = _set_weight(frame, weight, step)
    if normalize_weights == "mean":
        frame = _normalize_mean(frame, step, given.get("mean_weight"))
    # filters and row-wise columns keep the input's order (the output streams with maintain_order): no sort, no buffering
    return frame.drop(_ROW)


def select_phases(
    *,
    top: float | None = None,
    top_k: int | None = None,
    by: str | None = None,
    per_prompt: bool = False,
    normalize_weights: str | None = None,
    **options: Any,
) -> list[Any]:
    """The whole-table values `select` needs when it runs block by block (curate.distributed): rows, cut, mean weight.

    A global top keeps the best int(fraction × rows) rows: the blocks count their rows, then each sends its
    own best candidates (a global top-k is among them), and the driver finds the last kept row.
    """
    from curate.distributed import Phase

    global_top = by is not None and (top is not None or top_k is not None) and not per_prompt
    normalize = normalize_weights == "mean"
    if not global_top and not normalize:
        return []
    if options.get("allow_file_access"):
        raise CurateError("--allow-file-access reads the whole table in one query; it cannot run block by block (--engine ray).")

    def ready(frame: pl.LazyFrame) -> pl.LazyFrame:
        return _before_cut(frame, by=by, per_prompt=per_prompt, top=top, top_k=top_k, **options)

    phases = []
    if global_top:
        if top is not None:
            phases.append(Phase("rows", lambda f, known: ready(f).filter(pl.col(by).is_not_null()).select(pl.len().alias("n")),
                                lambda parts, known: sum(p["n"] for p in parts)))  # fmt: skip

        def candidates(frame: pl.LazyFrame, known: dict[str, Any]) -> pl.LazyFrame:
            return _ranked(ready(frame), by).head(_keep(known.get("rows"), top, top_k)).select(pl.all().implode())

        def merge(parts: list[dict[str, Any]], known: dict[str, Any]) -> dict[str, Any]:
            rows = sorted(((v, r, w) for p in parts for v, r, w in zip(p["v"] or [], p["r"] or [], p["w"] or [], strict=True)), key=_rank_key)
            kept = rows[: _keep(known.get("rows"), top, top_k)]
            return {"cut": [kept[-1][0], kept[-1][1]] if kept else None, "mean_weight": _usable_or_none(_mean([w for _, _, w in kept]))}

        phases.append(Phase("cut", candidates, merge))
    else:
        phases.append(Phase("weights", lambda f, known: ready(f).select(pl.col("weight").sum().alias("s"), pl.col("weight").count().alias("n")),
                            lambda parts, known: {"mean_weight": _usable_or_none(_mean_of(parts))}))  # fmt: skip
    return phases


def statistics_pass(frame: pl.LazyFrame, *, top: float | None = None, top_k: int | None = None, by: str | None = None,
                    per_prompt: bool = False, weight: str | None = None, normalize_weights: str | None = None,
                    allow_file_access: bool = False, **options: Any) -> dict[str, Any] | None:  # fmt: skip
    """The `given` of `select` from one pass over the few columns that rank the rows: a global top's cut (the last kept
    (value, row)) and the mean weight; None when `select` needs no whole-table value.

    The first of two passes: given the cut, the pass that writes keeps rows by comparing each with
    it and streams, where a rank over the whole table held every column of it until it was known.
    None also when the ranking column or the weight comes from a scorer that is not `vectorized`
    (this pass would run it a second time), or with `allow_file_access` (one DuckDB query).
    """
    global_top = by is not None and (top is not None or top_k is not None) and not per_prompt
    normalize = normalize_weights == "mean"
    if not (global_top or normalize) or allow_file_access:
        return None
    import scorers

    names = frame.collect_schema().names()
    for col in (by, weight):
        producer = scorers.producer_of(col) if col is not None and col not in names else None
        if producer is not None and not scorers.registry()[producer].vectorized:
            return None
    numbered = frame.with_row_index(SOURCE_ROW)  # the numbers the writing pass gives the same rows
    ready = _before_cut(numbered, by=by, per_prompt=per_prompt, top=top, top_k=top_k, weight=weight, **options)
    if not global_top:
        return {"mean_weight": _usable_or_none(ready.select(pl.col("weight").cast(pl.Float64).mean()).collect().item())}
    ranked = _ranked(ready, by).collect()
    kept = ranked.head(_keep(ranked.height, top, top_k))
    if kept.is_empty():
        return {"cut": None}
    return {"cut": [kept["v"][-1], kept["r"][-1]], "mean_weight": _usable_or_none(kept["w"].mean())}


def _before_cut(frame: pl.LazyFrame, *, by: str | None, per_prompt: bool, top: float | None, top_k: int | None, **options: Any) -> pl.LazyFrame:
    """The rows a global top ranks (after `where`, a per-prompt top and `--weight`), with a `weight` column. Its counts
    and checks are never run: the pass that writes runs them, with the output."""
    scratch = Step("select")
    scratch.deferred_checks = True
    local = {"top": top, "top_k": top_k} if per_prompt else {}
    out = select(frame, by=by, per_prompt=per_prompt, **local, **options, step=scratch)
    return out if "weight" in out.collect_schema().names() else out.with_columns(pl.lit(1.0).alias("weight"))


def _ranked(frame: pl.LazyFrame, by: str) -> pl.LazyFrame:
    """Candidates for a global top: (value `v`, input row `r`, weight `w`) in `_top`'s order (value descending, NaN last, then row)."""
    v = pl.col(by).cast(pl.Float64)
    w = pl.col("weight").cast(pl.Float64)
    return frame.filter(v.is_not_null()).select(v.alias("v"), pl.col(SOURCE_ROW).alias("r"), w.alias("w")).sort(-pl.col("v"), "r")


def _usable_or_none(mean: float | None) -> float | None:
    """A mean weight to divide by, else None: with no rows or a bad weight the writing pass (each block, on Ray) computes
    the mean itself and reports any problem in its order: a `--weight` column's bad values first, then the mean."""
    return mean if mean is not None and math.isfinite(mean) and mean > 0 else None


def given_by_phases(known: dict[str, Any]) -> dict[str, Any]:
    """The `given` of `select` from the merged phases."""
    out = dict(known.get("weights") or {})
    if "cut" in known:
        out.update(known["cut"])
    return out


def _rank_key(row: tuple[float, int, float]) -> tuple[bool, float, int]:
    """A (value, row, weight) candidate's place in `_top`'s order: value descending, NaN last, then row."""
    v, r, _ = row
    return (True, 0.0, r) if math.isnan(v) else (False, -v, r)


def _keep(rows: int | None, top: float | None, top_k: int | None) -> int:
    return max(1, math.floor((rows or 0) * top)) if top is not None else int(top_k or 0)


def _mean(values: list[float]) -> float | None:
    return pl.Series(values, dtype=pl.Float64).mean() if values else None


def _mean_of(parts: list[dict[str, Any]]) -> float | None:
    n = sum(p["n"] or 0 for p in parts)
    return sum(p["s"] or 0.0 for p in parts) / n if n else None


def _what(top: float | None, top_k: int | None) -> str:
    return f"top {top:.0%}" if top is not None else f"top {top_k}"


def _cut(frame: pl.LazyFrame, *, by: str, what: str, cut: list | None, step: Step) -> pl.LazyFrame:
    """A global top given its last kept (value, row): the same rows and counts as `_top` over the whole table."""
    step.count(f"rows with null `{by}`", frame.select(pl.col(by).is_null().sum()))
    frame = frame.filter(pl.col(by).is_not_null())
    v = pl.col(by).cast(pl.Float64)
    if cut is None:
        keep = pl.lit(False)
    else:  # `_top`'s order: by value, descending, NaN last (Polars compares NaN as the largest: it is excluded here by hand)
        above = ~v.is_nan() if math.isnan(cut[0]) else (v > cut[0]) & ~v.is_nan()
        keep = above | ((v == cut[0]) & (pl.col(_ROW) <= cut[1]))
    marked = frame.with_columns(keep.alias("__top"))
    step.count(f"rows below the {what} by `{by}`", marked.select((~pl.col("__top")).sum()))
    return marked.filter(pl.col("__top")).drop("__top")


def where_filter(frame: pl.LazyFrame, predicate: str, step: Step, *, allow_file_access: bool = False) -> pl.LazyFrame:
    """Keep rows where the DuckDB `predicate` is true (null is false), counting the others; streams batch by batch."""
    from curate.where import predicate_mask

    if allow_file_access:
        return _where_query(frame, predicate, step)
    keep = predicate_mask(predicate, frame.collect_schema())
    marked = frame.with_columns(keep.alias("__keep")).cache()  # the predicate runs once: the output and the count read it
    step.count(f"rows where `{predicate}` is false or null", marked.select((~pl.col("__keep")).sum()))
    return marked.filter(pl.col("__keep")).drop("__keep")


def _where_query(frame: pl.LazyFrame, predicate: str, step: Step) -> pl.LazyFrame:
    """The predicate as one DuckDB query over the whole table, with file access (subqueries allowed); materialises."""
    import duckdb

    from curate.sql import to_polars
    from curate.where import parse_predicate

    parse_predicate(predicate, allow_file_access=True)
    con = duckdb.connect()
    con.register("t", frame.collect())
    try:
        kept = to_polars(con.sql(f"SELECT * FROM t WHERE ({predicate}) ORDER BY {_ROW}"))
        n_in = con.sql("SELECT count(*) FROM t").fetchall()[0][0]
    except duckdb.Error as exc:
        raise CurateError(f"--where {predicate!r} is not a valid DuckDB predicate over this table: {exc}") from exc
    finally:
        con.close()
    step.drop(f"rows where `{predicate}` is false or null", n_in - kept.height)
    return kept.lazy()


def _top(frame: pl.LazyFrame, *, by: str, top: float | None, top_k: int | None, per_prompt: bool, step: Step) -> pl.LazyFrame:
    step.count(f"rows with null `{by}`", frame.select(pl.col(by).is_null().sum()))
    frame = frame.filter(pl.col(by).is_not_null())
    group = ["prompt_id"] if per_prompt else []
    n = pl.len().over(group) if group else pl.len()
    # keep int(fraction × n) rows, at least one of a non-empty group (the alignment-potential code's rounding)
    keep = pl.max_horizontal(pl.lit(1), (n.cast(pl.Float64) * top).floor().cast(pl.Int64)) if top is not None else pl.lit(top_k)
    order = [-pl.col(by).cast(pl.Float64), pl.col(_ROW)]
    rank = pl.int_range(pl.len()).over(group, order_by=order) if group else pl.int_range(pl.len()).over(pl.lit(0), order_by=order)
    marked = frame.with_columns((rank < keep).alias("__top"))
    what = _what(top, top_k)
    step.count(f"rows below the {what} by `{by}`{' per prompt' if per_prompt else ''}", marked.select((~pl.col("__top")).sum()))
    return marked.filter(pl.col("__top")).drop("__top")


def _set_weight(frame: pl.LazyFrame, column: str, step: Step) -> pl.LazyFrame:
    """`weight` from `column`; a null, non-finite or negative value stops the step (checked in the same execution as the output)."""
    w = pl.col(column).cast(pl.Float64)
    bad = w.is_null() | ~w.is_finite() | (w < 0)

    def verify(found: dict[str, Any]) -> None:
        if found["count"]:
            raise SchemaError(
                "--weight column has null, non-finite or negative values",
                column=column,
                rows=found["rows"],
                count=found["count"],
                hint="Filter them first, e.g. --where \"%s IS NOT NULL\"." % column,
            )

    step.require(f"--weight {column}", frame.select(bad.sum().alias("count"), pl.col(_ROW).filter(bad).head(5).implode().alias("rows")), verify)
    return frame.with_columns(w.alias("weight"))


def _normalize_mean(frame: pl.LazyFrame, step: Step, mean: float | None = None) -> pl.LazyFrame:
    """Weights divided by their mean over the table, in the same execution as the output (`mean`: computed elsewhere, by a distributed run)."""
    if "weight" not in frame.collect_schema().names():
        frame = frame.with_columns(pl.lit(1.0).alias("weight"))

    def verify(found: dict[str, Any]) -> None:
        value = found["mean"]
        if found["rows"] and (value is None or not math.isfinite(value) or value <= 0):
            raise CurateError(f"cannot normalise weights to mean 1: their mean is {value}.")

    if mean is None:
        step.require("mean weight", frame.select(pl.col("weight").mean().alias("mean"), pl.len().alias("rows")), verify)
        return frame.with_columns(pl.col("weight") / pl.col("weight").mean())
    verify({"mean": mean, "rows": 1})
    return frame.with_columns(pl.col("weight") / mean)
