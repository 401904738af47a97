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
from serving.report import tier_cutoffs, waterfall, with_reasons
from serving.scoring import REASONS, family_points, moved_drivers
from serving.tiers import ONBOARDING, POOLS, TIERS, TierPolicy

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
    "persona": "persona",
    "risk": "churn_risk",
    "potential": "growth_potential",
    "arr": "arr",
    "at_risk": "arr_at_risk",
    "value": "priority",
    "renewal": "renewal_date",
}


@dataclass(frozen=True)
class BookQuery:
    """The book's filters, search and sort, as they appear in its URL (so every view has a stable link).

    Values a page cannot use (an unknown sort, a window that is not offered, a page past the end)
    fall back to the default rather than failing: a bookmarked link keeps working when the book changes.
    """

    tier: str = ""
    segment: str = ""
    persona: str = ""
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
            persona=get["persona"],
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


@dataclass(frozen=True)
class BookIndex:
    """The book's columns as arrays for filtering and sorting, built once per snapshot.

    `ranks` holds each sortable column as dense integer ranks (missing values last), so any sort
    is one `np.lexsort` over the selected positions instead of a DataFrame sort.
    """

    columns: dict[str, np.ndarray]
    ids_lower: list[str]
    names_lower: list[str]
    months: np.ndarray  # YYYY-MM of each renewal date
    ranks: dict[str, np.ndarray]
    choices: dict[str, list[str]]
    tier_codes: np.ndarray  # each account's tier as its position in choices["tier"] (-1: none)

    @classmethod
    def of(cls, book: pd.DataFrame) -> BookIndex:
        kept = ("segment", "persona", "owner", "band", "days_to_renewal", "arr", "arr_at_risk")
        ranks = {}
        for key, column in SORTS.items():
            rank = book[column].rank(method="dense", na_option="keep").to_numpy(dtype=float)
            ranks[key] = np.where(np.isnan(rank), np.inf, rank)
        choices = {
            "tier": ordered(book["tier"], TIERS),
            "segment": ordered(book["segment"], ()),
            "persona": ordered(book["persona"], ()),
            "owner": ordered(book["owner"], ()),
        }
        return cls(
            columns={c: book[c].to_numpy() for c in kept},
            ids_lower=[str(v).lower() for v in book["account_id"].tolist()],
            names_lower=[str(v).lower() for v in book["name"].tolist()],
            months=book["renewal_date"].dt.strftime("%Y-%m").to_numpy(dtype=object),
            ranks=ranks,
            choices=choices,
            tier_codes=pd.Categorical(book["tier"], categories=choices["tier"]).codes.astype(np.int64),
        )


def book_index(snapshot: Snapshot) -> BookIndex:
    return snapshot.once("book_index", lambda: BookIndex.of(snapshot.book))


def selected(snapshot: Snapshot, query: BookQuery, user: str) -> np.ndarray:
    """Positions in the book of the accounts the query selects, in the query's order."""
    index = book_index(snapshot)
    c = index.columns
    mask = np.ones(len(snapshot.book), dtype=bool)
    if query.tier:
        mask &= index.tier_codes == (
            index.choices["tier"].index(query.tier) if query.tier in index.choices["tier"] else -2
        )
    for name in ("segment", "persona", "owner", "band"):
        if getattr(query, name):
            mask &= c[name] == getattr(query, name)
    if query.mine:
        mask &= np.char.lower(c["owner"].astype(str)) == user.lower()
    if query.renew:
        days = c["days_to_renewal"].astype(float)
        mask &= (days >= 0) & (days <= int(query.renew))
    if query.month:
        mask &= index.months == query.month
    if query.q:
        text = query.q.lower()
        mask &= np.fromiter(
            (text in i or text in n for i, n in zip(index.ids_lower, index.names_lower, strict=True)), bool, len(mask)
        )
    positions = np.flatnonzero(mask)
    rank = index.ranks[query.sort][positions]
    primary = rank if query.order == "asc" else np.where(np.isinf(rank), np.inf, -rank)  # missing last either way
    return positions[np.lexsort((index.ranks["account"][positions], primary))]


