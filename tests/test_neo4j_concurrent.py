"""Rows known to be new go through ``CREATE`` ``IN CONCURRENT TRANSACTIONS`` (issue 16, item 3),
against the session's real Neo4j: the graph is exactly the one the ``MERGE`` batches write, and
an inner transaction that fails has its rows written again with ``MERGE``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from neo4j_world import build_run_dir, random_world, small_world
from test_neo4j_load import db_counts, expected_counts

from linker.errors import InputError
from linker.neo4j.incremental import write_new_rows
from linker.neo4j.loader import clear_graph, graph_digest, load_run, prepare_load

pytestmark = pytest.mark.neo4j


def test_concurrent_create_and_merge_batches_give_the_same_graph(
    neo4j_runner: Any, tmp_path: Path
) -> None:
    run_dir = build_run_dir(random_world(60, seed=3), tmp_path / "run")
    merged = load_run(run_dir, runner=neo4j_runner, batch_size=7, concurrency=0)
    by_merge = graph_digest(neo4j_runner)
    assert by_merge.relationships == expected_counts(run_dir)[1]

    clear_graph(neo4j_runner)
    # Batches of 7 rows, 3 at once: many inner transactions per query, several queries.
    created = load_run(run_dir, runner=neo4j_runner, batch_size=7, concurrency=3)
    assert graph_digest(neo4j_runner) == by_merge
    assert created.rows_written == merged.rows_written
    assert created.batches < merged.batches  # one query carries many inner transactions

    # A later load of the same run writes nothing; a changed run converges to its own graph.
    assert load_run(run_dir, runner=neo4j_runner, concurrency=3).writes == 0
    other = build_run_dir(small_world(), tmp_path / "other")
    load_run(other, runner=neo4j_runner, batch_size=7, concurrency=3, replace=True)
    followed = graph_digest(neo4j_runner)
    load_run(other, runner=neo4j_runner, batch_size=7, concurrency=0, replace=True)
    assert followed == graph_digest(neo4j_runner)
    assert db_counts(neo4j_runner) == expected_counts(other)


def test_failed_inner_transactions_are_written_again_with_merge(
    neo4j_runner: Any, tmp_path: Path
) -> None:
    run_dir = build_run_dir(small_world(), tmp_path / "run")
    load_run(run_dir, runner=neo4j_runner, concurrency=0)
    before = graph_digest(neo4j_runner)
    # Identifier nodes the database already holds, sent as new: each CREATE breaks the
    # uniqueness constraint on value, so every inner transaction fails and is redone.
    step = next(s for s in prepare_load(run_dir).steps if s.name == "identifier_Device")
    assert len(step.frame) >= 2
    written, queries, redone = write_new_rows(neo4j_runner, [step], batch_size=1, concurrency=2)
    assert written == {"identifier_Device": len(step.frame)}
    assert queries == 1 and redone == len(step.frame)
    assert graph_digest(neo4j_runner) == before  # no duplicate, nothing lost


def test_negative_concurrency_is_an_input_error(neo4j_runner: Any, tmp_path: Path) -> None:
    run_dir = build_run_dir(small_world(), tmp_path / "run")
    with pytest.raises(InputError, match="concurrency must be 0 or more"):
        load_run(run_dir, runner=neo4j_runner, concurrency=-1)
