"""The registry of identifier kinds: every fact about a kind, declared once.

An *identifier kind* is a family of values that accounts can share: a payment fingerprint, a
signup IP, a prompt template. Everything the pipeline needs to know about a kind lives in its
:class:`IdentifierKind` entry here: where its values come from, how they are normalised, how
strong a shared value is as evidence, which other kinds can corroborate it (its family), how a
reason names it, and how Neo4j stores it. Normalisation
(:mod:`linker.observations`), evidence weights (:mod:`linker.graph.weights`), reasons, the
settings' defaults and the Neo4j loader all read this registry; none of them lists kinds.

Adding a kind is one :func:`register` call (and, where no existing normaliser fits, one
function from raw texts to normal forms): its source column joins the input contract as an
optional column, its prior joins the settings' defaults, and its values link accounts, reach
reasons and load into Neo4j. ``tests/test_kinds.py`` proves it with a phone-number kind.

Examples
--------
>>> kind("payment").prior, kind("payment").strong, kind("payment").reason_label
(3.0, True, 'card')
>>> [k.name for k in all_kinds() if k.strong]
['billing_customer', 'mailbox', 'payment']
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from linker.io import contract
from linker.normalise import (
    ArrayNormaliser,
    email_domain_array,
    email_pattern_array,
    ip_array,
    mailbox_array,
    subnet_array,
    token_array,
    user_agent_array,
    verbatim_array,
)

__all__ = [
    "IdentifierKind",
    "Source",
    "all_kinds",
    "burst_kinds",
    "customer_kinds",
    "default_priors",
    "families",
    "family_codes",
    "ip_kinds",
    "kind",
    "kind_lookup",
    "kind_names",
    "neo4j_labels",
    "reason_label",
    "register",
    "registered",
    "strong_kinds",
    "unregister",
]

logger = logging.getLogger(__name__)

Table = Literal["accounts", "payments", "events"]

_NEO4J_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_NEO4J_TYPE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_KIND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Source:
    """A column of an input table that holds raw values of a kind."""

    table: Table
    column: str


@dataclass(frozen=True)
class IdentifierKind:
    """One identifier kind and everything the pipeline knows about it.

    Attributes
    ----------
    name : str
        The kind's name in the observations table (``payment``, ``ip`` ...).
    sources : tuple of Source
        Input columns whose values are of this kind. A column missing from the contract is
        added to it as an optional text column when the kind is registered.
    normaliser : ArrayNormaliser
        Distinct raw texts to normal forms (``""`` drops a value).
    memo : str
        Kinds with the same memo name share parsed values within one call (an address is
        parsed once for ``mailbox``, ``email_domain`` and ``email_pattern``).
    prior : float
        Strength of one exact shared value before the rarity adjustment
        (``link.kind_priors``); 0 makes the kind a feature that links nobody.
    strong : bool
        A shared value keeps its accounts in one cluster whatever else (``link.strong_kinds``).
    customer : bool
        A shared value means one paying customer (``link.customer_kinds``).
    burst_key : bool
        Signup bursts are counted along this kind (``link.burst_kinds``).
    ip_address : bool
        Its values are IP addresses (the proxy-spread signal counts their subnets).
    family : str
        What the kind is evidence of (``network``, ``payment``, ``email``, ``device``,
        ``prompt``, ``client``): a shared value is corroborated only by shared values of
        another family (:mod:`linker.graph.public`), so a proxy exit is not vouched for by
        another exit of the same pool.
    reason_label : str
        How reasons name a value of this kind (``card``, ``signup IP`` ...).
    neo4j_label, neo4j_relationship : str
        The identifier node's label and the type of the account's relationship to it.
    description : str
        What the kind is, for the documentation.
    """

    name: str
    sources: tuple[Source, ...]
    normaliser: ArrayNormaliser
    memo: str
    prior: float
    reason_label: str
    neo4j_label: str
    neo4j_relationship: str
    strong: bool = False
    customer: bool = False
    burst_key: bool = False
    ip_address: bool = False
    family: str = ""
    description: str = ""

    @property
    def reason_code(self) -> str:
        """The code of a shared value of this kind in the export's ``reason_codes``
        (:mod:`linker.reasons`): ``shared_<name>``."""
        return f"shared_{self.name}"

    def problems(self) -> list[str]:
        """What is wrong with this entry (an empty list when it is valid)."""
        found = []
        if not _KIND_NAME.match(self.name):
            found.append(f"kind name {self.name!r} must be lower_snake_case")
        if not self.sources:
            found.append(f"kind {self.name}: needs at least one source column")
        if self.prior < 0:
            found.append(f"kind {self.name}: prior must be at least 0, not {self.prior}")
        if not self.family:
            found.append(f"kind {self.name}: needs a family (network, payment, email, ...)")
        # Labels and types are written into Cypher text (they cannot be parameters), so only
        # plain identifiers are accepted.
        if not _NEO4J_NAME.match(self.neo4j_label):
            found.append(f"kind {self.name}: neo4j_label {self.neo4j_label!r} must be CamelCase")
        if not _NEO4J_TYPE.match(self.neo4j_relationship):
            found.append(
                f"kind {self.name}: neo4j_relationship {self.neo4j_relationship!r} must be "
                "UPPER_SNAKE_CASE"
            )
        return found


_BUILT_IN: tuple[IdentifierKind, ...] = (
    IdentifierKind(
        "billing_customer",
        (Source("accounts", "billing_customer_id"),),
        verbatim_array,
        "billing_customer",
        prior=3.0,
        strong=True,
        customer=True,
        reason_label="billing customer",
        neo4j_label="BillingCustomer",
        neo4j_relationship="BILLED_TO",
        family="payment",
        description="accounts billed to one customer of the billing system",
    ),
    IdentifierKind(
        "card_bin",
        (Source("payments", "card_bin"),),
        token_array,
        "card_bin",
        prior=0.0,
        burst_key=True,
        reason_label="card BIN",
        neo4j_label="CardBin",
        neo4j_relationship="HAS_CARD_BIN",
        family="payment",
        description="the issuer prefix of a card: a bank's BIN is shared by strangers",
    ),
    IdentifierKind(
        "device",
        (Source("accounts", "device_id"), Source("events", "device_id")),
        token_array,
        "device",
        prior=1.5,
        reason_label="device",
        neo4j_label="Device",
        neo4j_relationship="USED_DEVICE",
        family="device",
        description="a device id at signup or in traffic; reset and shared in households",
    ),
    IdentifierKind(
        "email_domain",
        (Source("accounts", "email"),),
        email_domain_array,
        "email",
        prior=0.0,
        burst_key=True,
        reason_label="email domain",
        neo4j_label="EmailDomain",
        neo4j_relationship="HAS_EMAIL_DOMAIN",
        family="email",
        description="the domain of the normalised address: gmail.com is shared by millions",
    ),
    IdentifierKind(
        "email_pattern",
        (Source("accounts", "email"),),
        email_pattern_array,
        "email",
        prior=0.5,
        burst_key=True,
        reason_label="email pattern",
        neo4j_label="EmailPattern",
        neo4j_relationship="HAS_EMAIL_PATTERN",
        family="email",
        description="a generated mailbox's shape (local part without digits and separators)",
    ),
    IdentifierKind(
        "ip",
        # The signup address too: a reserve account signed up through the proxy exit that
        # active members send their traffic through shares that exit with them.
        (Source("events", "ip"), Source("accounts", "signup_ip")),
        ip_array,
        "ip",
        prior=1.0,
        ip_address=True,
        reason_label="IP",
        neo4j_label="IP",
        neo4j_relationship="USED_IP",
        family="network",
        description="an IP address the account used, in traffic or to sign up",
    ),
    IdentifierKind(
        "mailbox",
        (Source("accounts", "email"),),
        mailbox_array,
        "email",
        prior=3.0,
        strong=True,
        reason_label="mailbox",
        neo4j_label="Mailbox",
        neo4j_relationship="HAS_MAILBOX",
        family="email",
        description="the canonical mailbox (dots and +tags removed where the provider does)",
    ),
    IdentifierKind(
        "payment",
        (Source("payments", "payment_fingerprint"),),
        token_array,
        "payment",
        prior=3.0,
        strong=True,
        customer=True,
        reason_label="card",
        neo4j_label="PaymentMethod",
        neo4j_relationship="HAS_PAYMENT",
        family="payment",
        description="an exact payment instrument (card fingerprint)",
    ),
    IdentifierKind(
        "prompt",
        (Source("events", "prompt_fingerprint"),),
        token_array,
        "prompt",
        prior=1.0,
        reason_label="prompt template",
        neo4j_label="PromptTemplate",
        neo4j_relationship="USED_PROMPT",
        family="prompt",
        description="a prompt-template fingerprint",
    ),
    IdentifierKind(
        "signup_ip",
        (Source("accounts", "signup_ip"),),
        ip_array,
        "ip",
        prior=1.0,
        ip_address=True,
        reason_label="signup IP",
        neo4j_label="IP",
        neo4j_relationship="SIGNED_UP_FROM",
        family="network",
        description="the IP address an account signed up from",
    ),
    IdentifierKind(
        "signup_subnet",
        (Source("accounts", "signup_ip"),),
        subnet_array,
        "ip",
        prior=0.0,
        burst_key=True,
        reason_label="signup subnet",
        neo4j_label="Subnet",
        neo4j_relationship="SIGNED_UP_FROM_SUBNET",
        family="network",
        description="the /24 (IPv4) or /48 (IPv6) of the signup IP",
    ),
    IdentifierKind(
        "subnet",
        (Source("events", "ip"),),
        subnet_array,
        "ip",
        prior=0.0,
        reason_label="subnet",
        neo4j_label="Subnet",
        neo4j_relationship="USED_SUBNET",
        family="network",
        description="the /24 (IPv4) or /48 (IPv6) of a traffic IP",
    ),
    IdentifierKind(
        "user_agent",
        (Source("events", "user_agent"),),
        user_agent_array,
        "user_agent",
        prior=0.0,
        reason_label="user agent",
        neo4j_label="UserAgent",
        neo4j_relationship="USED_USER_AGENT",
        family="client",
        description="a client's user agent: popular client libraries are shared by strangers",
    ),
)

_REGISTRY: dict[str, IdentifierKind] = {k.name: k for k in _BUILT_IN}
_ADDED_COLUMNS: dict[str, list[Source]] = {}
"""Per registered kind, the contract columns its registration added (removed with it)."""


def all_kinds() -> tuple[IdentifierKind, ...]:
    """Every registered kind, sorted by name (the order of the bipartite graph's columns)."""
    return tuple(_REGISTRY[name] for name in sorted(_REGISTRY))


def kind_names() -> tuple[str, ...]:
    """The registered kinds' names, sorted."""
    return tuple(sorted(_REGISTRY))


def kind(name: str) -> IdentifierKind:
    """The registered kind called ``name``.

    Raises
    ------
    KeyError
        When no kind has that name.
    """
    return _REGISTRY[name]


def reason_label(name: str) -> str:
    """How reasons name a value of kind ``name`` (the kind's name when it is unknown)."""
    found = _REGISTRY.get(name)
    return found.reason_label if found is not None else name


def default_priors() -> dict[str, float]:
    """``link.kind_priors``' defaults: every kind's prior."""
    return {k.name: k.prior for k in all_kinds()}


def strong_kinds() -> tuple[str, ...]:
    """``link.strong_kinds``' default."""
    return tuple(k.name for k in all_kinds() if k.strong)


def customer_kinds() -> tuple[str, ...]:
    """``link.customer_kinds``' default."""
    return tuple(k.name for k in all_kinds() if k.customer)


def burst_kinds() -> tuple[str, ...]:
    """``link.burst_kinds``' default."""
    return tuple(k.name for k in all_kinds() if k.burst_key)


def families() -> dict[str, str]:
    """Every kind's family, by kind name."""
    return {k.name: k.family for k in all_kinds()}


def kind_lookup(
    kind_of: np.ndarray, table: Mapping[str, Any], default: Any, dtype: Any = None
) -> np.ndarray:
    """``table.get(kind, default)`` for each element of an array of kind names.

    Parameters
    ----------
    kind_of : numpy.ndarray of str
        A kind name per element (an identifier column's kind, say).
    table : mapping of str to value
        A value per kind name (``link.kind_priors``, :func:`families` ...).
    default : object
        The value of a kind the table lacks.
    dtype : numpy dtype, optional
        The result's dtype.

    Returns
    -------
    numpy.ndarray
        One value per element of ``kind_of``.

    Notes
    -----
    One hash pass over the array and one dictionary look-up per distinct kind, not per
    element: O(n) without a Python loop over the n elements.

    Examples
    --------
    >>> kind_lookup(np.array(["ip", "device", "ip"], dtype=object), {"ip": 1.0}, 0.0).tolist()
    [1.0, 0.0, 1.0]
    """
    codes, uniques = pd.factorize(np.asarray(kind_of, dtype=object))
    per_kind = np.array([table.get(k, default) for k in uniques], dtype=dtype)
    if len(per_kind) == 0:
        return np.zeros(0, dtype=dtype or object)
    return per_kind[codes]


def family_codes(kind_of: np.ndarray) -> np.ndarray:
    """A code per element for its kind's family, numbered by first appearance.

    The codes equal ``pandas.factorize`` of the family names element by element (a kind not
    registered is its own family), computed once per distinct kind (:func:`kind_lookup`).

    Examples
    --------
    >>> family_codes(np.array(["ip", "mailbox", "signup_ip", "device"], dtype=object)).tolist()
    [0, 1, 0, 2]
    """
    names = np.asarray(kind_of, dtype=object)
    codes, uniques = pd.factorize(names)
    family_of = families()
    per_kind = pd.factorize(np.array([family_of.get(k, k) for k in uniques], dtype=object))[0]
    return np.asarray(per_kind[codes], dtype=np.int64)


def ip_kinds() -> tuple[str, ...]:
    """The kinds whose values are IP addresses."""
    return tuple(k.name for k in all_kinds() if k.ip_address)


def neo4j_labels() -> tuple[str, ...]:
    """The distinct identifier labels, in kind order (``IP`` serves ``ip`` and ``signup_ip``)."""
    return tuple(dict.fromkeys(k.neo4j_label for k in all_kinds()))


def register(new: IdentifierKind) -> IdentifierKind:
    """Add a kind to the registry.

    Its source columns that the input contract does not have join it as optional text
    columns, so the readers keep them.

    Parameters
    ----------
    new : IdentifierKind

    Returns
    -------
    IdentifierKind
        ``new``.

    Raises
    ------
    ValueError
        When the entry is invalid or its name is taken.
    """
    problems = new.problems()
    if new.name in _REGISTRY:
        problems.append(f"kind {new.name} is already registered")
    for source in new.sources:
        if source.table not in contract.TABLES:
            problems.append(f"kind {new.name}: unknown table {source.table!r}")
    if problems:
        raise ValueError("; ".join(problems))
    for source in new.sources:
        spec = contract.TABLES[source.table]
        if source.column not in spec.column_names:
            column = contract.Column(source.column, "string")
            contract.TABLES[source.table] = contract.with_column(spec, column)
            _ADDED_COLUMNS.setdefault(new.name, []).append(source)
    _REGISTRY[new.name] = new
    logger.info("registered identifier kind %s", new.name)
    return new


def unregister(name: str) -> None:
    """Remove a kind added by :func:`register` (built-in kinds cannot be removed).

    Raises
    ------
    ValueError
        For a built-in kind; ``KeyError`` for an unknown one.
    """
    if any(k.name == name for k in _BUILT_IN):
        raise ValueError(f"kind {name} is built in")
    del _REGISTRY[name]
    for source in _ADDED_COLUMNS.pop(name, []):
        spec = contract.TABLES[source.table]
        contract.TABLES[source.table] = contract.without_column(spec, source.column)


@contextmanager
def registered(new: IdentifierKind) -> Iterator[IdentifierKind]:
    """Register ``new`` for the duration of a ``with`` block (tests, notebooks)."""
    register(new)
    try:
        yield new
    finally:
        unregister(new.name)
