"""Evidence weights of identifiers: a per-kind prior times a rarity adjustment.

A shared value is strong evidence when its kind is specific (an exact card) and when few
accounts share it (Splink's term-frequency adjustment: a value that a thousand accounts share
says less about any two of them than one shared by two). Values shared by more accounts than
the kind's super-node threshold create no links at all but stay as features.
"""

from __future__ import annotations

import logging

import numpy as np

from linker.settings import LinkSettings

__all__ = ["identifier_weights", "rarity", "supernode_thresholds"]

logger = logging.getLogger(__name__)


def supernode_thresholds(kinds: np.ndarray, settings: LinkSettings) -> np.ndarray:
    """The super-node threshold of each identifier's kind.

    Parameters
    ----------
    kinds : numpy.ndarray
        Kind of each identifier.
    settings : LinkSettings

    Returns
    -------
    numpy.ndarray of int64

    Notes
    -----
    O(n) over identifiers (one lookup per distinct kind).
    """
    out = np.full(len(kinds), settings.supernode_max_accounts, dtype=np.int64)
    for kind, limit in settings.supernode_by_kind.items():
        out[kinds == kind] = limit
    return out


def rarity(n_accounts: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Term-frequency adjustment in [0, 1]: 1 for a pair, falling log-linearly to 0 at the
    super-node threshold.

    ``rarity(n) = log(T / n) / log(T / 2)`` for ``2 <= n <= T``; 1 below 2, 0 above ``T``.

    Parameters
    ----------
    n_accounts : numpy.ndarray
        Number of accounts sharing each value.
    threshold : numpy.ndarray
        Super-node threshold ``T`` of each value's kind.

    Returns
    -------
    numpy.ndarray of float64

    Notes
    -----
    O(n), vectorised.

    Examples
    --------
    >>> rarity(np.array([2, 20, 200]), np.array([200, 200, 200])).round(2).tolist()
    [1.0, 0.5, 0.0]
    """
    n = np.maximum(n_accounts.astype(np.float64), 2.0)
    t = np.maximum(threshold.astype(np.float64), 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(t > 2.0, np.log(t / n) / np.log(t / 2.0), 1.0)
    return np.clip(np.nan_to_num(value, nan=1.0), 0.0, 1.0)


def identifier_weights(
    kinds: np.ndarray, n_accounts: np.ndarray, settings: LinkSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Weight and super-node flag of each identifier.

    ``weight = prior[kind] * (0.25 + 0.75 * rarity(n))`` for values that are not super-nodes,
    0 for super-nodes. The floor of a quarter keeps a common-but-linkable value (a corporate
    card) from vanishing entirely.

    Parameters
    ----------
    kinds : numpy.ndarray
        Kind of each identifier.
    n_accounts : numpy.ndarray
        Number of accounts sharing each identifier.
    settings : LinkSettings

    Returns
    -------
    weight : numpy.ndarray of float64
    is_supernode : numpy.ndarray of bool

    Notes
    -----
    O(n) over identifiers.
    """
    threshold = supernode_thresholds(kinds, settings)
    prior = np.zeros(len(kinds), dtype=np.float64)
    for kind, strength in settings.kind_priors.items():
        prior[kinds == kind] = strength
    is_supernode = n_accounts > threshold
    weight = prior * (0.25 + 0.75 * rarity(n_accounts, threshold))
    weight[is_supernode] = 0.0
    logger.debug("%d identifiers, %d super-nodes", len(kinds), int(is_supernode.sum()))
    return weight, is_supernode
