"""MLflow experiments, logged models, the model registry and the champion rule.

The champion rule, stated once: a new version becomes `champion` when there is none yet, or
when it is at least as good as the current champion on ROC AUC *and* Brier score on the same
backtest. "Same backtest" means: when the champion was trained on the same data with the same
folds, its recorded backtest metrics are compared; otherwise the champion bundle is scored on
the new run's out-of-time rows whose label windows start after the champion's own training labels
ended (as-of at least the champion's last training snapshot plus its label window), and compared
there with the new run's out-of-time predictions. Fewer than `MIN_GATE_POSITIVES` positive (or
negative) such rows cannot tell two versions apart: the champion stays and the new version becomes
`challenger`, the reason naming the count. A champion that cannot be scored on the new data
(table mode, features that no longer exist) is not comparable either: `challenger` again.

Trainings that run at once against one registry (a team's tracking server) decide in version
order. MLflow has no compare-and-set for aliases: two trainings that both read champion v1 and
both beat it would each move `champion`, and the first one's version would lose its alias without
ever being compared with the second. So a version is registered tagged `tierwise.status=pending`
(in the same call that creates it), and before reading the champion a training waits until no
lower version of the model is still pending; after setting the alias it records the outcome in
the same tag. Version numbers are handed out by the registry's database one at a time, so the
outcome is what the trainings would have decided one after another in version order. A version
left pending for `settings.promotion_wait_seconds()` (its training died between registering and
deciding) is marked `abandoned` and no longer waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.bundle import BundlePyfunc, ModelBundle, registry_missing
from features.tables import DataError
from tierwise import settings
from training.evaluation import evaluate

CHAMPION, CHALLENGER = "champion", "challenger"
STATUS = "tierwise.status"  # model-version tag: pending until its alias is decided, then the alias it got
PENDING, UNDECIDED, ABANDONED = "pending", "undecided", "abandoned"
TURN_POLL_SECONDS = 0.5
REGISTERED = {"churn": "tierwise-churn", "growth": "tierwise-growth", "churn-table": "tierwise-churn-table"}
COMPARED = ("roc_auc", "brier")
OUTCOME = ("horizon_days", "churn_grace_days", "growth_min_increase")  # what a model predicts
EPS = 1e-9
# Below 30 positives the standard error of a ROC AUC is about 0.05 (Hanley & McNeil), larger than the
# difference between two sensible versions, so such a comparison would decide by noise.
MIN_GATE_POSITIVES = 30


@dataclass
class Comparison:
    """Metrics of the new version and the champion on the same rows (or the same recorded backtest)."""

    new: dict[str, float]
    champion: dict[str, float]
    basis: str  # how "the same backtest" was established, in words
    rows: int = 0  # out-of-time rows both were scored on (0: recorded metrics of the same backtest)
    positives: int = 0  # positive outcomes among them
    enough: bool = True  # False: too few rows to judge (`MIN_GATE_POSITIVES`); metrics are empty then


def use_experiment(name: str) -> str:
    """Point MLflow at the configured store and return the experiment id, creating it if needed."""
    uri = settings.tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        found = mlflow.get_experiment_by_name(name)
    except Exception as exc:  # the first call to the store: a wrong address or login fails here, before any work
        raise unreachable(exc) from exc
    if found is not None:
        return found.experiment_id
    local = urlparse(uri).scheme in ("sqlite", "", "file")
    try:
        return mlflow.create_experiment(name, artifact_location=settings.artifact_root() if local else None)
    except MlflowException:  # another training created it since we looked (a shared tracking server)
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def unreachable(exc: Exception) -> DataError:
    """A failed call to the tracking store as a one-line user error, its credentials redacted."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DataError(
        f"cannot reach the MLflow tracking store {settings.tracking_store()}: {settings.redact_uri(first)}"
    )


