"""The Spark engine: the same metric declarations, computed by Spark from an events table of any size.

Events are the big table (billions of rows at a large company); accounts and subscriptions are
small (one or a few rows per account). So Spark reads, cleans and aggregates the events, and the
result it hands back is small: one row per (account, as-of date) with every window metric. The
cheap per-row work after that (contract features, derived metrics, attributes, labels) is the
pandas code the numpy engine uses, on that collected table, so both engines share one definition
of everything but the window aggregates, and those are compiled here from the same `Metric`
declarations (`features.metrics`), never listed a second time.

How a window metric compiles: events are first summed per (account, day) with one set of columns
per event filter in use; the days are joined to the as-of dates they can affect (within the
longest look-back before each date); one grouped aggregation then computes every metric as a
conditional aggregate over its window [as_of - offset - window, as_of - offset). Distinct users
take one more step (as the numpy engine does): a user counts when their last active day before
the window's end falls inside the window. Only events strictly before an as-of date are seen.

Cleaning follows `features.tables` rule for rule (exact duplicates, unknown accounts, clock
errors, events long before their account existed), so both engines see the same events.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from features.errors import DataError
from features.metrics import COUNTING_AGGREGATES, USER_AGGREGATES, Metric, MetricSet
from features.tables import (
    BULK_SHARE,
    EARLY_DAYS,
    EXAMPLES,
    REQUIRED,
    SUFFIXES,
    DataQuality,
    Tables,
    contract_tables,
    data_location,
    future_cutoff,
    read_table,
    unknown_share_limit,
)
from features.urls import find_table, first_line, url_suffix
from tierwise.settings import redact_uri

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

EPOCH = pd.Timestamp("1970-01-01")
INSTALL = "the Spark engine needs PySpark: install tierwise with the spark extra (pip install 'tierwise[spark]')"


def spark_session(master: str | None = None) -> SparkSession:
    """The Spark session tierwise runs in: `SPARK_REMOTE` (Spark Connect), else `master`, else `local[*]`.

    Local Python workers run this interpreter (unless `PYSPARK_PYTHON` says otherwise); a cluster's
    executors need tierwise installed in theirs (docs/scale.md). Timestamps are read and cut into
    days in UTC, as the numpy engine does, whatever the machine's zone.

    Raises:
        DataError: PySpark is not installed, or Spark cannot start (no Java runtime, a bad master URL).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise DataError(INSTALL) from exc
    remote = os.environ.get("SPARK_REMOTE")
    master = master or "local[*]"
    if remote and not local_cores(remote):
        reach_connect_server(remote)
    builder = SparkSession.builder.appName("tierwise")
    builder = builder.remote(remote) if remote else builder.master(master)
    cores = local_cores(remote or master)
    if cores:  # a local master or Connect server starts its workers from here:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # this interpreter, so they import tierwise as we do
        builder = builder.config("spark.sql.shuffle.partitions", str(SHUFFLE_PER_CORE * cores))
    try:
        spark = (
            builder.config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.legacy.parquet.nanosAsLong", "true")  # pandas writes nanosecond timestamps
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    except Exception as exc:  # no JVM, a refused master or Connect server: one line, not a Java trace
        where = f"Spark Connect at {connect_address(remote)}" if remote else f"Spark master {master}"
        hint = " (local mode needs a Java 17+ runtime)" if cores else ""
        raise DataError(f"{where} did not start: {first_line(exc)}{hint}") from exc
    if not remote:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


CONNECT_PORT = 15002  # Spark Connect's default port
CONNECT_PROBE_SECONDS = 10


def connect_address(remote: str) -> str:
    """`sc://host:port` of a Spark Connect URL, without its parameters (a `token=` must not reach a log)."""
    parts = urlsplit(remote.split(";")[0])
    try:
        port = parts.port or CONNECT_PORT
    except ValueError:  # a port that is not a number
        raise DataError(f"SPARK_REMOTE: {parts.scheme}://{parts.hostname}: the port is not a number") from None
    return f"{parts.scheme}://{parts.hostname}:{port}"


def reach_connect_server(remote: str) -> None:
    """Fail now when the Spark Connect server does not answer: the client would retry for 10 minutes.

    The client's retries are meant for a server restarting in the middle of a job, not for a wrong address.
    """
    address = connect_address(remote)
    parts = urlsplit(address)
    if parts.scheme != "sc" or not parts.hostname:
        raise DataError(f"SPARK_REMOTE: {address!r} is not a Spark Connect URL (sc://host:port) nor local[...]")
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_PROBE_SECONDS).close()
    except OSError as exc:
        raise DataError(f"Spark Connect at {address} does not answer: {exc.strerror or exc}") from exc


