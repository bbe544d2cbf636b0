"""The long observations table: every identifier of every account, normalised.

:func:`build_observations` reads each registered identifier kind's source columns
(:mod:`linker.kinds`), normalises every distinct raw value once with the kind's normaliser,
and gathers the result into one table::

    account_id, kind, value, first_seen, last_seen, count

With the identifiers table (weights and super-node flags), it *is* the run's
account–identifier graph: every later stage, ``linker explain``, ``linker expand`` and the
Neo4j loader read it from the run directory instead of rebuilding it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linker.kinds import IdentifierKind, all_kinds
from linker.normalise import Memo

__all__ = ["OBSERVATION_COLUMNS", "OBSERVATION_SCHEMA", "build_observations", "observation_frame"]

logger = logging.getLogger(__name__)

OBSERVATION_COLUMNS: tuple[str, ...] = (
    "account_id",
    "kind",
    "value",
    "first_seen",
    "last_seen",
    "count",
)
"""Columns of the observations table, in order."""

_STRING = pd.StringDtype("pyarrow")
_TEXT = pa.large_string()  # what pandas' pyarrow-backed strings hold: converts without a copy
_TIMESTAMP = pd.DatetimeTZDtype(unit="us", tz="UTC")

OBSERVATION_SCHEMA = pa.schema(
    [
        ("account_id", _TEXT),
        ("kind", _TEXT),
        ("value", _TEXT),
        ("first_seen", pa.timestamp("us", tz="UTC")),
        ("last_seen", pa.timestamp("us", tz="UTC")),
        ("count", pa.int64()),
    ]
)
"""The observations table's Arrow schema."""


@dataclass(frozen=True)
class _Rows:
    """One source column's rows: account codes, raw values, times and counts."""

    account_codes: pa.Array
    values: pa.Array
    first: pa.Array
    last: pa.Array
    counts: pa.Array


def build_observations(
    tables: Mapping[str, pd.DataFrame], kinds: Iterable[IdentifierKind] | None = None
) -> pd.DataFrame:
    """Gather every identifier of every account into one long table.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Validated tables (as in ``ValidationResult.tables``): ``accounts`` is required;
        ``payments`` and ``events`` are used when present.
    kinds : iterable of IdentifierKind, optional
        The kinds to build; default every registered kind (:func:`linker.kinds.all_kinds`).

    Returns
    -------
    pandas.DataFrame
        Columns ``account_id`` (string), ``kind`` (string), ``value`` (string, normalised),
        ``first_seen`` and ``last_seen`` (``datetime64[us, UTC]``), ``count`` (int64); one row
        per (account_id, kind, value), sorted by (kind, value, account_id). Account attributes
        are seen at ``created_at`` with count 1; payments at ``added_at`` (``created_at``
        when missing), count = payment rows; event identifiers from the first to the last
        ``ts``, count = sum of ``requests``. Values that normalise to ``""`` are dropped.

    Raises
    ------
    KeyError
        If ``tables`` has no ``accounts``.

    Notes
    -----
    Each normaliser runs once per distinct raw value (canonical IPv4 text needs no Python
    call at all); rows are grouped by hashing integer keys, and only the g distinct
    (value, account) keys are sorted. O(n) in rows plus O(u log u + g log g) to sort the u
    distinct values and the g output rows, and O(u) Python calls.

    Examples
    --------
    >>> accounts = pd.DataFrame({
    ...     "account_id": ["a", "b"],
    ...     "created_at": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
    ...     "email": ["J.Doe@gmail.com", "jdoe+x@googlemail.com"],
    ... })
    >>> obs = build_observations({"accounts": accounts})
    >>> obs[obs.kind == "mailbox"][["account_id", "value"]].values.tolist()
    [['a', 'jdoe@gmail.com'], ['b', 'jdoe@gmail.com']]
    """
    accounts = tables["accounts"]
    id_arrays = {
        name: _strings(frame["account_id"])
        for name, frame in tables.items()
        if name in ("accounts", "payments", "events") and "account_id" in frame.columns
    }
    # Account codes are ranks in sorted order, so sorting by code sorts by account_id.
    every_id = pc.unique(pa.chunked_array([_distinct(ids) for ids in id_arrays.values()], _TEXT))
    sorted_ids = every_id.take(pc.sort_indices(every_id))
    codes = {name: _positions(ids, sorted_ids) for name, ids in id_arrays.items()}
    created = _timestamps(accounts["created_at"])
    created_by_code = pc.take(created, pc.index_in(sorted_ids, value_set=id_arrays["accounts"]))
    pieces = []
    memos: dict[str, Memo] = {}
    # Per table, when its rows are seen and how often: the same for every kind drawn from it
    # (five kinds read the events), so converted once.
    seen: dict[str, tuple[pa.Array, pa.Array]] = {}
    chosen = all_kinds() if kinds is None else sorted(kinds, key=lambda k: k.name)
    for entry in chosen:
        rows = [
            _source_rows(tables[s.table], s.column, s.table, codes[s.table], created_by_code, seen)
            for s in entry.sources
            if s.table in tables and s.column in tables[s.table].columns and len(tables[s.table])
        ]
        if rows:
            memo = memos.setdefault(entry.memo, {})
            pieces.append(_aggregate(rows, entry, memo, sorted_ids))
    result = pa.concat_tables(pieces) if pieces else OBSERVATION_SCHEMA.empty_table()
    return observation_frame(result)


