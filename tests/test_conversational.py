"""Conversational data: messages in, every strategy, TRL's conversational format out, the same token ids as TRL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from conftest import DATA
from test_cli import curate_cli

HH = DATA / "hh_harmless_conversations.parquet"
SYSTEM = {"role": "system", "content": "Be brief."}


def test_messages_column_is_split_and_prompt_id_hashes_canonical_json(tmp_path):
    path = tmp_path / "s.jsonl"
    rows = [
        {"messages": [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "reward": 1.0},
        {"messages": [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}], "reward": 0.0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = curate.read(path).collect()
    assert df.columns[:3] == ["prompt_id", "prompt", "response"] and "messages" not in df.columns
    assert df["response"].to_list() == ["Hello!", "Go away."]
    assert df["prompt"].to_list()[0] == [SYSTEM, {"role": "user", "content": "Hi"}]
    # the canonical JSON written out by hand: keys sorted, no spaces
    canonical = '[{"content":"Be brief.","role":"system"},{"content":"Hi","role":"user"}]'
    assert df["prompt_id"].to_list() == [hashlib.sha1(canonical.encode()).hexdigest()[:16]] * 2


def test_prompt_id_ignores_key_order_and_null_fields():
    from curate.messages import prompt_hash

    a = pl.Series([[{"role": "user", "content": "x", "name": None}]])
    b = pl.Series([[{"content": "x", "role": "user"}]])
    assert prompt_hash(a).to_list() == prompt_hash(b).to_list()
    assert prompt_hash(pl.Series(["x"])).to_list() != prompt_hash(b).to_list()  # a string is not a one-turn conversation


BAD_MESSAGES = {
    "unknown_role": ({"role": "wizard", "content": "hi"}, "unknown role"),
    "missing_content": ({"role": "user", "content": None}, "missing (null) content"),
}


@pytest.mark.parametrize("case", [*BAD_MESSAGES, "last_not_assistant"])
def test_malformed_messages_name_file_row_column(tmp_path, case):
    good = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    rows = [{"messages": good, "reward": 1.0} for _ in range(4)]
    if case in BAD_MESSAGES:
        rows[2] = {"messages": [BAD_MESSAGES[case][0], {"role": "assistant", "content": "a"}], "reward": 0.0}
        problem = BAD_MESSAGES[case][1]
    else:
        rows[2] = {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "again"}], "reward": 0.0}
        problem = "last turn is not the assistant's"
    path = tmp_path / f"{case}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.parquet"
    r = curate_cli("ingest", path, "-o", out)
    assert r.returncode == 2 and not out.exists()
    msg = " ".join(r.stderr.split())
    assert str(path) in msg.replace(" ", "") or str(path) in msg
    assert problem in msg and "column `messages`" in msg and "first rows (0-based): 2" in msg and "1 row(s)" in msg


def test_response_as_one_assistant_message_and_bad_role(tmp_path):
    ok = pl.DataFrame({"prompt": [[{"role": "user", "content": "q"}]] * 2, "response": [[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]]})
    ok.write_parquet(tmp_path / "ok.parquet")
    assert curate.read(tmp_path / "ok.parquet").collect()["response"].to_list() == ["a", "b"]
    bad = ok.with_columns(pl.Series("response", [[{"role": "assistant", "content": "a"}], [{"role": "user", "content": "b"}]]))
    bad.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(curate.SchemaError) as err:
        curate.read(tmp_path / "bad.parquet")
    assert (err.value.column, err.value.rows) == ("response", [1]) and "not `assistant`" in str(err.value)


@pytest.mark.parametrize("strategy", ["best-of-n2", "correct-vs-incorrect", "best-vs-worst", "all"])
def test_every_strategy_carries_conversations_and_writes_trl_conversational(tmp_path, strategy):
    samples = curate.read(HH).collect()
    out = tmp_path / "pairs.parquet"
    r = curate_cli("pairs", HH, "--strategy", strategy, "-o", out)
    assert r.returncode == 0, r.stderr
    pairs = pl.read_parquet(out)
    # 150 dialogues, two answers each with rewards 1 and 0 (correct = preferred): one pair per dialogue in every strategy
    assert pairs.height == 150
    by_prompt = {row["prompt_id"]: row["prompt"] for row in samples.iter_rows(named=True)}
    for row in pairs.head(20).iter_rows(named=True):
        assert row["prompt"] == by_prompt[row["prompt_id"]]  # the conversation, unchanged
        assert row["prompt"][0]["role"] == "system" and row["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in row["chosen"]] == ["assistant"] and [m["role"] for m in row["rejected"]] == ["assistant"]
        assert row["chosen_label"] == "chosen" and row["rejected_label"] == "rejected"


def test_edit_distance_uses_the_response_text(tmp_path):
    from rapidfuzz.distance import Levenshtein

    pairs = curate.pairs(curate.read(HH), strategy="all", by="edit_distance").collect()
    row = pairs.row(0, named=True)
    assert row["edit_distance"] == Levenshtein.distance(row["chosen"].split(), row["rejected"].split())


def test_triplets_and_rank_keep_conversations(tmp_path):
    two_models = curate.read(HH).with_columns(pl.when(pl.col("label") == "chosen").then(pl.lit("src")).otherwise(pl.lit("tgt")).alias("model"))
    t = curate.triplets(two_models.with_columns(pl.col("reward")), "tgt", rejected_from="any").collect()
    assert t.height == 0  # one target answer per dialogue: no two target rewards to take best and worst from
    ranked = curate.rank(curate.read(HH)).collect()
    assert ranked.height == 150 and ranked.schema["prompt"] == curate.read(HH).collect_schema()["prompt"]
    assert all(rw == [1.0, 0.0] for rw in ranked["rewards"].to_list())


def _trl_ids(tokenizer, records: list[dict], tmp_path: Path) -> list[tuple[list[int], list[int], list[int]]]:
    """TRL 1.16's own preprocessing (DPOTrainer._prepare_dataset) of the records."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tokenizer.name_or_path)
    args = trl.DPOConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, max_length=None, dataset_num_proc=None)
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(records), processing_class=tokenizer)
    ds = trainer.train_dataset
    return list(zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"], strict=True))


def _curate_ids(tokenizer, path: Path) -> list[tuple[list[int], list[int], list[int]]]:
    from curate.train.data import load_preference_data

    data = load_preference_data(path, tokenizer, max_length=100_000, max_prompt_length=100_000)
    return [(e.prompt, e.responses[0], e.responses[1]) for e in data.examples]


@pytest.mark.parametrize("style", ["conversational", "standard"])
def test_token_ids_equal_trl_preprocessing(tiny_model, tmp_path, style):
    """The same exported file tokenises to the same prompt/chosen/rejected ids in curate and in TRL."""
    pytest.importorskip("trl")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    pairs = tmp_path / "pairs.parquet"
    curate.write(curate.pairs(curate.read(HH), strategy="best-vs-worst").head(24), pairs)
    out = tmp_path / "export"
    extra = {"tokenizer": tiny_model} if style == "standard" else {}
    done = curate.export(pairs, out, "hf", trl=True, style=style, **extra)
    assert done.style == style
    import datasets

    records = datasets.load_dataset(str(out), split="train").to_list()
    if style == "standard":
        assert isinstance(records[0]["prompt"], str) and records[0]["prompt"].startswith("<|system|>")
    else:
        assert records[0]["chosen"][0]["role"] == "assistant"
    want = _trl_ids(tok, records, tmp_path)
    got = _curate_ids(tok, out)
    assert len(got) == len(want) == 24
    assert got == [tuple(map(list, w)) for w in want]
    # the completion starts after the generation prompt; the chat template's end-of-turn closes it
    assert tok.decode(got[0][0]).endswith("<|assistant|>") or style == "standard"


def test_plain_prompts_token_ids_equal_trl(tiny_model, tmp_path):
    pytest.importorskip("trl")
    from transformers import AutoTokenizer

    from conftest import preference_frames

    tok = AutoTokenizer.from_pretrained(tiny_model)
    path = tmp_path / "plain.parquet"
    # the last rows end the prompt inside a word: the tokens merge across the prompt/completion boundary
    mid_word = pl.DataFrame({"prompt": ["Question 3: what is 3 times 2? Ans", "The quick brown fo"], "chosen": ["wer: 6", "x jumps"],
                             "rejected": ["wer: 7", "xes run"]})  # fmt: skip
    pl.concat([preference_frames(16)["pairs"], mid_word]).write_parquet(path)
    want = _trl_ids(tok, pl.read_parquet(path).to_dicts(), tmp_path)
    got = _curate_ids(tok, path)
    assert got == [tuple(map(list, w)) for w in want]
    assert got[0][1][-1] == tok.eos_token_id  # standard format: EOS closes each completion, no chat template
    assert "<|user|>" not in tok.decode(got[0][0])
    naive = [tok(p)["input_ids"] for p in mid_word["prompt"]]
    assert any(g[0] != n for g, n in zip(got[-2:], naive, strict=True))  # the boundary rule really applied


def test_trl_dpo_trainer_trains_on_the_export_unchanged(tiny_model, tmp_path):
    trl = pytest.importorskip("trl")
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pairs = tmp_path / "pairs.parquet"
    assert curate_cli("pairs", HH, "--strategy", "best-of-n2", "-o", pairs).returncode == 0
    out = tmp_path / "hub"
    assert curate_cli("export", pairs, "-o", out).returncode == 0  # no --format: a folder path is a Hub folder
    ds = datasets.load_dataset(str(out), split="train")
    args = trl.DPOConfig(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, report_to=[], use_cpu=True,
                         save_strategy="no", logging_steps=1, disable_tqdm=True)  # fmt: skip
    tok = AutoTokenizer.from_pretrained(tiny_model)
    trainer = trl.DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args, train_dataset=ds, processing_class=tok)
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0


