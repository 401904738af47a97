"""Shared, expensive fixtures: one small demo world and one trained MLflow store per test session.

Other test modules (scoring, service, report) build on `trained_store` instead of training their
own models, which keeps the suite well under its time budget on a 2-core machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# OpenMP threads that spin while they wait made LightGBM up to 10x slower on a busy 2-core machine.
# OpenMP reads the policy once, when LightGBM loads, and importing tierwise no longer sets it (imports
# have no side effects; `tierwise.cli.main` sets it for the program), so the test session sets it here,
# before any test module imports LightGBM. Subprocesses of `tierwise` inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

pytest_plugins = ["tests.postgres", "tests.object_store"]  # a real PostgreSQL; an S3 API (moto) on loopback

DEMO_ACCOUNTS = 400
DEMO_SEED = 7
TEST_ROUNDS = 200  # fewer boosting rounds than the default keeps the session fixture to seconds


@dataclass
class TrainedStore:
    """A real MLflow sqlite store holding one training run of the demo world."""

    uri: str  # the MLFLOW_TRACKING_URI in force for the session
    data_dir: Path  # the demo world the models were trained on
    result: object  # training.pipeline.TrainResult


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small demo world (400 accounts, seed 7) in the data contract, written once per session."""
    from features.demo_world import write_demo_world

    out = tmp_path_factory.mktemp("demo_world")
    write_demo_world(out, n_accounts=DEMO_ACCOUNTS, seed=DEMO_SEED)
    return out


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory, demo_dir) -> TrainedStore:
    """Train churn and growth once on `demo_dir` into a temp sqlite MLflow store set for the session.

    `MLFLOW_TRACKING_URI` and `TIERWISE_MLRUNS` point at the temp folder for the whole session
    (and are restored afterwards), so every later `tierwise.settings.tracking_uri()` sees this store.
    """
    from training.pipeline import train

    root = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "TIERWISE_MLRUNS")}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["TIERWISE_MLRUNS"] = str(root)
    try:
        result = train(demo_dir, seed=0, max_rounds=TEST_ROUNDS)
        yield TrainedStore(uri=uri, data_dir=demo_dir, result=result)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture()
def fresh_store(tmp_path, monkeypatch) -> Path:
    """An empty MLflow store of its own, for tests that register versions the shared store must not see.

    MLflow keeps the last `set_tracking_uri` in process-wide state, so the previous URI is restored
    afterwards as well as the environment.
    """
    import mlflow

    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("TIERWISE_MLRUNS", str(tmp_path))
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    yield tmp_path
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="session")
def book_report(trained_store, tmp_path_factory) -> Path:
    """The HTML report of the demo book as of the data's end, scored by the session's champions (written once).

    The scores it was written from lie beside it as `scores.parquet`.
    """
    from features.build import build_features
    from features.io import write_table
    from features.tables import load_tables
    from serving.registry import load_models
    from serving.report import write_report
    from serving.scoring import score_frame

    models = load_models()
    tables = load_tables(trained_store.data_dir)
    frame = build_features(tables, [tables.data_end], metrics=models.churn.metrics).frame
    out = tmp_path_factory.mktemp("book_report")
    path = write_table(score_frame(frame, models, reasons=False), out / "scores.parquet")
    return write_report(path, out / "report.html")