def _source_rows(
    frame: pd.DataFrame,
    column: str,
    table_name: str,
    account_codes: pa.Array,
    created_by_code: pa.Array,
    seen: dict[str, tuple[pa.Array, pa.Array]],
) -> _Rows:
    """One source column's rows; ``seen`` keeps each table's times and counts for its other
    columns."""
    if table_name not in seen:
        seen[table_name] = _seen(frame, table_name, account_codes, created_by_code)
    first, counts = seen[table_name]
    return _Rows(account_codes, _strings(frame[column]), first, first, counts)


def _seen(
    frame: pd.DataFrame, table_name: str, account_codes: pa.Array, created_by_code: pa.Array
) -> tuple[pa.Array, pa.Array]:
    """When each row of a table is seen, and how many times."""
    if table_name == "events" and "requests" in frame.columns:
        return _timestamps(frame["ts"]), pa.array(frame["requests"].to_numpy(dtype=np.int64))
    ones = pa.array(np.ones(len(frame), dtype=np.int64))
    if table_name == "events":
        return _timestamps(frame["ts"]), ones
    created = pc.take(created_by_code, account_codes)
    if table_name == "payments" and "added_at" in frame.columns:
        return pc.coalesce(_timestamps(frame["added_at"]), created), ones
    return created, ones


