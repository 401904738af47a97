"""`tierwise train --engine spark`: the same snapshots give the same models, backtest and registry as numpy.

Its own file (and Spark session) so pytest-xdist runs it beside tests/test_spark.py, not after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.conftest import TEST_ROUNDS

ACCOUNTS, SEED = 150, 3  # a world of its own: another seed than the session's demo world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from features.demo_world import write_demo_world

    out = tmp_path_factory.mktemp("spark_train_world")
    write_demo_world(out, n_accounts=ACCOUNTS, seed=SEED)
    return out


def train_in_store(world, store, engine, monkeypatch):
    """Train both targets into an MLflow store of their own with the given engine; the result and the run."""
    from features.tables import Engine
    from training.pipeline import train

    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("TIERWISE_MLRUNS", str(store))
    mlflow.set_tracking_uri(uri)
    result = train(world, seed=0, max_rounds=TEST_ROUNDS, engine=engine and Engine("spark", "local[2]"))
    return result, mlflow.get_run(result.run_id)


def test_training_with_spark_gives_the_numpy_models_backtest_and_registry(world, tmp_path, monkeypatch):
    """Same snapshots in, so the same backtest figures, the same predictions, and champions registered."""
    previous = mlflow.get_tracking_uri()
    try:
        local, local_run = train_in_store(world, tmp_path / "numpy", None, monkeypatch)
        spark, spark_run = train_in_store(world, tmp_path / "spark", "spark", monkeypatch)
    finally:
        mlflow.set_tracking_uri(previous)
    assert (local_run.data.tags["tierwise.engine"], spark_run.data.tags["tierwise.engine"]) == ("numpy", "spark")
    assert spark.aliases == local.aliases == {"churn": "champion", "growth": "champion"}
    assert spark.metrics.keys() == local.metrics.keys() and any("roc_auc" in k for k in local.metrics)
    for key, value in local.metrics.items():
        assert spark.metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key
    keep = ("horizon_days", "n_snapshots", "n_features", "train_first_as_of", "train_last_as_of", "fold_origins")
    assert {k: spark_run.data.params[k] for k in keep} == {k: local_run.data.params[k] for k in keep}
    for target in ("churn", "growth"):
        a, b = local.backtests[target], spark.backtests[target]
        assert len(a.predictions) > 0
        np.testing.assert_allclose(b.predictions["p"], a.predictions["p"], rtol=1e-9, err_msg=target)


def test_train_command_with_a_bad_spark_master_is_named(world, tmp_path):
    """A master Spark refuses ends the command with one line naming it (exit 2), before a run is logged.

    Its own process: in this one, the test above left a session that `getOrCreate` would return.
    """
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "TIERWISE_MLRUNS": str(tmp_path)}
    argv = ["train", "--data", str(world), "--engine", "spark", "--spark-master", "nonsense://nowhere"]
    done = subprocess.run(
        [str(Path(sys.executable).with_name("tierwise")), *argv], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "Spark master nonsense://nowhere did not start" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "mlflow.db").exists()
