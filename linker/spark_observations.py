"""The observations table built by Spark (the Spark engine's ``normalise`` stage).

:func:`spark_observations` is :func:`linker.observations.build_observations` as Spark
DataFrame jobs over the validated tables: each registered identifier kind's source columns
are gathered, their *distinct* raw values normalised by the kind's own Arrow normaliser in
Python workers (``mapInArrow``), joined back, and aggregated per (account, kind, value) into
first seen, last seen and count. The result is sorted like the embedded table (kind, value,
account id, by code point), so both engines give the same artefact.

:func:`collect_sorted` brings a sorted Spark result to the driver through Parquet part
files rather than through the driver JVM's heap (``toArrow`` holds every task's result there
at once: the 100k-account world's observations did not fit the default 1 GiB heap).

``pyspark`` is imported inside the functions: the module imports without it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from linker.errors import LinkerError
from linker.kinds import IdentifierKind, all_kinds

__all__ = ["collect_sorted", "spark_observations"]

logger = logging.getLogger(__name__)

_SCHEMA = (
    "account_id string, kind string, value string, first_seen timestamp, "
    "last_seen timestamp, count long"
)


def _table_rows(frame: Any, table: str, pairs: list[tuple[str, str]], created: Any) -> Any:
    """``kind``, ``account_id``, ``raw``, ``first``, ``n``: every (kind, source column) of
    one table in one scan, a row per present value."""
    from pyspark.sql import functions as F

    if table == "events":
        first = F.col("ts")
        count = F.col("requests") if "requests" in frame.columns else F.lit(1)
    elif table == "accounts":
        first, count = F.col("created_at"), F.lit(1)
    else:
        frame = frame.join(created, frame["account_id"] == created["_account"], "left")
        first, count = F.col("_created"), F.lit(1)
        if "added_at" in frame.columns:
            first = F.coalesce(F.col("added_at"), first)
    values = F.explode(
        F.array(
            *(
                F.struct(F.lit(kind).alias("kind"), F.col(column).cast("string").alias("raw"))
                for kind, column in pairs
            )
        )
    )
    rows = frame.select(
        F.col("account_id").cast("string").alias("account_id"),
        first.alias("first"),
        count.cast("long").alias("n"),
        values.alias("o"),
    )
    return rows.select("o.kind", "account_id", "o.raw", "first", "n").where(
        F.col("raw").isNotNull() & F.col("account_id").isNotNull() & F.col("first").isNotNull()
    )


def _normalised(rows: Any, normalisers: Mapping[str, Any]) -> Any:
    """``kind``, ``raw``, ``value``: each distinct raw text of each kind and its normal form,
    computed by the kind's normaliser in Spark's Python workers, one Arrow batch at a time."""

    def normalise(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow.compute as pc

        memo: dict[str, dict[str, str]] = {}
        for batch in batches:
            kinds, raws = batch.column(0), batch.column(1)
            for kind in pc.unique(kinds).to_pylist():
                mine = pc.equal(kinds, kind)
                values = raws.filter(mine)
                entry = normalisers[kind]
                normal = pa.array(entry.normaliser(values, memo.setdefault(entry.memo, {})))
                yield pa.RecordBatch.from_arrays(
                    [kinds.filter(mine), values.cast(pa.string()), normal.cast(pa.string())],
                    ["kind", "raw", "value"],
                )

    distinct = rows.select("kind", "raw").distinct()
    return distinct.mapInArrow(normalise, "kind string, raw string, value string")


def spark_observations(
    tables: Mapping[str, Any], kinds: Iterable[IdentifierKind] | None = None
) -> Any:
    """:func:`linker.observations.build_observations`, as one Spark DataFrame.

    Parameters
    ----------
    tables : mapping of str to pyspark.sql.DataFrame
        The validated tables (``accounts`` required; ``payments`` and ``events`` when
        present), with the contract's column types (timestamps as timestamps).
    kinds : iterable of IdentifierKind, optional
        The kinds to build; default every registered kind.

    Returns
    -------
    pyspark.sql.DataFrame
        ``account_id``, ``kind``, ``value``, ``first_seen``, ``last_seen``, ``count``, one
        row per (account_id, kind, value), sorted by (kind, value, account_id): the rows of
        the embedded table, in its order.

    Raises
    ------
    KeyError
        If ``tables`` has no ``accounts``.

    Notes
    -----
    One scan per table (every source column of it exploded into ``(kind, raw)`` rows; the
    payments joined with the accounts for the signup time), one ``distinct`` over the
    (kind, raw value) pairs, normalised in the executors (one Python call per distinct
    value the normaliser's vectorised path does not cover, as on the embedded engine), a
    join back, one group-by per (kind, value, account) and one global sort: O(r) rows
    shuffled for r present source values. Nothing reaches the driver until the caller
    collects.
    """
    from pyspark.sql import functions as F

    if "accounts" not in tables:
        raise KeyError("accounts")
    chosen = all_kinds() if kinds is None else sorted(kinds, key=lambda k: k.name)
    created = tables["accounts"].select(
        F.col("account_id").alias("_account"), F.col("created_at").alias("_created")
    )
    pieces = []
    for table, frame in tables.items():
        pairs = [
            (entry.name, s.column)
            for entry in chosen
            for s in entry.sources
            if s.table == table and s.column in frame.columns
        ]
        if pairs:
            pieces.append(_table_rows(frame, table, pairs, created))
    if not pieces:
        return tables["accounts"].sparkSession.createDataFrame([], _SCHEMA)
    rows = pieces[0]
    for more in pieces[1:]:
        rows = rows.unionByName(more)
    return (
        rows.join(_normalised(rows, {k.name: k for k in chosen}), ["kind", "raw"])
        .where(F.col("value") != "")
        .groupBy("kind", "value", "account_id")
        .agg(
            F.min("first").alias("first_seen"),
            F.max("first").alias("last_seen"),
            F.sum("n").cast("long").alias("count"),
        )
        .select("account_id", "kind", "value", "first_seen", "last_seen", "count")
        .orderBy("kind", "value", "account_id")
    )


def collect_sorted(frame: Any, directory: Path | None) -> pa.Table:
    """A Spark DataFrame on the driver as one Arrow table, in the frame's order.

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        The result to collect; when it ends in a global ``orderBy``, its partitions hold
        consecutive ranges of that order.
    directory : pathlib.Path or None
        A directory both the driver and Spark's executors can write and read (the run
        directory in local mode, a shared path on a cluster). Spark writes the frame there
        as Parquet part files (in a temporary folder, removed afterwards) and the driver
        reads them back in part order. ``None`` collects through ``toArrow``.

    Returns
    -------
    pyarrow.Table
        The rows in the frame's order, with the schema ``toArrow`` gives (timestamps as
        microseconds in UTC).

    Raises
    ------
    LinkerError
        When the driver reads back fewer or more rows than Spark wrote (the directory is
        not shared between the driver and the executors).

    Notes
    -----
    O(rows) on the driver to read the parts. Through ``toArrow`` the driver JVM holds every
    task's serialised result at once before handing them over; through files the JVM's
    heap holds only each task's write buffers, and the driver's Python process holds the
    table once, as it would anyway.
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    if directory is None:
        return frame.toArrow()
    spark = frame.sparkSession
    schema = to_arrow_schema(frame.schema, timestamp_utc=True)
    key = "spark.sql.parquet.outputTimestampType"
    before = spark.conf.get(key)
    with tempfile.TemporaryDirectory(prefix=".spark-collect-", dir=directory) as tmp:
        target = Path(tmp) / "parts"
        spark.conf.set(key, "TIMESTAMP_MICROS")
        try:
            frame.write.parquet(str(target))
        finally:
            spark.conf.set(key, before)
        parts = sorted(target.glob("part-*.parquet"))
        tables = [pq.read_table(part, schema=schema) for part in parts]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        written = spark.read.parquet(str(target)).count()
    if written != table.num_rows:
        raise LinkerError(
            f"{directory}: Spark wrote {written} rows but the driver read {table.num_rows}: "
            "the run directory must be a path the driver and the executors share"
        )
    return table
