"""`linker update`: a previous run plus one day's new rows, against a full run on all rows."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.engine import RunDirectory
from linker.synth import generate_world

TABLES = ("accounts", "payments", "events")


def _read(world: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(world / f"{name}.csv", dtype="string", keep_default_na=False)


def _split(world: Path, history: Path, day: Path) -> None:
    """The newest 1 % of accounts with all their rows, and the last 6 hours of the older
    accounts' events, arrive in ``day``; the rest is ``history``."""
    frames = {name: _read(world, name) for name in TABLES}
    created = pd.to_datetime(frames["accounts"]["created_at"], utc=True)
    new_ids = set(frames["accounts"].loc[created >= created.quantile(0.99), "account_id"])
    ts = pd.to_datetime(frames["events"]["ts"], utc=True)
    late = {
        "accounts": frames["accounts"]["account_id"].isin(new_ids),
        "payments": frames["payments"]["account_id"].isin(new_ids),
        "events": frames["events"]["account_id"].isin(new_ids)
        | (ts >= ts.max() - pd.Timedelta("6h")),
    }
    for name, frame in frames.items():
        history.mkdir(parents=True, exist_ok=True)
        day.mkdir(parents=True, exist_ok=True)
        frame[~late[name]].to_csv(history / f"{name}.csv", index=False)
        frame[late[name]].to_csv(day / f"{name}.csv", index=False)


def _invoke(*args: str | Path) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("incremental")
    generate_world(3000, 7, root / "world")
    _split(root / "world", root / "history", root / "day")
    _invoke("run", root / "history", "--out", root / "previous" / "t.csv")
    _invoke(
        "update",
        root / "day",
        "--previous",
        root / "previous" / "t.run",
        "--out",
        root / "updated" / "t.csv",
    )
    _invoke("run", root / "world", "--out", root / "full" / "t.csv")
    return root


def _actions(path: Path) -> pd.Series:
    frame = pd.read_csv(path, dtype="string", keep_default_na=False)
    return frame.set_index("account_id")["action"]


def test_update_agrees_with_a_full_run_on_ring_members_and_flags(runs: Path) -> None:
    labels = _read(runs / "world", "labels")
    ring = labels.loc[labels["ring_id"] != "", "account_id"]
    updated, full = _actions(runs / "updated" / "t.csv"), _actions(runs / "full" / "t.csv")
    new_ids = _read(runs / "day", "accounts")["account_id"]
    assert len(ring) and ring.isin(full.index).mean() > 0.5  # the full run finds rings
    assert set(updated.index) == set(full.index)
    pd.testing.assert_series_equal(updated.sort_index(), full.sort_index())
    on_ring = ring[ring.isin(full.index)]
    assert (updated.reindex(on_ring) == full.reindex(on_ring)).all()
    # New ring members that signed up in the day are flagged by the update itself.
    assert new_ids[new_ids.isin(ring)].isin(updated.index).all()


def test_update_recomputes_only_what_the_new_rows_touch(runs: Path) -> None:
    manifest = json.loads((runs / "updated" / "t.run" / "manifest.json").read_text())
    facts = {name: manifest["stages"][name]["facts"] for name in manifest["stages"]}
    n_accounts = int(manifest["counts"]["accounts"])
    assert manifest["update"]["new_rows"]["accounts"] == len(_read(runs / "day", "accounts"))
    assert 0 < facts["behaviour"]["behaviour_recomputed"] < n_accounts / 10
    assert 0 < facts["communities"]["nodes_repartitioned"] < facts["communities"]["nodes"]
    assert 0 < facts["identifiers"]["public_tested"] < facts["identifiers"]["identifiers"]
    tables = pd.read_parquet(runs / "updated" / "t.run" / "tables" / "accounts.parquet")
    assert len(tables) == n_accounts == len(_read(runs / "world", "accounts"))


def _by_account(path: Path, key: list[str]) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values(key, kind="mergesort").reset_index(drop=True)