SHUFFLE_PER_CORE = 4  # local mode: Spark's 200 default shuffle partitions made a small book's features 4-8x slower


def local_cores(master: str) -> int:
    """The cores of a local master (`local`, `local[4]`, `local[*]`, `local[4,2]`); 0 for a cluster or Connect URL.

    A cluster keeps the shuffle partitions its operators set; local mode gets a few per core.
    """
    found = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", master)
    if not found:
        return 0
    return (os.cpu_count() or 1) if found.group(1) == "*" else int(found.group(1) or 1)


def load_tables_spark(data: Path | str, spark: SparkSession) -> Tables:
    """Read and validate the three tables with the events in Spark; `Tables.windows` computes the metrics there.

    `data` is a local folder or an object-storage URL that Spark's Hadoop connectors and pyarrow both
    understand (`s3a://...`, `gs://...`); the small tables are read on the driver (pyarrow for URLs,
    `features.urls`), the events by Spark.

    Raises:
        DataError: as `features.tables.load_tables`.
    """
    small = {name: read_table(data_location(data), name) for name in ("accounts", "subscriptions")}
    accounts, subs, stray_subs = contract_tables(small["accounts"], small["subscriptions"])
    clean = clean_events(spark, read_events(spark, data), accounts)
    quality = DataQuality(**clean.quality, **unknown_subscriptions(stray_subs))
    if clean.extremes.empty:
        raise DataError("events: no rows left once the junk was dropped: " + "; ".join(quality.warnings()))
    types = tuple(sorted(clean.extremes["event"].unique()))
    return Tables(accounts, subs, clean.extremes, quality, SparkWindows(clean.frame, accounts["account_id"], types))


def unknown_subscriptions(stray: dict[str, int]) -> dict:
    """The subscription part of `DataQuality`."""
    return {"unknown_account_subscriptions": sum(stray.values()), "unknown_subscription_accounts": stray}


def table_location(data: Path | str, name: str) -> str:
    """Where a table lives: `name.parquet` or `name.csv` under the folder or URL; a DataError when neither does."""
    folder = data_location(data)
    if isinstance(folder, str):
        return find_table(folder, name, SUFFIXES)
    for suffix in SUFFIXES:
        if (folder / f"{name}{suffix}").exists():
            return str(folder / f"{name}{suffix}")
    raise DataError(f"{name}: table missing, expected {name}.csv or {name}.parquet in {folder}")


def read_events(spark: SparkSession, data: Path | str) -> DataFrame:
    """The events table as Spark reads it (CSV: text columns, typed in `typed_events`)."""
    location = table_location(data, "events")
    try:
        if url_suffix(location) == ".csv":
            return spark.read.option("header", True).csv(location)
        return spark.read.parquet(location)
    except Exception as exc:
        hint = CONNECTOR_HINT if "No FileSystem for scheme" in str(exc) else ""
        raise DataError(f"events: cannot read {redact_uri(location)}: {first_line(exc)}{hint}") from exc


CONNECTOR_HINT = (
    " (Spark reads object storage through its Hadoop connectors, e.g. hadoop-aws for s3a://: docs/scale.md)"
)


