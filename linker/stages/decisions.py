"""Decision stages: embedding proximity, the allow-list, and the export.

``proximity`` may move unflagged accounts near a flagged cluster to review, never to suspend
(docs/embeddings.md; off unless ``link.embedding.enabled``). ``decide`` applies those moves, the
analysts' decisions (``run.decisions``, :mod:`linker.analyst`) and the allow-list to the
engine's scores and recounts the clusters: its ``scores`` and
``clusters`` are what exports, ``linker explain`` and Neo4j read. ``export`` writes the
takedown list the billing system ingests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linker.allowlist import apply_allowlist
from linker.analyst import Decisions, apply_decisions, resolve_decisions
from linker.engine.stages import RunContext
from linker.export import takedown_frame, write_export_file
from linker.graph.analyst import owned_by_cluster
from linker.graph.bipartite import IdentifierGraph
from linker.graph.proximity import embedding_review
from linker.pseudonyms import Pseudonymiser

__all__ = ["decide", "export", "proximity"]

logger = logging.getLogger(__name__)

_MOVED_COLUMNS = ("account_id", "score", "action", "reasons", "reason_codes")


def proximity(ctx: RunContext) -> Mapping[str, Any]:
    """Accounts moved to review by embedding proximity, and the embeddings."""
    if not ctx.settings.link.embedding.enabled:
        return {}
    graph: IdentifierGraph = ctx.view("graph")
    scores = ctx.frame("engine_scores")
    result = embedding_review(
        scores,
        graph,
        ctx.settings.link,
        seed=ctx.seed,
        hops=ctx.settings.embed.hops,
        whole_graph_max_nodes=ctx.settings.embed.whole_graph_max_nodes,
    )
    moved = result.scores["action"].to_numpy() != scores["action"].to_numpy()
    ctx.note(review_by_embedding=result.moved)
    out: dict[str, Any] = {
        "proximity": result.scores.loc[moved, list(_MOVED_COLUMNS)].reset_index(drop=True)
    }
    if result.embeddings is not None:
        out["embeddings"] = result.embeddings
    return out


def _with_moves(scores: pd.DataFrame, moved: pd.DataFrame | None) -> pd.DataFrame:
    if moved is None or moved.empty:
        return scores
    out = scores.set_index("account_id", drop=False)
    for column in ("score", "action", "reasons", "reason_codes"):
        if column in moved.columns:
            out.loc[moved["account_id"].to_numpy(), column] = moved[column].to_numpy()
    return out.reset_index(drop=True)


def _with_billing(scores: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """The export's ``billing_customer_id`` column, from the accounts table."""
    billing = accounts.drop_duplicates("account_id").set_index("account_id")["billing_customer_id"]
    out = scores.copy()
    out.insert(1, "billing_customer_id", out["account_id"].map(billing).astype("string"))
    out["cluster_id"] = out["cluster_id"].astype("string")
    out["reasons"] = out["reasons"].astype("string").fillna("")
    out["reason_codes"] = out["reason_codes"].astype("string").fillna("")
    return out


