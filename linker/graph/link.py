"""The linking engine's one entry point: observations in, scored clusters out.

Stages (each timed in :attr:`LinkResult.timings`):

1. ``bipartite`` — accounts × identifiers sparse matrix (plus derived kinds);
2. ``weights`` — per-identifier evidence weight and super-node flag;
3. ``projection`` — account pairs for small groups, hub nodes for larger ones;
4. ``communities`` — strong-link components contracted, then Leiden;
5. ``bursts`` — signup bursts along keys and inside clusters;
6. ``scoring`` — cluster and account scores, actions and reasons.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from linker.graph.bipartite import Bipartite, build_bipartite, derived_observations
from linker.graph.bursts import window_counts
from linker.graph.communities import components_over, detect_communities, prune_weak_members
from linker.graph.projection import Projection, project
from linker.graph.scoring import (
    ACCOUNT_FEATURES,
    FEATURES,
    account_reasons,
    cluster_evidence,
    cluster_reasons,
    logistic,
)
from linker.graph.weights import identifier_weights
from linker.settings import LinkSettings

__all__ = ["LinkResult", "link_accounts"]

logger = logging.getLogger(__name__)

OBSERVATION_COLUMNS = ["account_id", "kind", "value", "first_seen", "last_seen", "count"]


@dataclass(frozen=True)
class LinkResult:
    """What :func:`link_accounts` returns (see docs/linking.md for every column)."""

    scores: pd.DataFrame
    clusters: pd.DataFrame
    links: pd.DataFrame
    identifiers: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    features: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    """Per cluster (``cluster_id``), the scoring features and their raw counts."""
    bipartite: Bipartite | None = field(default=None, repr=False, compare=False)
    """The incidence matrix, for :func:`~linker.graph.bipartite.subgraph_to_networkx`."""


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._last, 6)
        self._last = now


def _seconds(created_at: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(created_at, utc=True)
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    fill = float(seconds.median()) if seconds.notna().any() else 0.0
    return np.asarray(seconds.fillna(fill).to_numpy(dtype=np.float64))


def _key_bursts(bipartite: Bipartite, times: np.ndarray, settings: LinkSettings) -> np.ndarray:
    """Per account: in a signup burst along some burst key, above the key's base rate."""
    window = settings.burst_window_minutes * 60.0
    span = max(float(times.max() - times.min()), 2.0 * window) if len(times) else 1.0
    columns = np.flatnonzero(np.isin(bipartite.kinds, list(settings.burst_kinds)))
    in_burst = np.zeros(bipartite.shape[0], dtype=bool)
    if len(columns) == 0:
        return in_burst
    sub = bipartite.matrix[:, columns].tocoo()
    counts = window_counts(sub.col, times[sub.row], window)
    expected = (bipartite.n_accounts[columns[sub.col]] - 1) * (2.0 * window / span)
    bursting = (counts >= settings.burst_min_accounts) & (
        counts >= settings.burst_excess * expected
    )
    in_burst[sub.row[bursting]] = True
    return in_burst