def test_standard_jsonl_export_renders_each_pair_once_and_counts_its_lines(tiny_model, tmp_path, monkeypatch):
    """The rows of a JSON Lines export are counted beside the sink, and that count does not render the chat template again."""
    import importlib

    formats = importlib.import_module("curate.formats")
    calls = []
    real = formats.render_standard
    monkeypatch.setattr(formats, "render_standard", lambda *a: calls.append(1) or real(*a))
    pairs = tmp_path / "pairs.parquet"
    curate.write(curate.pairs(curate.read(HH), strategy="best-vs-worst").head(30), pairs)
    out = tmp_path / "pairs.jsonl"
    done = curate.export(pairs, out, trl=True, style="standard", tokenizer=tiny_model)
    lines = out.read_bytes().count(b"\n")
    assert done.rows == lines == 30
    assert len(calls) == 30
    assert isinstance(json.loads(out.read_text().splitlines()[0])["prompt"], str)


# TRL's implicit-prompt preference format: `chosen`/`rejected` hold the whole conversation (or text), no prompt -----------

SKY = {"role": "user", "content": "What color is the sky?"}
IMPLICIT = [
    {"chosen": [SYSTEM, SKY, {"role": "assistant", "content": "It is blue."}],
     "rejected": [SYSTEM, SKY, {"role": "assistant", "content": "It is green."}]},
    {"chosen": [SKY, {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "Yes."}],
     "rejected": [SKY, {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "No."}]},
]  # fmt: skip


