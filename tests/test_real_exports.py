"""Data shaped like real exports: junk is survived and reported, broken input refused, missing user ids
leave user metrics absent, today's CRM state never becomes a feature, and declarations travel with the model.

The folders come from `tests/exports.py` (the demo world plus the mess of real CRM, billing and
product-analytics exports). One real training run on the messiest of them (module fixture) backs
the end-to-end checks; everything else reads tables and builds features only.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console

import features.metrics
from features.attributes import Attributes, churned_by_data_end, screen_attributes
from features.build import build_features, metric_set_for
from features.metrics import DEFAULT_YAML, MetricSet, default_metric_set
from features.pipeline import features_to_file
from features.tables import DataError, Tables, load_tables, validate_tables
from tests import exports as ex
from tests.world import small_world

E2E_ROUNDS = 30  # enough trees for reasons to exist; the model's quality is not what is tested here


def clean_and(demo_dir: Path, tmp_path: Path, *changes) -> tuple:
    """(the clean demo tables, the tables of an export-shaped copy with `changes`)."""
    return load_tables(demo_dir), load_tables(ex.export_copy(demo_dir, tmp_path / "export", *changes))


def row_hashes(tables) -> np.ndarray:
    """The events as a sorted array of row hashes: equal exactly when the two tables hold the same rows."""
    cols = ["account_id", "timestamp", "event", "user_id", "count", "value"]
    events = tables.events[cols].astype({"account_id": str, "event": str, "user_id": str})
    return np.sort(pd.util.hash_pandas_object(events, index=False).to_numpy())


# ------------------------------------------------------------------------------------ junk rows


def test_qa_account_events_are_dropped_and_named(demo_dir, tmp_path):
    clean, export = clean_and(demo_dir, tmp_path, ex.with_qa_account)
    q = export.quality
    assert q.unknown_account_events == 25
    assert q.unknown_event_accounts == {ex.QA_ACCOUNT: 25}
    assert any("internal-qa-bot (25 rows)" in w and w.startswith("events: dropped 25 row(s)") for w in q.warnings())
    assert ex.QA_ACCOUNT not in set(export.events["account_id"].astype(str))
    np.testing.assert_array_equal(row_hashes(export), row_hashes(clean))


def test_many_stray_ids_are_named_with_the_most_rows_first_and_capped(demo_dir, tmp_path):
    frames = ex.with_stray_accounts(ex.read_world(demo_dir), accounts=12, rows_each=3)
    frames = ex.with_qa_account(frames, rows=40)
    tables = validate_tables(frames)
    line = next(w for w in tables.quality.warnings() if "not in accounts" in w)
    assert "76 row(s) of 13 account(s)" in line
    assert line.split(": ", 2)[2].startswith("internal-qa-bot (40 rows), deleted-trial-0000 (3 rows)")
    assert line.endswith("and 8 more")
    assert tables.quality.unknown_account_events == 76


def test_a_broken_join_key_is_refused_naming_rows(demo_dir):
    frames = ex.with_renamed_keys(ex.read_world(demo_dir), share=0.3)
    with pytest.raises(DataError) as err:
        validate_tables(frames)
    message = str(err.value)
    assert message.startswith("events.account_id: account not found in accounts (")
    assert "crm-ACC-" in message and "row " in message  # the offending rows are shown
    assert "TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE" in message and "5.0%" in message


def test_the_unknown_share_setting_is_honoured(demo_dir, monkeypatch):
    broken = ex.with_renamed_keys(ex.read_world(demo_dir), share=0.3)
    monkeypatch.setenv("TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE", "0.5")
    tables = validate_tables(broken)
    assert 0.25 < tables.quality.unknown_account_events / tables.quality.event_rows < 0.35
    monkeypatch.setenv("TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE", "0")
    with pytest.raises(DataError, match="internal-qa-bot"):  # zero tolerance: even one QA account is refused
        validate_tables(ex.with_qa_account(ex.read_world(demo_dir)))
    for garbage in ("lots", "1.5"):
        monkeypatch.setenv("TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE", garbage)
        with pytest.raises(DataError, match="TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE must be a share between 0 and 1"):
            validate_tables(ex.read_world(demo_dir))


def test_subscriptions_of_unknown_accounts_follow_the_same_rule(demo_dir):
    frames = ex.read_world(demo_dir)
    subs = frames["subscriptions"]
    stray = subs.iloc[:2].assign(account_id="deleted-trial-7")
    tables = validate_tables(frames | {"subscriptions": pd.concat([subs, stray], ignore_index=True)})
    assert tables.quality.unknown_subscription_accounts == {"deleted-trial-7": 2}
    assert "subscriptions: dropped 2 row(s) of 1 account(s) not in accounts: deleted-trial-7" in " ".join(
        tables.quality.warnings()
    )
    assert len(tables.subscriptions) == len(subs)
    broken = subs.assign(account_id="X" + subs["account_id"].astype(str))
    with pytest.raises(DataError, match=r"subscriptions\.account_id: account not found in accounts \(100\.0%"):
        validate_tables(frames | {"subscriptions": broken})


def test_a_duplicated_batch_is_counted_and_dropped(demo_dir, tmp_path):
    clean, export = clean_and(demo_dir, tmp_path, ex.with_duplicate_batch)
    raw = ex.read_world(tmp_path / "export")["events"]
    assert export.quality.duplicate_events == int(raw.duplicated().sum()) >= 2000
    assert "exact duplicate row(s)" in export.quality.warnings()[0]
    np.testing.assert_array_equal(row_hashes(export), row_hashes(clean))


def test_impossible_timestamps_are_dropped_and_do_not_move_the_data_end(demo_dir, tmp_path):
    clean, export = clean_and(demo_dir, tmp_path, ex.with_clock_errors)
    q = export.quality
    assert (q.future_events, q.early_events) == (1, 1)
    assert export.data_end == clean.data_end
    assert (q.future_first, q.export_end) == ("2099-01-01", str((clean.data_end - pd.Timedelta(days=1)).date()))
    text = " ".join(q.warnings())
    assert (
        f"dropped 1 row(s) dated 2099-01-01 or later, more than 30 days after the export's last day {q.export_end}"
        in text
    )
    assert "dropped 1 row(s) dated more than 90 days before their account's created_at" in text
    np.testing.assert_array_equal(row_hashes(export), row_hashes(clean))


def test_genuine_history_loses_nothing_to_the_timestamp_rules():
    world = small_world()
    q = world.quality
    assert (q.future_events, q.early_events, q.unknown_account_events, q.duplicate_events) == (0, 0, 0, 0)
    assert q.warnings() == []
    # an outage of two months inside the history, and a late but steady tail, are not clock errors
    events = world.events[~world.events["timestamp"].between("2025-03-01", "2025-05-01")]
    again = validate_tables({"accounts": world.accounts, "subscriptions": world.subscriptions, "events": events})
    assert again.quality.future_events == 0 and again.data_end == world.data_end


# ------------------------------------------------------------------------------ no user ids


@pytest.mark.parametrize("change", [ex.without_user_id, ex.with_empty_user_id])
def test_without_user_ids_user_metrics_are_absent_not_zero(demo_dir, tmp_path, change):
    clean, export = clean_and(demo_dir, tmp_path, change)
    assert clean.has_users and not export.has_users
    fs = build_features(export, [export.data_end])
    user_based = [n for n in fs.frame.columns if "users" in n or n == "seat_utilisation"]
    assert user_based == []
    assert "tickets_per_active_user_30d" not in fs.names
    assert not any("user" in d and "active" in d for d in fs.descriptions.values())
    with_users = build_features(clean, [clean.data_end])
    assert {"activity__users_30d", "seat_utilisation", "tickets_per_active_user_30d"} <= set(with_users.names)


def test_a_metric_set_that_counts_users_refuses_events_without_them(demo_dir, tmp_path):
    _, export = clean_and(demo_dir, tmp_path, ex.without_user_id)
    with_users = default_metric_set(sorted(export.events["event"].unique()), users=True)
    with pytest.raises(DataError, match="events: no user_id .* but the metric set counts users"):
        build_features(export, [export.data_end], with_users)


# --------------------------------------------------------------------------- account attributes


@pytest.fixture(scope="module")
def crm_tables(demo_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("crm")
    return load_tables(ex.export_copy(demo_dir, folder, ex.with_crm_status, ex.with_date_and_id_columns))


def test_the_screen_refuses_todays_crm_state_and_keeps_static_traits(crm_tables):
    screen = screen_attributes(crm_tables, Attributes())  # nothing declared: the screen alone
    assert set(screen.chosen) == {"industry", "region", "employees", "plan", "segment"}
    for col in ("status", "cancel_reason"):
        assert "separate churned from in-force accounts (AUC" in screen.excluded[col]
        assert screen.separation[col] > 0.95
    assert all(screen.separation[c] < 0.75 for c in screen.chosen)
    assert screen.excluded["last_contacted"].startswith("date-like")
    assert screen.excluded["crm_ref"].startswith("id-like") and screen.excluded["hubspot_id"].startswith("id-like")
    assert "accounts.status excluded: its values separate churned from in-force accounts" in " ".join(screen.warnings())


def test_accounts_that_never_subscribed_are_not_taken_for_churned(crm_tables):
    prospects = pd.DataFrame(
        {"account_id": [f"LEAD-{i}" for i in range(200)], "created_at": crm_tables.accounts["created_at"].iloc[0]}
    ).assign(industry="prospect-only", region="EU", employees=10, plan="none", segment="smb")
    tables = Tables(
        pd.concat([crm_tables.accounts, prospects], ignore_index=True), crm_tables.subscriptions, crm_tables.events
    )
    churned = churned_by_data_end(tables)
    assert len(churned) == crm_tables.subscriptions["account_id"].nunique()
    assert not churned.index.isin(range(len(crm_tables.accounts), len(tables.accounts))).any()
    screen = screen_attributes(tables, Attributes())
    assert "industry" in screen.chosen and "status" in screen.excluded  # 200 leads did not make industry a leak


def test_a_book_too_small_to_screen_says_so(crm_tables):
    few = crm_tables.accounts.iloc[:15]
    tables = Tables(
        few,
        crm_tables.subscriptions[crm_tables.subscriptions["account_id"].isin(few["account_id"])],
        crm_tables.events[crm_tables.events["account_id"].isin(few["account_id"])],
    )
    screen = screen_attributes(tables, Attributes())
    assert screen.unscreened and "status" in screen.chosen  # nothing to tell state from trait with
    assert "not screened for today's state: fewer than 10 churned or in-force accounts" in screen.warnings()[-1]


def test_shipped_declarations_exclude_common_state_columns(crm_tables):
    fs = build_features(crm_tables, [crm_tables.data_end])
    assert fs.attribute_screen.excluded["status"] == "listed in attributes.exclude of the metrics file"
    assert fs.metrics.attributes.chosen == ("industry", "region", "employees", "plan", "segment")
    assert not {"status", "cancel_reason", "last_contacted", "crm_ref", "hubspot_id"} & set(fs.names)


def test_static_and_exclude_declarations_are_honoured_and_static_columns_still_screened(crm_tables, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"attributes": {"static": ["Industry", "plan", "status"], "exclude": ["PLAN"]}}))
    fs = build_features(crm_tables, [crm_tables.data_end], metric_set_for(crm_tables, path))
    assert fs.metrics.attributes.chosen == ("industry",)
    assert fs.attribute_screen.excluded["plan"] == "listed in attributes.exclude of the metrics file"
    assert fs.attribute_screen.excluded["region"] == "not declared static in the metrics file"
    assert "AUC" in fs.attribute_screen.excluded["status"]  # declared static, refused all the same


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("status", "'attributes' takes only 'static' and 'exclude' lists"),
        ({"exclude": "status"}, "attributes.exclude must be a list of column names"),
        ({"keep": ["plan"]}, "'attributes' takes only 'static' and 'exclude' lists"),
        ({"static": ["no_such_column"]}, "attributes.static names column(s) the accounts table lacks"),
        ("attribute", "unknown section(s) attribute; use event_labels, event_directions, metrics, ratios, attributes"),
    ],
)
def test_a_malformed_attribute_declaration_is_named(crm_tables, tmp_path, section, message):
    path = tmp_path / "m.yaml"
    spec = {"attribute": {"exclude": ["plan"]}} if section == "attribute" else {"attributes": section}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(DataError) as err:
        build_features(crm_tables, [crm_tables.data_end], metric_set_for(crm_tables, path))
    assert message in str(err.value)


def test_a_stored_attribute_list_is_used_as_it_is(crm_tables):
    decided = build_features(crm_tables, [crm_tables.data_end]).metrics
    stored = MetricSet.from_dict(json.loads(json.dumps(decided.to_dict())))
    assert stored == decided
    pinned = MetricSet(stored.windows, stored.derived, Attributes(chosen=("status", "region")))
    fs = build_features(crm_tables, [crm_tables.data_end], pinned)
    assert fs.attribute_screen is None  # no screen at scoring: the model's list is the list
    assert fs.names[-2:] == ["status", "region"]
    without = crm_tables.accounts.drop(columns="region")
    gone = Tables(without, crm_tables.subscriptions, crm_tables.events)
    with pytest.raises(DataError, match="accounts: missing attribute column.s. region that the model was trained with"):
        build_features(gone, [crm_tables.data_end], pinned)


def test_the_features_command_prints_what_was_cleaned(demo_dir, tmp_path):
    folder = ex.export_copy(demo_dir, tmp_path / "export", ex.with_qa_account, ex.with_crm_status)
    out = io.StringIO()
    path, rows = features_to_file(folder, ["2026-10-01"], tmp_path / "f.parquet", console=Console(file=out, width=300))
    text = out.getvalue()
    assert rows > 0 and path.exists()
    assert "warning: events: dropped 25 row(s) of 1 account(s) not in accounts: internal-qa-bot" in text
    assert "warning: accounts.status excluded" in text


# ------------------------------------------------- end to end: train and score a real-looking export


@pytest.fixture(scope="module")
def export_run(demo_dir, tmp_path_factory):
    """One training run on the messiest export, with a --metrics file that replaces the shipped one.

    The file keeps the shipped labels and metrics, adds `logins_14d`, excludes `segment` and leaves
    `status` undeclared, so only the screen can refuse it. Its own MLflow store, for this module only.
    """
    from training.pipeline import train

    root = tmp_path_factory.mktemp("export_run")
    data = ex.export_copy(demo_dir, root / "data", ex.real_export)
    spec = yaml.safe_load(DEFAULT_YAML.read_text())
    spec["metrics"].append(
        {"name": "logins_14d", "events": ["login"], "agg": "count", "window_days": 14, "description": "logins, 14 d"}
    )
    spec["attributes"] = {"exclude": ["segment"]}
    metrics_yaml = root / "my_metrics.yaml"
    metrics_yaml.write_text(yaml.safe_dump(spec))
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("TIERWISE_MLRUNS", str(root))
        out = io.StringIO()
        result = train(
            data, seed=0, max_rounds=E2E_ROUNDS, console=Console(file=out, width=300), metrics_yaml=metrics_yaml
        )
        yield {"data": data, "root": root, "result": result, "output": out.getvalue(), "mp": mp}
    mlflow.set_tracking_uri(previous)


def test_training_output_and_run_say_what_was_cleaned_and_refused(export_run):
    text = export_run["output"]
    assert "warning: events: dropped 25 row(s) of 1 account(s) not in accounts: internal-qa-bot (25 rows)" in text
    assert "exact duplicate row(s)" in text and "a wrong device clock" in text and "before their account's" in text
    assert "warning: accounts.status excluded: its values separate churned from in-force accounts (AUC" in text
    assert "warning: accounts.segment excluded: listed in attributes.exclude of the metrics file" in text
    run = MlflowClient().get_run(export_run["result"].run_id)
    m, p = run.data.metrics, run.data.params
    assert m["data_quality_unknown_account_events"] == 25
    assert m["data_quality_duplicate_events"] >= 2000
    assert (m["data_quality_future_events"], m["data_quality_early_events"]) == (1, 1)
    assert m["data_quality_excluded_attributes"] == 6
    assert p["events_have_user_ids"] == "False"
    assert {"status", "cancel_reason", "segment", "last_contacted", "crm_ref", "hubspot_id"} == set(
        p["attributes_excluded"].split(",")
    )
    report = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/data_quality.json")
    assert report["tables"]["unknown_event_accounts"] == {ex.QA_ACCOUNT: 25}
    assert "AUC" in report["attributes"]["excluded"]["status"]
    assert any("internal-qa-bot" in w for w in report["warnings"])


def test_a_model_without_user_ids_has_no_user_features_and_says_nothing_of_users(export_run, tmp_path):
    from serving.batch import score_to_file

    bundles = export_run["result"].bundles
    for bundle in bundles.values():
        assert not [f for f in bundle.features if "users" in f or f == "seat_utilisation"]
        assert not bundle.metrics.uses_users
        assert bundle.metrics.attributes.chosen == ("industry", "region", "employees", "plan")
    as_of = load_tables(export_run["data"]).data_end.date()
    run = score_to_file(export_run["data"], as_of, tmp_path / "s.parquet")
    reasons = run.scored.filter(like="reason").fillna("").astype(str).agg(" ".join, axis=1).str.lower()
    assert reasons.str.len().sum() > 0  # there are reasons, and none of them is about users
    for words in ("active users", "users active", "seat utilisation", "seat utilization"):
        assert not reasons.str.contains(words).any()
    assert any("internal-qa-bot" in w for w in run.warnings)


def test_scoring_uses_the_declarations_stored_with_the_model_never_the_default_file(export_run, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from serving.registry import load_models
    from tierwise.cli import app

    monkeypatch.setattr(features.metrics, "DEFAULT_YAML", tmp_path / "removed.yaml")
    with pytest.raises(DataError, match="removed.yaml"):  # whoever still read the default file would fail
        default_metric_set(["login"])
    models = load_models()
    assert "logins_14d" in models.churn.features and "segment" not in models.churn.features
    as_of = str(load_tables(export_run["data"]).data_end.date())
    out = tmp_path / "s.csv"
    done = CliRunner().invoke(app, ["score", "--data", str(export_run["data"]), "--as-of", as_of, "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "warning: events: dropped 25 row(s) of 1 account(s) not in accounts: internal-qa-bot" in done.output
    scored = pd.read_csv(out)
    assert len(scored) > 0 and scored["churn_risk"].between(0, 1).all()


def test_train_cli_refuses_a_bad_metrics_file_before_any_work(demo_dir, tmp_path, fresh_store):
    from typer.testing import CliRunner

    from tierwise.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics: [unclosed")
    for args, message in (
        (["--data", str(demo_dir), "--metrics", str(tmp_path / "none.yaml")], "none.yaml"),
        (["--data", str(demo_dir), "--metrics", str(bad)], "metrics file"),
        (["--table", str(tmp_path / "t.csv"), "--metrics", str(bad)], "give it with --data, not with --table"),
    ):
        done = CliRunner().invoke(app, ["train", *args])
        assert isinstance(done.exception, DataError), done.output  # `tierwise` turns it into one `error:` line
        assert message in str(done.exception)
    assert not list(Path(fresh_store).glob("**/bundle.json"))
