"""The real service, from the outside: `tierwise serve` as a subprocess on a free loopback port.

One server per module (cold start is seconds) against a copy of the session's trained MLflow
store and a latest-scores store written by the batch scoring function, so the tests can move
the champion and replace the score batch under the running server without touching the
registry other modules use.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

pytestmark = pytest.mark.slow

KEYS = ("test-key-1", "test-key-2")
TIERWISE = Path(sys.executable).with_name("tierwise")
TIERS = {"high_touch", "mid_touch", "tech_touch"}


@dataclass
class Served:
    """A running server and what it serves from."""

    url: str
    uri: str  # its MLflow tracking URI (a private copy of the session store)
    store: Path  # its latest-scores store
    scored: pd.DataFrame  # the batch written to the store at start
    features: pd.DataFrame  # the feature rows that batch was scored from
    log: Path
    proc: subprocess.Popen

    def post(self, route: str, body=None, key: str | None = KEYS[0], **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{self.url}{route}", json=body, headers=headers, timeout=30, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_scores(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature rows at the data end and their scores from the batch path (`score_frame`)."""
    from features.build import build_features
    from features.tables import load_tables
    from serving.registry import load_models
    from serving.scoring import score_frame

    models = load_models()
    tables = load_tables(data_dir)
    frame = build_features(tables, [tables.data_end], metrics=models.churn.metrics).frame
    return frame, score_frame(frame, models)


def serve_env(uri: str, store: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "TIERWISE_SCORES_STORE": str(store),
        "TIERWISE_API_KEYS": ",".join(KEYS),
        "BENTOML_DO_NOT_TRACK": "true",
        **extra,
    }


@contextmanager
def running_server(trained_store, root: Path, *args: str):
    """`tierwise serve` on a free port against a private copy of the session's registry and a fresh score batch."""
    from serving.store import write_store

    source_db = Path(trained_store.uri.removeprefix("sqlite:///"))
    shutil.copy(source_db, root / "mlflow.db")  # artifacts stay where they are; only the registry is private
    uri = f"sqlite:///{root / 'mlflow.db'}"
    features, scored = batch_scores(trained_store.data_dir)
    store = write_store(scored, root / "latest_scores.parquet")
    with tierwise_serve(serve_env(uri, store), root / "serve.log", *args) as (url, proc):
        yield Served(url, uri, store, scored, features, root / "serve.log", proc)


