"""What the data looked like before training: the cleaning figures and the attribute screen, in the run.

A data scientist comparing runs must see that one run dropped 2,000 duplicate events or refused
`accounts.status`, without rereading the console: the counts are metrics (comparable across
runs in the MLflow UI), the attribute decisions are params, and everything, ids and reasons
included, is the `data_quality.json` artifact.
"""

from __future__ import annotations

import mlflow

from features.pipeline import data_warnings
from training.snapshots import Snapshots


def log_data_quality(snap: Snapshots) -> None:
    """Log the tables' cleaning figures and the attribute screen into the active MLflow run."""
    quality, screen = snap.tables.quality, snap.features.attribute_screen
    chosen = snap.features.metrics.attributes.chosen or ()
    excluded = screen.excluded if screen is not None else {}
    mlflow.log_metrics(
        {f"data_quality_{name}": value for name, value in quality.counts().items()}
        | {"data_quality_excluded_attributes": float(len(excluded))}
    )
    mlflow.log_params(
        {
            "events_have_user_ids": snap.tables.has_users,
            "attributes_used": ",".join(chosen) or "(none)",
            "attributes_excluded": ",".join(excluded) or "(none)",
        }
    )
    mlflow.log_dict(
        {
            "tables": quality.to_dict(),
            "events_have_user_ids": snap.tables.has_users,
            "attributes": screen.to_dict() if screen is not None else {"chosen": list(chosen)},
            "warnings": data_warnings(snap.tables, snap.features),
        },
        "data_quality.json",
    )
