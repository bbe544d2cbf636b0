"""An account's ties inside its cluster: which members it shares evidence with, and what.

The run's ``links`` artefact keeps only account pairs whose summed pair weight reaches
``link.min_link_weight``, counting only identifiers held by at most ``link.pair_max_accounts``
accounts (larger groups join the community detection as hub nodes, not as pairs). An account
tied to its cluster through a widely shared value, or through several weak ones, therefore
has no stored link. :func:`shared_identifiers` recomputes what such an account shares with
each member from the saved graph (``observations`` and ``identifiers``), so ``linker
explain`` can show it. :func:`cluster_identifiers` gives the same evidence for a whole cluster,
strongest first, for the ring report's picture of it (:mod:`linker.report`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import pandas as pd

__all__ = ["TIE_COLUMNS", "cluster_identifiers", "shared_identifiers"]

logger = logging.getLogger(__name__)

TIE_COLUMNS: tuple[str, ...] = ("account_id", "kind", "value", "weight", "n_accounts")
"""Columns of :func:`shared_identifiers`' result."""


def shared_identifiers(
    observations: pd.DataFrame,
    identifiers: pd.DataFrame,
    account_id: str,
    members: Collection[str],
) -> pd.DataFrame:
    """The weighted, non-public identifiers ``account_id`` shares with each of ``members``.

    Parameters
    ----------
    observations : pandas.DataFrame
        ``account_id``, ``kind``, ``value`` rows; at least those of ``account_id`` and of the
        members holding its values (other rows are ignored).
    identifiers : pandas.DataFrame
        The ``identifiers`` artefact: ``kind``, ``value``, ``n_accounts``, ``weight``,
        ``is_supernode``.
    account_id : str
        The account explained.
    members : collection of str
        The accounts to look for ties with (its cluster); ``account_id`` itself is skipped.

    Returns
    -------
    pandas.DataFrame
        :data:`TIE_COLUMNS`, one row per (other member, shared identifier); only identifiers
        that can tie accounts (weight above 0, not public). Sorted by member, then weight
        descending, then kind and value.

    Notes
    -----
    O(r log r) for r observation rows given: two joins and a sort.

    Examples
    --------
    >>> obs = pd.DataFrame({"account_id": ["a", "b", "b", "a"], "kind": ["ip"] * 4,
    ...                     "value": ["1.2.3.4", "1.2.3.4", "5.6.7.8", "9.9.9.9"]})
    >>> ids = pd.DataFrame({"kind": ["ip"] * 3, "value": ["1.2.3.4", "5.6.7.8", "9.9.9.9"],
    ...                     "n_accounts": [2, 1, 1], "weight": [1.0, 1.0, 1.0],
    ...                     "is_supernode": [False] * 3})
    >>> shared_identifiers(obs, ids, "a", ["a", "b"])[["account_id", "value"]].values.tolist()
    [['b', '1.2.3.4']]
    """
    keys = ["kind", "value"]
    mine = observations.loc[observations["account_id"] == account_id, keys].drop_duplicates()
    table = identifiers[[*keys, "n_accounts", "weight", "is_supernode"]]
    ties = mine.merge(table, on=keys, how="inner")
    ties = ties[(ties["weight"] > 0) & ~ties["is_supernode"].astype(bool)]
    others = [m for m in members if m != account_id]
    peers = observations.loc[observations["account_id"].isin(others), ["account_id", *keys]]
    shared = peers.drop_duplicates().merge(ties.drop(columns="is_supernode"), on=keys)
    shared = shared.sort_values(
        ["account_id", "weight", "kind", "value"],
        ascending=[True, False, True, True],
        kind="mergesort",
        ignore_index=True,
    )
    logger.debug(
        "%s shares %d identifier rows with %d members",
        account_id,
        len(shared),
        shared["account_id"].nunique(),
    )
    return shared[list(TIE_COLUMNS)]


def cluster_identifiers(
    observations: pd.DataFrame,
    identifiers: pd.DataFrame,
    members: Collection[str],
    max_identifiers: int | None = None,
) -> pd.DataFrame:
    """The weighted, non-public identifiers that tie members of one cluster, strongest first.

    Parameters
    ----------
    observations : pandas.DataFrame
        ``account_id``, ``kind``, ``value`` rows; at least those of the members (other rows
        are ignored).
    identifiers : pandas.DataFrame
        The ``identifiers`` artefact: ``kind``, ``value``, ``n_accounts``, ``weight``,
        ``is_supernode``.
    members : collection of str
        The cluster's accounts.
    max_identifiers : int, optional
        Keep only this many identifiers (the strongest); all when ``None``.

    Returns
    -------
    pandas.DataFrame
        ``account_id``, ``kind``, ``value``, ``weight``, ``n_accounts`` (holders in the whole
        run), ``in_cluster`` (members holding it, at least 2) and ``strength`` (``weight ×
        (in_cluster − 1)``: what the value adds to each holder's links), one row per
        (member, identifier). The same identifiers as :func:`shared_identifiers` (weight
        above 0, not a super-node). Sorted by strength descending, then kind, value and
        account.

    Notes
    -----
    O(r log r) for r observation rows of the members: one join, a group-by and a sort.

    Examples
    --------
    >>> obs = pd.DataFrame({"account_id": ["a", "b", "c", "a"], "kind": ["ip"] * 4,
    ...                     "value": ["1.2.3.4", "1.2.3.4", "5.6.7.8", "9.9.9.9"]})
    >>> ids = pd.DataFrame({"kind": ["ip"] * 3, "value": ["1.2.3.4", "5.6.7.8", "9.9.9.9"],
    ...                     "n_accounts": [2, 1, 1], "weight": [1.0, 1.0, 1.0],
    ...                     "is_supernode": [False] * 3})
    >>> cluster_identifiers(obs, ids, ["a", "b", "c"])[["account_id", "value"]].values.tolist()
    [['a', '1.2.3.4'], ['b', '1.2.3.4']]
    """
    keys = ["kind", "value"]
    held = observations.loc[
        observations["account_id"].isin(list(members)), ["account_id", *keys]
    ].drop_duplicates()
    table = identifiers.loc[
        (identifiers["weight"] > 0) & ~identifiers["is_supernode"].astype(bool),
        [*keys, "weight", "n_accounts"],
    ]
    ties = held.merge(table, on=keys, how="inner")
    ties["in_cluster"] = ties.groupby(keys, sort=False)["account_id"].transform("size")
    ties = ties[ties["in_cluster"] >= 2].copy()
    ties["strength"] = ties["weight"] * (ties["in_cluster"] - 1)
    ranked = (
        ties.drop_duplicates(keys)
        .sort_values(["strength", *keys], ascending=[False, True, True], kind="mergesort")
        .head(max_identifiers if max_identifiers is not None else len(ties))
    )
    kept = ties.merge(ranked[keys], on=keys, how="inner")
    kept = kept.sort_values(
        ["strength", *keys, "account_id"],
        ascending=[False, True, True, True],
        kind="mergesort",
        ignore_index=True,
    )
    logger.debug("%d identifiers tie %d members", len(ranked), kept["account_id"].nunique())
    return kept[["account_id", *keys, "weight", "n_accounts", "in_cluster", "strength"]]
