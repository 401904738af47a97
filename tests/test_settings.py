"""Settings: a leaf with no side effects, stores where the user runs tierwise, one scores store per tracking store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tierwise
from tierwise import settings

PROBE = """
import importlib, json, os, sys
before = dict(os.environ)
for name in sys.argv[1:]:
    importlib.import_module(name)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(json.dumps({"changed": changed, "loaded": sorted(m for m in ("typer", "tierwise.cli") if m in sys.modules)}))
"""


def imported(*modules: str) -> dict:
    """What importing `modules` in a fresh interpreter changed: environment keys and CLI modules loaded."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the test session sets it; a user may not
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("package", ["features", "training", "serving", "tierwise", "tierwise.settings"])
def test_importing_a_package_changes_nothing_and_loads_no_cli(package):
    assert imported(package) == {"changed": [], "loaded": []}


def test_training_and_serving_read_settings_without_the_cli():
    seen = imported("training.registry", "serving.store", "serving.batch", "serving.registry")
    assert seen["loaded"] == []
    assert "OMP_WAIT_POLICY" not in seen["changed"]  # third-party libraries may set their own; tierwise sets none


def test_importing_the_cli_sets_nothing_and_its_entry_sets_the_openmp_policy(monkeypatch):
    code = "import os, sys, tierwise.cli; print(os.environ.get('OMP_WAIT_POLICY'), 'lightgbm' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["None", "False"]  # so `main` can still set it before LightGBM loads
    from tierwise.cli import main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    monkeypatch.setattr(sys, "argv", ["tierwise", "promote", "--help"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0 and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.fixture()
def no_store_settings(monkeypatch, tmp_path) -> Path:
    """No store variable set, and the working directory a fresh folder."""
    for key in ("MLFLOW_TRACKING_URI", "TIERWISE_MLRUNS", "TIERWISE_SCORES_STORE", "TIERWISE_MONITOR_SUMMARY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_stores_live_in_the_working_directory_not_the_package(no_store_settings):
    here = no_store_settings.resolve()
    assert settings.mlruns_dir() == here / "mlruns"
    assert settings.tracking_uri() == f"sqlite:///{here / 'mlruns' / 'mlflow.db'}"
    assert settings.scores_store() == here / "mlruns" / "latest_scores.parquet"
    assert not settings.scores_store().is_relative_to(Path(tierwise.__file__).resolve().parent.parent)


def test_a_sqlite_store_keeps_its_scores_beside_it(no_store_settings, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///exp/trial.db")  # relative: to the working directory
    assert settings.scores_store() == no_store_settings.resolve() / "exp" / "latest_scores.parquet"
    assert settings.tracking_store() == f"sqlite:///{no_store_settings.resolve() / 'exp' / 'trial.db'}"
    monkeypatch.setenv("TIERWISE_SCORES_STORE", "served/s.parquet")
    assert settings.scores_store() == no_store_settings.resolve() / "served" / "s.parquet"
    assert settings.monitor_summary() == no_store_settings.resolve() / "served" / "monitor_summary.json"
    monkeypatch.setenv("TIERWISE_MONITOR_SUMMARY", "shared/monitor.json")  # e.g. where the monitor's machine writes
    assert settings.monitor_summary() == no_store_settings.resolve() / "shared" / "monitor.json"


def test_a_server_store_gets_its_own_folder_keyed_by_the_redacted_uri(no_store_settings, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://cs:secret@db.internal:5432/mlflow")
    first = settings.scores_store()
    assert settings.tracking_store() == "postgresql://cs:***@db.internal:5432/mlflow"
    assert first.parent.parent == no_store_settings.resolve() / "mlruns" / "scores" and "secret" not in str(first)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://cs:rotated@db.internal:5432/mlflow")
    assert settings.scores_store() == first  # a new password is the same store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://cs:secret@db.internal:5432/experiments")
    assert settings.scores_store() != first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert settings.tracking_store() == "http://mlflow.internal:5000" and settings.scores_store() != first
