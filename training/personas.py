"""Learn adoption personas from the training snapshots (k-means on the usage mix) and keep their names stable.

Why k-means (see docs/architecture.md): every account gets exactly one persona and a persona is a point
(its centroid) that can be stored, reapplied at scoring, matched to the previous model's personas and
measured against for hysteresis. The number of personas is not fixed: for each k in `KS` the fit is
scored on quality (share of the mix's variance explained; silhouette recorded too) and stability
(prediction strength: do the personas reappear when two halves of the rows are fitted apart?); the
fewest stable personas that explain `EXPLAINED` of the variance win (`chosen_k`). Silhouette alone is
not the rule: it prefers the first, coarsest split of a book whose patterns nest (one very distinct
persona against all the rest), which hides the personas a CSM needs. A retrain maps its personas onto
the previous champion's (Hungarian matching on centroid distance) so the same pattern keeps its name.

`python -m training.personas WORLD...` measures, on demo worlds written with hidden use cases, how well
the personas recover them (ARI) and whether the persona as a model feature changes the backtest's ROC AUC.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import mlflow
import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

from features.metrics import MetricSet
from features.personas import (
    LEAD_LIFT,
    LEAD_SHARE,
    MIN_EVENTS,
    NOT_ADOPTED,
    Personas,
    UsageMix,
    usage_families,
    usage_mix,
)
from training import registry

KS = range(2, 9)  # persona counts tried
STABLE = 0.8  # prediction strength from which a k counts as stable (Tibshirani and Walther suggest 0.8-0.9)
EXPLAINED = 0.8  # share of the usage mix's variance the personas should explain
SPLITS = 3  # random halvings per k for the stability measure
MIN_ROWS = 50  # rows with at least MIN_EVENTS usage events needed to learn personas at all
MAX_ROWS = 4000  # training rows the personas are fitted on (a seeded sample of the adopted rows)
SILHOUETTE_ROWS = 2000
RULE = f"fewest personas with prediction strength >= {STABLE} explaining >= {EXPLAINED:.0%} of the mix's variance"
MATCH_MAX = 0.25  # centroid distance (square-root shares) up to which a retrained persona keeps a previous name


def learn_personas(
    frame: pd.DataFrame, metrics: MetricSet, previous: Personas | None = None, seed: int = 0
) -> Personas | None:
    """Personas from training snapshot rows (features plus `churn`/`growth` labels where known).

    None when fewer than `MIN_ROWS` rows have enough activity to have a mix: the models train and
    score as before, with an empty `persona` column, rather than personas made up from a handful of rows.

    Args:
        frame: snapshot rows (`Snapshots.frame`): the usage count columns, active days and labels.
        metrics: the metric set the rows were built with (which columns are usage).
        previous: the champion's personas, whose names a matching persona keeps.
        seed: seeds the sample, the k-means fits and the bootstraps.
    """
    families = usage_families(metrics)
    mix = usage_mix(frame, families)
    adopted = np.flatnonzero(mix.volume >= MIN_EVENTS)
    if len(adopted) < MIN_ROWS:
        return None
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(adopted, size=min(MAX_ROWS, len(adopted)), replace=False))
    X = mix.roots[rows]
    selection = {str(k): quality(X, k, seed) for k in KS if k < len(np.unique(X, axis=0)) // 2}
    if not selection:  # every active row has one of a few mixes: nothing to learn
        return None
    k = chosen_k(selection)
    centroids = KMeans(k, n_init=4, random_state=seed).fit(X).cluster_centers_
    order = np.lexsort(centroids.T[::-1])  # a fixed order for the same centroids, whatever the fit's label order
    centroids = centroids[order]
    book = mix.shares[adopted].mean(axis=0)
    personas = Personas(
        families=families,
        centroids=centroids,
        names=[""] * k,
        descriptions=[""] * k,
        book_shares=book,
        renewing_days=np.zeros((k, len(families))),
        selection={"ks": selection, "chosen": k, "rule": RULE},
    )
    members = np.where(mix.volume >= MIN_EVENTS, personas.distances(mix).argmin(axis=1), -1)
    shares = centroids**2 / (centroids**2).sum(axis=1, keepdims=True)
    fresh = [pattern_name(shares[i], book, np.median(mix.breadth[members == i])) for i in range(k)]
    personas.names = carry_names(personas, fresh, previous)
    personas.descriptions = [describe(personas, i) for i in range(k)]
    assigned = np.where(members >= 0, np.asarray(personas.names, dtype=object)[members], NOT_ADOPTED)
    personas.renewing_days = renewing_days(frame, personas, assigned)
    personas.rates = base_rates(frame, assigned)
    return personas


def quality(X: np.ndarray, k: int, seed: int) -> dict[str, float]:
    """How good and how stable k personas are on rows X.

    Quality: the share of the mix's variance the personas explain (1 - within / total sum of squares),
    and the silhouette for the record. Stability: prediction strength (Tibshirani and Walther, 2005):
    fit k-means on two random halves with different seeds, and for each persona of one half, the share
    of its pairs of rows that the other half's personas also put together; the worst persona counts,
    averaged over `SPLITS` splits. A k that only splits noise scores low: its personas do not reappear.
    """
    fit = KMeans(k, n_init=4, random_state=seed).fit(X)
    total = float(((X - X.mean(axis=0)) ** 2).sum())
    silhouette = silhouette_score(X, fit.labels_, sample_size=min(SILHOUETTE_ROWS, len(X)), random_state=seed)
    rng = np.random.default_rng(seed + k)
    strengths = []
    for split in range(SPLITS):
        order = rng.permutation(len(X))
        a, b = X[order[: len(X) // 2]], X[order[len(X) // 2 :]]
        train = KMeans(k, n_init=4, random_state=seed + 1 + split).fit(a)
        test = KMeans(k, n_init=4, random_state=seed + 101 + split).fit(b)
        strengths.append(prediction_strength(train.predict(b), test.labels_, k))
    return {
        "explained": 1.0 - float(fit.inertia_) / total if total > 0 else 0.0,
        "stability": float(np.mean(strengths)),
        "silhouette": float(silhouette),
    }


def prediction_strength(predicted: np.ndarray, own: np.ndarray, k: int) -> float:
    """The worst persona's share of row pairs (of its own fit) that another fit's centroids also keep together."""
    worst = 1.0
    for persona in range(k):
        counts = np.bincount(predicted[own == persona], minlength=k).astype(float)
        n = counts.sum()
        if n > 1:
            worst = min(worst, float((counts * (counts - 1)).sum() / (n * (n - 1))))
    return worst


def chosen_k(selection: Mapping[str, Mapping[str, float]]) -> int:
    """The fewest stable personas that explain `EXPLAINED` of the variance, else the stable k explaining most.

    With no stable k at all (a book without a persona structure), the most stable k.
    """
    stable = {int(k): q for k, q in selection.items() if q["stability"] >= STABLE}
    enough = [k for k, q in stable.items() if q["explained"] >= EXPLAINED]
    if enough:
        return min(enough)
    if stable:
        return max(stable, key=lambda k: stable[k]["explained"])
    return int(max(selection, key=lambda k: selection[k]["stability"]))


def pattern_name(shares: np.ndarray, book: np.ndarray, breadth: float) -> list[int] | str:
    """Which families lead a centroid (their indices), or a word for a mix that no family leads."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(book > 0, shares / book, 0.0)
    leads = [int(j) for j in np.argsort(-lift) if lift[j] >= LEAD_LIFT and shares[j] >= LEAD_SHARE][:2]
    if breadth <= 1:
        return "light-single-feature"
    return leads or "core-usage"


