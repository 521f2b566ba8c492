"""Tokenising prompts and completions exactly as TRL's DPOTrainer does, for both of TRL's dataset formats.

Standard (string) examples: the prompt is tokenised as is (with the tokenizer's special tokens), and
each completion as `prompt + completion + eos` (EOS appended when missing); no chat template.
Conversational examples: the prompt with the chat template and the generation prompt, and each
completion as the template of the whole conversation. In both, a completion's tokens start where
the prompt's tokens and the prompt+completion tokens first differ (usually the end of the prompt),
the shortest such prefix over the example's completions; this is TRL 1.16's `_prepare_dataset`.
So a file tokenises to the same ids in `curate train`, in `curate logps` and in TRL.
"""

from __future__ import annotations

from typing import Any

from curate.errors import CurateError
from curate.messages import to_messages

Prompt = str | list[dict[str, Any]]


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _render(tokenizer: Any, conversations: list[list[dict[str, Any]]], *, generation_prompt: bool) -> list[list[int]]:
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=generation_prompt) for c in conversations]
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def tokenize_examples(
    tokenizer: Any, prompts: list[Prompt], completions: list[list[str]], *, wrap_plain_prompts: bool = False
) -> list[tuple[list[int], list[list[int]]]]:
    """Token ids of each prompt and of each of its completions, as TRL's DPOTrainer computes them.

    `wrap_plain_prompts` sends plain-string prompts through the chat template as one user turn
    (an explicit choice: TRL tokenises string prompts without a template).
    """
    if wrap_plain_prompts:
        if not getattr(tokenizer, "chat_template", None):
            raise CurateError("wrap_plain_prompts: the tokenizer has no chat template.")
        prompts = [to_messages(p) for p in prompts]
    conv = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    plain = [i for i, p in enumerate(prompts) if isinstance(p, str)]
    out: list[tuple[list[int], list[list[int]]] | None] = [None] * len(prompts)
    if conv:
        if not getattr(tokenizer, "chat_template", None):
            raise CurateError(
                f"{getattr(tokenizer, 'name_or_path', 'the tokenizer')}: the prompts are conversations, but the tokenizer has no "
                "chat template to render them with. Use a chat model's tokenizer (or add a `chat_template`)."
            )
        prompt_ids = _render(tokenizer, [prompts[i] for i in conv], generation_prompt=True)
        full = [_render(tokenizer, [[*prompts[i], {"role": "assistant", "content": c}] for c in completions[i]], generation_prompt=False)
                for i in conv]  # fmt: skip
        for i, p_ids, f_ids in zip(conv, prompt_ids, full, strict=True):
            out[i] = split_at_prompt(p_ids, f_ids)
    if plain:
        eos = tokenizer.eos_token or ""
        prompt_ids = tokenizer([prompts[i] for i in plain])["input_ids"]
        texts = [prompts[i] + c + ("" if c.endswith(eos) else eos) for i in plain for c in completions[i]]
        flat = iter(tokenizer(texts)["input_ids"] if texts else [])
        for i, p_ids in zip(plain, prompt_ids, strict=True):
            out[i] = split_at_prompt(p_ids, [next(flat) for _ in completions[i]])
    return out  # type: ignore[return-value]


def split_at_prompt(prompt_ids: list[int], full_ids: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Cut each prompt+completion sequence where it stops sharing tokens with the prompt (the shortest cut of all)."""
    n = min([common_prefix_length(prompt_ids, f) for f in full_ids] or [len(prompt_ids)])
    return prompt_ids[:n], [f[n:] for f in full_ids]
