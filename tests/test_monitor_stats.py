"""The statistics behind `tierwise monitor`, on frames made here (no model, no store): fast and exact."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from features.build import build_features, metric_set_for
from features.demo_world import WorldChanges, simulate
from features.profile import feature_profile, shares
from features.tables import validate_tables
from monitoring.drift import MAJOR_PSI, prediction_drift, psi
from monitoring.estimate import estimate
from monitoring.freshness import MIN_DAYS_AFTER, Silence, change_point, silence_grew, streams
from monitoring.monitor import recent_events
from monitoring.realised import Realised, auc_standard_error, judge, realised


def test_the_estimate_is_what_outcomes_drawn_from_the_probabilities_give_on_average():
    rng = np.random.default_rng(0)
    p = rng.beta(1, 8, 2000)
    draws = [(rng.random(len(p)) < p).astype(int) for _ in range(60)]
    e = estimate(p, "2026-10-01", "3")
    assert e.roc_auc == pytest.approx(np.mean([roc_auc_score(y, p) for y in draws]), abs=0.01)
    assert e.pr_auc == pytest.approx(
        np.mean([average_precision_score(y, p) for y in draws]), abs=0.02
    )  # AP is biased up in a sample
    assert e.brier == pytest.approx(np.mean([np.mean((p - y) ** 2) for y in draws]), abs=0.001)
    assert e.expected_churned == pytest.approx(p.sum())
    assert estimate(np.r_[p[:10], p[:10]], "d", "3").roc_auc < 1  # tied risks are one threshold, not a ranking


def test_the_auc_standard_error_matches_the_spread_of_resampled_aucs():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(40), np.zeros(400)].astype(int)
    score = rng.normal(y * 1.2, 1.0)
    auc = roc_auc_score(y, score)
    boot = []
    for _ in range(150):
        pos = rng.choice(40, 40)
        neg = 40 + rng.choice(400, 400)
        idx = np.r_[pos, neg]
        boot.append(roc_auc_score(y[idx], score[idx]))
    assert auc_standard_error(auc, 40, 400) == pytest.approx(np.std(boot), rel=0.25)
    assert np.isnan(auc_standard_error(float("nan"), 0, 10))


def batch(as_of: str, auc: float, se: float) -> Realised:
    return Realised(as_of, "1", 500, 40, 40.0, auc, se, 0.3, 0.05, 3.0, 0.8)


def test_degraded_needs_the_whole_margin_and_widens_it_with_the_number_of_batches():
    one = judge([batch("a", 0.70, 0.05)], promised_auc=0.85)
    assert one[0].degraded and one[0].margin == pytest.approx(1.645 * 0.05, abs=1e-3)
    assert not judge([batch("a", 0.80, 0.05)], promised_auc=0.85)[0].degraded  # within the noise of 40 churners
    many = judge([batch(str(i), 0.77, 0.05) for i in range(20)], promised_auc=0.85)
    assert not any(b.degraded for b in many)  # 0.77 + 0.05 * z(0.05 / 20) = 0.90 > 0.85
    assert not judge([batch("a", 0.1, 0.05)], promised_auc=float("nan"))[0].degraded  # nothing promised


def test_realised_figures_of_a_batch():
    rows = pd.DataFrame(
        {
            "churn": [1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            "churn_risk": [0.9, 0.1, 0.2, 0.3, 0.05, 0.1, 0.4, 0.1, 0.2, 0.1],
            "arr": [100.0, 5, 5, 300, 5, 5, 5, 5, 5, 5],
            "tier": ["high_touch", *["tech_touch"] * 9],
        }
    )
    r = realised(rows, "2026-01-01", "1")
    assert r.roc_auc == pytest.approx(roc_auc_score(rows["churn"], rows["churn_risk"]))
    assert r.arr_recall_touched == pytest.approx(100 / 400)  # the 300 ARR churner sat in tech touch
    assert r.lift_top_decile == pytest.approx(1 / 0.2)
    assert sum(b["rows"] for b in r.reliability) == 10 and (r.churned, r.rows) == (2, 10)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, 5000)
    assert prediction_drift(base, rng.normal(0, 1, 5000)) < 0.02
    assert prediction_drift(base, rng.normal(1, 1, 5000)) > MAJOR_PSI
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_the_profile_bins_missing_values_apart_and_merges_calendar_details():
    frame = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2026-06-01"),
            "term": [30.0, 31.0] * 50 + [365.0] * 100,
            "logins": [np.nan] * 20 + list(range(180)),
            "plan": ["a", "b"] * 100,
        }
    )
    profile = feature_profile(frame, ["term", "logins", "plan"], ["plan"])["features"]
    assert profile["term"]["edges"] == [31.0, 365.0]  # 30- and 31-day months are one bin
    assert profile["logins"]["shares"][-1] == pytest.approx(0.1)  # the missing bin
    assert shares(profile["plan"], pd.Series(["a", "c"])).tolist() == [0.5, 0.0, 0.5]  # unseen: last bin
    only_july = pd.Series([31.0] * 50 + [365.0] * 50)
    assert psi(profile["term"]["shares"], shares(profile["term"], only_july)) < 0.01


def daily(rates: list[tuple[int, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.poisson(rate, days) for days, rate in rates]).astype(float)


def test_change_points_find_stops_and_collapses_but_not_noise_or_a_quiet_weekend():
    assert change_point(daily([(180, 40.0)])) is None
    k, before, after = change_point(daily([(150, 40.0), (30, 0.0)]))
    assert (k, after) == (150, 0.0) and before == pytest.approx(40, rel=0.1)
    k, before, after = change_point(daily([(120, 40.0), (60, 10.0)]))
    assert k == pytest.approx(120, abs=3) and after / before < 0.5
    assert change_point(daily([(178, 40.0), (2, 0.0)])) is None  # a weekend, shorter than MIN_DAYS_AFTER
    assert change_point(daily([(173, 0.2), (MIN_DAYS_AFTER, 0.0)])) is None  # a rare event's quiet week


def test_sources_are_watched_like_event_types():
    days = pd.date_range("2026-03-01", "2026-08-31", freq="D")
    events = pd.DataFrame(
        {
            "timestamp": days.repeat(4) + pd.Timedelta(hours=9),
            "event": "login",
            "source": np.tile(["web", "mobile"], len(days) * 2),
        }
    )
    events = events[~((events["source"] == "mobile") & (events["timestamp"] >= "2026-08-01"))]
    found = {(s.kind, s.name): s for s in streams(events, pd.Timestamp("2026-09-01"))}
    assert found[("event", "login")].status == "collapsed" and found[("event", "login")].since == "2026-08-01"
    assert (found[("source", "mobile")].status, found[("source", "mobile")].since) == ("stopped", "2026-08-01")
    assert found[("source", "web")].status == "ok"


def test_silent_accounts_alarm_only_when_the_share_clearly_grew():
    def silence(silent: int, total: int) -> Silence:
        return Silence("2026-10-01", 30, total, silent, [])

    assert not silence_grew(silence(6, 300), silence(3, 300))
    assert silence_grew(silence(60, 300), silence(6, 300))


def test_the_newest_batch_features_from_recent_events_equal_those_from_all_events():
    tables = validate_tables(dict(zip(("accounts", "subscriptions", "events"), simulate(80, seed=4), strict=True)))
    metrics = metric_set_for(tables)
    as_of = pd.Timestamp("2026-10-01")
    full = build_features(tables, [as_of], metrics=metrics)
    recent = recent_events(tables, as_of, full.metrics)
    assert len(recent.events) < 0.6 * len(tables.events)  # the metrics reach back a year at most
    pd.testing.assert_frame_equal(build_features(recent, [as_of], metrics=full.metrics).frame, full.frame)


def test_the_demo_world_options_break_only_what_they_name():
    plain = simulate(150, seed=3)
    assert all(a.equals(b) for a, b in zip(plain, simulate(150, seed=3, changes=WorldChanges()), strict=True))
    _, _, events = simulate(150, seed=3, changes=WorldChanges(tracking_stop=("login", date(2026, 8, 1))))
    logins = events[events["event"] == "login"]
    assert logins["timestamp"].max() < pd.Timestamp("2026-08-01") <= events["timestamp"].max()
    kept = plain[2][(plain[2]["event"] != "login") | (plain[2]["timestamp"] < pd.Timestamp("2026-08-01"))]
    assert kept.reset_index(drop=True).equals(events)
    (found,) = [
        s for s in streams(events, events["timestamp"].max().normalize() + pd.Timedelta(days=1)) if s.status != "ok"
    ]
    assert (found.name, found.status, found.since) == ("login", "stopped", "2026-08-01")
    shifted = simulate(150, seed=3, changes=WorldChanges(concept_shift=date(2026, 1, 1)))
    assert shifted[0].equals(plain[0])  # the same book; only who leaves after the shift differs
    assert not shifted[1].equals(plain[1])
