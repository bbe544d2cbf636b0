"""Strong-link components and community detection on the account graph.

Accounts joined by a strong identifier (an exact card, billing customer or mailbox) are first
contracted into one node, so community detection can never split them. The contracted graph
(weighted account links plus hub nodes for larger groups) is then partitioned with Leiden
(``leidenalg``, modularity objective with a resolution, fixed seed): see docs/linking.md for
the measured comparison with igraph, networkit and networkx.
"""

from __future__ import annotations

import logging
from typing import Literal

import igraph as ig
import leidenalg
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["components_over", "detect_communities", "partition_graph", "prune_weak_members"]

logger = logging.getLogger(__name__)

Method = Literal["leidenalg", "igraph"]


def components_over(incidence: sp.csr_matrix, columns: np.ndarray) -> np.ndarray:
    """Connected components of accounts joined through any of ``columns``.

    Parameters
    ----------
    incidence : scipy.sparse.csr_matrix
        Accounts × identifiers incidence matrix.
    columns : numpy.ndarray
        Identifier columns that join accounts.

    Returns
    -------
    numpy.ndarray of int64
        Component label per account (``0..k-1``, ordered by first account).

    Notes
    -----
    O(n + m) with scipy's connected components on the bipartite block matrix; no pairs.
    """
    n_acc = incidence.shape[0]
    sub = incidence[:, columns]
    n_cols = sub.shape[1]
    coo = sp.coo_matrix(sub)
    size = n_acc + n_cols
    block = sp.csr_matrix(
        (
            np.concatenate([coo.data, coo.data]),
            (
                np.concatenate([coo.row, n_acc + coo.col]),
                np.concatenate([n_acc + coo.col, coo.row]),
            ),
        ),
        shape=(size, size),
    )
    if block.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, labels = connected_components(block, directed=False)
    labels = labels[:n_acc]
    # Relabel in order of first appearance so labels do not depend on scipy internals.
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return np.asarray(order[inverse], dtype=np.int64)


def partition_graph(
    n_nodes: int,
    edges: np.ndarray,
    weights: np.ndarray,
    *,
    resolution: float = 1.0,
    seed: int = 42,
    method: Method = "igraph",
) -> np.ndarray:
    """Leiden communities of a weighted undirected graph.

    Parameters
    ----------
    n_nodes : int
    edges : numpy.ndarray
        ``(m, 2)`` integer array of node pairs.
    weights : numpy.ndarray
        Edge weights.
    resolution : float
        Resolution of the (configuration-model) modularity.
    seed : int
        Seed of the partition; the same seed gives the same partition.
    method : {"leidenalg", "igraph"}
        Which Leiden implementation to run.

    Returns
    -------
    numpy.ndarray of int64
        Community per node.

    Notes
    -----
    Roughly O(m) per iteration.
    """
    graph = ig.Graph(n=n_nodes, edges=edges.tolist(), directed=False)
    graph.es["weight"] = weights.tolist()
    if method == "igraph":
        import random

        state = random.getstate()
        ig.set_random_number_generator(random.Random(seed))
        try:
            clustering = graph.community_leiden(
                objective_function="modularity",
                weights="weight",
                resolution=resolution,
                n_iterations=-1,
            )
        finally:
            ig.set_random_number_generator(random)
            random.setstate(state)
        return np.asarray(clustering.membership, dtype=np.int64)
    partition = leidenalg.find_partition(
        graph,
        leidenalg.RBConfigurationVertexPartition,
        weights="weight",
        resolution_parameter=resolution,
        seed=seed,
        n_iterations=-1,
    )
    return np.asarray(partition.membership, dtype=np.int64)


