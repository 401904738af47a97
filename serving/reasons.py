"""Reasons a CSM can act on, from LightGBM's exact tree SHAP values.

`ModelBundle.contributions` gives each feature's share of the account's probability minus the
base rate. A CSM does not think in 90 features, so the features of one metric family (all
login metrics, all active-user metrics) are added up into one driver, and each driver is worded
from the description of its strongest feature with the account's actual value: "Active users
down 45% (last 30 days vs the 30 before) (+12 pts risk)". Drivers go both ways (what raises
and what lowers the score); the top few by size are kept and each says whether a CSM can act
on it. Everything is array arithmetic over the whole batch; Python only builds the final strings.

A reason must never tell a CSM that healthy behaviour raised risk. Where a feature has a declared
direction (more logins is healthier, more days since the last activity is not), a driver worded from
it must move the score the way its value, compared with the median training account, says it should:
logins above the typical count may lower churn risk, never raise it. A driver that contradicts its
declared direction (tree SHAP can: interactions, or a model trained without monotone constraints) is
not worded as a reason; its points stay in the family points of `reasons_json`, so the points still
add up and "what changed" still sees them, and the next driver takes its place.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd

from features.bundle import ModelBundle
from features.metrics import COUNTING_AGGREGATES, FAMILIES, HEALTH_EFFECT, singular

TOP = 5
AGG_STYLES = {"lapsed_users": "stopped", "top_user_share": "share"}  # aggregates worded their own way
MIN_POINTS = 0.01  # drivers smaller than this (in percentage points) are not worth a line
CONTRACT_STYLES = {
    "arr": "money",
    "seats": "number_first",
    "seat_utilisation": "percent",
    "arr_change_90d": "change",
    "days_to_renewal": "number_first",
    "term_length_days": "number_first",
    "tenure_days": "number_first",
}
CHANGE = re.compile(r"change in (?P<subject>.+?)(?P<sep>, | over )(?P<tail>.+)")
# What a count is of ends where the description goes on to say when, per what or with what:
# "support tickets | per active user in the last 30 days".
COUNTED = re.compile(r"(?P<head>.+?)(?P<rest> (?:in|with|since|until|per|over|reached|during|from|who|\d+)\b.*)?")
STOPPED = re.compile(r"users who (?P<rest>.+)")  # "users who stopped ...": worded "3 of 12 users stopped ..."


@dataclass
class Drivers:
    """The top drivers of one model for a batch of rows; arrays are (rows, TOP)."""

    family: np.ndarray  # family name, "" where the row has fewer drivers
    feature: np.ndarray  # the family's strongest feature in that row, whose value the text shows
    value: np.ndarray  # that feature's value (float or category label)
    points: np.ndarray  # percentage points of probability, signed
    actionable: np.ndarray
    text: np.ndarray  # worded driver, None where there is none
    family_points: pd.DataFrame  # every family's points per row (for "what changed")


def drivers(bundle: ModelBundle, A: np.ndarray, points: np.ndarray, unit: str, top: int = TOP) -> Drivers:
    """Group feature points into families, keep the `top` largest per row that fit common sense, and word them.

    Args:
        bundle: the model whose descriptions, families, actionable flags and declared directions
            word and screen the drivers.
        A: the array the points were computed on (`bundle.array`), for the actual values.
        points: `bundle.contributions(A)[0]`, probability per feature (rows add up to risk - base).
        unit: what the points move, shown after them ("risk", "growth").
    """
    P = points * 100.0
    names, fam_points, shown = grouped(bundle, P)
    contradicts = contradictions(bundle, A, shown, fam_points)
    k = min(top, len(names))
    order = np.argsort(np.where(contradicts, 1.0, -np.abs(fam_points)), axis=1, kind="stable")[:, :k]
    rows = np.arange(len(P))[:, None]
    pts = fam_points[rows, order]
    feat_idx = shown[rows, order]
    keep = (np.abs(pts) >= MIN_POINTS) & ~contradicts[rows, order]
    feature = np.asarray(bundle.features, dtype=object)[feat_idx]
    value = feature_values(bundle, A, feat_idx, np.broadcast_to(rows, feat_idx.shape))
    actionable = np.array([bool(bundle.actionable.get(f, False)) for f in bundle.features])[feat_idx]
    of = np.full(feat_idx.shape, np.nan)
    for part, whole in wholes(bundle).items():
        mask = feat_idx == part
        of[mask] = A[np.broadcast_to(rows, feat_idx.shape)[mask], whole]
    text = driver_texts(bundle, feature, value, of, pts, actionable, keep, unit)
    family = np.where(keep, np.asarray(names, dtype=object)[order], "")
    return Drivers(
        family=family,
        feature=np.where(keep, feature, ""),
        value=value,
        points=np.where(keep, pts, 0.0),
        actionable=actionable & keep,
        text=text,
        family_points=pd.DataFrame(fam_points, columns=names),
    )


def grouped(bundle: ModelBundle, P: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(family names, points per row and family, per row and family the feature the driver is worded from)."""
    names, members = family_members(bundle)
    fam_points = np.column_stack([P[:, idx].sum(axis=1) for idx in members])
    shown = np.column_stack([idx[leading(P[:, idx])] for idx in members])
    return names, fam_points, shown


