"""The input contract: which tables a dataset has, their columns, and the checks on each.

This module is data, not behaviour: :mod:`linker.io.validate` enforces it and
``docs/contract.md`` documents it. The two must agree; ``tests/test_validate.py`` checks
that every rule named here is documented there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "FILE_RULES",
    "ROW_RULES",
    "TABLES",
    "TABLE_ORDER",
    "Column",
    "ColumnKind",
    "TableSpec",
    "with_column",
    "without_column",
]

ColumnKind = Literal["id", "string", "timestamp", "ip", "count", "tokens", "country", "card_bin"]
"""How a column's values are checked and typed.

* ``id`` — an identifier (``account_id``, ``billing_customer_id``): a value that is blank
  after trimming white space or contains a control character (C0, DEL, C1) is rejected;
  typed as pandas ``string``.
* ``string`` — any text; typed as pandas ``string``.
* ``timestamp`` — ISO 8601 text (no offset means UTC) or a Parquet timestamp;
  typed as ``datetime64[us, UTC]``.
* ``ip`` — an IPv4 or IPv6 address, kept as written; typed as pandas ``string``.
* ``count`` — a positive integer (``requests``), 1 when empty; typed as ``int64``.
* ``tokens`` — a non-negative integer or empty; typed as nullable ``Int64``.
* ``country`` — two ASCII letters (ISO 3166-1 alpha-2), stored upper-case.
* ``card_bin`` — 6 to 8 digits; typed as pandas ``string`` (leading digits matter).
"""


@dataclass(frozen=True)
class Column:
    """One column of a table in the contract.

    Attributes
    ----------
    name : str
        The exact column name in the file's header (or Parquet schema).
    kind : ColumnKind
        How values are checked and typed.
    required : bool
        The column must be present; a missing column rejects the whole file.
    non_empty : bool
        Every row must have a value; an empty value rejects the row.
    """

    name: str
    kind: ColumnKind
    required: bool = False
    non_empty: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One table of a dataset.

    Attributes
    ----------
    name : str
        The table's name; its file is ``NAME.csv``, ``NAME.csv.gz`` or ``NAME.parquet``.
    columns : tuple of Column
        The contract columns, in output order. Other columns in a file are ignored.
    required : bool
        A dataset without this table is rejected.
    unique_key : str or None
        A column whose values must be unique (later duplicates are rejected).
    references_accounts : bool
        Each row's ``account_id`` must be an accepted row of ``accounts``.
    dictionary_strings : bool
        Hold the table's text columns (ids, IP addresses, free text) dictionary-encoded from
        the read on: each distinct value once and a 32-bit code per row. For tables whose
        values repeat across many rows (events: an account's id, its IPs, models and
        templates on every request), this is the difference between a few GiB and tens of
        GiB at tens of millions of rows.
    """

    name: str
    columns: tuple[Column, ...]
    required: bool = False
    unique_key: str | None = None
    references_accounts: bool = True
    dictionary_strings: bool = False

    @property
    def column_names(self) -> list[str]:
        """The contract column names, in output order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The :class:`Column` called ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


TABLES: dict[str, TableSpec] = {
    "accounts": TableSpec(
        "accounts",
        (
            Column("account_id", "id", required=True, non_empty=True),
            Column("created_at", "timestamp", required=True, non_empty=True),
            Column("email", "string"),
            Column("signup_ip", "ip"),
            Column("device_id", "string"),
            Column("country", "country"),
            Column("billing_customer_id", "id"),
        ),
        required=True,
        unique_key="account_id",
        references_accounts=False,
    ),
    "payments": TableSpec(
        "payments",
        (
            Column("account_id", "id", required=True, non_empty=True),
            Column("payment_fingerprint", "string", required=True, non_empty=True),
            Column("card_bin", "card_bin"),
            Column("billing_country", "country"),
            Column("added_at", "timestamp"),
        ),
    ),
    "events": TableSpec(
        "events",
        (
            Column("account_id", "id", required=True, non_empty=True),
            Column("ts", "timestamp", required=True, non_empty=True),
            Column("ip", "ip"),
            Column("device_id", "string"),
            Column("user_agent", "string"),
            Column("model", "string"),
            Column("requests", "count"),
            Column("input_tokens", "tokens"),
            Column("output_tokens", "tokens"),
            Column("prompt_fingerprint", "string"),
        ),
        dictionary_strings=True,
    ),
    "labels": TableSpec(
        "labels",
        (
            Column("account_id", "id", required=True, non_empty=True),
            Column("ring_id", "string", required=True),
            Column("group", "string"),
            Column("role", "string"),
        ),
        unique_key="account_id",
    ),
}
"""Every table of the contract, by name."""

TABLE_ORDER: tuple[str, ...] = ("accounts", "payments", "events", "labels")
"""The order in which tables are validated (``accounts`` first: the others refer to it)."""

FILE_RULES: dict[str, str] = {
    "missing_table": "a required table has no file",
    "duplicate_table": "a table has more than one file (e.g. events.csv and events.parquet)",
    "missing_column": "a required column is not in the header",
    "duplicate_column": "a contract column appears twice in the header",
    "unreadable": "the file cannot be read, is truncated or is not in its format",
    "encoding": "the file is not UTF-8 (a UTF-8 byte-order mark is fine)",
    "empty_table": "the file has no data rows",
    "not_regular_file": (
        "a table's file is a directory, FIFO, device, socket, a symbolic link to nothing "
        "or a symbolic-link loop"
    ),
    "misnamed_table": "a file's name differs from a table file's name only in case",
    "bad_header": "the CSV header line is longer than 1 MiB or is not CSV",
    "line_endings": "the CSV file's lines end in CR only (classic Mac OS)",
    "column_type": "a Parquet column's type cannot hold its contract column (int64 timestamps)",
    "all_rejected": "every row of a table was rejected",
}
"""File-level rules: each rejects the whole dataset (exit 2), whatever ``on_error`` says."""

ROW_RULES: dict[str, str] = {
    "field_count": "a CSV row has more or fewer fields than the header",
    "missing_value": "a value that must be present is empty",
    "duplicate_id": "an account_id already seen in an earlier row of the same table",
    "bad_timestamp": "not an ISO 8601 timestamp",
    "bad_ip": "not an IPv4 or IPv6 address",
    "unknown_account": "the account_id is not an accepted row of accounts",
    "not_integer": "a count is not a whole number",
    "out_of_range": "requests is not positive, or a token count is negative",
    "bad_card_bin": "card_bin is not 6 to 8 digits",
    "bad_country": "not two letters (ISO 3166-1 alpha-2)",
    "unbalanced_quote": "a quoted field runs past the end of its line and never closes properly",
    "bad_id": "an id is blank (only white space) or contains control characters",
    "implausible_timestamp": "a timestamp before ingest.earliest or after ingest.latest",
}
"""Row-level rules: each rejects the row (quarantined, or exit 2 with ``on_error='fail'``)."""


def with_column(spec: TableSpec, column: Column) -> TableSpec:
    """``spec`` with one more optional column (an identifier kind's source column,
    added by :func:`linker.kinds.register`)."""
    return replace(spec, columns=(*spec.columns, column))


def without_column(spec: TableSpec, name: str) -> TableSpec:
    """``spec`` without the column called ``name``."""
    return replace(spec, columns=tuple(c for c in spec.columns if c.name != name))