@contextmanager
def tierwise_serve(env: dict[str, str], log: Path, *args: str):
    """`tierwise serve` on a free port with `env` (see `serve_env`), polling every second; yields (url, proc)."""
    port = free_port()
    cmd = [str(TIERWISE), "serve", "--host", "127.0.0.1", "--port", str(port), "--reload-seconds", "1"]
    cmd += ["--max-age-days", "3650", *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        yield url, proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """Ask a server to stop (SIGTERM), and kill it if it has not within 20 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def served(trained_store, tmp_path_factory) -> Served:
    with running_server(trained_store, tmp_path_factory.mktemp("served")) as server:
        yield server


def wait_ready(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tierwise serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"tierwise serve not ready after {seconds} s:\n{log.read_text()[-3000:]}")


def posted_rows(features: pd.DataFrame, n: int) -> list[dict]:
    """Feature rows as another system would post them: JSON values, dates as YYYY-MM-DD."""
    rows = features.head(n).drop(columns=["renewal_date"])
    rows = rows.assign(as_of=pd.to_datetime(rows["as_of"]).dt.strftime("%Y-%m-%d"))
    return json.loads(rows.to_json(orient="records"))


def assert_no_traceback(resp: httpx.Response) -> None:
    assert "traceback" not in resp.text.lower() and 'file "' not in resp.text.lower(), resp.text


@contextmanager
def mlflow_uri(uri: str):
    """MLflow's global tracking URI set to `uri` for a block (the download API has no client argument)."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def wait_for(predicate, seconds: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


# --- health, auth, metrics -------------------------------------------------------------------


def test_health_and_readiness_need_no_key(served):
    for route in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(f"{served.url}{route}", timeout=5).status_code == 200, route


def test_every_other_route_needs_a_valid_key(served):
    body = {"account_ids": [served.scored["account_id"].iloc[0]]}
    for route in ("/lookup", "/model_info", "/score", "/reload"):
        missing = served.post(route, body, key=None)
        assert missing.status_code == 401, route
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert served.post(route, body, key="not-a-key").status_code == 403, route
    assert httpx.get(f"{served.url}/metrics", timeout=5).status_code == 401
    assert httpx.get(f"{served.url}/docs.json", timeout=5).status_code == 401
    assert served.post("/lookup", body, key=KEYS[1]).status_code == 200  # every configured key works


def test_prometheus_metrics_count_requests(served):
    served.post("/lookup", {"account_ids": [served.scored["account_id"].iloc[0]]})
    resp = httpx.get(f"{served.url}/metrics", headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=10)
    assert resp.status_code == 200
    assert "bentoml_service_request_total" in resp.text and 'endpoint="/lookup"' in resp.text


def test_openapi_spec_names_the_routes(served):
    spec = httpx.get(f"{served.url}/docs.json", headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=10).json()
    assert {"/lookup", "/score", "/model_info"} <= set(spec["paths"])


# --- lookup ----------------------------------------------------------------------------------


def test_lookup_answers_the_stored_scores(served):
    row = served.scored.iloc[0]
    resp = served.post("/lookup", {"account_ids": [row["account_id"]]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    (found,) = body["results"]
    assert found["account_id"] == row["account_id"]
    assert found["churn_risk"] == pytest.approx(row["churn_risk"])
    assert found["growth_potential"] == pytest.approx(row["growth_potential"])
    assert (found["tier"], found["segment"], found["escalate"]) == (row["tier"], row["segment"], bool(row["escalate"]))
    assert found["as_of"] == str(pd.Timestamp(row["as_of"]).date()) == body["as_of"]
    assert found["churn_model_version"] == row["churn_model_version"] == body["model_versions"]["churn"]
    assert found["stale"] is False
    assert found["reasons"]["churn"] and {"text", "points", "actionable"} <= set(found["reasons"]["churn"][0])
    assert body["unknown"] == []


def test_lookup_of_unknown_id_is_404_naming_it(served):
    resp = served.post("/lookup", {"account_ids": ["no-such-account-xyz"]})
    assert resp.status_code == 404
    assert "no-such-account-xyz" in resp.json()["error"] and resp.json()["unknown"] == ["no-such-account-xyz"]
    assert resp.json()["model_versions"]["churn"]


def test_lookup_of_many_answers_known_and_lists_unknown(served):
    known = served.scored["account_id"].head(3).tolist()
    resp = served.post("/lookup", {"account_ids": [*known, "ghost-1", known[0]]})
    assert resp.status_code == 200
    assert [r["account_id"] for r in resp.json()["results"]] == known
    assert resp.json()["unknown"] == ["ghost-1"]


# --- validation and limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/lookup", {}, "account_ids"),
        ("/lookup", {"account_ids": []}, "account_ids"),
        ("/lookup", {"account_ids": "A1"}, "account_ids"),
        ("/lookup", {"account_ids": [""]}, "account_ids"),
        ("/score", {"rows": "not a list"}, "rows"),
        ("/score", {"rows": [{"tenure_days": 3}]}, "account_id"),
    ],
)
def test_bad_requests_are_400_naming_the_field(served, route, body, field):
    resp = served.post(route, body)
    assert resp.status_code == 400, resp.text
    assert field in resp.text
    assert_no_traceback(resp)


def test_garbage_json_is_400(served):
    resp = httpx.post(
        f"{served.url}/lookup",
        content=b"{not json",
        headers={"Authorization": f"Bearer {KEYS[0]}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 400
    assert_no_traceback(resp)


def test_posted_row_missing_a_feature_or_with_a_bad_value_names_it(served):
    row = posted_rows(served.features, 1)[0]
    del row["seats"]
    resp = served.post("/score", {"rows": [row]})
    assert resp.status_code == 400 and resp.json()["field"] == "rows[0].seats", resp.text
    row = posted_rows(served.features, 2)[1] | {"arr": "lots"}
    resp = served.post("/score", {"rows": [posted_rows(served.features, 1)[0], row]})
    assert resp.status_code == 400 and resp.json()["field"] == "rows[1].arr" and "lots" in resp.json()["error"]
    assert_no_traceback(resp)


def test_oversized_requests_are_refused(served):
    too_many = {"account_ids": [f"A{i}" for i in range(1001)]}
    assert served.post("/lookup", too_many).status_code == 400
    huge = {"account_ids": ["x" * 100] * 50_000}  # ~5 MB
    resp = served.post("/lookup", huge)
    assert resp.status_code == 413 and "bytes" in resp.json()["error"]
    assert httpx.get(f"{served.url}/readyz", timeout=5).status_code == 200  # and the service is still up


# --- scoring ---------------------------------------------------------------------------------


def test_posted_rows_score_as_the_batch_does(served):
    rows = posted_rows(served.features, 3)
    resp = served.post("/score", {"rows": rows})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    batch = served.scored.set_index("account_id")
    assert [s["account_id"] for s in body["scores"]] == [r["account_id"] for r in rows]
    for s in body["scores"]:
        assert s["churn_risk"] == pytest.approx(batch.loc[s["account_id"], "churn_risk"], abs=1e-9)
        assert s["growth_potential"] == pytest.approx(batch.loc[s["account_id"], "growth_potential"], abs=1e-9)
        assert s["tier"] in TIERS and s["segment"] in {"save", "grow", "onboard", "nurture"}
        assert s["reasons"]["churn"] and s["reasons"]["churn"][0]["text"]
        assert s["as_of"] == rows[0]["as_of"]
        assert s["previous_tier"] == batch.loc[s["account_id"], "tier"]  # proposed against the stored book
    assert body["model_versions"] == {
        "churn": batch["churn_model_version"].iloc[0],
        "growth": batch["growth_model_version"].iloc[0],
    }
    assert body["tier_basis"]["accounts"] == len(batch)


def test_no_access_log_by_default(served):
    for _ in range(3):
        assert served.post("/lookup", {"account_ids": [served.scored["account_id"].iloc[0]]}).status_code == 200
    time.sleep(0.5)  # a log line would be written by now
    assert "path=/lookup" not in served.log.read_text()  # requests are counted in /metrics instead (test above)


def test_flags_posted_for_some_rows_only_apply_to_those_rows(served):
    rows = posted_rows(served.features, 2)
    batch = served.scored.set_index("account_id")
    given = not bool(batch.loc[rows[0]["account_id"], "insufficient_history"])
    rows[0]["insufficient_history"] = given
    del rows[1]["insufficient_history"]  # derived from tenure, as the batch derives it
    first, second = served.post("/score", {"rows": rows}).json()["scores"]
    assert first["insufficient_history"] is given
    assert second["insufficient_history"] is bool(batch.loc[rows[1]["account_id"], "insufficient_history"])


def test_concurrent_scoring_is_batched_and_all_answered(served):
    rows = posted_rows(served.features, 16)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: served.post("/score", {"rows": [r]}), rows))
    assert [a.status_code for a in answers] == [200] * len(rows)
    assert [a.json()["scores"][0]["account_id"] for a in answers] == [r["account_id"] for r in rows]


def test_model_info_names_versions_metrics_and_features(served):
    info = served.post("/model_info").json()
    assert set(info["model_versions"]) == {"churn", "growth"}
    assert info["models"]["churn"]["version"] == info["model_versions"]["churn"]
    names = {f["name"] for f in info["features"]}
    assert {"seats", "arr", "tenure_days"} <= names
    assert info["reload"]["models"]["ok"] is True and info["reload"]["models"]["error"] is None
    assert info["scores"]["accounts"] == len(served.scored)


def test_one_bad_request_never_fails_the_others_sent_with_it(served):
    rows = posted_rows(served.features, 6)
    alone = {r["account_id"]: served.post("/score", {"rows": [r]}).json()["scores"][0] for r in rows}
    bad = [
        json.dumps({"rows": [rows[0] | {"arr": float("inf")}]}),  # the JSON token Infinity
        json.dumps({"rows": [rows[1] | {"seats": "many"}]}),
        json.dumps({"rows": [rows[2], rows[2]]}),  # one account twice
        json.dumps({"rows": [rows[3] | {"arr": None}]}),
    ]
    good = [{"rows": [r]} for r in rows] + [{"rows": [rows[4]]}]  # the same account in two requests, as well

    def post(body) -> httpx.Response:
        if isinstance(body, dict):
            return served.post("/score", body)
        headers = {"Authorization": f"Bearer {KEYS[0]}", "Content-Type": "application/json"}
        return httpx.post(f"{served.url}/score", content=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, bad + good + bad + good))
    for resp in answers[: len(bad)] + answers[len(bad) + len(good) : 2 * len(bad) + len(good)]:
        assert resp.status_code == 400 and resp.json()["field"], resp.text
    for body, resp in zip(good + good, answers[len(bad) : len(bad) + len(good)] + answers[-len(good) :], strict=True):
        assert resp.status_code == 200, resp.text
        (scored,) = resp.json()["scores"]
        expected = alone[body["rows"][0]["account_id"]]
        assert scored["churn_risk"] == expected["churn_risk"] and scored["tier"] == expected["tier"]
        assert scored["reasons"] == expected["reasons"]


