"""Validate a dataset against the input contract, losing nothing.

:func:`validate_dataset` reads every table of a dataset directory, checks each row against
:mod:`linker.io.contract`, and returns the accepted rows as typed pandas DataFrames. Each
rejected row is counted and, by default, written with its reasons to a quarantine file; for
every table, rows read = rows accepted + rows rejected.

Problems at file level (a missing column, an unreadable file, ...) raise
:class:`~linker.errors.InputError` whatever ``on_error`` says, since no row can be counted.
Problems at row level become :class:`Problem` lines, one per (table, rule, column)::

    events.csv: rows 3, 17, 250 (+12 more): column ts: bad timestamp 'yesterday' (expected ISO 8601)
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linker.engine.store import RunDirectory, save_validation
from linker.errors import InputError
from linker.io.contract import TABLES, Column, TableSpec
from linker.io.readers import (
    TEXT_KINDS,
    BadRow,
    RawTable,
    dictionary_encoded,
    find_table_files,
    inspect_table,
    load_table,
)
from linker.normalise import canonical_ipv4_mask, normalise_ip
from linker.observations import build_observations
from linker.progress import progress
from linker.settings import IngestSettings

__all__ = [
    "Problem",
    "RowCheck",
    "RowFinding",
    "TableCounts",
    "TableValidation",
    "ValidationFailed",
    "ValidationResult",
    "validate_dataset",
    "validate_table",
]

logger = logging.getLogger(__name__)

_STRING = pd.StringDtype("pyarrow")
_TEXT = pa.large_string()  # what pandas' pyarrow-backed strings hold: converts without a copy
_TS_TYPE = pa.timestamp("us", tz="UTC")
_MAX_VALUE_CHARS = 60
_INT_PATTERN = r"^-?[0-9]{1,18}$"
# An id may not hold a C0 control character, DEL or a C1 control character (RE2 syntax).
_CONTROL_PATTERN = r"[\x00-\x1f\x7f\x{80}-\x{9f}]"
# The timestamp forms of docs/contract.md. Arrow's own cast accepts the extended forms with
# at most 6 fraction digits, one offset style per column; the rest takes the slow path.
_TS_YEAR = r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_TS_MONTH = r"(?:0[1-9]|1[0-2])"
_TS_DAY = r"(?:0[1-9]|[12][0-9]|3[01])"
_TS_HOUR = r"(?:[01][0-9]|2[0-3])"
_TS_MINUTE = r"[0-5][0-9]"
_TS_FRACTION = r"(?:\.[0-9]{1,9})?"
_TS_EXTENDED = (
    rf"{_TS_YEAR}-{_TS_MONTH}-{_TS_DAY}(?:[T ]{_TS_HOUR}(?::{_TS_MINUTE}(?::{_TS_MINUTE}"
    rf"{_TS_FRACTION})?)?(?:Z|[+-]{_TS_HOUR}(?::?{_TS_MINUTE})?)?)?"
)
_TS_BASIC = (
    rf"{_TS_YEAR}{_TS_MONTH}{_TS_DAY}T{_TS_HOUR}{_TS_MINUTE}{_TS_MINUTE}{_TS_FRACTION}"
    rf"(?:Z|[+-]{_TS_HOUR}(?:{_TS_MINUTE})?)?"
)
_TS_PATTERN = rf"^(?:{_TS_EXTENDED}|{_TS_BASIC})$"
_TS_HAS_OFFSET = r"[T ][0-9:.]+(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"


@dataclass(frozen=True)
class TableCounts:
    """Row counts of one table: ``read == accepted + rejected`` always."""

    read: int
    accepted: int
    rejected: int


@dataclass(frozen=True)
class Problem:
    """One row-level rule broken by one or more rows of one column of one table.

    Attributes
    ----------
    rule : str
        A key of :data:`linker.io.contract.ROW_RULES`.
    file : str
        The file's name (e.g. ``events.csv``).
    rows : tuple of int
        The first offending 1-based data-row numbers (at most ``max_reported_rows``).
    column : str or None
        The column, or ``None`` for a rule about the whole row (``field_count``).
    reason : str
        What is wrong, quoting the first offending value.
    count : int
        How many rows broke the rule (``len(rows)`` or more).
    table : str
        The table's name.
    """

    rule: str
    file: str
    rows: tuple[int, ...]
    column: str | None
    reason: str
    count: int
    table: str

    def __str__(self) -> str:
        shown = ", ".join(str(r) for r in self.rows)
        more = f" (+{self.count - len(self.rows)} more)" if self.count > len(self.rows) else ""
        where = f"row {shown}" if self.count == 1 else f"rows {shown}{more}"
        column = f"column {self.column}: " if self.column else ""
        return f"{self.file}: {where}: {column}{self.reason}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable dict, including the formatted ``line``."""
        return {
            "table": self.table,
            "file": self.file,
            "rule": self.rule,
            "column": self.column,
            "rows": list(self.rows),
            "count": self.count,
            "reason": self.reason,
            "line": str(self),
        }


@dataclass
class ValidationResult:
    """What :func:`validate_dataset` found and kept.

    Attributes
    ----------
    tables : dict of str to pandas.DataFrame
        Accepted rows of each table present, contract columns only, typed: strings as
        pandas ``string`` (missing = ``<NA>``), except the text columns of a table with
        ``dictionary_strings`` (events), pandas ``category`` of their used values;
        timestamps ``datetime64[us, UTC]``, ``requests`` int64, token counts ``Int64``.
    summary : dict of str to TableCounts
        Rows read, accepted and rejected per table.
    problems : list of Problem
        One per (table, rule, column) broken.
    quarantine_paths : dict of str to Path
        The quarantine file of each table with rejected rows (when an output was written).
    files : dict of str to Path
        The input file of each table.
    sha256 : dict of str to str
        The SHA-256 of each input file (computed when the outputs are written).
    observations : pandas.DataFrame or None
        The observations table (see :func:`linker.normalise.build_observations`), when built.
    out_dir : Path or None
        Where the outputs were written.
    """

    tables: dict[str, pd.DataFrame]
    summary: dict[str, TableCounts]
    problems: list[Problem]
    quarantine_paths: dict[str, Path] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    observations: pd.DataFrame | None = None
    out_dir: Path | None = None
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def n_rejected(self) -> int:
        """Rejected rows over all tables."""
        return sum(c.rejected for c in self.summary.values())

    def report(self) -> dict[str, object]:
        """The content of ``validation.json``: per-table counts and the problem lines."""
        return {
            "tables": {
                name: {
                    "file": self.files[name].name,
                    "sha256": self.sha256.get(name),
                    "read": counts.read,
                    "accepted": counts.accepted,
                    "rejected": counts.rejected,
                    "quarantine": (
                        str(self.quarantine_paths[name].relative_to(self.out_dir))
                        if name in self.quarantine_paths and self.out_dir is not None
                        else None
                    ),
                }
                for name, counts in self.summary.items()
            },
            "rejected": self.n_rejected,
            "problems": [p.to_dict() for p in self.problems],
        }


