"""The four table kinds of SPEC §2 (`samples`, `pairs`, `triplets`, `ranked`) and their validation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

from curate.errors import SchemaError
from curate.report import Step

KINDS = ("samples", "pairs", "triplets", "ranked")

F64, I64, BOOL, STR = pl.Float64, pl.Int64, pl.Boolean, pl.String


@dataclass(frozen=True)
class Column:
    """One column of a kind: its type, whether it must be present, and whether nulls/empties are errors."""

    name: str
    dtype: pl.DataType
    required: bool = False
    non_empty: bool = False  # strings: no nulls and no empty strings
    finite: bool = False  # floats: no NaN/inf (nulls are allowed: "not graded")


def _paired(prefix_names: dict[str, pl.DataType], roles: tuple[str, ...]) -> list[Column]:
    cols = []
    for role in roles:
        for name, dtype in prefix_names.items():
            if name.startswith("ref_"):
                cols.append(Column(f"ref_{role}_{name[4:]}", dtype, finite=dtype == F64))
            else:
                cols.append(Column(f"{role}_{name}", dtype, finite=dtype == F64))
    return cols


_PER_RESPONSE = {"model": STR, "reward": F64, "correct": BOOL, "logps": F64, "ref_logps": F64, "n_tokens": I64}

SCHEMAS: dict[str, list[Column]] = {
    "samples": [
        Column("prompt_id", STR),
        Column("prompt", STR, required=True, non_empty=True),
        Column("response", STR, required=True, non_empty=True),
        Column("model", STR),
        Column("reward", F64, finite=True),
        Column("correct", BOOL),
        Column("answer", STR),
        Column("gold", STR),
        Column("logp", F64, finite=True),
        Column("ref_logp", F64, finite=True),
        Column("n_tokens", I64),
        Column("token_ids", pl.List(I64)),
        Column("embedding", pl.List(pl.Float32)),
    ],
    "pairs": [
        Column("prompt_id", STR),
        Column("prompt", STR, required=True, non_empty=True),
        Column("chosen", STR, required=True, non_empty=True),
        Column("rejected", STR, required=True, non_empty=True),
        *_paired(_PER_RESPONSE, ("chosen", "rejected")),
        Column("weight", F64, finite=True),
    ],
    "triplets": [
        Column("prompt_id", STR),
        Column("prompt", STR, required=True, non_empty=True),
        Column("chosen", STR, required=True, non_empty=True),
        Column("chosen_target", STR, required=True, non_empty=True),
        Column("rejected", STR, required=True, non_empty=True),
        *_paired(_PER_RESPONSE, ("chosen", "chosen_target", "rejected")),
        Column("weight", F64, finite=True),
    ],
    "prompts": [  # input of `curate sample` / `curate augment`: one row per prompt
        Column("prompt_id", STR),
        Column("prompt", STR, required=True, non_empty=True),
        Column("gold", STR),
    ],
    "ranked": [
        Column("prompt_id", STR),
        Column("prompt", STR, required=True, non_empty=True),
        Column("responses", pl.List(STR), required=True),
        Column("rewards", pl.List(F64)),
        Column("models", pl.List(STR)),
        Column("ref_logps", pl.List(F64)),
        Column("weight", F64, finite=True),
    ],
}

_MAX_ROWS_SHOWN = 5


def detect_kind(columns: list[str]) -> str:
    """Guess the table kind from its column names."""
    cols = set(columns)
    if "responses" in cols:
        return "ranked"
    if "chosen_target" in cols:
        return "triplets"
    if {"chosen", "rejected"} <= cols:
        return "pairs"
    return "samples"


def prompt_hash(prompts: pl.Series) -> pl.Series:
    """Hex SHA-1 (first 16 chars) of each prompt; SPEC §2.1's derived `prompt_id`.

    Hashes each distinct prompt once (there are N responses per prompt) and maps the result back.
    """
    uniq = prompts.unique()
    digests = [hashlib.sha1(p.encode("utf-8")).hexdigest()[:16] if p is not None else None for p in uniq]
    return prompts.replace_strict(uniq, pl.Series(digests, dtype=pl.String), return_dtype=pl.String)


def _castable(have: pl.DataType, want: pl.DataType) -> bool:
    if have == want or have == pl.Null:
        return True
    if want == F64:
        return have.is_numeric()
    if want == I64:
        return have.is_integer()
    if want == BOOL:
        return have.is_integer()
    if want == STR:
        return isinstance(have, (pl.Categorical, pl.Enum))
    if isinstance(want, pl.List):
        inner = getattr(have, "inner", None)
        return isinstance(have, (pl.List, pl.Array)) and inner is not None and _castable(inner, want.inner)
    return False


def validate(
    frame: pl.LazyFrame,
    kind: str = "samples",
    *,
    source: str | None = None,
    dedup: bool = False,
    drop_invalid: bool = False,
    step: Step | None = None,
) -> pl.LazyFrame:
    """Check `frame` against the `kind` schema (SPEC §2) and return it with types cast and `prompt_id` derived.

    Raises SchemaError naming the source file, the column, the first offending rows and their count.
    With `drop_invalid`, rows failing a check are dropped instead and counted on `step` by reason.
    Duplicate (prompt_id, response, model) samples are reported on `step`, and dropped when `dedup`.
    """
    if kind not in SCHEMAS:
        raise SchemaError(f"unknown table kind {kind!r}; expected one of {', '.join(SCHEMAS)}", source=source)
    schema = frame.collect_schema()
    spec = SCHEMAS[kind]
    missing = [c.name for c in spec if c.required and c.name not in schema]
    if missing:
        hint = f"The file has columns: {', '.join(schema.names()) or '(none)'}."
        raise SchemaError(
            f"missing required column(s) for a `{kind}` table: {', '.join(missing)}",
            source=source,
            column=missing[0],
            hint=hint,
        )

    casts = []
    for col in spec:
        if col.name not in schema:
            continue
        have = schema[col.name]
        if have == col.dtype:
            continue
        if not _castable(have, col.dtype):
            raise SchemaError(
                f"column has type {have}, expected {col.dtype}", source=source, column=col.name
            )
        casts.append(pl.col(col.name).cast(col.dtype))
    for name, have in schema.items():
        if name.startswith("judge_") and have != F64:
            if not have.is_numeric() and have != pl.Null:
                raise SchemaError(f"column has type {have}, expected Float64", source=source, column=name)
            casts.append(pl.col(name).cast(F64))

    checks: list[tuple[str, str, pl.Expr]] = []
    for col in spec:
        if col.name not in schema:
            continue
        c = pl.col(col.name)
        if col.non_empty:
            checks.append((col.name, "null or empty (blank) string", c.is_null() | (c.cast(STR).str.strip_chars().str.len_bytes() == 0)))
        if col.finite and schema[col.name].is_float():
            checks.append((col.name, "NaN or infinite value", c.is_not_null() & ~c.is_finite()))
        if col.required and isinstance(col.dtype, pl.List):
            checks.append((col.name, "null or empty list", c.is_null() | (c.list.len() == 0)))
    if "correct" in schema and schema["correct"].is_integer():
        checks.append(("correct", "value other than 0/1", pl.col("correct").is_not_null() & ~pl.col("correct").is_in([0, 1])))

    indexed = frame.with_row_index("__row")
    aggs = [pl.len().alias("__n")]
    for i, (_, _, bad) in enumerate(checks):
        aggs.append(bad.sum().alias(f"__c{i}"))
        aggs.append(pl.col("__row").filter(bad).head(_MAX_ROWS_SHOWN).implode().alias(f"__r{i}"))
    try:
        stats = indexed.select(aggs).collect().row(0, named=True)
    except pl.exceptions.PolarsError as exc:  # e.g. a truncated file or a cast that fails on the data
        raise SchemaError(f"could not read the table ({type(exc).__name__}: {str(exc).splitlines()[0]})", source=source) from exc
    if stats["__n"] == 0:
        raise SchemaError(f"the table has 0 rows; a `{kind}` table needs at least one", source=source)
    failed = [(i, check) for i, check in enumerate(checks) if stats[f"__c{i}"]]
    if failed and not drop_invalid:
        i, (name, problem, _) = failed[0]
        raise SchemaError(
            problem,
            source=source,
            column=name,
            rows=stats[f"__r{i}"],
            count=stats[f"__c{i}"],
            hint="Fix these rows, or pass --drop-invalid to drop them (the drops are counted and reported).",
        )
    if failed:
        if step is not None:
            for i, (name, problem, _) in failed:
                step.drop(f"invalid `{name}`: {problem}", stats[f"__c{i}"])
        bad_any = pl.any_horizontal([bad for _, (_, _, bad) in failed])
        frame = frame.filter(~bad_any)
        if frame.select(pl.len()).collect().item() == 0:
            raise SchemaError("every row is invalid; nothing is left after --drop-invalid", source=source)

    out = frame.with_columns(casts) if casts else frame
    if "prompt_id" not in schema:
        out = out.with_columns(pl.col("prompt").map_batches(prompt_hash, return_dtype=STR).alias("prompt_id"))
        names = ["prompt_id", *schema.names()]
        out = out.select(names)
    if kind == "samples" and "model" not in schema:
        out = out.with_columns(pl.lit("policy", dtype=STR).alias("model"))
    if kind == "samples":
        out = _report_duplicates(out, source=source, dedup=dedup, step=step)
    return out


def _report_duplicates(frame: pl.LazyFrame, *, source: str | None, dedup: bool, step: Step | None) -> pl.LazyFrame:
    key = ["prompt_id", "response", "model"]
    n_dup = (
        frame.select(pl.struct(key).is_duplicated() & ~pl.struct(key).is_first_distinct())
        .select(pl.col(pl.Boolean).sum())
        .collect()
        .item()
    )
    if not n_dup:
        return frame
    if dedup:
        if step is not None:
            step.drop("duplicate (prompt_id, response, model)", n_dup)
        # keep the first occurrence in file order
        return frame.with_row_index("__row").filter(pl.struct(key).is_first_distinct()).sort("__row").drop("__row")
    if step is not None:
        step.warn(f"{n_dup} duplicate (prompt_id, response, model) row(s) in {source or 'the table'}; pass --dedup to drop them")
    return frame
