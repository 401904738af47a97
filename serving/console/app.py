"""The console's web app (Starlette): routes, sign-in, CSRF checks, and the pages rendered with Jinja.

`serving.console.routing.ConsoleRouting` puts it in front of the service: requests under
`/console` come here, everything else goes to the JSON API.

Every page needs a signed-in user (`serving.console.db.ConsoleDB.verify`); every POST carries
the session's CSRF token; every response forbids framing and any script or style from elsewhere
(Content-Security-Policy). Account data reaches HTML only through Jinja's autoescaping.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote

import anyio
import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from monitoring.page import TEMPLATES as MONITORING_TEMPLATES
from monitoring.page import figure
from serving.console import security, views
from serving.console.data import SnapshotCache
from serving.console.models_page import ModelCards, mlflow_ui
from serving.console.monitoring_page import monitoring_page
from serving.console.routing import PREFIX
from serving.report import day, label, money, pct
from serving.tiers import load_policy
from tierwise import settings

logger = logging.getLogger("tierwise.console")

HERE = Path(__file__).parent
MAX_FORM_BYTES = 16_384  # a touch note is a few lines; anything bigger is refused (413)
NOTE_CHARS = 4000
OUTCOMES = ("positive", "neutral", "negative", "no_response")
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Console:
    """What the pages read (the book's snapshot, the registry's model cards, the console database) and how."""

    def __init__(self, db=None, cache: SnapshotCache | None = None) -> None:
        self._db = db
        self.cache = cache or SnapshotCache()
        self.cards = ModelCards()
        self.limit = security.SignInLimit()
        self.policy = load_policy(settings.policy_path())
        self.max_age_days = settings.max_score_age_days()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader([HERE / "templates", MONITORING_TEMPLATES]),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(
            money=money, pct=pct, day=day, label=label, pts=points, idpath=id_path, fig=figure
        )

    @property
    def db(self):
        """The console database (`TIERWISE_CONSOLE_DB` or beside the store), opened on first use."""
        if self._db is None:
            from serving.console.db import ConsoleDB

            self._db = ConsoleDB()
        return self._db

    def render(self, template: str, request: Request | None = None, status: int = 200, **context) -> HTMLResponse:
        """A page from its template, with the banner facts every page shows."""
        return HTMLResponse(self.html(template, request, **context), status_code=status, headers=HEADERS)

    def html(self, template: str, request: Request | None = None, **context) -> str:
        """The page as text (bench/console.py renders pages in-process through this)."""
        snapshot = self.cache.current()
        session = request.session if request is not None else {}
        base = {
            "user": session.get("user", ""),
            "csrf": security.csrf_token(session) if request is not None else "",
            "as_of": snapshot.as_of,
            "stale": snapshot.stale(self.max_age_days),
            "max_age_days": self.max_age_days,
            "problem": snapshot.problem,
            "accounts": len(snapshot.book),
            "path": request.url.path if request is not None else PREFIX,
        }
        return self.templates.get_template(template).render(**base, **context)


def points(value: float | None) -> str:
    """Probability points with a sign: +12.3 / −4.0 (a probability difference times 100)."""
    if value is None or value != value:
        return "–"
    return f"{value:+.1f}".replace("-", "\u2212")


def id_path(account_id: str) -> str:
    """An account id made safe for a URL path segment (ids come from customers' exports)."""
    return quote(str(account_id), safe="")


def signed_in(handler):
    """Route wrapper: the page for a signed-in user, else a redirect to the sign-in form (303)."""

    @functools.wraps(handler)
    async def page(request: Request) -> Response:
        user = request.session.get("user")
        if not user or not await anyio.to_thread.run_sync(known_user, request.app.state.console, user):
            request.session.clear()
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{PREFIX}/login?{quote_query(next=target)}", status_code=303)
        return await handler(request)

    return page


def known_user(console: Console, user: str) -> bool:
    """Whether the session's user still exists (a removed user's session stops working at once)."""
    return user in console.db.users()


def quote_query(**params: str) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site: no open redirect)."""
    if target and target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX


async def form_of(request: Request) -> dict[str, str] | Response:
    """A posted urlencoded form, read up to `MAX_FORM_BYTES` (413 beyond), as its first value per field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return PlainTextResponse("form too large", status_code=413, headers=HEADERS)
    return dict(reversed(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)))


