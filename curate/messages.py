"""Conversational data: prompts as lists of `{role, content}` messages, as in TRL's conversational format.

A `prompt` is either a string (TRL's *standard* format) or a list of messages (system prompt, several
turns; TRL's *conversational* format). A response is stored as its text; on export it becomes one
assistant message again when the table is conversational. This module holds the Polars expressions
that check, convert and hash such columns, so every reader and writer treats them the same way.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import polars as pl

ROLES = ("system", "developer", "user", "assistant", "tool")
STYLES = ("conversational", "standard")
MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})
MESSAGES = pl.List(MESSAGE)


def is_messages(dtype: pl.DataType) -> bool:
    """Whether a column type holds conversations: a list of structs with `role` and `content`."""
    inner = getattr(dtype, "inner", None)
    return isinstance(dtype, pl.List) and isinstance(inner, pl.Struct) and {"role", "content"} <= {f.name for f in inner.fields}


def is_message(dtype: pl.DataType) -> bool:
    """Whether a column type holds one message: a struct with `role` and `content`."""
    return isinstance(dtype, pl.Struct) and {"role", "content"} <= {f.name for f in dtype.fields}


SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}  # ShareGPT's speaker names for TRL's roles; others are kept


def is_from_value(dtype: pl.DataType) -> bool:
    """Whether a column type holds ShareGPT-style conversations: a list of structs with `from` and `value`."""
    inner = getattr(dtype, "inner", None)
    names = {f.name for f in inner.fields} if isinstance(inner, pl.Struct) else set()
    return isinstance(dtype, pl.List) and {"from", "value"} <= names and not names & {"role", "content"}


def from_value_to_role_content(column: str) -> pl.Expr:
    """ShareGPT messages `{from, value}` as TRL's `{role, content}`: the keys renamed as TRL's `maybe_convert_to_chatml`
    does, and the speakers `human` and `gpt` named `user` and `assistant` (the roles chat templates know)."""
    m = pl.element()
    role = m.struct.field("from").replace(SHAREGPT_ROLES)
    return pl.col(column).list.eval(pl.struct(role.alias("role"), m.struct.field("value").cast(pl.String).alias("content"))).alias(column)


def style_of(schema: pl.Schema) -> str:
    """`conversational` when the prompt column holds messages, else `standard`."""
    return "conversational" if "prompt" in schema and is_messages(schema["prompt"]) else "standard"


def canonical_json(messages: list[dict[str, Any]] | str) -> str:
    """The canonical JSON of a conversation: keys sorted, null fields left out, no spaces, UTF-8 kept."""
    if isinstance(messages, str):
        return messages
    clean = [{k: v for k, v in m.items() if v is not None} for m in messages]
    return json.dumps(clean, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha1_16(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def prompt_hash(prompts: pl.Series) -> pl.Series:
    """`prompt_id` for each prompt: the first 16 hex chars of SHA-1 of the text, or of a conversation's canonical JSON.

    Each distinct prompt is hashed once (there are N responses per prompt) and joined back.
    """
    uniq = prompts.unique(maintain_order=True)
    digests = [None if p is None else sha1_16(canonical_json(p)) for p in uniq.to_list()]
    table = pl.DataFrame({"p": uniq, "h": pl.Series(digests, dtype=pl.String)})
    return prompts.rename("p").to_frame().join(table, on="p", how="left", maintain_order="left", nulls_equal=True)["h"].rename(prompts.name)


def roles(column: str) -> pl.Expr:
    return pl.col(column).list.eval(pl.element().struct.field("role"))


def conversation_checks(column: str, *, last: str) -> list[tuple[str, pl.Expr]]:
    """Row checks of a messages column: (problem, bad-row expression). `last`: "not assistant" or "assistant"."""
    c = pl.col(column)
    known = roles(column).list.eval(pl.element().is_in(ROLES).not_()).list.any()
    missing = c.list.eval(pl.element().struct.field("content").is_null()).list.any()
    last_role = c.list.last().struct.field("role")
    checks = [
        ("null or empty conversation (no messages)", c.is_null() | (c.list.len() == 0)),
        (f"message with an unknown role (expected one of {', '.join(ROLES)})", c.is_not_null() & known.fill_null(False)),
        ("message with missing (null) content", c.is_not_null() & missing.fill_null(False)),
    ]
    if last == "assistant":
        checks.append(("the last turn is not the assistant's (it is the response)", c.is_not_null() & (last_role != "assistant").fill_null(False)))
    else:
        checks.append(("the prompt ends with an assistant turn (put it in `response`, or the whole conversation in `messages`)",
                       c.is_not_null() & (last_role == "assistant").fill_null(False)))  # fmt: skip
    return checks


def single_message_checks(column: str, dtype: pl.DataType) -> list[tuple[str, pl.Expr]]:
    """Row checks of a response given as one assistant message (a struct, or a list holding one struct)."""
    c = pl.col(column)
    if isinstance(dtype, pl.List):
        return [
            ("expected exactly one assistant message", c.is_not_null() & (c.list.len() != 1)),
            ("the message's role is not `assistant`", (c.list.len() == 1) & (c.list.first().struct.field("role") != "assistant").fill_null(True)),
        ]
    return [("the message's role is not `assistant`", c.is_not_null() & (c.struct.field("role") != "assistant").fill_null(True))]


def message_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """The content of a one-message column as text (strings pass through)."""
    c = pl.col(column)
    if isinstance(dtype, pl.List):
        return c.list.first().struct.field("content").alias(column)
    if isinstance(dtype, pl.Struct):
        return c.struct.field("content").alias(column)
    return c


def split_messages(column: str = "messages") -> list[pl.Expr]:
    """A full conversation split into `prompt` (every turn but the last) and `response` (the last turn's text)."""
    c = pl.col(column)
    return [c.list.head(c.list.len() - 1).alias("prompt"), c.list.last().struct.field("content").alias("response")]


def implicit_prompt_split(chosen: str | list[Any], rejected: str | list[Any]) -> int:
    """Where TRL's `extract_prompt` ends the prompt shared by `chosen` and `rejected` (texts or message lists).

    The first position where the two differ, one back when the text before it is a space (the space
    starts the completions); when neither differs before the shorter one ends, one before its end, as
    TRL does. Two that differ from the start share no prompt: 0 (TRL would take its split from the
    completion's end there).
    """
    n = min(len(chosen), len(rejected))
    if isinstance(chosen, str) and isinstance(rejected, str):
        lo, hi = 0, n  # the longest common prefix by bisection: slices compare in C, not a Python loop over characters
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if chosen[:mid] == rejected[:mid] else (lo, mid - 1)
        first = lo if lo < n else None
    else:
        first = next((i for i in range(n) if chosen[i] != rejected[i]), None)
    if first is None:
        return max(n - 1, 0)
    if first == 0:
        return 0
    return first - 1 if chosen[first - 1] == " " else first


def extract_implicit_prompt(pairs: pl.Series) -> pl.Series:
    """Pairs in TRL's implicit-prompt form (`chosen`/`rejected` each holding the whole conversation or text) split
    into `prompt`, `chosen` and `rejected` as TRL's `extract_prompt` splits them (a struct Series of the three).

    Conversations that share no turn beside a text `prompt` are completions already: that prompt becomes
    their one user turn (TRL would leave such a pair with an empty prompt).
    """
    dtype = pairs.dtype.to_schema()["chosen"]
    out: dict[str, list[Any]] = {"prompt": [], "chosen": [], "rejected": []}
    for row in pairs.to_list():
        chosen, rejected, given = row["chosen"], row["rejected"], row.get("prompt")
        at = None if chosen is None or rejected is None else implicit_prompt_split(chosen, rejected)
        if at is None or at == 0 and given is not None:  # nothing to split (a null side), or nothing shared beside a given prompt
            out["prompt"].append(to_messages(given) if isinstance(given, str) else None)
            at = None
        else:
            out["prompt"].append(chosen[:at])
        out["chosen"].append(chosen if at is None else chosen[at:])
        out["rejected"].append(rejected if at is None else rejected[at:])
    return pl.struct(pl.Series("prompt", out["prompt"], dtype=dtype), pl.Series("chosen", out["chosen"], dtype=dtype),
                     pl.Series("rejected", out["rejected"], dtype=dtype), eager=True)  # fmt: skip


def as_assistant(column: str) -> pl.Expr:
    """A text column as TRL's conversational completion: `[{"role": "assistant", "content": text}]`."""
    return pl.concat_list(pl.struct(pl.lit("assistant").alias("role"), pl.col(column).alias("content"))).alias(column)


def as_user_turn(column: str = "prompt") -> pl.Expr:
    """A plain prompt as a one-turn conversation `[{"role": "user", "content": text}]` (explicit, never implicit)."""
    return pl.concat_list(pl.struct(pl.lit("user").alias("role"), pl.col(column).alias("content"))).alias(column)


def transcript(prompt: str | list[dict[str, Any]]) -> str:
    """A prompt as plain text for rubric and few-shot prompts: a string as is, a conversation as `role: content` lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def to_messages(prompt: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A prompt as a list of messages (a plain string becomes one user turn)."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
