"""Build `hh_harmless_conversations.parquet` from the bundled hh-rlhf pairs (run from the repository root).

Each hh-rlhf dialogue ("\\n\\nHuman: ...\\n\\nAssistant: ...") becomes a list of messages with a system prompt
added by us; its human-preferred and its rejected final answer become two samples whose `messages` column is
the whole conversation (the last turn is the response). `reward` is the human label (1 = preferred, 0 = not)
and `correct` the same as a boolean. Only multi-turn dialogues whose turns are all non-empty are kept.
"""

from __future__ import annotations

import re

import polars as pl

SRC = "examples/data/hh_harmless_test_pairs.parquet"
OUT = "examples/data/hh_harmless_conversations.parquet"
SYSTEM = "You are a helpful and harmless assistant."
N_DIALOGUES = 150
_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse(prompt: str) -> list[dict[str, str]] | None:
    """hh-rlhf's transcript to messages; None when a turn is empty or the roles do not alternate."""
    parts = _TURN.split(prompt)
    if parts[0].strip() or not prompt.rstrip().endswith("Assistant:"):
        return None
    text = prompt.rstrip()[: -len("Assistant:")]
    parts = _TURN.split(text)[1:]
    turns = [{"role": "user" if who == "Human" else "assistant", "content": said.strip()} for who, said in zip(parts[::2], parts[1::2])]
    if not turns or any(not t["content"] for t in turns) or turns[-1]["role"] != "user":
        return None
    if any(a["role"] == b["role"] for a, b in zip(turns, turns[1:])):
        return None
    return [{"role": "system", "content": SYSTEM}, *turns]


def main() -> None:
    rows = []
    for r in pl.read_parquet(SRC).iter_rows(named=True):
        conv = parse(r["prompt"])
        if conv is None or sum(m["role"] == "user" for m in conv) < 2 or not r["chosen"].strip() or not r["rejected"].strip():
            continue
        for label, text in (("chosen", r["chosen"]), ("rejected", r["rejected"])):
            rows.append({"dialogue_id": r["prompt_id"], "messages": [*conv, {"role": "assistant", "content": text.strip()}],
                         "model": "hh-rlhf-52B", "label": label, "reward": 1.0 if label == "chosen" else 0.0, "correct": label == "chosen"})
        if len(rows) >= 2 * N_DIALOGUES:
            break
    pl.DataFrame(rows).write_parquet(OUT)
    print(f"wrote {OUT}: {len(rows)} samples from {len(rows) // 2} dialogues")


if __name__ == "__main__":
    main()