def _recount(clusters: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """``n_suspend`` and ``n_review`` per cluster after the allow-list changed actions."""
    if clusters.empty:
        return clusters
    clustered = scores.dropna(subset=["cluster_id"])
    clusters = clusters.copy()
    for column, action in (("n_suspend", "suspend"), ("n_review", "review")):
        counts = clustered.loc[clustered["action"] == action, "cluster_id"].value_counts()
        clusters[column] = clusters["cluster_id"].map(counts).fillna(0).astype(np.int64)
    return clusters


def _held(ctx: RunContext, scores: pd.DataFrame, decided: pd.Series) -> pd.DataFrame:
    """The linking values (not public, weighted, held by two accounts or more) of the decided
    accounts and of the other members of their clusters, with their ``first_seen`` and
    whether their cluster ``owned`` them (held by far more members than chance predicts:
    :func:`linker.graph.analyst.owned_by_cluster`); read from the stored graph for those
    accounts only."""
    clusters = scores.loc[scores["account_id"].isin(decided), "cluster_id"].dropna().unique()
    members = scores.loc[scores["cluster_id"].isin(clusters), "account_id"]
    involved = sorted(set(members.astype(str)) | set(decided.astype(str)))
    held = ctx.frame(
        "observations",
        columns=["account_id", "kind", "value", "first_seen"],
        filters=[("account_id", "in", involved)],
    )
    nodes = ctx.frame(
        "identifiers",
        columns=["kind", "value", "n_accounts", "weight", "is_supernode"],
        filters=[("value", "in", sorted(held["value"].astype(str).unique()))],
    )
    linking = nodes[(nodes["weight"] > 0) & ~nodes["is_supernode"] & (nodes["n_accounts"] >= 2)]
    held = held.merge(linking[["kind", "value"]], on=["kind", "value"])
    clustered = scores.dropna(subset=["cluster_id"])
    owned = owned_by_cluster(
        held,
        pd.Series(clustered["cluster_id"].astype(str).to_numpy(), index=clustered["account_id"]),
        clustered.groupby("cluster_id")["cluster_size"].first(),
        linking.set_index(["kind", "value"])["n_accounts"],
        len(scores),
        ctx.settings.link.public_alpha,
    )
    return held.assign(owned=held.index.isin(owned.index))


def _with_decisions(
    ctx: RunContext, scores: pd.DataFrame, accounts: pd.DataFrame, decisions: Decisions
) -> pd.DataFrame:
    """Apply the analysts' decisions; note their counts; write their quarantined rows."""
    resolution = resolve_decisions(decisions, scores, accounts)
    held = _held(ctx, scores, resolution.decided["account_id"])
    outcome = apply_decisions(scores, resolution, held, max_reasons=ctx.settings.link.max_reasons)
    rejected = decisions.quarantine if decisions.counts.rejected else None
    where = ctx.store.write_quarantine("decisions", rejected)
    root = ctx.store.directory
    if where is not None and root is not None:
        where = str(Path(where).relative_to(root))
    ctx.note(
        decisions={
            "file": decisions.source,
            "sha256": decisions.sha256,
            "read": decisions.counts.read,
            "accepted": decisions.counts.accepted,
            "rejected": decisions.counts.rejected,
            "quarantine": where,
            "problems": [str(p) for p in decisions.problems[:100]],
            "unknown": len(resolution.unknown),
            "unknown_lines": resolution.unknown[:100],
            **outcome.counts,
        }
    )
    return outcome.scores


def decide(ctx: RunContext) -> Mapping[str, Any]:
    """The final scores and clusters: proximity moves, the analysts' decisions, then the
    allow-list."""
    accounts = ctx.frame("accounts")
    scores = _with_moves(ctx.frame("engine_scores"), ctx.optional_frame("proximity"))
    scores = _with_billing(scores, accounts)
    decisions: Decisions | None = ctx.inputs.get("decisions")
    if decisions is not None:
        scores = _with_decisions(ctx, scores, accounts, decisions)
    pseudonymiser: Pseudonymiser | None = ctx.inputs.get("pseudonymiser")
    outcome = apply_allowlist(
        scores,
        accounts,
        ctx.inputs.get("allowlist"),
        describe=pseudonymiser.allowlist_entry if pseudonymiser is not None else None,
    )
    scores = outcome.scores
    ctx.note(
        accounts=len(scores),
        allowlisted=outcome.n_matched,
        spared_by_allowlist=outcome.n_spared,
        **{a: int((scores["action"] == a).sum()) for a in ("suspend", "review", "none")},
    )
    return {"scores": scores, "clusters": _recount(ctx.frame("engine_clusters"), scores)}


def export(ctx: RunContext) -> Mapping[str, Any]:
    """Write the takedown list into the run's publication (``ctx.inputs["publication"]``);
    it is published, with its manifest, when the run commits."""
    run = ctx.settings.run
    frame = takedown_frame(ctx.frame("scores"), actions=run.actions, min_score=run.min_score)
    ctx.inputs["export"] = write_export_file(
        frame, ctx.inputs["publication"], fmt=ctx.inputs.get("fmt")
    )
    return {}
