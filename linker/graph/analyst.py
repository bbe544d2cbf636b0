"""Ties between accounts of one cluster through the values they hold, with their age.

:func:`cluster_ties` is what the analysts' decisions (:mod:`linker.analyst`) need from the
graph: which values an account shares with which other members of its cluster, and since
when the tie exists (the later of the two accounts' ``first_seen`` of the value). A cleared
account is flagged again only on ties younger than the clearing; an unflagged account is moved
to review on a tie to a confirmed member.
"""

from __future__ import annotations

import logging

import pandas as pd
from scipy.special import gammainc

__all__ = ["cluster_ties", "owned_by_cluster"]

logger = logging.getLogger(__name__)


def cluster_ties(
    held: pd.DataFrame,
    cluster_of: pd.Series,
    left: pd.Index,
    right: pd.Index,
) -> pd.DataFrame:
    """Every tie between an account of ``left`` and another of ``right`` in the same cluster.

    Parameters
    ----------
    held : pandas.DataFrame
        ``account_id``, ``kind``, ``value``, ``first_seen``: the linking values each account
        holds (values that link nobody, public values and values of one account left out by
        the caller).
    cluster_of : pandas.Series
        Cluster id by account id (clustered accounts only).
    left, right : pandas.Index
        Account ids on each side of a tie.

    Returns
    -------
    pandas.DataFrame
        ``account_id`` (of ``left``), ``kind``, ``value``, ``peer`` (of ``right``, never the
        account itself), ``cluster_id`` and ``since`` (the later ``first_seen`` of the two),
        sorted by account, kind, value and peer.

    Notes
    -----
    One merge on (cluster, kind, value): O(ties), at most ``|left|`` times the members of the
    largest group holding one value in a cluster.

    Examples
    --------
    >>> t = pd.Timestamp("2026-01-01", tz="UTC")
    >>> held = pd.DataFrame({"account_id": ["a", "b", "c"], "kind": ["payment"] * 3,
    ...     "value": ["fp1", "fp1", "fp1"], "first_seen": [t, t + pd.Timedelta(days=2), t]})
    >>> cluster_of = pd.Series({"a": "C-0001", "b": "C-0001", "c": "C-0002"})
    >>> ties = cluster_ties(held, cluster_of, pd.Index(["a"]), pd.Index(["b", "c"]))
    >>> ties[["account_id", "peer", "since"]].values.tolist()
    [['a', 'b', Timestamp('2026-01-03 00:00:00+0000', tz='UTC')]]
    """
    columns = ["account_id", "kind", "value", "peer", "cluster_id", "since"]
    frame = held[["account_id", "kind", "value", "first_seen"]].copy()
    frame["account_id"] = frame["account_id"].astype(str)
    frame["cluster_id"] = frame["account_id"].map(cluster_of.astype(str))
    frame = frame.dropna(subset=["cluster_id"])
    a = frame[frame["account_id"].isin(left)]
    b = frame[frame["account_id"].isin(right)].rename(
        columns={"account_id": "peer", "first_seen": "peer_seen"}
    )
    if a.empty or b.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    ties = a.merge(b, on=["cluster_id", "kind", "value"])
    ties = ties[ties["account_id"] != ties["peer"]]
    ties = ties.assign(since=ties[["first_seen", "peer_seen"]].max(axis=1))
    ties = ties.sort_values(["account_id", "kind", "value", "peer"], kind="stable")
    return ties[columns].reset_index(drop=True)


def owned_by_cluster(
    held: pd.DataFrame,
    cluster_of: pd.Series,
    cluster_size: pd.Series,
    n_holders: pd.Series,
    n_accounts: int,
    alpha: float,
) -> pd.DataFrame:
    """The rows of ``held`` whose value the holder's cluster owns.

    A value held by ``k`` members of a cluster of ``s`` accounts and by ``n`` of all ``N``
    accounts is owned when ``k >= 2`` and the Poisson tail of ``k`` at ``s * n / N`` is below
    ``alpha`` (the rule of :func:`linker.graph.ownership.owned_values`, which the engine's
    ties to suspended members use): a template a tenth of the world sends ties nobody.

    Parameters
    ----------
    held : pandas.DataFrame
        ``account_id``, ``kind``, ``value`` (and any other columns), for every member of the
        clusters concerned (``k`` is counted here).
    cluster_of, cluster_size : pandas.Series
        Cluster id by account id; size by cluster id.
    n_holders : pandas.Series
        Accounts holding each value in the whole run, by ``(kind, value)``.
    n_accounts : int
        Accounts in the run.
    alpha : float

    Returns
    -------
    pandas.DataFrame
        The owned rows of ``held``, in their order.

    Notes
    -----
    One group-by over ``held``: O(len(held)).

    Examples
    --------
    >>> held = pd.DataFrame({"account_id": ["a", "b", "a", "b"], "kind": ["device"] * 4,
    ...     "value": ["d1", "d1", "d2", "d2"]})
    >>> holders = pd.Series([2, 500], index=pd.MultiIndex.from_tuples(
    ...     [("device", "d1"), ("device", "d2")]))
    >>> owned = owned_by_cluster(held, pd.Series({"a": "C-1", "b": "C-1"}),
    ...     pd.Series({"C-1": 2}), holders, 1000, 1e-4)
    >>> owned["value"].tolist()
    ['d1', 'd1']
    """
    cluster = held["account_id"].astype(str).map(cluster_of.astype(str))
    keys = pd.DataFrame({"cluster": cluster, "kind": held["kind"], "value": held["value"]})
    k = keys.groupby(["cluster", "kind", "value"], dropna=True)["kind"].transform("size")
    n = pd.Series(
        n_holders.reindex(pd.MultiIndex.from_frame(keys[["kind", "value"]])).to_numpy(),
        index=held.index,
    )
    mean = cluster.map(cluster_size).astype(float) * n.astype(float) / float(max(n_accounts, 1))
    k = k.astype(float)
    tail = pd.Series(gammainc(k.fillna(0).to_numpy(), mean.fillna(0).to_numpy()), index=held.index)
    keep = (k >= 2) & (tail < alpha) & cluster.notna() & mean.notna()
    return held[keep.to_numpy(dtype=bool)]
