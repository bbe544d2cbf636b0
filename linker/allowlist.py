"""Allow-lists: accounts that are never flagged, whatever their links say.

An allow-list is a small UTF-8 text file with one ``kind,value`` entry per line::

    # known-good customers (comments and blank lines are ignored)
    kind,value
    account_id,A-000042
    email_domain,example.edu
    ip,198.51.100.7
    cidr,203.0.113.0/24
    billing_customer_id,cus_8812

The header line ``kind,value`` is optional (it must come before the first entry). Kinds:

``account_id``
    the account itself;
``email_domain``
    accounts whose e-mail address is at that domain (case-insensitive, exact domain: an
    entry ``example.edu`` does not cover ``mail.example.edu``);
``ip``
    accounts whose **signup** IP is that address;
``cidr``
    accounts whose **signup** IP lies in that network (IPv4 or IPv6, e.g. ``10.0.0.0/8``);
``billing_customer_id``
    every account billed to that customer.

IP entries look at the signup IP only, not at the IPs seen in events: a ring that routes some
requests through an allow-listed network must not escape by doing so.

Allow-listing happens after linking and scoring: the graph, the clusters and the scores of other
accounts are unchanged; an allow-listed account gets ``action = "none"`` and a reason
``allow-listed (<kind> <value>)``. The number *spared* is the number of allow-listed accounts that
would otherwise have been flagged (``suspend`` or ``review``); their reason keeps what they
would have been, e.g. ``allow-listed (email_domain uni.edu); would be suspend: shared card ...``.
Its reason codes (:mod:`linker.reasons`) are ``allowlisted:1``, followed by the codes it would
have had.
"""

from __future__ import annotations

import csv
import hashlib
import ipaddress
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from linker.errors import InputError
from linker.io.files import read_bounded
from linker.reasons import ALLOWLISTED

__all__ = [
    "KINDS",
    "MAX_ALLOWLIST_BYTES",
    "AllowList",
    "AllowListOutcome",
    "apply_allowlist",
    "load_allowlist",
    "match_allowlist",
]

logger = logging.getLogger(__name__)

KINDS = ("account_id", "email_domain", "ip", "cidr", "billing_customer_id")

