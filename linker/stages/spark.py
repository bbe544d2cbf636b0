"""Spark implementations of the run's stages (``Stage.engines["spark"]``; docs/scale.md).

``behaviour``: the per-account sums over the events (:data:`~linker.graph.behaviour.
TOTALS_COLUMNS`: rows, requests, tokens, active days, distinct IPs, sessions and their IPs,
prompts and top-prompt requests, first event, first heavy day, requests per UTC hour) are
Spark group-bys and window functions over the validated events, read by Spark from the
store's Parquet file; the per-account arithmetic that turns them into features is the
embedded engine's own :func:`~linker.graph.behaviour.behaviour_from_totals`, so both engines
give the same artefact. The model-pivot columns and the lockstep pairs still run on the
driver over the event codes (they need every account's events at once: a model's release
and MinHash blocks; issue 15 plans them in Spark).

``communities``: the strong-link components (accounts sharing an identifier of
``link.strong_kinds`` that is not a super-node) and the paying customers (``link.
customer_kinds``) are found by Spark with large-star / small-star
(:func:`~linker.graph.spark_components.identifier_components`) from the ``observations``,
``identifiers`` and ``accounts`` Parquet files; one row per linked account comes back, and
its labels are the embedded engine's (:func:`~linker.graph.spark_components.labels_in_order`).
Contraction, Leiden and pruning then run on the driver as on the embedded engine.

``normalise``: the observations table is built by Spark from the validated tables' Parquet
files (:func:`~linker.spark_observations.spark_observations`: each kind's normaliser runs in
the executors, over distinct raw values) and collected once, sorted: Spark writes it as
Parquet parts into the run directory and the driver reads them in order
(:func:`~linker.spark_observations.collect_sorted`; a store without a directory collects it as
Arrow).

Only this module, :mod:`linker.spark_observations`, :mod:`linker.graph.spark_components` and
:mod:`linker.engine.spark` import ``pyspark``, inside functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from linker.engine.stages import RunContext
from linker.errors import LinkerError
from linker.graph.behaviour import (
    TOTALS_COLUMNS,
    behaviour_from_totals,
    coded_events,
    pivot_features,
)
from linker.graph.bipartite import IdentifierGraph
from linker.graph.spark_communities import SparkPartition, spark_partition_components
from linker.graph.spark_components import identifier_components, labels_in_order
from linker.observations import observation_frame
from linker.spark_observations import collect_sorted, spark_observations
from linker.stages.ingest import INPUT_TABLES, observations_artefact
from linker.stages.linking import (
    LinkProjection,
    account_frame,
    communities_of,
    lockstep_table,
    uses_behaviour,
)

__all__ = [
    "behaviour",
    "communities",
    "normalise",
    "spark_account_totals",
    "spark_components_over",
]

logger = logging.getLogger(__name__)

_NEVER = np.iinfo(np.int64).max
_DRIVER_COLUMNS = ("account_id", "ts", "model", "prompt_fingerprint", "requests")
"""The events columns the driver still reads: the pivot and lockstep's codes."""


def _session(ctx: RunContext) -> Any:
    session = getattr(ctx.engine, "session", None)
    if session is None:
        raise LinkerError(f"the spark implementation ran on engine {ctx.engine.name!r}")
    return session()


def _artefact(ctx: RunContext, spark: Any, name: str) -> Any:
    """Artefact ``name`` as a Spark DataFrame: Spark reads the store's Parquet file."""
    path = ctx.store.file_of(name)
    if path is not None:
        return spark.read.parquet(str(path))
    # In memory: handed over as Arrow (nullable integers stay integers, not NaN doubles).
    return spark.createDataFrame(ctx.table(name))


def _events(ctx: RunContext, spark: Any) -> Any:
    """The validated events as a Spark DataFrame."""
    return _artefact(ctx, spark, "events")


