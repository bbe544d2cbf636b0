"""Baseline linkers that ``linker run`` is measured against (see ``bench/link.py``).

Both are the textbook recipe: put accounts and identifiers in one graph, take connected
components, and flag every component of at least ``min_size`` accounts.

* :func:`shared_identifier_components` with ``max_accounts=None``: any shared identifier
  links two accounts (baseline a).
* the same with ``max_accounts=10``: only identifiers shared by at most 10 accounts link,
  the Neo4j fraud-ring recipe that drops "supernodes" (baseline b).

The result has the export's columns, so :func:`linker.evaluate.evaluate` scores it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["shared_identifier_components"]

logger = logging.getLogger(__name__)


def _linking_incidence(
    observations: pd.DataFrame,
    account_ids: Iterable[str] | None,
    kinds: Iterable[str] | None,
    max_accounts: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The accounts (sorted), and the (account row, identifier column) pairs that link.

    An identifier links when at least two, and at most ``max_accounts``, accounts hold it.
    Also returns the number of identifier columns.
    """
    obs = observations[["account_id", "kind", "value"]]
    if kinds is not None:
        obs = obs[obs["kind"].isin(list(kinds))]
    obs = obs.dropna().drop_duplicates()
    ids = obs["account_id"].astype("string")
    chosen = ids if account_ids is None else pd.Series(list(account_ids), dtype="string")
    universe = np.sort(chosen.drop_duplicates().to_numpy(dtype=object))
    rows = pd.Index(universe).get_indexer(ids)
    if (rows < 0).any():
        raise ValueError("observations name accounts that are not in account_ids")
    columns = obs.groupby(["kind", "value"], sort=False, observed=True).ngroup().to_numpy()
    n_ident = int(columns.max()) + 1 if len(columns) else 0
    per_identifier = np.bincount(columns, minlength=n_ident)
    keep = per_identifier[columns] >= 2
    if max_accounts is not None:
        keep &= per_identifier[columns] <= max_accounts
    return universe, rows[keep], columns[keep], n_ident


def _account_components(
    rows: np.ndarray, columns: np.ndarray, n_acc: int, n_ident: int
) -> np.ndarray:
    """Connected component of each account in the accounts-plus-identifiers graph."""
    adjacency = sp.coo_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, n_acc + columns)),
        shape=(n_acc + n_ident, n_acc + n_ident),
    ).tocsr()
    _, labels = connected_components(adjacency, directed=False)
    return np.asarray(labels[:n_acc])


def _cluster_ids(component: np.ndarray, flagged: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """``B-000001``... per flagged account (``<NA>`` otherwise), and each one's number.

    Components are numbered in order of first appearance over the sorted account ids, which
    makes the ids independent of the order of the observations.
    """
    order = pd.factorize(np.where(flagged, component, -1))[0]
    numbered = pd.factorize(order[flagged])[0] + 1
    cluster = pd.Series(pd.NA, index=range(len(component)), dtype="string")
    cluster[flagged] = [f"B-{n:06d}" for n in numbered]
    return cluster, numbered


def _baseline_frame(
    universe: np.ndarray,
    cluster: pd.Series,
    size: np.ndarray,
    flagged: np.ndarray,
    max_accounts: int | None,
) -> pd.DataFrame:
    """The result in the export's columns, with a reason naming the component and the rule."""
    limit = (
        "any identifier" if max_accounts is None else f"identifiers of <= {max_accounts} accounts"
    )
    return pd.DataFrame(
        {
            "account_id": pd.Series(universe, dtype="string"),
            "cluster_id": cluster,
            "cluster_size": size.astype(np.int64),
            "score": flagged.astype(np.float64),
            "action": np.where(flagged, "suspend", "none"),
            "reasons": np.where(
                flagged,
                pd.Series(size).map(lambda n: f"component of {n} accounts over {limit}"),
                "",
            ),
        }
    )


def shared_identifier_components(
    observations: pd.DataFrame,
    account_ids: Iterable[str] | None = None,
    *,
    max_accounts: int | None = None,
    kinds: Iterable[str] | None = None,
    min_size: int = 2,
) -> pd.DataFrame:
    """Connected components of accounts linked by shared identifiers.

    Parameters
    ----------
    observations : pandas.DataFrame
        ``account_id``, ``kind``, ``value`` (the normalised observations table).
    account_ids : iterable of str, optional
        Every account to report, including those without observations (they are
        singletons). Defaults to the accounts in ``observations``.
    max_accounts : int, optional
        Ignore identifiers held by more than this many distinct accounts.
    kinds : iterable of str, optional
        Only use identifiers of these kinds (default: every kind).
    min_size : int
        A component of at least this many accounts is flagged ``suspend``.

    Returns
    -------
    pandas.DataFrame
        One row per account, sorted by account_id: ``account_id``, ``cluster_id``
        (``B-000001``... numbered by each component's smallest account id; ``<NA>`` below
        ``min_size``), ``cluster_size`` (accounts in the component), ``score`` (1.0 flagged,
        0.0 not), ``action`` (``suspend`` or ``none``), ``reasons``.

    Notes
    -----
    O(n + m) for n accounts and m observations: one sparse accounts-plus-identifiers
    adjacency matrix and :func:`scipy.sparse.csgraph.connected_components`.

    Examples
    --------
    >>> obs = pd.DataFrame({"account_id": ["a", "b", "b", "c", "d"],
    ...                     "kind": ["payment", "payment", "ip", "ip", "ip"],
    ...                     "value": ["p1", "p1", "1.2.3.4", "1.2.3.4", "9.9.9.9"]})
    >>> shared_identifier_components(obs)[["account_id", "cluster_size", "action"]].values.tolist()
    [['a', 3, 'suspend'], ['b', 3, 'suspend'], ['c', 3, 'suspend'], ['d', 1, 'none']]
    """
    if min_size < 1:
        raise ValueError("min_size must be at least 1")
    universe, rows, columns, n_ident = _linking_incidence(
        observations, account_ids, kinds, max_accounts
    )
    n_acc = len(universe)
    component = _account_components(rows, columns, n_acc, n_ident)
    size = np.bincount(component)[component] if n_acc else np.zeros(0, dtype=np.int64)
    flagged = size >= min_size
    cluster, numbered = _cluster_ids(component, flagged)
    result = _baseline_frame(universe, cluster, size, flagged, max_accounts)
    logger.info(
        "baseline (max_accounts=%s): %d accounts, %d flagged in %d components",
        max_accounts,
        n_acc,
        int(flagged.sum()),
        len(np.unique(numbered)),
    )
    return result
