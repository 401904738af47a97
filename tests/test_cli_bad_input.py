"""The CLI bad-input matrix: every command, every kind of bad input, one line, no traceback, nothing written.

Each case runs `tierwise.cli.main` (the console entry point) in-process: an exception other than the
user errors it turns into one line escapes and fails the case, as a traceback would. A few cases
run the installed `tierwise` as a subprocess too, so its real stderr is checked as well.

Output paths: a missing parent folder is created (as `mkdir -p`); a wrong suffix, a folder, or a
file standing where a parent folder should be is refused while the arguments are parsed, before
any table or model is loaded. Junk rows (events of unknown accounts, duplicates, impossible
timestamps) are warnings, not errors, and are tested with the data contract instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from features.build import build_snapshots
from features.tables import load_tables
from serving.scoring import OUTPUT
from tierwise.cli import main

pytestmark = pytest.mark.slow
TIERWISE = Path(sys.executable).with_name("tierwise")
HUGE = str(10**30)  # overflows every integer type below Python's

# (case id, arguments, what the one error line must say); {placeholders} are paths of the `inputs` fixture
CASES = [
    # demo-data
    ("demo-data: no accounts", "demo-data --out {out}/w --accounts 0", "'--accounts'"),
    ("demo-data: huge accounts", f"demo-data --out {{out}}/w --accounts {HUGE}", "less than or equal to 1000000"),
    ("demo-data: negative seed", "demo-data --out {out}/w --seed -1", "'--seed'"),
    ("demo-data: seed overflows", f"demo-data --out {{out}}/w --seed {HUGE}", "'--seed'"),
    ("demo-data: unknown format", "demo-data --out {out}/w --format xlsx", "use parquet or csv"),
    ("demo-data: out is a file", "demo-data --out {file}", "is a file, not a folder"),
    # features
    ("features: no data folder", "features --data {missing} --as-of {as_of} --out {out}/f.csv", "does not exist"),
    ("features: empty data folder", "features --data {empty} --as-of {as_of} --out {out}/f.csv", "accounts"),
    ("features: corrupt table", "features --data {corrupt} --as-of {as_of} --out {out}/f.csv", "accounts"),
    ("features: empty table", "features --data {empty_table} --as-of {as_of} --out {out}/f.csv", "accounts"),
    ("features: missing column", "features --data {no_arr} --as-of {as_of} --out {out}/f.csv", "arr"),
    ("features: text in numbers", "features --data {text_arr} --as-of {as_of} --out {out}/f.csv", "arr"),
    ("features: unparseable date", "features --data {bad_date} --as-of {as_of} --out {out}/f.csv", "start_date"),
    ("features: end before start", "features --data {backwards} --as-of {as_of} --out {out}/f.csv", "end_date"),
    ("features: bad as-of", "features --data {data} --as-of 2026-13-01 --out {out}/f.csv", "'2026-13-01'"),
    ("features: as-of after the data", "features --data {data} --as-of 2099-01-01 --out {out}/f.csv", "after the data"),
    ("features: as-of before the data", "features --data {data} --as-of 1990-01-01 --out {out}/f.csv", "no account"),
    ("features: wrong suffix first", "features --data {missing} --as-of {as_of} --out {out}/f.xlsx", ".csv or"),
    ("features: out is a folder", "features --data {data} --as-of {as_of} --out {folder}", "is a folder"),
    ("features: parent is a file", "features --data {data} --as-of {as_of} --out {file}/f.csv", "is a file"),
    (
        "features: metrics missing",
        "features --data {data} --as-of {as_of} --out {out}/f.csv --metrics {missing}.yaml",
        "metrics",
    ),
    (
        "features: metrics garbage",
        "features --data {data} --as-of {as_of} --out {out}/f.csv --metrics {garbage}",
        "metrics",
    ),
    (
        "features: metrics unknown key",
        "features --data {data} --as-of {as_of} --out {out}/f.csv --metrics {odd_metrics}",
        "bogus",
    ),
    # train
    ("train: neither data nor table", "train", "either --data"),
    ("train: both data and table", "train --data {data} --table {flat}", "either --data"),
    ("train: no data folder", "train --data {missing}", "does not exist"),
    ("train: corrupt table", "train --data {corrupt}", "accounts"),
    ("train: missing column", "train --data {no_arr}", "arr"),
    ("train: end before start", "train --data {backwards}", "end_date"),
    ("train: bad as-of", "train --data {data} --as-of yesterday", "'yesterday'"),
    ("train: as-of before the data", "train --data {data} --as-of 1990-01-01", "is before the data starts"),
    ("train: zero horizon", "train --data {data} --horizon-days 0", "'--horizon-days'"),
    ("train: huge horizon", f"train --data {{data}} --horizon-days {HUGE}", "'--horizon-days'"),
    ("train: negative tuning", "train --data {data} --tune -1", "'--tune'"),
    ("train: zero capacity", "train --data {data} --capacity 0", "'--capacity'"),
    ("train: seed overflows LightGBM", "train --data {data} --seed 4294967296", "'--seed'"),
    # table mode
    ("train --table: no target", "train --table {flat}", "--target"),
    ("train --table: missing file", "train --table {missing}.csv --target Churn --id customer", "not found"),
    ("train --table: wrong suffix", "train --table {file} --target Churn --id customer", ".csv or .parquet"),
    ("train --table: corrupt", "train --table {corrupt_table} --target Churn --id customer", "cannot read"),
    ("train --table: empty", "train --table {empty_csv} --target Churn --id customer", "no rows"),
    ("train --table: no target column", "train --table {flat} --target Left --id customer", "'Left'"),
    ("train --table: no id column", "train --table {flat} --target Churn --id ref", "'ref'"),
    ("train --table: target not yes/no", "train --table {flat} --target plan --id customer", "--target plan"),
    ("score --table: missing file", "score --table {missing}.csv --out {out}/s.csv", "not found"),
    ("score --table: corrupt", "score --table {corrupt_table} --out {out}/s.csv", "cannot read"),
    ("score --table: no such --id", "score --table {flat} --out {out}/s.csv --id ref", "ref"),
    ("score --table: missing feature", "score --table {flat_less} --out {out}/s.csv", "plan"),
    ("score --table: wrong suffix first", "score --table {missing}.csv --out {out}/s.json", ".csv or"),
    ("score --table: publish", "score --table {flat} --out {out}/s.csv --publish", "no latest-scores store"),
    # score
    ("score: no data", "score --out {out}/s.csv", "--data and --as-of"),
    ("score: wrong suffix first", "score --data {missing} --as-of {as_of} --out {out}/s.txt", ".csv or .parquet"),
    ("score: parent is a file", "score --data {data} --as-of {as_of} --out {file}/s.csv", "is a file"),
    ("score: no data folder", "score --data {missing} --as-of {as_of} --out {out}/s.csv", "does not exist"),
    ("score: text in numbers", "score --data {text_arr} --as-of {as_of} --out {out}/s.csv", "arr"),
    ("score: unparseable as-of", "score --data {data} --as-of 27/11/2026 --out {out}/s.csv", "'27/11/2026'"),
    ("score: as-of after the data", "score --data {data} --as-of 2099-01-01 --out {out}/s.csv", "after the data ends"),
    (
        "score: as-of before the data",
        "score --data {data} --as-of 1990-01-01 --out {out}/s.csv",
        "no account is active",
    ),
    (
        "score: policy missing",
        "score --data {data} --as-of {as_of} --out {out}/s.csv --policy {missing}.yaml",
        "cannot read",
    ),
    (
        "score: policy garbage",
        "score --data {data} --as-of {as_of} --out {out}/s.csv --policy {garbage}",
        "not valid YAML",
    ),
    (
        "score: policy unknown key",
        "score --data {data} --as-of {as_of} --out {out}/s.csv --policy {odd_policy}",
        "bogus",
    ),
    (
        "score: previous missing",
        "score --data {data} --as-of {as_of} --out {out}/s.csv --previous {missing}.csv",
        "not found",
    ),
    (
        "score: no such version",
        "score --data {data} --as-of {as_of} --out {out}/s.csv --churn-version 99",
        "no version 99",
    ),
    (
        "score: version zero",
        "score --data {data} --as-of {as_of} --out {out}/s.csv --churn-version 0",
        "'--churn-version'",
    ),
    (
        "score: huge version",
        f"score --data {{data}} --as-of {{as_of}} --out {{out}}/s.csv --growth-version {HUGE}",
        "no version",
    ),
    ("score: --id without a table", "score --data {data} --as-of {as_of} --out {out}/s.csv --id ref", "table mode"),
    # report
    ("report: scores missing", "report --scores {missing}.csv --out {out}/r.html", "not found"),
    ("report: scores corrupt", "report --scores {corrupt_table} --out {out}/r.html", "cannot read"),
    ("report: scores lack columns", "report --scores {flat} --out {out}/r.html", "missing column"),
    ("report: scores empty", "report --scores {empty_scores} --out {out}/r.html", "no rows"),
    ("report: wrong suffix first", "report --scores {missing}.csv --out {out}/r.pdf", ".html"),
    # promote
    ("promote: unknown target", "promote --target risk --version 1", "'risk'"),
    ("promote: unknown version", "promote --target churn --version 99", "no version '99'"),
    ("promote: version not a number", "promote --target churn --version latest", "'latest'"),
    ("promote: huge version", f"promote --target growth --version {HUGE}", "no version"),
    # the command line itself
    ("unknown command", "rank --data {data}", "No such command"),
    ("unknown option", "score --data {data} --as-of {as_of} --out {out}/s.csv --fast", "--fast"),
]


def write_garbage(path: Path) -> Path:
    path.write_bytes(b"\x00\x01 not a table \xff" * 20)
    return path


@pytest.fixture(scope="module")
def inputs(trained_store, tmp_path_factory) -> dict[str, str]:
    """Every bad input the cases name, built from the trained demo world, plus a private registry with a table model.

    The registry is a copy of the session's (artifacts stay shared), so the table model registered here
    and anything a case might register never reach other tests.
    """
    from training.table_mode import train_table

    root = tmp_path_factory.mktemp("bad_inputs")
    data = trained_store.data_dir
    subs = pd.read_parquet(data / "subscriptions.parquet")

    def world(name: str, **tables: pd.DataFrame | bytes | None) -> str:
        folder = root / name
        folder.mkdir()
        for source in data.iterdir():
            table = source.name.split(".")[0]
            if table not in tables:
                shutil.copy(source, folder / source.name)
            elif isinstance(tables[table], bytes):
                (folder / source.name).write_bytes(tables[table])
            elif tables[table] is not None:
                tables[table].to_csv(folder / f"{table}.csv", index=False)
        return str(folder)

    text = subs.astype({"arr": object})
    text.loc[text.index[:3], "arr"] = "lots"
    dated = subs.astype({"start_date": object})
    dated.loc[dated.index[:2], "start_date"] = "soon"
    backwards = subs.copy()
    backwards.loc[backwards.index[:2], "end_date"] = backwards["start_date"].iloc[:2] - pd.Timedelta(days=5)

    tables = load_tables(data)
    fs_cols = ["seat_utilisation", "login__trend_30d", "plan"]
    snaps = build_snapshots(tables, pd.date_range("2025-06-01", "2026-06-01", freq="3MS"), 90).frame
    flat = snaps[fs_cols].assign(customer=snaps["account_id"] + "@" + snaps["as_of"].dt.strftime("%Y%m"))
    flat["plan"] = flat["plan"].astype(str)
    flat["Churn"] = snaps["churn"]
    flat.to_csv(root / "flat.csv", index=False)
    flat.drop(columns=["plan"]).to_csv(root / "flat_less.csv", index=False)
    (root / "empty.csv").write_text("customer,Churn\n")
    (root / "garbage.yaml").write_text("capacity: [high_touch: {csms: 3\n  : : -\n\tbroken")
    (root / "odd_policy.yaml").write_text("bogus: 1\n")
    odd = "metrics:\n  - {name: x, events: [login], agg: count, window_days: 30, description: logins, bogus: 1}\n"
    (root / "odd_metrics.yaml").write_text(odd)
    (root / "empty_scores.csv").write_text(",".join(OUTPUT) + "\n")
    (root / "a_file.txt").write_text("I am a file")
    (root / "a_folder.csv").mkdir()
    (root / "empty_dir").mkdir()

    registry = root / "registry"
    registry.mkdir()
    shutil.copy(Path(trained_store.uri.removeprefix("sqlite:///")), registry / "mlflow.db")
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{registry / 'mlflow.db'}")
        patch.setenv("TIERWISE_MLRUNS", str(registry))
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        train_table(root / "flat.csv", target="Churn", id_col="customer", max_rounds=30)
        yield {
            "data": str(data),
            "as_of": str(tables.data_end.date()),
            "missing": str(root / "nowhere"),
            "empty": str(root / "empty_dir"),
            "corrupt": world("corrupt", accounts=write_garbage(root / "junk").read_bytes()),
            "empty_table": world("empty_table", accounts=pd.DataFrame(columns=["account_id", "created_at"])),
            "no_arr": world("no_arr", subscriptions=subs.drop(columns=["arr"])),
            "text_arr": world("text_arr", subscriptions=text),
            "bad_date": world("bad_date", subscriptions=dated),
            "backwards": world("backwards", subscriptions=backwards),
            "flat": str(root / "flat.csv"),
            "flat_less": str(root / "flat_less.csv"),
            "empty_csv": str(root / "empty.csv"),
            "empty_scores": str(root / "empty_scores.csv"),
            "corrupt_table": str(write_garbage(root / "corrupt.parquet")),
            "garbage": str(root / "garbage.yaml"),
            "odd_policy": str(root / "odd_policy.yaml"),
            "odd_metrics": str(root / "odd_metrics.yaml"),
            "file": str(root / "a_file.txt"),
            "folder": str(root / "a_folder.csv"),
        }
    mlflow.set_tracking_uri(previous)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(("args", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line_and_writes_nothing(args, says, inputs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    before = {name: listing(Path(path)) for name, path in inputs.items() if Path(path).is_dir()}
    monkeypatch.chdir(tmp_path)  # anything written to the working directory would show in the listing
    monkeypatch.setenv("TIERWISE_SCORES_STORE", str(out / "store.parquet"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setattr(sys, "argv", ["tierwise", *args.format(out=out, **inputs).split()])
    with pytest.raises(SystemExit) as done:
        main()
    said = capsys.readouterr()
    lines = [line for line in (said.out + said.err).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("warning: ")]  # what loading cleaned may precede it
    assert done.value.code not in (0, None)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert says in lines[0]
    assert listing(tmp_path) == ["out"]  # no output, no temp file, no store, no ./mlruns
    assert {name: listing(Path(path)) for name, path in inputs.items() if Path(path).is_dir()} == before


def test_a_missing_output_folder_is_created(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tierwise", "score", "--table", inputs["flat"], "--out", f"{tmp_path}/a/b/s.csv"])
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0, capsys.readouterr().err
    assert listing(tmp_path) == ["a", "a/b", "a/b/s.csv"]
    assert "(id column customer)" in " ".join(capsys.readouterr().err.split())  # remembered, not repeated


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ("score --data {missing} --as-of {as_of} --out {out}/s.xlsx", "--out"),
        (f"demo-data --out {{out}}/w --accounts {HUGE}", "--accounts"),
        ("score --data {data} --as-of {as_of} --out {out}/s.csv --policy {garbage}", "not valid YAML"),
        ("train --table {flat} --target plan --id customer", "--target plan"),
    ],
)
def test_the_installed_command_says_one_line_without_a_traceback(args, says, inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = os.environ | {"TIERWISE_SCORES_STORE": str(out / "store.parquet")}
    argv = [str(TIERWISE), *args.format(out=out, **inputs).split()]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert listing(tmp_path) == ["out"]
