"""`tierwise monitor` proves its alarms on worlds where something really went wrong, and stays quiet where nothing did.

One model (the session's `trained_store`, trained on the seed-7 demo world) scores monthly batches of
OTHER worlds drawn from the same simulator: a stable world is a fresh book of the same kind, so the
model's backtest promise should hold there; a world with a tracking stop or a concept shift is the same
kind of book until something breaks. Every batch goes through the real score history and the real
MLflow store.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.build import build_features
from features.demo_world import WorldChanges, write_demo_world
from features.errors import DataError
from features.tables import load_tables
from monitoring.monitor import MonitorConfig, monitor_scores, run_monitor
from monitoring.runs import EXPERIMENT
from serving.history import append_batch
from serving.registry import CHURN, load_models
from serving.scoring import score_frame
from tierwise.cli import main

pytestmark = pytest.mark.slow
BATCHES = pd.date_range(end="2026-10-01", periods=7, freq="2MS")  # 5 of 7 have their outcomes by the data's end
STOP = ("feature_b_used", date(2026, 9, 10))
SHIFT = date(2026, 2, 1)
SHIFT_ACCOUNTS = 1000  # ~50 churners a batch: a margin narrow enough to see a fall in ROC AUC of ~0.15
STABLE_SEEDS = (8, 10, 11)


def history_of(world: Path, dates: pd.DatetimeIndex, root: Path) -> Path:
    """Score `world` with the champions on each date and append each batch to the history at `root`."""
    models = load_models()
    frame = build_features(load_tables(world), dates, metrics=models.churn.metrics).frame
    for _, rows in frame.groupby("as_of"):
        append_batch(score_frame(rows.reset_index(drop=True), models, reasons=False), root)
    return root


def world(tmp_path_factory, name: str, accounts: int, seed: int, changes: WorldChanges | None = None) -> Path:
    out = tmp_path_factory.mktemp(name)
    write_demo_world(out, n_accounts=accounts, seed=seed, changes=changes)
    return out


@pytest.fixture(scope="module")
def stopped(trained_store, tmp_path_factory) -> tuple[Path, Path]:
    """A world whose feature_b_used events stop being tracked on 2026-09-10, and its history of two batches."""
    data = world(tmp_path_factory, "stopped", 400, 9, WorldChanges(tracking_stop=STOP))
    return data, history_of(data, pd.DatetimeIndex(["2026-10-01"]), tmp_path_factory.mktemp("stopped_history"))


@pytest.fixture(scope="module")
def shifted(trained_store, tmp_path_factory):
    """The monitor's result on a world whose churn drivers change on `SHIFT`."""
    data = world(tmp_path_factory, "shifted", SHIFT_ACCOUNTS, 12, WorldChanges(concept_shift=SHIFT))
    return run_monitor(data, history_of(data, BATCHES, tmp_path_factory.mktemp("shifted_history")))


