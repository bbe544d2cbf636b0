"""Identifier normalisation and the long observations table.

Two spellings of one identifier must become one value, or linking misses the link: a Gmail
address with dots or a ``+tag``, an IPv6 address written in full, a device id in upper case.
The scalar functions here define each normal form; :func:`build_observations` applies them
once per distinct value and gathers every identifier of every account into one table::

    account_id, kind, value, first_seen, last_seen, count

Every function is idempotent: a normalised value normalises to itself.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "KINDS",
    "OBSERVATION_COLUMNS",
    "build_observations",
    "canonical_ipv4_mask",
    "email_domain",
    "ip_prefix",
    "normalise_email",
    "normalise_ip",
    "normalise_token",
    "normalise_user_agent",
]

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

KINDS: tuple[str, ...] = (
    "payment",
    "card_bin",
    "mailbox",
    "email_domain",
    "signup_ip",
    "ip",
    "signup_subnet",
    "subnet",
    "device",
    "user_agent",
    "prompt",
)
"""Every identifier kind in the observations table."""

_DOMAIN_ALIASES: dict[str, str] = {"googlemail.com": "gmail.com"}

# Providers that deliver local+anything@domain to local@domain.
_PLUS_TAG_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "protonmail.com",
        "proton.me",
        "pm.me",
        "fastmail.com",
        "fastmail.fm",
        "yandex.com",
        "yandex.ru",
        "zoho.com",
        "hey.com",
    }
)

# Providers that ignore dots in the local part.
_DOTLESS_DOMAINS: frozenset[str] = frozenset({"gmail.com"})

_STRING = pd.StringDtype("pyarrow")
_TEXT = pa.large_string()  # what pandas' pyarrow-backed strings hold: converts without a copy
_TIMESTAMP = pd.DatetimeTZDtype(unit="us", tz="UTC")


def normalise_email(s: str) -> str:
    """The canonical mailbox of an email address.

    Parameters
    ----------
    s : str
        An email address as entered.

    Returns
    -------
    str
        Lower-cased and stripped; ``googlemail.com`` becomes ``gmail.com``; for Gmail the
        dots in the local part are removed; for providers that deliver ``local+tag`` to
        ``local`` (Gmail, Outlook/Hotmail/Live, iCloud, Proton, Fastmail, Yandex, Zoho, HEY)
        the ``+tag`` is removed. A text without ``@`` is only lower-cased and stripped.

    Notes
    -----
    If removing the tag or the dots would leave an empty local part (``+x@gmail.com``),
    the local part is kept as it is, so the result stays an address and stays idempotent.
    O(len(s)).

    Examples
    --------
    >>> normalise_email(" J.Doe+promo@GoogleMail.com ")
    'jdoe@gmail.com'
    >>> normalise_email("j.doe+x@example.org")
    'j.doe+x@example.org'
    """
    text = s.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at:
        return text
    domain = domain.rstrip(".")
    domain = _DOMAIN_ALIASES.get(domain, domain)
    canonical = local
    if domain in _PLUS_TAG_DOMAINS:
        canonical = canonical.split("+", 1)[0]
    if domain in _DOTLESS_DOMAINS:
        canonical = canonical.replace(".", "")
    return f"{canonical or local}@{domain}"


def email_domain(s: str) -> str:
    """The normalised domain of an email address (``""`` when there is no ``@``).

    Examples
    --------
    >>> email_domain("Someone@GoogleMail.COM")
    'gmail.com'
    """
    _, at, domain = normalise_email(s).rpartition("@")
    return domain if at else ""


def normalise_ip(s: str) -> str:
    """The canonical text of an IP address.

    Parameters
    ----------
    s : str
        An IPv4 or IPv6 address (surrounding spaces are ignored).

    Returns
    -------
    str
        IPv4 in dotted decimal; IPv6 in RFC 5952 compressed lower-case form; an
        IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as its IPv4 address.

    Raises
    ------
    ValueError
        If ``s`` is not an IP address (including IPv4 with leading zeros).

    Examples
    --------
    >>> normalise_ip("2001:0DB8:0000:0000:0000:0000:0000:0001")
    '2001:db8::1'
    >>> normalise_ip("::ffff:203.0.113.9")
    '203.0.113.9'
    """
    address = ipaddress.ip_address(s.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def ip_prefix(s: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network that contains an IP address.

    Raises
    ------
    ValueError
        If ``s`` is not an IP address.

    Examples
    --------
    >>> ip_prefix("203.0.113.77")
    '203.0.113.0/24'
    >>> ip_prefix("2001:db8:1:2::5")
    '2001:db8:1::/48'
    """
    address = ipaddress.ip_address(normalise_ip(s))
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(address) >> 8 << 8, 24)))
    return str(ipaddress.IPv6Network((int(address) >> 80 << 80, 48)))


