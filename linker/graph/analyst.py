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

__all__ = ["cluster_ties"]

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
