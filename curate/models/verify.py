"""`curate verify`: extract each response's final answer and set `correct` (tasks: math, exact, game24).

`math` uses math-verify (HF) to parse the gold and the response and compare them symbolically. Its
own timeouts rely on `signal.alarm`, which works only in the main thread, so they are switched off
(`parsing_timeout=None`, `timeout_seconds=None`) and time is bounded here instead: the work runs in
worker processes and a chunk that overruns its deadline is retried row by row, each row with its own
deadline; a row that still overruns gets `correct = null` and is counted.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, TimeoutError as FutureTimeout
from fractions import Fraction

import polars as pl

from curate.errors import CurateError, SchemaError
from curate.messages import transcript
from curate.lineage import Step

TASKS = ("math", "exact", "game24")


# --- exact -------------------------------------------------------------------------------------


def normalise(text: str | None) -> str | None:
    """Lower case, collapse whitespace, drop surrounding punctuation and a trailing period."""
    if text is None:
        return None
    t = re.sub(r"\s+", " ", text.strip().lower())
    return t.strip(" .,;:!?\"'`")


_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:=]?\s*(.+)$", re.IGNORECASE)


def exact_answer(response: str) -> str:
    """The text after the last 'Answer:' (or 'The answer is'), else the last non-empty line."""
    lines = [ln for ln in response.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        m = _ANSWER_LINE.search(line)
        if m:
            return m.group(1).strip()
    return lines[-1].strip() if lines else ""


# --- game of 24 ------------------------------------------------------------------------------------


_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def _eval(node: ast.AST, numbers: list[int]) -> Fraction:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left, numbers), _eval(node.right, numbers))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, numbers)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        numbers.append(node.value)
        return Fraction(node.value)
    raise ValueError("not an arithmetic expression")


def game24_answer(response: str) -> str | None:
    """The expression on the last line, without an 'Answer:' prefix and the '= 24' (the Tree-of-Thoughts reading)."""
    lines = response.strip().splitlines()
    if not lines:
        return None
    last = lines[-1].strip()
    last = last[len("answer:") :].strip() if last.lower().startswith("answer:") else last
    expr = last.split("=")[0].strip()
    return expr if expr and expr.lower() != "none" else None


def game24_correct(puzzle: str, expression: str | None) -> bool:
    """The expression uses the puzzle's four numbers once each and equals 24 (exact fractions)."""
    if not expression:
        return False
    expr = expression.replace("×", "*").replace("x", "*").replace("÷", "/")
    try:
        used: list[int] = []
        value = _eval(ast.parse(expr, mode="eval").body, used)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return False
    wanted = [int(x) for x in re.findall(r"\d+", puzzle)]
    return value == 24 and Counter(used) == Counter(wanted)


# --- math -------------------------------------------------------------------------------------------


def _math_rows(rows: list[tuple[str, str]]) -> list[tuple[str | None, bool | None]]:
    """(answer, correct) per (response, gold), with math-verify's own alarms switched off."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that we bound time ourselves: we do
    out = []
    for response, gold in rows:
        try:
            pred = parse(response, parsing_timeout=None)
            ref = parse(gold, parsing_timeout=None)
            answer = str(pred[-1]) if pred else None
            ok = bool(verify(ref, pred, timeout_seconds=None)) if pred and ref else False
        except Exception:  # noqa: BLE001 - a malformed expression is "not verified", not a crash
            answer, ok = None, False
        out.append((answer, ok))
    return out


def _die_with_parent() -> None:
    """In a worker process: be killed when the parent dies (Linux), so a killed `curate verify` leaves no orphans."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def verify_math(responses: list[str], golds: list[str], *, workers: int = 2, chunk: int = 256, timeout_s: float = 5.0, step: Step | None = None):
    """math-verify over worker processes with a deadline per chunk (and per row on retry)."""
    rows = list(zip(responses, golds, strict=True))
    chunks = [rows[i : i + chunk] for i in range(0, len(rows), chunk)]
    results: list[tuple[str | None, bool | None]] = []
    timed_out = 0
    with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent) as pool:
        futures = [pool.submit(_math_rows, c) for c in chunks]
        for c, fut in zip(chunks, futures, strict=True):
            try:
                results.extend(fut.result(timeout=timeout_s * len(c)))
            except FutureTimeout:
                for row in c:
                    try:
                        results.extend(pool.submit(_math_rows, [row]).result(timeout=timeout_s))
                    except FutureTimeout:
                        results.append((None, None))
                        timed_out += 1
    if step is not None:
        step.drop(f"responses whose verification overran {timeout_s:g}s (correct = null, rows kept)", timed_out)
    return results


def verify_frame(df: pl.DataFrame, task: str, *, step: Step | None = None, workers: int = 2, timeout_s: float = 5.0) -> pl.DataFrame:
    """Add `answer` and `correct` to a samples DataFrame."""
    if task not in TASKS:
        raise CurateError(f"unknown verify task {task!r}; use one of {', '.join(TASKS)}.")
    if task in ("math", "exact") and "gold" not in df.columns:
        raise SchemaError(f"verify --task {task} needs a `gold` column with the reference answer", column="gold")
    responses = df["response"].to_list()
    if task == "game24":
        answers = [game24_answer(r) for r in responses]
        puzzles = [p if isinstance(p, str) else transcript(p) for p in df["prompt"].to_list()]
        correct = [game24_correct(p, a) for p, a in zip(puzzles, answers, strict=True)]
    elif task == "exact":
        answers = [exact_answer(r) for r in responses]
        correct = [normalise(a) == normalise(g) if g is not None else None for a, g in zip(answers, df["gold"].to_list(), strict=True)]
    else:
        got = verify_math(responses, [g or "" for g in df["gold"].to_list()], workers=workers, timeout_s=timeout_s, step=step)
        answers, correct = [a for a, _ in got], [c for _, c in got]
    return df.with_columns(pl.Series("answer", answers, dtype=pl.String), pl.Series("correct", correct, dtype=pl.Boolean))


def verifier(task: str, *, workers: int = 2, timeout_s: float = 5.0):
    """The `verify` stage as a shard function (see `curate.models.stages.Stage`)."""
    return lambda rows, step: verify_frame(rows, task, step=step, workers=workers, timeout_s=timeout_s)