@dataclass
class CleanEvents:
    """Typed events with the junk dropped, and what was dropped (the `DataQuality` fields of events)."""

    frame: DataFrame  # account_id, event, user_id, count, value, ts, day (+ the unknown columns read); cached
    extremes: pd.DataFrame  # `Tables.events` under Spark: each event type's first and last event
    quality: dict = field(default_factory=dict)


# Flags `typed_events` sets on a row, and the column and problem each names.
CHECKS = {
    "_bad_account_id": ("account_id", "empty value"),
    "_bad_event": ("event", "empty value"),
    "_empty_ts": ("timestamp", "empty date"),
    "_bad_ts": ("timestamp", "not a date"),
    "_bad_count": ("count", "not a number"),
    "_bad_value": ("value", "not a number"),
}


def typed_events(raw: DataFrame) -> DataFrame:
    """The contract's event columns in their types, each bad value flagged (`CHECKS`) to be named later."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType

    types = dict(raw.dtypes)
    missing = [col for col in REQUIRED["events"] if col not in types]
    if missing:
        raise DataError(f"events: missing required column(s) {', '.join(missing)}; found {', '.join(raw.columns)}")
    stamp = F.col("timestamp")
    if isinstance(raw.schema["timestamp"].dataType, LongType):  # nanoseconds since the epoch (pandas' Parquet)
        ts = F.timestamp_micros(F.expr("timestamp div 1000"))
    elif isinstance(raw.schema["timestamp"].dataType, StringType):
        ts = F.try_to_timestamp(F.trim(stamp))
    else:
        ts = stamp.cast("timestamp")
    out = raw.withColumn("ts", ts)
    flags = {"_empty_ts": stamp.isNull(), "_bad_ts": stamp.isNotNull() & F.col("ts").isNull()}
    for col in ("account_id", "event"):
        out = out.withColumn(col, F.trim(F.col(col).cast("string")))
        flags[f"_bad_{col}"] = F.col(col).isNull() | (F.col(col) == "")
    user = F.trim(F.col("user_id").cast("string")) if "user_id" in types else F.lit(None).cast("string")
    out = out.withColumn("user_id", F.when(user != "", user))
    for col in ("count", "value"):
        number = F.col(col).try_cast("double") if col in types else F.lit(None).cast("double")
        flags[f"_bad_{col}"] = F.col(col).isNotNull() & number.isNull() if col in types else F.lit(False)
        out = out.withColumn(f"_bad_{col}", flags.pop(f"_bad_{col}")).withColumn(col, number)
    return out.withColumns(flags).drop("timestamp")


def clean_events(spark: SparkSession, raw: DataFrame, accounts: pd.DataFrame) -> CleanEvents:
    """Type the events and drop their junk by the rules of `features.tables.validate_tables`.

    Exact duplicates, then events of accounts `accounts` lacks (an error past the allowed share), then
    events after the export's end (a wrong clock), then events long before their account was created.
    One pass over the raw events (`census`) counts them by day, event type and kind of junk; every
    rule is decided from that small table on the driver, then applied to the (cached) events.

    Raises:
        DataError: a bad value (named with a few rows), or too many events of unknown accounts.
    """
    from pyspark.sql import functions as F

    typed = typed_events(raw)
    row = [c for c in typed.columns if c not in CHECKS]
    distinct = typed.groupBy(*row).agg(F.count(F.lit(1)).alias("_copies"), *[F.max(c).alias(c) for c in CHECKS])
    known = spark.createDataFrame(
        pd.DataFrame({"account_id": accounts["account_id"].astype(str), "created": accounts["created_at"]})
    )
    joined = (
        distinct.join(F.broadcast(known), "account_id", "left")
        .withColumns(
            {
                "_known": F.col("created").isNotNull(),
                "_early": F.coalesce(
                    F.col("ts") < F.col("created") - F.expr(f"INTERVAL {EARLY_DAYS} DAYS"), F.lit(False)
                ),
                "day": F.datediff(F.to_date("ts"), F.lit(EPOCH.date())),
                "count": F.coalesce(F.col("count"), F.lit(1.0)),
            }
        )
        .persist()
    )
    counts = census(joined)
    check_values(typed, counts)
    rows, distinct_rows = int(counts["copies"].sum()), int(counts["n"].sum())
    unknown = int(counts.loc[~counts["known"], "n"].sum())
    stray = unknown_events(joined, unknown, distinct_rows)
    counts = counts[counts["known"]]
    cutoff = export_cutoff(counts)
    late = counts["day"] >= cutoff if cutoff is not None else pd.Series(False, index=counts.index)
    kept = counts[~late & ~counts["early"]]
    frame = joined.where(F.col("_known") & ~F.col("_early"))
    if cutoff is not None:
        frame = frame.where(F.col("ts") < F.lit(cutoff.to_pydatetime()))
    quality = {
        "event_rows": rows,
        "duplicate_events": rows - distinct_rows,
        "unknown_account_events": unknown,
        "unknown_event_accounts": stray,
        "future_events": int(counts.loc[late, "n"].sum()),
        "future_first": str(counts.loc[late, "day"].min().date()) if late.any() else None,
        "export_end": str(kept["hi"].max().date()) if late.any() and len(kept) else None,
        "early_events": int(counts.loc[~late & counts["early"], "n"].sum()),
    }
    keep = [c for c in row if c != "ts"] + ["ts", "day"]
    return CleanEvents(frame.select(*dict.fromkeys(keep)), event_extremes(kept), quality)


def census(joined: DataFrame) -> pd.DataFrame:
    """Distinct events (`n`) and rows read (`copies`) per day, event type, known account, early and bad value.

    With first and last timestamp and a user id: a few rows per day and event type whatever the
    number of events, small enough for the driver.
    """
    from pyspark.sql import functions as F

    keys = [F.to_date("ts").alias("day"), "event", F.col("_known").alias("known"), F.col("_early").alias("early")]
    out = (
        joined.groupBy(*keys, *CHECKS)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("_copies").alias("copies"),
            F.min("ts").alias("lo"),
            F.max("ts").alias("hi"),
            F.max("user_id").alias("user_id"),
        )
        .toPandas()
    )
    for col in ("day", "lo", "hi"):
        out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
    return out.astype({"known": bool, "early": bool, **dict.fromkeys(CHECKS, bool)})


def check_values(typed: DataFrame, counts: pd.DataFrame) -> None:
    """Refuse events with an empty id, event or timestamp, or a count or value that is not a number, naming rows."""
    from pyspark.sql import functions as F

    for flag, (col, problem) in CHECKS.items():
        n = int(counts.loc[counts[flag], "copies"].sum())
        if n:
            shown = "; ".join(
                ", ".join(f"{c}={row[c]!r}" for c in ("account_id", "event", "ts"))
                for row in typed.where(F.col(flag)).limit(EXAMPLES).collect()
            )
            raise DataError(f"events.{col}: {problem} in {n} row(s), e.g. {shown}")


def unknown_events(joined: DataFrame, unknown: int, rows: int) -> dict[str, int]:
    """Dropped rows per unknown account id (most first); a DataError when their share says the key is broken."""
    from pyspark.sql import functions as F

    if not unknown:
        return {}
    share = unknown_share_limit()
    stray = joined.where(~F.col("_known"))
    if unknown / rows > share:
        shown = "; ".join(
            f"account_id={r['account_id']!r}, event={r['event']!r}" for r in stray.limit(EXAMPLES).collect()
        )
        raise DataError(
            f"events.account_id: account not found in accounts ({unknown / rows:.1%} of the rows, more than the "
            f"{share:.1%} that TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE allows to drop: is the join key broken?) in "
            f"{unknown} row(s), e.g. {shown}"
        )
    counts = stray.groupBy("account_id").count().collect()
    return {str(r[0]): int(r[1]) for r in sorted(counts, key=lambda r: (-r[1], str(r[0])))}


def export_cutoff(counts: pd.DataFrame) -> pd.Timestamp | None:
    """The first day after the export's end, found as `features.tables.drop_future` finds it (None: no clock errors).

    The bulk's end (the `BULK_SHARE` quantile of the known accounts' timestamps, exact) comes from the census.
    """
    per_day = counts.groupby("day", sort=True).agg(n=("n", "sum"), lo=("lo", "min"), hi=("hi", "max")).reset_index()
    if per_day.empty:
        return None
    days = per_day["day"].to_numpy()
    bulk = quantile_day(per_day, BULK_SHARE)
    return future_cutoff(days[days >= bulk.to_datetime64()])


def quantile_day(per_day: pd.DataFrame, q: float) -> pd.Timestamp:
    """The day of the q-quantile of all timestamps (linear interpolation, as pandas), from a per-day histogram.

    The two order statistics around the quantile's position are each a day's first or last event,
    or lie inside one day: either way the histogram holds all the quantile needs.
    """
    ends = per_day["n"].cumsum().to_numpy()
    position = q * (ends[-1] - 1)
    lo, hi = int(np.floor(position)), int(np.ceil(position))
    day_lo, day_hi = np.searchsorted(ends, lo, side="right"), np.searchsorted(ends, hi, side="right")
    if day_lo == day_hi:
        return pd.Timestamp(per_day["day"][day_lo]).normalize()
    a, b = pd.Timestamp(per_day["hi"][day_lo]), pd.Timestamp(per_day["lo"][day_hi])
    return (a + (b - a) * (position - lo)).normalize()


def event_extremes(kept: pd.DataFrame) -> pd.DataFrame:
    """Each event type's first and last event, with a user id where the type has any: `Tables.events` under Spark."""
    ends = kept.groupby("event").agg(first=("lo", "min"), last=("hi", "max"), user_id=("user_id", "max")).reset_index()
    rows = pd.concat([ends.rename(columns={"first": "timestamp"}), ends.rename(columns={"last": "timestamp"})])
    rows = rows.assign(account_id="", count=1.0, value=np.nan)
    return rows[["account_id", "timestamp", "event", "user_id", "count", "value"]].reset_index(drop=True)


