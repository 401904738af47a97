"""What each console page shows, as plain data for its template: the book, an account, renewals, moves.

Every function reads the snapshot in service (`serving.console.data`) and returns dicts and
lists; nothing here touches HTTP or HTML, so the pages' content can be rendered in-process
(bench/console.py) and checked without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date
from urllib.parse import urlencode

import numpy as np
import orjson
import pandas as pd

from features.io import spreadsheet_safe
from serving.console import charts
from serving.console.data import Snapshot
from serving.report import tier_cutoffs, waterfall
from serving.scoring import family_points, moved_drivers
from serving.tiers import POOLS, TIERS, TierPolicy

PAGE_ROWS = 50  # accounts per book page
MONTH_ROWS = 25  # accounts listed per renewal month (the book, filtered to the month, has them all)
MOVED_ROWS = 100  # accounts listed per kind of move
MOVED_POINTS = 10.0  # default: risk up by more than this many points is a move
RENEWAL_WINDOWS = (30, 90, 180, 365)  # days, the book's renewal filter
BANDS = ("high", "medium", "low")
SORTS = {  # query value -> column, in the order the book's columns appear
    "account": "account_id",
    "name": "name",
    "owner": "owner",
    "tier": "tier",
    "risk": "churn_risk",
    "potential": "growth_potential",
    "arr": "arr",
    "at_risk": "arr_at_risk",
    "value": "priority",
    "renewal": "renewal_date",
}
CSV_COLUMNS = [
    "account_id",
    "name",
    "owner",
    "tier",
    "segment",
    "churn_risk",
    "growth_potential",
    "arr",
    "arr_at_risk",
    "expected_expansion",
    "renewal_date",
    "escalate",
    "insufficient_history",
    "reason_1",
]


@dataclass(frozen=True)
class BookQuery:
    """The book's filters, search and sort, as they appear in its URL (so every view has a stable link).

    Values a page cannot use (an unknown sort, a window that is not offered, a page past the end)
    fall back to the default rather than failing: a bookmarked link keeps working when the book changes.
    """

    tier: str = ""
    segment: str = ""
    owner: str = ""
    renew: str = ""  # days ahead, one of RENEWAL_WINDOWS
    month: str = ""  # YYYY-MM: renewing that month (the renewal pipeline links here)
    band: str = ""
    q: str = ""
    mine: str = ""
    sort: str = "value"
    order: str = "desc"
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> BookQuery:
        """The query from a request's parameters (unknown or unusable values ignored)."""
        get = {k: str(params.get(k, "")).strip()[:200] for k in cls.__dataclass_fields__}
        page = int(get["page"]) if get["page"].isdigit() else 1
        return cls(
            tier=get["tier"],
            segment=get["segment"],
            owner=get["owner"],
            renew=get["renew"] if get["renew"] in map(str, RENEWAL_WINDOWS) else "",
            month=get["month"] if len(get["month"]) == 7 and get["month"][4] == "-" else "",
            band=get["band"] if get["band"] in BANDS else "",
            q=get["q"],
            mine="1" if get["mine"] == "1" else "",
            sort=get["sort"] if get["sort"] in SORTS else "value",
            order="asc" if get["order"] == "asc" else "desc",
            page=max(page, 1),
        )

    def url(self, path: str, **changes) -> str:
        """This view's link with some values changed; defaults are left out so links stay short."""
        values = asdict(replace(self, **changes))
        defaults = asdict(BookQuery())
        kept = {k: v for k, v in values.items() if v != defaults[k]}
        return path + ("?" + urlencode(kept) if kept else "")

    def sorted_by(self, path: str, key: str) -> str:
        """The link a column header gives: sort by it, flipping the order when it already sorts by it."""
        flip = "asc" if self.sort == key and self.order == "desc" else "desc"
        return self.url(path, sort=key, order=flip if self.sort == key else "desc", page=1)


