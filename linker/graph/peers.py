"""Accounts tied by their own evidence to accounts suspended on theirs.

A ring holds accounts in reserve: opened with the ring's cards, devices, proxy exits and
mailbox patterns, then left idle. They send no traffic, so nothing behavioural speaks for or
against them, and their score rests on signup evidence alone. What gives them away is *whom*
they share that evidence with: specific members of their cluster that were suspended on
their own evidence. :func:`suspended_peer_ties` finds the accounts whose own shared values
reach such members through several independent kinds of evidence (a device *and* a signup
IP, a card *and* a mailbox pattern). One hop only: an account promoted here never promotes
another, so one wrong suspension cannot spread through a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from linker.graph.ownership import owned_values

__all__ = ["PeerTies", "suspended_peer_ties"]


@dataclass(frozen=True)
class PeerTies:
    """The outcome of :func:`suspended_peer_ties`.

    Attributes
    ----------
    promoted : numpy.ndarray of bool
        Per account row, tied to suspended members of its own cluster through at least
        ``min_families`` families of evidence (and not suspended itself).
    families : numpy.ndarray of int
        Per account row, how many families of its own evidence reach suspended members of
        its cluster.
    shared : pandas.DataFrame
        For the promoted accounts: ``row``, ``identifier`` and ``suspended`` (how many
        suspended members of its cluster hold it), strongest first per account.
    """

    promoted: np.ndarray
    families: np.ndarray
    shared: pd.DataFrame


def _canonical(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` as CSR with sorted column indices and no duplicates, so that sampling
    entries (``matrix[rows, cols]``) binary-searches each row instead of scanning it (a row
    of a large cluster holds thousands of values)."""
    out = matrix.tocsr(copy=True)
    out.sum_duplicates()
    return out


def suspended_peer_ties(
    incidence: sp.csr_matrix,
    usable: np.ndarray,
    family: np.ndarray,
    weights: np.ndarray,
    cluster_of: np.ndarray,
    suspended: np.ndarray,
    *,
    min_families: int = 2,
    alpha: float | None = None,
) -> PeerTies:
    """Which clustered accounts share their own evidence with suspended members of their
    cluster through at least ``min_families`` families.

    Parameters
    ----------
    incidence : scipy.sparse.csr_matrix
        Accounts × identifiers.
    usable : numpy.ndarray of bool
        Per identifier, whether it may tie accounts (it carries weight and is not public).
    family : numpy.ndarray of int
        Per identifier, its kind's family (network, payment, e-mail, device, prompt...).
    weights : numpy.ndarray
        Per identifier, its evidence weight (orders the shared values).
    cluster_of : numpy.ndarray of int
        Per account row, its cluster (``-1`` when none).
    suspended : numpy.ndarray of bool
        Per account row, suspended on its own evidence.
    min_families : int, default 2
        Families of shared evidence needed.
    alpha : float, optional
        When given, only values the cluster owns count
        (:func:`linker.graph.ownership.owned_values`): a popular template the ring sends
        too ties no stranger to it.

    Returns
    -------
    PeerTies

    Notes
    -----
    One sparse product of the cluster-membership matrix of the suspended accounts with the
    incidence matrix, then one pass over the clustered accounts' memberships:
    O(nnz(incidence)).

    Examples
    --------
    Accounts 0 and 1 are suspended; account 2 shares a device (family 0) and a signup IP
    (family 1) with them, account 3 only the device.

    >>> m = sp.csr_matrix(np.array([[1, 1], [1, 1], [1, 1], [1, 0]], dtype=float))
    >>> ties = suspended_peer_ties(
    ...     m, np.ones(2, dtype=bool), np.array([0, 1]), np.ones(2),
    ...     np.zeros(4, dtype=np.int64), np.array([True, True, False, False]))
    >>> ties.promoted.tolist(), ties.families.tolist()
    ([False, False, True, False], [2, 2, 2, 1])
    """
    n_accounts = incidence.shape[0]
    clustered = np.flatnonzero(cluster_of >= 0)
    n_clusters = int(cluster_of.max()) + 1 if len(clustered) else 0
    families = np.zeros(n_accounts, dtype=np.int64)
    empty = pd.DataFrame({"row": [], "identifier": [], "suspended": []}, dtype=np.int64)
    if n_clusters == 0 or not suspended.any():
        return PeerTies(np.zeros(n_accounts, dtype=bool), families, empty)
    source = clustered[suspended[clustered]]
    member = sp.csr_matrix(
        (np.ones(len(source)), (cluster_of[source], source)), shape=(n_clusters, n_accounts)
    )
    held = _canonical(member @ incidence)
    sub = incidence[clustered].tocoo()
    row = clustered[sub.row]
    ident = sub.col.astype(np.int64)
    keep = usable[ident]
    row, ident = row[keep], ident[keep]
    if alpha is not None:
        _, owned = owned_values(incidence, cluster_of, alpha)
        mine = (
            np.asarray(_canonical(owned)[cluster_of[row], ident]).ravel().astype(bool)
            if len(row)
            else np.zeros(0, dtype=bool)
        )
        row, ident = row[mine], ident[mine]
    if len(row) == 0:
        return PeerTies(np.zeros(n_accounts, dtype=bool), families, empty)
    peers = np.asarray(held[cluster_of[row], ident]).ravel().astype(np.int64)
    peers -= suspended[row].astype(np.int64)
    tie = peers > 0
    ties = pd.DataFrame(
        {
            "row": row[tie],
            "identifier": ident[tie],
            "family": family[ident[tie]],
            "suspended": peers[tie],
        }
    )
    per_row = ties.groupby("row")["family"].nunique()
    families[per_row.index.to_numpy()] = per_row.to_numpy()
    promoted = (families >= min_families) & ~suspended & (cluster_of >= 0)
    shared = ties[promoted[ties["row"].to_numpy()]]
    order = np.lexsort(
        (shared["identifier"].to_numpy(), -weights[shared["identifier"].to_numpy()], shared["row"])
    )
    shared = shared.iloc[order][["row", "identifier", "suspended"]].reset_index(drop=True)
    return PeerTies(promoted, families, shared.astype(np.int64))
