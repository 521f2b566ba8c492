"""`--engine ray` with inputs and outputs named by URL: an S3 bucket, on the two-node local Ray cluster.

The bucket is served by moto's standalone S3 server on 127.0.0.1 (the stand-in for a real object
store, which cannot be reached here; the client is pyarrow's real S3 filesystem, speaking HTTP to it).
The endpoint and credentials ride in the URL, so the Ray workers need no environment of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import ARENA, curate_here, ray_env

pytest.importorskip("ray")
moto_server = pytest.importorskip("moto.server")
pytestmark = pytest.mark.ray
KEY = "testing"


@pytest.fixture(scope="module")
def bucket():
    """An empty bucket on a local S3 server: a function giving the URL of a key in it."""
    import pyarrow.fs as pafs

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_override": f"{host}:{port}", "scheme": "http", "region": "us-east-1"}
    pafs.S3FileSystem(access_key=KEY, secret_key=KEY, allow_bucket_creation=True, **options).create_dir("curate-test")
    query = "&".join(f"{k}={v}" for k, v in options.items())
    yield lambda key: f"s3://{KEY}:{KEY}@curate-test/{key}?{query}"
    server.stop()


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", *map(str, args)], capture_output=True, text=True, env=ray_env(), timeout=600)


def read_folder(url: str) -> tuple[pl.DataFrame, dict, dict]:
    """The shards (in order), the manifest and the lineage of a Ray output folder in the bucket."""
    from curate.remote import Location

    folder = Location.of(url)
    shards = folder.files(r"data/train-.*\.parquet")
    frame = pl.concat([pl.read_parquet(f.read_bytes()) for f in shards], how="diagonal_relaxed")
    return frame, json.loads(folder.child("curate_manifest.json").read_text()), json.loads(folder.child("curate_lineage.json").read_text())


def test_pairs_and_select_from_and_to_a_bucket_equal_one_machine(cluster, bucket, tmp_path):
    from curate.remote import Location

    # the arena samples as two parquet files in the bucket (a folder of parquet files; read in name order, they are the file)
    arena = pl.read_parquet(ARENA)
    halves = {"part-0.parquet": arena.head(2600), "part-1.parquet": arena.tail(arena.height - 2600)}
    for name, frame in halves.items():
        frame.write_parquet(tmp_path / name)
        Location.of(bucket(f"samples/{name}")).write_bytes((tmp_path / name).read_bytes())

    ray_opts = ["--engine", "ray", "--ray-address", cluster, "--buckets", 3]
    r = cli("pairs", bucket("samples"), "--drop-invalid", "--strategy", "best-of-n2", *ray_opts, "-o", bucket("pairs"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{KEY}@" not in r.stderr  # no credentials shown
    assert "wrote s3://curate-test/pairs" in " ".join(r.stderr.split())
    curate_here("pairs", ARENA, "--drop-invalid", "--strategy", "best-of-n2", "-o", tmp_path / "pairs.parquet")
    one = pl.read_parquet(tmp_path / "pairs.parquet")
    got, manifest, lineage = read_folder(bucket("pairs"))
    key = ["prompt_id", "pair_id"]
    assert_frame_equal(got.sort(key), one.sort(key))
    assert manifest["rows"] == one.height == sum(s["rows"] for s in manifest["shards"])
    assert lineage["steps"][-1]["dropped"] == {"invalid `response`: null or empty (blank) string": 27, **lineage["steps"][-1]["dropped"]}
    assert all(f"{KEY}@" not in s for s in lineage["steps"][-1]["inputs"])

    # a curate folder in the bucket as the input, a table-level step (a global top fraction) on it
    r = cli("select", bucket("pairs"), "--top", 0.4, "--by", "reward_margin", *ray_opts, "-o", bucket("top"))
    assert r.returncode == 0, r.stderr[-3000:]
    got.write_parquet(tmp_path / "ray_pairs.parquet")  # the same rows in the same order (shards in bucket order) on one machine
    curate_here("select", tmp_path / "ray_pairs.parquet", "--top", 0.4, "--by", "reward_margin", "-o", tmp_path / "top.parquet")
    got, _, lineage = read_folder(bucket("top"))
    assert_frame_equal(got.sort(key), pl.read_parquet(tmp_path / "top.parquet").sort(key))
    assert [s["name"] for s in lineage["steps"]] == ["pairs", "select"]

    # run again onto its own output: replaced; the work folder is gone
    r = cli("select", bucket("pairs"), "--top", 0.4, "--by", "reward_margin", *ray_opts, "-o", bucket("top"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert not Location.of(bucket(".top.curate-ray")).exists()
    assert read_folder(bucket("top"))[0].height == got.height


def test_a_bucket_folder_curate_did_not_write_is_not_replaced_and_one_machine_says_use_ray(cluster, bucket, tmp_path):
    from curate.remote import Location

    Location.of(bucket("theirs/notes.txt")).write_text("keep me")
    Location.of(bucket("in/samples.parquet")).write_bytes(ARENA.read_bytes())
    r = cli("pairs", bucket("in"), "--drop-invalid", "--engine", "ray", "--ray-address", cluster, "-o", bucket("theirs"))
    assert r.returncode == 2 and "is not a folder curate wrote" in r.stderr, r.stderr[-2000:]
    assert Location.of(bucket("theirs/notes.txt")).read_text() == "keep me"
    r = cli("pairs", bucket("in"), "--drop-invalid", "-o", tmp_path / "p.parquet")
    assert r.returncode == 2 and "read by `--engine ray`" in " ".join(r.stderr.split()), r.stderr
