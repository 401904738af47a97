"""Window metrics declared as data.

A customer's event vocabulary is not known in advance, so the default metric set is derived
from the event types present; meaning the engine cannot guess (the mean NPS answer, tickets
per active user) is declared in YAML. Every declaration carries the one-line description a
CSM later reads in a reason, and a `family` that groups the metrics of one driver. The
declarations are plain data so they can be logged with a model, reapplied at scoring, and
compiled to SQL for a larger engine (`to_sql`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml

from features.attributes import Attributes
from features.tables import DataError

AGGREGATES = (
    "count",
    "active_days",
    "distinct_users",
    "days_since_last",
    "sum_value",
    "mean_value",
    "lapsed_users",
    "new_users",
    "top_user_share",
    "distinct_events",
)
"""What a window metric computes over the events matching its filter, with W = `window_days`, O = `offset_days`
and the window [T - O - W, T - O) for as-of date T (whole days: an event on day T - O is outside it). Every
aggregate counts the `count` column (default 1) where it counts events, and sees nothing at or after T - O.

- count: events in the window; sum_value / mean_value: sum / mean of `value` there (mean: NaN without values).
- active_days: calendar days in the window with at least one event.
- distinct_users: users (non-null `user_id`) with at least one event in the window.
- days_since_last: (T - O) minus the day of the latest event in the window, in days; NaN when none.
- lapsed_users: users with an event in the PRIOR window [T - O - 2W, T - O - W) and none in the window
  ("users who stopped"); reads 2W days.
- new_users: users with an event in the window and none in [T - O - LOOKBACK, T - O - W): their first event
  within the LOOKBACK days before T - O falls in the window; reads LOOKBACK days.
- top_user_share: the largest one user's count in the window / the count of all events with a user id there;
  NaN when that count is 0. Events without a user id are in neither.
- distinct_events: event types (of the filter) with at least one event row in the window.

