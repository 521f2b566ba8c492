"""The nine reliability findings, one test (or a few) each: nothing lost, nothing silently mixed, no code run from data."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import polars as pl
import pytest

import curate
from conftest import ARENA, GSM8K, ROOT, preference_frames
from curate.lineage import Step
from test_cli import curate_cli


def one_line(r: subprocess.CompletedProcess) -> str:
    return " ".join(r.stderr.split())


def run_printed_sql(r: subprocess.CompletedProcess, view: str, source: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run the `curate sql ... -o VIEW.parquet` command an error printed, as printed (IN: the file it was about), in `cwd`."""
    printed = re.search(rf"curate sql (.*) -o {view}\.parquet", one_line(r))
    assert printed is not None, one_line(r)
    args = [str(source) if a == "IN" else a for a in shlex.split(printed.group(1))]
    return curate_cli("sql", *args, "-o", f"{view}.parquet", cwd=cwd)


# 1. an existing output folder is never wiped -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["export", "ingest"])
def test_output_folder_holding_the_input_is_refused(tmp_path, command):
    d = tmp_path / "d"
    d.mkdir()
    x = d / "x.parquet"
    pl.read_parquet(GSM8K).head(50).write_parquet(x)
    before = x.read_bytes()
    r = curate_cli(command, x, "-o", d, "--format", "hf")
    assert r.returncode == 2 and "holds the input" in one_line(r)
    assert x.read_bytes() == before and sorted(p.name for p in d.iterdir()) == ["x.parquet"]


def test_foreign_folder_is_not_replaced(tmp_path):
    d = tmp_path / "notes"
    d.mkdir()
    (d / "mine.txt").write_text("keep me")
    r = curate_cli("ingest", GSM8K, "-o", d)
    assert r.returncode == 2 and "not a folder curate wrote" in one_line(r)
    assert (d / "mine.txt").read_text() == "keep me"
    # a folder curate wrote is replaced as a whole
    out = tmp_path / "hub"
    assert curate_cli("ingest", GSM8K, "-o", out).returncode == 0
    assert curate_cli("ingest", ARENA, "--drop-invalid", "-o", out).returncode == 0
    assert curate.read(out, drop_invalid=True).collect().height == 5100 - 27


# 2. prompt_id collisions ------------------------------------------------------------------------------------------


def test_prompt_id_collision_is_an_error_naming_id_and_rows(tmp_path):
    df = pl.DataFrame({"prompt_id": ["a", "a", "a", "b"], "prompt": ["two plus two", "two plus two", "capital of France", "x"],
                       "response": ["4", "5", "Paris", "y"], "reward": [1.0, 0.0, 1.0, 0.5]})  # fmt: skip
    path = tmp_path / "ids.parquet"
    df.write_parquet(path)
    for args in (["pairs", path, "--strategy", "all"], ["rank", path]):
        r = curate_cli(*args, "-o", tmp_path / "out.parquet")
        msg = one_line(r)
        assert r.returncode == 2 and "prompt_id 'a' is given to different prompts (rows 0 and 2 differ)" in msg and "--rehash-prompt-ids" in msg
    r = curate_cli("pairs", path, "--strategy", "all", "--rehash-prompt-ids", "-o", tmp_path / "p.parquet")
    assert r.returncode == 0, r.stderr
    pairs = pl.read_parquet(tmp_path / "p.parquet")
    assert pairs.height == 1 and pairs.row(0, named=True)["chosen"] == "4"  # no cross-prompt pair
    assert "source_prompt_id" in pairs.columns or "chosen_source_prompt_id" in pairs.columns


