"""Linking stages: behaviour features, identifier weights, and communities.

``behaviour`` encodes the events once and computes per-account behaviour features and
lockstep pairs (docs/behaviour.md). ``identifiers`` weighs every identifier of the graph by
its kind's prior and its rarity, and flags public values: shared by accounts that nothing
else ties together (docs/linking.md §2); with the
observations it is the run's saved account–identifier graph. ``communities`` projects the
graph onto accounts, contracts strong-link components, runs Leiden and prunes weak members
(§3).

The views these stages share (the incidence matrix, the weighted graph, the projection) are
built from the artefacts on first use and kept in memory only while a stage needs them.

Account rows are numbered in ``account_id`` order (:func:`account_frame`), whatever order the
``accounts`` artefact holds them in: node numbers, and so Leiden's partition, the lockstep
search's blocks and every per-account sum, never depend on the order of the input rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from linker import kinds
from linker.engine.stages import RunContext, View
from linker.graph.behaviour import account_behaviour, coded_events, saved_codes
from linker.graph.bipartite import Bipartite, IdentifierGraph, build_bipartite
from linker.graph.communities import (
    Partitioner,
    components_over,
    detect_communities,
    prune_weak_members,
    reattach_by_lockstep,
    split_disconnected,
)
from linker.graph.lockstep import PassSignatures, lockstep_pairs
from linker.graph.projection import Projection, project
from linker.graph.public import PublicTest, public_values
from linker.graph.weights import identifier_weights
from linker.settings import LinkSettings
from linker.stages.ingest import ROW_KEYS, canonical_rows

__all__ = [
    "LINK_VIEWS",
    "LinkProjection",
    "account_frame",
    "behaviour",
    "communities",
    "communities_of",
    "community_table",
    "identifier_table",
    "identifiers",
    "incidence_table",
    "lockstep_artefacts",
    "lockstep_rows",
    "lockstep_settings",
    "lockstep_table",
    "pair_rows",
    "pair_table",
    "public_test",
    "signature_table",
    "signatures_of",
    "stored_order",
    "uses_behaviour",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkProjection:
    """The projection and its account links above ``link.min_link_weight``."""

    projection: Projection
    links: sp.csr_matrix


def account_frame(ctx: RunContext, columns: list[str] | None = None) -> pd.DataFrame:
    """The ``accounts`` artefact (or its ``columns``, with ``account_id``) in ``account_id``
    order: the account rows of every linking stage, its views and its artefacts.

    The validate stage already saves the accounts in that order; an artefact from elsewhere
    (another engine, a hand-made store) is sorted here, so row numbers stay canonical.
    """
    wanted = None if columns is None else ["account_id", *(c for c in columns if c != "account_id")]
    frame = ctx.frame("accounts", columns=wanted)
    return canonical_rows(frame, ROW_KEYS["accounts"]) if wanted is None else _by_id(frame)


def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` sorted by ``account_id`` alone (code-point order, stable)."""
    ids = pa.array(frame["account_id"].astype("string[pyarrow]").array)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    order = np.asarray(pc.sort_indices(ids).to_numpy(), dtype=np.int64)
    if bool((order == np.arange(len(order))).all()):
        return frame.reset_index(drop=True)
    return frame.take(order).reset_index(drop=True)


def _bipartite(ctx: RunContext) -> Bipartite:
    accounts = account_frame(ctx, ["account_id"])
    return build_bipartite(accounts["account_id"].astype("string"), ctx.frame("observations"))


def _graph(ctx: RunContext) -> IdentifierGraph:
    return IdentifierGraph.of(ctx.view("bipartite"), ctx.frame("identifiers"))


def _projection(ctx: RunContext) -> LinkProjection:
    graph: IdentifierGraph = ctx.view("graph")
    projection = project(
        graph.bipartite,
        graph.weights,
        graph.supernode,
        pair_max_accounts=ctx.settings.link.pair_max_accounts,
    )
    links = projection.adjacency.copy()
    links.data[links.data < ctx.settings.link.min_link_weight] = 0.0
    links.eliminate_zeros()
    return LinkProjection(projection, links)


