"""The linking engine's one entry point: observations in, scored clusters out.

Stages (each timed in :attr:`LinkResult.timings`):

1. ``bipartite`` — accounts × identifiers sparse matrix (plus derived kinds);
2. ``weights`` — per-identifier evidence weight and super-node flag;
3. ``projection`` — account pairs for small groups, hub nodes for larger ones;
4. ``communities`` — strong-link components contracted, then Leiden;
5. ``bursts`` — signup bursts along keys and inside clusters;
6. ``scoring`` — cluster and account scores, actions and reasons.

With ``events`` and ``link.behaviour.enabled``, two more stages run after ``bipartite``:
``behaviour`` (per-account features, template populations) and ``lockstep`` (synchronised
pairs); their evidence joins the graph and the scores (docs/behaviour.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from linker.graph.behaviour import account_behaviour, event_codes, template_populations
from linker.graph.bipartite import Bipartite, build_bipartite, derived_observations
from linker.graph.bursts import window_counts
from linker.graph.communities import components_over, detect_communities, prune_weak_members
from linker.graph.lockstep import lockstep_pairs
from linker.graph.projection import Projection, project
from linker.graph.scoring import (
    ACCOUNT_FEATURES,
    BEHAVIOUR_FEATURES,
    FEATURES,
    BehaviourEvidence,
    account_reasons,
    behaviour_cluster_reasons,
    behaviour_evidence,
    behaviour_reasons,
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
    behaviour: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    """Per account (accounts' order): behaviour features and score indicators, when computed
    (saved as ``behaviour.parquet``; docs/behaviour.md)."""
    lockstep_stats: dict[str, object] = field(default_factory=dict, compare=False)
    """Lockstep cost and counts (comparisons, pairs, per width)."""


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._last, 6)
        self._last = now


def _event_codes_for(events: pd.DataFrame, account_ids: pd.Series) -> pd.DataFrame:
    """The events as :func:`~linker.graph.behaviour.event_codes` of these accounts: encoded
    here, or already encoded by the caller (``linker run`` encodes them once, right after
    normalisation, and frees the events table)."""
    if not {"acc", "t"} <= set(events.columns):
        return event_codes(events, account_ids)
    if events.attrs.get("n_accounts") != len(account_ids):
        raise ValueError(
            f"events are encoded for {events.attrs.get('n_accounts')} accounts, "
            f"not the {len(account_ids)} given"
        )
    return events


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
    lockstep: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The intra-cluster evidence links; with ``lockstep`` pairs, those inside a cluster
    join them (their weight adds up, their evidence is appended; docs/behaviour.md)."""
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
    keys = pair_keys[kept_pairs]
    weight = totals[kept_pairs].round(6)
    if lockstep is not None and len(lockstep):
        keys, weight, evidence = _with_lockstep_links(
            keys, weight, evidence, lockstep, cluster_of, n, settings.behaviour.lockstep_weight
        )
    ids = bipartite.account_ids
    left = ids[keys // n].astype(str)
    right = ids[keys % n].astype(str)
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


def _with_lockstep_links(
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


def link_accounts(
    accounts: pd.DataFrame,
    observations: pd.DataFrame,
    settings: LinkSettings,
    *,
    seed: int = 42,
    events: pd.DataFrame | None = None,
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
    events : pandas.DataFrame, optional
        The validated events table, or its :func:`~linker.graph.behaviour.event_codes` for
        these accounts in this order. With it (and ``settings.behaviour.enabled``), behaviour
        features, template populations and lockstep pairs add evidence (docs/behaviour.md).

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

    cfg = settings.behaviour
    use_behaviour = cfg.enabled and events is not None
    if not use_behaviour:
        del obs, derived  # the observations with derived kinds are needed no further
    behaviour: pd.DataFrame | None = None
    lock_pairs = pd.DataFrame({"a": [], "b": [], "jaccard": [], "bucket_minutes": []})
    lockstep_stats: dict[str, object] = {}
    popular_templates = np.zeros(0, dtype=object)
    if use_behaviour:
        assert events is not None
        if "country" in accounts.columns:
            templates = template_populations(
                obs,
                accounts,
                min_accounts=cfg.template_min_accounts,
                min_country_entropy=cfg.template_min_country_entropy,
                min_signup_span_days=cfg.template_min_signup_span_days,
                min_subnet_share=cfg.template_min_subnet_share,
            )
            popular_templates = templates.loc[templates["is_supernode"], "value"].to_numpy(
                dtype=object
            )
        del obs, derived
        ordered = accounts.assign(account_id=pd.array(bip.account_ids, dtype="string"))
        codes = _event_codes_for(events, ordered["account_id"])
        # ``linker run`` hands over its only reference to the coded events: once the
        # features are computed, lockstep keeps only the columns it reads.
        del events
        behaviour = account_behaviour(
            codes, ordered, codes=codes, dormancy_days=cfg.dormancy_days, seed=seed
        )
        codes = codes[["acc", "t", "prompt", "model"]]
        clock.lap("behaviour")
        lock = lockstep_pairs(
            codes,
            ordered["account_id"],
            bucket_minutes=cfg.bucket_minutes,
            min_jaccard=cfg.min_jaccard,
            model_min_jaccard=cfg.model_min_jaccard,
            min_tokens=cfg.min_tokens,
            n_hashes=cfg.n_hashes,
            band_rows=cfg.band_rows,
            max_bucket=cfg.max_bucket,
            seed=seed,
        )
        del codes
        lock_pairs = lock.pairs
        lockstep_stats = {
            "comparisons": lock.comparisons,
            "pairs": len(lock.pairs),
            "participants": lock.participants,
            "memberships": lock.tokens,
            "per_width": lock.per_width,
            "popular_templates": len(popular_templates),
        }
        clock.lap("lockstep")

    weights, supernode = identifier_weights(bip.kinds, bip.n_accounts, settings)
    if len(popular_templates):
        # Templates used by a huge, diverse population (an app's system prompt, a public
        # tutorial template) are super-nodes by their population statistics.
        prompt_cols = np.flatnonzero(bip.kinds == "prompt")
        popular = np.zeros(len(bip.kinds), dtype=bool)
        popular[prompt_cols[pd.Index(bip.values[prompt_cols]).isin(popular_templates)]] = True
        supernode = supernode | popular
        weights = np.where(popular, 0.0, weights)
    clock.lap("weights")

    projection = project(bip, weights, supernode, pair_max_accounts=settings.pair_max_accounts)
    adjacency = projection.adjacency.copy()
    adjacency.data[adjacency.data < settings.min_link_weight] = 0.0
    adjacency.eliminate_zeros()
    lock_matrix = sp.csr_matrix(
        (
            np.full(len(lock_pairs), cfg.lockstep_weight),
            (lock_pairs["a"].to_numpy(np.int64), lock_pairs["b"].to_numpy(np.int64)),
        ),
        shape=(n_acc, n_acc),
    )
    # Lockstep pairs do not reshape communities (a batch job in step with a ring must not be
    # pulled into it); they bring back accounts that pruning left outside (below) and they
    # are evidence in scores, reasons and links.
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
    if lock_matrix.nnz:
        community = _reattach_by_lockstep(community, lock_matrix, settings.min_attachment)
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
    behaviour_terms: BehaviourEvidence | None = None
    if behaviour is not None:
        behaviour_terms = behaviour_evidence(
            behaviour,
            lock_pairs,
            cluster_of,
            n_clusters,
            feats["customers"].to_numpy(),
            {f: settings.score_weights.get(f, 0.0) for f in BEHAVIOUR_FEATURES},
            settings,
        )
        cluster_logit = cluster_logit + behaviour_terms.cluster_logit
        feats = pd.concat(
            [feats, behaviour_terms.cluster_features.add_prefix("behaviour_")], axis=1
        )
    cluster_score = logistic(np.asarray(cluster_logit, dtype=np.float64))

    acc = evidence.account_features
    acc_cluster = acc["cluster"].to_numpy()
    account_logit = np.full(len(acc), settings.score_bias)
    for f in FEATURES:
        contribution = w[f] * feats[f].to_numpy()[acc_cluster]
        if f in ACCOUNT_FEATURES:
            contribution = contribution * (0.5 + 0.5 * acc[f].to_numpy())
        account_logit = account_logit + contribution
    if behaviour_terms is not None:
        account_logit = account_logit + behaviour_terms.account_logit[acc["row"].to_numpy()]
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
    if behaviour_terms is not None and behaviour is not None and len(flagged):
        extra = behaviour_reasons(behaviour, behaviour_terms, flagged).to_numpy(dtype=object)
        has = np.array([len(x) > 0 for x in extra], dtype=bool)
        reasons[flagged[has]] = reasons[flagged[has]] + "; " + extra[has]

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
    if behaviour_terms is not None and len(described):
        extra_c = np.array(
            behaviour_cluster_reasons(behaviour_terms.cluster_features, described), dtype=object
        )
        has_c = np.array([len(x) > 0 for x in extra_c], dtype=bool)
        cluster_text[described[has_c]] = cluster_text[described[has_c]] + "; " + extra_c[has_c]
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

    links = _pair_links(
        bip, projection, weights, cluster_of, settings, lock_pairs if len(lock_pairs) else None
    )
    behaviour_out = None
    if behaviour is not None and behaviour_terms is not None:
        behaviour_out = pd.concat(
            [
                behaviour,
                behaviour_terms.account_features.add_prefix("indicator_").rename(
                    columns=lambda c: c.replace("indicator_lockstep_", "lockstep_").replace(
                        "indicator_woke_with", "woke_with"
                    )
                ),
            ],
            axis=1,
        )
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
        behaviour=behaviour_out,
        lockstep_stats=lockstep_stats,
    )


def _reattach_by_lockstep(
    community: np.ndarray, lock_matrix: sp.csr_matrix, min_attachment: float
) -> np.ndarray:
    """Put accounts left outside every community into the one they are in lockstep with.

    An aged ring account shares no identifier with the ring, so pruning drops it; lockstep
    pairs weighing at least ``min_attachment`` with one community bring it back.
    """
    coo = lock_matrix.tocoo()
    left = np.r_[coo.row, coo.col]
    right = np.r_[coo.col, coo.row]
    w = np.r_[coo.data, coo.data]
    outside = (community[left] < 0) & (community[right] >= 0)
    if not outside.any():
        return community
    frame = pd.DataFrame({"row": left[outside], "comm": community[right[outside]], "w": w[outside]})
    totals = frame.groupby(["row", "comm"], as_index=False).agg(w=("w", "sum"))
    totals = totals.sort_values(["row", "w", "comm"], ascending=[True, False, True])
    best = totals.drop_duplicates("row")
    best = best[best["w"] >= min_attachment]
    out = community.copy()
    out[best["row"].to_numpy()] = best["comm"].to_numpy()
    return out
