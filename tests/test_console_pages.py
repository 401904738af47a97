"""The console's pages and safety, in process: sign-in, CSRF, rate limit, escaping, filters, touches, bad input.

A small synthetic score history (the shape `tierwise score` writes, from bench/history.py) is
published into a temp store, with names, owners and activity added, and one account planted with
hostile text everywhere a customer's export could put it. The real-browser walk through the
console against a real server is tests/test_console.py.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from argon2 import PasswordHasher, profiles
from markupsafe import escape
from starlette.testclient import TestClient

from bench.history import synthetic_batch
from serving.console.app import Console, console_app
from serving.console.db import ConsoleDB
from serving.history import append_batch, history_root
from serving.store import write_store

ACCOUNTS = 60
WEEKS = 4
USER, PASSWORD = "alice", "correct horse battery"
HOSTILE_ID = "=1+2<script>alert('id')</script>\"x"
HOSTILE_NAME = '@SUM(1)<img src=x onerror=alert("name")>'
HOSTILE_REASON = "<b onmouseover=alert(1)>tickets</b> rose"
HOSTILE_NOTE = "</textarea><script>alert('note')</script>=HYPERLINK(\"http://evil\")"
HOSTILE_PLAY = "<script>alert('play')</script>"
GAPS = (
    "renewing report-exported-led accounts have report exports on 9 of the last 30 days (median), this account on 3 "
    "(3x more); renewing report-exported-led accounts have dashboards on 6 of the last 30 days (median), this account "
    "on 0 (none here)"
)
RAW = ("<script>alert(", "<img src=x", "<b onmouseover", "</textarea><script>")


def batch(week: int) -> pd.DataFrame:
    """Week `week`'s batch with the account facts the console shows and one hostile account."""
    scored = synthetic_batch(pd.Timestamp(date.today()) - pd.Timedelta(days=7 * (WEEKS - 1 - week)), ACCOUNTS, week)
    scored["churn_model_version"] = "1" if week < 2 else "2"
    scored["name"] = [f"Customer {i}" for i in range(ACCOUNTS)]
    scored["owner"] = np.where(np.arange(ACCOUNTS) % 2 == 0, USER, "bob")
    scored["activity_30d"] = [
        orjson.dumps({"login": 10 + i + week, "support_ticket": i % 3}).decode() for i in range(ACCOUNTS)
    ]
    scored.loc[0, ["account_id", "name", "reason_1"]] = [HOSTILE_ID, HOSTILE_NAME, HOSTILE_REASON]
    scored.loc[0, ["play", "adoption_gaps"]] = [HOSTILE_PLAY, HOSTILE_REASON]
    scored.loc[3, ["persona", "play", "adoption_gaps"]] = ["report-exported-led", "Run a reporting workshop", GAPS]
    scored.loc[0, ["tier", "pool"]] = "high_touch"
    scored.loc[0, "churn_risk"] = 0.2 + 0.2 * week  # rises by 20 points a week
    scored.loc[0, "arr_at_risk"] = scored.loc[0, "arr"] * scored.loc[0, "churn_risk"]
    reasons = orjson.loads(scored.loc[0, "reasons_json"])
    reasons["churn"][0]["text"] = HOSTILE_REASON
    reasons["churn_families"]["family_03"] = 5.0 * week  # the driver that moves most
    scored.loc[0, "reasons_json"] = orjson.dumps(reasons).decode()
    return scored


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with `WEEKS` published batches in its history, a console database with one user, env set."""
    root = tmp_path_factory.mktemp("console")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIERWISE_SCORES_STORE", str(root / "latest_scores.parquet"))
        mp.setenv("TIERWISE_CONSOLE_SECRET", "test-secret")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'no-mlflow.db'}")
        mp.delenv("TIERWISE_HISTORY", raising=False)
        mp.delenv("TIERWISE_CONSOLE_DB", raising=False)
        mp.delenv("TIERWISE_CONSOLE_SECURE_COOKIE", raising=False)
        mp.delenv("TIERWISE_MONITOR_SUMMARY", raising=False)
        store = root / "latest_scores.parquet"
        for week in range(WEEKS):
            last = batch(week)
            append_batch(last, history_root(store))
        write_store(last, store)
        db = ConsoleDB(hasher=PasswordHasher.from_parameters(profiles.CHEAPEST))  # real argon2, cheap: many sign-ins
        db.add_user(USER, PASSWORD)
        db.add_user("bob", PASSWORD)
        yield {"root": root, "db": db, "book": last.set_index("account_id")}


@pytest.fixture(scope="module")
def app(world):
    """One console for the module (its snapshot loads once), as the service holds one."""
    return console_app(Console(db=world["db"]))


@pytest.fixture()
def client(app):
    """A browser of its own (no cookies yet) on the module's console."""
    return TestClient(app)