def log_bundle(
    bundle: ModelBundle, artifact_path: str, registered_name: str, folder: Path, sample: pd.DataFrame
) -> str:
    """Log a bundle as a pyfunc model in the active run, register it `pending`, and return the new version.

    No signature and no input example: MLflow's schema enforcement refuses integer columns for
    float features and a JSON round trip loses pandas categories, while the bundle itself checks
    the columns (parity) and converts types. `sample` is scored once to prove the bundle works.
    """
    bundle.save(folder)
    bundle.predict(sample)
    info = mlflow.pyfunc.log_model(
        name=artifact_path,
        python_model=BundlePyfunc(),
        artifacts={"bundle": str(folder)},
        pip_requirements=[f"lightgbm=={lgb.__version__}", f"pandas=={pd.__version__}", f"mlflow=={mlflow.__version__}"],
    )
    return str(mlflow.register_model(info.model_uri, registered_name, tags={STATUS: PENDING}).version)


def settle(
    registered_name: str, version: str, judge: Callable[[tuple[str, ModelBundle] | None], tuple[str, str]]
) -> tuple[str, str]:
    """Decide a new version's alias against the champion in place once every lower version is decided.

    Args:
        judge: (version, bundle) of the current champion, or None -> (alias, reason).

    Returns:
        (alias, reason) as set; the version's `tierwise.status` tag records the alias too.
    """
    client = MlflowClient()
    try:
        wait_for_turn(registered_name, int(version))
        alias, reason = judge(champion(registered_name))
        assign_alias(registered_name, version, alias)
    except BaseException:  # a training that fails here must not keep later ones waiting
        client.set_model_version_tag(registered_name, version, STATUS, UNDECIDED)
        raise
    client.set_model_version_tag(registered_name, version, STATUS, alias)
    return alias, reason


