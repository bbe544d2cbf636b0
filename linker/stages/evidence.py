"""Evidence stages: compute the registered signals, then score, decide and explain.

``signals`` computes every registered signal (:mod:`linker.signals`) for every cluster and
clustered account and saves their values and score terms (the ``evidence`` and
``cluster_evidence`` artefacts). ``score`` turns them into scores and actions, numbers the
clusters, writes each flagged account's reasons (the values it shares with its cluster first,
then what each signal says of it) and the evidence links inside clusters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from linker import kinds
from linker import signals as registry
from linker.changes import stable_cluster_ids
from linker.engine.stages import RunContext
from linker.graph.audit import dominant_values
from linker.graph.bipartite import IdentifierGraph
from linker.graph.links import cluster_links
from linker.graph.peers import PeerTies, suspended_peer_ties
from linker.graph.scoring import (
    actions,
    cluster_labels,
    confirm_membership,
    logistic,
    shared_evidence,
    shared_value_explanations,
)
from linker.reasons import TIED_TO_SUSPENDED, join_codes
from linker.signals import EvidenceInputs, Signal, SignalValues
from linker.stages.linking import LinkProjection, account_frame, lockstep_rows

__all__ = ["score", "signals"]

logger = logging.getLogger(__name__)


def _seconds(created_at: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(created_at, utc=True)
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    fill = float(seconds.median()) if seconds.notna().any() else 0.0
    return np.asarray(seconds.fillna(fill).to_numpy(dtype=np.float64))


def _n_clusters(cluster_of: np.ndarray) -> int:
    return int(cluster_of.max()) + 1 if len(cluster_of) and cluster_of.max() >= 0 else 0


def _inputs(ctx: RunContext, cluster_of: np.ndarray | None = None) -> EvidenceInputs:
    """The evidence every signal is computed from, for the communities' clusters or, when
    given, for ``cluster_of``."""
    graph: IdentifierGraph = ctx.view("graph")
    communities = ctx.frame("communities")
    if cluster_of is None:
        cluster_of = communities["cluster"].to_numpy(np.int64)
    n_clusters = _n_clusters(cluster_of)
    linked: LinkProjection = ctx.view("projection")
    return EvidenceInputs(
        bipartite=graph.bipartite,
        weights=graph.weights,
        supernode=graph.supernode,
        cluster_of=cluster_of,
        n_clusters=n_clusters,
        customer_of=communities["customer"].to_numpy(np.int64),
        link_weight=linked.links,
        created=_seconds(account_frame(ctx, ["created_at"])["created_at"]),
        settings=ctx.settings.link,
        behaviour=ctx.optional_frame("behaviour"),
        lockstep=lockstep_rows(ctx, graph.bipartite.account_ids),
    )


def _active(inputs: EvidenceInputs) -> list[Signal]:
    """The registered signals whose group can be computed in this run."""
    return [s for s in registry.all_signals() if registry.group(s.group).applies(inputs)]


def _evidence_frames(inputs: EvidenceInputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every active signal's values and score terms, and the logits they add up to: the
    ``evidence`` (per account) and ``cluster_evidence`` (per cluster) frames."""
    settings = inputs.settings
    active = _active(inputs)
    for s in active:
        inputs.values[s.name] = s.compute(inputs)
    weights = dict(settings.score_weights)
    cluster_logit = np.full(inputs.n_clusters, settings.score_bias)
    account_logit = np.full(inputs.n_accounts, settings.score_bias)
    terms: dict[str, np.ndarray] = {}
    for group in registry.groups():
        members = [s for s in active if s.group == group.name]
        if not members:
            continue
        added = group.terms(members, inputs.values, weights, inputs)
        cluster_logit = cluster_logit + added.cluster
        account_logit = group.add_to(account_logit, added)
        terms.update({f"{name}:term": term for name, term in added.account.items()})
    account_columns, cluster_columns = registry.values_to_columns(inputs.values)
    evidence = pd.DataFrame(
        {
            "account_id": pd.array(inputs.bipartite.account_ids, dtype="string"),
            "cluster": inputs.cluster_of,
            "logit": account_logit,
            **account_columns,
            **terms,
        }
    )
    cluster_evidence = pd.DataFrame(
        {
            "cluster": np.arange(inputs.n_clusters, dtype=np.int64),
            "n_accounts": inputs.size,
            "logit": cluster_logit,
            **cluster_columns,
        }
    )
    return evidence, cluster_evidence