def book_view(snapshot: Snapshot, query: BookQuery, user: str) -> pd.DataFrame:
    """The accounts the query selects, sorted (all of them: the CSV export takes them all)."""
    return snapshot.book.iloc[selected(snapshot, query, user)]


def book_page(snapshot: Snapshot, query: BookQuery, user: str) -> dict:
    """The book page: the view's rows on this page, its totals per tier, and the filter choices."""
    index = book_index(snapshot)
    positions = selected(snapshot, query, user)
    pages = max(1, math.ceil(len(positions) / PAGE_ROWS))
    page = min(query.page, pages)
    shown = positions[(page - 1) * PAGE_ROWS : page * PAGE_ROWS]
    arr = np.nan_to_num(index.columns["arr"][positions].astype(float))
    at_risk = np.nan_to_num(index.columns["arr_at_risk"][positions].astype(float))
    codes, tiers = index.tier_codes[positions], index.choices["tier"]
    counts = np.bincount(codes[codes >= 0], minlength=len(tiers))
    arr_by = np.bincount(codes[codes >= 0], weights=arr[codes >= 0], minlength=len(tiers))
    risk_by = np.bincount(codes[codes >= 0], weights=at_risk[codes >= 0], minlength=len(tiers))
    return {
        "query": query,
        "rows": account_rows(snapshot.book.iloc[shown]),
        "total": len(positions),
        "arr": float(arr.sum()),
        "arr_at_risk": float(at_risk.sum()),
        "by_tier": [
            {"tier": t, "accounts": int(counts[i]), "arr": float(arr_by[i]), "arr_at_risk": float(risk_by[i])}
            for i, t in enumerate(tiers)
            if counts[i]
        ],
        "page": page,
        "pages": pages,
        "choices": {**index.choices, "renew": RENEWAL_WINDOWS, "band": BANDS},
        "has_owners": snapshot.has_owners,
        "sorts": SORTS,
    }


def ordered(column: pd.Series, first: tuple[str, ...]) -> list[str]:
    """A column's distinct non-blank values: `first` in its order, then the rest sorted."""
    present = set(column.unique().tolist()) - {""}
    return [v for v in first if v in present] + sorted(present - set(first))


SHOWN = [
    "account_id",
    "name",
    "owner",
    "tier",
    "segment",
    "persona",
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
]


CSV_COLUMNS = [*SHOWN, "expected_expansion", "reason_1"]


def account_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as the tables show them (dicts; missing values as None), each with its `main_reason`.

    The main reason is the strongest driver a CSM can act on (`serving.report.with_reasons`), as the
    report shows it. Built from the columns' arrays: a DataFrame's own `to_dict` costs milliseconds a page.
    """
    columns = SHOWN + [c for c in REASONS if c in frame]
    arrays = [frame[c].to_numpy() for c in columns]
    rows = []
    for values in zip(*arrays, strict=True):
        row = {
            c: None if not isinstance(v, str | bool) and pd.isna(v) else v for c, v in zip(columns, values, strict=True)
        }
        rows.append(with_reasons(row))
    return rows


def missing(value) -> bool:
    """Whether a cell is a missing value (NaN, NaT, None), never failing on text."""
    return not isinstance(value, str | bool) and bool(pd.isna(value))


def book_csv(snapshot: Snapshot, query: BookQuery, user: str) -> str:
    """The view as CSV, every row, text that starts like a formula defused (`features.io.spreadsheet_safe`)."""
    view = book_view(snapshot, query, user)
    out = view[[c for c in CSV_COLUMNS if c in view]].copy()
    out["renewal_date"] = out["renewal_date"].dt.strftime("%Y-%m-%d")
    return spreadsheet_safe(out.reset_index(drop=True)).to_csv(index=False)


# --- account ---------------------------------------------------------------------------------


def account_page(snapshot: Snapshot, account_id: str, policy: TierPolicy) -> dict | None:
    """One account's story: now, over time, why, what changed and its activity; None when unknown."""
    row = snapshot.row(account_id)
    if row is None:
        return None
    trend = snapshot.trend(account_id)
    before = snapshot.row(account_id, previous=True)
    churn, growth = drivers(row.get("reasons_json"))
    return {
        "row": with_reasons({c: None if missing(row.get(c)) else row.get(c) for c in SHOWN + REASONS}),
        "facts": row,
        "chart": risk_chart(trend, row, snapshot.as_of),
        "tier": tier_story(snapshot, row, policy),
        "waterfall": waterfall(row) if isinstance(row.get("reasons_json"), str) else None,
        "churn_drivers": churn,
        "growth_drivers": growth,
        "adoption": adoption(row),
        "changed": since_before(row, before),
        "activity": activity(trend),
        "batches": len(trend),
    }


