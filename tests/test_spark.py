"""The Spark engine against the numpy engine: the same features, metrics, labels, cleaning and scores.

One local Spark session (2 cores, few shuffle partitions) serves the whole file; the worlds are
small, since Spark's cost here is its fixed per-job overhead, not the rows.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import tests.exports as ex
from features.build import metric_set_for
from features.engine import encode_events, window_metrics
from features.errors import DataError
from features.metrics import (
    AGGREGATES,
    COUNTING_AGGREGATES,
    FAMILIES,
    USER_AGGREGATES,
    Metric,
    MetricSet,
    default_metric_set,
)
from features.subscriptions import labels
from features.tables import Engine, load_tables

EXACT_AGGS = (COUNTING_AGGREGATES - {"sum_value"}) | {"days_since_last"}  # counts and days: equal to the bit
RTOL = 1e-9  # rates and ratios: sums taken in another order
HORIZON = 90
SPARK = "local[2]"


@pytest.fixture(scope="module")
def spark():
    """One local Spark session for the file."""
    from features.spark_engine import spark_session

    session = spark_session("local[2]")
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """A 60-account demo world of its own seed (another world than the session's `demo_dir`)."""
    from features.demo_world import write_demo_world

    out = tmp_path_factory.mktemp("spark_world")
    write_demo_world(out, n_accounts=60, seed=11)
    return out


@pytest.fixture(scope="module")
def export_world(small_world, tmp_path_factory):
    """The small world as a real export: QA account, a duplicated batch, clock errors, no user_id, CRM state."""
    return ex.export_copy(small_world, tmp_path_factory.mktemp("spark_export"), ex.real_export)


def as_of_dates(tables) -> pd.DatetimeIndex:
    """Three month starts before the data's end, the last one with its label window closed in these worlds."""
    return pd.date_range(end=tables.data_end - pd.Timedelta(days=120), periods=3, freq="MS")


def every_family(tables) -> MetricSet:
    """The metric set of these tables with every generic family, so every aggregate is compiled and compared."""
    return default_metric_set(sorted(tables.events["event"].unique()), users=tables.has_users, families=tuple(FAMILIES))


def assert_same(numpy_frame: pd.DataFrame, spark_frame: pd.DataFrame, exact: set[str]) -> None:
    """Equal columns and rows; numbers equal exactly in `exact` (and every non-float column), else to RTOL."""
    assert list(spark_frame.columns) == list(numpy_frame.columns)
    assert len(spark_frame) == len(numpy_frame) > 0
    for col in numpy_frame.columns:
        a, b = numpy_frame[col], spark_frame[col]
        if pd.api.types.is_float_dtype(a) and col not in exact:
            np.testing.assert_allclose(b.to_numpy(float), a.to_numpy(float), rtol=RTOL, atol=0, err_msg=col)
        else:
            pd.testing.assert_series_equal(b, a, check_exact=True, obj=col)


@pytest.mark.parametrize("world", ["small_world", "export_world"])
def test_every_window_metric_labels_and_cleaning_equal_numpy(spark, world, request):
    """Every declared window metric (hidden helpers too), the labels and what cleaning dropped: equal."""
    folder = request.getfixturevalue(world)
    local, distributed = load_tables(folder), load_tables(folder, Engine("spark"))
    assert distributed.quality == local.quality
    if world == "export_world":  # the junk was there, so the equality above compared real drops
        assert local.quality.duplicate_events and local.quality.unknown_account_events and local.quality.future_events
        assert not distributed.has_users
    assert (distributed.data_end, distributed.has_users) == (local.data_end, local.has_users)
    assert metric_set_for(distributed) == metric_set_for(local)
    metrics = every_family(local)  # every aggregate the engine has, not only the shipped default families
    assert every_family(distributed) == metrics
    extra = Metric(
        "nps_sum_90d", "nps", ("nps_response",), "sum_value", 90, "NPS points in 90 days"
    )  # no default uses it
    metrics = replace(metrics, windows=(*metrics.windows, extra))
    assert {m.agg for m in metrics.windows} == set(AGGREGATES) - (set() if local.has_users else USER_AGGREGATES)
    dates = as_of_dates(local)
    expected = window_metrics(encode_events(local), metrics, dates).sort_values(["as_of", "account_id"])
    found = distributed.windows(metrics, dates).sort_values(["as_of", "account_id"])
    exact = {m.name for m in metrics.windows if m.agg in EXACT_AGGS}
    assert_same(expected.reset_index(drop=True), found.reset_index(drop=True), exact)
    local_labels = labels(local.subscriptions, dates, HORIZON)
    assert_same(local_labels, labels(distributed.subscriptions, dates, HORIZON), {"churn", "growth"})
    assert local_labels["churn"].sum() > 0


def test_features_command_with_spark_writes_the_same_table(spark, small_world, tmp_path):
    """`tierwise features ... --engine spark` writes the table `tierwise features` writes: columns, rows, values.

    The Spark run reads and writes URLs (`file://`, which Hadoop and pyarrow both resolve), the path
    an object store's `s3a://` or `gs://` takes.
    """
    from tierwise.cli import app

    tables = load_tables(small_world)
    dates = [a for d in as_of_dates(tables)[-2:] for a in ("--as-of", str(d.date()))]
    runner = CliRunner()
    for data, out, extra in (
        (str(small_world), str(tmp_path / "numpy.parquet"), []),
        (
            small_world.as_uri(),
            (tmp_path / "spark.parquet").as_uri(),
            ["--engine", "spark", "--spark-master", "local[2]"],
        ),
    ):
        result = runner.invoke(app, ["features", "--data", data, *dates, "--out", out, *extra])
        assert result.exit_code == 0, result.output
    local, distributed = pd.read_parquet(tmp_path / "numpy.parquet"), pd.read_parquet(tmp_path / "spark.parquet")
    metrics = metric_set_for(tables)
    exact = {m.name for m in metrics.windows if m.agg in EXACT_AGGS} | {"arr", "seats", "tenure_days"}
    assert_same(local, distributed, exact)
    assert local["activity__users_30d"].sum() > 0


def test_spark_batch_scores_and_reasons_equal_the_local_batch(spark, trained_store):
    """Scores, reasons, tiers and changes from `mapInPandas` scoring equal `score_frame`'s for every account."""
    from features.build import build_features
    from serving.registry import load_models
    from serving.scoring import score_frame
    from serving.spark_scoring import score_frame_spark

    models = load_models()
    tables = load_tables(trained_store.data_dir)
    frame = build_features(tables, [tables.data_end], metrics=models.churn.metrics).frame
    earlier = frame.sample(frac=0.5, random_state=0).assign(days_to_renewal=lambda f: f["days_to_renewal"] + 30)
    previous = score_frame(earlier, models, reasons=True)  # a last run of half the book, other risks
    local = score_frame(frame, models, previous=previous)
    distributed = score_frame_spark(frame, models, spark, previous=previous, partitions=2)
    pd.testing.assert_frame_equal(distributed, local, check_exact=True)
    assert local["reason_1"].notna().all() and local["changes"].str.startswith("Risk").any()


def test_bad_engine_and_master_are_named(small_world, tmp_path, monkeypatch, capsys):
    """`--engine nonsense` and `--spark-master` without Spark are user errors, named, with nothing written."""
    from tierwise.cli import main

    out = tmp_path / "f.parquet"
    base = ["tierwise", "features", "--data", str(small_world), "--as-of", "2026-06-01", "--out", str(out)]
    for extra, said in (
        (["--engine", "nonsense"], "--engine 'nonsense': use numpy or spark"),
        (["--spark-master", "local[2]"], "--spark-master is for --engine spark"),
    ):
        monkeypatch.setattr(sys, "argv", [*base, *extra])
        with pytest.raises(SystemExit) as stop:
            main()
        assert stop.value.code == 2 and said in capsys.readouterr().err
    assert not out.exists()


def test_spark_missing_is_a_clear_error(monkeypatch):
    """Without PySpark the engine says what to install, instead of an ImportError's trace."""
    from features.spark_engine import spark_session

    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(DataError, match=r"needs PySpark: install tierwise with the spark extra"):
        spark_session()


def test_bad_event_values_are_named(spark, small_world, tmp_path):
    """A timestamp that is not a date and an empty event are refused with the column and rows, as by numpy."""
    frames = ex.read_world(small_world)
    events = frames["events"].astype({"timestamp": str})
    events.loc[5, "timestamp"] = "last tuesday"
    ex.write_world(frames | {"events": events}, tmp_path / "bad_date")
    with pytest.raises(DataError, match=r"events\.timestamp: not a date in 1 row\(s\), e\.g\. .*"):
        load_tables(tmp_path / "bad_date", Engine("spark"))
    with pytest.raises(DataError, match=r"events\.timestamp: not a date in 1 row"):
        load_tables(tmp_path / "bad_date")


def test_spark_without_a_connector_for_the_bucket_says_so(spark, small_world, bucket):
    """The small tables come from the bucket (pyarrow); Spark without hadoop-aws names the missing connector."""
    url = bucket.upload(small_world, "spark/world")
    with pytest.raises(
        DataError, match=r"events: cannot read s3://.*/spark/world/events\.parquet: .*Hadoop connectors"
    ):
        load_tables(url, Engine("spark"))
