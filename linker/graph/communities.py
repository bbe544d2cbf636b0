"""Strong-link components and community detection on the account graph.

Accounts joined by a strong identifier (an exact card, billing customer or mailbox) are first
contracted into one node, so community detection can never split them. The contracted graph
(weighted account links plus hub nodes for larger groups) is then partitioned with Leiden
(igraph's ``community_leiden``, modularity objective with a resolution, fixed seed; leidenalg
is available as ``method="leidenalg"``): see docs/performance.md for the measured comparison
with leidenalg, networkit and networkx. Leiden runs per connected component of the contracted
graph, with the whole graph's objective (:func:`partition_components`); the many small
components whose best partition is known are settled without it (:func:`settled_components`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import igraph as ig
import leidenalg
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.special import gammainc

from linker.graph.ownership import owned_values

__all__ = [
    "ContractedGraph",
    "component_seed",
    "components_over",
    "contract",
    "detect_communities",
    "partition_components",
    "partition_graph",
    "prune_weak_members",
    "reattach_by_lockstep",
    "settled_components",
    "split_disconnected",
    "with_lonely_components",
]

logger = logging.getLogger(__name__)

Method = Literal["leidenalg", "igraph"]
Partitioner = Callable[..., np.ndarray]
"""A function with :func:`partition_components`' signature and result."""


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
    initial: np.ndarray | None = None,
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
    initial : numpy.ndarray of int, optional
        A community per node to start from (a warm start: ``linker update`` starts from the
        previous run's communities); default every node alone.

    Returns
    -------
    numpy.ndarray of int64
        Community per node.

    Notes
    -----
    Roughly O(m) per iteration, after an O(m log m) sort of the edges. The partition does not
    depend on the order of ``edges``, nor on which end of an edge comes first: the edges are
    put in one canonical order (parallel edges merged, their weights summed in a fixed order)
    before the graph is built, and communities are numbered in order of their smallest node.
    Node numbers are the caller's: give nodes numbers that do not depend on input order
    (account rows in ``account_id`` order, as the linking stages do).
    """
    edges, weights = _canonical_edges(edges, weights)
    return _leiden(n_nodes, edges, weights, resolution, seed, method, initial)


def _leiden(
    n_nodes: int,
    edges: np.ndarray,
    weights: np.ndarray,
    resolution: float,
    seed: int,
    method: Method,
    initial: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`partition_graph` on edges already in canonical order (:func:`_canonical_edges`)."""
    graph = ig.Graph(n=n_nodes, edges=edges.tolist(), directed=False)
    graph.es["weight"] = weights.tolist()
    start = None if initial is None else _numbered_by_first_node(np.asarray(initial)).tolist()
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
                initial_membership=start,
            )
        finally:
            ig.set_random_number_generator(random)
            random.setstate(state)
        return _numbered_by_first_node(np.asarray(clustering.membership, dtype=np.int64))
    partition = leidenalg.find_partition(
        graph,
        leidenalg.RBConfigurationVertexPartition,
        weights="weight",
        resolution_parameter=resolution,
        seed=seed,
        n_iterations=-1,
        initial_membership=start,
    )
    return _numbered_by_first_node(np.asarray(partition.membership, dtype=np.int64))


