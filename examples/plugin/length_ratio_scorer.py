"""An example third-party scorer for curate: how much longer the chosen response is than the rejected one.

Installed with `pip install ./examples/plugin`, it appears in `curate scorers` through the entry point
declared in pyproject.toml, and runs with `curate score PAIRS --scorer length_ratio -o OUT`.
"""

from dataclasses import dataclass

import polars as pl

from scorers import Scorer


@dataclass
class LengthRatioParams:
    unit: str = "chars"  # "chars" or "words"


class LengthRatio(Scorer):
    """len(chosen) / len(rejected), in characters or words."""

    name = "length_ratio"
    level = "pair"
    requires = ("chosen", "rejected")
    produces = ("length_ratio",)
    citation = "example plugin (length bias check)"
    Params = LengthRatioParams
    vectorized = True  # Polars expressions only: cheap to evaluate twice (e.g. `select --top 0.5 --by length_ratio` in two passes)

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        def size(col: str) -> pl.Expr:
            c = pl.col(col)
            return (c.str.len_chars() if self.params.unit == "chars" else c.str.extract_all(r"\S+").list.len()).cast(pl.Float64)

        return frame.with_columns((size("chosen") / size("rejected")).alias("length_ratio"))
