"""What a signal is, the evidence it is computed from, and the registry of signals.

A *signal* is one piece of ring evidence (shared proxy IPs spread over many subnets, a family
of shared prompt templates, signup bursts, lockstep traffic ...). Each one is a
:class:`Signal` subclass that declares its name, its level (``account``: an account can show
it by itself; ``cluster``: only its cluster can), its default weight in the score, how it is
computed from the run's evidence (:class:`EvidenceInputs`) and how it explains itself in a
reason. Signals are combined by their :class:`SignalGroup` (``identity`` or ``behaviour``),
which owns the rule that turns values into score terms. Scoring sums what the registered
signals give; nothing else lists them. ``tests/test_signals.py`` adds a toy signal through the
registry alone and sees it in the score and in ``linker explain``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import gammainc

from linker.graph.bursts import key_bursts, window_counts

if TYPE_CHECKING:
    from linker.graph.bipartite import Bipartite
    from linker.settings import LinkSettings

__all__ = [
    "EvidenceInputs",
    "GroupTerms",
    "Level",
    "Signal",
    "SignalGroup",
    "SignalValues",
    "all_signals",
    "default_weights",
    "group",
    "groups",
    "organisation_guard",
    "register_group",
    "register_signal",
    "registered_signal",
    "signal",
    "unregister_signal",
    "values_from_columns",
    "values_to_columns",
]

logger = logging.getLogger(__name__)

Level = Literal["account", "cluster"]


@dataclass(frozen=True)
class SignalValues:
    """What one signal found.

    Attributes
    ----------
    cluster : numpy.ndarray
        Per cluster (0..c-1), the signal's value in [0, 1].
    account : numpy.ndarray or None
        Per account row (every account; 0 outside clusters), its own value in [0, 1];
        ``None`` for a cluster-level signal.
    detail : dict of str to numpy.ndarray
        Per-cluster counts behind the value, for reasons and the cluster evidence table.
    account_detail : dict of str to numpy.ndarray
        Per-account-row numbers behind the value, for reasons and the evidence table.
    """

    cluster: np.ndarray
    account: np.ndarray | None = None
    detail: dict[str, np.ndarray] = field(default_factory=dict)
    account_detail: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EvidenceInputs:
    """Everything a signal may be computed from, for one run.

    Attributes
    ----------
    bipartite : Bipartite
        The account × identifier matrix (accounts in the accounts table's order).
    weights, supernode : numpy.ndarray
        Per identifier, the evidence weight and the super-node flag.
    cluster_of : numpy.ndarray
        Per account row, its cluster (``-1`` when none).
    n_clusters : int
    customer_of : numpy.ndarray
        Per account row, its paying customer (component over the customer kinds).
    link_weight : scipy.sparse.csr_matrix
        Account link weights after the minimum-weight cut.
    created : numpy.ndarray
        Per account row, signup time in epoch seconds.
    settings : LinkSettings
    behaviour : pandas.DataFrame or None
        Per account row, behaviour features (None without events or with behaviour off).
    lockstep : pandas.DataFrame or None
        Lockstep pairs (``a``, ``b`` rows, ``jaccard``, ``bucket_minutes``).
    values : dict of str to SignalValues
        Signals computed so far (a signal may build on earlier ones).
    """

    bipartite: Bipartite
    weights: np.ndarray
    supernode: np.ndarray
    cluster_of: np.ndarray
    n_clusters: int
    customer_of: np.ndarray
    link_weight: sp.csr_matrix
    created: np.ndarray
    settings: LinkSettings
    behaviour: pd.DataFrame | None = None
    lockstep: pd.DataFrame | None = None
    values: dict[str, SignalValues] = field(default_factory=dict)

    @property
    def n_accounts(self) -> int:
        """Accounts (rows)."""
        return len(self.cluster_of)

    @cached_property
    def rows(self) -> np.ndarray:
        """Rows of the clustered accounts."""
        return np.flatnonzero(self.cluster_of >= 0)

    @cached_property
    def burst_peers(self) -> np.ndarray:
        """Per account row, members of its cluster created within the burst window."""
        window = self.settings.burst_window_minutes * 60.0
        rows = self.rows
        peers = np.zeros(self.n_accounts, dtype=np.int64)
        peers[rows] = window_counts(self.cluster_of[rows], self.created[rows], window)
        return peers

    @cached_property
    def key_burst(self) -> np.ndarray:
        """Per account row, whether it signed up in a burst along some burst key."""
        b = self.bipartite
        keys = np.flatnonzero(np.isin(b.kinds, list(self.settings.burst_kinds)))
        return key_bursts(
            b.matrix,
            keys,
            b.n_accounts[keys],
            self.created,
            self.settings.burst_window_minutes * 60.0,
            min_accounts=self.settings.burst_min_accounts,
            excess=self.settings.burst_excess,
        )

    @cached_property
    def size(self) -> np.ndarray:
        """Accounts per cluster."""
        return np.bincount(self.cluster_of[self.rows], minlength=self.n_clusters).astype(np.int64)

    @cached_property
    def memberships(self) -> pd.DataFrame:
        """Every (clustered account, identifier) edge with the members sharing the value.

        Columns ``row``, ``cluster``, ``identifier``, ``kind``, ``in_cluster`` (members of
        the cluster holding it), ``excess``: at least two members hold it, far more than
        chance predicts (the Poisson tail of ``in_cluster``, its mean being the cluster's size
        times the value's share of all accounts, is below ``link.public_alpha``), and
        ``owned``: in excess and not a public value. A ring split between two clusters still
        "owns" its templates; a public proxy exit most of a ring rotates through is in excess.
        """
        rows, clusters = self.rows, self.cluster_of[self.rows]
        member = sp.csr_matrix(
            (np.ones(len(rows)), (clusters, rows)), shape=(self.n_clusters, self.n_accounts)
        )
        held = (member @ self.bipartite.matrix).tocsr()
        held.sum_duplicates()
        sub = self.bipartite.matrix[rows].tocoo()
        ident = sub.col.astype(np.int64)
        acc_cluster = clusters[sub.row]
        in_cluster = (
            np.asarray(held[acc_cluster, ident]).ravel().astype(np.int64)
            if len(ident)
            else np.zeros(0, dtype=np.int64)
        )
        n_global = self.bipartite.n_accounts[ident]
        expected = self.size[acc_cluster] * n_global / max(self.n_accounts, 1)
        tail = gammainc(in_cluster, expected) if len(ident) else np.zeros(0)
        excess = (in_cluster >= 2) & (tail < self.settings.public_alpha)
        owned = excess & ~self.supernode[ident]
        return pd.DataFrame(
            {
                "row": rows[sub.row],
                "cluster": acc_cluster,
                "identifier": ident,
                "kind": self.bipartite.kinds[ident],
                "in_cluster": in_cluster,
                "excess": excess,
                "owned": owned,
            }
        )

    def per_cluster(self, counts: pd.Series, fill: float | str = 0) -> np.ndarray:
        """A per-cluster group-by result as an array over 0..c-1."""
        return counts.reindex(pd.RangeIndex(self.n_clusters), fill_value=fill).to_numpy()

    def cluster_mean(self, per_account: np.ndarray) -> np.ndarray:
        """The members' mean of a per-account value, per cluster."""
        sums = np.bincount(
            self.cluster_of[self.rows], weights=per_account[self.rows], minlength=self.n_clusters
        )
        return np.asarray(sums / np.maximum(self.size, 1), dtype=np.float64)


class Signal(ABC):
    """One piece of ring evidence that computes and explains itself.

    Subclasses set the class attributes and implement :meth:`compute`; :meth:`cluster_reason`
    and :meth:`account_reason` say nothing unless overridden.
    """

    name: ClassVar[str]
    """The signal's name: its ``link.score_weights`` key and its evidence column."""
    level: ClassVar[Level]
    """``account`` when an account can show it by itself, ``cluster`` when only a cluster can."""
    group: ClassVar[str] = "identity"
    """The :class:`SignalGroup` that turns its values into score terms."""
    default_weight: ClassVar[float]
    """Its weight in the score unless ``link.score_weights`` says otherwise."""
    description: ClassVar[str] = ""
    """What it measures, for the documentation."""
    routine: ClassVar[bool] = False
    """An organisation shows it as routine (a class signs up together, a company's cron jobs
    run in step on its templates): it counts only as far as the cluster's traffic comes
    through a spread-out proxy pool (:func:`organisation_guard`)."""
    spread_counts_as: ClassVar[bool] = False
    """A cluster whose traffic comes through a spread-out proxy pool shows this signal in
    full whatever its value: one payer speaks for a group only behind its own network (a
    ring billing every account to one customer still pays through many virtual cards)."""
    network_spread: ClassVar[bool] = False
    """It measures how far a cluster's shared addresses are spread over networks (the
    organisation guard reads it)."""
    code: ClassVar[str] = ""
    """Its reason code in the billing export's ``reason_codes`` (:mod:`linker.reasons`);
    ``""`` uses :attr:`name`. Declared here once: the export, the code table in
    docs/pipeline.md and its test read it from the registry."""
    count_means: ClassVar[str] = ""
    """What the count after its code is (:meth:`account_count`); ``""``: always 1."""

    @classmethod
    def reason_code(cls) -> str:
        """Its code in ``reason_codes``: :attr:`code`, or :attr:`name` when that is empty."""
        return cls.code or cls.name

    @classmethod
    def explains_accounts(cls) -> bool:
        """Whether it says something of single accounts (overrides :meth:`account_reason`),
        so that its code can appear in the export."""
        return cls.account_reason is not Signal.account_reason

    @abstractmethod
    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        """The signal's values for every cluster (and every account, at account level)."""

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        """What the signal says about one cluster (``""``: nothing worth saying)."""
        del inputs, values, cluster
        return ""

    def account_reason(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        """What the signal says about each of the given account rows (``""`` for nothing)."""
        del inputs, values
        return np.full(len(rows), "", dtype=object)

    def account_count(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        """The count after its code for each given row, where :meth:`account_reason` says
        something (what it counts is :attr:`count_means`); 1 unless overridden."""
        del inputs, values
        return np.ones(len(rows), dtype=np.int64)


@dataclass(frozen=True)
class GroupTerms:
    """A group's additions to the cluster and account logits.

    Attributes
    ----------
    cluster : numpy.ndarray
        Per cluster, added to the cluster logit.
    account : dict of str to numpy.ndarray
        Per signal, its term in each account row's logit (0 outside clusters).
    account_total : numpy.ndarray
        Per account row, the group's addition to the account logit.
    """

    cluster: np.ndarray
    account: dict[str, np.ndarray]
    account_total: np.ndarray


class SignalGroup(ABC):
    """The rule that turns a group of signals' values into score terms."""

    name: ClassVar[str]

    @abstractmethod
    def terms(
        self,
        signals: list[Signal],
        values: dict[str, SignalValues],
        weights: dict[str, float],
        inputs: EvidenceInputs,
    ) -> GroupTerms:
        """The group's logit terms."""

    def applies(self, inputs: EvidenceInputs) -> bool:
        """Whether the group's signals can be computed in this run."""
        del inputs
        return True

    def add_to(self, logit: np.ndarray, terms: GroupTerms) -> np.ndarray:
        """The account logits with the group's terms added."""
        return logit + terms.account_total

    def cluster_note(
        self,
        inputs: EvidenceInputs,
        values: dict[str, SignalValues],
        parts: list[str],
        cluster: int,
    ) -> str:
        """A group-level remark after its signals' reasons ``parts`` for one cluster."""
        del inputs, values, parts, cluster
        return ""


RESERVED_COLUMNS = frozenset({"account_id", "cluster", "logit", "n_accounts"})
"""Columns of the evidence artefacts that no signal may be named after."""

_SIGNALS: dict[str, Signal] = {}
_GROUPS: dict[str, SignalGroup] = {}
_BUILT_IN: set[str] = set()


def register_group(new: SignalGroup) -> SignalGroup:
    """Add a signal group (in scoring order)."""
    if new.name in _GROUPS:
        raise ValueError(f"signal group {new.name} is already registered")
    _GROUPS[new.name] = new
    return new


def register_signal(new: Signal, *, built_in: bool = False) -> Signal:
    """Add a signal to the registry (after those already registered).

    Raises
    ------
    ValueError
        When its name is taken, its group unknown or its level invalid.
    """
    if new.name in _SIGNALS:
        raise ValueError(f"signal {new.name} is already registered")
    if new.name in RESERVED_COLUMNS or not new.name.isidentifier():
        raise ValueError(f"signal name {new.name!r} is reserved or not an identifier")
    if new.group not in _GROUPS:
        raise ValueError(f"signal {new.name}: unknown group {new.group!r}")
    if new.level not in ("account", "cluster"):
        raise ValueError(f"signal {new.name}: level must be 'account' or 'cluster'")
    _SIGNALS[new.name] = new
    if built_in:
        _BUILT_IN.add(new.name)
    return new


def unregister_signal(name: str) -> None:
    """Remove a signal added by :func:`register_signal` (built-in signals stay)."""
    if name in _BUILT_IN:
        raise ValueError(f"signal {name} is built in")
    del _SIGNALS[name]


@contextmanager
def registered_signal(new: Signal) -> Iterator[Signal]:
    """Register ``new`` for the duration of a ``with`` block (tests, notebooks)."""
    register_signal(new)
    try:
        yield new
    finally:
        unregister_signal(new.name)


def all_signals() -> tuple[Signal, ...]:
    """Every registered signal, in registration order (the order of scores and reasons)."""
    return tuple(_SIGNALS.values())


def signal(name: str) -> Signal:
    """The registered signal called ``name``."""
    return _SIGNALS[name]


def groups() -> tuple[SignalGroup, ...]:
    """Every registered group, in scoring order."""
    return tuple(_GROUPS.values())


def group(name: str) -> SignalGroup:
    """The registered group called ``name``."""
    return _GROUPS[name]


def organisation_guard(values: dict[str, SignalValues], share: float) -> np.ndarray:
    """Per cluster, how much of its routine signals it may be credited with.

    One organisation (a family, a company, a class, a hackathon) sits behind its own
    network: a home, an office NAT, a campus, a venue. Its accounts signing up together,
    sharing templates, running in step or moving to a new model together is its routine. A
    ring reaches the API through a residential proxy pool: whatever addresses its members
    share, no one subnet holds most of them. The guard is ``1 − c`` rescaled so that it is
    full up to ``c = share`` and 0 at ``c = 1``, where ``c`` measures how far the members sit
    behind networks of their own (the ``network_share`` detail of the signal that
    declares ``network_spread``). A cluster that holds no address in excess has ``c = 0``.
    Without such a signal there is no guard.
    """
    tops = [
        v.detail["network_share"]
        for name, v in values.items()
        if _SIGNALS[name].network_spread and "network_share" in v.detail
    ]
    if not tops:
        return np.ones(len(next(iter(values.values())).cluster)) if values else np.ones(0)
    concentration = np.maximum.reduce(tops)
    guard = (1.0 - concentration) / max(1.0 - share, 1e-9)
    return np.asarray(np.clip(guard, 0.0, 1.0), dtype=np.float64)


def default_weights() -> dict[str, float]:
    """``link.score_weights``' defaults: every signal's default weight."""
    return {s.name: s.default_weight for s in all_signals()}


def values_to_columns(
    values: dict[str, SignalValues],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Signal values as the columns of the ``evidence`` (per account) and
    ``cluster_evidence`` (per cluster) artefacts: ``NAME`` for a value, ``NAME.DETAIL``
    for a number behind it."""
    account: dict[str, np.ndarray] = {}
    cluster: dict[str, np.ndarray] = {}
    for name, v in values.items():
        cluster[name] = v.cluster
        for key, column in v.detail.items():
            cluster[f"{name}.{key}"] = column
        if v.account is not None:
            account[name] = v.account
        for key, column in v.account_detail.items():
            account[f"{name}.{key}"] = column
    return account, cluster


def values_from_columns(
    signals: tuple[Signal, ...] | list[Signal], account: pd.DataFrame, cluster: pd.DataFrame
) -> dict[str, SignalValues]:
    """The inverse of :func:`values_to_columns`, for the given signals present."""
    out: dict[str, SignalValues] = {}
    for s in signals:
        if s.name not in cluster.columns:
            continue
        prefix = f"{s.name}."
        out[s.name] = SignalValues(
            cluster[s.name].to_numpy(),
            account=account[s.name].to_numpy() if s.name in account.columns else None,
            detail={
                c[len(prefix) :]: cluster[c].to_numpy()
                for c in cluster.columns
                if c.startswith(prefix)
            },
            account_detail={
                c[len(prefix) :]: account[c].to_numpy()
                for c in account.columns
                if c.startswith(prefix)
            },
        )
    return out
