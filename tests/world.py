"""A small random book for data tests: every event type, several users, NPS values, add-ons, churn.

Hand-made rather than the demo simulator so the tests control edge cases (events exactly on an
as-of date, accounts created mid-window) and stay fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.tables import Tables, validate_tables

EVENTS = ["login", "feature_used", "support_ticket", "nps_response"]


def small_world(n_accounts: int = 30, n_events: int = 6000, seed: int = 1) -> Tables:
    """Accounts created over 2024-2025, annual terms with renewals and some churn, random events."""
    rng = np.random.default_rng(seed)
    ids = [f"A{i:03d}" for i in range(n_accounts)]
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 540, n_accounts), unit="D")
    accounts = pd.DataFrame(
        {"account_id": ids, "created_at": created, "industry": rng.choice(["fin", "health", "retail"], n_accounts)}
    )
    rows = []
    for acct, start in zip(ids, created, strict=True):
        terms = int(rng.integers(1, 4))
        for t in range(terms):
            s = start + pd.DateOffset(years=t)
            arr, seats = float(rng.integers(5, 50)) * 100, int(rng.integers(2, 20))
            rows.append((acct, s, s + pd.DateOffset(years=1), arr, seats))
        if rng.random() < 0.3:  # a mid-term add-on
            rows.append((acct, start + pd.Timedelta(days=100), start + pd.DateOffset(years=1), 500.0, 3))
    subs = pd.DataFrame(rows, columns=["account_id", "start_date", "end_date", "arr", "seats"])
    acct_idx = rng.integers(0, n_accounts, n_events)
    offset = rng.integers(0, 700 * 24 * 60, n_events)
    ts = created[acct_idx] + pd.to_timedelta(offset, unit="min")
    event = rng.choice(EVENTS, n_events, p=[0.5, 0.3, 0.12, 0.08])
    events = pd.DataFrame(
        {
            "account_id": np.array(ids)[acct_idx],
            "timestamp": ts,
            "event": event,
            "user_id": [f"{ids[a]}-u{u}" for a, u in zip(acct_idx, rng.integers(0, 6, n_events), strict=True)],
            "count": rng.integers(1, 3, n_events),
            "value": np.where(event == "nps_response", rng.integers(0, 11, n_events), np.nan),
        }
    )
    events = events[events["timestamp"] < pd.Timestamp("2026-01-01")]
    return validate_tables({"accounts": accounts, "subscriptions": subs, "events": events})
