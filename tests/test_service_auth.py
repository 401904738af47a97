"""API keys and body limits as ASGI middleware, on a tiny Starlette app (fast; the real server is in test_service)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from features.tables import DataError
from serving.auth import ApiKeyMiddleware, api_keys, key_matches
from serving.body_limit import BodyLimitMiddleware


async def echo(request):
    return PlainTextResponse(f"{len(await request.body())} bytes")


def app_with(middleware, **options) -> Starlette:
    app = Starlette(routes=[Route(p, echo, methods=["GET", "POST"]) for p in ("/lookup", "/readyz", "/metrics")])
    app.add_middleware(middleware, **options)
    return app


def call(app, method: str, path: str, client=("127.0.0.1", 5000), **kw) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as c:
            return await c.request(method, path, **kw)

    return asyncio.run(go())


def test_keys_come_from_the_variable_and_the_key_file(monkeypatch, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# billing\nfile-key-1\n\n  file-key-2  \n")
    monkeypatch.setenv("TIERWISE_API_KEYS", " env-a , ,env-b")
    monkeypatch.setenv("TIERWISE_API_KEY_FILE", str(keys))
    assert api_keys() == ("env-a", "env-b", "file-key-1", "file-key-2")
    monkeypatch.setenv("TIERWISE_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="TIERWISE_API_KEY_FILE"):
        api_keys()


def test_key_matching_is_exact():
    assert key_matches("k2", ("k1", "k2"))
    assert not key_matches("k", ("k1", "k2")) and not key_matches("k1 ", ("k1",)) and not key_matches("", ("k1",))


def test_missing_wrong_and_right_keys(monkeypatch):
    monkeypatch.delenv("TIERWISE_NO_AUTH", raising=False)
    app = app_with(ApiKeyMiddleware, keys=("k1",))
    assert call(app, "GET", "/lookup").status_code == 401
    assert call(app, "GET", "/lookup", headers={"Authorization": "Basic k1"}).status_code == 401
    assert call(app, "GET", "/lookup", headers={"Authorization": "Bearer k2"}).status_code == 403
    assert call(app, "GET", "/metrics", headers={"Authorization": "Bearer k2"}).status_code == 403
    assert call(app, "GET", "/lookup", headers={"Authorization": "Bearer k1"}).status_code == 200
    assert call(app, "GET", "/readyz").status_code == 200  # probes need no key


def test_no_key_and_auth_on_refuses_to_build(monkeypatch):
    monkeypatch.delenv("TIERWISE_NO_AUTH", raising=False)
    with pytest.raises(DataError, match="no API key configured"):
        ApiKeyMiddleware(echo, keys=())


def test_auth_off_answers_only_loopback_callers(monkeypatch):
    monkeypatch.setenv("TIERWISE_NO_AUTH", "1")
    app = app_with(ApiKeyMiddleware, keys=())
    assert call(app, "GET", "/lookup", client=("127.0.0.1", 5000)).status_code == 200
    assert call(app, "GET", "/lookup", client=("::1", 5000)).status_code == 200
    resp = call(app, "GET", "/lookup", client=("10.1.2.3", 5000))
    assert resp.status_code == 403 and "auth is off" in resp.json()["error"]


def test_bodies_over_the_limit_are_413_declared_or_streamed():
    app = app_with(BodyLimitMiddleware, max_bytes=100)
    assert call(app, "POST", "/lookup", content=b"x" * 100).text == "100 bytes"
    assert call(app, "POST", "/lookup", content=b"x" * 101).status_code == 413

    async def chunks():
        for _ in range(5):
            yield b"x" * 30

    resp = call(app, "POST", "/lookup", content=chunks())  # no Content-Length: counted while read
    assert resp.status_code == 413 and "100 bytes" in resp.json()["error"]