def wait_for_turn(registered_name: str, version: int | None = None) -> None:
    """Return once no version below `version` (any version when None) is pending a decision.

    Versions still pending after `settings.promotion_wait_seconds()` of waiting are marked `abandoned`.
    """
    client = MlflowClient()
    deadline = time.monotonic() + settings.promotion_wait_seconds()
    while True:
        waiting = [
            v.version
            for v in client.search_model_versions(f"name = '{registered_name}'")
            if v.tags.get(STATUS) == PENDING and (version is None or int(v.version) < version)
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            for stuck in waiting:
                client.set_model_version_tag(registered_name, stuck, STATUS, ABANDONED)
            return
        time.sleep(TURN_POLL_SECONDS)


def champion(registered_name: str) -> tuple[str, ModelBundle] | None:
    """(version, bundle) of the current champion, or None when there is none."""
    mlflow.set_tracking_uri(settings.tracking_uri())
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(registered_name, CHAMPION).version
    except MlflowException as exc:
        if registry_missing(exc):
            return None
        raise unreachable(exc) from exc
    return str(version), load_bundle(registered_name, str(version))


def load_bundle(registered_name: str, version: str) -> ModelBundle:
    """The bundle inside a registered model version (read directly, not through pyfunc)."""
    mlflow.set_tracking_uri(settings.tracking_uri())
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{registered_name}/{version}"))
    return ModelBundle.load(next(local.rglob("bundle.json")).parent)


def compare(
    champ: ModelBundle, info: dict, overall: dict[str, float], oot: pd.DataFrame, frame: pd.DataFrame
) -> Comparison | None:
    """The new version against the champion on the same backtest, or None when there is no common ground.

    A champion that predicts another outcome (another horizon or label rules) has no common ground:
    judged on the new labels it would lose for answering a different question.

    Args:
        champ: the current champion's bundle.
        info: the new bundle's info (`backtest_id` identifies data + folds + horizon + label rules).
        overall: the new run's pooled backtest metrics.
        oot: the new run's out-of-time predictions (account_id, as_of, y, arr, p).
        frame: the feature rows behind `oot` (same account_id/as_of keys).
    """
    if any(champ.info.get(key) != info.get(key) for key in OUTCOME):
        return None
    if champ.info.get("backtest_id") == info["backtest_id"]:
        return Comparison(overall, champ.info["backtest"]["lightgbm"], "recorded metrics of the same backtest")
    if not champ.info.get("train_last_as_of"):  # a table-mode champion: its rows carry no time
        return None
    labels_end = labels_ended(champ.info)
    unseen = oot[oot["as_of"] >= labels_end]
    positives = int(unseen["y"].sum())
    basis = (
        f"{len(unseen):,} out-of-time rows ({positives:,} positive) whose label windows start after the "
        f"champion's training labels ended ({labels_end.date()})"
    )
    if min(positives, len(unseen) - positives) < MIN_GATE_POSITIVES:
        return Comparison({}, {}, basis, len(unseen), positives, enough=False)
    rows = unseen[["account_id", "as_of"]].merge(frame, on=["account_id", "as_of"], how="left")
    try:
        p_champ = champ.predict(rows)
    except DataError:
        return None
    args = (unseen["y"].to_numpy(), unseen["arr"].to_numpy(), unseen["as_of"].to_numpy())
    return Comparison(
        evaluate(args[0], unseen["p"].to_numpy(), *args[1:]),
        evaluate(args[0], p_champ, *args[1:]),
        basis,
        len(unseen),
        positives,
    )


def labels_ended(info: dict) -> pd.Timestamp:
    """The day a model's training labels ended: its last training snapshot plus its label window.

    The window is the horizon plus the churn grace period (0 for models trained before it existed).
    """
    window = int(info["horizon_days"]) + int(info.get("churn_grace_days", 0))
    return pd.Timestamp(info["train_last_as_of"]) + pd.Timedelta(days=window)


def verdict(comparison: Comparison | None) -> tuple[str, str]:
    """(alias, reason) for a new version given its comparison with the champion."""
    if comparison is None:
        return CHALLENGER, (
            "no common ground with the champion (another horizon or label rules, or no out-of-time rows "
            "both versions can be judged on); promote by hand if wanted"
        )
    if not comparison.enough:
        return CHALLENGER, (
            f"too few rows to judge against the champion, which stays: {comparison.basis}; at least "
            f"{MIN_GATE_POSITIVES} positive and {MIN_GATE_POSITIVES} negative are needed; promote by hand if wanted"
        )
    new, old = comparison.new, comparison.champion
    as_good = new["roc_auc"] >= old["roc_auc"] - EPS and new["brier"] <= old["brier"] + EPS
    words = ", ".join(f"{m} {new[m]:.4f} vs champion {old[m]:.4f}" for m in COMPARED)
    if as_good:
        return CHAMPION, f"at least as good as the champion on {comparison.basis}: {words}"
    return CHALLENGER, f"worse than the champion on {comparison.basis}: {words}"


def assign_alias(registered_name: str, version: str, alias: str) -> None:
    """Point an alias at a version."""
    MlflowClient().set_registered_model_alias(registered_name, alias, version)


def promote(target: str, version: str) -> str:
    """Move `champion` to a version by hand; returns the registered model name.

    Raises:
        DataError: unknown target or version.
    """
    if target not in REGISTERED:
        raise DataError(f"--target: {target!r} is not one of {', '.join(REGISTERED)}")
    name = REGISTERED[target]
    mlflow.set_tracking_uri(settings.tracking_uri())
    try:
        MlflowClient().get_model_version(name, str(version))
    except Exception as exc:
        if not registry_missing(exc, version):
            raise unreachable(exc) from exc
        raise DataError(f"{name} has no version {version!r} in {settings.tracking_store()}") from exc
    wait_for_turn(name)  # a training deciding now would otherwise move the alias right back
    assign_alias(name, str(version), CHAMPION)
    return name


def metric_items(prefix: str, metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flat MLflow metric keys: `{prefix}_{metric}` for the model, `{prefix}_{baseline}_{metric}` for baselines."""
    out = {}
    for model_name, values in metrics.items():
        head = prefix if model_name == "lightgbm" else f"{prefix}_{model_name}"
        out |= {f"{head}_{k}": float(v) for k, v in values.items() if np.isfinite(v)}
    return out
