"""Errors that curate reports to users; the CLI prints them as one paragraph and exits with code 2.

They are defined in `scorers.errors` because `scorers` sits below `curate` (it depends only on
polars) and its scorers raise the same `SchemaError` for missing columns.
"""

from scorers.errors import CurateError, SchemaError

__all__ = ["CurateError", "SchemaError"]
