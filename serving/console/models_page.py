"""The Models page: the champion and challenger of each model, read from the MLflow registry.

For each version: its run's backtest metrics (the model against its baselines), the data window
it was trained on, when, its calibration plot (the run's own PNG, served through the console)
and links into the MLflow UI (`TIERWISE_MLFLOW_UI`, default the `tierwise ui` address). The
registry is asked at most once a minute: a CSM reloading the page must not load the tracking store.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from serving import registry
from serving.redact import public_text
from tierwise import settings

ALIASES = ("champion", "challenger")
TARGETS = {"churn": registry.CHURN, "growth": registry.GROWTH}
METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "arr_recall_top_k")
PLOTS = ("shipped_calibration.png", "calibration.png")  # the untouched-period plot first, the backtest's if absent
WINDOW = ("data_start", "data_end", "train_first_as_of", "train_last_as_of", "horizon_days", "snapshot_cadence")
CACHE_SECONDS = 60.0
UI_ENV = "TIERWISE_MLFLOW_UI"


def mlflow_ui() -> str:
    """Where the MLflow UI is (`TIERWISE_MLFLOW_UI`; default `tierwise ui`'s address)."""
    return os.environ.get(UI_ENV, "http://127.0.0.1:5000").rstrip("/")


@dataclass(frozen=True)
class ModelCard:
    """One registered version with an alias, as the page shows it."""

    target: str
    name: str
    alias: str
    version: str
    run_id: str
    experiment_id: str
    trained_at: str
    metrics: dict[str, dict[str, float]]  # metric -> {"model": v, baseline: v, ...}
    window: dict[str, str]
    plot: str | None  # the run's calibration plot artifact, when logged

    @property
    def run_url(self) -> str:
        return f"{mlflow_ui()}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    @property
    def model_url(self) -> str:
        return f"{mlflow_ui()}/#/models/{self.name}/versions/{self.version}"


class ModelCards:
    """The cards of every champion and challenger, re-read from the registry at most every `CACHE_SECONDS`."""

    def __init__(self) -> None:
        self.cards: list[ModelCard] = []
        self.problem: str | None = None
        self.read_at = -CACHE_SECONDS
        self.plots: dict[tuple[str, str], bytes] = {}
        self.lock = threading.Lock()

    def current(self) -> tuple[list[ModelCard], str | None]:
        """(cards, why the registry could not be read or None)."""
        with self.lock:
            if time.monotonic() - self.read_at >= CACHE_SECONDS:
                self.read_at = time.monotonic()
                try:
                    self.cards, self.problem = read_cards(), None
                except Exception as exc:  # an unreachable store shows as a line on the page, never a 500
                    self.problem = f"cannot read the model registry: {public_text(exc)}"
            return self.cards, self.problem

    def plot(self, name: str, version: str) -> bytes | None:
        """The calibration plot of a champion or challenger (PNG bytes), downloaded once."""
        cards, _ = self.current()
        card = next((c for c in cards if c.name == name and c.version == version and c.plot), None)
        if card is None:
            return None
        key = (name, version)
        if key not in self.plots:
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory() as tmp:
                path = mlflow.artifacts.download_artifacts(run_id=card.run_id, artifact_path=card.plot, dst_path=tmp)
                self.plots[key] = Path(path).read_bytes()
        return self.plots[key]


def read_cards() -> list[ModelCard]:
    """Every champion and challenger of the churn and growth models."""
    uri = settings.tracking_uri()
    db = settings.sqlite_path(uri)
    if db is not None and not db.exists():
        return []  # nothing trained yet; reading must not create an empty store as a side effect
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    cards = []
    for target, name in TARGETS.items():
        for alias in ALIASES:
            try:
                version = client.get_model_version_by_alias(name, alias)
            except MlflowException:
                continue  # no such alias (no challenger is the usual case)
            cards.append(card_of(client, target, name, alias, version))
    return cards


def card_of(client: MlflowClient, target: str, name: str, alias: str, version) -> ModelCard:
    """One version's card from its run's metrics, parameters and artifacts."""
    run = client.get_run(version.run_id)
    metrics, params = run.data.metrics, run.data.params
    table: dict[str, dict[str, float]] = {}
    prefix = f"{target}_"
    for key, value in metrics.items():
        if not key.startswith(prefix) or "_fold" in key or "_shipped_" in key:
            continue
        rest = key.removeprefix(prefix)
        for metric in METRICS:
            if rest == metric:
                table.setdefault(metric, {})["model"] = value
            elif rest.endswith("_" + metric):
                table.setdefault(metric, {})[rest.removesuffix("_" + metric)] = value
    listed = {f.path for f in client.list_artifacts(version.run_id, f"{target}_report")}
    plot = next((f"{target}_report/{p}" for p in PLOTS if f"{target}_report/{p}" in listed), None)
    started = datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(timespec="minutes")
    return ModelCard(
        target=target,
        name=name,
        alias=alias,
        version=str(version.version),
        run_id=version.run_id,
        experiment_id=run.info.experiment_id,
        trained_at=started,
        metrics={m: table[m] for m in METRICS if m in table},
        window={k: params[k] for k in WINDOW if k in params},
        plot=plot,
    )