def test_a_request_that_fails_inside_the_batch_fails_alone(trained_store, tmp_path):
    from serving.live import read_book
    from serving.online import checked_rows, score_requests
    from serving.registry import load_models
    from serving.service import FeatureRow
    from serving.store import write_store
    from serving.tiers import load_policy

    features, scored = batch_scores(trained_store.data_dir)
    book, models, policy = read_book(write_store(scored, tmp_path / "s.parquet")), load_models(), load_policy(None)
    requests = [checked_rows([FeatureRow(**r).model_dump()], models) for r in posted_rows(features, 3)]
    requests[1][0]["arr"] = "lots"  # past the checks (as a bug would let it): the batch's model call fails on it
    answers = score_requests(requests, models, policy, book)
    assert isinstance(answers[1], ValueError)
    assert answers[0] == score_requests(requests[:1], models, policy, book)[0]
    assert answers[2] == score_requests(requests[2:], models, policy, book)[0]
    assert answers[0][0]["account_id"] == features["account_id"].iloc[0]


def test_model_info_and_reload_status_name_no_folder(served):
    root = str(served.store.parent)
    info = served.post("/model_info")
    assert info.json()["scores"]["store"] == served.store.name
    reloaded = served.post("/reload")
    for resp in (info, reloaded):
        assert resp.status_code == 200
        assert root not in resp.text and "/tmp/" not in resp.text and "sqlite:" not in resp.text