def _engine_actions(
    inputs: EvidenceInputs, logit: np.ndarray
) -> tuple[np.ndarray, PeerTies | None]:
    """Actions from the score thresholds, and the accounts suspended through ties to
    members suspended on their own evidence."""
    settings = inputs.settings
    score = np.zeros(inputs.n_accounts, dtype=np.float64)
    clustered = inputs.cluster_of >= 0
    score[clustered] = logistic(logit[clustered])
    action = actions(
        score,
        clustered,
        suspend_at=settings.suspend_threshold,
        review_at=settings.review_threshold,
    )
    ties = _peer_ties(inputs, action)
    if ties is not None:
        action[ties.promoted] = "suspend"
    return action, ties


def signals(ctx: RunContext) -> Mapping[str, Any]:
    """Every registered signal's values, score terms and the logits they add up to; then
    confirmed membership: where members are flagged, the members the scoring leaves
    unflagged are released from their cluster (:func:`linker.graph.scoring.confirm_membership`;
    ``link.confirm_membership``). The evidence is not computed again without them: releasing
    an account its evidence does not implicate must not make its former cluster's other
    members more suspicious (computed again, a hackathon's review rows beside a ring became
    suspensions on the 1M synth world)."""
    settings = ctx.settings.link
    inputs = _inputs(ctx)
    evidence, cluster_evidence = _evidence_frames(inputs)
    if not settings.confirm_membership or inputs.n_clusters == 0:
        return {"evidence": evidence, "cluster_evidence": cluster_evidence}
    action, _ = _engine_actions(inputs, evidence["logit"].to_numpy(np.float64))
    confirmed = confirm_membership(inputs.cluster_of, action != "none")
    released = (inputs.cluster_of >= 0) & (confirmed < 0)
    ctx.note(released_members=int(released.sum()))
    if released.any():
        logger.info(
            "released %d unflagged members from clusters with flagged members",
            int(released.sum()),
        )
        evidence["cluster"] = confirmed
        cluster_evidence["n_accounts"] = np.bincount(
            confirmed[confirmed >= 0], minlength=inputs.n_clusters
        ).astype(np.int64)
    return {"evidence": evidence, "cluster_evidence": cluster_evidence}