The four user-based ones (and distinct_users) read only events with a `user_id`: without user ids they are
absent from the metric set, never zero. `Metric.to_sql` gives each as SQL; the Spark engine compiles the same.
"""
USER_AGGREGATES = frozenset({"distinct_users", "lapsed_users", "new_users", "top_user_share"})
# Aggregates that count something: with nothing in the window they are 0 (an account absent from a SQL result).
COUNTING_AGGREGATES = frozenset(
    {"count", "active_days", "distinct_users", "sum_value", "lapsed_users", "new_users", "distinct_events"}
)
ALL_EVENTS = "activity"
USE = "use"  # metrics over the events that count as product use (`Use`)
# Generic families derived for any event vocabulary (`generic_metrics`); a metrics file picks them with
# `families:`. DEFAULT_FAMILIES are the ones the ablation on several worlds kept (docs/training.md).
# Name -> the short label "what changed" shows for the family's driver.
FAMILIES = {
    "use_rates": "use per active user and per seat",
    "user_churn": "users who stopped and new users",
    "concentration": "reliance on the most active user",
    "breadth": "kinds of product use",
    "long_trend": "90-day trends",
    "renewal_trend": "use before renewal",
}
DEFAULT_FAMILIES = ("long_trend",)
RENEWAL_DAYS = 60  # renewal_trend exists only this close to a renewal
WINDOWS = (7, 30, 90)
LOOKBACK = 365  # the longest window: no metric looks further back than this
DEFAULT_YAML = Path(__file__).with_name("metrics.yaml")
SECTIONS = ("event_labels", "event_directions", "metrics", "ratios", "attributes", "families")  # a YAML may hold
SEAT_UTILISATION = "seat_utilisation"  # active users in 30 days / seats: exists only with user ids
DAYS_TO_RENEWAL = "days_to_renewal"
CONTRACT_COLUMNS = ("arr", "seats", SEAT_UTILISATION, "tenure_days", DAYS_TO_RENEWAL)
# What MORE of a metric means for the account's health, as the YAML spells it and as stored (+1, -1, 0).
DIRECTIONS = {"healthier": 1, "unhealthier": -1, "undeclared": 0}
HEALTH_EFFECT = {"churn": -1, "growth": 1}  # how each outcome moves as an account gets healthier


@dataclass(frozen=True)
class Metric:
    """One aggregate of the events matching `events` over [as_of - offset - window, as_of - offset)."""

    name: str
    family: str
    events: tuple[str, ...]  # empty: every event
    agg: str
    window_days: int  # look-back in days; days_since_last is NaN when nothing happened within it
    description: str
    offset_days: int = 0
    hidden: bool = False  # computed for derived metrics, not a model feature
    direction: int = 0  # what more of it means: +1 healthier, -1 unhealthier, 0 undeclared (`DIRECTIONS`)

    @property
    def span_days(self) -> int:
        """How many days before the as-of date this metric reads: nothing older can change it."""
        reach = {"lapsed_users": 2 * self.window_days, "new_users": LOOKBACK}.get(self.agg, self.window_days)
        return self.offset_days + reach

    def to_sql(self, events_table: str = "events", dates_table: str = "as_of_dates") -> str:
        """The same metric as one SQL query (DuckDB dialect), for engines other than the embedded one.

        Semantics in the `AGGREGATES` docstring; accounts without any matching row are absent from the
        result (0 for counts, NaN otherwise, as the embedded engine gives them).
        """
        end = f"d.as_of - INTERVAL {self.offset_days} DAY"
        window_start = f"d.as_of - INTERVAL {self.offset_days + self.window_days} DAY"
        conds = [f"e.timestamp < {end}", f"e.timestamp >= d.as_of - INTERVAL {self.span_days} DAY"]
        if self.events:
            conds.append("e.event IN (" + ", ".join(f"'{e}'" for e in self.events) + ")")
        source = f"{events_table} e JOIN {dates_table} d ON {' AND '.join(conds)}"
        per_user = {  # a per-user subquery, then one figure per account and date
            "lapsed_users": (
                "MAX(e.timestamp) AS t",
                f"COUNT(*) FILTER (WHERE u.t < {window_start.replace('d.', 'u.')})",
            ),
            "new_users": (
                "MIN(e.timestamp) AS t",
                f"COUNT(*) FILTER (WHERE u.t >= {window_start.replace('d.', 'u.')})",
            ),
            "top_user_share": ("SUM(COALESCE(e.count, 1)) AS n", "MAX(u.n) / NULLIF(SUM(u.n), 0)"),
        }
        if self.agg in per_user:
            inner, outer = per_user[self.agg]
            return (
                f"SELECT u.account_id, u.as_of, {outer} AS {self.name} FROM (SELECT e.account_id, d.as_of, "
                f"e.user_id, {inner} FROM {source} WHERE e.user_id IS NOT NULL GROUP BY e.account_id, d.as_of, "
                f"e.user_id) u GROUP BY u.account_id, u.as_of"
            )
        expr = {
            "count": "SUM(COALESCE(e.count, 1))",
            "active_days": "COUNT(DISTINCT CAST(e.timestamp AS DATE))",
            "distinct_users": "COUNT(DISTINCT e.user_id)",
            "days_since_last": f"DATE_DIFF('day', MAX(CAST(e.timestamp AS DATE)), {end})",
            "sum_value": "SUM(e.value)",
            "mean_value": "AVG(e.value)",
            "distinct_events": "COUNT(DISTINCT e.event)",
        }[self.agg]
        return f"SELECT e.account_id, d.as_of, {expr} AS {self.name} FROM {source} GROUP BY e.account_id, d.as_of"


@dataclass(frozen=True)
class Derived:
    """A metric computed from other columns: `ratio` a / b, `change` a / b - 1, `rate` a / clip(b, 1, cap).

    `rate` with b = tenure_days makes counts comparable for accounts younger than the window. With
    `renewal_within_days` the value exists only where `days_to_renewal` <= that many days (NaN elsewhere):
    a usage trend read in the run-up to a renewal, when a customer decides, means something else than
    the same trend mid-term, and a missing value lets the trees keep the two apart.
    """

    name: str
    family: str
    kind: str
    numerator: str
    denominator: str
    description: str
    cap: int | None = None
    direction: int = 0  # as `Metric.direction`
    renewal_within_days: int | None = None

    def values(self, frame: pd.DataFrame) -> pd.Series:
        """Compute this metric on a frame holding its inputs; undefined (0 denominator) is NaN."""
        num, den = frame[self.numerator].astype(float), frame[self.denominator].astype(float)
        if self.kind == "rate":
            return num / den.clip(lower=1, upper=self.cap)
        ratio = num / den.where(den > 0)
        out = ratio - 1.0 if self.kind == "change" else ratio
        if self.renewal_within_days is not None:
            out = out.where(frame[DAYS_TO_RENEWAL] <= self.renewal_within_days)
        return out


@dataclass(frozen=True)
class MetricSet:
    """Everything the engine computes: window metrics, metrics derived from them, and which account
    attributes are features (decided in training, then stored with the model like the rest)."""

    windows: tuple[Metric, ...]
    derived: tuple[Derived, ...]
    attributes: Attributes = field(default_factory=Attributes)

    def to_dict(self) -> dict:
        """Plain data, to log with a model and rebuild the identical set at scoring."""
        return {
            "windows": [asdict(m) for m in self.windows],
            "derived": [asdict(d) for d in self.derived],
            "attributes": self.attributes.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> MetricSet:
        """Inverse of `to_dict`."""
        windows = tuple(Metric(**{**m, "events": tuple(m["events"])}) for m in data["windows"])
        return cls(windows, tuple(Derived(**d) for d in data["derived"]), Attributes.from_dict(data.get("attributes")))

    @property
    def uses_users(self) -> bool:
        """Whether any metric counts distinct users (and so needs events with a `user_id`)."""
        return any(m.agg in USER_AGGREGATES for m in self.windows)

    @property
    def feature_names(self) -> list[str]:
        """Model features in a fixed order (hidden helpers left out)."""
        return [m.name for m in self.windows if not m.hidden] + [d.name for d in self.derived]

    @property
    def descriptions(self) -> dict[str, str]:
        """Feature name -> one-line human description."""
        return {m.name: m.description for m in self.windows} | {d.name: d.description for d in self.derived}

    @property
    def families(self) -> dict[str, str]:
        """Feature name -> driver family (all metrics of one event type group into one reason)."""
        return {m.name: m.family for m in self.windows} | {d.name: d.family for d in self.derived}

    @property
    def directions(self) -> dict[str, int]:
        """Feature name -> declared direction (+1 more is healthier, -1 less healthy, 0 undeclared).

        A set stored before directions were declared reads as all undeclared: its model is scored
        and explained as before, without the checks a declared direction allows.
        """
        return {m.name: m.direction for m in self.windows} | {d.name: d.direction for d in self.derived}

    @property
    def recency(self) -> list[str]:
        """Features counting days since the last event: missing means nothing within their look-back."""
        return [m.name for m in self.windows if m.agg == "days_since_last"]


def event_metrics(event: str, label: str, direction: int = 0) -> tuple[list[Metric], list[Derived]]:
    """The default metrics for one event type: counts, active days, users, trend, recency.

    `direction` is what more of this event type means for the account (`DIRECTIONS`); its counts,
    users, trend and rate share it and the days since the last one take the opposite.
    """
    slug = slug_of(event)
    one = (event,)
    d = direction
    windows = [
        Metric(f"{slug}__count_{w}d", slug, one, "count", w, f"{label} in the last {w} days", direction=d)
        for w in WINDOWS
    ]
    windows += [
        Metric(f"{slug}__count_prior_30d", slug, one, "count", 30, f"{label} 30-60 days ago", 30, True, d),
        Metric(
            f"{slug}__active_days_30d",
            slug,
            one,
            "active_days",
            30,
            f"days with {label} in the last 30 days",
            0,
            False,
            d,
        ),
        Metric(
            f"{slug}__users_30d",
            slug,
            one,
            "distinct_users",
            30,
            f"users with {label} in the last 30 days",
            0,
            False,
            d,
        ),
        Metric(
            f"{slug}__days_since_last",
            slug,
            one,
            "days_since_last",
            LOOKBACK,
            f"days since the last {singular(label)}",
            direction=-d,
        ),
    ]
    derived = [
        Derived(
            f"{slug}__trend_30d",
            slug,
            "change",
            f"{slug}__count_30d",
            f"{slug}__count_prior_30d",
            f"change in {label}, last 30 days vs the 30 before",
            direction=d,
        ),
        Derived(
            f"{slug}__rate_90d",
            slug,
            "rate",
            f"{slug}__count_90d",
            "tenure_days",
            f"{label} per day over the last 90 days (or since sign-up)",
            cap=90,
            direction=d,
        ),
    ]
    return windows, derived


def activity_metrics() -> tuple[list[Metric], list[Derived]]:
    """Metrics over all events: active users and days, the broad adoption signal (more of it is healthier)."""
    fam, up = "active_users", DIRECTIONS["healthier"]
    windows = [
        Metric(
            f"{ALL_EVENTS}__users_{w}d",
            fam,
            (),
            "distinct_users",
            w,
            f"active users in the last {w} days",
            0,
            False,
            up,
        )
        for w in WINDOWS
    ]
    windows += [
        Metric(
            f"{ALL_EVENTS}__users_prior_30d",
            fam,
            (),
            "distinct_users",
            30,
            "active users 30-60 days ago",
            30,
            False,
            up,
        ),
        Metric(
            f"{ALL_EVENTS}__active_days_30d",
            "activity",
            (),
            "active_days",
            30,
            "active days in the last 30 days",
            0,
            False,
            up,
        ),
        Metric(
            f"{ALL_EVENTS}__days_since_last",
            "activity",
            (),
            "days_since_last",
            LOOKBACK,
            "days since any activity",
            direction=-up,
        ),
    ]
    derived = [
        Derived(
            f"{ALL_EVENTS}__users_trend_30d",
            fam,
            "change",
            f"{ALL_EVENTS}__users_30d",
            f"{ALL_EVENTS}__users_prior_30d",
            "change in active users, last 30 days vs the 30 before",
            direction=up,
        )
    ]
    return windows, derived


@dataclass(frozen=True)
class Use:
    """What counts as product use for the generic families: the event types declared healthier.

    Counting only those keeps a declared direction true by construction (more use per seat is healthier
    in every book; more events per seat is not where tickets or cancellation requests are events). A
    vocabulary with nothing declared healthier counts every event, and the families stay undeclared.
    """

    events: tuple[str, ...]  # empty: every event
    direction: int
    plural: str  # "product uses": what a count counts
    mass: str  # "product use": what a trend is of

    @classmethod
    def of(cls, event_types: list[str], directions: dict[str, int]) -> Use:
        healthy = tuple(sorted(e for e in event_types if directions.get(e, 0) > 0))
        if healthy:
            return cls(healthy, DIRECTIONS["healthier"], "product uses", "product use")
        return cls((), DIRECTIONS["undeclared"], "events", "activity")


def use_rates(use: Use) -> tuple[list[Metric], list[Derived]]:
    """Use per active user and per licensed seat in 30 days: intensity that raw counts hide behind account size."""
    count = Metric(f"{USE}__count_30d", "use_rates", use.events, "count", 30, f"{use.plural} in the last 30 days")
    per = [
        Derived(
            f"{USE}__per_{slug}_30d",
            "use_rates",
            "ratio",
            count.name,
            den,
            f"{use.plural} per {what} in the last 30 days",
            direction=use.direction,
        )
        for slug, den, what in (("user", f"{ALL_EVENTS}__users_30d", "active user"), ("seat", "seats", "licensed seat"))
    ]
    return [replace(count, hidden=True)], per


def user_churn(use: Use) -> tuple[list[Metric], list[Derived]]:
    """Users who stopped (active 30-60 days ago, none in the last 30) and new users: churn inside the account."""
    return [
        Metric(
            f"{ALL_EVENTS}__lapsed_users_30d",
            "user_churn",
            (),
            "lapsed_users",
            30,
            "users who stopped using the product in the last 30 days (active 30-60 days ago, none since)",
            direction=DIRECTIONS["unhealthier"],
        ),
        Metric(
            f"{ALL_EVENTS}__new_users_30d",
            "user_churn",
            (),
            "new_users",
            30,
            f"new users in the last 30 days (no activity in the {LOOKBACK - 30} days before)",
            direction=DIRECTIONS["healthier"],
        ),
    ], []


def concentration(use: Use) -> tuple[list[Metric], list[Derived]]:
    """The most active user's share of the events: how much rides on one person (a champion who may leave).

    Undeclared: a single power user is a risk in one account and, in another, the admin or the integration
    that posts everything under one service user by design; the model learns the sign.
    """
    return [
        Metric(
            f"{ALL_EVENTS}__top_user_share_30d",
            "concentration",
            (),
            "top_user_share",
            30,
            "most active user's share of the events in the last 30 days",
        )
    ], []


def breadth(use: Use, n_types: int) -> tuple[list[Metric], list[Derived]]:
    """Distinct kinds of use in 30 days: an account using more of the product has more to lose by leaving."""
    return [
        Metric(
            f"{USE}__event_types_30d",
            "breadth",
            use.events,
            "distinct_events",
            30,
            f"kinds of {use.mass} in the last 30 days (of {n_types} event types)",
            direction=use.direction,
        )
    ], []


def long_trend(use: Use) -> tuple[list[Metric], list[Derived]]:
    """Use and active users over the last 90 days vs the 90 before: the slow decline a 30-day trend misses."""
    windows = [
        Metric(f"{USE}__count_90d", "long_trend", use.events, "count", 90, f"{use.plural} in the last 90 days"),
        Metric(f"{USE}__count_prior_90d", "long_trend", use.events, "count", 90, f"{use.plural} 90-180 days ago", 90),
        Metric(
            f"{ALL_EVENTS}__users_prior_90d", "long_trend", (), "distinct_users", 90, "active users 90-180 days ago", 90
        ),
    ]
    derived = [
        Derived(
            f"{USE}__trend_90d",
            "long_trend",
            "change",
            f"{USE}__count_90d",
            f"{USE}__count_prior_90d",
            f"change in {use.mass}, last 90 days vs the 90 before",
            direction=use.direction,
        ),
        Derived(
            f"{ALL_EVENTS}__users_trend_90d",
            "long_trend",
            "change",
            f"{ALL_EVENTS}__users_90d",
            f"{ALL_EVENTS}__users_prior_90d",
            "change in active users, last 90 days vs the 90 before",
            direction=DIRECTIONS["healthier"],
        ),
    ]
    return [replace(m, hidden=True) for m in windows], derived


def renewal_trend(use: Use) -> tuple[list[Metric], list[Derived]]:
    """Use over the last 60 days vs the 60 before, only for accounts within 60 days of renewal (NaN elsewhere).

    Customers who decide not to renew disengage in the run-up to the renewal; the gate keeps this trend
    to the accounts where that decision is being made (a CSM reads it as "use before renewal").
    """
    windows = [
        Metric(f"{USE}__count_60d", "renewal_trend", use.events, "count", 60, f"{use.plural} in the last 60 days"),
        Metric(
            f"{USE}__count_prior_60d", "renewal_trend", use.events, "count", 60, f"{use.plural} 60-120 days ago", 60
        ),
    ]
    derived = Derived(
        f"{USE}__renewal_trend_60d",
        "renewal_trend",
        "change",
        windows[0].name,
        windows[1].name,
        f"change in {use.mass} before renewal, last 60 days vs the 60 before",
        direction=use.direction,
        renewal_within_days=RENEWAL_DAYS,
    )
    return [replace(m, hidden=True) for m in windows], [derived]


def generic_metrics(event_types: list[str], directions: dict[str, int], families) -> tuple[list[Metric], list[Derived]]:
    """The generic families' metrics for any event vocabulary (`FAMILIES`), helpers shared between families once."""
    use = Use.of(event_types, directions)
    builders = {
        "use_rates": lambda: use_rates(use),
        "user_churn": lambda: user_churn(use),
        "concentration": lambda: concentration(use),
        "breadth": lambda: breadth(use, len(use.events) or len(event_types)),
        "long_trend": lambda: long_trend(use),
        "renewal_trend": lambda: renewal_trend(use),
    }
    windows: dict[str, Metric] = {}
    derived: list[Derived] = []
    for family in families:
        w, d = builders[family]()
        windows |= {m.name: m for m in w if m.name not in windows}
        derived += d
    return list(windows.values()), derived


