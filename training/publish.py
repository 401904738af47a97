"""Everything a training run leaves in MLflow for one model: metrics, plots, card, model, registry alias.

Shared by the event-based pipeline and table mode, so both are logged, registered and judged
by the same rule.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from features.bundle import ModelBundle
from training import registry, report
from training.backtest import Backtest

SHIPPED_METRICS = ("ece", "brier", "roc_auc", "rows", "positives")


@dataclass
class Fitted:
    """A final model with its backtest and the rows it was judged on."""

    bundle: ModelBundle
    backtest: Backtest
    X: pd.DataFrame  # final training matrix (SHAP summary)
    frame: pd.DataFrame  # feature rows with keys, to score the champion on the same rows
    holdout: pd.DataFrame | None = None  # as_of, y, p of the shipped recipe on its untouched period (event data)


@dataclass
class Published:
    """What the registry now says about one model."""

    registered_name: str
    version: str
    alias: str
    reason: str
    metrics: dict[str, float]
    table: pd.DataFrame  # per-fold and overall metrics, model and baselines side by side


def publish(fitted: Fitted, key: str, artifact_path: str, seed: int) -> Published:
    """Log metrics, plots, model card and the model in the active run; register it and set its alias.

    Args:
        key: the `registry.REGISTERED` key ("churn", "growth", "churn-table"); also the metric prefix.
        artifact_path: where the model goes in the run ("churn_model", "growth_model").
    """
    bundle, bt = fitted.bundle, fitted.backtest
    prefix = key.replace("-", "_")
    metrics = registry.metric_items(prefix, bt.overall)
    for i, by_model in bt.fold_metrics.items():
        metrics |= registry.metric_items(f"{prefix}_fold{i}", by_model)
    held = bundle.info.get("shipped_calibration")
    if held:  # the shipped model's calibration, measured on a period the recipe never touched
        metrics |= {f"{prefix}_shipped_{k}": float(held[k]) for k in SHIPPED_METRICS}
        mlflow.log_dict(held, f"{prefix}_report/shipped_calibration.json")
    mlflow.log_metrics(metrics)
    table = report.metrics_frame(bt.fold_metrics, bt.overall)
    name = registry.REGISTERED[key]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table.to_csv(tmp / "metrics_by_fold.csv", index=False)
        report.calibration_plot(bt.predictions, bundle.target, tmp / "calibration.png")
        if fitted.holdout is not None:
            report.calibration_plot(
                fitted.holdout, bundle.target, tmp / "shipped_calibration.png", "shipped recipe on an untouched period"
            )
        report.lift_plot(bt.predictions, bundle.target, tmp / "lift.png")
        report.shap_plot(bundle, fitted.X, tmp / "shap_summary.png", seed)
        for path in tmp.iterdir():
            mlflow.log_artifact(str(path), artifact_path=f"{prefix}_report")
        version = registry.log_bundle(bundle, artifact_path, name, tmp / "bundle", fitted.frame.head(200))

    def judge(previous: tuple[str, ModelBundle] | None) -> tuple[str, str]:
        if previous is None:
            return registry.CHAMPION, f"first version of {name}"
        comparison = registry.compare(previous[1], bundle.info, bt.overall["lightgbm"], bt.predictions, fitted.frame)
        alias, reason = registry.verdict(comparison)
        return alias, f"{reason} (champion was version {previous[0]})"

    alias, reason = registry.settle(name, version, judge)
    mlflow.set_tag(f"{prefix}_alias", f"{name} v{version} -> {alias}: {reason}")
    card = report.model_card(bundle.target, bundle.info, table, name, version, alias, reason)
    mlflow.log_text(card, f"{prefix}_report/model_card.md")
    return Published(name, version, alias, reason, metrics, table)
