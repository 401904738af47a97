"""Requests under `/console` to the console, everything else on to the JSON API.

Added as the service's outermost ASGI middleware. The API's middlewares (bearer keys, JSON-only
bodies, JSON error shapes) would otherwise wrap the console too, as BentoML wraps mounted apps in
them; the console has its own sign-in instead, so an API key never opens a page and a console
session never answers an API call. The console (Jinja, pandas, MLflow) is imported on its first
request, so the service starts as fast as without it.
"""

from __future__ import annotations

PREFIX = "/console"


class ConsoleRouting:
    """ASGI middleware: `/console` and below go to the console app, the rest on to the API."""

    def __init__(self, app, console=None) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == PREFIX or path.startswith(PREFIX + "/")):
            if self.console is None:
                from serving.console.app import console_app

                self.console = console_app()
            return await self.console(scope, receive, send)
        return await self.app(scope, receive, send)
