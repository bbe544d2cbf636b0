"""The Neo4j graph follows the runs (issue 13, item 5), against the session's real Neo4j.

A ``linker synth`` world is cut into three cumulative daily snapshots (accounts by
``created_at``, payments by ``added_at``, events by ``ts``; the cuts fall inside the ring
members' signups, so rings gain members from one day to the next). Each snapshot goes through
the real pipeline. Loading day 1, day 2 and day 3 one after the other without ``--replace``
must leave the database exactly as a clean ``--replace`` load of day 3 does (every node,
relationship and property: :func:`linker.neo4j.loader.graph_digest`), with fewer writes.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import ROOT, Neo4jTestServer

from linker.cli import cli
from linker.neo4j.incremental import plan_step, read_held_run
from linker.neo4j.loader import LoadStep, graph_digest, load_run
from linker.pipeline import run
from linker.queries import load_query
from linker.synth import generate_world

pytestmark = pytest.mark.neo4j

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Days:
    runs: list[Path]
    worlds: list[Path]
    labels: pd.DataFrame


def _snapshot(world: Path, cut: pd.Timestamp, out: Path) -> Path:
    """The part of ``world`` known before ``cut``: accounts created, payments added and
    events seen before it (of those accounts), in the contract's CSV files."""
    out.mkdir(parents=True)
    accounts = pd.read_csv(world / "accounts.csv", dtype=str)
    accounts = accounts[pd.to_datetime(accounts["created_at"], utc=True) < cut]
    ids = set(accounts["account_id"])
    accounts.to_csv(out / "accounts.csv", index=False)
    for name, column in (("payments", "added_at"), ("events", "ts")):
        table = pd.read_csv(world / f"{name}.csv", dtype=str)
        keep = (pd.to_datetime(table[column], utc=True) < cut) & table["account_id"].isin(ids)
        table[keep].to_csv(out / f"{name}.csv", index=False)
    return out


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Days:
    root = tmp_path_factory.mktemp("days")
    world = root / "world"
    # Seed 4: accounts change clusters on both later days (asserted below), so the follow-load
    # has rows to delete; with seed 3, confirmed membership left day 2's clusters as day 1's.
    generate_world(1000, seed=4, out_dir=world, events_per_account=8)
    labels = pd.read_csv(world / "labels.csv", dtype=str)
    accounts = pd.read_csv(world / "accounts.csv", dtype=str)
    ring = accounts.merge(labels[labels["ring_id"].notna()], on="account_id")
    signups = pd.to_datetime(ring["created_at"], utc=True).sort_values().reset_index(drop=True)
    # Cuts inside the ring signups (half, then three quarters of them known), then everything.
    cuts = [
        signups[len(signups) // 2],
        signups[3 * len(signups) // 4],
        pd.Timestamp.max.tz_localize("UTC"),
    ]
    worlds, runs = [], []
    for day, cut in enumerate(cuts, start=1):
        snapshot = _snapshot(world, cut, root / f"day{day}")
        run(snapshot, root / f"day{day}.csv", run_dir=root / f"day{day}.run")
        worlds.append(snapshot)
        runs.append(root / f"day{day}.run")
    return Days(runs=runs, worlds=worlds, labels=labels)


def _manifest(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "manifest.json").read_text()))


def _scores(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "scores.parquet")


def _one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


def test_the_days_grow_and_move_accounts_between_clusters(days: Days) -> None:
    ring = set(days.labels.loc[days.labels["ring_id"].notna(), "account_id"])
    members = [len(ring & set(_scores(r)["account_id"])) for r in days.runs]
    assert members[0] < members[1] < members[2]  # ring members sign up day after day
    for before, after in zip(days.runs, days.runs[1:], strict=False):
        both = _scores(before).merge(_scores(after), on="account_id", suffixes=("_0", "_1"))
        moved = both["cluster_id_0"].notna() & (
            both["cluster_id_0"].fillna("") != both["cluster_id_1"].fillna("")
        )
        assert moved.any()  # some account leaves or changes its cluster
    as_of = [
        pd.Timestamp(pd.read_json(r / "manifest.json", typ="series")["as_of"]) for r in days.runs
    ]
    assert as_of == sorted(as_of) and len(set(as_of)) == 3


