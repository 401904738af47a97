"""The fitted state that travels with a model from training to scoring.

Training creates a bundle (booster, feature order, training categories, calibration, metric
declarations, driver descriptions); scoring reapplies exactly that state. It lives in
`features` because both sides import `features` and neither may import the other. It is
also the MLflow pyfunc model, so `mlflow.pyfunc.load_model(...).predict(frame)` gives the
same calibrated probabilities the batch job and the service give.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.metrics import MetricSet
from features.personas import Personas
from features.tables import DataError


def numbers(values: ArrayLike) -> np.ndarray:
    """A column as floats: numbers as they are, numbers written as text parsed, anything else NaN."""
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        return array.astype(float)
    return pd.to_numeric(pd.Series(array, dtype=object), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large |x|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


@dataclass
class ModelBundle:
    """A LightGBM booster plus everything needed to feed it and read its output honestly.

    Calibration is Platt scaling on the raw margin, fitted on out-of-time predictions:
    p = sigmoid(a * margin + b).
    """

    target: str  # "churn" or "growth"
    booster: lgb.Booster
    features: list[str]
    categories: dict[str, list[str]]  # categorical column -> categories seen in training, in order
    calibration: dict[str, float]  # {"a": ..., "b": ...}
    metrics: MetricSet
    descriptions: dict[str, str]
    families: dict[str, str]
    actionable: dict[str, bool]
    info: dict = field(default_factory=dict)  # trained_at, data window, backtest metrics, ...
    # What more of each feature means (+1 healthier, -1 unhealthier, 0 undeclared), and its median over
    # the training rows: together they tell a reason that fits common sense from one that contradicts it.
    # Bundles saved before these existed load with both empty (no check, as before).
    directions: dict[str, int] = field(default_factory=dict)
    typical: dict[str, float] = field(default_factory=dict)
    # Adoption personas learned in the same training run (`features.personas`); None in bundles saved before them.
    personas: Personas | None = None

    def array(self, features: Mapping[str, ArrayLike]) -> np.ndarray:
        """The float array the booster reads: model columns in model order, categories as training codes.

        `features` is a DataFrame or arrays by column name. Numbers given as text are parsed;
        blanks, and a missing or unseen category, are NaN, as LightGBM reads them. Building the
        array directly (not a categorical DataFrame) keeps one-row scoring cheap: pandas'
        per-call overhead, not the trees, is what costs there.

        Raises:
            DataError: a model feature is missing (parity check); extra columns are ignored.
        """
        missing = [c for c in self.features if c not in features]
        if missing:
            raise DataError(
                f"feature rows lack {len(missing)} column(s) the {self.target} model was trained on: "
                f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"
            )
        columns = [np.asarray(features[col]) for col in self.features]
        out = np.empty((len(columns[0]), len(self.features)))
        for i, (col, values) in enumerate(zip(self.features, columns, strict=True)):
            codes = self.category_codes.get(col)
            if codes is None:
                out[:, i] = numbers(values)
            else:
                out[:, i] = [np.nan if pd.isna(v) else codes.get(str(v), np.nan) for v in values.tolist()]
        return out

    @functools.cached_property
    def category_codes(self) -> dict[str, dict[str, int]]:
        """Per categorical column, each training category's code (its position in training order)."""
        return {col: {c: i for i, c in enumerate(cats)} for col, cats in self.categories.items()}

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`array` as a DataFrame with the training categories restored, for training and inspection."""
        X = pd.DataFrame(self.array(frame), columns=self.features, index=frame.index)
        for col, categories in self.categories.items():
            X[col] = pd.Categorical.from_codes(X[col].fillna(-1).astype(int), categories=categories)
        return X

    def category(self, column: int, codes: np.ndarray) -> np.ndarray:
        """The training category labels of codes in one categorical column (None for NaN)."""
        labels = np.asarray(self.categories[self.features[column]] + [None], dtype=object)
        return labels[np.where(np.isnan(codes), -1, codes).astype(int)]

    def margin(self, A: np.ndarray) -> np.ndarray:
        """Raw LightGBM scores (log-odds) for an array from `array`."""
        return self.booster.predict(A, raw_score=True)

    def calibrate(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probability for raw margins."""
        return sigmoid(self.calibration["a"] * np.asarray(margin) + self.calibration["b"])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities for feature rows."""
        return self.calibrate(self.margin(self.array(frame)))

    def contributions(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact tree SHAP values converted to probability points.

        Returns (points per row and feature, base probability per row, probability per row),
        where the points of a row add up to probability - base. LightGBM's `pred_contrib` gives
        exact SHAP values on the margin; each feature keeps its share of the margin change from
        the expected margin, applied to the calibrated probability change.
        """
        contrib = self.booster.predict(A, pred_contrib=True)
        shap_margin, bias = contrib[:, :-1], contrib[:, -1]
        margin = shap_margin.sum(axis=1) + bias
        base, prob = self.calibrate(bias), self.calibrate(margin)
        delta = margin - bias
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(np.abs(delta) > 1e-12, (prob - base) / delta, 0.0)
        return shap_margin * scale[:, None], base, prob

    def save(self, folder: Path) -> Path:
        """Write `booster.txt` and `bundle.json` into a folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "booster.txt"))
        meta = {
            "target": self.target,
            "features": self.features,
            "categories": self.categories,
            "calibration": self.calibration,
            "metrics": self.metrics.to_dict(),
            "descriptions": self.descriptions,
            "families": self.families,
            "actionable": self.actionable,
            "info": self.info,
            "directions": self.directions,
            "typical": self.typical,
            "personas": self.personas.to_dict() if self.personas else None,
        }
        (folder / "bundle.json").write_text(json.dumps(meta, indent=1, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        """Read a bundle written by `save` (a LightGBM text model loads in ~10 ms)."""
        folder = Path(folder)
        meta = json.loads((folder / "bundle.json").read_text())
        meta["metrics"] = MetricSet.from_dict(meta["metrics"])
        meta["personas"] = Personas.from_dict(meta["personas"]) if meta.get("personas") else None
        return cls(booster=lgb.Booster(model_file=str(folder / "booster.txt")), **meta)


# MLflow error codes meaning "no such registered model, version or alias". Any other failure of a
# registry call is an outage (an unreachable server, a refused login) and must not read as "nothing
# registered": a training would otherwise crown its version over a champion it could not see.
REGISTRY_MISSING = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


MAX_VERSION = 2**63 - 1  # registries number versions with 64-bit integers: a larger number names no version


def registry_missing(exc: BaseException, version: int | str | None = None) -> bool:
    """Whether a registry call failed because the model, version or alias asked for does not exist.

    A version number too large for the store's integers fails inside the store's driver (sqlite's
    "int too large"), not as "not found": it is still a version that does not exist.
    """
    too_large = version is not None and str(version).isdigit() and int(version) > MAX_VERSION
    return too_large or getattr(exc, "error_code", None) in REGISTRY_MISSING


class BundlePyfunc(mlflow.pyfunc.PythonModel):
    """MLflow face of a bundle: `predict` returns calibrated probabilities from a plain feature DataFrame.

    Log it with `artifacts={"bundle": folder_written_by_save}`.
    """

    def load_context(self, context) -> None:
        self.bundle = ModelBundle.load(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.bundle.predict(model_input)