def test_a_null_prompt_id_is_an_error_not_a_prompt(tmp_path):
    # rows 0 and 1 have no id: before, they were grouped as one prompt of null id and then lost in a join, counted as a
    # prompt "with fewer than two distinct graded rewards" (they have two); prompt "r" (id a) makes the one pair
    df = pl.DataFrame({"prompt_id": [None, None, "a", "a"], "prompt": ["p", "q", "r", "r"], "response": ["x", "y", "z", "w"],
                       "reward": [1.0, 2.0, 3.0, 0.5]})  # fmt: skip
    path = tmp_path / "ids.parquet"
    df.write_parquet(path)
    r = curate_cli("pairs", path, "--strategy", "best-vs-worst", "-o", tmp_path / "p.parquet")
    assert r.returncode == 2 and not (tmp_path / "p.parquet").exists()
    assert one_line(r) == (f"error: {path}: null value; column `prompt_id`; 2 row(s); first rows (0-based): 0, 1. Fill in the ids, "
                           "pass --rehash-prompt-ids to derive prompt_id from the prompt text, or pass --drop-invalid to drop these rows.")  # fmt: skip
    r = curate_cli("pairs", path, "--strategy", "best-vs-worst", "--drop-invalid", "-o", tmp_path / "p.parquet")
    assert r.returncode == 0 and "dropped (rows): invalid `prompt_id`: null value" in one_line(r)
    assert pl.read_parquet(tmp_path / "p.parquet").select("chosen", "rejected").rows() == [("z", "w")]
    r = curate_cli("pairs", path, "--strategy", "best-vs-worst", "--rehash-prompt-ids", "-o", tmp_path / "p.parquet")
    assert r.returncode == 0 and pl.read_parquet(tmp_path / "p.parquet").select("chosen", "rejected").rows() == [("z", "w")]  # p, q: one response each


def test_a_null_model_is_an_error_not_a_model(tmp_path):
    # a null model was kept as a model of its own: pairs named it null, and WRPO's triplets counted it as neither a source
    # nor the target model ("no graded source-model response")
    df = pl.DataFrame({"prompt": ["p"] * 4, "response": ["a", "b", "c", "d"], "model": ["S", None, "T", "T"], "reward": [3.0, 2.0, 1.0, 0.0]})
    path = tmp_path / "models.parquet"
    df.write_parquet(path)
    r = curate_cli("triplets", path, "--target-model", "T", "-o", tmp_path / "t.parquet")
    assert r.returncode == 2 and one_line(r) == (f"error: {path}: null value; column `model`; 1 row(s); first rows (0-based): 1. Fill in the models, "
                                                 'remove the model column (every response is then from "policy"), or pass --drop-invalid to drop these rows.')  # fmt: skip
    r = curate_cli("triplets", path, "--target-model", "T", "--drop-invalid", "-o", tmp_path / "t.parquet")
    assert r.returncode == 0 and "dropped (rows): invalid `model`: null value" in one_line(r)
    assert pl.read_parquet(tmp_path / "t.parquet").select("chosen", "chosen_target", "rejected").rows() == [("a", "c", "d")]


def test_an_id_hint_names_only_options_the_command_has(tmp_path):
    # `select` has no --rehash-prompt-ids: its hint says what works there, and following it works
    pairs = pl.DataFrame({"prompt_id": ["a", "a"], "prompt": ["p", "q"], "chosen": ["x", "y"], "rejected": ["z", "w"], "weight": [1.0, 2.0]})
    path = tmp_path / "pairs.parquet"
    pairs.write_parquet(path)
    r = curate_cli("select", path, "--top-k", "1", "--by", "weight", "-o", tmp_path / "s.parquet")
    assert r.returncode == 2 and one_line(r).endswith("Fix the ids, or remove the prompt_id column (curate then derives it from the prompt text).")
    pairs.drop("prompt_id").write_parquet(path)
    r = curate_cli("select", path, "--top-k", "1", "--by", "weight", "-o", tmp_path / "s.parquet")
    assert r.returncode == 0 and pl.read_parquet(tmp_path / "s.parquet")["chosen"].to_list() == ["y"]



def test_a_duplicate_note_names_the_option_where_it_is(tmp_path):
    # `pairs` has --dedup; `score` has not, so its note points at the command that has; following either drops the row
    path = tmp_path / "dup.parquet"
    pl.DataFrame({"prompt": ["p"] * 3, "response": ["x", "x", "y"], "reward": [1.0, 1.0, 0.0], "correct": [True, True, False]}).write_parquet(path)
    r = curate_cli("pairs", path, "--strategy", "best-vs-worst", "-o", tmp_path / "p.parquet")
    assert r.returncode == 0 and f"1 duplicate (prompt_id, response, model) row(s) in {path}; pass --dedup to drop them" in one_line(r)
    r = curate_cli("score", path, "--scorer", "difficulty", "-o", tmp_path / "s.parquet")
    assert r.returncode == 0 and f"1 duplicate (prompt_id, response, model) row(s) in {path}; `curate ingest --dedup` drops them" in one_line(r)
    r = curate_cli("ingest", path, "--dedup", "-o", tmp_path / "i.parquet")
    assert r.returncode == 0 and "dropped (rows): duplicate (prompt_id, response, model)" in one_line(r)
    assert pl.read_parquet(tmp_path / "i.parquet")["response"].to_list() == ["x", "y"]


