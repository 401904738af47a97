"""A team's MLflow: every tierwise step against a real `mlflow server` on PostgreSQL with its own artifact store.

One server per module (a real PostgreSQL from the `postgres` fixture, artifacts in a temp folder the
server serves), the way a data team of five shares one registry. Two `tierwise train` processes
start at once against the empty server; then the champions are promoted by hand, the book is scored,
`tierwise serve` answers from them, and a promotion reaches the running service through `/reload`.
Credentials come through the environment (a tracking password; the database password in the
server's URL) and must never appear in what tierwise prints, logs, records with a run or answers.

The server has no authentication of its own here (MLflow's `basic-auth` app needs Flask-WTF, which
our environment lacks), so the tracking password is one tierwise is handed and must keep to itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.postgres import PASSWORD as DB_PASSWORD
from tests.postgres import free_port
from tests.test_service import KEYS, TIERWISE, posted_rows, serve_env, stop, tierwise_serve

pytestmark = pytest.mark.slow

TRACKING_USER, TRACKING_PASSWORD = "alice", "team-secret-5d1f"
MODELS = ("tierwise-churn", "tierwise-growth")
SECRETS = (DB_PASSWORD, TRACKING_PASSWORD)
WORLD_ACCOUNTS = 150


@dataclass
class Team:
    """A running team tracking server and the environment tierwise runs in against it."""

    uri: str  # what MLFLOW_TRACKING_URI says: the server, no credentials in it
    root: Path  # the working folder of every tierwise command (its `mlruns/` holds only the scores store)
    env: dict[str, str]
    outputs: list[str]  # everything tierwise printed, to search for secrets at the end

    def tierwise(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(TIERWISE), *args], cwd=self.root, env=self.env | env, capture_output=True, text=True, timeout=600
        )
        self.outputs += [done.stdout, done.stderr]
        if check:
            assert done.returncode == 0, done.stderr[-3000:]
        return done

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


def start_mlflow(db_url: str, artifacts: Path, log: Path) -> tuple[str, subprocess.Popen]:
    """`mlflow server` on a free loopback port over PostgreSQL, serving artifacts from its own folder."""
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", db_url]
    cmd += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # The job runner (three huey consumers for MLflow's GenAI jobs) is not needed by tierwise and would
    # triple the server's start-up imports on a 2-core machine.
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"mlflow server not up after 240 s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def team(postgres, tmp_path_factory) -> Team:
    """A tracking server on a fresh PostgreSQL database (plain `postgresql://`: SQLAlchemy 2.1 picks psycopg 3)."""
    root = tmp_path_factory.mktemp("team")
    postgres.create_database("team_mlflow")
    url, proc = start_mlflow(postgres.url("team_mlflow", driver="postgresql"), root / "artifacts", root / "mlflow.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIERWISE_"))}
    env |= {
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": TRACKING_USER,
        "MLFLOW_TRACKING_PASSWORD": TRACKING_PASSWORD,
        "BENTOML_DO_NOT_TRACK": "true",
    }
    (root / "work").mkdir()
    try:
        yield Team(url, root / "work", env, [])
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A tiny demo world of our own: the registry's flow, not model quality, is under test."""
    from features.demo_world import write_demo_world

    out = tmp_path_factory.mktemp("team_world")
    write_demo_world(out, n_accounts=WORLD_ACCOUNTS, seed=11)
    return out


@pytest.fixture(scope="module")
def raced(team, world) -> dict[str, dict[str, str]]:
    """Two `tierwise train` at once on the empty server (different seeds); returns each run's alias tags."""
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda seed: team.tierwise("train", "--data", str(world), "--seed", str(seed)), (1, 2)))
    ids = [line.split()[2].rstrip(":") for run in runs for line in run.stderr.splitlines() if "MLflow run" in line]
    assert len(ids) == 2, [run.stderr[-2000:] for run in runs]
    return {run_id: team.client().get_run(run_id).data.tags for run_id in ids}


