"""Selection and weights (SPEC §4): `--where` (a DuckDB predicate), `--top`/`--top-k` by a column, `--weight`."""

from __future__ import annotations

import math

import polars as pl

from curate.errors import CurateError, SchemaError
from curate.report import Step

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
) -> pl.LazyFrame:
    """Filter rows by `where`, keep the `top` fraction / `top_k` rows by `by` (descending), then set weights.

    Rows keep their input order. `per_prompt` applies top/top-k within each `prompt_id`. Every drop is
    counted on `step` with its reason; ties at the cut keep the earlier row. `where` is one DuckDB
    predicate, run sandboxed (curate.where); `allow_file_access` lets it read other tables or files.
    """
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
                raise SchemaError(f"{opt} names a column the table does not have (nor a scorer output)", column=col, hint=f"Columns: {', '.join(names)}.")
            frame = scorers.score(frame, [producer])  # a scorer output, computed on demand (e.g. --by reward_margin)
            names = frame.collect_schema().names()
    if per_prompt and "prompt_id" not in names:
        raise SchemaError("--per-prompt needs a `prompt_id` column", column="prompt_id")

    frame = frame.with_row_index(_ROW)
    if where:
        frame = where_filter(frame, where, step, allow_file_access=allow_file_access)
    if by is not None and (top is not None or top_k is not None):
        frame = _top(frame, by=by, top=top, top_k=top_k, per_prompt=per_prompt, step=step)
    if weight is not None:
        frame = _set_weight(frame, weight)
    if normalize_weights == "mean":
        frame = _normalize_mean(frame)
    return frame.sort(_ROW).drop(_ROW)


def where_filter(frame: pl.LazyFrame, predicate: str, step: Step, *, allow_file_access: bool = False) -> pl.LazyFrame:
    """Keep rows where the DuckDB `predicate` is true (null is false), counting the others; streams batch by batch."""
    from curate.where import parse_predicate, predicate_mask

    if allow_file_access:
        return _where_query(frame, predicate, step)
    parse_predicate(predicate)
    keep = predicate_mask(predicate, frame.collect_schema())
    marked = frame.with_columns(keep.alias("__keep"))
    step.count(f"rows where `{predicate}` is false or null", marked.select((~pl.col("__keep")).sum()))
    return marked.filter(pl.col("__keep")).drop("__keep")


def _where_query(frame: pl.LazyFrame, predicate: str, step: Step) -> pl.LazyFrame:
    """The predicate as one DuckDB query over the whole table, with file access (subqueries allowed); materialises."""
    import duckdb

    from curate.where import parse_predicate

    parse_predicate(predicate, allow_file_access=True)
    con = duckdb.connect()
    con.register("t", frame.collect())
    try:
        kept = con.sql(f"SELECT * FROM t WHERE ({predicate}) ORDER BY {_ROW}").pl()
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
    what = f"top {top:.0%}" if top is not None else f"top {top_k}"
    step.count(f"rows below the {what} by `{by}`{' per prompt' if per_prompt else ''}", marked.select((~pl.col("__top")).sum()))
    return marked.filter(pl.col("__top")).drop("__top")


def _set_weight(frame: pl.LazyFrame, column: str) -> pl.LazyFrame:
    w = pl.col(column).cast(pl.Float64)
    bad = frame.select((w.is_null() | ~w.is_finite() | (w < 0)).alias("bad"), pl.col(_ROW)).filter("bad").collect()
    if bad.height:
        raise SchemaError(
            "--weight column has null, non-finite or negative values",
            column=column,
            rows=bad[_ROW].head(5).to_list(),
            count=bad.height,
            hint="Filter them first, e.g. --where \"%s IS NOT NULL\"." % column,
        )
    return frame.with_columns(w.alias("weight"))


def _normalize_mean(frame: pl.LazyFrame) -> pl.LazyFrame:
    if "weight" not in frame.collect_schema().names():
        frame = frame.with_columns(pl.lit(1.0).alias("weight"))
    mean = frame.select(pl.col("weight").mean()).collect().item()
    if mean is None or not math.isfinite(mean) or mean <= 0:
        raise CurateError(f"cannot normalise weights to mean 1: their mean is {mean}.")
    return frame.with_columns(pl.col("weight") / mean)