LINK_VIEWS: dict[str, View] = {
    "bipartite": View(("accounts", "observations"), _bipartite),
    "graph": View(("bipartite", "identifiers"), _graph),
    "projection": View(("graph",), _projection),
}
"""The views of the linking stages, by name."""


def uses_behaviour(ctx: RunContext) -> bool:
    """Whether the run computes behaviour features: enabled, and it has events."""
    return bool(ctx.settings.link.behaviour.enabled) and ctx.has("events")


def behaviour(ctx: RunContext) -> Mapping[str, Any]:
    """Per-account behaviour features and lockstep pairs (nothing without events); the events'
    integer codes, saved for ``linker update``."""
    if not uses_behaviour(ctx):
        return {}
    cfg = ctx.settings.link.behaviour
    accounts = account_frame(ctx)
    ids = accounts["account_id"].astype("string")
    codes, values = coded_events(ctx.frame("events"), ids)
    ctx.release("events")  # by far the largest table: only its codes are needed from here
    features = account_behaviour(
        codes, accounts, codes=codes, dormancy_days=cfg.dormancy_days, seed=ctx.seed
    )
    order = stored_order(ctx)
    lockstep = lockstep_artefacts(ctx, codes, values, ids, order)
    # Saved after the lockstep search, so that its temporaries and the saved copy of the
    # codes are not in memory together.
    saved, dictionary = saved_codes(codes, values, order)
    return {
        "behaviour": features,
        **lockstep,
        "event_codes": saved,
        "event_values": dictionary,
    }


def stored_order(ctx: RunContext) -> np.ndarray:
    """Per account row (``account_id`` order, :func:`account_frame`), its row in the
    ``accounts`` artefact as stored (an update appends new accounts after the others)."""
    stored = ctx.frame("accounts", columns=["account_id"])["account_id"]
    ids = pa.array(stored.astype("string[pyarrow]").array)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    return np.asarray(pc.sort_indices(ids).to_numpy(), dtype=np.int64)


def lockstep_settings(ctx: RunContext) -> dict[str, Any]:
    """The keyword arguments of :func:`~linker.graph.lockstep.lockstep_pairs` (and of
    :func:`~linker.graph.lockstep.lockstep_update`) from the run's settings."""
    cfg = ctx.settings.link.behaviour
    return {
        "bucket_minutes": cfg.bucket_minutes,
        "min_jaccard": cfg.min_jaccard,
        "model_min_jaccard": cfg.model_min_jaccard,
        "min_tokens": cfg.min_tokens,
        "n_hashes": cfg.n_hashes,
        "band_rows": cfg.band_rows,
        "max_bucket": cfg.max_bucket,
        "seed": ctx.seed,
    }


def lockstep_table(
    ctx: RunContext, codes: pd.DataFrame, ids: pd.Series, values: Mapping[str, pa.Array]
) -> pd.DataFrame:
    """The ``lockstep`` artefact: pairs of accounts in lockstep, from the event codes."""
    lock = lockstep_pairs(
        codes[["acc", "t", "prompt", "model"]], ids, values=values, **lockstep_settings(ctx)
    )
    return pair_table(lock.pairs, ids)


def lockstep_artefacts(
    ctx: RunContext,
    codes: pd.DataFrame,
    values: Mapping[str, pa.Array],
    ids: pd.Series,
    stored_row: np.ndarray,
) -> dict[str, pd.DataFrame]:
    """The ``lockstep`` pairs and the ``lockstep_signatures`` ``linker update`` starts from
    (accounts as their stored rows, ``stored_row`` per row of ``ids``)."""
    lock = lockstep_pairs(
        codes[["acc", "t", "prompt", "model"]], ids, values=values, **lockstep_settings(ctx)
    )
    return {
        "lockstep": pair_table(lock.pairs, ids),
        "lockstep_signatures": signature_table(lock.signatures, stored_row),
    }