def _floor_div(column: str, by: int) -> str:
    """SQL for ``column // by`` (floor, also below zero)."""
    return f"(({column}) - pmod({column}, {by})) div {by}"


def _event_rows(events: Any) -> Any:
    """One row per event: account, epoch second, day, hour, requests, tokens, IP, prompt."""
    from pyspark.sql import functions as F

    have = set(events.columns)

    def number(name: str, default: int) -> Any:
        if name not in have:
            return F.lit(default).cast("long")
        return F.coalesce(F.col(name).cast("long"), F.lit(default).cast("long"))

    def text(name: str) -> Any:
        return F.col(name).cast("string") if name in have else F.lit(None).cast("string")

    rows = events.select(
        F.col("account_id").cast("string").alias("account_id"),
        F.expr(_floor_div("unix_micros(ts)", 1_000_000)).alias("t"),
        F.greatest(number("requests", 1), F.lit(1)).alias("req"),
        number("input_tokens", 0).alias("tin"),
        number("output_tokens", 0).alias("tout"),
        text("ip").alias("ip"),
        text("prompt_fingerprint").alias("prompt"),
    )
    return rows.withColumn("day", F.expr(_floor_div("t", 86400))).withColumn(
        "hour", F.expr(f"pmod({_floor_div('t', 3600)}, 24)")
    )


def _per_account(rows: Any, session_gap_minutes: float) -> Any:
    """Sums, extremes, distinct IPs, sessions and the hour profile: one window and one
    aggregation over the rows partitioned by account (no second shuffle)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_time = Window.partitionBy("account_id").orderBy("t")
    gap = F.col("t") - F.lag("t").over(by_time)
    new = F.when(gap.isNull() | (gap > session_gap_minutes * 60), 1).otherwise(0)
    # RANGE frame: events at the same second share a session whatever their order.
    running = by_time.rangeBetween(Window.unboundedPreceding, Window.currentRow)
    timed = rows.withColumn("new_session", new).withColumn(
        "session", F.sum("new_session").over(running)
    )
    # Distinct counts as set sizes: several countDistinct in one aggregation would expand
    # every row once per distinct column.
    session_ip = F.when(F.col("ip").isNotNull(), F.struct("session", "ip"))
    return timed.groupBy("account_id").agg(
        F.count(F.lit(1)).alias("n_rows"),
        F.sum("req").alias("requests"),
        F.sum("tin").alias("tokens_in"),
        F.sum("tout").alias("tokens_out"),
        F.size(F.collect_set("ip")).alias("distinct_ips"),
        F.sum("new_session").alias("sessions"),
        F.size(F.collect_set(session_ip)).alias("session_ips"),
        F.min("t").alias("first_event"),
        *(
            F.sum(F.when(F.col("hour") == h, F.col("req")).otherwise(0)).alias(f"hour_{h:02d}")
            for h in range(24)
        ),
    )


def _totals_frame(
    rows: Any, session_gap_minutes: float, heavy_day_requests: int, top_templates: int
) -> Any:
    """The per-account totals as one Spark DataFrame keyed by ``account_id``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    days = (
        rows.groupBy("account_id", "day")
        .agg(F.sum("req").alias("day_req"))
        .groupBy("account_id")
        .agg(
            F.count(F.lit(1)).alias("active_days"),
            (F.min(F.when(F.col("day_req") >= heavy_day_requests, F.col("day"))) * 86400).alias(
                "heavy_day"
            ),
        )
    )
    per_prompt = (
        rows.where(F.col("prompt").isNotNull())
        .groupBy("account_id", "prompt")
        .agg(F.sum("req").alias("per"))
    )
    ranked = per_prompt.withColumn(
        "rank",
        F.row_number().over(Window.partitionBy("account_id").orderBy(F.desc("per"), "prompt")),
    )
    templates = ranked.groupBy("account_id").agg(
        F.count(F.lit(1)).alias("n_templates"),
        F.sum(F.when(F.col("rank") <= top_templates, F.col("per")).otherwise(0)).alias(
            "top_requests"
        ),
        F.sum("per").alias("prompt_requests"),
    )
    return (
        _per_account(rows, session_gap_minutes)
        .join(days, "account_id", "left")
        .join(templates, "account_id", "left")
    )