class ValidationFailed(InputError):
    """Rows were rejected and ``on_error='fail'`` was asked for (exit code 2).

    Attributes
    ----------
    problems : list of Problem
        Every problem found, in every table.
    summary : dict of str to TableCounts
        Counts per table.
    """

    def __init__(self, problems: list[Problem], summary: dict[str, TableCounts]) -> None:
        self.problems = problems
        self.summary = summary
        rejected = ", ".join(
            f"{counts.rejected} in {name}" for name, counts in summary.items() if counts.rejected
        )
        first = f"; first: {problems[0]}" if problems else ""
        super().__init__(f"rows rejected ({rejected}) with --on-error fail{first}")


def validate_dataset(
    data_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    on_error: Literal["quarantine", "fail"] | None = None,
    max_reported_rows: int | None = None,
    observations: bool = True,
    settings: IngestSettings | None = None,
    now: datetime | None = None,
    known_accounts: pa.Array | None = None,
) -> ValidationResult:
    """Validate every table of a dataset and keep the rows that pass.

    Parameters
    ----------
    data_dir : str or Path
        A directory of tables ``NAME.csv``, ``NAME.csv.gz`` or ``NAME.parquet``
        (``accounts`` required; ``payments``, ``events``, ``labels`` optional).
    out_dir : str or Path, optional
        Where to write ``tables/<table>.parquet``, ``quarantine/<table>.csv``,
        ``observations.parquet`` and ``validation.json`` (each atomically). Nothing is
        written when ``None``.
    on_error : {"quarantine", "fail"}, optional
        ``quarantine`` rejects bad rows and goes on; ``fail`` raises
        :class:`ValidationFailed` (exit code 2) if any row is rejected, and writes nothing.
        Default: ``settings.on_error``.
    max_reported_rows : int, optional
        How many row numbers each problem line lists before it gives a count.
        Default: ``settings.max_reported_rows``.
    observations : bool
        Also build the observations table (and write ``observations.parquet``).
    settings : IngestSettings, optional
        The ``[ingest]`` settings; among them the plausible timestamps
        (``earliest``, ``latest``, ``future_skew_hours``). Default: ``IngestSettings()``.
    now : datetime, optional
        The run's clock, for the default ``latest`` bound (default: the current time).
    known_accounts : pyarrow.Array of str, optional
        Account ids accepted earlier (``linker update``'s previous run): a row of
        ``accounts`` with one of them is a ``duplicate_id``, and the other tables may refer
        to them.

    Returns
    -------
    ValidationResult
        Accepted tables, counts, problems and the paths written.

    Raises
    ------
    InputError
        For a file-level problem: a missing ``accounts`` table, two files for one table, a
        table file that is not a regular file or whose name differs only in case, a missing
        required column, a bad header, an unreadable, truncated or non-UTF-8 file, a Parquet
        column of an unusable type, a table with no data rows, or a table that lost every
        row to the checks. The message is one line naming the file (and column). Every
        table's file-level checks run before the rows of any table are read.
    ValidationFailed
        With ``on_error='fail'``, if any row was rejected.

    Notes
    -----
    Checks are vectorised in Arrow; Python runs only once per distinct IP address that is
    not canonical IPv4 text, per distinct date of a timestamp column that Arrow's own
    parser refuses, per quote of a CSV file whose quotes are irregular, and for each
    rejected row's reason. O(n) in rows, plus a sort of the unique key for duplicate
    detection.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "accounts.csv").write_text(
    ...     "account_id,created_at\\na1,2024-01-01T00:00:00Z\\na1,2024-01-02\\n")
    >>> result = validate_dataset(d)
    >>> result.summary["accounts"]
    TableCounts(read=2, accepted=1, rejected=1)
    >>> print(result.problems[0])
    accounts.csv: row 2: column account_id: duplicate account_id 'a1' (first at row 1)
    """
    settings = settings or IngestSettings()
    on_error = settings.on_error if on_error is None else on_error
    if max_reported_rows is None:
        max_reported_rows = settings.max_reported_rows
    if on_error not in ("quarantine", "fail"):
        raise ValueError(f"on_error must be 'quarantine' or 'fail', not {on_error!r}")
    window = _Window.of(settings, now)
    files = find_table_files(data_dir)
    # Every file-level check of every table before the rows of any (they take seconds).
    sources = {name: inspect_table(TABLES[name], path) for name, path in files.items()}
    tables: dict[str, pd.DataFrame] = {}
    summary: dict[str, TableCounts] = {}
    problems: list[Problem] = []
    quarantine: dict[str, pd.DataFrame] = {}
    accounts: _AccountIds | None = None
    for name, path in progress(files.items(), total=len(files), desc="validate", unit="table"):
        raw = load_table(sources[name])
        checked = _check_table(raw, accounts, max_reported_rows, window, known=known_accounts)
        if checked.counts.accepted == 0:
            first = f"; first: {checked.problems[0]}" if checked.problems else ""
            raise InputError(
                f"{path}: every row was rejected ({checked.counts.rejected:,} of "
                f"{checked.counts.read:,}){first}"
            )
        tables[name] = checked.accepted
        summary[name] = checked.counts
        problems.extend(checked.problems)
        if checked.counts.rejected:
            quarantine[name] = checked.quarantine
        if name == "accounts":
            accepted_ids = pc.cast(pa.array(checked.accepted["account_id"]), _TEXT)
            if known_accounts is not None:
                accepted_ids = pa.concat_arrays([accepted_ids, pc.cast(known_accounts, _TEXT)])
            accounts = _AccountIds(accepted_ids, checked.all_ids, path.name)
    for name, counts in summary.items():
        logger.info("%s: read %d, accepted %d, rejected %d", name, *_counts_tuple(counts))
    if on_error == "fail" and any(c.rejected for c in summary.values()):
        raise ValidationFailed(problems, summary)
    result = ValidationResult(
        tables=tables,
        summary=summary,
        problems=problems,
        files=dict(files),
        quarantine=quarantine,
    )
    if observations:
        result.observations = build_observations(tables)
    if out_dir is not None:
        save_validation(RunDirectory(out_dir), result)
    return result


