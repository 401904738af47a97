"""Batch scoring with reasons on Spark: the one scoring function, run on every partition.

Explanations dominate batch time (exact tree SHAP, ~1 ms per row and model), and each row is
explained on its own, so the work splits by rows: `mapInPandas` calls `serving.scoring.score_columns`
(the function `tierwise score` and the service use) on each partition, with the model bundles
shipped to the executors once (a broadcast; under Spark Connect, with the function itself).
Tiers are a global ranking under capacity (the highest value at stake first, across the whole
book), so they are assigned after scoring, on the driver, from the collected scores: a sort of
one row per account, milliseconds for a million. What changed since the last run is worded
there too, against the previous scores the driver reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.personas import check_plays, persona_columns
from serving.registry import Models
from serving.scoring import GROWTH_REASONS, OUTPUT, REASONS, changes, dates, score_columns

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ROW = "_row"  # the input position, to give the scores back in the input's order
TEXT = ["account_id", "lifecycle_stage", *REASONS, *GROWTH_REASONS, "reasons_json"]
TEXT += ["churn_model_version", "growth_model_version"]
NUMBERS = ["churn_risk", "growth_potential", "arr", "days_to_renewal", "arr_at_risk", "expected_expansion"]
SCHEMA = ", ".join(
    [f"{ROW} long", "as_of timestamp", "renewal_date timestamp", "insufficient_history boolean"]
    + [f"`{c}` double" for c in NUMBERS]
    + [f"`{c}` string" for c in TEXT]
)


def score_frame_spark(
    features: pd.DataFrame,
    models: Models,
    spark: SparkSession,
    policy=None,
    previous: pd.DataFrame | None = None,
    partitions: int | None = None,
) -> pd.DataFrame:
    """`serving.scoring.score_frame` with the scoring (reasons included) spread over Spark's executors.

    Args:
        features: feature rows, as `features.build.build_features` gives them.
        models: from `serving.registry.load_models`; shipped to the executors.
        spark: the session to run in (`features.spark_engine.spark_session`).
        policy: a `serving.tiers.TierPolicy`; the shipped default when None.
        previous: last run's scored output, for stable tiers and `changes`.
        partitions: how many pieces to score in parallel (default: Spark's default parallelism).

    Returns:
        The rows `score_frame` returns for the same input, in the same order.
    """
    from serving.tiers import assign_tiers, load_policy

    policy = policy or load_policy()
    check_plays(policy.plays, models.churn.personas, policy.source)
    rows = spark.createDataFrame(spark_ready(features))
    rows = rows.repartition(partitions or default_parallelism(spark))
    scored = rows.mapInPandas(partition_scorer(shipped(spark, models)), SCHEMA).toPandas()
    scored = scored.sort_values(ROW).drop(columns=ROW)
    scored = pd.DataFrame({col: scored[col].to_numpy() for col in scored.columns})  # dtypes as `score_frame` infers
    scored = scored.astype(timestamp_units(features))  # Spark returns microseconds
    # personas are cheap and hold their place against last run's, which only the driver reads
    scored = scored.assign(**persona_columns(models.churn.personas, features, previous))
    scored["changes"] = (
        np.asarray(changes(scored, previous, models.churn), dtype=object) if previous is not None else None
    )
    return assign_tiers(scored, policy, previous)[OUTPUT]


def timestamp_units(features: pd.DataFrame) -> dict[str, np.dtype]:
    """The datetime units `score_frame` gives `as_of` and `renewal_date` (as-of plus whole seconds) for these rows."""
    as_of = dates(np.asarray(features["as_of"])).dtype
    return {"as_of": as_of, "renewal_date": (np.zeros(0, as_of) + np.zeros(0, "timedelta64[s]")).dtype}


def spark_ready(features: pd.DataFrame) -> pd.DataFrame:
    """Feature rows Spark can take: categories as text, and each row's position for the way back."""
    out = features.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    out.insert(0, ROW, np.arange(len(out), dtype=np.int64))
    return out


def default_parallelism(spark: SparkSession) -> int:
    """Spark's default parallelism (a Connect session has no SparkContext: its shuffle partitions)."""
    try:
        return spark.sparkContext.defaultParallelism
    except Exception:  # Spark Connect
        return int(spark.conf.get("spark.sql.shuffle.partitions"))


def shipped(spark: SparkSession, models: Models) -> Callable[[], Models]:
    """A way for executors to get the models: a broadcast (sent once per executor), or, under Connect, the value."""
    try:
        handle = spark.sparkContext.broadcast(models)
    except Exception:  # Spark Connect has no SparkContext: the models travel pickled with the function
        return lambda: models
    return lambda: handle.value


def partition_scorer(models: Callable[[], Models]) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The function `mapInPandas` runs on each partition: the shared scoring, one thread per task."""

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from threadpoolctl import threadpool_limits

        bundle = models()
        with threadpool_limits(1):  # Spark runs one task per core: LightGBM's threads would oversubscribe it
            for batch in (b for b in batches if len(b)):
                columns = score_columns(batch, bundle)
                columns.pop("changes")
                out = pd.DataFrame(columns)
                out.insert(0, ROW, batch[ROW].to_numpy())
                yield out[SCHEMA_COLUMNS]

    return score


SCHEMA_COLUMNS = [part.split(" ")[0].strip("`") for part in SCHEMA.split(", ")]
