"""Which values a group owns: held by far more of its members than chance predicts.

A value held by ``k`` members of a group of ``s`` accounts, and by ``n`` of all ``N``
accounts, is *owned* by the group when ``k ≥ 2`` and the Poisson tail of ``k`` at the mean
``s · n / N`` (what the group's share of the population predicts) is below ``alpha``. A ring's
proxy exits, templates and devices are owned by its cluster; a template that a tenth of all
accounts send, of which the cluster holds its share, is not, however many members send it.

A value with so few holders that even all of them inside the group would not reach ``alpha``
(three holders, in a group of a twentieth of the population) cannot be tested; it is owned when
the group holds every one of its holders, at least three. Without that rule a small value would
be owned by a ring in a million-account world and not by the same ring in a 20k one. A value
of two holders is a pair rather than a group (when a unit's tie to a group is judged, one of
the two is the unit itself), so it is owned only where the test has power.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import gammainc

__all__ = ["owned_values"]


def owned_values(
    incidence: sp.csr_matrix, group_of: np.ndarray, alpha: float
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per group and identifier: how many members hold it, and whether the group owns it.

    Parameters
    ----------
    incidence : scipy.sparse.csr_matrix
        Accounts × identifiers.
    group_of : numpy.ndarray of int
        Per account row, its group (community, cluster); ``-1`` for none.
    alpha : float
        Poisson tail below which a value is owned.

    Returns
    -------
    held : scipy.sparse.csr_matrix
        Groups × identifiers: members holding each value.
    owned : scipy.sparse.csr_matrix of bool
        Groups × identifiers: the owned values.

    Notes
    -----
    One sparse product of the membership matrix with the incidence matrix: O(nnz).

    Examples
    --------
    Accounts 0-2 form group 0 of a world of 1,000; value 0 is theirs, value 1 is held by
    half the world (two of them among it).

    >>> rows = [0, 1, 2] + [0, 1] + list(range(10, 508))
    >>> cols = [0, 0, 0] + [1, 1] + [1] * 498
    >>> m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(1000, 2))
    >>> group = np.full(1000, -1); group[:3] = 0
    >>> held, owned = owned_values(m, group, 1e-4)
    >>> held.toarray().tolist(), owned.toarray().tolist()
    ([[3.0, 2.0]], [[True, False]])
    """
    n_accounts = incidence.shape[0]
    placed = np.flatnonzero(group_of >= 0)
    n_groups = int(group_of.max()) + 1 if len(placed) else 0
    member = sp.csr_matrix(
        (np.ones(len(placed)), (group_of[placed], placed)), shape=(n_groups, n_accounts)
    )
    held = (member @ incidence).tocsr()
    held.sum_duplicates()
    size = np.bincount(group_of[placed], minlength=n_groups).astype(np.float64)
    n_holders = np.asarray(incidence.sum(axis=0)).ravel()
    rows = np.repeat(np.arange(n_groups), np.diff(held.indptr))
    mean = size[rows] * n_holders[held.indices] / float(max(n_accounts, 1))
    tail = gammainc(held.data, mean)  # P(Poisson(mean) >= held)
    # A value so small that even all of its holders inside the group would not reach alpha
    # (three holders, in a group of a twentieth of the population) cannot be tested; it is
    # owned when the group holds every copy, as it would be in a larger population. Two
    # holders are a pair, not a group: one of them is the account being judged.
    holders = n_holders[held.indices]
    untestable = gammainc(holders, mean) >= alpha
    whole = untestable & (held.data >= holders) & (held.data >= 3)
    keep = (held.data >= 2) & ((tail < alpha) | whole)
    owned = sp.csr_matrix((keep, held.indices.copy(), held.indptr.copy()), shape=held.shape)
    return held, owned