def leading(P: np.ndarray) -> np.ndarray:
    """Per row, the position of the feature that pushes a family's points hardest in the family's own direction.

    The driver is worded from this feature's value, so the sentence explains the family's sign; the
    largest feature by size could point the other way and be outweighed by the rest of its family.
    """
    sign = np.sign(P.sum(axis=1, keepdims=True))
    return np.where(sign != 0, P * sign, np.abs(P)).argmax(axis=1)


def contradictions(bundle: ModelBundle, A: np.ndarray, shown: np.ndarray, fam_points: np.ndarray) -> np.ndarray:
    """(rows, families): True where a driver's sign contradicts the declared direction of the feature it shows.

    With a declared direction, a value above the training median of something healthy should lower
    churn risk (and raise growth potential), one below it raise risk, and a typical value (the median
    itself) explains neither. Undeclared features, values without a median (bundles from before the
    declarations) and missing values (except days since the last event: nothing within the
    look-back is the longest wait) are not judged.
    """
    effect = HEALTH_EFFECT.get(bundle.target, 0) * np.array([bundle.directions.get(f, 0) for f in bundle.features])
    typical = np.array([bundle.typical.get(f, np.nan) for f in bundle.features], dtype=float)
    recency = np.isin(bundle.features, bundle.metrics.recency)
    value = A[np.arange(len(A))[:, None], shown]
    value = np.where(np.isnan(value) & recency[shown], np.inf, value)
    median = typical[shown]
    side = (value > median).astype(int) - (value < median).astype(int)
    judged = (effect[shown] != 0) & ~np.isnan(value) & ~np.isnan(median)
    return judged & (np.sign(fam_points) != effect[shown] * side)


def family_members(bundle: ModelBundle) -> tuple[list[str], list[np.ndarray]]:
    """Driver families in first-seen feature order, each with the column positions of its features."""
    groups: dict[str, list[int]] = {}
    for i, feature in enumerate(bundle.features):
        groups.setdefault(bundle.families.get(feature, feature), []).append(i)
    return list(groups), [np.asarray(idx) for idx in groups.values()]


def wholes(bundle: ModelBundle) -> dict[int, int]:
    """Feature position -> position of the feature counting the group it is part of, where the model has both.

    Users who stopped are part of the users active in the window before theirs ("3 of 12 users stopped"):
    a count alone cannot say whether 3 is most of the account or a rounding error.
    """
    position = {f: i for i, f in enumerate(bundle.features)}
    out = {}
    for part in bundle.metrics.windows:
        if part.agg != "lapsed_users" or part.name not in position:
            continue
        for whole in bundle.metrics.windows:
            if (
                whole.agg == "distinct_users"
                and whole.name in position
                and (whole.events, whole.window_days) == (part.events, part.window_days)
                and whole.offset_days == part.offset_days + part.window_days
            ):
                out[position[part.name]] = position[whole.name]
    return out