def test_update_codes_only_the_new_events_and_equals_a_full_run(runs: Path) -> None:
    """The update reads the previous run's saved event codes instead of its events, codes
    the new events alone, searches lockstep pairs of the accounts with new events only, and
    its behaviour features and lockstep pairs are the full run's (pairs in a band bucket cut
    into blocks could differ; in this world they do not)."""
    run_dir = runs / "updated" / "t.run"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    behaviour = manifest["stages"]["behaviour"]
    new_events = len(_read(runs / "day", "events"))
    history = len(_read(runs / "history", "events"))
    said = behaviour["facts"]["event_codes"]
    assert said == f"{new_events} new events coded, {history} read as codes"
    # Lockstep compared only the accounts with new events, from the saved signatures.
    touched = behaviour["facts"]["behaviour_recomputed"]
    assert behaviour["facts"]["lockstep"].startswith(f"signatures of {touched} accounts")
    signatures = json.loads(
        (run_dir / "state" / "lockstep_signatures.parquet" / "_parts.json").read_text()
    )
    assert len(signatures["parts"]) == 2 and signatures["parts"][0].get("replaced")
    parts = json.loads((run_dir / "state" / "event_codes.parquet" / "_parts.json").read_text())
    assert [p["rows"] for p in parts["parts"]] == [history, new_events]
    full = runs / "full" / "t.run"
    for name, key in (("behaviour", ["account_id"]), ("lockstep", ["account_a", "account_b"])):
        pd.testing.assert_frame_equal(
            _by_account(run_dir / f"{name}.parquet", key),
            _by_account(full / f"{name}.parquet", key),
        )


def _incidence(run_dir: Path) -> set[tuple[str, str, str]]:
    """The (account, kind, value) entries of a run's saved incidence matrix."""
    entries = pd.read_parquet(run_dir / "state" / "incidence.parquet")
    accounts = pd.read_parquet(run_dir / "tables" / "accounts.parquet")["account_id"].to_numpy()
    idents = pd.read_parquet(run_dir / "identifiers.parquet")
    acc = accounts[entries["acc"].to_numpy()]
    col = entries["identifier"].to_numpy()
    kinds, values = idents["kind"].to_numpy()[col], idents["value"].to_numpy()[col]
    return set(zip(acc, kinds, values, strict=True))


def test_update_extends_the_saved_incidence_matrix_to_a_full_runs(runs: Path) -> None:
    run_dir = runs / "updated" / "t.run"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    facts = manifest["stages"]["identifiers"]["facts"]
    previous = pd.read_parquet(runs / "previous" / "t.run" / "state" / "incidence.parquet")
    assert facts["incidence"].startswith(f"{len(previous)} saved entries extended with")
    got, want = _incidence(run_dir), _incidence(runs / "full" / "t.run")
    assert len(got) > len(previous) and got == want
    observed = pd.read_parquet(runs / "full" / "t.run" / "observations.parquet")
    observed = observed[observed["value"].notna()]
    assert want == set(
        zip(observed["account_id"], observed["kind"], observed["value"], strict=True)
    )
    # Each identifier's count, and which identifiers gained a holder, follow from it.
    key = ["kind", "value"]
    counts = [
        pd.read_parquet(r / "identifiers.parquet", columns=[*key, "n_accounts"])
        for r in (run_dir, runs / "full" / "t.run")
    ]
    pd.testing.assert_frame_equal(counts[0], counts[1])
    before = pd.read_parquet(runs / "previous" / "t.run" / "identifiers.parquet")
    grown = counts[0].merge(before[[*key, "n_accounts"]], on=key, how="left", suffixes=("", "_was"))
    assert facts["identifiers_touched"] == int(
        (grown["n_accounts"] > grown["n_accounts_was"].fillna(0)).sum()
    )


def test_update_writes_only_the_revised_and_new_observations(runs: Path) -> None:
    """The previous observations stay as stored (a hard-linked part); the update writes the
    rows the new ones change and the new pairs, and reads back as a full run's."""
    run_dir = runs / "updated" / "t.run"
    facts = json.loads((run_dir / "manifest.json").read_text())["stages"]["normalise"]["facts"]
    parts = json.loads((run_dir / "observations.parquet" / "_parts.json").read_text())["parts"]
    assert 0 < facts["observations_revised"] == len(parts[0]["replaced"])
    assert parts[1]["rows"] == facts["observations_revised"] + facts["new_pairs"]
    previous = runs / "previous" / "t.run" / "observations.parquet"
    assert os.path.samefile(run_dir / "observations.parquet" / parts[0]["file"], previous)
    key = ["account_id", "kind", "value"]
    got = RunDirectory(run_dir).read("observations")
    want = RunDirectory(runs / "full" / "t.run").read("observations")
    assert len(got) == facts["observations"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    )


