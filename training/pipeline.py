"""`tierwise train`: snapshots -> backtested, calibrated LightGBM models -> one MLflow run -> registry.

One public function, `train`. Stages: load and validate the tables; build labelled snapshots
(monthly, or weekly for a short history); per target (churn, growth) optionally tune inside the
first fold's training window, run the rolling-origin backtest against both baselines, fit the model
that ships (rounds and Platt calibration from the last labelled period, which the stopped booster did
not train on) and measure its calibration on a later period; then log and register both models and decide their aliases.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from threadpoolctl import threadpool_limits

from features.build import metric_set_for
from features.bundle import ModelBundle
from features.metrics import load_yaml
from features.pipeline import print_warnings
from features.policy import load_policy
from features.profile import feature_profile
from features.subscriptions import LabelRules
from features.tables import Engine, load_tables
from training import model
from training.backtest import Backtest, run_backtest
from training.coverage import Replay, coverage_table, log_replay, replay_policy
from training.data_quality import log_data_quality
from training.personas import champion_personas, learn_personas, log_personas, persona_lines
from training.publish import Fitted, Published, publish
from training.registry import use_experiment
from training.report import plain_baseline_warnings, summary_table
from training.shipped import fit_shipped, holdout
from training.snapshots import (
    DEFAULT_HORIZON_DAYS,
    TARGETS,
    Snapshots,
    fingerprint,
    mean_uplift,
    snapshots,
    uplift_peers,
)
from training.tuning import tune as tune_params


@dataclass
class TrainResult:
    """What a training run produced: the MLflow run, registered versions and their aliases."""

    run_id: str
    versions: dict[str, str]  # target -> registered version
    aliases: dict[str, str]  # target -> "champion" or "challenger"
    metrics: dict[str, float]  # every metric logged (overall and per fold, model and baselines)
    reasons: dict[str, str] = field(default_factory=dict)  # target -> why it got its alias
    backtests: dict[str, Backtest] = field(default_factory=dict)
    bundles: dict[str, ModelBundle] = field(default_factory=dict)
    coverage: Replay | None = None  # the tier policy replayed on the backtest


def train(
    data_dir: Path,
    horizon_days: int | None = None,
    as_of: date | None = None,
    experiment: str = "tierwise",
    tune: int = 0,
    seed: int = 0,
    console: Console | None = None,
    capacity: int | None = None,
    max_rounds: int = model.MAX_ROUNDS,
    metrics_yaml: Path | None = None,
    label_rules: LabelRules | None = None,
    policy: Path | None = None,
    engine: Engine | None = None,
) -> TrainResult:
    """Train, backtest, log and register the churn and growth models from a data folder.

    Args:
        data_dir: folder with accounts, subscriptions and events.
        horizon_days: label horizon H: churn/growth within H days of each as-of date (default: 90 days,
            or the longest an honest backtest fits when the history is shorter; printed as a warning).
        as_of: last snapshot date considered (default: the data's end minus the label window,
            i.e. the horizon plus the churn grace period).
        experiment: MLflow experiment name.
        tune: optuna trials per target (0: the default parameters).
        seed: seeds LightGBM and optuna; the same data and seed give the same metrics.
        console: where progress and the summary go.
        capacity: K for "recall of ARR at risk in the top K" (default 10% of accounts in force per date).
        max_rounds: ceiling on boosting rounds (early stopping usually ends sooner).
        metrics_yaml: metric and attribute declarations replacing the shipped `features/metrics.yaml`;
            the declarations used are stored with the models, so scoring never reads this file again.
        label_rules: churn grace period and growth minimum increase (default `LabelRules()`).
        policy: the team's tier policy YAML, replayed on the backtest (default: the shipped policy).
        engine: what reads the events and computes the snapshots' window metrics (default numpy).

    Raises:
        DataError: bad tables, bad policy, too little history, or no positive label.
    """
    console = console or Console(stderr=True)
    tier_policy = load_policy(policy)  # a bad policy stops the run before the slow part
    if metrics_yaml is not None:
        load_yaml(metrics_yaml)  # a bad declarations file is refused before the slow part
    with threadpool_limits(1, user_api="blas"), Progress(console=console, transient=True) as progress:
        task = progress.add_task("loading tables", total=2 + 2 * len(TARGETS))
        tables = load_tables(data_dir, engine)
        print_warnings(console, tables.quality.warnings())  # shown even if what is left cannot train
        progress.update(task, advance=1, description="building snapshots")
        metrics = metric_set_for(tables, metrics_yaml)
        snap = snapshots(tables, horizon_days, pd.Timestamp(as_of) if as_of else None, label_rules, metrics)
        print_warnings(console, snap.features.attribute_screen.warnings())
        if horizon_days is None and snap.horizon_days != DEFAULT_HORIZON_DAYS:
            print_warnings(console, [shortened_horizon(snap.horizon_days)])
        progress.update(task, advance=1)
        console.print(snapshot_line(snap), soft_wrap=True)
        experiment_id = use_experiment(experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"train as of {snap.frame['as_of'].max().date()}"):
            common = log_inputs(snap, tune, seed, capacity)
            mlflow.set_tag("tierwise.engine", (engine or Engine()).name)  # which engine built the snapshots
            personas = learn_personas(snap.frame, snap.features.metrics, champion_personas(), seed)
            log_personas(personas)
            fitted, published = {}, {}
            for target in TARGETS:
                progress.update(task, description=f"{target}: {'tuning, ' if tune else ''}backtest and final model")
                fitted[target] = fit_target(snap, target, common, tune, seed, capacity, max_rounds)
                fitted[target].bundle.personas = personas  # stored with both models, reapplied at scoring
                progress.update(task, advance=1, description=f"{target}: logging and registering")
                published[target] = publish(fitted[target], target, f"{target}_model", seed)
                progress.update(task, advance=1)
            progress.update(task, description="replaying the tier policy on the backtest")
            replay = replay_policy(snap, {t: f.backtest for t, f in fitted.items()}, tier_policy)
            log_replay(replay)
            run_id = mlflow.active_run().info.run_id
    console.print("\n".join(persona_lines(personas)), soft_wrap=True)
    return finish(run_id, fitted, published, console, replay)


def shortened_horizon(horizon_days: int) -> str:
    """Why a run without --horizon-days predicts over fewer than 90 days."""
    return (
        f"the history is too short for an honest backtest at a {DEFAULT_HORIZON_DAYS}-day horizon: training at "
        f"{horizon_days} days, the longest that fits (pass --horizon-days to choose; churn and growth then mean "
        f"'within {horizon_days} days')"
    )


def snapshot_line(snap: Snapshots) -> str:
    """One line for the training output: how the history was cut into snapshots and folds."""
    dates = snap.frame["as_of"]
    return (
        f"{dates.nunique()} {snap.cadence.name} snapshots ({dates.min().date()} to {dates.max().date()}), "
        f"{len(snap.folds())} backtest folds; labels: {snap.horizon_days}-day horizon, churn grace "
        f"{snap.rules.churn_grace_days} days, growth at least +{snap.rules.growth_min_increase:.0%} ARR"
    )


def log_inputs(snap: Snapshots, tune: int, seed: int, capacity: int | None) -> dict:
    """Log params, data fingerprint and the feature list; return the facts every bundle records."""
    frame, fs, events = snap.frame, snap.features, snap.tables.events
    folds = snap.folds()
    common = {
        "data_fingerprint": fingerprint(snap.tables),
        "data_start": str(events["timestamp"].min().date()),
        "data_end": str(snap.tables.data_end.date()),
        "horizon_days": snap.horizon_days,
        **snap.rules.as_dict(),
        "snapshot_cadence": snap.cadence.name,
        "n_folds": len(folds),
        "train_first_as_of": str(frame["as_of"].min().date()),
        "train_last_as_of": str(frame["as_of"].max().date()),
        "n_snapshots": len(frame),
        "n_features": len(fs.names),
        "fold_origins": [str(f.origin.date()) for f in folds],
        "capacity": capacity,
    }
    common["backtest_id"] = hashlib.sha256(
        json.dumps(
            [common["data_fingerprint"], snap.horizon_days, snap.rules.as_dict(), common["fold_origins"], tune, seed]
        ).encode()
    ).hexdigest()[:16]
    mlflow.log_params(
        {k: v for k, v in common.items() if k != "fold_origins"}
        | {
            "fold_origins": ",".join(common["fold_origins"]),
            "tune_trials": tune,
            "seed": seed,
            "calibration": "platt on the last labelled period (stopped booster not trained on it), then refit",
        }
        | {f"lgbm_{k}": v for k, v in model.PARAMS.items()}
    )
    mlflow.log_table(
        pd.DataFrame(
            {
                "feature": fs.names,
                "description": [fs.descriptions.get(n, n) for n in fs.names],
                "family": [fs.families.get(n, n) for n in fs.names],
                "actionable": [fs.actionable.get(n, False) for n in fs.names],
                "categorical": [n in fs.categorical for n in fs.names],
            }
        ),
        "features.json",
    )
    mlflow.log_dict(common, "data.json")
    mlflow.log_dict(feature_profile(fs.frame, fs.names, fs.categorical), "feature_profile.json")  # monitor: drift
    log_data_quality(snap)
    return common


def fit_target(
    snap: Snapshots, target: str, common: dict, tune: int, seed: int, capacity: int | None, max_rounds: int
) -> Fitted:
    """Backtest one target, then fit the model that ships and measure its calibration on an untouched period.

    The shipped model's rounds and Platt calibration come from a booster stopped on the last labelled
    period, which it did not learn from; it is then refitted on every snapshot (`training.shipped`). The
    same recipe, run on the data before the last fold, is scored on that fold's rows to measure it.
    """
    fs, frame = snap.features, snap.frame
    X, y = fs.matrix, frame[target].to_numpy(dtype=int)
    folds = snap.folds()
    params = model.params_for(seed) | model.monotone_params(fs.names, fs.directions, target)
    mlflow.log_param(f"{target}_monotone_features", sum(map(abs, params.get("monotone_constraints", []))))
    if tune:
        params |= tune_params(X, y, frame["as_of"], folds[0].train, snap.window_days, params, tune, seed, max_rounds)
        mlflow.log_params({f"{target}_tuned_{k}": v for k, v in params.items() if k in model.PARAMS})
    bt = run_backtest(frame, X, target, fs.categorical, snap.window_days, params, max_rounds, capacity, folds)
    shipped = fit_shipped(X, y, frame["as_of"], np.ones(len(y), bool), snap.window_days, params, max_rounds)
    held, held_predictions = holdout(X, y, frame, folds[-1], snap.window_days, params, max_rounds)
    info = common | {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "positives": int(y.sum()),
        "rounds": shipped.rounds,
        "calibration_first_as_of": str(frame.loc[shipped.calibration_rows, "as_of"].min().date()),
        "shipped_calibration": held,
        "params": params,
        "backtest": bt.overall,
        "backtest_folds": {str(k): v for k, v in bt.fold_metrics.items()},
        "run_id": mlflow.active_run().info.run_id,
    }
    if target == "growth":
        info["mean_uplift"] = mean_uplift(snap)
        info["uplift_peers"] = uplift_peers(snap).as_dict()  # expected expansion by peer group (features.uplift)
    bundle = ModelBundle(
        target=target,
        booster=shipped.booster,
        features=list(fs.names),
        categories={c: [str(v) for v in X[c].cat.categories] for c in fs.categorical},
        calibration=shipped.calibration,
        metrics=fs.metrics,
        descriptions=fs.descriptions,
        families=fs.families,
        actionable=fs.actionable,
        info=info,
        directions=fs.directions,
        typical=model.typical_values(X, fs.directions, fs.metrics.recency),
    )
    return Fitted(bundle, bt, X, frame, held_predictions)


def finish(
    run_id: str,
    fitted: dict[str, Fitted],
    published: dict[str, Published],
    console: Console,
    replay: Replay | None = None,
) -> TrainResult:
    """Print the summary tables and assemble the result."""
    for target, pub in published.items():
        console.print(summary_table(target, pub.table, pub.version, pub.alias, pub.reason))
        print_warnings(console, plain_baseline_warnings(target, fitted[target].backtest.overall))
    if replay is not None:  # table mode has no contracts to replay tiers on
        console.print(coverage_table(replay))
    console.print(f"MLflow run {run_id}: `tierwise ui` to browse it")
    return TrainResult(
        run_id=run_id,
        versions={t: p.version for t, p in published.items()},
        aliases={t: p.alias for t, p in published.items()},
        metrics={k: v for pub in published.values() for k, v in pub.metrics.items()},
        reasons={t: p.reason for t, p in published.items()},
        backtests={t: f.backtest for t, f in fitted.items()},
        bundles={t: f.bundle for t, f in fitted.items()},
        coverage=replay,
    )
