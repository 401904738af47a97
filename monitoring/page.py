"""The monitoring page: one self-contained HTML file (inline CSS and SVG, no scripts, no external URLs).

It shows, per churn model version, the realised ROC AUC of each judged batch with the margin of the
`degraded` rule against the line of what the backtest promised, the estimate for batches still waiting
for their outcomes, then drift, freshness, the alarms and the retraining advice. It renders the same
`Monitoring.summary()` a console page would.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from features.io import write_text

if TYPE_CHECKING:  # the console imports this module for `chart` alone: it needs none of the monitor's imports
    from monitoring.monitor import Monitoring

TEMPLATES = Path(__file__).with_name("templates")
WIDTH, HEIGHT = 640, 200  # the chart's plot area in SVG units
AUC_FLOOR = 0.4  # the chart's lowest ROC AUC: below chance is worse than useless, the axis need not go lower


def write_page(result: Monitoring, out: Path | str) -> Path:
    """Render the monitoring page to `out`, atomically."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["fig"] = figure
    summary = result.summary()
    charts = {v["version"]: chart(v, summary["estimates"]) for v in summary["versions"]}
    return write_text(env.get_template("monitor.html.j2").render(m=summary, charts=charts), out)


def figure(value, digits: int = 3) -> str:
    """A figure for the page; an undefined one (None) as a dash."""
    return "–" if value is None else f"{value:.{digits}f}"


def chart(version: dict, estimates: list[dict]) -> dict:
    """SVG coordinates of one version's realised ROC AUC points with their margins, its promise and estimates."""
    points = [(b["as_of"], b["roc_auc"], b["margin"], b["degraded"], "realised") for b in version["realised"]]
    points += [
        (e["as_of"], e["roc_auc"], None, False, "estimate") for e in estimates if e["version"] == version["version"]
    ]
    points = sorted(p for p in points if p[1] is not None)
    step = WIDTH / max(len(points), 1)

    def y(auc: float) -> float:
        return HEIGHT * (1 - (min(max(auc, AUC_FLOOR), 1.0) - AUC_FLOOR) / (1 - AUC_FLOOR))

    dots = [
        {
            "x": step * (i + 0.5),
            "y": y(auc),
            "top": y(auc + margin) if margin is not None else None,
            "bottom": y(auc - margin) if margin is not None else None,
            "kind": "degraded" if bad else kind,
            "label": f"{as_of}: {'estimated' if kind == 'estimate' else 'realised'} ROC AUC {auc:.3f}",
            "as_of": as_of,
        }
        for i, (as_of, auc, margin, bad, kind) in enumerate(points)
    ]
    promised = version["promised"].get("roc_auc")
    ticks = [{"y": y(t), "label": f"{t:.1f}"} for t in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]
    return {
        "dots": dots,
        "promised": None if promised is None else y(promised),
        "ticks": ticks,
        "width": WIDTH,
        "height": HEIGHT,
        "label_every": max(1, -(-len(dots) // 7)),  # at most 7 date labels: wider ones overlap
    }
