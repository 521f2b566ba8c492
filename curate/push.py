"""`curate push`: upload a Hub dataset folder written by curate to the Hugging Face Hub with `huggingface_hub`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from curate.errors import CurateError
from curate.hub import card_metadata
from curate.io import LINEAGE_FILE


def push(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    message: str = "Upload dataset written by curate",
    api: Any = None,
) -> str:
    """Create the dataset repo `repo_id` if needed and upload `folder` (data/ shards + README.md) in one commit.

    `api` is a `huggingface_hub.HfApi` (the default); the upload skips curate's own lineage file,
    whose content the card already shows.
    """
    folder = Path(folder)
    if not (folder / "README.md").is_file() or not (folder / "data").is_dir():
        raise CurateError(f"{folder}: not a Hub dataset folder (README.md + data/); write one with `curate export IN -o {folder} --format hf`.")
    if not card_metadata(folder).get("configs"):
        raise CurateError(f"{folder}/README.md has no `configs` in its YAML header; re-export the folder with `curate export --format hf`.")
    if "/" not in repo_id:
        raise CurateError(f"repository id {repo_id!r} should be NAMESPACE/NAME, e.g. my-org/my-pairs.")
    if api is None:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise CurateError("HF_HUB_OFFLINE is set: `curate push` needs the network; unset it to upload.")
        try:
            from huggingface_hub import HfApi
        except ImportError as exc:
            raise CurateError("`curate push` needs huggingface_hub (pip install huggingface_hub).") from exc
        api = HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset", revision=revision, commit_message=message,
                      ignore_patterns=[LINEAGE_FILE, ".*"])  # fmt: skip
    return str(url)
