"""Embedding proximity: account vectors, and the review-only rule of the linking engine.

:func:`embed_accounts` embeds the accounts of the account–identifier graph with FastRP
(:mod:`linker.graph.embed`) on the candidate subgraph around some seed accounts, with
super-node and single-account identifiers left out. :func:`embedding_review` is the step
after :func:`~linker.graph.link.link_accounts`: an account the engine left at ``none`` whose
vector is close to a flagged cluster's centroid, and which shares at least one non-supernode
identifier with that cluster, moves to ``review``. It never produces ``suspend``
(docs/embeddings.md says why).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from linker.graph.bipartite import Bipartite, IdentifierGraph
from linker.reasons import EMBEDDING_PROXIMITY
from linker.settings import EmbedSettings, LinkSettings

__all__ = [
    "FASTRP_ITERATION_WEIGHTS",
    "FASTRP_NORMALIZATION_STRENGTH",
    "AccountEmbedding",
    "ProximityResult",
    "embed_accounts",
    "embedding_frame",
    "embedding_review",
    "seed_evidence",
    "shared_identifiers",
]

logger = logging.getLogger(__name__)

FASTRP_ITERATION_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
"""FastRP terms of 1 to 4 hops: on the bipartite graph, 2 and 4 hops reach accounts."""

FASTRP_NORMALIZATION_STRENGTH = -0.5
"""Damps busy identifiers' random vectors (the setting bench/embed.py chose on accounts)."""


