"""Load a run directory into Neo4j: accounts, identifiers, clusters and model use.

:func:`load_run` is the one entry point (``linker neo4j load RUN_DIR`` and, later,
``linker run --neo4j``). It creates the constraints and indexes first, then writes parameterised
``UNWIND`` batches that ``MERGE`` on unique keys, so a re-run changes nothing and a load killed
part-way completes when run again. Labels and relationship types cannot be parameters: the
identifier and relationship queries are templates (``queries/load/identifier.cypher``,
``relationship.cypher``) filled with the labels and types of the kind registry
(:mod:`linker.kinds`). The schema is drawn in ``docs/neo4j.md``.

The loader reads the run's saved graph through the store: the ``observations`` (every kind,
the derived ones included), the ``identifiers`` (weights, super-node flags) and the ``links``
inside clusters, which become ``LINKED`` relationships: the analyst in Browser sees exactly
the links the takedown list was computed from.

:func:`prepare_load` turns the run directory into :class:`LoadStep` tables, one per query; the
``UNWIND`` loader and the bulk importer (:mod:`linker.neo4j.bulk`) both write exactly these, so
the two paths give the same graph.

Speed (measured in ``bench/neo4j_load.py``, see ``docs/performance.md``): the tables are built
with vectorised pandas, and each batch travels *column-wise* (one list per column, timestamps as
integer epoch seconds and nanoseconds) rather than as a list of maps: the driver then packs
plain ints and strings, with no per-row map keys and no per-value ``datetime`` conversion.
A background thread prepares the next batch while the server commits the current one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linker import kinds
from linker.engine import RunDirectory
from linker.errors import InputError, LinkerError
from linker.progress import progress
from linker.pseudonyms import Pseudonymiser, network_of, recorded_key_id
from linker.queries import load_query, render_template, split_statements

from .redact import secret_safe_logger
from .runner import QueryRunner, resolve_connection

__all__ = [
    "ACTION_LABELS",
    "CREATE_QUERIES",
    "DEFAULT_CONCURRENCY",
    "GraphDigest",
    "LoadStep",
    "LoadSummary",
    "PreparedLoad",
    "batch_parameters",
    "clear_graph",
    "create_schema",
    "create_vector_index",
    "embedding_dimensions",
    "graph_counts",
    "graph_digest",
    "load_run",
    "prepare_load",
    "write_steps",
]

logger = secret_safe_logger(__name__)

ACCOUNT_COLUMNS = (
    "account_id",
    "created_at",
    "email",
    "signup_ip",
    "device_id",
    "country",
    "billing_customer_id",
)
SCORE_COLUMNS = ("billing_customer_id", "cluster_id", "cluster_size", "score", "action", "reasons")
CLUSTER_COLUMNS = ("cluster_id", "size", "score", "n_suspend", "n_review", "reasons")
OBSERVATION_COLUMNS = ("account_id", "kind", "value", "first_seen", "last_seen", "count")
RELATIONSHIP_COLUMNS = ("account_id", "value", "first_seen", "last_seen", "count")
LINK_COLUMNS = ("account_a", "account_b", "weight", "evidence")

_MICROS = 1_000_000
_KEY_PROPERTIES = {"Account": "account_id", "Cluster": "cluster_id", "Model": "name"}

HASH_COLUMN = "load_hash"
"""The property holding a node's or relationship's content hash (:func:`row_hashes`)."""
EMBEDDING_HASH_COLUMN = "embedding_hash"
"""The ``Account`` property holding the hash of its ``embedding`` vector."""
_HASH_VERSION = "linker-load-hash/1"
_STEP_SALTS = {"accounts": "accounts;action-labels/1"}
"""Salts that differ from the step's name: an account row written before accounts got their
action label hashes differently, so the first load by this version rewrites it (and labels it)."""

DEFAULT_CONCURRENCY = 0
"""Inner transactions run at once by a load's ``CREATE`` queries (:func:`load_run`)."""

ACTION_LABELS: dict[str, str] = {"suspend": "Suspend", "review": "Review"}
"""The label an ``Account`` carries besides ``Account`` for its action (none for ``none``):
Neo4j Browser styles nodes by label, so the shipped style colours accounts by these.
``queries/load/accounts.cypher`` sets them (and removes a stale one); the bulk importer writes
them in a ``:LABEL`` column."""


