"""`linker run --neo4j` on a synthetic world fills the session's real Neo4j with the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from click.testing import CliRunner
from conftest import Neo4jTestServer

from linker.cli import cli
from linker.queries import run_query
from linker.synth import generate_world


def test_run_with_neo4j_loads_what_the_run_found(
    neo4j_server: Neo4jTestServer, neo4j_runner: Any, tmp_path: Path
) -> None:
    world = tmp_path / "world"
    generate_world(2000, seed=3, out_dir=world)
    out = tmp_path / "takedown.csv"
    done = CliRunner(env={"NEO4J_URI": neo4j_server.bolt_uri}).invoke(
        cli, ["run", str(world), "--out", str(out), "--neo4j"]
    )
    assert done.exit_code == 0, done.output
    assert "loaded" in done.output

    run_dir = tmp_path / "takedown.run"
    scores = pd.read_parquet(run_dir / "scores.parquet")
    clusters = pd.read_parquet(run_dir / "clusters.parquet")

    def count(cypher: str, **parameters: Any) -> int:
        return int(neo4j_runner.run(cypher, parameters).rows[0][0])

    assert count("MATCH (a:Account) RETURN count(a)") == len(scores)
    assert count("MATCH (c:Cluster) RETURN count(c)") == len(clusters)
    assert count("MATCH (:Account)-[r:IN_CLUSTER]->(:Cluster) RETURN count(r)") == int(
        scores["cluster_id"].notna().sum()
    )
    for action in ("suspend", "review"):
        assert count("MATCH (a:Account {action: $action}) RETURN count(a)", action=action) == int(
            (scores["action"] == action).sum()
        )

    top = run_query("top_clusters", {"limit": "3"}, runner=neo4j_runner).records()
    expected = clusters.sort_values(["score", "cluster_id"], ascending=[False, True]).head(3)
    assert [r["cluster_id"] for r in top] == list(expected["cluster_id"])
    assert [r["size"] for r in top] == [int(s) for s in expected["size"]]