def normalise_token(s: str) -> str:
    """An opaque identifier (device id, payment or prompt fingerprint, card BIN), stripped
    and lower-cased.

    Examples
    --------
    >>> normalise_token(" DEV-0A1F ")
    'dev-0a1f'
    """
    return s.strip().lower()


def normalise_user_agent(s: str) -> str:
    """A user agent with runs of white space collapsed to one space and the ends stripped.

    Case is kept: user agents differ meaningfully in case less often than tools rewrite it.

    Examples
    --------
    >>> normalise_user_agent("  python-httpx/0.27   (linux) ")
    'python-httpx/0.27 (linux)'
    """
    return " ".join(s.split())


_IPV4_CANONICAL = (
    r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    r"(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
)
"""IPv4 in canonical dotted decimal: :func:`normalise_ip` returns such a text unchanged."""


def canonical_ipv4_mask(values: pa.Array) -> np.ndarray:
    """True where a string is already a canonical IPv4 address (a vectorised fast path).

    For these values ``normalise_ip(v) == v`` and ``ip_prefix(v)`` is ``v`` with its last
    octet replaced by ``0/24``, so no Python call is needed.
    """
    matched = pc.fill_null(pc.match_substring_regex(values, _IPV4_CANONICAL), False)
    return np.asarray(matched.to_numpy(zero_copy_only=False), dtype=bool)


Memo = dict[str, str]
"""Raw value to normal form, shared by the kinds drawn from one column in one call."""


def _map_distinct(
    values: pa.Array, function: Callable[[str], str], memo: Memo | None = None
) -> pa.Array:
    """``function`` over distinct non-null strings, ``""`` where it raises ``ValueError``."""
    memo = {} if memo is None else memo

    def safe(value: str) -> str:
        found = memo.get(value)
        if found is None:
            try:
                found = function(value)
            except ValueError:
                found = ""
            memo[value] = found
        return found

    return pa.array([safe(v) for v in values.to_pylist()], _TEXT)


def _map_ips(values: pa.Array, memo: Memo, *, prefix: bool) -> pa.Array:
    """Canonical IPs (or their prefixes) of distinct values; ``""`` for a malformed one."""
    fast = canonical_ipv4_mask(values)
    result = pc.replace_substring_regex(values, r"\.[0-9]+$", ".0/24") if prefix else values
    if fast.all():
        return result
    # Parse each remaining value once, for both kinds (the memo holds the canonical text).
    canonical = _map_distinct(values.filter(pa.array(~fast)), normalise_ip, memo)
    if prefix:
        canonical = _map_distinct(canonical, _prefix_of_canonical)
    return pc.replace_with_mask(result, pa.array(~fast), canonical)


def _prefix_of_canonical(canonical: str) -> str:
    if not canonical:
        return ""
    address = ipaddress.ip_address(canonical)
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(address) >> 8 << 8, 24)))
    return str(ipaddress.IPv6Network((int(address) >> 80 << 80, 48)))


def _domains(mailboxes: pa.Array) -> pa.Array:
    """The part after the last ``@`` of each normalised address, ``""`` without one."""
    has_at = pc.fill_null(pc.match_substring(mailboxes, "@"), False)
    after = pc.replace_substring_regex(mailboxes, r"(?s)^.*@", "")
    return pc.if_else(has_at, after, pa.scalar("", _TEXT))


Vectorised = Callable[[pa.Array, Memo], pa.Array]


# What str.strip() removes from ASCII text (str.isspace() includes the separators \x1c-\x1f).
_ASCII_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def _tokens(values: pa.Array, memo: Memo | None = None) -> pa.Array:
    """:func:`normalise_token` over distinct values: vectorised for ASCII, Python otherwise."""
    is_ascii = np.asarray(
        pc.fill_null(pc.string_is_ascii(values), False).to_numpy(zero_copy_only=False), dtype=bool
    )
    fast = pc.ascii_lower(pc.ascii_trim(values, characters=_ASCII_WHITESPACE))
    if is_ascii.all():
        return fast
    slow = _map_distinct(values.filter(pa.array(~is_ascii)), normalise_token)
    return pc.replace_with_mask(fast, pa.array(~is_ascii), slow)


