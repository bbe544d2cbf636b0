"""Read the tables of a dataset into Arrow arrays, with file-level checks.

Reading has two phases. :func:`inspect_table` makes every check that needs no more than a
file's kind, its header and its first 64 KiB (or a Parquet file's footer): a table file that
is not a regular file, a name that differs only in case, a missing or repeated column, a
header that is not CSV, CR-only line endings, a file that is not UTF-8, a Parquet column of a
type its contract column cannot hold. :func:`load_table` then reads the rows. A validator
inspects every table before it loads any, so a bad header in ``events`` is reported at once,
not after ``accounts`` has been read and checked.

CSV files are read by ``pyarrow.csv`` with every column as a string, so that no value is
converted before :mod:`linker.io.validate` checks it; Parquet files keep their native types
(timestamps, integers). A problem that makes the whole file unusable raises
:class:`~linker.errors.InputError`. Rows with the wrong number of fields, and records cut
short by an unbalanced quote, are not an error here: they are returned as :class:`BadRow` for
the validator to reject.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import logging
import mmap
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from linker.errors import InputError
from linker.io.contract import TABLE_ORDER, TABLES, Column, TableSpec
from linker.io.files import open_regular, regular_file_problem

__all__ = [
    "SUFFIXES",
    "TEXT_KINDS",
    "ArrowColumn",
    "BadRow",
    "RawTable",
    "TableFile",
    "dictionary_encoded",
    "find_table_files",
    "inspect_table",
    "load_table",
    "read_table",
]

logger = logging.getLogger(__name__)

SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet")
"""The file name endings a table may have, in the order they are looked for."""

ArrowColumn: TypeAlias = pa.Array | pa.ChunkedArray
"""A column as read: chunked when the reader produced chunks (they are not copied into one)."""

TEXT_KINDS: tuple[str, ...] = ("id", "string", "ip")
"""Contract column kinds held as text after validation: dictionary-encoded in a table whose
spec asks for it (:attr:`~linker.io.contract.TableSpec.dictionary_strings`)."""

_CODE = pa.int32()
_TEXT = pa.large_string()


def dictionary_encoded(column: ArrowColumn) -> pa.DictionaryArray:
    """A text column as one dictionary array: int32 codes over distinct ``large_string``
    values, nulls as null codes.

    Parameters
    ----------
    column : pyarrow.Array or pyarrow.ChunkedArray
        Strings, or dictionary-encoded strings (say, per Parquet row group, each chunk with
        its own dictionary).

    Returns
    -------
    pyarrow.DictionaryArray
        The same values; each distinct value once in the dictionary (no nulls there).

    Notes
    -----
    O(n) for n rows: one hash pass over plain strings, or a merge of the chunks' dictionaries
    (O(d) in their values) when the column comes encoded.

    Examples
    --------
    >>> dictionary_encoded(pa.array(["a", None, "b", "a"])).indices.to_pylist()
    [0, None, 1, 0]
    """
    if isinstance(column, pa.ChunkedArray):
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)  # one memo over the chunks
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    elif not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    dictionary, indices = column.dictionary, column.indices
    if dictionary.null_count or len(pc.unique(dictionary)) != len(dictionary):
        # A writer's dictionary with nulls or repeats: encoded again from its values.
        return dictionary_encoded(column.cast(dictionary.type))
    if dictionary.type != _TEXT:
        dictionary = dictionary.cast(_TEXT)
    if indices.type != _CODE:
        indices = indices.cast(_CODE)
    return pa.DictionaryArray.from_arrays(indices, dictionary)


HEADER_LIMIT = 1 << 20
"""A CSV header line longer than this (1 MiB) is not a header."""

_SNIFF_BYTES = 1 << 16  # data bytes checked for UTF-8 before any row is parsed
_SCAN_CHUNK = 16 << 20  # bytes per step of the vectorised quote check
_QUOTE, _COMMA, _LF, _CR = 0x22, 0x2C, 0x0A, 0x0D
# A record cut out for an unbalanced quote is replaced by this line, which pyarrow reports as
# an invalid row (one field, where every contract table has at least two) at its place in
# the row order.
_MARKER = "linker:unbalanced-quote:5d1c0e9a"


@dataclass(frozen=True)
class BadRow:
    """A CSV record that could not be split into the header's columns.

    Attributes
    ----------
    row : int
        1-based data-row number (the header is not a data row; blank lines are not rows).
    text : str
        The record as it appears in the file (its lines, without the last line break).
    n_fields : int
        How many fields it has (0 for an unbalanced quote: it cannot be split).
    expected : int
        How many fields the header has.
    rule : str
        ``field_count`` or ``unbalanced_quote``.
    reason : str
        The reason as printed (e.g. ``9 fields, expected 10``).
    """

    row: int
    text: str
    n_fields: int
    expected: int
    rule: str = "field_count"
    reason: str = ""

    @property
    def message(self) -> str:
        """The reason as printed."""
        return self.reason or f"{self.n_fields} fields, expected {self.expected}"


@dataclass(frozen=True)
class TableFile:
    """A table's file that passed the file-level checks (see :func:`inspect_table`).

    Attributes
    ----------
    spec : TableSpec
        The table's contract.
    path : Path
        The file.
    header : list of str
        Every column name in the file, contract or not.
    present : list of str
        The contract columns in the file, in contract order.
    fmt : {"csv", "parquet"}
        The file's format (``.csv.gz`` is ``csv``).
    """

    spec: TableSpec
    path: Path
    header: list[str]
    present: list[str]
    fmt: Literal["csv", "parquet"]


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
        (strings as ``large_string``, dictionaries decoded), except the text columns of a
        table with ``dictionary_strings``, read as :func:`dictionary_encoded` arrays.
    row_numbers : numpy.ndarray
        The 1-based data-row number of each parsed row (int64, ascending).
    bad_rows : list of BadRow
        CSV records that could not be split into the header's columns.
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
        If ``data_dir`` is not a directory; if a name differs from a table file's name only
        in case (``Events.CSV``); if a table's file is not a regular file (a directory, FIFO,
        device, socket, a symbolic link to nothing, a link loop; a link to a regular file is
        fine); if a table has two files; or if ``accounts`` is missing.
    """
    directory = Path(data_dir)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory (expected a dataset of table files)")
    try:
        names = set(os.listdir(directory))
    except OSError as exc:
        raise InputError(f"{directory}: cannot list the directory ({exc.strerror})") from None
    exact = {f"{table}{suffix}" for table in TABLE_ORDER for suffix in SUFFIXES}
    by_lower = {name.lower(): name for name in exact}
    for name in sorted(names):
        meant = by_lower.get(name.lower())
        if meant is not None and name != meant:
            raise InputError(
                f"{directory / name}: file name differs from {meant} only in case; table "
                f"files are named exactly (rename it to {meant})"
            )
    found: dict[str, Path] = {}
    for table in TABLE_ORDER:
        present = [directory / f"{table}{s}" for s in SUFFIXES if f"{table}{s}" in names]
        for path in present:
            problem = regular_file_problem(path)
            if problem is not None:
                raise InputError(f"{path}: {problem}; a table file must be a regular file")
        if len(present) > 1:
            listed = ", ".join(p.name for p in present)
            raise InputError(f"{directory}: table {table} has more than one file ({listed})")
        if present:
            found[table] = present[0]
        elif TABLES[table].required:
            raise InputError(
                f"{directory}: required table {table} is missing "
                f"(expected {table}.csv, {table}.csv.gz or {table}.parquet)"
            )
    return found