def adoption(row: dict) -> dict | None:
    """The account's persona, its play and its adoption gaps (a list); None for a batch scored without personas."""
    persona = row.get("persona") or ""
    if not persona:
        return None
    gaps = [g.strip() for g in str(row.get("adoption_gaps") or "").split("; ") if g.strip()]
    return {"persona": persona, "play": row.get("play") or "", "gaps": gaps}


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


def risk_chart(trend: pd.DataFrame, row: dict, as_of: date | None) -> dict:
    """Risk and potential over the history's batches (the latest batch alone when there is no history)."""
    if len(trend):
        days = np.datetime_as_string(trend["as_of"].to_numpy().astype("datetime64[D]")).tolist()
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


def tier_story(snapshot: Snapshot, row: dict, policy: TierPolicy) -> dict:
    """Why the account holds its tier: its value at stake against each pool's boundary, and how full each is."""
    book = snapshot.book
    cutoffs = snapshot_cutoffs(snapshot)
    used = snapshot.once("pool_counts", lambda: book["pool"].value_counts())
    pools = [
        {
            "pool": pool,
            "boundary": cutoffs.get(pool),
            "places": policy.capacity.get(pool),
            "used": int(used.get(pool, 0)),
            "standing": standing(row, pool, cutoffs.get(pool)),
        }
        for pool in POOLS
    ]
    return {"value": float(row["priority"]), "pool": row["pool"], "pools": pools}


def standing(row: dict, pool: str, boundary: float | None) -> str:
    """Where the account stands against one pool, in words."""
    if row["pool"] == pool:
        return "holds a place"
    if pool == ONBOARDING and row["lifecycle_stage"] != ONBOARDING:
        return "for accounts before their first renewal"
    if boundary is None or boundary != boundary:
        return "no place taken yet"
    return "above the boundary" if row["priority"] >= boundary else "below the boundary"


def snapshot_cutoffs(snapshot: Snapshot) -> dict[str, float]:
    """Each pool's boundary (lowest value at stake holding a place), worked out once per snapshot."""
    return snapshot.once("cutoffs", lambda: tier_cutoffs(snapshot.book) if len(snapshot.book) else {})


def since_before(row: dict, before: dict | None) -> dict | None:
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
    return snapshot.once(("renewals", months), lambda: renewals_of(snapshot, months))


def renewals_of(snapshot: Snapshot, months: int) -> dict:
    """What `renewals_page` shows, worked out (once per batch)."""
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
    """Accounts whose risk rose by more than `points`, that changed tier or that escalated since the last batch.

    `points` is rounded to a whole number, so a batch keeps at most 101 worked-out pages.
    """
    points = float(round(points))
    return snapshot.once(("moved", points), lambda: moved_of(snapshot, points))


def moved_of(snapshot: Snapshot, points: float) -> dict:
    """What `moved_page` shows, worked out (once per batch and threshold)."""
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
