"""A deterministic, realistic B2B SaaS customer book written in the tierwise data contract.

Why it exists: the demo, the tests and the first models need a book with the shape and the mess of a
real one (monthly and annual terms, add-ons, downgrades, accounts still onboarding, champions who leave)
whose churn and growth signals are real but noisy, so that a model trained here learns habits that carry
over to real data instead of a rule that only holds in the simulator. One ``np.random.default_rng(seed)``
drives everything, so a seed names exactly one world.

How the world works: every account carries a hidden health that follows a mean-reverting random walk with
shocks (the champion leaves, an incident, a new team adopts the product). Health drives what a CS team can
observe (active users, logins, feature breadth, tickets, NPS) through Poisson and binomial noise, and a
per-account usage style hides absolute levels. At each term end an account renews, grows, shrinks or
churns with odds that depend on those observables (usage trend, seat utilisation, tickets, NPS, onboarding,
a lost champion) plus a good deal of luck. Annual customers that decide to leave disengage in the last two
months of their term. Time runs in account-months: month ``t`` of an account starts on the account's
creation day-of-month of calendar month ``t``, so renewals fall on the anniversary of the first term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.io import write_table

EVENT_TYPES = (
    "login",
    "feature_a_used",
    "feature_b_used",
    "report_exported",
    "integration_sync",
    "support_ticket",
    "nps_response",
    "user_invited",
    "onboarding_milestone",
)
MONTHLY_EVENTS = EVENT_TYPES[:-1]  # drawn per account-month; milestones are drawn once per account
SIM_MONTHS = 32  # the span of the event history, so that many monthly snapshots can be trained on
BASE_SHARE = 0.4  # accounts that already exist when the event history starts
SEGMENTS = ("SMB", "MidMarket", "Enterprise")
PLANS = ("starter", "growth", "enterprise")
INDUSTRIES = ("software", "fintech", "healthcare", "retail", "manufacturing", "education", "media", "logistics")
REGIONS = ("NA", "EMEA", "APAC", "LATAM")
SECONDS_PER_DAY = 86_400
# Hidden use cases (an option, off by default so every seed's default world stays as it was): what each
# account bought the product for, as multipliers on its monthly usage rates in `MONTHLY_EVENTS` order.
# Automation accounts keep an integration syncing; other accounts sync rarely. The truth is never written
# into the data contract tables: `hidden_use_cases` gives it, and `write_demo_world` puts it in its own file.
USE_CASES = {
    "core": (1.0, 1.0, 1.0, 1.0, 0.03, 1.0, 1.0, 1.0),
    "reporting": (1.0, 0.8, 0.5, 6.0, 0.03, 1.0, 1.0, 1.0),
    "automation": (0.6, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    "collaboration": (1.0, 0.5, 4.0, 1.0, 0.03, 1.0, 1.0, 1.0),
}
USE_CASE_SHARES = (0.4, 0.2, 0.2, 0.2)
USE_CASES_FILE = "hidden_use_cases.csv"  # next to the tables; no tierwise command reads it
NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True)
class Calendar:
    """The simulated span: ``n_months`` account-months from ``first_month``, data known through ``end``."""

    first_month: np.datetime64  # datetime64[M] of simulation month 0
    n_months: int
    end_excl: int  # days since epoch of the first day after the data (events stop before it)

    def day(self, month: np.ndarray | int, day_of_month: np.ndarray) -> np.ndarray:
        """Days since epoch of each account's month ``month`` (its creation day-of-month in that month)."""
        first = (self.first_month + np.asarray(month)).astype("datetime64[D]").astype(np.int64)
        return first + np.asarray(day_of_month, dtype=np.int64) - 1


@dataclass
class Book:
    """Facts about each account drawn at sign-up: firmographics, contract shape and hidden traits.

    Only ``price`` (uplifts at renewal) and ``health_mean`` (a champion leaving) move later.
    """

    created_month: np.ndarray  # simulation month of creation; negative for accounts older than the history
    day_of_month: np.ndarray  # 1..28, the anniversary day of every term
    segment: np.ndarray  # index into SEGMENTS
    plan: np.ndarray  # index into PLANS
    industry: np.ndarray
    region: np.ndarray
    employees: np.ndarray
    term: np.ndarray  # contract length in months: 1 or 12
    seats0: np.ndarray  # seats bought at the first term
    price: np.ndarray  # ARR per seat; rises with uplifts at renewal
    usage_style: np.ndarray  # multiplies every usage rate: some teams just click more
    onboarding: np.ndarray  # hidden onboarding quality; shows as milestones in the first weeks
    health_mean: np.ndarray  # where the hidden health drifts back to
    firmo_risk: np.ndarray  # small churn log-odds from segment and plan
    use_case: np.ndarray | None = None  # index into USE_CASES when the world has hidden use cases
    shift_month: int = 1 << 30  # renewals decided from this simulation month on follow `WorldChanges.concept_shift`

    @property
    def n(self) -> int:
        return len(self.term)