@dataclass(frozen=True)
class LoadStep:
    """One write step: a table whose rows one ``queries/load`` query writes.

    A node step has ``label`` set and its key in the first column. A relationship step has
    ``rel_type`` set; ``start`` and ``end`` name the (label, column) of its two end nodes'
    keys, and the remaining columns are relationship properties. ``name`` is the step's name
    in :attr:`LoadSummary.rows_written` (``accounts``, ``identifier_IP``, ``rel_USED_IP``).
    """

    name: str
    query: str
    frame: pd.DataFrame
    label: str | None = None
    rel_type: str | None = None
    start: tuple[str, str] | None = None
    end: tuple[str, str] | None = None

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The columns that identify a row's node (its key) or relationship (its two ends)."""
        if self.start is not None and self.end is not None:
            return (self.start[1], self.end[1])
        return (str(self.frame.columns[0]),)

    def cypher(self) -> str:
        """The query text, a template's labels, types and key properties filled in."""
        if self.query in ("load/identifier", "load/create_identifier"):
            return render_template(self.query, label=str(self.label))
        if self.query in ("load/relationship", "load/create_relationship"):
            assert self.end is not None
            return render_template(self.query, label=self.end[0], rel_type=str(self.rel_type))
        if self.query in ("load/delete_nodes", "load/state_nodes"):
            label = str(self.label)
            return render_template(self.query, label=label, key=key_property(label))
        if self.query in ("load/delete_relationships", "load/state_relationships"):
            assert self.start is not None and self.end is not None
            return render_template(
                self.query,
                start=self.start[0],
                start_key=key_property(self.start[0]),
                rel_type=str(self.rel_type),
                end=self.end[0],
                end_key=key_property(self.end[0]),
            )
        return load_query(self.query)


CREATE_QUERIES: dict[str, str] = {
    "load/identifier": "load/create_identifier",
    "load/relationship": "load/create_relationship",
    "load/used_model": "load/create_used_model",
    "load/linked": "load/create_linked",
    "load/in_cluster": "load/create_in_cluster",
    "load/ip_in_subnet": "load/create_ip_in_subnet",
}
"""The ``CREATE`` query, run ``IN CONCURRENT TRANSACTIONS``, of each ``MERGE`` query whose rows
the incremental load may know to be new (identifier nodes and every relationship type; the
few accounts, clusters and models always go through their ``MERGE``)."""


def key_property(label: str) -> str:
    """The unique key property of a node label (``account_id``, ``cluster_id``, ``name`` or,
    for every identifier label of the kind registry, ``value``)."""
    return _KEY_PROPERTIES.get(label, "value")


@dataclass(frozen=True)
class PreparedLoad:
    """A run directory turned into write steps, in load order."""

    run_dir: Path
    steps: list[LoadStep]
    skipped: dict[str, int]
    embeddings: LoadStep | None = None
    """``Account.embedding`` vectors, written after the steps (not by the bulk import)."""
    embedding_dimensions: int | None = None
    """Their length: the dimension of the ``account_embedding`` vector index."""
    run_id: str | None = None
    """The run's id (manifest ``run_id``; None for a run directory without one)."""
    as_of: str | None = None
    """The latest time in the run's data (manifest ``as_of``), ISO 8601, or None."""


@dataclass(frozen=True)
class LoadSummary:
    """What a load wrote, and what the database holds afterwards."""

    run_dir: Path
    batches: int
    rows_written: dict[str, int]
    """Rows sent per step (``accounts``, ``identifier_IP``, ``rel_USED_IP``, ...)."""
    nodes: dict[str, int] = field(default_factory=dict)
    """Nodes per label in the database after the load."""
    relationships: dict[str, int] = field(default_factory=dict)
    """Relationships per type in the database after the load."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Rows not written, by reason (e.g. IP values that are not addresses get no IN_SUBNET)."""
    seconds: float = 0.0
    """Wall time of the writes (schema, batches and the final counts), for benchmarks."""
    rows_deleted: dict[str, int] = field(default_factory=dict)
    """Nodes, relationships or embeddings deleted per step (those the run no longer has)."""
    unchanged: int = 0
    """Rows of the run the database already held with the same content (not written)."""
    run_id: str | None = None
    """The run loaded (manifest ``run_id``)."""
    as_of: str | None = None
    """Its ``as_of``."""
    already_loaded: bool = False
    """True when the database already held this run, completely loaded: nothing was written."""

    @property
    def writes(self) -> int:
        """Rows written plus rows deleted: the load's write volume."""
        return sum(self.rows_written.values()) + sum(self.rows_deleted.values())


# -- reading the run directory ------------------------------------------------------------------