def pair_table(pairs: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """Lockstep pairs of account rows as the ``lockstep`` artefact (account ids)."""
    return pd.DataFrame(
        {
            "account_a": pd.array(ids.to_numpy()[pairs["a"].to_numpy(np.int64)], dtype="string"),
            "account_b": pd.array(ids.to_numpy()[pairs["b"].to_numpy(np.int64)], dtype="string"),
            "jaccard": pairs["jaccard"].to_numpy(np.float64),
            "bucket_minutes": pairs["bucket_minutes"].to_numpy(np.int64),
        }
    )


def signature_table(
    signatures: Sequence[PassSignatures], stored_row: np.ndarray, only: np.ndarray | None = None
) -> pd.DataFrame:
    """The ``lockstep_signatures`` artefact: per pass, each live account's stored row and
    MinHash signature (``h00`` ...), of the accounts where ``only`` (all by default)."""
    parts = []
    for p in signatures:
        rows = p.accounts if only is None else p.accounts[only[p.accounts]]
        sig = p.signatures if only is None else p.signatures[only[p.accounts]]
        part = pd.DataFrame(
            {
                "width": np.full(len(rows), p.width, dtype=np.int32),
                "action": pd.array(np.full(len(rows), p.action, dtype=object), dtype="string"),
                "acc": np.asarray(stored_row, dtype=np.int64)[rows],
            }
        )
        hashes = pd.DataFrame(sig, columns=[f"h{k:02d}" for k in range(sig.shape[1])])
        parts.append(pd.concat([part, hashes], axis=1))
    if not parts:
        return pd.DataFrame({"width": [], "action": [], "acc": []})
    return pd.concat(parts, ignore_index=True)


def signatures_of(table: pd.DataFrame, row_of_stored: np.ndarray) -> list[PassSignatures]:
    """:func:`signature_table` read back: per pass, accounts as rows (``row_of_stored`` per
    stored row)."""
    hashes = [c for c in table.columns if c.startswith("h")]
    width = table["width"].to_numpy(np.int64)
    action = table["action"].astype(str).to_numpy()
    # Converted once for all passes: a million accounts' signatures per pass.
    all_rows = np.asarray(row_of_stored, dtype=np.int64)[table["acc"].to_numpy(np.int64)]
    all_sig = table[hashes].to_numpy(np.uint32)
    passes = table[["width", "action"]].drop_duplicates().astype({"action": str})
    out = []
    for w, a in sorted(zip(passes["width"].astype(int), passes["action"], strict=True)):
        at = np.flatnonzero((width == w) & (action == a))
        rows, sig = all_rows[at], all_sig[at]
        order = np.argsort(rows, kind="stable")
        out.append(PassSignatures(w, a, rows[order], sig[order]))
    return out


def _rows_in(values: pd.Series, ids: pa.Array) -> np.ndarray:
    """Position of each value in ``ids`` (``-1`` when absent): Arrow's hash join, with no
    Python string per row."""
    array = pa.array(values.astype("string[pyarrow]").array)
    found = pc.index_in(array.cast(pa.large_string()), value_set=ids)
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def lockstep_rows(ctx: RunContext, account_ids: np.ndarray) -> pd.DataFrame | None:
    """The lockstep pairs as account rows (``a``, ``b``, ``jaccard``, ``bucket_minutes``)."""
    if not ctx.has("lockstep"):
        return None
    return pair_rows(ctx.frame("lockstep"), account_ids)


def pair_rows(pairs: pd.DataFrame, account_ids: np.ndarray) -> pd.DataFrame:
    """A ``lockstep`` artefact's pairs as rows of ``account_ids`` (``-1`` when absent)."""
    ids = pa.array(np.asarray(account_ids, dtype=object), pa.large_string())
    return pd.DataFrame(
        {
            "a": _rows_in(pairs["account_a"], ids),
            "b": _rows_in(pairs["account_b"], ids),
            "jaccard": pairs["jaccard"].to_numpy(np.float64),
            "bucket_minutes": pairs["bucket_minutes"].to_numpy(np.int64),
        }
    )


def _placeholders(
    bip: Bipartite, public: np.ndarray, strong_kinds: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Public values of strong kinds, most holders first: a card fingerprint, mailbox or
    billing customer shared by accounts that nothing else ties together is a placeholder (a
    ``0000`` default, a test card), not a customer, and links nobody; the run says so."""
    found = np.flatnonzero(public & np.isin(bip.kinds, list(strong_kinds)))
    found = found[np.lexsort((found, -bip.n_accounts[found]))]
    placeholders: list[dict[str, Any]] = [
        {"kind": str(bip.kinds[j]), "value": str(bip.values[j]), "accounts": int(bip.n_accounts[j])}
        for j in found
    ]
    for p in placeholders:
        logger.warning(
            "a %s value held by %d accounts links nobody: nothing else ties its holders "
            "together (a placeholder or test value, not one customer)",
            kinds.reason_label(p["kind"]),
            p["accounts"],
        )
    return placeholders


def identifiers(ctx: RunContext) -> Mapping[str, Any]:
    """Every identifier's accounts, evidence weight and public flag (the graph's nodes)."""
    bip: Bipartite = ctx.view("bipartite")
    test = public_test(ctx, bip)
    return {
        "identifiers": identifier_table(ctx, bip, bip.n_accounts, test),
        "incidence": incidence_table(ctx, bip),
    }


def incidence_table(ctx: RunContext, bip: Bipartite) -> pd.DataFrame:
    """The ``incidence`` artefact: the matrix's entries as (stored account row, identifier
    column), what ``linker update`` extends instead of reading the observations again."""
    coo = bip.matrix.tocoo()
    stored = stored_order(ctx)[np.asarray(coo.row, dtype=np.int64)]
    return pd.DataFrame(
        {
            "acc": stored.astype(np.int32 if bip.shape[0] < 2**31 else np.int64),
            "identifier": np.asarray(coo.col).astype(
                np.int32 if bip.shape[1] < 2**31 else np.int64
            ),
        }
    )


def public_test(
    ctx: RunContext, bip: Bipartite, *, only: np.ndarray | None = None, previous: Any = None
) -> PublicTest:
    """The public-value test of the run's settings (:func:`linker.graph.public.public_values`),
    of every identifier or of ``only`` (the others keep their ``previous`` outcome)."""
    settings = ctx.settings.link
    family_code = kinds.family_codes(bip.kinds)
    linkable = kinds.kind_lookup(bip.kinds, settings.kind_priors, 0.0, dtype=np.float64) > 0
    return public_values(
        bip.matrix,
        family_code,
        linkable,
        alpha=settings.public_alpha,
        majority=settings.public_majority,
        sample=settings.public_sample,
        seed=ctx.seed,
        only=only,
        prior=previous,
    )


def identifier_table(
    ctx: RunContext, bip: Bipartite, n_accounts: np.ndarray, test: PublicTest
) -> pd.DataFrame:
    """The ``identifiers`` artefact: per identifier column of ``bip``, its accounts, evidence
    weight, public flag and cohesion."""
    settings = ctx.settings.link
    weights = identifier_weights(
        bip.kinds, n_accounts, settings.kind_priors, bip.shape[0], test.public
    )
    ctx.note(
        identifiers=len(weights),
        public=int(test.public.sum()),
        supernodes=int(test.public.sum()),
        placeholders=_placeholders(bip, test.public, settings.strong_kinds),
    )
    return pd.DataFrame(
        {
            "kind": pd.array(bip.kinds, dtype="string"),
            "value": pd.array(bip.values, dtype="string"),
            "n_accounts": np.asarray(n_accounts, dtype=np.int64),
            "weight": weights,
            "is_supernode": test.public,
            "cohesion": test.cohesion,
        }
    )


def communities(ctx: RunContext) -> Mapping[str, Any]:
    """Each account's cluster (``-1`` for none) and paying customer."""
    settings = ctx.settings.link
    graph: IdentifierGraph = ctx.view("graph")
    linked: LinkProjection = ctx.view("projection")
    strong = components_over(graph.bipartite.matrix, graph.columns_of(settings.strong_kinds))
    return {"communities": communities_of(ctx, linked, strong)}