@dataclass
class State:
    """What changes month to month for every account (hidden health, users, contract, recent signals)."""

    alive: np.ndarray
    health: np.ndarray
    health_lag: np.ndarray  # health 3 months ago (a ring of the last three months)
    users: np.ndarray  # provisioned users, never more than seats
    users_lag: np.ndarray  # users a few months back, smoothed: growing teams expand
    seats: np.ndarray  # all seats under contract, base plus add-ons
    row_seats: np.ndarray  # seats on the current base row (add-ons are separate rows)
    term_start: np.ndarray  # simulation month the current base term started
    row_start: np.ndarray  # day the current base row started
    feature_b: np.ndarray  # 0..1 adoption of the second feature
    integrated: np.ndarray  # has a live integration syncing
    champion_gone: np.ndarray  # the most active user left; user ids shift by one from then on
    champion_left_month: np.ndarray
    utilisation: np.ndarray  # smoothed active users / seats
    tickets: np.ndarray  # ring of the last three months of tickets
    nps: np.ndarray  # smoothed NPS of recent surveys
    decided: np.ndarray  # the renewal of the current term is already decided
    leaving: np.ndarray  # decided to churn at the end of the current term
    churn_month: np.ndarray  # month the account churned (its last term ended), -1 if it did not


@dataclass(frozen=True)
class WorldChanges:
    """Things that go wrong in a real book after a date, to prove that monitoring notices them.

    Attributes:
        tracking_stop: (event type, date): a tracking change silently drops that event type from the date on.
        concept_shift: from this date the churn drivers change: a competitor wins the most engaged accounts
            (health and seat use raise churn odds instead of lowering them) and leavers no longer use the
            product less before they go, so a model trained on the old drivers ranks them wrongly.
    """

    tracking_stop: tuple[str, date] | None = None
    concept_shift: date | None = None


@dataclass
class Log:
    """Rows collected while the months run: subscription rows and per-account-month usage counts."""

    subs: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # (account, start, end, arr, seats)
    months: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # (account, start, days, active, ...)

    def add_subscriptions(self, acct, start, end, arr, seats) -> None:
        """Keep a batch of subscription rows (days since epoch for dates)."""
        if len(acct):
            self.subs.append((acct, start, end, arr, seats))


def write_demo_world(
    out_dir: Path,
    n_accounts: int = 2000,
    seed: int = 0,
    end: date = date(2026, 10, 31),
    fmt: str = "parquet",
    use_cases: bool = False,
    changes: WorldChanges | None = None,
) -> dict[str, int]:
    """Simulate a customer book and write ``accounts``, ``subscriptions`` and ``events`` into ``out_dir``.

    Why: one command gives the demo, the tests and a data scientist a realistic book in the exact input
    format the pipeline reads, without any customer data. Each file is written to a temporary name in the
    same folder and then renamed, so a reader never sees a half-written table.

    Args:
        out_dir: folder to write into; created if missing.
        n_accounts: accounts in the book (10 000 gives roughly 10+ million events).
        seed: the world; the same seed always writes identical tables.
        end: last day of the data; terms may run past it, events stop at its end.
        fmt: ``"parquet"`` or ``"csv"``.
        use_cases: give accounts hidden use cases that shape their event mix (`USE_CASES`); the truth goes
            to ``USE_CASES_FILE`` beside the tables, which no tierwise command reads.
        changes: a tracking stop or a concept shift after a date (`WorldChanges`); none by default.

    Returns:
        Row counts per table, e.g. ``{"accounts": 2000, "subscriptions": ..., "events": ...}``.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = simulate(n_accounts, seed, end, use_cases, changes)
    tables = dict(zip(("accounts", "subscriptions", "events"), frames, strict=True))
    for name, frame in tables.items():
        write_table(frame, out_dir / f"{name}.{fmt}")
    if use_cases:
        write_table(hidden_use_cases(n_accounts, seed), out_dir / USE_CASES_FILE)
    return {name: len(frame) for name, frame in tables.items()}


def simulate(
    n_accounts: int,
    seed: int = 0,
    end: date = date(2026, 10, 31),
    use_cases: bool = False,
    changes: WorldChanges | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Simulate the book and return ``(accounts, subscriptions, events)`` frames in the data contract.

    Why separate from writing: tests and notebooks want the frames without touching the disk.
    """
    if n_accounts < 1:
        raise ValueError("n_accounts must be at least 1")
    rng = np.random.default_rng(seed)
    cal = calendar(end)
    book = book_of_accounts(rng, n_accounts)
    if use_cases:
        book.use_case = use_case_draws(n_accounts, seed)
    changes = changes or WorldChanges()
    if changes.concept_shift is not None:
        book.shift_month = int((np.datetime64(changes.concept_shift, "M") - cal.first_month).astype(np.int64))
    log, state = run_months(rng, book, cal)
    events = events_table(rng, book, state, log, cal)
    if changes.tracking_stop is not None:
        event, since = changes.tracking_stop
        events = events[~((events["event"] == event) & (events["timestamp"] >= pd.Timestamp(since)))]
    return accounts_table(book, cal), subscriptions_table(log), events.reset_index(drop=True)


