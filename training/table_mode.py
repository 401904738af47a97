"""Table mode: a churn model from a flat, one-row-per-account table the user built themselves.

Same recipe, calibration, metrics, logging and registry as the event-based pipeline, but the
rows carry no time, so the backtest is a stratified K-fold cross-validation, and the model is
registered as `tierwise-churn-table` so it never displaces the event-based champion. Column
types are decided once here and reapplied by `ModelBundle.matrix` at scoring: numbers that
arrive as text (with blanks) become numbers, other text becomes categories.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from rich.console import Console
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from features.attributes import is_date_like, is_id_like
from features.bundle import ModelBundle
from features.io import read_user_table
from features.metrics import MetricSet
from features.tables import DataError
from training import calibration, model
from training.backtest import Fold, run_backtest
from training.pipeline import TrainResult, finish
from training.publish import Fitted, publish
from training.registry import use_experiment

YES = {"1", "1.0", "yes", "y", "true", "t", "churn", "churned"}
NO = {"0", "0.0", "no", "n", "false", "f", "retained", "active"}
N_SPLITS = 5
TABLE_AS_OF = pd.Timestamp("1970-01-01")  # table rows carry no date; one group for top-K metrics


def churn_labels(values: pd.Series, column: str) -> np.ndarray:
    """0/1 from yes/no, true/false, 1/0 (any case); anything else is named with its rows."""
    text = values.astype("string").str.strip().str.lower()
    bad = ~text.isin(YES | NO) | text.isna()
    if bad.any():
        rows = ", ".join(f"row {i}: {values[i]!r}" for i in values.index[bad.to_numpy()][:5])
        raise DataError(f"--target {column}: {int(bad.sum())} value(s) are not yes/no, true/false or 1/0, e.g. {rows}")
    y = text.isin(YES).to_numpy(dtype=int)
    if y.sum() == 0:
        raise DataError(f"--target {column}: no positive (churn) label in {len(y):,} rows: nothing to learn from")
    if y.sum() == len(y):
        raise DataError(f"--target {column}: every row is a churn; the model needs retained accounts too")
    return y


def column_kinds(frame: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(features, categorical, dropped): text numbers count as numbers; id-like and date-like text is dropped.

    The same tests as for account attributes (`features.attributes`): an id or a date as a category
    would only let the trees memorise rows.
    """
    features, categorical, dropped = [], [], []
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            features.append(col)
            continue
        text = values.astype("string").str.strip()
        filled = text[text.notna() & (text != "")]
        if filled.empty:
            dropped.append(col)
        elif pd.to_numeric(filled, errors="coerce").notna().all():
            features.append(col)
        elif is_id_like(values) or is_date_like(values):
            dropped.append(col)
        else:
            features.append(col)
            categorical.append(col)
    return features, categorical, dropped


def stratified_folds(y: np.ndarray, seed: int) -> list[Fold]:
    """Stratified K-fold over the rows (the rows carry no time to respect)."""
    splits = min(N_SPLITS, int(min(y.sum(), len(y) - y.sum())))
    if splits < 2:
        raise DataError("the table needs at least 2 churned and 2 retained rows for cross-validation")
    folds = []
    for i, (tr, va) in enumerate(StratifiedKFold(splits, shuffle=True, random_state=seed).split(y, y)):
        train, valid = np.zeros(len(y), bool), np.zeros(len(y), bool)
        train[tr], valid[va] = True, True
        folds.append(Fold(i + 1, pd.NaT, train, valid))
    return folds


def inner_split(y: np.ndarray, seed: int):
    """A stratified 80/20 split of a fold's training rows: early stopping and the fold's calibration."""

    def split(fold: Fold) -> tuple[np.ndarray, np.ndarray]:
        idx = np.flatnonzero(fold.train)
        fit_idx, cal_idx = train_test_split(idx, test_size=0.2, stratify=y[idx], random_state=seed)
        earlier, later = np.zeros(len(y), bool), np.zeros(len(y), bool)
        earlier[fit_idx], later[cal_idx] = True, True
        return earlier, later

    return split