def feature_values(bundle: ModelBundle, A: np.ndarray, feat_idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The value of feature `feat_idx[i, j]` in row `rows[i, j]` (category labels for categories)."""
    out = A[rows, feat_idx].astype(object)
    for j in np.unique(feat_idx):
        if bundle.features[j] in bundle.categories:
            mask = feat_idx == j
            out[mask] = bundle.category(j, A[rows[mask], j])
    return out


def driver_texts(
    bundle: ModelBundle,
    feature: np.ndarray,
    value: np.ndarray,
    of: np.ndarray,
    pts: np.ndarray,
    actionable: np.ndarray,
    keep: np.ndarray,
    unit: str,
) -> np.ndarray:
    """One sentence per kept driver: the worded value (out of `of` where it is a part of a whole), then its
    signed points and actionability."""
    out = np.full(feature.shape, None, dtype=object)
    for name in np.unique(feature[keep]):
        mask = keep & (feature == name)
        style, description = style_of(bundle, name), bundle.descriptions.get(name, name)
        window = window_days(bundle, name)
        out[mask] = [
            f"{worded(style, description, v, window, o)} ({signed_points(p)} pts {unit}"
            f"{'' if a else ', not actionable'})"
            for v, o, p, a in zip(value[mask], of[mask], pts[mask], actionable[mask], strict=True)
        ]
    return out


def style_of(bundle: ModelBundle, feature: str) -> str:
    """How a feature's value reads in a sentence, from its metric declaration (or contract role)."""
    if feature in bundle.categories:
        return "category"
    if feature in CONTRACT_STYLES:
        return CONTRACT_STYLES[feature]
    for metric in bundle.metrics.windows:
        if metric.name == feature:
            return AGG_STYLES.get(metric.agg) or ("count" if metric.agg in COUNTING_AGGREGATES else metric.agg)
    for derived in bundle.metrics.derived:
        if derived.name == feature:
            return "renewal_change" if derived.renewal_within_days is not None else derived.kind
    return "plain"


def window_days(bundle: ModelBundle, feature: str) -> int | None:
    """The look-back of a window metric (for "more than N days" when nothing happened in it), or how close to
    a renewal a renewal-gated trend exists (for "renewal more than N days away")."""
    days = {m.name: m.window_days for m in bundle.metrics.windows}
    days |= {d.name: d.renewal_within_days for d in bundle.metrics.derived if d.renewal_within_days is not None}
    return days.get(feature)


def worded(style: str, description: str, value, window: int | None = None, of: float | None = None) -> str:
    """A feature's description with its value worked in, capitalised as a sentence.

    Styles: `count` (a window count or sum: missing means none), `rate` (a count per day, shown per
    30 days when under one a day), `number_first` (a contract number: missing is unknown), `ratio`
    (missing: nothing to divide by), `days_since_last`, `change`, `renewal_change` (a change that exists
    only `window` days or less before a renewal), `percent`, `share` (description: 42%), `stopped` (users
    who stopped, `of` the users before them), `money`, `category` and `plain` (description: value).
    """
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if style == "stopped" and not missing:
        text = worded_stopped(description, float(value), of)
    elif style == "share":
        text = f"{description}: {'not defined (no events)' if missing else f'{value:.0%}'}"
    elif style == "renewal_change":
        absent = f"not measured (renewal more than {window} days away, or no use in the earlier period)"
        text = worded_change(description, None if missing else float(value), absent)
    elif style == "category":
        head, _, rest = description.partition(" (")
        text = f"{head}: {'unknown' if missing else value}" + (f" ({rest}" if rest else "")
    elif style == "change":
        text = worded_change(description, None if missing else float(value))
    elif style == "percent":
        head, _, rest = description.partition(" (")
        text = f"{head} {'unknown' if missing else f'{value:.0%}'}" + (f" ({rest}" if rest else "")
    elif style == "days_since_last":
        text = worded_wait(description, None if missing else float(value), window)
    elif style == "rate" and not missing and 0 < value < 1 and " per day" in description:
        text = counted(value * 30, description.replace(" per day", " per 30 days", 1))  # 1 a month, not 0.033 a day
    elif style in ("count", "rate", "number_first", "ratio") and not missing:
        text = counted(float(value), description)
    elif style in ("count", "rate", "stopped"):
        text = f"no {description}"
    elif style == "ratio":
        text = f"{description}: not defined (nothing to divide by)"
    elif style == "money":
        text = f"{description} {'unknown' if missing else f'{value:,.0f}'}"
    else:
        text = f"{description}: {'unknown' if missing else number(value)}"
    return text[:1].upper() + text[1:]


def counted(value: float, description: str) -> str:
    """'3 logins in the last 30 days', and '1 login in the last 30 days': the counted noun agrees with the number."""
    shown = number(value)
    if shown != "1":
        return f"{shown} {description}"
    match = COUNTED.fullmatch(description)
    return f"1 {singular(match['head'])}{match['rest'] or ''}"


def worded_wait(description: str, days: float | None, window: int | None) -> str:
    """'12 days since the last login', '1 day since any activity'; missing: 'more than 365 days since ...'."""
    if days is not None:
        return counted(days, description)
    if description.startswith("days "):
        return f"more than {window} {description}"
    return f"{description}: more than {window} days"


def worded_change(description: str, value: float | None, absent: str | None = None) -> str:
    """'change in logins, last 30 days vs the 30 before' at -0.45 -> 'logins down 45% (last 30 days ...)'.

    `absent` says why a missing value is missing, when it can be more than "nothing earlier to compare with".
    """
    match = CHANGE.fullmatch(description)
    if not match:
        return f"{description}: {'unknown' if value is None else f'{value:+,.0%}'}"
    subject, sep, tail = match["subject"], match["sep"], match["tail"]
    if value is None:  # the earlier figure was zero (or absent): a ratio to it means nothing
        if absent:
            return f"{subject}: {absent}"
        return f"{subject}: none in the earlier period to compare with ({tail if sep == ', ' else 'over ' + tail})"
    move = "unchanged" if round(value * 100) == 0 else f"{'up' if value > 0 else 'down'} {abs(value):,.0%}"
    return f"{subject} {move} ({tail})" if sep == ", " else f"{subject} {move} over {tail}"


def worded_stopped(description: str, stopped: float, of: float | None) -> str:
    """'3 of 12 users stopped using the product ...' where the users before are known, else '3 users who stopped'."""
    match = STOPPED.fullmatch(description)
    if of is None or math.isnan(of) or of <= 0 or not match:
        return counted(stopped, description)
    return f"{number(stopped)} of {number(of)} {'user' if of == 1 else 'users'} {match['rest']}"


def number(value: float) -> str:
    """A count or rate as a person writes it: 3, 1,250, 0.45, 2.5; never '-0', '3.0' or '1e-05'."""
    value = float(value) + 0.0  # + 0.0 turns -0.0 into 0.0
    if value.is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) < 0.01:
        return "less than 0.01" if value > 0 else "almost 0"
    text = f"{value:.2g}" if abs(value) < 1 else f"{value:.1f}"
    return text.removesuffix(".0")


