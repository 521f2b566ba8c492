"""SIGKILL at random moments (seeded): the earlier output survives intact or the new one is complete, a resumed run
equals an uninterrupted one, and the next run leaves no temporary file behind."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import ARENA, GSM8K, preference_frames

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def start(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "curate.cli", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", *map(str, args)], capture_output=True, text=True, env=ENV)


def fingerprint(path: Path) -> str:
    """The content of a file, or of every file in a folder (names and bytes)."""
    h = hashlib.sha1()
    for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if f.is_file():
            h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".old")))


JOBS = {
    "ingest": lambda src, out: ["ingest", src, "-o", out],
    "pairs": lambda src, out: ["pairs", src, "--drop-invalid", "--strategy", "all", "-o", out],
    "export": lambda src, out: ["export", src, "-o", out, "--format", "hf"],
}
INPUTS = {"ingest": GSM8K, "pairs": ARENA, "export": GSM8K}
CREATIVE = GSM8K.parent / "creative_writing_gpt4_10samples.parquet"
EARLIER = {"ingest": CREATIVE, "pairs": CREATIVE, "export": CREATIVE}  # another input: the earlier output differs from the new one
KILLS_PER_JOB = 6


@pytest.mark.parametrize("job", JOBS)
def test_killed_writes_leave_old_or_complete_output(tmp_path, job):
    rng = random.Random(f"curate-kill-{job}")
    out = tmp_path / ("result" if job == "export" else "result.parquet")
    reference = tmp_path / "reference" / out.name
    assert run(*JOBS[job](INPUTS[job], reference)).returncode == 0
    want = fingerprint(reference)
    # an earlier output of the same kind, which a killed run must leave intact
    assert run(*JOBS[job](EARLIER[job], out)).returncode == 0
    previous = fingerprint(out)
    for _ in range(KILLS_PER_JOB):
        proc = start(*JOBS[job](INPUTS[job], out))
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = fingerprint(out)
        assert now in (previous, want), "a killed run left a mixed or partial output"
        previous = now
    done = run(*JOBS[job](INPUTS[job], out))
    assert done.returncode == 0, done.stderr
    assert fingerprint(out) == want and temporaries(out.parent) == []


def test_killed_training_resumes_to_the_uninterrupted_result(tiny_model, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    data = tmp_path / "pairs.parquet"
    preference_frames(32)["pairs"].write_parquet(data)
    args = ["train", data, "--model", tiny_model, "--loss", "dpo", "--lr", "1e-3", "--batch-size", "4", "--max-steps", "8", "--save-steps", "1",
            "--warmup-ratio", "0"]  # fmt: skip
    assert run(*args, "-o", tmp_path / "whole").returncode == 0
    rng = random.Random("curate-kill-train")
    out = tmp_path / "killed"
    for _ in range(2):
        proc = start(*args, "-o", out, "--resume-from", "auto")
        time.sleep(rng.uniform(4.0, 7.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = run(*args, "-o", out, "--resume-from", "auto")
    assert done.returncode == 0, done.stderr
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(out / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    assert temporaries(out) == []


def test_killed_sampling_resumes_to_the_uninterrupted_rows(tiny_model, tmp_path):
    prompts = tmp_path / "prompts.parquet"
    pl.DataFrame({"prompt": [f"{i} plus 1 is" for i in range(12)]}).write_parquet(prompts)
    args = ["sample", prompts, "--model", tiny_model, "--engine", "hf", "--n", "2", "--max-tokens", "6", "--shard-size", "2", "--seed", "3"]
    assert run(*args, "-o", tmp_path / "whole.parquet").returncode == 0
    rng = random.Random("curate-kill-sample")
    out = tmp_path / "killed.parquet"
    for _ in range(2):
        proc = start(*args, "-o", out, "--resume")
        time.sleep(rng.uniform(3.0, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = run(*args, "-o", out, "--resume")
    assert done.returncode == 0, done.stderr
    assert pl.read_parquet(out).equals(pl.read_parquet(tmp_path / "whole.parquet"))
    assert temporaries(tmp_path) == [] and not (tmp_path / "killed.parquet.shards").exists()