def _check_consistent(runner: Any) -> None:
    """What issue 13 found broken after a second load: no account in two clusters, and
    every cluster's size equal to its member edges."""
    twice = runner.run(
        "MATCH (a:Account)-[:IN_CLUSTER]->(c:Cluster) WITH a, count(c) AS n WHERE n > 1 "
        "RETURN count(a)"
    ).rows[0][0]
    assert twice == 0
    wrong = runner.run(
        "MATCH (c:Cluster) WHERE c.size IS NOT NULL "
        "OPTIONAL MATCH (a:Account)-[:IN_CLUSTER]->(c) WITH c, count(a) AS members "
        "WHERE members <> c.size RETURN collect(c.cluster_id)"
    ).rows[0][0]
    assert wrong == []
    stale = runner.run(
        "MATCH (a:Account)-[:IN_CLUSTER]->(c:Cluster) WHERE a.cluster_id <> c.cluster_id "
        "RETURN count(a)"
    ).rows[0][0]
    assert stale == 0


def test_three_days_loaded_in_turn_equal_a_clean_load_of_the_last(
    days: Days, neo4j_runner: Any
) -> None:
    summaries = []
    for run_dir in days.runs:
        summaries.append(load_run(run_dir, runner=neo4j_runner, batch_size=500))
        _check_consistent(neo4j_runner)
    followed = graph_digest(neo4j_runner)
    held = read_held_run(neo4j_runner)
    assert held is not None and held.complete and held.run_id == summaries[-1].run_id

    full = load_run(days.runs[-1], runner=neo4j_runner, batch_size=500, replace=True)
    clean = graph_digest(neo4j_runner)
    assert followed == clean
    assert sum(clean.relationships.values()) > 0 and clean.relationships["LINKED"] > 0

    # Days 2 and 3 deleted what the new day no longer had, and left what it kept alone.
    for summary in summaries[1:]:
        assert sum(summary.rows_deleted.values()) > 0
        assert summary.unchanged > 0
    last = summaries[-1]
    assert last.writes < full.writes
    logger.info(
        "day 3 over day 2: %d writes (%d written, %d deleted, %d unchanged); clean load: %d",
        last.writes,
        sum(last.rows_written.values()),
        sum(last.rows_deleted.values()),
        last.unchanged,
        full.writes,
    )


def test_the_same_run_again_is_a_no_op_and_an_older_run_is_refused(
    days: Days, neo4j_server: Neo4jTestServer, neo4j_runner: Any
) -> None:
    load_run(days.runs[1], runner=neo4j_runner)
    before = graph_digest(neo4j_runner)
    invoke = CliRunner(env={"NEO4J_URI": neo4j_server.bolt_uri}).invoke

    again = invoke(cli, ["neo4j", "load", str(days.runs[1])])
    assert again.exit_code == 0, again.output
    assert "is already loaded; nothing written" in again.output

    older = invoke(cli, ["neo4j", "load", str(days.runs[0])])
    assert older.exit_code == 2
    line = _one_line(older.output)
    assert line.startswith("Error: ") and "older than run" in line and "--replace" in line
    assert graph_digest(neo4j_runner) == before

    newer = invoke(cli, ["neo4j", "load", str(days.runs[2])])
    assert newer.exit_code == 0, newer.output
    assert "deleted" in newer.output and "unchanged" in newer.output

    forced = invoke(cli, ["neo4j", "load", str(days.runs[0]), "--replace"])
    assert forced.exit_code == 0, forced.output
    held = read_held_run(neo4j_runner)
    assert held is not None and held.run_id == _manifest(days.runs[0])["run_id"] and held.complete


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_with_neo4j_checks_the_server_before_the_run(days: Days, tmp_path: Path) -> None:
    out = tmp_path / "takedown.csv"
    no_server = {"NEO4J_URI": f"bolt://127.0.0.1:{_free_port()}"}
    done = CliRunner(env=no_server).invoke(
        cli, ["run", str(days.worlds[0]), "--out", str(out), "--neo4j"]
    )
    assert done.exit_code == 1
    line = _one_line(done.output)
    assert "cannot reach Neo4j" in line and "linker neo4j start" in line
    assert not out.exists() and not (tmp_path / "takedown.run").exists()  # nothing ran

    unconfigured = {"NEO4J_URI": None, "LINKER_CACHE_DIR": str(tmp_path / "cache")}
    done = CliRunner(env=unconfigured).invoke(
        cli, ["run", str(days.worlds[0]), "--out", str(out), "--neo4j"]
    )
    assert done.exit_code == 1
    assert "linker neo4j start" in _one_line(done.output)
    assert not (tmp_path / "takedown.run").exists()