@dataclass
class TableValidation:
    """What :func:`validate_table` kept and rejected of one file.

    Attributes
    ----------
    accepted : pandas.DataFrame
        The accepted rows, typed as :func:`validate_dataset` types its tables.
    rows : numpy.ndarray
        The 1-based data-row number of each accepted row.
    counts : TableCounts
    problems : list of Problem
    quarantine : pandas.DataFrame
        Each rejected row with its reasons (empty when none).
    """

    accepted: pd.DataFrame
    rows: np.ndarray
    counts: TableCounts
    problems: list[Problem]
    quarantine: pd.DataFrame


def validate_table(
    spec: TableSpec,
    path: str | Path,
    *,
    checks: Sequence[RowCheck] = (),
    settings: IngestSettings | None = None,
    now: datetime | None = None,
) -> TableValidation:
    """Validate one file that is not part of a dataset (an analysts' decisions file) against
    its own :class:`~linker.io.contract.TableSpec`, with the same file-level checks, column
    checks, problem lines and quarantine rows as the input tables, plus ``checks``.

    Parameters
    ----------
    spec : TableSpec
        The file's columns (``references_accounts`` is ignored: no accounts table here).
    path : str or Path
        A ``.csv``, ``.csv.gz`` or ``.parquet`` file.
    checks : sequence of RowCheck
        The table's own row rules, run after the column checks.
    settings : IngestSettings, optional
        The plausible timestamps and ``max_reported_rows``.
    now : datetime, optional
        The run's clock.

    Returns
    -------
    TableValidation

    Raises
    ------
    InputError
        A file-level problem (as :func:`validate_dataset`), or every row rejected.

    Notes
    -----
    O(n) in rows, as :func:`validate_dataset`.
    """
    settings = settings or IngestSettings()
    path = Path(path)
    raw = load_table(inspect_table(spec, path))
    window = _Window.of(settings, now)
    checked = _check_table(raw, None, settings.max_reported_rows, window, checks=checks)
    if checked.counts.accepted == 0:
        first = f"; first: {checked.problems[0]}" if checked.problems else ""
        raise InputError(
            f"{path}: every row was rejected ({checked.counts.rejected:,} of "
            f"{checked.counts.read:,}){first}"
        )
    rejected = (
        checked.quarantine["row"].to_numpy(np.int64)
        if len(checked.quarantine)
        else np.zeros(0, np.int64)
    )
    rows = raw.row_numbers[~np.isin(raw.row_numbers, rejected)]
    return TableValidation(
        checked.accepted, rows, checked.counts, checked.problems, checked.quarantine
    )


def _counts_tuple(counts: TableCounts) -> tuple[int, int, int]:
    return counts.read, counts.accepted, counts.rejected


# --- row checks ----------------------------------------------------------------------------


@dataclass
class _Finding:
    """Rows of one table that break one rule in one column."""

    rule: str
    column: str | None
    mask: np.ndarray
    reasons: Callable[[np.ndarray], list[str]]
    """Row indices (into the parsed rows) to one reason each."""


RowFinding = _Finding
"""Rows of one table that break one rule in one column: ``RowFinding(rule, column, mask,
reasons)``, ``mask`` over the parsed rows, ``reasons`` from row indices to one reason each."""

RowCheck = Callable[[Mapping[str, pa.Array]], list[_Finding]]
"""A table's own row rule (:func:`validate_table`): from the typed columns (nulls where a
column check rejected the value) to the rows it rejects."""


@dataclass(frozen=True)
class _Window:
    """The plausible timestamps, and how a reason names each bound."""

    earliest: pa.TimestampScalar
    latest: pa.TimestampScalar
    earliest_label: str
    latest_label: str
    data_relative: bool
    """``latest`` is unset: a column's own range may extend the bound (:meth:`latest_for`)."""

    @classmethod
    def of(cls, settings: IngestSettings, now: datetime | None) -> _Window:
        earliest, latest = settings.window(now)
        if settings.latest:
            latest_label = f"{_iso(latest)} (ingest.latest)"
        else:  # the clock is not printed: the same input gives the same quarantine files
            skew = f"{settings.future_skew_hours:g} h"
            latest_label = (
                f"the later of the time of the run (+ {skew}) and the column's own range "
                "(ingest.latest)"
            )
        return cls(
            pa.scalar(earliest, _TS_TYPE),
            pa.scalar(latest, _TS_TYPE),
            f"{_iso(earliest)} (ingest.earliest)",
            latest_label,
            not settings.latest,
        )

    def latest_for(self, typed: pa.Array) -> pa.TimestampScalar:
        """The upper bound for one parsed column.

        Without ``ingest.latest``, the bound is the later of the run's clock (plus the skew)
        and the column's own range: Tukey's far-out fence, its third quartile plus three times
        its inter-quartile range, plus a day. A dataset dated after the machine's clock (a
        synthetic world, a machine whose clock is behind) is then kept, while a lone
        ``9999-12-31`` cannot move the quartiles and is still rejected. Quartiles come from a
        t-digest: one pass.
        """
        if not self.data_relative:
            return self.latest
        micros = pc.cast(typed, pa.int64()).drop_null()
        if len(micros) == 0:
            return self.latest
        low, high = pc.tdigest(micros, q=[0.25, 0.75]).to_pylist()
        bound = int(high + 3 * (high - low)) + 86_400 * 1_000_000
        own = pa.scalar(bound, pa.int64()).cast(_TS_TYPE)
        return own if own.value > self.latest.value else self.latest


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class _AccountIds:
    """The account ids other tables are checked against."""

    accepted: pa.Array
    every: pa.Array
    file_name: str


