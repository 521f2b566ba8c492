"""Hub-shaped datasets in and out: Hub layouts, DatasetDict folders, globs, lists; the card; `curate push`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
import yaml

import curate
from conftest import ARENA, DATA, GSM8K
from test_cli import curate_cli

datasets = pytest.importorskip("datasets")


def _front_matter(folder: Path) -> dict:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_export_hub_folder_card_and_no_machine_paths(tmp_path):
    pairs = tmp_path / "pairs.parquet"
    assert curate_cli("pairs", GSM8K, "--strategy", "correct-vs-incorrect", "-o", pairs).returncode == 0
    out = tmp_path / "hub"
    r = curate_cli("export", str(pairs), "-o", out, "--format", "hf", "--license", "mit")
    assert r.returncode == 0, r.stderr
    ds = datasets.load_dataset(str(out), split="train")
    n = pl.read_parquet(pairs).height
    assert ds.num_rows == n and ds.column_names[:4] == ["prompt_id", "prompt", "chosen", "rejected"]
    meta = _front_matter(out)
    assert meta["license"] == "mit" and "curate" in meta["tags"] and meta["task_categories"] == ["text-generation"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    info = meta["dataset_info"]
    assert info["splits"][0]["name"] == "train" and info["splits"][0]["num_examples"] == n and info["splits"][0]["num_bytes"] > 0
    # the features are exactly what `datasets` derives from the shards' Arrow schema
    import pyarrow.parquet as pq

    shard = sorted((out / "data").iterdir())[0]
    assert shard.name == "train-00000-of-00001.parquet"
    assert info["features"] == datasets.Features.from_arrow_schema(pq.read_schema(shard))._to_yaml_list()
    assert ds.features["prompt"] == datasets.Value("string") and ds.features["weight"] == datasets.Value("float64")
    # no absolute path of this machine in anything written (card, lineage, parquet metadata)
    for p in [*out.rglob("*"), pairs]:
        if p.is_file():
            assert str(tmp_path).encode() not in p.read_bytes(), p
            assert str(DATA.parent.parent).encode() not in p.read_bytes(), p


def test_license_is_taken_from_the_input_card(tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    assert curate_cli("export", DATA / "hh_harmless_test_pairs.parquet", "--drop-invalid", "-o", first, "--license", "mit").returncode == 0
    assert curate_cli("export", first, "-o", again).returncode == 0
    assert _front_matter(again)["license"] == "mit"
    card = (again / "README.md").read_text()
    assert "| 1 | export |" in card and "| 2 | export |" in card  # lineage went through the Hub folder


def test_shards_split_by_size(tmp_path):
    from curate.sinks import execute

    frame = pl.LazyFrame({"prompt": [f"p{i}" * 50 for i in range(3000)], "response": ["r" * 200] * 3000})
    n = execute(frame, tmp_path / "h", "hf", shard_bytes=200_000, chunk_size=500).rows
    files = sorted(p.name for p in (tmp_path / "h" / "data").iterdir())
    assert n == 3000 and len(files) > 1 and files[0] == f"train-00000-of-{len(files):05d}.parquet"
    back = datasets.load_dataset(str(tmp_path / "h"), split="train")
    assert back["prompt"] == frame.collect()["prompt"].to_list()  # order kept across shards
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = sorted((tmp_path / "h" / "data").iterdir())
    assert {str(pq.read_schema(f).remove_metadata()) for f in shards} == {str(pa.schema({"prompt": pa.string(), "response": pa.string()}))}
    lineages = [json.loads(pq.read_metadata(f).metadata[b"curate"]) for f in shards]
    assert lineages[:-1] == [{"sources": [], "steps": []}] * (len(shards) - 1)  # the lineage is in the last shard's footer only
    assert lineages[-1] == json.loads((tmp_path / "h" / "curate_lineage.json").read_text())


def _hub_repo(folder: Path, with_card: bool) -> Path:
    """A folder laid out like a Hub dataset repo: data/train-*.parquet (two shards) and data/test-*.parquet."""
    df = pl.read_parquet(GSM8K)
    (folder / "data").mkdir(parents=True)
    df.slice(0, 100).write_parquet(folder / "data" / "train-00000-of-00002.parquet")
    df.slice(100, 100).write_parquet(folder / "data" / "train-00001-of-00002.parquet")
    df.slice(200, 30).write_parquet(folder / "data" / "test-00000-of-00001.parquet")
    if with_card:
        meta = {"license": "mit", "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"},
                                                                                         {"split": "test", "path": "data/test-*"}]}]}  # fmt: skip
        (folder / "README.md").write_text("---\n" + yaml.safe_dump(meta) + "---\n# GSM8K sample\n")
    return folder


@pytest.mark.parametrize("with_card", [True, False])
def test_read_hub_layout_folder_by_split(tmp_path, with_card):
    repo = _hub_repo(tmp_path / "repo", with_card)
    assert curate.read(repo).collect().height == 200
    assert curate.read(repo, split="test").collect().height == 30
    with pytest.raises(curate.CurateError, match="no split .validation.; it has (train, test|test, train)"):
        curate.read(repo, split="validation")
    out = tmp_path / "s.parquet"
    r = curate_cli("ingest", repo, "--split", "test", "-o", out)
    assert r.returncode == 0, r.stderr
    assert pl.read_parquet(out)["response"].to_list() == pl.read_parquet(GSM8K).slice(200, 30)["response"].to_list()


LAYOUTS = {
    "split files at the top (train.jsonl + test.jsonl, once read as one table)": ["train.jsonl", "test.jsonl"],
    "split folders (the Hub's parquet conversion)": ["default/train/0000.parquet", "default/test/0000.parquet", "default/validation/0000.parquet"],
    "custom sharded splits": ["data/train_prefs-00000-of-00001.parquet", "data/test_prefs-00000-of-00001.parquet", "notes/test.jsonl"],
    "keywords set off in names": ["my_train_1.jsonl", "dev-set.jsonl", "trainer.jsonl", "eval.csv"],
    "split files under data/": ["data/train.jsonl", "data/validation.jsonl"],
    "no split keyword anywhere": ["a.jsonl", "sub/b.parquet"],
    "hidden files and folders": ["train.jsonl", ".cache/test.jsonl", "__tmp/test.jsonl"],
    "a folder name wins over file names": ["train/x.jsonl", "test_set.jsonl"],
}  # fmt: skip


@pytest.mark.parametrize("files", LAYOUTS.values(), ids=list(LAYOUTS))
def test_folder_splits_are_the_splits_load_dataset_finds(tmp_path, files):
    from datasets.data_files import DataFilesDict, get_data_patterns

    from curate.hub import default_splits

    row = pl.DataFrame({"prompt": ["p"], "response": ["r"]})
    for name in files:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        {".parquet": row.write_parquet, ".jsonl": row.write_ndjson, ".csv": row.write_csv}[path.suffix](path)
    found = DataFilesDict.from_patterns(get_data_patterns(str(tmp_path)), base_path=str(tmp_path))
    want = {str(split): sorted(str(Path(f).relative_to(tmp_path)) for f in fs) for split, fs in found.items()}
    got = {split: sorted(str(f.relative_to(tmp_path)) for f in fs) for split, fs in default_splits(tmp_path).items()}
    assert got == want and list(got) == list(want)


@pytest.mark.parametrize("marked", [None, "socratic"])
def test_a_card_with_several_configs_reads_its_default_or_asks(tmp_path, marked):
    # openai/gsm8k's layout: configs `main` and `socratic`, none named default; `load_dataset(folder)` asks for a name
    # there, and reads the config marked `default: true` when there is one
    df = pl.read_parquet(GSM8K)
    configs = []
    for name, rows in (("main", df.slice(0, 20)), ("socratic", df.slice(20, 7))):
        (tmp_path / name).mkdir()
        rows.write_parquet(tmp_path / name / "train-00000-of-00001.parquet")
        configs.append({"config_name": name, "data_files": [{"split": "train", "path": f"{name}/train-*"}], **({"default": True} if name == marked else {})})
    (tmp_path / "README.md").write_text("---\n" + yaml.safe_dump({"configs": configs}) + "---\n")
    if marked is None:
        with pytest.raises(ValueError, match="Config name is missing"):
            datasets.load_dataset(str(tmp_path))
        with pytest.raises(curate.CurateError, match=r"several configs \(main, socratic\) and none is the default; .* e\.g\. '(.*)' for main"):
            curate.read(tmp_path)
        assert curate.read(str(tmp_path / "main" / "train-*")).collect().height == 20  # the files the message names
    else:
        assert datasets.load_dataset(str(tmp_path), split="train").num_rows == 7
        assert curate.read(tmp_path).collect()["response"].to_list() == df.slice(20, 7)["response"].to_list()


def test_read_datasetdict_folder(tmp_path):
    df = pl.read_parquet(ARENA).filter(pl.col("response").str.strip_chars() != "")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_polars(df.slice(0, 60)), "test": datasets.Dataset.from_polars(df.slice(60, 17))})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert curate.read(tmp_path / "dd").collect().height == 60
    test = curate.read(tmp_path / "dd", split="test").collect()
    assert test["response"].to_list() == df.slice(60, 17)["response"].to_list()
    r = curate_cli("pairs", tmp_path / "dd", "--split", "test", "--strategy", "best-vs-worst", "-o", tmp_path / "p.parquet")
    assert r.returncode == 0, r.stderr


def test_read_glob_and_list_of_files(tmp_path):
    df = pl.read_parquet(GSM8K)
    for i in range(3):
        df.slice(i * 10, 10).write_parquet(tmp_path / f"part-{i}.parquet")
    df.slice(30, 5).with_columns(pl.col("correct").cast(pl.Int64)).write_ndjson(tmp_path / "extra.jsonl")
    got = curate.read(str(tmp_path / "part-*.parquet")).collect()
    assert got["response"].to_list() == df.head(30)["response"].to_list()
    mixed = curate.read([tmp_path / "part-0.parquet", tmp_path / "extra.jsonl"]).collect()
    assert mixed.height == 15 and mixed["response"].to_list()[-5:] == df.slice(30, 5)["response"].to_list()
    r = curate_cli("ingest", str(tmp_path / "part-*.parquet"), "-o", tmp_path / "out.parquet")
    assert r.returncode == 0 and "30" in r.stderr
    r = curate_cli("ingest", str(tmp_path / "nothing-*.parquet"), "-o", tmp_path / "o2.parquet")
    assert r.returncode == 2 and "no file matches" in r.stderr


def test_arrow_format_is_save_to_disk(tmp_path):
    out = tmp_path / "arrow"
    assert curate_cli("ingest", GSM8K, "-o", out, "--format", "arrow").returncode == 0
    ds = datasets.load_from_disk(str(out))
    assert ds.num_rows == 7914
    assert curate.read(out).collect().height == 7914


class FakeHub:
    """Stands in for huggingface_hub.HfApi (no hub is reachable here); records what would be sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))
        files = sorted(str(p.relative_to(kw["folder_path"])) for p in Path(kw["folder_path"]).rglob("*") if p.is_file())
        self.uploaded = [f for f in files if not any(Path(f).match(pat) for pat in kw["ignore_patterns"])]


