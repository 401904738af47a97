"""The decision, measured: the tier policy replayed on the backtest, against what really happened.

The models are judged by how they rank; the team is judged by who got a human. Both targets'
backtests score the same (account_id, as_of) rows out of time, so on each validation as-of date
the book can be tiered exactly as `tierwise score` would have tiered it then (the same
`features.policy.place`, the team's capacity, hysteresis carried from one date to the next), and
the realised outcomes say how much of the churned ARR (ARR at T of accounts that churned) and of
the expansion ARR (ARR(T+H) - ARR(T) of accounts that grew) sat in the human-touch tiers. Three
yardsticks use the same number of places: a perfect-foresight pick (the accounts with the most
realised churned plus expansion ARR), the model's value-at-stake ranking without pools, and the
classic ARR-only segmentation (the largest accounts get humans).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from rich.table import Table

from features.build import KEYS
from features.errors import DataError
from features.policy import POOLS, TOUCHED, Standing, TierPolicy, place, top_k
from features.subscriptions import contract_state
from training.backtest import Backtest
from training.snapshots import Snapshots, uplift_peers

STRATEGIES = {  # name: what a reader sees
    "policy": "tier policy",
    "no_hysteresis": "tier policy, no hysteresis",
    "ranking": "value at stake, no pools",
    "perfect": "perfect foresight",
    "arr_only": "ARR only",
}
VALUES = ("churned", "expansion", "value")  # value = churned + expansion ARR


@dataclass
class Replay:
    """Shares of realised churned, expansion and total ARR each strategy put in front of a human.

    Attributes:
        table: one row per (scope, strategy); scope is `fold N` or `overall`; columns `places`
            (mean human places per as-of date) and the shares in `VALUES`.
        flip_rate: share of accounts whose tier changed between consecutive as-of dates, with the
            policy's hysteresis (`policy`) and without (`no_hysteresis`).
        policy: the policy replayed.
    """

    table: pd.DataFrame
    flip_rate: dict[str, float]
    policy: TierPolicy

    def share(self, scope: str, strategy: str, value: str = "value") -> float:
        """One figure of the table."""
        row = self.table[(self.table["scope"] == scope) & (self.table["strategy"] == strategy)]
        return float(row[value].iloc[0])

    def scopes(self) -> list[str]:
        """`fold 1`, ..., `overall`."""
        return list(dict.fromkeys(self.table["scope"]))

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: `coverage[_foldN]_<strategy>_<value>`, the ratio to perfect foresight, flip rates."""
        out = {}
        for scope in self.scopes():
            prefix = "coverage" if scope == "overall" else f"coverage_fold{scope.split()[-1]}"
            for strategy in STRATEGIES:
                out |= {f"{prefix}_{strategy}_{v}": self.share(scope, strategy, v) for v in VALUES}
            out[f"{prefix}_policy_vs_perfect"] = self.vs_perfect(scope)
        out["coverage_hysteresis_cost"] = self.share("overall", "no_hysteresis") - self.share("overall", "policy")
        out |= {f"tier_flip_rate_{name}": rate for name, rate in self.flip_rate.items()}
        return {k: v for k, v in out.items() if np.isfinite(v)}

    def vs_perfect(self, scope: str = "overall") -> float:
        """The policy's share of churned plus expansion ARR over the perfect-foresight pick's."""
        perfect = self.share(scope, "perfect")
        return self.share(scope, "policy") / perfect if perfect > 0 else float("nan")

    def record(self) -> dict:
        """What is logged as `coverage.json` and read back by the report ("what this capacity covered last time")."""
        return {
            "policy": {"source": self.policy.source, "capacity": self.policy.capacity},
            "strategies": STRATEGIES,
            "table": self.table.to_dict("records"),
            "vs_perfect": {scope: self.vs_perfect(scope) for scope in self.scopes()},
            "flip_rate": self.flip_rate,
        }