def test_responses_in_a_list_per_prompt_get_a_command_that_works(tmp_path):
    # the layout many sampling scripts write: one row per prompt, its responses and rewards in lists; the error gives the
    # `curate sql` that makes one row per response, and running it as printed gives samples that pair
    path = tmp_path / "wide.parquet"
    pl.DataFrame({"prompt": ["a", "b"], "responses": [["x", "y", "z"], ["p", "q"]], "rewards": [[1.0, 3.0, 2.0], [0.5, 0.1]],
                  "tags": [["t1"], ["t2", "t3"]]}).write_parquet(path)  # fmt: skip
    r = curate_cli("pairs", path, "--strategy", "best-vs-worst", "-o", tmp_path / "p.parquet")
    assert r.returncode == 2 and "`responses` holds a list of responses per row" in one_line(r), r.stderr
    printed = re.search(r"curate sql (.*) -o samples\.parquet$", one_line(r))
    assert printed is not None and "tags" not in printed.group(1)  # a list that does not run beside the responses stays as it is
    assert run_printed_sql(r, "samples", path, tmp_path).returncode == 0
    samples = pl.read_parquet(tmp_path / "samples.parquet")
    assert samples.select("prompt", "response", "reward").rows() == [("a", "x", 1.0), ("a", "y", 3.0), ("a", "z", 2.0), ("b", "p", 0.5), ("b", "q", 0.1)]
    assert samples["tags"].to_list() == [["t1"]] * 3 + [["t2", "t3"]] * 2
    r = curate_cli("pairs", tmp_path / "samples.parquet", "--strategy", "best-vs-worst", "-o", tmp_path / "p.parquet")
    assert r.returncode == 0, r.stderr
    assert pl.read_parquet(tmp_path / "p.parquet").select("chosen", "rejected").rows() == [("y", "x"), ("p", "q")]
    with pytest.raises(curate.SchemaError) as err:  # in Python, the same as Polars code
        curate.read(path)
    printed = re.search(r"read as a Polars frame: (curate\.validate\(.*\))$", str(err.value))
    assert printed is not None, str(err.value)
    frame = eval(printed.group(1), {"curate": curate, "frame": pl.scan_parquet(path)})
    assert frame.collect().sort("prompt", "reward").select("prompt", "response", "reward").rows() == samples.sort("prompt", "reward").select("prompt", "response", "reward").rows()


def test_rewards_under_another_name_get_the_rename(tmp_path):
    # a reward model's scores saved as `score`: the error says how to name the column `reward`, and that command works
    path = tmp_path / "scored.parquet"
    pl.DataFrame({"prompt": ["a", "a", "b", "b"], "response": ["x", "y", "p", "q"], "score": [1.0, 2.0, 0.5, 0.1]}).write_parquet(path)
    for command in (["pairs", path, "--strategy", "best-vs-worst"], ["rank", path], ["triplets", path, "--target-model", "policy"]):
        r = curate_cli(*command, "-o", tmp_path / "out.parquet")
        assert r.returncode == 2 and "If `score` holds the rewards, rename: curate sql" in one_line(r), r.stderr
    assert run_printed_sql(r, "samples", path, tmp_path).returncode == 0
    r = curate_cli("pairs", tmp_path / "samples.parquet", "--strategy", "best-vs-worst", "-o", tmp_path / "p.parquet")
    assert r.returncode == 0 and pl.read_parquet(tmp_path / "p.parquet").select("chosen", "rejected").rows() == [("y", "x"), ("p", "q")]
    graded = tmp_path / "graded.parquet"  # a verifier's `is_correct`: the same for correct-vs-incorrect
    pl.DataFrame({"prompt": ["a", "a"], "response": ["x", "y"], "is_correct": [True, False]}).write_parquet(graded)
    r = curate_cli("pairs", graded, "--strategy", "correct-vs-incorrect", "-o", tmp_path / "p.parquet")
    assert r.returncode == 2 and one_line(r).endswith("""If `is_correct` holds the correctness labels, rename: curate sql 'select * rename ("is_correct" as correct) """
                                                      """from samples' --samples IN -o samples.parquet (in Python, frame.rename({'is_correct': 'correct'})).""")


