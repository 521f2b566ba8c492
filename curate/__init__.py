"""curate: weighted and ranked preference datasets from sampled LLM responses (see SPEC.md).

`import curate` stays light: polars/duckdb load on first use of a function, torch never here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from curate.errors import CurateError, SchemaError

__version__ = "0.1.0"

_LAZY = {
    "read": "curate.io",
    "write": "curate.io",
    "load": "curate.io",
    "validate": "curate.schema",
    "pairs": "curate.pairing",
    "triplets": "curate.wrpo",
    "rank": "curate.ranking",
    "select": "curate.selection",
    "sql": "curate.sql",
    "export": "curate.export",
    "score": "scorers.base",
}

__all__ = ["CurateError", "SchemaError", "__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from curate.export import export
    from curate.io import load, read, write
    from curate.pairing import pairs
    from curate.ranking import rank
    from curate.schema import validate
    from curate.selection import select
    from curate.sql import sql
    from curate.wrpo import triplets
    from scorers.base import score


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