# kind -> (normaliser over an array of distinct values, memo name, [(table, column), ...]).
# Kinds with the same memo name share one memo per call: an email or IP is parsed once.
_SOURCES: dict[str, tuple[Vectorised, str, tuple[tuple[str, str], ...]]] = {
    "payment": (_tokens, "payment", (("payments", "payment_fingerprint"),)),
    "card_bin": (_tokens, "card_bin", (("payments", "card_bin"),)),
    "mailbox": (
        lambda v, m: _map_distinct(v, normalise_email, m),
        "email",
        (("accounts", "email"),),
    ),
    "email_domain": (
        lambda v, m: _domains(_map_distinct(v, normalise_email, m)),
        "email",
        (("accounts", "email"),),
    ),
    "signup_ip": (lambda v, m: _map_ips(v, m, prefix=False), "ip", (("accounts", "signup_ip"),)),
    "ip": (lambda v, m: _map_ips(v, m, prefix=False), "ip", (("events", "ip"),)),
    "signup_subnet": (
        lambda v, m: _map_ips(v, m, prefix=True),
        "ip",
        (("accounts", "signup_ip"),),
    ),
    "subnet": (lambda v, m: _map_ips(v, m, prefix=True), "ip", (("events", "ip"),)),
    "device": (_tokens, "device", (("accounts", "device_id"), ("events", "device_id"))),
    "user_agent": (
        lambda v, m: _map_distinct(v, normalise_user_agent, m),
        "user_agent",
        (("events", "user_agent"),),
    ),
    "prompt": (_tokens, "prompt", (("events", "prompt_fingerprint"),)),
}

_SCHEMA = pa.schema(
    [
        ("account_id", _TEXT),
        ("kind", _TEXT),
        ("value", _TEXT),
        ("first_seen", pa.timestamp("us", tz="UTC")),
        ("last_seen", pa.timestamp("us", tz="UTC")),
        ("count", pa.int64()),
    ]
)


@dataclass(frozen=True)
class _Rows:
    """One source column's rows: account codes, raw values, times and counts."""

    account_codes: pa.Array
    values: pa.Array
    first: pa.Array
    last: pa.Array
    counts: pa.Array


