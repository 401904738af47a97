"""Adoption personas: how an account uses the product, from the mix of its last 90 days of activity.

Two accounts with the same risk need different plays when one runs its business on report exports and
the other on an integration. The usage mix is read from feature rows (the per-event-type 90-day counts
every metric set has), so it is point in time exactly as the features are: only events before the as-of
date. Personas are learned in training (`training.personas`, k-means on the mix) and stored with the
model bundle as a `Personas`; scoring reapplies the stored centroids and never refits.

The mix of an account is the share of each usage family (an event type declared healthier in the metric
set: product use, not tickets or survey answers) in its usage events over 90 days, compared on the
square roots of the shares (the Hellinger geometry for compositions, in which a rare family moving from
2% to 30% counts and a dominant family's noise does not swamp it). Volume (usage events in 90 days) is a
separate axis: below `MIN_EVENTS` the shares are noise and the account is `not_adopted`. Breadth is the
number of usage families in use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from features.errors import DataError
from features.metrics import DIRECTIONS, MetricSet

NOT_ADOPTED = "not_adopted"
MIX_DAYS = 90  # the window of the usage mix
MIN_EVENTS = 30.0  # usage events in 90 days below which shares are noise (30 events: a share's error ~ 0.05)
MARGIN = 0.15  # an account leaves its persona only when another centroid is this much (relative) nearer
LEAD_LIFT = 1.5  # a family leads a persona when its share is this many times its book-wide share
LEAD_SHARE = 0.05  # ... and at least this share of the persona's activity
GAP_RATIO = 2.0  # an adoption gap is named when renewing peers are active on at least 2x the days
GAP_MIN_DAYS = 2.0  # ... and on at least 2 days in 30


@dataclass(frozen=True)
class UsageFamily:
    """One usage family: its name (the event type's slug), its 90-day count column and active-days column."""

    name: str
    count_column: str
    days_column: str | None  # active days in 30 days, for adoption gaps (None when the set lacks it)
    label: str  # as a CSM reads it: "report exports"


def usage_families(metrics: MetricSet) -> list[UsageFamily]:
    """The usage families of a metric set: event types whose 90-day count is declared healthier.

    An event type declared healthier is product use (tickets and survey answers are not); a metric set
    declaring no direction at all (a customer's own YAML without them) takes every event type.
    """
    counts = [
        m
        for m in metrics.windows
        if m.agg == "count" and m.window_days == MIX_DAYS and len(m.events) == 1 and not m.offset_days and not m.hidden
    ]
    healthier = [m for m in counts if m.direction == DIRECTIONS["healthier"]]
    days = {m.family: m.name for m in metrics.windows if m.agg == "active_days" and m.window_days == 30}
    suffix = f" in the last {MIX_DAYS} days"
    return [
        UsageFamily(m.family, m.name, days.get(m.family), m.description.removesuffix(suffix))
        for m in (healthier or counts)
    ]


@dataclass(frozen=True)
class UsageMix:
    """Per row: shares of usage events by family, usage events in 90 days (volume) and families in use (breadth)."""

    shares: np.ndarray  # rows x families; zero where the volume is zero
    volume: np.ndarray
    breadth: np.ndarray

    @property
    def roots(self) -> np.ndarray:
        """Square roots of the shares: the space personas are learned and assigned in."""
        return np.sqrt(self.shares)


def usage_mix(features: Mapping[str, ArrayLike], families: list[UsageFamily]) -> UsageMix:
    """The usage mix of feature rows (a frame or arrays by column name); a missing count reads as none.

    Raises:
        DataError: the rows lack a family's 90-day count column.
    """
    missing = [f.count_column for f in families if f.count_column not in features]
    if missing:
        raise DataError(f"feature rows lack the usage count column(s) {', '.join(missing)} the personas read")
    counts = np.column_stack([np.asarray(features[f.count_column], dtype=float) for f in families])
    counts = np.nan_to_num(np.clip(counts, 0.0, None))
    volume = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(volume[:, None] > 0, counts / volume[:, None], 0.0)
    return UsageMix(shares, volume, (counts > 0).sum(axis=1))


@dataclass
class Personas:
    """Learned adoption personas, stored with the model bundle and reapplied at scoring.

    Attributes:
        families: the usage families, in the order of the centroids' columns.
        centroids: one row per persona, in square-root-share space.
        names: stable persona names ("report-exported-led"); a retrain keeps the previous name for the
            same pattern (`training.personas.carry_names`).
        descriptions: one sentence per persona.
        book_shares: the book-wide share of each family in training (what "leads" is measured against).
        renewing_days: per persona, per family, median active days in 30 of its renewing training rows
            (NaN where a family has no active-days column): the yardstick of adoption gaps.
        rates: per persona name (and `not_adopted`): training rows, churn and growth base rates.
        selection: how the number of personas was chosen (per k: explained variance, stability, silhouette).
        min_events: volume below which an account is `not_adopted`.
        margin: hysteresis margin (relative distance) for leaving a persona.
    """

    families: list[UsageFamily]
    centroids: np.ndarray
    names: list[str]
    descriptions: list[str]
    book_shares: np.ndarray
    renewing_days: np.ndarray
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    min_events: float = MIN_EVENTS
    margin: float = MARGIN

    def to_dict(self) -> dict:
        """Plain data for `bundle.json`."""
        out = asdict(self)
        out["families"] = [asdict(f) for f in self.families]
        for key in ("centroids", "book_shares", "renewing_days"):
            out[key] = np.asarray(getattr(self, key)).tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Personas:
        """Inverse of `to_dict`."""
        data = dict(data)
        data["families"] = [UsageFamily(**f) for f in data["families"]]
        for key in ("centroids", "book_shares", "renewing_days"):
            data[key] = np.asarray(data[key], dtype=float)
        return cls(**data)

    @property
    def known(self) -> set[str]:
        """Every persona an account can get, `not_adopted` included (what a policy may name)."""
        return {*self.names, NOT_ADOPTED}

    def mix(self, features: Mapping[str, ArrayLike]) -> UsageMix:
        """The usage mix of feature rows over this model's usage families."""
        return usage_mix(features, self.families)

    def distances(self, mix: UsageMix) -> np.ndarray:
        """Rows x personas: distance of each account's mix to each persona's centroid."""
        return np.linalg.norm(mix.roots[:, None, :] - self.centroids[None, :, :], axis=2)

    def assign(self, features: Mapping[str, ArrayLike], previous: ArrayLike | None = None) -> np.ndarray:
        """Each row's persona name; with last run's personas, an account moves only past the margin.

        Hysteresis, as tiers have it: an account keeps last run's persona unless another centroid is
        nearer by more than `margin` (relative), and keeps or loses `not_adopted` only when its volume
        passes `min_events` by the margin, so assignments do not flap on noise between runs.

        Args:
            features: feature rows (a frame or arrays by column name).
            previous: last run's persona per row (None or unknown names: no previous persona).
        """
        mix = self.mix(features)
        dist = self.distances(mix)
        nearest = dist.argmin(axis=1)
        names = np.asarray(self.names, dtype=object)
        was = np.full(len(nearest), None, dtype=object) if previous is None else np.asarray(previous, dtype=object)
        index = {name: i for i, name in enumerate(self.names)}
        held = np.array([index.get(p, -1) if isinstance(p, str) else -1 for p in was.tolist()], dtype=int)
        rows = np.arange(len(nearest))
        keep = (held >= 0) & (dist[rows, np.maximum(held, 0)] <= dist[rows, nearest] * (1.0 + self.margin))
        chosen = np.where(keep, held, nearest)
        threshold = np.where(
            was == NOT_ADOPTED,
            self.min_events * (1.0 + self.margin),
            np.where(held >= 0, self.min_events * (1.0 - self.margin), self.min_events),
        )
        return np.where(mix.volume < threshold, NOT_ADOPTED, names[chosen]).astype(object)

    def gaps(self, features: Mapping[str, ArrayLike], personas: ArrayLike) -> np.ndarray:
        """Per row, the adoption gaps against renewing accounts of its persona, in words (None without any).

        "renewing report-exported-led accounts have report exports on 9 of 30 days (median), this
        account on 3: 3x": named where the peers' median is at least `GAP_MIN_DAYS` and `GAP_RATIO`
        times the account's days, at most two, the widest first. Unit-bearing and about what a CSM
        can change: days of use of a family in the last 30 days.
        """
        personas = np.asarray(personas, dtype=object)
        out = np.full(len(personas), None, dtype=object)
        usable = [(j, f) for j, f in enumerate(self.families) if f.days_column and f.days_column in features]
        if not usable:
            return out
        days = np.column_stack([np.asarray(features[f.days_column], dtype=float) for _, f in usable])
        days = np.nan_to_num(days)
        index = {name: i for i, name in enumerate(self.names)}
        for row, persona in enumerate(personas.tolist()):
            k = index.get(persona)
            if k is None:
                continue
            found = []
            for col, (j, family) in enumerate(usable):
                peers, own = self.renewing_days[k, j], days[row, col]
                if peers >= GAP_MIN_DAYS and peers >= GAP_RATIO * own:
                    found.append((peers / max(own, 0.5), peers - own, gap_text(persona, family.label, peers, own)))
            found.sort(key=lambda g: (-g[0], -g[1]))
            out[row] = "; ".join(text for *_, text in found[:2]) or None
        return out


def gap_text(persona: str, label: str, peers: float, own: float) -> str:
    """One adoption gap as a CSM reads it, with its unit (days with use in the last 30)."""
    times = f"{peers / own:.0f}x more" if own > 0 else "none here"
    return (
        f"renewing {persona} accounts have {label} on {peers:.0f} of the last 30 days (median), "
        f"this account on {own:.0f} ({times})"
    )


def persona_columns(
    personas: Personas | None, features: Mapping[str, ArrayLike], previous: Mapping[str, ArrayLike] | None
) -> dict[str, np.ndarray]:
    """The `persona` and `adoption_gaps` columns of scored rows (empty for a model trained without personas).

    `previous` is last run's scores (`account_id`, `persona`): the persona's hysteresis reads it.
    """
    ids = np.asarray(features["account_id"]).astype(str)
    if personas is None:
        empty = np.full(len(ids), None, dtype=object)
        return {"persona": empty, "adoption_gaps": empty.copy()}
    held = None
    if previous is not None and "persona" in previous:
        last = dict(zip(np.asarray(previous["account_id"]).astype(str).tolist(), previous["persona"], strict=True))
        held = np.array([last.get(a) for a in ids.tolist()], dtype=object)
    names = personas.assign(features, held)
    return {"persona": names, "adoption_gaps": personas.gaps(features, names)}


def check_plays(plays: Mapping[str, Mapping[str, str]], personas: Personas | None, source: str) -> None:
    """Refuse a tier policy whose plays name a persona the model does not have (a typo never silently drops a play).

    Raises:
        DataError: naming the unknown persona(s) and the ones the model has.
    """
    if not plays:
        return
    known = personas.known if personas is not None else {NOT_ADOPTED}
    unknown = sorted(set(plays) - known)
    if unknown:
        raise DataError(
            f"tier policy {source}: plays name unknown persona(s) {', '.join(unknown)}; "
            f"the model's personas are {', '.join(sorted(known))}"
        )
