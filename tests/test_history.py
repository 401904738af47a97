"""The score history: append-only batches by as-of date, atomic writes, one account's trend, the publish hook.

Batches are made by `bench.history.synthetic_batch` (every column of the score output, texts of
the real size) except in the publish test, which scores the session's demo world with its real
champions through `tierwise score`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.history import synthetic_batch
from features.errors import DataError
from features.tables import load_tables
from serving import history
from serving.history import HistoryReader, account_history, append_batch, batches, previous_batch, read_batch
from serving.scoring import OUTPUT
from serving.store import publish
from tierwise import settings
from tierwise.cli import main

ACCOUNTS = 40
ONE = "ACC-000007"


@pytest.fixture()
def root(tmp_path) -> Path:
    return tmp_path / "history"


def files(root: Path) -> list[str]:
    """Everything under the history folder, hidden files included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run `tierwise ARGS` in-process through its entry point; (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["tierwise", *args])
    with pytest.raises(SystemExit) as done:
        main()
    said = capsys.readouterr()
    return done.value.code, " ".join((said.out + said.err).split())


def test_batches_are_listed_read_back_and_trend_per_account(root):
    first = append_batch(synthetic_batch("2026-10-05", ACCOUNTS, seed=1), root)
    second = append_batch(synthetic_batch("2026-10-12", ACCOUNTS, seed=2, churn_version="2"), root)
    assert first.path.startswith(f"{root}/as_of=2026-10-05/batch-") and first.accounts == ACCOUNTS
    listed = batches(root)
    assert list(listed.columns) == history.LISTING and not listed["superseded"].any()
    assert listed["as_of"].tolist() == [pd.Timestamp("2026-10-05"), pd.Timestamp("2026-10-12")]
    assert listed["churn_version"].tolist() == ["1", "2"] and listed["path"].tolist() == [first.path, second.path]
    assert listed["written_at"].tolist() == [pd.Timestamp(first.written_at), pd.Timestamp(second.written_at)]
    back = read_batch("2026-10-12", root)
    expected = synthetic_batch("2026-10-12", ACCOUNTS, seed=2, churn_version="2")
    pd.testing.assert_frame_equal(back, expected.sort_values("account_id").reset_index(drop=True))
    assert previous_batch("2026-10-12", root)["as_of"].eq(pd.Timestamp("2026-10-05")).all()
    assert previous_batch(pd.Timestamp("2026-10-05"), root) is None
    trend = account_history(ONE, root)
    assert list(trend.columns) == OUTPUT and trend["as_of"].is_monotonic_increasing
    assert trend["churn_model_version"].tolist() == ["1", "2"]  # the model versions are kept in the rows
    assert trend["churn_risk"].tolist() == [
        synthetic_batch(d, ACCOUNTS, seed=s).set_index("account_id").loc[ONE, "churn_risk"]
        for d, s in (("2026-10-05", 1), ("2026-10-12", 2))
    ]
    reader = HistoryReader(root)
    pd.testing.assert_frame_equal(reader.account(ONE), trend[list(history.TREND_COLUMNS)])
    pd.testing.assert_frame_equal(reader.batches(), listed)
    assert reader.accounts() == sorted(expected["account_id"])
    pd.testing.assert_frame_equal(reader.batch("2026-10-12"), back)
    pd.testing.assert_frame_equal(reader.previous("2026-10-12"), read_batch("2026-10-05", root))
    assert reader.previous("2026-10-05") is None
    pd.testing.assert_series_equal(reader.row(ONE, "2026-10-12"), trend.iloc[1], check_names=False)
    assert reader.row("ACC-999999", "2026-10-12") is None and reader.row(ONE, "2026-01-01") is None


def test_a_republished_as_of_keeps_both_batches_and_readers_take_the_latest(root):
    old = append_batch(synthetic_batch("2026-10-05", ACCOUNTS, seed=1), root)
    new = append_batch(synthetic_batch("2026-10-05", ACCOUNTS, seed=9, churn_version="2"), root)
    assert len(files(root)) == 2  # append-only: the first file is still there
    listed = batches(root)
    assert listed["path"].tolist() == [new.path] and listed["churn_version"].tolist() == ["2"]
    every = batches(root, superseded=True)
    assert every["path"].tolist() == [old.path, new.path] and every["superseded"].tolist() == [True, False]
    assert read_batch("2026-10-05", root)["churn_model_version"].eq("2").all()
    first = read_batch("2026-10-05", root, written_at=old.written_at)
    assert first["churn_model_version"].eq("1").all()
    assert account_history(ONE, root)["churn_model_version"].tolist() == ["2"]
    assert HistoryReader(root).account(ONE)["churn_model_version"].tolist() == ["2"]