MAX_ALLOWLIST_BYTES = 64 << 20
"""The largest allow-list read (64 MiB, about a million entries); a larger file is rejected."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AllowList:
    """The parsed entries of an allow-list file, grouped by kind.

    Attributes
    ----------
    account_ids, email_domains, ips, billing_customer_ids : frozenset of str
        Normalised values (domains lower-case, IPs in compressed form).
    networks : tuple of ip networks
        The ``cidr`` entries.
    source : str
        The file the entries came from ("" when built in code).
    sha256 : str
        Hash of that file's bytes ("" when built in code).
    """

    account_ids: frozenset[str] = frozenset()
    email_domains: frozenset[str] = frozenset()
    ips: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    billing_customer_ids: frozenset[str] = frozenset()
    source: str = ""
    sha256: str = field(default="", compare=False)

    def __len__(self) -> int:
        return (
            len(self.account_ids)
            + len(self.email_domains)
            + len(self.ips)
            + len(self.networks)
            + len(self.billing_customer_ids)
        )

    def counts(self) -> dict[str, int]:
        """Number of entries of each kind (for the run manifest)."""
        return {
            "account_id": len(self.account_ids),
            "email_domain": len(self.email_domains),
            "ip": len(self.ips),
            "cidr": len(self.networks),
            "billing_customer_id": len(self.billing_customer_ids),
        }


@dataclass(frozen=True)
class AllowListOutcome:
    """What applying an allow-list changed.

    Attributes
    ----------
    scores : pandas.DataFrame
        The scores with allow-listed accounts set to ``action = "none"``.
    n_matched : int
        Accounts that match at least one entry.
    n_spared : int
        Matched accounts that would otherwise have been flagged (suspend or review).
    """

    scores: pd.DataFrame
    n_matched: int
    n_spared: int


def _read_text(path: Path) -> tuple[bytes, str]:
    """The file's bytes (a regular file, read within :data:`MAX_ALLOWLIST_BYTES`) and its
    UTF-8 text (a BOM is dropped); InputError if unreadable."""
    raw = read_bounded(path, MAX_ALLOWLIST_BYTES, "allow-list")
    try:
        return raw, raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: allow-list is not UTF-8 text") from None


def _entries(path: Path, text: str) -> Iterator[tuple[str, str, str]]:
    """``(where, kind, value)`` of each entry line, in file order, checked for shape.

    Comment and blank lines are skipped, and so is a ``kind,value`` header on the first
    other line. ``where`` names the file and line for messages.
    """
    first = True  # the optional header may only be the first non-comment line
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        kind = row[0].strip().lower()
        if first and kind == "kind":
            first = False
            continue
        first = False
        where = f"{path}: line {lineno}"
        if len(row) != 2:
            raise InputError(f"{where}: expected 'kind,value', got {len(row)} fields")
        value = row[1].strip()
        if kind not in KINDS:
            raise InputError(
                f"{where}, column kind: unknown kind {kind!r} (one of {', '.join(KINDS)})"
            )
        if not value:
            raise InputError(f"{where}, column value: empty value")
        yield where, kind, value


def _add_entry(
    values: dict[str, set[str]],
    networks: dict[str, IPNetwork],
    where: str,
    kind: str,
    value: str,
) -> None:
    """Normalise one entry and add it to ``values`` (by kind) or ``networks`` (by text)."""
    if kind == "cidr":
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise InputError(f"{where}, column value: {value!r} is not an IP network") from None
        networks[str(network)] = network
    elif kind == "ip":
        try:
            values["ip"].add(ipaddress.ip_address(value).compressed)
        except ValueError:
            raise InputError(f"{where}, column value: {value!r} is not an IP address") from None
    elif kind == "email_domain":
        values["email_domain"].add(value.lower().lstrip("@"))
    else:
        values[kind].add(value)


def load_allowlist(path: str | Path) -> AllowList:
    """Read an allow-list file (format in the module docstring).

    Parameters
    ----------
    path : str or Path
        The allow-list file.

    Returns
    -------
    AllowList

    Raises
    ------
    InputError
        Naming the file, the line and the reason for the first bad line (unknown kind,
        missing value, an IP or network that does not parse), or when the file is not a
        regular file (a directory, FIFO, device such as ``/dev/zero``), is unreadable, or is
        larger than :data:`MAX_ALLOWLIST_BYTES`. The file is never read past that size.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "allow.csv"
    >>> _ = p.write_text("kind,value\\nemail_domain,Example.EDU\\ncidr,10.0.0.0/8\\n")
    >>> allow = load_allowlist(p)
    >>> sorted(allow.email_domains), len(allow)
    (['example.edu'], 2)
    """
    path = Path(path)
    raw, text = _read_text(path)
    values: dict[str, set[str]] = {kind: set() for kind in KINDS if kind != "cidr"}
    networks: dict[str, IPNetwork] = {}
    for where, kind, value in _entries(path, text):
        _add_entry(values, networks, where, kind, value)
    allow = AllowList(
        account_ids=frozenset(values["account_id"]),
        email_domains=frozenset(values["email_domain"]),
        ips=frozenset(values["ip"]),
        networks=tuple(networks[key] for key in sorted(networks)),
        billing_customer_ids=frozenset(values["billing_customer_id"]),
        source=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    logger.info("allow-list %s: %s", path, allow.counts())
    return allow


def match_allowlist(accounts: pd.DataFrame, allow: AllowList) -> pd.Series:
    """The first matching entry of each account, as ``"<kind> <value>"`` (``<NA>`` if none).

    Parameters
    ----------
    accounts : pandas.DataFrame
        Validated accounts (account_id, email, signup_ip, billing_customer_id).
    allow : AllowList

    Returns
    -------
    pandas.Series
        Indexed like ``accounts``; string dtype. Kinds are tried in the order account_id,
        billing_customer_id, email_domain, ip, cidr.

    Notes
    -----
    O(n) for the set lookups; the ``cidr`` test is O(n·k) for k networks on the distinct
    signup IPs only.
    """
    matched = pd.Series(pd.NA, index=accounts.index, dtype="string")

    def fill(mask: pd.Series | np.ndarray, label: pd.Series) -> None:
        mask = np.asarray(mask, dtype=bool) & matched.isna().to_numpy()
        matched[mask] = label[mask]

    def column(name: str) -> pd.Series:
        if name in accounts.columns:
            return accounts[name].astype("string")
        return pd.Series(pd.NA, index=accounts.index, dtype="string")

    ids = column("account_id")
    fill(ids.isin(allow.account_ids).fillna(False), "account_id " + ids)
    billing = column("billing_customer_id")
    fill(billing.isin(allow.billing_customer_ids).fillna(False), "billing_customer_id " + billing)
    if allow.email_domains:
        domain = column("email").str.strip().str.lower().str.rpartition("@")[2]
        fill(domain.isin(allow.email_domains).fillna(False), "email_domain " + domain)
    if allow.ips or allow.networks:
        signup = column("signup_ip").str.strip()
        distinct = signup.dropna().unique()
        parsed: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None] = {}
        for raw in distinct:
            try:
                parsed[raw] = ipaddress.ip_address(raw)
            except ValueError:
                parsed[raw] = None
        ip_hits = {
            raw: f"ip {ip.compressed}"
            for raw, ip in parsed.items()
            if ip and ip.compressed in allow.ips
        }
        net_hits: dict[str, str] = {}
        for raw, ip in parsed.items():
            if ip is None:
                continue
            for network in allow.networks:
                if ip.version == network.version and ip in network:
                    net_hits[raw] = f"cidr {network}"
                    break
        for hits in (ip_hits, net_hits):
            if hits:
                label = signup.map(hits).astype("string")
                fill(label.notna(), label)
    return matched


def apply_allowlist(
    scores: pd.DataFrame,
    accounts: pd.DataFrame,
    allow: AllowList | None,
    *,
    describe: Callable[[str], str] | None = None,
) -> AllowListOutcome:
    """Set allow-listed accounts to ``action = "none"`` with an ``allow-listed (...)`` reason.

    Parameters
    ----------
    scores : pandas.DataFrame
        Per-account scores (account_id, score, action, reasons, ...).
    accounts : pandas.DataFrame
        Validated accounts, used to match domains, signup IPs and billing customers.
    allow : AllowList or None
        ``None`` or an empty list changes nothing.
    describe : callable, optional
        How a matched entry (``email_domain uni.edu``) appears in the reason; default as it
        is (``run.pseudonymise`` passes :meth:`linker.pseudonyms.Pseudonymiser.allowlist_entry`).

    Returns
    -------
    AllowListOutcome
        The new scores (a copy; scores and cluster membership are kept), the number of
        accounts matched and the number spared.

    Examples
    --------
    >>> scores = pd.DataFrame({"account_id": ["a", "b"], "score": [0.9, 0.8],
    ...     "action": ["suspend", "none"], "reasons": ["shared card", ""]})
    >>> accounts = pd.DataFrame({"account_id": ["a", "b"], "email": ["x@uni.edu", "y@uni.edu"],
    ...     "signup_ip": ["10.0.0.1", "10.0.0.2"], "billing_customer_id": ["c1", "c2"]})
    >>> out = apply_allowlist(scores, accounts, AllowList(email_domains=frozenset({"uni.edu"})))
    >>> out.n_matched, out.n_spared, list(out.scores["action"])
    (2, 1, ['none', 'none'])
    >>> out.scores["reasons"].iloc[0]
    'allow-listed (email_domain uni.edu); would be suspend: shared card'
    """
    if allow is None or len(allow) == 0:
        return AllowListOutcome(scores, 0, 0)
    matched_by_account = match_allowlist(accounts, allow)
    lookup = pd.Series(
        matched_by_account.to_numpy(), index=accounts["account_id"].astype("string").to_numpy()
    )
    lookup = lookup[~lookup.index.duplicated()]
    entry = scores["account_id"].astype("string").map(lookup).astype("string")
    if describe is not None:
        entry = entry.map(lambda e: describe(e) if isinstance(e, str) else e).astype("string")
    hit = entry.notna().to_numpy()
    out = scores.copy()
    was_flagged = out["action"].isin(["suspend", "review"]).to_numpy()
    previous = out["action"].astype("string") + ": " + out["reasons"].astype("string").fillna("")
    reason = "allow-listed (" + entry + ")"
    reason = reason.where(~was_flagged, reason + "; would be " + previous)
    out.loc[hit, "action"] = "none"
    out.loc[hit, "reasons"] = reason[hit]
    if "reason_codes" in out.columns:
        before = out["reason_codes"].astype("string").fillna("")
        code = pd.Series(f"{ALLOWLISTED.code}:1", index=out.index, dtype="string")
        code = code.where(~was_flagged | (before == ""), code + ";" + before)
        out["reason_codes"] = out["reason_codes"].astype("string")
        out.loc[hit, "reason_codes"] = code[hit]
    n_matched = int(hit.sum())
    n_spared = int((hit & was_flagged).sum())
    logger.info("allow-list matched %d accounts, spared %d flagged ones", n_matched, n_spared)
    return AllowListOutcome(out, n_matched, n_spared)
