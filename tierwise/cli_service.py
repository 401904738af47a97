"""`tierwise serve`: the real-time HTTP service (BentoML); registered on the app defined in tierwise.cli."""

from pathlib import Path
from typing import Annotated

import typer

from tierwise.cli import app, console


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs API keys.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve WITHOUT API keys (loopback only; prints a warning).")
    ] = False,
    policy: Annotated[Path | None, typer.Option(help="Tier policy YAML for tier proposals (default: shipped).")] = None,
    max_age_days: Annotated[
        int | None, typer.Option(help="Lookups of scores older than this many days say stale: true (default 35).")
    ] = None,
    reload_seconds: Annotated[
        float | None, typer.Option(help="How often to look for a new champion or score batch (default 30).")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (one per CPU core serves the most; each holds the book).")
    ] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log a line per request (off: /metrics counts requests anyway).")
    ] = False,
) -> None:
    """Serve lookups, on-demand scoring and model info over HTTP (API keys: TIERWISE_API_KEYS or _FILE)."""
    from serving.launch import serve as run

    run(host, port, not no_auth, policy, max_age_days, reload_seconds, console, workers, access_log)
