"""What a data scientist reads after a run: plots, the model card, the summary table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.table import Table  # noqa: E402

from features.bundle import ModelBundle  # noqa: E402
from training.backtest import LIFT, LIFT_METRICS  # noqa: E402
from training.baselines import PLAIN_COUNTS, PLAIN_FEATURES  # noqa: E402
from training.evaluation import METRICS, calibration_table  # noqa: E402
from training.shipped import measured_sentence  # noqa: E402

SHAP_ROWS = 2000
MODEL_NAMES = {
    "lightgbm": "LightGBM",
    "health": "health score",
    "logreg": "logistic regression",
    "plain_gbm": "plain GBM",
}


def calibration_plot(
    predictions: pd.DataFrame, target: str, path: Path, title: str = "calibration (out of time)"
) -> Path:
    """Reliability curve of the out-of-time predictions, model and baselines."""
    fig, ax = plt.subplots(figsize=(5, 5))
    top = float(predictions["p"].max())
    for name in MODEL_NAMES:
        if name in predictions or name == "lightgbm":
            pred, obs = calibration_table(
                predictions["y"].to_numpy(), predictions["p" if name == "lightgbm" else name].to_numpy()
            )
            ax.plot(pred, obs, marker="o", label=MODEL_NAMES[name])
            top = max(top, pred.max(), obs.max())
    ax.plot([0, top], [0, top], "k--", lw=1, label="perfect")
    ax.set(xlabel=f"predicted {target} probability", ylabel="observed rate", title=f"{target}: {title}")
    ax.legend()
    return save(fig, path)


def lift_plot(predictions: pd.DataFrame, target: str, path: Path) -> Path:
    """Cumulative share of positives caught against share of accounts contacted, highest score first."""
    fig, ax = plt.subplots(figsize=(5, 5))
    y = predictions["y"].to_numpy()
    for name in MODEL_NAMES:
        col = "p" if name == "lightgbm" else name
        if col in predictions:
            order = np.argsort(-predictions[col].to_numpy(), kind="stable")
            caught = np.cumsum(y[order]) / max(1, y.sum())
            ax.plot(np.arange(1, len(y) + 1) / len(y), caught, label=MODEL_NAMES[name])
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="random")
    ax.set(
        xlabel="share of accounts, highest score first",
        ylabel=f"share of {target} caught",
        title=f"{target}: cumulative gain (out of time)",
    )
    ax.legend()
    return save(fig, path)


def shap_plot(bundle: ModelBundle, X: pd.DataFrame, path: Path, seed: int) -> Path:
    """SHAP summary (beeswarm) of the final model from LightGBM's exact `pred_contrib`."""
    import shap

    sample = X.sample(min(SHAP_ROWS, len(X)), random_state=seed)
    contrib = bundle.booster.predict(sample, pred_contrib=True)[:, :-1]
    shown = sample.apply(lambda c: c.cat.codes.where(c.notna()) if isinstance(c.dtype, pd.CategoricalDtype) else c)
    plt.figure()
    shap.summary_plot(contrib, shown.astype(float), max_display=15, show=False)
    plt.title(f"{bundle.target}: SHAP summary (log-odds)")
    return save(plt.gcf(), path)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def metrics_frame(fold_metrics: dict, overall: dict) -> pd.DataFrame:
    """One row per (scope, model): the per-fold and pooled metrics side by side."""
    rows = [
        {"scope": f"fold {i}", "model": MODEL_NAMES[m], **values}
        for i, by_model in fold_metrics.items()
        for m, values in by_model.items()
    ]
    rows += [{"scope": "overall", "model": MODEL_NAMES[m], **values} for m, values in overall.items()]
    return pd.DataFrame(rows, columns=["scope", "model", *METRICS])


def summary_table(target: str, frame: pd.DataFrame, version: str, alias: str, reason: str) -> Table:
    """The rich table printed at the end of `tierwise train` for one target."""
    table = Table(title=f"{target}: version {version} -> {alias} ({reason})", title_justify="left")
    for col in frame.columns:
        table.add_column(col.replace("_", " "), justify="left" if col in ("scope", "model") else "right")
    for row in frame.itertuples(index=False):
        style = "bold" if row.scope == "overall" else None
        table.add_row(*[v if isinstance(v, str) else f"{v:.3f}" for v in row], style=style)
    return table


def plain_baseline_warnings(target: str, overall: dict[str, dict[str, float]]) -> list[str]:
    """Lines for `tierwise train`: where the model fails to beat the plain gradient-boosting baseline, or none ran."""
    if "plain_gbm" not in overall:
        return [f"{target}: no plain gradient-boosting baseline: {PLAIN_ABSENT}"]
    ours, plain = overall["lightgbm"], overall["plain_gbm"]
    lost = [m for m in LIFT_METRICS if not ours[f"{LIFT}_{m}"] > 0]
    if not lost:
        return []
    figures = ", ".join(f"{m.replace('_', ' ').upper()} {ours[m]:.3f} vs {plain[m]:.3f}" for m in lost)
    return [
        f"{target}: the model does not beat the plain gradient-boosting baseline on obvious features "
        f"(out of time, {figures}); its engineered features and tuning add nothing there: check them before trusting it"
    ]


