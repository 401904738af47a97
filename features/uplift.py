"""The growth an account's own peers achieved: what expected expansion multiplies by.

Expected expansion = growth potential x ARR x the mean relative ARR increase of growing accounts.
One mean for the whole book tells a 2-seat starter account and a 500-seat enterprise the same
thing; the share by which an account grows depends on where it stands. So the mean is taken over
its peers: accounts on the same plan when `plan` is a model feature (the attribute screen kept it,
so it is trusted as known at each as-of date), otherwise accounts in the same ARR band (quartiles
of the training snapshots' ARR). A peer group with fewer than `MIN_GROWERS` distinct growing
accounts is too thin to tell its mean from noise and gets the book-wide mean instead, as do
values training never saw (a new plan, a missing one).

Training fits a `PeerUplift` and stores it in the growth model's info; scoring reapplies it row
by row. It lives in `features` because both sides use it and neither may import the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.bundle import numbers

FALLBACK_UPLIFT = 0.2  # relative ARR increase assumed for growth when the data shows no growth at all
MIN_GROWERS = 20  # distinct growing accounts a peer group needs before its own mean is used
ARR_BANDS = 4  # ARR quantile bands when there is no plan to group by
PLAN = "plan"  # the account attribute that names an account's peers, when it is a model feature


def growers(frame: pd.DataFrame) -> pd.DataFrame:
    """Growth-positive rows with a finite realised uplift (`uplift` = ARR(T+H) / ARR(T) - 1)."""
    grown = frame[frame["growth"] == 1]
    return grown[np.isfinite(grown["uplift"].to_numpy(dtype=float))]


def book_uplift(frame: pd.DataFrame) -> float:
    """Mean realised uplift of every growth-positive row of a snapshot frame (`FALLBACK_UPLIFT` when none)."""
    uplift = growers(frame)["uplift"].to_numpy(dtype=float)
    return float(uplift.mean()) if len(uplift) else FALLBACK_UPLIFT


@dataclass
class PeerUplift:
    """Uplift per peer group, learnt from training snapshots; JSON-ready through `as_dict`/`from_dict`."""

    by: str  # "plan" or "arr_band"
    book: float  # book-wide mean uplift of growers: the fallback
    groups: list[dict]  # per peer group: peer, growers (distinct accounts), realised, uplift (the value used)
    arr_edges: list[float]  # upper edges of the ARR bands but the last (empty when grouping by plan)
    min_growers: int = MIN_GROWERS

    @classmethod
    def fit(cls, frame: pd.DataFrame, by_plan: bool, min_growers: int = MIN_GROWERS) -> PeerUplift:
        """Peer groups of a snapshot frame (`account_id, arr, growth, uplift`, and `plan` when `by_plan`).

        Args:
            by_plan: group by `plan` (only when it is a model feature), else by ARR quantile band.
            min_growers: distinct growing accounts a group needs to keep its own mean.
        """
        book = book_uplift(frame)
        if by_plan:
            edges, peer = [], frame[PLAN].astype("string")
            names = sorted(peer.dropna().unique())
        else:
            arr = frame["arr"].to_numpy(dtype=float)
            edges = np.unique(np.nanquantile(arr, np.linspace(0, 1, ARR_BANDS + 1)[1:-1])).tolist()
            names = band_names(edges)
            peer = pd.Series(np.asarray(names, dtype=object)[np.searchsorted(edges, arr, side="right")], frame.index)
        grown = growers(frame).assign(peer=peer)
        count = grown.groupby("peer")["account_id"].nunique()
        realised = grown.groupby("peer")["uplift"].mean()
        groups = [
            {
                "peer": str(name),
                "growers": int(count.get(name, 0)),
                "realised": float(realised[name]) if name in realised else None,
                "uplift": float(realised[name]) if count.get(name, 0) >= min_growers else book,
            }
            for name in names
        ]
        return cls("plan" if by_plan else "arr_band", book, groups, edges, min_growers)

    def uplift(self, features: Mapping[str, ArrayLike]) -> np.ndarray:
        """The uplift of each row's peer group (the book-wide mean for a peer training never saw, or no ARR)."""
        if self.by == "arr_band":
            arr = numbers(features["arr"])
            by_band = np.array([g["uplift"] for g in self.groups])  # groups are in band order
            return np.where(np.isnan(arr), self.book, by_band[np.searchsorted(self.arr_edges, arr, side="right")])
        used = {g["peer"]: g["uplift"] for g in self.groups}
        peer = pd.Series(np.asarray(features[PLAN], dtype=object)).astype("string")
        return peer.map(used).astype(float).fillna(self.book).to_numpy()

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PeerUplift:
        return cls(**values)


def band_names(edges: list[float]) -> list[str]:
    """Readable names of the ARR bands cut at `edges`: "ARR under 2,961", "ARR 2,961 to 6,520", ..."""
    if not edges:
        return ["all ARR"]
    bounds = [f"{e:,.0f}" for e in edges]
    middle = [f"ARR {lo} to {hi}" for lo, hi in zip(bounds, bounds[1:], strict=False)]
    return [f"ARR under {bounds[0]}", *middle, f"ARR {bounds[-1]} and over"]
