"""`tierwise monitor`: every monitoring figure and alarm for a data folder and the score history.

`run_monitor` reads the tables, the history and MLflow, and returns a `Monitoring`: realised against
promised performance per model version, the estimate for batches still waiting for outcomes, drift of
the newest batch, data freshness, the alarms (`degraded`, `drift`, `stale`) with their evidence, and the
retraining advice. The CLI writes it as JSON and HTML and logs it to MLflow; a console page can render
the same object (`Monitoring.summary()` is plain data).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from features.build import build_features
from features.errors import DataError
from features.io import write_text
from features.tables import Tables, fail_rows, load_tables
from monitoring import drift as dr
from monitoring import freshness as fr
from monitoring import runs
from monitoring.estimate import Estimate, estimate
from monitoring.realised import CONFIDENCE, Realised, is_matured, judge, label_window_days, outcomes, realised
from tierwise import settings

CONDITIONS = ("degraded", "drift", "stale")
SCORE_COLUMNS = ("account_id", "as_of", "churn_risk", "arr", "churn_model_version")
SILENCE_LOOKBACK_DAYS = 91  # silent accounts now are compared with a quarter earlier


@dataclass(frozen=True)
class MonitorConfig:
    """The limits monitoring judges by (docs/monitoring.md)."""

    silent_days: int = 30  # an account with no event for this long counts as silent
    max_batch_age_days: int = field(default_factory=settings.max_score_age_days)  # newest batch older: stale
    top_features: int = 10  # a major drift in one of these raises `drift`
    confidence: float = CONFIDENCE  # of the degraded rule, per version


@dataclass
class Alarm:
    """One condition that holds, what it is about, and the figures that show it."""

    condition: str  # one of CONDITIONS
    subject: str
    evidence: str


@dataclass
class VersionReport:
    """One churn model version: what its backtest promised and how its judged batches turned out."""

    version: str
    run_id: str | None
    horizon_days: int | None
    label_window_days: int | None  # a batch's outcomes are all known this many days after its as-of date
    promised: dict[str, float]
    realised: list[Realised]
    pending: list[str]  # as-of dates still inside their label window
    note: str = ""

    @property
    def degraded(self) -> bool:
        return any(b.degraded for b in self.realised)


@dataclass
class Drift:
    """The newest batch against the training window (features) and the version's first batch (risk)."""

    as_of: str
    version: str
    features: list[dr.FeatureDrift]
    prediction_psi: float | None  # None with no earlier batch of the version to compare with
    reference_as_of: str | None
    new_event_types: list[str]  # in the data, unknown to the model's metrics
    note: str = ""


@dataclass
class Monitoring:
    """Everything `tierwise monitor` reports; `summary()` is the JSON."""

    data_end: str  # the day after the last event: "now" for the data
    history: str
    batches: int
    latest_batch: str | None
    versions: list[VersionReport]
    estimates: list[Estimate]  # batches still waiting for outcomes, newest last
    drift: Drift | None
    latest_rows: dict[str, str]  # the newest date of each table
    streams: list[fr.Stream]
    silence: fr.Silence
    silence_before: fr.Silence
    alarms: list[Alarm] = field(default_factory=list)
    retrain: list[str] = field(default_factory=list)  # why a retrain is due; empty: not due
    ran_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))  # when (UTC)

    def holds(self, condition: str) -> bool:
        """Whether any alarm of `condition` was raised."""
        return any(a.condition == condition for a in self.alarms)

    def summary(self) -> dict:
        """Plain JSON-ready data (NaN as None): what schedulers and a console page read."""
        return finite(
            asdict(self)
            | {
                "conditions": {c: self.holds(c) for c in CONDITIONS},
                "retrain_due": bool(self.retrain),
                "silence": asdict(self.silence) | {"share": self.silence.share},
                "silence_before": asdict(self.silence_before) | {"share": self.silence_before.share},
            }
        )


