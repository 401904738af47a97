"""Sign-in safety for the console: the session secret, CSRF tokens and the failed sign-in limit.

Sessions are Starlette's signed cookies (itsdangerous): HttpOnly always, SameSite=Strict, and
Secure when `TIERWISE_CONSOLE_SECURE_COOKIE=1` (set it when the console is served over HTTPS,
e.g. behind a TLS proxy). The cookie is signed with `TIERWISE_CONSOLE_SECRET`, or else with a
random secret kept in a file beside the latest-scores store (created once, owner-only), so
sessions survive a restart and every worker of the service accepts them.

Failed sign-ins are counted in memory, per user name and per client address: a restart forgets
them, and each worker process counts its own (docs/console.md says so).
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from features.io import write_text
from tierwise import settings

SECRET_ENV = "TIERWISE_CONSOLE_SECRET"
SECURE_ENV = "TIERWISE_CONSOLE_SECURE_COOKIE"
SECRET_FILE = "console.secret"
SESSION_COOKIE = "tierwise_console"
SESSION_SECONDS = 8 * 3600  # a working day; sign in again the next morning
CSRF_FIELD = "csrf_token"


def session_secret() -> str:
    """The key sessions are signed with (`TIERWISE_CONSOLE_SECRET`, else a secret file made once)."""
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV]
    path = Path(settings.scores_store()).parent / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(secrets.token_urlsafe(32), path)
        path.chmod(0o600)
    return path.read_text().strip()


def secure_cookies() -> bool:
    """Whether the session cookie is marked Secure (only sent over HTTPS): `TIERWISE_CONSOLE_SECURE_COOKIE=1`."""
    return os.environ.get(SECURE_ENV, "").lower() in ("1", "true", "yes")


def csrf_token(session: dict) -> str:
    """The session's CSRF token, made on first use; every form carries it in `CSRF_FIELD`."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def csrf_ok(session: dict, sent: object) -> bool:
    """Whether a posted token is the session's (compared in constant time)."""
    held = session.get(CSRF_FIELD)
    return isinstance(held, str) and isinstance(sent, str) and hmac.compare_digest(held.encode(), sent.encode())


class SignInLimit:
    """At most `per_user` failed sign-ins per user name and client, and `per_client` per client, in `window` seconds.

    Counting per client as well stops one address trying many names; counting the pair (not the
    name alone) keeps an attacker from locking a real user out from elsewhere.
    """

    def __init__(self, per_user: int = 5, per_client: int = 20, window: float = 900.0) -> None:
        self.per_user, self.per_client, self.window = per_user, per_client, window
        self.failures: dict[tuple, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def retry_after(self, user: str, client: str) -> int:
        """Seconds until this user may try again from this client; 0 when a try is allowed now."""
        now = time.monotonic()
        with self.lock:
            waits = [
                self.wait(("pair", user.lower(), client), self.per_user, now),
                self.wait(("client", client), self.per_client, now),
            ]
        return max(waits)

    def wait(self, key: tuple, limit: int, now: float) -> int:
        times = self.failures.get(key)
        if not times:
            return 0
        while times and now - times[0] > self.window:
            times.popleft()
        if not times:
            del self.failures[key]
            return 0
        return int(times[0] + self.window - now) + 1 if len(times) >= limit else 0

    def failed(self, user: str, client: str) -> None:
        """Count a failed sign-in."""
        now = time.monotonic()
        with self.lock:
            self.failures[("pair", user.lower(), client)].append(now)
            self.failures[("client", client)].append(now)

    def succeeded(self, user: str, client: str) -> None:
        """Forget this pair's failures (the client's count stays)."""
        with self.lock:
            self.failures.pop(("pair", user.lower(), client), None)
