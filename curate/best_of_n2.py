"""Best-of-N² pairing by DCRM, exact, computing few of the N(N−1)/2 edit distances (DCRM, arXiv 2506.14157; FORMULAS A2).

DCRM = (σ(Δr) − 0.5) / (d + d_p + ε), and an edit distance has a lower bound L ≤ d that is cheap to
compute, so UB = (σ(Δr) − 0.5) / (L + d_p + ε) bounds a pair's DCRM from above. L counts symbols
(words, tokens or characters, in the distance's unit) grouped into 128 buckets: with h(a) the bucket
counts of a, L = max(Σ (h(a) − h(b))⁺, Σ (h(b) − h(a))⁺). One edit (a substitution, insertion or
deletion) lowers each of the two sums by at most one, so d ≥ L; and L ≥ |ℓ(a) − ℓ(b)|, the lengths'
difference (the two sums differ by exactly that).

Per prompt, the pairs with the largest bounds are scored first; their k-th best DCRM is a threshold
no pair below it can reach: pairs whose bound is under it are never scored, and the others are scored
with a rapidfuzz `score_cutoff` (the largest distance that could still reach it), which stops early on
hopeless pairs. The result equals the exhaustive ranking exactly, ties included
(same formula, same tie-breaks; tested against it), because a bound is never below the true value in
floating point either. Identical texts (distance 0) are counted and skipped without a distance: only the
pairs whose bound is 0 (same length, same bucket counts) can be identical, and those are compared in full.

The work runs on integer indices and encoded texts, a chunk of prompts at a time (memory stays
bounded); only the k chosen pairs per prompt are joined back to the full rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import polars as pl

from curate.roles import KEY, PROMPT_ORDER, ROW
from scorers.dcrm import dcrm_expr
from scorers.edit_distance import as_strings, token_symbols, word_symbols
from scorers.errors import CurateError, SchemaError
from scorers.functions import sigmoid

T = TypeVar("T")
C_ROW, R_ROW = "__chosen_row", "__rejected_row"
_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)  # score_cutoff values, one rapidfuzz call each
CHUNK_PROMPTS = 20_000


@dataclass
class TopK:
    """The selected pairs (prompt id, chosen and rejected row numbers, rank, edit distance, DCRM) and what was dropped."""

    selected: pl.DataFrame
    identical: int = 0  # pairs of identical texts (distance 0), skipped
    null: int = 0  # pairs with no distance (a response without token ids) or no d_prob (no ref log-prob)
    scored: int = 0  # pairs given to rapidfuzz (with or without a cutoff)
    exact: int = 0  # pairs whose exact distance was needed (no cutoff, or within it)
    candidates: int = 0
    notes: list[str] = field(default_factory=list)


def resolve_unit(unit: str, names: list[str]) -> str:
    if unit not in ("auto", "token", "word", "char"):
        raise CurateError(f"edit_distance unit must be one of auto, token, word, char (got {unit!r}).")
    if unit == "auto":
        return "token" if "token_ids" in names else "word"
    if unit == "token" and "token_ids" not in names:
        raise CurateError("edit_distance unit='token' needs `token_ids` in the samples (run `curate logps`).")
    return unit


def uses_prob(requested: bool | None, names: list[str]) -> bool:
    if requested and "ref_logp" not in names:
        raise SchemaError("dcrm with prob_distance=True needs `ref_logp`", column="ref_logp", hint="Run `curate logps --ref-model` on the samples.")
    return "ref_logp" in names if requested is None else bool(requested)


def top_k_by_dcrm(graded: pl.DataFrame, k: int, *, epsilon: float = 1.0, prob_distance: bool | None = None, unit: str = "auto",
                  chunk_prompts: int = CHUNK_PROMPTS, progress: bool = True) -> TopK:  # fmt: skip
    """The top `k` pairs per prompt by DCRM (ties as the exhaustive path breaks them) from graded samples.

    `graded` has the prompt id, the row numbers (`ROW`, `PROMPT_ORDER`), `reward`, `response` (or
    `token_ids`) and, for d_p, `ref_logp`.
    """
    from curate.console import progress_bar

    names = graded.columns
    unit = resolve_unit(unit, names)
    use_prob = uses_prob(prob_distance, names)
    prompts = graded.select(pl.col(PROMPT_ORDER).rank("dense").cast(pl.Int64).alias("__p"))["__p"]
    graded = graded.with_columns(prompts)
    n_prompts = int(prompts.max() or 0)
    parts, out = [], TopK(selected=pl.DataFrame())
    with progress_bar("best-of-n2 (DCRM)", n_prompts, unit="prompts", enabled=progress and n_prompts > chunk_prompts) as advance:
        for start in range(1, n_prompts + 1, chunk_prompts):
            chunk = graded.filter(pl.col("__p").is_between(start, start + chunk_prompts - 1))
            parts.append(_chunk(chunk, k, unit=unit, use_prob=use_prob, has_ref="ref_logp" in names, epsilon=epsilon, stats=out))
            advance(min(chunk_prompts, n_prompts - start + 1))
    schema = {KEY: pl.String, C_ROW: pl.Int64, R_ROW: pl.Int64, "__rank": pl.Int64, "edit_distance": pl.Int64, "dcrm": pl.Float64}
    out.selected = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return out


HISTOGRAM_BUCKETS = 128  # more buckets: a tighter bound (fewer distances) but more bytes per pair to compare; 128 measured best on long texts
_TEXTS_PER_BATCH = 4096  # texts whose symbols are counted at once
_PAIRS_PER_BATCH = 16_384  # pairs whose bucket counts are compared at once (small enough to stay in cache: batch x buckets x 1-4 bytes, three times)


def in_batches(n: int, size: int, work: Callable[[int, int], T]) -> list[T]:
    """`work(start, stop)` on [0, n) in batches of `size`, results in order, on as many threads as Polars uses (NumPy releases the GIL)."""
    spans = [(start, min(n, start + size)) for start in range(0, n, size)]
    if len(spans) < 2:
        return [work(*span) for span in spans]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(spans), pl.thread_pool_size())) as pool:
        return list(pool.map(lambda span: work(*span), spans))


def histograms(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per text, how many of its symbols fall in each of HISTOGRAM_BUCKETS buckets (code point mod HISTOGRAM_BUCKETS).

    `codes` holds every text's symbols (code points) one after another, `lengths[i]` of them for text i.
    Counted a batch of texts at a time, on every core: small temporaries (fresh pages cost more than the
    counting), each kept in the narrowest type that holds its counts (the pairs' comparison moves batch x
    buckets of them); the table takes the widest.
    """
    ends = np.cumsum(lengths, dtype=np.int64)

    def count(start: int, stop: int) -> np.ndarray:
        owner = np.repeat(np.arange(0, (stop - start) * HISTOGRAM_BUCKETS, HISTOGRAM_BUCKETS, dtype=np.intp), lengths[start:stop])
        owner += codes[ends[start] - lengths[start] : ends[stop - 1]] % HISTOGRAM_BUCKETS
        counts = np.bincount(owner, minlength=(stop - start) * HISTOGRAM_BUCKETS).reshape(stop - start, HISTOGRAM_BUCKETS)
        most = int(counts.max(initial=0))
        return counts.astype(np.uint8 if most < 2**8 else np.uint16 if most < 2**16 else np.uint32)

    parts = in_batches(len(lengths), _TEXTS_PER_BATCH, count)
    return np.concatenate(parts) if parts else np.zeros((0, HISTOGRAM_BUCKETS), dtype=np.uint8)