def save_summary(result: Monitoring, path: Path | str) -> Path:
    """Write `result.summary()` as JSON to `path`, atomically (a reader never sees half a file); returns the path."""
    return write_text(json.dumps(result.summary(), indent=2), path)


def finite(value):
    """`value` with every non-finite float replaced by None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def run_monitor(
    data_dir: Path | str, history: str | Path | None = None, config: MonitorConfig | None = None
) -> Monitoring:
    """Monitor the score history against the data folder and the MLflow store.

    Args:
        data_dir: the current export (accounts, subscriptions, events): its outcomes judge past batches.
        history: the score history (default: `serving.history.history_root()`).
        config: limits (default `MonitorConfig()`).

    Raises:
        DataError: bad tables, or an empty or unreadable history.
    """
    from serving import history as hist

    tables = load_tables(data_dir)
    root = history if history is not None else hist.history_root()
    listing = hist.batches(root)
    if listing.empty:
        raise DataError(f"score history {root}: no batches yet (`tierwise score` publishes one per run)")
    scores = pd.concat([hist.read_batch(d, root) for d in listing["as_of"]], ignore_index=True)
    return monitor_scores(tables, scores, str(root), config or MonitorConfig())


def monitor_scores(tables: Tables, scores: pd.DataFrame, source: str, config: MonitorConfig) -> Monitoring:
    """Every figure from validated tables and the history's rows (the score output, all batches)."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise DataError(f"score history {source}: rows lack column(s) {', '.join(missing)}")
    risk = pd.to_numeric(scores["churn_risk"], errors="coerce")
    fail_rows(f"score history {source}", "churn_risk", ~risk.between(0, 1), scores, "not a probability")
    scores = scores.assign(
        as_of=pd.to_datetime(scores["as_of"]).dt.normalize(),
        churn_risk=risk,
        arr=pd.to_numeric(scores["arr"], errors="coerce").fillna(0.0),
        churn_model_version=scores["churn_model_version"].astype(str),
    )
    data_end = tables.data_end
    records = {v: runs.version_record(v) for v in sorted(scores["churn_model_version"].unique(), key=version_key)}
    versions, estimates = [], []
    for version, record in records.items():
        rows = scores[scores["churn_model_version"] == version]
        report, pending = version_report(tables, data_end, rows, version, record, config)
        versions.append(report)
        estimates += pending
    latest = scores["as_of"].max()
    now = fr.silent_accounts(tables.events, tables.subscriptions, data_end, config.silent_days)
    before = fr.silent_accounts(
        tables.events, tables.subscriptions, data_end - pd.Timedelta(days=SILENCE_LOOKBACK_DAYS), config.silent_days
    )
    result = Monitoring(
        data_end=day(data_end),
        history=source,
        batches=int(scores["as_of"].nunique()),
        latest_batch=day(latest),
        versions=versions,
        estimates=sorted(estimates, key=lambda e: e.as_of),
        drift=newest_drift(tables, scores, records, config),
        latest_rows=fr.latest_rows(tables),
        streams=fr.streams(tables.events, data_end),
        silence=now,
        silence_before=before,
    )
    result.alarms = alarms(result, config, (data_end - latest).days)
    result.retrain = retrain_reasons(result)
    return result


