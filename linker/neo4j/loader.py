"""Load a run directory into Neo4j: accounts, identifiers, clusters and model use.

:func:`load_run` is the one entry point (``linker neo4j load RUN_DIR`` and, later,
``linker run --neo4j``). It creates the constraints and indexes first, then writes parameterised
``UNWIND`` batches that ``MERGE`` on unique keys, so a re-run changes nothing and a load killed
part-way completes when run again. Labels and relationship types cannot be parameters: each one
has its own query file in ``queries/load/``, picked from the fixed mapping :data:`KIND_SCHEMA`.
The schema is drawn in ``docs/neo4j.md``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from linker.errors import InputError
from linker.progress import progress
from linker.queries import load_query, split_statements

from .runner import QueryRunner, resolve_connection

__all__ = [
    "IDENTIFIER_LABELS",
    "KIND_SCHEMA",
    "LoadSummary",
    "clear_graph",
    "create_schema",
    "graph_counts",
    "load_run",
]

logger = logging.getLogger(__name__)

KIND_SCHEMA: dict[str, tuple[str, str]] = {
    "payment": ("PaymentMethod", "HAS_PAYMENT"),
    "card_bin": ("CardBin", "HAS_CARD_BIN"),
    "mailbox": ("Mailbox", "HAS_MAILBOX"),
    "email_domain": ("EmailDomain", "HAS_EMAIL_DOMAIN"),
    "signup_ip": ("IP", "SIGNED_UP_FROM"),
    "ip": ("IP", "USED_IP"),
    "signup_subnet": ("Subnet", "SIGNED_UP_FROM_SUBNET"),
    "subnet": ("Subnet", "USED_SUBNET"),
    "device": ("Device", "USED_DEVICE"),
    "user_agent": ("UserAgent", "USED_USER_AGENT"),
    "prompt": ("PromptTemplate", "USED_PROMPT"),
}
"""Observation kind -> (identifier label, relationship type from the account)."""

IDENTIFIER_LABELS: tuple[str, ...] = tuple(
    dict.fromkeys(label for label, _ in KIND_SCHEMA.values())
)

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


def _read_table(path: Path, columns: tuple[str, ...], *, required: bool = True) -> pd.DataFrame:
    if not path.exists():
        if required:
            raise InputError(f"{path}: missing from the run directory")
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: not a readable parquet file ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def _python_values(series: pd.Series) -> list[Any]:
    """Column values as plain Python objects the driver can send (None for missing)."""
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
        stamps = pd.to_datetime(series, utc=True)
        return [None if pd.isna(v) else v.to_pydatetime() for v in stamps]
    out: list[Any] = []
    for value in series.astype(object):
        if value is None or (not isinstance(value, list | tuple) and pd.isna(value)):
            out.append(None)
        elif hasattr(value, "item"):
            out.append(value.item())
        else:
            out.append(value)
    return out


def _rows(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    values = {c: _python_values(frame[c]) for c in columns}
    return [dict(zip(columns, vals, strict=True)) for vals in zip(*values.values(), strict=True)]


def _subnet_of(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _account_rows(run_dir: Path) -> list[dict[str, Any]]:
    accounts = _read_table(run_dir / "tables" / "accounts.parquet", ACCOUNT_COLUMNS)
    scores = _read_table(run_dir / "scores.parquet", ("account_id", *SCORE_COLUMNS))
    scores = scores[["account_id", *(c for c in SCORE_COLUMNS if c != "billing_customer_id")]]
    merged = accounts[list(ACCOUNT_COLUMNS)].merge(scores, on="account_id", how="left")
    if merged["account_id"].duplicated().any():
        dup = merged.loc[merged["account_id"].duplicated(), "account_id"].iloc[0]
        raise InputError(f"{run_dir}: account {dup!r} appears twice in accounts or scores")
    props = [c for c in merged.columns if c != "account_id"]
    return [
        {"account_id": row["account_id"], "props": {k: row[k] for k in props}}
        for row in _rows(merged, ["account_id", *props])
    ]


def _observation_steps(
    run_dir: Path, account_ids: set[str], skipped: dict[str, int]
) -> list[tuple[str, list[dict[str, Any]]]]:
    path = run_dir / "observations.parquet"
    obs = _read_table(path, OBSERVATION_COLUMNS)
    unknown = sorted(set(obs["kind"].dropna().astype(str)) - set(KIND_SCHEMA))
    if unknown:
        raise InputError(
            f"{path}: column kind has unknown value(s) {', '.join(unknown)} "
            f"(known: {', '.join(KIND_SCHEMA)})"
        )
    orphans = ~obs["account_id"].isin(account_ids)
    if orphans.any():
        first = obs.index[orphans][0]
        raise InputError(
            f"{path}: row {first}: column account_id: {obs.at[first, 'account_id']!r} is not in "
            f"tables/accounts.parquet ({int(orphans.sum())} such rows)"
        )
    obs = obs.dropna(subset=["value"])
    obs = obs.assign(label=obs["kind"].map(lambda k: KIND_SCHEMA[k][0]))

    idents = _read_table(
        run_dir / "identifiers.parquet",
        ("kind", "value", "n_accounts", "weight", "is_supernode"),
        required=False,
    )
    idents = idents.assign(label=idents["kind"].map(lambda k: KIND_SCHEMA.get(str(k), ("", ""))[0]))
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
    nodes["is_supernode"] = nodes["is_supernode"].astype("boolean")

    steps: list[tuple[str, list[dict[str, Any]]]] = []
    for label in IDENTIFIER_LABELS:
        part = nodes[nodes["label"] == label]
        steps.append(
            (
                f"load/identifier_{label}",
                _rows(part, ["value", "n_accounts", "weight", "is_supernode"]),
            )
        )
    for kind, (_label, rel_type) in KIND_SCHEMA.items():
        part = obs[obs["kind"] == kind]
        columns = ["account_id", "value", "first_seen", "last_seen", "count"]
        steps.append((f"load/rel_{rel_type}", _rows(part, columns)))

    ips = sorted(set(obs.loc[obs["label"] == "IP", "value"].astype(str)))
    subnets = set(obs.loc[obs["label"] == "Subnet", "value"].astype(str))
    links = []
    for ip in ips:
        subnet = _subnet_of(ip)
        if subnet is None:
            skipped["ip_not_an_address"] = skipped.get("ip_not_an_address", 0) + 1
        elif subnet not in subnets:
            skipped["ip_subnet_not_observed"] = skipped.get("ip_subnet_not_observed", 0) + 1
        else:
            links.append({"ip": ip, "subnet": subnet})
    steps.append(("load/ip_in_subnet", links))
    return steps


def _cluster_steps(run_dir: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    clusters = _read_table(run_dir / "clusters.parquet", CLUSTER_COLUMNS)
    scores = _read_table(run_dir / "scores.parquet", ("account_id", "cluster_id"))
    members = scores.dropna(subset=["cluster_id"]).sort_values(["cluster_id", "account_id"])
    return [
        ("load/clusters", _rows(clusters.sort_values("cluster_id"), list(CLUSTER_COLUMNS))),
        ("load/in_cluster", _rows(members, ["account_id", "cluster_id"])),
    ]


def _model_steps(run_dir: Path, account_ids: set[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    path = run_dir / "tables" / "events.parquet"
    if not path.exists():
        return []
    events = _read_table(path, ("account_id", "ts", "model"))
    if "requests" not in events.columns:
        events = events.assign(requests=1)
    events = events.dropna(subset=["model", "ts"])
    events = events[events["account_id"].isin(account_ids)]
    if events.empty:
        return []
    use = (
        events.groupby(["account_id", "model"], sort=True)
        .agg(first_seen=("ts", "min"), last_seen=("ts", "max"), requests=("requests", "sum"))
        .reset_index()
    )
    models = (
        events.groupby("model", sort=True)["ts"].min().rename("first_seen").reset_index()
    ).rename(columns={"model": "name"})
    return [
        ("load/models", _rows(models, ["name", "first_seen"])),
        (
            "load/used_model",
            _rows(use, ["account_id", "model", "first_seen", "last_seen", "requests"]),
        ),
    ]


def _batches(
    steps: list[tuple[str, list[dict[str, Any]]]], batch_size: int
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for name, rows in steps:
        for start in range(0, len(rows), batch_size):
            yield name, rows[start : start + batch_size]


def create_schema(runner: QueryRunner) -> int:
    """Create the constraints and indexes of ``queries/load/schema.cypher`` (idempotent).

    Returns
    -------
    int
        The number of schema statements run.
    """
    statements = split_statements(load_query("load/schema"))
    for statement in statements:
        runner.run(statement, write=True)
    runner.run(load_query("load/await_indexes"), write=True)
    return len(statements)


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


def load_run(
    run_dir: str | os.PathLike[str],
    *,
    runner: QueryRunner | None = None,
    batch_size: int = 5000,
    replace: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
) -> LoadSummary:
    """Load the run directory ``run_dir`` into Neo4j, idempotently.

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
        Delete everything in the database first (another run's graph), in batches.
    data_dir : path, optional
        The local server's data directory, used when ``runner`` is None and ``NEO4J_URI``
        is unset.

    Returns
    -------
    LoadSummary
        Rows written per step and the database's node and relationship counts afterwards.

    Raises
    ------
    InputError
        A missing or malformed run file (the message names the file, and row and column
        where it applies).
    EnvironmentProblem
        The server is unreachable (the message says how to start one).

    Notes
    -----
    Every write is a ``MERGE`` on a key backed by a uniqueness constraint, in batches of
    ``batch_size`` rows, one transaction each: cost is O(rows) index look-ups. A killed load
    leaves whole batches behind, and re-running merges them again without duplicates.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"{root}: not a run directory")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    manifest = root / "manifest.json"
    if manifest.exists():
        try:
            json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{manifest}: not valid JSON ({exc})") from None

    skipped: dict[str, int] = {}
    accounts = _account_rows(root)
    account_ids = {str(r["account_id"]) for r in accounts}
    steps: list[tuple[str, list[dict[str, Any]]]] = [("load/accounts", accounts)]
    steps += _observation_steps(root, account_ids, skipped)
    steps += _cluster_steps(root)
    steps += _model_steps(root, account_ids)

    own = runner is None
    active = runner if runner is not None else QueryRunner(resolve_connection(data_dir))
    try:
        active.verify()
        if replace:
            logger.info("deleted %d nodes before loading", clear_graph(active))
        create_schema(active)
        total = sum(-(-len(rows) // batch_size) for _, rows in steps)
        texts = {name: load_query(name) for name, _ in steps}
        written: dict[str, int] = {}
        batches = 0
        for name, batch in progress(
            _batches(steps, batch_size), total=total, desc="neo4j load", unit="batch"
        ):
            active.run(texts[name], {"rows": batch}, write=True)
            key = name.removeprefix("load/")
            written[key] = written.get(key, 0) + len(batch)
            batches += 1
            logger.debug("%s: wrote %d rows", name, len(batch))
        nodes, relationships = graph_counts(active)
    finally:
        if own:
            active.close()
    logger.info("loaded %s in %d batches", root, batches)
    return LoadSummary(
        run_dir=root,
        batches=batches,
        rows_written=written,
        nodes=nodes,
        relationships=relationships,
        skipped=skipped,
    )
