"""The evidence links inside clusters: which accounts are tied, how strongly, and by what.

:func:`cluster_links` turns the projection's (pair, shared identifier) rows into one row per
linked account pair inside a cluster, with the summed weight and the strongest evidence
(``payment:fp_ab12;signup_ip:203.0.113.7``); lockstep pairs inside a cluster add their weight
and evidence. The run saves the result as the ``links`` artefact: ``linker explain``, the
report and Neo4j's ``LINKED`` relationships all read it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from linker.graph.bipartite import Bipartite
from linker.graph.projection import Projection

__all__ = ["LINK_COLUMNS", "cluster_links"]

logger = logging.getLogger(__name__)

LINK_COLUMNS: tuple[str, ...] = ("account_a", "account_b", "weight", "evidence")
"""Columns of the links table (``account_a < account_b``)."""


def cluster_links(
    bipartite: Bipartite,
    projection: Projection,
    weights: np.ndarray,
    cluster_of: np.ndarray,
    *,
    min_link_weight: float,
    max_evidence: int,
    lockstep: pd.DataFrame | None = None,
    lockstep_weight: float = 0.75,
) -> pd.DataFrame:
    """The links between accounts of the same cluster.

    Parameters
    ----------
    bipartite : Bipartite
    projection : Projection
        Its ``pair_a``, ``pair_b`` and ``pair_identifier`` rows.
    weights : numpy.ndarray
        Evidence weight per identifier.
    cluster_of : numpy.ndarray
        Cluster per account row (``-1`` when none).
    min_link_weight : float
        Pairs whose summed identifier weight is below this are not links.
    max_evidence : int
        Identifiers cited per link, strongest first.
    lockstep : pandas.DataFrame, optional
        Lockstep pairs (``a``, ``b`` rows, ``jaccard``, ``bucket_minutes``).
    lockstep_weight : float
        Weight one lockstep pair adds.

    Returns
    -------
    pandas.DataFrame
        :data:`LINK_COLUMNS`, sorted by (``account_a``, ``account_b``).

    Notes
    -----
    O(r log r) for r pair rows inside clusters: a sort, no Python loop over pairs.
    """
    n = np.int64(bipartite.shape[0])
    keys, weight, evidence = _identifier_links(
        bipartite, projection, weights, cluster_of, min_link_weight, max_evidence
    )
    if lockstep is not None and len(lockstep):
        keys, weight, evidence = _with_lockstep(
            keys, weight, evidence, lockstep, cluster_of, n, lockstep_weight
        )
    return _links_frame(bipartite.account_ids, keys, n, weight, evidence)


def _identifier_links(
    bipartite: Bipartite,
    projection: Projection,
    weights: np.ndarray,
    cluster_of: np.ndarray,
    min_link_weight: float,
    max_evidence: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair key ``a * n + b``, summed weight and evidence text of the identifier links.

    Only pairs inside one cluster whose summed weight reaches ``min_link_weight`` are links;
    the evidence names their ``max_evidence`` strongest identifiers. Keys come out sorted.
    """
    a, b, ident = projection.pair_a, projection.pair_b, projection.pair_identifier
    inside = (cluster_of[a] >= 0) & (cluster_of[a] == cluster_of[b])
    a, b, ident = a[inside], b[inside], ident[inside]
    w = weights[ident]
    n = np.int64(bipartite.shape[0])
    key = a * n + b
    pair_keys, pair_of = np.unique(key, return_inverse=True)
    totals = np.bincount(pair_of, weights=w, minlength=len(pair_keys))
    keep = totals[pair_of] >= min_link_weight
    pair_of, w, ident = pair_of[keep], w[keep], ident[keep]
    # Strongest evidence first within each pair; ties by identifier for determinism.
    order = np.lexsort((ident, -w, pair_of))
    pair_of, ident = pair_of[order], ident[order]
    starts = np.r_[0, np.flatnonzero(np.diff(pair_of)) + 1] if len(pair_of) else np.zeros(0, int)
    rank = np.arange(len(pair_of)) - np.repeat(starts, np.diff(np.r_[starts, len(pair_of)]))
    kept_pairs = pair_of[starts]
    # Text only for the identifiers cited (the first max_evidence of each pair).
    cited = rank < max(max_evidence, 1)
    pair_of, ident, rank = pair_of[cited], ident[cited], rank[cited]
    text = bipartite.kinds[ident].astype(object) + ":" + bipartite.values[ident].astype(object)
    evidence = text[rank == 0].astype(object)
    slot = np.searchsorted(kept_pairs, pair_of)
    for r in range(1, max_evidence):
        at = rank == r
        evidence[slot[at]] = evidence[slot[at]] + ";" + text[at]
    return pair_keys[kept_pairs], totals[kept_pairs].round(6), evidence


def _links_frame(
    account_ids: np.ndarray,
    keys: np.ndarray,
    n: np.int64,
    weight: np.ndarray,
    evidence: np.ndarray,
) -> pd.DataFrame:
    """The links table: account ids in order within each pair, pairs sorted."""
    left = account_ids[keys // n].astype(str)
    right = account_ids[keys % n].astype(str)
    swap = left > right
    links = pd.DataFrame(
        {
            "account_a": pd.array(np.where(swap, right, left), dtype="string"),
            "account_b": pd.array(np.where(swap, left, right), dtype="string"),
            "weight": weight,
            "evidence": pd.array(evidence, dtype="string"),
        }
    )
    return links.sort_values(["account_a", "account_b"], ignore_index=True)


def _with_lockstep(
    keys: np.ndarray,
    weight: np.ndarray,
    evidence: np.ndarray,
    pairs: pd.DataFrame,
    cluster_of: np.ndarray,
    n_accounts: np.int64,
    lock_weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add the intra-cluster lockstep pairs to the identifier links, by pair key
    ``a * n + b`` (``a < b``; ``keys`` sorted): a pair in both gets the sum of the weights
    and both evidences, a lockstep-only pair its own. O((l + p) log l) for l links and p
    pairs, with no string join."""
    a = pairs["a"].to_numpy(np.int64)
    b = pairs["b"].to_numpy(np.int64)
    inside = (cluster_of[a] >= 0) & (cluster_of[a] == cluster_of[b])
    if not inside.any():
        return keys, weight, evidence
    jac = pairs["jaccard"].to_numpy()[inside]
    minutes = pairs["bucket_minutes"].to_numpy()[inside]
    lock_text = (
        "lockstep:jaccard "
        + np.round(jac, 2).astype(str).astype(object)
        + " over "
        + minutes.astype(str).astype(object)
        + "-min buckets"
    )
    lock_keys = np.minimum(a[inside], b[inside]) * n_accounts + np.maximum(a[inside], b[inside])
    at = np.minimum(np.searchsorted(keys, lock_keys), max(len(keys) - 1, 0))
    both = keys[at] == lock_keys if len(keys) else np.zeros(len(lock_keys), dtype=bool)
    added = np.zeros(len(keys))
    added[at[both]] = lock_weight
    evidence = evidence.copy()
    evidence[at[both]] = evidence[at[both]] + ";" + lock_text[both]
    alone = ~both
    return (
        np.r_[keys, lock_keys[alone]],
        np.r_[(weight + added).round(6), np.full(int(alone.sum()), 0.0 + lock_weight).round(6)],
        np.r_[evidence, lock_text[alone]].astype(object),
    )
