"""Weighted account–account projection of the bipartite graph.

Small groups (values shared by at most ``pair_max_accounts`` accounts) become explicit account
pairs. Larger, still linkable groups become hub nodes joined to their accounts, so a value
shared by ``n`` accounts costs ``n`` edges instead of ``n(n-1)/2``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from linker.graph.bipartite import Bipartite

__all__ = ["Projection", "enumerate_pairs", "project"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Projection:
    """The account graph used for community detection.

    Attributes
    ----------
    pair_a, pair_b, pair_identifier : numpy.ndarray
        One row per (account pair, shared small identifier); ``pair_a < pair_b`` (row indices).
    adjacency : scipy.sparse.csr_matrix
        Upper-triangular accounts × accounts matrix of summed pair weights (before the
        ``min_link_weight`` cut).
    hub_identifiers : numpy.ndarray
        Identifier indices represented as hub nodes.
    hub_matrix : scipy.sparse.csr_matrix
        Accounts × hubs matrix of edge weights (the hub identifier's weight).
    """

    pair_a: np.ndarray
    pair_b: np.ndarray
    pair_identifier: np.ndarray
    adjacency: sp.csr_matrix
    hub_identifiers: np.ndarray
    hub_matrix: sp.csr_matrix


def enumerate_pairs(
    csc: sp.csc_matrix, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All account pairs sharing each of ``columns`` (vectorised, no Python loop).

    Parameters
    ----------
    csc : scipy.sparse.csc_matrix
        Accounts × identifiers incidence matrix with sorted row indices.
    columns : numpy.ndarray
        Identifier columns to expand.

    Returns
    -------
    a, b, identifier : numpy.ndarray
        ``a < b`` row indices and the shared column, one row per pair and column.

    Notes
    -----
    O(sum of n_j^2) over the chosen columns; callers keep ``n_j`` small.

    Examples
    --------
    >>> m = sp.csc_matrix(np.array([[1.0], [1.0], [1.0]]))
    >>> [x.tolist() for x in enumerate_pairs(m, np.array([0]))]
    [[0, 0, 1], [1, 2, 2], [0, 0, 0]]
    """
    csc = csc.tocsc()
    csc.sort_indices()
    starts = csc.indptr[columns]
    sizes = csc.indptr[columns + 1] - starts
    total_members = int(sizes.sum())
    if total_members == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    group_of = np.repeat(np.arange(len(columns)), sizes)
    first = np.repeat(starts, sizes)
    position = np.arange(total_members) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    member = first + position
    partners = np.repeat(sizes, sizes) - 1 - position
    n_pairs = int(partners.sum())
    left = np.repeat(member, partners)
    offset = np.arange(n_pairs) - np.repeat(np.cumsum(partners) - partners, partners)
    right = left + 1 + offset
    a = csc.indices[left].astype(np.int64)
    b = csc.indices[right].astype(np.int64)
    identifier = columns[np.repeat(group_of, partners)].astype(np.int64)
    return a, b, identifier


def project(
    bipartite: Bipartite,
    weights: np.ndarray,
    is_supernode: np.ndarray,
    *,
    pair_max_accounts: int,
) -> Projection:
    """Project the bipartite graph onto accounts.

    Parameters
    ----------
    bipartite : Bipartite
    weights : numpy.ndarray
        Weight of each identifier (0 for kinds without a prior).
    is_supernode : numpy.ndarray
        Super-nodes create no links.
    pair_max_accounts : int
        Groups up to this size become pairs; larger ones become hubs.

    Returns
    -------
    Projection

    Notes
    -----
    O(sum over small groups of n^2 + sum over hubs of n): the quadratic part is bounded by
    ``pair_max_accounts`` times the number of memberships.
    """
    n = bipartite.n_accounts
    linkable = (weights > 0) & ~is_supernode & (n >= 2)
    small = np.flatnonzero(linkable & (n <= pair_max_accounts))
    hubs = np.flatnonzero(linkable & (n > pair_max_accounts))
    csc = bipartite.matrix.tocsc()
    a, b, identifier = enumerate_pairs(csc, small)
    n_acc = bipartite.shape[0]
    adjacency = sp.csr_matrix((weights[identifier], (a, b)), shape=(n_acc, n_acc))
    adjacency.sum_duplicates()
    hub_matrix = (csc[:, hubs] @ sp.diags(weights[hubs])).tocsr()
    logger.debug(
        "projection: %d pair rows, %d linked pairs, %d hubs", len(a), adjacency.nnz, len(hubs)
    )
    return Projection(
        pair_a=a,
        pair_b=b,
        pair_identifier=identifier,
        adjacency=adjacency,
        hub_identifiers=hubs,
        hub_matrix=hub_matrix,
    )