def inspect_table(spec: TableSpec, path: Path) -> TableFile:
    """Check one table file at file level, reading no more than its head (or footer).

    Parameters
    ----------
    spec : TableSpec
        The table's contract.
    path : Path
        A ``.csv``, ``.csv.gz`` or ``.parquet`` file.

    Returns
    -------
    TableFile
        The file, its header and the contract columns present.

    Raises
    ------
    InputError
        ``<file>: <reason>`` or ``<file>: column <c>: <reason>``: not a regular file, a
        missing required column, a repeated column, a header line over 1 MiB or not CSV,
        CR-only line endings, a file that is not UTF-8 (in its header or first 64 KiB), an
        unreadable or truncated file, a Parquet column of an unusable type, no data rows
        (when that shows in the head).

    Notes
    -----
    O(1): reads at most 1 MiB + 64 KiB of a CSV file (decompressed), or a Parquet footer.
    """
    if path.name.endswith(".parquet"):
        return _inspect_parquet(spec, path)
    return _inspect_csv(spec, path)


def load_table(source: TableFile) -> RawTable:
    """Read the rows of a table file that :func:`inspect_table` accepted.

    Parameters
    ----------
    source : TableFile
        What :func:`inspect_table` returned.

    Returns
    -------
    RawTable
        The contract columns present, their row numbers and any malformed CSV records.

    Raises
    ------
    InputError
        For an unreadable, truncated or non-UTF-8 file, or a file without data rows.

    Notes
    -----
    A clean CSV file is parsed once, on all cores. If it has malformed rows, it is parsed
    again on one thread, the only way ``pyarrow`` reports their row numbers. If a value
    holds a line break, the file's quotes are checked (vectorised; quote by quote only where
    that check fails) and records cut short by an unbalanced quote are set aside.
    """
    raw = _read_parquet(source) if source.fmt == "parquet" else _read_csv(source)
    if raw.n_read == 0:
        raise InputError(f"{source.path}: empty table (no data rows)")
    logger.info("read %s: %d rows (%d malformed)", source.path, raw.n_read, len(raw.bad_rows))
    return raw