def test_a_failing_write_leaves_no_partial_batch_visible(root, monkeypatch):
    kept = append_batch(synthetic_batch("2026-10-05", ACCOUNTS, seed=1), root)
    before = files(root)

    def disk_full(table, where, fs):
        Path(where).write_bytes(b"PAR1" + b"\0" * 100)  # half a file, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(history, "write_parquet", disk_full)
    with pytest.raises(DataError, match="cannot write the batch: .*No space left"):
        append_batch(synthetic_batch("2026-10-12", ACCOUNTS, seed=2), root)
    assert files(root) == before  # no partial file, no temp file left behind
    assert batches(root)["path"].tolist() == [kept.path]
    # A batch being written right now (its hidden temp file) is not listed either.
    (root / "as_of=2026-10-12").mkdir(exist_ok=True)  # the failed write may leave its empty folder
    (root / "as_of=2026-10-12" / ".batch-20261127T120000000000Z-0123abcd.parquet.x1.tmp").write_bytes(b"PAR1")
    assert batches(root)["path"].tolist() == [kept.path] and len(account_history(ONE, root)) == 1


def test_the_reader_reloads_only_when_the_listing_changes_and_takes_new_columns(root):
    append_batch(synthetic_batch("2026-10-05", ACCOUNTS, seed=1), root)
    reader = HistoryReader(root, recheck_seconds=0)
    assert len(reader.account(ONE)) == 1
    cached = dict(reader._tables)
    assert reader.refresh() is False  # nothing new: nothing read
    newer = synthetic_batch("2026-10-12", ACCOUNTS + 5, seed=2).assign(owner="dana")  # a column added later
    append_batch(newer, root)
    assert reader.refresh() is True
    assert all(reader._tables[path] is table for path, table in cached.items())  # old batches not read again
    reader = HistoryReader(root, columns=(*history.TREND_COLUMNS, "owner"), recheck_seconds=0)
    trend = reader.account(ONE)
    assert trend["as_of"].tolist() == [pd.Timestamp("2026-10-05"), pd.Timestamp("2026-10-12")]
    assert trend["owner"].isna().tolist() == [True, False]
    assert len(reader.account("ACC-000044")) == 1  # only in the newer batch
    append_batch(synthetic_batch("2026-10-19", ACCOUNTS, seed=3), root)
    with reader._lock:  # as while another thread reloads: this one is not held up, it reads the previous load
        assert reader.refresh() is False and len(reader.account(ONE)) == 2
    assert reader.refresh() is True and len(reader.account(ONE)) == 3
    assert account_history(ONE, root)["owner"].tolist()[1] == "dana"


def test_bad_reads_and_writes_name_what_is_wrong(root, tmp_path):
    with pytest.raises(DataError, match=f"score history {root} holds no batch yet"):
        account_history(ONE, root)
    with pytest.raises(DataError, match="holds no batch yet"):
        HistoryReader(root).account(ONE)
    assert batches(root).empty and list(batches(root).columns) == history.LISTING
    append_batch(synthetic_batch("2026-10-05", ACCOUNTS, seed=1), root)
    with pytest.raises(DataError, match="account 'ACC-999999' is in none of the 1 batch"):
        account_history("ACC-999999", root)
    with pytest.raises(DataError, match="account 'nope' is in none"):
        HistoryReader(root).account("nope")
    with pytest.raises(DataError, match="no batch as of 2026-10-12"):
        read_batch("2026-10-12", root)
    with pytest.raises(DataError, match="as-of 'soon' is not a date"):
        read_batch("soon", root)
    with pytest.raises(DataError, match="no rows"):
        append_batch(synthetic_batch("2026-10-12", 0), root)
    with pytest.raises(DataError, match="lacks column"):
        append_batch(synthetic_batch("2026-10-12", 3).drop(columns="as_of"), root)
    with pytest.raises(DataError, match="score history nosuch://x: cannot open it"):
        batches("nosuch://x")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write the batch"):
        append_batch(synthetic_batch("2026-10-12", 3), blocker / "history")
    assert len(batches(root)) == 1


def test_the_history_lives_beside_the_store_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("TIERWISE_HISTORY", raising=False)
    monkeypatch.setenv("TIERWISE_SCORES_STORE", str(tmp_path / "served" / "store.parquet"))
    assert history.history_root() == str(tmp_path / "served" / "score_history")
    assert history.history_root(tmp_path / "x" / "s.parquet") == str(tmp_path / "x" / "score_history")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIERWISE_HISTORY", "relative/hist")
    assert history.history_root(tmp_path / "x" / "s.parquet") == str(tmp_path / "relative" / "hist")
    monkeypatch.setenv("TIERWISE_HISTORY", (tmp_path / "by-url").as_uri())  # a URL goes to pyarrow as it is
    assert history.history_root() == (tmp_path / "by-url").as_uri()
    written = append_batch(synthetic_batch("2026-10-05", 3))
    assert Path(written.path).is_file() and Path(written.path).is_relative_to(tmp_path / "by-url")
    assert batches()["accounts"].tolist() == [3]


