"""The Scorer protocol, the registry, and `score()`.

A scorer adds its `produces` columns to a LazyFrame and keeps every row. Built-ins register with
`@register("name")`; third-party packages expose Scorer subclasses in the entry-point group
`curate.scorers` (``[project.entry-points."curate.scorers"] my_scorer = "pkg.mod:MyScorer"``).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any, ClassVar

import polars as pl

from scorers.errors import CurateError, SchemaError, rename_hint

ENTRY_POINT_GROUP = "curate.scorers"
LEVELS = ("response", "prompt", "pair")

# The command that adds a column a scorer may need, for the "missing column" hint.
PRODUCED_BY = {
    "reward": "`curate reward`",
    "correct": "`curate verify`",
    "answer": "`curate verify`",
    "logp": "`curate logps`",
    "ref_logp": "`curate logps --ref-model`",
    "n_tokens": "`curate logps`",
    "token_ids": "`curate logps`",
    "embedding": "`curate embed`",
}


@dataclasses.dataclass
class NoParams:
    """Parameters of a scorer that takes none."""


class Scorer:
    """Base class: subclasses set the class attributes and implement `score`."""

    name: ClassVar[str] = ""
    level: ClassVar[str] = "pair"
    requires: ClassVar[tuple[str, ...]] = ()
    produces: ClassVar[tuple[str, ...]] = ()
    citation: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    sql_macros: ClassVar[tuple[str, ...]] = ()  # DuckDB `CREATE MACRO` twins of the formula, for `curate sql`
    # True when `score` is made of Polars expressions (no model, no Python called per batch): cheap to evaluate twice, so a
    # command may read it in a statistics pass before the pass that writes (`curate score`, `select --top`); False (the
    # default, e.g. a plugin calling a model) keeps a command that needs its whole-table statistics to one pass
    vectorized: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        fields = {f.name for f in dataclasses.fields(self.Params)}
        unknown = sorted(set(params) - fields)
        if unknown:
            raise CurateError(
                f"scorer `{self.name}` has no parameter(s) {', '.join(unknown)}; "
                f"its parameters are: {', '.join(sorted(fields)) or '(none)'}."
            )
        self.params = self.Params(**params)

    def check(self, frame: pl.LazyFrame) -> None:
        """Raise SchemaError naming the missing `requires` columns and the command that adds them."""
        schema = frame.collect_schema()
        missing = [c for c in self.requires if c not in schema]
        if missing:
            raise SchemaError(
                f"scorer `{self.name}` needs column(s) {', '.join(missing)}",
                column=missing[0],
                hint=_hint(missing, schema),
            )

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    def prompt_table(self, frame: pl.LazyFrame) -> pl.LazyFrame | None:
        """A prompt-level scorer's values as one row per `prompt_id` (what `score --per-prompt` writes); None: derive them from `score`."""
        return None

    # Whole-table values (z-score moments, thresholds). A scorer whose formula reads the whole table computes
    # them in `score` by default; a distributed run computes them per block (`table_statistics`), merges the
    # blocks' rows (`merge_statistics`) and sets `statistics`, which `score` then uses instead.
    statistics: Any = None

    @classmethod
    def reads_whole_table(cls) -> bool:
        """Whether the formula uses whole-table values (the class overrides `table_statistics`)."""
        return cls.table_statistics is not Scorer.table_statistics

    def table_statistics(self, frame: pl.LazyFrame) -> pl.LazyFrame | None:
        """One row of mergeable partial statistics over `frame` (one block), or None when the scorer is row-local."""
        return None

    def merge_statistics(self, parts: list[dict[str, Any]]) -> Any:
        """The whole table's statistics from every block's `table_statistics` row."""
        raise NotImplementedError

    def __call__(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        self.check(frame)
        return self.score(frame)


def _hint(missing: list[str], schema: pl.Schema) -> str:
    """The commands that add the missing columns; and where a number column holds a pair's rewards under another name
    (`score_chosen`, as UltraFeedback has it), how to rename it."""
    tips = []
    for col in missing:
        base = col.removeprefix("chosen_").removeprefix("rejected_").removeprefix("ref_chosen_").removeprefix("ref_rejected_")
        base = {"logps": "logp"}.get(base, base)
        if col.startswith("ref_"):
            base = "ref_logp"
        if base in PRODUCED_BY:
            tips.append(f"run {PRODUCED_BY[base]} to add {base}")
    hint = ("Hint: " + "; ".join(dict.fromkeys(tips)) + ".") if tips else ""
    renames = {}
    for col in missing:
        role, sep, what = col.rpartition("_")
        if sep and what == "reward" and role in ("chosen", "rejected", "chosen_target"):
            found = [n for w in ("score", "rating") for n in (f"{w}_{role}", f"{role}_{w}") if n in schema and schema[n].is_numeric()]
            if found:
                renames[found[0]] = col
    return f"{hint} {rename_hint(renames, python=None, view='pairs')}".strip() if renames else hint


_REGISTRY: dict[str, type[Scorer]] = {}
_entry_points_loaded = False


def register(name: str):
    """Class decorator: register a Scorer subclass under `name`."""

    def deco(cls: type[Scorer]) -> type[Scorer]:
        if cls.level not in LEVELS:
            raise ValueError(f"scorer {name}: level must be one of {LEVELS}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


BUILTINS = ("alignment_potential", "dcrm", "delta", "difficulty", "dual_margin", "edit_distance", "embedding_distance",
            "implicit_margin", "madpo_weight", "reward_margin")  # fmt: skip


def registry() -> dict[str, type[Scorer]]:
    """All scorers: the built-ins plus those third-party packages expose under `curate.scorers`."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for module in BUILTINS:  # importing a module registers its scorers
            importlib.import_module(f"scorers.{module}")
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Scorer)):
                raise CurateError(f"entry point {ep.name} = {ep.value} in group {ENTRY_POINT_GROUP} is not a Scorer class.")
            if not cls.name:
                cls.name = ep.name
            _REGISTRY.setdefault(cls.name, cls)
    return dict(_REGISTRY)


def get(name: str, **params: Any) -> Scorer:
    """An instance of the scorer `name` with `params`."""
    scorers = registry()
    if name not in scorers:
        raise CurateError(f"unknown scorer {name!r}; registered scorers: {', '.join(sorted(scorers)) or '(none)'}.")
    return scorers[name](**params)


def producer_of(column: str) -> str | None:
    """The registered scorer whose `produces` holds `column`, if any."""
    for name, cls in registry().items():
        if column in cls.produces:
            return name
    return None


def split_params(names: Iterable[str], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route keyword parameters to the scorers that declare them; unknown keys are an error."""
    names = list(names)
    routed: dict[str, dict[str, Any]] = {n: {} for n in names}
    used = set()
    for n in names:
        fields = {f.name for f in dataclasses.fields(registry()[n].Params)} if n in registry() else set()
        for key, value in params.items():
            if key in fields:
                routed[n][key] = value
                used.add(key)
    unused = sorted(set(params) - used)
    if unused:
        raise CurateError(f"parameter(s) {', '.join(unused)} belong to none of the scorers {', '.join(names)}.")
    return routed


def score(frame: pl.LazyFrame, names: str | Iterable[str], *, statistics: dict[str, Any] | None = None, **params: Any) -> pl.LazyFrame:
    """Apply the scorers `names` in order; each keyword goes to the scorers whose params declare it.

    `statistics` maps a scorer name to whole-table statistics computed elsewhere (a distributed run).
    """
    for name, scorer in instances(names, params).items():
        if statistics and name in statistics:
            scorer.statistics = statistics[name]
        frame = scorer(frame)
    return frame


def instances(names: str | Iterable[str], params: dict[str, Any]) -> dict[str, Scorer]:
    """The scorers `names`, in order, each with the keywords its params declare."""
    names = [names] if isinstance(names, str) else list(names)
    for n in names:
        get(n)  # fail early on an unknown name
    routed = split_params(names, params)
    return {n: get(n, **routed[n]) for n in names}


def sql_macros() -> list[str]:
    """The DuckDB `CREATE MACRO` statements of every registered scorer (SQL twins of the Polars formulas)."""
    return [m for cls in registry().values() for m in getattr(cls, "sql_macros", ())]


def ensure(frame: pl.LazyFrame, name: str, **params: Any) -> pl.LazyFrame:
    """Run scorer `name` unless every column it produces is already present (scorers building on others)."""
    have = set(frame.collect_schema().names())
    cls = registry()[name]
    if all(c in have for c in cls.produces):
        return frame
    return get(name, **params)(frame)
