"""What an error tells a user to do about a table that does not read: options spelled as the caller spells them, and
the `curate sql` command (in Python, the Polars call) that reshapes a common layout into the one curate reads."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from scorers.errors import ident, rename_hint, sql_command  # noqa: F401 (rename_hint: beside SchemaError, for the scorers too)

NULL_VALUE = "null value"  # the problem of a null in a column that must have a value
RESPONSE_LISTS = ("responses", "completions", "outputs", "generations")  # what sampling scripts call a row's N responses
# what other datasets and scripts call the columns curate requires (Alpaca, GSM8K, MATH, sampling dumps)
OTHER_NAMES = {"prompt": ("instruction", "question", "query", "problem"), "response": ("output", "generation", "generated_text", "model_output")}


def option(flag: str, python: bool) -> str:
    """An option as the caller spells it: `--drop-invalid` on the command line, `drop_invalid=True` in Python."""
    return f"{flag.removeprefix('--').replace('-', '_')}=True" if python else flag


def fix_hint(column: str, problem: str, *, drop: bool, rehash: bool, python: bool = False) -> str:
    """What to do about rows that fail a check: the options there are (`drop`: --drop-invalid, `rehash`: --rehash-prompt-ids),
    spelled as the caller spells them (`python`: keywords)."""
    drop_it, rehash_it = option("--drop-invalid", python), option("--rehash-prompt-ids", python)
    dropping = f"pass {drop_it} to drop them (the drops are counted and reported)"
    if column == "model" and problem == NULL_VALUE:
        remove = 'remove the model column (every response is then from "policy")'
        return f"Fill in the models, {remove}, or pass {drop_it} to drop these rows." if drop else f"Fill in the models, or {remove}."
    if column != "prompt_id":
        return f"Fix these rows, or {dropping}." if drop else "Fix these rows."
    fix = "Fill in the ids" if problem == NULL_VALUE else "Fix the ids"
    derive = f"pass {rehash_it} to derive prompt_id from the prompt text" if rehash else \
        "remove the prompt_id column (curate then derives it from the prompt text)"  # fmt: skip
    if problem == NULL_VALUE and drop:
        return f"{fix}, {derive}, or pass {drop_it} to drop these rows."
    return f"{fix}, or {derive}."


def responses_list_hint(schema: pl.Schema, one_value: Iterable[str], source: str | None = None, *, python: bool = False) -> str:
    """For a table with one row per prompt and its responses in a list (as many sampling scripts write it): the command
    that makes it one row per response (in Python, the Polars `explode`), unnesting beside it the lists of the samples'
    one-value columns `one_value` (`rewards` as `reward`, ...). Empty when no one column holds the responses."""

    def texts(t: pl.DataType) -> bool:
        return isinstance(t, pl.List) and t.inner == pl.String

    named = [n for n in RESPONSE_LISTS if n in schema and texts(schema[n])]
    lists = named or [n for n, t in schema.items() if texts(t) and n not in ("models", "answers")]
    if len(lists) != 1:
        return ""
    unnest = {lists[0]: "response"}
    for col in one_value:
        found = [n for n in (f"{col}s", col) if n in schema and n not in unnest and isinstance(schema[n], pl.List)]  # rewards -> reward
        if found:
            unnest[found[0]] = col
    lead = (f"`{lists[0]}` holds a list of responses per row; curate reads one row per response. To make it so (the lists "
            f"{', '.join(f'`{k}`' for k in unnest)} unnest side by side)")  # fmt: skip
    if python:
        return f"{lead}, with the file read as a Polars frame: curate.validate(frame.explode({list(unnest)!r}).rename({unnest!r}))"
    sql = f"select * exclude ({', '.join(map(ident, unnest))}), {', '.join(f'unnest({ident(k)}) as {v}' for k, v in unnest.items())} from samples"
    return f"{lead}: {sql_command(sql, source)}"
