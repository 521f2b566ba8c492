"""`edit_distance`: Levenshtein distance between chosen and rejected (DCRM, arXiv 2506.14157; FORMULAS A2).

Units: token ids when `chosen_token_ids`/`rejected_token_ids` exist, else words (Python `str.split()`
semantics: runs of whitespace), or characters with `unit="char"`.

How it is fast: texts are deduplicated per batch (a prompt's response appears in many pairs), each
distinct text is encoded once as a string with one code point per word (or token), so word-level
Levenshtein becomes rapidfuzz's native string Levenshtein; all pairs of a batch then go to one
`rapidfuzz.process.cpdist` call that runs on every core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from scorers.base import Scorer, register
from scorers.errors import CurateError

if TYPE_CHECKING:
    import numpy as np

UNITS = ("auto", "token", "word", "char")
# Python's whitespace (str.isspace) is Unicode White_Space, which regex \s matches, plus U+001C–U+001F
_WORD = r"[^\s\x1C-\x1F]+"
_STRINGS_PER_BATCH = 4096  # sequences decoded at once
_LINE_SPACES = ("\n", "\t", "\r")  # the common whitespace besides " ": made spaces before the split
_NOT_A_WORD = r"^$|[\s\x1C-\x1F]"  # a piece of a split on " " that is empty or holds other whitespace: split again by `_WORD`
_MAX_CODE = 0x10FFFF - 0x800  # code points available once the surrogate block is skipped


@dataclass
class EditDistanceParams:
    unit: str = "auto"  # auto: token ids if present, else words


def _code_points(ids: np.ndarray) -> np.ndarray:
    """Dense ids 0..V-1 to valid code points (skipping the surrogates U+D800–U+DFFF)."""
    import numpy as np

    cp = ids.astype(np.uint32, copy=False)
    if cp.size == 0 or cp.max() < 0xD800:
        return cp.astype("<u4", copy=False)
    return np.where(cp >= 0xD800, cp + np.uint32(0x800), cp).astype("<u4", copy=False)


def symbols(flat_ids: np.ndarray) -> np.ndarray:
    """Integer ids (words, tokens) as code points, one per element; equal ids get equal code points."""
    import numpy as np

    if flat_ids.size and (flat_ids.min() < 0 or flat_ids.max() >= _MAX_CODE):
        uniq, flat_ids = np.unique(flat_ids, return_inverse=True)  # make ids dense (a sort: only when needed)
        if len(uniq) > _MAX_CODE:
            raise CurateError(f"edit_distance: {len(uniq):,} distinct words/tokens in one batch; at most {_MAX_CODE:,} are supported.")
    return _code_points(flat_ids.ravel())


def as_strings(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One string per sequence from its code points (`lengths[i]` of them each, in order).

    A batch of sequences at a time is decoded as one text, with a code point none of them uses between
    each two, and split on it: the slicing runs in C (a Python slice per sequence took twice as long),
    and the temporaries stay small (one copy of all the codes cost more in fresh pages than the work).
    """
    import codecs

    import numpy as np

    out = np.empty(len(lengths), dtype=object)
    ends = np.cumsum(lengths, dtype=np.int64)
    codes = codes.astype("<u4", copy=False)
    sep = int(codes.max(initial=0)) + 1
    sep = max(sep, 0xE000) if sep >= 0xD800 else sep  # never a surrogate
    for start in range(0, len(lengths), _STRINGS_PER_BATCH):
        stop = min(len(lengths), start + _STRINGS_PER_BATCH)
        lo, hi = int(ends[start] - lengths[start]), int(ends[stop - 1])
        if sep > 0x10FFFF:  # every code point is taken: slice each sequence
            text = codecs.utf_32_le_decode(codes[lo:hi])[0]
            bounds = zip((ends[start:stop] - lengths[start:stop] - lo).tolist(), (ends[start:stop] - lo).tolist(), strict=True)
            out[start:stop] = [text[a:b] for a, b in bounds]
        else:
            out[start:stop] = codecs.utf_32_le_decode(np.insert(codes[lo:hi], ends[start : stop - 1] - lo, np.uint32(sep)))[0].split(chr(sep))
    return out


