"""Adoption personas: the usage mix, learning and naming, stability between runs, and where they show up."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from features.build import build_features, metric_set_for
from features.demo_world import USE_CASES, USE_CASES_FILE, hidden_use_cases, simulate, write_demo_world
from features.errors import DataError
from features.personas import NOT_ADOPTED, Personas, usage_families, usage_mix
from features.policy import DEFAULT_POLICY, load_policy
from features.tables import load_tables, validate_tables
from serving.live import lookup_answers
from serving.registry import load_models
from serving.scoring import OUTPUT, score_frame
from training.personas import carry_names, learn_personas

AS_OF = pd.Timestamp("2025-06-01")


def tiny_tables(extra_events: list[tuple] = ()) -> object:
    """Two accounts in force on AS_OF; A's events are counted by hand in the tests below."""
    accounts = pd.DataFrame({"account_id": ["A", "B"], "created_at": pd.to_datetime(["2024-01-01", "2024-01-01"])})
    subs = pd.DataFrame(
        {
            "account_id": ["A", "B"],
            "start_date": pd.to_datetime(["2024-01-01", "2024-01-01"]),
            "end_date": pd.to_datetime(["2026-01-01", "2026-01-01"]),
            "arr": [1000.0, 1000.0],
            "seats": [5, 5],
        }
    )
    day = AS_OF - pd.Timedelta(days=10)
    rows = (
        [("A", day, "login", 1)] * 10
        + [("A", day - pd.Timedelta(days=40), "report_exported", 3)] * 10  # count 3 each: 30 exports
        + [("A", day, "support_ticket", 1)] * 5  # not usage: tickets are not declared healthier
        + [("A", AS_OF, "report_exported", 1)] * 50  # on the as-of date: not seen (point in time)
        + [("A", AS_OF - pd.Timedelta(days=100), "login", 1)] * 7  # before the 90-day window
        + [("B", day, "login", 1)] * 3
        + [("B", day, "integration_sync", 1)]
        + list(extra_events)
    )
    events = pd.DataFrame(rows, columns=["account_id", "timestamp", "event", "count"])
    events["timestamp"] += pd.to_timedelta(np.arange(len(events)) % 600, unit="s")  # no exact duplicates (dropped)
    events["user_id"] = events["account_id"] + "-u1"
    return validate_tables({"accounts": accounts, "subscriptions": subs, "events": events})


def test_usage_mix_on_a_hand_made_table_sees_only_the_90_days_before_as_of():
    tables = tiny_tables()
    fs = build_features(tables, [AS_OF])
    families = usage_families(fs.metrics)
    names = [f.name for f in families]
    assert "support_ticket" not in names and {"login", "report_exported", "integration_sync"} <= set(names)
    mix = usage_mix(fs.frame, families)
    a, b = (fs.frame["account_id"] == "A").to_numpy(), (fs.frame["account_id"] == "B").to_numpy()
    share = dict(zip(names, mix.shares[a][0], strict=True))
    assert mix.volume[a][0] == 40  # 10 logins + 30 exports; the 50 exports on AS_OF and the old logins unseen
    assert share["login"] == pytest.approx(0.25) and share["report_exported"] == pytest.approx(0.75)
    assert share["integration_sync"] == 0 and mix.breadth[a][0] == 2
    assert mix.volume[b][0] == 4 and mix.breadth[b][0] == 2
    later = build_features(tables, [AS_OF + pd.Timedelta(days=1)])
    assert usage_mix(later.frame, families).volume[a][0] == 90  # the as-of day's exports count the day after


def test_too_little_activity_is_not_adopted_and_a_missing_count_column_is_named():
    tables = tiny_tables()
    fs = build_features(tables, [AS_OF])
    families = usage_families(fs.metrics)
    personas = Personas(
        families=families,
        centroids=np.sqrt(np.eye(len(families))),
        names=[f"{f.name}-led" for f in families],
        descriptions=[""] * len(families),
        book_shares=np.full(len(families), 1 / len(families)),
        renewing_days=np.zeros((len(families), len(families))),
    )
    assigned = dict(zip(fs.frame["account_id"], personas.assign(fs.frame), strict=True))
    assert assigned == {"A": "report_exported-led", "B": NOT_ADOPTED}  # B: 4 usage events in 90 days
    with pytest.raises(DataError, match="login__count_90d"):
        personas.assign(fs.frame.drop(columns=["login__count_90d"]))
    assert learn_personas(fs.frame, fs.metrics) is None  # one active row: nothing to learn personas from