@dataclass
class SparkWindows:
    """The window metrics of a `MetricSet`, computed by Spark from cleaned events (`Tables.windows`)."""

    events: DataFrame  # cleaned: account_id, event, user_id, count, value, ts, day
    accounts: pd.Series  # every account, so accounts without events get their zeros as in the numpy engine
    event_types: tuple[str, ...]  # the types in the cleaned events: what an empty filter's distinct_events counts

    def __call__(self, metrics: MetricSet, dates: pd.DatetimeIndex) -> pd.DataFrame:
        """All window metrics for every (as-of date, account), as `features.engine.window_metrics` gives them."""
        windows = list(metrics.windows)
        plain = [m for m in windows if m.agg not in USER_AGGREGATES]
        users = [m for m in windows if m.agg in USER_AGGREGATES]
        found = (plain_metrics(self, plain, dates), user_metrics(self.events, users, dates))
        grid = pd.MultiIndex.from_product([range(len(dates)), self.accounts.astype(str)], names=["d", "account_id"])
        frame = pd.DataFrame(index=grid)
        for part in found:
            if part is not None:
                frame = frame.join(part.set_index(["d", "account_id"]))
        keys = {"account_id": grid.get_level_values(1).to_numpy(), "as_of": dates[grid.get_level_values(0)].to_numpy()}
        return pd.DataFrame(keys | {m.name: metric_values(frame, m) for m in windows})


