"""Make the database hold exactly one run's graph, writing only what differs from what it holds.

:func:`linker.neo4j.loader.load_run` calls :func:`sync_run`. The database records the run it
holds on a singleton ``(:LinkerRun {run_id, as_of, run_dir, loaded_at, complete})`` node
(``queries/load/run_*.cypher``). A load:

1. reads that node: a run whose ``as_of`` is older than the held one's is refused (unless
   ``replace``), and the run already held, completely loaded, is a no-op;
2. marks the node with the new run, incomplete, before its first write (so a killed load is
   never taken for a finished one);
3. reads, per node label and relationship type the loader writes, every key and content hash
   (``load_hash``, :func:`linker.neo4j.loader.row_hashes`) the database holds
   (``queries/load/state_*.cypher``), and compares them with the run's rows
   (:func:`plan_step`): a row whose key is absent or whose hash differs is written again; a key
   the run no longer has is deleted (relationships first, then nodes with ``DETACH DELETE``);
   a relationship the database holds twice is deleted and written once;
4. writes the deletions, then the changed rows, in ``UNWIND`` batches through the same queries
   as a first load, and marks the node complete.

Because the plan is computed from what the database holds, not from what an earlier load
meant to write, a load killed at any point and run again converges to the run's graph.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from linker.errors import InputError
from linker.queries import load_query

from .loader import (
    CREATE_QUERIES,
    EMBEDDING_HASH_COLUMN,
    HASH_COLUMN,
    LoadStep,
    LoadSummary,
    PreparedLoad,
    _prefetched,
    batch_parameters,
    clear_graph,
    create_schema,
    create_vector_index,
    graph_counts,
    write_steps,
)
from .redact import secret_safe_logger
from .runner import QueryRunner

__all__ = [
    "HeldRun",
    "LoadPlan",
    "StepPlan",
    "plan_load",
    "plan_step",
    "read_held_run",
    "record_run",
    "sync_run",
    "write_new_rows",
]

logger = secret_safe_logger(__name__)

_HELD = "held_hash"


@dataclass(frozen=True)
class HeldRun:
    """The run the database holds, from its ``(:LinkerRun)`` node."""

    run_id: str | None
    as_of: str | None
    run_dir: str | None
    complete: bool


@dataclass(frozen=True)
class StepPlan:
    """What one step changes: the rows to write, the keys to delete, the rows left alone."""

    upsert: LoadStep
    delete: LoadStep | None
    unchanged: int
    new: np.ndarray | None = None
    """One flag per ``upsert`` row: True when the row is new, its key not in the database (or
    deleted first, being held twice); False when it changes a row the database holds."""

    def split(self) -> tuple[LoadStep, LoadStep]:
        """``upsert`` as (rows known to be new, rows that change what the database holds)."""
        frame = self.upsert.frame
        new = np.zeros(len(frame), dtype=bool) if self.new is None else self.new
        return (
            dataclasses.replace(self.upsert, frame=frame[new].reset_index(drop=True)),
            dataclasses.replace(self.upsert, frame=frame[~new].reset_index(drop=True)),
        )


@dataclass(frozen=True)
class LoadPlan:
    """Every step's plan: deletions in the order they run, then the rows to write."""

    deletions: list[LoadStep]
    upserts: list[LoadStep]
    unchanged: dict[str, int]
    plans: list[StepPlan] = dataclasses.field(default_factory=list)
    """Each step's plan, in load order (``upserts`` are their ``upsert`` steps)."""


def read_held_run(runner: QueryRunner) -> HeldRun | None:
    """The run recorded on the database's ``(:LinkerRun)`` node, or None when there is none."""
    rows = runner.run(load_query("load/run_state")).records()
    if not rows:
        return None
    row = rows[0]
    return HeldRun(
        run_id=row["run_id"],
        as_of=row["as_of"],
        run_dir=row["run_dir"],
        complete=bool(row["complete"]),
    )


def _timestamp(text: str | None) -> pd.Timestamp | None:
    if not text:
        return None
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def _already_loaded(held: HeldRun | None, prepared: PreparedLoad) -> bool:
    """True when the database holds this very run, completely loaded. Raises when the run
    is older than the one held (by their ``as_of``)."""
    if held is None:
        return False
    new, old = _timestamp(prepared.as_of), _timestamp(held.as_of)
    if new is not None and old is not None and new < old:
        raise InputError(
            f"{prepared.run_dir}: run {prepared.run_id} (as of {prepared.as_of}) is older than "
            f"run {held.run_id} (as of {held.as_of}) that Neo4j holds; pass --replace to "
            "load it anyway"
        )
    return held.complete and prepared.run_id is not None and held.run_id == prepared.run_id