def test_prompts_and_responses_under_other_names_get_the_rename(tmp_path):
    # GSM8K-style `question`, a sampling script's `output`: the error's command (as printed, with this file) renames them
    path = tmp_path / "qa.parquet"
    pl.DataFrame({"question": ["a", "a", "b", "b"], "output": ["x", "y", "p", "q"], "reward": [1.0, 2.0, 0.5, 0.1]}).write_parquet(path)
    r = curate_cli("pairs", path, "--strategy", "best-vs-worst", "-o", tmp_path / "p.parquet")
    assert r.returncode == 2 and "If `question` holds the prompts and `output` holds the responses, rename:" in one_line(r), r.stderr
    assert run_printed_sql(r, "samples", path, tmp_path).returncode == 0
    r = curate_cli("pairs", tmp_path / "samples.parquet", "--strategy", "best-vs-worst", "-o", tmp_path / "p.parquet")
    assert r.returncode == 0 and pl.read_parquet(tmp_path / "p.parquet").select("prompt", "chosen", "rejected").rows() == [("a", "y", "x"), ("b", "p", "q")]
    with pytest.raises(curate.SchemaError) as err:  # in Python: the Polars rename, which then reads
        curate.read(path)
    assert str(err.value).endswith("rename: frame.rename({'question': 'prompt', 'output': 'response'}).")
    assert curate.validate(pl.scan_parquet(path).rename({"question": "prompt", "output": "response"})).collect().height == 4


def test_pair_rewards_under_other_names_get_the_rename(tmp_path):
    # HuggingFaceH4/ultrafeedback_binarized's layout: conversations in chosen/rejected, rewards as score_chosen/score_rejected
    user, bot = ({"role": r, "content": c} for r, c in (("user", "Sky?"), ("assistant", "")))
    path = tmp_path / "ufb.parquet"
    pl.DataFrame({"prompt": ["Sky?"], "chosen": [[user, {**bot, "content": "Blue."}]], "rejected": [[user, {**bot, "content": "Red."}]],
                  "score_chosen": [9.0], "score_rejected": [2.5]}).write_parquet(path)  # fmt: skip
    r = curate_cli("score", path, "--scorer", "reward_margin", "-o", tmp_path / "s.parquet")
    assert r.returncode == 2 and "If `score_chosen` holds the chosen rewards and `score_rejected` holds the rejected rewards, rename:" in one_line(r)
    assert run_printed_sql(r, "pairs", path, tmp_path).returncode == 0
    r = curate_cli("score", tmp_path / "pairs.parquet", "--scorer", "reward_margin", "-o", tmp_path / "s.parquet")
    assert r.returncode == 0 and pl.read_parquet(tmp_path / "s.parquet")["reward_margin"].to_list() == [6.5]

# 3. checkpoints are never unpickled ------------------------------------------------------------------------------


def test_crafted_checkpoint_does_not_run_code(tiny_model, tmp_path):
    torch = pytest.importorskip("torch")
    data = tmp_path / "pairs.parquet"
    preference_frames(16)["pairs"].write_parquet(data)
    out = tmp_path / "run"
    common = ["train", data, "--model", tiny_model, "--loss", "dpo", "--batch-size", "4", "--max-steps", "4", "--save-steps", "2", "-o", out]
    r = curate_cli(*common[:-2], "--max-steps", "4", "-o", out)
    assert r.returncode == 0, r.stderr
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ckpt = out / "checkpoint-2"
    torch.save({"scheduler": Evil(), "step": 2}, ckpt / "trainer_state.pt")
    r = curate_cli(*common[:-2], "--max-steps", "6", "--resume-from", str(ckpt), "-o", out)
    assert r.returncode == 2 and not marker.exists()
    assert "refused to load" in one_line(r) or "fingerprint" in one_line(r) or "other data or settings" in one_line(r)