def replay_policy(snap: Snapshots, backtests: dict[str, Backtest], policy: TierPolicy) -> Replay:
    """Replay `policy` on the churn and growth backtests' out-of-time predictions.

    Raises:
        DataError: the two backtests did not score the same rows.
    """
    return replay(replay_rows(snap, backtests), policy)


def replay_rows(snap: Snapshots, backtests: dict[str, Backtest]) -> pd.DataFrame:
    """One row per validation (account_id, as_of): fold, ARR, lifecycle stage, both predictions, realised values.

    Expected expansion uses the uplift each account's peers achieved among its fold's training rows
    (what scoring would have known then), not the final model's, which saw the validation period.
    """
    churn, growth = (backtests[t].predictions for t in ("churn", "growth"))
    rows = churn[[*KEYS, "fold", "arr", "p", "y"]].rename(columns={"p": "churn_risk", "y": "churned"})
    rows = rows.merge(
        growth[[*KEYS, "p", "y"]].rename(columns={"p": "growth_potential", "y": "grew"}), on=KEYS, validate="1:1"
    )
    if not len(rows) == len(churn) == len(growth):
        raise DataError(
            f"coverage replay: the churn and growth backtests scored different rows ({len(churn)} and {len(growth)})"
        )
    frame = snap.frame[[*KEYS, "arr", "lifecycle_stage", "growth"]].assign(arr_later=arr_later(snap))
    rows = rows.merge(frame[[*KEYS, "lifecycle_stage", "arr_later"]], on=KEYS, how="left", validate="1:1")
    rows["churned_arr"] = rows["arr"] * rows["churned"]
    rows["expansion_arr"] = (rows["arr_later"] - rows["arr"]).clip(lower=0).fillna(0.0) * rows["grew"]
    rows["arr_at_risk"] = rows["churn_risk"] * rows["arr"]
    rows["expected_expansion"] = rows["growth_potential"] * rows["arr"] * fold_uplift(snap, rows, backtests["churn"])
    return rows


def arr_later(snap: Snapshots) -> np.ndarray:
    """ARR(T + H) of each snapshot row (NaN where the account is no longer in force)."""
    frame, shift = snap.frame, pd.Timedelta(days=snap.horizon_days)
    later = contract_state(snap.tables.subscriptions, pd.DatetimeIndex(frame["as_of"].unique()) + shift)
    later = later.assign(as_of=later["as_of"] - shift)[[*KEYS, "arr"]]
    return frame[KEYS].merge(later, on=KEYS, how="left")["arr"].to_numpy(dtype=float)


def fold_uplift(snap: Snapshots, rows: pd.DataFrame, backtest: Backtest) -> np.ndarray:
    """Each replay row's peer uplift, learnt from its fold's training rows as the final model's is from all."""
    features = rows[KEYS].merge(snap.frame, on=KEYS, how="left", validate="1:1")
    out = np.full(len(rows), np.nan)
    for fold in backtest.folds:
        here = (rows["fold"] == fold.index).to_numpy()
        out[here] = uplift_peers(snap, fold.train).uplift(features[here])
    return out