def metric_values(frame: pd.DataFrame, metric: Metric) -> np.ndarray:
    """One metric's column from the collected aggregates, with the numpy engine's value where nothing happened."""
    name = metric.name
    if metric.agg in RATIOS:
        num, den = (frame[f"{name}:{part}"].astype(float) for part in RATIOS[metric.agg])
        return np.where(den > 0, num / den.where(den > 0), np.nan)
    values = frame[name].astype(float) if name in frame else pd.Series(np.nan, index=frame.index)
    return values.fillna(0.0).to_numpy() if metric.agg in COUNTING_AGGREGATES else values.to_numpy()


RATIOS = {"mean_value": ("vsum", "vn"), "top_user_share": ("top", "total")}  # divided on the driver, as numpy does


def filter_column(events: tuple[str, ...]) -> Column:
    """The condition an event filter sets on an event row (an empty filter: every event)."""
    from pyspark.sql import functions as F

    return F.col("event").isin(list(events)) if events else F.lit(True)


def date_table(events: DataFrame, dates: pd.DatetimeIndex) -> DataFrame:
    """The as-of dates as rows: index `d` and `end` (the as-of date as a day number, like the events' `day`)."""
    days = ((dates - EPOCH).days).astype(int)
    return events.sparkSession.createDataFrame(
        pd.DataFrame({"d": np.arange(len(dates), dtype=np.int64), "end": days.to_numpy(dtype=np.int64)})
    )


