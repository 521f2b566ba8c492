"""Errors that curate reports to users (the CLI prints them as one paragraph and exits with code 2), and the warning
a Python caller gets for what a command would report on its step.

The errors are defined in `scorers.errors` because `scorers` sits below `curate` (it depends only on
polars) and its scorers raise the same `SchemaError` for missing columns.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from scorers.errors import CurateError, SchemaError

__all__ = ["CurateError", "CurateWarning", "SchemaError", "warn"]

_OURS = tuple(str(Path(__file__).resolve().parent.parent / name) + os.sep for name in ("curate", "scorers"))


class CurateWarning(UserWarning):
    """Something a Python caller should know about a table it read: rows dropped, duplicates kept, values converted."""


def warn(message: str) -> None:
    """Issue a CurateWarning pointing at the caller's own line (the first frame outside curate and scorers)."""
    level, frame = 2, sys._getframe(1)  # stacklevel 1 is this function, 2 its caller
    while frame is not None and frame.f_code.co_filename.startswith(_OURS):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, CurateWarning, stacklevel=level)
