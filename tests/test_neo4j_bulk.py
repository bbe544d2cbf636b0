"""The bulk importer (``linker neo4j load --bulk``) against the UNWIND loader, on real servers.

The bulk import stops and restarts its server, so it gets a server of its own here, on a
separate data directory; the session server of conftest keeps running for the other tests and
holds the UNWIND load that the bulk graph is compared with.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import linker_cli
from neo4j_world import build_run_dir, random_world, small_world
from test_expand import write_world
from test_neo4j_load import db_counts, expected_counts

from linker.errors import LinkerError
from linker.neo4j.bulk import bulk_load, write_import_files
from linker.neo4j.incremental import read_held_run
from linker.neo4j.loader import graph_digest, load_run, prepare_load
from linker.neo4j.runner import ConnectionSettings, QueryRunner
from linker.neo4j.server import ServerInfo, start_server, stop_server
from linker.pipeline import run
from linker.settings import EmbeddingReviewSettings, LinkSettings, Settings
from linker.synth import generate_world

pytestmark = pytest.mark.neo4j

MULTILINE_AGENT = 'agent "quoted",\nsecond line'

NODES = (  # the run's graph; the (:LinkerRun) node's loaded_at differs between two loads
    "MATCH (n) WHERE NOT n:LinkerRun RETURN labels(n) AS labels, "
    "coalesce(n.account_id, n.value, n.cluster_id, n.name) AS key, properties(n) AS props"
)
RELATIONSHIPS = (
    "MATCH (a)-[r]->(b) RETURN labels(a)[0] AS a, "
    "coalesce(a.account_id, a.value) AS a_key, type(r) AS type, labels(b)[0] AS b, "
    "coalesce(b.value, b.cluster_id, b.name) AS b_key, properties(r) AS props"
)
SCHEMA = "SHOW INDEXES YIELD name, type, labelsOrTypes, properties WHERE type <> 'LOOKUP' RETURN *"


def _dump(runner: Any, query: str) -> list[str]:
    """Every row as text (temporal values included), sorted: a graph-wide fingerprint."""

    def text(value: Any) -> str:
        if isinstance(value, dict):
            return repr(sorted((k, text(v)) for k, v in value.items()))
        return repr(value)

    return sorted(text(row) for row in runner.run(query).records())


def _world_run(tmp_path: Path) -> Path:
    """The small world plus a value with quotes, a comma and a line break (CSV edge cases)."""
    world = small_world()
    extra = world.events.iloc[[0]].copy()
    extra["user_agent"] = MULTILINE_AGENT
    world.events = pd.concat([world.events, extra], ignore_index=True)
    return build_run_dir(world, tmp_path / "run")


@pytest.fixture(scope="module")
def bulk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    home = tmp_path_factory.mktemp("neo4j-bulk")
    info = start_server(
        data_dir=home,
        bolt_port="auto",
        http_port="auto",
        auth=False,
        heap="512m",
        pagecache="256m",
    )
    try:
        yield info
    finally:
        stop_server(data_dir=home)
        shutil.rmtree(home, ignore_errors=True)


def _runner(info: ServerInfo) -> QueryRunner:
    return QueryRunner(ConnectionSettings(uri=info.bolt_uri, source="bulk test"))


def test_bulk_and_unwind_loads_give_the_same_graph(
    bulk_server: ServerInfo, neo4j_runner: Any, tmp_path: Path
) -> None:
    run_dir = _world_run(tmp_path)
    load_run(run_dir, runner=neo4j_runner, batch_size=4)

    summary = bulk_load(run_dir, data_dir=bulk_server.data_dir)
    assert summary.phases["import"] > 0 and not summary.replaced
    with _runner(bulk_server) as bulk:
        assert db_counts(bulk) == db_counts(neo4j_runner) == expected_counts(run_dir)
        assert (summary.nodes, summary.relationships) == db_counts(bulk)
        # Every node and relationship with every property (types and values) is identical.
        assert _dump(bulk, NODES) == _dump(neo4j_runner, NODES)
        assert _dump(bulk, RELATIONSHIPS) == _dump(neo4j_runner, RELATIONSHIPS)
        assert _dump(bulk, SCHEMA) == _dump(neo4j_runner, SCHEMA)
        # The canonical digest of the whole graph agrees too (integer import ids are not
        # stored: the keys are the same string properties as the UNWIND load's).
        assert graph_digest(bulk) == graph_digest(neo4j_runner)
        # Both record the run they hold, completely loaded; a later UNWIND load follows on.
        held, unwind_held = read_held_run(bulk), read_held_run(neo4j_runner)
        assert held is not None and held.complete and held == unwind_held
        assert load_run(run_dir, runner=bulk).writes == 0
        assert _dump(bulk, NODES) == _dump(neo4j_runner, NODES)
        agent = bulk.run(
            "MATCH (u:UserAgent {value: $v})<-[:USED_USER_AGENT]-(a) RETURN a.account_id",
            {"v": MULTILINE_AGENT},
        ).rows
        assert agent == [("f1",)]
        # "" stays an empty string and a missing value stays absent, as in the UNWIND load.
        b1 = bulk.run("MATCH (a:Account {account_id: 'b1'}) RETURN a.reasons, a.cluster_id").rows
        assert b1 == [("", None)]

    # A second bulk load into the now non-empty database is refused; nothing changes.
    before = db_counts(neo4j_runner)
    with pytest.raises(LinkerError, match=r"not empty \(\d+ nodes.*pass --replace"):
        bulk_load(run_dir, data_dir=bulk_server.data_dir)
    with _runner(bulk_server) as again:
        assert db_counts(again) == before


def test_bulk_load_of_a_pipeline_run_equals_its_unwind_load(
    bulk_server: ServerInfo, neo4j_runner: Any, tmp_path: Path
) -> None:
    """A run directory written by the pipeline itself (not built by hand): its events table
    holds its text as dictionary columns, which the import files must spell out."""
    world = tmp_path / "world"
    generate_world(1000, seed=11, out_dir=world, fmt="parquet")
    run_dir = tmp_path / "t.run"
    run(world, tmp_path / "t.csv", run_dir=run_dir)
    events = pd.read_parquet(run_dir / "tables" / "events.parquet", columns=["model"])
    assert isinstance(events["model"].dtype, pd.CategoricalDtype)

    load_run(run_dir, runner=neo4j_runner, replace=True)
    summary = bulk_load(run_dir, data_dir=bulk_server.data_dir, replace=True)
    assert summary.rows_written["used_model"] > 0
    with _runner(bulk_server) as bulk:
        assert db_counts(bulk) == db_counts(neo4j_runner)
        assert (summary.nodes, summary.relationships) == db_counts(bulk)
        assert graph_digest(bulk) == graph_digest(neo4j_runner)
        used = "MATCH (:Account)-[r:USED_MODEL]->(:Model) RETURN count(r)"
        assert bulk.run(used).rows == neo4j_runner.run(used).rows != [(0,)]


# A second stop-import-start cycle (about 35 s here): run with -m slow.
@pytest.mark.slow
def test_cli_bulk_refuses_a_populated_database_and_replaces_it(
    bulk_server: ServerInfo, tmp_path: Path
) -> None:
    other = build_run_dir(random_world(40, seed=5), tmp_path / "other")
    with _runner(bulk_server) as runner:
        load_run(other, runner=runner, replace=True)  # a populated database, loaded by UNWIND
        populated = db_counts(runner)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    target = build_run_dir(small_world(), tmp_path / "small")
    args = ("neo4j", "load", str(target), "--bulk", "--data-dir", str(bulk_server.data_dir))

    refused = linker_cli(*args, env=env)
    assert refused.returncode == 1
    message = refused.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("Error: database neo4j in ")
    assert "not empty" in message[0] and "--replace" in message[0]
    with _runner(bulk_server) as runner:
        assert db_counts(runner) == populated  # the server is up and nothing was touched

    done = linker_cli(*args, "--replace", env=env)
    assert done.returncode == 0, done.stderr
    assert "bulk-imported" in done.stdout and "over the previous graph" in done.stdout
    nodes, rels = expected_counts(target)
    assert f"(:Account) {nodes['Account']}" in done.stdout
    with _runner(bulk_server) as runner:
        assert db_counts(runner) == (nodes, rels)


def test_bulk_load_writes_the_run_embeddings_and_their_vector_index(
    bulk_server: ServerInfo, tmp_path: Path
) -> None:
    world = write_world(tmp_path / "world")
    link = dataclasses.replace(LinkSettings(), embedding=EmbeddingReviewSettings(enabled=True))
    run_dir = tmp_path / "t.run"
    run(world, tmp_path / "t.csv", run_dir=run_dir, settings=Settings(link=link))
    embeddings = pd.read_parquet(run_dir / "embeddings.parquet")
    assert len(embeddings) > 0

    summary = bulk_load(run_dir, data_dir=bulk_server.data_dir, replace=True)
    assert summary.rows_written["account_embeddings"] == len(embeddings)
    assert "embeddings" in summary.phases
    with _runner(bulk_server) as runner:
        stored = {
            row["id"]: row["embedding"]
            for row in runner.run(
                "MATCH (a:Account) WHERE a.embedding IS NOT NULL "
                "RETURN a.account_id AS id, a.embedding AS embedding"
            ).records()
        }
        index = runner.run(
            "SHOW INDEXES YIELD name, type, labelsOrTypes, properties "
            "WHERE name = 'account_embedding' RETURN type, labelsOrTypes, properties"
        ).rows
    assert sorted(stored) == sorted(embeddings["account_id"].astype(str))
    for account_id, vector in zip(embeddings["account_id"], embeddings["embedding"], strict=True):
        np.testing.assert_allclose(stored[str(account_id)], vector, rtol=1e-6)
    assert [list(row) for row in index] == [["VECTOR", ["Account"], ["embedding"]]]


def test_compressed_import_files_hold_the_same_bytes(tmp_path: Path) -> None:
    prepared = prepare_load(_world_run(tmp_path))
    (tmp_path / "plain").mkdir()
    (tmp_path / "gz").mkdir()
    plain = write_import_files(prepared, tmp_path / "plain", workers=1)
    packed = write_import_files(prepared, tmp_path / "gz", compress=True, workers=3)
    assert plain.multiline and packed.multiline  # the user agent with a line break
    assert [label for label, _ in plain.nodes] == [label for label, _ in packed.nodes]
    assert [t for t, _ in plain.relationships] == [t for t, _ in packed.relationships]
    for (_, a), (_, b) in zip(
        plain.nodes + plain.relationships, packed.nodes + packed.relationships, strict=True
    ):
        assert b.name == a.name + ".gz"
        assert gzip.decompress(b.read_bytes()) == a.read_bytes()
    header = (tmp_path / "plain" / "accounts.csv").read_text().splitlines()[0]
    assert header.startswith(":ID(Account),account_id:string,created_at:datetime,")
    used_ip = (tmp_path / "plain" / "rel_USED_IP.csv").read_text().splitlines()[0]
    assert used_ip.startswith(":START_ID(Account),:END_ID(IP),first_seen:datetime,")
