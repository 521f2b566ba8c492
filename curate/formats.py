"""TRL's two dataset formats for preference tables, and conversion between them.

*Standard*: `prompt`, `chosen`, `rejected` are strings. *Conversational*: `prompt` is a list of
`{role, content}` messages and each completion is one assistant message, `[{"role": "assistant",
"content": ...}]`. Inside curate completions are text; a conversational table gets its completions
wrapped as assistant messages when written, so the file trains in TRL unchanged.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from curate import messages as msg
from curate.errors import CurateError
from curate.schema import detect_kind

COMPLETIONS = {"pairs": ("chosen", "rejected"), "triplets": ("chosen", "chosen_target", "rejected")}


def completion_columns(names: list[str]) -> tuple[str, ...]:
    """The completion columns of a table with these columns (none for samples and ranked lists)."""
    return COMPLETIONS.get(detect_kind(names), ())


def wrap_completions(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Conversational tables: text completions become one assistant message each (TRL's conversational form)."""
    schema = frame.collect_schema()
    if msg.style_of(schema) != "conversational":
        return frame
    cols = [c for c in completion_columns(schema.names()) if schema[c] == pl.String]
    return frame.with_columns([msg.as_assistant(c) for c in cols]) if cols else frame


def to_style(frame: pl.LazyFrame, style: str | None, *, tokenizer: Any = None) -> pl.LazyFrame:
    """`frame` (completions as text) in TRL's `style`; None keeps the input's style.

    standard → conversational wraps each plain prompt as one user turn (explicit, never implicit);
    conversational → standard renders the chat template of `tokenizer` as TRL's `apply_chat_template` does.
    """
    schema = frame.collect_schema()
    have = msg.style_of(schema)
    if style is None or style == have:
        return wrap_completions(frame)
    if style not in msg.STYLES:
        raise CurateError(f"--format-style must be one of {', '.join(msg.STYLES)} (got {style!r}).")
    if style == "conversational":
        return wrap_completions(frame.with_columns(msg.as_user_turn("prompt")))
    if tokenizer is None:
        raise CurateError(
            "the table is conversational; writing it in the standard (string) format renders each conversation with a chat "
            "template: pass --tokenizer MODEL_DIR (a local tokenizer with a chat template), or keep --format-style conversational."
        )
    cols = completion_columns(schema.names())
    if not cols:
        raise CurateError("--format-style standard renders pairs and triplets; this table has no chosen/rejected columns.")

    def render(batch: pl.Series) -> pl.Series:
        rows = batch.struct.unnest().rows(named=True)
        out = [render_standard(tokenizer, r["prompt"], [r[c] for c in cols]) for r in rows]
        fields = {"prompt": [o[0] for o in out], **{c: [o[1][i] for o in out] for i, c in enumerate(cols)}}
        return pl.DataFrame(fields, schema={k: pl.String for k in fields}).to_struct("rendered")

    rendered = pl.struct("prompt", *cols).map_batches(render, return_dtype=pl.Struct({k: pl.String for k in ("prompt", *cols)}))
    return frame.with_columns(rendered.alias("__rendered")).with_columns(
        [pl.col("__rendered").struct.field(k).alias(k) for k in ("prompt", *cols)]
    ).drop("__rendered")


def render_standard(tokenizer: Any, prompt: list[dict[str, Any]], completions: list[str]) -> tuple[str, list[str]]:
    """A conversation and its completions as strings, the way TRL's `apply_chat_template` renders a preference example.

    The prompt is rendered with the generation prompt; each completion is what the full conversation
    adds after the part it shares with the prompt.
    """
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    fulls = [tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": c}], tokenize=False) for c in completions]
    shared = len(text)
    for full in fulls:
        shared = min(shared, _common_prefix(text, full))
    return text[:shared], [full[shared:] for full in fulls]


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
