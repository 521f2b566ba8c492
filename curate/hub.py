"""Hugging Face Hub dataset layouts: finding a split's files in a folder, and writing a Hub-shaped folder.

Read: a Hub dataset repo (`data/<split>-*.parquet`, an optional README.md whose YAML lists `configs`),
a `DatasetDict.save_to_disk` folder (`dataset_dict.json` + one folder per split), a
`Dataset.save_to_disk` folder (`state.json`), or a plain folder of parquet/jsonl files.
Write: parquet shards under `data/` and a README.md dataset card whose YAML front matter has
`configs`, `dataset_info` (features, splits with `num_examples` and `num_bytes`), `license`, `tags` and
`task_categories`, so `datasets.load_dataset(folder)` and `trl dpo --dataset_name folder` load it as is.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.errors import CurateError

if TYPE_CHECKING:
    import pyarrow as pa

DATA_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".json", ".csv", ".arrow")
DEFAULT_SPLIT = "train"
SHARD_BYTES = 500 * 1024 * 1024  # the Hub's usual shard size
# how `datasets.load_dataset(folder)` finds splits without a card (datasets.data_files): shards `data/<split>-NNNNN-of-NNNNN*`,
# else a split's keyword in a folder's name, else in a file's name (set off by one of "-._ " or a digit), else all is train
_SHARD = re.compile(r"^(?P<split>\w+(?:\.\w+)*)-\d{5}-of-\d{5}.*\..*$")
_SPLIT_KEYWORDS = {"train": ("train", "training"), "validation": ("validation", "valid", "dev", "val"),
                   "test": ("test", "testing", "eval", "evaluation")}  # fmt: skip
_SEP = r"[-._ 0-9]"
_IN_DIR = {s: re.compile(rf"^(?:.*{_SEP})?(?:{'|'.join(k)})(?:{_SEP}.*)?$") for s, k in _SPLIT_KEYWORDS.items()}
_IN_NAME = {s: re.compile(rf"^(?:.*{_SEP})?(?:{'|'.join(k)}){_SEP}.*$") for s, k in _SPLIT_KEYWORDS.items()}
_NOT_DATA = {"README.md", "config.json", "dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json",
             "curate_lineage.json", "curate_manifest.json"}  # metadata beside the data files (datasets', curate's)


@dataclass
class Located:
    """What a folder holds for one split: data files, or one `save_to_disk` folder (`arrow_dir`)."""

    files: list[Path]
    arrow_dir: Path | None = None
    split: str | None = None
    card: dict[str, Any] | None = None


def card_metadata(folder: Path) -> dict[str, Any]:
    """The YAML front matter of `folder/README.md` (an empty dict without one)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8")
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not m:
        return {}
    import yaml

    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise CurateError(f"{readme}: the YAML front matter does not parse ({exc}).") from exc
    return data if isinstance(data, dict) else {}


def locate(folder: Path, split: str | None) -> Located:
    """The files that make up `split` (default: train, or the only split there is) of a dataset folder."""
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
        name = _pick(split, splits, folder)
        return Located(files=[], arrow_dir=folder / name, split=name)
    if (folder / "state.json").is_file():
        return Located(files=[], arrow_dir=folder, split=split)
    card = card_metadata(folder)
    configs = card.get("configs")
    if configs:
        by_split = _config_files(folder, configs)
        name = _pick(split, list(by_split), folder)
        files = by_split[name]
        if not files:
            raise CurateError(f"{folder}: the card's `configs` name split {name!r}, but no file matches its data_files.")
        return Located(files=files, split=name, card=card)
    by_split = default_splits(folder)
    if by_split:
        name = _pick(split, list(by_split), folder)
        return Located(files=by_split[name], split=name, card=card or None)
    raise CurateError(
        f"{folder}: not a dataset folder curate can read: expected a Hub layout (data/<split>-*.parquet, README.md "
        "`configs`), a `save_to_disk` folder (state.json or dataset_dict.json), or parquet/jsonl/csv files."
    )


def default_splits(folder: Path) -> dict[str, list[Path]]:
    """Split name -> data files of a folder without `configs`, found as `datasets.load_dataset(folder)` finds them.

    Shards `data/<split>-00000-of-00001.parquet` name any split; otherwise a folder named for a split
    (`train/`, `default/test/`, `dev-set/`), then a file named for one (`train.jsonl`, `my_test_1.csv`),
    decides, with the keywords train/training, validation/valid/dev/val and test/testing/eval/evaluation;
    with none of them, every file is `train`. Hidden files and folders (`.x`, `__x`) are skipped.
    """
    files = sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in DATA_SUFFIXES and p.name not in _NOT_DATA and p.is_file()
        and not any(part.startswith((".", "__")) for part in p.relative_to(folder).parts)
    )  # fmt: skip
    shards: dict[str, list[Path]] = {}
    for p in files:
        m = _SHARD.match(p.name)
        if m and p.parent == folder / "data":
            shards.setdefault(m.group("split"), []).append(p)
    if shards:
        return _ordered(shards)
    for patterns, part in ((_IN_DIR, lambda p: p.relative_to(folder).parts[:-1]), (_IN_NAME, lambda p: (p.name,))):
        found = {s: [p for p in files if any(pattern.match(x) for x in part(p))] for s, pattern in patterns.items()}
        found = {s: fs for s, fs in found.items() if fs}
        if found:
            return found
    return {DEFAULT_SPLIT: files} if files else {}