PLAIN_ABSENT = (
    f"the data has none of its obvious columns ({', '.join(PLAIN_FEATURES)}, "
    f"<event>{PLAIN_COUNTS[0]}, <event>{PLAIN_COUNTS[1]}); a flat table names its columns its own way"
)


def plain_baseline_note(overall: dict[str, dict[str, float]]) -> str:
    """The model card's sentence on the model's lift over the plain gradient-boosting baseline."""
    if "plain_gbm" not in overall:
        return f"No plain gradient-boosting baseline ran: {PLAIN_ABSENT}."
    lifts = ", ".join(f"{m.replace('_', ' ')} {overall['lightgbm'][f'{LIFT}_{m}']:+.4f}" for m in LIFT_METRICS)
    return (
        f"Lift over the plain gradient-boosting baseline (HistGradientBoosting, default settings, on "
        f"{', '.join(PLAIN_FEATURES)} and event counts over 30 and 90 days; ours minus plain): {lifts}."
    )


def model_card(
    target: str, info: dict, frame: pd.DataFrame, registered_name: str, version: str, alias: str, reason: str
) -> str:
    """Markdown model card: data window, metrics against baselines, intended use and limits."""
    overall = frame[frame["scope"] == "overall"].drop(columns="scope").set_index("model").round(4)
    folds = ", ".join(info["fold_origins"])
    folds = folds if info.get("mode") == "table" else f"rolling origin, fold origins {folds}"
    return f"""# {registered_name} version {version} ({alias})

{reason}.

## What it predicts
Probability that an account {outcome(target, info)} within the horizon
({info["horizon_days"]} days), {calibration_words(info)}

{data_section(info)}
## Backtest ({folds})
Event data: a rolling-origin backtest; each fold trains only on snapshots whose label window closed
before its origin and is scored on the following snapshots. Table mode: stratified cross-validation.
Baselines are fitted on the same folds. Pooled out-of-fold metrics:

{markdown_table(overall)}

{plain_baseline_note(info["backtest"])}

`arr_recall_top_k`: share of the ARR of positive accounts among the top K by p x ARR on each as-of date
(K = {info["capacity"] or "10% of accounts in force"}). Per-fold figures are in `metrics_by_fold.csv`.

## Intended use
Ranking and sizing accounts for Customer Success coverage (touch tiers, save and expansion plays),
with reasons from exact tree SHAP values. Not for pricing, credit or any decision about individuals.

## Limits
- Learns from the history given: new products, pricing or CS programmes shift behaviour; retrain monthly
  and watch the calibration plot.
- Accounts younger than 30 days are flagged `insufficient_history`; their scores rest on firmographics.
- Probabilities are calibrated on past outcomes; a large change in the base rate needs a retrain.
- Final model: {info["rounds"]} boosting rounds, parameters in the run.
"""


def calibration_words(info: dict) -> str:
    """How the probabilities were calibrated and, for event data, how well that held on an untouched period."""
    if "shipped_calibration" not in info:  # table mode: Platt on the cross-validation's out-of-fold margins
        return "calibrated with Platt scaling on out-of-fold predictions."
    return (
        f"calibrated with Platt scaling on the snapshots from {info['calibration_first_as_of']} on (fitted on a "
        f"booster that did not learn from them, then refitted on every snapshot). {measured_sentence(info)}"
    )


def outcome(target: str, info: dict) -> str:
    """What the label counts, in the words of the rules the model was trained with."""
    if "churn_grace_days" not in info:  # table mode: the table's own label
        return "churns" if target == "churn" else "grows (higher ARR)"
    if target == "churn":
        return f"churns (is not renewed; a renewal up to {info['churn_grace_days']} days late counts as renewed)"
    return f"grows (ARR up by at least {info['growth_min_increase']:.0%})"


def data_section(info: dict) -> str:
    """The model card's data paragraph, for event data or a flat table."""
    if info.get("mode") == "table":
        dropped = ", ".join(info["dropped_columns"]) or "none"
        return (
            f"## Data\n- input fingerprint: `{info['data_fingerprint']}`; flat table of {info['n_snapshots']:,} rows "
            f"({info['positives']:,} churned)\n- features: {info['n_features']}; dropped identifier-like or "
            f"empty columns: {dropped}\n"
        )
    return (
        f"## Data\n- input fingerprint: `{info['data_fingerprint']}`; events from {info['data_start']} to "
        f"{info['data_end']}\n- training snapshots: {info['n_snapshots']:,} {info['snapshot_cadence']} as-of rows from "
        f"{info['train_first_as_of']} to {info['train_last_as_of']} ({info['positives']:,} positive)\n"
        f"- features: {info['n_features']} (listed with descriptions in `features.json`)\n"
    )


def markdown_table(frame: pd.DataFrame) -> str:
    """A pandas frame as a GitHub markdown table (index included)."""
    head = [frame.index.name or "", *frame.columns]
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + " --- |" * len(head)]
    lines += [
        "| " + " | ".join([str(idx), *map(str, row)]) + " |" for idx, row in zip(frame.index, frame.values, strict=True)
    ]
    return "\n".join(lines)
