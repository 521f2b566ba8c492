"""Build a tiny Llama and its byte-level BPE tokenizer offline, for tests, the demo and benchmarks.

Nothing is downloaded: the tokenizer is trained with `tokenizers` on the given texts, the weights are
random (seeded). head_dim is 64 so vLLM's CPU attention accepts the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
# ChatML, the template of many chat models (Qwen, SmolLM, ...), for `examples/tokenizers/chatml`
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

DEFAULT_TEXTS = [
    f"{a} plus {b} is {a + b}. The answer is {a + b}." for a in range(20) for b in range(0, 20, 3)
] + [f"Question {i}: what is {i} times 2? Answer: {2 * i}" for i in range(60)] + [
    "good answer", "bad answer", "The quick brown fox jumps over the lazy dog.", "yes", "no",
]  # fmt: skip


def build_tokenizer(out: str | Path, *, texts: Iterable[str] = DEFAULT_TEXTS, vocab_size: int = 512, chat_template: str | None = CHAT_TEMPLATE,
                    special: Iterable[str] = SPECIAL, eos: str = "</s>"):  # fmt: skip
    """Train a byte-level BPE tokenizer on `texts` (offline, in seconds), give it `chat_template`, save it to `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = list(dict.fromkeys([*SPECIAL, *special]))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token=eos, pad_token="<pad>")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(out)
    return fast


def build_tiny_llama(
    out: str | Path,
    *,
    texts: Iterable[str] = DEFAULT_TEXTS,
    vocab_size: int = 512,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 256,
    max_position_embeddings: int = 512,
    chat_template: bool = True,
    reward_model: bool = False,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised Llama and its tokenizer to `out` and return the path.

    `reward_model=True` writes a LlamaForSequenceClassification with one label (a reward model).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    out = Path(out)
    fast = build_tokenizer(out, texts=texts, vocab_size=vocab_size, chat_template=CHAT_TEMPLATE if chat_template else None)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=max(vocab_size, len(fast)),  # the BPE may stop short of vocab_size merges
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        num_labels=1,
    )
    model = LlamaForSequenceClassification(config) if reward_model else LlamaForCausalLM(config)
    model.save_pretrained(out)
    return out


def build_tiny_models(out: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """`out/policy` (a tiny chat Llama, also usable as reference, judge and generator) and `out/reward-model`.

    The tokenizer is trained on the bundled GSM8K and hh-rlhf texts when they are present, so the
    tour's data tokenises compactly; the weights are random.
    """
    out = Path(out)
    texts = list(DEFAULT_TEXTS)
    data = Path(__file__).resolve().parents[2] / "examples" / "data"
    if (data / "gsm8k_6systems.parquet").exists():
        import polars as pl

        gsm = pl.read_parquet(data / "gsm8k_6systems.parquet", columns=["prompt", "response"]).head(2000)
        texts += gsm["prompt"].to_list() + gsm["response"].to_list()
    return {
        "policy": build_tiny_llama(out / "policy", texts=texts, vocab_size=2048, seed=seed, max_position_embeddings=2048),
        "reward model": build_tiny_llama(out / "reward-model", texts=texts, vocab_size=2048, seed=seed + 1, reward_model=True,
                                         max_position_embeddings=2048),
    }  # fmt: skip
