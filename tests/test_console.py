"""The console in a real browser against a real server: Debian's chromium, driven by Playwright, on `tierwise serve`.

One server (tests/test_service.py's `running_server`, on a private copy of the session's trained
registry) and one browser serve the whole module. The server's score history holds three weekly
batches of the demo world scored by the session's champions, with names and owners added to the
accounts table as a CRM export would have them (one name hostile: a script that must never run).
A CSM signs in, filters, sorts and searches the book, opens an account, reads its chart and
drivers, records a touch, opens the renewal pipeline, moved and models pages, and signs out.
Screenshots of every page land in test-output/console/ (docs/img/ has the book and account ones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.test_service import KEYS, Served, running_server

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "console"
USER, PASSWORD = "demo", "a long demo password"
OWNERS = ("demo", "sam.lee", "priya")
HOSTILE_NAME = "<img src=x onerror=alert('xss')>Acme"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Site:
    """The running server, what it serves and the browser page signed in to it."""

    served: Served
    last: pd.DataFrame  # the batch in the store, indexed by account id
    page: object  # playwright Page
    dialogs: list[str]


def scored_weeks(data_dir: Path, weeks: int = 3) -> list[pd.DataFrame]:
    """The demo world scored weekly up to its end, each batch with the last as previous, as `tierwise score` does."""
    from features.build import build_features
    from features.tables import load_tables
    from serving.batch import with_account_facts
    from serving.registry import load_models
    from serving.scoring import score_frame

    models = load_models()
    tables = load_tables(data_dir)
    accounts = tables.accounts.assign(
        name=[f"Company {i}" for i in range(len(tables.accounts))],
        owner=[OWNERS[i % len(OWNERS)] for i in range(len(tables.accounts))],
    )
    accounts.loc[1, "name"] = HOSTILE_NAME
    dates = [tables.data_end - pd.Timedelta(days=7 * w) for w in reversed(range(weeks))]
    frame = build_features(tables, dates, metrics=models.churn.metrics).frame
    out, previous = [], None
    for day in dates:
        rows = frame[frame["as_of"] == day].reset_index(drop=True)
        previous = with_account_facts(score_frame(rows, models, previous=previous), accounts, rows)
        out.append(previous)
    return out


@pytest.fixture(scope="module")
def site(trained_store, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    from serving.console.db import ConsoleDB
    from serving.history import append_batch
    from serving.store import write_store

    root = tmp_path_factory.mktemp("console_site")
    batches = scored_weeks(trained_store.data_dir)
    for scored in batches:
        append_batch(scored, root / "score_history")  # the history beside the server's store
    ConsoleDB(f"sqlite:///{root / 'console.db'}").add_user(USER, PASSWORD)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running_server(trained_store, root) as served, sync_playwright() as p:
        write_store(batches[-1], served.store)  # the published batch, with names and owners
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.set_default_timeout(60_000)  # the first console request imports the console (seconds on a busy machine)
        try:
            yield Site(served, batches[-1].set_index("account_id"), page, dialogs)
        finally:
            browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_for_batch(site: Site) -> None:
    """Reload the book until the console serves the batch with names (it checks the store every 2 s)."""
    for _ in range(20):
        site.page.goto(f"{site.served.url}/console?q=Company 2")
        if site.page.locator("table.book tbody a").count() > 1:
            return
        site.page.wait_for_timeout(500)
    pytest.fail("the console never served the batch with names")


def test_a_csm_works_through_the_console_in_a_browser(site):
    page, url, last = site.page, site.served.url, site.last

    page.goto(f"{url}/console")
    assert page.url.startswith(f"{url}/console/login")
    shot(page, "login")
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/console")
    assert page.get_by_role("heading", name="The book").is_visible()
    wait_for_batch(site)

    # filter by tier, then sort by churn risk (a header link), both kept in the URL
    page.goto(f"{url}/console")
    shot(page, "book")
    page.screenshot(path=str(SHOTS / "book-top.png"))  # the first screen, for the README
    page.get_by_label("Tier", exact=True).select_option("mid_touch")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"tier=mid_touch"))
    page.get_by_role("link", name="Churn risk", exact=True).click()
    page.wait_for_url(re.compile(r"sort=risk"))
    tiers = page.locator("table.book tbody td:nth-child(4)").all_inner_texts()
    assert tiers and set(tiers) == {"mid touch"}
    risks = [float(t.split("%")[0]) for t in page.locator("table.book tbody td:nth-child(5) .risk").all_inner_texts()]
    assert risks == sorted(risks, reverse=True)
    total = int(page.locator(".summary strong").first.inner_text().replace(",", ""))
    assert total == (last["tier"] == "mid_touch").sum()

    # search by name: the riskiest account's name finds it alone
    target = last["churn_risk"].idxmax()
    page.goto(f"{url}/console")
    page.get_by_label("Search id or name").fill(last.loc[target, "name"])
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"q=Company"))
    assert page.locator("table.book tbody td:first-child .id").all_inner_texts() == [target]
    shot(page, "book-search")

    # the account: chart over the three batches, drivers as a waterfall, what changed
    page.get_by_role("link", name=target, exact=True).click()
    page.wait_for_url(re.compile(r"/console/accounts/"))
    assert page.get_by_role("heading", name=re.compile(target)).is_visible()
    points = page.locator("polyline.line-risk").get_attribute("points").split()
    assert len(points) == 3  # one point per batch in the history
    assert page.get_by_role("img", name=re.compile("Churn risk")).is_visible()
    steps = page.locator("#drivers-h + p + .wf .wf-row").all_inner_texts()
    assert len(steps) >= 3 and "Model baseline" in steps[0] and "Churn risk" in steps[-1]
    assert f"{100 * last.loc[target, 'churn_risk']:.1f}%" in steps[-1]
    assert page.locator("ul.changed li").count() >= 3
    assert page.locator("svg.spark").count() >= 3  # recent activity per event family
    shot(page, "account")

    # record a touch with the keyboard-usable form and see it in the timeline
    page.get_by_label("Kind").select_option("qbr")
    page.get_by_label("Outcome").select_option("positive")
    page.get_by_label("Note").fill("QBR held: exec sponsor back on board")
    page.get_by_role("button", name="Record touch").click()
    page.wait_for_url(re.compile(r"#touches$"))
    first = page.locator("ol.timeline li").first.inner_text()
    assert "QBR held: exec sponsor back on board" in first and "by demo" in first and "qbr" in first
    shot(page, "account-touch")

    page.get_by_role("link", name="Renewals").click()
    page.wait_for_url(f"{url}/console/renewals")
    assert page.locator("table.pipeline tbody tr").count() == 6  # next two quarters, per month
    shot(page, "renewals")

    page.get_by_role("link", name="Moved").click()
    page.wait_for_url(f"{url}/console/moved")
    assert page.get_by_role("heading", name=re.compile(r"Risk rose by more than 10 points")).is_visible()
    shot(page, "moved")

    page.get_by_role("link", name="Models").click()
    page.wait_for_url(f"{url}/console/models")
    assert page.get_by_role("heading", name=re.compile(r"Churn · champion · version \d+")).is_visible()
    image = page.locator(".model img").first
    image.wait_for()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")  # the calibration plot, from MLflow
    shot(page, "models")

    # the keyboard: the first Tab reaches the skip link
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{url}/console/login")
    page.goto(f"{url}/console/moved")
    assert page.url.startswith(f"{url}/console/login")
    assert site.dialogs == []  # the hostile account name never ran as a script


def test_hostile_name_shows_as_text_in_the_browser(site):
    page, url = site.page, site.served.url
    page.goto(f"{url}/console/login")
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{url}/console?q=onerror")
    assert page.locator("table.book tbody td:nth-child(2)").all_inner_texts() == [HOSTILE_NAME]
    assert site.dialogs == []


def test_a_console_session_never_grants_the_json_api(site):
    cookies = {c["name"]: c["value"] for c in site.page.context.cookies()}
    assert "tierwise_console" in cookies  # signed in by the test before
    body = {"account_ids": [site.last.index[0]]}
    resp = httpx.post(f"{site.served.url}/lookup", json=body, cookies=cookies, timeout=10)
    assert resp.status_code == 401
    assert site.served.post("/lookup", body).status_code == 200  # the API keys keep working


def test_an_api_key_never_grants_the_console(site):
    headers = {"Authorization": f"Bearer {KEYS[0]}"}
    resp = httpx.get(f"{site.served.url}/console", headers=headers, timeout=10, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/console/login")
    resp = httpx.get(f"{site.served.url}/console/book.csv", headers=headers, timeout=10, follow_redirects=False)
    assert resp.status_code == 303
