"""The `tierwise score` job on a demo world: files, store, spreadsheet safety, bad input, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.build import build_snapshots
from features.tables import DataError, load_tables
from serving.batch import score_table, score_to_file
from serving.scoring import OUTPUT
from serving.store import read_store

pytestmark = pytest.mark.slow
FORMULA_ID = '=HYPERLINK("http://x","y")'
TIERWISE = Path(sys.executable).with_name("tierwise")


@pytest.fixture(scope="module")
def world(trained_store, tmp_path_factory) -> tuple[Path, pd.Timestamp]:
    """The trained demo world with one account renamed to a spreadsheet formula, and its last as-of date."""
    out = tmp_path_factory.mktemp("formula_world")
    first = str(pd.read_parquet(trained_store.data_dir / "accounts.parquet")["account_id"].iloc[0])
    for path in trained_store.data_dir.glob("*.parquet"):
        frame = pd.read_parquet(path)
        frame["account_id"] = frame["account_id"].astype(str).replace({first: FORMULA_ID})
        frame.to_parquet(out / path.name)
    return out, load_tables(out).data_end


@pytest.fixture(scope="module")
def first_run(world, tmp_path_factory):
    data, as_of = world
    folder = tmp_path_factory.mktemp("scores")
    os.environ["TIERWISE_SCORES_STORE"] = str(folder / "store.parquet")
    try:
        return score_to_file(data, as_of.date(), folder / "scores.csv"), folder
    finally:
        os.environ.pop("TIERWISE_SCORES_STORE")


def test_batch_writes_every_active_account_and_the_store(first_run, world):
    run, folder = first_run
    written = pd.read_csv(run.out)
    assert list(written.columns) == [*OUTPUT, "activity_30d"] and written["account_id"].is_unique
    assert len(written) == len(run.scored) > 100
    assert written["churn_risk"].between(0, 1).all() and written["reason_1"].notna().mean() > 0.95
    assert run.store == folder / "store.parquet"
    store = read_store(run.store)
    assert len(store) == len(written) and store["churn_risk"].equals(run.scored.set_index("account_id")["churn_risk"])
    assert sorted(p.name for p in folder.iterdir()) == ["score_history", "scores.csv", "store.parquet"]  # no temp file


def test_csv_defuses_a_formula_like_account_id(first_run):
    run, _ = first_run
    raw = run.out.read_text(encoding="utf-8")
    assert FORMULA_ID in set(run.scored["account_id"])
    assert "\n=HYPERLINK" not in raw and ',"=HYPERLINK' not in raw and "\"'=HYPERLINK" in raw


def test_previous_file_keeps_tiers_and_says_what_changed(first_run, world, tmp_path, monkeypatch):
    run, _ = first_run
    data, as_of = world
    monkeypatch.setenv("TIERWISE_SCORES_STORE", str(tmp_path / "store.parquet"))
    again = score_to_file(data, as_of.date(), tmp_path / "again.parquet", previous=run.out).scored
    assert again["previous_tier"].notna().all()  # the defused formula id matched its previous row too
    assert (again["previous_tier"] == run.scored["tier"]).all()
    assert again["changes"].str.startswith("Risk ").all()


def test_bad_input_gets_a_named_error(world, tmp_path, monkeypatch):
    data, as_of = world
    monkeypatch.setenv("TIERWISE_SCORES_STORE", str(tmp_path / "store.parquet"))
    with pytest.raises(DataError, match="no account is active on 2000-01-01"):
        score_to_file(data, pd.Timestamp("2000-01-01").date(), tmp_path / "s.csv")
    with pytest.raises(DataError, match="after the data ends"):
        score_to_file(data, (as_of + pd.Timedelta(days=30)).date(), tmp_path / "s.csv")
    with pytest.raises(DataError, match="previous scores .*file not found"):
        score_to_file(data, as_of.date(), tmp_path / "s.csv", previous=tmp_path / "missing.csv")
    pd.DataFrame({"account_id": ["a"], "churn_risk": [0.1]}).to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(DataError, match="previous scores .*missing column.*tier"):
        score_to_file(data, as_of.date(), tmp_path / "s.csv", previous=tmp_path / "old.csv")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="previous scores .*cannot read"):
        score_to_file(data, as_of.date(), tmp_path / "s.csv", previous=tmp_path / "junk.parquet")
    with pytest.raises(DataError, match="tierwise-churn has no version 42 "):
        score_to_file(data, as_of.date(), tmp_path / "s.csv", model_versions={"churn": 42})
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "store.parquet").exists()


def test_cli_scores_end_to_end_and_errors_in_one_line(trained_store, world, tmp_path):
    data, as_of = world
    env = os.environ | {"TIERWISE_SCORES_STORE": str(tmp_path / "store.parquet")}
    args = [str(TIERWISE), "score", "--data", str(data), "--as-of", str(as_of.date())]
    done = subprocess.run([*args, "--out", str(tmp_path / "s.parquet")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert pd.read_parquet(tmp_path / "s.parquet")["tier"].notna().all()
    assert "accounts scored" in done.stderr + done.stdout
    bad = subprocess.run(
        [*args, "--out", str(tmp_path / "t.csv"), "--churn-version", "77"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "no version 77" in bad.stderr


def test_table_mode_scores_a_flat_table_with_its_own_model(trained_store, fresh_store):
    from training.table_mode import train_table

    tables = load_tables(trained_store.data_dir)
    fs = build_snapshots(tables, pd.date_range("2025-06-01", "2026-06-01", freq="3MS"), 90)
    cols = ["activity__users_30d", "seat_utilisation", "login__trend_30d", "support_ticket__count_30d", "plan"]
    flat = fs.frame[cols].assign(customer=fs.frame["account_id"] + "@" + fs.frame["as_of"].dt.strftime("%Y%m"))
    flat["plan"] = flat["plan"].astype(str)
    flat["Churn"] = fs.frame["churn"]
    flat.to_csv(fresh_store / "book.csv", index=False)
    train_table(fresh_store / "book.csv", target="Churn", id_col="customer", max_rounds=50)
    run = score_table(fresh_store / "book.csv", fresh_store / "scored.csv", id_col="customer")
    out = pd.read_csv(run.out)
    assert list(out.columns[:3]) == ["customer", "churn_risk", "reason_1"] and len(out) == len(flat)
    assert out["churn_risk"].between(0, 1).all() and out["reason_1"].str.contains("pts risk").mean() > 0.95
    assert (out["churn_model_version"] == 1).all()
    flat.drop(columns=["plan"]).to_csv(fresh_store / "less.csv", index=False)
    with pytest.raises(DataError, match="plan"):
        score_table(fresh_store / "less.csv", fresh_store / "x.csv", id_col="customer")
    with pytest.raises(DataError, match="missing column.*account_id"):
        score_table(fresh_store / "book.csv", fresh_store / "x.csv", id_col="account_id")
    remembered = score_table(fresh_store / "book.csv", fresh_store / "again.csv").scored  # no id: the model's own
    assert remembered.columns[0] == "customer" and remembered["churn_risk"].equals(run.scored["churn_risk"])
    assert not (fresh_store / "x.csv").exists()