def by_date(rows: DataFrame, dates: DataFrame, lookback: int) -> DataFrame:
    """Each day row joined to the as-of dates it can count for: strictly before the date, within the look-back."""
    from pyspark.sql import functions as F

    cond = (F.col("day") < F.col("end")) & (F.col("day") >= F.col("end") - F.lit(lookback))
    return rows.join(F.broadcast(dates), cond)


@dataclass(frozen=True)
class Window:
    """A metric's day bounds as Spark columns of the joined (day, as-of date) rows: [start, stop), read from reach."""

    metric: Metric

    @property
    def stop(self) -> Column:
        from pyspark.sql import functions as F

        return F.col("end") - F.lit(self.metric.offset_days)

    @property
    def start(self) -> Column:
        from pyspark.sql import functions as F

        return self.stop - F.lit(self.metric.window_days)

    @property
    def reach(self) -> Column:
        from pyspark.sql import functions as F

        return F.col("end") - F.lit(self.metric.span_days)

    @property
    def inside(self) -> Column:
        from pyspark.sql import functions as F

        return (F.col("day") >= self.start) & (F.col("day") < self.stop)


def plain_metrics(source: SparkWindows, metrics: list[Metric], dates: pd.DatetimeIndex) -> pd.DataFrame | None:
    """Every aggregate but the per-user ones, each a conditional aggregate over (account, day) rows."""
    from pyspark.sql import functions as F

    if not metrics:
        return None
    filters = sorted({m.events for m in metrics})
    code = {f: i for i, f in enumerate(filters)}
    typed = sorted({t for m in metrics if m.agg == "distinct_events" for t in m.events or source.event_types})
    daily = source.events.groupBy("account_id", "day").agg(
        *[
            agg
            for f, i in code.items()
            for agg in (
                F.sum(F.when(filter_column(f), F.col("count"))).alias(f"n{i}"),
                F.sum(F.when(filter_column(f), F.coalesce(F.col("value"), F.lit(0.0)))).alias(f"v{i}"),
                F.sum(F.when(filter_column(f) & F.col("value").isNotNull(), 1.0)).alias(f"k{i}"),
                F.max(F.when(filter_column(f), F.lit(1))).alias(f"a{i}"),
            )
        ],
        *[F.max(F.when(F.col("event") == t, F.lit(1))).alias(f"t{j}") for j, t in enumerate(typed)],
    )
    joined = by_date(daily, date_table(source.events, dates), max(m.span_days for m in metrics))
    aggs = []
    for m in metrics:
        i, w = code[m.events], Window(m)
        active = w.inside & (F.col(f"a{i}") == 1)
        if m.agg == "count":
            aggs.append(F.sum(F.when(w.inside, F.col(f"n{i}"))).alias(m.name))
        elif m.agg == "sum_value":
            aggs.append(F.sum(F.when(w.inside, F.col(f"v{i}"))).alias(m.name))
        elif m.agg == "active_days":
            aggs.append(F.sum(F.when(active, F.lit(1))).alias(m.name))
        elif m.agg == "mean_value":
            aggs.append(F.sum(F.when(w.inside, F.col(f"v{i}"))).alias(f"{m.name}:vsum"))
            aggs.append(F.sum(F.when(w.inside, F.col(f"k{i}"))).alias(f"{m.name}:vn"))
        elif m.agg == "days_since_last":
            aggs.append((F.max(w.stop) - F.max(F.when(active, F.col("day")))).alias(m.name))
        elif m.agg == "distinct_events":
            kinds = [typed.index(t) for t in (m.events or source.event_types)]
            seen = [F.coalesce(F.max(F.when(w.inside & (F.col(f"t{j}") == 1), 1)), F.lit(0)) for j in kinds]
            aggs.append(sum(seen[1:], seen[0]).alias(m.name) if seen else F.lit(0).alias(m.name))
        else:
            raise DataError(f"metric {m.name!r}: the Spark engine cannot compute the aggregate {m.agg!r}")
    return joined.groupBy("account_id", "d").agg(*aggs).toPandas()