def communities_of(
    ctx: RunContext,
    linked: LinkProjection,
    strong: np.ndarray,
    customer: np.ndarray | None = None,
    partitioner: Partitioner | None = None,
) -> pd.DataFrame:
    """The ``communities`` artefact from the strong-link components (and the paying
    customers, when another engine found them): contracted, Leiden (by ``partitioner``,
    default :func:`~linker.graph.communities.partition_components`), :func:`community_table`."""
    settings = ctx.settings.link
    community = detect_communities(
        linked.links,
        linked.projection.hub_matrix,
        strong,
        resolution=settings.resolution,
        seed=ctx.seed,
        partitioner=partitioner,
    )
    return community_table(ctx, community, strong, customer)


def _settled_members(
    settings: LinkSettings,
    graph: IdentifierGraph,
    community: np.ndarray,
    strong: np.ndarray,
    lock: sp.csr_matrix | None,
) -> np.ndarray:
    """Leiden's communities pruned, split where only a pair's lone coincidence joined two
    groups, pruned again, lockstep partners reattached and split by evidence."""
    bip = graph.bipartite
    family = kinds.family_codes(bip.kinds)
    # A residential pool's exits are rented by strangers too, so they are public and link
    # nobody; a member rotating through the exits its community holds in excess still shows
    # the ring's network family (docs/linking.md §4).
    public_addresses = graph.supernode & np.isin(bip.kinds, list(kinds.ip_kinds()))

    def prune(membership: np.ndarray) -> np.ndarray:
        return prune_weak_members(
            bip.matrix,
            membership,
            graph.weights,
            strong,
            min_attachment=settings.min_attachment,
            relative_attachment=settings.relative_attachment,
            family=family,
            min_families=settings.min_attachment_families,
            lockstep=lock if settings.behaviour.lockstep_is_a_family else None,
            alpha=settings.public_alpha,
            family_only=public_addresses,
        )

    def split(membership: np.ndarray) -> np.ndarray:
        return split_disconnected(
            bip.matrix,
            membership,
            graph.weights,
            strong,
            lockstep=lock,
            family=family,
            min_families=settings.min_attachment_families,
        )

    # Pruned again after the split: a member that kept its second family through a pair
    # (a proxyware user's mailbox stem shared with a family) no longer has it once the
    # family is split off.
    community = prune(split(prune(community)))
    if lock is not None:
        # Lockstep pairs do not reshape communities (a batch job in step with a ring must
        # not be pulled into it); they bring back accounts that pruning left outside.
        community = reattach_by_lockstep(
            community,
            lock,
            settings.min_attachment,
            alpha=settings.public_alpha,
            majority=settings.public_majority,
        )
    return split(community)