def test_no_pickle_loads_in_the_repository():
    offenders = []
    for path in [*ROOT.joinpath("curate").rglob("*.py"), *ROOT.joinpath("scorers").rglob("*.py"), *ROOT.joinpath("benchmarks").rglob("*.py")]:
        text = path.read_text()
        if re.search(r"weights_only\s*=\s*False|pickle\.loads?\(|cloudpickle\.load", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# 4. lossless casts --------------------------------------------------------------------------------------------------


def test_numeric_ids_answers_and_gold_are_read_as_text(tmp_path):
    path = tmp_path / "n.jsonl"
    rows = [{"prompt_id": 7, "prompt": "p", "response": f"r{i}", "correct": i % 2, "answer": 42 + i, "gold": 42} for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "s.parquet"
    r = curate_cli("ingest", path, "-o", out)
    assert r.returncode == 0, r.stderr
    df = pl.read_parquet(out)
    assert df.schema["prompt_id"] == pl.String and df["answer"].to_list() == ["42", "43", "44", "45"] and df.schema["correct"] == pl.Boolean
    assert "read as text" in one_line(r)


def test_float_answers_are_read_as_text_and_csv_text_columns_as_written(tmp_path):
    # a JSON number answer (0.5) was a type error before; in a CSV, ids "007" and "7" were both read as the integer 7
    # (then a "collision" of two prompts under one id) and the answer "0.50" as the float 0.5, also a type error
    path = tmp_path / "f.jsonl"
    path.write_text('{"prompt": "p", "response": "r", "answer": 0.5, "gold": 3.0}\n')
    r = curate_cli("ingest", path, "-o", tmp_path / "f.parquet")
    assert r.returncode == 0 and "`answer` holds Float64 values in" in one_line(r)
    assert pl.read_parquet(tmp_path / "f.parquet").select("answer", "gold").row(0) == ("0.5", "3.0")
    path = tmp_path / "s.csv"
    path.write_text("prompt_id,prompt,response,answer,gold,correct,reward\n007,q1,r1,0.50,0.5,1,1.5\n7,q2,r2,3.0,3,0,2\n")
    df = curate.read(path).collect()
    assert df.select("prompt_id", "answer", "gold").rows() == [("007", "0.50", "0.5"), ("7", "3.0", "3")]
    assert df["correct"].to_list() == [True, False] and df["reward"].to_list() == [1.5, 2.0]


def test_csv_column_changing_type_late_is_read(tmp_path):
    path = tmp_path / "late.csv"
    lines = ["prompt,response,reward"] + [f"p{i % 50},r{i},{i % 7}" for i in range(12_000)] + ["p1,odd,2.5"]
    path.write_text("\n".join(lines) + "\n")
    df = curate.read(path).collect()
    assert df.height == 12_001 and df.schema["reward"] == pl.Float64 and df["reward"][-1] == 2.5


# 5. training data and configs are checked before training --------------------------------------------------------

TRAIN_BAD = {
    "null_weight": ("pairs", {"weight": [1.0, None, 1.0, 1.0]}, "null weight", "`weight`"),
    "negative_weight": ("pairs", {"weight": [1.0, -2.0, 1.0, 1.0]}, "negative weight", "--allow-negative-weights"),
    "ranked_null": ("ranked", {"responses": [["a", None], ["b", "c"], ["d", "e"], ["f", "g"]]}, "null response", "`responses`"),
    "ranked_short_rewards": ("ranked", {"rewards": [[1.0], [2.0, 1.0], [2.0, 1.0], [2.0, 1.0]]}, "differ in length", "`rewards`"),
    "ranked_nan_reward": ("ranked", {"rewards": [[3.0, 2.0, float("nan")], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]}, "NaN", "`rewards`"),
}


@pytest.mark.parametrize("case", TRAIN_BAD)
def test_bad_training_data_exit_2(tiny_model, tmp_path, case):
    kind, change, problem, named = TRAIN_BAD[case]
    df = preference_frames(4)[kind].with_columns(**{k: pl.Series(v) for k, v in change.items()})
    path = tmp_path / "d.parquet"
    df.write_parquet(path)
    loss = "multi_dpo" if kind == "ranked" else "dpo"
    r = curate_cli("train", path, "--model", tiny_model, "--loss", loss, "--batch-size", "2", "--max-steps", "1", "-o", tmp_path / "o")
    msg = one_line(r)
    assert r.returncode == 2 and problem in msg and named in msg and str(path) in msg and "Traceback" not in r.stderr


def test_unsorted_ranked_lists_are_sorted_with_a_note(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from curate.train.data import load_preference_data

    df = preference_frames(4)["ranked"].with_columns(rewards=pl.Series([[1.0, 3.0, 2.0]] * 4))
    df.write_parquet(tmp_path / "r.parquet")
    data = load_preference_data(tmp_path / "r.parquet", AutoTokenizer.from_pretrained(tiny_model))
    assert data.examples[0].rewards == [3.0, 2.0, 1.0] and any("sorted on read" in w for w in data.step.warnings)


@pytest.mark.parametrize("args,needle", [
    (["--loss-arg", "bogus=1"], "no hyper-parameter `bogus`"),
    (["--lr", "nan"], "learning_rate must be a finite number"),
    (["--config", "BAD_YAML"], "not valid YAML"),
    (["--config", "WRONG_TYPE"], "config `batch_size` must be int"),
])  # fmt: skip
def test_bad_config_exit_2_with_the_key(tiny_model, tmp_path, args, needle):
    data = tmp_path / "p.parquet"
    preference_frames(8)["pairs"].write_parquet(data)
    (tmp_path / "bad.yaml").write_text(f"model: {tiny_model}\nloss: [dpo\n")
    (tmp_path / "wrong.yaml").write_text(f"model: {tiny_model}\nbatch_size: eight\n")
    args = [str(tmp_path / "bad.yaml") if a == "BAD_YAML" else str(tmp_path / "wrong.yaml") if a == "WRONG_TYPE" else a for a in args]
    r = curate_cli("train", data, "--model", tiny_model, "--max-steps", "1", *args, "-o", tmp_path / "o")
    assert r.returncode == 2 and needle in one_line(r) and "Traceback" not in r.stderr


def test_resume_refuses_other_data_and_drops_a_torn_metrics_line(tiny_model, tmp_path):
    data = tmp_path / "p.parquet"
    preference_frames(16)["pairs"].write_parquet(data)
    out = tmp_path / "run"
    base = ["train", data, "--model", tiny_model, "--loss", "dpo", "--batch-size", "4", "--max-steps", "4", "--save-steps", "2", "-o", out]
    from curate.train import TrainConfig, Trainer

    cfg = dict(data=str(data), model=str(tiny_model), output_dir=str(out), loss="dpo", batch_size=4, max_steps=4, save_steps=2, progress=False,
               learning_rate=1e-3, warmup_ratio=0.0)  # fmt: skip
    Trainer(TrainConfig(**cfg, stop_after_steps=2)).train()
    with (out / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 3, "loss": 0.6')  # killed while writing line 3
    done = Trainer(TrainConfig(**cfg, resume_from="auto")).train()
    assert done.steps == 4 and [r["step"] for r in done.metrics] == [1, 2, 3, 4]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    other = tmp_path / "other.parquet"
    preference_frames(16)["pairs"].with_columns(pl.col("chosen") + " !").write_parquet(other)
    r = curate_cli(*[other if a == data else a for a in base], "--resume-from", str(out / "checkpoint-2"))
    assert r.returncode == 2 and "the data file's content changed" in one_line(r)
    r = curate_cli(*base[:5], "simpo", *base[6:], "--resume-from", str(out / "checkpoint-2"))
    assert r.returncode == 2 and "loss: 'dpo' then, 'simpo' now" in one_line(r)


# 6. no silent loss of pairs ------------------------------------------------------------------------------------


def test_partial_reference_logps_are_announced(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from curate.train.data import load_preference_data

    df = preference_frames(4)["pairs"].with_columns(ref_chosen_logps=pl.Series([-1.0, None, -1.0, -1.0]), ref_rejected_logps=pl.Series([-2.0] * 4))
    df.write_parquet(tmp_path / "p.parquet")
    data = load_preference_data(tmp_path / "p.parquet", AutoTokenizer.from_pretrained(tiny_model))
    assert not data.has_reference and any("1 null value(s) in ref_chosen_logps" in w for w in data.step.warnings)


def test_a_row_failing_two_checks_is_counted_once(tmp_path):
    df = pl.DataFrame({"prompt": ["p"] * 6, "response": ["a", "", "c", "d", "e", "f"], "reward": [1.0, float("nan"), float("nan"), 2.0, 3.0, 0.0]})
    step = Step("ingest")
    out = curate.validate(df.lazy(), drop_invalid=True, step=step).collect()
    # row 1 is blank AND has a NaN reward: one drop, under the first check (the blank response)
    assert step.dropped == {"invalid `response`: null or empty (blank) string": 1, "invalid `reward`: NaN or infinite value": 1}
    assert step.rows_in == out.height + sum(step.dropped.values()) == 6


def test_rank_drops_all_tied_lists_with_a_reason():
    df = pl.DataFrame({"prompt_id": ["A", "A", "B", "B"], "prompt": ["a", "a", "b", "b"], "response": list("wxyz"), "reward": [1.0, 1.0, 2.0, 1.0]})
    step = Step("rank")
    out = curate.rank(curate.validate(df.lazy()), step=step).collect()
    assert out["prompt_id"].to_list() == ["B"]
    assert step.dropped == {"prompts whose graded responses all have the same reward (no ranking to learn)": 1}


# 7. kills between renames, and temporaries ---------------------------------------------------------------------


def test_a_folder_left_aside_by_a_kill_comes_back(tmp_path):
    from curate.sinks import atomic_path, clean_stale

    out = tmp_path / "hub"
    assert curate_cli("ingest", GSM8K, "-o", out).returncode == 0
    aside = tmp_path / ".hub.999999.old"
    os.replace(out, aside)  # as if killed right after the first rename of a swap
    (tmp_path / ".hub.999998.tmp").mkdir()  # and a temporary of a dead process
    clean_stale(out)
    assert (out / "README.md").exists() and not aside.exists() and not (tmp_path / ".hub.999998.tmp").exists()
    with atomic_path(out, folder=True) as tmp:
        (tmp / "x").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]


# 8. messages with places -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content,needle", [
    (b'{"prompt": "p", "response": "r"}\n{"prompt": "p", "response": "r2"\n{"prompt": "q", "response": "s"}\n', "line 2, column 33: not valid JSON"),
    (b'{"prompt": "p", "response": "r"}\n{"prompt": "p", "response": "caf\xe9"}\n', "line 2, byte 33: not UTF-8 text"),
])  # fmt: skip
def test_jsonl_errors_name_the_line(tmp_path, content, needle):
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    r = curate_cli("ingest", path, "-o", tmp_path / "o.parquet")
    assert r.returncode == 2 and needle in one_line(r) and str(path) in one_line(r)


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "p", "response": "r"}\n{"prompt": "p", "response": "s"}\n')
    assert curate.read(path).collect()["response"].to_list() == ["r", "s"]


def test_drop_invalid_hint_only_where_the_option_exists(tiny_model, tmp_path):
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"prompt": ["p", "q"], "response": ["ok", "  "]}).write_parquet(bad)
    assert "--drop-invalid" in one_line(curate_cli("ingest", bad, "-o", tmp_path / "a.parquet"))
    r = curate_cli("logps", bad, "--model", tiny_model, "-o", tmp_path / "b.parquet")
    assert r.returncode == 2 and "blank" in one_line(r) and "--drop-invalid" not in one_line(r)