def version_key(version: str) -> tuple:
    """Registry versions in numeric order ("10" after "9"); anything else after, by text."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def day(value) -> str:
    return str(pd.Timestamp(value).date())


def version_report(
    tables: Tables,
    data_end: pd.Timestamp,
    rows: pd.DataFrame,
    version: str,
    record: runs.VersionRecord | None,
    config: MonitorConfig,
) -> tuple[VersionReport, list[Estimate]]:
    """Realised figures of one version's matured batches and estimates of the rest."""
    dates = sorted(rows["as_of"].unique())
    if record is None:
        note = f"version {version} is not in the tracking store {settings.tracking_store()}: nothing to judge it by"
        return VersionReport(version, None, None, None, {}, [], [day(d) for d in dates], note), []
    matured = [d for d in dates if is_matured(d, data_end, record.horizon_days, record.rules)]
    judged = []
    if matured:
        labelled = outcomes(tables.subscriptions, rows[rows["as_of"].isin(matured)], record.horizon_days, record.rules)
        judged = [realised(group, day(d), version) for d, group in labelled.groupby("as_of", sort=True)]
        for b in judged:
            b.seen_in_training = bool(record.train_last_as_of) and b.as_of <= record.train_last_as_of
    judge(judged, record.promised.get("roc_auc", float("nan")), config.confidence)
    pending = [d for d in dates if d not in matured]
    estimates = [
        estimate(rows.loc[rows["as_of"] == d, "churn_risk"].to_numpy(dtype=float), day(d), version) for d in pending
    ]
    window = label_window_days(record.horizon_days, record.rules)
    report = VersionReport(
        version, record.run_id, record.horizon_days, window, record.promised, judged, [day(d) for d in pending]
    )
    return report, estimates


def newest_drift(
    tables: Tables, scores: pd.DataFrame, records: dict[str, runs.VersionRecord | None], config: MonitorConfig
) -> Drift | None:
    """Drift of the newest batch for the version that scored most of it."""
    from serving.registry import CHURN, load_bundle

    latest = scores["as_of"].max()
    newest = scores[scores["as_of"] == latest]
    version = newest["churn_model_version"].mode().iloc[0]
    record = records.get(version)
    if record is None:
        return None
    own = scores[scores["churn_model_version"] == version]
    first = own["as_of"].min()
    reference = own.loc[own["as_of"] == first, "churn_risk"].to_numpy(dtype=float) if first < latest else None
    prediction = None if reference is None else dr.prediction_drift(reference, newest["churn_risk"].to_numpy(float))
    bundle, _ = load_bundle(CHURN, version)
    known = {e for m in bundle.metrics.windows for e in m.events}
    seen = sorted(map(str, tables.events["event"].unique()))
    report = Drift(day(latest), version, [], prediction, day(first) if reference is not None else None, [])
    report.new_event_types = [e for e in seen if known and e not in known]
    profile = runs.training_profile(record.run_id)
    if profile is None:
        report.note = "the version's training run logged no feature profile (trained before profiles): no feature drift"
        return report
    frame = build_features(recent_events(tables, latest, bundle.metrics), [latest], metrics=bundle.metrics).frame
    ranking = dr.importance_ranking(bundle.booster, bundle.features)
    report.features = dr.feature_drift(profile, frame, ranking, config.top_features)
    return report


def recent_events(tables: Tables, as_of: pd.Timestamp, metrics) -> Tables:
    """`tables` with only the events the longest metric window before `as_of` can see.

    Why: the features of one date read a few months of events, but encoding the whole history first
    was most of a monitor run on a large book. Every window ends before `as_of` and starts at most
    `window + offset` days before it, so the features are the same (a test checks it).
    """
    reach = max((m.window_days + m.offset_days for m in metrics.windows), default=0)
    events = tables.events
    return replace(tables, events=events[events["timestamp"] >= as_of - pd.Timedelta(days=reach)])


