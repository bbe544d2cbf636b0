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
import pyarrow as pa
import pyarrow.compute as pc

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
) -> tuple[np.ndarray, np.ndarray, pa.Array]:
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
    pair_of, ident = pair_of[keep], ident[keep]
    # Strongest evidence first within each pair, ties by identifier: one integer sort on
    # (pair, the identifier's rank by descending weight then id).
    n_ident = np.int64(max(len(weights), 1))
    by_strength = np.lexsort((np.arange(len(weights)), -weights))
    strength_rank = np.empty(len(weights), dtype=np.int64)
    strength_rank[by_strength] = np.arange(len(weights), dtype=np.int64)
    order = np.argsort(pair_of.astype(np.int64) * n_ident + strength_rank[ident])
    pair_of, ident = pair_of[order], ident[order]
    starts = np.r_[0, np.flatnonzero(np.diff(pair_of)) + 1] if len(pair_of) else np.zeros(0, int)
    rank = np.arange(len(pair_of)) - np.repeat(starts, np.diff(np.r_[starts, len(pair_of)]))
    kept_pairs = pair_of[starts]
    # Text only for the identifiers cited (the first max_evidence of each pair), built once
    # per distinct identifier and joined per pair in Arrow.
    cited = rank < max(max_evidence, 1)
    pair_of, ident = pair_of[cited], ident[cited]
    # Identifier ids are column numbers: marking the cited ones numbers them in id order,
    # as np.unique would, without sorting every citation.
    cited_id = np.zeros(len(weights), dtype=bool)
    cited_id[ident] = True
    distinct = np.flatnonzero(cited_id)
    where = (np.cumsum(cited_id) - 1)[ident]
    text = pc.binary_join_element_wise(
        pa.array(bipartite.kinds[distinct], pa.string()),
        pa.array(bipartite.values[distinct], pa.string()),
        ":",
    )
    offsets = np.r_[np.flatnonzero(np.r_[True, pair_of[1:] != pair_of[:-1]]), len(pair_of)]
    if not len(pair_of):
        offsets = np.zeros(1, dtype=np.int64)
    per_pair = pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int32)), text.take(pa.array(where))
    )
    evidence = pc.binary_join(per_pair, ";")
    return pair_keys[kept_pairs], totals[kept_pairs].round(6), evidence


def _links_frame(
    account_ids: np.ndarray,
    keys: np.ndarray,
    n: np.int64,
    weight: np.ndarray,
    evidence: pa.Array,
) -> pd.DataFrame:
    """The links table: account ids in order within each pair, pairs sorted.

    Pairs are ordered by the ranks of their account ids (ids are unique), an integer sort
    that equals sorting the id strings themselves.
    """
    ids = pa.array(account_ids, pa.string())
    by_id = np.asarray(pc.sort_indices(ids).to_numpy(), dtype=np.int64)
    id_rank = np.empty(len(ids), dtype=np.int64)
    id_rank[by_id] = np.arange(len(ids))
    left, right = id_rank[keys // n], id_rank[keys % n]
    low, high = np.minimum(left, right), np.maximum(left, right)
    order = np.argsort(low * np.int64(max(len(ids), 1)) + high)
    by_rank = ids.take(pa.array(by_id))
    return pd.DataFrame(
        {
            "account_a": pd.array(by_rank.take(pa.array(low[order])), dtype="string"),
            "account_b": pd.array(by_rank.take(pa.array(high[order])), dtype="string"),
            "weight": weight[order],
            "evidence": pd.array(evidence.take(pa.array(order)), dtype="string"),
        }
    )


def _with_lockstep(
    keys: np.ndarray,
    weight: np.ndarray,
    evidence: pa.Array,
    pairs: pd.DataFrame,
    cluster_of: np.ndarray,
    n_accounts: np.int64,
    lock_weight: float,
) -> tuple[np.ndarray, np.ndarray, pa.Array]:
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
    lock_text = pa.array(
        "lockstep:jaccard "
        + np.round(jac, 2).astype(str).astype(object)
        + " over "
        + minutes.astype(str).astype(object)
        + "-min buckets",
        pa.string(),
    )
    lock_keys = np.minimum(a[inside], b[inside]) * n_accounts + np.maximum(a[inside], b[inside])
    at = np.minimum(np.searchsorted(keys, lock_keys), max(len(keys) - 1, 0))
    both = keys[at] == lock_keys if len(keys) else np.zeros(len(lock_keys), dtype=bool)
    added = np.zeros(len(keys))
    added[at[both]] = lock_weight
    if both.any():
        # replace_with_mask takes the replacements in the order of the mask's positions.
        by_position = np.argsort(at[both])
        joined = pc.binary_join_element_wise(
            evidence.take(pa.array(at[both])), lock_text.filter(pa.array(both)), ";"
        )
        mask = np.zeros(len(keys), dtype=bool)
        mask[at[both]] = True
        evidence = pc.replace_with_mask(
            evidence, pa.array(mask), joined.take(pa.array(by_position))
        )
    alone = ~both
    return (
        np.r_[keys, lock_keys[alone]],
        np.r_[(weight + added).round(6), np.full(int(alone.sum()), 0.0 + lock_weight).round(6)],
        pa.concat_arrays([evidence, lock_text.filter(pa.array(alone))]),
    )