def read_table(spec: TableSpec, path: Path) -> RawTable:
    """Check one table file at file level and read its rows.

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
        As :func:`inspect_table` and :func:`load_table`.
    """
    return load_table(inspect_table(spec, path))


def _check_header(spec: TableSpec, path: Path, header: list[str]) -> list[str]:
    """The contract columns present in ``header``, or raise for a missing or repeated one."""
    for column in spec.columns:
        if column.required and column.name not in header:
            raise InputError(f"{path}: column {column.name}: required column is missing")
        if header.count(column.name) > 1:
            raise InputError(f"{path}: column {column.name}: column appears more than once")
    return [c for c in spec.column_names if c in header]


# --- CSV: file level -----------------------------------------------------------------------

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _read_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of the file (decompressed for ``.gz``)."""
    try:
        with open_regular(path, "table file") as handle:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(fileobj=handle) as unzipped:
                    return _read_up_to(unzipped, size)
            return _read_up_to(handle, size)
    except InputError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: unreadable or truncated file ({_one_line(exc)})") from None


def _read_up_to(handle: BinaryIO | gzip.GzipFile, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        part = handle.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _inspect_csv(spec: TableSpec, path: Path) -> TableFile:
    head = _read_head(path, HEADER_LIMIT + 1 + _SNIFF_BYTES)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            raise InputError(
                f"{path}: unknown encoding ({encoding} byte-order mark); expected UTF-8"
            )
    newline = head.find(b"\n")
    first = head if newline == -1 else head[: newline + 1]
    if (newline == -1 and len(head) > HEADER_LIMIT) or newline > HEADER_LIMIT:
        raise InputError(f"{path}: header line is longer than 1 MiB")
    if b"\r" in first.rstrip(b"\r\n"):
        raise InputError(f"{path}: line endings are CR only (classic Mac OS); expected LF or CRLF")
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
    if text.count('"') % 2:
        raise InputError(f"{path}: header line is not CSV (unbalanced quote)")
    try:
        header = next(csv.reader([text.rstrip("\r\n")]), [])
    except csv.Error as exc:
        raise InputError(f"{path}: header line is not CSV ({exc})") from None
    present = _check_header(spec, path, header)
    rest = head[len(first) :]
    complete = len(head) < HEADER_LIMIT + 1 + _SNIFF_BYTES
    try:
        codecs.getincrementaldecoder("utf-8")().decode(rest, final=complete)
    except UnicodeDecodeError as exc:
        line = 2 + rest.count(b"\n", 0, exc.start)
        raise InputError(
            f"{path}: unknown encoding (byte 0x{rest[exc.start]:02x} on line {line} is not "
            "UTF-8); expected UTF-8"
        ) from None
    if complete and not rest.strip():
        raise InputError(f"{path}: empty table (no data rows)")
    return TableFile(spec, path, header, present, "csv")


# --- CSV: rows -----------------------------------------------------------------------------


def _read_csv(source: TableFile) -> RawTable:
    path, header, present = source.path, source.header, source.present
    table, raw_bad = _parse_all(path, header)
    spans: list[_Span] = []
    spans_lines = any("\n" in text or "\r" in text for _, text, *_ in raw_bad)
    if spans_lines or _values_hold_line_breaks(table):
        data = _whole_file(path)
        try:
            start = _data_start(data)
            # A record that spans lines and does not fit the header, or irregular quotes:
            # look quote by quote. Otherwise every line break is inside a good quoted field.
            if spans_lines or not _quotes_are_regular(data, start):
                spans = _unbalanced_quotes(data, start, len(header))
            if spans:
                cleaned = _without_spans(data, spans)
                table, raw_bad = _parse_all(path, header, pa.BufferReader(cleaned))
                _describe_spans(path, data, spans)
        finally:
            if isinstance(data, mmap.mmap):
                data.close()
    markers = [i for i, (_, text, *_) in enumerate(raw_bad) if text == _MARKER]
    if len(markers) != len(spans):  # pragma: no cover - the marker line is never data
        raise InputError(f"{path}: unreadable file (unbalanced quotes could not be placed)")
    bad_rows = []
    next_span = iter(spans)
    for number, text, actual, expected in raw_bad:
        row = int(number or 0) - 1  # pyarrow numbers the header as row 1
        if text == _MARKER:
            span = next(next_span)
            bad_rows.append(
                BadRow(row, span.text, 0, expected, rule="unbalanced_quote", reason=span.reason)
            )
        else:
            bad_rows.append(BadRow(row=row, text=text, n_fields=actual, expected=expected))
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
    return RawTable(source.spec, path, columns, row_numbers, bad_rows, header)


def _parse_all(
    path: Path, header: list[str], data: pa.NativeFile | None = None
) -> tuple[pa.Table, list[tuple[int | None, str, int, int]]]:
    """Every column as strings, and the invalid rows (numbered: one thread if needed)."""
    raw_bad: list[tuple[int | None, str, int, int]] = []

    def on_bad_row(row: pa_csv.InvalidRow) -> str:
        raw_bad.append((row.number, row.text, row.actual_columns, row.expected_columns))
        return "skip"

    # In-memory data is small (the error path): one thread numbers its invalid rows at once.
    threads = data is None
    table = _parse_csv(path, header, on_bad_row, use_threads=threads, data=data)
    if raw_bad and any(number is None for number, *_ in raw_bad):
        raw_bad.clear()
        if data is not None:  # pragma: no cover - one thread always numbers its rows
            data.seek(0)
        table = _parse_csv(path, header, on_bad_row, use_threads=False, data=data)
        if any(number is None for number, *_ in raw_bad):  # pragma: no cover - pyarrow contract
            raise InputError(f"{path}: unreadable file (malformed rows without row numbers)")
    return table, raw_bad


def _parse_csv(
    path: Path,
    header: list[str],
    on_bad_row: Callable[[pa_csv.InvalidRow], str],
    *,
    use_threads: bool,
    data: pa.NativeFile | None = None,
) -> pa.Table:
    # Every column, the file's own ones too: a record that swallowed the next line shows as
    # a line break in one of its values, whichever column that is.
    read_options = pa_csv.ReadOptions(use_threads=use_threads)
    parse_options = pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_bad_row)
    convert_options = pa_csv.ConvertOptions(
        column_types={name: pa.large_string() for name in header},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        return pa_csv.read_csv(
            path if data is None else data,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            where = _first_bad_utf8(path)
            raise InputError(f"{path}: unknown encoding ({where}); expected UTF-8") from None
        if "straddling" in str(exc):
            raise InputError(
                f"{path}: a row is longer than pyarrow's block of "
                f"{read_options.block_size >> 20} MiB (a quoted field that never closes?)"
            ) from None
        raise InputError(f"{path}: unreadable or truncated file ({_one_line(exc)})") from None
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: unreadable or truncated file ({_one_line(exc)})") from None


def _values_hold_line_breaks(table: pa.Table) -> bool:
    """Whether any value of any column holds CR or LF: only then can a record span lines.

    Searches each chunk's UTF-8 data buffer as one byte string (a copy and ``memchr``), not
    value by value; about 0.03 s for the 2M-row events table of the benchmark.
    """
    for column in table.columns:
        for chunk in column.chunks:
            if len(chunk) == 0:
                continue
            _, offsets, values = chunk.buffers()
            bounds = np.frombuffer(offsets, dtype=np.int64)
            begin, end = int(bounds[chunk.offset]), int(bounds[chunk.offset + len(chunk)])
            if begin == end:
                continue
            text = memoryview(values)[begin:end].tobytes()
            if text.find(b"\n") != -1 or text.find(b"\r") != -1:
                return True
    return False


def _whole_file(path: Path) -> bytes | mmap.mmap:
    """The file's bytes: mapped when plain, decompressed into memory when gzip."""
    try:
        with open_regular(path, "table file") as handle:
            if path.name.endswith(".gz"):
                return gzip.GzipFile(fileobj=handle).read()
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except InputError:
        raise
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise InputError(f"{path}: unreadable or truncated file ({_one_line(exc)})") from None


