"""Built-in scorers of curate (SPEC §3) and the registry that third-party scorers join.

One module per family; importing this package registers the built-ins.
"""

from scorers import (  # noqa: F401  (importing registers the built-ins)
    alignment_potential,
    dcrm,
    delta,
    difficulty,
    dual_margin,
    edit_distance,
    embedding_distance,
    implicit_margin,
    madpo_weight,
    reward_margin,
)
from scorers.base import ENTRY_POINT_GROUP, Scorer, ensure, get, instances, producer_of, register, registry, score, split_params, sql_macros
from scorers.errors import CurateError, SchemaError

__all__ = [
    "ENTRY_POINT_GROUP",
    "CurateError",
    "SchemaError",
    "Scorer",
    "ensure",
    "get",
    "instances",
    "producer_of",
    "register",
    "registry",
    "score",
    "split_params",
    "sql_macros",
]