def user_metrics(events: DataFrame, metrics: list[Metric], dates: pd.DatetimeIndex) -> pd.DataFrame | None:
    """The per-user aggregates (`USER_AGGREGATES`): one figure per user and date, then one per account and date.

    As in the numpy engine: a user is active in a window when their last day before its stop is inside
    it, lapsed when that day falls in the window before, new when their first day since the metric's
    reach is inside it; the top user's share divides the largest user's count by all users' count.
    """
    from pyspark.sql import functions as F

    if not metrics:
        return None
    filters = sorted({m.events for m in metrics})
    code = {f: i for i, f in enumerate(filters)}
    user_days = (
        events.where(F.col("user_id").isNotNull())
        .groupBy("account_id", "user_id", "day")
        .agg(
            *[F.max(F.when(filter_column(f), F.lit(1))).alias(f"a{i}") for f, i in code.items()],
            *[F.sum(F.when(filter_column(f), F.col("count"))).alias(f"c{i}") for f, i in code.items()],
        )
    )
    joined = by_date(user_days, date_table(events, dates), max(m.span_days for m in metrics))
    per_user, per_account = {}, []
    for m in metrics:
        i, w = code[m.events], Window(m)
        active = F.col(f"a{i}") == 1
        if m.agg in ("distinct_users", "lapsed_users"):
            key = f"last{i}_{m.offset_days}"
            per_user[key] = F.max(F.when(active & (F.col("day") < w.stop), F.col("day")))
            counted = (
                F.col(key) >= w.start if m.agg == "distinct_users" else (F.col(key) >= w.reach) & (F.col(key) < w.start)
            )
            per_account.append(F.sum(F.when(counted, F.lit(1))).alias(m.name))
        elif m.agg == "new_users":
            key = f"first{i}_{m.offset_days}_{m.span_days}"
            per_user[key] = F.min(F.when(active & (F.col("day") >= w.reach) & (F.col("day") < w.stop), F.col("day")))
            per_account.append(F.sum(F.when(F.col(key) >= w.start, F.lit(1))).alias(m.name))
        elif m.agg == "top_user_share":
            key = f"n{i}_{m.offset_days}_{m.window_days}"
            per_user[key] = F.sum(F.when(w.inside, F.col(f"c{i}")))
            per_account += [F.max(key).alias(f"{m.name}:top"), F.sum(key).alias(f"{m.name}:total")]
        else:
            raise DataError(f"metric {m.name!r}: the Spark engine cannot compute the aggregate {m.agg!r}")
    users = joined.groupBy("account_id", "user_id", "d", "end").agg(*[c.alias(k) for k, c in per_user.items()])
    return users.groupBy("account_id", "d").agg(*per_account).toPandas()