def book_view(snapshot: Snapshot, query: BookQuery, user: str) -> pd.DataFrame:
    """The accounts the query selects, sorted (all of them: the page slices, the CSV takes them all)."""
    book = snapshot.book
    mask = np.ones(len(book), dtype=bool)
    if query.tier:
        mask &= book["tier"].to_numpy() == query.tier
    if query.segment:
        mask &= book["segment"].to_numpy() == query.segment
    if query.owner:
        mask &= book["owner"].to_numpy() == query.owner
    if query.mine:
        mask &= book["owner"].str.lower().to_numpy() == user.lower()
    if query.band:
        mask &= book["band"].to_numpy() == query.band
    if query.renew:
        days = book["days_to_renewal"].to_numpy(dtype=float)
        mask &= (days >= 0) & (days <= int(query.renew))
    if query.month:
        mask &= book["renewal_date"].dt.strftime("%Y-%m").to_numpy() == query.month
    if query.q:
        text = query.q.lower()
        mask &= (
            book["account_id"].str.lower().str.contains(text, regex=False).to_numpy()
            | book["name"].str.lower().str.contains(text, regex=False).to_numpy()
        )
    chosen = book[mask]
    column = SORTS[query.sort]
    return chosen.sort_values([column, "account_id"], ascending=[query.order == "asc", True], na_position="last")


def book_page(snapshot: Snapshot, query: BookQuery, user: str) -> dict:
    """The book page: the view's rows on this page, its totals per tier, and the filter choices."""
    view = book_view(snapshot, query, user)
    pages = max(1, math.ceil(len(view) / PAGE_ROWS))
    page = min(query.page, pages)
    rows = view.iloc[(page - 1) * PAGE_ROWS : page * PAGE_ROWS]
    book = snapshot.book
    return {
        "query": query,
        "rows": account_rows(rows),
        "total": len(view),
        "arr": float(view["arr"].sum()),
        "arr_at_risk": float(view["arr_at_risk"].sum()),
        "by_tier": per_tier(view),
        "page": page,
        "pages": pages,
        "choices": {
            "tier": ordered(book["tier"], TIERS),
            "segment": ordered(book["segment"], ()),
            "owner": ordered(book["owner"], ()),
            "renew": RENEWAL_WINDOWS,
            "band": BANDS,
        },
        "has_owners": snapshot.has_owners,
        "sorts": SORTS,
    }


def ordered(column: pd.Series, first: tuple[str, ...]) -> list[str]:
    """A column's distinct non-blank values: `first` in its order, then the rest sorted."""
    present = set(column.unique().tolist()) - {""}
    return [v for v in first if v in present] + sorted(present - set(first))


def per_tier(view: pd.DataFrame) -> list[dict]:
    """Accounts, ARR and ARR at risk per tier of the view, in tier order."""
    grouped = view.groupby("tier", sort=False).agg(
        accounts=("arr", "size"), arr=("arr", "sum"), arr_at_risk=("arr_at_risk", "sum")
    )
    names = ordered(view["tier"], TIERS)
    return [{"tier": t, **{k: float(v) for k, v in grouped.loc[t].items()}} for t in names]


def account_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as the tables show them (dicts; missing numbers as None)."""
    keep = [
        "account_id",
        "name",
        "owner",
        "tier",
        "segment",
        "churn_risk",
        "growth_potential",
        "arr",
        "arr_at_risk",
        "priority",
        "renewal_date",
        "days_to_renewal",
        "band",
        "escalate",
        "insufficient_history",
        "reason_1",
    ]
    rows = frame[keep].to_dict("records")
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and math.isnan(value) or value is pd.NaT:
                row[key] = None
    return rows


def book_csv(snapshot: Snapshot, query: BookQuery, user: str) -> str:
    """The view as CSV, every row, text that starts like a formula defused (`features.io.spreadsheet_safe`)."""
    view = book_view(snapshot, query, user)
    out = view[[c for c in CSV_COLUMNS if c in view]].copy()
    out["renewal_date"] = out["renewal_date"].dt.strftime("%Y-%m-%d")
    return spreadsheet_safe(out.reset_index(drop=True)).to_csv(index=False)


# --- account ---------------------------------------------------------------------------------


def account_page(snapshot: Snapshot, account_id: str, policy: TierPolicy) -> dict | None:
    """One account's story: now, over time, why, what changed and its activity; None when unknown."""
    book = snapshot.book
    if account_id not in book.index:
        return None
    row = book.loc[account_id]
    trend = snapshot.trend(account_id)
    previous = snapshot.previous
    before = previous.loc[account_id] if previous is not None and account_id in previous.index else None
    churn, growth = drivers(row.get("reasons_json"))
    return {
        "row": account_rows(book.loc[[account_id]])[0],
        "facts": row,
        "chart": risk_chart(trend, row, snapshot.as_of),
        "tier": tier_story(snapshot, row, policy),
        "waterfall": waterfall(row) if isinstance(row.get("reasons_json"), str) else None,
        "churn_drivers": churn,
        "growth_drivers": growth,
        "changed": since_before(row, before),
        "activity": activity(trend),
        "batches": len(trend),
    }