@pytest.mark.parametrize("layout", ["no prompt", "text prompt"])
def test_implicit_prompt_pairs_are_split_as_trl_splits_them(tmp_path, layout):
    # trl-lib/ultrafeedback_binarized has no `prompt`; HuggingFaceH4/ultrafeedback_binarized has a text one beside whole
    # conversations in chosen/rejected: TRL's DPOTrainer splits both with `maybe_extract_prompt`, the reference here
    data_utils = pytest.importorskip("trl.data_utils")
    rows = [{**r, "prompt": r["chosen"][-3 if i == 1 else -2]["content"]} if layout == "text prompt" else r for i, r in enumerate(IMPLICIT)]
    path = tmp_path / "implicit.parquet"
    pl.DataFrame(rows).write_parquet(path)
    out = tmp_path / "pairs.jsonl"
    r = curate_cli("export", path, "--trl", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "`prompt` taken from the start that `chosen` and `rejected` share" in " ".join(r.stderr.split())
    got = [json.loads(line) for line in out.read_text().splitlines()]
    want = [data_utils.maybe_extract_prompt(row) for row in rows]
    assert [{k: g[k] for k in ("prompt", "chosen", "rejected")} for g in got] == [{k: w[k] for k in ("prompt", "chosen", "rejected")} for w in want]
    assert got[1]["prompt"] == IMPLICIT[1]["chosen"][:3]  # by hand: the turns both share, the answers' last turn apart


def test_implicit_prompt_texts_split_where_trl_splits_them():
    # Anthropic/hh-rlhf's layout: whole transcripts as text; TRL splits at the first differing character, a space before
    # it going to the completions. Worked by hand, then checked against TRL's own function
    from curate.messages import implicit_prompt_split

    cases = {("\n\nHuman: Hi\n\nAssistant: Hello there", "\n\nHuman: Hi\n\nAssistant: Go away"): 23,  # the space after "Assistant:"
             ("Q: sky? A: It is blue.", "Q: sky? A: It is black."): 19,  # mid-word, as TRL: "…It is bl" | "ue." / "ack."
             ("same", "same"): 3,  # nothing differs: one before the end, as TRL
             ("ab", "abc"): 1}  # fmt: skip
    for (chosen, rejected), at in cases.items():
        assert implicit_prompt_split(chosen, rejected) == at
    data_utils = pytest.importorskip("trl.data_utils")
    for chosen, rejected in cases:
        at = implicit_prompt_split(chosen, rejected)
        assert data_utils.extract_prompt({"chosen": chosen, "rejected": rejected}) == {"prompt": chosen[:at], "chosen": chosen[at:], "rejected": rejected[at:]}


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab ", max_size=8), st.text(alphabet="ab ", max_size=8))
def test_implicit_prompt_split_agrees_with_trl(a, b):
    """Wherever the two share a first character, the split is TRL's; sharing none, there is no prompt (TRL splits
    at an index taken from the end there, an accident of its loop)."""
    data_utils = pytest.importorskip("trl.data_utils")
    from curate.messages import implicit_prompt_split

    at = implicit_prompt_split(a, b)
    if a[:1] != b[:1] or not a or not b:
        assert at == 0
        return
    assert data_utils.extract_prompt({"chosen": a, "rejected": b}) == {"prompt": a[:at], "chosen": a[at:], "rejected": b[at:]}


def test_implicit_pairs_sharing_no_prompt_are_row_errors(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"chosen": ["Q: a? A: yes", "Yes."], "rejected": ["Q: a? A: no", "No."]}).write_parquet(path)
    with pytest.raises(curate.SchemaError, match=r"null or empty \(blank\) string; column `prompt`; 1 row\(s\); first rows \(0-based\): 1"):
        curate.read(path, kind="pairs")
    path = tmp_path / "mixed.parquet"
    pl.DataFrame({"chosen": [[SKY]], "rejected": ["text"]}).write_parquet(path)
    with pytest.raises(curate.SchemaError, match="must both be text or both conversations"):
        curate.read(path, kind="pairs")


