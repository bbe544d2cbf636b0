"""The observations' grouped aggregation: linker's Arrow + numpy path against polars.

``build_observations`` groups every event row by (identifier value, account) and keeps the
first and last time and the summed requests. This bench times that step alone for one event
column of a validated events table, three ways, in one process and one run:

* ``linker``: the engine's own path (Arrow dictionary codes, the int64 keys grouped by
  hashing, ``ufunc.at`` per group, a sort of the distinct keys), as in
  :func:`linker.observations.build_observations`;
* ``linker sort``: the engine's path before it (one stable argsort of every row's key, the
  columns gathered through it, ``reduceat``);
* ``polars eager``: ``group_by`` + ``sort`` on a DataFrame already in memory (built from the
  same Arrow table, zero-copy where polars allows);
* ``polars lazy``: the same from ``scan_parquet`` (the read included, the streaming engine
  free to choose).

CPU seconds (the process's, all threads) and wall seconds are printed with the load average.

Usage::

    python bench/aggregate.py RUN_DIR/tables/events.parquet --column prompt_fingerprint
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent


def _clock(label: str, work: Callable[[], Any]) -> dict[str, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    groups = work()
    row = {
        "method": label,
        "cpu_s": round(time.process_time() - cpu, 2),
        "wall_s": round(time.perf_counter() - wall, 2),
        "groups": int(groups),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    print(json.dumps(row), flush=True)
    return row


def _keys(table: pa.Table, column: str) -> np.ndarray:
    values = pc.dictionary_encode(table[column].combine_chunks())
    accounts = pc.dictionary_encode(table["account_id"].combine_chunks())
    n_accounts = np.int64(len(accounts.dictionary))
    key = values.indices.to_numpy(zero_copy_only=False).astype(np.int64) * n_accounts
    key += accounts.indices.to_numpy(zero_copy_only=False)
    return key


def _linker(table: pa.Table, column: str) -> int:
    group, unique_key = pd.factorize(_keys(table, column))
    n_groups = len(unique_key)
    ts = table["ts"].combine_chunks().cast(pa.int64()).to_numpy()
    first = np.full(n_groups, np.iinfo(np.int64).max)
    np.minimum.at(first, group, ts)
    last = np.full(n_groups, np.iinfo(np.int64).min)
    np.maximum.at(last, group, ts)
    requests = np.zeros(n_groups, dtype=np.int64)
    np.add.at(requests, group, table["requests"].combine_chunks().to_numpy())
    by_key = np.argsort(unique_key)
    first, last, requests = first[by_key], last[by_key], requests[by_key]
    return n_groups


def _linker_sort(table: pa.Table, column: str) -> int:
    key = _keys(table, column)
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ts = table["ts"].combine_chunks().cast(pa.int64()).to_numpy()[order]
    requests = table["requests"].combine_chunks().to_numpy()[order]
    np.minimum.reduceat(ts, starts)
    np.maximum.reduceat(ts, starts)
    np.add.reduceat(requests, starts)
    return len(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path, help="A validated events table (Parquet).")
    parser.add_argument("--column", default="prompt_fingerprint")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "aggregate.json")
    args = parser.parse_args()
    import polars as pl

    columns = ["account_id", "ts", "requests", args.column]
    table = pq.read_table(args.events, columns=columns)
    rows = [
        _clock("linker (Arrow codes, hash grouping)", lambda: _linker(table, args.column)),
        _clock("linker sort (Arrow codes, numpy sort)", lambda: _linker_sort(table, args.column)),
    ]
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    aggregations = [
        pl.col("ts").min().alias("first_seen"),
        pl.col("ts").max().alias("last_seen"),
        pl.col("requests").sum(),
    ]
    keys = [args.column, "account_id"]
    rows.append(
        _clock(
            "polars eager group_by + sort",
            lambda: frame.group_by(keys).agg(aggregations).sort(keys).height,
        )
    )
    rows.append(
        _clock(
            "polars lazy scan_parquet + group_by + sort (read included)",
            lambda: (
                pl.scan_parquet(args.events)
                .group_by(keys)
                .agg(aggregations)
                .sort(keys)
                .collect()
                .height
            ),
        )
    )
    result = {"events": str(args.events), "rows": table.num_rows, "column": args.column}
    args.out.write_text(json.dumps({**result, "methods": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
