"""Read the tables of a dataset into Arrow arrays, with file-level checks.

CSV files are read by ``pyarrow.csv`` with every contract column as a string, so that no
value is converted before :mod:`linker.io.validate` checks it; Parquet files keep their
native types (timestamps, integers). A problem that makes the whole file unusable (a missing
required column, an unreadable or truncated file, a file that is not UTF-8, a table without
data rows) raises :class:`~linker.errors.InputError`. Rows with the wrong number of fields are
not an error here: they are returned as :class:`BadRow` for the validator to reject.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from linker.errors import InputError
from linker.io.contract import TABLE_ORDER, TABLES, TableSpec

__all__ = [
    "SUFFIXES",
    "ArrowColumn",
    "BadRow",
    "RawTable",
    "find_table_files",
    "read_table",
]

logger = logging.getLogger(__name__)

SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet")
"""The file name endings a table may have, in the order they are looked for."""

ArrowColumn: TypeAlias = pa.Array | pa.ChunkedArray
"""A column as read: chunked when the reader produced chunks (they are not copied into one)."""

_HEADER_LIMIT = 1 << 20  # a header line longer than 1 MiB is not a header


@dataclass(frozen=True)
class BadRow:
    """A CSV row whose number of fields differs from the header's.

    Attributes
    ----------
    row : int
        1-based data-row number (the header is not a data row; blank lines are not rows).
    text : str
        The row as it appears in the file.
    n_fields : int
        How many fields it has.
    expected : int
        How many fields the header has.
    """

    row: int
    text: str
    n_fields: int
    expected: int


@dataclass
class RawTable:
    """One table as read from its file, before any row-level check.

    Attributes
    ----------
    spec : TableSpec
        The table's contract.
    path : Path
        The file it came from.
    columns : dict of str to pyarrow.Array or pyarrow.ChunkedArray
        The contract columns present in the file, in contract order. CSV columns are
        ``large_string`` (an empty field is ``""``); Parquet columns keep their Arrow type
        (strings as ``large_string``, dictionaries decoded).
    row_numbers : numpy.ndarray
        The 1-based data-row number of each parsed row (int64, ascending).
    bad_rows : list of BadRow
        CSV rows that could not be split into the header's columns.
    header : list of str
        Every column name in the file, contract or not.
    """

    spec: TableSpec
    path: Path
    columns: dict[str, ArrowColumn]
    row_numbers: np.ndarray
    bad_rows: list[BadRow] = field(default_factory=list)
    header: list[str] = field(default_factory=list)

    @property
    def n_parsed(self) -> int:
        """Rows split into columns (``read`` minus the bad rows)."""
        return len(self.row_numbers)

    @property
    def n_read(self) -> int:
        """Every data row in the file."""
        return len(self.row_numbers) + len(self.bad_rows)


def find_table_files(data_dir: str | Path) -> dict[str, Path]:
    """Find the file of each contract table in ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        The dataset directory.

    Returns
    -------
    dict of str to Path
        Table name to its file, for the tables present, in validation order.

    Raises
    ------
    InputError
        If ``data_dir`` is not a directory, a table has two files, or ``accounts`` is missing.
    """
    directory = Path(data_dir)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory (expected a dataset of table files)")
    found: dict[str, Path] = {}
    for name in TABLE_ORDER:
        candidates = [directory / f"{name}{suffix}" for suffix in SUFFIXES]
        present = [p for p in candidates if p.is_file()]
        if len(present) > 1:
            names = ", ".join(p.name for p in present)
            raise InputError(f"{directory}: table {name} has more than one file ({names})")
        if present:
            found[name] = present[0]
        elif TABLES[name].required:
            raise InputError(
                f"{directory}: required table {name} is missing "
                f"(expected {name}.csv, {name}.csv.gz or {name}.parquet)"
            )
    return found


def read_table(spec: TableSpec, path: Path) -> RawTable:
    """Read one table file and check it at file level.

    Parameters
    ----------
    spec : TableSpec
        The table's contract.
    path : Path
        A ``.csv``, ``.csv.gz`` or ``.parquet`` file.

    Returns
    -------
    RawTable
        The contract columns present, their row numbers and any malformed CSV rows.

    Raises
    ------
    InputError
        ``<file>: <reason>`` or ``<file>: column <c>: <reason>`` for a missing required
        column, a repeated column, an unreadable, truncated or non-UTF-8 file, or a file
        without data rows.

    Notes
    -----
    A clean CSV file is parsed once, on all cores. If it has malformed rows, it is parsed
    again on one thread, the only way ``pyarrow`` reports their row numbers.
    """
    is_parquet = path.name.endswith(".parquet")
    raw = _read_parquet(spec, path) if is_parquet else _read_csv(spec, path)
    if raw.n_read == 0:
        raise InputError(f"{path}: empty table (no data rows)")
    logger.info("read %s: %d rows (%d malformed)", path, raw.n_read, len(raw.bad_rows))
    return raw


def _check_header(spec: TableSpec, path: Path, header: list[str]) -> list[str]:
    """The contract columns present in ``header``, or raise for a missing or repeated one."""
    for column in spec.columns:
        if column.required and column.name not in header:
            raise InputError(f"{path}: column {column.name}: required column is missing")
        if header.count(column.name) > 1:
            raise InputError(f"{path}: column {column.name}: column appears more than once")
    return [c for c in spec.column_names if c in header]


# --- CSV -----------------------------------------------------------------------------------

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _open_binary(path: Path) -> io.BufferedIOBase:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_header(path: Path) -> list[str]:
    try:
        with _open_binary(path) as handle:
            first = handle.readline(_HEADER_LIMIT)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: unreadable or truncated file ({exc})") from None
    for bom, encoding in _BOMS:
        if first.startswith(bom):
            raise InputError(
                f"{path}: unknown encoding ({encoding} byte-order mark); expected UTF-8"
            )
    if b"\x00" in first:
        raise InputError(f"{path}: unknown encoding (NUL bytes, UTF-16?); expected UTF-8")
    if not first.strip():
        raise InputError(f"{path}: empty table (no header and no data rows)")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: unknown encoding (byte 0x{first[exc.start]:02x} in the header is not "
            "UTF-8); expected UTF-8"
        ) from None
    return next(csv.reader([text.rstrip("\r\n")]))


def _read_csv(spec: TableSpec, path: Path) -> RawTable:
    header = _read_header(path)
    present = _check_header(spec, path, header)
    raw_bad: list[tuple[int | None, str, int, int]] = []

    def on_bad_row(row: pa_csv.InvalidRow) -> str:
        raw_bad.append((row.number, row.text, row.actual_columns, row.expected_columns))
        return "skip"

    table = _parse_csv(path, present, on_bad_row, use_threads=True)
    if raw_bad and any(number is None for number, *_ in raw_bad):
        raw_bad.clear()
        table = _parse_csv(path, present, on_bad_row, use_threads=False)
        if any(number is None for number, *_ in raw_bad):  # pragma: no cover - pyarrow contract
            raise InputError(f"{path}: unreadable file (malformed rows without row numbers)")
    # pyarrow numbers rows from 1 with the header as row 1 and blank lines skipped.
    bad_rows = [
        BadRow(row=int(number or 0) - 1, text=text, n_fields=actual, expected=expected)
        for number, text, actual, expected in raw_bad
    ]
    n_total = table.num_rows + len(bad_rows)
    if bad_rows:
        keep = np.ones(n_total + 1, dtype=bool)
        keep[0] = False
        keep[[b.row for b in bad_rows]] = False
        row_numbers = np.flatnonzero(keep).astype(np.int64)
    else:
        row_numbers = np.arange(1, n_total + 1, dtype=np.int64)
    if len(row_numbers) != table.num_rows:  # pragma: no cover - pyarrow contract
        raise InputError(f"{path}: unreadable file (row numbering is inconsistent)")
    columns = {name: table.column(name) for name in present}
    return RawTable(spec, path, columns, row_numbers, bad_rows, header)


def _parse_csv(
    path: Path,
    present: list[str],
    on_bad_row: Callable[[pa_csv.InvalidRow], str],
    *,
    use_threads: bool,
) -> pa.Table:
    read_options = pa_csv.ReadOptions(use_threads=use_threads)
    parse_options = pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_bad_row)
    convert_options = pa_csv.ConvertOptions(
        include_columns=present,
        column_types={name: pa.large_string() for name in present},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        return pa_csv.read_csv(
            path,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            where = _first_bad_utf8(path)
            raise InputError(f"{path}: unknown encoding ({where}); expected UTF-8") from None
        raise InputError(f"{path}: unreadable or truncated file ({_one_line(exc)})") from None
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: unreadable or truncated file ({_one_line(exc)})") from None


def _first_bad_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 is (only called on the error path)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with _open_binary(path) as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk.count(b"\n", 0, exc.start)
                return f"byte 0x{chunk[exc.start]:02x} on line {line} is not UTF-8"
            line += chunk.count(b"\n")
    return "invalid UTF-8 data"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- Parquet -------------------------------------------------------------------------------


def _read_parquet(spec: TableSpec, path: Path) -> RawTable:
    try:
        parquet = pq.ParquetFile(path)
        header = list(parquet.schema_arrow.names)
        present = _check_header(spec, path, header)
        table = parquet.read(columns=present)
    except InputError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise InputError(f"{path}: unreadable or truncated file ({_one_line(exc)})") from None
    columns: dict[str, ArrowColumn] = {}
    for name in present:
        column: ArrowColumn = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.combine_chunks().dictionary_decode()
        if pa.types.is_string(column.type):
            column = column.cast(pa.large_string())
        columns[name] = column
    row_numbers = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return RawTable(spec, path, columns, row_numbers, [], header)
