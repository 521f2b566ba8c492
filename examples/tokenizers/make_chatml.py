"""Build `examples/tokenizers/chatml`: a small byte-level BPE tokenizer with the ChatML chat template (run from the repository root).

It is trained on the bundled GSM8K and hh-rlhf texts; it exists so that the README's `--format-style
standard --tokenizer ...` example and the tests run offline. Use your model's own tokenizer for real data.
"""

import polars as pl

from curate.models.tiny import CHATML_TEMPLATE, build_tokenizer

gsm = pl.read_parquet("examples/data/gsm8k_6systems.parquet", columns=["prompt", "response"]).head(1000)
hh = pl.read_parquet("examples/data/hh_harmless_test_pairs.parquet", columns=["prompt", "chosen"]).head(500)
texts = gsm["prompt"].to_list() + gsm["response"].to_list() + hh["prompt"].to_list() + hh["chosen"].to_list()
build_tokenizer("examples/tokenizers/chatml", texts=texts, vocab_size=1024, chat_template=CHATML_TEMPLATE,
                special=["<|im_start|>", "<|im_end|>"], eos="<|im_end|>")
print("wrote examples/tokenizers/chatml")
