"""Reason codes: what the billing export says about an account instead of its evidence.

Every flagged account has two reasons. The *text* (``reasons``: ``shares card fp1 with 3
accounts ...``) names the concrete values and stays with the analysts: the run directory,
``linker explain`` and Neo4j. The *codes* (``reason_codes``: ``shared_payment:3;signup_burst:45``)
name only what kind of evidence it is and a count, and are what the takedown list carries:
billing needs the account and the decision, not the evidence's e-mail addresses or IPs.

The codes are not listed by hand. They come from the registries:

* each identifier kind (:mod:`linker.kinds`) gives ``shared_<kind>``
  (:attr:`linker.kinds.IdentifierKind.reason_code`);
* each signal that explains accounts (:mod:`linker.signals`) declares its
  :attr:`~linker.signals.Signal.code` and what its count means;
* the decision steps after scoring declare theirs below (:data:`IN_CLUSTER`,
  :data:`TIED_TO_SUSPENDED`, :data:`EMBEDDING_PROXIMITY`, :data:`ALLOWLISTED`), and so do the
  analysts' decisions (:data:`TIED_TO_CONFIRMED`, :data:`NEW_SINCE_CLEARED`, :data:`CONFIRMED`,
  :data:`CLEARED`; :mod:`linker.analyst`).

:func:`reason_codes` collects them; :func:`codes_markdown` renders the table in
docs/pipeline.md, which ``tests/test_reasons.py`` checks against the registries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "ALLOWLISTED",
    "CLEARED",
    "CODE_PATTERN",
    "CONFIRMED",
    "EMBEDDING_PROXIMITY",
    "IN_CLUSTER",
    "NEW_SINCE_CLEARED",
    "TIED_TO_CONFIRMED",
    "TIED_TO_SUSPENDED",
    "ReasonCode",
    "codes_markdown",
    "format_codes",
    "join_codes",
    "reason_codes",
]

logger = logging.getLogger(__name__)

CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
"""A code is lower_snake_case: it needs no quoting in CSV and no escaping in JSON."""


@dataclass(frozen=True)
class ReasonCode:
    """One reason code and what its count means.

    Attributes
    ----------
    code : str
        ``lower_snake_case``.
    source : str
        Where it comes from: ``kind <name>``, ``signal <name>`` or ``decision``.
    meaning : str
        What the code says about the account.
    count : str
        What the number after the colon counts.
    """

    code: str
    source: str
    meaning: str
    count: str


IN_CLUSTER = ReasonCode(
    "in_cluster",
    "decision",
    "flagged with its cluster; it shares no value the reason cites with other members",
    "accounts in the cluster",
)
TIED_TO_SUSPENDED = ReasonCode(
    "tied_to_suspended",
    "decision",
    "suspended because its own evidence ties it to suspended members of its cluster "
    "(`link.suspend_with_peers`)",
    "the most suspended members holding one of the values it shares with them",
)
EMBEDDING_PROXIMITY = ReasonCode(
    "embedding_proximity",
    "decision",
    "moved to review: its graph embedding is near a flagged cluster (`link.embedding`)",
    "identifiers it shares with that cluster",
)
ALLOWLISTED = ReasonCode(
    "allowlisted",
    "decision",
    "on the allow-list (action `none`); the codes after it are those it would have had",
    "always 1",
)
TIED_TO_CONFIRMED = ReasonCode(
    "tied_to_confirmed",
    "analyst decision",
    "moved to review: its own evidence ties it to a member of its cluster an analyst "
    "confirmed (`run.decisions`)",
    "confirmed members it shares a value with",
)
NEW_SINCE_CLEARED = ReasonCode(
    "new_since_cleared",
    "analyst decision",
    "an analyst cleared it, and evidence that did not exist then flags it again; the codes "
    "after it are its evidence",
    "values it shares with its cluster that are new since the clearing",
)
CONFIRMED = ReasonCode(
    "confirmed",
    "analyst decision",
    "an analyst confirmed it (its action is the engine's); the codes after it are its evidence",
    "always 1",
)
CLEARED = ReasonCode(
    "cleared",
    "analyst decision",
    "an analyst cleared it and nothing new has appeared since (action `none`); the codes "
    "after it are those it would have had",
    "always 1",
)
_DECISIONS: tuple[ReasonCode, ...] = (
    IN_CLUSTER,
    TIED_TO_SUSPENDED,
    EMBEDDING_PROXIMITY,
    TIED_TO_CONFIRMED,
    NEW_SINCE_CLEARED,
    CONFIRMED,
    CLEARED,
    ALLOWLISTED,
)


def reason_codes() -> tuple[ReasonCode, ...]:
    """Every code the export can carry: the kinds' ``shared_<kind>`` codes (in kind order),
    the codes of the signals that explain accounts (in registry order), then the decision
    codes.

    Raises
    ------
    ValueError
        When two sources declare the same code or a code is not ``lower_snake_case`` (a
        registration that would make the export ambiguous).
    """
    from linker import kinds
    from linker.signals import all_signals

    found: list[ReasonCode] = []
    for k in kinds.all_kinds():
        found.append(
            ReasonCode(
                k.reason_code,
                f"kind {k.name}",
                f"shares the same {k.reason_label} as other members of its cluster",
                f"the most other members sharing one {k.reason_label} value with it",
            )
        )
    for s in all_signals():
        if s.explains_accounts():
            found.append(
                ReasonCode(
                    s.reason_code(),
                    f"signal {s.name}",
                    _summary(s),
                    s.count_means or "1",
                )
            )
    found.extend(_DECISIONS)
    seen: dict[str, str] = {}
    for c in found:
        if not CODE_PATTERN.match(c.code):
            raise ValueError(f"reason code {c.code!r} ({c.source}) must be lower_snake_case")
        if c.code in seen:
            raise ValueError(f"reason code {c.code} is declared by {seen[c.code]} and {c.source}")
        seen[c.code] = c.source
    return tuple(found)


def _summary(s: object) -> str:
    """The first paragraph of a signal class's docstring, on one line."""
    doc = (type(s).__doc__ or "").strip().split("\n\n")[0]
    return " ".join(doc.split()) or str(getattr(s, "name", ""))


def format_codes(pairs: Iterable[tuple[str, int]]) -> str:
    """``code:count`` pairs joined by ``;`` (no spaces), in the given order.

    Examples
    --------
    >>> format_codes([("shared_payment", 3), ("signup_burst", 45)])
    'shared_payment:3;signup_burst:45'
    """
    return ";".join(f"{code}:{int(count)}" for code, count in pairs)


def join_codes(left: np.ndarray | pd.Series, right: np.ndarray | pd.Series) -> np.ndarray:
    """Element-wise ``left;right``, leaving out empty sides."""
    a = pd.Series(np.asarray(left, dtype=object)).fillna("").astype(str).to_numpy(dtype=object)
    b = pd.Series(np.asarray(right, dtype=object)).fillna("").astype(str).to_numpy(dtype=object)
    both = (a != "") & (b != "")
    out = np.where(a == "", b, np.where(b == "", a, a))
    out = out.astype(object)
    out[both] = a[both] + ";" + b[both]
    return out


def codes_markdown() -> str:
    """The table of :func:`reason_codes` as Markdown (docs/pipeline.md holds a copy)."""
    lines = ["| code | from | meaning | count |", "|---|---|---|---|"]
    for c in reason_codes():
        lines.append(f"| `{c.code}` | {c.source} | {c.meaning} | {c.count} |")
    return "\n".join(lines) + "\n"