def _size(runner: Any) -> int:
    """Nodes + relationships in the database (from the count store)."""
    nodes, relationships = runner.run(load_query("load/database_size")).rows[0]
    return int(nodes) + int(relationships)


def test_a_killed_load_over_an_earlier_day_converges_when_run_again(
    days: Days, neo4j_server: Neo4jTestServer, neo4j_runner: Any
) -> None:
    load_run(days.runs[0], runner=neo4j_runner)
    before, start = graph_digest(neo4j_runner), _size(neo4j_runner)
    cmd = [sys.executable, "-m", "linker.cli", "neo4j", "load", str(days.runs[2])]
    proc = subprocess.Popen(
        [*cmd, "--batch-size", "10"],
        cwd=ROOT,
        env=neo4j_server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill once the load has begun writing (the database's size moved), a seeded moment later.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and _size(neo4j_runner) == start:
        time.sleep(0.01)
    time.sleep(random.Random(13).uniform(0.0, 0.3))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the load ended before the kill"
    held = read_held_run(neo4j_runner)
    assert held is not None and not held.complete  # never taken for a finished load
    middle = graph_digest(neo4j_runner)

    again = load_run(days.runs[2], runner=neo4j_runner, batch_size=10)
    assert not again.already_loaded
    followed = graph_digest(neo4j_runner)
    load_run(days.runs[2], runner=neo4j_runner, replace=True)
    clean = graph_digest(neo4j_runner)
    assert followed == clean
    assert middle not in (before, clean)  # the kill landed between the writes


def test_plan_writes_changed_and_missing_rows_and_deletes_stale_and_doubled_ones() -> None:
    frame = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "d"],
            "model": ["m", "m", "m", "m", "m"],
            "load_hash": [1, 2, 3, 9, 4],
        }
    )
    step = LoadStep(
        "used_model",
        "load/used_model",
        frame,
        rel_type="USED_MODEL",
        start=("Account", "account_id"),
        end=("Model", "model"),
    )
    held = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "c", "e", "d"],
            "model": ["m", "m", "m", "m", "m", "m"],
            "held_hash": pd.array([1, 7, 3, 3, 5, None], dtype="Int64"),
        }
    )
    plan = plan_step(step, held, "load_hash")
    # b changed, c is held twice, d has no hash (and its last row wins); a is unchanged.
    assert list(plan.upsert.frame["account_id"]) == ["b", "c", "d"]
    assert list(plan.upsert.frame["load_hash"]) == [2, 3, 4]
    assert plan.unchanged == 1
    assert plan.delete is not None and plan.delete.query == "load/delete_relationships"
    assert sorted(plan.delete.frame["start"]) == ["c", "e"]
    text = plan.delete.cypher()
    assert "(a:Account {account_id: $start[i]})-[r:USED_MODEL]->(b:Model {name: $end[i]})" in text