async def checked_form(request: Request) -> dict[str, str] | Response:
    """The posted form when it carries the session's CSRF token; else the refusal to answer with (403, 413)."""
    form = await form_of(request)
    if isinstance(form, Response) or security.csrf_ok(request.session, form.get(security.CSRF_FIELD)):
        return form
    return PlainTextResponse(
        "form expired or not sent from this console (CSRF token missing or wrong): reload the page and try again",
        status_code=403,
        headers=HEADERS,
    )


def console_of(request: Request) -> Console:
    return request.app.state.console


# --- sign-in ---------------------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    console = console_of(request)
    if request.session.get("user"):
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return console.render("login.html.j2", request, next=safe_next(request.query_params.get("next")), error="")


async def login(request: Request) -> Response:
    console = console_of(request)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    user, password = form.get("username", "").strip()[:200], form.get("password", "")[:1000]
    client = request.client.host if request.client else "unknown"
    target = safe_next(form.get("next"))
    wait = console.limit.retry_after(user, client)
    if wait:
        error = f"Too many failed sign-ins: try again in {wait // 60 + 1} minute(s)."
        return console.render("login.html.j2", request, status=429, next=target, error=error)
    ok = bool(user and password) and await anyio.to_thread.run_sync(console.db.verify, user, password)
    if not ok:
        console.limit.failed(user, client)
        logger.warning("console: failed sign-in for %r from %s", user, client)
        return console.render(
            "login.html.j2", request, status=401, next=target, error="Unknown user name or wrong password."
        )
    console.limit.succeeded(user, client)
    request.session.clear()  # a fresh session (and CSRF token) for the signed-in user
    request.session.update(user=user, since=int(time.time()))
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    request.session.clear()
    return RedirectResponse(f"{PREFIX}/login", status_code=303)


# --- pages -----------------------------------------------------------------------------------


@signed_in
async def book(request: Request) -> Response:
    console = console_of(request)
    query = views.BookQuery.parse(request.query_params)
    page = views.book_page(console.cache.current(), query, request.session["user"])
    return console.render("book.html.j2", request, **page, home=f"{PREFIX}")


@signed_in
async def book_csv(request: Request) -> Response:
    console = console_of(request)
    query = views.BookQuery.parse(request.query_params)
    text = views.book_csv(console.cache.current(), query, request.session["user"])
    headers = {**HEADERS, "content-disposition": 'attachment; filename="tierwise-book.csv"'}
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)


@signed_in
async def account(request: Request, error: str = "", status: int = 200) -> Response:
    console = console_of(request)
    account_id = request.path_params["account_id"]
    snapshot = console.cache.current()
    page = views.account_page(snapshot, account_id, console.policy)
    if page is None:
        return console.render("missing.html.j2", request, status=404, account_id=account_id)
    touches = await anyio.to_thread.run_sync(functools.partial(console.db.touches, account_id))
    touches = sorted(touches, key=lambda t: (t.touched_on, t.recorded_at), reverse=True)
    return console.render(
        "account.html.j2",
        request,
        status=status,
        **page,
        touches=touches,
        kinds=touch_kinds(),
        outcomes=OUTCOMES,
        today=datetime.now(UTC).date().isoformat(),
        error=error,
    )


def touch_kinds() -> tuple[str, ...]:
    from serving.console.db import TOUCH_KINDS

    return TOUCH_KINDS


@signed_in
async def record_touch(request: Request) -> Response:
    console = console_of(request)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    account_id = request.path_params["account_id"]
    snapshot = console.cache.current()
    row = snapshot.row(account_id)
    if row is None:
        return console.render("missing.html.j2", request, status=404, account_id=account_id)
    touch_or_error = touch_from(form, account_id, request.session["user"], row)
    if isinstance(touch_or_error, str):
        return await account.__wrapped__(request, error=touch_or_error, status=400)
    await anyio.to_thread.run_sync(console.db.add_touch, touch_or_error)
    return RedirectResponse(f"{PREFIX}/accounts/{id_path(account_id)}#touches", status_code=303)