@pytest.fixture(scope="module")
def book(trained_store):
    """The champions and the demo book's features on the last day of data."""
    models = load_models()
    tables = load_tables(trained_store.data_dir)
    return models, build_features(tables, [tables.data_end], metrics=models.churn.metrics).frame


def test_training_stores_personas_with_both_models_chosen_by_a_stated_rule(trained_store, book):
    models, _ = book
    personas = models.churn.personas
    assert personas is not None and models.growth.personas.names == personas.names
    chosen = personas.selection["chosen"]
    assert len(personas.names) == chosen >= 2 and len(set(personas.names)) == chosen
    ks = personas.selection["ks"]
    assert ks[str(chosen)]["stability"] >= 0.8 or max(q["stability"] for q in ks.values()) < 0.8
    assert all(d.startswith("Accounts whose last 90 days") for d in personas.descriptions)
    assert {"churn_rate", "growth_rate", "rows"} <= set(personas.rates[personas.names[0]])


def test_score_output_store_and_answers_carry_the_persona(book):
    models, frame = book
    scored = score_frame(frame, models, reasons=False)
    assert list(scored.columns) == OUTPUT
    assert set(scored["persona"]) <= models.churn.personas.known
    assert scored["persona"].nunique() >= 2
    gaps = scored["adoption_gaps"].dropna()
    assert len(gaps) and gaps.str.contains(r"renewing .+ accounts have .+ on \d+ of the last 30 days").all()
    answer = next(iter(lookup_answers(scored).values()))
    assert answer["persona"] in models.churn.personas.known


def test_a_slight_perturbation_barely_moves_assignments_and_a_marked_change_moves_one(book):
    models, frame = book
    personas = models.churn.personas
    before = personas.assign(frame)
    noisy = frame.copy()
    rng = np.random.default_rng(0)
    for family in personas.families:  # +-5% on every usage count
        noisy[family.count_column] = frame[family.count_column] * rng.uniform(0.95, 1.05, len(frame))
    after = personas.assign(noisy, previous=before)
    assert (after != before).mean() <= 0.02
    assert (personas.assign(noisy) != before).mean() >= (after != before).mean()  # the margin holds some back
    adopted = np.flatnonzero(before != NOT_ADOPTED)
    row = adopted[0]
    target = next(i for i, name in enumerate(personas.names) if name != before[row])
    moved = frame.copy()
    volume = sum(frame[f.count_column].iloc[row] for f in personas.families)
    for j, family in enumerate(personas.families):  # the account's mix becomes the other persona's centroid
        moved.loc[moved.index[row], family.count_column] = volume * personas.centroids[target, j] ** 2
    assert personas.assign(moved, previous=before)[row] == personas.names[target]


def test_scoring_with_previous_scores_keeps_a_persona_within_the_margin(book):
    models, frame = book
    personas = models.churn.personas
    scored = score_frame(frame, models, reasons=False)
    dist = personas.distances(personas.mix(frame))
    nearest, second = np.argsort(dist, axis=1)[:, 0], np.argsort(dist, axis=1)[:, 1]
    rows = np.arange(len(frame))
    close = (dist[rows, second] <= dist[rows, nearest] * (1 + personas.margin)) & (scored["persona"] != NOT_ADOPTED)
    assert close.sum() >= 1
    runner_up = np.asarray(personas.names, dtype=object)[second]
    previous = scored[["account_id", "tier", "churn_risk"]].assign(persona=runner_up)
    again = score_frame(frame, models, previous=previous, reasons=False)
    assert (again["persona"][close] == runner_up[close]).all()  # last run's persona held: not clearly overtaken
    far = ~close & (scored["persona"] != NOT_ADOPTED)
    assert (again["persona"][far] == scored["persona"][far]).all()  # clearly overtaken: the nearest persona