@dataclass(frozen=True)
class AccountEmbedding:
    """Unit-length vectors of some accounts of a :class:`~linker.graph.bipartite.Bipartite`.

    Attributes
    ----------
    rows : numpy.ndarray of int64
        Account rows (indices into ``Bipartite.account_ids``) that were embedded, ascending.
    vectors : numpy.ndarray of float32, shape (len(rows), dimensions)
        Row ``k`` is account ``rows[k]``'s vector, L2-normalised (all zero for an account
        with no linking identifier).
    """

    rows: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class ProximityResult:
    """What :func:`embedding_review` returns.

    Attributes
    ----------
    scores : pandas.DataFrame
        The scores, with accounts moved to review (their score raised to the review
        threshold, their reason extended).
    embeddings : pandas.DataFrame or None
        ``account_id`` and ``embedding`` (list of float32) of the embedded accounts, in the
        accounts' order; ``None`` when the rule is disabled.
    moved : int
        Accounts moved from ``none`` to ``review``.
    """

    scores: pd.DataFrame
    embeddings: pd.DataFrame | None
    moved: int


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """The rows of ``vectors`` L2-normalised, as float32 (all-zero rows stay zero)."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0).astype(np.float32)


def embed_accounts(
    graph: IdentifierGraph,
    seeds: np.ndarray,
    *,
    dimensions: int = 256,
    hops: int = 4,
    whole_graph_max_nodes: int = 200_000,
    node2vec: EmbedSettings | None = None,
    seed: int = 0,
) -> AccountEmbedding:
    """Unit vectors of the accounts near ``seeds`` in the account–identifier graph.

    Parameters
    ----------
    graph : IdentifierGraph
        The run's graph: super-nodes and single-account identifiers are left out.
    seeds : numpy.ndarray of bool, shape (n_accounts,)
        Accounts whose neighbourhood is embedded.
    dimensions : int, default 256
        FastRP's vector length.
    hops : int, default 4
        Candidate subgraph radius in edges (4 = accounts two shared identifiers away).
    whole_graph_max_nodes : int, default 200000
        Embed every node when the graph (exclusions aside) has at most this many.
    node2vec : EmbedSettings, optional
        Embed with node2vec and these settings (``dimensions``, walks, ``p``, ``q``,
        training) instead of FastRP.
    seed : int, default 0
        The embedding's seed; the vectors are bit-identical for a seed (node2vec: with
        ``workers=1``, its default).

    Returns
    -------
    AccountEmbedding

    Raises
    ------
    EnvironmentProblem
        If numba (the ``embed`` extra) is not installed.

    Notes
    -----
    O(edges) for the subgraph search plus O(4 · edges · dimensions) for FastRP, or
    node2vec's O(nodes · walks · length · window · negatives · dimensions).
    """
    # The embedding module compiles with numba: loaded only by runs that embed.
    from linker.graph.embed import bipartite_adjacency, candidate_subgraph, embed, fastrp_embed

    bipartite = graph.bipartite
    n_accounts = bipartite.shape[0]
    seeds = np.asarray(seeds, dtype=bool)
    if seeds.shape != (n_accounts,):
        raise ValueError(f"seeds has shape {seeds.shape}, not ({n_accounts},)")
    adjacency = bipartite_adjacency(bipartite.matrix)
    exclude = np.concatenate([np.zeros(n_accounts, dtype=bool), ~graph.linkable])
    node_seeds = np.concatenate([seeds, np.zeros(bipartite.shape[1], dtype=bool)])
    nodes = candidate_subgraph(
        adjacency,
        node_seeds,
        hops=hops,
        exclude=exclude,
        whole_graph_max_nodes=whole_graph_max_nodes,
    )
    sub = adjacency[nodes][:, nodes]
    if node2vec is not None:
        vectors = embed(sub, settings=dataclasses.replace(node2vec, method="node2vec"), seed=seed)
        dimensions = node2vec.dimensions
    else:
        vectors = fastrp_embed(
            sub,
            dimensions=dimensions,
            iteration_weights=FASTRP_ITERATION_WEIGHTS,
            normalization_strength=FASTRP_NORMALIZATION_STRENGTH,
            seed=seed,
        )
    is_account = nodes < n_accounts
    rows = nodes[is_account].astype(np.int64)
    logger.info("embedded %d of %d accounts (%d dimensions)", len(rows), n_accounts, dimensions)
    return AccountEmbedding(rows=rows, vectors=_unit_rows(vectors[is_account]))


def embedding_frame(bipartite: Bipartite, embedding: AccountEmbedding) -> pd.DataFrame:
    """``account_id`` and ``embedding`` (a list of float32 per account), in row order.

    Accounts whose vector is all zero (no linking identifier) are left out: they have no
    direction, so no cosine similarity (and Neo4j's cosine vector index rejects them).
    """
    keep = np.abs(embedding.vectors).sum(axis=1) > 0
    return pd.DataFrame(
        {
            "account_id": pd.array(bipartite.account_ids[embedding.rows[keep]], dtype="string"),
            "embedding": list(embedding.vectors[keep]),
        }
    )


def shared_identifiers(
    bipartite: Bipartite,
    linking: np.ndarray,
    row: int,
    others: np.ndarray,
    *,
    limit: int = 2,
) -> list[str]:
    """Linking identifiers that account ``row`` shares with any account of ``others``.

    Parameters
    ----------
    bipartite : Bipartite
    linking : numpy.ndarray of bool
        Linkable identifiers (:attr:`IdentifierGraph.linkable`).
    row : int
        The account.
    others : numpy.ndarray of int
        The other accounts' rows.
    limit : int, default 2
        The most identifiers returned.

    Returns
    -------
    list of str
        ``kind:value``, rarest first (fewest accounts), then by kind and value.

    Notes
    -----
    O(identifiers of ``row`` + identifiers of ``others``).
    """
    matrix = bipartite.matrix
    mine = matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]]
    mine = mine[linking[mine]]
    if len(mine) == 0 or len(others) == 0:
        return []
    theirs = np.unique(sp.csr_matrix(matrix[np.asarray(others)]).indices)
    common = np.intersect1d(mine, theirs)
    if len(common) == 0:
        return []
    counts = np.asarray(bipartite.n_accounts)[common]
    kinds = bipartite.kinds[common].astype(str)
    values = bipartite.values[common].astype(str)
    order = np.lexsort((values, kinds, counts))[:limit]
    return [f"{kinds[k]}:{values[k]}" for k in order]


def seed_evidence(
    bipartite: Bipartite,
    seeds: np.ndarray,
    rows: np.ndarray,
    weights: np.ndarray,
    linking: np.ndarray,
) -> np.ndarray:
    """Rarity-weighted identifier evidence linking each account of ``rows`` to ``seeds``.

    ``evidence(a) = sum over linking identifiers i of a of weight[i] * log(1 + seeds(i))``,
    where ``seeds(i)`` is the number of seed accounts holding ``i``: a rare card held by one
    seed counts about as much as its weight, more seeds holding it count with diminishing
    returns, and super-nodes and single-account identifiers count nothing.

    Parameters
    ----------
    bipartite : Bipartite
    seeds : numpy.ndarray of int
        The seed accounts' rows.
    rows : numpy.ndarray of int
        The accounts to score.
    weights : numpy.ndarray of float64, shape (n_identifiers,)
        Evidence weight of each identifier
        (:func:`~linker.graph.weights.identifier_weights`).
    linking : numpy.ndarray of bool
        Linkable identifiers (:attr:`IdentifierGraph.linkable`).

    Returns
    -------
    numpy.ndarray of float64, shape (len(rows),)

    Notes
    -----
    O(edges of ``seeds`` + edges of ``rows``).

    Examples
    --------
    >>> seed_evidence(bipartite, np.array([0]), np.array([1, 2]), w, linking)  # doctest: +SKIP
    array([0.69, 0.  ])
    """
    matrix = sp.csr_matrix(bipartite.matrix, dtype=np.float64)
    held = np.asarray(matrix[np.asarray(seeds, dtype=np.int64)].sum(axis=0)).ravel()
    per_identifier = np.where(linking, np.asarray(weights, dtype=np.float64), 0.0) * np.log1p(held)
    return np.asarray(matrix[np.asarray(rows, dtype=np.int64)] @ per_identifier, dtype=np.float64)


@dataclass(frozen=True)
class _NearHits:
    """Candidate accounts whose vector is close enough to a flagged cluster's centroid."""

    rows: np.ndarray  # account rows
    cluster: np.ndarray  # index of each one's nearest flagged cluster
    cosine: np.ndarray  # cosine similarity to that cluster's centroid


def _check_account_order(scores: pd.DataFrame, bipartite: Bipartite) -> None:
    """Raise ValueError unless ``scores`` lists the graph's accounts in its row order."""
    if len(scores) != bipartite.shape[0] or not np.array_equal(
        scores["account_id"].astype(str).to_numpy(), bipartite.account_ids.astype(str)
    ):
        raise ValueError("scores must list the bipartite graph's accounts in its row order")


def _flagged_clusters(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the clusters with a suspended account (sorted), and which accounts are in one."""
    action = scores["action"].astype(str).to_numpy()
    cluster = scores["cluster_id"].astype("string")
    flagged_ids = np.unique(cluster[(action == "suspend") & cluster.notna().to_numpy()].astype(str))
    in_flagged = cluster.isin(flagged_ids).fillna(False).to_numpy(dtype=bool)
    return flagged_ids, in_flagged


def _cluster_centroids(
    embedding: AccountEmbedding, member_cluster: np.ndarray, flagged_ids: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unit centroid and embedded member rows of each flagged cluster.

    ``member_cluster`` is the cluster id of each embedded account. A cluster whose vectors
    cancel out keeps a zero centroid.
    """
    rows, unit = embedding.rows, embedding.vectors
    centroids = np.zeros((len(flagged_ids), unit.shape[1]), dtype=np.float64)
    members: list[np.ndarray] = []
    for k, cid in enumerate(flagged_ids):
        inside = member_cluster == cid
        members.append(rows[inside])
        mean = unit[inside].astype(np.float64).sum(axis=0)
        norm = np.linalg.norm(mean)
        if norm > 0:
            centroids[k] = mean / norm
    return centroids, members


def _near_centroids(
    embedding: AccountEmbedding, candidate: np.ndarray, centroids: np.ndarray, threshold: float
) -> _NearHits:
    """The ``candidate`` embedded accounts whose nearest centroid is at least ``threshold``."""
    cand_rows = embedding.rows[candidate]
    similarity = embedding.vectors[candidate].astype(np.float64) @ centroids.T
    nearest = np.argmax(similarity, axis=1)
    best = similarity[np.arange(len(cand_rows)), nearest]
    near = np.flatnonzero(best >= threshold)
    return _NearHits(rows=cand_rows[near], cluster=nearest[near], cosine=best[near])


def _move_to_review(
    scores: pd.DataFrame,
    graph: IdentifierGraph,
    settings: LinkSettings,
    hits: _NearHits,
    members: list[np.ndarray],
    flagged_ids: np.ndarray,
) -> tuple[pd.DataFrame, int]:
    """Move the hits that share enough identifiers with their cluster to review.

    Returns the new scores (a copy; each moved account's score raised to the review
    threshold and its reason extended) and the number of accounts moved.
    """
    options = settings.embedding
    new_action = scores["action"].astype(str).to_numpy().astype(object)
    new_score = scores["score"].to_numpy(dtype=np.float64, copy=True)
    new_reasons = scores["reasons"].astype("string").fillna("").to_numpy(dtype=object)
    has_codes = "reason_codes" in scores.columns
    new_codes = (
        scores["reason_codes"].astype("string").fillna("").to_numpy(dtype=object)
        if has_codes
        else None
    )
    moved = 0
    for row, target, cosine in zip(
        hits.rows.tolist(), hits.cluster.tolist(), hits.cosine.tolist(), strict=True
    ):
        shared = shared_identifiers(
            graph.bipartite,
            graph.linkable,
            row,
            members[target],
            limit=max(options.min_shared, 2),
        )
        if len(shared) < options.min_shared:
            continue
        reason = (
            f"embedding: near flagged cluster {flagged_ids[target]} "
            f"(cosine {cosine:.3f}), shares {', '.join(shared)}"
        )
        before = str(new_reasons[row])
        new_reasons[row] = f"{before}; {reason}" if before else reason
        if new_codes is not None:
            code = f"{EMBEDDING_PROXIMITY.code}:{len(shared)}"
            new_codes[row] = f"{new_codes[row]};{code}" if new_codes[row] else code
        new_action[row] = "review"
        new_score[row] = max(new_score[row], settings.review_threshold)
        moved += 1
    out = scores.copy()
    out["action"] = pd.Series(new_action, index=out.index).astype(scores["action"].dtype)
    out["score"] = new_score
    out["reasons"] = pd.array(new_reasons, dtype="string")
    if new_codes is not None:
        out["reason_codes"] = pd.array(new_codes, dtype="string")
    logger.info(
        "embedding proximity: %d accounts moved to review (%d near a flagged cluster)",
        moved,
        len(hits.rows),
    )
    return out, moved


def embedding_review(
    scores: pd.DataFrame,
    graph: IdentifierGraph,
    settings: LinkSettings,
    *,
    seed: int = 42,
    hops: int = 4,
    whole_graph_max_nodes: int = 200_000,
) -> ProximityResult:
    """Move unflagged accounts near a flagged cluster to review, on embedding proximity.

    A cluster is flagged when one of its accounts is suspended. An account whose action is
    ``none`` moves to ``review`` when (1) the cosine similarity of its FastRP vector to the
    centroid of its nearest flagged cluster is at least ``settings.embedding.threshold`` and
    (2) it shares at least ``settings.embedding.min_shared`` non-supernode identifiers with
    that cluster's accounts, which the reason names. No account ever moves to ``suspend``.

    Parameters
    ----------
    scores : pandas.DataFrame
        ``link_accounts``' scores (``account_id``, ``cluster_id``, ``score``, ``action``,
        ``reasons``), one row per account in the graph's row order.
    graph : IdentifierGraph
        The run's graph.
    settings : LinkSettings
        ``settings.embedding`` (enabled, threshold, dimensions, min_shared), the super-node
        thresholds and ``review_threshold``.
    seed : int, default 42
        FastRP's seed.
    hops, whole_graph_max_nodes : int
        The candidate subgraph (see :func:`embed_accounts`).

    Returns
    -------
    ProximityResult
        The scores unchanged and no embeddings when ``settings.embedding.enabled`` is false.

    Raises
    ------
    ValueError
        When ``scores`` and ``graph`` disagree on the accounts.

    Notes
    -----
    O(edges · dimensions) for FastRP on the candidate subgraph around the flagged clusters,
    plus O(candidates · flagged clusters · dimensions) for the similarities.

    Examples
    --------
    >>> from linker.settings import EmbedSettings, LinkSettings
    >>> result = embedding_review(scores, graph, LinkSettings())  # doctest: +SKIP
    >>> result.moved  # doctest: +SKIP
    0
    """
    options = settings.embedding
    if not options.enabled:
        return ProximityResult(scores, None, 0)
    bipartite = graph.bipartite
    _check_account_order(scores, bipartite)
    flagged_ids, in_flagged = _flagged_clusters(scores)
    embedding = embed_accounts(
        graph,
        in_flagged,
        dimensions=options.dimensions,
        hops=hops,
        whole_graph_max_nodes=whole_graph_max_nodes,
        seed=seed,
    )
    frame = embedding_frame(bipartite, embedding)
    if len(flagged_ids) == 0:
        return ProximityResult(scores, frame, 0)
    rows = embedding.rows
    candidate = (scores["action"].astype(str).to_numpy()[rows] == "none") & ~in_flagged[rows]
    if not candidate.any():
        return ProximityResult(scores, frame, 0)
    cluster_ids = scores["cluster_id"].astype("string").fillna("").astype(str).to_numpy()
    centroids, members = _cluster_centroids(embedding, np.asarray(cluster_ids)[rows], flagged_ids)
    hits = _near_centroids(embedding, candidate, centroids, options.threshold)
    out, moved = _move_to_review(scores, graph, settings, hits, members, flagged_ids)
    return ProximityResult(out, frame, moved)