def drivers(reasons_json) -> tuple[list[dict], list[dict]]:
    """The worded churn and growth drivers of a `reasons_json` cell (empty lists without one)."""
    if not isinstance(reasons_json, str) or not reasons_json:
        return [], []
    try:
        data = orjson.loads(reasons_json)
    except orjson.JSONDecodeError:
        return [], []
    if not isinstance(data, dict):
        return [], []
    return [d for d in data.get("churn") or [] if isinstance(d, dict)], [
        d for d in data.get("growth") or [] if isinstance(d, dict)
    ]


def risk_chart(trend: pd.DataFrame, row: pd.Series, as_of: date | None) -> dict:
    """Risk and potential over the history's batches (the latest batch alone when there is no history)."""
    if len(trend):
        days = pd.to_datetime(trend["as_of"]).dt.strftime("%Y-%m-%d").tolist()
        risk = trend["churn_risk"].to_numpy(dtype=float).tolist()
        potential = trend["growth_potential"].to_numpy(dtype=float).tolist()
        pairs = zip(trend["churn_model_version"].tolist(), trend["growth_model_version"].tolist(), strict=True)
        versions = [f"churn v{c} / growth v{g}" for c, g in pairs]
    else:
        days = [str(as_of)] if as_of else [""]
        risk, potential = [float(row["churn_risk"])], [float(row["growth_potential"])]
        versions = [f"churn v{row.get('churn_model_version')} / growth v{row.get('growth_model_version')}"]
    markers = [(i, versions[i]) for i in range(1, len(versions)) if versions[i] != versions[i - 1]]
    lines = [charts.Series("churn risk", "risk", risk), charts.Series("growth potential", "potential", potential)]
    return {
        **charts.trend_chart(days, lines, markers),
        "days": days,
        "risk": list(risk),
        "potential": list(potential),
        "first_version": versions[0],
    }


def tier_story(snapshot: Snapshot, row: pd.Series, policy: TierPolicy) -> dict:
    """Why the account holds its tier: its value at stake against each pool's boundary, and how full each is."""
    book = snapshot.book
    cutoffs = snapshot_cutoffs(snapshot)
    used = book["pool"].value_counts()
    pools = [
        {
            "pool": pool,
            "boundary": cutoffs.get(pool),
            "places": policy.capacity.get(pool),
            "used": int(used.get(pool, 0)),
            "clears": row["priority"] >= cutoffs[pool] if cutoffs.get(pool) == cutoffs.get(pool) else None,
        }
        for pool in POOLS
    ]
    return {"value": float(row["priority"]), "pool": row["pool"], "pools": pools}


def snapshot_cutoffs(snapshot: Snapshot) -> dict[str, float]:
    """Each pool's boundary (lowest value at stake holding a place), worked out once per snapshot."""
    key = "__cutoffs__"
    cache = snapshot.book.attrs
    if key not in cache:
        cache[key] = tier_cutoffs(snapshot.book) if len(snapshot.book) else {}
    return cache[key]


def since_before(row: pd.Series, before: pd.Series | None) -> dict | None:
    """Risk, potential and tier in the previous batch against now, and the drivers that moved most."""
    if before is None:
        return None
    moved = moved_drivers(
        family_points(clean_json(row.get("reasons_json"))), family_points(clean_json(before.get("reasons_json"))), {}
    )
    return {
        "as_of": pd.Timestamp(before["as_of"]).date() if "as_of" in before else None,
        "risk": (float(before["churn_risk"]), float(row["churn_risk"])),
        "potential": (float(before["growth_potential"]), float(row["growth_potential"])),
        "tier": (before["tier"], row["tier"]),
        "drivers": [label_of(d) for d in moved],
    }


def clean_json(text) -> str | None:
    """A `reasons_json` cell that parses as tierwise wrote it, else None (a bad cell is shown as no drivers)."""
    try:
        family_points(text)
    except Exception:  # any malformed cell: the page shows no driver movement rather than failing
        return None
    return text


