"""kill -9 of `linker neo4j load` at random points, then a reload: exactly a clean load.

The reference is a clean load into an empty database (through the CLI, as a user runs it),
summarised by :func:`linker.neo4j.loader.graph_digest`: nodes per label, relationships per
type and a SHA-256 over every node, relationship and property. Each kill point starts the same
load in a child process and sends it SIGKILL once the database holds a seeded share of the
clean graph (drawn from the point's own slice of 0-100 %, so the points spread from the
first batches through every step to the final counts) plus a seeded jitter of up to 50 ms
(so the kill lands inside a batch or its commit), reloads, and demands the clean load's
digest. Progress, not time, places the kills: a load's duration varies several-fold with the
server's warm-up. Every other point kills a ``--replace`` load over another run's graph
(whose account ids overlap) and reloads with ``--replace``.

``LINKER_KILL_POINTS`` (default 4) and ``LINKER_KILL_SEED`` (default 12) set the number of kill
points and the seed; docs/reliability.md gives the longer run.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import ROOT, Neo4jTestServer, linker_cli
from neo4j_world import build_run_dir, random_world
from test_neo4j_load import expected_counts

from linker.neo4j.loader import clear_graph, graph_digest, load_run
from linker.queries import load_query

pytestmark = pytest.mark.neo4j

logger = logging.getLogger(__name__)

KILL_POINTS = int(os.environ.get("LINKER_KILL_POINTS", "4"))
KILL_SEED = int(os.environ.get("LINKER_KILL_SEED", "12"))
BATCH = "10"


def _with_links(run_dir: Path) -> Path:
    """Give the run evidence links (LINKED relationships with properties): consecutive
    members of each cluster."""
    scores = pd.read_parquet(run_dir / "scores.parquet").dropna(subset=["cluster_id"])
    rows = []
    for _cluster, members in scores.groupby("cluster_id", sort=True):
        ids = sorted(members["account_id"].astype(str))
        for a, b in itertools.pairwise(ids):
            rows.append((a, b, 1.5, f"payment:{a}-{b};device:x"))
    pd.DataFrame(rows, columns=["account_a", "account_b", "weight", "evidence"]).to_parquet(
        run_dir / "links.parquet", index=False
    )
    return run_dir


def _load_cmd(run_dir: Path, *extra: str) -> list[str]:
    cli = [sys.executable, "-m", "linker.cli", "neo4j", "load", str(run_dir)]
    return [*cli, "--batch-size", BATCH, *extra]


@dataclasses.dataclass
class KillPoint:
    index: int
    replace: bool
    target: float
    """The share of the clean graph's nodes + relationships written when the kill is due."""
    jitter: float
    """Seconds between reaching the target and the SIGKILL (lands inside a batch or commit)."""
    killed: bool = False
    written: float = 0.0
    """The share of the clean graph's size in the database right after the kill."""


def _size(runner: Any) -> int:
    """Nodes + relationships in the database (from the count store)."""
    nodes, relationships = runner.run(load_query("load/database_size")).rows[0]
    return int(nodes) + int(relationships)


def _kill_at(point: KillPoint, proc: subprocess.Popen[bytes], runner: Any, full: int) -> None:
    """SIGKILL ``proc`` once the database holds ``point.target`` of the clean graph (for a
    ``--replace`` load: after the previous graph's deletion began), plus the jitter."""
    start_size = _size(runner)
    cleared = not point.replace
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        size = _size(runner)
        cleared = cleared or size < start_size
        if cleared and size >= point.target * full:
            time.sleep(point.jitter)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                point.killed = True
            break
        time.sleep(0.01)
    proc.wait(timeout=60)


