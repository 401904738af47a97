"""The one scoring path: registry loading, output contract, parity, what changed, the store."""

from __future__ import annotations

import re
import tempfile

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.tables import DataError, load_tables
from serving.reasons import family_labels
from serving.registry import load_models
from serving.scoring import OUTPUT, score_frame
from serving.store import read_store, write_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def book(trained_store):
    """Champion models and the demo book's feature rows at the end of the data."""
    models = load_models()
    tables = load_tables(trained_store.data_dir)
    return models, build_features(tables, [tables.data_end], metrics=models.churn.metrics).frame


@pytest.fixture(scope="module")
def scored(book):
    models, frame = book
    return score_frame(frame, models)


def test_champions_load_with_their_versions(trained_store, book):
    models, _ = book
    assert models.churn_version == str(trained_store.result.versions["churn"])
    assert models.growth_version == str(trained_store.result.versions["growth"])
    assert models.churn.target == "churn" and models.growth.target == "growth"
    named = load_models(churn_version=models.churn_version)
    assert named.churn.features == models.churn.features


def test_loading_models_leaves_no_downloads_behind(book, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where MLflow's and our temporary folders go
    for _ in range(3):  # the service loads again for every new champion
        load_models()
    assert list(tmp_path.iterdir()) == []


def test_missing_champion_says_to_train_first(fresh_store):
    with pytest.raises(DataError, match="no champion model registered as tierwise-churn.*tierwise train"):
        load_models()


def test_unknown_version_is_named(book):
    with pytest.raises(DataError, match="tierwise-growth has no version 999 "):
        load_models(growth_version=999)


def test_output_has_the_contract_columns_one_row_per_account(book, scored):
    models, frame = book
    assert list(scored.columns) == OUTPUT
    assert len(scored) == len(frame) and scored["account_id"].is_unique
    assert scored["churn_risk"].between(0, 1).all() and scored["growth_potential"].between(0, 1).all()
    assert np.allclose(scored["arr_at_risk"], scored["churn_risk"] * scored["arr"])
    peers = {g["peer"]: g["uplift"] for g in models.growth.info["uplift_peers"]["groups"]}  # by plan here
    uplift = frame["plan"].astype(str).map(peers).to_numpy()
    assert np.allclose(scored["expected_expansion"], scored["growth_potential"] * scored["arr"] * uplift)
    assert set(scored["tier"]) <= {"high_touch", "mid_touch", "tech_touch"}
    assert (scored["churn_model_version"] == models.churn_version).all()
    assert np.allclose(scored["churn_risk"], models.churn.predict(frame))
    assert (scored["renewal_date"] >= scored["as_of"]).all()


def test_scores_without_reasons_are_the_same_numbers(book, scored):
    models, frame = book
    quick = score_frame(frame, models, reasons=False)
    assert np.allclose(quick["churn_risk"], scored["churn_risk"])
    assert np.allclose(quick["growth_potential"], scored["growth_potential"])
    assert quick["reason_1"].isna().all() and (quick["tier"] == scored["tier"]).all()


def test_parity_check_names_the_missing_model_column(book):
    models, frame = book
    with pytest.raises(DataError, match=r"login__count_30d.*churn version \d+.*metric set"):
        score_frame(frame.drop(columns=["login__count_30d"]), models)


def test_model_array_is_what_lightgbm_reads_from_the_categorical_frame(book):
    models, frame = book
    bundle = models.churn
    plan = bundle.features.index("plan")
    sent = frame.head(20).copy()
    sent["plan"] = sent["plan"].astype(str)  # text, as a caller posts it
    sent.loc[sent.index[0], "plan"] = "platinum-unseen"
    sent.loc[sent.index[1], "plan"] = None
    sent["seats"] = sent["seats"].astype(str)  # numbers as text are read as numbers
    A = bundle.array(sent)
    assert np.isnan(A[:2, plan]).all() and not np.isnan(A[2:, plan]).any()  # unseen and missing read as missing
    lgb_reads = bundle.booster.predict(bundle.matrix(sent), raw_score=True)  # LightGBM's own pandas conversion
    assert np.allclose(bundle.margin(A), lgb_reads, rtol=0, atol=1e-12)
    assert list(bundle.category(plan, A[:3, plan])) == [None, None, str(sent["plan"].iloc[2])]


def test_repeated_accounts_are_refused(book):
    models, frame = book
    with pytest.raises(DataError, match="account_id repeated"):
        score_frame(pd.concat([frame, frame.iloc[:2]]), models)


def test_changes_name_the_drivers_that_moved(book, scored):
    models, frame = book
    moved = frame.copy()
    usage = [c for c in frame.columns if "__" in c and "days_since" not in c]
    moved[usage] = 0.0  # every account stops using the product
    again = score_frame(moved, models, previous=scored.iloc[1:])
    assert again["changes"].iloc[0] == "New since the last score"
    assert (again["previous_tier"].iloc[1:] == scored["tier"].iloc[1:].to_numpy()).all()
    text = again["changes"].iloc[1:]
    assert text.str.startswith("Risk ").all()
    up = again["churn_risk"].iloc[1:].to_numpy() > scored["churn_risk"].iloc[1:].to_numpy() + 0.02
    assert up.any()
    labels = "|".join(map(re.escape, family_labels(models.churn).values()))
    assert text[up].str.contains(rf"\): ({labels}) [+\u2212]").all()


def test_store_is_replaced_whole_and_read_by_id(scored, tmp_path):
    path = tmp_path / "latest.parquet"
    write_store(scored, path)
    assert read_store(path).loc[scored["account_id"].iloc[0], "churn_risk"] == scored["churn_risk"].iloc[0]
    broken = scored.assign(reasons_json=[object()] * len(scored))  # pyarrow cannot write this
    with pytest.raises(Exception):  # noqa: B017 - whatever the writer raises, the old store must survive
        write_store(broken, path)
    kept = read_store(path)
    assert len(kept) == len(scored) and list(tmp_path.iterdir()) == [path]
    with pytest.raises(DataError, match="run `tierwise score` first"):
        read_store(tmp_path / "none.parquet")