def test_text_prompt_beside_one_message_completions_becomes_its_user_turn(tmp_path):
    # completions given as one assistant message each beside a text prompt share no turn: the prompt is their user turn
    # (TRL's extract_prompt would give them an empty prompt); a row holding the whole conversation is split as above
    path = tmp_path / "p.parquet"
    pl.DataFrame({"prompt": ["What color?", "2+2?"],
                  "chosen": [[{"role": "assistant", "content": "Blue"}], [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]],
                  "rejected": [[{"role": "assistant", "content": "Green"}], [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]],
                  }).write_parquet(path)  # fmt: skip
    with pytest.warns(curate.CurateWarning, match=r"`prompt` taken from the start .* \(the text `prompt` column is replaced\)"):
        df = curate.read(path, kind="pairs").collect()
    assert df["prompt"].to_list() == [[{"role": "user", "content": "What color?"}], [{"role": "user", "content": "2+2?"}]]
    assert df.select("chosen", "rejected").rows() == [("Blue", "Green"), ("4", "5")]


def test_rows_mixing_text_and_messages_are_row_errors_not_json_text(tmp_path):
    # Polars reads a JSON Lines column whose rows mix text and messages as text, a message becoming its JSON: such a row
    # was taken as a prompt (or response) made of that JSON
    path = tmp_path / "mixed.jsonl"
    rows = [{"prompt": "hi", "response": "a"}, {"prompt": [{"role": "user", "content": "hi"}], "response": "b"},
            {"prompt": '{"question": "json is fine as text"}', "response": "c"}, {"prompt": "hi", "response": {"role": "assistant", "content": "d"}}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(curate.SchemaError, match=r"a message written as JSON text .*; column `prompt`; 1 row\(s\); first rows \(0-based\): 1\."):
        curate.read(path)
    r = curate_cli("ingest", path, "--drop-invalid", "-o", tmp_path / "s.parquet")
    assert r.returncode == 0, r.stderr
    kept = pl.read_parquet(tmp_path / "s.parquet")
    assert kept.select("prompt", "response").rows() == [("hi", "a"), ('{"question": "json is fine as text"}', "c")]
    said = " ".join(r.stderr.split())
    assert "invalid `prompt`: a message written as JSON text" in said and "invalid `response`: a message written as JSON text" in said


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=20)}), min_size=1, max_size=3),
       st.booleans(), st.text(max_size=30))  # fmt: skip
def test_a_message_written_as_json_is_found_and_plain_text_is_not(messages, one, text):
    from curate.schema import serialized_messages

    written = [json.dumps(messages[0] if one else messages), json.dumps(messages[0] if one else messages, separators=(",", ":"))]
    others = ['{"question": "json is fine as text"}', '[{"a": 1}]', '{"role": "user"}', "plain " + text]
    found = pl.DataFrame({"c": written + others}).select(serialized_messages(pl.col("c"))).to_series().to_list()
    assert found == [True, True, False, False, False, False]