def use_case_draws(n_accounts: int, seed: int) -> np.ndarray:
    """Each account's hidden use case (index into `USE_CASES`), from a stream of its own.

    A separate generator keeps the rest of the world's draws independent of the option, and lets
    `hidden_use_cases` give the truth without simulating the book.
    """
    return np.random.default_rng([seed, 14]).choice(len(USE_CASES), size=n_accounts, p=USE_CASE_SHARES)


def hidden_use_cases(n_accounts: int, seed: int) -> pd.DataFrame:
    """The truth of a world written with ``use_cases=True``: ``account_id, use_case`` (for tests and docs only)."""
    names = np.array(list(USE_CASES), dtype=object)[use_case_draws(n_accounts, seed)]
    return pd.DataFrame({"account_id": pd.Series(account_ids(n_accounts), dtype="str"), "use_case": names})


def calendar(end: date) -> Calendar:
    """The simulation span: ``SIM_MONTHS`` calendar months ending with the month of ``end``."""
    end_day = np.datetime64(end, "D")
    first_month = end_day.astype("datetime64[M]") - (SIM_MONTHS - 1)
    return Calendar(first_month=first_month, n_months=SIM_MONTHS, end_excl=int(end_day.astype(np.int64)) + 1)


# ----------------------------------------------------------------------------------------------- accounts


def book_of_accounts(rng: np.random.Generator, n: int) -> Book:
    """Draw firmographics, contracts and hidden traits; firmographics nudge health but do not decide it."""
    created_month = creation_months(rng, n)
    segment = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    employees = employees_for(rng, segment)
    plan_p = np.array([[0.65, 0.3, 0.05], [0.25, 0.55, 0.2], [0.05, 0.35, 0.6]])
    plan = inverse_cdf_choice(rng, plan_p[segment])
    monthly_p = np.array([0.6, 0.25, 0.03])[segment]
    term = np.where(rng.random(n) < monthly_p, 1, 12)
    seats_median = np.array([8.0, 30.0, 110.0])[segment]
    seats0 = np.maximum(2, np.round(seats_median * rng.lognormal(0.0, 0.45, n))).astype(np.int64)
    price = np.array([300.0, 600.0, 1000.0])[plan] * rng.uniform(0.75, 1.1, n) * np.where(term == 1, 1.15, 1.0)
    industry = rng.integers(0, len(INDUSTRIES), n)
    onboarding = rng.normal(0.0, 1.0, n)
    health_mean = (
        0.45
        + np.array([-0.1, 0.0, 0.15])[segment]
        + np.array([-0.05, 0.05, 0.1])[plan]
        + np.where(industry == INDUSTRIES.index("education"), -0.15, 0.0)
        + 0.25 * onboarding
        + np.where(created_month < 0, 0.2, 0.0)  # the accounts still here when history starts are survivors
        + rng.normal(0.0, 0.6, n)
    )
    return Book(
        created_month=created_month,
        day_of_month=rng.integers(1, 29, n),
        segment=segment,
        plan=plan,
        industry=industry,
        region=rng.choice(len(REGIONS), size=n, p=[0.45, 0.3, 0.15, 0.1]),
        employees=employees,
        term=term,
        seats0=seats0,
        price=np.round(price, 0),
        usage_style=rng.lognormal(0.0, 0.45, n),
        onboarding=onboarding,
        health_mean=health_mean,
        firmo_risk=np.array([0.2, 0.0, -0.35])[segment] + np.array([0.15, 0.0, -0.1])[plan],
    )


def creation_months(rng: np.random.Generator, n: int) -> np.ndarray:
    """Creation month per account: a base of up to four-year-old customers, then steady, growing sign-ups."""
    base = rng.random(n) < BASE_SHARE
    old = -rng.integers(1, 49, n)
    weights = 1.0 + 0.03 * np.arange(SIM_MONTHS)
    new = rng.choice(SIM_MONTHS, size=n, p=weights / weights.sum())
    return np.where(base, old, new).astype(np.int64)


