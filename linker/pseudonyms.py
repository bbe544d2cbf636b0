"""Keyed pseudonyms for identifier values (``run.pseudonymise``).

A deployment that may not keep e-mail addresses, IPs or card fingerprints in the run
directory, in reasons or in Neo4j turns ``run.pseudonymise`` on (``linker run
--pseudonymise``). Each identifier value is then replaced, right after normalisation, by
``h:`` and the first 16 hex digits of its HMAC-SHA256 under a secret key, so everything built
from the observations (identifiers, clusters, reasons, links, evidence, run warnings, the
Neo4j graph) holds pseudonyms only. Equal values get equal pseudonyms, so linking, weights,
scores and the export are exactly those of a run on the raw values. An IP address keeps its
network: its pseudonym is its /24 (/48) network's pseudonym, ``/`` and the address's own
(``h:1f…/9c…``), so the proxy-spread signal and Neo4j's ``IN_SUBNET`` still see which
addresses share a network, never which network it is.

The key comes from the environment variable :data:`KEY_ENV` only: never from argv or a
settings file, never logged, never written. Runs record a key id (an HMAC of a fixed text,
which tells keys apart without revealing them) so that a resumed run cannot mix keys.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linker import kinds
from linker.errors import SettingsError
from linker.normalise import ip_array, mailbox_array, subnet_array, token_array

__all__ = [
    "DIGITS",
    "KEY_ENV",
    "MIN_KEY_BYTES",
    "PREFIX",
    "Pseudonymiser",
    "network_of",
]

logger = logging.getLogger(__name__)

KEY_ENV = "LINKER_PSEUDONYM_KEY"
"""The environment variable holding the key (at least :data:`MIN_KEY_BYTES` bytes)."""

MIN_KEY_BYTES = 16
"""A shorter key could be guessed: IPv4 space is only 2**32 values."""

PREFIX = "h:"
"""Every pseudonym starts with this."""

DIGITS = 16
"""Hex digits of the HMAC kept (64 bits: no collision to expect below billions of values)."""


@dataclass(frozen=True)
class Pseudonymiser:
    """Pseudonyms under one key (which its ``repr`` never shows).

    Examples
    --------
    >>> p = Pseudonymiser(b"0123456789abcdef")
    >>> p.value("anna@example.org") == p.value("anna@example.org"), len(p.value("x"))
    (True, 18)
    >>> p.ip("10.1.2.3").split("/")[0] == p.value("10.1.2.0/24")
    True
    """

    key: bytes = field(repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Pseudonymiser:
        """The pseudonymiser keyed by :data:`KEY_ENV`.

        Raises
        ------
        SettingsError
            When the variable is unset, empty or shorter than :data:`MIN_KEY_BYTES` bytes
            (the message names the variable, never its value).
        """
        env = os.environ if environ is None else environ
        raw = env.get(KEY_ENV, "")
        if not raw:
            raise SettingsError(
                [f"run.pseudonymise needs a key in the environment variable {KEY_ENV}"]
            )
        key = raw.encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise SettingsError(
                [f"{KEY_ENV} must hold at least {MIN_KEY_BYTES} bytes (it holds {len(key)})"]
            )
        return cls(key)

    @property
    def key_id(self) -> str:
        """Tells keys apart without revealing them (recorded in the run's manifest)."""
        return hmac.new(self.key, b"linker pseudonym key id", hashlib.sha256).hexdigest()[:12]

    def value(self, text: str) -> str:
        """The pseudonym of one value."""
        digest = hmac.new(self.key, text.encode("utf-8"), hashlib.sha256).hexdigest()
        return PREFIX + digest[:DIGITS]

    def ip(self, text: str) -> str:
        """The pseudonym of one canonical IP address: its network's pseudonym, ``/``, its
        own."""
        network = subnet_array(pa.array([text], pa.large_string()))[0].as_py() or ""
        return f"{self.value(network)}/{self.value(text)[len(PREFIX) :]}"

    def observations(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The observations table with every ``value`` replaced by its pseudonym (each
        distinct value hashed once; addresses of :func:`linker.kinds.ip_kinds` keep their
        network)."""
        out = frame.copy()
        if out.empty:
            return out
        values = out["value"].astype(str).to_numpy(dtype=object)
        is_ip = out["kind"].astype(str).isin(kinds.ip_kinds()).to_numpy()
        result = np.empty(len(values), dtype=object)
        for mask, one in ((is_ip, self.ip), (~is_ip, self.value)):
            if mask.any():
                codes, uniques = pd.factorize(values[mask])
                mapped = np.array([one(str(u)) for u in uniques], dtype=object)
                result[mask] = mapped[codes]
        out["value"] = pd.Series(result, index=out.index).astype(frame["value"].dtype)
        return out

    def account_columns(self, accounts: pd.DataFrame) -> pd.DataFrame:
        """The accounts table with its identifier columns (``email``, ``signup_ip``,
        ``device_id``) pseudonymised, as the Neo4j loader stores them: the mailbox, the
        address and the device id get the pseudonyms their identifier nodes have."""
        out = accounts.copy()
        for column, normaliser, one in (
            ("email", mailbox_array, self.value),
            ("signup_ip", ip_array, self.ip),
            ("device_id", token_array, self.value),
        ):
            if column not in out.columns:
                continue
            raw = out[column]
            present = raw.notna().to_numpy()
            text = pa.array(raw[present].astype(str).tolist(), pa.large_string())
            normal = np.asarray(normaliser(text).to_numpy(zero_copy_only=False), dtype=object)
            codes, uniques = pd.factorize(normal)
            mapped = np.array([one(str(u)) if u else None for u in uniques], dtype=object)
            values = np.full(len(out), None, dtype=object)
            values[present] = mapped[codes] if len(codes) else []
            out[column] = pd.array(values, dtype="string")
        return out

    def allowlist_entry(self, entry: str) -> str:
        """An allow-list match as reasons show it (``email_domain uni.edu``) with its value
        pseudonymised; an ``account_id`` entry is an account id and stays as it is."""
        kind, _, value = entry.partition(" ")
        if kind == "account_id" or not value:
            return entry
        return f"{kind} {self.value(value)}"


def recorded_key_id(manifest: Mapping[str, Any]) -> str | None:
    """The id of the pseudonym key a finished run's observations were made with (its
    manifest's ``normalise`` stage notes it), or ``None`` for a run on raw values."""
    facts = manifest.get("stages", {}).get("normalise", {}).get("facts", {})
    key_id: str | None = facts.get("pseudonym_key_id")
    return key_id


def network_of(values: pa.Array) -> pa.Array:
    """The network of each address, raw (:func:`linker.normalise.subnet_array`) or
    pseudonymised (the part of its pseudonym before ``/``); ``""`` for neither.

    Examples
    --------
    >>> network_of(pa.array(["10.1.2.3", "h:0123456789abcdef/fedcba9876543210"])).to_pylist()
    ['10.1.2.0/24', 'h:0123456789abcdef']
    """
    text = pc.cast(values, pa.large_string())
    pseudonym = pc.fill_null(pc.match_substring_regex(text, f"^{PREFIX}[0-9a-f]+/"), False)
    if not pc.any(pseudonym).as_py():
        return subnet_array(text)
    raw = subnet_array(text)
    head = pc.replace_substring_regex(text, "/.*$", "")
    return pc.if_else(pseudonym, head, raw)
