"""Builders of export-shaped test folders: the demo world with the junk and gaps real exports have.

Our demo world is clean by construction; a customer's CRM, billing and product-analytics
exports are not. Each builder below takes the three tables (as `read_world` gives them) and
returns them with one kind of real-world mess added; `export_copy` reads a world folder,
applies any of them and writes the result to a new folder, so a test reads:

    export_copy(demo_dir, tmp_path / "w", with_qa_account, with_duplicate_batch, without_user_id)

Every builder is deterministic (fixed seeds) and leaves its input frames untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

Frames = dict[str, pd.DataFrame]
QA_ACCOUNT = "internal-qa-bot"
TABLES = ("accounts", "subscriptions", "events")


def read_world(folder: Path) -> Frames:
    """The three tables of a world folder (CSV or Parquet), as written."""
    frames = {}
    for name in TABLES:
        path = next(p for p in Path(folder).iterdir() if p.stem == name)
        frames[name] = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return frames


def write_world(frames: Frames, folder: Path) -> Path:
    """Write the tables as Parquet into a new folder; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def export_copy(src: Path, dst: Path, *changes: Callable[[Frames], Frames]) -> Path:
    """Read the world in `src`, apply each change in turn, write the result to `dst`."""
    frames = read_world(src)
    for change in changes:
        frames = change(frames)
    return write_world(frames, dst)


def with_qa_account(frames: Frames, rows: int = 25, account: str = QA_ACCOUNT) -> Frames:
    """Events of an internal QA account the accounts table does not list (copied from real events)."""
    qa = frames["events"].iloc[:rows].copy()
    qa["account_id"] = account
    return frames | {"events": pd.concat([frames["events"], qa], ignore_index=True)}


def with_stray_accounts(frames: Frames, accounts: int, rows_each: int = 3) -> Frames:
    """Events of many accounts missing from `accounts` (deleted trials; or, many enough, a broken key)."""
    stray = frames["events"].iloc[: accounts * rows_each].copy()
    stray["account_id"] = [f"deleted-trial-{i // rows_each:04d}" for i in range(len(stray))]
    return frames | {"events": pd.concat([frames["events"], stray], ignore_index=True)}


def with_renamed_keys(frames: Frames, share: float) -> Frames:
    """A broken join key: `share` of the events name their account in another id format."""
    events = frames["events"].copy()
    broken = np.random.default_rng(2).random(len(events)) < share
    events["account_id"] = events["account_id"].astype(str).where(~broken, "crm-" + events["account_id"].astype(str))
    return frames | {"events": events}


def with_duplicate_batch(frames: Frames, rows: int = 2000) -> Frames:
    """A batch of events delivered twice: exact copies of `rows` random rows appended."""
    events = frames["events"]
    batch = events.sample(n=min(rows, len(events)), random_state=1)
    return frames | {"events": pd.concat([events, batch], ignore_index=True)}


def with_clock_errors(frames: Frames) -> Frames:
    """Two impossible events: a device clock set to 2099, and one dated years before its account existed."""
    events = frames["events"]
    bad = events.iloc[[0, 1]].copy()
    bad["timestamp"] = [pd.Timestamp("2099-01-01 12:00"), pd.Timestamp("1970-01-01")]
    return frames | {"events": pd.concat([events, bad], ignore_index=True)}


def without_user_id(frames: Frames) -> Frames:
    """Events without the optional `user_id` column (an export that never had it)."""
    return frames | {"events": frames["events"].drop(columns="user_id")}


def with_empty_user_id(frames: Frames) -> Frames:
    """A `user_id` column that is there but entirely empty."""
    return frames | {"events": frames["events"].assign(user_id=pd.Series([None] * len(frames["events"]), dtype=str))}


def with_crm_status(frames: Frames) -> Frames:
    """`status` (active/churned) and `cancel_reason` as a CRM exports them today, not as they were.

    Active means a subscription still runs after the last event: the current state, which leaks
    the outcome of every past as-of date. Apply it before adding events with impossible timestamps.
    """
    accounts, subs = frames["accounts"], frames["subscriptions"]
    end = pd.to_datetime(frames["events"]["timestamp"]).max()
    last = pd.to_datetime(subs["end_date"]).groupby(subs["account_id"]).max()
    active = accounts["account_id"].map(last) > end
    reasons = np.random.default_rng(3).choice(["price", "product", "budget"], len(accounts))
    return frames | {
        "accounts": accounts.assign(
            status=np.where(active, "active", "churned"), cancel_reason=np.where(active, None, reasons)
        )
    }


def with_date_and_id_columns(frames: Frames) -> Frames:
    """A date kept as text (`last_contacted`) and two identifiers (`crm_ref` text, `hubspot_id` numbers)."""
    accounts = frames["accounts"]
    rng = np.random.default_rng(4)
    n = len(accounts)
    contacted = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    return frames | {
        "accounts": accounts.assign(
            last_contacted=contacted.strftime("%Y-%m-%d"),
            crm_ref=[f"0012x{rng.integers(10**9):010d}" for _ in range(n)],
            hubspot_id=rng.permutation(n) + 100_000,
        )
    }


def real_export(frames: Frames) -> Frames:
    """Everything at once: QA events, a duplicated batch, clock errors, no user_id, today's CRM state, dates, ids."""
    for change in (  # today's CRM state first: it is read off the events before the clock errors join them
        with_crm_status,
        with_date_and_id_columns,
        with_qa_account,
        with_duplicate_batch,
        with_clock_errors,
        without_user_id,
    ):
        frames = change(frames)
    return frames