def touch_from(form: dict[str, str], account_id: str, author: str, row):
    """The touch a form describes, stamped with who, when and the account's risk and tier now; or what is wrong."""
    from serving.console.db import TOUCH_KINDS, Touch

    kind = form.get("kind", "")
    if kind not in TOUCH_KINDS:
        return f"kind: choose one of {', '.join(TOUCH_KINDS)}"
    try:
        touched_on = date.fromisoformat(form.get("touched_on", ""))
    except ValueError:
        return "date: give the day of the touch as YYYY-MM-DD"
    if touched_on > datetime.now(UTC).date():
        return "date: a touch cannot be in the future"
    outcome = form.get("outcome", "")
    if outcome not in OUTCOMES:
        return f"outcome: choose one of {', '.join(OUTCOMES)}"
    note = form.get("note", "").strip()
    if len(note) > NOTE_CHARS:
        return f"note: at most {NOTE_CHARS} characters (this one has {len(note)})"
    risk = row["churn_risk"]
    return Touch(
        account_id=account_id,
        kind=kind,
        touched_on=touched_on,
        outcome=outcome,
        note=note,
        author=author,
        recorded_at=datetime.now(UTC),
        risk_at_touch=None if risk != risk else float(risk),
        tier_at_touch=row["tier"] or None,
    )


@signed_in
async def renewals(request: Request) -> Response:
    console = console_of(request)
    return console.render("renewals.html.j2", request, **views.renewals_page(console.cache.current()))


@signed_in
async def moved(request: Request) -> Response:
    console = console_of(request)
    try:
        threshold = float(request.query_params.get("points", views.MOVED_POINTS))
    except ValueError:
        threshold = views.MOVED_POINTS
    threshold = min(max(threshold, 0.0), 100.0) if threshold == threshold else views.MOVED_POINTS
    return console.render("moved.html.j2", request, **views.moved_page(console.cache.current(), threshold))


@signed_in
async def models(request: Request) -> Response:
    console = console_of(request)
    cards, problem = await anyio.to_thread.run_sync(console.cards.current)
    return console.render("models.html.j2", request, cards=cards, registry_problem=problem, ui=mlflow_ui())


@signed_in
async def monitoring(request: Request) -> Response:
    console = console_of(request)
    page = await anyio.to_thread.run_sync(monitoring_page, settings.monitor_summary())
    return console.render("monitoring.html.j2", request, **page)


@signed_in
async def calibration_plot(request: Request) -> Response:
    console = console_of(request)
    name, version = request.path_params["name"], request.path_params["version"]
    try:
        png = await anyio.to_thread.run_sync(console.cards.plot, name, version)
    except Exception:  # an artifact store that cannot be read: no plot, never a stack
        logger.exception("console: cannot read the calibration plot of %s v%s", name, version)
        png = None
    if png is None:
        return PlainTextResponse("no calibration plot for this model version", status_code=404, headers=HEADERS)
    return Response(png, media_type="image/png", headers={**HEADERS, "cache-control": "private, max-age=3600"})


async def not_found(request: Request, exc) -> Response:
    return PlainTextResponse("not found", status_code=404, headers=HEADERS)


def console_app(console: Console | None = None) -> Starlette:
    """The console as an ASGI app whose routes carry the `/console` prefix."""
    routes = [
        Route(PREFIX, book),
        Mount(
            PREFIX,
            routes=[
                Route("/", book),
                Route("/login", login_form, methods=["GET"]),
                Route("/login", login, methods=["POST"]),
                Route("/logout", logout, methods=["POST"]),
                Route("/book.csv", book_csv),
                Route("/renewals", renewals),
                Route("/moved", moved),
                Route("/models", models),
                Route("/monitoring", monitoring),
                Route("/models/{name}/{version}/calibration.png", calibration_plot),
                Route("/accounts/{account_id:path}/touches", record_touch, methods=["POST"]),
                Route("/accounts/{account_id:path}", account),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ],
        ),
    ]
    session = Middleware(
        SessionMiddleware,
        secret_key=security.session_secret(),
        session_cookie=security.SESSION_COOKIE,
        max_age=security.SESSION_SECONDS,
        path=PREFIX,
        same_site="strict",
        https_only=security.secure_cookies(),
    )
    app = Starlette(routes=routes, middleware=[session], exception_handlers={404: not_found})
    app.state.console = console or Console()
    return app
