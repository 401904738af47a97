"""Service benchmark: the real `tierwise serve` on loopback against the same calls made in-process.

Trains real models on a demo world into a throwaway MLflow store, scores the book into a
throwaway latest-scores store, starts the server on a free 127.0.0.1 port, then measures:

1. single-account lookup, p50/p99, at concurrency 1 and 8;
2. single-row scoring with reasons (and tier proposal), p50/p99, at concurrency 1 and 8;
3. batched scoring throughput (rows/s) with 200-row requests;
each next to the same call made in-process in the same run (the service's own handler or the
`serving.online` functions it calls), as a ratio;
4. a load of `--load-seconds` at concurrency 16 mixing lookups (80%) and single-row scores
(20%), with a new champion registered halfway, counting errors and sampling the server's RSS.

Bounded: loopback only, `--requests` per latency figure, `--load-seconds` for the load; the
server and its store are removed afterwards. Writes the `## Service` section of
docs/benchmarks.md.

    .venv/bin/python -m bench.serve [--accounts 1000] [--requests 400] [--load-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
KEY = "bench-key"
TIERWISE = Path(sys.executable).with_name("tierwise")
BATCH_ROWS = 200


def prepare(work: Path, accounts: int, seed: int) -> dict:
    """Demo world -> trained champions -> scored book in the store; returns feature rows and ids."""
    from features.build import build_features
    from features.demo_world import write_demo_world
    from features.tables import load_tables
    from serving.registry import load_models
    from serving.scoring import score_frame
    from serving.store import write_store
    from training.pipeline import train

    data = work / "data"
    write_demo_world(data, n_accounts=accounts, seed=seed)
    train(data, seed=seed, max_rounds=300)
    models = load_models()
    tables = load_tables(data)
    frame = build_features(tables, [tables.data_end], metrics=models.churn.metrics).frame
    scored = score_frame(frame, models)
    write_store(scored)
    rows = frame.drop(columns=["renewal_date"]).assign(as_of=frame["as_of"].dt.strftime("%Y-%m-%d"))
    return {
        "rows": json.loads(rows.to_json(orient="records", double_precision=15)),
        "ids": scored["account_id"].tolist(),
    }


def start_server(port: int, log: Path, workers: int) -> subprocess.Popen:
    """`tierwise serve` on 127.0.0.1, waited on until ready."""
    env = {**os.environ, "TIERWISE_API_KEYS": KEY, "BENTOML_DO_NOT_TRACK": "true"}
    cmd = [str(TIERWISE), "serve", "--host", "127.0.0.1", "--port", str(port), "--reload-seconds", "2"]
    cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("server not ready after 180 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "n": len(ms)}


class Client:
    """One keep-alive HTTP/1.1 connection (the standard library's): the client's own overhead stays
    far below the server's, which matters when client and server share two cores."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def post(self, route: str, body: dict) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        try:
            self.conn.request("POST", route, body=json.dumps(body), headers=headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnects on the next request
            raise


def http_latencies(url: str, route: str, bodies: list[dict], concurrency: int) -> list[float]:
    """Each body posted once, `concurrency` at a time (a keep-alive connection per thread); every answer must be 200."""
    local = threading.local()

    def call(body: dict) -> float:
        if not hasattr(local, "client"):
            local.client = Client(url)
        start = time.perf_counter()
        status, text = local.client.post(route, body)
        elapsed = time.perf_counter() - start
        if status != 200:
            raise SystemExit(f"{route} answered {status}: {text[:300]!r}")
        return elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, bodies[: max(concurrency * 2, 10)]))  # warm-up
        return list(pool.map(call, bodies))


def in_process(requests: int, data: dict) -> dict:
    """The same calls without HTTP: the service's lookup handler, and `checked_rows` + `score_answers`."""
    from serving.online import checked_rows, score_answers
    from serving.service import TierwiseService

    svc = TierwiseService.inner()
    loop = asyncio.new_event_loop()
    ids, rows = data["ids"], data["rows"]

    def lookup(i: int) -> None:
        loop.run_until_complete(svc.lookup(account_ids=[ids[i % len(ids)]]))

    def score(i: int, n: int = 1) -> None:
        models, book = svc.live.models, svc.live.book
        checked = checked_rows([rows[(i + j) % len(rows)] for j in range(n)], models)
        json.dumps(score_answers([checked], models, svc.policy, book))

    out = {}
    for name, fn in (("lookup", lookup), ("score", score)):
        for i in range(20):
            fn(i)
        times = []
        for i in range(requests):
            start = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - start)
        out[name] = percentiles(times)
    start, batches = time.perf_counter(), 5
    for b in range(batches):
        score(b * BATCH_ROWS, BATCH_ROWS)
    out["batch_rows_per_s"] = batches * BATCH_ROWS / (time.perf_counter() - start)
    return out


