"""Console page times: a real server against the in-process render of the same pages, on a big book.

    .venv/bin/python -m bench.console [--accounts 10000] [--batches 52] [--requests 60]

The book is synthetic but shaped like the real thing (bench/history.py's batches: every score
column, reason texts and `reasons_json` of the real size), with names, owners and per-family
activity added, published as `--batches` weekly batches into a score history with the model
version changing halfway. Each page is requested `--requests` times (accounts drawn at random):

- server: `bentoml serve serving.service:TierwiseService` on loopback, signed in, timed from
  request to last byte by the client (httpx), so it includes HTTP, the session check and
  BentoML's middleware chain;
- in-process (the baseline): the same console app called in this process through Starlette's
  TestClient (no socket, no server), which is the page's own work: filters, history, template.

The server runs without champion models (no training in a benchmark): the console reads the
store, the history and the console database, none of which needs them; the Models page then
lists no model, so its time is the page without registry cards (the registry is read at most
once a minute anyway). The first request after a new batch loads the snapshot and the history;
it is reported apart ("first load"), the percentiles are steady state.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd

from bench.history import synthetic_batch

USER, PASSWORD = "bench", "bench password 123"
OWNERS = ("ana", "ben", "chloe", "dev", "eli", "bench")
TARGETS_MS = {"account": 50.0}  # every other page: 150 ms
PAGE_TARGET_MS = 150.0


def console_batch(as_of: pd.Timestamp, accounts: int, week: int, churn_version: str) -> pd.DataFrame:
    """One week's batch with the account facts the console shows."""
    scored = synthetic_batch(as_of, accounts, seed=week, churn_version=churn_version)
    rng = np.random.default_rng(100 + week)
    scored["name"] = [f"Customer {i}" for i in range(accounts)]
    scored["owner"] = np.array(OWNERS, dtype=object)[np.arange(accounts) % len(OWNERS)]
    logins, tickets = rng.poisson(40, accounts), rng.poisson(2, accounts)
    scored["activity_30d"] = [
        orjson.dumps({"login": int(a), "support_ticket": int(b), "report_exported": int(a // 7)}).decode()
        for a, b in zip(logins, tickets, strict=True)
    ]
    return scored


def build(root: Path, accounts: int, weeks: int) -> tuple[Path, float]:
    """Publish the history and the latest batch into `root`, add the bench user; returns (store, seconds)."""
    from serving.console.db import ConsoleDB
    from serving.history import append_batch
    from serving.store import write_store

    start = time.perf_counter()
    store = root / "latest_scores.parquet"
    end = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() - pd.Timedelta(days=1)
    dates = [end - pd.Timedelta(days=7 * (weeks - 1 - w)) for w in range(weeks)]
    for week, as_of in enumerate(dates):
        scored = console_batch(as_of, accounts, week, "1" if week < weeks // 2 else "2")
        append_batch(scored, root / "score_history")
    write_store(scored, store)
    ConsoleDB(f"sqlite:///{root / 'console.db'}").add_user(USER, PASSWORD)
    return store, time.perf_counter() - start


def pages(accounts: int, seed: int = 5) -> dict[str, list[str]]:
    """The URLs timed per page (accounts drawn at random, so no page is served from a warm slice alone)."""
    picks = [f"ACC-{i:06d}" for i in np.random.default_rng(seed).integers(1, accounts, 1000)]
    return {
        "book": ["/console"],
        "book, filtered and sorted": ["/console?tier=high_touch&band=high&sort=risk&order=asc"],
        "book, search": ["/console?q=customer 12"],
        "book, CSV export of a filtered view": ["/console/book.csv?owner=ana&band=high"],
        "account": [f"/console/accounts/{a}" for a in picks],
        "renewals": ["/console/renewals"],
        "moved": ["/console/moved"],
        "models": ["/console/models"],
    }


def sign_in(client: httpx.Client | object, base: str = "") -> None:
    login = client.get(f"{base}/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    resp = client.post(
        f"{base}/console/login",
        data={"username": USER, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text


def timed(client, base: str, urls: list[str], n: int) -> list[float]:
    """Milliseconds per request for `n` requests cycling through `urls` (each answer checked: 200, not empty)."""
    out = []
    for i in range(n):
        start = time.perf_counter()
        resp = client.get(base + urls[i % len(urls)])
        out.append(1e3 * (time.perf_counter() - start))
        assert resp.status_code == 200 and len(resp.content) > 500, (urls[i % len(urls)], resp.status_code)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, store: Path) -> tuple[subprocess.Popen, str]:
    """The service on loopback (no models: see the module docstring), answering once `/livez` does."""
    port = free_port()
    env = {
        **os.environ,
        "TIERWISE_SCORES_STORE": str(store),
        "TIERWISE_API_KEYS": "bench-key",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "BENTOML_DO_NOT_TRACK": "true",
        "TIERWISE_CONSOLE_SECRET": "bench",
    }
    bentoml = Path(sys.executable).with_name("bentoml")
    cmd = [str(bentoml), "serve", "serving.service:TierwiseService", "--host", "127.0.0.1", "--port", str(port)]
    log = open(root / "serve.log", "w")  # noqa: SIM115 (open while the server runs)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1])
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise SystemExit(f"server did not start:\n{(root / 'serve.log').read_text()[-3000:]}")


def percentiles(times: list[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def run(accounts: int, weeks: int, requests: int) -> tuple[list[dict], dict]:
    from starlette.testclient import TestClient

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store, build_s = build(root, accounts, weeks)
        os.environ.update(
            TIERWISE_SCORES_STORE=str(store),
            MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
            TIERWISE_CONSOLE_SECRET="bench",
        )
        from serving.console.app import console_app

        local = TestClient(console_app())
        sign_in(local)
        start = time.perf_counter()
        local.get("/console")
        local_first = time.perf_counter() - start
        proc, url = start_server(root, store)
        try:
            remote = httpx.Client(timeout=60)
            sign_in(remote, url)
            start = time.perf_counter()
            remote.get(f"{url}/console")
            remote_first = time.perf_counter() - start
            rows = []
            for name, urls in pages(accounts).items():
                timed(remote, url, urls, 3)  # warm both: templates compiled, registry read
                timed(local, "", urls, 3)
                server = percentiles(timed(remote, url, urls, requests))
                inproc = percentiles(timed(local, "", urls, requests))
                rows.append({"page": name, "server": server, "local": inproc})
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    facts = {"build_s": build_s, "local_first_s": local_first, "remote_first_s": remote_first}
    return rows, facts


def table(rows: list[dict]) -> str:
    """The figures as the Markdown rows docs/benchmarks.md records."""
    lines = [
        "| page | server p50 | server p99 | in-process p50 | in-process p99 | ratio p50 | target p50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        target = TARGETS_MS.get(r["page"], PAGE_TARGET_MS)
        verdict = "met" if r["server"][0] <= target else "MISSED"
        lines.append(
            f"| {r['page']} | {r['server'][0]:.1f} ms | {r['server'][1]:.1f} ms | {r['local'][0]:.1f} ms | "
            f"{r['local'][1]:.1f} ms | {r['server'][0] / r['local'][0]:.2f} | ≤ {target:.0f} ms ({verdict}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=52)
    parser.add_argument("--requests", type=int, default=60, help="requests per page and side")
    args = parser.parse_args()
    rows, facts = run(args.accounts, args.batches, args.requests)
    print(table(rows))
    print(
        f"book: {args.accounts:,} accounts x {args.batches} weekly batches (built in {facts['build_s']:.0f} s); "
        f"first page after a new batch (snapshot + history load): server {facts['remote_first_s']:.2f} s, "
        f"in-process {facts['local_first_s']:.2f} s; {args.requests} requests per page and side; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