def alarms(result: Monitoring, config: MonitorConfig, batch_age_days: int) -> list[Alarm]:
    """Each condition that holds, named with its evidence."""
    out = []
    for v in result.versions:
        bad = [b for b in v.realised if b.degraded]
        if bad:
            figures = "; ".join(
                f"as of {b.as_of}: realised ROC AUC {b.roc_auc:.3f} + margin {b.margin:.3f} < promised "
                f"{v.promised['roc_auc']:.3f} ({b.churned} churned of {b.rows})"
                for b in bad
            )
            out.append(Alarm("degraded", f"tierwise-churn v{v.version}", figures))
    d = result.drift
    if d is not None:
        for f in d.features:
            if f.top and f.psi >= dr.MAJOR_PSI:
                out.append(
                    Alarm(
                        "drift",
                        f"feature {f.feature}",
                        f"PSI {f.psi:.2f} between the training window and the batch as of {d.as_of} "
                        f"(importance rank {f.importance_rank} of v{d.version})",
                    )
                )
        if d.prediction_psi is not None and d.prediction_psi >= dr.MAJOR_PSI:
            out.append(
                Alarm(
                    "drift",
                    "churn risk",
                    f"PSI {d.prediction_psi:.2f} between the batches as of {d.reference_as_of} and {d.as_of}",
                )
            )
    for s in result.streams:
        if s.status == "stopped":
            evidence = f"no event since {s.since} (last on {s.last_seen}; {s.rate_before:.1f} a day before)"
            out.append(Alarm("stale", f"{s.kind} {s.name}", evidence))
        elif s.status == "collapsed":
            evidence = f"from {s.since}: {s.rate_after:.1f} a day, down from {s.rate_before:.1f}"
            out.append(Alarm("stale", f"{s.kind} {s.name}", evidence))
    now, before = result.silence, result.silence_before
    if fr.silence_grew(now, before):
        out.append(
            Alarm(
                "stale",
                "accounts",
                f"{now.silent} of {now.in_force} accounts under contract ({now.share:.0%}) had no event in the "
                f"{now.days} days before {now.on}, against {before.share:.0%} on {before.on}",
            )
        )
    if batch_age_days > config.max_batch_age_days:
        out.append(
            Alarm(
                "stale",
                f"batch {result.latest_batch}",
                f"the newest score batch is {batch_age_days} days older than the data (limit "
                f"{config.max_batch_age_days}): score the book again",
            )
        )
    return out


def retrain_reasons(result: Monitoring) -> list[str]:
    """Why a retrain is due (empty: not due): the model in use degraded, top features drifted, new events."""
    reasons = []
    current = result.drift.version if result.drift else None
    for v in result.versions:
        if v.degraded and v.version == current:
            reasons.append(f"v{v.version} is degraded: its realised ROC AUC fell below its backtest's")
    if result.drift is not None:
        drifted = [f.feature for f in result.drift.features if f.top and f.psi >= dr.MAJOR_PSI]
        if drifted:
            reasons.append(f"major drift in top features: {', '.join(drifted)}")
        if result.drift.new_event_types:
            reasons.append(f"event types the model has never seen: {', '.join(result.drift.new_event_types)}")
    if reasons and any(a.condition == "stale" for a in result.alarms):
        reasons.append("but fix the stale data first: a model retrained on broken tracking learns the breakage")
    return reasons


def log_monitoring(result: Monitoring) -> dict[str, str]:
    """Log each known version's figures to MLflow (a run tagged with the version); returns version -> run id.

    Realised figures are logged per judged batch (step = the batch's position, oldest first); the
    version that scored the newest batch also gets the estimate of that batch and its drift.
    """
    logged = {}
    summary = result.summary()
    for v, part in zip(result.versions, summary["versions"], strict=True):
        if v.run_id is None:
            continue
        steps = [
            {f"realised_{k}": getattr(b, k) for k in ("roc_auc", "pr_auc", "brier", "lift_top_decile")}
            | {"realised_arr_recall_touched": b.arr_recall_touched, "degraded_margin": b.margin, "churned": b.churned}
            for b in v.realised
        ]
        latest = {}
        if result.drift is not None and result.drift.version == v.version:
            newest = [e for e in result.estimates if e.as_of == result.drift.as_of and e.version == v.version]
            if newest:
                latest |= {f"estimated_{k}": getattr(newest[0], k) for k in ("roc_auc", "pr_auc", "brier")}
            if result.drift.features:
                latest["max_top_feature_psi"] = max((f.psi for f in result.drift.features if f.top), default=0.0)
            if result.drift.prediction_psi is not None:
                latest["prediction_psi"] = result.drift.prediction_psi
        if latest:
            steps.append(latest)
        status = "degraded" if v.degraded else "ok"
        logged[v.version] = runs.log_version(v.version, steps, part | {"alarms": summary["alarms"]}, status)
    return logged
