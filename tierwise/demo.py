"""`make demo`: the main job end to end on an embedded demo world.

Generate a book, train both models into the MLflow store, score the book as of the day after
the data ends, write the CSM report, and tell the user where everything is and how to serve it.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from features.demo_world import write_demo_world
from features.tables import load_tables
from serving.batch import score_to_file
from serving.report import write_report
from tierwise.settings import scores_store, tracking_uri
from training.pipeline import train


def run_demo(out: Path, n_accounts: int = 2000, seed: int = 0, console: Console | None = None) -> dict[str, Path]:
    """Run every stage on a simulated book; returns where each output is."""
    console = console or Console()
    data = out / "data"
    counts = write_demo_world(data, n_accounts=n_accounts, seed=seed)
    console.print(f"demo world: {data} ({', '.join(f'{k} {v:,}' for k, v in counts.items())})")
    result = train(data, console=console)
    as_of = load_tables(data).data_end.date()
    scores = out / "scores.csv"
    run = score_to_file(data, as_of, scores)
    example_id = run.scored.sort_values("arr_at_risk", ascending=False)["account_id"].iloc[0]
    report = write_report(scores, out / "report.html")
    outputs = {"data": data, "scores": scores, "report": report, "store": scores_store()}
    console.rule("demo done")
    console.print(f"models: tierwise-churn v{result.versions['churn']}, tierwise-growth v{result.versions['growth']}")
    console.print(f"MLflow store: {tracking_uri()}  (browse it: .venv/bin/tierwise ui)", soft_wrap=True)
    console.print(f"scores as of {as_of}: {scores}")
    console.print(f"latest-scores store for the service: {outputs['store']}")
    console.print(f"CSM report: {report}")
    console.print(
        "serve it: TIERWISE_API_KEYS=demo-key .venv/bin/tierwise serve --port 3000\n"
        "query it: curl -s -X POST localhost:3000/lookup -H 'Authorization: Bearer demo-key' "
        "-H 'Content-Type: application/json' -d '{\"account_ids\": [\"" + example_id + "\"]}'",
        soft_wrap=True,  # commands to copy must not be broken over lines
    )
    return outputs