def label_of(moved: str) -> str:
    """A moved-driver phrase with the family slug made readable ('support_ticket +8 pts' -> 'support ticket +8 pts')."""
    return moved.replace("_", " ")


def activity(trend: pd.DataFrame) -> list[dict]:
    """Per event family, its events in the 30 days before each batch, as sparklines (from `activity_30d`)."""
    counts: dict[str, list[float]] = {}
    cells = trend["activity_30d"].tolist() if "activity_30d" in trend else []
    for i, cell in enumerate(cells):
        parsed = orjson.loads(cell) if isinstance(cell, str) and cell else {}
        for family, value in parsed.items():
            counts.setdefault(family, [math.nan] * len(cells))[i] = float(value)
    return [
        {"family": family.replace("_", " "), "values": values, "last": values[-1], "line": charts.sparkline(values)}
        for family, values in sorted(counts.items())
    ]


# --- renewals, moved -------------------------------------------------------------------------


def renewals_page(snapshot: Snapshot, months: int = 6) -> dict:
    """Renewals per month for the next two quarters: count, ARR, ARR at risk, and the riskiest accounts."""
    book = snapshot.book
    start = pd.Timestamp(snapshot.as_of or date.today()).to_period("M")
    periods = [start + i for i in range(months)]
    month = book["renewal_date"].dt.to_period("M")
    out = []
    for period in periods:
        due = book[(month == period).to_numpy()]
        due = due[due["renewal_date"] >= pd.Timestamp(snapshot.as_of or date.today())]
        out.append(
            {
                "month": str(period),
                "label": period.strftime("%B %Y"),
                "renewals": len(due),
                "arr": float(due["arr"].sum()),
                "arr_at_risk": float(due["arr_at_risk"].sum()),
                "rows": account_rows(due.nlargest(MONTH_ROWS, "arr_at_risk")),
            }
        )
    bar = charts.bars([m["arr"] for m in out], width=200)
    for m, width in zip(out, bar, strict=True):
        m["bar"] = width
        m["risk_bar"] = width * (m["arr_at_risk"] / m["arr"]) if m["arr"] else 0.0
    return {"months": out}


def moved_page(snapshot: Snapshot, points: float = MOVED_POINTS) -> dict:
    """Accounts whose risk rose by more than `points`, that changed tier or that escalated since the last batch."""
    book, previous = snapshot.book, snapshot.previous
    if previous is None:
        changed_tier = book[(book["previous_tier"] != "") & (book["previous_tier"] != book["tier"])]
        none = {"total": 0, "rows": []}
        retiered = moved_rows(changed_tier, None)
        return {"previous": None, "points": points, "rose": none, "retiered": retiered, "escalated": none}
    joined = book.join(previous[["churn_risk", "tier", "escalate", "reasons_json"]], rsuffix="_before", how="inner")
    rise = 100 * (joined["churn_risk"] - joined["churn_risk_before"])
    return {
        "previous": pd.Timestamp(previous["as_of"].max()).date(),
        "points": points,
        "rose": moved_rows(joined[(rise > points).to_numpy()], joined),
        "retiered": moved_rows(joined[(joined["tier"] != joined["tier_before"]).to_numpy()], joined),
        "escalated": moved_rows(joined[(joined["escalate"] & ~joined["escalate_before"]).to_numpy()], joined),
    }


def moved_rows(frame: pd.DataFrame, joined: pd.DataFrame | None) -> dict:
    """The accounts of one kind of move, most value at stake first, each with the driver that moved most."""
    shown = frame.nlargest(MOVED_ROWS, "priority")
    rows = account_rows(shown)
    for row, (_, full) in zip(rows, shown.iterrows(), strict=True):
        if joined is None:
            row.update(risk_before=None, tier_before=full["previous_tier"], driver="")
            continue
        moved = moved_drivers(
            family_points(clean_json(full.get("reasons_json"))),
            family_points(clean_json(full.get("reasons_json_before"))),
            {},
        )
        row.update(
            risk_before=float(full["churn_risk_before"]),
            tier_before=full["tier_before"],
            driver=label_of(moved[0]) if moved else "",
        )
    return {"total": len(frame), "rows": rows}
