"""Load the models scoring uses from the MLflow registry: the `champion`, or a named version.

Each registered model is a pyfunc wrapping a `ModelBundle` folder. Loading through pyfunc costs
seconds; the bundle itself (a LightGBM text model plus `bundle.json`) loads in milliseconds, so
scoring downloads the version's artifacts and reads the bundle directly.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.bundle import ModelBundle, registry_missing
from features.tables import DataError
from serving.redact import public_text
from tierwise import settings

CHURN, GROWTH, CHURN_TABLE = "tierwise-churn", "tierwise-growth", "tierwise-churn-table"
CHAMPION = "champion"
DOWNLOADS = "tierwise-model-"  # prefix of the temporary folders models are downloaded into


@dataclass(frozen=True)
class Models:
    """The two bundles one score is made with, and their registry versions (recorded on every row)."""

    churn: ModelBundle
    growth: ModelBundle
    churn_version: str
    growth_version: str

    @functools.cached_property
    def features(self) -> tuple[str, ...]:
        """Every feature either model reads, in first-seen order (worked out once: the service asks per request)."""
        return tuple(dict.fromkeys(self.churn.features + self.growth.features))

    @functools.cached_property
    def categorical(self) -> frozenset[str]:
        """The features either model reads as categories."""
        return frozenset(self.churn.categories) | frozenset(self.growth.categories)


def load_models(churn_version: int | str | None = None, growth_version: int | str | None = None) -> Models:
    """The churn and growth models: the `champion` of each, or the versions named.

    Raises:
        DataError: no champion is registered (nothing trained yet) or a named version does not exist.
    """
    churn, churn_v = load_bundle(CHURN, churn_version)
    growth, growth_v = load_bundle(GROWTH, growth_version)
    return Models(churn, growth, churn_v, growth_v)


def load_bundle(name: str, version: int | str | None = None) -> tuple[ModelBundle, str]:
    """One registered model's bundle and its version number (the champion unless a version is named)."""
    mlflow.set_tracking_uri(settings.tracking_uri())
    version = resolve_version(name, version)
    with tempfile.TemporaryDirectory(prefix=DOWNLOADS) as tmp:  # read into memory, so the copy can go
        try:
            folder = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp))
        except (MlflowException, OSError) as exc:
            raise DataError(f"model {name} version {version}: cannot download its artifacts: {exc}") from exc
        return ModelBundle.load(bundle_folder(folder, name, version)), version


def resolve_version(name: str, version: int | str | None) -> str:
    """The version number to load: the one named (checked to exist) or the champion's."""
    store = settings.redact_uri(settings.tracking_uri())
    try:
        client = MlflowClient()
        if version is None:
            return str(client.get_model_version_by_alias(name, CHAMPION).version)
        return str(client.get_model_version(name, str(version)).version)
    except Exception as exc:
        if not registry_missing(exc, version):  # a missing database driver, an unreachable host, a refused login
            raise DataError(f"cannot reach the MLflow tracking store {store}: {public_text(exc)}") from exc
        if version is None:
            raise DataError(f"no {CHAMPION} model registered as {name} in {store}: run `tierwise train` first") from exc
        raise DataError(f"model {name} has no version {version} in {store}") from exc


def bundle_folder(folder: Path, name: str, version: str) -> Path:
    """The folder inside a downloaded model that holds `bundle.json`."""
    found = sorted(folder.rglob("bundle.json"))
    if not found:
        raise DataError(f"model {name} version {version} holds no bundle.json: it was not logged by tierwise train")
    return found[0].parent
