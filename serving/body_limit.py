"""Refuse oversized request bodies before anything parses them.

One caller posting a huge body must not exhaust the worker's memory or stall other callers, so
bodies over the limit are answered 413 by an ASGI middleware in front of BentoML's parsing.
"""

from __future__ import annotations

from serving.auth import send_json

MAX_BODY_BYTES = 4 * 1024 * 1024  # ~2,500 feature rows of JSON; the row limit (1,000) binds first


class BodyLimitMiddleware:
    """ASGI middleware that refuses request bodies over `max_bytes` with 413, before any parsing.

    A declared `Content-Length` over the limit is refused at once; a chunked body is read up to
    the limit and replayed to the app, so an oversized upload never reaches pydantic or memory
    beyond the limit.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self.too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self.too_large(send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def too_large(self, send) -> None:
        await send_json(send, 413, {"error": f"request body over {self.max_bytes:,} bytes: send fewer rows per call"})