def families_of(spec: dict) -> tuple[str, ...]:
    """The generic families a metrics file switches on (`families:`); absent: `DEFAULT_FAMILIES`."""
    chosen = spec.get("families", list(DEFAULT_FAMILIES))
    chosen = [] if chosen is None else chosen  # `families:` left empty: none
    if not isinstance(chosen, list) or not all(isinstance(f, str) for f in chosen):
        raise DataError(f"metrics file: families must be a list of family names from {', '.join(FAMILIES)}")
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        raise DataError(f"metrics file: unknown famil(ies) {', '.join(unknown)}; use {', '.join(FAMILIES)}")
    return tuple(f for f in FAMILIES if f in chosen)


def default_metric_set(
    event_types: list[str], yaml_path: Path | None = None, users: bool = True, families: tuple[str, ...] | None = None
) -> MetricSet:
    """Metrics for the event types present, plus the YAML declarations whose events exist here.

    Args:
        event_types: the event types in the data; each gets the default metrics.
        yaml_path: the declarations file; it REPLACES the shipped `features/metrics.yaml` (None:
            the shipped file), while the per-event-type metrics are derived from the data either way.
        users: False when the events carry no `user_id`: user-based metrics (distinct users, their
            trend, seat utilisation and ratios over users) are then left out, not computed as zero.
        families: the generic families to derive (`FAMILIES`); None: the file's `families:`, else
            `DEFAULT_FAMILIES`.
    """
    spec = load_yaml(yaml_path or DEFAULT_YAML)
    labels = spec.get("event_labels", {}) or {}
    directions = event_directions(spec)
    windows, derived = activity_metrics()
    for event in sorted(event_types):
        label = labels.get(event, f"'{event.replace('_', ' ')}' events")
        w, d = event_metrics(event, label, directions.get(event, 0))
        windows += w
        derived += d
    w, d = generic_metrics(list(event_types), directions, families_of(spec) if families is None else families)
    windows += w
    derived += d
    present = set(event_types)
    for item in spec.get("metrics", []) or []:
        metric = yaml_metric(item)
        if not metric.events or present.intersection(metric.events):
            windows.append(metric)
    names = set(CONTRACT_COLUMNS)
    if not users:  # without user ids whatever counts users is absent, never zero
        windows = [m for m in windows if m.agg not in USER_AGGREGATES]
        names.discard(SEAT_UTILISATION)
    names |= {m.name for m in windows}
    derived = [d for d in derived if d.numerator in names and d.denominator in names]
    names |= {d.name for d in derived}
    for item in spec.get("ratios", []) or []:
        ratio = yaml_ratio(item)
        if ratio.numerator in names and ratio.denominator in names:
            derived.append(ratio)
            names.add(ratio.name)
    return MetricSet(tuple(windows), tuple(derived), Attributes.from_yaml(spec.get("attributes")))