def run_cli(monkeypatch, *args: str) -> int:
    """`tierwise ARGS` in-process through the console entry point; its exit code."""
    monkeypatch.setattr(sys, "argv", ["tierwise", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code


def test_a_tracking_stop_is_stale_naming_the_event_type_and_the_date(stopped, tmp_path, monkeypatch, capsys):
    data, history = stopped
    summary, page = tmp_path / "monitor.json", tmp_path / "monitor.html"
    monkeypatch.setenv("TIERWISE_MONITOR_SUMMARY", str(tmp_path / "console" / "latest.json"))
    args = ["monitor", "--data", str(data), "--history", str(history), "--json", str(summary), "--out", str(page)]
    assert run_cli(monkeypatch, *args, "--fail-on", "degraded,stale") == 1
    assert "failing: stale" in capsys.readouterr().err
    found = json.loads(summary.read_text())
    assert json.loads((tmp_path / "console" / "latest.json").read_text()) == found  # what the console page reads
    assert found["ran_at"].startswith(str(date.today()))
    stale = [a for a in found["alarms"] if a["condition"] == "stale"]
    assert [a["subject"] for a in stale] == ["event feature_b_used"]  # the other eight event types still arrive
    assert "no event since 2026-09-10" in stale[0]["evidence"]
    assert found["conditions"]["stale"] is True
    stream = next(s for s in found["streams"] if s["name"] == "feature_b_used")
    assert (stream["status"], stream["since"], stream["last_seen"]) == ("stopped", "2026-09-10", "2026-09-09")
    html = page.read_text()
    assert "feature_b_used" in html and "no event since 2026-09-10" in html and "<script" not in html
    assert 'class="promise"' in html and 'class="estimate"' in html  # the chart: promise line, estimated batch
    # the figures are in MLflow, under the version that scored the batches
    version = found["versions"][0]["version"]
    runs = mlflow.search_runs(
        experiment_names=[EXPERIMENT], filter_string=f"tags.`tierwise.model_version` = '{version}'"
    )
    assert len(runs) >= 1 and runs["metrics.estimated_roc_auc"].notna().all()
    assert MlflowClient().get_model_version(CHURN, version).tags["monitor_run"] == runs["run_id"].iloc[0]


def test_a_concept_shift_degrades_the_batches_after_it_with_the_figures(shifted):
    (version,) = shifted.versions
    unaffected = pd.Timestamp(SHIFT) - pd.Timedelta(
        days=version.label_window_days
    )  # label windows that close before the shift
    degraded = [b for b in version.realised if b.degraded]
    assert len(version.realised) == 5
    assert all(pd.Timestamp(b.as_of) > unaffected for b in degraded)  # no false alarm before the shift
    after = [b for b in version.realised if pd.Timestamp(b.as_of) >= pd.Timestamp(SHIFT)]
    assert len(after) == 3 and all(b.degraded for b in after)
    for b in degraded:
        assert b.roc_auc + b.margin < version.promised["roc_auc"]
    (alarm,) = [a for a in shifted.alarms if a.condition == "degraded"]
    assert alarm.subject == f"tierwise-churn v{version.version}"
    assert f"as of {degraded[0].as_of}: realised ROC AUC {degraded[0].roc_auc:.3f}" in alarm.evidence
    assert any("degraded" in r for r in shifted.retrain)
    # the estimate cannot see a concept shift (it trusts the probabilities): it stays near the promise
    assert all(e.roc_auc > max(b.roc_auc for b in degraded) for e in shifted.estimates)


@pytest.mark.parametrize("seed", STABLE_SEEDS)
def test_a_stable_world_raises_no_alarm(trained_store, tmp_path_factory, tmp_path, monkeypatch, seed):
    data = world(tmp_path_factory, f"stable{seed}", 400, seed)
    history = history_of(data, BATCHES, tmp_path_factory.mktemp(f"stable{seed}_history"))
    args = ["--data", str(data), "--history", str(history), "--json", str(tmp_path / "m.json"), "--no-log"]
    assert run_cli(monkeypatch, "monitor", *args, "--fail-on", "degraded,drift,stale") == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["alarms"] == [] and result["retrain"] == [] and not any(result["conditions"].values())
    (version,) = result["versions"]
    assert len(version["realised"]) == 5 and all(b["churned"] > 0 for b in version["realised"])  # judged, not skipped
    assert all(b["seen_in_training"] for b in version["realised"])  # dated before the model's newest snapshot
    drift = result["drift"]
    assert len(drift["features"]) > 20 and drift["prediction_psi"] is not None
    assert all(s["status"] == "ok" for s in result["streams"]) and len(result["estimates"]) == 2


def test_an_empty_history_and_bad_rows_are_one_clear_error(trained_store, tmp_path):
    with pytest.raises(DataError, match="no batches yet"):
        run_monitor(trained_store.data_dir, tmp_path / "nothing")
    broken = tmp_path / "broken"
    append_batch(pd.DataFrame({"account_id": ["ACC-000001"], "as_of": [pd.Timestamp("2026-10-01")]}), broken)
    with pytest.raises(DataError, match="lack column"):
        run_monitor(trained_store.data_dir, broken, MonitorConfig())
    tables = load_tables(trained_store.data_dir)
    garbled = pd.DataFrame(
        {"account_id": ["A", "B"], "as_of": "2026-10-01", "churn_risk": ["0.2", "high"], "arr": 1.0}
    ).assign(churn_model_version="1")
    with pytest.raises(DataError, match=r"churn_risk: not a probability in 1 row"):
        monitor_scores(tables, garbled, "test", MonitorConfig())


def test_a_version_the_store_does_not_hold_is_named_not_judged(trained_store):
    tables = load_tables(trained_store.data_dir)
    scores = pd.DataFrame(
        {
            "account_id": tables.accounts["account_id"].head(50),
            "as_of": pd.Timestamp("2026-03-01"),
            "churn_risk": 0.1,
            "arr": 1000.0,
            "churn_model_version": "999",
        }
    )
    result = monitor_scores(tables, scores, "test", MonitorConfig())
    (version,) = result.versions
    assert "version 999 is not in the tracking store" in version.note and version.realised == []
    assert result.drift is None and not result.holds("degraded")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-on", "degraded,late"], "late: use any of degraded, drift, stale"),
        (["--json", "{tmp}/summary.txt"], ".json"),
        (["--out", "{tmp}/page.pdf"], ".html"),
        (["--data", "{tmp}/missing"], "does not exist"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(trained_store, tmp_path, monkeypatch, capsys, args, message):
    base = {"--data": str(trained_store.data_dir), "--history": str(tmp_path / "h")}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value.format(tmp=tmp_path)
    argv = [part for pair in base.items() for part in pair]
    assert run_cli(monkeypatch, "monitor", *argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("summary*")) and not list(tmp_path.glob("page*"))