def distance_lower_bound(hist: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L(a, b) = max(Σ (h(a) − h(b))⁺, Σ (h(b) − h(a))⁺) for each pair (a[i], b[i]): at most their edit distance.

    Computed as max(ℓ(a), ℓ(b)) − Σ min(h(a), h(b)), since Σ (h(a) − h(b))⁺ = ℓ(a) − Σ min(h(a), h(b)), a
    batch of pairs at a time on every core.
    """
    total = hist.sum(axis=1, dtype=np.int64)
    out = np.maximum(total[a], total[b])
    narrow = np.uint16 if hist.dtype == np.uint8 and hist.shape[1] * 255 < 2**16 else np.int64  # a row's sum fits: a cheaper reduction

    def subtract_common(start: int, stop: int) -> None:
        out[start:stop] -= np.minimum(hist[a[start:stop]], hist[b[start:stop]]).sum(axis=1, dtype=narrow)

    in_batches(len(a), _PAIRS_PER_BATCH, subtract_common)
    return out


def _encode(df: pl.DataFrame, unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per response: its encoded text (for rapidfuzz), its length, whether it is missing, its histogram."""
    if unit == "token":
        ids = df["token_ids"]
        missing = ids.is_null().to_numpy()
        codes, lengths = token_symbols(ids.fill_null([]))
        return as_strings(codes, lengths), lengths, missing, histograms(codes, lengths)
    # each distinct text is encoded once: the rows take their text's encoding
    texts = df["response"]
    missing = texts.is_null().to_numpy()
    texts = texts.fill_null("")
    unique, rows = texts, None  # rows None: every text is distinct, row i is text i
    if texts.hash().is_duplicated().any():  # two hashes alike (a quick test that spares the exact one otherwise): find the distinct texts
        text_ids = texts.cast(pl.Categorical(pl.Categories.random())).to_physical().to_numpy().astype(np.int64)
        first = pl.Series(text_ids).is_first_distinct().to_numpy()
        unique = texts.filter(pl.Series(first))
        position = np.zeros(text_ids.max() + 1, dtype=np.int64)
        position[text_ids[first]] = np.arange(len(unique))
        rows = position[text_ids]  # row i's text is unique[rows[i]]
    if unit == "char":
        codes = np.frombuffer("".join(unique.to_list()).encode("utf-32-le"), dtype="<u4")
        counts = unique.str.len_chars().to_numpy().astype(np.int64)
    else:
        codes, counts = word_symbols(unique)
    strings, hist = as_strings(codes, counts), histograms(codes, counts)
    if rows is None:
        return strings, counts, missing, hist
    return strings[rows], counts[rows], missing, hist[rows]


def _distances(encoded: np.ndarray, a: np.ndarray, b: np.ndarray, cutoff: int | None) -> np.ndarray:
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cpdist

    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    return cpdist(encoded[a], encoded[b], scorer=Levenshtein.distance, score_cutoff=cutoff, workers=-1, dtype=np.int64)


def _score_wave(wave: pl.DataFrame, encoded: np.ndarray, epsilon: float, stats: TopK) -> list[pl.DataFrame]:
    """Exact DCRM of the pairs of a wave that can still reach their prompt's threshold `kth` (cutoffs in buckets)."""
    # the largest distance that can still reach the threshold (+1 against rounding); bucket -1: no cutoff
    reach = ((sigmoid(pl.col("reward_margin")) - 0.5) / pl.col("kth") - pl.col("d_prob") - epsilon).floor() + 1
    no_cutoff = pl.col("kth").is_null() | (pl.col("kth") <= 0) | (reach >= pl.max_horizontal("len", "len_r")) | (reach > _BUCKETS[-1])
    bucket = pl.when(no_cutoff).then(-1).otherwise(pl.lit(np.array(_BUCKETS)).search_sorted(reach.cast(pl.Int64)))
    wave = wave.with_columns(bucket.alias("bucket")).drop("kth")
    out = []
    for part in wave.partition_by("bucket", maintain_order=False):
        b = int(part["bucket"][0])
        cutoff = None if b < 0 else _BUCKETS[b]
        d = _distances(encoded, part["i"].to_numpy(), part["i_r"].to_numpy(), cutoff)
        stats.scored += part.height
        part = part.with_columns(pl.Series("edit_distance", d))
        if cutoff is not None:
            part = part.filter(pl.col("edit_distance") <= cutoff)  # beyond the cutoff: below the threshold for sure
        stats.exact += part.height
        out.append(part.with_columns(dcrm_expr(pl.col("edit_distance"), pl.col("d_prob"), epsilon).alias("dcrm")).drop("bucket"))
    return out


def candidate_pairs(prompt: np.ndarray, row: np.ndarray, reward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b) of one prompt's rows with reward[a] > reward[b], as indices, in (prompt, row[a], row[b]) order."""
    order = np.lexsort((row, prompt))
    grouped = prompt[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if len(order) else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(order)])
    # each row (in that order) meets every row of its prompt: a run of n entries per row, the prompt's n x n grid row-major
    n = np.repeat(sizes, sizes)
    run = np.cumsum(n) - n  # where each row's run starts
    a = np.repeat(np.arange(len(order)), n)
    b = np.repeat(np.repeat(starts, sizes) - run, n) + np.arange(len(a))  # the prompt's first row + the place in the run
    ordered = reward[order]
    keep = np.repeat(ordered, n) > ordered[b]
    return order[a[keep]], order[b[keep]]