def _member(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """``values.isin(keys)`` with Arrow's hash set (pandas converts Arrow-backed strings to
    Python objects one by one for ``isin``: seconds on a 100k-account run)."""
    try:
        left, right = pa.array(values, from_pandas=True), pa.array(keys, from_pandas=True)
        if left.type != right.type:  # e.g. an empty (null-typed) column
            left = left.cast(right.type)
        found = pc.is_in(left, value_set=right)
    except (pa.ArrowException, TypeError):  # mixed or unusual types: pandas' own isin
        return np.asarray(values.isin(keys).to_numpy(), dtype=bool)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _read_events(store: RunDirectory) -> pd.DataFrame:
    """The columns of the events artefact the model steps use (not every event column)."""
    wanted = ("account_id", "ts", "model", "requests")
    try:
        return store.read("events", columns=list(wanted))
    except InputError:
        pass
    try:
        return store.read("events", columns=list(wanted[:3]))
    except InputError:  # a missing column: _read's message names it
        return _read(store, "events", wanted[:3])


def _read(
    store: RunDirectory, name: str, columns: tuple[str, ...], *, required: bool = True
) -> pd.DataFrame:
    """Artefact ``name`` with at least ``columns`` (empty when absent and not required)."""
    if not store.has(name):
        if required:
            raise InputError(f"{store.location(name)}: missing from the run directory")
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    frame = store.read(name)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{store.location(name)}: missing column(s) {', '.join(missing)}")
    return frame


def _pseudonymiser(manifest: dict[str, Any]) -> Pseudonymiser | None:
    """The run's pseudonymiser when it was pseudonymised (its key from the environment,
    checked against the key id the run recorded), else None."""
    if not manifest.get("settings", {}).get("run", {}).get("pseudonymise"):
        return None
    pseudonymiser = Pseudonymiser.from_environment()
    recorded = recorded_key_id(manifest)
    if recorded is not None and recorded != pseudonymiser.key_id:
        raise InputError("the run was pseudonymised with another key than LINKER_PSEUDONYM_KEY")
    return pseudonymiser


def _account_step(store: RunDirectory, pseudonymiser: Pseudonymiser | None = None) -> LoadStep:
    accounts = _read(store, "accounts", ACCOUNT_COLUMNS)
    if pseudonymiser is not None:
        # The Account node's identifier properties get the same pseudonyms as the nodes.
        accounts = pseudonymiser.account_columns(accounts)
    scores = _read(store, "scores", ("account_id", *SCORE_COLUMNS))
    scores = scores[["account_id", *(c for c in SCORE_COLUMNS if c != "billing_customer_id")]]
    merged = accounts[list(ACCOUNT_COLUMNS)].merge(scores, on="account_id", how="left")
    if merged["account_id"].duplicated().any():
        dup = merged.loc[merged["account_id"].duplicated(), "account_id"].iloc[0]
        raise InputError(f"{store.root}: account {dup!r} appears twice in accounts or scores")
    return LoadStep("accounts", "load/accounts", merged.reset_index(drop=True), label="Account")


def _embedding_step(
    store: RunDirectory, account_ids: pd.Series
) -> tuple[LoadStep | None, int | None]:
    """``Account.embedding`` from the run's embeddings, when it has them, and the vectors'
    common length (the dimension of the vector index)."""
    if not store.has("embeddings"):
        return None, None
    where = store.location("embeddings")
    frame = _read(store, "embeddings", ("account_id", "embedding"))[["account_id", "embedding"]]
    orphans = ~_member(frame["account_id"], account_ids)
    if orphans.any():
        first = frame.index[orphans][0]
        raise InputError(
            f"{where}: row {first}: column account_id: {frame.at[first, 'account_id']!r} is not "
            "an account of the run"
        )
    if frame["account_id"].duplicated().any():
        first = frame.index[frame["account_id"].duplicated()][0]
        raise InputError(f"{where}: row {first}: column account_id: appears twice")
    frame = frame.dropna(subset=["embedding"]).reset_index(drop=True)
    dimensions = embedding_dimensions(frame["embedding"], Path(where))
    frame[EMBEDDING_HASH_COLUMN] = pd.Series(
        [_vector_hash(v) for v in frame["embedding"]], index=frame.index, dtype="int64"
    )
    return LoadStep("account_embeddings", "load/account_embeddings", frame), dimensions


def _vector_hash(vector: Any) -> int:
    """A signed 64-bit hash of a vector's float64 values (its ``embedding_hash``)."""
    raw = np.ascontiguousarray(np.asarray(vector, dtype=np.float64)).tobytes()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little", signed=True)


def embedding_dimensions(vectors: pd.Series, path: Path) -> int | None:
    """The common length of the vectors (None when there are none).

    Raises
    ------
    InputError
        When vectors differ in length or the length is outside 1..4096 (Neo4j's range).
    """
    vectors = vectors.dropna()
    if vectors.empty:
        return None
    lengths = vectors.map(len).to_numpy()
    if (lengths != lengths[0]).any():
        first = int(np.flatnonzero(lengths != lengths[0])[0])
        raise InputError(
            f"{path}: row {vectors.index[first]}: column embedding: {int(lengths[first])} "
            f"values, not {int(lengths[0])} like the first vector"
        )
    dimensions = int(lengths[0])
    if not 1 <= dimensions <= 4096:
        raise InputError(f"{path}: column embedding: {dimensions} dimensions, not 1..4096")
    return dimensions


def _observation_steps(
    store: RunDirectory, account_ids: pd.Series, skipped: dict[str, int]
) -> list[LoadStep]:
    """Identifier nodes (one step per label) and account relationships (one per kind)."""
    where = store.location("observations")
    obs = _read(store, "observations", OBSERVATION_COLUMNS)
    registered = kinds.kind_names()
    unknown = sorted(set(obs["kind"].dropna().astype(str).unique()) - set(registered))
    if unknown:
        raise InputError(
            f"{where}: column kind has unknown value(s) {', '.join(unknown)} "
            f"(registered kinds: {', '.join(registered)})"
        )
    orphans = ~_member(obs["account_id"], account_ids)
    if orphans.any():
        first = obs.index[orphans][0]
        raise InputError(
            f"{where}: row {first}: column account_id: {obs.at[first, 'account_id']!r} is not "
            f"an account of the run ({int(orphans.sum())} such rows)"
        )
    obs = obs.dropna(subset=["value"])
    labels = {k.name: k.neo4j_label for k in kinds.all_kinds()}
    obs = obs.assign(label=obs["kind"].astype(str).map(labels))
    idents = _read(
        store,
        "identifiers",
        ("kind", "value", "n_accounts", "weight", "is_supernode"),
        required=False,
    )
    idents = idents.assign(label=idents["kind"].astype(str).map(labels)).dropna(subset=["label"])
    ident_stats = (
        idents.groupby(["label", "value"], sort=True)
        .agg(weight=("weight", "max"), is_supernode=("is_supernode", "max"))
        .reset_index()
        if len(idents)
        else pd.DataFrame(columns=["label", "value", "weight", "is_supernode"])
    )
    nodes = (
        obs.groupby(["label", "value"], sort=True)["account_id"]
        .nunique()
        .rename("n_accounts")
        .reset_index()
        .merge(ident_stats, on=["label", "value"], how="left")
    )
    nodes["n_accounts"] = nodes["n_accounts"].astype("int64")
    nodes["weight"] = nodes["weight"].astype("Float64")
    nodes["is_supernode"] = nodes["is_supernode"].astype("boolean")

    steps: list[LoadStep] = []
    by_label = dict(iter(nodes.groupby("label", sort=False)))
    for label in kinds.neo4j_labels():
        part = by_label.get(label, nodes.iloc[:0])
        frame = part[["value", "n_accounts", "weight", "is_supernode"]].reset_index(drop=True)
        steps.append(LoadStep(f"identifier_{label}", "load/identifier", frame, label=label))
    by_kind = dict(iter(obs.groupby("kind", sort=False)))
    for entry in kinds.all_kinds():
        part = by_kind.get(entry.name, obs.iloc[:0])
        steps.append(
            LoadStep(
                f"rel_{entry.neo4j_relationship}",
                "load/relationship",
                part[list(RELATIONSHIP_COLUMNS)].reset_index(drop=True),
                rel_type=entry.neo4j_relationship,
                start=("Account", "account_id"),
                end=(entry.neo4j_label, "value"),
            )
        )
    steps.append(_in_subnet_step(obs, skipped))
    return steps


def _in_subnet_step(obs: pd.DataFrame, skipped: dict[str, int]) -> LoadStep:
    """``(:IP)-[:IN_SUBNET]->(:Subnet)`` for every observed address whose network (/24, /48
    for IPv6: :func:`linker.normalise.ip_array`) was observed too."""
    ip_label = kinds.kind("ip").neo4j_label
    subnet_label = kinds.kind("subnet").neo4j_label
    ips = np.unique(obs.loc[obs["label"] == ip_label, "value"].astype(str).to_numpy())
    subnets = pd.Index(np.unique(obs.loc[obs["label"] == subnet_label, "value"].astype(str)))
    network = np.asarray(
        network_of(pa.array(ips, pa.large_string())).to_numpy(zero_copy_only=False), dtype=object
    )
    is_address = network != ""
    observed = is_address & (subnets.get_indexer(network) >= 0)
    skipped["ip_not_an_address"] = skipped.get("ip_not_an_address", 0) + int((~is_address).sum())
    missing = int((is_address & ~observed).sum())
    skipped["ip_subnet_not_observed"] = skipped.get("ip_subnet_not_observed", 0) + missing
    for key in ("ip_not_an_address", "ip_subnet_not_observed"):
        if not skipped[key]:
            del skipped[key]
    in_subnet = pd.DataFrame(
        {
            "ip": pd.array(ips[observed], dtype="string"),
            "subnet": pd.array(network[observed], dtype="string"),
        }
    )
    return LoadStep(
        "ip_in_subnet",
        "load/ip_in_subnet",
        in_subnet,
        rel_type="IN_SUBNET",
        start=(ip_label, "ip"),
        end=(subnet_label, "subnet"),
    )


def _cluster_steps(store: RunDirectory, account_ids: pd.Series) -> list[LoadStep]:
    """Clusters, ``IN_CLUSTER`` and ``LINKED``. A cluster named only in ``scores`` becomes a
    bare ``Cluster`` node; a membership of an account absent from ``accounts`` is dropped."""
    clusters = _read(store, "clusters", CLUSTER_COLUMNS)[list(CLUSTER_COLUMNS)]
    scores = _read(store, "scores", ("account_id", "cluster_id"))
    members = scores.dropna(subset=["cluster_id"]).sort_values(["cluster_id", "account_id"])
    members = members[_member(members["account_id"], account_ids)]
    extra = sorted(set(members["cluster_id"]) - set(clusters["cluster_id"].dropna()))
    if extra:
        bare = pd.DataFrame({"cluster_id": pd.Series(extra, dtype="string")})
        clusters = pd.concat([clusters, bare], ignore_index=True)
    links = _read(store, "links", LINK_COLUMNS, required=False)
    return [
        LoadStep(
            "clusters",
            "load/clusters",
            clusters.sort_values("cluster_id").reset_index(drop=True),
            label="Cluster",
        ),
        LoadStep(
            "in_cluster",
            "load/in_cluster",
            members[["account_id", "cluster_id"]].reset_index(drop=True),
            rel_type="IN_CLUSTER",
            start=("Account", "account_id"),
            end=("Cluster", "cluster_id"),
        ),
        LoadStep(
            "linked",
            "load/linked",
            links[list(LINK_COLUMNS)]
            .sort_values(["account_a", "account_b"])
            .reset_index(drop=True),
            rel_type="LINKED",
            start=("Account", "account_a"),
            end=("Account", "account_b"),
        ),
    ]


def _model_steps(store: RunDirectory, account_ids: pd.Series) -> list[LoadStep]:
    """Models and ``USED_MODEL`` (empty steps when the run has no events: a later load must
    still know that no model belongs in the graph)."""
    columns = ("account_id", "ts", "model", "requests")
    if store.has("events"):
        events = _read_events(store)
        if "requests" not in events.columns:
            events = events.assign(requests=1)
    else:
        events = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    events = events[list(columns)].dropna(subset=["model", "ts"])
    events = events[_member(events["account_id"], account_ids)]
    use = (
        events.groupby(["account_id", "model"], sort=True)
        .agg(first_seen=("ts", "min"), last_seen=("ts", "max"), requests=("requests", "sum"))
        .reset_index()
    )
    models = (
        events.groupby("model", sort=True)["ts"].min().rename("first_seen").reset_index()
    ).rename(columns={"model": "name"})
    return [
        LoadStep("models", "load/models", models[["name", "first_seen"]], label="Model"),
        LoadStep(
            "used_model",
            "load/used_model",
            use[["account_id", "model", "first_seen", "last_seen", "requests"]],
            rel_type="USED_MODEL",
            start=("Account", "account_id"),
            end=("Model", "model"),
        ),
    ]


def row_hashes(frame: pd.DataFrame, salt: str) -> pd.Series:
    """A 64-bit content hash of each row of ``frame``, as a signed ``int64`` (a Neo4j
    integer): what a later load compares to tell changed rows from unchanged ones.

    Parameters
    ----------
    frame : pandas.DataFrame
        The rows as the loader writes them; timestamps are hashed as the epoch microseconds
        the loader sends, so a change of unit alone changes nothing.
    salt : str
        Mixed into every hash together with the column names and types (the step's name), so
        a renamed or retyped column changes every row's hash.

    Returns
    -------
    pandas.Series
        ``int64``, aligned with ``frame``.

    Examples
    --------
    >>> a = row_hashes(pd.DataFrame({"k": ["x", "y"], "v": [1, 2]}), "s")
    >>> b = row_hashes(pd.DataFrame({"k": ["x", "y"], "v": [1, 3]}), "s")
    >>> bool(a[0] == b[0]), bool(a[1] == b[1])
    (True, False)

    Notes
    -----
    Vectorised (:func:`pandas.util.hash_pandas_object`): O(rows x columns). A collision
    (two different rows with one hash: odds 2**-64 per changed row) would leave one row
    unwritten; the hash is not a security boundary.
    """
    plain = {}
    for column in frame.columns:
        series = frame[column]
        if _is_datetime(series):
            stamps = pd.to_datetime(series, utc=True).dt.as_unit("us")
            series = pd.Series(stamps.to_numpy(dtype="datetime64[us]").view("int64"))
            series = series.mask(stamps.isna().to_numpy())
        plain[column] = series.reset_index(drop=True)
    described = ";".join(f"{c}:{frame[c].dtype}" for c in frame.columns)
    seed = hashlib.sha256(f"{_HASH_VERSION};{salt};{described}".encode()).digest()[:8]
    hashes = pd.util.hash_pandas_object(pd.DataFrame(plain), index=False).to_numpy()
    mixed = hashes ^ np.frombuffer(seed, dtype=np.uint64)[0]
    return pd.Series(mixed.view(np.int64), index=frame.index, dtype="int64")


def _with_hash(step: LoadStep) -> LoadStep:
    """``step`` with its ``load_hash`` column, when its rows carry properties besides their
    keys (``IN_CLUSTER`` and ``IN_SUBNET`` have none: their keys are their content)."""
    if len(step.frame.columns) <= len(step.key_columns):
        return step
    salt = _STEP_SALTS.get(step.name, step.name)
    frame = step.frame.assign(**{HASH_COLUMN: row_hashes(step.frame, salt)})
    return dataclasses.replace(step, frame=frame)


def prepare_load(run_dir: str | os.PathLike[str]) -> PreparedLoad:
    """Read and check a run directory and turn it into write steps, in load order.

    Parameters
    ----------
    run_dir : path
        A finished run directory (its accounts, observations, identifiers, scores,
        clusters and links artefacts; events and embeddings when present).

    Returns
    -------
    PreparedLoad
        Accounts, identifier nodes (one step per label), account -> identifier relationships
        (one step per kind), ``IN_SUBNET``, clusters, ``IN_CLUSTER``, ``LINKED``, models and
        ``USED_MODEL``, plus the rows skipped by reason.

    Raises
    ------
    InputError
        A missing or malformed run file (the message names the file, and row and column
        where it applies).

    Notes
    -----
    Vectorised pandas and Arrow: O(n log n) in the observations (sort-based group-bys).
    """
    store = RunDirectory.open(run_dir)
    manifest = store.read_json("manifest")  # a finished run with a readable manifest
    skipped: dict[str, int] = {}
    accounts = _account_step(store, _pseudonymiser(manifest))
    account_ids = accounts.frame["account_id"]
    steps = [accounts]
    steps += _observation_steps(store, account_ids, skipped)
    steps += _cluster_steps(store, account_ids)
    steps += _model_steps(store, account_ids)
    embeddings, dimensions = _embedding_step(store, account_ids)
    return PreparedLoad(
        run_dir=store.root,
        steps=[_with_hash(step) for step in steps],
        skipped=skipped,
        embeddings=embeddings,
        embedding_dimensions=dimensions,
        run_id=_text(manifest.get("run_id")),
        as_of=_text(manifest.get("as_of")),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- batches as column-wise parameters ----------------------------------------------------------


def _is_datetime(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(
        series
    )


def _epoch_parts(series: pd.Series) -> tuple[pa.Array, pa.Array]:
    """Epoch seconds and nanoseconds of a timestamp column (UTC), nulls kept."""
    stamps = pd.to_datetime(series, utc=True).dt.as_unit("us")
    micros = stamps.to_numpy(dtype="datetime64[us]").view("int64")
    missing = stamps.isna().to_numpy()
    seconds = np.floor_divide(micros, _MICROS)
    nanos = (micros - seconds * _MICROS) * 1000
    return pa.array(seconds, mask=missing), pa.array(nanos, mask=missing)


def _column_arrays(frame: pd.DataFrame) -> dict[str, pa.Array]:
    """The step's columns as Arrow arrays; a timestamp column ``c`` becomes ``c_s`` and
    ``c_ns`` (the arguments of Cypher's ``datetime.fromepoch``)."""
    arrays: dict[str, pa.Array] = {}
    for column in frame.columns:
        series = frame[column]
        if _is_datetime(series):
            arrays[f"{column}_s"], arrays[f"{column}_ns"] = _epoch_parts(series)
        else:
            arrays[column] = pa.array(series, from_pandas=True)
    return arrays


def batch_parameters(step: LoadStep, batch_size: int) -> Iterator[tuple[int, dict[str, list[Any]]]]:
    """The query parameters of each batch of ``step``: one list per column.

    Parameters
    ----------
    step : LoadStep
        The table to send.
    batch_size : int
        Rows per batch.

    Yields
    ------
    (int, dict)
        The number of rows in the batch and its parameters, e.g.
        ``{"account_id": [...], "value": [...], "first_seen_s": [...], ...}``.
    """
    arrays = _column_arrays(step.frame)
    total = len(step.frame)
    for start in range(0, total, batch_size):
        size = min(batch_size, total - start)
        yield size, {name: arr.slice(start, size).to_pylist() for name, arr in arrays.items()}


def _all_batches(
    steps: list[LoadStep], batch_size: int
) -> Iterator[tuple[LoadStep, int, dict[str, list[Any]]]]:
    for step in steps:
        for size, params in batch_parameters(step, batch_size):
            yield step, size, params


def _prefetched(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Yield ``items`` while a worker thread builds the next ones.

    The driver waits on the socket (releasing the GIL) while the server runs a batch; the
    worker uses that time to convert the following batch to Python lists.
    """
    sentinel = object()

    def take() -> Any:
        return next(items, sentinel)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="neo4j-load-prep") as pool:
        pending: list[Future[Any]] = [pool.submit(take) for _ in range(depth)]
        while True:
            item = pending.pop(0).result()
            if item is sentinel:
                for future in pending:
                    future.cancel()
                return
            pending.append(pool.submit(take))
            yield item


# -- schema, counts and the load ----------------------------------------------------------------


def create_schema(runner: QueryRunner, *, wait: bool = True) -> int:
    """Create the constraints and indexes of ``queries/load/schema.cypher`` and one value
    constraint per identifier label of the kind registry (idempotent), in one transaction.

    With ``wait`` False the call returns once the constraints are online and leaves the
    plain indexes (``account_action``, ...: analysts' look-ups, which no write relies on)
    to finish populating in the background.

    Returns
    -------
    int
        The number of schema statements run.
    """
    statements = split_statements(load_query("load/schema"))
    statements += [
        split_statements(
            render_template(
                "load/identifier_constraint", constraint=_constraint_name(label), label=label
            )
        )[0]
        for label in kinds.neo4j_labels()
    ]
    # One transaction: the new indexes are populated in one scan of the store, and the commit
    # returns once the uniqueness constraints (which every MERGE relies on) are online.
    runner.run_in_transaction(statements)
    if wait:
        runner.run(load_query("load/await_indexes"), write=True)
    return len(statements)


def _constraint_name(label: str) -> str:
    """``PaymentMethod`` -> ``payment_method_value_unique`` (``IP`` -> ``ip_value_unique``)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", label).lower()
    return f"{snake}_value_unique"


def create_vector_index(runner: QueryRunner, dimensions: int) -> bool:
    """Create the ``account_embedding`` cosine vector index on ``Account.embedding``.

    Parameters
    ----------
    runner : QueryRunner
    dimensions : int
        The vectors' length, 1..4096; passed as a query parameter.

    Returns
    -------
    bool
        True when the index exists and is online; False when the server has no vector
        indexes (before Neo4j 5.13), which is logged: the load goes on without it.
    """
    dimensions = int(dimensions)
    if not 1 <= dimensions <= 4096:
        raise InputError(f"vector index dimension must be in 1..4096, not {dimensions}")
    try:
        runner.run(load_query("load/vector_index"), {"dimensions": dimensions}, write=True)
    except LinkerError as exc:
        logger.warning("no vector index on Account.embedding: %s", str(exc).splitlines()[0])
        return False
    runner.run(load_query("load/await_indexes"), write=True)
    return True


def write_steps(
    runner: QueryRunner, steps: list[LoadStep], batch_size: int, *, desc: str = "neo4j load"
) -> tuple[dict[str, int], int]:
    """Write ``steps`` in ``UNWIND`` batches of ``batch_size`` rows, one transaction each.

    Returns
    -------
    tuple of (dict, int)
        Rows written per step name, and the number of batches.
    """
    total = sum(-(-len(step.frame) // batch_size) for step in steps)
    texts = {step.name: step.cypher() for step in steps}
    written: dict[str, int] = {}
    batches = 0
    for step, size, params in progress(
        _prefetched(_all_batches(steps, batch_size)), total=total, desc=desc, unit="batch"
    ):
        runner.run(texts[step.name], params, write=True)
        written[step.name] = written.get(step.name, 0) + size
        batches += 1
        logger.debug("%s: wrote %d rows", step.name, size)
    return written, batches


def clear_graph(runner: QueryRunner, *, batch: int = 10_000) -> int:
    """Delete every node and relationship, ``batch`` nodes per transaction.

    Returns
    -------
    int
        The number of nodes deleted.
    """
    text = load_query("load/clear_batch")
    total = 0
    while True:
        deleted = int(runner.run(text, {"limit": batch}, write=True).rows[0][0])
        total += deleted
        if deleted == 0:
            return total


def graph_counts(runner: QueryRunner) -> tuple[dict[str, int], dict[str, int]]:
    """Nodes per label and relationships per type in the database."""
    nodes = runner.run(load_query("load/node_counts"))
    rels = runner.run(load_query("load/relationship_counts"))
    return (
        {str(r[0]): int(r[1]) for r in nodes.rows},
        {str(r[0]): int(r[1]) for r in rels.rows},
    )


@dataclass(frozen=True)
class GraphDigest:
    """The whole graph in a few comparable values (:func:`graph_digest`)."""

    nodes: dict[str, int]
    """Nodes per label."""
    relationships: dict[str, int]
    """Relationships per type."""
    sha256: str
    """A SHA-256 over every node (labels, key, all properties) and every relationship (end
    nodes' labels and keys, type, all properties), canonically encoded and sorted."""


def _canonical(value: Any) -> str:
    """A canonical text of a property value that keeps its type (1, 1.0 and "1" differ)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"i{value}"
    if isinstance(value, float):
        return f"f{value!r}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(k), _canonical(v)) for k, v in value.items())
        return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in items) + "}"
    # Temporal and spatial values: their repr names the type and every field.
    return f"{type(value).__name__}:{value!r}"


def graph_digest(runner: QueryRunner) -> GraphDigest:
    """Counts and a canonical digest of every node, relationship and property in the database.

    Two databases hold exactly the same graph (same nodes with the same labels and
    properties, same relationships between the same keyed nodes) when their digests are
    equal; the digest does not depend on internal ids or on the order of writes.

    Parameters
    ----------
    runner : QueryRunner

    Returns
    -------
    GraphDigest

    Notes
    -----
    Reads the whole graph (``queries/load/graph_nodes.cypher`` and
    ``graph_relationships.cypher``) into memory: a verification tool, O(V + E).
    """
    nodes, relationships = graph_counts(runner)
    lines: list[str] = []
    for labels, key, props in runner.run(load_query("load/graph_nodes")).rows:
        lines.append(f"N {_canonical(sorted(labels))} {_canonical(key)} {_canonical(props)}")
    for row in runner.run(load_query("load/graph_relationships")).rows:
        start_labels, start_key, rel_type, end_labels, end_key, props = row
        lines.append(
            f"R {_canonical(sorted(start_labels))} {_canonical(start_key)} {rel_type} "
            f"{_canonical(sorted(end_labels))} {_canonical(end_key)} {_canonical(props)}"
        )
    digest = hashlib.sha256()
    for line in sorted(lines):
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return GraphDigest(nodes=nodes, relationships=relationships, sha256=digest.hexdigest())


def load_run(
    run_dir: str | os.PathLike[str],
    *,
    runner: QueryRunner | None = None,
    batch_size: int = 5000,
    replace: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> LoadSummary:
    """Make Neo4j hold the graph of the run directory ``run_dir``, writing only what differs.

    The database may be empty, hold an earlier run (it then ends exactly as a clean load of
    ``run_dir`` would leave it: stale nodes and relationships deleted, changed ones rewritten,
    unchanged ones left alone), hold this run already (a no-op), or hold part of a load that
    was killed (completed). :mod:`linker.neo4j.incremental` computes the difference.

    Parameters
    ----------
    run_dir : path
        A run directory (``manifest.json``, ``tables/``, ``observations.parquet``,
        ``identifiers.parquet``, ``scores.parquet``, ``clusters.parquet``).
    runner : QueryRunner, optional
        Default: a runner on :func:`linker.neo4j.runner.resolve_connection`'s server.
    batch_size : int
        Rows per ``UNWIND`` transaction.
    replace : bool
        Delete everything in the database first (another run's graph), in batches; also
        loads a run older than the one the database holds.
    data_dir : path, optional
        The local server's data directory, used when ``runner`` is None and ``NEO4J_URI``
        is unset.
    concurrency : int
        Rows known to be new (every row of a first load) are created with ``CREATE`` in
        ``CALL { ... } IN n CONCURRENT TRANSACTIONS OF batch_size ROWS`` (Neo4j 5.21+),
        ``n`` = ``concurrency``; 0 writes every row with ``MERGE``, one transaction per batch.

    Returns
    -------
    LoadSummary
        Rows written and deleted per step, rows unchanged, whether the run was already
        loaded, and the database's node and relationship counts afterwards.

    Raises
    ------
    InputError
        A missing or malformed run file (the message names the file, and row and column
        where it applies); or, without ``replace``, a run whose ``as_of`` is older than
        that of the run the database holds.
    EnvironmentProblem
        The server is unreachable (the message says how to start one).

    Notes
    -----
    Reads every key and content hash the database holds (O(V + E) reads), then writes the
    changed rows: every write is a ``MERGE`` (or a keyed ``DELETE``) on a key backed by a
    uniqueness constraint, in batches of ``batch_size`` rows, one transaction each. A killed
    load leaves whole batches behind; running it again compares afresh and converges.

    Examples
    --------
    >>> summary = load_run("runs/2025-03-01.run", batch_size=5000)  # doctest: +SKIP
    >>> summary.relationships["USED_IP"]  # doctest: +SKIP
    282162
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    if concurrency < 0:
        raise InputError(f"concurrency must be 0 or more, not {concurrency}")
    from .incremental import sync_run  # it builds on this module's steps and writers

    prepared = prepare_load(run_dir)
    own = runner is None
    active = runner if runner is not None else QueryRunner(resolve_connection(data_dir))
    try:
        summary = sync_run(active, prepared, batch_size, replace, concurrency)
    finally:
        if own:
            active.close()
    logger.info(
        "loaded %s in %d batches (%.1f s): %d rows written, %d deleted, %d unchanged",
        summary.run_dir,
        summary.batches,
        summary.seconds,
        sum(summary.rows_written.values()),
        sum(summary.rows_deleted.values()),
        summary.unchanged,
    )
    return summary