def server_rss(proc: subprocess.Popen) -> float:
    """Resident memory of the server and its workers, MiB."""
    parent = psutil.Process(proc.pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20


def new_champion() -> dict:
    """Register the current champions' models again as new versions and move `champion` to them."""
    from mlflow.tracking import MlflowClient

    from tierwise import settings

    client = MlflowClient(tracking_uri=settings.tracking_uri())
    moved = {}
    for name in ("tierwise-churn", "tierwise-growth"):
        champion = client.get_model_version_by_alias(name, "champion")
        new = client.create_model_version(name, source=champion.source, run_id=champion.run_id)
        client.set_registered_model_alias(name, "champion", new.version)
        moved[name] = f"{champion.version} -> {new.version}"
    return moved


def load_test(url: str, proc: subprocess.Popen, data: dict, seconds: float, concurrency: int = 16) -> dict:
    """Mixed load with a champion change halfway: errors, latency, versions seen, RSS over time."""
    stop, errors, latencies, versions = threading.Event(), [], {"lookup": [], "score": []}, set()
    ids, rows = data["ids"], data["rows"]

    def worker(k: int) -> None:
        client = Client(url)
        i = k
        while not stop.is_set():
            route = "/score" if i % 5 == 0 else "/lookup"
            body = {"rows": [rows[i % len(rows)]]} if route == "/score" else {"account_ids": [ids[i % len(ids)]]}
            start = time.perf_counter()
            try:
                status, text = client.post(route, body)
            except (OSError, http.client.HTTPException) as exc:
                status, text = None, repr(exc).encode()
            latencies[route[1:]].append(time.perf_counter() - start)
            if status != 200:
                errors.append(f"{route}: {status} {text[:200]!r}")
            elif route == "/score":
                versions.add(tuple(json.loads(text)["model_versions"].values()))
            i += concurrency

    rss, moved = [], None
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(worker, k) for k in range(concurrency)]
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            rss.append((elapsed, server_rss(proc)))
            if moved is None and elapsed >= seconds / 2:
                moved = new_champion()
            time.sleep(1)
        stop.set()
        for f in futures:
            f.result()
    total = sum(len(v) for v in latencies.values())
    first = statistics.median(r for t, r in rss if t < 10)
    # BentoML keeps a timer per request for its traffic timeout (30 s), and the new champion loads
    # at half time: from then on memory should be flat, so compare the 10 s after both with the last 10 s
    settled = statistics.median(r for t, r in rss if seconds / 2 + 5 <= t < seconds / 2 + 15)
    last = statistics.median(r for t, r in rss if t >= seconds - 10)
    return {
        "seconds": seconds,
        "requests": total,
        "per_s": total / seconds,
        "errors": len(errors),
        "error_examples": errors[:5],
        "lookup": percentiles(latencies["lookup"]),
        "score": percentiles(latencies["score"]),
        "champion_moved": moved,
        "versions_seen": sorted(versions),
        "rss_first_10s_mib": first,
        "rss_settled_mib": settled,
        "rss_last_10s_mib": last,
        "rss_max_mib": max(r for _, r in rss),
    }


def measure(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="tierwise-bench-serve-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["TIERWISE_MLRUNS"] = str(work)
    os.environ["TIERWISE_SCORES_STORE"] = str(work / "latest_scores.parquet")
    proc = None
    try:
        print(f"preparing: {args.accounts} accounts, training, scoring ...", flush=True)
        data = prepare(work, args.accounts, args.seed)
        print("in-process baseline ...", flush=True)
        local = in_process(args.requests, data)
        port = free_port()
        proc = start_server(port, work / "serve.log", args.workers)
        url = f"http://127.0.0.1:{port}"
        ids, rows = data["ids"], data["rows"]
        lookups = [{"account_ids": [ids[i % len(ids)]]} for i in range(args.requests)]
        scores = [{"rows": [rows[i % len(rows)]]} for i in range(args.requests)]
        http = {}
        for conc in (1, 8):
            print(f"HTTP at concurrency {conc} ...", flush=True)
            http[f"lookup_c{conc}"] = percentiles(http_latencies(url, "/lookup", lookups, conc))
            http[f"score_c{conc}"] = percentiles(http_latencies(url, "/score", scores, conc))
        batches = [{"rows": [rows[(b * BATCH_ROWS + j) % len(rows)] for j in range(BATCH_ROWS)]} for b in range(5)]
        http["batch_rows_per_s"] = BATCH_ROWS / statistics.mean(http_latencies(url, "/score", batches, 1))
        print(f"load: {args.load_seconds} s at concurrency 16, new champion halfway ...", flush=True)
        load = load_test(url, proc, data, args.load_seconds)
        return {"local": local, "http": http, "load": load}
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)