def _word_ids(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Every text's words (maximal runs of non-whitespace, as Python's `str.split()`) as ids, flattened, and each text's word count.

    Newlines, tabs and carriage returns become spaces (literal replaces, only of those present), then
    texts are split on single spaces on every core, into ids in a fresh categorical namespace. Only the
    distinct pieces are then checked for other whitespace: a piece that is empty (a run of spaces, a
    space at either end, an empty text) or holds another space character is split by the exact rule
    once, and each of its occurrences is replaced by its words. Checking distinct pieces, not texts,
    spares a regex pass over all the text; replacing the common line breaks first keeps the pieces
    words (a piece "end.\nNext" would be one more distinct piece for each pair of words).
    """
    import numpy as np

    text = pl.col("t")
    present = pl.LazyFrame({"t": texts}).select(text.str.contains(c, literal=True).any().alias(c) for c in _LINE_SPACES).collect(engine="streaming")
    for c in _LINE_SPACES:
        text = text.str.replace_all(c, " ", literal=True) if present[c].item() else text
    categories = pl.Categories.random()
    word = pl.Categorical(categories)
    plan = pl.LazyFrame({"t": texts}).with_row_index("__i").select("__i", text.str.split(" ").cast(pl.List(word)).alias("w"))
    lists = plan.collect(engine="streaming").sort("__i")["w"]
    lengths = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    ids = lists.explode().drop_nulls().to_physical().to_numpy()  # a split never gives an empty list; a null text gives a null
    pieces = categories.to_series()
    bad = pieces.str.contains(_NOT_A_WORD).fill_null(False).to_numpy()
    if not bad.any():
        return ids, lengths
    # each bad piece's words, in the same namespace: piece p becomes words[start[p] : start[p] + count[p]] (count 0: it goes)
    split = pieces.filter(pl.Series(bad)).str.extract_all(_WORD)
    words = split.explode().drop_nulls().cast(word).to_physical().to_numpy()
    count = np.zeros(len(pieces), dtype=np.int64)
    count[bad] = split.list.len().to_numpy()
    start = np.zeros(len(pieces), dtype=np.int64)
    start[bad] = np.cumsum(count[bad]) - count[bad]
    is_bad = bad[ids]
    at = np.flatnonzero(is_bad)  # occurrences of bad pieces
    text_ends = np.cumsum(lengths)
    before = np.searchsorted(at, text_ends)  # occurrences before each text's end
    if not count.any():  # every bad piece is empty (runs of spaces): they go
        return ids[~is_bad], np.diff(text_ends - before, prepend=0)
    n = count[ids[at]]
    grown = np.concatenate([[0], np.cumsum(n - 1)])  # words gained (or lost) before each occurrence
    lengths = np.diff(text_ends + grown[before], prepend=0)
    within = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    slots = np.repeat(at + grown[:-1], n) + within  # where the occurrences' words go
    out = np.empty(len(ids) + int(grown[-1]), dtype=ids.dtype)
    out[slots] = words[np.repeat(start[ids[at]], n) + within]
    good = np.ones(len(out), dtype=bool)
    good[slots] = False
    out[good] = ids[~is_bad]  # the other pieces keep their order
    return out, lengths


def _frequencies(ids: np.ndarray) -> np.ndarray:
    """How often each id occurs (`np.bincount`), a slice at a time: bincount copies its input to 64 bits, this keeps the copy small."""
    import numpy as np

    counts = np.zeros(int(ids.max()) + 1, dtype=np.int64)
    for start in range(0, ids.size, 1 << 20):
        counts += np.bincount(ids[start : start + (1 << 20)], minlength=counts.size)
    return counts


def word_symbols(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Every text's words as code points, flattened, and each text's word count; the most frequent words get the smallest.

    Ranking words by frequency puts the common ones below 256, where rapidfuzz's Levenshtein runs on a
    lookup table instead of a hash map (measured 17% faster on the arena responses). Which word gets
    which code point may differ between runs (words of equal frequency); distances never do.
    """
    import numpy as np

    ids, lengths = _word_ids(texts)
    if ids.size:
        order = np.argsort(-_frequencies(ids), kind="stable")
        rank = np.empty(len(order), dtype=np.uint32)
        rank[order] = np.arange(len(order), dtype=np.uint32)
        if len(rank) <= _MAX_CODE:  # every word's code point from its rank, then one lookup per word
            return _code_points(rank)[ids], lengths
        ids = rank[ids]  # more words than code points: `symbols` keeps the ones in use, or says there are too many
    return symbols(ids), lengths


