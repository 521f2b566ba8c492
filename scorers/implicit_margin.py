"""`implicit_margin`: the DPO implicit reward margin h and the length-normalised policy margin (FORMULAS A3)."""

from __future__ import annotations

import polars as pl

from scorers.base import Scorer, register
from scorers.errors import SchemaError
from scorers.functions import length_normalised

_REF = ("ref_chosen_logps", "ref_rejected_logps")
_LEN = ("chosen_n_tokens", "rejected_n_tokens")


def implicit_margin_expr() -> pl.Expr:
    """h = (logp(y_w) − ref(y_w)) − (logp(y_l) − ref(y_l))."""
    return (pl.col("chosen_logps") - pl.col("ref_chosen_logps")) - (pl.col("rejected_logps") - pl.col("ref_rejected_logps"))


def logp_margin_norm_expr() -> pl.Expr:
    """avg(y_w) − avg(y_l), policy only, length-normalised."""
    return length_normalised("chosen_logps", "chosen_n_tokens") - length_normalised("rejected_logps", "rejected_n_tokens")


@register("implicit_margin")
class ImplicitMargin(Scorer):
    """`implicit_margin` (needs ref log-probs) and `logp_margin_norm` (needs token counts); each where its inputs exist."""

    level = "pair"
    requires = ("chosen_logps", "rejected_logps")
    produces = ("implicit_margin", "logp_margin_norm")
    vectorized = True
    citation = "DPO implicit reward margin (Rafailov et al. 2023); length-normalised margin, FORMULAS A3"
    sql_macros = (
        """CREATE OR REPLACE MACRO implicit_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps) AS
        (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)""",
        """CREATE OR REPLACE MACRO logp_margin_norm(chosen_logps, rejected_logps, chosen_n_tokens, rejected_n_tokens) AS
        chosen_logps / chosen_n_tokens - rejected_logps / rejected_n_tokens""",
    )

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        names = set(frame.collect_schema().names())
        has_ref, has_len = all(c in names for c in _REF), all(c in names for c in _LEN)
        if not (has_ref or has_len):
            raise SchemaError(
                "scorer `implicit_margin` needs ref_chosen_logps/ref_rejected_logps (implicit_margin) "
                "or chosen_n_tokens/rejected_n_tokens (logp_margin_norm)",
                column="ref_chosen_logps",
                hint="Run `curate logps` (with --ref-model for the reference) on the samples.",
            )
        cols = []
        if has_ref:
            cols.append(implicit_margin_expr().alias("implicit_margin"))
        if has_len:
            cols.append(logp_margin_norm_expr().alias("logp_margin_norm"))
        return frame.with_columns(cols)
