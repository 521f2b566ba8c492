"""The four table kinds (`samples`, `pairs`, `triplets`, `ranked`) and their validation.

Prompts are text or conversations (lists of `{role, content}` messages, TRL's conversational format);
responses are stored as text, and a response given as one assistant message is converted on read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from curate import messages as msg
from curate.errors import SchemaError, warn
from curate.hints import NULL_VALUE, OTHER_NAMES, fix_hint, option, rename_hint, responses_list_hint
from curate.lineage import Step

KINDS = ("samples", "pairs", "triplets", "ranked")

F64, I64, BOOL, STR = pl.Float64, pl.Int64, pl.Boolean, pl.String


@dataclass(frozen=True)
class Column:
    """One column of a kind: its type, whether it must be present, and whether nulls/empties are errors."""

    name: str
    dtype: pl.DataType
    required: bool = False
    non_empty: bool = False  # strings: no nulls and no empty strings
    not_null: bool = False  # no nulls (an id)
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
PROMPT_ID = Column("prompt_id", STR, not_null=True)  # optional, but a row with the column and no id belongs to no prompt


def _text(name: str) -> Column:
    return Column(name, STR, required=True, non_empty=True, message=True)


SCHEMAS: dict[str, list[Column]] = {
    "samples": [
        PROMPT_ID,
        PROMPT,
        _text("response"),
        Column("model", STR, not_null=True),  # optional (absent: "policy"), but a row with the column names its model
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
        PROMPT_ID,
        PROMPT,
        _text("chosen"),
        _text("rejected"),
        *_paired(_PER_RESPONSE, ("chosen", "rejected")),
        Column("weight", F64, finite=True),
    ],
    "triplets": [
        PROMPT_ID,
        PROMPT,
        _text("chosen"),
        _text("chosen_target"),
        _text("rejected"),
        *_paired(_PER_RESPONSE, ("chosen", "chosen_target", "rejected")),
        Column("weight", F64, finite=True),
    ],
    "prompts": [  # input of `curate sample` / `curate augment`: one row per prompt
        PROMPT_ID,
        PROMPT,
        Column("gold", STR),
    ],
    "ranked": [
        PROMPT_ID,
        PROMPT,
        Column("responses", pl.List(STR), required=True),
        Column("rewards", pl.List(F64)),
        Column("models", pl.List(STR)),
        Column("ref_logps", pl.List(F64)),
        Column("weight", F64, finite=True),
    ],
}

TEXT_COLUMNS = frozenset(c.name for columns in SCHEMAS.values() for c in columns if c.dtype == STR)  # read as written from CSV

_MAX_ROWS_SHOWN = 5
SOURCE_ROW = "__source_row"  # internal: a row's number in the whole input, on a block of a distributed run (curate.distributed)
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


def _from_value_messages(frame: pl.LazyFrame, schema: pl.Schema, kind: str, source: str | None) -> tuple[pl.LazyFrame, pl.Schema, list[str]]:
    """ShareGPT-style conversations (`{from, value}` messages; a samples table's `conversations` column) read as TRL's
    `{role, content}` messages, as TRL's `maybe_convert_to_chatml` reads them, with a note."""
    found = [c for c, t in schema.items() if msg.is_from_value(t)]
    if not found:
        return frame, schema, []
    frame = frame.with_columns(msg.from_value_to_role_content(c) for c in found)
    notes = [f"{', '.join(f'`{c}`' for c in found)} in {source or 'the table'}: ShareGPT messages ({{from, value}}) read as {{role, content}} "
             f"({', '.join(f'{k} → {v}' for k, v in msg.SHAREGPT_ROLES.items())})"]  # fmt: skip
    if kind == "samples" and "conversations" in found and not {"messages", "prompt", "response"} & set(schema.names()):
        frame = frame.rename({"conversations": "messages"})
        notes.append("`conversations` read as `messages` (the whole conversation; its last turn is the response)")
    return frame, frame.collect_schema(), notes


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


def _extract_implicit_prompt(frame: pl.LazyFrame, schema: pl.Schema, kind: str, source: str | None) -> tuple[pl.LazyFrame, list[str]]:
    """Pairs in TRL's implicit-prompt form get their `prompt`: the start `chosen` and `rejected` share, split as TRL does.

    That form has no `prompt` column, or a text one beside conversations in `chosen`/`rejected` (which
    then hold the prompt's turns too); TRL's `maybe_extract_prompt` splits both, and so does this.
    """
    if kind != "pairs" or "chosen" not in schema or "rejected" not in schema:
        return frame, []
    chosen, rejected = schema["chosen"], schema["rejected"]
    conversations = msg.is_messages(chosen)
    if "prompt" in schema and not (conversations and schema["prompt"] == STR):
        return frame, []
    if chosen != rejected or not (conversations or chosen == STR):
        raise SchemaError(f"`chosen` ({chosen}) and `rejected` ({rejected}) must both be text or both conversations to take the prompt "
                          "from their common start (TRL's implicit-prompt format); or give a `prompt` column", source=source, column="rejected")  # fmt: skip
    given = ["prompt"] if "prompt" in schema else []
    parts = pl.Struct({"prompt": chosen, "chosen": chosen, "rejected": chosen})
    split = pl.struct("chosen", "rejected", *given).map_batches(msg.extract_implicit_prompt, return_dtype=parts, is_elementwise=True)
    order = [c for c in schema.names() if c != "prompt"]
    order = ["prompt", *order] if "prompt_id" not in order else [n for c in order for n in ((c, "prompt") if c == "prompt_id" else (c,))]
    frame = frame.with_columns(split.alias("__split")).with_columns(pl.col("__split").struct.field("prompt", "chosen", "rejected")).select(order)
    replaced = " (the text `prompt` column is replaced)" if "prompt" in schema else ""
    return frame, [f"`prompt` taken from the start that `chosen` and `rejected` share in {source or 'the table'} (TRL's implicit-prompt format, "
                   f"split as TRL's `extract_prompt` does){replaced}"]  # fmt: skip


def prompts_of(frame: pl.DataFrame) -> pl.Series:
    """Each row's prompt as validation reads it: `prompt`, the turns before the last of `messages`, or the start an implicit
    pair's `chosen` and `rejected` share. Null for each row of a table whose layout validation will reject."""
    lazy = frame.lazy()
    schema = lazy.collect_schema()
    kind = detect_kind(schema.names())
    try:
        lazy, schema, _ = _from_value_messages(lazy, schema, kind, None)
        lazy = _extract_implicit_prompt(_split_messages(lazy, schema, kind, None)[0], schema, kind, None)[0]
        return lazy.select("prompt").collect().to_series()
    except (SchemaError, pl.exceptions.PolarsError):
        return pl.Series("prompt", [None] * frame.height, dtype=STR)


def _column_checks(col: Column, have: pl.DataType, source: str | None) -> tuple[list, list[pl.Expr]]:
    """Row checks and conversions for one column present in the table."""
    c = pl.col(col.name)
    checks: list[tuple[str, str, pl.Expr]] = []
    exprs: list[pl.Expr] = []
    if col.conversation and msg.is_message(have):  # one message: a conversation of one turn
        exprs.append(pl.concat_list(c).alias(col.name))
        have = pl.List(have)
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
    if have == STR and _read_from_text(col.dtype):  # numbers and flags written as text ("0.5", "true" in JSON)
        text = pl.col(f"{_ORIG}{col.name}").str.strip_chars()
        exprs.append(c.alias(f"{_ORIG}{col.name}"))
        if col.dtype == BOOL:
            exprs.append(c.str.strip_chars().str.to_lowercase().replace_strict(_FLAGS, default=None, return_dtype=BOOL))
        else:
            exprs.append(c.str.strip_chars().cast(col.dtype, strict=False))
        kind_of = "true/false" if col.dtype == BOOL else "a number" if col.dtype.is_float() else "an integer"
        checks.append((col.name, f"text that is not {kind_of}", (text != "") & c.is_null()))
        have = col.dtype
    if have != col.dtype:
        if not _castable(have, col.dtype):
            expected = f"{col.dtype} or a list of {{role, content}} messages" if col.conversation else str(col.dtype)
            raise SchemaError(f"column has type {have}, expected {expected}", source=source, column=col.name)
        exprs.append(c.cast(col.dtype))
    if col.non_empty:
        checks.append((col.name, "null or empty (blank) string", blank(c)))
    if (col.conversation or col.message) and have == STR:
        checks.append((col.name, _SERIALIZED, serialized_messages(c)))
    if col.not_null:
        checks.append((col.name, NULL_VALUE, c.is_null()))
    if col.finite and have.is_float():
        checks.append((col.name, "NaN or infinite value", c.is_not_null() & ~c.is_finite()))
    if col.required and isinstance(col.dtype, pl.List):
        checks.append((col.name, "null or empty list", c.is_null() | (c.list.len() == 0)))
    if col.name == "correct" and have.is_integer():
        orig = pl.col(f"{_ORIG}correct")
        exprs.append(c.alias(f"{_ORIG}correct"))
        checks.append(("correct", "value other than 0/1", orig.is_not_null() & ~orig.is_in([0, 1])))
    return checks, exprs


@dataclass
class Checked:
    """A table's validation, planned but not run: the validated frame, its one-row statistics, and `settle`.

    `settle(stats_row)` raises the SchemaError of the first failed check (or, with `drop_invalid`,
    records the drops on the step); the frame already filters invalid rows when they are dropped.
    The CLI computes `stats` in the same execution as the output (curate.sinks.execute).
    """

    frame: pl.LazyFrame
    stats: pl.LazyFrame
    settle: Callable[[dict[str, Any]], None]


_SPACES = r"\s\u00A0\u1680\u180E\u2000-\u200F\u2028-\u202F\u205F-\u2064\u3000\uFEFF"  # whitespace, no-break and zero-width spaces
NOT_SPACE = f"[^{_SPACES}]"
_CASTS_TO_TEXT = ("prompt_id", "answer", "gold", "model")  # integer ids/answers read as numbers: cast to text, losslessly
_FLOATS_TO_TEXT = ("answer", "gold")  # a numeric answer written as a JSON number or stored as a float (0.5 → "0.5")
_FLAGS = {"true": True, "false": False, "1": True, "0": False}  # a flag written as text, in lower case


def _read_from_text(dtype: pl.DataType) -> bool:
    """Whether a column of this type written as text is read from it (numbers, flags) rather than refused."""
    return dtype.is_float() or dtype.is_integer() or dtype == BOOL


_SERIALIZED = ("a message written as JSON text (in JSON Lines, a column whose rows mix text and messages is read as text); "
               "give every row the same form")


def _sorts_between(text: pl.Expr, low: bytes, high: bytes) -> pl.Expr:
    """Whether a text's bytes sort in [low, high): a test of its first bytes only (Polars compares string views by the
    prefix they hold inline), e.g. [b'{"', b'{#') holds exactly the texts that start with `{"` (0x23 follows `"`)."""
    lead = text.cast(pl.Binary)
    return (lead >= low) & (lead < high)


def serialized_messages(c: pl.Expr) -> pl.Expr:
    """A text that is a message or a list of messages written as JSON: `{"role": …, "content": …}`, `[{…}, …]`."""
    opens = _sorts_between(c, b'[{"', b"[{#") | _sorts_between(c, b'{"', b"{#")
    text = pl.when(opens).then(c)  # null elsewhere: only the few texts that open like JSON are searched, however long the others
    return text.str.contains(r'(?s)^\[?\{.*"(?:role|content)":.*"(?:role|content)":.*\}\]?$').fill_null(False)


def blank(c: pl.Expr) -> pl.Expr:
    """Null, empty, or only whitespace, including no-break and zero-width spaces.

    A text whose first byte is a visible ASCII character (`!` to `~`) is not blank: two byte
    comparisons settle it. Only the other texts are searched for a character that is not a space
    (the search stops at the first one), so a regex runs on few rows, however long the texts.
    """
    text = c.cast(STR)
    shown = _sorts_between(text, b"!", b"\x7f").fill_null(False)  # the first byte is in 0x21..0x7e
    searched = pl.when(~shown).then(text).str.contains(NOT_SPACE).fill_null(False)  # null (not searched) where `shown`
    return c.is_null() | ~(shown | searched)


def check(
    frame: pl.LazyFrame,
    kind: str = "samples",
    *,
    source: str | None = None,
    dedup: bool | None = False,
    drop_invalid: bool = False,
    step: Step | None = None,
    rehash_prompt_ids: bool | None = False,
    drop_hint: bool = True,
    only: set[str] | None = None,
    keep_row: bool = False,
    python: bool = False,
) -> Checked:
    """Plan the validation of `frame` as a `kind` table: schema errors raise now, row checks run with `stats`.

    Row checks: blank prompts and responses (Unicode spaces count as blank), malformed conversations,
    non-finite numbers, 0/1 flags, a null `prompt_id`; one `prompt_id` given to different prompts; duplicate
    (prompt_id, response, model) samples. Each bad row counts once, under the first check it fails.
    `only` limits the row checks to the columns a command reads (e.g. a per-prompt score never reads
    the responses); the schema is checked whole. `keep_row` leaves the internal row number `__row` on
    the frame, so the command builds on the very plan the checks use. `drop_hint` says whether the
    caller offers `--drop-invalid`, `rehash_prompt_ids=None` that it offers no `--rehash-prompt-ids` and
    `dedup=None` no `--dedup` (the errors' hints name only the options there are); `python` that the caller is Python code, so
    the hints and notes spell the options as keywords (`drop_invalid=True`).
    """
    if kind not in SCHEMAS:
        raise SchemaError(f"unknown table kind {kind!r}; expected one of {', '.join(SCHEMAS)}", source=source)
    schema = frame.collect_schema()
    frame, schema, chatml = _from_value_messages(frame, schema, kind, source)
    frame, checks = _split_messages(frame, schema, kind, source)
    frame, notes = _extract_implicit_prompt(frame, schema, kind, source)
    notes = [*chatml, *notes]
    if kind == "samples" and "completion" in schema and "response" not in schema and "messages" not in schema:
        frame = frame.rename({"completion": "response"})  # TRL's prompt-completion format
        notes.append(f"`completion` read as `response` in {source or 'the table'} (TRL's prompt-completion format)")
    schema = frame.collect_schema()
    spec = SCHEMAS[kind]
    missing = [c.name for c in spec if c.required and c.name not in schema]
    if missing:
        hints = [f"The file has columns: {', '.join(schema.names()) or '(none)'}."]
        if kind == "samples" and "response" in missing:
            one_value = [c.name for c in SCHEMAS["samples"] if not isinstance(c.dtype, pl.List)]
            hints.append(responses_list_hint(schema, one_value, source, python=python))
        renames = {}
        for want in missing:
            found = [n for n in OTHER_NAMES.get(want, ()) if n in schema and (schema[n] == STR or msg.is_messages(schema[n]))]
            if found:
                renames[found[0]] = want
        if renames:
            hints.append(rename_hint(renames, source, python=python))
        hint = " ".join(h for h in hints if h)
        raise SchemaError(f"missing required column(s) for a `{kind}` table: {', '.join(missing)}", source=source, column=missing[0], hint=hint)

    converted: list[pl.Expr] = []
    for col in spec:
        if col.name not in schema:
            continue
        have = schema[col.name]
        if col.name in _CASTS_TO_TEXT and (have.is_integer() or have == BOOL) or col.name in _FLOATS_TO_TEXT and have.is_float():
            converted.append(pl.col(col.name).cast(STR))
            notes.append(f"`{col.name}` holds {have} values in {source or 'the table'}; read as text")
            have = STR
            schema = pl.Schema({**schema, col.name: STR})
        if have == STR and _read_from_text(col.dtype):
            what = "true/false (also 1/0)" if col.dtype == BOOL else "numbers"
            notes.append(f"`{col.name}` holds text in {source or 'the table'}; read as {what} (blank text as null)")
        col_checks, exprs = _column_checks(col, have, source)
        checks += col_checks
        converted += exprs
    for name, have in schema.items():
        if name.startswith("judge_") and have != F64:
            if not have.is_numeric() and have != pl.Null:
                raise SchemaError(f"column has type {have}, expected Float64", source=source, column=name)
            converted.append(pl.col(name).cast(F64))
    if converted:
        frame = frame.with_columns(converted)
    given_ids = "prompt_id" in schema and not rehash_prompt_ids
    if "prompt_id" in schema and rehash_prompt_ids:
        frame = frame.rename({"prompt_id": "source_prompt_id"})
        notes.append(f"prompt_id derived from the prompt text ({option('--rehash-prompt-ids', python)}); the given ids are kept as `source_prompt_id`")
    names = frame.collect_schema().names()
    if "prompt_id" not in names:
        frame = frame.with_columns(pl.col("prompt").map_batches(prompt_hash, return_dtype=STR).alias("prompt_id"))
        frame = frame.select(["prompt_id", *names])
    if only is not None:
        checks = [c for c in checks if c[0] in only]
    # a block of a distributed run carries each row's global input row (curate.distributed): rows keep their numbers
    base = frame.with_columns(pl.col(SOURCE_ROW).alias("__row")) if SOURCE_ROW in names else frame.with_row_index("__row")
    if kind == "samples" and "model" not in names:
        base = base.with_columns(pl.lit("policy", dtype=STR).alias("model"))
    # one column: the index of the first check a row fails (each bad row counts once, under it), null when it passes
    first_fail = pl.lit(None, dtype=pl.Int32)
    for i, (_, _, bad) in reversed(list(enumerate(checks))):
        first_fail = pl.when(bad.fill_null(False)).then(pl.lit(i, dtype=pl.Int32)).otherwise(first_fail)
    collision = given_ids and (only is None or "prompt_id" in only)
    key = ["prompt_id", "response", "model"] if kind == "samples" and (only is None or "response" in only) else []
    # the statistics below are reductions, and a reduction holds its input column in memory: texts enter them only as
    # hashes, computed here row by row as the input streams (3.2 M responses of ~150 words: 0.7 GB instead of 3.3 GB)
    hashes = [pl.col("prompt").hash().alias(_PROMPT_HASH)] if collision else []
    if key and not dedup:
        hashes.append((pl.col("prompt_id").hash(1) ^ pl.col("model").hash(2) ^ pl.col("response").hash(3)).alias(_KEY_HASH))
    # one node shared by the checks' statistics, the output and the step's counts: the input is read and checked once
    base = base.with_columns(first_fail.alias("__fail"), *hashes).cache()
    fails = pl.col("__fail")
    aggs = [pl.len().alias("__n")]
    for i, (_, problem, _) in enumerate(checks):
        mine = fails == i
        aggs.append(mine.sum().alias(f"__c{i}"))
        aggs.append(pl.col("__row").filter(mine).head(_MAX_ROWS_SHOWN).implode().alias(f"__r{i}"))
    earlier = fails.is_not_null()
    prompts = None  # distinct ids of the valid rows (a null id fails its row's check), from the collision check's count when it has one
    collides = None
    if collision:
        # a check across rows, kept out of the per-row column above (a window there would cost the output's path too)
        # a null id fails its own check first (the collision check runs only where that one does): it is in `earlier`
        collides = pl.col(_PROMPT_HASH) != pl.col(_PROMPT_HASH).first().over("prompt_id")
        mine = ~earlier & collides
        i = len(checks)
        checks.append(("prompt_id", _COLLISION, collides))
        if drop_invalid:  # the colliding rows are dropped: count them exactly, and leave them out of the counts below
            aggs.append(mine.sum().alias(f"__c{i}"))
            earlier = earlier | collides
        else:
            # a collision stops the command: the main pass only asks whether one exists (distinct (id, prompt) hashes vs
            # distinct ids, no window); the error's path looks up the rows, the id and where that id first appears, in one query
            mask = ~earlier
            ids = pl.col("prompt_id").filter(mask).n_unique()
            pair = (pl.col("prompt_id").hash(1) ^ pl.col(_PROMPT_HASH)).filter(mask)  # one u64 per (id, prompt): no struct rows
            aggs.append((pair.n_unique().cast(pl.Int64) - ids.cast(pl.Int64)).clip(lower_bound=0).alias(f"__c{i}"))
            prompts = ids.cast(pl.Int64)
            the_id = pl.col("prompt_id").filter(mine).first()
            collision_detail = base.select(mine.sum().alias(f"__c{i}"), pl.col("__row").filter(mine).head(_MAX_ROWS_SHOWN).implode().alias(f"__r{i}"),
                                           the_id.alias("__collision_id"), pl.col("__row").filter(pl.col("prompt_id") == the_id).min().alias("__collision_first"))  # fmt: skip
    if prompts is None:
        prompts = pl.col("prompt_id").filter(~earlier).n_unique()
    aggs.append(prompts.alias("__prompts"))
    if key and not dedup:
        # only a warning: counted on one 64-bit hash per row (two different rows share one with odds ~n²/2⁶⁵, 3·10⁻⁷ at 3.2 M
        # rows, and then the warning counts one row too many); --dedup, which drops rows, compares them whole
        hashed = pl.col(_KEY_HASH).filter(~earlier)
        aggs.append((hashed.len() - hashed.n_unique()).alias("__dup"))
    elif key:
        # a cheap sketch first (id, model, text length); only the rows whose sketch repeats are compared whole (this holds the
        # texts in memory, as the drop's own `is_first_distinct` does); a valid row whose sketch repeats an invalid row's is
        # compared too: harmless, the exact count is over valid rows only
        sketch = pl.col("prompt_id").hash(1) ^ pl.col("model").hash(2) ^ pl.col("response").cast(STR).str.len_bytes().hash(3)
        kept = pl.struct(key).filter(~earlier & sketch.is_duplicated())
        aggs.append((kept.len() - kept.n_unique()).alias("__dup"))
    stats = base.select(aggs)

    out = base
    if drop_invalid and checks:
        out = base.filter(fails.is_null() if collides is None else fails.is_null() & ~collides)
    if key and dedup:
        out = out.filter(pl.struct(key).is_first_distinct())
    split = ["messages"] if kind == "samples" and "messages" in names else []
    drop = [*split, *[c for c in out.collect_schema().names() if c.startswith(_ORIG)]]
    drop += [h.meta.output_name() for h in hashes]
    out = out.drop(drop if keep_row else ["__row", "__fail", *drop])

    def settle(row: dict[str, Any]) -> None:
        if step is not None and step.rows_in is None:
            step.rows_in = row["__n"]  # rows in the file, before any drop
        if step is not None:
            for note in notes:
                step.warn(note)
        if row["__n"] == 0:
            raise SchemaError(f"the table has 0 rows; a `{kind}` table needs at least one", source=source)
        failed = [(i, c) for i, c in enumerate(checks) if row[f"__c{i}"]]
        if failed and not drop_invalid:
            i, (name, problem, _) = failed[0]
            hint = fix_hint(name, problem, drop=drop_hint, rehash=rehash_prompt_ids is not None, python=python)
            if problem == _COLLISION:
                row = {**row, **collision_detail.collect().row(0, named=True)}
                raise SchemaError(
                    f"prompt_id {row['__collision_id']!r} is given to different prompts (rows {row['__collision_first']} and "
                    f"{row[f'__r{i}'][0]} differ); pairs and lists would mix them",
                    source=source, column="prompt_id", rows=row[f"__r{i}"], count=row[f"__c{i}"], hint=hint,
                )  # fmt: skip
            raise SchemaError(problem, source=source, column=name, rows=row[f"__r{i}"], count=row[f"__c{i}"], hint=hint)
        if failed:
            if step is not None:
                for i, (name, problem, _) in failed:
                    step.drop(f"invalid `{name}`: {problem}", row[f"__c{i}"])
            if sum(row[f"__c{i}"] for i, _ in failed) == row["__n"]:
                raise SchemaError(f"every row is invalid; nothing is left after {option('--drop-invalid', python)}", source=source)
        n_dup = row.get("__dup") or 0
        if n_dup and step is not None:
            if dedup:
                step.drop("duplicate (prompt_id, response, model)", n_dup)
            else:
                how = "`curate ingest --dedup` drops them" if dedup is None and not python else f"pass {option('--dedup', python)} to drop them"
                step.warn(f"{n_dup} duplicate (prompt_id, response, model) row(s) in {source or 'the table'}; {how}")

    return Checked(frame=out, stats=stats, settle=settle)


_COLLISION = "one prompt_id, several prompts"


_PROMPT_HASH, _KEY_HASH = "__prompt_hash", "__key_hash"  # per-row hashes for the checks across rows (internal columns)


def validate(
    frame: pl.LazyFrame,
    kind: str = "samples",
    *,
    source: str | None = None,
    dedup: bool | None = False,
    drop_invalid: bool = False,
    step: Step | None = None,
    rehash_prompt_ids: bool | None = False,
    drop_hint: bool = True,
) -> pl.LazyFrame:
    """Check `frame` against the `kind` schema now and return it with types cast and `prompt_id` derived.

    Raises SchemaError naming the source file, the column, the first offending rows and their count.
    With `drop_invalid`, rows failing a check are dropped instead and counted on `step`, each row once,
    under the first check it fails. Duplicate (prompt_id, response, model) samples are reported on
    `step`, and dropped when `dedup`. Without a `step`, each drop and note is a `CurateWarning`.
    """
    told = step if step is not None else Step("read")  # a Python caller with no step is told by warnings
    checked = check(frame, kind, source=source, dedup=dedup, drop_invalid=drop_invalid, step=told, rehash_prompt_ids=rehash_prompt_ids,
                    drop_hint=drop_hint, python=step is None)  # fmt: skip
    try:
        row = checked.stats.collect().row(0, named=True)
    except pl.exceptions.PolarsError as exc:  # e.g. a truncated file or a cast that fails on the data
        raise read_error(exc, source) from exc
    checked.settle(row)
    if step is None:
        for note in told.warnings:
            warn(note)
        for reason, count in told.counts.items():
            unit = told.units[reason].removesuffix("s") if count == 1 else told.units[reason]
            warn(f"dropped {count:,} {unit} of {source or 'the table'}: {reason}")
    return checked.frame


def read_error(exc: BaseException, source: str | None) -> SchemaError:
    """A Polars error met while reading a table, as a SchemaError naming the file."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return SchemaError(f"could not read the table ({type(exc).__name__}: {first})", source=source)
