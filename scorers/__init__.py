"""Built-in scorers of curate and the registry that third-party scorers join.

One module per family (`BUILTINS`); they register on the first look-up of the registry, so importing
this package (as every curate command does, for its errors) costs no scorer module and no numpy.
"""

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
