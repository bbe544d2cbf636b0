"""Writing and reading a dictionary-encoded table in Parquet: Arrow's defaults, the eight
row groups the store used before, the store's options now
(:func:`linker.engine.store.parquet_options`: large dictionaries written plain), and the same
table as plain strings, in one process.

Usage::

    python bench/parquet_row_groups.py RUN_DIR/tables/events.parquet --tmp /tmp

It prints seconds per write and read (the read converted to pandas, as the pipeline reads
it) and the file's size; the file is a run's validated events table (its text
columns dictionary-encoded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from linker.engine.store import parquet_options


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
    options = parquet_options(encoded)
    sys.stdout.write(f"{encoded.num_rows:,} rows; the store's options: {options}\n")
    eight = max(-(-encoded.num_rows // 8), 1 << 20)
    cases: dict[str, tuple[pa.Table, dict[str, object]]] = {
        "dictionary, Arrow's row groups": (encoded, {"compression": "zstd"}),
        "dictionary, eight row groups (the store before)": (
            encoded,
            {"compression": "zstd", "row_group_size": eight},
        ),
        "the store's options (large dictionaries plain)": (encoded, dict(options)),
        "plain strings, Arrow's row groups": (plain, {"compression": "zstd"}),
    }
    out = args.tmp / "parquet_row_groups.parquet"
    for name, (table, kwargs) in cases.items():
        began = time.perf_counter()
        pq.write_table(table, out, **kwargs)
        wrote = time.perf_counter() - began
        size = out.stat().st_size
        began = time.perf_counter()
        pq.read_table(out).to_pandas()
        read = time.perf_counter() - began
        sys.stdout.write(
            f"{name}: write {wrote:.1f} s, read {read:.1f} s, {size / 2**20:,.0f} MiB\n"
        )
        sys.stdout.flush()
        out.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
