"""API keys for the service: where they come from and the ASGI middleware that checks them.

Other systems call the service with `Authorization: Bearer KEY`. Keys come from
`TIERWISE_API_KEYS` (comma-separated) and/or a key file named by `TIERWISE_API_KEY_FILE` (one
key a line, `#` comments), so a deployment can mount keys as a secret file instead of putting
them in the environment. Every route needs a key except liveness and readiness, which load
balancers and orchestrators probe without credentials. A service with no key configured refuses
to start unless auth is switched off explicitly (`TIERWISE_NO_AUTH=1`, set by `tierwise serve
--no-auth`, which only binds to loopback).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
from pathlib import Path

from features.tables import DataError

logger = logging.getLogger("tierwise.service")

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
NO_AUTH_ENV = "TIERWISE_NO_AUTH"


def api_keys() -> tuple[str, ...]:
    """The configured keys: `TIERWISE_API_KEYS` plus the lines of `TIERWISE_API_KEY_FILE`.

    Raises:
        DataError: the key file is named but cannot be read.
    """
    keys = [k.strip() for k in os.environ.get("TIERWISE_API_KEYS", "").split(",")]
    if key_file := os.environ.get("TIERWISE_API_KEY_FILE"):
        try:
            lines = Path(key_file).read_text().splitlines()
        except OSError as exc:
            raise DataError(f"TIERWISE_API_KEY_FILE {key_file}: cannot read it ({exc.strerror})") from exc
        keys += [line.strip() for line in lines if not line.strip().startswith("#")]
    return tuple(k for k in keys if k)


def auth_disabled() -> bool:
    """Whether the operator switched auth off on purpose (`tierwise serve --no-auth`)."""
    return os.environ.get(NO_AUTH_ENV, "").lower() in ("1", "true", "yes")


def key_matches(token: str, keys: tuple[str, ...]) -> bool:
    """Whether a presented token equals one of the keys, compared in constant time.

    Every key is compared (no early exit), so the time taken does not reveal which key or how
    much of one matched.
    """
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token.encode(), key.encode())
    return matched


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None when there is none."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


async def send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer an ASGI request with a small JSON body (used before the app is reached)."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def from_loopback(scope) -> bool:
    """Whether the caller connects from this machine (the only callers a no-auth service answers)."""
    client = scope.get("client")
    try:
        return client is not None and ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


class ApiKeyMiddleware:
    """ASGI middleware: 401 without a bearer key, 403 with a wrong one, on every path but `OPEN_PATHS`.

    BentoML wraps health and metrics routes in added middlewares too, hence the skip-list.
    Keys are read once, when the worker builds its app.
    """

    def __init__(self, app, keys: tuple[str, ...] | None = None, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.open_paths = open_paths
        self.keys = api_keys() if keys is None else keys
        self.enabled = not auth_disabled()
        if self.enabled and not self.keys:
            raise DataError(
                "no API key configured: set TIERWISE_API_KEYS (comma-separated) or TIERWISE_API_KEY_FILE, "
                "or run `tierwise serve --no-auth` on loopback"
            )
        if not self.enabled:
            logger.warning("API key auth is OFF: only callers on this machine (loopback) are answered")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        if not self.enabled:
            if from_loopback(scope):
                return await self.app(scope, receive, send)
            return await send_json(send, 403, {"error": "auth is off: only callers on this machine are answered"})
        token = bearer_token(scope["headers"])
        if token is None:
            return await send_json(
                send,
                401,
                {"error": "missing API key: send `Authorization: Bearer <key>`"},
                [(b"www-authenticate", b'Bearer realm="tierwise"')],
            )
        if not key_matches(token, self.keys):
            return await send_json(send, 403, {"error": "API key not accepted"})
        return await self.app(scope, receive, send)
