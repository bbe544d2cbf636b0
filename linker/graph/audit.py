"""Cluster checks: a cluster that one shared value holds together.

A ring is held together by many values of several kinds: dozens of proxy exits, a family of
templates, virtual cards, mailbox stems. A cluster most of whose ties run through one value (a
company's card, an office NAT that the public test kept, one template) is one group around one
thing; the run names it, so that an analyst looks at it before trusting its suspensions.
Suspensions never rest on the cluster alone (each needs the account's own evidence,
docs/linking.md §6), so the check warns and records; it does not change decisions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["dominant_values"]


def dominant_values(
    incidence: sp.csr_matrix,
    weights: np.ndarray,
    cluster_of: np.ndarray,
) -> pd.DataFrame:
    """Per cluster, the value carrying the largest share of its internal tie weight.

    A value held by ``k`` members of a cluster ties ``k(k - 1) / 2`` member pairs, each with
    the value's weight; the cluster's tie weight is the sum over its values.

    Parameters
    ----------
    incidence : scipy.sparse.csr_matrix
        Accounts × identifiers.
    weights : numpy.ndarray
        Per identifier, its evidence weight (0 for public and feature-only values).
    cluster_of : numpy.ndarray of int
        Per account row, its cluster (``-1`` when none).

    Returns
    -------
    pandas.DataFrame
        ``cluster``, ``identifier`` (the dominant value), ``members`` (members holding it) and
        ``share`` (its share of the cluster's tie weight, 0 when the cluster has no ties),
        one row per cluster in cluster order.

    Notes
    -----
    One sparse product of the membership matrix with the incidence matrix: O(nnz).

    Examples
    --------
    Cluster 0's three members share value 0 (weight 3); two of them also share value 1
    (weight 1): value 0 carries 3 × 3 / (9 + 1) = 90% of the ties.

    >>> m = sp.csr_matrix(np.array([[1, 1], [1, 1], [1, 0]], dtype=float))
    >>> dominant_values(m, np.array([3.0, 1.0]), np.array([0, 0, 0])).to_dict("records")
    [{'cluster': 0, 'identifier': 0, 'members': 3, 'share': 0.9}]
    """
    clustered = np.flatnonzero(cluster_of >= 0)
    n_clusters = int(cluster_of.max()) + 1 if len(clustered) else 0
    columns: dict[str, list[int]] = {"cluster": [], "identifier": [], "members": [], "share": []}
    if n_clusters == 0:
        return pd.DataFrame(columns, dtype=np.int64).astype({"share": np.float64})
    member = sp.csr_matrix(
        (np.ones(len(clustered)), (cluster_of[clustered], clustered)),
        shape=(n_clusters, incidence.shape[0]),
    )
    held = (member @ incidence).tocoo()
    k = held.data
    tie = weights[held.col] * k * (k - 1) / 2.0
    frame = pd.DataFrame({"cluster": held.row, "identifier": held.col, "members": k, "tie": tie})
    total = frame.groupby("cluster")["tie"].sum()
    frame = frame.sort_values(["cluster", "tie", "identifier"], ascending=[True, False, True])
    top = frame.drop_duplicates("cluster").set_index("cluster")
    out = pd.DataFrame({"cluster": np.arange(n_clusters, dtype=np.int64)})
    out["identifier"] = top["identifier"].reindex(out["cluster"]).fillna(-1).to_numpy(np.int64)
    out["members"] = top["members"].reindex(out["cluster"]).fillna(0).to_numpy(np.int64)
    share = (top["tie"] / total.reindex(top.index)).reindex(out["cluster"]).fillna(0.0)
    out["share"] = np.round(share.to_numpy(np.float64), 6)
    return out