def replay(rows: pd.DataFrame, policy: TierPolicy) -> Replay:
    """Tier every as-of date in time order, hysteresis carried over, and total what each strategy covered.

    Args:
        rows: `replay_rows` output (any frame with those columns: `account_id, as_of, fold, arr,
            arr_at_risk, expected_expansion, lifecycle_stage, churned_arr, expansion_arr`).
        policy: the team's policy.
    """
    held: dict[str, dict[str, object]] = {"policy": {}, "no_hysteresis": {}}
    flips = {name: [0, 0] for name in held}  # changed, compared
    totals = []
    for (as_of, fold), day in rows.groupby(["as_of", "fold"], sort=True):
        ids = day["account_id"].astype(str).to_numpy(dtype=object)
        tiers = {
            "policy": place(Standing.of(day, [held["policy"].get(a) for a in ids]), policy),
            "no_hysteresis": place(Standing.of(day, np.full(len(ids), None, dtype=object)), policy),
        }
        for name, tier in tiers.items():
            before = np.array([held[name].get(a) for a in ids], dtype=object)
            known = before != None  # noqa: E711 (element-wise)
            flips[name][0] += int((before[known] != tier[known]).sum())
            flips[name][1] += int(known.sum())
            held[name] = dict(zip(ids, tier, strict=True))
        touched = {name: np.isin(tier, TOUCHED) for name, tier in tiers.items()}
        places = int(touched["policy"].sum())
        realised = (day["churned_arr"] + day["expansion_arr"]).to_numpy(dtype=float)
        everyone = np.ones(len(ids), dtype=bool)
        for name, rank in (
            ("ranking", day["arr_at_risk"] + day["expected_expansion"]),
            ("perfect", realised),
            ("arr_only", day["arr"]),
        ):
            touched[name] = top_k(np.asarray(rank, dtype=float), ids, everyone, places)
        for name, mask in touched.items():
            totals.append(
                {"as_of": as_of, "fold": fold, "strategy": name, "places": places}
                | {f"{v}_covered": float(day.loc[mask, f"{v}_arr"].sum()) for v in VALUES[:2]}
                | {f"{v}_total": float(day[f"{v}_arr"].sum()) for v in VALUES[:2]}
            )
    by_date = pd.DataFrame(totals)
    table = pd.concat(
        [shares(part, f"fold {fold}") for fold, part in by_date.groupby("fold")] + [shares(by_date, "overall")],
        ignore_index=True,
    )
    return Replay(table, {name: c / n if n else float("nan") for name, (c, n) in flips.items()}, policy)


def shares(by_date: pd.DataFrame, scope: str) -> pd.DataFrame:
    """Per strategy: mean places per date and the covered shares of churned, expansion and total ARR."""
    sums = by_date.groupby("strategy", sort=False)[[c for c in by_date if c.endswith(("_covered", "_total"))]].sum()
    out = pd.DataFrame({"scope": scope, "strategy": sums.index})
    out["places"] = by_date.groupby("strategy", sort=False)["places"].mean().to_numpy()
    for v in VALUES[:2]:
        out[v] = (sums[f"{v}_covered"] / sums[f"{v}_total"].where(sums[f"{v}_total"] > 0)).to_numpy()
    both = sums["churned_total"] + sums["expansion_total"]
    out["value"] = ((sums["churned_covered"] + sums["expansion_covered"]) / both.where(both > 0)).to_numpy()
    return out


def log_replay(result: Replay) -> None:
    """Log the metrics, the table (`coverage.json`) and the policy file replayed with the active run."""
    mlflow.log_metrics(result.metrics())
    mlflow.log_dict(result.record(), "coverage.json")
    capacity = {f"capacity_{pool}": result.policy.capacity[pool] for pool in POOLS}
    mlflow.log_params({"tier_policy": result.policy.source} | capacity)
    if result.policy.source:
        mlflow.log_artifact(result.policy.source, artifact_path="tier_policy")


def coverage_table(result: Replay) -> Table:
    """The rich table `tierwise train` prints: share of churned + expansion ARR in human hands, per fold."""
    cap = ", ".join(f"{p} {result.policy.capacity[p]:,}" for p in POOLS)
    table = Table(
        title=f"tier policy replayed on the backtest ({cap}): share of realised ARR in human-touch tiers",
        title_justify="left",
    )
    folds = [s for s in result.scopes() if s != "overall"]
    for col in ["strategy", "places", *folds, "churned", "expansion", "value"]:
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for strategy, label in STRATEGIES.items():
        shares_ = [result.share(s, strategy) for s in folds] + [result.share("overall", strategy, v) for v in VALUES]
        places = result.share("overall", strategy, "places")
        style = "bold" if strategy == "policy" else None
        table.add_row(label, f"{places:,.0f}", *[f"{x:.1%}" for x in shares_], style=style)
    flips = ", ".join(f"{k.replace('_', ' ')} {v:.1%}" for k, v in result.flip_rate.items())
    table.caption = (
        f"policy / perfect foresight: {result.vs_perfect():.2f} (value); tier changes between as-of dates: {flips}"
    )
    return table