def signed_points(p: float) -> str:
    """'+12' or '−4' (a true minus sign); more decimals for small moves, so they do not read as zero."""
    size = abs(p)
    text = f"{size:.0f}" if size >= 1 else f"{size:.1f}" if size >= 0.1 else f"{size:.2f}"
    return ("+" if p >= 0 else "\u2212") + text


def reasons_json(**models: Drivers) -> list[str]:
    """Per row, each model's drivers as JSON: `{"churn": [...], "growth": [...], "churn_families": {...}, ...}`.

    A driver is its family, feature, text, points, value and actionable flag. Every family's
    points are kept too (rounded), so a later run can say which drivers moved.
    """
    columns = []
    for name, d in models.items():
        columns += [(name, driver_dicts(d)), (f"{name}_families", family_dicts(d.family_points))]
    keys = [key for key, _ in columns]
    return [
        orjson.dumps(dict(zip(keys, values, strict=True))).decode()
        for values in zip(*(rows for _, rows in columns), strict=True)
    ]


def family_dicts(points: pd.DataFrame) -> list[dict[str, float]]:
    """Each row's family points, rounded, as a plain dict (built from the array: no per-row pandas)."""
    names = points.columns.tolist()
    return [dict(zip(names, row, strict=True)) for row in points.to_numpy().round(2).tolist()]


def driver_dicts(d: Drivers) -> list[list[dict]]:
    """Each row's kept drivers as plain dicts, in order of size."""
    points = np.round(d.points, 2)
    return [
        [
            {
                "driver": d.family[i, j],
                "feature": d.feature[i, j],
                "text": d.text[i, j],
                "points": float(points[i, j]),
                "value": plain(d.value[i, j]),
                "actionable": bool(d.actionable[i, j]),
            }
            for j in range(d.family.shape[1])
            if d.text[i, j] is not None
        ]
        for i in range(d.family.shape[0])
    ]


def plain(value):
    """A JSON-friendly value: numbers as float (NaN as null), categories as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value) if isinstance(value, int | float | np.number) else str(value)


def family_labels(bundle: ModelBundle) -> dict[str, str]:
    """A short name per driver family for "what changed": 'support tickets', 'active users', 'tenure_days'."""
    labels: dict[str, str] = {}
    for feature in bundle.features:
        family, description = bundle.families.get(feature, feature), bundle.descriptions.get(feature, feature)
        if feature == family or feature.endswith("__count_30d"):
            labels[family] = description.removesuffix(" in the last 30 days")
    return {
        family: labels.get(family) or FAMILIES.get(family) or family.replace("_", " ")
        for family in family_members(bundle)[0]
    }
