"""The four table kinds (`samples`, `pairs`, `triplets`, `ranked`) and their validation.

Prompts are text or conversations (lists of `{role, content}` messages, TRL's conversational format);
responses are stored as text, and a response given as one assistant message is converted on read.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from curate import messages as msg
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
    conversation: bool = False  # text, or a list of messages (a prompt)
    message: bool = False  # text, or one assistant message (a response), stored as text


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
PROMPT = Column("prompt", STR, required=True, non_empty=True, conversation=True)


def _text(name: str) -> Column:
    return Column(name, STR, required=True, non_empty=True, message=True)


SCHEMAS: dict[str, list[Column]] = {
    "samples": [
        Column("prompt_id", STR),
        PROMPT,
        _text("response"),
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
        PROMPT,
        _text("chosen"),
        _text("rejected"),
        *_paired(_PER_RESPONSE, ("chosen", "rejected")),
        Column("weight", F64, finite=True),
    ],
    "triplets": [
        Column("prompt_id", STR),
        PROMPT,
        _text("chosen"),
        _text("chosen_target"),
        _text("rejected"),
        *_paired(_PER_RESPONSE, ("chosen", "chosen_target", "rejected")),
        Column("weight", F64, finite=True),
    ],
    "prompts": [  # input of `curate sample` / `curate augment`: one row per prompt
        Column("prompt_id", STR),
        PROMPT,
        Column("gold", STR),
    ],
    "ranked": [
        Column("prompt_id", STR),
        PROMPT,
        Column("responses", pl.List(STR), required=True),
        Column("rewards", pl.List(F64)),
        Column("models", pl.List(STR)),
        Column("ref_logps", pl.List(F64)),
        Column("weight", F64, finite=True),
    ],
}

_MAX_ROWS_SHOWN = 5
_ORIG = "__orig_"  # internal: a column as it was read, kept for the checks of its conversion


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


prompt_hash = msg.prompt_hash  # `prompt_id` of a text or a conversation


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


def _split_messages(frame: pl.LazyFrame, schema: pl.Schema, kind: str, source: str | None) -> tuple[pl.LazyFrame, list]:
    """A `messages` column (a whole conversation, the last turn being the response) becomes `prompt` + `response`."""
    if kind != "samples" or "messages" not in schema:
        return frame, []
    clash = [c for c in ("prompt", "response") if c in schema]
    if clash:
        raise SchemaError(
            f"the table has both `messages` and {', '.join(f'`{c}`' for c in clash)}; give either a whole conversation in "
            "`messages` or a `prompt` and a `response`",
            source=source, column="messages",
        )  # fmt: skip
    if not msg.is_messages(schema["messages"]):
        raise SchemaError(f"column has type {schema['messages']}, expected a list of {{role, content}} messages", source=source, column="messages")
    checks = [("messages", p, bad) for p, bad in msg.conversation_checks("messages", last="assistant")]
    checks.append(("messages", "a conversation needs at least one turn before the response", pl.col("messages").list.len() == 1))
    order = [n for c in schema.names() for n in ((c, "prompt", "response") if c == "messages" else (c,))]
    return frame.with_columns(msg.split_messages("messages")).select(order), checks


def _column_checks(col: Column, have: pl.DataType, source: str | None) -> tuple[list, list[pl.Expr]]:
    """Row checks and conversions for one column present in the table."""
    c = pl.col(col.name)
    checks: list[tuple[str, str, pl.Expr]] = []
    exprs: list[pl.Expr] = []
    if col.conversation and msg.is_messages(have):
        fields = {f.name: f.dtype for f in have.inner.fields}
        if fields["content"] not in (STR, pl.Null):
            raise SchemaError(f"message `content` has type {fields['content']}; only text content is supported", source=source, column=col.name)
        checks += [(col.name, p, bad) for p, bad in msg.conversation_checks(col.name, last="not assistant")]
        return checks, exprs
    if col.message and (msg.is_message(have) or msg.is_messages(have)):
        tmp = f"{_ORIG}{col.name}"
        checks += [(col.name, p, bad) for p, bad in msg.single_message_checks(tmp, have)]
        exprs.append(pl.col(col.name).alias(tmp))
        exprs.append(msg.message_text(col.name, have))
        have = STR
    if have != col.dtype:
        if not _castable(have, col.dtype):
            expected = f"{col.dtype} or a list of {{role, content}} messages" if col.conversation else str(col.dtype)
            raise SchemaError(f"column has type {have}, expected {expected}", source=source, column=col.name)
        exprs.append(c.cast(col.dtype))
    if col.non_empty:
        checks.append((col.name, "null or empty (blank) string", c.is_null() | (c.cast(STR).str.strip_chars().str.len_bytes() == 0)))
    if col.finite and have.is_float():
        checks.append((col.name, "NaN or infinite value", c.is_not_null() & ~c.is_finite()))
    if col.required and isinstance(col.dtype, pl.List):
        checks.append((col.name, "null or empty list", c.is_null() | (c.list.len() == 0)))
    if col.name == "correct" and have.is_integer():
        orig = pl.col(f"{_ORIG}correct")
        exprs.append(c.alias(f"{_ORIG}correct"))
        checks.append(("correct", "value other than 0/1", orig.is_not_null() & ~orig.is_in([0, 1])))
    return checks, exprs


def validate(
    frame: pl.LazyFrame,
    kind: str = "samples",
    *,
    source: str | None = None,
    dedup: bool = False,
    drop_invalid: bool = False,
    step: Step | None = None,
) -> pl.LazyFrame:
    """Check `frame` against the `kind` schema and return it with types cast and `prompt_id` derived.

    Raises SchemaError naming the source file, the column, the first offending rows and their count.
    With `drop_invalid`, rows failing a check are dropped instead and counted on `step`, each row once,
    under the first check it fails. Duplicate (prompt_id, response, model) samples are reported on
    `step`, and dropped when `dedup`.
    """
    if kind not in SCHEMAS:
        raise SchemaError(f"unknown table kind {kind!r}; expected one of {', '.join(SCHEMAS)}", source=source)
    schema = frame.collect_schema()
    frame, checks = _split_messages(frame, schema, kind, source)
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

    converted: list[pl.Expr] = []
    for col in spec:
        if col.name in schema:
            col_checks, exprs = _column_checks(col, schema[col.name], source)
            checks += col_checks
            converted += exprs
    for name, have in schema.items():
        if name.startswith("judge_") and have != F64:
            if not have.is_numeric() and have != pl.Null:
                raise SchemaError(f"column has type {have}, expected Float64", source=source, column=name)
            converted.append(pl.col(name).cast(F64))
    if converted:
        frame = frame.with_columns(converted)

    indexed = frame.with_row_index("__row")
    aggs = [pl.len().alias("__n")]
    earlier = pl.lit(False)
    first_bad = []  # each row counts once, under the first check it fails
    for i, (_, _, bad) in enumerate(checks):
        bad = bad.fill_null(False)
        mine = bad & ~earlier
        first_bad.append(mine)
        earlier = earlier | bad
        aggs.append(mine.sum().alias(f"__c{i}"))
        aggs.append(pl.col("__row").filter(mine).head(_MAX_ROWS_SHOWN).implode().alias(f"__r{i}"))
    try:
        stats = indexed.select(aggs).collect().row(0, named=True)
    except pl.exceptions.PolarsError as exc:  # e.g. a truncated file or a cast that fails on the data
        raise SchemaError(f"could not read the table ({type(exc).__name__}: {str(exc).splitlines()[0]})", source=source) from exc
    if step is not None and step.rows_in is None:
        step.rows_in = stats["__n"]  # rows in the file, before any drop
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
        frame = frame.filter(~earlier)
        if sum(stats[f"__c{i}"] for i, _ in failed) == stats["__n"]:
            raise SchemaError("every row is invalid; nothing is left after --drop-invalid", source=source)

    split = ["messages"] if kind == "samples" and "messages" in schema else []
    out = frame.drop([c for c in frame.collect_schema().names() if c.startswith(_ORIG)] + split)
    names = out.collect_schema().names()
    if "prompt_id" not in names:
        out = out.with_columns(pl.col("prompt").map_batches(prompt_hash, return_dtype=STR).alias("prompt_id"))
        out = out.select(["prompt_id", *names])
    if kind == "samples" and "model" not in names:
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