def test_two_trainings_at_once_log_both_runs_and_keep_one_champion(team, raced):
    client = team.client()
    runs = client.search_runs([client.get_experiment_by_name("tierwise").experiment_id])
    assert {r.info.run_id for r in runs} == set(raced) and {r.info.status for r in runs} == {"FINISHED"}
    for name, prefix in zip(MODELS, ("churn", "growth"), strict=True):
        versions = {v.version: v for v in client.search_model_versions(f"name = '{name}'")}
        assert sorted(versions) == ["1", "2"]
        assert {v.status for v in versions.values()} == {"READY"}
        assert {v.run_id for v in versions.values()} == set(raced)  # one version from each run
        decided = {v.version: v.tags["tierwise.status"] for v in versions.values()}
        said = {tags[f"{prefix}_alias"].split()[1]: tags[f"{prefix}_alias"] for tags in raced.values()}
        # version order decides: v1 was the first, v2 was judged against v1 (not both "first")
        assert "first version" in said["v1"] and decided["1"] == "champion", said
        assert "(champion was version 1)" in said["v2"], said
        champion = client.get_model_version_by_alias(name, "champion").version
        assert champion == ("2" if decided["2"] == "champion" else "1")
        assert f"-> {decided['2']}:" in said["v2"]
        if decided["2"] == "challenger":
            assert client.get_model_version_by_alias(name, "challenger").version == "2"


def test_promote_score_serve_and_reload_against_the_server(team, raced, world, monkeypatch):
    from features.build import build_features
    from features.tables import load_tables
    from tierwise import settings

    client = team.client()
    champions = {name: client.get_model_version_by_alias(name, "champion").version for name in MODELS}
    other = {name: "1" if v == "2" else "2" for name, v in champions.items()}
    team.tierwise("promote", "--target", "churn", "--version", other["tierwise-churn"])
    assert client.get_model_version_by_alias("tierwise-churn", "champion").version == other["tierwise-churn"]

    for key in [k for k in os.environ if k.startswith(("MLFLOW_", "TIERWISE_"))]:
        monkeypatch.delenv(key)  # e.g. the session's trained store, set by conftest for this process
    for key, value in team.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(team.root)
    store = settings.scores_store()  # derived from the server's URI: a folder of its own under ./mlruns/scores/
    assert store.is_relative_to(team.root / "mlruns" / "scores") and not store.exists()
    tables = load_tables(world)
    as_of = str(tables.data_end.date())
    scored = team.tierwise("score", "--data", str(world), "--as-of", as_of, "--out", "scores.parquet")
    assert store.exists(), scored.stderr
    published = pd.read_parquet(store)
    assert set(published["churn_model_version"].astype(str)) == {other["tierwise-churn"]}
    assert set(published["growth_model_version"].astype(str)) == {champions["tierwise-growth"]}

    env = serve_env(team.uri, store) | {k: v for k, v in team.env.items() if k.startswith("MLFLOW_TRACKING_")}
    log = team.root / "serve.log"
    with tierwise_serve(env, log) as (url, _):
        auth = {"Authorization": f"Bearer {KEYS[0]}"}
        info = httpx.post(f"{url}/model_info", json={}, headers=auth, timeout=30).json()
        assert info["model_versions"] == {"churn": other["tierwise-churn"], "growth": champions["tierwise-growth"]}
        account = published["account_id"].iloc[0]
        lookup = httpx.post(f"{url}/lookup", json={"account_ids": [account]}, headers=auth, timeout=30).json()
        assert lookup["as_of"] == as_of and lookup["results"][0]["account_id"] == account

        team.tierwise("promote", "--target", "growth", "--version", other["tierwise-growth"])
        reloaded = httpx.post(f"{url}/reload", json={}, headers=auth, timeout=60).json()
        assert reloaded["reload"]["models"]["ok"] is True, reloaded
        assert reloaded["model_versions"] == {"churn": other["tierwise-churn"], "growth": other["tierwise-growth"]}
        rows = posted_rows(build_features(tables, [tables.data_end]).frame, 2)
        answer = httpx.post(f"{url}/score", json={"rows": rows}, headers=auth, timeout=60).json()
        assert answer["model_versions"] == reloaded["model_versions"]
        assert [s["growth_model_version"] for s in answer["scores"]] == [other["tierwise-growth"]] * 2
    team.outputs.append(log.read_text())
    for text in (info, lookup, reloaded, answer):
        assert not any(secret in str(text) for secret in SECRETS)


