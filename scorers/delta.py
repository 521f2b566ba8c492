"""`sample_delta` and `generator_delta`: Decomposing the Delta (arXiv 2604.08723; FORMULAS A7) [reconstruction]."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from scorers.base import Scorer, register
from scorers.errors import CurateError, SchemaError

DEFAULT_DIMS = ("factuality", "coherence", "precision", "signal_to_noise")


@dataclass
class SampleDeltaParams:
    dims: tuple[str, ...] | list[str] | str | None = None  # None: every judge_* dimension present on both sides


def judge_dims(names: list[str], dims: tuple[str, ...] | list[str] | str | None) -> list[str]:
    """The judge dimensions to average: those asked for, or every `judge_<dim>` present on both sides."""
    present = [c.removeprefix("chosen_judge_") for c in names if c.startswith("chosen_judge_") and f"rejected_judge_{c[13:]}" in names]
    if dims is None:
        if not present:
            raise SchemaError(
                "scorer `sample_delta` needs chosen_judge_<dim>/rejected_judge_<dim> columns",
                column=f"chosen_judge_{DEFAULT_DIMS[0]}",
                hint=f"Run `curate judge --dims {','.join(DEFAULT_DIMS)}` on the samples.",
            )
        return present
    wanted = dims.split(",") if isinstance(dims, str) else list(dims)
    missing = [d for d in wanted if d not in present]
    if missing:
        raise SchemaError(f"sample_delta: judge dimension(s) {', '.join(missing)} are missing", column=f"chosen_judge_{missing[0]}",
                          hint="Run `curate judge` with these --dims.")  # fmt: skip
    return wanted


@register("sample_delta")
class SampleDelta(Scorer):
    """Mean over judge dimensions of judge(y_w) − judge(y_l)."""

    level = "pair"
    requires = ()
    produces = ("sample_delta",)
    vectorized = True
    citation = "Decomposing the Delta (arXiv 2604.08723): sample-level quality delta, FORMULAS A7"
    Params = SampleDeltaParams

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        dims = judge_dims(frame.collect_schema().names(), self.params.dims)
        diffs = [pl.col(f"chosen_judge_{d}") - pl.col(f"rejected_judge_{d}") for d in dims]
        return frame.with_columns(pl.mean_horizontal(diffs).alias("sample_delta"))


@dataclass
class GeneratorDeltaParams:
    capabilities: dict[str, float] | str | None = None  # model -> score, or a .json/.csv/.parquet file with model, capability
    default: float | None = None  # capability of models absent from the table (None: the delta is null)
    _table: dict[str, float] = field(default_factory=dict, repr=False)


def load_capabilities(spec: dict[str, float] | str) -> dict[str, float]:
    """A model → capability mapping from a dict or a file (.json object, or a table with `model`, `capability`)."""
    if isinstance(spec, dict):
        return {str(k): float(v) for k, v in spec.items()}
    path = Path(spec)
    if not path.exists():
        raise CurateError(f"generator_delta: capability table {path} not found.")
    if path.suffix == ".json":
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    table = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    if not {"model", "capability"} <= set(table.columns):
        raise SchemaError("a capability table needs columns `model` and `capability`", source=str(path), column="capability")
    return dict(zip(table["model"].cast(pl.String), table["capability"].cast(pl.Float64), strict=True))


@register("generator_delta")
class GeneratorDelta(Scorer):
    """capability(chosen_model) − capability(rejected_model) from a user-given table."""

    level = "pair"
    requires = ("chosen_model", "rejected_model")
    produces = ("generator_delta",)
    vectorized = True
    citation = "Decomposing the Delta (arXiv 2604.08723): generator-level capability delta, FORMULAS A7"
    Params = GeneratorDeltaParams

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        if self.params.capabilities is None:
            raise CurateError("generator_delta needs capabilities: --param capabilities=FILE (.json/.csv/.parquet) or a dict.")
        table = load_capabilities(self.params.capabilities)

        def cap(col: str) -> pl.Expr:
            return pl.col(col).replace_strict(table, default=self.params.default, return_dtype=pl.Float64)

        return frame.with_columns((cap("chosen_model") - cap("rejected_model")).alias("generator_delta"))