def _state(runner: QueryRunner, step: LoadStep, query: str) -> pd.DataFrame:
    """What the database holds of ``step``: its key columns and ``held_hash``."""
    keys = list(step.key_columns)
    text = dataclasses.replace(step, query=query).cypher()
    rows = runner.run(text).rows[0][0]
    frame = (
        pd.DataFrame(rows, columns=[*keys, _HELD])
        if rows
        else pd.DataFrame({c: pd.Series(dtype="object") for c in [*keys, _HELD]})
    )
    frame[_HELD] = pd.array(frame[_HELD].tolist(), dtype="Int64")
    return frame


def plan_step(step: LoadStep, held: pd.DataFrame, hash_column: str | None) -> StepPlan:
    """Compare a step's rows with what the database holds of it.

    Parameters
    ----------
    step : LoadStep
        The run's rows (a row per key; of duplicated keys the last is kept, as a full load
        leaves it).
    held : pandas.DataFrame
        The step's key columns and ``held_hash`` (the stored hash, null when absent), one row
        per node or relationship in the database.
    hash_column : str or None
        The step's hash column (None for relationships without properties).

    Returns
    -------
    StepPlan
        ``upsert``: the rows whose key is not held, whose hash differs, or that are held more
        than once; ``delete``: the keys held but not in the run, and those held more than once
        (deleted before they are written again); ``unchanged``: the other rows.

    Examples
    --------
    >>> step = LoadStep("models", "load/models", pd.DataFrame({"name": ["a", "b"],
    ...     "load_hash": [1, 2]}), label="Model")
    >>> held = pd.DataFrame({"name": ["b", "c"], "held_hash": pd.array([2, 3], dtype="Int64")})
    >>> plan = plan_step(step, held, "load_hash")
    >>> list(plan.upsert.frame["name"]), list(plan.delete.frame["key"]), plan.unchanged
    (['a'], ['c'], 1)

    Notes
    -----
    Two hash joins: O(rows + held).
    """
    keys = list(step.key_columns)
    desired = step.frame.drop_duplicates(keys, keep="last").reset_index(drop=True)
    twice = held.duplicated(keys, keep=False).to_numpy()
    held_once = held[~twice].astype({k: "string" for k in keys})
    wanted = desired[keys].astype("string")
    merged = wanted.merge(held_once, on=keys, how="left", indicator=True)
    same = (merged["_merge"] == "both").to_numpy()
    if hash_column is not None and hash_column in desired.columns:
        equal = merged[_HELD].astype("Int64") == desired[hash_column].astype("Int64")
        same = same & equal.fillna(False).to_numpy(dtype=bool)
    absent = (merged["_merge"] == "left_only").to_numpy()
    upsert = dataclasses.replace(step, frame=desired[~same].reset_index(drop=True))
    gone = held_once[keys].merge(wanted, on=keys, how="left", indicator=True)
    stale = pd.concat(
        [
            gone.loc[gone["_merge"] == "left_only", keys],
            held.loc[twice, keys].drop_duplicates().astype("string"),
        ],
        ignore_index=True,
    )
    deletion = _deletion(step, stale, keys)
    return StepPlan(upsert, deletion, int(same.sum()), new=absent[~same])


def _deletion(step: LoadStep, stale: pd.DataFrame, keys: list[str]) -> LoadStep | None:
    if stale.empty:
        return None
    name = f"delete_{step.name}"
    if step.query == "load/account_embeddings":
        frame = pd.DataFrame({"account_id": stale[keys[0]]})
        return LoadStep(name, "load/remove_embeddings", frame)
    if step.rel_type is not None:
        frame = pd.DataFrame({"start": stale[keys[0]], "end": stale[keys[1]]})
        return dataclasses.replace(step, name=name, query="load/delete_relationships", frame=frame)
    frame = pd.DataFrame({"key": stale[keys[0]]})
    return dataclasses.replace(step, name=name, query="load/delete_nodes", frame=frame)


def _empty_embeddings() -> LoadStep:
    columns = ("account_id", "embedding", EMBEDDING_HASH_COLUMN)
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    return LoadStep("account_embeddings", "load/account_embeddings", frame)