def bound_waves(prompt: np.ndarray, bound: np.ndarray, m: int) -> list[np.ndarray]:
    """Pair indices in waves by each prompt's bound ranks, largest first: [0, m), then [m, 3m), [3m, 7m), ... (ties in input order).

    Each wave raises the prompts' thresholds for the next, so few pairs of the later, larger waves are
    scored. A wave lists its pairs in input order.
    """
    rank = pl.DataFrame({"p": prompt, "bound": bound}).select(pl.col("bound").rank("ordinal", descending=True).over("p")).to_series().to_numpy()
    # floor(log2((rank - 1) // m + 1)), exactly (ranks count from 1); 8 bits: a radix sort
    wave = (np.frexp(((rank - 1) // m + 1).astype(np.float64))[1] - 1).astype(np.uint8)
    return np.split(np.argsort(wave, kind="stable"), np.cumsum(np.bincount(wave))[:-1])


def _chunk(df: pl.DataFrame, k: int, *, unit: str, use_prob: bool, has_ref: bool, epsilon: float, stats: TopK) -> pl.DataFrame:
    encoded, lengths, missing, hist = _encode(df, unit)
    prompt, row, reward = df["__p"].to_numpy(), df[ROW].to_numpy(), df["reward"].to_numpy()
    a, b = candidate_pairs(prompt, row, reward)
    stats.candidates += len(a)
    if has_ref:
        ref = df["ref_logp"].cast(pl.Float64).to_numpy()  # nulls become NaN
        gap = np.abs(ref[a] - ref[b])
        ref_gap = pl.Series("ref_gap", gap, nan_to_null=True)
    else:
        ref_gap = pl.repeat(None, len(a), dtype=pl.Float64, eager=True).alias("ref_gap")
    no_text = missing[a] | missing[b]
    lower = distance_lower_bound(hist, a, b)
    maybe = np.flatnonzero(~no_text & (lower == 0))  # equal encodings have a bound of 0: those texts are compared in full
    identical = np.zeros(len(a), dtype=bool)
    identical[maybe] = encoded[a[maybe]] == encoded[b[maybe]]
    no_prob = ref_gap.is_null().to_numpy() if use_prob else np.zeros(len(a), dtype=bool)
    null = ~identical & (no_text | no_prob)  # identical: distance 0, whatever d_prob is
    stats.null += int(null.sum())
    stats.identical += int(identical.sum())
    live = np.flatnonzero(~null & ~identical)
    a, b = a[live], b[live]
    margin, ref_gap, p = reward[a] - reward[b], ref_gap.gather(live), prompt[a] - (prompt.min() if len(prompt) else 0)
    d_prob = ref_gap.to_numpy() if use_prob else np.zeros(len(a))  # no nulls left when used
    bound = pl.DataFrame({"reward_margin": margin, "lower": lower[live], "d_prob": d_prob})
    bound = bound.select(dcrm_expr(pl.col("lower"), pl.col("d_prob"), epsilon)).to_series().to_numpy()  # DCRM's upper bound, per pair
    kth = np.full(int(p.max(initial=0)) + 1, np.nan)  # each prompt's k-th best DCRM so far (NaN: fewer than k scored)
    kth_of = pl.col("dcrm").max() if k == 1 else pl.when(pl.len() >= k).then(pl.col("dcrm").top_k(k).min())  # max: 8x faster than top_k(1)
    scored: list[pl.DataFrame] = []
    for idx in bound_waves(p, bound, k + 2):
        idx = idx[~(bound[idx] < kth[p[idx]])]  # a pair whose bound is under its prompt's threshold cannot make the top k
        wave = pl.DataFrame({"__p": p[idx], "i": a[idx], "i_r": b[idx], "reward_margin": margin[idx], "ref_gap": ref_gap.gather(idx),
                             "d_prob": d_prob[idx], "len": lengths[a[idx]], "len_r": lengths[b[idx]],
                             "kth": pl.Series(kth[p[idx]], nan_to_null=True)})  # fmt: skip
        scored += _score_wave(wave, encoded, epsilon, stats)
        if scored:  # the threshold each prompt's next pairs must reach
            best = pl.concat([s.select("__p", "dcrm") for s in scored]).group_by("__p").agg(kth_of.alias("kth"))
            kth[best["__p"].to_numpy()] = best["kth"].fill_null(np.nan).to_numpy()
    out_schema = {KEY: df.schema[KEY], C_ROW: pl.Int64, R_ROW: pl.Int64, "__rank": pl.Int64, "edit_distance": pl.Int64, "dcrm": pl.Float64}
    if not scored:
        return pl.DataFrame(schema=out_schema)
    evaluated = pl.concat([s.select("__p", "i", "i_r", "reward_margin", "ref_gap", "edit_distance", "dcrm") for s in scored])
    evaluated = evaluated.with_columns(pl.Series(C_ROW, row[evaluated["i"].to_numpy()]), pl.Series(R_ROW, row[evaluated["i_r"].to_numpy()]))
    # the exhaustive path's tie-breaks (curate.pairing.top_k_per_prompt): margin, then d_prob when ref log-probs exist, distance, rows
    order = [-pl.col("dcrm"), -pl.col("reward_margin"), *([pl.col("ref_gap")] if has_ref else []), pl.col("edit_distance"), pl.col(C_ROW),
             pl.col(R_ROW)]  # fmt: skip
    ranked = evaluated.with_columns(pl.int_range(pl.len()).over("__p", order_by=order).alias("__rank")).filter(pl.col("__rank") < k)
    ranked = ranked.with_columns(df[KEY].gather(ranked["i"].to_numpy()).alias(KEY))
    return ranked.select(KEY, pl.col(C_ROW).cast(pl.Int64), pl.col(R_ROW).cast(pl.Int64), pl.col("__rank").cast(pl.Int64), "edit_distance",
                         "dcrm")  # fmt: skip