def _canonical_edges(edges: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges as ``(low, high)`` pairs in ascending order, parallel edges merged.

    The merged weight is summed over the parallel edges sorted by weight, so the float sum
    does not depend on their order either.
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    weights = np.asarray(weights, dtype=np.float64)
    if len(edges) == 0:
        return edges, weights
    low = np.minimum(edges[:, 0], edges[:, 1])
    high = np.maximum(edges[:, 0], edges[:, 1])
    span = int(high.max()) + 1
    order = None
    if span < 2**31:
        # One integer sort on (low, high); the weights only order parallel edges, so the
        # three-key sort is needed only when there are some (the edges usually come from a
        # matrix, one per pair).
        key = low * np.int64(span) + high
        order = np.argsort(key)
        key = key[order]
        if bool((key[1:] == key[:-1]).any()):
            order = None
    if order is None:
        order = np.lexsort((weights, high, low))
    low, high, weights = low[order], high[order], weights[order]
    starts = np.flatnonzero(np.r_[True, (low[1:] != low[:-1]) | (high[1:] != high[:-1])])
    if len(starts) < len(low):
        weights = np.add.reduceat(weights, starts)
        low, high = low[starts], high[starts]
    return np.stack([low, high], axis=1), weights


def _numbered_by_first_node(membership: np.ndarray) -> np.ndarray:
    """Community labels ``0..k-1`` in order of each community's smallest node."""
    if len(membership) == 0:
        return membership
    _, first, inverse = np.unique(membership, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return np.asarray(rank[inverse.ravel()], dtype=np.int64)


@dataclass(frozen=True)
class ContractedGraph:
    """The account graph with each strong-link component contracted into one node, plus hub
    nodes (:func:`contract`): nodes ``0..n_comp-1`` are components, ``n_comp + h`` hub ``h``."""

    n_comp: int
    n_hubs: int
    edges: np.ndarray
    weights: np.ndarray
    comp_size: np.ndarray


def contract(
    adjacency: sp.csr_matrix, hub_matrix: sp.csr_matrix, strong_labels: np.ndarray
) -> ContractedGraph:
    """Contract each strong-link component of the account graph into one node.

    Parameters
    ----------
    adjacency, hub_matrix, strong_labels
        As in :func:`detect_communities`.

    Returns
    -------
    ContractedGraph

    Notes
    -----
    O(n + m): two sparse products.
    """
    n_acc = adjacency.shape[0]
    n_comp = int(strong_labels.max()) + 1 if n_acc else 0
    contractor = sp.csr_matrix(
        (np.ones(n_acc), (np.arange(n_acc), strong_labels)), shape=(n_acc, n_comp)
    )
    comp_adj = (contractor.T @ (adjacency + adjacency.T) @ contractor).tocoo()
    upper = comp_adj.row < comp_adj.col
    comp_hub = (contractor.T @ hub_matrix).tocoo()
    edges = np.concatenate(
        [
            np.stack([comp_adj.row[upper], comp_adj.col[upper]], axis=1),
            np.stack([comp_hub.row, n_comp + comp_hub.col], axis=1),
        ]
    ).astype(np.int64)
    weights = np.concatenate([comp_adj.data[upper] / 2.0, comp_hub.data])
    return ContractedGraph(
        n_comp,
        hub_matrix.shape[1],
        edges,
        weights,
        np.bincount(strong_labels, minlength=n_comp),
    )


def detect_communities(
    adjacency: sp.csr_matrix,
    hub_matrix: sp.csr_matrix,
    strong_labels: np.ndarray,
    *,
    resolution: float = 1.0,
    seed: int = 42,
    method: Method = "igraph",
    partitioner: Partitioner | None = None,
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
        Passed to :func:`partition_components`.
    partitioner : callable, optional
        What partitions the contracted graph, with :func:`partition_components`' signature
        and result (default that function; the Spark engine runs each component in a task).

    Returns
    -------
    numpy.ndarray of int64
        Community per account, ``-1`` for accounts without any link.

    Notes
    -----
    O(n + m) to contract, plus :func:`partition_components` on the contracted graph: Leiden
    only on its connected components whose best partition is not known beforehand.
    """
    graph = contract(adjacency, hub_matrix, strong_labels)
    n_comp = graph.n_comp
    node_comm = (partitioner or partition_components)(
        n_comp + graph.n_hubs,
        graph.edges,
        graph.weights,
        resolution=resolution,
        seed=seed,
        method=method,
    )
    comp_comm = node_comm[:n_comp]
    first_free = int(node_comm.max()) + 1 if len(node_comm) else 0
    membership = with_lonely_components(comp_comm, graph.comp_size, first_free)[strong_labels]
    logger.debug(
        "communities: %d nodes, %d edges, %d communities",
        int((node_comm >= 0).sum()),
        len(graph.edges),
        len(np.unique(membership[membership >= 0])),
    )
    return membership


@dataclass(frozen=True)
class _Components:
    """Connected components of a weighted graph with what settles their partition."""

    label: np.ndarray  # component per node (nodes without edges too)
    nodes: np.ndarray  # nodes per component
    edges: np.ndarray  # edges per component
    strength: np.ndarray  # total strength (sum of weighted degrees) per component
    min_weight: np.ndarray  # lightest edge per component
    total: float  # total strength of the whole graph (2m)


def _components(n_nodes: int, edges: np.ndarray, weights: np.ndarray) -> _Components:
    """Connected components of the (canonical) weighted edge list and their totals."""
    graph = sp.csr_matrix((weights, (edges[:, 0], edges[:, 1])), shape=(n_nodes, n_nodes))
    n_labels, label = connected_components(graph, directed=False)
    label = np.asarray(label, dtype=np.int64)
    edge_label = label[edges[:, 0]]
    min_weight = np.full(n_labels, np.inf)
    np.minimum.at(min_weight, edge_label, weights)
    return _Components(
        label=label,
        nodes=np.bincount(label, minlength=n_labels),
        edges=np.bincount(edge_label, minlength=n_labels),
        strength=np.bincount(edge_label, weights=2.0 * weights, minlength=n_labels),
        min_weight=min_weight,
        total=float(2.0 * weights.sum()),
    )


def settled_components(
    strength: np.ndarray,
    min_weight: np.ndarray,
    n_edges: np.ndarray,
    total: float,
    resolution: float,
) -> np.ndarray:
    """Which connected components have a known best modularity partition, and which it is.

    Parameters
    ----------
    strength : numpy.ndarray
        Per component, its total strength ``K`` (sum of its nodes' weighted degrees).
    min_weight : numpy.ndarray
        Per component, the weight of its lightest edge ``w``.
    n_edges : numpy.ndarray
        Per component, its number of (merged) edges.
    total : float
        Total strength of the whole graph ``M`` (twice its total edge weight).
    resolution : float
        Resolution ``gamma`` of the modularity.

    Returns
    -------
    numpy.ndarray of int8
        Per component: ``1`` one community, ``0`` every node alone (a single edge too light
        to keep), ``-1`` not settled (Leiden must partition it).

    Notes
    -----
    O(k). Modularity with resolution ``gamma`` scores a partition by
    ``sum over pairs (i, j) in one community of A_ij - gamma k_i k_j / M``. Against the whole
    component as one community, a partition of it into ``r >= 2`` parts loses
    ``2 * sum_{a<b} (x_ab - gamma K_a K_b / M)``, where ``x_ab`` is the weight between parts.
    The component is connected, so the parts are joined by at least ``r - 1`` of its edges
    (``sum x_ab >= (r - 1) w``), and ``sum K_a K_b <= K^2 (1 - 1/r) / 2``; the loss is thus at
    least ``2 (r - 1) (w - gamma K^2 / (2 r M)) >= 2 (r - 1) (w - gamma K^2 / (4 M))``. So when
    ``gamma K^2 < 4 M w`` every split is strictly worse: the component is one community. For a
    component of one edge (two nodes) this reads ``gamma w < M``, and otherwise the two nodes
    alone are at least as good (equal at ``gamma w = M``, where Leiden does not move them
    either): that case is settled both ways. Most components of a sparse account graph are
    tiny against the whole graph and pass the test.

    Examples
    --------
    A pair of weight 1 and a triangle, the whole graph; a heavy pair alone.

    >>> settled_components(np.array([2.0, 6.0]), np.array([1.0, 1.0]), np.array([1, 3]),
    ...                    8.0, 1.0).tolist()
    [1, -1]
    >>> settled_components(np.array([2.0]), np.array([1.0]), np.array([1]), 2.0, 4.0).tolist()
    [0]
    """
    state = np.full(len(strength), -1, dtype=np.int8)
    whole = resolution * strength**2 < 4.0 * total * min_weight
    state[whole] = 1
    state[~whole & (n_edges == 1)] = 0
    return state


def partition_components(
    n_nodes: int,
    edges: np.ndarray,
    weights: np.ndarray,
    *,
    resolution: float = 1.0,
    seed: int = 42,
    method: Method = "igraph",
) -> np.ndarray:
    """Leiden communities of a weighted graph, run per connected component.

    Parameters
    ----------
    n_nodes : int
    edges : numpy.ndarray
        ``(m, 2)`` integer array of node pairs.
    weights : numpy.ndarray
        Edge weights (positive).
    resolution, seed, method
        As in :func:`partition_graph`, for the modularity of the whole graph.

    Returns
    -------
    numpy.ndarray of int64
        Community per node, ``-1`` for a node without edges; communities numbered in order of
        their smallest node.

    Notes
    -----
    O(n + m) to find the components; components whose best partition is known
    (:func:`settled_components`: nearly all the small ones) are settled without Leiden.
    Leiden runs on each other component alone with the resolution scaled by
    ``K_c / M`` (its share of the whole graph's total strength): modularity's null model
    divides by the whole graph's ``M``, Leiden's by the component's ``K_c``, so the
    component's part of the objective is the same and the whole objective is the sum over
    components (a community spanning two components only loses). Each component gets its own
    seed, from ``seed`` and its smallest node, so its partition does not depend on the order
    in which the components are run.

    Examples
    --------
    Two triangles and a lonely node.

    >>> partition_components(7, np.array([[0, 1], [1, 2], [0, 2], [3, 4], [4, 5], [3, 5]]),
    ...                      np.ones(6)).tolist()
    [0, 0, 0, 1, 1, 1, -1]
    """
    edges, weights = _canonical_edges(edges, weights)
    membership = np.full(n_nodes, -1, dtype=np.int64)
    if len(edges) == 0:
        return membership
    comps = _components(n_nodes, edges, weights)
    state = settled_components(
        comps.strength, comps.min_weight, comps.edges, comps.total, resolution
    )
    used = np.zeros(n_nodes, dtype=bool)
    used[edges.ravel()] = True
    # Settled whole: the component's label; split pairs: each node its own (n_nodes + node).
    membership[used] = comps.label[used]
    alone = used & (state[comps.label] == 0)
    membership[alone] = n_nodes + np.flatnonzero(alone)
    open_comps = np.flatnonzero(state < 0)
    if len(open_comps):
        offset = 2 * n_nodes
        for nodes, sub in _leiden_per_component(
            comps, edges, weights, open_comps, resolution, seed, method
        ):
            membership[nodes] = offset + sub
            offset += int(sub.max()) + 1
        logger.debug(
            "communities: Leiden on %d of %d components (%d of %d nodes)",
            len(open_comps),
            int((comps.edges > 0).sum()),
            int(comps.nodes[open_comps].sum()),
            int(used.sum()),
        )
    membership[used] = _numbered_by_first_node(membership[used])
    return membership


def _leiden_per_component(
    comps: _Components,
    edges: np.ndarray,
    weights: np.ndarray,
    which: np.ndarray,
    resolution: float,
    seed: int,
    method: Method,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(nodes, their communities)`` of Leiden on each component in ``which``,
    the resolution scaled to the component's share of the total strength."""
    order = np.argsort(comps.label, kind="stable")
    node_start = np.r_[0, np.cumsum(comps.nodes)]
    local = np.empty(len(comps.label), dtype=np.int64)
    local[order] = np.arange(len(order)) - node_start[comps.label[order]]
    edge_label = comps.label[edges[:, 0]]
    edge_order = np.argsort(edge_label, kind="stable")
    edge_start = np.r_[0, np.cumsum(comps.edges)]
    for comp in which.tolist():
        nodes = order[node_start[comp] : node_start[comp + 1]]
        picked = edge_order[edge_start[comp] : edge_start[comp + 1]]
        # The slice keeps the canonical order: the local numbers follow the global ones.
        sub = _leiden(
            len(nodes),
            local[edges[picked]],
            weights[picked],
            resolution * float(comps.strength[comp]) / comps.total,
            component_seed(seed, int(nodes[0])),
            method,
        )
        yield nodes, sub


def component_seed(seed: int, first_node: int) -> int:
    """The seed of one component's Leiden run, from the run's seed and its smallest node.

    Examples
    --------
    >>> component_seed(42, 7) == component_seed(42, 7) != component_seed(42, 8)
    True
    """
    sequence = np.random.SeedSequence([seed % 2**63, first_node])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def with_lonely_components(
    comp_comm: np.ndarray, comp_size: np.ndarray, first_free: int
) -> np.ndarray:
    """Community per component, where a strong component with no other link (``-1``) and
    at least two accounts becomes a community of its own, numbered from ``first_free``."""
    comp_comm = comp_comm.copy()
    lonely = (comp_comm < 0) & (comp_size >= 2)
    comp_comm[lonely] = first_free + np.arange(int(lonely.sum()))
    return comp_comm


def prune_weak_members(
    incidence: sp.csr_matrix,
    membership: np.ndarray,
    weights: np.ndarray,
    units: np.ndarray,
    *,
    min_attachment: float,
    relative_attachment: float = 0.0,
    passes: int = 2,
    family: np.ndarray | None = None,
    min_families: int = 1,
    lockstep: sp.csr_matrix | None = None,
    alpha: float | None = None,
    family_only: np.ndarray | None = None,
) -> np.ndarray:
    """Drop units (strong-link components) that their own evidence ties only loosely to their
    community.

    Modularity puts a node whose single link is one shared residential IP into the community
    at the other end of that link. Such a node is not evidence of anything. Each unit (a
    strong-link component: accounts sharing an exact card, billing customer or mailbox, kept
    whole) leaves its community (``-1``) unless the identifiers it shares with members *outside
    the unit* weigh at least ``max(min_attachment, relative_attachment * median)``, where the
    median is over the other units of the community. A community of a single unit is kept.

    Parameters
    ----------
    incidence : scipy.sparse.csr_matrix
        Accounts × identifiers incidence matrix.
    membership : numpy.ndarray
        Community per account, ``-1`` for none.
    weights : numpy.ndarray
        Evidence weight per identifier (0 for super-nodes and feature-only kinds).
    units : numpy.ndarray
        Strong-link component per account (:func:`components_over`).
    min_attachment : float
    relative_attachment : float, default 0
    passes : int, default 2
        Shared counts change as units leave; a second pass settles nearly everything.
        A unit of several accounts that leaves becomes a community of its own.
    family : numpy.ndarray of int, optional
        Per identifier, its kind's family (:mod:`linker.kinds`).
    min_families : int, default 1
        A unit whose ties to the rest of its community come from fewer families than this
        leaves it: a VPN user who hops through a ring's proxy exits shares many addresses with
        the ring, and nothing else.
    lockstep : scipy.sparse.csr_matrix, optional
        Accounts x accounts lockstep weights: acting in step with members is a tie of its
        own family (behaviour), and adds its weight to the attachment.
    alpha : float, optional
        When given, only values the community owns (:func:`linker.graph.ownership.owned_values`)
        tie a unit to it: a template a tenth of all accounts send ties no VPN user to the ring
        that sends it too.
    family_only : numpy.ndarray of bool, optional
        Per identifier, a weightless value (a public one) that still counts for its family
        when the community holds it far more often than chance (needs ``alpha``): the exits
        of a residential pool that strangers rent too are the ring's network when most of
        its members rotate through them. It adds no weight to the attachment.

    Returns
    -------
    numpy.ndarray of int64
        The pruned membership.

    Notes
    -----
    O(m log m) per pass for the m memberships of accounts in a community (sorting
    (community, identifier) keys).
    """
    membership = membership.copy()
    # Units only ever leave their communities here, so the accounts outside every community
    # at the start never matter: most accounts, at scale.
    placed = np.flatnonzero(membership >= 0)
    coo = incidence[placed].tocoo()
    linkable = weights[coo.col] > 0
    if family_only is not None and alpha is not None:
        linkable |= family_only[coo.col]
    rows, cols = placed[coo.row[linkable]], coo.col[linkable].astype(np.int64)
    n_ident = np.int64(incidence.shape[1])
    n_units = int(units.max()) + 1 if len(units) else 0
    for _ in range(passes):
        member = membership >= 0
        if not member.any():
            break
        in_comm = member[rows]
        r, c = rows[in_comm], cols[in_comm]
        comm_key = membership[r] * n_ident + c
        _, comm_inv, comm_cnt = np.unique(comm_key, return_inverse=True, return_counts=True)
        unit_key = units[r] * n_ident + c
        unit_uniq, first, _, unit_cnt = np.unique(
            unit_key, return_index=True, return_inverse=True, return_counts=True
        )
        # For each (unit, identifier): do members outside the unit hold it too?
        outside = comm_cnt[comm_inv[first]] > unit_cnt
        if alpha is not None:
            outside &= _owned_by(incidence, membership, alpha, membership[r[first]], c[first])
        attachment = np.bincount(
            unit_uniq[outside] // n_ident,
            weights=weights[unit_uniq[outside] % n_ident],
            minlength=n_units,
        )
        families = np.full(n_units, min_families, dtype=np.int64)
        if family is not None and min_families > 1:
            tie_unit = unit_uniq[outside] // n_ident
            tie_family = family[unit_uniq[outside] % n_ident].astype(np.int64)
            pairs = np.unique(tie_unit * np.int64(family.max() + 1) + tie_family)
            families = np.bincount(pairs // np.int64(family.max() + 1), minlength=n_units)
        if lockstep is not None and lockstep.nnz:
            in_step = _lockstep_ties(lockstep, membership, units, n_units)
            attachment = attachment + in_step
            families = families + (in_step > 0)
        unit_comm = np.full(n_units, -1, dtype=np.int64)
        unit_comm[units[member]] = membership[member]
        live = np.flatnonzero(unit_comm >= 0)
        units_per_comm = np.bincount(unit_comm[live], minlength=int(membership.max()) + 1)
        threshold = np.full(n_units, min_attachment)
        if relative_attachment > 0 and len(live):
            frame = pd.DataFrame({"comm": unit_comm[live], "att": attachment[live]})
            median = frame.groupby("comm")["att"].transform("median").to_numpy()
            threshold[live] = np.maximum(min_attachment, relative_attachment * median)
        weak_unit = (
            (unit_comm >= 0)
            & ((attachment < threshold) | (families < min_families))
            & (units_per_comm[np.maximum(unit_comm, 0)] > 1)
        )
        if not weak_unit.any():
            break
        membership[weak_unit[units]] = -1
    # A unit that left its community is still a group of its own (accounts on one card).
    alone = (membership < 0) & (np.bincount(units, minlength=n_units)[units] >= 2)
    if alone.any():
        start = int(membership.max()) + 1 if (membership >= 0).any() else 0
        membership[alone] = start + np.unique(units[alone], return_inverse=True)[1]
    return membership


def _owned_by(
    incidence: sp.csr_matrix,
    membership: np.ndarray,
    alpha: float,
    community: np.ndarray,
    identifier: np.ndarray,
) -> np.ndarray:
    """Whether each (community, identifier) is a value the community owns."""
    _, owned = owned_values(incidence, membership, alpha)
    coo = owned.tocoo()
    n_ident = np.int64(incidence.shape[1])
    keys = coo.row[coo.data].astype(np.int64) * n_ident + coo.col[coo.data]
    asked = community.astype(np.int64) * n_ident + identifier.astype(np.int64)
    # A hash set of the owned keys: a binary search per asked key (millions, in no useful
    # order) misses the cache at every step.
    return np.asarray(pd.Index(asked).isin(keys), dtype=bool)


def _lockstep_ties(
    lockstep: sp.csr_matrix, membership: np.ndarray, units: np.ndarray, n_units: int
) -> np.ndarray:
    """Per unit, the lockstep weight it has with members of its community outside itself."""
    coo = lockstep.tocoo()
    a = np.r_[coo.row, coo.col]
    b = np.r_[coo.col, coo.row]
    w = np.r_[coo.data, coo.data]
    same = (membership[a] >= 0) & (membership[a] == membership[b]) & (units[a] != units[b])
    return np.bincount(units[a[same]], weights=w[same], minlength=n_units)


def reattach_by_lockstep(
    community: np.ndarray,
    lock_matrix: sp.csr_matrix,
    min_attachment: float,
    *,
    alpha: float = 1e-4,
    majority: float = 0.5,
) -> np.ndarray:
    """Put accounts left outside every community into the one they are in lockstep with.

    An aged ring account shares no identifier with the ring, so pruning drops it; lockstep
    pairs weighing at least ``min_attachment`` with one community bring it back, when that
    community holds far more of the account's lockstep partners than chance predicts. A heavy
    user is in step with dozens of other heavy users all over the population, a few of them
    in a ring; an aged ring account is in step with the ring.

    Parameters
    ----------
    community : numpy.ndarray
        Community per account, ``-1`` for none.
    lock_matrix : scipy.sparse.csr_matrix
        Accounts x accounts lockstep weights (one triangle).
    min_attachment : float
    alpha : float, default 1e-4
        Poisson tail below which the partners in the community are more than chance: the
        mean is the account's partners times the community's share of all lockstep pair
        ends (a configuration-model null).
    majority : float, default 0.5
        Share of the account's lockstep partners the community must hold.

    Returns
    -------
    numpy.ndarray of int64

    Notes
    -----
    O(p log p) for p lockstep pairs.

    Examples
    --------
    Account 4 is in step with 0 and 1 (community 0); account 5 with 2 (community 1) only.

    >>> lock = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 1, 2], [4, 4, 5])), shape=(6, 6))
    >>> reattach_by_lockstep(np.array([0, 0, 1, 1, -1, -1]), lock, 2.0, alpha=1.0).tolist()
    [0, 0, 1, 1, 0, -1]
    """
    coo = lock_matrix.tocoo()
    left = np.r_[coo.row, coo.col]
    right = np.r_[coo.col, coo.row]
    w = np.r_[coo.data, coo.data]
    outside = (community[left] < 0) & (community[right] >= 0)
    if not outside.any():
        return community
    # The configuration-model null, as modularity's: a partner is drawn in proportion to
    # its own number of partners, so a community of busy accounts expects more of them.
    partners = np.bincount(left, minlength=len(community)).astype(np.float64)
    placed = community >= 0
    share = np.bincount(
        community[placed], weights=partners[placed], minlength=int(community.max()) + 1
    ) / max(float(partners.sum()), 1.0)
    frame = pd.DataFrame({"row": left[outside], "comm": community[right[outside]], "w": w[outside]})
    totals = frame.groupby(["row", "comm"], as_index=False).agg(w=("w", "sum"), n=("w", "size"))
    mean = partners[totals["row"].to_numpy()] * share[totals["comm"].to_numpy()]
    totals["tail"] = gammainc(totals["n"].to_numpy(np.float64), mean)
    totals = totals.sort_values(["row", "w", "comm"], ascending=[True, False, True])
    best = totals.drop_duplicates("row")
    held = best["n"].to_numpy() >= majority * partners[best["row"].to_numpy()]
    best = best[(best["w"] >= min_attachment) & (best["tail"] < alpha) & held]
    out = community.copy()
    out[best["row"].to_numpy()] = best["comm"].to_numpy()
    return out


def _uncorroborated_pairs(
    linkable: sp.csr_matrix,
    rows: np.ndarray,
    tie_index: np.ndarray,
    family: np.ndarray,
    min_families: int,
) -> np.ndarray:
    """Per (account, tie) entry, whether its tie is held by exactly two of the entries'
    accounts who share values (``linkable`` columns) of fewer than ``min_families`` families.

    ``rows[i]`` holds tie ``tie_index[i]``; a value two members hold is a pair, and a pair
    tied by one family only is a coincidence until another family corroborates it.
    """
    n_ties = int(tie_index.max()) + 1 if len(tie_index) else 0
    held = np.bincount(tie_index, minlength=n_ties)
    lonely = np.zeros(len(tie_index), dtype=bool)
    pair_entry = np.flatnonzero(held[tie_index] == 2)
    if not len(pair_entry):
        return lonely
    order = pair_entry[np.argsort(tie_index[pair_entry], kind="stable")]
    first, second = rows[order[0::2]], rows[order[1::2]]
    shared = linkable[first].multiply(linkable[second]).tocsr()
    by_family = sp.csr_matrix(
        (np.ones(len(family)), (np.arange(len(family)), family.astype(np.int64))),
        shape=(len(family), int(family.max()) + 1),
    )
    few = np.diff((shared @ by_family).tocsr().indptr) < min_families
    lonely[order[0::2][few]] = True
    lonely[order[1::2][few]] = True
    return lonely


def _linkable(incidence: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    coo = incidence.tocoo()
    return sp.csr_matrix(
        (np.ones(int(keep.sum())), (coo.row[keep], coo.col[keep])), shape=incidence.shape
    )


def split_disconnected(
    incidence: sp.csr_matrix,
    membership: np.ndarray,
    weights: np.ndarray,
    units: np.ndarray,
    *,
    lockstep: sp.csr_matrix | None = None,
    family: np.ndarray | None = None,
    min_families: int = 1,
) -> np.ndarray:
    """Split every community into the parts its own evidence connects.

    A cluster is a group of accounts tied by specific evidence. Leiden may still put a group
    with ties only among itself (a family on one device and home IP) into a ring's community,
    when a hub that later proves public joined them; pruning keeps such a group, because each
    member is well attached to the others. Here two members stay together only when a chain of
    linkable identifiers (weight above zero) held by members of the same community, strong
    units, or lockstep pairs within the community joins them. The largest part (ties broken by
    its first account) keeps the community; every other part becomes a community of its own,
    and an account tied to no other member leaves (``-1``).

    Parameters
    ----------
    incidence : scipy.sparse.csr_matrix
        Accounts × identifiers incidence matrix.
    membership : numpy.ndarray
        Community per account, ``-1`` for none.
    weights : numpy.ndarray
        Evidence weight per identifier (0 for super-nodes and feature-only kinds).
    units : numpy.ndarray
        Strong-link component per account (:func:`components_over`): never split.
    lockstep : scipy.sparse.csr_matrix, optional
        Accounts x accounts lockstep pairs; a pair inside one community ties it.
    family : numpy.ndarray of int, optional
        Per identifier, its kind's family (:mod:`linker.kinds`).
    min_families : int, default 1
        A value that only two members hold is a pair, not a group: it joins the two only when
        the values they share come from at least this many families. One shared mailbox stem
        is a coincidence between a ring's proxy user and a family until another family
        corroborates it; a reserve account on a member's device and signup IP is not.

    Returns
    -------
    numpy.ndarray of int64
        The membership, with new communities numbered after the existing ones.

    Examples
    --------
    Accounts 0-2 share identifier 0; accounts 3 and 4 share identifier 1; all five were put
    in community 0. Identifier 2, held by 2 and 3, has no weight.

    >>> inc = sp.csr_matrix(np.array(
    ...     [[1, 0, 0], [1, 0, 0], [1, 0, 1], [0, 1, 1], [0, 1, 0]], dtype=float))
    >>> split_disconnected(inc, np.zeros(5, dtype=np.int64), np.array([1.0, 1.0, 0.0]),
    ...                    np.arange(5)).tolist()
    [0, 0, 0, 1, 1]

    Notes
    -----
    O(nnz log nnz) to key (community, identifier) pairs, then O(n + nnz) connected
    components; with ``min_families > 1``, O(p·d) more for the p values two members hold
    (the two holders' rows intersected, d values per account).
    """
    membership = np.asarray(membership, dtype=np.int64)
    n_acc = len(membership)
    member = membership >= 0
    if not member.any():
        return membership.copy()
    coo = incidence.tocoo()
    keep = (weights[coo.col] > 0) & member[coo.row]
    rows = coo.row[keep].astype(np.int64)
    # A tie node per (community, identifier) and per (community, strong unit).
    keys = np.concatenate(
        [
            membership[rows] * np.int64(incidence.shape[1]) + coo.col[keep],
            -(membership[member] * np.int64(n_acc) + units[member]) - 1,
        ]
    )
    holders = np.concatenate([rows, np.flatnonzero(member)])
    tie, tie_index = np.unique(keys, return_inverse=True)
    n_ties = len(tie)
    if family is not None and min_families > 1:
        n_values = len(rows)
        lonely = _uncorroborated_pairs(
            _linkable(incidence, keep), rows, tie_index[:n_values], family, min_families
        )
        stays = np.r_[~lonely, np.ones(len(tie_index) - n_values, dtype=bool)]
        holders, tie_index = holders[stays], tie_index[stays]
    edges_a = [holders]
    edges_b = [n_acc + tie_index]
    if lockstep is not None and lockstep.nnz:
        pairs = lockstep.tocoo()
        same = member[pairs.row] & (membership[pairs.row] == membership[pairs.col])
        edges_a.append(pairs.row[same].astype(np.int64))
        edges_b.append(pairs.col[same].astype(np.int64))
    a = np.concatenate(edges_a)
    b = np.concatenate(edges_b)
    size = n_acc + n_ties
    graph = sp.csr_matrix((np.ones(len(a)), (a, b)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    part = labels[:n_acc]
    # Accounts that share no tie node with another member form a part of one.
    held = np.bincount(tie_index, minlength=n_ties)
    tie_partners = np.bincount(holders, weights=held[tie_index] - 1, minlength=n_acc)
    if lockstep is not None and lockstep.nnz:
        tie_partners += np.bincount(edges_a[-1], minlength=n_acc)
        tie_partners += np.bincount(edges_b[-1], minlength=n_acc)
    result = np.full(n_acc, -1, dtype=np.int64)
    frame = pd.DataFrame(
        {"account": np.flatnonzero(member), "comm": membership[member], "part": part[member]}
    )
    frame = frame[tie_partners[frame["account"].to_numpy()] > 0]
    if frame.empty:
        return result
    parts = frame.groupby(["comm", "part"], sort=False).agg(
        size=("account", "size"), first=("account", "min")
    )
    parts = parts.reset_index().sort_values(
        ["comm", "size", "first"], ascending=[True, False, True], kind="stable"
    )
    largest = ~parts["comm"].duplicated()
    next_id = int(membership.max()) + 1
    new_id = parts["comm"].to_numpy().copy()
    n_new = int((~largest).sum())
    new_order = parts.loc[~largest].sort_values("first", kind="stable").index
    renumber = pd.Series(next_id + np.arange(n_new), index=new_order)
    new_id[~largest.to_numpy()] = renumber.reindex(parts.index[~largest]).to_numpy()
    lookup = pd.Series(new_id, index=pd.MultiIndex.from_frame(parts[["comm", "part"]]))
    assigned = lookup.reindex(pd.MultiIndex.from_frame(frame[["comm", "part"]])).to_numpy()
    result[frame["account"].to_numpy()] = assigned
    moved = int((~largest).sum())
    if moved:
        logger.debug("split %d disconnected parts off their communities", moved)
    return result