def test_an_unreachable_server_is_one_line_without_the_password(monkeypatch):
    """A password inside the URI itself (against the advice) is redacted from the error, which reads as an outage,
    not as "no such version" (the CLI prints a DataError as one `error:` line with exit 2)."""
    import mlflow

    from features.errors import DataError
    from training.registry import promote

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://{TRACKING_USER}:{TRACKING_PASSWORD}@127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    before = mlflow.get_tracking_uri()
    try:
        with pytest.raises(DataError) as failed:
            promote("churn", "1")
    finally:
        mlflow.set_tracking_uri(before)
    said = str(failed.value)
    assert said.startswith("cannot reach the MLflow tracking store") and "\n" not in said, said
    assert f"{TRACKING_USER}:***@127.0.0.1" in said and TRACKING_PASSWORD not in said


def test_a_version_waits_for_lower_pending_ones_and_a_dead_one_is_abandoned(team, raced, monkeypatch):
    """The promotion rule itself: a pending lower version holds a later one back until it is decided,
    and one pending past `TIERWISE_PROMOTION_WAIT_SECONDS` (its training died) is marked abandoned."""
    import mlflow

    from training.registry import ABANDONED, PENDING, STATUS, wait_for_turn

    client, name = team.client(), "tierwise-turns"
    source = client.get_model_version("tierwise-churn", "1").source  # models:/m-...: a logged model
    model_id = source.removeprefix("models:/")  # the server wants it named (ModelVersion.model_id comes back None)
    client.create_registered_model(name)
    low, dead, high = (
        client.create_model_version(name, source, tags={STATUS: PENDING}, model_id=model_id).version for _ in range(3)
    )
    client.set_model_version_tag(name, low, STATUS, "challenger")  # decided: no longer holds anyone back
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.uri)
    monkeypatch.setenv("TIERWISE_PROMOTION_WAIT_SECONDS", "2")
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(team.uri)
    try:
        wait_for_turn(name, int(low))  # nothing below the first version: at once
        started = time.monotonic()
        wait_for_turn(name, int(high))
        waited = time.monotonic() - started
    finally:
        mlflow.set_tracking_uri(before)
    assert waited >= 2  # it did wait for the pending version below it
    tags = {v.version: v.tags[STATUS] for v in client.search_model_versions(f"name = '{name}'")}
    assert tags == {low: "challenger", dead: ABANDONED, high: PENDING}


def test_a_server_address_is_one_scores_store_whatever_its_password_or_trailing_slash(monkeypatch, tmp_path):
    from tierwise import settings

    for key in ("TIERWISE_SCORES_STORE", "TIERWISE_MLRUNS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:p@ss:w0rd@mlflow.example.com/")
    first = settings.scores_store()
    assert settings.tracking_store() == "https://alice:***@mlflow.example.com"
    assert first.is_relative_to(tmp_path.resolve() / "mlruns" / "scores") and "w0rd" not in str(first)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:rotated@mlflow.example.com")
    assert settings.scores_store() == first


def test_no_secret_in_output_logs_or_runs(team, raced):
    """Run last: every tierwise output and log above, and every param and tag of the runs, without a password."""
    client = team.client()
    recorded = [str(client.get_run(run_id).data.to_dictionary()) for run_id in raced]
    versions = [str(v) for name in MODELS for v in client.search_model_versions(f"name = '{name}'")]
    texts = team.outputs + recorded + versions
    assert len(team.outputs) >= 8  # two trainings, two promotions, the score, the service log
    for secret in SECRETS:
        assert not any(secret in text for text in texts)
