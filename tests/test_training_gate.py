"""The champion/challenger gate: a champion is judged only on rows whose labels it could not have seen.

Two real versions go into a fresh store: an early champion (trained with `--as-of` a year before the
data's end) and a later run. A later run's out-of-time rows overlap the champion's label windows
for a quarter; only the rows after them may judge it.
"""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.tables import load_tables
from tests.conftest import TEST_ROUNDS
from training.pipeline import train
from training.registry import CHALLENGER, CHAMPION, MIN_GATE_POSITIVES, compare, labels_ended, load_bundle, verdict
from training.snapshots import snapshots

pytestmark = pytest.mark.slow

EARLY_AS_OF = pd.Timestamp("2025-10-01").date()  # the demo world's snapshots run to 2026-07-01


@pytest.fixture(scope="module")
def frame(demo_dir) -> pd.DataFrame:
    return snapshots(load_tables(demo_dir)).frame


def unseen_rows(predictions: pd.DataFrame, champion_info: dict) -> pd.DataFrame:
    return predictions[predictions["as_of"] >= labels_ended(champion_info)]


def test_champion_is_judged_only_after_its_labels_ended_and_a_worse_model_stays_challenger(
    demo_dir, fresh_store, frame
):
    first = train(demo_dir, as_of=EARLY_AS_OF, seed=0, max_rounds=TEST_ROUNDS)
    assert first.aliases == {"churn": CHAMPION, "growth": CHAMPION}
    champ = load_bundle("tierwise-churn", first.versions["churn"])
    ended = labels_ended(champ.info)
    assert ended == pd.Timestamp(champ.info["train_last_as_of"]) + pd.Timedelta(days=90 + 14)

    worse = train(demo_dir, seed=0, max_rounds=1)  # one tree per model: deliberately worse
    oot = worse.backtests["churn"].predictions
    unseen = unseen_rows(oot, champ.info)
    # the backtest starts before the champion's labels ended: those rows are left out, not compared
    assert oot["as_of"].min() < ended <= unseen["as_of"].min()
    assert unseen["y"].sum() >= MIN_GATE_POSITIVES
    for target in ("churn", "growth"):
        assert worse.aliases[target] == CHALLENGER
        assert "worse than the champion" in worse.reasons[target]
        rows = unseen_rows(worse.backtests[target].predictions, champ.info)
        assert f"{len(rows):,} out-of-time rows ({int(rows['y'].sum()):,} positive)" in worse.reasons[target]
        assert f"labels ended ({ended.date()})" in worse.reasons[target]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("tierwise-churn", CHAMPION).version) == first.versions["churn"]

    # a version exactly as good as the champion on those rows (its own predictions) takes the alias
    for target in ("churn", "growth"):
        bt, champ_t = worse.backtests[target], load_bundle(f"tierwise-{target}", first.versions[target])
        keys = bt.predictions[["account_id", "as_of"]].merge(frame, on=["account_id", "as_of"], how="left")
        same = bt.predictions.assign(p=champ_t.predict(keys))
        comparison = compare(champ_t, worse.bundles[target].info, {}, same, frame)
        assert comparison.rows == len(unseen_rows(bt.predictions, champ.info))
        assert comparison.new == comparison.champion
        alias, reason = verdict(comparison)
        assert alias == CHAMPION and "at least as good as the champion" in reason


def test_too_few_rows_after_the_champion_keep_it_and_name_the_count(trained_store, frame):
    champ = load_bundle("tierwise-churn", trained_store.result.versions["churn"])
    info = champ.info | {"train_last_as_of": "2025-10-01"}  # as if trained a year earlier
    champ.info = info
    oot = trained_store.result.backtests["churn"].predictions
    unseen = unseen_rows(oot, info)
    negatives, positives = unseen[unseen["y"] == 0], unseen[unseen["y"] == 1]
    assert len(positives) > MIN_GATE_POSITIVES
    for n, enough in ((MIN_GATE_POSITIVES - 1, False), (MIN_GATE_POSITIVES, True)):
        subset = pd.concat([oot[oot["as_of"] < labels_ended(info)], negatives, positives.head(n)])
        comparison = compare(champ, champ.info | {"backtest_id": "another backtest"}, {}, subset, frame)
        assert comparison.enough is enough and comparison.positives == n
        assert comparison.rows == len(negatives) + n  # rows before the champion's labels ended never count
        alias, reason = verdict(comparison)
        if not enough:
            assert alias == CHALLENGER and reason.startswith("too few rows to judge against the champion")
            assert f"{len(negatives) + n:,} out-of-time rows ({n:,} positive)" in reason
            assert f"at least {MIN_GATE_POSITIVES} positive" in reason
        else:
            assert set(comparison.champion) >= {"roc_auc", "brier"}


def test_no_row_after_the_champion_is_too_few_too(trained_store, frame):
    champ = load_bundle("tierwise-churn", trained_store.result.versions["churn"])
    oot = trained_store.result.backtests["churn"].predictions  # all before the champion's own labels ended
    comparison = compare(champ, champ.info | {"backtest_id": "another backtest"}, {}, oot, frame)
    assert not comparison.enough and comparison.rows == 0
    alias, reason = verdict(comparison)
    assert alias == CHALLENGER and "0 out-of-time rows (0 positive)" in reason