def plan_load(runner: QueryRunner | None, prepared: PreparedLoad) -> LoadPlan:
    """The plan of every step of ``prepared`` against the database (``runner``), or against
    an empty one (``runner`` None: every row is written, nothing deleted).

    Deletions run relationships first, then embedding removals, then nodes; the rows to
    write keep the load order (nodes before the relationships that match them).
    """
    embeddings = prepared.embeddings if prepared.embeddings is not None else _empty_embeddings()
    pairs = [(step, HASH_COLUMN) for step in prepared.steps]
    pairs.append((embeddings, EMBEDDING_HASH_COLUMN))
    rels: list[LoadStep] = []
    props: list[LoadStep] = []
    nodes: list[LoadStep] = []
    upserts: list[LoadStep] = []
    plans: list[StepPlan] = []
    unchanged: dict[str, int] = {}
    for step, hash_column in pairs:
        if step.rel_type is not None:
            query = "load/state_relationships"
        elif step is embeddings:
            query = "load/state_embeddings"
        else:
            query = "load/state_nodes"
        empty = pd.DataFrame({c: pd.Series(dtype="object") for c in [*step.key_columns, _HELD]})
        held = empty if runner is None else _state(runner, step, query)
        plan = plan_step(step, held, hash_column)
        plans.append(plan)
        upserts.append(plan.upsert)
        unchanged[step.name] = plan.unchanged
        if plan.delete is not None:
            group = rels if step.rel_type is not None else props if step is embeddings else nodes
            group.append(plan.delete)
    return LoadPlan(
        deletions=[*rels, *props, *nodes], upserts=upserts, unchanged=unchanged, plans=plans
    )


CHUNK_BATCHES = 4
"""Each ``IN CONCURRENT TRANSACTIONS`` query carries ``batch_size * concurrency *
CHUNK_BATCHES`` rows: enough inner transactions to keep every worker busy, while the next
chunk is converted to parameters."""


def _chunks(
    steps: list[LoadStep], rows: int
) -> Iterator[tuple[LoadStep, int, int, dict[str, list[Any]]]]:
    for step in steps:
        offset = 0
        for size, params in batch_parameters(step, rows):
            yield step, offset, size, params
            offset += size


def write_new_rows(
    runner: QueryRunner, steps: list[LoadStep], batch_size: int, concurrency: int
) -> tuple[dict[str, int], int, int]:
    """Create rows known to be new with ``CREATE`` ``IN CONCURRENT TRANSACTIONS``.

    Parameters
    ----------
    runner : QueryRunner
    steps : list of LoadStep
        Rows whose node or relationship the database does not hold (:meth:`StepPlan.split`).
        A step without a ``CREATE`` query (:data:`linker.neo4j.loader.CREATE_QUERIES`) is
        written with its ``MERGE`` batches.
    batch_size : int
        Rows per inner transaction.
    concurrency : int
        Inner transactions at once (``IN n CONCURRENT TRANSACTIONS``).

    Returns
    -------
    tuple of (dict, int, int)
        Rows written per step, queries sent, and rows written again with ``MERGE`` because
        their inner transaction failed (a deadlock, or a node that existed after all).

    Notes
    -----
    Each query is one implicit transaction that commits its inner transactions as it goes, so
    it is never re-run: the rows of the inner transactions that failed (``REPORT STATUS``)
    are written again with the step's idempotent ``MERGE`` query, and the load converges.
    """
    written: dict[str, int] = {}
    queries = 0
    redone = 0
    plain = [step for step in steps if step.query not in CREATE_QUERIES]
    for name, count in write_steps(runner, plain, batch_size)[0].items():
        written[name] = written.get(name, 0) + count
    creatable = [step for step in steps if step.query in CREATE_QUERIES]
    texts = {
        s.name: dataclasses.replace(s, query=CREATE_QUERIES[s.query]).cypher() for s in creatable
    }
    chunk = batch_size * concurrency * CHUNK_BATCHES
    options = {"rows": batch_size, "concurrency": concurrency}
    for step, offset, size, params in _prefetched(_chunks(creatable, chunk)):
        failed, errors = runner.run_autocommit(texts[step.name], {**params, **options}).rows[0]
        queries += 1
        written[step.name] = written.get(step.name, 0) + size
        if failed:
            logger.warning(
                "%s: %d rows in failed transactions (%s); writing them with MERGE",
                step.name,
                len(failed),
                "; ".join(str(e) for e in errors if e)[:300],
            )
            rows = step.frame.iloc[offset + np.asarray(sorted(failed), dtype=np.int64)]
            write_steps(
                runner, [dataclasses.replace(step, frame=rows.reset_index(drop=True))], batch_size
            )
            redone += len(failed)
    return written, queries, redone