def test_killed_load_reloads_to_exactly_a_clean_load(
    neo4j_server: Neo4jTestServer, neo4j_runner: Any, tmp_path: Path
) -> None:
    run_dir = _with_links(build_run_dir(random_world(150, seed=5), tmp_path / "run"))
    # Another run whose account ids overlap this one's: --replace must leave none of it.
    other = build_run_dir(random_world(40, seed=9), tmp_path / "other")

    clean_load = linker_cli(*_load_cmd(run_dir)[3:], env=neo4j_server.env)
    assert clean_load.returncode == 0, clean_load.stderr
    clean = graph_digest(neo4j_runner)
    nodes, rels = expected_counts(run_dir)
    links = len(pd.read_parquet(run_dir / "links.parquet"))
    assert clean.nodes == nodes and clean.relationships == {**rels, "LINKED": links}
    full = _size(neo4j_runner)

    rng = random.Random(KILL_SEED)
    points: list[KillPoint] = []
    for index in range(KILL_POINTS):
        # One kill point per slice of the load's progress, at a seeded place in it.
        point = KillPoint(
            index=index,
            replace=index % 2 == 1,
            target=(index + rng.random()) / KILL_POINTS,
            jitter=rng.uniform(0.0, 0.05),
        )
        clear_graph(neo4j_runner)
        if point.replace:
            load_run(other, runner=neo4j_runner)  # the graph that --replace must remove
        proc = subprocess.Popen(
            _load_cmd(run_dir, *(["--replace"] if point.replace else [])),
            cwd=ROOT,
            env=neo4j_server.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _kill_at(point, proc, neo4j_runner, full)
        point.written = _size(neo4j_runner) / full
        points.append(point)
        logger.info("kill point %s", point)

        # The reload: the same load again (with --replace when the killed one had it).
        load_run(run_dir, runner=neo4j_runner, batch_size=int(BATCH), replace=point.replace)
        assert graph_digest(neo4j_runner) == clean, f"reload after {point} is not a clean load"

    # The points really interrupted writes: kills left partial graphs behind.
    mid_write = [p for p in points if p.killed and 0 < p.written < 1]
    assert len(mid_write) >= min(2, KILL_POINTS), points


def test_reload_after_a_completed_load_equals_a_clean_load(
    neo4j_runner: Any, tmp_path: Path
) -> None:
    run_dir = _with_links(build_run_dir(random_world(60, seed=4), tmp_path / "run"))
    load_run(run_dir, runner=neo4j_runner, batch_size=7)
    clean = graph_digest(neo4j_runner)
    assert sum(clean.relationships.values()) > 0 and clean.relationships["LINKED"] > 0
    load_run(run_dir, runner=neo4j_runner, batch_size=13)  # again, no --replace
    assert graph_digest(neo4j_runner) == clean
    load_run(run_dir, runner=neo4j_runner, replace=True)
    assert graph_digest(neo4j_runner) == clean


def test_digest_sees_a_changed_property_and_a_duplicate(neo4j_runner: Any, tmp_path: Path) -> None:
    run_dir = build_run_dir(random_world(20, seed=2), tmp_path / "run")
    load_run(run_dir, runner=neo4j_runner)
    clean = graph_digest(neo4j_runner)
    neo4j_runner.run(
        "MATCH (a:Account {account_id: 'a000001'}) SET a.score = 0.1000001", write=True
    )
    changed = graph_digest(neo4j_runner)
    assert changed.sha256 != clean.sha256 and changed.nodes == clean.nodes
    # A load compares the content hashes it wrote, so a hand edit needs --replace to undo.
    load_run(run_dir, runner=neo4j_runner, replace=True)
    assert graph_digest(neo4j_runner) == clean
    neo4j_runner.run(
        "MATCH (a:Account {account_id: 'a000001'})-[r:USED_MODEL]->(m) WITH a, m LIMIT 1 "
        "CREATE (a)-[:USED_MODEL]->(m)",
        write=True,
    )
    assert graph_digest(neo4j_runner) != clean
    load_run(run_dir, runner=neo4j_runner)  # a relationship held twice is written once
    assert graph_digest(neo4j_runner) == clean
