"""Evidence weights of identifiers: a per-kind prior times a rarity adjustment.

A shared value is strong evidence when its kind is specific (an exact card) and when few
accounts share it: Splink's term-frequency adjustment, with the rarity measured against the
population at hand rather than against a fixed count, so that 200 accounts sharing a value
are a crowd in a world of 2,000 and a small group in one of a million. Public values
(:mod:`linker.graph.public`) get no weight at all: they stay in the graph as features.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from linker.kinds import kind_lookup

__all__ = ["identifier_weights", "rarity"]

logger = logging.getLogger(__name__)


def rarity(n_accounts: np.ndarray, population: int) -> np.ndarray:
    """Term-frequency adjustment in [0, 1]: 1 for a pair, falling log-linearly to 0 for a value
    every account holds.

    ``rarity(n) = log(N / n) / log(N / 2)`` for ``2 <= n <= N``, with ``N`` the number of
    accounts: minus the log of the share of accounts holding the value, scaled so that a
    pair scores 1.

    Parameters
    ----------
    n_accounts : numpy.ndarray
        Number of accounts sharing each value.
    population : int
        Number of accounts in the run.

    Returns
    -------
    numpy.ndarray of float64

    Notes
    -----
    O(n), vectorised.

    Examples
    --------
    >>> rarity(np.array([2, 100, 10_000]), 10_000).round(2).tolist()
    [1.0, 0.57, 0.0]
    """
    n = np.maximum(np.asarray(n_accounts, dtype=np.float64), 2.0)
    big = max(float(population), 3.0)
    value = np.log(big / n) / np.log(big / 2.0)
    return np.asarray(np.clip(value, 0.0, 1.0), dtype=np.float64)


def identifier_weights(
    kinds: np.ndarray,
    n_accounts: np.ndarray,
    priors: Mapping[str, float],
    population: int,
    public: np.ndarray,
) -> np.ndarray:
    """Evidence weight of each identifier.

    ``weight = prior[kind] * (0.25 + 0.75 * rarity(n))`` for values that are not public, 0
    for public values and for kinds without a prior. The floor of a quarter keeps a large but
    genuine group (a corporate card) linked.

    Parameters
    ----------
    kinds : numpy.ndarray
        Kind of each identifier.
    n_accounts : numpy.ndarray
        Number of accounts sharing each identifier.
    priors : mapping of str to float
        Prior strength per kind (``link.kind_priors``); unknown kinds get 0.
    population : int
        Number of accounts in the run.
    public : numpy.ndarray of bool
        Public values (:func:`linker.graph.public.public_values`).

    Returns
    -------
    numpy.ndarray of float64

    Notes
    -----
    O(n) over identifiers.

    Examples
    --------
    >>> identifier_weights(np.array(["payment", "ip"]), np.array([2, 2]), {"payment": 3.0},
    ...                    1000, np.array([False, False])).tolist()
    [3.0, 0.0]
    """
    prior = np.asarray(kind_lookup(kinds, priors, 0.0, dtype=np.float64), dtype=np.float64)
    weight = prior * (0.25 + 0.75 * rarity(n_accounts, population))
    weight[np.asarray(public, dtype=bool)] = 0.0
    logger.debug("%d identifiers, %d public", len(kinds), int(np.sum(public)))
    return weight