def spark_account_totals(
    events: Any,
    account_ids: pd.Series,
    *,
    session_gap_minutes: float = 30.0,
    heavy_day_requests: int = 50,
    top_templates: int = 3,
) -> pd.DataFrame:
    """:func:`linker.graph.behaviour.account_totals`, computed by Spark.

    Parameters
    ----------
    events : pyspark.sql.DataFrame
        Validated events (``account_id``, ``ts`` as a timestamp; ``requests``,
        ``input_tokens``, ``output_tokens``, ``ip``, ``prompt_fingerprint`` optional).
    account_ids : pandas.Series
        The accounts, in the order of the result's rows; events of other accounts are left out.
    session_gap_minutes, heavy_day_requests, top_templates
        As in :func:`linker.graph.behaviour.account_behaviour`.

    Returns
    -------
    pandas.DataFrame
        :data:`~linker.graph.behaviour.TOTALS_COLUMNS`, one row per account, equal to
        :func:`~linker.graph.behaviour.account_totals` of the same events.

    Notes
    -----
    Over m events: one shuffle by account for the session window (its aggregation reuses
    that partitioning), one per (account, day) and one per (account, prompt) group-by with
    their per-account follow-ups, and the joins of the three per-account results; only one
    row per account comes back to the driver. Sums of integer columns are exact longs, so
    the float64 totals equal the embedded engine's.
    """
    rows = _event_rows(events)
    found = _totals_frame(rows, session_gap_minutes, heavy_day_requests, top_templates).toPandas()
    n_acc = len(account_ids)
    where = pd.Index(account_ids.astype(str)).get_indexer(found["account_id"].astype(str))
    keep = where >= 0
    out: dict[str, np.ndarray] = {}
    for name in TOTALS_COLUMNS:
        never = name in ("first_event", "heavy_day")
        integer = never or name in ("n_templates", "distinct_ips")
        column = np.full(n_acc, _NEVER if never else 0, dtype=np.int64 if integer else np.float64)
        values = found[name].to_numpy(dtype=np.float64, na_value=np.nan)[keep]
        known = ~np.isnan(values)
        column[where[keep][known]] = values[known].astype(column.dtype)
        out[name] = column
    return pd.DataFrame(out)


def behaviour(ctx: RunContext) -> Mapping[str, Any]:
    """The ``behaviour`` stage on Spark: the same ``behaviour`` and ``lockstep`` artefacts as
    :func:`linker.stages.linking.behaviour`."""
    if not uses_behaviour(ctx):
        return {}
    cfg = ctx.settings.link.behaviour
    accounts = account_frame(ctx)
    ids = accounts["account_id"].astype("string")
    began = time.perf_counter()
    spark = _session(ctx)
    session_seconds = time.perf_counter() - began
    began = time.perf_counter()
    totals = spark_account_totals(_events(ctx, spark), ids)
    spark_seconds = time.perf_counter() - began
    features, hours = behaviour_from_totals(totals, accounts, dormancy_days=cfg.dormancy_days)
    began = time.perf_counter()
    events = ctx.frame("events")
    codes, values = coded_events(events[[c for c in _DRIVER_COLUMNS if c in events.columns]], ids)
    ctx.release("events")
    pivot = pivot_features(codes, len(ids))
    lockstep = lockstep_table(ctx, codes, ids, values)
    ctx.note(
        spark_session_seconds=round(session_seconds, 3),
        spark_seconds=round(spark_seconds, 3),
        driver_seconds=round(time.perf_counter() - began, 3),
        on_driver=["pivot", "lockstep"],
    )
    return {"behaviour": pd.concat([features, pivot, hours], axis=1), "lockstep": lockstep}