def test_the_history_command_lists_batches_and_prints_a_trend(root, monkeypatch, capsys):
    monkeypatch.setenv("TIERWISE_HISTORY", str(root))
    code, said = run_cli(["history"], monkeypatch, capsys)
    assert code == 2 and said == f"error: score history {root} holds no batch yet: publish one with `tierwise score`"
    append_batch(synthetic_batch("2026-10-05", ACCOUNTS, seed=1), root)
    append_batch(synthetic_batch("2026-10-12", ACCOUNTS, seed=2, churn_version="2"), root)
    code, said = run_cli(["history"], monkeypatch, capsys)
    assert code == 0 and "│ 2026-10-05 │" in said and "│ 2026-10-12 │" in said and f"│ {ACCOUNTS} │" in said
    trend = account_history(ONE, root)
    code, said = run_cli(["history", "--account", ONE], monkeypatch, capsys)
    assert code == 0 and said.count("│ 2026-10-") == 2
    assert f"{trend['churn_risk'].iloc[1]:.1%}" in said and "v2/v1" in said
    code, said = run_cli(["history", "--account", "ACC-999999"], monkeypatch, capsys)
    assert code == 2 and said.startswith("error: account 'ACC-999999' is in none of the 2 batch(es)")
    code, said = run_cli(["history", "--account", " "], monkeypatch, capsys)
    assert code == 2 and said == "error: --account: empty; give an account id"
    monkeypatch.setenv("TIERWISE_HISTORY", "nosuch://bucket/history")
    code, said = run_cli(["history"], monkeypatch, capsys)
    assert code == 2 and said.startswith("error: score history nosuch://bucket/history: cannot open it")


@pytest.mark.slow
def test_tierwise_score_appends_each_published_batch_and_only_those(trained_store, tmp_path, monkeypatch, capsys):
    store = tmp_path / "served" / "latest_scores.parquet"
    monkeypatch.setenv("TIERWISE_SCORES_STORE", str(store))
    monkeypatch.delenv("TIERWISE_HISTORY", raising=False)
    as_of = load_tables(trained_store.data_dir).data_end.date().isoformat()
    args = ["score", "--data", str(trained_store.data_dir), "--as-of", as_of, "--out", str(tmp_path / "s.parquet")]
    code, said = run_cli(args, monkeypatch, capsys)
    assert code == 0 and "published to the latest-scores store" in said
    scored = pd.read_parquet(tmp_path / "s.parquet")
    listed = batches(store.with_name("score_history"))
    versions = (scored["churn_model_version"].iloc[0], scored["growth_model_version"].iloc[0])
    assert listed["as_of"].tolist() == [pd.Timestamp(as_of)] and listed["accounts"].tolist() == [len(scored)]
    assert (listed["churn_version"].iloc[0], listed["growth_version"].iloc[0]) == versions
    kept = read_batch(as_of, store.with_name("score_history"))
    pd.testing.assert_frame_equal(kept, scored.sort_values("account_id").reset_index(drop=True))
    assert settings.score_history() == str(store.with_name("score_history"))
    code, said = run_cli(["history"], monkeypatch, capsys)
    assert code == 0 and f"│ {as_of} │" in said and f"│ {len(scored)} │" in said
    older = scored.assign(as_of=scored["as_of"] - pd.Timedelta(days=7))
    assert not publish(older, None, None).published  # an older as-of is refused: not kept either
    assert not publish(scored, False, None).published  # --no-publish
    assert len(batches(store.with_name("score_history"), superseded=True)) == 1


def test_a_history_that_cannot_be_written_stops_the_publication(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TIERWISE_HISTORY", str(blocker / "history"))
    store = tmp_path / "served" / "latest_scores.parquet"
    with pytest.raises(DataError, match="cannot write the batch"):
        publish(synthetic_batch("2026-10-05", 3), True, None, store)
    assert not store.exists()  # the store was not replaced by a batch the history does not hold
    monkeypatch.delenv("TIERWISE_HISTORY")
    assert publish(synthetic_batch("2026-10-05", 3), True, None, store).published
    assert batches(store.with_name("score_history"))["accounts"].tolist() == [3]