def _pair_links(
    bipartite: Bipartite,
    projection: Projection,
    weights: np.ndarray,
    cluster_of: np.ndarray,
    settings: LinkSettings,
) -> pd.DataFrame:
    a, b, ident = projection.pair_a, projection.pair_b, projection.pair_identifier
    inside = (cluster_of[a] >= 0) & (cluster_of[a] == cluster_of[b])
    a, b, ident = a[inside], b[inside], ident[inside]
    w = weights[ident]
    key = a * np.int64(bipartite.shape[0]) + b
    pair_keys, pair_of = np.unique(key, return_inverse=True)
    totals = np.bincount(pair_of, weights=w, minlength=len(pair_keys))
    keep = totals[pair_of] >= settings.min_link_weight
    pair_of, w, ident = pair_of[keep], w[keep], ident[keep]
    # Strongest evidence first within each pair; ties by identifier for determinism.
    order = np.lexsort((ident, -w, pair_of))
    pair_of, ident = pair_of[order], ident[order]
    starts = np.r_[0, np.flatnonzero(np.diff(pair_of)) + 1] if len(pair_of) else np.zeros(0, int)
    rank = np.arange(len(pair_of)) - np.repeat(starts, np.diff(np.r_[starts, len(pair_of)]))
    text = bipartite.kinds[ident].astype(object) + ":" + bipartite.values[ident].astype(object)
    kept_pairs = pair_of[starts]
    evidence = text[starts].astype(object)
    slot = np.searchsorted(kept_pairs, pair_of)
    for r in range(1, settings.max_reasons):
        at = rank == r
        evidence[slot[at]] = evidence[slot[at]] + ";" + text[at]
    n = np.int64(bipartite.shape[0])
    ids = bipartite.account_ids
    left = ids[pair_keys[kept_pairs] // n].astype(str)
    right = ids[pair_keys[kept_pairs] % n].astype(str)
    swap = left > right
    links = pd.DataFrame(
        {
            "account_a": pd.array(np.where(swap, right, left), dtype="string"),
            "account_b": pd.array(np.where(swap, left, right), dtype="string"),
            "weight": totals[kept_pairs].round(6),
            "evidence": pd.array(evidence, dtype="string"),
        }
    )
    return links.sort_values(["account_a", "account_b"], ignore_index=True)


def link_accounts(
    accounts: pd.DataFrame,
    observations: pd.DataFrame,
    settings: LinkSettings,
    *,
    seed: int = 42,
) -> LinkResult:
    """Link accounts into scored clusters.

    Parameters
    ----------
    accounts : pandas.DataFrame
        Validated accounts table (``account_id``, ``created_at``, ``billing_customer_id`` ...).
    observations : pandas.DataFrame
        Long observations table (``account_id``, ``kind``, ``value``, ``first_seen``,
        ``last_seen``, ``count``).
    settings : LinkSettings
    seed : int, default 42
        Seed of community detection; the same inputs and seed give identical frames.

    Returns
    -------
    LinkResult
        ``scores`` (one row per account, in the accounts' order), ``clusters``, ``links``
        (intra-cluster evidence edges), ``identifiers`` and ``timings``.

    Raises
    ------
    ValueError
        When a required column is missing.

    Notes
    -----
    Near-linear: O(m log m) for m observations, plus O(sum n^2) over values shared by at most
    ``pair_max_accounts`` accounts, plus Leiden on the contracted account graph.

    Examples
    --------
    >>> from linker.settings import LinkSettings
    >>> accounts = pd.DataFrame({"account_id": ["a", "b"],
    ...     "created_at": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
    ...     "billing_customer_id": [None, None]})
    >>> obs = pd.DataFrame({"account_id": ["a", "b"], "kind": ["payment", "payment"],
    ...     "value": ["fp1", "fp1"], "first_seen": accounts["created_at"],
    ...     "last_seen": accounts["created_at"], "count": [1, 1]})
    >>> link_accounts(accounts, obs, LinkSettings(min_cluster_size=2)).scores["cluster_id"].tolist()
    ['C-0001', 'C-0001']
    """
    for name, frame, needed in (
        ("accounts", accounts, ["account_id", "created_at"]),
        ("observations", observations, ["account_id", "kind", "value"]),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s): {', '.join(missing)}")
    clock = _Clock()
    obs = observations[[c for c in OBSERVATION_COLUMNS if c in observations.columns]]
    derived = derived_observations(accounts, obs)
    if len(derived):
        obs = pd.concat([obs, derived[obs.columns]], ignore_index=True)
    bip = build_bipartite(accounts["account_id"].astype("string"), obs)
    n_acc = bip.shape[0]
    clock.lap("bipartite")

    weights, supernode = identifier_weights(bip.kinds, bip.n_accounts, settings)
    clock.lap("weights")

    projection = project(bip, weights, supernode, pair_max_accounts=settings.pair_max_accounts)
    adjacency = projection.adjacency.copy()
    adjacency.data[adjacency.data < settings.min_link_weight] = 0.0
    adjacency.eliminate_zeros()
    clock.lap("projection")

    joinable = ~supernode & (bip.n_accounts >= 2)
    strong = components_over(
        bip.matrix, np.flatnonzero(joinable & np.isin(bip.kinds, list(settings.strong_kinds)))
    )
    customer = components_over(
        bip.matrix, np.flatnonzero(joinable & np.isin(bip.kinds, list(settings.customer_kinds)))
    )
    community = detect_communities(
        adjacency,
        projection.hub_matrix,
        strong,
        resolution=settings.resolution,
        seed=seed,
    )
    community = prune_weak_members(
        bip.matrix,
        community,
        weights,
        strong,
        min_attachment=settings.min_attachment,
        relative_attachment=settings.relative_attachment,
    )
    sizes = np.bincount(community[community >= 0], minlength=1)
    big = np.flatnonzero(sizes >= settings.min_cluster_size)
    remap = np.full(len(sizes), -1, dtype=np.int64)
    remap[big] = np.arange(len(big))
    cluster_of = np.where(community >= 0, remap[np.maximum(community, 0)], -1)
    n_clusters = len(big)
    clock.lap("communities")

    times = _seconds(accounts["created_at"])
    window = settings.burst_window_minutes * 60.0
    clustered = np.flatnonzero(cluster_of >= 0)
    burst_peers = np.zeros(n_acc, dtype=np.int64)
    burst_peers[clustered] = window_counts(cluster_of[clustered], times[clustered], window)
    key_burst = _key_bursts(bip, times, settings)
    clock.lap("bursts")

    evidence = cluster_evidence(
        bip,
        cluster_of,
        n_clusters,
        customer_labels=customer,
        link_weight=adjacency,
        burst_peers=burst_peers,
        key_burst=key_burst,
        settings=settings,
    )
    feats = evidence.cluster_features
    w = {name: settings.score_weights.get(name, 0.0) for name in FEATURES}
    cluster_logit = settings.score_bias + sum(w[f] * feats[f].to_numpy() for f in FEATURES)
    cluster_score = logistic(np.asarray(cluster_logit, dtype=np.float64))

    acc = evidence.account_features
    acc_cluster = acc["cluster"].to_numpy()
    account_logit = np.full(len(acc), settings.score_bias)
    for f in FEATURES:
        contribution = w[f] * feats[f].to_numpy()[acc_cluster]
        if f in ACCOUNT_FEATURES:
            contribution = contribution * (0.5 + 0.5 * acc[f].to_numpy())
        account_logit = account_logit + contribution
    score = np.zeros(n_acc, dtype=np.float64)
    score[acc["row"].to_numpy()] = logistic(account_logit)
    action = np.full(n_acc, "none", dtype=object)
    action[score >= settings.review_threshold] = "review"
    action[score >= settings.suspend_threshold] = "suspend"
    action[cluster_of < 0] = "none"

    # Cluster ids: highest score first, then largest, then by first account id.
    first_id = (
        pd.Series(bip.account_ids[clustered].astype(str))
        .groupby(cluster_of[clustered])
        .min()
        .reindex(range(n_clusters))
        .to_numpy()
    )
    order = np.lexsort((first_id.astype(str), -feats["n_accounts"].to_numpy(), -cluster_score))
    rank = np.empty(n_clusters, dtype=np.int64)
    rank[order] = np.arange(n_clusters)
    width = max(4, len(str(n_clusters)))
    label = np.array([f"C-{i + 1:0{width}d}" for i in range(n_clusters)], dtype=object)
    cluster_label = label[rank] if n_clusters else label
    size_of = feats["n_accounts"].to_numpy()

    cluster_id = pd.array([None] * n_acc, dtype="string")
    cluster_id[clustered] = cluster_label[cluster_of[clustered]]
    cluster_size = np.zeros(n_acc, dtype=np.int64)
    cluster_size[clustered] = size_of[cluster_of[clustered]]

    flagged = np.flatnonzero(action != "none")
    explain = pd.DataFrame(
        {
            "row": flagged,
            "cluster_id": cluster_label[cluster_of[flagged]] if len(flagged) else [],
            "cluster_size": cluster_size[flagged],
            "burst_peers": burst_peers[flagged],
        }
    )
    reasons = np.full(n_acc, "", dtype=object)
    reasons[flagged] = account_reasons(
        bip,
        evidence.shared,
        explain,
        settings.kind_priors,
        max_reasons=settings.max_reasons,
        window_minutes=settings.burst_window_minutes,
        burst_min=settings.burst_min_accounts,
    ).to_numpy(dtype=object)

    scores = pd.DataFrame(
        {
            "account_id": pd.array(bip.account_ids, dtype="string"),
            "cluster_id": cluster_id,
            "cluster_size": cluster_size,
            "score": score.round(6),
            "action": pd.array(action, dtype="string"),
            "reasons": pd.array(reasons, dtype="string"),
        }
    )

    n_suspend = np.bincount(cluster_of[action == "suspend"], minlength=n_clusters)
    n_review = np.bincount(cluster_of[action == "review"], minlength=n_clusters)
    described = np.flatnonzero((n_suspend + n_review) > 0)
    cluster_text = np.full(n_clusters, "", dtype=object)
    cluster_text[described] = cluster_reasons(feats, described, settings.burst_window_minutes)
    clusters = pd.DataFrame(
        {
            "cluster_id": pd.array(cluster_label, dtype="string"),
            "size": size_of.astype(np.int64),
            "score": cluster_score.round(6),
            "n_suspend": n_suspend.astype(np.int64),
            "n_review": n_review.astype(np.int64),
            "reasons": pd.array(cluster_text, dtype="string"),
        }
    )
    clusters = clusters.iloc[order].reset_index(drop=True)
    features_out = feats.assign(cluster_id=pd.array(cluster_label, dtype="string"))
    features_out = features_out.iloc[order].reset_index(drop=True)
    clock.lap("scoring")

    links = _pair_links(bip, projection, weights, cluster_of, settings)
    identifiers = pd.DataFrame(
        {
            "kind": pd.array(bip.kinds, dtype="string"),
            "value": pd.array(bip.values, dtype="string"),
            "n_accounts": bip.n_accounts.astype(np.int64),
            "weight": weights.round(6),
            "is_supernode": supernode,
        }
    )
    clock.lap("output")
    logger.info(
        "linked %d accounts: %d clusters, %d suspend, %d review",
        n_acc,
        n_clusters,
        int((action == "suspend").sum()),
        int((action == "review").sum()),
    )
    return LinkResult(
        scores=scores,
        clusters=clusters,
        links=links,
        identifiers=identifiers,
        timings=clock.timings,
        features=features_out,
        bipartite=bip,
    )
