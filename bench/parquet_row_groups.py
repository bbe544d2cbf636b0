"""Writing and reading a dictionary-encoded table in Parquet: Arrow's default row groups
against the run directory's (:func:`linker.engine.store._row_group_rows`), and the same table
as plain strings, in one process.

Usage::

    python bench/parquet_row_groups.py RUN_DIR/tables/events.parquet --tmp /tmp

It prints seconds per write and read; the file is a run's validated events table (its text
columns dictionary-encoded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from linker.engine.store import _row_group_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="a Parquet table with dictionary columns")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"))
    args = parser.parse_args(argv)
    encoded = pq.read_table(args.table)
    plain = pa.Table.from_arrays(
        [
            c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
            for c in encoded.columns
        ],
        names=encoded.column_names,
    )
    sys.stdout.write(f"{encoded.num_rows:,} rows; store row groups: {_row_group_rows(encoded)}\n")
    cases = {
        "dictionary, Arrow's row groups": (encoded, None),
        "dictionary, the store's row groups": (encoded, _row_group_rows(encoded)),
        "plain strings, Arrow's row groups": (plain, None),
    }
    out = args.tmp / "parquet_row_groups.parquet"
    for name, (table, rows) in cases.items():
        began = time.perf_counter()
        pq.write_table(table, out, compression="zstd", row_group_size=rows)
        wrote = time.perf_counter() - began
        began = time.perf_counter()
        pq.read_table(out)
        read = time.perf_counter() - began
        sys.stdout.write(f"{name}: write {wrote:.1f} s, read {read:.1f} s\n")
        sys.stdout.flush()
        out.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
