"""Identifier normalisation: the normal form of every kind of identifier.

Two spellings of one identifier must become one value, or linking misses the link: a Gmail
address with dots or a ``+tag``, an IPv6 address written in full, a device id in upper case.
The scalar functions (``normalise_*``, :func:`ip_prefix`) define each normal form; the
``*_array`` functions apply them to an Arrow array of distinct values, vectorised where the
text allows. :mod:`linker.kinds` names the normaliser of each identifier kind and
:func:`linker.observations.build_observations` applies them.

Every function is idempotent: a normalised value normalises to itself.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ArrayNormaliser",
    "Memo",
    "canonical_ipv4_mask",
    "email_domain",
    "email_domain_array",
    "email_pattern_array",
    "ip_array",
    "ip_prefix",
    "mailbox_array",
    "map_distinct",
    "normalise_email",
    "normalise_ip",
    "normalise_token",
    "normalise_user_agent",
    "subnet_array",
    "token_array",
    "user_agent_array",
    "verbatim_array",
]

logger = logging.getLogger(__name__)

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

_TEXT = pa.large_string()  # what pandas' pyarrow-backed strings hold: converts without a copy


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
    text = s.strip()
    fast = _ipv6_text(text)
    if fast is not None:
        return fast
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


_IPV4_MAPPED = b"\0" * 10 + b"\xff\xff"


def _ipv6_text(text: str) -> str | None:
    """The canonical text of an IPv6 address through the C library, or ``None`` to leave it
    to :mod:`ipaddress` (not IPv6, a zone index, a form the C library prints with a dotted
    quad). The C library's RFC 5952 text equals :mod:`ipaddress`'s for every other address
    (tests/test_normalise.py compares them), at a fraction of the cost."""
    if ":" not in text or "%" in text:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        return None
    if packed[:12] == _IPV4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return _ipv6_text_of(packed)


def _ipv6_text_of(packed: bytes) -> str | None:
    text = socket.inet_ntop(socket.AF_INET6, packed)
    return None if "." in text else text


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
    return _network_of(ipaddress.ip_address(normalise_ip(s)))


def _network_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
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

ArrayNormaliser = Callable[[pa.Array, Memo], pa.Array]
"""A vectorised normaliser: distinct raw values in, normal forms out (``""`` drops a value).