def build_observations(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Gather every identifier of every account into one long table.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Validated tables (as in ``ValidationResult.tables``): ``accounts`` is required;
        ``payments`` and ``events`` are used when present.

    Returns
    -------
    pandas.DataFrame
        Columns ``account_id`` (string), ``kind`` (string), ``value`` (string, normalised),
        ``first_seen`` and ``last_seen`` (``datetime64[us, UTC]``), ``count`` (int64); one row
        per (account_id, kind, value), sorted by (kind, value, account_id). Kinds are listed
        in :data:`KINDS`. Account attributes are seen at ``created_at`` with count 1;
        payments at ``added_at`` (``created_at`` when missing), count = payment rows;
        event identifiers from the first to the last ``ts``, count = sum of ``requests``.
        Values that normalise to ``""`` (or are not IP addresses, for IP kinds) are dropped.

    Raises
    ------
    KeyError
        If ``tables`` has no ``accounts``.

    Notes
    -----
    Each normaliser runs once per distinct raw value (canonical IPv4 text needs no Python
    call at all); rows are grouped on integer codes by Arrow's hash aggregation and sorted
    by integer ranks. O(n) in rows plus O(u log u) to sort the u distinct values, and O(u)
    Python calls.

    Examples
    --------
    >>> import pandas as pd
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
    every_id = pc.unique(pa.chunked_array(list(id_arrays.values()), _TEXT))
    sorted_ids = every_id.take(pc.sort_indices(every_id))
    codes = {name: pc.index_in(ids, value_set=sorted_ids) for name, ids in id_arrays.items()}
    created = _timestamps(accounts["created_at"])
    created_by_code = pc.take(created, pc.index_in(sorted_ids, value_set=id_arrays["accounts"]))
    pieces = []
    memos: dict[str, Memo] = {}
    for kind in sorted(_SOURCES):
        normaliser, memo_name, sources = _SOURCES[kind]
        rows = [
            _source_rows(tables[name], column, name, codes[name], created_by_code)
            for name, column in sources
            if name in tables and column in tables[name].columns and len(tables[name])
        ]
        if rows:
            memo = memos.setdefault(memo_name, {})
            pieces.append(_aggregate(rows, kind, normaliser, memo, sorted_ids))
    result = pa.concat_tables(pieces) if pieces else _SCHEMA.empty_table()
    return _to_frame(result)


def _source_rows(
    frame: pd.DataFrame,
    column: str,
    table_name: str,
    account_codes: pa.Array,
    created_by_code: pa.Array,
) -> _Rows:
    ones = pa.array(np.ones(len(frame), dtype=np.int64))
    if table_name == "events":
        first = _timestamps(frame["ts"])
        counts = (
            pa.array(frame["requests"].to_numpy(dtype=np.int64))
            if "requests" in frame.columns
            else ones
        )
    else:
        created = pc.take(created_by_code, account_codes)
        first = created
        if table_name == "payments" and "added_at" in frame.columns:
            first = pc.coalesce(_timestamps(frame["added_at"]), created)
        counts = ones
    return _Rows(account_codes, _strings(frame[column]), first, first, counts)


def _aggregate(
    sources: list[_Rows],
    kind: str,
    normaliser: Vectorised,
    memo: Memo,
    sorted_ids: pa.Array,
) -> pa.Table:
    """One kind's observations: normalise each distinct value once, group, sort."""
    values = _concat([s.values for s in sources])
    present = pc.and_(
        pc.and_(pc.is_valid(values), pc.is_valid(_concat([s.account_codes for s in sources]))),
        pc.is_valid(_concat([s.first for s in sources])),
    )
    encoded = pc.dictionary_encode(values.filter(present))
    if len(encoded.dictionary) == 0:
        return _SCHEMA.empty_table()
    normalised = pc.dictionary_encode(normaliser(encoded.dictionary, memo))
    # Rank the distinct normalised values, so that one integer sort orders the output.
    by_value = pc.sort_indices(normalised.dictionary)
    sorted_values = normalised.dictionary.take(by_value)
    value_rank = np.empty(len(by_value), dtype=np.int64)
    value_rank[by_value.to_numpy()] = np.arange(len(by_value), dtype=np.int64)
    row_rank = value_rank[normalised.indices.to_numpy()][encoded.indices.to_numpy()]
    accounts = _concat([s.account_codes for s in sources]).filter(present).to_numpy()
    n_accounts = max(len(sorted_ids), 1)
    key = row_rank * n_accounts + accounts.astype(np.int64)
    order = np.argsort(key)  # ties are aggregated, so their order does not matter
    key = key[order]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    first = _micros(_concat([s.first for s in sources]).filter(present))[order]
    last = _micros(_concat([s.last for s in sources]).filter(present))[order]
    counts = _concat([s.counts for s in sources]).filter(present).to_numpy()[order]
    unique_key = key[starts]
    timestamp = pa.timestamp("us", tz="UTC")
    out = pa.table(
        {
            "account_id": sorted_ids.take(pa.array(unique_key % n_accounts)),
            "kind": pa.array([kind], _TEXT).take(np.zeros(len(starts), dtype=np.int32)),
            "value": sorted_values.take(pa.array(unique_key // n_accounts)),
            "first_seen": pa.array(np.minimum.reduceat(first, starts), timestamp),
            "last_seen": pa.array(np.maximum.reduceat(last, starts), timestamp),
            "count": pa.array(np.add.reduceat(counts, starts).astype(np.int64)),
        },
        schema=_SCHEMA,
    )
    return out.filter(pc.not_equal(out["value"], ""))


def _micros(timestamps: pa.Array) -> np.ndarray:
    return np.asarray(timestamps.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _concat(arrays: list[pa.Array]) -> pa.Array:
    if len(arrays) == 1:
        return arrays[0]
    return pa.concat_arrays(arrays)


def _strings(series: pd.Series) -> pa.Array:
    array = pa.array(series, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):  # pragma: no cover - depends on the pandas dtype
        array = array.combine_chunks()
    if array.type != _TEXT:
        array = pc.cast(array, _TEXT)
    return array


def _timestamps(series: pd.Series) -> pa.Array:
    converted = pd.to_datetime(series, utc=True).astype(_TIMESTAMP)
    return pa.array(converted, type=pa.timestamp("us", tz="UTC"))


def _to_frame(table: pa.Table) -> pd.DataFrame:
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
