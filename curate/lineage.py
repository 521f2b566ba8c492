"""Lineage: a record of what each step did (rows in/out, rows dropped with their reasons, warnings) and of the steps before it.

Every step that filters rows adds a line here, so nothing is dropped silently; the CLI prints it and
`export --format hf` writes it into the dataset card.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any


def _portable(value: Any) -> Any:
    """Absolute paths become relative (or bare file names): lineage never records the writing machine's folders."""
    from curate.hub import relative_source

    if isinstance(value, str) and os.path.isabs(value):
        return relative_source(value)
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    return value


UNITS = ("rows", "samples", "prompts", "pairs", "triplets", "lists", "examples")


@dataclass
class Step:
    """One pipeline step: its name, parameters, input files, row counts and drop reasons.

    Each drop reason has a unit (`rows` of the input table, or `samples`, `prompts`, `pairs`, ...) and
    every row is dropped for one reason only, so per unit the counts add up. A count may be given
    lazily (`count`): a one-value LazyFrame that the step's runner evaluates in the same execution as
    the output (`pending_counts`), or that reading `dropped` evaluates on demand.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    rows_in: int | None = None
    rows_out: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    pending: list[tuple[str, str | None, Any]] = field(default_factory=list, repr=False, compare=False)
    extras: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # observed statistics (not lineage)
    unpaired: tuple[str, Any, Any, tuple[str, ...]] | None = field(default=None, repr=False, compare=False)
    # set by a runner that evaluates the pending values with the output and settles the step before writing it
    # (curate.steps.run_step); otherwise `require` checks at once
    deferred_checks: bool = field(default=False, repr=False, compare=False)
    verifiers: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # name -> the `require` check awaiting its row

    def __post_init__(self) -> None:
        self.params = _portable(dict(self.params))
        self.inputs = _portable([str(i) for i in self.inputs])

    def drop(self, reason: str, count: int, unit: str = "rows") -> None:
        """Record `count` units (rows, samples, prompts, pairs, ...) dropped for `reason`; zero counts are skipped."""
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}")
        if count:
            self.counts[reason] = self.counts.get(reason, 0) + int(count)
            self.units[reason] = unit

    def count(self, reason: str, frame: Any, unit: str = "rows") -> None:
        """Record a drop whose count is the single value of the LazyFrame `frame`, evaluated later."""
        self.pending.append((reason, unit, frame))

    def observe(self, name: str, frame: Any) -> None:
        """Compute the one-row LazyFrame `frame` with the step (e.g. weight statistics); its row lands in `extras[name]`."""
        self.pending.append((name, None, frame))

    def require(self, name: str, frame: Any, verify: Any) -> None:
        """Compute the one-row LazyFrame `frame` with the step's output and pass its row to `verify`, which raises on bad data.

        A runner (`deferred_checks`) settles the step before the output is renamed into place, so a failed check
        leaves no output; without one, `frame` is evaluated and checked at once.
        """
        if not self.deferred_checks:
            verify(frame.collect().row(0, named=True))
            return
        self.pending.append((name, "check", frame))
        self.verifiers[name] = verify

    def count_unpaired(self, reason: str, inputs: Any, output: Any, less: tuple[str, ...] = ()) -> None:
        """Prompts of `inputs` with no row in `output`, less those already counted under the `less` reasons.

        A step runner that streams the output counts its prompts on the way out (`settle_unpaired`);
        otherwise both frames are counted when `dropped` is read.
        """
        self.unpaired = (reason, inputs, output, less)

    def settle_unpaired(self, prompts_in: int, prompts_out: int) -> None:
        if self.unpaired is None:
            return
        reason, _, _, less = self.unpaired
        self.unpaired = None
        self.settle()
        self.drop(reason, prompts_in - prompts_out - sum(self.counts.get(r, 0) for r in less), unit="prompts")

    def pending_counts(self) -> list[Any]:
        """The lazy counts (and observations) not evaluated yet (to run with the output in one `polars.collect_all`)."""
        return [frame for _, _, frame in self.pending]

    def settle(self, values: list[Any] | None = None) -> None:
        """Turn the pending counts into drops: with `values` computed by the caller, else by collecting them here."""
        provided = values is not None
        if values is None and self.unpaired is not None and not self.pending:
            import polars as pl

            _, inputs, output, _ = self.unpaired
            n_in, n_out = pl.collect_all([inputs.select(pl.col("prompt_id").n_unique()), output.select(pl.col("prompt_id").n_unique())])
            self.settle_unpaired(n_in.item(), n_out.item())
            return
        if not self.pending:
            return
        if values is None:
            import polars as pl

            values = pl.collect_all(self.pending_counts())
        pending, self.pending = self.pending, []
        for (reason, unit, _), value in zip(pending, values, strict=True):
            if unit == "check":
                self.verifiers.pop(reason)(value.row(0, named=True))
            elif unit is None:
                self.extras[reason] = value.row(0, named=True) if value.height else {}
            else:
                self.drop(reason, _scalar(value), unit)
        if self.unpaired is not None and provided:
            return  # the runner settles the prompt accounting from its own counts
        if self.unpaired is not None:
            self.settle()

    @property
    def dropped(self) -> dict[str, int]:
        """Reason -> count of every drop (pending lazy counts are evaluated first)."""
        self.settle()
        return self.counts

    def dropped_in(self, unit: str) -> int:
        """How many units of one kind were dropped in all."""
        return sum(n for reason, n in self.dropped.items() if self.units.get(reason, "rows") == unit)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def absorb(self, record: dict[str, Any]) -> None:
        """Add the drops and warnings of a part of this step's work (a `to_dict` record: a bucket, a shard)."""
        for reason, n in record.get("dropped", {}).items():
            self.counts[reason] = self.counts.get(reason, 0) + n
        self.units.update(record.get("units", {}))
        for w in record.get("warnings", []):
            if w not in self.warnings:
                self.warnings.append(w)

    def to_dict(self) -> dict[str, Any]:
        self.settle()
        return {"name": self.name, "params": self.params, "inputs": self.inputs, "rows_in": self.rows_in, "rows_out": self.rows_out,
                "dropped": self.counts, "units": self.units, "warnings": self.warnings}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Step":
        data = dict(data)
        counts = data.pop("dropped", {})
        return cls(**{k: v for k, v in data.items() if k in _STEP_FIELDS}, counts=counts)


def _scalar(value: Any) -> int:
    """A count from a 1x1 DataFrame (or a plain number)."""
    if hasattr(value, "item"):
        value = value.item()
    return int(value or 0)


@dataclass
class Lineage:
    """The history of a table: the source files it came from and the steps applied, in order."""

    sources: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sources = _portable([str(s) for s in self.sources])

    def to_json(self) -> str:
        return json.dumps({"sources": self.sources, "steps": [s.to_dict() for s in self.steps]})

    @classmethod
    def from_json(cls, text: str | bytes | None) -> "Lineage":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(sources=list(data.get("sources", [])), steps=[Step.from_dict(s) for s in data.get("steps", [])])

    def merged(self, other: "Lineage") -> "Lineage":
        """This lineage followed by the parts of `other` not already in it (for steps with several inputs)."""
        sources = self.sources + [s for s in other.sources if s not in self.sources]
        return Lineage(sources=sources, steps=self.steps + other.steps)


_STEP_FIELDS = {f.name for f in fields(Step)} - {"counts", "pending"}
