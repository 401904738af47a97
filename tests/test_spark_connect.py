"""Spark Connect (`SPARK_REMOTE`): the same features and scores through a Connect client as without Spark.

`SPARK_REMOTE=local` makes PySpark start a local Spark Connect server and talk to it over gRPC,
as it would to a team's cluster; tierwise then has no SparkContext (no broadcast: the models
travel with the scoring function). Each run is its own `tierwise` process, so the Connect
session never meets the classic sessions of other test files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.tables import load_tables

TIERWISE = Path(sys.executable).with_name("tierwise")


def tierwise(*args: str, remote: str, cwd: Path) -> subprocess.CompletedProcess:
    """`tierwise ARGS` with `SPARK_REMOTE` set (and the session's MLflow store inherited)."""
    env = os.environ | {"SPARK_REMOTE": remote}
    return subprocess.run([str(TIERWISE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def as_of(trained_store) -> str:
    return str(load_tables(trained_store.data_dir).data_end.date())


def test_features_and_scores_through_spark_connect_equal_the_local_ones(trained_store, as_of, tmp_path):
    """Features and batch scores with reasons from a local Connect server equal the numpy engine's."""
    data = str(trained_store.data_dir)
    local_features, local_scores = tmp_path / "f_local.parquet", tmp_path / "s_local.parquet"
    from typer.testing import CliRunner

    from tierwise.cli import app

    runner = CliRunner()
    for args in (
        ["features", "--data", data, "--as-of", as_of, "--out", str(local_features)],
        ["score", "--data", data, "--as-of", as_of, "--no-publish", "--out", str(local_scores)],
    ):
        assert runner.invoke(app, args).exit_code == 0
    done = tierwise(
        "features",
        "--data",
        data,
        "--as-of",
        as_of,
        "--engine",
        "spark",
        "--out",
        "f.parquet",
        remote="local",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    expected = pd.read_parquet(local_features)
    found = pd.read_parquet(tmp_path / "f.parquet")
    assert list(found.columns) == list(expected.columns) and len(found) == len(expected) > 0
    pd.testing.assert_frame_equal(found, expected, check_exact=False, rtol=1e-9)
    done = tierwise(
        "score", "--data", data, "--as-of", as_of, "--engine", "spark", "--no-publish", "--out", "s.parquet",
        remote="local", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    scores = pd.read_parquet(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(scores, pd.read_parquet(local_scores), check_exact=True)
    assert scores["reason_1"].notna().all()


@pytest.mark.parametrize(
    ("remote", "said"),
    [
        ("sc://127.0.0.1:9/;token=hunter2", "Spark Connect at sc://127.0.0.1:9 does not answer"),
        ("sc://127.0.0.1:port", "SPARK_REMOTE: sc://127.0.0.1: the port is not a number"),
        ("http://127.0.0.1:9", "is not a Spark Connect URL"),
    ],
)
def test_a_connect_server_that_does_not_answer_is_named_at_once(demo_dir, tmp_path, monkeypatch, capsys, remote, said):
    """A wrong `SPARK_REMOTE` is one line, exit 2, nothing written, its token unprinted; not 10 minutes of retries."""
    from tierwise.cli import main

    out = tmp_path / "f.parquet"
    monkeypatch.setenv("SPARK_REMOTE", remote)
    monkeypatch.setattr(
        sys, "argv", ["tierwise", "features", "--data", str(demo_dir), "--as-of", "2026-01-01",
                      "--engine", "spark", "--out", str(out)],
    )  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and said in err, err
    assert "hunter2" not in err and "Traceback" not in err and not out.exists()