def test_a_torn_score_store_is_reported_without_its_folder_and_the_last_batch_serves_on(served):
    from serving.store import write_store

    torn = served.store.with_name("torn.parquet")
    torn.write_bytes(b"PAR1 this is not a parquet file")
    os.replace(torn, served.store)
    status = wait_for(
        lambda: (s := served.post("/model_info").json()["reload"]["scores"])["ok"] is False and s,
        what="the torn store reported",
    )
    assert served.store.name in status["error"] and "still serving the last batch" in status["error"]
    assert str(served.store.parent) not in status["error"] and "Traceback" not in status["error"]
    account = served.scored["account_id"].iloc[0]
    assert served.post("/lookup", {"account_ids": [account]}).status_code == 200
    write_store(served.scored, served.store)
    wait_for(lambda: served.post("/model_info").json()["reload"]["scores"]["ok"], what="the store restored")


# --- hot reload (these change what the server serves: keep them last) -------------------------


def hammer(served: Served, stop: threading.Event) -> list[int]:
    """Lookups and single-row scores in a loop until `stop`; returns every status code seen."""
    ids, rows, codes = served.scored["account_id"].tolist(), posted_rows(served.features, 8), []
    i = 0
    while not stop.is_set():
        codes.append(served.post("/lookup", {"account_ids": [ids[i % len(ids)]]}).status_code)
        codes.append(served.post("/score", {"rows": [rows[i % len(rows)]]}).status_code)
        i += 1
    return codes


