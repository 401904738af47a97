"""A feature profile: per feature, the bins of its training distribution and the share of rows in each.

Why it exists: monitoring compares the newest batch's features with what the model learned from.
Training logs this small profile with the run (`feature_profile.json`), so the comparison costs a
download of a few kilobytes instead of rebuilding every training snapshot from the data folder,
and it describes exactly the rows the model was fitted on even after the data folder has moved on.
It lives in `features` because training writes it and monitoring reads it, and neither imports
the other. The same `shares` function bins both sides, so the two distributions are comparable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RECENT_DAYS = 91  # the newest quarter of the training window (see `feature_profile`)
BINS = 10  # deciles of the training values: the usual resolution of a population stability index
QUANTILES = np.linspace(0, 1, BINS + 1)[1:-1]  # taken as observed values: a count's edge is a count
MERGE_SHARE = 0.05  # edges closer than this share of the edges' span are one edge (`merged_edges`)


def feature_profile(
    frame: pd.DataFrame, names: list[str], categorical: list[str] | tuple[str, ...] = (), recent_days: int = RECENT_DAYS
) -> dict:
    """The profile of the training rows of the last `recent_days` before the newest as-of date in `frame`.

    Why the recent end of the training window rather than all of it: a growing book changes its mix
    over two years, and the first snapshots of an export have look-back windows that reach back before
    the export began (empty counts); the newest quarter is the population the model's newest labels
    describe, and the fair comparison for the batch scored next.

    Returns:
        ``{"rows": n, "as_of_from": ..., "as_of_to": ..., "features": {name: entry}}`` (`profile_entry`).
    """
    as_of = pd.to_datetime(frame["as_of"])
    recent = frame[as_of >= as_of.max() - pd.Timedelta(days=recent_days)]
    return {
        "rows": len(recent),
        "as_of_from": str(pd.Timestamp(recent["as_of"].min()).date()),
        "as_of_to": str(pd.Timestamp(recent["as_of"].max()).date()),
        "features": {name: profile_entry(recent[name], name in categorical) for name in names},
    }


def profile_entry(values: pd.Series, categorical: bool = False) -> dict:
    """One feature's bins (numeric: edges at the deciles; categorical: the categories) and their shares.

    Missing values get their own bin, the last, so a feature that stops being filled shows as drift too.
    """
    if categorical:
        entry = {"kind": "categorical", "categories": sorted(map(str, values.dropna().unique()))}
    else:
        finite = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        finite = finite[np.isfinite(finite)]
        inner = np.quantile(finite, QUANTILES, method="inverted_cdf") if len(finite) else np.array([])
        entry = {"kind": "numeric", "edges": merged_edges(np.unique(inner))}
    entry["shares"] = [float(s) for s in shares(entry, values)]
    return entry


def merged_edges(edges: np.ndarray) -> list[float]:
    """Decile edges with near-duplicates merged into the upper one (`MERGE_SHARE` of the edges' span).

    Why: a 30- and a 31-day monthly term sit on two edges of their own, and one as-of date sees only
    one month's length, so a calendar detail would read as a major drift; a bin must mean a real
    difference in the book.
    """
    tolerance = MERGE_SHARE * (edges[-1] - edges[0]) if len(edges) else 0.0
    kept: list[float] = []
    for edge in edges.tolist():
        if kept and edge - kept[-1] <= tolerance:
            kept[-1] = edge
        else:
            kept.append(edge)
    return kept


def shares(entry: dict, values: pd.Series) -> np.ndarray:
    """Share of `values` in each bin of a profile entry; the last bin holds missing (and unseen categories).

    Numeric bins are right-closed at the edges (a value equal to an edge falls in the lower bin), so
    heavily tied values such as zero counts stay in one bin on both sides.
    """
    n = len(values)
    if entry["kind"] == "categorical":
        cats = entry["categories"]
        text = values.astype("string")
        counts = [int((text == c).sum()) for c in cats]
        counts.append(n - sum(counts))
    else:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        present = np.isfinite(numbers)
        which = np.searchsorted(np.asarray(entry["edges"], dtype=float), numbers[present], side="left")
        counts = list(np.bincount(which, minlength=len(entry["edges"]) + 1))
        counts.append(int((~present).sum()))
    return np.asarray(counts, dtype=float) / max(n, 1)