def spark_components_over(
    ctx: RunContext, kinds: tuple[str, ...], account_ids: pd.Series
) -> tuple[np.ndarray, int]:
    """:func:`linker.graph.communities.components_over` on the linkable columns of ``kinds``,
    computed by Spark from the run's artefacts.

    Parameters
    ----------
    ctx : RunContext
        A run on the Spark engine, with the ``accounts``, ``observations`` and ``identifiers``
        artefacts.
    kinds : tuple of str
        The identifier kinds that join accounts.
    account_ids : pandas.Series
        The account rows, in ``account_id`` order.

    Returns
    -------
    labels : numpy.ndarray of int64
        Component per account row, equal to the embedded engine's labels.
    rounds : int
        Large-star / small-star rounds Spark ran.

    Notes
    -----
    Spark: one shuffle per identifier and :func:`~linker.graph.spark_components.star_components`
    (O(log² n) rounds of a few shuffles over at most one edge per observation). Driver: one
    row per account that shares an identifier, and an O(n log n) relabelling.
    """
    from pyspark.sql import functions as F

    spark = _session(ctx)
    identifiers = _artefact(ctx, spark, "identifiers")
    found = identifier_components(
        _artefact(ctx, spark, "observations"),
        kinds,
        accounts=_artefact(ctx, spark, "accounts"),
        excluded=identifiers.where(F.col("is_supernode")),
    )
    return labels_in_order(found.frame.toPandas(), account_ids), found.rounds


def communities(ctx: RunContext) -> Mapping[str, Any]:
    """The ``communities`` stage on Spark: the same artefact as
    :func:`linker.stages.linking.communities`, its components found by Spark."""
    settings = ctx.settings.link
    graph: IdentifierGraph = ctx.view("graph")
    ids = pd.Series(graph.bipartite.account_ids).astype("string")
    began = time.perf_counter()
    strong, strong_rounds = spark_components_over(ctx, settings.strong_kinds, ids)
    customer, customer_rounds = spark_components_over(ctx, settings.customer_kinds, ids)
    spark_seconds = time.perf_counter() - began
    linked: LinkProjection = ctx.view("projection")
    found: list[SparkPartition] = []

    def partition(n_nodes: int, edges: np.ndarray, weights: np.ndarray, **how: Any) -> np.ndarray:
        began = time.perf_counter()
        found.append(spark_partition_components(_session(ctx), n_nodes, edges, weights, **how))
        ctx.note(leiden_spark_seconds=round(time.perf_counter() - began, 3))
        return found[-1].membership

    began = time.perf_counter()
    table = communities_of(ctx, linked, strong, customer, partitioner=partition)
    ctx.note(
        components_spark_seconds=round(spark_seconds, 3),
        seconds_with_leiden=round(time.perf_counter() - began, 3),
        strong_rounds=strong_rounds,
        customer_rounds=customer_rounds,
        contracted_components=found[0].components,
        leiden_components=found[0].leiden_components,
        on_driver=["projection", "contraction", "pruning"],
    )
    return {"communities": table}


def normalise(ctx: RunContext) -> Mapping[str, Any]:
    """The ``normalise`` stage on Spark: the same ``observations`` artefact as
    :func:`linker.stages.ingest.normalise`, built by Spark."""
    began = time.perf_counter()
    spark = _session(ctx)
    session_seconds = time.perf_counter() - began
    began = time.perf_counter()
    tables = {name: _artefact(ctx, spark, name) for name in INPUT_TABLES if ctx.has(name)}
    observations = observation_frame(
        collect_sorted(spark_observations(tables), ctx.store.directory)
    )
    ctx.note(
        spark_session_seconds=round(session_seconds, 3),
        spark_seconds=round(time.perf_counter() - began, 3),
    )
    return observations_artefact(ctx, observations)