def load_yaml(path: Path) -> dict:
    """Read a metrics YAML file; a malformed one is a user error naming the file."""
    try:
        spec = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"metrics file {path}: {exc}") from exc
    if not isinstance(spec, dict):
        raise DataError(f"metrics file {path}: expected a mapping with 'metrics' and 'ratios'")
    unknown = sorted(set(map(str, spec)) - set(SECTIONS))
    if unknown:  # a misspelt section would otherwise be ignored without a word
        raise DataError(f"metrics file {path}: unknown section(s) {', '.join(unknown)}; use {', '.join(SECTIONS)}")
    return spec


def yaml_metric(item: dict) -> Metric:
    """One declared window metric; unknown aggregates and missing keys are named."""
    need = ("name", "events", "agg", "window_days", "description")
    missing = [k for k in need if k not in item]
    if missing:
        raise DataError(f"metrics file: metric {item.get('name', item)!r} lacks {', '.join(missing)}")
    unknown_keys("metric", item, (*need, "family", "direction"))
    if item["agg"] not in AGGREGATES:
        raise DataError(f"metrics file: metric {item['name']!r} has agg {item['agg']!r}; use one of {AGGREGATES}")
    events = tuple([item["events"]] if isinstance(item["events"], str) else item["events"])
    family = item.get("family") or slug_of(events[0] if len(events) == 1 else item["name"])
    metric = Metric(
        slug_of(item["name"]),
        family,
        events,
        item["agg"],
        int(item["window_days"]),
        item["description"],
        direction=direction_of(item, f"metric {item['name']!r}"),
    )
    if metric.window_days <= 0 or metric.span_days > LOOKBACK:
        raise DataError(
            f"metrics file: metric {item['name']!r} needs 0 < window_days and reads at most {LOOKBACK} days "
            f"(lapsed_users reads twice its window)"
        )
    return metric