@pytest.mark.parametrize("style", ["standard", "conversational"])
def test_prompt_completion_samples_read_completion_as_the_response(tmp_path, style):
    # TRL's prompt-completion format names the response `completion` (a string, or one assistant message)
    prompt = "2+2?" if style == "standard" else [{"role": "user", "content": "2+2?"}]
    done = (lambda text: text) if style == "standard" else (lambda text: [{"role": "assistant", "content": text}])
    path = tmp_path / "pc.jsonl"
    path.write_text("".join(json.dumps({"prompt": prompt, "completion": done(t), "reward": r}) + "\n" for t, r in (("4", 1.0), ("5", 0.0))))
    with pytest.warns(curate.CurateWarning, match=r"`completion` read as `response` in .*pc\.jsonl \(TRL's prompt-completion format\)"):
        samples = curate.read(path)
    pairs = curate.pairs(samples, strategy="best-vs-worst").collect()
    assert pairs.select("prompt", "chosen", "rejected").row(0) == (prompt, "4", "5")


SHAREGPT = [
    {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Sky?"}, {"from": "gpt", "value": "Blue."}],
     "reward": 1.0},
    {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Sky?"}, {"from": "gpt", "value": "Green."}],
     "reward": 0.0},
]  # fmt: skip


def test_sharegpt_conversations_read_as_trl_messages(tmp_path):
    # ShareGPT's {from, value} messages, keys renamed as TRL's `maybe_convert_to_chatml` renames them (the reference), and
    # the speakers human/gpt named user/assistant; the whole conversation splits as a `messages` column does
    data_utils = pytest.importorskip("trl.data_utils")
    path = tmp_path / "sharegpt.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in SHAREGPT))
    out = tmp_path / "pairs.jsonl"
    r = curate_cli("pairs", path, "--strategy", "best-vs-worst", "-o", tmp_path / "p.parquet")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "ShareGPT messages ({from, value}) read as {role, content} (human → user, gpt → assistant)" in said
    assert "`conversations` read as `messages`" in said
    assert curate_cli("export", tmp_path / "p.parquet", "--trl", "-o", out).returncode == 0
    named = {"human": "user", "gpt": "assistant"}
    chatml = [[{**m, "role": named.get(m["role"], m["role"])} for m in data_utils.maybe_convert_to_chatml(json.loads(json.dumps(r)))["messages"]]
              for r in SHAREGPT]  # fmt: skip
    got = json.loads(out.read_text())
    assert got["prompt"] == chatml[0][:2] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky?"}]
    assert got["chosen"] == chatml[0][2:] and got["rejected"] == chatml[1][2:]
    # pairs given as ShareGPT conversations (implicit prompt) read the same way
    pairs = tmp_path / "sharegpt_pairs.parquet"
    pl.DataFrame({"chosen": [SHAREGPT[0]["conversations"]], "rejected": [SHAREGPT[1]["conversations"]]}).write_parquet(pairs)
    assert curate_cli("export", pairs, "--trl", "-o", out).returncode == 0
    again = json.loads(out.read_text())
    assert [again[k] for k in ("prompt", "chosen", "rejected")] == [got[k] for k in ("prompt", "chosen", "rejected")]


def test_a_prompt_given_as_one_message_is_a_conversation_of_one_turn(tmp_path):
    # a JSON Lines file whose prompt is one {role, content} object, not a list: read as the list of that one message
    path = tmp_path / "one.jsonl"
    user = {"role": "user", "content": "Hi"}
    path.write_text("".join(json.dumps({"prompt": user, "response": r, "reward": w}) + "\n" for r, w in (("Hello", 1), ("Yo", 0))))
    df = curate.read(path).collect()
    assert df["prompt"].to_list() == [[user]] * 2
    assert df["prompt_id"].to_list() == [hashlib.sha1(b'[{"content":"Hi","role":"user"}]').hexdigest()[:16]] * 2  # as the list's
    out = tmp_path / "pairs.jsonl"
    assert curate_cli("pairs", path, "--strategy", "best-vs-worst", "-o", out).returncode == 0
    got = json.loads(out.read_text())
    assert (got["prompt"], got["chosen"], got["rejected"]) == ([user], [{"role": "assistant", "content": "Hello"}], [{"role": "assistant", "content": "Yo"}])
