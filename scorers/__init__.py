"""Built-in scorers of curate (SPEC §3) and the registry that third-party scorers join.

One module per family; importing this package registers the built-ins.
"""

from scorers import difficulty, reward_margin  # noqa: F401  (registers the built-ins)
from scorers.base import ENTRY_POINT_GROUP, Scorer, get, producer_of, register, registry, score
from scorers.errors import CurateError, SchemaError

__all__ = [
    "ENTRY_POINT_GROUP",
    "CurateError",
    "SchemaError",
    "Scorer",
    "get",
    "producer_of",
    "register",
    "registry",
    "score",
]