def train_table(
    table: Path | pd.DataFrame,
    target: str,
    id_col: str,
    experiment: str = "tierwise",
    seed: int = 0,
    capacity: int | None = None,
    console: Console | None = None,
    max_rounds: int = model.MAX_ROUNDS,
) -> TrainResult:
    """Train, cross-validate, log and register a churn model from a flat table (`tierwise-churn-table`).

    Args:
        table: a CSV/Parquet path or a DataFrame, one row per account.
        target: the churn column (yes/no, true/false, 1/0).
        id_col: the account id column.
        capacity: K for "recall of ARR at risk in the top K" (default 10% of rows); ARR is the
            `arr` column when there is one (any case), else every account counts 1.

    Raises:
        DataError: unreadable table, missing columns, unreadable or one-class target.
    """
    console = console or Console(stderr=True)
    raw = table if isinstance(table, pd.DataFrame) else read_user_table(table, "--table")
    missing = [c for c in (target, id_col) if c not in raw.columns]
    if missing:
        raise DataError(f"--table: no column {', '.join(map(repr, missing))}; found {', '.join(map(str, raw.columns))}")
    y = churn_labels(raw[target], target)
    names, categorical, dropped = column_kinds(raw.drop(columns=[target, id_col]))
    bundle = table_bundle(raw, names, categorical)
    X = bundle.matrix(raw)
    arr_col = next((c for c in raw.columns if str(c).lower() == "arr"), None)
    frame = raw[names].assign(
        account_id=raw[id_col].astype(str),
        as_of=TABLE_AS_OF,
        churn=y,
        arr=pd.to_numeric(raw[arr_col], errors="coerce").fillna(0.0) if arr_col else 1.0,
    )
    params = model.params_for(seed)
    with threadpool_limits(1, user_api="blas"), console.status("table mode: cross-validating the churn model"):
        folds = stratified_folds(y, seed)
        bt = run_backtest(frame, X, "churn", categorical, 0, params, max_rounds, capacity, folds, inner_split(y, seed))
        bundle.booster = model.fit(X, y, params, bt.final_rounds)
        bundle.calibration = calibration.platt(bt.predictions["margin"].to_numpy(), bt.predictions["y"].to_numpy())
        bundle.info = table_info(raw, y, names, dropped, bt, params, capacity) | {"id_column": str(id_col)}
        mlflow_run = use_experiment(experiment)
        with mlflow.start_run(experiment_id=mlflow_run, run_name=f"train table {target}") as run:
            bundle.info["run_id"] = run.info.run_id
            mlflow.log_params(
                {
                    "mode": "table",
                    "target": target,
                    "id_column": id_col,
                    "seed": seed,
                    "rows": len(raw),
                    "dropped_columns": ",".join(map(str, dropped))[:500],
                }
                | {f"lgbm_{k}": v for k, v in model.PARAMS.items()}
            )
            mlflow.log_table(
                pd.DataFrame({"feature": names, "categorical": [n in categorical for n in names]}), "features.json"
            )
            fitted = Fitted(bundle, bt, X, frame)
            published = {"churn": publish(fitted, "churn-table", "churn_model", seed)}
    return finish(run.info.run_id, {"churn": fitted}, published, console)


def table_bundle(raw: pd.DataFrame, names: list[str], categorical: list[str]) -> ModelBundle:
    """A bundle whose `matrix` turns the raw table into model input (booster and calibration come later)."""
    categories = {c: sorted(raw[c].dropna().astype(str).unique().tolist()) for c in categorical}
    return ModelBundle(
        target="churn",
        booster=None,
        features=list(map(str, names)),
        categories=categories,
        calibration={"a": 1.0, "b": 0.0},
        metrics=MetricSet((), ()),
        descriptions={c: str(c) for c in names},
        families={c: str(c) for c in names},
        actionable=dict.fromkeys(map(str, names), True),
    )


def table_info(raw, y, names, dropped, bt, params, capacity) -> dict:
    """What the bundle records about a table-mode model (also feeds the model card)."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(raw, index=False).to_numpy().tobytes()).hexdigest()[:16]
    return {
        "mode": "table",
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_fingerprint": digest,
        "data_start": "n/a (flat table)",
        "data_end": "n/a (flat table)",
        "horizon_days": "as labelled in the table",
        "train_first_as_of": None,
        "train_last_as_of": None,
        "n_snapshots": len(raw),
        "positives": int(y.sum()),
        "n_features": len(names),
        "dropped_columns": list(map(str, dropped)),
        "fold_origins": [f"stratified {len(bt.folds)}-fold cross-validation"],
        "capacity": capacity,
        "backtest_id": hashlib.sha256(f"{digest}:{len(bt.folds)}:{params['seed']}".encode()).hexdigest()[:16],
        "rounds": bt.final_rounds,
        "params": params,
        "backtest": bt.overall,
        "backtest_folds": {str(k): v for k, v in bt.fold_metrics.items()},
    }