def token_symbols(ids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Every token-id list as code points, flattened, and each list's length."""
    lengths = ids.list.len().fill_null(0).to_numpy()
    return symbols(ids.explode().drop_nulls().to_numpy()), lengths


def encode_words(texts: pl.Series) -> np.ndarray:
    """Each text as a string of word code points (word-level Levenshtein becomes string Levenshtein)."""
    return as_strings(*word_symbols(texts))


def encode_tokens(ids: pl.Series) -> np.ndarray:
    """Each token-id list as a string of token code points."""
    return as_strings(*token_symbols(ids))


def pairwise_distances(a: pl.Series, b: pl.Series, unit: str) -> pl.Series:
    """Levenshtein distance between a[i] and b[i] for every i, in `unit`s; null where either side is null."""
    import numpy as np

    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cpdist

    n = len(a)
    valid = (a.is_not_null() & b.is_not_null()).to_numpy()
    both = pl.concat([a, b])
    if unit == "token":
        encoded = encode_tokens(both.fill_null([]))
        qa, qb = encoded[:n], encoded[n:]
    else:
        # each distinct text once: a prompt's responses appear in many pairs
        codes = both.fill_null("").cast(pl.Categorical(pl.Categories.random())).to_physical().to_numpy()
        first = pl.Series(codes).is_first_distinct().to_numpy()
        texts = both.fill_null("").filter(pl.Series(first))
        encoded = np.empty(len(texts), dtype=object)
        encoded[:] = texts.to_list() if unit == "char" else encode_words(texts)
        position = np.empty(codes.max() + 1 if n else 0, dtype=np.int64)
        position[codes[first]] = np.arange(len(texts))
        qa, qb = encoded[position[codes[:n]]], encoded[position[codes[n:]]]
    dist = cpdist(qa, qb, scorer=Levenshtein.distance, workers=-1, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    return pl.Series(dist, dtype=pl.Int64).scatter(np.flatnonzero(~valid), None) if not valid.all() else pl.Series(dist, dtype=pl.Int64)


def resolve_unit(unit: str, names: list[str]) -> str:
    """`auto` means token ids when both sides have them, else words."""
    if unit not in UNITS:
        raise CurateError(f"edit_distance unit must be one of {', '.join(UNITS)} (got {unit!r}).")
    has_tokens = "chosen_token_ids" in names and "rejected_token_ids" in names
    if unit == "auto":
        return "token" if has_tokens else "word"
    if unit == "token" and not has_tokens:
        raise CurateError("edit_distance unit='token' needs chosen_token_ids and rejected_token_ids (run `curate logps`).")
    return unit


@register("edit_distance")
class EditDistance(Scorer):
    """Levenshtein distance between chosen and rejected, over token ids, words or characters."""

    level = "pair"
    requires = ("chosen", "rejected")
    produces = ("edit_distance",)
    citation = "DCRM (arXiv 2506.14157): edit distance between the responses of a pair, FORMULAS A2"
    Params = EditDistanceParams
    # No SQL twin: DuckDB's levenshtein() counts UTF-8 bytes, not characters, and has no word unit.

    def score(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        unit = resolve_unit(self.params.unit, frame.collect_schema().names())
        a, b = ("chosen_token_ids", "rejected_token_ids") if unit == "token" else ("chosen", "rejected")
        dist = pl.struct(a, b).map_batches(
            lambda s: pairwise_distances(s.struct.field(a), s.struct.field(b), unit),
            return_dtype=pl.Int64,
            is_elementwise=True,
        )
        return frame.with_columns(dist.alias("edit_distance"))