def _data_start(data: bytes | mmap.mmap) -> int:
    newline = data.find(b"\n")
    return len(data) if newline == -1 else newline + 1


_OPENS_AFTER = np.zeros(256, dtype=bool)  # bytes a quote that opens a field may follow
_OPENS_AFTER[[_COMMA, _LF, _CR, _QUOTE]] = True
_CLOSES_BEFORE = np.zeros(256, dtype=bool)  # bytes a quote that closes a field may precede
_CLOSES_BEFORE[[_COMMA, _LF, _CR, _QUOTE]] = True


def _quotes_are_regular(data: bytes | mmap.mmap, start: int) -> bool:
    """Whether every quote alternates as opener and closer where CSV puts them.

    True when each odd-numbered quote (counting from the first data byte) follows a comma,
    a line break or a quote (the second of a doubled ``""``), and each even-numbered one
    precedes a comma, a line break, a quote or the end of the file, and the count is even.
    Then the quote parity is the parser's state, and every record that spans lines is a
    well-formed quoted field. False means: look quote by quote (:func:`_unbalanced_quotes`).
    Vectorised over 16 MiB steps.
    """
    array = np.frombuffer(data, dtype=np.uint8)
    n = len(array)
    inside = False
    for low in range(start, n, _SCAN_CHUNK):
        high = min(low + _SCAN_CHUNK, n)
        quotes = np.flatnonzero(array[low:high] == _QUOTE) + low
        if quotes.size == 0:
            continue
        before = array[quotes - 1]
        after = array[np.minimum(quotes + 1, n - 1)]
        after[quotes + 1 >= n] = _LF  # the end of the file closes like a line break
        first_opens = 0 if not inside else 1
        if not _OPENS_AFTER[before[first_opens::2]].all():
            return False
        if not _CLOSES_BEFORE[after[1 - first_opens :: 2]].all():
            return False
        inside = bool((quotes.size + inside) % 2)
    return not inside