def _reasons(
    inputs: EvidenceInputs,
    values: dict[str, SignalValues],
    flagged: np.ndarray,
    cluster_id: np.ndarray,
    cluster_size: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each flagged account's reason: the values it shares with its cluster, then what each
    signal says of it, in registry order; and the same as reason codes
    (:mod:`linker.reasons`)."""
    settings = inputs.settings
    accounts = pd.DataFrame(
        {"row": flagged, "cluster_id": cluster_id[flagged], "cluster_size": cluster_size[flagged]}
    )
    shared = shared_evidence(inputs.bipartite, inputs.cluster_of, flagged)
    # A super-node (a template a large share of all accounts send) is nobody's evidence.
    shared = shared[~inputs.supernode[shared["identifier"].to_numpy()]]
    said_text, said_codes = shared_value_explanations(
        inputs.bipartite,
        shared,
        accounts,
        settings.kind_priors,
        max_reasons=settings.max_reasons,
        weights=inputs.weights,
    )
    text = said_text.to_numpy(dtype=object)
    codes = said_codes.to_numpy(dtype=object)
    for s in registry.all_signals():
        if s.name in values and len(flagged):
            part = s.account_reason(inputs, values[s.name], flagged)
            said = np.array([len(p) > 0 for p in part], dtype=bool)
            text[said] = text[said] + "; " + part[said]
            if said.any():
                count = np.asarray(s.account_count(inputs, values[s.name], flagged[said]))
                code = f"{s.reason_code()}:" + count.astype(np.int64).astype(str).astype(object)
                codes[said] = codes[said] + ";" + code
    return text, codes


def _cluster_reasons(
    inputs: EvidenceInputs, values: dict[str, SignalValues], which: np.ndarray
) -> np.ndarray:
    """What the signals (and their groups) say of the given clusters, joined by ``; ``."""
    out = np.full(len(which), "", dtype=object)
    for i, c in enumerate(which.tolist()):
        parts: list[str] = []
        for group in registry.groups():
            members = [
                s for s in registry.all_signals() if s.group == group.name and s.name in values
            ]
            if not members:
                continue
            said = [p for p in (s.cluster_reason(inputs, values[s.name], c) for s in members) if p]
            note = group.cluster_note(inputs, values, said, c)
            parts += [*said, note] if note else said
        out[i] = "; ".join(parts)
    return out


def _clusters_frame(
    inputs: EvidenceInputs,
    values: dict[str, SignalValues],
    label: np.ndarray,
    cluster_score: np.ndarray,
    size: np.ndarray,
    action: np.ndarray,
) -> pd.DataFrame:
    """One row per cluster, in id order: size, score, flagged members and, for clusters with
    any, the signals' reasons."""
    cluster_of, n_clusters = inputs.cluster_of, inputs.n_clusters
    n_suspend = np.bincount(cluster_of[action == "suspend"], minlength=n_clusters)
    n_review = np.bincount(cluster_of[action == "review"], minlength=n_clusters)
    described = np.flatnonzero((n_suspend + n_review) > 0)
    cluster_text = np.full(n_clusters, "", dtype=object)
    cluster_text[described] = _cluster_reasons(inputs, values, described)
    clusters = pd.DataFrame(
        {
            "cluster_id": pd.array(label, dtype="string"),
            "size": size,
            "score": cluster_score.round(6),
            "n_suspend": n_suspend.astype(np.int64),
            "n_review": n_review.astype(np.int64),
            "reasons": pd.array(cluster_text, dtype="string"),
        }
    )
    return clusters.iloc[np.argsort(label, kind="stable")].reset_index(drop=True)


def _peer_ties(inputs: EvidenceInputs, action: np.ndarray) -> PeerTies | None:
    """Clustered accounts whose own evidence reaches members suspended on theirs through
    several families (reserve accounts: signup evidence only), or None when switched off."""
    settings = inputs.settings
    if not settings.suspend_with_peers:
        return None
    b = inputs.bipartite
    family = kinds.family_codes(b.kinds)
    return suspended_peer_ties(
        b.matrix,
        (inputs.weights > 0) & ~inputs.supernode,
        family,
        inputs.weights,
        inputs.cluster_of,
        action == "suspend",
        min_families=settings.min_attachment_families,
        alpha=settings.public_alpha,
    )


def _peer_reasons(
    inputs: EvidenceInputs, ties: PeerTies, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``tied to suspended members by its own evidence: shares device d-1 with 3 of them,
    signup IP 203.0.113.7 with 2 of them`` for each given row, and its reason code
    ``tied_to_suspended:<most suspended members holding one of those values>``."""
    b = inputs.bipartite
    shared = ties.shared[ties.shared["row"].isin(rows)]
    shared = shared[shared.groupby("row").cumcount() < inputs.settings.max_reasons]
    ident = shared["identifier"].to_numpy()
    labels = {k: kinds.reason_label(k) for k in np.unique(b.kinds[ident])}
    text = (
        pd.Series(b.kinds[ident]).map(labels).astype(str)
        + " "
        + pd.Series(b.values[ident]).astype(str)
        + " with "
        + shared["suspended"].astype(str).to_numpy()
        + " of them"
    )
    joined = text.groupby(shared["row"].to_numpy()).agg(", ".join)
    found = joined.reindex(rows).fillna("").to_numpy(dtype=object)
    most = (
        shared.groupby("row")["suspended"].max().reindex(rows).fillna(0).astype(np.int64)
    ).to_numpy()
    codes = (TIED_TO_SUSPENDED.code + ":" + most.astype(str)).astype(object)
    return (
        np.asarray(
            "tied by its own evidence to suspended members of its cluster: shares " + found,
            dtype=object,
        ),
        codes,
    )


def _cluster_warnings(
    inputs: EvidenceInputs, clusters: pd.DataFrame, label: np.ndarray
) -> list[dict[str, Any]]:
    """Flagged clusters most of whose tie weight runs through one value, largest first."""
    top = dominant_values(inputs.bipartite.matrix, inputs.weights, inputs.cluster_of)
    flagged = (
        clusters.set_index("cluster_id")[["n_suspend", "n_review", "size"]]
        .reindex(label)
        .to_numpy()
    )
    held = (top["share"].to_numpy() >= inputs.settings.public_majority) & (
        flagged[:, 0] + flagged[:, 1] > 0
    )
    warnings: list[dict[str, Any]] = []
    b = inputs.bipartite
    for c in np.flatnonzero(held):
        ident = int(top["identifier"].iloc[c])
        warning: dict[str, Any] = {
            "cluster_id": str(label[c]),
            "size": int(flagged[c, 2]),
            "kind": str(b.kinds[ident]),
            "value": str(b.values[ident]),
            "members_holding": int(top["members"].iloc[c]),
            "share_of_ties": float(top["share"].iloc[c]),
        }
        warnings.append(warning)
    warnings.sort(key=lambda w: (-w["size"], w["cluster_id"]))
    for w in warnings:
        logger.warning(
            "cluster %s (%d accounts): %.0f%% of its ties run through one %s; its suspensions "
            "rest on each member's own evidence, check it before acting",
            w["cluster_id"],
            w["size"],
            100 * w["share_of_ties"],
            kinds.reason_label(w["kind"]),
        )
    return warnings


def _account_reasons(
    inputs: EvidenceInputs,
    values: dict[str, SignalValues],
    action: np.ndarray,
    ties: PeerTies | None,
    cluster_id: np.ndarray,
    cluster_size: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Every flagged account's reasons and reason codes (empty for the others); accounts
    suspended through ties to suspended members name those ties first."""
    flagged = np.flatnonzero(action != "none")
    reasons = np.full(inputs.n_accounts, "", dtype=object)
    codes = np.full(inputs.n_accounts, "", dtype=object)
    reasons[flagged], codes[flagged] = _reasons(inputs, values, flagged, cluster_id, cluster_size)
    if ties is not None and ties.promoted.any():
        promoted = np.flatnonzero(ties.promoted)
        peer_text, peer_codes = _peer_reasons(inputs, ties, promoted)
        reasons[promoted] = peer_text + "; " + reasons[promoted]
        codes[promoted] = join_codes(peer_codes, codes[promoted])
    return reasons, codes


def score(ctx: RunContext) -> Mapping[str, Any]:
    """Scores, actions, cluster ids, reasons and the evidence links inside clusters."""
    settings = ctx.settings.link
    evidence = ctx.frame("evidence")
    inputs = _inputs(ctx, evidence["cluster"].to_numpy(np.int64))
    cluster_evidence = ctx.frame("cluster_evidence")
    values = registry.values_from_columns(registry.all_signals(), evidence, cluster_evidence)
    cluster_of, n_clusters = inputs.cluster_of, inputs.n_clusters
    clustered = cluster_of >= 0
    score = np.zeros(inputs.n_accounts, dtype=np.float64)
    score[clustered] = logistic(evidence["logit"].to_numpy(np.float64)[clustered])
    cluster_score = logistic(cluster_evidence["logit"].to_numpy(np.float64))
    action, ties = _engine_actions(inputs, evidence["logit"].to_numpy(np.float64))
    ids = inputs.bipartite.account_ids
    first_id = (
        pd.Series(ids[clustered].astype(str))
        .groupby(cluster_of[clustered])
        .min()
        .reindex(range(n_clusters))
        .to_numpy()
    )
    size = cluster_evidence["n_accounts"].to_numpy(np.int64)
    label = stable_cluster_ids(ctx, cluster_labels(cluster_score, size, first_id), ids, cluster_of)
    cluster_id = np.full(inputs.n_accounts, None, dtype=object)
    cluster_id[clustered] = label[cluster_of[clustered]]
    cluster_size = np.zeros(inputs.n_accounts, dtype=np.int64)
    cluster_size[clustered] = size[cluster_of[clustered]]
    reasons, codes = _account_reasons(inputs, values, action, ties, cluster_id, cluster_size)
    scores = pd.DataFrame(
        {
            "account_id": pd.array(ids, dtype="string"),
            "cluster_id": pd.array(cluster_id, dtype="string"),
            "cluster_size": cluster_size,
            "score": score.round(6),
            "action": pd.array(action, dtype="string"),
            "reasons": pd.array(reasons, dtype="string"),
            "reason_codes": pd.array(codes, dtype="string"),
        }
    )
    clusters = _clusters_frame(inputs, values, label, cluster_score, size, action)
    linked: LinkProjection = ctx.view("projection")
    links = cluster_links(
        inputs.bipartite,
        linked.projection,
        inputs.weights,
        cluster_of,
        min_link_weight=settings.min_link_weight,
        max_evidence=settings.max_reasons,
        lockstep=inputs.lockstep,
        lockstep_weight=settings.behaviour.lockstep_weight,
    )
    n_peer = int(ties.promoted.sum()) if ties is not None else 0
    ctx.note(
        clusters=n_clusters,
        links=len(links),
        suspended_with_peers=n_peer,
        cluster_warnings=_cluster_warnings(inputs, clusters, label),
    )
    logger.info(
        "scored %d accounts: %d clusters, %d suspend (%d through ties to suspended members), "
        "%d review",
        inputs.n_accounts,
        n_clusters,
        int((action == "suspend").sum()),
        n_peer,
        int((action == "review").sum()),
    )
    return {"engine_scores": scores, "engine_clusters": clusters, "links": links}