def section(r: dict, args) -> str:
    """The `## Service` section of docs/benchmarks.md."""
    local, http, load = r["local"], r["http"], r["load"]
    moved = ", ".join(f"{k} {v}" for k, v in (load["champion_moved"] or {}).items())

    def row(name: str, key: str, base: str, target: str) -> str:
        h, b = http[key], local[base]
        return (
            f"| {name} | {h['p50']:.1f} | {h['p99']:.1f} | {b['p50']:.2f} | {b['p99']:.2f} | "
            f"{h['p50'] / b['p50']:.1f}x | {target} |"
        )

    cpu = f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join(
        [
            "## Service",
            "",
            f"`tierwise serve --workers {args.workers}` on 127.0.0.1, {args.accounts}-account demo book, real "
            f"champions trained in the run; client in the same machine ({cpu}; load average at the end {load_avg}). "
            "Latency is measured by the client (HTTP round trip, JSON both ways, one keep-alive `http.client` "
            "connection per client thread); the in-process figure is the same "
            "call without HTTP: the service's lookup handler, and `checked_rows` + `score_answers` "
            "(`score_columns` + tier proposal, the batch's scoring code) for scoring.",
            "",
            "```sh",
            f".venv/bin/python -m bench.serve --accounts {args.accounts} --requests {args.requests} "
            f"--load-seconds {args.load_seconds:g} --workers {args.workers}",
            "```",
            "",
            "| call | HTTP p50 ms | HTTP p99 ms | in-process p50 ms | in-process p99 ms | p50 ratio | target |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
            row("lookup, 1 account, concurrency 1", "lookup_c1", "lookup", "p50 <= 5, p99 <= 20"),
            row("lookup, 1 account, concurrency 8", "lookup_c8", "lookup", "p50 <= 5, p99 <= 20"),
            row("score 1 row with reasons + tier, concurrency 1", "score_c1", "score", "p50 <= 15"),
            row("score 1 row with reasons + tier, concurrency 8", "score_c8", "score", "p50 <= 15"),
            "",
            f"Batched scoring, {BATCH_ROWS}-row requests: {http['batch_rows_per_s']:,.0f} rows/s over HTTP vs "
            f"{local['batch_rows_per_s']:,.0f} rows/s in-process "
            f"(ratio {local['batch_rows_per_s'] / http['batch_rows_per_s']:.2f}x).",
            "",
            f"Load: {load['seconds']:.0f} s at concurrency 16, 80% lookups / 20% single-row scores: "
            f"{load['requests']:,} requests ({load['per_s']:,.0f}/s), **{load['errors']} errors**; "
            f"lookup p50 {load['lookup']['p50']:.1f} ms / p99 {load['lookup']['p99']:.1f} ms, "
            f"score p50 {load['score']['p50']:.1f} ms / p99 {load['score']['p99']:.1f} ms. "
            f"New champion registered at {load['seconds'] / 2:.0f} s ({moved}); "
            f"score answers saw model versions {', '.join('/'.join(v) for v in load['versions_seen'])}. "
            f"Server RSS (median): {load['rss_first_10s_mib']:.0f} MiB in the first 10 s; "
            f"{load['rss_settled_mib']:.0f} MiB at {load['seconds'] / 2 + 5:.0f}-{load['seconds'] / 2 + 15:.0f} s, "
            "once "
            "BentoML's per-request timers (held for the 30 s traffic timeout) and the new champion are in; "
            f"{load['rss_last_10s_mib']:.0f} MiB in the last 10 s; max {load['rss_max_mib']:.0f} MiB.",
            "",
        ]
    )


def write_section(text: str) -> None:
    """Replace (or append) the `## Service` section, leaving the other sections as they are."""
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    lines, out, skipping = doc.splitlines(), [], False
    for line in lines:
        if line.startswith("## "):
            skipping = line.strip() == "## Service"
            if skipping:
                continue
        if not skipping:
            out.append(line)
    DOC.write_text("\n".join(out).rstrip() + "\n\n" + text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=400, help="requests per latency figure")
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    result = measure(args)
    text = section(result, args)
    print(text)
    print(json.dumps(result, indent=1, default=str))
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