@dataclass
class _Span:
    """A record cut short by an unbalanced quote: bytes ``[start, end)`` of the file."""

    start: int
    end: int
    opener: int
    closer: int | None
    n_fields: int | None = None  # of a well-quoted record that did not fit the header
    text: str = ""
    reason: str = ""


def _unbalanced_quotes(data: bytes | mmap.mmap, start: int, n_fields: int) -> list[_Span]:
    """The records cut short by an unbalanced quote, quote by quote.

    A field that starts with ``"`` is quoted; ``""`` inside it is a quote. It is unbalanced
    when it holds a line break and then either never closes, or closes with other text
    after the quote (``"ab\\ncd"x,``), or closes but leaves a record of other than
    ``n_fields`` fields (two stray quotes that would swallow the lines between them). Such
    a record runs from its start to the end of the line where the quote opened; reading
    goes on with the next line, outside any quote.
    A quote inside an unquoted field (``5'10"``) is an ordinary character, and so is text
    after a closing quote on the quote's own line (``"ab"c`` reads ``abc``), as ``pyarrow``
    reads them. O(number of quotes) steps, each a ``memchr``.
    """
    n = len(data)
    spans: list[_Span] = []
    position = start
    inside = False
    opener = -1
    outside_since = start  # where the current stretch outside quotes began
    record_start = start
    spanning = -1  # the first quote of the current record whose field spans lines

    def cut(closer: int | None, at: int, found: int | None = None) -> int:
        line_end = data.find(b"\n", at)
        end = n if line_end == -1 else line_end + 1
        spans.append(_Span(record_start, end, at, closer, found))
        return end

    def misfit(record_end: int) -> int | None:
        """The field count of the spanning record ending at ``record_end``, if it is wrong."""
        text = bytes(data[record_start:record_end]).decode("utf-8", "replace")
        try:
            found = len(next(csv.reader(io.StringIO(text, newline="")), []))
        except csv.Error:  # a bare CR outside quotes, say: it does not fit either
            found = 0
        return None if found == n_fields else found

    while True:
        quote = data.find(b'"', position)
        if quote == -1 and not inside:
            if spanning != -1:
                newline = data.find(b"\n", outside_since)
                found = misfit(n if newline == -1 else newline)
                if found is not None:
                    position = outside_since = record_start = cut(None, spanning, found)
                    spanning = -1
                    continue
            break
        if quote == -1:
            position = outside_since = record_start = cut(None, opener)
            inside, spanning = False, -1
            continue
        if not inside:
            newline = data.find(b"\n", outside_since, quote)
            if newline != -1 and spanning != -1:  # a record that spanned lines has ended
                found = misfit(newline)
                spanning_opener, spanning = spanning, -1
                if found is not None:
                    position = outside_since = record_start = cut(None, spanning_opener, found)
                    continue
            if data[quote - 1] in (_COMMA, _LF, _CR):
                newline = data.rfind(b"\n", outside_since, quote)
                if newline != -1:
                    record_start = newline + 1
                inside, opener = True, quote
            position = quote + 1
            continue
        following = data[quote + 1] if quote + 1 < n else _LF
        if following == _QUOTE:
            position = quote + 2
            continue
        one_line = data.find(b"\n", opener, quote) == -1 and data.find(b"\r", opener, quote) == -1
        if following in (_COMMA, _LF, _CR) or one_line:
            inside = False
            position = outside_since = quote + 1
            if not one_line and spanning == -1:
                spanning = opener
        else:
            position = outside_since = record_start = cut(quote, opener)
            inside, spanning = False, -1
    return spans


