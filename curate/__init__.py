"""curate: weighted and ranked preference datasets from sampled LLM responses.

`import curate` stays light: polars loads here, duckdb on first SQL, torch never here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from curate.errors import CurateError, CurateWarning, SchemaError

__version__ = "0.2.0"

# `curate.sql` and `curate.export` are both a module and its main function: import them now and bind
# the function, or the import system would later leave the module object under that name.
from curate.export import export  # noqa: E402
from curate.sql import sql  # noqa: E402

_LAZY = {
    "read": "curate.io",
    "write": "curate.io",
    "load": "curate.io",
    "validate": "curate.schema",
    "pairs": "curate.pairing",
    "triplets": "curate.wrpo",
    "rank": "curate.ranking",
    "select": "curate.selection",
    "score": "scorers.base",
}

__all__ = ["CurateError", "CurateWarning", "SchemaError", "__version__", "export", "sql", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from curate.io import load, read, write
    from curate.pairing import pairs
    from curate.ranking import rank
    from curate.schema import validate
    from curate.selection import select
    from curate.wrpo import triplets
    from scorers.base import score


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