@pytest.mark.parametrize(
    ("artefact", "column", "broken"),
    [("event_values", "code", 10**6), ("incidence", "identifier", 10**8)],
)
def test_broken_saved_state_stops_the_update_in_one_line(
    runs: Path, tmp_path: Path, artefact: str, column: str, broken: int
) -> None:
    previous = tmp_path / "previous.run"
    shutil.copytree(runs / "previous" / "t.run", previous)
    path = previous / "state" / f"{artefact}.parquet"
    frame = pd.read_parquet(path)
    frame.loc[frame.index[-1], column] = broken
    frame.to_parquet(path, index=False)
    out = tmp_path / "out" / "t.csv"
    result = CliRunner().invoke(
        cli, ["update", str(runs / "day"), "--previous", str(previous), "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "saved" in lines[0]
    assert "linker run" in lines[0] and not out.exists()


def test_update_is_deterministic(runs: Path) -> None:
    again = runs / "again" / "t.csv"
    _invoke("update", runs / "day", "--previous", runs / "previous" / "t.run", "--out", again)
    assert again.read_bytes() == (runs / "updated" / "t.csv").read_bytes()


def test_update_refuses_an_account_of_the_previous_run(runs: Path, tmp_path: Path) -> None:
    day = tmp_path / "day"
    day.mkdir()
    old = _read(runs / "history", "accounts").iloc[[5]]
    accounts = pd.concat([_read(runs / "day", "accounts"), old], ignore_index=True)
    accounts.to_csv(day / "accounts.csv", index=False)
    result = CliRunner().invoke(
        cli,
        [
            "update",
            str(day),
            "--previous",
            str(runs / "previous" / "t.run"),
            "--out",
            str(tmp_path / "out" / "t.csv"),
        ],
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    row = len(accounts)
    assert f"accounts.csv: row {row}" in lines[0] and "column account_id" in lines[0]
    assert old["account_id"].iloc[0] in lines[0] and "previous run" in lines[0]
    assert not (tmp_path / "out" / "t.csv").exists()


def test_update_refuses_to_overwrite_the_previous_run(runs: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "update",
            str(runs / "day"),
            "--previous",
            str(runs / "previous" / "t.run"),
            "--out",
            str(runs / "previous" / "t.csv"),
        ],
    )
    assert result.exit_code == 2 and "previous one" in result.output


def test_update_carries_cluster_ids_and_lists_only_the_changes(runs: Path) -> None:
    labels = _read(runs / "world", "labels").set_index("account_id")["ring_id"]
    before = pd.read_csv(runs / "previous" / "t.csv", dtype="string", keep_default_na=False)
    after = pd.read_csv(runs / "updated" / "t.csv", dtype="string", keep_default_na=False)
    for frame in (before, after):
        frame["ring_id"] = frame["account_id"].map(labels)
    ringed = before[before["ring_id"] != ""]
    assert len(ringed)
    for ring, members in ringed.groupby("ring_id"):
        old_id = members["cluster_id"].mode().iloc[0]
        new_id = after.loc[after["ring_id"] == ring, "cluster_id"].mode().iloc[0]
        assert new_id == old_id, ring
    changes = pd.read_csv(runs / "updated" / "t.changes.csv", dtype="string", keep_default_na=False)
    was = before.set_index("account_id")["action"]
    now = after.set_index("account_id")["action"]
    changed = {a for a in set(was.index) | set(now.index) if was.get(a) != now.get(a)}
    assert set(changes["account_id"]) >= changed
    assert len(changes) < len(after)


def test_a_chain_of_updates_keeps_the_tables_as_linked_parts(runs: Path) -> None:
    """The day in two halves, one update after the other: each run directory's tables are
    the previous one's parts (hard links) plus the new rows, and the observations equal those
    of the one-step update (the merge is exact)."""
    frames = {name: _read(runs / "day", name) for name in TABLES}
    accounts = frames["accounts"]
    second = set(accounts["account_id"].iloc[1::2])
    ts = pd.to_datetime(frames["events"]["ts"], utc=True)
    late = {
        "accounts": accounts["account_id"].isin(second),
        "payments": frames["payments"]["account_id"].isin(second),
        "events": frames["events"]["account_id"].isin(second) | (ts >= ts.median()),
    }
    for name, frame in frames.items():
        for half, rows in (("a", frame[~late[name]]), ("b", frame[late[name]])):
            (runs / f"day-{half}").mkdir(exist_ok=True)
            rows.to_csv(runs / f"day-{half}" / f"{name}.csv", index=False)
    one, two = runs / "chain-1" / "t.csv", runs / "chain-2" / "t.csv"
    _invoke("update", runs / "day-a", "--previous", runs / "previous" / "t.run", "--out", one)
    _invoke("update", runs / "day-b", "--previous", runs / "chain-1" / "t.run", "--out", two)
    first, last = runs / "chain-1" / "t.run" / "tables", runs / "chain-2" / "t.run" / "tables"
    for name in TABLES:
        parts = json.loads((last / f"{name}.parquet" / "_parts.json").read_text())["parts"]
        assert len(parts) == 3
        for part in parts[:2]:
            linked = (last / f"{name}.parquet" / part["file"]).stat()
            before = (first / f"{name}.parquet" / part["file"]).stat()
            assert (linked.st_ino, linked.st_dev) == (before.st_ino, before.st_dev)
        whole = pd.read_parquet(runs / "updated" / "t.run" / "tables" / f"{name}.parquet")
        chained = pd.read_parquet(last / f"{name}.parquet")
        assert len(chained) == len(whole)
    parts = json.loads(
        (runs / "chain-2" / "t.run" / "state" / "event_codes.parquet" / "_parts.json").read_text()
    )
    assert len(parts["parts"]) == 3
    for name, by in (("behaviour", ["account_id"]), ("lockstep", ["account_a", "account_b"])):
        pd.testing.assert_frame_equal(
            _by_account(runs / "chain-2" / "t.run" / f"{name}.parquet", by),
            _by_account(runs / "updated" / "t.run" / f"{name}.parquet", by),
        )
    key = ["account_id", "kind", "value"]
    one_step = RunDirectory(runs / "updated" / "t.run").read("observations")
    chained = RunDirectory(runs / "chain-2" / "t.run").read("observations")
    pd.testing.assert_frame_equal(
        chained.sort_values(key).reset_index(drop=True),
        one_step.sort_values(key).reset_index(drop=True),
    )


def test_update_keeps_the_previous_runs_decisions(runs: Path, tmp_path: Path) -> None:
    """A daily update re-reads the decisions file its previous run applied: an account an
    analyst cleared is not suspended again by the next update on the same evidence."""
    previous = _actions(runs / "previous" / "t.csv")
    account = sorted(previous[previous == "suspend"].index)[0]
    events = pd.read_csv(runs / "world" / "events.csv", usecols=["ts"])
    after_everything = pd.to_datetime(events["ts"], utc=True).max() + pd.Timedelta("1D")
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(
        "account_id,cluster_id,decision,analyst,decided_at,note\n"
        f"{account},,cleared,ann,{after_everything.strftime('%Y-%m-%dT%H:%M:%SZ')},family\n"
    )
    _invoke("run", runs / "history", "--out", tmp_path / "day1" / "t.csv", "--decisions", decisions)
    day1 = pd.read_csv(tmp_path / "day1" / "t.csv", dtype=str).set_index("account_id")
    assert account not in day1.index  # cleared: no longer on the takedown list
    _invoke(
        "update",
        runs / "day",
        "--previous",
        tmp_path / "day1" / "t.run",
        "--out",
        tmp_path / "day2" / "t.csv",
    )
    day2 = pd.read_csv(tmp_path / "day2" / "t.csv", dtype=str).set_index("account_id")
    assert account not in day2.index
    # Without the previous run's decisions the same update would suspend it again.
    _invoke(
        "update",
        runs / "day",
        "--previous",
        runs / "previous" / "t.run",
        "--out",
        tmp_path / "undecided" / "t.csv",
    )
    undecided = pd.read_csv(tmp_path / "undecided" / "t.csv", dtype=str).set_index("account_id")
    assert undecided.loc[account, "action"] == "suspend"
    manifest = json.loads((tmp_path / "day2" / "t.run" / "manifest.json").read_text())
    assert manifest["decisions"]["accepted"] == 1
