"""From evidence to decisions: scores, actions, cluster ids and the shared-value reasons.

The signals (:mod:`linker.signals`) say how ring-like each cluster and account is; this
module turns their logits into scores and actions, numbers the clusters, and writes the part
of every reason that cites concrete shared values ("shares card X with 3 accounts ... of
cluster C-0003 (547 accounts)").
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from linker import kinds
from linker.graph.bipartite import Bipartite
from linker.kinds import reason_label
from linker.reasons import IN_CLUSTER

__all__ = [
    "actions",
    "cluster_labels",
    "confirm_membership",
    "kind_reason_code",
    "logistic",
    "shared_evidence",
    "shared_value_explanations",
    "shared_value_reasons",
]

logger = logging.getLogger(__name__)


def kind_reason_code(name: str) -> str:
    """The reason code of a shared value of kind ``name`` (:attr:`IdentifierKind.reason_code
    <linker.kinds.IdentifierKind.reason_code>`; ``shared_<name>`` for an unregistered kind)."""
    try:
        return kinds.kind(name).reason_code
    except KeyError:
        return f"shared_{name}"


def logistic(x: np.ndarray) -> np.ndarray:
    """The logistic function, vectorised.

    Examples
    --------
    >>> logistic(np.array([0.0])).tolist()
    [0.5]
    """
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def actions(
    score: np.ndarray, clustered: np.ndarray, *, suspend_at: float, review_at: float
) -> np.ndarray:
    """``suspend``, ``review`` or ``none`` per account; accounts outside clusters get none.

    Examples
    --------
    >>> actions(np.array([0.9, 0.6, 0.9]), np.array([True, True, False]),
    ...         suspend_at=0.8, review_at=0.5).tolist()
    ['suspend', 'review', 'none']
    """
    out = np.full(len(score), "none", dtype=object)
    out[score >= review_at] = "review"
    out[score >= suspend_at] = "suspend"
    out[~clustered] = "none"
    return out


def confirm_membership(cluster_of: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """Clusters confirmed by the accounts their evidence flags.

    A cluster is the evidence that its members act together. In a cluster where some members
    are flagged, a member that its own score leaves unflagged is not evidence of the ring:
    listing it as a member mislabels it (an analyst reads "member of ring C-0007"). Such
    members are released (``-1``). Clusters with no flagged member (a family, a company) are
    kept whole, and cluster numbers are unchanged.

    Parameters
    ----------
    cluster_of : numpy.ndarray of int
        Cluster per account, ``-1`` for none.
    flagged : numpy.ndarray of bool
        Per account, whether its score flags it (suspend or review).

    Returns
    -------
    numpy.ndarray of int64
        The confirmed cluster per account.

    Notes
    -----
    O(n) for n accounts.

    Examples
    --------
    Cluster 0 has two flagged members and an unflagged one; cluster 1 has none flagged.

    >>> confirm_membership(np.array([0, 0, 0, 1, 1, 1, -1]),
    ...                    np.array([True, True, False, False, False, False, True])).tolist()
    [0, 0, -1, 1, 1, 1, -1]
    """
    cluster_of = np.asarray(cluster_of, dtype=np.int64)
    clustered = cluster_of >= 0
    if not clustered.any():
        return cluster_of.copy()
    n_clusters = int(cluster_of.max()) + 1
    has_flagged = np.bincount(cluster_of[clustered & flagged], minlength=n_clusters) > 0
    keep = clustered & (flagged | ~has_flagged[np.maximum(cluster_of, 0)])
    return np.where(keep, cluster_of, -1)


def cluster_labels(score: np.ndarray, size: np.ndarray, first_id: np.ndarray) -> np.ndarray:
    """Cluster ids ``C-0001`` ...: highest score first, then largest, then by first account.

    Parameters
    ----------
    score, size : numpy.ndarray
        Per cluster index.
    first_id : numpy.ndarray
        Per cluster index, its smallest account id.

    Returns
    -------
    numpy.ndarray of str
        The id of each cluster index (at least four digits).

    Examples
    --------
    >>> cluster_labels(np.array([0.2, 0.9]), np.array([3, 3]), np.array(["a", "b"])).tolist()
    ['C-0002', 'C-0001']
    """
    n = len(score)
    order = np.lexsort((first_id.astype(str), -size, -score))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    width = max(4, len(str(n)))
    label = np.array([f"C-{i + 1:0{width}d}" for i in range(n)], dtype=object)
    return label[rank] if n else label


def shared_evidence(bipartite: Bipartite, cluster_of: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
    """The identifiers each given account shares with other members of its cluster.

    Parameters
    ----------
    bipartite : Bipartite
    cluster_of : numpy.ndarray
        Cluster per account row (``-1`` when none).
    rows : numpy.ndarray
        Clustered account rows to describe.

    Returns
    -------
    pandas.DataFrame
        ``row``, ``identifier``, ``in_cluster`` (members of the row's cluster holding it,
        at least 2).

    Notes
    -----
    O(nnz of the rows' clusters' members): one sparse product over those clusters only.
    """
    rows = np.asarray(rows, dtype=np.int64)
    clusters, local = np.unique(cluster_of[rows], return_inverse=True)
    members = np.flatnonzero(np.isin(cluster_of, clusters))
    member_local = np.searchsorted(clusters, cluster_of[members])
    indicator = sp.csr_matrix(
        (np.ones(len(members)), (member_local, members)),
        shape=(len(clusters), bipartite.shape[0]),
    )
    held = (indicator @ bipartite.matrix).tocsr()
    # Sorted, summed indices: each (cluster, identifier) look-up below is a binary search.
    held.sum_duplicates()
    sub = bipartite.matrix[rows].tocoo()
    ident = sub.col.astype(np.int64)
    in_cluster = (
        np.asarray(held[local[sub.row], ident]).ravel().astype(np.int64)
        if len(ident)
        else np.zeros(0, dtype=np.int64)
    )
    frame = pd.DataFrame({"row": rows[sub.row], "identifier": ident, "in_cluster": in_cluster})
    return frame[frame["in_cluster"] >= 2].reset_index(drop=True)


def shared_value_reasons(
    bipartite: Bipartite,
    shared: pd.DataFrame,
    accounts: pd.DataFrame,
    priors: dict[str, float],
    *,
    max_reasons: int,
) -> pd.Series:
    """The shared-value part of each given account's reason.

    Parameters
    ----------
    bipartite : Bipartite
    shared : pandas.DataFrame
        :func:`shared_evidence` of these accounts.
    accounts : pandas.DataFrame
        ``row``, ``cluster_id``, ``cluster_size`` of the accounts to explain.
    priors : dict
        Kind priors, used to rank evidence (stronger kinds first).
    max_reasons : int
        How many values to cite.

    Returns
    -------
    pandas.Series of str
        ``shares card X with 2 accounts, IP Y with 35 accounts of cluster C-0003 (547
        accounts)``, or ``in cluster C-0003 (547 accounts)`` without shared values; indexed
        by ``accounts.index``.

    Notes
    -----
    Vectorised string building; one group-by over the cited values of these accounts.
    """
    return shared_value_explanations(bipartite, shared, accounts, priors, max_reasons=max_reasons)[
        0
    ]


def _cited(
    bipartite: Bipartite,
    shared: pd.DataFrame,
    accounts: pd.DataFrame,
    priors: dict[str, float],
    max_reasons: int,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """The values a reason cites, strongest first: ``row``, ``kind``, ``value``,
    ``in_cluster``. With ``weights``, values that link (weight above zero) come before
    context values (feature-only kinds such as an e-mail domain)."""
    ev = shared[shared["row"].isin(accounts["row"])].copy()
    ident = ev["identifier"].to_numpy()
    # One hash pass over the kind names (Python strings), not a sort of them.
    prior = kinds.kind_lookup(bipartite.kinds[ident], priors, 0.0, dtype=np.float64)
    ev["rank_key"] = -(prior + 0.05) * np.log2(ev["in_cluster"].to_numpy())
    ev["context"] = weights[ident] <= 0 if weights is not None else False
    # Identifier columns are numbered in (kind, value) order: sorting by the number is
    # sorting by the strings, without comparing them.
    ev = ev.sort_values(["row", "context", "rank_key", "identifier"])
    ev = ev[ev.groupby("row").cumcount() < max_reasons]
    ev["kind"] = bipartite.kinds[ev["identifier"].to_numpy()]
    ev["value"] = bipartite.values[ev["identifier"].to_numpy()]
    return ev


def shared_value_explanations(
    bipartite: Bipartite,
    shared: pd.DataFrame,
    accounts: pd.DataFrame,
    priors: dict[str, float],
    *,
    max_reasons: int,
    weights: np.ndarray | None = None,
) -> tuple[pd.Series, pd.Series]:
    """:func:`shared_value_reasons` and the matching reason codes.

    Parameters
    ----------
    bipartite, shared, accounts, priors, max_reasons
        As for :func:`shared_value_reasons`.
    weights : numpy.ndarray, optional
        Evidence weight per identifier: values that link accounts (weight above zero) are
        cited before context values (feature-only kinds, such as an e-mail domain).

    Returns
    -------
    (pandas.Series of str, pandas.Series of str)
        The reason texts, and their codes (:mod:`linker.reasons`): one ``shared_<kind>:n``
        per cited kind, in citing order, ``n`` the most other members sharing one cited
        value of that kind; ``in_cluster:<size>`` when nothing is cited. Both indexed by
        ``accounts.index``.

    Examples
    --------
    The codes of an account citing a card shared with 3 others and two IPs:
    ``shared_payment:3;shared_ip:35``.
    """
    if accounts.empty:
        empty = pd.Series([], dtype="string", index=accounts.index)
        return empty, empty.copy()
    ev = _cited(bipartite, shared, accounts, priors, max_reasons, weights)
    labels = {k: reason_label(k) for k in ev["kind"].unique()}
    ev["text"] = (
        ev["kind"].map(labels).astype(str)
        + " "
        + ev["value"].astype(str)
        + " with "
        + (ev["in_cluster"] - 1).astype(str)
        + " accounts"
    )
    joined = ev.groupby("row")["text"].agg(lambda t: ", ".join(t))
    cited = joined.reindex(accounts["row"].to_numpy()).to_numpy()
    head = np.where(
        pd.isna(cited),
        "in cluster " + accounts["cluster_id"].astype(str).to_numpy(),
        "shares "
        + pd.Series(cited, dtype=object).fillna("").astype(str).to_numpy()
        + " of cluster "
        + accounts["cluster_id"].astype(str).to_numpy(),
    )
    head = head + " (" + accounts["cluster_size"].astype(str).to_numpy() + " accounts)"
    # Codes: one per cited kind, in citing order, with the most others sharing one value.
    ev["others"] = ev["in_cluster"] - 1
    ev["order"] = np.arange(len(ev))
    per_kind = ev.groupby(["row", "kind"], sort=False).agg(
        others=("others", "max"), order=("order", "min")
    )
    per_kind = per_kind.reset_index().sort_values(["row", "order"])
    code_of = {k: kind_reason_code(k) for k in per_kind["kind"].unique()}
    per_kind["code"] = (
        per_kind["kind"].map(code_of).astype(str) + ":" + per_kind["others"].astype(str)
    )
    coded = per_kind.groupby("row")["code"].agg(";".join)
    codes = coded.reindex(accounts["row"].to_numpy()).to_numpy()
    codes = np.where(
        pd.isna(codes),
        IN_CLUSTER.code + ":" + accounts["cluster_size"].astype(str).to_numpy(),
        pd.Series(codes, dtype=object).fillna("").astype(str).to_numpy(),
    )
    return (
        pd.Series(head, index=accounts.index, dtype="string"),
        pd.Series(codes, index=accounts.index, dtype="string"),
    )