The memo is shared by every kind that draws on the same column in one call, so an e-mail
address or an IP address is parsed once however many kinds derive from it."""


def map_distinct(
    values: pa.Array, function: Callable[[str], str], memo: Memo | None = None
) -> pa.Array:
    """``function`` over distinct non-null strings, ``""`` where it raises ``ValueError``.

    Notes
    -----
    One Python call per value not yet in ``memo``.
    """
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


def ip_array(values: pa.Array, memo: Memo | None = None, *, prefix: bool = False) -> pa.Array:
    """Canonical IPs (:func:`normalise_ip`) or their networks (:func:`ip_prefix`: /24 for
    IPv4, /48 for IPv6) of an array of texts; ``""`` for a text that is not an address.

    Canonical IPv4 text needs no Python call: its /24 is a regular-expression rewrite.
    Every other value is parsed once (``memo`` keeps its canonical form).

    Examples
    --------
    >>> ip_array(pa.array(["10.1.2.3", "2001:db8:1:2::5", "x"]), prefix=True).to_pylist()
    ['10.1.2.0/24', '2001:db8:1::/48', '']
    """
    memo = {} if memo is None else memo
    values = pc.cast(values, _TEXT)
    fast = canonical_ipv4_mask(values)
    result = pc.replace_substring_regex(values, r"\.[0-9]+$", ".0/24") if prefix else values
    if fast.all():
        return result
    canonical = map_distinct(values.filter(pa.array(~fast)), normalise_ip, memo)
    if prefix:
        canonical = map_distinct(canonical, _prefix_of_canonical)
    return pc.replace_with_mask(result, pa.array(~fast), canonical)


def subnet_array(values: pa.Array, memo: Memo | None = None) -> pa.Array:
    """:func:`ip_array` with ``prefix=True``: the network of each address."""
    return ip_array(values, memo, prefix=True)


def _prefix_of_canonical(canonical: str) -> str:
    """:func:`ip_prefix` of a canonical address (:func:`normalise_ip`'s output), parsed once."""
    if not canonical:
        return ""
    if ":" in canonical:
        network = _ipv6_text_of(socket.inet_pton(socket.AF_INET6, canonical)[:6] + b"\0" * 10)
        if network is not None:
            return network + "/48"
    return _network_of(ipaddress.ip_address(canonical))


def mailbox_array(values: pa.Array, memo: Memo | None = None) -> pa.Array:
    """:func:`normalise_email` of each text (one Python call per distinct address)."""
    return map_distinct(values, normalise_email, memo)


def email_domain_array(values: pa.Array, memo: Memo | None = None) -> pa.Array:
    """The domain of each address after :func:`normalise_email`, ``""`` without an ``@``.

    Examples
    --------
    >>> email_domain_array(pa.array(["A@GoogleMail.com", "nobody"])).to_pylist()
    ['gmail.com', '']
    """
    mailboxes = mailbox_array(values, memo)
    has_at = pc.fill_null(pc.match_substring(mailboxes, "@"), False)
    after = pc.replace_substring_regex(mailboxes, r"(?s)^.*@", "")
    return pc.if_else(has_at, after, pa.scalar("", _TEXT))


def email_pattern_array(values: pa.Array, memo: Memo | None = None) -> pa.Array:
    """A coarse shape of each mailbox: its local part without digits and separators.

    ``anna.lee1987@gmail.com`` and ``annalee_2231@gmail.com`` share the pattern
    ``annalee#@gmail.com``: generated mailboxes share it, namesakes rarely do. A local part
    without digits, or with fewer than three letters left, has no pattern (``""``): a plain
    name is not a generated one.

    Examples
    --------
    >>> email_pattern_array(pa.array(["Anna.Lee1987@gmail.com", "anna@x.org"])).to_pylist()
    ['annalee#@gmail.com', '']
    """
    mailboxes = mailbox_array(values, memo)
    parts = pc.extract_regex(mailboxes, r"^(?P<local>[^@]+)@(?P<domain>.+)$")
    local = pc.struct_field(parts, "local")
    domain = pc.struct_field(parts, "domain")
    has_digit = pc.match_substring_regex(local, r"[0-9]")
    stem = pc.replace_substring_regex(local, r"[0-9._+\-]+", "")
    pattern = pc.binary_join_element_wise(stem, domain, pa.scalar("#@", _TEXT))
    keep = pc.and_(pc.fill_null(has_digit, False), pc.greater_equal(pc.utf8_length(stem), 3))
    return pc.cast(pc.if_else(pc.fill_null(keep, False), pattern, pa.scalar("", _TEXT)), _TEXT)


# What str.strip() removes from ASCII text (str.isspace() includes the separators \x1c-\x1f).
_ASCII_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def token_array(values: pa.Array, memo: Memo | None = None) -> pa.Array:
    """:func:`normalise_token` of each text: vectorised for ASCII, one Python call per
    distinct non-ASCII value."""
    values = pc.cast(values, _TEXT)
    is_ascii = np.asarray(
        pc.fill_null(pc.string_is_ascii(values), False).to_numpy(zero_copy_only=False), dtype=bool
    )
    fast = pc.ascii_lower(pc.ascii_trim(values, characters=_ASCII_WHITESPACE))
    if is_ascii.all():
        return fast
    slow = map_distinct(values.filter(pa.array(~is_ascii)), normalise_token, memo)
    return pc.replace_with_mask(fast, pa.array(~is_ascii), slow)


def user_agent_array(values: pa.Array, memo: Memo | None = None) -> pa.Array:
    """:func:`normalise_user_agent` of each text."""
    return map_distinct(values, normalise_user_agent, memo)


def verbatim_array(values: pa.Array, memo: Memo | None = None) -> pa.Array:
    """The values as they are: for identifiers the warehouse already keys exactly (a billing
    customer id is copied into exports and must match billing's own key)."""
    del memo
    return pc.cast(values, _TEXT)
