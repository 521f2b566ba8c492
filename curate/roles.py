"""Renaming sample columns to the per-response columns of `pairs`/`triplets`.

A response plays a role (`chosen`, `rejected`, `chosen_target`): `response` becomes the role's name,
`logp` becomes `{role}_logps`, `ref_logp` becomes `ref_{role}_logps` (TRL's names), and every other
per-response column `c` becomes `{role}_{c}`. Prompt-level columns are shared, not duplicated.
"""

from __future__ import annotations

import polars as pl

import scorers
from curate.errors import SchemaError
from curate.hints import rename_hint
from curate.schema import SCHEMAS, SOURCE_ROW

ROW = "__row"  # internal: the response's row number in the samples table (deterministic tie-breaks)
PROMPT_ORDER = "__prompt_order"  # internal: first row number of the prompt (outputs follow input order)
KEY = "prompt_id"
_ALWAYS_SHARED = ("prompt", "gold", PROMPT_ORDER)

# the pairs' column order; scorer and extra columns follow.
PAIR_ORDER = (
    "prompt_id", "prompt", "chosen", "rejected", "chosen_model", "rejected_model", "chosen_reward",
    "rejected_reward", "chosen_correct", "rejected_correct", "pair_id", "chosen_logps", "rejected_logps",
    "ref_chosen_logps", "ref_rejected_logps", "chosen_n_tokens", "rejected_n_tokens", "weight",
)  # fmt: skip
TRIPLET_ORDER = (
    "prompt_id", "prompt", "chosen", "chosen_target", "rejected", "chosen_reward", "chosen_target_reward",
    "rejected_reward", "chosen_model", "chosen_target_model", "rejected_model", "pair_id", "ref_chosen_logps",
    "ref_chosen_target_logps", "ref_rejected_logps", "weight",
)  # fmt: skip


def shared_columns(names: list[str]) -> list[str]:
    """Columns that describe the prompt, not the response: carried once per pair."""
    prompt_level = {c for cls in scorers.registry().values() if cls.level == "prompt" for c in cls.produces}
    return [c for c in names if c in _ALWAYS_SHARED or c in prompt_level]


def role_name(column: str, role: str) -> str:
    """The name a samples column takes when its response plays `role`."""
    if column == "response":
        return role
    if column == "logp":
        return f"{role}_logps"
    if column == "ref_logp":
        return f"ref_{role}_logps"
    if column.startswith("__"):  # internal columns stay internal
        return f"__{role}_{column[2:]}"
    return f"{role}_{column}"


def as_role(frame: pl.LazyFrame, role: str, *, keep_shared: bool) -> pl.LazyFrame:
    """Rename a samples frame's response columns for `role`; keep the key and, if asked, the shared columns."""
    names = frame.collect_schema().names()
    shared = set(shared_columns(names))
    exprs = [pl.col(KEY)]
    for c in names:
        if c == KEY:
            continue
        if c in shared:
            if keep_shared:
                exprs.append(pl.col(c))
        else:
            exprs.append(pl.col(c).alias(role_name(c, role)))
    return frame.select(exprs)


def with_row_numbers(samples: pl.LazyFrame) -> pl.LazyFrame:
    """Add the internal row number (unless validation left it) and the prompt's first row number (for input-ordered outputs).

    Reusing validation's row index keeps the checks and the step on one shared plan (one read of the input).
    """
    names = samples.collect_schema().names()
    if ROW not in names:
        # a block of a distributed run numbers its rows as the whole input does (curate.distributed)
        samples = samples.with_columns(pl.col(SOURCE_ROW).alias(ROW)) if SOURCE_ROW in names else samples.with_row_index(ROW)
    return samples.with_columns(pl.col(ROW).cast(pl.Int64), pl.col(ROW).min().over(KEY).cast(pl.Int64).alias(PROMPT_ORDER))


def rank_within(keys: list[str], descending: list[bool]) -> pl.Expr:
    """0-based rank of each row within its prompt by `keys` (numeric; `descending` per key)."""
    order = [(-pl.col(k).cast(pl.Float64)) if d else pl.col(k) for k, d in zip(keys, descending, strict=True)]
    return pl.int_range(pl.len()).over(KEY, order_by=order)


ROLE_ROWS = ("__chosen_row", "__chosen_target_row", "__rejected_row")


def pair_id_expr(names: list[str]) -> pl.Expr | None:
    """`pair_id`: the prompt id and the input rows of the responses ("q17:3:9"; "gold" for a gold answer), stable for a given input."""
    rows = [c for c in ROLE_ROWS if c in names]
    if not rows:
        return None
    parts = [pl.col(KEY)] + [pl.when(pl.col(c) >= 0).then(pl.col(c).cast(pl.String)).otherwise(pl.lit("gold")) for c in rows]
    return pl.concat_str(parts, separator=":").alias("pair_id")


def finish(frame: pl.LazyFrame, order: tuple[str, ...], sort_by: list[str], descending: list[bool] | None = None) -> pl.LazyFrame:
    """Sort explicitly (the streaming engine keeps no order), add `pair_id`, drop internal columns, put SPEC columns first.

    An empty `sort_by` is for a frame already in order (joins that keep the left side's order).
    """
    names = frame.collect_schema().names()
    pid = pair_id_expr(names) if "pair_id" not in names else None
    if pid is not None:
        frame = frame.with_columns(pid)
    if sort_by:
        frame = frame.sort(sort_by, descending=descending or False, maintain_order=True)
    names = [c for c in frame.collect_schema().names() if not c.startswith("__")]
    first = [c for c in order if c in names]
    return frame.select(first + [c for c in names if c not in first])


def require_column(schema: pl.Schema, column: str, problem: str, hint: str) -> None:
    """Raise the SchemaError of samples without `column` (`reward`, `correct`); a column of its type that curate does
    not know by name may hold it under another name (`score`, `is_correct`, ...), and the hint then says how to rename it."""
    if column in schema:
        return
    want = {c.name: c.dtype for c in SCHEMAS["samples"]}
    others = [n for n, t in schema.items() if (t.is_float() if want[column].is_float() else t == want[column])
              and n not in want and not n.startswith(("judge_", "__"))]  # fmt: skip
    if others:
        hint += " " + rename_hint({others[0]: column}, python=None)
    raise SchemaError(problem, column=column, hint=hint)