def employees_for(rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
    """Headcount consistent with the segment (SMB < 200 <= MidMarket < 2000 <= Enterprise)."""
    low = np.array([10, 200, 2000])[segment]
    high = np.array([199, 1999, 50000])[segment]
    share = rng.random(len(segment)) ** 2.5  # most companies sit near the bottom of their band
    return np.round(np.exp(np.log(low) + share * (np.log(high) - np.log(low)))).astype(np.int64)


def inverse_cdf_choice(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows sum to 1), vectorised."""
    return (rng.random((len(probs), 1)) > np.cumsum(probs, axis=1)).sum(axis=1)


# ------------------------------------------------------------------------------------------- the months


def run_months(rng: np.random.Generator, book: Book, cal: Calendar) -> tuple[Log, State]:
    """Step every account through the simulated months; return the collected rows and the final state.

    The loop runs over months (``SIM_MONTHS`` steps), never over accounts or events: each step is a few
    vectorised operations over the whole book.
    """
    log = Log()
    state = initial_state(rng, book)
    log_prehistory(book, cal, state, log)
    for t in range(cal.n_months):
        open_first_terms(rng, book, cal, state, t)
        settle_renewals(rng, book, cal, state, log, t)
        decide_early(rng, book, state, t)
        advance_health(rng, book, state, t)
        log.months.append(month_usage(rng, book, cal, state, t))
        add_mid_term_seats(rng, book, cal, state, log, t)
    close_open_terms(book, cal, state, log)
    return log, state


def initial_state(rng: np.random.Generator, book: Book) -> State:
    """State at the start of history: accounts older than the history are live, mature and mid-term."""
    n = book.n
    base = book.created_month < 0
    term_start = np.where(base, book.created_month + book.term * (-book.created_month // book.term), 0)
    seats = book.seats0.copy()
    users = np.where(base, np.maximum(1, np.round(seats * rng.uniform(0.45, 0.95, n))), 0).astype(np.int64)
    health = book.health_mean + rng.normal(0.0, 0.5, n)
    utilisation = np.where(base, users * 0.6 / seats, 0.3)
    return State(
        alive=base.copy(),
        health=health,
        health_lag=np.tile(health, (3, 1)),
        users=users,
        users_lag=users.astype(float),
        seats=seats,
        row_seats=seats.copy(),
        term_start=term_start,
        row_start=np.zeros(n, dtype=np.int64),
        feature_b=np.where(base, rng.uniform(0.1, 0.9, n), rng.uniform(0.0, 0.3, n)),
        integrated=base & (rng.random(n) < 0.45),
        champion_gone=np.zeros(n, dtype=bool),
        champion_left_month=np.full(n, -99, dtype=np.int64),
        utilisation=utilisation,
        tickets=np.zeros((3, n)),
        nps=np.full(n, 7.0),
        decided=np.zeros(n, dtype=bool),
        leaving=np.zeros(n, dtype=bool),
        churn_month=np.full(n, -1, dtype=np.int64),
    )


def log_prehistory(book: Book, cal: Calendar, state: State, log: Log) -> None:
    """Subscription rows of older accounts before history starts: past terms, all renewed flat."""
    base = np.flatnonzero(book.created_month < 0)
    n_past = (state.term_start[base] - book.created_month[base]) // book.term[base]
    acct = np.repeat(base, n_past)
    first = np.repeat(np.cumsum(n_past) - n_past, n_past)
    k = np.arange(len(acct)) - first
    start_month = book.created_month[acct] + k * book.term[acct]
    day = book.day_of_month[acct]
    arr = book.seats0[acct] * book.price[acct]
    log.add_subscriptions(
        acct,
        cal.day(start_month, day),
        cal.day(start_month + book.term[acct], day),
        arr,
        book.seats0[acct],
    )
    state.row_start[base] = cal.day(state.term_start[base], book.day_of_month[base])


def open_first_terms(rng: np.random.Generator, book: Book, cal: Calendar, state: State, t: int) -> None:
    """Sign up the accounts created this month: first term opens, a few users, adoption still to come."""
    new = np.flatnonzero(book.created_month == t)
    state.alive[new] = True
    state.term_start[new] = t
    state.row_start[new] = cal.day(t, book.day_of_month[new])
    share = rng.uniform(0.1, 0.35, len(new))
    state.users[new] = np.maximum(1, np.round(book.seats0[new] * share)).astype(np.int64)
    state.users_lag[new] = state.users[new]
    state.health[new] = book.health_mean[new] + 0.3 * book.onboarding[new] + rng.normal(0.0, 0.4, len(new))
    state.health_lag[:, new] = state.health[new]


def churn_log_odds(rng: np.random.Generator, book: Book, state: State, idx: np.ndarray, t: int) -> np.ndarray:
    """Log-odds that an account leaves at this renewal, from what a CS team could (mostly) observe.

    Declining health, a recently lost champion, poor onboarding in the first year, low seat utilisation,
    many recent tickets and low NPS all raise it; monthly contracts churn more; noise keeps it honest.
    """
    health = state.health[idx]
    decline = health - state.health_lag[:, idx].mean(axis=0)
    tenure = t - book.created_month[idx]
    monthly = book.term[idx] == 1
    champion_recent = state.champion_gone[idx] & (t - state.champion_left_month[idx] <= 9)
    poor_onboarding = (book.onboarding[idx] < -0.5) & (tenure <= 13)
    tickets = np.minimum(state.tickets[:, idx].sum(axis=0), 8.0)
    if t >= book.shift_month:  # `WorldChanges.concept_shift`: the engaged accounts are the ones lured away
        lured = 1.8 * health + 3.0 * (state.utilisation[idx] - 0.45)
        return np.where(monthly, -4.6, -1.9) + book.firmo_risk[idx] + lured + rng.normal(0.0, 1.0, len(idx))
    return (
        np.where(monthly, -4.6, -1.9)
        + book.firmo_risk[idx]
        - 0.9 * health
        - 1.0 * decline
        + 0.9 * champion_recent
        + np.where(monthly, 0.35, 0.8) * poor_onboarding
        - 1.8 * (state.utilisation[idx] - 0.45)
        + 0.15 * tickets
        - 0.12 * (state.nps[idx] - 7.0)
        + rng.normal(0.0, 1.0, len(idx))
    )


def decide_early(rng: np.random.Generator, book: Book, state: State, t: int) -> None:
    """Annual customers decide two months before the term ends; those leaving then disengage."""
    due = np.flatnonzero(state.alive & (book.term == 12) & (t - state.term_start == 10) & ~state.decided)
    state.leaving[due] = rng.random(len(due)) < sigmoid(churn_log_odds(rng, book, state, due, t))
    state.decided[due] = True


def settle_renewals(rng: np.random.Generator, book: Book, cal: Calendar, state: State, log: Log, t: int) -> None:
    """Close every term that ends this month; churn, or renew as a new row with more, fewer or equal seats."""
    due = np.flatnonzero(state.alive & (t - state.term_start == book.term))
    if not len(due):
        return
    undecided = due[~state.decided[due]]
    state.leaving[undecided] = rng.random(len(undecided)) < sigmoid(churn_log_odds(rng, book, state, undecided, t))
    day = book.day_of_month[due]
    term_end = cal.day(t, day)
    row_seats = state.row_seats[due]
    log.add_subscriptions(due, state.row_start[due], term_end, row_seats * book.price[due], row_seats)
    leaving = due[state.leaving[due]]
    state.alive[leaving] = False
    state.churn_month[leaving] = t
    staying = due[~state.leaving[due]]
    state.seats[staying] = renewal_seats(rng, book, state, staying)
    state.row_seats[staying] = state.seats[staying]
    uplift = rng.random(len(staying)) < np.where(book.term[staying] == 12, 0.2, 0.01)
    factor = np.where(uplift, rng.uniform(1.02, 1.08, len(staying)), 1.0)
    book.price[staying] = np.round(book.price[staying] * factor, 0)
    state.users[staying] = np.minimum(state.users[staying], state.seats[staying])
    state.term_start[staying] = t
    state.row_start[staying] = cal.day(t, book.day_of_month[staying])
    state.decided[due] = False
    state.leaving[due] = False


def renewal_seats(rng: np.random.Generator, book: Book, state: State, idx: np.ndarray) -> np.ndarray:
    """Seats at renewal: grow with high utilisation, broad adoption and growing users; shrink when idle."""
    growth = (
        0.5 * state.health[idx]
        + 3.0 * (state.utilisation[idx] - 0.6)
        + 0.8 * (state.feature_b[idx] - 0.5)
        + 1.5 * (state.users[idx] / np.maximum(state.users_lag[idx], 1.0) - 1.0)
        + rng.normal(0.0, 0.7, len(idx))
    )
    monthly = book.term[idx] == 1
    grow = growth > np.where(monthly, 2.3, 0.8)
    shrink = growth < np.where(monthly, -2.8, -1.3)
    seats = state.seats[idx].astype(float)
    factor = np.where(grow, rng.uniform(1.1, 1.5, len(idx)), np.where(shrink, rng.uniform(0.6, 0.9, len(idx)), 1.0))
    new = np.where(grow, np.ceil(seats * factor), np.floor(seats * factor))
    return np.maximum(1, new).astype(np.int64)


def advance_health(rng: np.random.Generator, book: Book, state: State, t: int) -> None:
    """One month of hidden health: mean reversion, noise, and the occasional shock."""
    live = state.alive & (book.created_month < t)
    n = book.n
    state.health_lag = np.roll(state.health_lag, 1, axis=0)
    state.health_lag[0] = state.health
    step = book.health_mean + 0.88 * (state.health - book.health_mean) + rng.normal(0.0, 0.28, n)
    tenure = t - book.created_month
    champion = live & ~state.champion_gone & (state.users >= 3) & (tenure >= 3) & (rng.random(n) < 0.012)
    incident = live & (rng.random(n) < 0.03)
    new_team = live & (rng.random(n) < 0.03)
    step = step - 0.9 * champion - 0.6 * incident + 0.5 * new_team
    state.health = np.where(live, step, state.health)
    book.health_mean[champion] -= 0.3
    state.champion_gone |= champion
    state.champion_left_month[champion] = t
    state.users[champion] -= 1
    state.tickets = np.roll(state.tickets, 1, axis=0)
    state.tickets[0] = np.where(incident, rng.poisson(2.0, n), 0)


def engagement(book: Book, state: State, t: int) -> np.ndarray:
    """0..1 engagement: health, ramped up over the first months and damped for accounts about to leave."""
    tenure = t - book.created_month
    ramp = np.select([tenure <= 0, tenure == 1], [0.55, 0.8], 1.0)
    leaving = state.leaving & state.decided
    return sigmoid(state.health) * ramp * np.where(leaving & (t < book.shift_month), 0.8, 1.0)


def month_usage(rng: np.random.Generator, book: Book, cal: Calendar, state: State, t: int) -> tuple:
    """Draw this month's observable behaviour for live accounts and update users, adoption and signals.

    Returns one record per live account: (account, first day, days in month, active users, user offset,
    mean NPS of a survey, counts per ``MONTHLY_EVENTS``).
    """
    idx = np.flatnonzero(state.alive)
    m = len(idx)
    e = engagement(book, state, t)[idx]
    style = book.usage_style[idx]
    day = book.day_of_month[idx]
    start = cal.day(t, day)
    days = cal.day(t + 1, day) - start
    users, seats = state.users[idx], state.seats[idx]
    tenure = t - book.created_month[idx]

    invite_rate = (seats - users) * np.where(tenure < 3, 0.3, 0.05) * (0.3 + e)
    invites = np.minimum(rng.poisson(invite_rate), seats - users)
    leavers = rng.binomial(np.maximum(users - 1, 0), 0.015 + 0.03 * (1 - e))
    state.users_lag[idx] = 0.67 * state.users_lag[idx] + 0.33 * users
    users = users + invites - leavers
    state.users[idx] = users
    active = rng.binomial(users, np.clip(0.15 + 0.8 * e, 0.02, 0.97))

    adopted = state.feature_b[idx]
    state.feature_b[idx] = np.clip(adopted + 0.08 * (e - 0.45) + rng.normal(0.0, 0.03, m), 0.0, 1.0)
    integrated = state.integrated[idx]
    switch = rng.random(m) < np.where(integrated, 0.03 * (1 - e), 0.08 * e)
    state.integrated[idx] = integrated ^ switch

    surveyed = (tenure >= 2) & (rng.random(m) < 0.25)
    nps_mean = np.clip(rng.normal(1.5 + 8.5 * e, 1.2), 0.0, 10.0)
    tickets = rng.poisson(0.1 + 0.04 * np.sqrt(users) + 1.3 * (1 - e) ** 2) * (active > 0)
    tickets = tickets + state.tickets[0, idx].astype(np.int64)
    per_user = active * style
    mix, automation = use_case_mix(book, idx)
    counts = np.stack(
        [
            rng.poisson(per_user * (1.0 + 2.6 * e) * mix[:, 0]),
            rng.poisson(per_user * (0.5 + 1.7 * e) * mix[:, 1]),
            rng.poisson(per_user * adopted * (0.3 + 1.8 * e) * mix[:, 2]),
            rng.poisson(per_user * 0.2 * (0.4 + e) * mix[:, 3]),
            rng.poisson((state.integrated[idx] | automation) * days * (0.3 + 0.6 * e) * mix[:, 4]),
            tickets,
            np.minimum(rng.binomial(active, 0.3), 5) * surveyed,
            invites,
        ],
        axis=1,
    )
    state.tickets[0, idx] = tickets
    state.utilisation[idx] = 0.5 * state.utilisation[idx] + 0.5 * active / seats
    state.nps[idx] = np.where(surveyed & (counts[:, 6] > 0), 0.5 * state.nps[idx] + 0.5 * nps_mean, state.nps[idx])
    offset = state.champion_gone[idx].astype(np.int64)
    return idx, start, days, active, offset, nps_mean, counts


def use_case_mix(book: Book, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per account in ``idx``: usage-rate multipliers (`USE_CASES`) and whether its use case keeps a sync running."""
    if book.use_case is None:
        return np.ones((len(idx), len(MONTHLY_EVENTS))), np.zeros(len(idx), dtype=bool)
    cases = book.use_case[idx]
    return np.array(list(USE_CASES.values()))[cases], cases == list(USE_CASES).index("automation")


def add_mid_term_seats(rng: np.random.Generator, book: Book, cal: Calendar, state: State, log: Log, t: int) -> None:
    """Mid-term expansion: busy annual accounts buy add-on seats that run to the end of the current term."""
    months_left = state.term_start + book.term - t
    full = state.users >= state.seats
    logit = -5.0 + 0.8 * state.health + 5.0 * (state.utilisation - 0.7) + 0.8 * full
    buy = np.flatnonzero(state.alive & (book.term == 12) & (months_left >= 3) & (rng.random(book.n) < sigmoid(logit)))
    extra = np.maximum(1, np.round(state.seats[buy] * rng.uniform(0.1, 0.4, len(buy)))).astype(np.int64)
    start = cal.day(t, book.day_of_month[buy]) + rng.integers(0, 21, len(buy))
    end = cal.day(state.term_start[buy] + book.term[buy], book.day_of_month[buy])
    keep = start < cal.end_excl
    buy, extra, start, end = buy[keep], extra[keep], start[keep], end[keep]
    log.add_subscriptions(buy, start, end, extra * book.price[buy], extra)
    state.seats[buy] += extra


def close_open_terms(book: Book, cal: Calendar, state: State, log: Log) -> None:
    """Terms still running at the end of history keep their contractual end date (often after ``end``)."""
    live = np.flatnonzero(state.alive)
    end = cal.day(state.term_start[live] + book.term[live], book.day_of_month[live])
    row_seats = state.row_seats[live]
    log.add_subscriptions(live, state.row_start[live], end, row_seats * book.price[live], row_seats)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------------------------------------ tables


def account_ids(n: int) -> np.ndarray:
    """Stable, human-readable ids: ``ACC-000001`` onwards."""
    return np.array([f"ACC-{i + 1:06d}" for i in range(n)], dtype=object)


def accounts_table(book: Book, cal: Calendar) -> pd.DataFrame:
    """The ``accounts`` table: id, creation date (midnight) and firmographics."""
    created = cal.day(book.created_month, book.day_of_month).astype("datetime64[D]").astype("datetime64[ns]")
    return pd.DataFrame(
        {
            "account_id": pd.Series(account_ids(book.n), dtype="str"),
            "created_at": created,
            "industry": pd.Series(np.array(INDUSTRIES, dtype=object)[book.industry], dtype="str"),
            "region": pd.Series(np.array(REGIONS, dtype=object)[book.region], dtype="str"),
            "employees": book.employees.astype(np.int64),
            "plan": pd.Series(np.array(PLANS, dtype=object)[book.plan], dtype="str"),
            "segment": pd.Series(np.array(SEGMENTS, dtype=object)[book.segment], dtype="str"),
        }
    )


def subscriptions_table(log: Log) -> pd.DataFrame:
    """The ``subscriptions`` table, one row per term or add-on, ordered by account and start."""
    acct, start, end, arr, seats = (np.concatenate(col) for col in zip(*log.subs, strict=True))
    order = np.lexsort((end, start, acct))
    ids = pd.Index(account_ids(int(acct.max()) + 1), dtype="str")
    return pd.DataFrame(
        {
            "account_id": ids.take(acct[order]),
            "start_date": start[order].astype("datetime64[D]").astype("datetime64[ns]"),
            "end_date": end[order].astype("datetime64[D]").astype("datetime64[ns]"),
            "arr": np.round(arr[order].astype(float), 2),
            "seats": seats[order].astype(np.int64),
        }
    )


def events_table(rng: np.random.Generator, book: Book, state: State, log: Log, cal: Calendar) -> pd.DataFrame:
    """The ``events`` table: usage expanded from per-month counts plus onboarding milestones, in time order.

    Every event falls inside a month the account was live (so never before ``created_at`` and never after
    its last term ended) and before the end of the data. One vectorised pass, no loop over events.
    """
    acct, start, days, active, offset, nps_mean, counts = (np.concatenate(col) for col in zip(*log.months, strict=True))
    rec, kind = np.divmod(np.repeat(np.arange(counts.size), counts.ravel()), len(MONTHLY_EVENTS))
    n = len(rec)
    day = start[rec] + (rng.random(n, dtype=np.float32) * days[rec]).astype(np.int64)
    usage = {
        "acct": acct[rec],
        "seconds": day * SECONDS_PER_DAY + time_of_day(rng, n),
        "kind": kind,
        "user": user_rank(rng, kind, active[rec]) + offset[rec] + 1,
        "count": 1 + extra_count(rng, kind),
        "value": nps_values(rng, kind, nps_mean[rec]),
    }
    m_acct, m_seconds = milestones(rng, book, state, cal)
    onboarding = {
        "acct": m_acct,
        "seconds": m_seconds,
        "kind": np.full(len(m_acct), EVENT_TYPES.index("onboarding_milestone")),
        "user": np.ones(len(m_acct), dtype=np.int64),
        "count": np.ones(len(m_acct), dtype=np.int64),
        "value": np.full(len(m_acct), np.nan),
    }
    ev = {col: np.concatenate([usage[col], onboarding[col]]) for col in usage}
    keep = np.flatnonzero(ev["seconds"] < cal.end_excl * SECONDS_PER_DAY)
    order = keep[np.argsort(ev["seconds"][keep])]  # deterministic for equal inputs, like every step here
    ev = {col: values[order] for col, values in ev.items()}
    users_per_account = np.ones(book.n, dtype=np.int64)
    np.maximum.at(users_per_account, acct, np.maximum(active, 1) + offset)
    return pd.DataFrame(
        {
            "account_id": pd.Index(account_ids(book.n), dtype="str").take(ev["acct"]),
            "timestamp": (ev["seconds"] * NS_PER_SECOND).astype("datetime64[ns]"),
            "event": pd.Index(list(EVENT_TYPES), dtype="str").take(ev["kind"]),
            "user_id": user_ids(ev["acct"], ev["user"], users_per_account),
            "count": ev["count"],
            "value": ev["value"],
        }
    )


def time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds after midnight, bunched in working hours with a long tail."""
    hours = 13.5 + 3.2 * rng.standard_normal(n, dtype=np.float32)
    return np.clip(hours * 3600, 0, SECONDS_PER_DAY - 1).astype(np.int64)


def user_rank(rng: np.random.Generator, kind: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Which active user (0 = the most active) did each event.

    Usage follows a power law, so one user (the champion) does a large share; tickets and NPS answers
    come from anyone; syncs and invites come from the top user (the admin).
    """
    who = np.zeros(len(MONTHLY_EVENTS), dtype=np.float32)  # exponent on u: 1 = anyone, 0 = admin only
    who[[MONTHLY_EVENTS.index(k) for k in ("login", "feature_a_used", "feature_b_used", "report_exported")]] = 1.8
    who[[MONTHLY_EVENTS.index(k) for k in ("support_ticket", "nps_response")]] = 1.0
    exponent = who[kind]
    u = rng.random(len(kind), dtype=np.float32) ** exponent * (exponent > 0)
    return np.minimum(u * active, np.maximum(active - 1, 0)).astype(np.int64)


def extra_count(rng: np.random.Generator, kind: np.ndarray) -> np.ndarray:
    """``count`` above 1: a few feature uses and exports come in bursts; a sync moves several batches."""
    mean = np.zeros(len(MONTHLY_EVENTS))
    mean[[MONTHLY_EVENTS.index(k) for k in ("feature_a_used", "feature_b_used", "report_exported")]] = 0.25
    mean[MONTHLY_EVENTS.index("integration_sync")] = 3.0
    return rng.poisson(mean[kind])


def nps_values(rng: np.random.Generator, kind: np.ndarray, nps_mean: np.ndarray) -> np.ndarray:
    """0..10 scores for NPS answers (scattered around the account's mood that month), NaN elsewhere."""
    value = np.full(len(kind), np.nan)
    is_nps = np.flatnonzero(kind == MONTHLY_EVENTS.index("nps_response"))
    value[is_nps] = np.clip(np.round(nps_mean[is_nps] + rng.normal(0.0, 1.5, len(is_nps))), 0, 10)
    return value


def milestones(rng: np.random.Generator, book: Book, state: State, cal: Calendar) -> tuple[np.ndarray, np.ndarray]:
    """Onboarding milestones (account, seconds since epoch): good onboarders hit more of them, sooner.

    Only milestones that fall while the account is live are kept.
    """
    quality = sigmoid(1.3 * book.onboarding + 0.4)
    acct = np.repeat(np.arange(book.n), rng.binomial(6, quality))
    days = (rng.random(len(acct)) * (25.0 + 90.0 * (1.0 - quality[acct]))).astype(np.int64)
    created = cal.day(book.created_month, book.day_of_month)
    seconds = (created[acct] + days) * SECONDS_PER_DAY + time_of_day(rng, len(acct))
    churned = state.churn_month >= 0
    last_day_excl = np.where(churned, cal.day(np.maximum(state.churn_month, 0), book.day_of_month), cal.end_excl)
    live = seconds < last_day_excl[acct] * SECONDS_PER_DAY
    return acct[live], seconds[live]


def user_ids(acct: np.ndarray, user: np.ndarray, users_per_account: np.ndarray) -> pd.Index:
    """``ACC-000123-u7`` labels: each account's users are labelled once, then gathered by position."""
    first = np.cumsum(users_per_account) - users_per_account
    ids = account_ids(len(users_per_account))
    labels = [f"{ids[a]}-u{u}" for a, n in enumerate(users_per_account.tolist()) for u in range(1, n + 1)]
    return pd.Index(labels, dtype="str").take(first[acct] + user - 1)
