"""Reference log-probs: taken from the data when present, else computed once before training and cached.

The reference model (by default the initial policy itself) runs in one no-grad pass over the data;
the result is cached in the output folder, keyed by the data file, the reference model and the
truncation settings, so a rerun or a resume never loads the reference model again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from curate.train.data import PreferenceData, collate
from curate.train.logps import CHUNK_SIZE, sequence_logps

CACHE_NAME = "reference_logps.pt"


def cache_key(data_path: str, ref_model: str, max_length: int, max_prompt_length: int, n_examples: int, tag: str = "train") -> str:
    st = os.stat(data_path)
    raw = json.dumps([str(Path(data_path).resolve()), st.st_size, st.st_mtime_ns, str(Path(ref_model).resolve()),
                      max_length, max_prompt_length, n_examples, tag])  # fmt: skip
    return hashlib.sha1(raw.encode()).hexdigest()


@torch.no_grad()
def compute_reference(
    model: torch.nn.Module,
    data: PreferenceData,
    *,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    chunk_size: int = CHUNK_SIZE,
    indices: list[int] | None = None,
    autocast: bool = False,
    progress: bool = False,
) -> dict[int, list[float]]:
    """Summed log-probs of every response under `model`, for the examples in `indices` (default: all).

    Examples are taken longest first so that batches pad little; `progress` shows a bar with
    examples/s and the time left.
    """
    from curate.console import progress_bar

    was_training = model.training
    model.eval()
    indices = list(range(len(data))) if indices is None else list(indices)
    by_length = sorted(indices, key=lambda i: -(len(data.examples[i].prompt) + max(len(r) for r in data.examples[i].responses)))
    out: dict[int, list[float]] = {}
    with progress_bar("reference log-probs", len(by_length), unit="examples", enabled=progress) as advance:
        for start in range(0, len(by_length), batch_size):
            idx = by_length[start : start + batch_size]
            batch = collate(data, idx, pad_id).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                lp, _ = sequence_logps(model, batch.input_ids, batch.attention_mask, batch.loss_mask, chunk_size)
            lp = lp.float().view(batch.n_responses, len(idx)).T.cpu()
            for row, i in enumerate(idx):
                out[i] = lp[row, : len(data.examples[i].responses)].tolist()
            advance(len(idx))
    model.train(was_training)
    return out


def load_cache(path: Path, key: str) -> dict[int, list[float]] | None:
    if not path.exists():
        return None
    cached = torch.load(path, weights_only=True)
    return {int(k): v for k, v in cached["ref"].items()} if cached.get("key") == key else None


def save_cache(path: Path, key: str, ref: dict[int, list[float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "ref": ref}, tmp)
    os.replace(tmp, path)


def attach(data: PreferenceData, ref: dict[int, list[float]], indices: list[int] | None = None) -> None:
    """Set the reference log-probs of the examples in `indices` (default: all)."""
    for i in range(len(data)) if indices is None else indices:
        data.examples[i].ref = ref[i]
