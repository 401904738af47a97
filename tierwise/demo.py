"""`make demo`: the main job end to end on an embedded demo world.

Generate a book, size a tier policy for it, train both models into the MLflow store (replaying
that policy on the backtest), score the book as of the day after the data ends, write the CSM
report, and tell the user where everything is and how to serve it.
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console

from features.demo_world import write_demo_world
from features.io import write_text
from features.policy import DEFAULT_POLICY, ONBOARDING, load_policy
from features.subscriptions import subscription_features
from features.tables import Tables, load_tables
from serving.batch import score_to_file
from serving.report import write_report
from tierwise.settings import redact_uri, scores_store, tracking_uri
from training.pipeline import train

# The sizing docs/tiers-and-report.md describes, applied to the demo book: places per pool as a share of accounts.
HIGH_SHARE = 0.05  # the few accounts whose value at stake justifies a small book
MID_SHARE = 0.20  # of the established accounts: what a pooled retention team typically holds


def run_demo(out: Path, n_accounts: int = 2000, seed: int = 0, console: Console | None = None) -> dict[str, Path]:
    """Run every stage on a simulated book; returns where each output is."""
    console = console or Console()
    data = out / "data"
    counts = write_demo_world(data, n_accounts=n_accounts, seed=seed)
    console.print(f"demo world: {data} ({', '.join(f'{k} {v:,}' for k, v in counts.items())})")
    tables = load_tables(data)
    policy = write_text(sized_policy(tables), out / "tiers.yaml")
    console.print(f"tier policy sized for this book: {policy} ({load_policy(policy).capacity})")
    result = train(data, console=console, policy=policy)
    as_of = tables.data_end.date()
    scores = out / "scores.csv"
    earlier = None
    for weeks in (3, 2, 1):  # a month of weekly batches first, so the console's charts have a trend
        day = as_of - timedelta(weeks=weeks)
        earlier = score_to_file(data, day, out / "earlier" / f"scores-{day}.csv", policy, earlier).out
    run = score_to_file(data, as_of, scores, policy, earlier)
    for line in run.allocation.lines():
        console.print(line)
    example_id = run.scored.sort_values("arr_at_risk", ascending=False)["account_id"].iloc[0]
    report = write_report(scores, out / "report.html", policy)
    outputs = {"data": data, "policy": policy, "scores": scores, "report": report, "store": scores_store()}
    console.rule("demo done")
    console.print(f"models: tierwise-churn v{result.versions['churn']}, tierwise-growth v{result.versions['growth']}")
    console.print(f"MLflow store: {redact_uri(tracking_uri())}  (browse it: .venv/bin/tierwise ui)", soft_wrap=True)
    console.print(f"scores as of {as_of}: {scores}")
    console.print(run.publication.sentence(), soft_wrap=True)
    console.print(f"CSM report: {report}")
    console.print(
        f"serve it: TIERWISE_API_KEYS=demo-key .venv/bin/tierwise serve --port 3000 --policy {policy}\n"
        "query it: curl -s -X POST localhost:3000/lookup -H 'Authorization: Bearer demo-key' "
        "-H 'Content-Type: application/json' -d '{\"account_ids\": [\"" + example_id + "\"]}'",
        soft_wrap=True,  # commands to copy must not be broken over lines
    )
    console.print(
        f"console: open http://127.0.0.1:3000/console while it serves; user demo, password {console_user('demo')}",
        soft_wrap=True,
    )
    return outputs


def console_user(name: str) -> str:
    """(Re)create a console user with a random password; returns the password (shown once, stored hashed)."""
    from serving.console.db import ConsoleDB

    password = secrets.token_urlsafe(12)
    db = ConsoleDB()
    if name in db.users():
        db.remove_user(name)
    db.add_user(name, password)
    return password


def sized_policy(tables: Tables) -> str:
    """The shipped policy (YAML text) with CSMs sized for the book in force when the data ends.

    Onboarding holds every account in its first term, so the promise that none is tech touch
    only holds; high_touch holds `HIGH_SHARE` of the accounts and mid_touch `MID_SHARE` of the
    established ones, at the shipped accounts per CSM.
    """
    book = subscription_features(tables, pd.DatetimeIndex([tables.data_end]))
    onboarding = int((book["lifecycle_stage"] == ONBOARDING).sum())
    wanted = {"high_touch": HIGH_SHARE * len(book), "mid_touch": MID_SHARE * (len(book) - onboarding)}
    wanted[ONBOARDING] = onboarding
    raw = yaml.safe_load(DEFAULT_POLICY.read_text())
    for pool, places in wanted.items():
        staffing = raw["capacity"][pool]
        staffing["csms"] = max(1, math.ceil(places / staffing["accounts_per_csm"]))
    header = (
        f"# tierwise tier policy sized for the demo book: {len(book):,} accounts in force on "
        f"{tables.data_end.date()}, {onboarding:,} of them onboarding.\n"
        "# Every key is explained in serving/tiers.yaml; the sizing in docs/tiers-and-report.md.\n"
    )
    return header + yaml.safe_dump(raw, sort_keys=False)