def _write_plan(
    runner: QueryRunner, plan: LoadPlan, batch_size: int, concurrency: int
) -> tuple[dict[str, int], int]:
    """Write every step's rows in load order: with ``concurrency`` 0, all in ``MERGE``
    batches; otherwise the changed rows in ``MERGE`` batches and the new ones with
    :func:`write_new_rows`. Returns rows written per step and the number of queries."""
    if concurrency <= 0 or not plan.plans:
        return write_steps(runner, plan.upserts, batch_size)
    written: dict[str, int] = {}
    queries = 0
    for step_plan in plan.plans:
        new, changed = step_plan.split()
        for name, count in write_steps(runner, [changed], batch_size)[0].items():
            written[name] = written.get(name, 0) + count
        queries += -(-len(changed.frame) // batch_size)
        counts, sent, _ = write_new_rows(runner, [new], batch_size, concurrency)
        for name, count in counts.items():
            written[name] = written.get(name, 0) + count
        queries += sent
    return written, queries


def _begin(runner: QueryRunner, prepared: PreparedLoad) -> None:
    parameters = {
        "run_id": prepared.run_id,
        "as_of": prepared.as_of,
        "run_dir": str(prepared.run_dir),
    }
    runner.run(load_query("load/run_begin"), parameters, write=True)


def _finish(runner: QueryRunner, prepared: PreparedLoad) -> None:
    runner.run(load_query("load/run_end"), {"run_id": prepared.run_id}, write=True)


def record_run(runner: QueryRunner, prepared: PreparedLoad) -> None:
    """Record ``prepared``'s run on the ``(:LinkerRun)`` node as completely loaded (the bulk
    importer calls it after its import)."""
    _begin(runner, prepared)
    _finish(runner, prepared)


def _unchanged_summary(runner: QueryRunner, prepared: PreparedLoad, began: float) -> LoadSummary:
    nodes, relationships = graph_counts(runner)
    logger.info("%s: run %s is already loaded; nothing written", prepared.run_dir, prepared.run_id)
    return LoadSummary(
        run_dir=prepared.run_dir,
        batches=0,
        rows_written={},
        nodes=nodes,
        relationships=relationships,
        skipped=prepared.skipped,
        seconds=time.perf_counter() - began,
        run_id=prepared.run_id,
        as_of=prepared.as_of,
        already_loaded=True,
    )


def sync_run(
    runner: QueryRunner,
    prepared: PreparedLoad,
    batch_size: int,
    replace: bool,
    concurrency: int = 0,
) -> LoadSummary:
    """Make the database hold ``prepared``'s graph: schema, then only the rows that differ.

    Parameters
    ----------
    runner : QueryRunner
    prepared : PreparedLoad
        From :func:`linker.neo4j.loader.prepare_load`.
    batch_size : int
        Rows per ``UNWIND`` transaction.
    replace : bool
        Empty the database first (then every row is written), and load even a run older
        than the one held.
    concurrency : int
        0: every row in ``MERGE`` batches, one transaction each. ``n`` > 0: rows known to be
        new are created with ``CREATE`` ``IN n CONCURRENT TRANSACTIONS`` (Neo4j 5.21+;
        :func:`write_new_rows`), the changed ones still merged.

    Returns
    -------
    LoadSummary
        Rows written and deleted per step, rows left unchanged, counts afterwards.

    Raises
    ------
    InputError
        The run is older (``as_of``) than the run the database holds, without ``replace``.

    Notes
    -----
    Reads every key and hash of the database once (one query per label and type: O(V + E)
    reads), then writes O(changed rows).
    """
    runner.verify()
    began = time.perf_counter()
    held = read_held_run(runner)
    if not replace and _already_loaded(held, prepared):
        return _unchanged_summary(runner, prepared, began)
    _begin(runner, prepared)  # before any write, so a killed load is never taken as complete
    if replace:
        logger.info("deleted %d nodes before loading", clear_graph(runner))
        _begin(runner, prepared)
    create_schema(runner)
    if prepared.embedding_dimensions is not None:
        create_vector_index(runner, prepared.embedding_dimensions)
    plan = plan_load(None if replace else runner, prepared)
    deleted, delete_batches = write_steps(runner, plan.deletions, batch_size, desc="neo4j delete")
    written, batches = _write_plan(runner, plan, batch_size, concurrency)
    _finish(runner, prepared)
    nodes, relationships = graph_counts(runner)
    return LoadSummary(
        run_dir=prepared.run_dir,
        batches=batches + delete_batches,
        rows_written=written,
        nodes=nodes,
        relationships=relationships,
        skipped=prepared.skipped,
        seconds=time.perf_counter() - began,
        rows_deleted={k.removeprefix("delete_"): n for k, n in deleted.items()},
        unchanged=sum(plan.unchanged.values()),
        run_id=prepared.run_id,
        as_of=prepared.as_of,
    )