def yaml_ratio(item: dict) -> Derived:
    """One declared ratio of two metrics."""
    need = ("name", "numerator", "denominator", "description")
    missing = [k for k in need if k not in item]
    if missing:
        raise DataError(f"metrics file: ratio {item.get('name', item)!r} lacks {', '.join(missing)}")
    unknown_keys("ratio", item, (*need, "family", "direction"))
    family = item.get("family") or item["numerator"].split("__")[0]
    return Derived(
        slug_of(item["name"]),
        family,
        "ratio",
        item["numerator"],
        item["denominator"],
        item["description"],
        direction=direction_of(item, f"ratio {item['name']!r}"),
    )


def event_directions(spec: dict) -> dict[str, int]:
    """Event type -> declared direction from the YAML's `event_directions`; an event type not listed is undeclared."""
    declared = spec.get("event_directions", {}) or {}
    if not isinstance(declared, dict):
        raise DataError("metrics file: event_directions must map event types to healthier, unhealthier or undeclared")
    return {event: direction_of({"direction": word}, f"event {event!r}") for event, word in declared.items()}


def direction_of(item: dict, what: str) -> int:
    """A declaration's `direction` word as +1, -1 or 0 (absent: undeclared); an unknown word is named."""
    word = item.get("direction", "undeclared")
    if word not in DIRECTIONS:
        raise DataError(f"metrics file: {what} has direction {word!r}; use one of {', '.join(DIRECTIONS)}")
    return DIRECTIONS[word]


def unknown_keys(kind: str, item: dict, known: tuple[str, ...]) -> None:
    """Refuse a declaration with a key tierwise does not read: a typo (`window_day`) would silently do nothing."""
    unknown = sorted(map(str, set(item) - set(known)))
    if unknown:
        raise DataError(
            f"metrics file: {kind} {item['name']!r} has unknown key(s) {', '.join(unknown)}; use {', '.join(known)}"
        )


def singular(label: str) -> str:
    """One of a plural label, for "days since the last login": 'uses of feature B' -> 'use of feature B'.

    The head noun is the word before " of " (or the last word); English plurals are regular enough
    for event labels, and a label that is not plural ('feedback') stays as it is.
    """
    head, sep, tail = label.partition(" of ")
    words = head.split(" ")
    word = words[-1]
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("ches", "shes", "sses", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return " ".join([*words[:-1], word]) + sep + tail


def slug_of(text: str) -> str:
    """A column-safe name for an event type or metric."""
    out = "".join(ch if ch.isalnum() else "_" for ch in str(text).strip().lower()).strip("_")
    return out or "event"