def slug(name: str) -> str:
    """A family name as it reads inside a persona name: `report_exported` -> `report-exported`."""
    return name.replace("_", "-")


def carry_names(personas: Personas, fresh: list, previous: Personas | None) -> list[str]:
    """Persona names: a previous persona's name where the same pattern is found again, fresh names elsewhere.

    The two centroid sets are put on the union of their families and matched one to one by Hungarian
    assignment (`scipy.optimize.linear_sum_assignment`) on distance; a pair closer than `MATCH_MAX` keeps
    the previous name. A fresh name that is taken gets a numeric suffix.
    """
    words = [f"{'+'.join(slug(personas.families[j].name) for j in f)}-led" if isinstance(f, list) else f for f in fresh]
    names: list[str | None] = [None] * len(words)
    if previous is not None:
        union = list(dict.fromkeys([f.name for f in previous.families] + [f.name for f in personas.families]))
        new, old = aligned(personas, union), aligned(previous, union)
        cost = np.linalg.norm(new[:, None, :] - old[None, :, :], axis=2)
        for i, j in zip(*linear_sum_assignment(cost), strict=True):
            if cost[i, j] <= MATCH_MAX:
                names[i] = previous.names[j]
    taken = set(filter(None, names)) | set(previous.names if previous else [])
    for i, word in enumerate(words):
        if names[i] is None:
            name, n = word, 2
            while name in taken:
                name, n = f"{word}-{n}", n + 1
            names[i] = name
            taken.add(name)
    return names


def aligned(personas: Personas, union: list[str]) -> np.ndarray:
    """Centroids on a given list of families (zero for a family these personas do not have)."""
    position = {f.name: j for j, f in enumerate(personas.families)}
    out = np.zeros((len(personas.names), len(union)))
    for col, name in enumerate(union):
        if name in position:
            out[:, col] = personas.centroids[:, position[name]]
    return out


def describe(personas: Personas, i: int) -> str:
    """One sentence: what the persona's activity leans on, against the book."""
    c = personas.centroids[i] ** 2
    shares = c / c.sum()
    top = np.argsort(-shares)[:3]
    parts = ", ".join(f"{personas.families[j].label} {shares[j]:.0%} (book {personas.book_shares[j]:.0%})" for j in top)
    return f"Accounts whose last 90 days of product use are mostly {parts}."