def test_sample_resume_notices_a_changed_input(tiny_model, tmp_path):
    prompts = tmp_path / "prompts.parquet"
    pl.DataFrame({"prompt": [f"{i} plus 1 is" for i in range(4)]}).write_parquet(prompts)
    out = tmp_path / "s.parquet"
    args = ["sample", prompts, "--model", tiny_model, "--engine", "hf", "--n", "2", "--max-tokens", "4", "--shard-size", "2", "-o", out]
    assert curate_cli(*args, "--max-shards", "1").returncode == 0
    pl.DataFrame({"prompt": [f"{i} minus 1 is" for i in range(4)]}).write_parquet(prompts)  # same row count, other prompts
    r = curate_cli(*args, "--resume")
    assert r.returncode == 2 and "the input's content changed" in one_line(r)


# 9. Unicode blanks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["\u00a0", "\u200b", " \u2009\u200b ", "\ufeff", "\u3000"])
def test_unicode_blank_responses_are_blank(tmp_path, blank):
    df = pl.DataFrame({"prompt": ["p", "p"], "response": ["fine", blank]})
    with pytest.raises(curate.SchemaError) as err:
        curate.validate(df.lazy())
    assert (err.value.column, err.value.rows) == ("response", [1])
    assert curate.validate(pl.DataFrame({"prompt": ["p"], "response": ["a\u00a0b"]}).lazy()).collect().height == 1
