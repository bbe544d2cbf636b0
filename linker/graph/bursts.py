"""Signup bursts: many accounts sharing a key created within a short window.

Everything is vectorised: rows are sorted by (key, created_at) and each row's window is found
with two ``searchsorted`` calls on a composite (key, time) axis.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

__all__ = ["burst_window", "key_bursts", "kth_gaps", "window_counts"]

logger = logging.getLogger(__name__)


def window_counts(keys: np.ndarray, times: np.ndarray, window: float) -> np.ndarray:
    """For each row, how many *other* rows with the same key lie within ``±window`` of it.

    Parameters
    ----------
    keys : numpy.ndarray
        Non-negative integer key per row (for example a factorised /24 or a cluster index).
    times : numpy.ndarray
        Time per row in seconds (int64 or float).
    window : float
        Half-width of the window in seconds.

    Returns
    -------
    numpy.ndarray of int64
        Count per row, in input order.

    Notes
    -----
    O(n log n): one sort and two binary searches per row.

    Examples
    --------
    >>> window_counts(np.array([0, 0, 0, 1]), np.array([0, 30, 500, 10]), 60).tolist()
    [1, 1, 0, 0]
    """
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    t = np.asarray(times, dtype=np.float64)
    t = t - t.min()
    span = float(t.max()) + 2.0 * window + 1.0
    composite = np.asarray(keys, dtype=np.float64) * span + t
    order = np.argsort(composite, kind="stable")
    sorted_composite = composite[order]
    hi = np.searchsorted(sorted_composite, sorted_composite + window, side="right")
    lo = np.searchsorted(sorted_composite, sorted_composite - window, side="left")
    counts = np.empty(n, dtype=np.int64)
    counts[order] = hi - lo - 1
    return counts


def key_bursts(
    incidence: sp.csr_matrix,
    key_columns: np.ndarray,
    key_sizes: np.ndarray,
    times: np.ndarray,
    window: float,
    *,
    min_accounts: int,
    excess: float,
) -> np.ndarray:
    """Per account: whether it signed up in a burst along some key, above the key's base rate.

    Parameters
    ----------
    incidence : scipy.sparse matrix
        Accounts x identifiers incidence matrix.
    key_columns : numpy.ndarray
        The identifier columns that are burst keys (a signup /24, an email pattern ...).
    key_sizes : numpy.ndarray
        Accounts holding each of ``key_columns``.
    times : numpy.ndarray
        Signup time of each account, in seconds.
    window : float
        Half-width of the burst window, in seconds.
    min_accounts : int
        A burst needs at least this many other signups with the key in the window ...
    excess : float
        ... and at least this many times what the key's base rate predicts
        (``(n_key - 1) x 2 window / time span``), so a popular key is not a burst merely by
        being popular.

    Returns
    -------
    numpy.ndarray of bool

    Notes
    -----
    O(m log m) for the m memberships of the key columns (:func:`window_counts`).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> m = sp.csr_matrix(np.ones((6, 1)))
    >>> t = np.array([0, 10, 20, 30, 40, 90_000.0])
    >>> key_bursts(m, np.array([0]), np.array([6]), t, 60, min_accounts=3, excess=1).tolist()
    [True, True, True, True, True, False]
    """
    n_acc = incidence.shape[0]
    in_burst = np.zeros(n_acc, dtype=bool)
    if len(key_columns) == 0 or n_acc == 0:
        return in_burst
    span = max(float(times.max() - times.min()), 2.0 * window)
    sub = incidence[:, key_columns].tocoo()
    counts = window_counts(sub.col, times[sub.row], window)
    expected = (key_sizes[sub.col] - 1) * (2.0 * window / span)
    bursting = (counts >= min_accounts) & (counts >= excess * expected)
    in_burst[sub.row[bursting]] = True
    return in_burst


def kth_gaps(times: np.ndarray, k: int) -> np.ndarray:
    """For each time, the distance to its ``k``-th nearest *other* time.

    Parameters
    ----------
    times : numpy.ndarray
        Times in seconds (any order).
    k : int
        Which neighbour, at least 1.

    Returns
    -------
    numpy.ndarray of float64
        Per time, in input order; ``inf`` when there are fewer than ``k`` other times.

    Raises
    ------
    ValueError
        When ``k`` is below 1.

    Notes
    -----
    O(n log n + n k): one sort, then the ``k`` nearest on either side of each time in sorted
    order hold its ``k`` nearest overall.

    Examples
    --------
    >>> kth_gaps(np.array([0.0, 10.0, 30.0, 100.0]), 1).tolist()
    [10.0, 10.0, 20.0, 70.0]
    >>> kth_gaps(np.array([0.0, 10.0]), 2).tolist()
    [inf, inf]
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    t = np.asarray(times, dtype=np.float64)
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    s = t[order]
    offsets = np.concatenate([np.arange(-k, 0), np.arange(1, k + 1)])
    at = np.arange(n)[:, None] + offsets[None, :]
    inside = (at >= 0) & (at < n)
    gaps = np.where(inside, np.abs(s[np.clip(at, 0, n - 1)] - s[:, None]), np.inf)
    kth = np.partition(gaps, k - 1, axis=1)[:, k - 1]
    out = np.empty(n, dtype=np.float64)
    out[order] = kth
    return out


def burst_window(times: np.ndarray, k: int) -> float:
    """The half-width of a group's signup burst, from the group's own signup times.

    The median, over the group's members, of the time to the ``k``-th nearest other member's
    signup: the window within which a typical member has ``k`` others signing up. A group
    that signed up in bursts gets a window of minutes, one that signed up over months a
    window of weeks (which its base rate then discounts).

    Parameters
    ----------
    times : numpy.ndarray
        The members' signup times in seconds.
    k : int
        How many others make a burst (``link.burst_min_accounts``); lowered to the number of
        other members when the group is smaller.

    Returns
    -------
    float
        Seconds; 0 for a group of fewer than two members.

    Notes
    -----
    O(n log n + n k) (:func:`kth_gaps`).

    Examples
    --------
    >>> burst_window(np.array([0.0, 60.0, 120.0, 180.0, 90_000.0]), 2)
    120.0
    """
    n = len(times)
    if n < 2:
        return 0.0
    gaps = kth_gaps(times, min(k, n - 1))
    return float(np.median(gaps))
