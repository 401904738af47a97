"""Window metrics declared as data.

A customer's event vocabulary is not known in advance, so the default metric set is derived
from the event types present; meaning the engine cannot guess (the mean NPS answer, tickets
per active user) is declared in YAML. Every declaration carries the one-line description a
CSM later reads in a reason, and a `family` that groups the metrics of one driver. The
declarations are plain data so they can be logged with a model, reapplied at scoring, and
compiled to SQL for a larger engine (`to_sql`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from features.attributes import Attributes
from features.tables import DataError

AGGREGATES = ("count", "active_days", "distinct_users", "days_since_last", "sum_value", "mean_value")
ALL_EVENTS = "activity"
WINDOWS = (7, 30, 90)
LOOKBACK = 365  # the longest window: no metric looks further back than this
DEFAULT_YAML = Path(__file__).with_name("metrics.yaml")
SECTIONS = ("event_labels", "event_directions", "metrics", "ratios", "attributes")  # what a metrics YAML may hold
SEAT_UTILISATION = "seat_utilisation"  # active users in 30 days / seats: exists only with user ids
CONTRACT_COLUMNS = ("arr", "seats", SEAT_UTILISATION, "tenure_days", "days_to_renewal")
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

    def to_sql(self, events_table: str = "events", dates_table: str = "as_of_dates") -> str:
        """The same metric as one SQL query, for engines other than the embedded one."""
        expr = {
            "count": "SUM(COALESCE(e.count, 1))",
            "active_days": "COUNT(DISTINCT CAST(e.timestamp AS DATE))",
            "distinct_users": "COUNT(DISTINCT e.user_id)",
            "days_since_last": "DATE_DIFF('day', MAX(CAST(e.timestamp AS DATE)), d.as_of)",
            "sum_value": "SUM(e.value)",
            "mean_value": "AVG(e.value)",
        }[self.agg]
        conds = [
            f"e.timestamp < d.as_of - INTERVAL {self.offset_days} DAY",
            f"e.timestamp >= d.as_of - INTERVAL {self.offset_days + self.window_days} DAY",
        ]
        if self.events:
            conds.append("e.event IN (" + ", ".join(f"'{e}'" for e in self.events) + ")")
        return (
            f"SELECT e.account_id, d.as_of, {expr} AS {self.name} FROM {events_table} e "
            f"JOIN {dates_table} d ON {' AND '.join(conds)} GROUP BY e.account_id, d.as_of"
        )


@dataclass(frozen=True)
class Derived:
    """A metric computed from other columns: `ratio` a / b, `change` a / b - 1, `rate` a / clip(b, 1, cap).

    `rate` with b = tenure_days makes counts comparable for accounts younger than the window.
    """

    name: str
    family: str
    kind: str
    numerator: str
    denominator: str
    description: str
    cap: int | None = None
    direction: int = 0  # as `Metric.direction`

    def values(self, frame: pd.DataFrame) -> pd.Series:
        """Compute this metric on a frame holding its inputs; undefined (0 denominator) is NaN."""
        num, den = frame[self.numerator].astype(float), frame[self.denominator].astype(float)
        if self.kind == "rate":
            return num / den.clip(lower=1, upper=self.cap)
        ratio = num / den.where(den > 0)
        return ratio - 1.0 if self.kind == "change" else ratio


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
        return any(m.agg == "distinct_users" for m in self.windows)

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
            f"{ALL_EVENTS}__users_prior_30d", fam, (), "distinct_users", 30, "active users 30-60 days ago", 30, True, up
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


def default_metric_set(event_types: list[str], yaml_path: Path | None = None, users: bool = True) -> MetricSet:
    """Metrics for the event types present, plus the YAML declarations whose events exist here.

    Args:
        event_types: the event types in the data; each gets the default metrics.
        yaml_path: the declarations file; it REPLACES the shipped `features/metrics.yaml` (None:
            the shipped file), while the per-event-type metrics are derived from the data either way.
        users: False when the events carry no `user_id`: user-based metrics (distinct users, their
            trend, seat utilisation and ratios over users) are then left out, not computed as zero.
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
    present = set(event_types)
    for item in spec.get("metrics", []) or []:
        metric = yaml_metric(item)
        if not metric.events or present.intersection(metric.events):
            windows.append(metric)
    names = set(CONTRACT_COLUMNS)
    if not users:  # without user ids whatever counts users is absent, never zero
        windows = [m for m in windows if m.agg != "distinct_users"]
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
    if not 0 < int(item["window_days"]) <= LOOKBACK:
        raise DataError(f"metrics file: metric {item['name']!r} needs 0 < window_days <= {LOOKBACK}")
    if item["agg"] not in AGGREGATES:
        raise DataError(f"metrics file: metric {item['name']!r} has agg {item['agg']!r}; use one of {AGGREGATES}")
    events = tuple([item["events"]] if isinstance(item["events"], str) else item["events"])
    family = item.get("family") or slug_of(events[0] if len(events) == 1 else item["name"])
    return Metric(
        slug_of(item["name"]),
        family,
        events,
        item["agg"],
        int(item["window_days"]),
        item["description"],
        direction=direction_of(item, f"metric {item['name']!r}"),
    )


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
