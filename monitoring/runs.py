"""What MLflow knows about a churn model version (its promise, its label rules, its training profile),
and where monitoring leaves its own figures: a run per version in the `tierwise-monitoring` experiment,
tagged with the version, plus tags on the registered version itself.

Only the registry and runs are read, never `training` code: the promise is the run's logged backtest
metrics (`churn_roc_auc`, ...), the label rules are its logged params.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.errors import DataError
from features.subscriptions import LabelRules
from serving.redact import public_text
from serving.registry import CHURN
from tierwise import settings

EXPERIMENT = "tierwise-monitoring"
PROFILE = "feature_profile.json"
# The backtest figures a version promised, by the name monitoring gives them: run metric keys.
PROMISED = {
    "roc_auc": "churn_roc_auc",
    "pr_auc": "churn_pr_auc",
    "brier": "churn_brier",
    "lift_top_decile": "churn_lift_top_decile",
    "arr_recall_touched": "coverage_policy_churned",
}


@dataclass
class VersionRecord:
    """One churn version's facts from its training run."""

    version: str
    run_id: str
    horizon_days: int
    rules: LabelRules
    promised: dict[str, float]
    data_end: str  # the end of the data it was trained on
    train_last_as_of: str  # its newest training snapshot: batches up to here had their outcomes in training


def version_record(version: str) -> VersionRecord | None:
    """The training facts of `tierwise-churn` version `version`, or None when the store does not hold it.

    Raises:
        DataError: the tracking store cannot be reached (a missing driver, a refused login, a host down).
    """
    uri = settings.tracking_uri()
    db = settings.sqlite_path(uri)
    if db is not None and not db.exists():
        return None  # no store: nothing to read, and monitoring must not create an empty one as a side effect
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    try:
        run = client.get_run(client.get_model_version(CHURN, str(version)).run_id)
    except MlflowException:
        return None
    except Exception as exc:
        raise DataError(
            f"cannot reach the MLflow tracking store {settings.tracking_store()}: {public_text(exc)}"
        ) from exc
    params, metrics = run.data.params, run.data.metrics
    return VersionRecord(
        version=str(version),
        run_id=run.info.run_id,
        horizon_days=int(params["horizon_days"]),
        rules=LabelRules(int(params["churn_grace_days"]), float(params["growth_min_increase"])),
        promised={name: float(metrics[key]) for name, key in PROMISED.items() if key in metrics},
        data_end=params.get("data_end", ""),
        train_last_as_of=params.get("train_last_as_of", ""),
    )


def training_profile(run_id: str) -> dict | None:
    """The feature profile training logged with the run, or None for a run made before profiles existed."""
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{PROFILE}")
    except (MlflowException, OSError, ValueError):
        return None


def log_version(version: str, metrics_by_step: list[dict[str, float]], summary: dict, status: str) -> str:
    """Log one version's monitoring figures as a run tagged with the version; tag the registered version.

    Args:
        metrics_by_step: one dict per judged batch, oldest first (the step is the batch's position).
        summary: the version's part of the JSON summary, kept with the run as `monitor.json`.
        status: "degraded" or "ok", also set as the registered version's `monitor_status` tag.

    Returns:
        The monitoring run's id.
    """
    uri = settings.tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        local = urlparse(uri).scheme in ("sqlite", "", "file")
        experiment_id = (
            experiment.experiment_id
            if experiment
            else mlflow.create_experiment(EXPERIMENT, artifact_location=settings.artifact_root() if local else None)
        )
        tags = {"tierwise.model": CHURN, "tierwise.model_version": version, "tierwise.monitor_status": status}
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor {CHURN} v{version}", tags=tags) as run:
            for step, values in enumerate(metrics_by_step):
                mlflow.log_metrics({k: v for k, v in values.items() if math.isfinite(v)}, step=step)
            mlflow.log_dict(summary, "monitor.json")
        client = MlflowClient()
        client.set_model_version_tag(CHURN, version, "monitor_status", status)
        client.set_model_version_tag(CHURN, version, "monitor_run", run.info.run_id)
    except MlflowException as exc:
        raise DataError(f"cannot log monitoring to {settings.tracking_store()}: {public_text(exc)}") from exc
    return run.info.run_id
