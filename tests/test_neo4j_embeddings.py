"""Embeddings reach Neo4j: Account.embedding, the vector index and nearest_accounts.cypher."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from conftest import Neo4jTestServer
from test_expand import write_world

from linker.neo4j.loader import load_run
from linker.pipeline import run
from linker.queries import run_query
from linker.settings import EmbeddingReviewSettings, LinkSettings, Settings


def test_nearest_accounts_returns_the_closest_embedding_first(
    neo4j_server: Neo4jTestServer, neo4j_runner: Any, tmp_path: Path
) -> None:
    world = write_world(tmp_path / "world")
    link = dataclasses.replace(LinkSettings(), embedding=EmbeddingReviewSettings(enabled=True))
    run(world, tmp_path / "t.csv", run_dir=tmp_path / "t.run", settings=Settings(link=link))
    summary = load_run(tmp_path / "t.run", runner=neo4j_runner)
    embeddings = pd.read_parquet(tmp_path / "t.run" / "embeddings.parquet")
    assert summary.rows_written["account_embeddings"] == len(embeddings)
    # Only accounts with a direction are saved: the unrelated ones share nothing.
    assert not embeddings["account_id"].str.startswith("u").any()

    stored = neo4j_runner.run(
        "MATCH (a:Account {account_id: $id}) RETURN a.embedding", {"id": "a0"}
    ).rows[0][0]
    vectors = np.stack(embeddings["embedding"].to_numpy()).astype(np.float64)
    ids = embeddings["account_id"].astype(str).to_numpy()
    me = int(np.flatnonzero(ids == "a0")[0])
    np.testing.assert_allclose(stored, vectors[me], rtol=1e-6)
    indexes = neo4j_runner.run(
        "SHOW INDEXES YIELD name, type WHERE name = 'account_embedding' RETURN type"
    ).rows
    assert indexes == [["VECTOR"]] or [list(r) for r in indexes] == [["VECTOR"]]

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit[me]
    cosine[me] = -np.inf
    best = cosine.max()
    rows = run_query("nearest_accounts", {"account_id": "a0", "limit": "5"}, runner=neo4j_runner)
    found = rows.records()
    assert len(found) == 5 and found[0]["account_id"] != "a0"
    first = cosine[int(np.flatnonzero(ids == found[0]["account_id"])[0])]
    # The nearest neighbour (up to float32 ties) comes first; Neo4j scores cosine (1 + cos) / 2.
    assert first >= best - 5e-3
    assert abs(found[0]["similarity"] - (1 + first) / 2) < 2e-3
    assert [r["similarity"] for r in found] == sorted(
        (r["similarity"] for r in found), reverse=True
    )
    assert all(r["account_id"].startswith("a") for r in found)