def test_new_score_batch_is_picked_up_and_old_scores_say_stale(served):
    from serving.store import write_store

    stop = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        load = [pool.submit(hammer, served, stop) for _ in range(2)]
        old = served.scored.assign(as_of=pd.Timestamp("1990-01-01"), churn_risk=0.5)
        write_store(old, served.store)
        account = old["account_id"].iloc[0]
        body = wait_for(
            lambda: (r := served.post("/lookup", {"account_ids": [account]}).json())["as_of"] == "1990-01-01" and r,
            what="the new score batch",
        )
        stop.set()
        codes = [c for f in load for c in f.result()]
    assert body["results"][0]["stale"] is True and body["results"][0]["churn_risk"] == 0.5
    assert codes and set(codes) == {200}


def test_new_champion_is_picked_up_without_failing_requests(served):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=served.uri)
    before = served.post("/model_info").json()["model_versions"]
    stop = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        load = [pool.submit(hammer, served, stop) for _ in range(2)]
        for name in ("tierwise-churn", "tierwise-growth"):
            champion = client.get_model_version_by_alias(name, "champion")
            new = client.create_model_version(name, source=champion.source, run_id=champion.run_id)
            client.set_registered_model_alias(name, "champion", new.version)
        info = wait_for(
            lambda: (i := served.post("/model_info").json())["model_versions"]["growth"] != before["growth"] and i,
            what="the new champion",
        )
        time.sleep(1)  # keep the load running across the swap
        stop.set()
        codes = [c for f in load for c in f.result()]
    assert codes and set(codes) == {200}
    assert int(info["model_versions"]["churn"]) > int(before["churn"])
    scored = served.post("/score", {"rows": posted_rows(served.features, 1)}).json()
    assert scored["model_versions"] == info["model_versions"]
    assert scored["scores"][0]["churn_model_version"] == info["model_versions"]["churn"]


def test_broken_champion_keeps_the_old_one_serving_and_says_why(served, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=served.uri)
    serving_now = served.post("/model_info").json()["model_versions"]
    good = client.get_model_version_by_alias("tierwise-churn", "champion")
    with mlflow_uri(served.uri):
        downloaded = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/tierwise-churn/{good.version}", dst_path=str(tmp_path / "good")
            )
        )
    broken = tmp_path / "broken"
    shutil.copytree(next(downloaded.rglob("bundle.json")).parent, broken / "bundle")
    (broken / "bundle" / "booster.txt").write_text(
        "this is not a LightGBM model\n"
    )  # a real bundle.json, a torn booster
    bad = client.create_model_version("tierwise-churn", source=str(broken), run_id=None)
    client.set_registered_model_alias("tierwise-churn", "champion", bad.version)
    info = served.post("/reload").json()
    assert info["model_versions"] == serving_now
    assert info["reload"]["models"]["ok"] is False
    assert f"v{serving_now['churn']}" in info["reload"]["models"]["error"]
    assert str(tmp_path) not in info["reload"]["models"]["error"] and "\n" not in info["reload"]["models"]["error"]
    resp = served.post("/score", {"rows": posted_rows(served.features, 1)})
    assert resp.status_code == 200 and resp.json()["model_versions"] == serving_now
    assert_no_traceback(resp)


def test_the_log_names_no_folder_and_holds_no_traceback(served):
    log = served.log.read_text()  # after every test above: bad requests, a torn store, a broken champion
    assert "bad request" in log and "new champion not loaded" in log  # those were logged, as one line each
    assert str(served.store.parent) not in log and "Traceback" not in log and 'File "' not in log


