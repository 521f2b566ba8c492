"""A record of what each step did: rows in/out, rows dropped with their reasons, and warnings.

Every step that filters rows adds a line here, so nothing is dropped silently; the CLI prints it and
`export --format hf` writes it into the dataset card.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
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


@dataclass
class Step:
    """One pipeline step: its name, parameters, input files, row counts and drop reasons."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    rows_in: int | None = None
    rows_out: int | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.params = _portable(dict(self.params))
        self.inputs = _portable([str(i) for i in self.inputs])

    def drop(self, reason: str, count: int) -> None:
        """Record `count` rows (or prompts, as the reason says) dropped for `reason`; zero counts are skipped."""
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


@dataclass
class Lineage:
    """The history of a table: the source files it came from and the steps applied, in order."""

    sources: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sources = _portable([str(s) for s in self.sources])

    def to_json(self) -> str:
        return json.dumps({"sources": self.sources, "steps": [asdict(s) for s in self.steps]})

    @classmethod
    def from_json(cls, text: str | bytes | None) -> "Lineage":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(sources=list(data.get("sources", [])), steps=[Step(**s) for s in data.get("steps", [])])

    def merged(self, other: "Lineage") -> "Lineage":
        """This lineage followed by the parts of `other` not already in it (for steps with several inputs)."""
        sources = self.sources + [s for s in other.sources if s not in self.sources]
        return Lineage(sources=sources, steps=self.steps + other.steps)
