"""One error shape for every answer the service gives: `{"error": "<one line naming the problem>", ...}`.

The service's own errors already have it. What BentoML and Starlette answer on their own does
not: a validation error says "1 validation error for Input" and leaves the field to a `detail`
list, an unknown route or method answers plain text, and a body in a form encoding is parsed as
if it were JSON and fails with a confusing message. This ASGI middleware, innermost in the
service, refuses bodies that are not JSON (415) before BentoML parses them and rewrites every
other error answer into the one shape (`serving.openapi.ERROR` documents it), so a caller and a
generated client read every 4xx/5xx the same way.
"""

from __future__ import annotations

import orjson

from serving.auth import send_json

JSON_TYPES = ("application/json", "")  # no Content-Type: BentoML reads the body as JSON, as curl users expect


def field_name(loc: list) -> str | None:
    """A pydantic error location as the caller wrote the field: `["rows", 0, "as_of"]` -> `rows[0].as_of`."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def error_body(status: int, body: bytes) -> dict:
    """An error answer in the one shape: `error` (one line naming the problem), `field` where one is at fault."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
        return {"error": text.splitlines()[0]}
    if isinstance(parsed, list) and len(parsed) == 1:  # BentoML's own 4xx for its exceptions: [{"error": ...}]
        parsed = parsed[0]
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), str):
        return {"error": f"HTTP {status}"}
    detail = parsed.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):  # a pydantic validation error
        first = detail[0]
        field = field_name(first.get("loc", []))
        more = f" (and {len(detail) - 1} more problem(s))" if len(detail) > 1 else ""
        message = f"{field}: {first.get('msg')}" if field else f"request body: {first.get('msg')}"
        return {"error": message + more, "field": field, "detail": detail}
    return parsed


class ErrorShapeMiddleware:
    """ASGI middleware: 415 for non-JSON bodies; every error answer rewritten into `{"error": ..., "field": ...}`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "POST":
            media = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            if media not in JSON_TYPES:
                return await send_json(
                    send, 415, {"error": f"send JSON with Content-Type: application/json, not {media}"}
                )
        start: dict | None = None
        chunks: list[bytes] = []

        async def shaped(message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the body is complete
                return
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = orjson.dumps(error_body(start["status"], b"".join(chunks)))
                kept = [(k, v) for k, v in start["headers"] if k not in (b"content-length", b"content-type")]
                headers = [*kept, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({**start, "headers": headers})
                return await send({"type": "http.response.body", "body": body})
            await send(message)

        return await self.app(scope, receive, shaped)