def test_several_workers_serve_the_same_answers_and_log_access_when_asked(trained_store, tmp_path):
    with running_server(trained_store, tmp_path, "--workers", "2", "--access-log") as two:
        processes = psutil.Process(two.proc.pid).children(recursive=True)
        workers = [p for p in processes if "worker.service" in " ".join(p.cmdline())]
        assert len(workers) == 2
        account = two.scored["account_id"].iloc[0]
        answers = [two.post("/lookup", {"account_ids": [account]}) for _ in range(20)]  # a connection each
        assert {a.status_code for a in answers} == {200}
        assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
        assert two.post("/score", {"rows": posted_rows(two.features, 2)}).status_code == 200
        assert wait_for(lambda: two.log.read_text().count("path=/lookup") == 20, what="20 access-log lines")


# --- refusing to start -----------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(TIERWISE), *args], env=env, capture_output=True, text=True, timeout=120)


def test_serve_without_a_key_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERWISE_API_KEY")}
    done = run_cli("serve", "--port", str(free_port()), env=env)
    assert done.returncode == 2 and "no API key configured" in done.stderr and "Traceback" not in done.stderr


def test_no_auth_refuses_a_public_host(tmp_path):
    done = run_cli("serve", "--no-auth", "--host", "0.0.0.0", "--port", str(free_port()), env=dict(os.environ))
    assert done.returncode == 2 and "loopback" in done.stderr


# A team's tracking server with its password in the URI, unreachable from here: a closed loopback port
# refuses at once, and without HTTP retries the store is given up on in milliseconds (MLflow's default
# retries for minutes, and a database URI retries its connection for ~100 s, whatever the test).
SECRET_URI = f"http://user:secret@127.0.0.1:{free_port()}"
SHOWN_URI = SECRET_URI.replace(":secret@", ":***@")
NO_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def test_serve_against_an_unreachable_store_refuses_in_one_line_without_the_password(tmp_path):
    done = run_cli(
        "serve", "--port", str(free_port()), env=serve_env(SECRET_URI, tmp_path / "none.parquet", **NO_RETRIES)
    )
    assert done.returncode == 2, done.stderr
    said = done.stdout + done.stderr
    assert "secret" not in said and "Traceback" not in said
    assert SHOWN_URI in done.stderr and "cannot reach" in done.stderr


def test_a_service_without_its_tracking_store_starts_not_ready_and_leaks_nothing(tmp_path):
    """`bentoml serve` (as in a container) while the store is down: up, not ready, saying why without the password."""
    port, log = free_port(), tmp_path / "serve.log"
    cmd = [str(TIERWISE.with_name("bentoml")), "serve", "serving.service:TierwiseService", "--host", "127.0.0.1"]
    env = serve_env(SECRET_URI, tmp_path / "latest_scores.parquet", TIERWISE_RELOAD_SECONDS="1", **NO_RETRIES)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], cwd=Path(__file__).resolve().parent.parent, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is None and up(f"{url}/livez"), seconds=120, what="the service to come up")
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 503
        auth = {"Authorization": f"Bearer {KEYS[0]}"}
        info = httpx.post(f"{url}/model_info", json={}, headers=auth, timeout=30)
        assert info.status_code == 200 and info.json()["model_versions"] == {"churn": None, "growth": None}
        error = info.json()["reload"]["models"]["error"]
        assert SHOWN_URI in error and "cannot reach" in error
        scored = httpx.post(f"{url}/score", json={"rows": [{"account_id": "A1"}]}, headers=auth, timeout=30)
        assert scored.status_code == 503 and "no models loaded yet" in scored.json()["error"]
        lookup = httpx.post(f"{url}/lookup", json={"account_ids": ["A1"]}, headers=auth, timeout=30)
        assert lookup.status_code == 503 and "no scores yet" in lookup.json()["error"]
        time.sleep(2)  # a poll or two retried the store meanwhile
        for resp in (info, scored, lookup):
            assert "secret" not in resp.text and str(tmp_path) not in resp.text
            assert_no_traceback(resp)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    text = log.read_text()
    assert SHOWN_URI in text and "secret" not in text and "Traceback" not in text


def up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_without_a_champion_refuses_to_start(tmp_path):
    env = serve_env(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "none.parquet")
    done = run_cli("serve", "--port", str(free_port()), env=env)
    assert done.returncode == 2 and "tierwise train" in done.stderr and "Traceback" not in done.stderr
