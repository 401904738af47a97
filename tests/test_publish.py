"""Who may replace the scores the service serves: one tracking store, its champions, its newest as-of date."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.tables import load_tables
from serving.batch import champion_gap, score_to_file
from serving.registry import CHURN, load_models
from serving.store import publish, read_store, record
from tierwise import settings

pytestmark = pytest.mark.slow
TIERWISE = Path(sys.executable).with_name("tierwise")


def use_store(folder: Path, trained_store, monkeypatch) -> Path:
    """A private copy of the session's registry in `folder` (artifacts stay shared), made the tracking store."""
    folder.mkdir(exist_ok=True)
    shutil.copy(Path(trained_store.uri.removeprefix("sqlite:///")), folder / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    monkeypatch.delenv("TIERWISE_SCORES_STORE", raising=False)
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    return folder


@pytest.fixture()
def stores(trained_store, tmp_path, monkeypatch):
    """Two tracking stores, `a` (in use) and `b`, each a real sqlite registry holding the session's champions."""
    previous = mlflow.get_tracking_uri()
    use_store(tmp_path / "b", trained_store, monkeypatch)
    use_store(tmp_path / "a", trained_store, monkeypatch)
    yield tmp_path / "a", tmp_path / "b"
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def as_of(trained_store) -> pd.Timestamp:
    return load_tables(trained_store.data_dir).data_end


def test_champion_scores_are_published_beside_their_tracking_store(trained_store, stores, as_of, tmp_path):
    a, _ = stores
    run = score_to_file(trained_store.data_dir, as_of.date(), tmp_path / "s.csv")
    assert run.publication.published and run.store == a / "latest_scores.parquet" == settings.scores_store()
    held = record(run.store)
    assert held["tracking_store"] == f"sqlite:///{a / 'mlflow.db'}" and held["as_of"] == str(as_of.date())
    models = load_models()
    assert held["model_versions"] == {"churn": [models.churn_version], "growth": [models.growth_version]}
    assert read_store().index.equals(pd.Index(run.scored["account_id"]))  # what the service reads


def test_another_tracking_store_never_replaces_the_served_scores(trained_store, stores, as_of, tmp_path, monkeypatch):
    a, b = stores
    scored = score_to_file(trained_store.data_dir, as_of.date(), tmp_path / "s.csv").scored
    served = (a / "latest_scores.parquet").read_bytes()
    use_store(b, trained_store, monkeypatch)  # an experiment against its own store
    mine = publish(scored, None, None)
    assert mine.published and mine.store == b / "latest_scores.parquet"
    monkeypatch.setenv("TIERWISE_SCORES_STORE", str(a / "latest_scores.parquet"))  # even when pointed at a's store
    refused = publish(scored, None, None)
    assert not refused.published and "another tracking store (sqlite:///" in refused.reason
    assert "--publish" in refused.reason and (a / "latest_scores.parquet").read_bytes() == served
    assert publish(scored, True, None).published  # --publish overrides
    assert record(a / "latest_scores.parquet")["tracking_store"] == f"sqlite:///{b / 'mlflow.db'}"


def test_an_older_as_of_is_not_published_unless_asked(trained_store, stores, as_of, tmp_path):
    a, _ = stores
    newest = score_to_file(trained_store.data_dir, as_of.date(), tmp_path / "new.csv")
    older = as_of - pd.Timedelta(days=30)
    run = score_to_file(trained_store.data_dir, older.date(), tmp_path / "old.csv")
    assert not run.publication.published and run.store is None
    assert f"as of {older.date()}) is older than the published one (as of {as_of.date()})" in run.publication.reason
    assert record(newest.store)["as_of"] == str(as_of.date()) and (tmp_path / "old.csv").exists()
    assert publish(run.scored, None, None).published is False
    assert publish(newest.scored, None, None).published  # the same as-of again (a new champion) is published
    assert publish(run.scored, True, None).published and record(newest.store)["as_of"] == str(older.date())
    assert publish(newest.scored, False, None).reason == "--no-publish"
    assert record(newest.store)["as_of"] == str(older.date())


def test_scores_of_a_version_that_is_not_the_champion_are_not_published(trained_store, stores, as_of, tmp_path):
    a, _ = stores
    client = MlflowClient()
    champion = client.get_model_version_by_alias(CHURN, "champion")
    v2 = str(client.create_model_version(CHURN, champion.source, run_id=champion.run_id).version)  # champion stays
    assert champion_gap(load_models(champion.version), {"churn": int(champion.version)}) is None  # its own number
    gap = champion_gap(load_models(v2), {"churn": int(v2)})
    assert gap == f"{CHURN} v{v2} is not the champion (v{champion.version})"
    args = [str(TIERWISE), "score", "--data", str(trained_store.data_dir), "--as-of", str(as_of.date())]
    out = ["--out", str(tmp_path / "c.csv"), "--churn-version", v2]
    done = subprocess.run([*args, *out], capture_output=True, text=True)
    said = " ".join((done.stderr + done.stdout).split())
    assert done.returncode == 0, said
    assert f"NOT published to the latest-scores store {a / 'latest_scores.parquet'}: {gap}; pass --publish" in said
    assert not (a / "latest_scores.parquet").exists() and (tmp_path / "c.csv").exists()
    forced = subprocess.run(
        [*args, "--out", str(tmp_path / "d.csv"), "--churn-version", v2, "--publish"], capture_output=True, text=True
    )
    assert "published to the latest-scores store" in " ".join(forced.stderr.split()) and "(--publish)" in forced.stderr
    assert record(a / "latest_scores.parquet")["model_versions"]["churn"] == [v2]