def _without_spans(data: bytes | mmap.mmap, spans: list[_Span]) -> pa.Buffer:
    pieces: list[bytes] = []
    cursor = 0
    marker = _MARKER.encode() + b"\n"
    for span in spans:
        pieces.append(data[cursor : span.start])
        pieces.append(marker)
        cursor = span.end
    pieces.append(data[cursor:])
    return pa.py_buffer(b"".join(pieces))


def _describe_spans(path: Path, data: bytes | mmap.mmap, spans: list[_Span]) -> None:
    """Fill each span's text and reason (line numbers are 1-based; the header is line 1)."""
    array = np.frombuffer(data, dtype=np.uint8)
    line, counted = 1, 0

    def line_of(position: int) -> int:
        nonlocal line, counted
        line += int(np.count_nonzero(array[counted:position] == _LF))
        counted = position
        return line

    for span in spans:
        raw = bytes(data[span.start : span.end])
        try:
            span.text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            bad_line = line_of(span.start) + raw.count(b"\n", 0, exc.start)
            raise InputError(
                f"{path}: unknown encoding (byte 0x{raw[exc.start]:02x} on line {bad_line} "
                "is not UTF-8); expected UTF-8"
            ) from None
        first = line_of(span.start)
        opened = line_of(span.opener)
        lines = f"line {opened}" if first == opened else f"lines {first}-{opened}"
        if span.n_fields is not None:
            how = (
                f"closes on a later line, but the record it makes has {span.n_fields} "
                "fields, not the header's"
            )
        elif span.closer is None:
            how = "never closes"
        else:
            closed = line_of(span.closer)
            after = bytes(data[span.closer + 1 : span.closer + 2]).decode("utf-8", "replace")
            how = f"closes on line {closed} followed by {after!r}, not a comma or line end"
        span.reason = (
            f"unbalanced quote in {lines}: the quoted field opened on line {opened} {how}; "
            "the record ends with that line"
        )