@pytest.fixture(scope="module")
def alice(app):
    """One signed-in browser shared by the tests that only read pages or record touches."""
    browser = TestClient(app)
    sign_in(browser)
    return browser


def token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client: TestClient, user: str = USER, password: str = PASSWORD):
    form = {"username": user, "password": password, "csrf_token": token(client.get("/console/login").text)}
    return client.post("/console/login", data=form, follow_redirects=False)


def account_url(account_id: str) -> str:
    from urllib.parse import quote

    return f"/console/accounts/{quote(account_id, safe='')}"


# --- access ----------------------------------------------------------------------------------


def test_every_page_redirects_to_sign_in_without_a_session(client):
    pages = ("/console", "/console/", "/console/renewals", "/console/moved", "/console/models", "/console/monitoring")
    for url in (*pages, "/console/book.csv"):
        resp = client.get(url, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/console/login?next="), url
    resp = client.post(account_url("ACC-000001") + "/touches", data={"kind": "call"}, follow_redirects=False)
    assert resp.status_code == 303


def test_an_api_key_never_opens_the_console(client):
    resp = client.get("/console", headers={"Authorization": "Bearer test-key-1"}, follow_redirects=False)
    assert resp.status_code == 303 and "/console/login" in resp.headers["location"]


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_the_session(client):
    resp = sign_in(client)
    assert resp.status_code == 303 and resp.headers["location"] == "/console"
    cookie = resp.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # served over plain HTTP here; see the next test
    page = client.get("/console")
    assert page.status_code == 200 and "Signed in as <strong>alice</strong>" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    out = client.post("/console/logout", data={"csrf_token": token(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_secure_cookie_when_served_over_https(world, monkeypatch):
    monkeypatch.setenv("TIERWISE_CONSOLE_SECURE_COOKIE", "1")
    secure = TestClient(console_app(Console(db=world["db"])), base_url="https://testserver")
    assert "secure" in sign_in(secure).headers["set-cookie"].lower()


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(client):
    form = {"username": USER, "password": PASSWORD, "csrf_token": token(client.get("/console/login").text)}
    resp = client.post("/console/login", data={**form, "next": "/console/moved"}, follow_redirects=False)
    assert resp.headers["location"] == "/console/moved"
    client.cookies.clear()
    form["csrf_token"] = token(client.get("/console/login").text)
    resp = client.post("/console/login", data={**form, "next": "https://evil.example/"}, follow_redirects=False)
    assert resp.headers["location"] == "/console"


def test_wrong_password_and_unknown_user_get_the_same_answer(client):
    wrong = sign_in(client, USER, "not the password")
    unknown = sign_in(client, "mallory", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        "Unknown user name or wrong password." in wrong.text and "Unknown user name or wrong password." in unknown.text
    )


def test_failed_sign_ins_are_rate_limited_per_user_and_client(client):
    for _ in range(5):
        assert sign_in(client, "bob", "wrong password!").status_code == 401
    limited = sign_in(client, "bob", PASSWORD)  # even the right password waits now
    assert limited.status_code == 429 and "Too many failed sign-ins" in limited.text
    assert sign_in(client, USER, PASSWORD).status_code == 303  # another user from the same client is not locked out


def test_every_post_needs_the_sessions_csrf_token(client, world):
    form = {"username": USER, "password": PASSWORD}
    assert client.post("/console/login", data=form).status_code == 403  # no token
    sign_in(client)
    before = len(world["db"].touches("ACC-000001"))
    touch = {"kind": "call", "touched_on": date.today().isoformat(), "outcome": "positive", "note": "x"}
    assert client.post(account_url("ACC-000001") + "/touches", data=touch).status_code == 403
    assert (
        client.post(account_url("ACC-000001") + "/touches", data={**touch, "csrf_token": "forged"}).status_code == 403
    )
    assert client.post("/console/logout", data={}).status_code == 403
    assert len(world["db"].touches("ACC-000001")) == before  # nothing recorded
    assert client.get("/console", follow_redirects=False).status_code == 200  # still signed in


def test_a_removed_user_is_signed_out_at_once(client, world):
    world["db"].add_user("carol", PASSWORD)
    sign_in(client, "carol")
    assert client.get("/console").status_code == 200
    world["db"].remove_user("carol")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_stale_batch_shows_a_banner(world, monkeypatch):
    old_batch = world["book"].reset_index().assign(as_of=pd.Timestamp(date.today() - timedelta(days=3)))
    monkeypatch.setenv(
        "TIERWISE_SCORES_STORE", str(write_store(old_batch, Path(world["root"]) / "old" / "store.parquet"))
    )
    monkeypatch.setenv("TIERWISE_MAX_SCORE_AGE_DAYS", "2")
    stale = TestClient(console_app(Console(db=world["db"])))
    sign_in(stale)
    page = stale.get("/console").text
    assert "Stale scores." in page and "older than the\nservice's freshness limit of 2 days" in page


# --- pages -----------------------------------------------------------------------------------


def rows_of(page: str) -> list[str]:
    """The account ids of the book table's rows, in order (ids as the page escaped them)."""
    return re.findall(r'<a href="/console/accounts/[^"]+"><span class="id">([^<]+)</span>', page)


def test_book_filters_sorts_searches_and_counts(alice, world):
    book = world["book"]
    page = alice.get("/console?tier=high_touch&sort=risk&order=asc").text
    expected = book[book["tier"] == "high_touch"].sort_values(["churn_risk"], kind="stable")
    assert rows_of(page) == [str(escape(i)) for i in expected.index]
    assert f"<strong>{(book['tier'] == 'high_touch').sum()}</strong> accounts" in page
    assert "Stale scores." not in page  # scored this week, within the 35-day freshness limit
    mine = alice.get("/console?mine=1").text
    assert f"<strong>{(book['owner'] == USER).sum()}</strong> accounts" in mine and "My accounts" in mine
    found = alice.get("/console?q=customer 17").text  # by name, any case
    assert rows_of(found) == ["ACC-000017"]
    assert set(rows_of(alice.get("/console?q=acc-00002").text)) == {f"ACC-00002{i}" for i in range(10)}
    assert "No account matches this view." in alice.get("/console?q=nobody-has-this").text
    assert alice.get("/console?sort=bogus&page=-3&band=purple&renew=7").status_code == 200  # ignored, not 500
    led = alice.get("/console?persona=report-exported-led&sort=account&order=asc").text
    assert rows_of(led) == [str(escape(i)) for i in sorted(book.index[book["persona"] == "report-exported-led"])]
    assert '<option value="report-exported-led" selected>' in led and ">Persona" in led
    assert "<td>not adopted</td>" in alice.get("/console?persona=not_adopted").text  # the column, worded
    assert "No account matches this view." in alice.get("/console?persona=nobody").text


def test_a_batch_scored_before_personas_still_renders(world, monkeypatch):
    old = world["book"].reset_index().drop(columns=["persona", "play", "adoption_gaps"])
    monkeypatch.setenv("TIERWISE_SCORES_STORE", str(write_store(old, Path(world["root"]) / "old" / "plain.parquet")))
    plain = TestClient(console_app(Console(db=world["db"])))
    sign_in(plain)
    book = plain.get("/console?persona=core-usage")  # a bookmarked persona filter on a book without personas
    assert book.status_code == 200 and ">Persona" not in book.text and "No account matches this view." in book.text
    assert rows_of(plain.get("/console").text) and "Persona" not in plain.get("/console").text
    account = plain.get(account_url("ACC-000003"))
    assert account.status_code == 200 and "Adoption" not in account.text and "Persona" not in account.text


def test_csv_export_is_the_current_view_and_formula_safe(alice, world):
    resp = alice.get("/console/book.csv?mine=1")
    assert resp.headers["content-type"].startswith("text/csv") and "attachment" in resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    book = world["book"]
    assert len(rows) == (book["owner"] == USER).sum() and {r["owner"] for r in rows} == {USER}
    hostile = next(r for r in rows if "alert('id')" in r["account_id"])
    assert hostile["account_id"] == "'" + HOSTILE_ID and hostile["name"] == "'" + HOSTILE_NAME


def test_hostile_account_data_renders_as_text_on_every_page(alice):
    page = alice.get(account_url(HOSTILE_ID))
    assert page.status_code == 200
    form = {"kind": "email", "touched_on": date.today().isoformat(), "outcome": "neutral", "note": HOSTILE_NOTE}
    posted = alice.post(account_url(HOSTILE_ID) + "/touches", data={**form, "csrf_token": token(page.text)})
    assert posted.status_code == 200  # followed the redirect back to the account page
    pages = {
        "book": alice.get("/console?sort=risk").text,
        "search": alice.get("/console", params={"q": "alert"}).text,
        "account": alice.get(account_url(HOSTILE_ID)).text,
        "renewals": alice.get("/console/renewals").text,
        "moved": alice.get("/console/moved").text,
    }
    for name, html in pages.items():
        for raw in RAW:
            assert raw not in html, (name, raw)
    account = pages["account"]
    assert "=1+2&lt;script&gt;alert(&#39;id&#39;)&lt;/script&gt;&#34;x" in account
    assert "@SUM(1)&lt;img src=x onerror=alert(&#34;name&#34;)&gt;" in account
    assert "&lt;b onmouseover=alert(1)&gt;tickets&lt;/b&gt; rose" in account
    assert "&lt;/textarea&gt;&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;" in account
    assert "Play: &lt;script&gt;alert(&#39;play&#39;)&lt;/script&gt;" in account
    assert "alert(&#39;id&#39;)" in pages["search"] and "alert(&#39;id&#39;)" in pages["moved"]


def test_account_page_tells_the_story(alice, world):
    html = alice.get(account_url(HOSTILE_ID)).text
    assert html.count('<polyline class="line-risk"') == 1 and "churn v2 / growth v1" in html  # version change marked
    assert 'class="marker"' in html and "Drivers that moved most: family 03 +5" in html
    assert "60% → <strong>80%</strong>" in html  # what changed since the previous batch
    assert "login" in html and '<svg class="spark"' in html  # activity per family
    assert "Why " in html and "Capacity used" in html and "holds a place" in html and "Model baseline" in html
    led = alice.get(account_url("ACC-000003")).text
    assert "<dt>Persona</dt><dd>report-exported-led</dd>" in led and "Adoption: report-exported-led" in led
    assert "Play: Run a reporting workshop" in led
    gaps = re.search(r'<ul class="gaps">(.*?)</ul>', led).group(1)
    assert gaps.count("<li>") == 2 and "report exports on 9 of the last 30 days" in gaps and "(none here)" in gaps
    assert alice.get(account_url("ACC-999999")).status_code == 404


def test_recording_a_touch_stores_who_when_and_the_risk_then(alice, world):
    page = alice.get(account_url("ACC-000003")).text
    form = {"kind": "qbr", "touched_on": date.today().isoformat(), "outcome": "positive", "note": "renewal plan agreed"}
    resp = alice.post(account_url("ACC-000003") + "/touches", data={**form, "csrf_token": token(page)})
    assert resp.status_code == 200 and "renewal plan agreed" in resp.text and "by alice" in resp.text
    stored = world["db"].touches("ACC-000003")[0]
    row = world["book"].loc["ACC-000003"]
    assert (stored.kind, stored.author, stored.tier_at_touch) == ("qbr", USER, row["tier"])
    assert stored.risk_at_touch == pytest.approx(row["churn_risk"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "smoke_signal"}, "kind: choose one of"),
        ({"touched_on": (date.today() + timedelta(days=3)).isoformat()}, "a touch cannot be in the future"),
        ({"touched_on": "yesterday"}, "give the day of the touch as YYYY-MM-DD"),
        ({"outcome": "great"}, "outcome: choose one of"),
        ({"note": "x" * 5000}, "note: at most 4000 characters"),
    ],
)
def test_a_bad_touch_is_refused_with_a_clear_message(alice, world, change, message):
    page = alice.get(account_url("ACC-000004")).text
    form = {"kind": "call", "touched_on": date.today().isoformat(), "outcome": "neutral", "note": ""}
    resp = alice.post(account_url("ACC-000004") + "/touches", data={**form, **change, "csrf_token": token(page)})
    assert resp.status_code == 400 and message in resp.text
    assert world["db"].touches("ACC-000004") == []


def test_an_oversized_form_is_refused(alice):
    page = alice.get(account_url("ACC-000004")).text
    resp = alice.post(account_url("ACC-000004") + "/touches", data={"note": "x" * 20_000, "csrf_token": token(page)})
    assert resp.status_code == 413


def test_renewals_and_moved(alice, world):
    book = world["book"]
    renewals = alice.get("/console/renewals").text
    month = pd.Timestamp(date.today()).strftime("%B %Y")
    due = book[pd.to_datetime(book["renewal_date"]).dt.to_period("M") == pd.Timestamp(date.today()).to_period("M")]
    assert f"{month}: {len(due)} renewal(s)" in renewals
    moved = alice.get("/console/moved?points=10").text
    assert "Risk rose by more than 10 points" in moved and "family 03 +5" in moved
    assert alice.get("/console/moved?points=nonsense").status_code == 200
    models = alice.get("/console/models").text
    assert "No model registered yet" in models


def test_scored_rows_carry_name_owner_and_activity_when_the_tables_have_them():
    from serving.batch import with_account_facts

    scored = pd.DataFrame({"account_id": ["A", "B"], "churn_risk": [0.1, 0.2]})
    features = pd.DataFrame({"account_id": ["B", "A"], "login__count_30d": [3.0, np.nan], "tenure_days": [10, 20]})
    accounts = pd.DataFrame({"account_id": ["A", "B", "C"], "owner": ["ana", None, "x"], "industry": ["i", "j", "k"]})
    out = with_account_facts(scored, accounts, features)
    assert list(out.columns) == ["account_id", "churn_risk", "owner", "activity_30d"]  # no name: the table has none
    assert out["owner"].tolist()[0] == "ana" and pd.isna(out["owner"].tolist()[1])
    assert [orjson.loads(a) for a in out["activity_30d"]] == [{}, {"login": 3.0}]  # a missing count is left out
    bare = with_account_facts(scored, accounts[["account_id"]], features[["account_id", "tenure_days"]])
    assert list(bare.columns) == ["account_id", "churn_risk"]  # nothing to carry: the rows as scored


# --- monitoring ------------------------------------------------------------------------------

HOSTILE_EVENT = "<script>alert('event')</script>"


def monitoring_result():
    """A `Monitoring` put together by the monitoring code itself on a tiny case: v1, the model in use, kept
    its promise on one batch, fell short on the next and has one still waiting for outcomes; v2 is not in
    the tracking store; a hostile event type stopped arriving."""
    from monitoring import freshness as fr
    from monitoring.estimate import estimate
    from monitoring.monitor import Drift, MonitorConfig, Monitoring, VersionReport, alarms, retrain_reasons
    from monitoring.realised import judge, realised

    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.2
    good = pd.DataFrame({"churn": y, "churn_risk": np.where(y, 0.6, 0.1) + rng.random(400) * 0.3, "arr": 1000.0})
    poor = good.assign(churn_risk=rng.random(400))  # no better than chance
    batches = judge([realised(good, "2026-06-01", "1"), realised(poor, "2026-07-01", "1")], promised_auc=0.85)
    v1 = VersionReport("1", "run-1", 90, 120, {"roc_auc": 0.85}, batches, ["2026-11-20"])
    note = "version 2 is not in the tracking store /srv/x/mlflow.db"
    v2 = VersionReport("2", None, None, None, {}, [], ["2026-11-13"], note)
    stopped = fr.Stream("event", HOSTILE_EVENT, "2026-10-01", "stopped", "2026-10-02", 4.0, 0.0)
    silence = fr.Silence("2026-11-27", 30, 100, 3, [])
    result = Monitoring(
        "2026-11-27", "history", 4, "2026-11-20", [v1, v2], [estimate(rng.random(300) * 0.4, "2026-11-20", "1")],
        Drift("2026-11-20", "1", [], None, None, []), {}, [stopped], silence, silence,
    )  # fmt: skip
    result.alarms = alarms(result, MonitorConfig(), batch_age_days=7)
    result.retrain = retrain_reasons(result)
    return result


def test_monitoring_page_shows_the_last_summary_or_how_to_make_one(alice, tmp_path, monkeypatch):
    from monitoring.monitor import save_summary

    summary = tmp_path / "monitor_summary.json"
    monkeypatch.setenv("TIERWISE_MONITOR_SUMMARY", str(summary))
    hint = alice.get("/console/monitoring").text
    assert "No monitoring summary yet" in hint and "tierwise monitor --data DIR" in hint
    assert 'href="/console/monitoring" aria-current="page">Monitoring</a>' in hint  # in the nav

    result = monitoring_result()
    assert result.holds("degraded") and result.holds("stale") and not result.holds("drift")
    save_summary(result, summary)
    html = alice.get("/console/monitoring").text
    assert "No monitoring summary yet" not in html and f"Last monitor run <strong>{result.ran_at}</strong>" in html
    degraded = next(a for a in result.alarms if a.condition == "degraded")
    assert str(escape(degraded.evidence)) in html and "tierwise-churn v1" in html  # the alarm with its evidence
    assert "no event since 2026-10-02" in html and "&lt;script&gt;alert(&#39;event&#39;)" in html
    assert "<script>alert(" not in html  # escaped, never raw
    assert "Churn model version 1: realised against promised" in html and "Churn model version 2" in html
    assert html.count('<svg class="auc"') == 2 and html.count('<circle class="degraded"') == 1  # a dot per batch
    assert html.count('<circle class="realised"') == 1 and html.count('<circle class="estimate"') == 1
    assert "estimated " in html and "Waiting for outcomes: 2026-11-20." in html  # the waiting batch, labelled
    assert "version 2 is not in the tracking store …/mlflow.db" in html and "/srv/x" not in html  # no folders
    assert len(result.retrain) == 2 and all(str(escape(r)) in html for r in result.retrain)  # the retraining advice
    assert "Not due" not in html
    # a file that is not a summary says so, never a 500
    summary.write_text("{not json")
    broken = alice.get("/console/monitoring")
    assert broken.status_code == 200 and "monitor_summary.json cannot be read" in broken.text
    summary.write_text('{"versions": []}')
    assert "monitor_summary.json lacks ran_at" in alice.get("/console/monitoring").text
    summary.write_text(orjson.dumps({**result.summary(), "conditions": ["degraded"]}).decode())
    assert "monitor_summary.json has conditions of the wrong type" in alice.get("/console/monitoring").text
    summary.write_text(orjson.dumps({**result.summary(), "versions": [{"version": "1"}]}).decode())
    refused = alice.get("/console/monitoring")
    assert refused.status_code == 200 and "a model version or batch in it lacks &#39;realised&#39;" in refused.text
