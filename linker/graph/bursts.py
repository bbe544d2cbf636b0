"""Signup bursts: many accounts sharing a key created within a short window.

Everything is vectorised: rows are sorted by (key, created_at) and each row's window is found
with two ``searchsorted`` calls on a composite (key, time) axis.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["window_counts"]

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