def _first_bad_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 is (only called on the error path)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open_regular(path, "table file") as raw:
        handle = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
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


def _accepts(column: Column, kind: pa.DataType) -> bool:
    """Whether a Parquet column of Arrow type ``kind`` can hold the contract ``column``."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_null(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if column.kind == "timestamp":
        return pa.types.is_timestamp(kind) or pa.types.is_date(kind)
    if column.kind in ("count", "tokens"):
        return pa.types.is_integer(kind) or pa.types.is_floating(kind)
    return pa.types.is_integer(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


_EXPECTED = {
    "timestamp": "a TIMESTAMP or DATE column (its unit declared in the file) or ISO 8601 "
    "strings; integer epochs are not read, since their unit is not declared",
    "count": "integers, whole floats or strings",
    "tokens": "integers, whole floats or strings",
}


def _inspect_parquet(spec: TableSpec, path: Path) -> TableFile:
    with open_regular(path, "table file"):
        pass  # the kind check, before pyarrow opens it by name
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        header = list(schema.names)
        n_rows = parquet.metadata.num_rows
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise InputError(f"{path}: unreadable or truncated file ({_one_line(exc)})") from None
    present = _check_header(spec, path, header)
    for name in present:
        kind = schema.field(name).type
        column = spec.column(name)
        if not _accepts(column, kind):
            expected = _EXPECTED.get(column.kind, "strings or integers")
            raise InputError(
                f"{path}: column {name}: Parquet type {_parquet_type(parquet, name)} (read as "
                f"{kind}) cannot hold a {column.kind} column; expected {expected}"
            )
    if n_rows == 0:
        raise InputError(f"{path}: empty table (no data rows)")
    return TableFile(spec, path, header, present, "parquet")


def _parquet_type(parquet: pq.ParquetFile, name: str) -> str:
    for i in range(len(parquet.schema)):
        leaf = parquet.schema.column(i)
        if leaf.path == name:
            logical = str(leaf.logical_type)
            return leaf.physical_type + ("" if logical == "None" else f" ({logical})")
    return "unknown"  # pragma: no cover - a top-level column is a leaf


def _read_parquet(source: TableFile) -> RawTable:
    path, present, spec = source.path, source.present, source.spec
    encode = {c.name for c in spec.columns if spec.dictionary_strings and c.kind in TEXT_KINDS}
    columns: dict[str, ArrowColumn] = {}
    n_rows = 0
    try:
        parquet = pq.ParquetFile(path, read_dictionary=sorted(encode & set(present)))
        n_rows = parquet.metadata.num_rows
        # One column at a time: a converted column never sits beside the whole table.
        for name in present:
            column: ArrowColumn = parquet.read(columns=[name]).column(0)
            text = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
            if name in encode and (pa.types.is_string(text) or pa.types.is_large_string(text)):
                column = dictionary_encoded(column)
            elif pa.types.is_dictionary(column.type):
                column = column.combine_chunks().dictionary_decode()
            if pa.types.is_string(column.type):
                column = column.cast(_TEXT)
            columns[name] = column
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise InputError(f"{path}: unreadable or truncated file ({_one_line(exc)})") from None
    row_numbers = np.arange(1, n_rows + 1, dtype=np.int64)
    return RawTable(source.spec, path, columns, row_numbers, [], source.header)
