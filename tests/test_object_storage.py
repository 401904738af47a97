"""Tables in a bucket: `--data s3://...` and `--out s3://...` give what the local folder and file give.

The bucket is moto's S3 server on loopback (tests/object_store.py), reached over HTTP by pyarrow's
S3 client, as a team's MinIO or S3 would be. Failures name the URL, come before any work where
they can, and leave nothing under the output's name.
"""

from __future__ import annotations

import sys

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from features.errors import DataError
from features.io import write_table
from features.tables import load_tables


def run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`tierwise ARGS` through the real entry point: exit code and what it printed."""
    from tierwise.cli import main

    monkeypatch.setattr(sys, "argv", ["tierwise", *args])
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    out = capsys.readouterr()
    return code, out.out + out.err


def read_url(url: str) -> pd.DataFrame:
    return pq.read_table(url).to_pandas()


@pytest.fixture(scope="module")
def as_of(trained_store) -> str:
    return str(load_tables(trained_store.data_dir).data_end.date())


@pytest.fixture(scope="module")
def demo_url(bucket, trained_store) -> str:
    return bucket.upload(trained_store.data_dir, "exports/demo")


def test_features_from_a_bucket_to_a_bucket_equal_the_local_table(
    bucket, demo_url, trained_store, as_of, tmp_path, monkeypatch, capsys
):
    """The same feature table from `s3://` as from the folder, written to `s3://` in Parquet and CSV."""
    local = tmp_path / "f.parquet"
    args = ["features", "--as-of", as_of]
    assert run(monkeypatch, capsys, *args, "--data", str(trained_store.data_dir), "--out", str(local))[0] == 0
    for name in ("f.parquet", "f.csv"):
        code, said = run(monkeypatch, capsys, *args, "--data", demo_url, "--out", bucket.url(f"out/{name}"))
        assert code == 0, said
        assert f"written to {bucket.url(f'out/{name}')}" in said
    expected = pd.read_parquet(local)
    pd.testing.assert_frame_equal(read_url(bucket.url("out/f.parquet")), expected)
    fs, path = pafs.FileSystem.from_uri(bucket.url("out/f.csv"))
    with fs.open_input_stream(path) as stream:
        from_csv = pd.read_csv(stream)
    assert list(from_csv.columns) == list(expected.columns) and len(from_csv) == len(expected)
    assert bucket.keys("out") == ["out/f.csv", "out/f.parquet"]  # no temporary upload left behind


def test_scoring_from_a_bucket_equals_scoring_the_folder(
    bucket, demo_url, trained_store, as_of, tmp_path, monkeypatch, capsys
):
    """`tierwise score --data s3://... --out s3://...`: the same scores, tiers and reasons as from the folder."""
    args = ["score", "--as-of", as_of, "--no-publish"]
    local = tmp_path / "s.parquet"
    assert run(monkeypatch, capsys, *args, "--data", str(trained_store.data_dir), "--out", str(local))[0] == 0
    code, said = run(monkeypatch, capsys, *args, "--data", demo_url, "--out", bucket.url("scores/s.parquet"))
    assert code == 0, said
    remote = read_url(bucket.url("scores/s.parquet"))
    pd.testing.assert_frame_equal(remote, pd.read_parquet(local))
    assert remote["reason_1"].notna().all() and remote["tier"].notna().all()


def test_bucket_errors_are_named_before_the_work_and_leave_nothing(
    bucket, demo_url, trained_store, as_of, monkeypatch, capsys
):
    """A missing bucket, table or scheme, a bad suffix and a corrupt object: exit 2, one line, no object written."""
    half = bucket.url("broken")
    bucket.upload(trained_store.data_dir, "broken")
    write_table(pd.DataFrame({"a": [1]}), f"{half}/events.parquet")  # replaced by a table without the columns
    features = ["features", "--as-of", as_of, "--data"]
    cases = [
        ([*features, demo_url, "--out", "s3://no-such-bucket/f.parquet"], "the bucket 'no-such-bucket' does not exist"),
        ([*features, demo_url, "--out", bucket.url("bad/f.txt")], "use a .csv or .parquet file name"),
        ([*features, bucket.url("nothing-here"), "--out", bucket.url("bad/f.parquet")], "accounts: table missing"),
        ([*features, "nosuch://x/y", "--out", bucket.url("bad/f.parquet")], "nosuch://x/y/accounts.parquet: cannot"),
        ([*features, half, "--out", bucket.url("bad/f.parquet")], "events: missing required column(s)"),
    ]
    for args, said in cases:
        code, out = run(monkeypatch, capsys, *args)
        assert code == 2 and said in out and "Traceback" not in out, (args, out)
    assert bucket.keys("bad") == [] and bucket.keys("no-such") == []


def test_a_secret_in_a_url_is_not_printed(bucket, monkeypatch, capsys):
    """Keys given in a URL's query (pyarrow accepts them there) never reach the error line."""
    with pytest.raises(DataError) as error:
        load_tables(f"s3://{bucket.name}/nothing?access_key=AKIA&secret_key=hunter2")
    assert "hunter2" not in str(error.value) and "AKIA" not in str(error.value)
