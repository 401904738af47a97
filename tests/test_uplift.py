"""Expected expansion by peers: the uplift an account's own peer group realised, a thin group falls back."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.bundle import ModelBundle
from features.metrics import MetricSet
from features.tables import DataError, load_tables
from features.uplift import FALLBACK_UPLIFT, MIN_GROWERS, PeerUplift
from serving.registry import load_models
from serving.scoring import expected_uplift, score_frame
from training.snapshots import snapshots


def book(groups: dict[str, tuple[int, float, float]], seed: int = 0) -> pd.DataFrame:
    """Snapshot rows per plan: (growing accounts, their uplift, their ARR), each with as many non-growers."""
    rng = np.random.default_rng(seed)
    parts = []
    for plan, (n, uplift, arr) in groups.items():
        for grew in (1, 0):
            parts.append(
                pd.DataFrame(
                    {
                        "account_id": [f"{plan}-{grew}-{i}" for i in range(n)],
                        "plan": plan,
                        "arr": arr * rng.uniform(0.9, 1.1, n),
                        "growth": grew,
                        "uplift": uplift * rng.uniform(0.8, 1.2, n) if grew else 0.0,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def test_each_plan_gets_the_growth_its_own_growers_realised_and_a_thin_plan_the_book_mean():
    frame = book({"starter": (30, 0.6, 2_000), "enterprise": (30, 0.1, 90_000), "pilot": (MIN_GROWERS - 1, 2.0, 500)})
    peers = PeerUplift.fit(frame, by_plan=True)
    grown = frame[frame["growth"] == 1]
    realised = grown.groupby("plan")["uplift"].mean()
    assert peers.by == "plan" and peers.book == pytest.approx(grown["uplift"].mean())
    by_peer = {g["peer"]: g for g in peers.groups}
    assert by_peer["starter"]["uplift"] == pytest.approx(realised["starter"])
    assert by_peer["enterprise"]["uplift"] == pytest.approx(realised["enterprise"])
    assert by_peer["pilot"] == {
        "peer": "pilot",
        "growers": MIN_GROWERS - 1,
        "realised": pytest.approx(realised["pilot"]),
        "uplift": peers.book,
    }
    rows = {"plan": np.array(["starter", "enterprise", "pilot", "platinum", None], dtype=object)}
    uplift = peers.uplift(rows)
    assert uplift[0] > 3 * uplift[1]  # same potential and ARR, different peers: different expected expansion
    np.testing.assert_allclose(uplift, [realised["starter"], realised["enterprise"], *[peers.book] * 3])


def test_growers_are_counted_as_accounts_not_snapshots():
    frame = book({"starter": (30, 0.6, 2_000), "growth": (2, 0.3, 9_000)})
    repeated = frame[frame["plan"] == "growth"]
    frame = pd.concat([frame, *[repeated] * 20], ignore_index=True)  # two accounts growing on 21 snapshots each
    used = {g["peer"]: (g["growers"], g["uplift"]) for g in PeerUplift.fit(frame, by_plan=True).groups}
    assert used["growth"][0] == 2 and used["growth"][1] == pytest.approx(book_mean(frame))


def book_mean(frame: pd.DataFrame) -> float:
    return frame.loc[frame["growth"] == 1, "uplift"].mean()


def test_without_a_plan_peers_are_arr_bands_learnt_in_training():
    frame = book({"small": (40, 0.6, 2_000), "mid": (40, 0.3, 10_000), "large": (40, 0.1, 80_000)}).drop(columns="plan")
    peers = PeerUplift.fit(frame, by_plan=False)
    assert peers.by == "arr_band" and len(peers.arr_edges) == 3
    assert peers.arr_edges == pytest.approx(np.quantile(frame["arr"], [0.25, 0.5, 0.75]).tolist())
    assert [g["peer"] for g in peers.groups][0].startswith("ARR under ")
    uplift = peers.uplift({"arr": np.array([1_000.0, 200_000.0, np.nan])})
    assert uplift[0] == pytest.approx(0.6, rel=0.1) and uplift[1] == pytest.approx(0.1, rel=0.1)
    assert uplift[2] == peers.book  # no ARR, no band


def test_the_peer_table_survives_the_json_the_bundle_is_stored_in():
    frame = book({"starter": (30, 0.6, 2_000), "pilot": (1, 2.0, 500)})
    peers = PeerUplift.fit(frame, by_plan=True)
    again = PeerUplift.from_dict(json.loads(json.dumps(peers.as_dict())))
    rows = {"plan": np.array(["starter", "pilot"], dtype=object)}
    np.testing.assert_array_equal(again.uplift(rows), peers.uplift(rows))


def test_a_book_without_growth_uses_the_fallback_uplift():
    frame = book({"starter": (30, 0.6, 2_000)}).assign(growth=0)
    peers = PeerUplift.fit(frame, by_plan=True)
    assert peers.book == FALLBACK_UPLIFT and peers.groups[0]["uplift"] == FALLBACK_UPLIFT


@pytest.mark.slow
def test_the_growth_model_carries_the_peer_uplift_its_snapshots_realised(trained_store):
    growth = trained_store.result.bundles["growth"]
    assert "plan" in growth.features and growth.info["uplift_peers"]["by"] == "plan"
    snap = snapshots(load_tables(trained_store.data_dir))
    grown = snap.frame[(snap.frame["growth"] == 1) & np.isfinite(snap.frame["uplift"])]
    realised = grown.groupby("plan", observed=True)["uplift"].mean()
    accounts = grown.groupby("plan", observed=True)["account_id"].nunique()
    for group in growth.info["uplift_peers"]["groups"]:
        assert group["growers"] == accounts[group["peer"]]
        assert group["realised"] == pytest.approx(realised[group["peer"]])
        kept = group["growers"] >= MIN_GROWERS
        assert group["uplift"] == pytest.approx(realised[group["peer"]] if kept else growth.info["mean_uplift"])


@pytest.mark.slow
def test_scoring_applies_each_accounts_peer_uplift_row_by_row(trained_store):
    models = load_models()
    tables = load_tables(trained_store.data_dir)
    frame = build_features(tables, [tables.data_end], metrics=models.churn.metrics).frame
    plans = sorted(frame["plan"].dropna().astype(str).unique())
    assert len(plans) >= 3
    table = PeerUplift(
        "plan",
        0.25,
        [
            {"peer": plans[0], "growers": 40, "realised": 0.6, "uplift": 0.6},
            {"peer": plans[1], "growers": 40, "realised": 0.1, "uplift": 0.1},
            {"peer": plans[2], "growers": 3, "realised": 3.0, "uplift": 0.25},  # thin: the book mean
        ],
        [],
    )
    growth = dataclasses.replace(models.growth, info=models.growth.info | {"uplift_peers": table.as_dict()})
    scored = score_frame(frame, dataclasses.replace(models, growth=growth), reasons=False)
    scored = scored.merge(frame[["account_id", "plan"]].astype({"plan": str}), on="account_id", validate="1:1")
    scored = scored[scored["arr"] > 0]
    per_unit = scored["expected_expansion"] / (scored["growth_potential"] * scored["arr"])
    np.testing.assert_allclose(per_unit, scored["plan"].map({plans[0]: 0.6, plans[1]: 0.1}).fillna(0.25))
    assert set(np.round(per_unit, 6)) == {0.6, 0.1, 0.25}


def growth_bundle(info: dict) -> ModelBundle:
    return ModelBundle("growth", None, [], {}, {"a": 1.0, "b": 0.0}, MetricSet((), ()), {}, {}, {}, info)


def test_a_growth_model_without_peers_uses_its_book_mean_and_one_without_either_is_refused():
    rows = {"account_id": np.array(["a", "b"]), "arr": np.array([1.0, 2.0]), "plan": np.array(["x", "y"])}
    np.testing.assert_array_equal(expected_uplift(growth_bundle({"mean_uplift": 0.3}), rows), [0.3, 0.3])
    with pytest.raises(DataError, match="lacks info.uplift_peers.*retrain"):
        expected_uplift(growth_bundle({}), rows)