def detect_communities(
    adjacency: sp.csr_matrix,
    hub_matrix: sp.csr_matrix,
    strong_labels: np.ndarray,
    *,
    resolution: float = 1.0,
    seed: int = 42,
    method: Method = "igraph",
) -> np.ndarray:
    """Communities of accounts, never splitting a strong-link component.

    Parameters
    ----------
    adjacency : scipy.sparse.csr_matrix
        Accounts × accounts link weights (either triangle, or both).
    hub_matrix : scipy.sparse.csr_matrix
        Accounts × hubs edge weights.
    strong_labels : numpy.ndarray
        Strong-link component of each account (:func:`components_over`).
    resolution, seed, method
        Passed to :func:`partition_graph`.

    Returns
    -------
    numpy.ndarray of int64
        Community per account, ``-1`` for accounts without any link.

    Notes
    -----
    O(n + m) to contract, plus Leiden on the contracted graph.
    """
    n_acc = adjacency.shape[0]
    n_comp = int(strong_labels.max()) + 1 if n_acc else 0
    contract = sp.csr_matrix(
        (np.ones(n_acc), (np.arange(n_acc), strong_labels)), shape=(n_acc, n_comp)
    )
    comp_adj = (contract.T @ (adjacency + adjacency.T) @ contract).tocoo()
    upper = comp_adj.row < comp_adj.col
    comp_hub = (contract.T @ hub_matrix).tocoo()
    n_hubs = hub_matrix.shape[1]
    comp_size = np.bincount(strong_labels, minlength=n_comp)
    edges = np.concatenate(
        [
            np.stack([comp_adj.row[upper], comp_adj.col[upper]], axis=1),
            np.stack([comp_hub.row, n_comp + comp_hub.col], axis=1),
        ]
    ).astype(np.int64)
    weights = np.concatenate([comp_adj.data[upper] / 2.0, comp_hub.data])
    # Only nodes that take part in some edge go into the partition; the rest stay alone.
    used = np.zeros(n_comp + n_hubs, dtype=bool)
    used[edges.ravel()] = True
    node_index = np.full(n_comp + n_hubs, -1, dtype=np.int64)
    node_index[used] = np.arange(int(used.sum()))
    membership_used = (
        partition_graph(
            int(used.sum()),
            node_index[edges],
            weights,
            resolution=resolution,
            seed=seed,
            method=method,
        )
        if len(edges)
        else np.zeros(0, dtype=np.int64)
    )
    comp_comm = np.full(n_comp, -1, dtype=np.int64)
    comp_used = used[:n_comp]
    comp_comm[comp_used] = membership_used[node_index[:n_comp][comp_used]]
    # A strong component with no other link is still a group of its own.
    lonely = ~comp_used & (comp_size >= 2)
    next_label = int(membership_used.max()) + 1 if len(membership_used) else 0
    comp_comm[lonely] = next_label + np.arange(int(lonely.sum()))
    membership = comp_comm[strong_labels]
    logger.debug(
        "communities: %d nodes, %d edges, %d communities",
        int(used.sum()),
        len(edges),
        len(np.unique(membership[membership >= 0])),
    )
    return membership


def prune_weak_members(
    incidence: sp.csr_matrix,
    membership: np.ndarray,
    weights: np.ndarray,
    strong: np.ndarray,
    *,
    min_attachment: float,
    passes: int = 2,
) -> np.ndarray:
    """Drop accounts whose own evidence ties them only loosely to their community.

    Modularity puts an account whose single link is one shared residential IP into the
    community at the other end of that link. Such an account is not evidence of anything, so it
    leaves the community (``-1``) unless the identifiers it shares with the other members weigh
    at least ``min_attachment`` in total, or one of them is strong (an exact card, billing
    customer or mailbox, which must never be split).

    Parameters
    ----------
    incidence : scipy.sparse.csr_matrix
        Accounts × identifiers incidence matrix.
    membership : numpy.ndarray
        Community per account, ``-1`` for none.
    weights : numpy.ndarray
        Evidence weight per identifier (0 for super-nodes and feature-only kinds).
    strong : numpy.ndarray of bool
        Per identifier, whether it is a strong (never split) identifier.
    min_attachment : float
    passes : int, default 2
        Shared counts change as members leave; a second pass settles nearly everything.

    Returns
    -------
    numpy.ndarray of int64
        The pruned membership.

    Notes
    -----
    O(nnz of the incidence matrix) per pass.
    """
    membership = membership.copy()
    coo = incidence.tocoo()
    rows, cols = coo.row, coo.col.astype(np.int64)
    linkable = (weights[cols] > 0) | strong[cols]
    rows, cols = rows[linkable], cols[linkable]
    n_acc = incidence.shape[0]
    for _ in range(passes):
        member = membership >= 0
        n_comm = int(membership.max()) + 1 if member.any() else 0
        if n_comm == 0:
            break
        keep_entry = member[rows]
        r, c = rows[keep_entry], cols[keep_entry]
        comm = membership[r]
        key = comm * np.int64(incidence.shape[1]) + c
        unique_keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        shared = counts[inverse] >= 2
        attachment = np.bincount(r[shared], weights=weights[c[shared]], minlength=n_acc)
        has_strong = np.zeros(n_acc, dtype=bool)
        has_strong[r[shared & strong[c]]] = True
        weak = member & ~has_strong & (attachment < min_attachment)
        if not weak.any():
            break
        membership[weak] = -1
    return membership