def _aggregate(
    sources: list[_Rows], entry: IdentifierKind, memo: Memo, sorted_ids: pa.Array
) -> pa.Table:
    """One kind's observations: normalise each distinct value once, group, sort."""
    value_codes, distinct = _encoded([s.values for s in sources])
    present = pc.and_(
        pc.is_valid(_concat([s.account_codes for s in sources])),
        pc.is_valid(_concat([s.first for s in sources])),
    )
    present = pc.and_(present, pa.array(value_codes >= 0))
    if pc.all(present).as_py() is not False:
        # Every row is present (the usual case): no filtered copies of the columns.
        present = None
    else:
        value_codes = value_codes[np.asarray(present.to_numpy(zero_copy_only=False), bool)]
    if len(value_codes) == 0:
        return OBSERVATION_SCHEMA.empty_table()
    normal = pc.cast(entry.normaliser(distinct, memo), _TEXT)
    normalised = pc.dictionary_encode(normal)
    # Rank the distinct normalised values, so that one integer sort orders the output.
    by_value = pc.sort_indices(normalised.dictionary)
    sorted_values = normalised.dictionary.take(by_value)
    value_rank = np.empty(len(by_value), dtype=np.int64)
    value_rank[by_value.to_numpy()] = np.arange(len(by_value), dtype=np.int64)
    key = value_rank[normalised.indices.to_numpy()][value_codes]
    # The large temporaries go as soon as they are used: a kind drawn from the events
    # handles tens of millions of rows, and this is the normalise stage's memory peak.
    del value_codes, normalised, normal, value_rank
    n_accounts = max(len(sorted_ids), 1)
    key *= n_accounts
    key += _kept(_concat([s.account_codes for s in sources]), present).to_numpy()
    # Group the rows by hashing their keys (O(n)) and sort only the distinct keys: a kind
    # drawn from the events has tens of millions of rows but a few million (account, value)
    # pairs, and gathering every row column through a sort order costs more than the sort.
    # Min, max and integer sums do not depend on the order the rows are met in.
    group, unique_key = pd.factorize(key)
    del key
    n_groups = len(unique_key)
    first = _micros(_kept(_concat([s.first for s in sources]), present))
    first_seen = np.full(n_groups, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, group, first)
    last_seen = np.full(n_groups, np.iinfo(np.int64).min, dtype=np.int64)
    if all(s.first is s.last for s in sources):  # events: one time per row
        np.maximum.at(last_seen, group, first)
        del first
    else:
        del first
        np.maximum.at(last_seen, group, _micros(_kept(_concat([s.last for s in sources]), present)))
    counts = np.zeros(n_groups, dtype=np.int64)
    np.add.at(counts, group, _kept(_concat([s.counts for s in sources]), present).to_numpy())
    del group
    # Keys are distinct, so any sort gives one order; values that normalise to "" (or to
    # nothing) are dropped here, before any text is gathered.
    by_key = np.argsort(unique_key)
    value_of = unique_key[by_key] // n_accounts
    named = np.asarray(
        pc.fill_null(pc.not_equal(sorted_values, ""), False).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    by_key = by_key[named[value_of]]
    unique_key = unique_key[by_key]
    timestamp = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "account_id": sorted_ids.take(pa.array(unique_key % n_accounts)),
            "kind": pa.array([entry.name], _TEXT).take(np.zeros(len(by_key), dtype=np.int32)),
            "value": sorted_values.take(pa.array(unique_key // n_accounts)),
            "first_seen": pa.array(first_seen[by_key], timestamp),
            "last_seen": pa.array(last_seen[by_key], timestamp),
            "count": pa.array(counts[by_key]),
        },
        schema=OBSERVATION_SCHEMA,
    )


def _encoded(arrays: list[pa.Array]) -> tuple[np.ndarray, pa.Array]:
    """The rows of ``arrays`` (one source column each) as codes into one array of values:
    int64 codes, ``-1`` for nulls. A dictionary-encoded source keeps its dictionary; a plain
    one is encoded. A value may appear more than once among the values (once per source):
    the normalised values are encoded again, which merges them.
    """
    codes, dictionaries, offset = [], [], 0
    for array in arrays:
        encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
        indices = encoded.indices.cast(pa.int64()).fill_null(-1 - offset).to_numpy()
        indices = np.asarray(indices, dtype=np.int64)
        # One source (most kinds) needs neither a shifted copy nor a concatenated one: the
        # events' columns have tens of millions of rows.
        codes.append(indices + offset if offset else indices)
        dictionaries.append(encoded.dictionary.cast(_TEXT))
        offset += len(encoded.dictionary)
    return (codes[0] if len(codes) == 1 else np.concatenate(codes)), _concat(dictionaries)


def _distinct(array: pa.Array) -> pa.Array:
    """The values of a text column, as large strings: a dictionary array's dictionary (each
    value once), a plain one as it is."""
    return array.dictionary.cast(_TEXT) if pa.types.is_dictionary(array.type) else array


def _positions(array: pa.Array, value_set: pa.Array) -> pa.Array:
    """``pc.index_in`` of each row of ``array``; a dictionary array's values looked up once."""
    if not pa.types.is_dictionary(array.type):
        return pc.index_in(array, value_set=value_set)
    return pc.index_in(array.dictionary.cast(_TEXT), value_set=value_set).take(array.indices)


def _kept(array: pa.Array, present: pa.Array | None) -> pa.Array:
    return array if present is None else array.filter(present)


def _micros(timestamps: pa.Array) -> np.ndarray:
    return np.asarray(timestamps.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _concat(arrays: list[pa.Array]) -> pa.Array:
    if len(arrays) == 1:
        return arrays[0]
    return pa.concat_arrays(arrays)


def _strings(series: pd.Series) -> pa.Array:
    """A text column as large strings; a categorical one as a dictionary array (its values
    are not spelled out row by row)."""
    array = pa.array(series, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):  # pragma: no cover - depends on the pandas dtype
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        return array
    if array.type != _TEXT:
        array = pc.cast(array, _TEXT)
    return array


def _timestamps(series: pd.Series) -> pa.Array:
    converted = pd.to_datetime(series, utc=True).astype(_TIMESTAMP)
    return pa.array(converted, type=pa.timestamp("us", tz="UTC"))


def observation_frame(table: pa.Table) -> pd.DataFrame:
    """The observations table (:data:`OBSERVATION_SCHEMA`) as the artefact's pandas frame."""
    return pd.DataFrame(
        {
            "account_id": table["account_id"].to_pandas(types_mapper=_string_mapper),
            "kind": table["kind"].to_pandas(types_mapper=_string_mapper),
            "value": table["value"].to_pandas(types_mapper=_string_mapper),
            "first_seen": table["first_seen"].to_pandas().astype(_TIMESTAMP),
            "last_seen": table["last_seen"].to_pandas().astype(_TIMESTAMP),
            "count": table["count"].to_numpy().astype(np.int64),
        }
    )


def _string_mapper(arrow_type: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return _STRING
    return None