def _ordered(splits: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """train, validation, test first, then the other splits by name (as `datasets` lists them)."""
    known = [s for s in _SPLIT_KEYWORDS if s in splits]
    return {s: splits[s] for s in [*known, *sorted(set(splits) - set(known))]}


def _pick(split: str | None, available: list[str], folder: Path) -> str:
    if split is not None:
        if split not in available:
            raise CurateError(f"{folder}: no split {split!r}; it has {', '.join(available) or '(none)'}.")
        return split
    if DEFAULT_SPLIT in available:
        return DEFAULT_SPLIT
    if len(available) == 1:
        return available[0]
    raise CurateError(f"{folder}: several splits ({', '.join(available)}) and none is `train`; pass --split NAME.")


def _config_files(folder: Path, configs: list[dict[str, Any]]) -> dict[str, list[Path]]:
    """Split name -> files of the default config of a card's `configs`, chosen as `datasets` chooses it.

    The default is the config marked `default: true`, else the one named `default`, else the only one;
    with several and none of these, `load_dataset(folder)` asks for a name, and this asks for the files.
    """
    config = next((c for c in configs if c.get("default") is True), None) or next((c for c in configs if c.get("config_name") == "default"), None)
    if config is None and len(configs) == 1:
        config = configs[0]
    if config is None:
        names = ", ".join(str(c.get("config_name")) for c in configs)
        example = next(iter(_config_patterns(configs[0]).values()), ["data/*"])[0]
        raise CurateError(f"{folder}: the card lists several configs ({names}) and none is the default; read one config's files by their "
                          f"path or a quoted glob, e.g. '{folder / example}' for {configs[0].get('config_name')}.")  # fmt: skip
    return {split: [p for pat in patterns for p in expand(str(folder / pat))] for split, patterns in _config_patterns(config).items()}


def _config_patterns(config: dict[str, Any]) -> dict[str, list[str]]:
    """Split name -> the `data_files` patterns of one config of a card."""
    data_files = config.get("data_files", [])
    if isinstance(data_files, (str, dict)):
        data_files = [data_files]
    out: dict[str, list[str]] = {}
    for entry in data_files:
        split, patterns = (entry.get("split", DEFAULT_SPLIT), entry.get("path", [])) if isinstance(entry, dict) else (DEFAULT_SPLIT, entry)
        out.setdefault(split, []).extend([patterns] if isinstance(patterns, str) else list(patterns))
    return out


def is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def expand(pattern: str) -> list[Path]:
    """Files matching a glob pattern (`**` crosses folders), sorted by path."""
    import glob

    return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())


# --- writing ---------------------------------------------------------------------------------------------------


def plain_type(t: pa.DataType) -> pa.DataType:
    """Large/view strings and lists as the plain types `datasets` maps to Value('string') and List."""
    import pyarrow as pa

    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t) or pa.types.is_list(t):
        return pa.list_(plain_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(plain_type(f.type)) for f in t])
    return t


def plain_schema(schema: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([f.with_type(plain_type(f.type)) for f in schema])


_DTYPES = {"bool": "bool", "double": "float64", "float": "float32", "halffloat": "float16", "string": "string", "null": "null"}


def feature_yaml(t: pa.DataType) -> dict[str, Any]:
    """One column's type as the `dataset_info.features` YAML of a Hub card (`datasets.Features._to_yaml_list`)."""
    import pyarrow as pa

    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = feature_yaml(t.value_type)
        key = "list" if pa.types.is_list(t) else "large_list"
        if list(inner) == ["dtype"]:
            return {key: inner["dtype"]}
        if list(inner) == ["struct"]:
            return {key: inner["struct"]}
        return {key: inner}
    if pa.types.is_struct(t):
        return {"struct": [{"name": f.name, **feature_yaml(f.type)} for f in t]}
    name = _DTYPES.get(str(t), str(t))
    return {"dtype": name}


def features_yaml(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, **feature_yaml(f.type)} for f in schema]


def front_matter(
    schema: pa.Schema,
    *,
    split: str,
    num_examples: int,
    num_bytes: int,
    download_size: int,
    license: str | None,
    tags: Iterable[str],
    task_categories: Iterable[str],
    pretty_name: str | None = None,
) -> str:
    """The YAML header of a Hub dataset card for one `default` config with one split under `data/`."""
    import yaml

    meta: dict[str, Any] = {}
    if license:
        meta["license"] = license
    if pretty_name:
        meta["pretty_name"] = pretty_name
    meta["tags"] = list(tags)
    meta["task_categories"] = list(task_categories)
    meta["configs"] = [{"config_name": "default", "data_files": [{"split": split, "path": f"data/{split}-*"}]}]
    meta["dataset_info"] = {
        "features": features_yaml(schema),
        "splits": [{"name": split, "num_bytes": num_bytes, "num_examples": num_examples}],
        "download_size": download_size,
        "dataset_size": num_bytes,
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000) + "---\n"


def shard_names(split: str, n: int) -> list[str]:
    return [f"{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]


def relative_source(path: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """A path as recorded in lineage and cards: relative to `base` (default: the working folder) when inside it, else the file name.

    Outputs never hold the absolute paths of the machine that wrote them.
    """
    text = str(path)
    if "://" in text:
        return text
    p = Path(text)
    if not p.is_absolute():
        return text
    base_path = Path(base or os.getcwd()).resolve()
    try:
        return str(p.resolve().relative_to(base_path))
    except ValueError:
        return p.name
