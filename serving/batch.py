"""The `tierwise score` job: every account active on a date, scored with the champion models.

Features are built point-in-time from the raw tables with the metric set logged with the churn
champion, so the model sees exactly what it was trained on. The output file and the
latest-scores store are each written whole (temp file + rename), the CSV spreadsheet-safe; the
store only takes the batch when the publish rules of `serving.store.publish` allow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from features.build import build_features
from features.io import FORMULA_STARTS, output_file, read_user_table, write_table
from features.pipeline import check_as_of
from features.tables import DataError, Engine, load_tables
from serving import reasons as rs
from serving.registry import CHURN, CHURN_TABLE, GROWTH, Models, load_bundle, load_models, resolve_version
from serving.scoring import REASONS, model_array, score_frame
from serving.store import Publication, publish
from serving.tiers import Allocation, allocation, load_policy


@dataclass(frozen=True)
class ScoreRun:
    """What a batch wrote: the output file, the scored rows (for a summary), and whether it was published."""

    out: Path
    scored: pd.DataFrame
    publication: Publication | None = None  # None: table mode, which has no store
    allocation: Allocation | None = None  # what the tiers are expected to cover (none in table mode)
    warnings: tuple[str, ...] = ()  # what loading dropped from the tables (QA accounts, duplicates, ...)

    @property
    def store(self) -> Path | None:
        """The latest-scores store the batch replaced, or None when it was not published."""
        return self.publication.store if self.publication and self.publication.published else None


def score_to_file(
    data_dir: Path,
    as_of: date,
    out: Path,
    policy_path: Path | None = None,
    previous: Path | None = None,
    model_versions: dict[str, int | None] | None = None,
    publish_scores: bool | None = None,
    engine: Engine | None = None,
) -> ScoreRun:
    """Score every account active on `as_of`, write the output file and, when the rules allow, the store.

    Args:
        data_dir: folder with the accounts, subscriptions and events tables.
        as_of: the scoring date; features see only data before it.
        out: output file, `.csv` or `.parquet`.
        policy_path: tier policy YAML (the shipped default when None).
        previous: last run's output file, for stable tiers and "what changed".
        model_versions: `{"churn": N, "growth": M}` to score with those versions instead of the champions.
        publish_scores: True or False to publish to the latest-scores store or not; None (the
            default) publishes only the champions' scores of the newest as-of date.
        engine: with `Engine("spark")`, Spark computes the features and scores the rows
            (`serving.spark_scoring`); the output is the same.

    Raises:
        DataError: bad tables, policy or previous file; no champion or unknown version; an as-of
            date after the data ends or with no active account.
    """
    output_file(out, what="--out")  # a path that cannot be written should stop the run before any work
    policy = load_policy(policy_path)  # a bad policy should stop the run before the slow part
    last = read_previous(previous) if previous else None
    versions = model_versions or {}
    with progress_bar() as progress:
        step = progress.add_task("loading models", total=None)
        models = load_models(versions.get("churn"), versions.get("growth"))
        progress.update(step, description="loading tables")
        tables = load_tables(data_dir, engine)
        check_as_of(as_of, tables.data_end)
        progress.update(step, description=f"building features as of {as_of}")
        frame = build_features(tables, [as_of], metrics=models.churn.metrics).frame
        if frame.empty:
            raise DataError(f"no account is active on {as_of}: the subscriptions have no term in force that day")
        progress.update(step, description="scoring", total=len(frame), completed=0)
        if engine is not None and engine.name == "spark":
            from features.spark_engine import spark_session
            from serving.spark_scoring import score_frame_spark

            scored = score_frame_spark(frame, models, spark_session(engine.spark_master), policy, last)
        else:
            scored = score_frame(frame, models, policy, last, on_rows=lambda n: progress.advance(step, n))
        scored = with_account_facts(scored, tables.accounts, frame)
        progress.update(step, description="writing")
        path = write_table(scored, out)
        publication = publish(scored, publish_scores, champion_gap(models, versions))
    return ScoreRun(path, scored, publication, allocation(scored, policy), tuple(tables.quality.warnings()))


ACCOUNT_FACTS = ("name", "owner", "csm")  # optional accounts-table columns the console shows, carried when present
ACTIVITY = "__count_30d"  # the feature holding each event family's count in the 30 days before the as-of date


def with_account_facts(scored: pd.DataFrame, accounts: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """The scored rows with the account's `name`/`owner`/`csm` (when the accounts table has them) and `activity_30d`.

    `activity_30d` is JSON, `{"login": 41, "support_ticket": 2, ...}`: each event family's events in
    the 30 days before the as-of date, as the features counted them. The console draws an account's
    recent activity from it across the score history, so no page has to read the events table.
    """
    facts = [c for c in ACCOUNT_FACTS if c in accounts.columns and c not in scored.columns]
    out = scored
    if facts:
        named = accounts.drop_duplicates("account_id").set_index(accounts["account_id"].astype(str))[facts]
        out = out.join(named, on="account_id")
    counts = [c for c in features.columns if c.endswith(ACTIVITY)]
    if counts:
        table = features.set_index(features["account_id"].astype(str))[counts]
        table.columns = [c.removesuffix(ACTIVITY) for c in counts]
        values = table.reindex(out["account_id"].astype(str)).to_dict("records")
        out = out.assign(
            activity_30d=[orjson.dumps({k: v for k, v in row.items() if v == v}).decode() for row in values]
        )
    return out


def champion_gap(models: Models, asked: dict[str, int | None]) -> str | None:
    """Why the models scored with are not the current champions, or None when they are."""
    gaps = []
    for name, target, used in ((CHURN, "churn", models.churn_version), (GROWTH, "growth", models.growth_version)):
        if asked.get(target) is None:  # loaded as the champion a moment ago
            continue
        try:
            champion = resolve_version(name, None)
        except DataError:
            champion = "none"
        if champion != used:
            gaps.append(f"{name} v{used} is not the champion (v{champion})")
    return "; ".join(gaps) or None


def score_table(table_path: Path, out: Path, id_col: str | None = None, version: int | None = None) -> ScoreRun:
    """Score a flat table (one row per entity, one column per feature) with the `tierwise-churn-table` model.

    Writes the id, `churn_risk`, `reason_1..5` and `reasons_json` (no tiers: a flat table carries
    no ARR or contract state to tier by).

    Args:
        id_col: the table's id column, kept in the output; default: the one the model was trained
            with (recorded in its bundle), so a table shaped like the training one needs no `--id`.

    Raises:
        DataError: the table cannot be read, lacks the id column or a model feature, or no table
            model is registered.
    """
    output_file(out, what="--out")  # before the model and the table are loaded
    with progress_bar() as progress:
        step = progress.add_task("loading model", total=None)
        bundle, version = load_bundle(CHURN_TABLE, version)
        id_col = id_col or bundle.info.get("id_column", "account_id")
        progress.update(step, description="loading table")
        table = read_user_table(table_path, "--table", (id_col,))
        progress.update(step, description="scoring")
        A = model_array(bundle, version, table)
        points, _, probability = bundle.contributions(A)
        drivers = rs.drivers(bundle, A, points, "risk")
        scored = pd.DataFrame({id_col: table[id_col].to_numpy(), "churn_risk": probability})
        scored[REASONS[: drivers.text.shape[1]]] = drivers.text
        scored["reasons_json"] = rs.reasons_json(churn=drivers)
        scored["churn_model_version"] = version
        path = write_table(scored, out)
    return ScoreRun(path, scored)


def read_previous(path: Path) -> pd.DataFrame:
    """Last run's output (CSV or Parquet), with account ids as they were before the CSV defused them.

    Raises:
        DataError: the file is missing or unreadable, or lacks `account_id`, `tier` or `churn_risk`.
    """
    previous = read_user_table(path, "previous scores", ("account_id", "tier", "churn_risk"))
    ids = previous["account_id"].astype(str)
    defused = ids.str.startswith("'") & ids.str[1:].str.startswith(FORMULA_STARTS)
    previous["account_id"] = ids.where(~defused, ids.str[1:])
    return previous


def progress_bar() -> Progress:
    """A transient rich progress bar on stderr: step name, rows done, elapsed time."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    )