@dataclass
class _Checked:
    accepted: pd.DataFrame
    counts: TableCounts
    problems: list[Problem]
    quarantine: pd.DataFrame
    all_ids: pa.Array


def _shown(value: object) -> str:
    text = str(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return repr(text)


def _as_strings(array: pa.Array) -> pa.Array:
    """Any Arrow array as strings, nulls as ``""`` (how a CSV file would have it)."""
    text = array if array.type == _TEXT else pc.cast(array, _TEXT)
    return pc.fill_null(text, "")


def _per_value(
    array: pa.DictionaryArray, check: Callable[[pa.Array], np.ndarray], *, null: bool
) -> np.ndarray:
    """A row mask of a dictionary array, checked once per distinct value (``check`` on the
    dictionary) and spread to the rows; null rows get ``null``."""
    by_value = np.append(np.asarray(check(array.dictionary), dtype=bool), null)
    codes = np.asarray(array.indices.fill_null(-1).to_numpy(zero_copy_only=False))
    return by_value[codes]


def _dictionary(array: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray | None:
    """``array`` as one dictionary array, or ``None`` when it is not dictionary-encoded."""
    if not pa.types.is_dictionary(array.type):
        return None
    if isinstance(array, pa.ChunkedArray):
        return dictionary_encoded(array)
    return array


def _empty(array: pa.Array) -> np.ndarray:
    """True where a value is missing: null, or an empty string."""
    encoded = _dictionary(array)
    if encoded is not None:
        return _per_value(encoded, _empty, null=True)
    missing = pc.is_null(array)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        missing = pc.or_kleene(missing, pc.fill_null(pc.equal(array, ""), False))
    return np.asarray(pc.fill_null(missing, False).to_numpy(zero_copy_only=False), dtype=bool)


def _values_reason(
    array: pa.Array, template: Callable[[str], str]
) -> Callable[[np.ndarray], list[str]]:
    # The values are turned into text only for the rows that need a reason.
    def reasons(indices: np.ndarray) -> list[str]:
        values = _as_strings(array.take(pa.array(indices, pa.int64()))).to_pylist()
        return [template(_shown(v)) for v in values]

    return reasons


def _mask_findings(
    findings: list[_Finding],
    rule: str,
    column: str,
    mask: np.ndarray,
    reasons: Callable[[np.ndarray], list[str]],
) -> None:
    if mask.any():
        findings.append(_Finding(rule, column, mask, reasons))


def _check_column(
    column: Column,
    array: pa.Array,
    findings: list[_Finding],
    window: _Window,
    *,
    ids_checked_later: bool = False,
) -> pa.Array:
    """Check one column; append findings; return the typed column (nulls where rejected).

    ``ids_checked_later``: an ``account_id`` that must be in accounts; only the values that
    are not are checked for control characters (by :func:`_check_references`).
    """
    name = column.name
    empty = _empty(array)
    if column.non_empty:
        _mask_findings(
            findings,
            "missing_value",
            name,
            empty,
            lambda idx: [f"empty {name} (a value is required)"] * len(idx),
        )
    if column.kind == "string":
        return _null_where(_as_text(array), empty)
    if column.kind == "id":
        strings = _null_where(_as_text(array), empty)
        if not ids_checked_later:
            _mask_findings(findings, "bad_id", name, _bad_ids(strings), _bad_id_reason(array, name))
        return strings
    if column.kind == "timestamp":
        return _check_timestamp_column(name, array, empty, findings, window)
    if column.kind == "ip":
        return _check_ip_column(name, array, empty, findings)
    if column.kind in ("count", "tokens"):
        return _check_integer_column(name, array, empty, findings, positive=column.kind == "count")
    if column.kind == "country":
        strings = _check_pattern_column(
            name,
            array,
            empty,
            findings,
            rule="bad_country",
            regex=r"^[A-Za-z]{2}$",
            message=lambda v: f"{name} {v} is not two letters (ISO 3166-1 alpha-2)",
        )
        return pc.utf8_upper(strings)
    if column.kind == "card_bin":
        return _check_pattern_column(
            name,
            array,
            empty,
            findings,
            rule="bad_card_bin",
            regex=r"^[0-9]{6,8}$",
            message=lambda v: f"card_bin {v} is not 6 to 8 digits",
        )
    raise AssertionError(f"unknown column kind {column.kind}")  # pragma: no cover


def _as_text(array: pa.Array) -> pa.Array:
    """Any Arrow array as strings, nulls kept (dictionary-encoded strings stay encoded)."""
    if array.type == _TEXT or (
        pa.types.is_dictionary(array.type) and array.type.value_type == _TEXT
    ):
        return array
    return pc.cast(array, _TEXT)


def _check_timestamp_column(
    name: str, array: pa.Array, empty: np.ndarray, findings: list[_Finding], window: _Window
) -> pa.Array:
    """Parse a timestamp column; reject values that are not ISO 8601 or outside ``window``."""
    typed, bad = _parse_timestamps(array, empty)
    _mask_findings(
        findings,
        "bad_timestamp",
        name,
        bad,
        _values_reason(array, lambda v: f"bad timestamp {v} (expected ISO 8601)"),
    )
    early = _true_where(pc.less(typed, window.earliest))
    late = _true_where(pc.greater(typed, window.latest_for(typed)))
    _mask_findings(
        findings,
        "implausible_timestamp",
        name,
        early | late,
        _implausible_reason(array, early, window),
    )
    return typed


def _check_ip_column(
    name: str, array: pa.Array, empty: np.ndarray, findings: list[_Finding]
) -> pa.Array:
    """Reject malformed IP addresses; the column stays text."""
    strings = _null_where(_as_text(array), empty)
    _mask_findings(
        findings,
        "bad_ip",
        name,
        _bad_ips(strings),
        _values_reason(array, lambda v: f"malformed IP address {v}"),
    )
    return strings


def _check_integer_column(
    name: str, array: pa.Array, empty: np.ndarray, findings: list[_Finding], *, positive: bool
) -> pa.Array:
    """Parse an integer column: a count (``positive``, a missing one is 1) or token sums.

    Token sums may be missing (they stay null) but not negative; a count must be over zero.
    """
    typed, not_integer = _parse_integers(array, empty)
    _mask_findings(
        findings,
        "not_integer",
        name,
        not_integer,
        _values_reason(array, lambda v: f"{name} {v} is not an integer"),
    )
    values = typed.to_numpy(zero_copy_only=False)
    present = ~not_integer & ~empty
    if positive:
        _mask_findings(
            findings,
            "out_of_range",
            name,
            present & (np.nan_to_num(values, nan=1) <= 0),
            _values_reason(array, lambda v: f"{name} {v} is not positive"),
        )
        return pc.fill_null(typed, 1)
    _mask_findings(
        findings,
        "out_of_range",
        name,
        present & (np.nan_to_num(values, nan=0) < 0),
        _values_reason(array, lambda v: f"{name} {v} is negative"),
    )
    return typed


def _check_pattern_column(
    name: str,
    array: pa.Array,
    empty: np.ndarray,
    findings: list[_Finding],
    *,
    rule: str,
    regex: str,
    message: Callable[[str], str],
) -> pa.Array:
    """Reject the non-empty values that do not match ``regex``; return the column as text.

    ``message`` gives the reason from the value as shown.
    """
    strings = _null_where(_as_strings(array), empty)
    ok = pc.fill_null(pc.match_substring_regex(strings, regex), True)
    bad = ~np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
    _mask_findings(findings, rule, name, bad, _values_reason(array, message))
    return strings


def _true_where(condition: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as a numpy mask, null as False."""
    filled = pc.fill_null(condition, False)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


def _bad_ids(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where a non-null id is blank after trimming or holds a control character."""
    encoded = _dictionary(strings)
    if encoded is not None:
        return _per_value(encoded, _bad_ids, null=False)
    control = pc.match_substring_regex(strings, _CONTROL_PATTERN)
    blank = pc.equal(pc.utf8_trim_whitespace(strings), "")
    return _true_where(pc.or_(control, blank))


def _bad_id_reason(array: pa.Array, name: str) -> Callable[[np.ndarray], list[str]]:
    return _values_reason(array, lambda v: f"{name} {v} is blank or contains control characters")


def _implausible_reason(
    array: pa.Array, early: np.ndarray, window: _Window
) -> Callable[[np.ndarray], list[str]]:
    def reasons(indices: np.ndarray) -> list[str]:
        values = _as_strings(array.take(pa.array(indices, pa.int64()))).to_pylist()
        return [
            f"timestamp {_shown(v)} is before {window.earliest_label}"
            if early[i]
            else f"timestamp {_shown(v)} is after {window.latest_label}"
            for v, i in zip(values, indices, strict=True)
        ]

    return reasons


def _null_where(array: pa.Array, mask: np.ndarray) -> pa.Array:
    if not mask.any():
        return array
    if isinstance(array, pa.DictionaryArray):
        indices = pc.if_else(pa.array(mask), pa.scalar(None, array.indices.type), array.indices)
        return pa.DictionaryArray.from_arrays(indices, array.dictionary)
    return pc.if_else(pa.array(mask), pa.scalar(None, array.type), array)


def _parse_timestamps(array: pa.Array, empty: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Timestamps as ``timestamp[us, UTC]``; the mask of non-empty values that did not parse.

    Text must be one of the forms of docs/contract.md. Arrow's cast accepts exactly the
    extended forms with at most 6 fraction digits, when a column's values all carry an
    offset or none does: that is the fast path. Otherwise the forms are checked with one
    regular expression, basic forms and long fractions rewritten, and the values with and
    without an offset cast apart; an impossible date (February 30) is found among the
    distinct dates.
    """
    no_bad = np.zeros(len(array), dtype=bool)
    kind = array.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            array = pc.cast(array, pa.timestamp(kind.unit)).cast(pa.timestamp(kind.unit, tz="UTC"))
        return pc.cast(array, _TS_TYPE, safe=False), no_bad
    if pa.types.is_date(kind):
        return pc.cast(pc.cast(array, pa.timestamp("us")), _TS_TYPE), no_bad
    strings = _null_where(_as_strings(array), empty)
    for target in (_TS_TYPE, pa.timestamp("us")):
        cast = _cast_whole(strings, target)
        if cast is not None:
            return pc.cast(cast, _TS_TYPE), no_bad
    split = _parse_mostly_utc(strings, empty)
    if split is not None:
        return split
    return _parse_any_form(strings, empty)


_PROBE_ROWS = 1 << 16
_UTC_HEAD = r"^[0-9]{4}-..-..T"


def _cast_whole(strings: pa.Array, target: pa.DataType) -> pa.Array | None:
    """``strings`` cast to ``target``, or ``None`` when Arrow refuses a value. A strided
    sample is cast first: a mixed column is refused at once, not after a pass over tens of
    millions of rows (a refusal the sample misses is found by the whole cast, as before)."""
    n = len(strings)
    if n > 4 * _PROBE_ROWS:
        probe = strings.take(pa.array(np.arange(0, n, n // _PROBE_ROWS, dtype=np.int64)))
        try:
            pc.cast(probe, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    try:
        return pc.cast(strings, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _parse_mostly_utc(strings: pa.Array, empty: np.ndarray) -> tuple[pa.Array, np.ndarray] | None:
    """A mixed column whose rows are mostly extended UTC text (``2026-06-02T13:45:12Z``):
    those cast at once, the slow path (:func:`_parse_any_form`) only for the others. ``None``
    when they are few or Arrow refuses one of them (the whole column then takes the slow
    path, so the outcome is the same either way)."""
    utc = _true_where(
        pc.and_(
            pc.and_(pc.ends_with(strings, "Z"), pc.match_substring_regex(strings, _UTC_HEAD)),
            # Arrow reads year 0 too; the contract's forms start at year 1.
            pc.invert(pc.starts_with(strings, "0000")),
        )
    )
    if utc.sum() < len(utc) // 2:
        return None
    try:
        fast = pc.cast(strings.filter(pa.array(utc)), _TS_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    rest = ~utc
    typed_rest, bad_rest = _parse_any_form(strings.filter(pa.array(rest)), empty[rest])
    micros = np.zeros(len(utc), dtype=np.int64)
    missing = np.zeros(len(utc), dtype=bool)
    micros[utc] = np.asarray(fast.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    rest_micros = typed_rest.cast(pa.int64())
    micros[rest] = np.asarray(rest_micros.fill_null(0).to_numpy(zero_copy_only=False), np.int64)
    missing[rest] = np.asarray(rest_micros.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    bad = np.zeros(len(utc), dtype=bool)
    bad[rest] = bad_rest
    return pa.array(micros, type=pa.int64(), mask=missing).cast(_TS_TYPE), bad


def _parse_any_form(strings: pa.Array, empty: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Every timestamp form of docs/contract.md, checked by regular expression; the mask of
    non-empty values that did not parse."""
    bad = ~_true_where(pc.match_substring_regex(strings, _TS_PATTERN)) & ~empty
    strings = _null_where(strings, bad)
    strings = pc.replace_substring_regex(
        strings,
        pattern=r"^([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})",
        replacement=r"\1-\2-\3T\4:\5:\6",
    )
    strings = pc.replace_substring_regex(strings, pattern=r"(\.[0-9]{6})[0-9]+", replacement=r"\1")
    has_offset = _true_where(pc.match_substring_regex(strings, _TS_HAS_OFFSET))
    impossible = _impossible_dates(strings)
    bad |= impossible
    strings = _null_where(strings, impossible)
    zoned = _cast_each(_null_where(strings, ~has_offset), _TS_TYPE)
    naive = _cast_each(_null_where(strings, has_offset), pa.timestamp("us"))
    bad |= zoned.bad | naive.bad
    typed = pc.if_else(pa.array(has_offset), zoned.values, pc.cast(naive.values, _TS_TYPE))
    return typed, bad


def _impossible_dates(strings: pa.Array) -> np.ndarray:
    """True where ``YYYY-MM-DD`` (already well-formed) is not a date, e.g. ``2025-02-29``."""
    days = pc.utf8_slice_codeunits(strings, 0, 10)
    impossible = []
    for day in pc.unique(days.drop_null()).to_pylist():
        try:
            date.fromisoformat(day)
        except ValueError:
            impossible.append(day)
    if not impossible:
        return np.zeros(len(strings), dtype=bool)
    return _is_in(days, pa.array(impossible, _TEXT))


@dataclass
class _Cast:
    values: pa.Array
    bad: np.ndarray


def _cast_each(strings: pa.Array, target: pa.DataType) -> _Cast:
    """Cast well-formed timestamp text; values Arrow still refuses are nulled and marked."""
    bad = np.zeros(len(strings), dtype=bool)
    try:
        return _Cast(pc.cast(strings, target), bad)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # A last resort, value by value over the distinct values (an offset that moves year 1
    # into year 0, say); the regular expression and the date check leave little for it.
    refused = []
    for value in pc.unique(strings.drop_null()).to_pylist():
        try:
            pc.cast(pa.array([value], _TEXT), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            refused.append(value)
    bad = _is_in(strings, pa.array(refused, _TEXT))
    return _Cast(pc.cast(_null_where(strings, bad), target), bad)


def _parse_integers(array: pa.Array, empty: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Integers as int64 (null where empty or bad); the mask of non-integer values."""
    kind = array.type
    if pa.types.is_integer(kind):
        return pc.cast(array, pa.int64()), np.zeros(len(array), dtype=bool)
    if pa.types.is_floating(kind):
        values = array.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2**62)
        bad = ~whole & ~empty
        cleaned = np.where(whole, values, 0).astype(np.int64)
        return pa.array(cleaned, pa.int64(), mask=~whole), bad
    strings = _null_where(_as_strings(array), empty)
    ok = pc.fill_null(pc.match_substring_regex(strings, _INT_PATTERN), False)
    ok_np = np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
    typed = pc.cast(pc.if_else(ok, strings, pa.scalar(None, _TEXT)), pa.int64())
    return typed, ~ok_np & ~empty


def _bad_ips(strings: pa.Array) -> np.ndarray:
    """True where a non-null value is not an IP address.

    Canonical IPv4 text passes a vectorised regular expression; Python's ``ipaddress``
    runs only once per distinct remaining value (IPv6, odd spellings, garbage).
    """
    encoded = _dictionary(strings)
    if encoded is not None:
        return _per_value(encoded, _bad_ips, null=False)
    distinct = pc.unique(strings.drop_null())
    others = distinct.filter(pa.array(~canonical_ipv4_mask(distinct))).to_pylist()
    bad_values = []
    for value in others:
        try:
            normalise_ip(value)
        except ValueError:
            bad_values.append(value)
    if not bad_values:
        return np.zeros(len(strings), dtype=bool)
    return _is_in(strings, pa.array(bad_values, _TEXT))


def _is_in(values: pa.Array, value_set: pa.Array) -> np.ndarray:
    encoded = _dictionary(values)
    if encoded is not None:
        return _per_value(encoded, lambda distinct: _is_in(distinct, value_set), null=False)
    found = pc.fill_null(pc.is_in(values, value_set=value_set), False)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _check_known(ids: pa.Array, empty: np.ndarray, known: pa.Array) -> list[_Finding]:
    """``duplicate_id`` for account ids accepted by an earlier run (``linker update``)."""
    seen = _is_in(ids, pc.cast(known, _TEXT)) & ~empty
    if not seen.any():
        return []
    return [
        _Finding(
            "duplicate_id",
            "account_id",
            seen,
            _values_reason(
                ids, lambda v: f"account_id {v} is already an account of the previous run"
            ),
        )
    ]


def _check_duplicates(
    ids: pa.Array, empty: np.ndarray, row_numbers: np.ndarray, column: str
) -> _Finding | None:
    series = pd.Series(ids.to_numpy(zero_copy_only=False))
    codes, _ = pd.factorize(series)
    codes = np.where(empty, -1, codes)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    is_later = np.zeros(len(codes), dtype=bool)
    is_later[order[1:]] = (sorted_codes[1:] == sorted_codes[:-1]) & (sorted_codes[1:] >= 0)
    if not is_later.any():
        return None
    first_index = np.full(len(codes), -1, dtype=np.int64)
    starts = np.ones(len(codes), dtype=bool)
    starts[1:] = sorted_codes[1:] != sorted_codes[:-1]
    group_first = order[np.flatnonzero(starts)]
    group_of_sorted = np.cumsum(starts) - 1
    first_index[order] = group_first[group_of_sorted]

    def reasons(indices: np.ndarray) -> list[str]:
        values = _as_strings(ids.take(pa.array(indices, pa.int64()))).to_pylist()
        firsts = row_numbers[first_index[indices]]
        return [
            f"duplicate {column} {_shown(v)} (first at row {f})"
            for v, f in zip(values, firsts, strict=True)
        ]

    return _Finding("duplicate_id", column, is_later, reasons)


def _check_references(ids: pa.Array, empty: np.ndarray, accounts: _AccountIds) -> list[_Finding]:
    """``unknown_account`` for ids not accepted in accounts; ``bad_id`` for malformed ones.

    Accepted account ids hold no control character, so only the ids not found there are
    checked for one: a few rows, not every event.
    """
    unknown = ~_is_in(ids, accounts.accepted) & ~empty
    if not unknown.any():
        return []
    findings = []
    unknown_rows = np.flatnonzero(unknown)
    malformed = _bad_ids(ids.take(pa.array(unknown_rows, pa.int64())))
    if malformed.any():
        bad_id = np.zeros(len(unknown), dtype=bool)
        bad_id[unknown_rows[malformed]] = True
        unknown &= ~bad_id
        findings.append(_Finding("bad_id", "account_id", bad_id, _bad_id_reason(ids, "account_id")))
    if not unknown.any():
        return findings
    rejected_there = _is_in(ids, accounts.every)
    accounts_file = accounts.file_name

    def reasons(indices: np.ndarray) -> list[str]:
        values = _as_strings(ids.take(pa.array(indices, pa.int64()))).to_pylist()
        return [
            f"account_id {_shown(v)} was rejected in {accounts_file}"
            if rejected_there[i]
            else f"account_id {_shown(v)} is not in {accounts_file}"
            for v, i in zip(values, indices, strict=True)
        ]

    findings.append(_Finding("unknown_account", "account_id", unknown, reasons))
    return findings


def _check_table(
    raw: RawTable,
    accounts: _AccountIds | None,
    max_reported_rows: int,
    window: _Window,
    *,
    known: pa.Array | None = None,
    checks: Sequence[RowCheck] = (),
) -> _Checked:
    """Check one table read by :func:`load_table`: its accepted rows, counts, problems and
    quarantine. Consumes ``raw.columns`` (empty on return): the caller keeps only its row
    numbers and path."""
    spec = raw.spec
    n = raw.n_parsed
    if spec.dictionary_strings:
        _encode_text_columns(raw)
    findings: list[_Finding] = []
    typed: dict[str, pa.Array] = {}
    for column in spec.columns:
        if column.name not in raw.columns:
            continue
        array = raw.columns[column.name]
        later = spec.references_accounts and accounts is not None and column.kind == "id"
        try:
            typed[column.name] = _check_column(
                column, array, findings, window, ids_checked_later=later
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            # Only Parquet columns of an unexpected type (binary, struct, ...) get here.
            raise InputError(
                f"{raw.path}: column {column.name}: cannot read values of type {array.type} "
                f"({str(exc).splitlines()[0]})"
            ) from None
    ids = typed["account_id"]
    id_empty = _empty(raw.columns["account_id"])
    if spec.unique_key is not None:
        duplicate = _check_duplicates(ids, id_empty, raw.row_numbers, spec.unique_key)
        if duplicate is not None:
            findings.append(duplicate)
        if known is not None and spec.name == "accounts":
            findings.extend(_check_known(ids, id_empty, known))
    if spec.references_accounts and accounts is not None:
        findings.extend(_check_references(ids, id_empty, accounts))
    for check in checks:
        findings.extend(check(typed))
    rejected = np.zeros(n, dtype=bool)
    for finding in findings:
        rejected |= finding.mask
    n_rejected = int(rejected.sum()) + len(raw.bad_rows)
    counts = TableCounts(read=raw.n_read, accepted=raw.n_read - n_rejected, rejected=n_rejected)
    if rejected.any():
        keep = pa.array(~rejected)
        typed = {name: pc.filter(array, keep) for name, array in typed.items()}
    # Other tables tell "not in accounts" from "rejected there" with every id accounts has.
    all_ids = pc.unique(ids.drop_null()) if spec.name == "accounts" else pa.array([], _TEXT)
    del ids
    problems = _problems(raw, findings, raw.path.name, max_reported_rows)
    quarantine = _quarantine_frame(raw, findings) if n_rejected else pd.DataFrame()
    # The file's own values are not needed past the quarantine: released before the accepted
    # rows become a frame (a text timestamp column alone is gigabytes at 50M rows).
    raw.columns.clear()
    accepted = _to_pandas(spec, typed)
    if len(accepted) != counts.accepted:  # pragma: no cover - an invariant, not an input check
        raise AssertionError(f"{raw.path}: accepted rows do not add up")
    return _Checked(accepted, counts, problems, quarantine, all_ids)


def _encode_text_columns(raw: RawTable) -> None:
    """The text columns of ``raw`` dictionary-encoded in place, one at a time (CSV columns
    come as plain strings; Parquet ones are read encoded)."""
    for column in raw.spec.columns:
        array = raw.columns.get(column.name)
        if array is None or column.kind not in TEXT_KINDS:
            continue
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            raw.columns[column.name] = dictionary_encoded(array)


def _categorical(array: pa.DictionaryArray) -> pd.Series:
    """A dictionary array as a pandas categorical column of its used values only (values of
    rejected rows are not categories of the accepted table), in dictionary order; the
    categories are pandas' default strings, as a Parquet round trip gives them back.

    The unused values are dropped in Arrow, by a count over the codes, before the conversion:
    the same column as pandas' ``remove_unused_categories``, faster (that call was the
    largest cost of validating a Parquet events table; docs/performance.md)."""
    n_values = len(array.dictionary)
    present = np.asarray(pc.drop_null(array.indices).to_numpy(zero_copy_only=False))
    used = np.flatnonzero(np.bincount(present, minlength=n_values))
    if len(used) == 0:  # no value left: pandas' own empty categories (their dtype differs)
        return pd.Series(array.to_pandas()).cat.remove_unused_categories()
    if len(used) < n_values:
        remap = np.full(n_values, -1, dtype=array.indices.type.to_pandas_dtype())
        remap[used] = np.arange(len(used))
        indices = pc.take(pa.array(remap), array.indices)
        array = pa.DictionaryArray.from_arrays(indices, array.dictionary.take(pa.array(used)))
    return pd.Series(array.to_pandas())


def _to_pandas(spec: TableSpec, typed: dict[str, pa.Array]) -> pd.DataFrame:
    """Contract columns in contract order, absent ones filled (``requests`` with 1).

    Each Arrow column leaves ``typed`` as it is converted, and the frame takes the converted
    columns without copying them: the table is never held three times (Arrow, the columns,
    the frame's copy), which was the validate stage's peak."""
    n = len(next(iter(typed.values())))
    columns: dict[str, pd.Series] = {}
    for column in spec.columns:
        array = typed.pop(column.name, None)
        if column.kind == "timestamp":
            if array is None:
                array = pa.nulls(n, _TS_TYPE)
            columns[column.name] = pd.Series(array.to_pandas()).astype(
                pd.DatetimeTZDtype(unit="us", tz="UTC")
            )
        elif column.kind == "count":
            values = np.ones(n, dtype=np.int64) if array is None else array.to_numpy()
            columns[column.name] = pd.Series(values, dtype=np.int64)
        elif column.kind == "tokens":
            if array is None:
                array = pa.nulls(n, pa.int64())
            columns[column.name] = pd.Series(
                array.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), dtype="Int64"
            )
        elif array is not None and isinstance(array, pa.DictionaryArray):
            columns[column.name] = _categorical(array)
        else:
            if array is None:
                array = pa.nulls(n, _TEXT)
            columns[column.name] = pd.Series(
                array.to_pandas(types_mapper={_TEXT: _STRING, pa.string(): _STRING}.get),
                dtype=_STRING,
            )
        del array
    return pd.DataFrame(columns, copy=False)


def _problems(
    raw: RawTable, findings: list[_Finding], file_name: str, max_reported_rows: int
) -> list[Problem]:
    problems = []
    for rule in ("field_count", "unbalanced_quote"):
        bad_rows = [b for b in raw.bad_rows if b.rule == rule]
        if not bad_rows:
            continue
        reason = bad_rows[0].message
        if len({b.message for b in bad_rows}) > 1:
            reason += " (other rows differ)"
        problems.append(
            Problem(
                rule=rule,
                file=file_name,
                rows=tuple(b.row for b in bad_rows[:max_reported_rows]),
                column=None,
                reason=reason,
                count=len(bad_rows),
                table=raw.spec.name,
            )
        )
    for finding in findings:
        indices = np.flatnonzero(finding.mask)
        shown = indices[:max_reported_rows]
        reasons = finding.reasons(shown)
        reason = reasons[0]
        distinct_values = len(set(reasons))
        if len(indices) > 1 and distinct_values > 1:
            reason += " (other rows have other values)"
        problems.append(
            Problem(
                rule=finding.rule,
                file=file_name,
                rows=tuple(int(r) for r in raw.row_numbers[shown]),
                column=finding.column,
                reason=reason,
                count=len(indices),
                table=raw.spec.name,
            )
        )
    return sorted(problems, key=lambda p: (p.rows[0], p.column or ""))


def _quarantine_frame(raw: RawTable, findings: Sequence[_Finding]) -> pd.DataFrame:
    """Each rejected row once: row, column, rule, reason, then its original values."""
    originals = [name for name in raw.spec.column_names if name in raw.columns]
    pieces = []
    for finding in findings:
        indices = np.flatnonzero(finding.mask)
        pieces.append(
            pd.DataFrame(
                {
                    "index": indices,
                    "column": finding.column or "",
                    "rule": finding.rule,
                    "reason": finding.reasons(indices),
                }
            )
        )
    parts: list[pd.DataFrame] = []
    if pieces:
        long = pd.concat(pieces, ignore_index=True)
        joined = long.groupby("index", sort=True).agg(
            column=("column", "; ".join), rule=("rule", "; ".join), reason=("reason", "; ".join)
        )
        indices = joined.index.to_numpy()
        take = pa.array(indices, pa.int64())
        frame = pd.DataFrame({"row": raw.row_numbers[indices]})
        for key in ("column", "rule", "reason"):
            frame[key] = joined[key].to_numpy()
        for name in originals:
            frame[name] = _as_strings(raw.columns[name].take(take)).to_pylist()
        frame["raw_line"] = ""
        parts.append(frame)
    if raw.bad_rows:
        parts.append(_bad_rows_frame(raw.bad_rows, raw.header, originals))
    quarantine = pd.concat(parts, ignore_index=True).sort_values("row", kind="stable")
    return quarantine.reset_index(drop=True)


def _bad_rows_frame(
    bad_rows: list[BadRow], header: list[str], originals: list[str]
) -> pd.DataFrame:
    records = []
    for bad in bad_rows:
        # A record cut short by an unbalanced quote has no fields to place: raw_line only.
        fields: list[str] = []
        if bad.rule == "field_count":
            try:
                fields = next(csv.reader(io.StringIO(bad.text, newline="")), [])
            except csv.Error:  # a bare CR in an unquoted field: raw_line keeps it all
                fields = []
        record: dict[str, object] = {
            "row": bad.row,
            "column": "",
            "rule": bad.rule,
            "reason": bad.message,
        }
        for name in originals:
            position = header.index(name)
            record[name] = fields[position] if position < len(fields) else ""
        record["raw_line"] = bad.text
        records.append(record)
    return pd.DataFrame.from_records(
        records, columns=["row", "column", "rule", "reason", *originals, "raw_line"]
    )