def test_a_retrain_keeps_the_names_of_the_same_patterns(book):
    models, frame = book
    previous = dataclasses.replace(models.churn.personas)
    previous.names = [f"team-name-{i}" for i in range(len(previous.names))]  # names a CS team already uses
    metrics = models.churn.metrics
    rows = frame.sample(frac=0.8, random_state=1)
    again = learn_personas(rows, metrics, previous, seed=3)
    matched = [n for n in again.names if n.startswith("team-name-")]
    assert len(matched) >= min(len(again.names), len(previous.names)) - 1
    for name in matched:  # the same name means the same pattern: the nearest previous centroid
        i, j = again.names.index(name), previous.names.index(name)
        assert np.linalg.norm(again.centroids[i] - previous.centroids[j]) <= 0.25
    fresh = carry_names(again, ["core-usage"] * len(again.names), None)
    assert len(set(fresh)) == len(fresh)  # a taken name gets a suffix, never a duplicate


def test_policy_plays_per_persona_and_segment(book, tmp_path):
    models, frame = book
    persona = models.churn.personas.names[0]
    shipped = DEFAULT_POLICY.read_text()
    good = tmp_path / "plays.yaml"
    good.write_text(shipped + f"\nplays:\n  {persona}:\n    nurture: share report templates\n    grow: sell seats\n")
    policy = load_policy(good)
    scored = score_frame(frame, models, policy=policy, reasons=False)
    mine = scored[(scored["persona"] == persona) & scored["segment"].isin(["nurture", "grow"])]
    assert len(mine) and set(mine["play"]) <= {"share report templates", "sell seats"}
    assert scored.loc[scored["persona"] != persona, "play"].isna().all()
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(shipped + "\nplays:\n  reporting-ledd:\n    grow: sell seats\n")
    with pytest.raises(DataError, match="unknown persona.*reporting-ledd.*the model's personas are"):
        score_frame(frame, models, policy=load_policy(unknown), reasons=False)
    segment = tmp_path / "segment.yaml"
    segment.write_text(shipped + f"\nplays:\n  {persona}:\n    upsell: sell seats\n")
    with pytest.raises(DataError, match=f"plays.{persona}.upsell"):
        load_policy(segment)


def test_report_has_a_persona_table(book_report):
    html = book_report.read_text()
    scores = pd.read_parquet(book_report.parent / "scores.parquet")
    assert "<th>Persona</th>" in html
    assert all(name in html for name in scores["persona"].dropna().unique())


def test_hidden_use_cases_stay_out_of_the_tables_and_default_worlds_are_unchanged(tmp_path):
    plain = simulate(60, seed=4)
    with_cases = simulate(60, seed=4, use_cases=True)
    assert plain[0].equals(with_cases[0])  # accounts: same table, no use case column
    assert not plain[2].equals(with_cases[2])  # the events carry the use cases
    write_demo_world(tmp_path, 60, seed=4, use_cases=True)
    truth = pd.read_csv(tmp_path / USE_CASES_FILE, dtype=str)
    assert truth.astype(str).equals(hidden_use_cases(60, 4).astype(str)) and set(truth["use_case"]) <= set(USE_CASES)
    assert "use_case" not in load_tables(tmp_path).accounts.columns


def test_personas_recover_hidden_use_cases(tmp_path):
    write_demo_world(tmp_path, 300, seed=11, use_cases=True)
    tables = load_tables(tmp_path)
    dates = pd.date_range(end=tables.data_end, periods=6, freq="MS")
    frame = build_features(tables, dates, metrics=metric_set_for(tables)).frame
    personas = learn_personas(frame, metric_set_for(tables))
    truth = frame["account_id"].map(hidden_use_cases(300, 11).set_index("account_id")["use_case"])
    assigned = personas.assign(frame)
    adopted = assigned != NOT_ADOPTED
    assert adjusted_rand_score(truth[adopted], assigned[adopted]) >= 0.5
