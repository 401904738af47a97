"""The score history: append-only batches by as-of date, atomic writes, one account's trend, the publish hook."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.history import synthetic_batch
from serving import history
from serving.history import HistoryReader, account_history, append_batch, batches, previous_batch, read_batch
from serving.scoring import OUTPUT

ACCOUNTS = 40


@pytest.fixture()
def root(tmp_path):
    return tmp_path / "history"


def test_batches_are_listed_read_back_and_trend_per_account(root):
    first = append_batch(synthetic_batch("2026-10-05", ACCOUNTS, seed=1), root)
    second = append_batch(synthetic_batch("2026-10-12", ACCOUNTS, seed=2, churn_version="2"), root)
    assert first.path.startswith(f"{root}/as_of=2026-10-05/batch-") and first.accounts == ACCOUNTS
    listed = batches(root)
    assert list(listed.columns) == history.LISTING
    assert listed["as_of"].tolist() == [pd.Timestamp("2026-10-05"), pd.Timestamp("2026-10-12")]
    assert listed["churn_version"].tolist() == ["1", "2"] and listed["path"].tolist() == [first.path, second.path]
    back = read_batch("2026-10-12", root)
    expected = synthetic_batch("2026-10-12", ACCOUNTS, seed=2, churn_version="2")
    pd.testing.assert_frame_equal(back, expected.sort_values("account_id").reset_index(drop=True))
    assert previous_batch("2026-10-12", root)["as_of"].eq(pd.Timestamp("2026-10-05")).all()
    assert previous_batch("2026-10-05", root) is None
    trend = account_history("ACC-000007", root)
    assert list(trend.columns) == OUTPUT and trend["as_of"].is_monotonic_increasing
    assert trend["churn_model_version"].tolist() == ["1", "2"]  # model versions kept in the rows
    assert trend["churn_risk"].tolist() == [
        synthetic_batch(d, ACCOUNTS, seed=s).set_index("account_id").loc["ACC-000007", "churn_risk"]
        for d, s in (("2026-10-05", 1), ("2026-10-12", 2))
    ]
    warm = HistoryReader(root).account("ACC-000007")
    pd.testing.assert_frame_equal(warm, trend[list(history.TREND_COLUMNS)])
