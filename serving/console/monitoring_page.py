"""The console's Monitoring page: the last `tierwise monitor` run's summary, read from its file.

A monitor run reads every batch's outcomes, the drift of the newest batch and the freshness of each
event stream: minutes on a large book, far too long for a page view. So `tierwise monitor` leaves its
summary beside the latest-scores store (`settings.monitor_summary()`) and this page only reads it.
The chart geometry is the monitoring page's own (`monitoring.page.chart`), drawn by the same macro.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from monitoring.page import chart
from serving.redact import public_text

SUMMARY_KEYS = {  # what the page reads, and of which JSON type
    "ran_at": str,
    "data_end": str,
    "batches": int,
    "latest_batch": (str, type(None)),
    "alarms": list,
    "conditions": dict,
    "versions": list,
    "estimates": list,
    "retrain": list,
}


def monitoring_page(path: Path) -> dict:
    """What the page shows: the summary with a chart per model version, or why there is none.

    Returns:
        `summary` (None when there is none to show), `charts` (version -> chart geometry), `file`
        (the summary's file name: the service never shows its folders) and `summary_problem` (why a file
        that is there cannot be shown).
    """
    page = {"summary": None, "charts": {}, "file": path.name, "summary_problem": None}
    try:
        summary = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return page
    except (OSError, orjson.JSONDecodeError) as exc:
        return page | {"summary_problem": f"the monitoring summary {path.name} cannot be read: {public_text(exc)}"}
    missing = [k for k in SUMMARY_KEYS if k not in summary] if isinstance(summary, dict) else list(SUMMARY_KEYS)
    wrong = [k for k, kind in SUMMARY_KEYS.items() if k not in missing and not isinstance(summary[k], kind)]
    if missing or wrong:
        what = f"lacks {', '.join(missing)}" if missing else f"has {', '.join(wrong)} of the wrong type"
        return page | {"summary_problem": f"the monitoring summary {path.name} {what}: run `tierwise monitor` again"}
    try:
        charts = {v["version"]: chart(v, summary["estimates"]) for v in summary["versions"]}
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"a model version or batch in it lacks {exc}" if isinstance(exc, KeyError) else str(exc)
        return page | {
            "summary_problem": f"the monitoring summary {path.name} is not one `tierwise monitor` wrote: {problem}"
        }
    for version in summary["versions"]:  # a note names the tracking store: shown as the service shows paths
        version["note"] = public_text(version["note"]) if version.get("note") else ""
    return page | {"summary": summary, "charts": charts}