def renewing_days(frame: pd.DataFrame, personas: Personas, assigned: np.ndarray) -> np.ndarray:
    """Per persona and family: median active days in 30 among the persona's training rows that did not churn."""
    out = np.full((len(personas.names), len(personas.families)), np.nan)
    renewing = frame["churn"].to_numpy(dtype=float) == 0 if "churn" in frame else np.ones(len(frame), bool)
    for i, name in enumerate(personas.names):
        rows = renewing & (assigned == name)
        for j, family in enumerate(personas.families):
            if family.days_column in frame and rows.any():
                out[i, j] = float(np.nanmedian(frame[family.days_column].to_numpy(dtype=float)[rows]))
    return out


def base_rates(frame: pd.DataFrame, assigned: np.ndarray) -> dict[str, dict[str, float]]:
    """Per persona (and `not_adopted`): training rows and the churn and growth base rates among them."""
    out = {}
    for name in dict.fromkeys(assigned.tolist()):
        rows = assigned == name
        out[name] = {"rows": int(rows.sum())} | {
            f"{target}_rate": float(np.nanmean(frame[target].to_numpy(dtype=float)[rows]))
            for target in ("churn", "growth")
            if target in frame
        }
    return out


def champion_personas() -> Personas | None:
    """The personas stored with the churn champion (None before the first model or before personas existed)."""
    found = registry.champion(registry.REGISTERED["churn"])
    return found[1].personas if found else None


def log_personas(personas: Personas | None) -> None:
    """Record the personas in the active MLflow run: the table, how k was chosen, the chosen k (0: none)."""
    if personas is None:
        mlflow.log_metric("personas_k", 0)
        return
    table = pd.DataFrame(
        {
            "persona": personas.names,
            "description": personas.descriptions,
            "training_rows": [personas.rates.get(n, {}).get("rows", 0) for n in personas.names],
            "churn_rate": [personas.rates.get(n, {}).get("churn_rate") for n in personas.names],
            "growth_rate": [personas.rates.get(n, {}).get("growth_rate") for n in personas.names],
        }
    )
    mlflow.log_table(table, "personas.json")
    mlflow.log_dict(personas.selection, "personas_selection.json")
    mlflow.log_metric("personas_k", personas.selection["chosen"])


def persona_lines(personas: Personas | None) -> list[str]:
    """The personas in a few lines for the training summary."""
    if personas is None:
        return [f"no adoption personas: under {MIN_ROWS} snapshot rows with {MIN_EVENTS:.0f}+ usage events in 90 days"]
    out = [f"{len(personas.names)} adoption personas ({personas.selection['rule']}):"]
    for name, text in zip(personas.names, personas.descriptions, strict=True):
        rates = personas.rates.get(name, {})
        out.append(
            f"  {name}: {text} Churn {rates.get('churn_rate', float('nan')):.1%}, "
            f"growth {rates.get('growth_rate', float('nan')):.1%} ({rates.get('rows', 0)} training rows)"
        )
    return out


def recovery(mix: UsageMix, personas: Personas, truth: np.ndarray) -> float:
    """Adjusted Rand index between the persona of each adopted row and a hidden truth label."""
    adopted = mix.volume >= personas.min_events
    return float(adjusted_rand_score(truth[adopted], personas.distances(mix).argmin(axis=1)[adopted]))


def main(argv: list[str] | None = None) -> None:
    """Measure persona recovery (ARI) and the backtest ROC AUC with and without the persona on demo worlds."""
    from features.demo_world import USE_CASES_FILE
    from features.io import read_user_table
    from features.tables import load_tables
    from training import model
    from training.backtest import run_backtest
    from training.snapshots import snapshots

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("worlds", nargs="+", help="folders written by write_demo_world(..., use_cases=True)")
    args = parser.parse_args(argv)
    for world in args.worlds:
        snap = snapshots(load_tables(world))
        frame, fs = snap.frame, snap.features
        personas = learn_personas(frame, fs.metrics)
        truth = read_user_table(f"{world}/{USE_CASES_FILE}", "truth", ("account_id", "use_case"))
        labels = frame["account_id"].map(truth.set_index("account_id")["use_case"]).to_numpy()
        ari = recovery(personas.mix(frame), personas, labels)
        with_persona = fs.matrix.assign(persona=pd.Categorical(personas.assign(frame)))
        line = [f"{world}: k={len(personas.names)} ({', '.join(personas.names)}), ARI {ari:.3f}"]
        for target in ("churn", "growth"):
            auc = []
            for X, cats in ((fs.matrix, fs.categorical), (with_persona, [*fs.categorical, "persona"])):
                params = model.params_for(0) | model.monotone_params(list(X.columns), fs.directions, target)
                bt = run_backtest(frame, X, target, cats, snap.window_days, params, folds=snap.folds())
                auc.append(bt.overall["lightgbm"]["roc_auc"])
            line.append(f"{target} ROC AUC without {auc[0]:.4f} with {auc[1]:.4f}")
        print("; ".join(line))


if __name__ == "__main__":
    main()
