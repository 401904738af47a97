"""Chart geometry for the console's inline SVG: numbers in, coordinates out, drawn by the templates.

Charts are server-rendered SVG (no JavaScript, nothing fetched): Python lays out the points and
the templates draw them, so every label still goes through Jinja's autoescaping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RISK_BANDS = ((0.0, 0.15, "low"), (0.15, 0.3, "medium"), (0.3, 1.0, "high"))  # as `serving.report.risk_band`


@dataclass(frozen=True)
class Series:
    """One line of a chart: its name, CSS class and values (NaN where a batch has none)."""

    name: str
    css: str
    values: Sequence[float]


def trend_chart(
    days: Sequence[str], series: Sequence[Series], markers: Sequence[tuple[int, str]], width=640, height=220
) -> dict:
    """A 0-100% line chart over batches, with risk bands behind and model-version changes marked.

    Args:
        days: each batch's as-of date (YYYY-MM-DD), oldest first.
        series: the lines, values in 0..1.
        markers: (batch index, label) where a new model version scored the account.
    """
    left, right, top, bottom = 44, 12, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(days)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - min(max(v, 0.0), 1.0))

    lines = []
    for s in series:
        points = [(x(i), y(v)) for i, v in enumerate(s.values) if v == v]
        lines.append(
            {
                "name": s.name,
                "css": s.css,
                "points": " ".join(f"{px:.1f},{py:.1f}" for px, py in points),
                "dots": [{"x": px, "y": py} for px, py in points[-1:]],
            }
        )
    bands = [{"y": y(hi), "h": y(lo) - y(hi), "css": css} for lo, hi, css in RISK_BANDS]
    ticks = [{"y": y(v), "label": f"{v:.0%}"} for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    every = max(1, n // 6)
    shown = sorted({*range(0, n, every), n - 1})  # the latest batch always labelled
    xticks = [
        {"x": x(i), "label": days[i], "anchor": anchor(i, n)} for i in shown if i == n - 1 or n - 1 - i >= every / 2
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": top + plot_h,
        "lines": lines,
        "bands": bands,
        "ticks": ticks,
        "xticks": xticks,
        "markers": [{"x": x(i), "label": label} for i, label in markers],
    }


def anchor(i: int, n: int) -> str:
    """Where an x label sits against its tick: the first starts there, the last ends there, others centre."""
    return "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"


def sparkline(values: Sequence[float], width: int = 140, height: int = 28) -> dict:
    """A small line of counts over batches (scaled to its own maximum), with the last value marked."""
    values = np.asarray(values, dtype=float)
    peak = float(np.nanmax(values)) if len(values) and not np.isnan(values).all() else 0.0
    n, pad = len(values), 3
    step = (width - 2 * pad) / (n - 1) if n > 1 else 0.0
    points = [
        (pad + step * i, height - pad - (height - 2 * pad) * (v / peak if peak else 0.0))
        for i, v in enumerate(values)
        if v == v
    ]
    last = points[-1] if points else (pad, height - pad)
    return {
        "width": width,
        "height": height,
        "points": " ".join(f"{px:.1f},{py:.1f}" for px, py in points),
        "last": {"x": last[0], "y": last[1]},
        "peak": peak,
    }


def bars(values: Sequence[float], width: int = 120) -> list[float]:
    """Bar lengths for a small table-side bar chart, scaled to the largest value."""
    peak = max([float(v) for v in values], default=0.0)
    return [width * float(v) / peak if peak else 0.0 for v in values]
