"""Start the service from `tierwise serve`, after the checks that make a bad start fail fast and clearly.

Starting BentoML takes seconds and its worker errors end up in a log; a missing API key, a
public host without auth or an empty model registry are caught here first and reported as one
line (`DataError`), before any worker starts.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from rich.console import Console

from features.tables import DataError
from serving.auth import NO_AUTH_ENV, api_keys
from serving.redact import public_text
from tierwise import settings

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = "127.0.0.1",
    port: int = 3000,
    auth: bool = True,
    policy: Path | None = None,
    max_age_days: int | None = None,
    reload_seconds: float | None = None,
    console: Console | None = None,
    workers: int = 1,
    access_log: bool = False,
) -> None:
    """Check the set-up, pass settings to the workers through the environment, then serve until stopped.

    Raises:
        DataError: no API key is configured (and auth is on), auth is off on a non-loopback host,
            the tier policy is invalid, or no champion model is registered.
    """
    console = console or Console(stderr=True)
    if auth and not api_keys():
        raise DataError(
            "no API key configured: set TIERWISE_API_KEYS=key1,key2 or TIERWISE_API_KEY_FILE=/path/to/keys "
            "(or, on this machine only, pass --no-auth)"
        )
    if not auth and not is_loopback(host):
        raise DataError(f"--no-auth only binds to loopback (127.0.0.1, ::1, localhost), not {host}: configure API keys")
    check_ready(policy)
    env = {
        NO_AUTH_ENV: "" if auth else "1",
        "MLFLOW_TRACKING_URI": settings.tracking_uri(),
        "TIERWISE_SCORES_STORE": str(settings.scores_store()),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a progress bar per model download is log noise
    }
    if policy is not None:
        env["TIERWISE_POLICY"] = str(Path(policy).resolve())
    if max_age_days is not None:
        env["TIERWISE_MAX_SCORE_AGE_DAYS"] = str(max_age_days)
    if reload_seconds is not None:
        env["TIERWISE_RELOAD_SECONDS"] = str(reload_seconds)
    if access_log:
        env["TIERWISE_ACCESS_LOG"] = "1"
    os.environ.update(env)
    if not auth:
        console.print(
            "[bold red]WARNING: API key auth is OFF.[/bold red] Anyone who can reach "
            f"{host}:{port} gets every account's scores. Use this on your own machine only."
        )
    shown = f"models: {public_text(settings.tracking_uri())}, scores: {settings.scores_store().name}"
    console.print(f"serving tierwise on http://{host}:{port} ({shown})")
    from serving.service import TierwiseService

    TierwiseService.config["workers"] = workers
    TierwiseService.serve_http(host=host, port=port)


def check_ready(policy: Path | None) -> None:
    """Fail before starting workers when the policy is invalid or no champion is registered."""
    from serving import registry
    from serving.tiers import load_policy

    load_policy(policy)
    registry.mlflow.set_tracking_uri(settings.tracking_uri())
    for name in (registry.CHURN, registry.GROWTH):
        registry.resolve_version(name, None)
