"""Training data: read pairs/triplets/ranked tables, tokenise with the chat template, truncate, collate.

Each example is a prompt and R responses (R = 2 for pairs: chosen, rejected; 3 for triplets: chosen,
chosen_target, rejected; K for ranked lists, best first). Prompt tokens are masked out of the loss;
batches are padded to their longest sequence (dynamic padding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import torch

from curate.errors import CurateError, SchemaError
from curate.lineage import Step
from curate.train.tokenize import tokenize_examples

ROLES = {"pairs": ("chosen", "rejected"), "triplets": ("chosen", "chosen_target", "rejected")}
REF_COLUMNS = {
    "pairs": ("ref_chosen_logps", "ref_rejected_logps"),
    "triplets": ("ref_chosen_logps", "ref_chosen_target_logps", "ref_rejected_logps"),
    "ranked": ("ref_logps",),
}


@dataclass
class Example:
    prompt: list[int]
    responses: list[list[int]]  # best first for ranked; (chosen, rejected) / (chosen, chosen_target, rejected)
    weight: float
    ref: list[float] | None  # reference log-prob per response, when the data has them
    rewards: list[float] | None = None  # ranked lists: for pair_weighting="reward_gap"
    pair_id: str = ""  # the table's `pair_id` (or "row<i>"): the key of training diagnostics
    prompt_id: str = ""
    beta: float | None = None  # per-row β (the data's `beta` column)
    margin: float | None = None  # per-row target margin (the data's `margin` column)


@dataclass
class PreferenceData:
    kind: str
    examples: list[Example]
    step: Step = field(default_factory=lambda: Step("tokenize"))

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def has_beta(self) -> bool:
        return any(e.beta is not None for e in self.examples)

    @property
    def has_margin(self) -> bool:
        return any(e.margin is not None for e in self.examples)

    def split_by_prompt(self, fraction: float, seed: int) -> tuple["PreferenceData", "PreferenceData"]:
        """(train, eval): a seeded `fraction` of the prompts (all their examples) held out for evaluation."""
        import random

        prompts = sorted({e.prompt_id for e in self.examples})
        n_eval = max(1, round(fraction * len(prompts))) if fraction > 0 else 0
        if n_eval >= len(prompts):
            raise CurateError(f"--eval-fraction {fraction} leaves no prompt to train on ({len(prompts)} prompts).")
        held = set(random.Random(seed).sample(prompts, n_eval))
        train = [e for e in self.examples if e.prompt_id not in held]
        evals = [e for e in self.examples if e.prompt_id in held]
        return PreferenceData(self.kind, train, self.step), PreferenceData(self.kind, evals, Step("tokenize eval"))

    @property
    def has_reference(self) -> bool:
        return all(e.ref is not None for e in self.examples)


def truncate(prompt: list[int], responses: list[list[int]], max_length: int, max_prompt_length: int) -> tuple[list[int], list[list[int]]]:
    """Keep the end of the prompt (at most `max_prompt_length`), then cut responses to fit `max_length`."""
    longest = max(len(r) for r in responses)
    if len(prompt) + longest > max_length:
        prompt = prompt[-max_prompt_length:] if len(prompt) > max_prompt_length else prompt
        room = max(1, max_length - len(prompt))
        responses = [r[:room] for r in responses]
    return prompt, responses


def load_preference_data(
    path: str | Path,
    tokenizer,
    *,
    max_length: int = 1024,
    max_prompt_length: int = 512,
    use_weights: bool = True,
    wrap_plain_prompts: bool = False,
    split: str | None = None,
    allow_negative_weights: bool = False,
) -> PreferenceData:
    """Read, check and tokenise a pairs/triplets/ranked table as TRL does (curate.train.tokenize).

    Weights must be finite and not null (and ≥ 0 unless `allow_negative_weights`); ranked lists must
    have no null response, rewards as long as the responses, finite rewards, and be sorted best first
    (an unsorted list is sorted on read, with a note). Examples made degenerate by truncation are counted.
    """
    from curate.io import load

    step = Step("tokenize", params={"max_length": max_length, "max_prompt_length": max_prompt_length}, inputs=[str(path)])
    table = load(path, kind=None, step=step, split=split, drop_hint=False, rehash_prompt_ids=None)
    if table.kind == "samples":
        raise CurateError(f"{path}: training needs a pairs, triplets or ranked table; build one with `curate pairs` first.")
    df = table.frame.collect()
    step.rows_in = df.height
    kind = table.kind
    df = check_training_table(df, kind, source=str(path), use_weights=use_weights, allow_negative_weights=allow_negative_weights, step=step)
    if kind == "ranked":
        completions = df["responses"].to_list()
    else:
        completions = [list(rs) for rs in zip(*(df[role].to_list() for role in ROLES[kind]), strict=True)]
    tokenized = tokenize_examples(tokenizer, df["prompt"].to_list(), completions, wrap_plain_prompts=wrap_plain_prompts)
    prompts = [p for p, _ in tokenized]
    responses = [rs for _, rs in tokenized]
    weights = df["weight"].to_list() if use_weights and "weight" in df.columns else [1.0] * df.height
    pair_ids = df["pair_id"].cast(pl.String).to_list() if "pair_id" in df.columns else [f"row{i}" for i in range(df.height)]
    prompt_ids = df["prompt_id"].cast(pl.String).to_list()
    betas = df["beta"].cast(pl.Float64).to_list() if "beta" in df.columns else [None] * df.height
    margins = df["margin"].cast(pl.Float64).to_list() if "margin" in df.columns else [None] * df.height
    refs = _reference_columns(df, kind, step)
    rewards = df["rewards"].to_list() if kind == "ranked" and "rewards" in df.columns else None

    examples, degenerate, truncated = [], 0, 0
    for i, (p, rs) in enumerate(zip(prompts, responses, strict=True)):
        full = (len(p), [len(r) for r in rs])
        p, rs = truncate(p, rs, max_length, max_prompt_length)
        truncated += full != (len(p), [len(r) for r in rs])
        if kind == "ranked":
            keep = [k for k, r in enumerate(rs) if r not in rs[:k]]
            if len(keep) < 2:
                degenerate += 1
                continue
            ref = [refs[i][k] for k in keep] if refs is not None and refs[i] is not None else None
            rw = [rewards[i][k] for k in keep] if rewards is not None else None
            examples.append(Example(p, [rs[k] for k in keep], float(weights[i]), ref, rw, pair_ids[i], prompt_ids[i], betas[i], margins[i]))
            continue
        if rs[-1] in rs[:-1]:  # the rejected side equals a chosen side after truncation
            degenerate += 1
            continue
        examples.append(Example(p, rs, float(weights[i]), refs[i] if refs is not None else None, None, pair_ids[i], prompt_ids[i], betas[i], margins[i]))
    step.drop("examples whose responses became identical after truncation", degenerate)
    if truncated:
        step.warn(f"{truncated} example(s) were truncated to max_length={max_length}"
                  + ("; their ref_*_logps from the data were computed on the full text, raise --max-length" if refs is not None else ""))
    step.rows_out = len(examples)
    if not examples:
        raise CurateError(f"{path}: no example left to train on after truncation to max_length={max_length}.")
    return PreferenceData(kind=kind, examples=examples, step=step)


def _bad_rows(df: pl.DataFrame, bad: pl.Expr) -> tuple[int, list[int]]:
    rows = df.with_row_index("__row").filter(bad.fill_null(False))["__row"]
    return rows.len(), rows.head(5).to_list()


def check_training_table(df: pl.DataFrame, kind: str, *, source: str, use_weights: bool = True, allow_negative_weights: bool = False,
                         step: Step | None = None) -> pl.DataFrame:  # fmt: skip
    """Refuse weights and ranked lists a loss cannot use (SchemaError naming file, column, rows); sort unsorted lists."""
    checks: list[tuple[str, str, pl.Expr, str | None]] = []
    if use_weights and "weight" in df.columns:
        checks.append(("weight", "null weight", pl.col("weight").is_null(), "Fill it (e.g. `curate select --where \"weight IS NOT NULL\"`)."))
        checks.append(("weight", "NaN or infinite weight", ~pl.col("weight").is_finite(), None))
        if not allow_negative_weights:
            checks.append(("weight", "negative weight (it would push the model away from the chosen response)", pl.col("weight") < 0,
                           "Pass --allow-negative-weights if that is meant."))  # fmt: skip
    if "beta" in df.columns:
        checks.append(("beta", "null, non-finite or non-positive β", pl.col("beta").is_null() | ~pl.col("beta").cast(pl.Float64).is_finite()
                       | (pl.col("beta") <= 0), None))  # fmt: skip
    if "margin" in df.columns:
        checks.append(("margin", "null or non-finite margin", pl.col("margin").is_null() | ~pl.col("margin").cast(pl.Float64).is_finite(), None))
    if kind == "ranked":
        checks.append(("responses", "null response in a ranked list", pl.col("responses").list.eval(pl.element().is_null()).list.any(), None))
        if "rewards" in df.columns:
            checks.append(("rewards", "`rewards` and `responses` differ in length", pl.col("rewards").list.len() != pl.col("responses").list.len(), None))
            checks.append(("rewards", "null, NaN or infinite reward in a ranked list",
                           pl.col("rewards").list.eval(pl.element().is_null() | ~pl.element().is_finite()).list.any(), None))  # fmt: skip
        if "ref_logps" in df.columns:
            checks.append(("ref_logps", "`ref_logps` and `responses` differ in length",
                           pl.col("ref_logps").is_not_null() & (pl.col("ref_logps").list.len() != pl.col("responses").list.len()), None))  # fmt: skip
    for column, problem, bad, hint in checks:
        count, rows = _bad_rows(df, bad)
        if count:
            raise SchemaError(problem, source=source, column=column, rows=rows, count=count, hint=hint)
    if kind == "ranked" and "rewards" in df.columns:
        unsorted = pl.col("rewards").list.eval(pl.element().diff() > 0).list.any()
        count, _ = _bad_rows(df, unsorted)
        if count:
            order = pl.col("rewards").list.eval(pl.int_range(pl.len()).sort_by(pl.element(), descending=True, maintain_order=True))
            lists = [c for c in ("responses", "rewards", "models", "ref_logps", "logps", "n_tokens") if c in df.columns]
            df = df.with_columns(order.alias("__order")).with_columns(
                [pl.when(unsorted).then(pl.col(c).list.gather(pl.col("__order"))).otherwise(pl.col(c)).alias(c) for c in lists]
            ).drop("__order")
            if step is not None:
                step.warn(f"{count} ranked list(s) were not sorted by reward, best first; sorted on read (ties keep their order)")
    return df


def _reference_columns(df: pl.DataFrame, kind: str, step: Step | None = None) -> list | None:
    cols = REF_COLUMNS[kind]
    if not all(c in df.columns for c in cols):
        return None
    missing = sum(df[c].null_count() for c in cols)
    if missing:  # partial reference log-probs: recompute them all, and say so
        if step is not None:
            step.warn(f"{missing} null value(s) in {', '.join(cols)}: the reference log-probs are recomputed for every example "
                      "with the reference model (the data's values are not used)")  # fmt: skip
        return None
    if kind == "ranked":
        return df["ref_logps"].to_list()
    return [list(r) for r in zip(*(df[c].to_list() for c in cols), strict=True)]


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B*R, T]
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor  # 1 on response tokens
    n_responses: int  # R (for ranked: K, the longest list in the batch)
    response_mask: torch.Tensor  # [B, R] real responses (ranked lists may be shorter)
    weights: torch.Tensor  # [B]
    ref: torch.Tensor | None  # [B, R]
    rewards: torch.Tensor | None  # [B, R]
    index: torch.Tensor  # [B] example indices
    beta: torch.Tensor | None = None  # [B] per-row β
    margin: torch.Tensor | None = None  # [B] per-row target margin

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.attention_mask), move(self.loss_mask), self.n_responses, move(self.response_mask),
                     move(self.weights), move(self.ref), move(self.rewards), move(self.index), move(self.beta), move(self.margin))  # fmt: skip

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(data: PreferenceData, indices: list[int], pad_id: int) -> Batch:
    """Stack examples response-major (all first responses, then all second, ...) and pad on the right."""
    exs = [data.examples[i] for i in indices]
    R = max(len(e.responses) for e in exs)
    seqs, masks, present = [], [], []
    for r in range(R):
        for e in exs:
            resp = e.responses[r] if r < len(e.responses) else e.responses[-1]  # padding entries, masked below
            seqs.append(e.prompt + resp)
            masks.append([0] * len(e.prompt) + [1] * len(resp))
    for e in exs:
        present.append([r < len(e.responses) for r in range(R)])
    T = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), T), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for k, (s, m) in enumerate(zip(seqs, masks, strict=True)):
        input_ids[k, : len(s)] = torch.tensor(s)
        attention[k, : len(s)] = 1
        loss_mask[k, : len(m)] = torch.tensor(m)
    has_ref = all(e.ref is not None for e in exs)
    ref = torch.tensor([e.ref + [0.0] * (R - len(e.ref)) for e in exs], dtype=torch.float32) if has_ref else None
    has_rw = all(e.rewards is not None for e in exs)
    rewards = torch.tensor([e.rewards + [0.0] * (R - len(e.rewards)) for e in exs], dtype=torch.float32) if has_rw else None
    return Batch(
        input_ids=input_ids,
        attention_mask=attention,
        loss_mask=loss_mask,
        n_responses=R,
        response_mask=torch.tensor(present, dtype=torch.bool),
        weights=torch.tensor([e.weight for e in exs], dtype=torch.float32),
        ref=ref,
        rewards=rewards,
        index=torch.tensor(indices, dtype=torch.long),
        beta=torch.tensor([e.beta for e in exs], dtype=torch.float32) if all(e.beta is not None for e in exs) else None,
        margin=torch.tensor([e.margin for e in exs], dtype=torch.float32) if all(e.margin is not None for e in exs) else None,
    )