def test_push_uploads_the_hub_folder(tmp_path):
    from curate.push import push

    out = tmp_path / "hub"
    assert curate_cli("export", DATA / "hh_harmless_test_pairs.parquet", "--drop-invalid", "-o", out).returncode == 0
    api = FakeHub()
    url = push(out, "me/hh-pairs", private=True, api=api)
    assert url == "https://huggingface.co/datasets/me/hh-pairs"
    (_, create), (_, upload) = api.calls
    assert create == {"repo_id": "me/hh-pairs", "repo_type": "dataset", "private": True, "exist_ok": True}
    assert upload["repo_type"] == "dataset" and upload["folder_path"] == str(out)
    assert api.uploaded == ["README.md", "data/train-00000-of-00001.parquet"]


def test_push_refuses_what_is_not_a_hub_folder(tmp_path):
    from curate.push import push

    (tmp_path / "x").mkdir()
    with pytest.raises(curate.CurateError, match="not a Hub dataset folder"):
        push(tmp_path / "x", "me/x", api=FakeHub())
    r = curate_cli("push", tmp_path / "x", "me/x")
    assert r.returncode == 2 and "not a Hub dataset folder" in r.stderr
    out = tmp_path / "hub"
    assert curate_cli("export", DATA / "hh_harmless_test_pairs.parquet", "--drop-invalid", "-o", out).returncode == 0
    env_offline = os.environ.get("HF_HUB_OFFLINE")
    assert env_offline == "1"
    r = curate_cli("push", out, "me/x")  # offline: refused before any network call
    assert r.returncode == 2 and "HF_HUB_OFFLINE" in r.stderr
    assert json.loads((out / "curate_lineage.json").read_text())["steps"][-1]["name"] == "export"