def community_table(
    ctx: RunContext,
    community: np.ndarray,
    strong: np.ndarray,
    customer: np.ndarray | None = None,
) -> pd.DataFrame:
    """The ``communities`` artefact from Leiden's communities (``partition``): weak members
    pruned, lockstep partners reattached, small communities dropped (``cluster``).

    ``customer`` is each account's paying customer (components over ``link.customer_kinds``);
    computed here when not given."""
    settings = ctx.settings.link
    graph: IdentifierGraph = ctx.view("graph")
    bip = graph.bipartite
    n_acc = bip.shape[0]
    if customer is None:
        customer = components_over(bip.matrix, graph.columns_of(settings.customer_kinds))
    partition = community
    pairs = lockstep_rows(ctx, bip.account_ids)
    lock = None
    if pairs is not None and len(pairs):
        lock = sp.csr_matrix(
            (
                np.full(len(pairs), settings.behaviour.lockstep_weight),
                (pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)),
            ),
            shape=(n_acc, n_acc),
        )
    community = _settled_members(settings, graph, community, strong, lock)
    sizes = np.bincount(community[community >= 0], minlength=1)
    big = np.flatnonzero(sizes >= settings.min_cluster_size)
    remap = np.full(len(sizes), -1, dtype=np.int64)
    remap[big] = np.arange(len(big))
    cluster = np.where(community >= 0, remap[np.maximum(community, 0)], -1)
    return pd.DataFrame(
        {
            "account_id": pd.array(bip.account_ids, dtype="string"),
            "cluster": cluster.astype(np.int64),
            "customer": customer.astype(np.int64),
            "partition": np.asarray(partition, dtype=np.int64),
        }
    )
