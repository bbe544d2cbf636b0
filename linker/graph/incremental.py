"""Incremental updates of the account–identifier graph: merging new observations into a
previous run's, and updating identifier counts from the new account–identifier pairs.

``linker update`` (docs/incremental.md) adds the rows that arrived since a previous run to
that run's state instead of recomputing it from all rows. These are the pure parts of it:

* :func:`merge_observations`: the previous observations plus the new ones, one row per
  (account, kind, value), exactly as :func:`linker.observations.build_observations` would
  give on all rows (first and last seen are minima and maxima, counts are sums);
* :func:`key_codes`: integer keys for string key columns of several frames, for merges;
* :func:`sorted_positions`: where (kind, value) pairs sit among the graph's sorted identifier
  columns, by binary search (an identifier's count is its previous count plus its new pairs);
* :func:`extend_bipartite`: the incidence matrix of a previous run (saved as integer entries)
  with the new pairs added, without reading or hashing the previous observations' strings;
* :func:`touched_accounts`: the accounts whose links can have changed;
* :func:`components_touched`: which components of a graph hold a touched node;
* :func:`repartition_touched`: Leiden again on the touched components only, warm-started
  from the previous communities; the others keep theirs;
* :func:`update_behaviour`: behaviour features recomputed for the accounts with new events
  only (the model-pivot columns, which depend on every account, for all).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from linker.graph.behaviour import account_behaviour, pivot_features
from linker.graph.bipartite import Bipartite
from linker.graph.communities import (
    ContractedGraph,
    Method,
    partition_graph,
    with_lonely_components,
)

__all__ = [
    "components_touched",
    "extend_bipartite",
    "key_codes",
    "merge_observations",
    "repartition_touched",
    "revise_observations",
    "sorted_positions",
    "touched_accounts",
    "update_behaviour",
]

logger = logging.getLogger(__name__)

_KEY = ["account_id", "kind", "value"]


def _arrow(values: pd.Series | np.ndarray) -> pa.Array:
    """Values as one Arrow string array (nulls kept)."""
    if isinstance(values, pd.Series):
        arr = pa.array(values.astype("string[pyarrow]").array)
    else:
        arr = pa.array(values, type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.large_string())


def key_codes(frames: list[pd.DataFrame], columns: list[str]) -> list[np.ndarray]:
    """Integer keys of the rows of several frames: two rows, in the same frame or in two,
    get the same key exactly when their ``columns`` hold the same strings.

    Parameters
    ----------
    frames : list of pandas.DataFrame
        Frames with the string ``columns`` (nulls allowed: a null equals a null only).
    columns : list of str

    Returns
    -------
    list of numpy.ndarray of int64
        One array of keys per frame, in row order; keys are dense (``0 .. k-1``).

    Notes
    -----
    O(r) expected for r rows in all: each column is hash-encoded once (Arrow's dictionary
    encoding) over all frames together, and the codes of the columns are combined and
    encoded again, so merges and look-ups run on integers instead of string tuples.

    Examples
    --------
    >>> a = pd.DataFrame({"kind": ["ip", "ip"], "value": ["1", "2"]})
    >>> b = pd.DataFrame({"kind": ["ip", "email"], "value": ["2", "2"]})
    >>> [k.tolist() for k in key_codes([a, b], ["kind", "value"])]
    [[0, 1], [1, 2]]
    """
    sizes = np.cumsum([0, *(len(f) for f in frames)])
    key = np.zeros(int(sizes[-1]), dtype=np.int64)
    for column in columns:
        chunks = [_arrow(f[column]) for f in frames]
        encoded = pc.dictionary_encode(pa.concat_arrays(chunks) if chunks else pa.array([]))
        codes = np.asarray(
            encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64
        )
        key = key * np.int64(len(encoded.dictionary) + 1) + (codes + 1)
        key = pd.factorize(key, sort=False)[0].astype(np.int64)
    return [key[sizes[i] : sizes[i + 1]] for i in range(len(frames))]


def sorted_positions(
    kinds: np.ndarray, values: np.ndarray, want_kinds: np.ndarray, want_values: np.ndarray
) -> np.ndarray:
    """Positions of (kind, value) pairs among identifier columns sorted by (kind, value).

    Parameters
    ----------
    kinds, values : numpy.ndarray of str
        The columns, sorted by kind, then value (code-point order), as
        :func:`linker.graph.bipartite.build_bipartite` numbers them.
    want_kinds, want_values : numpy.ndarray of str
        The pairs to find.

    Returns
    -------
    numpy.ndarray of int64
        Column of each pair, ``-1`` when absent.

    Notes
    -----
    O(q log i) for q pairs among i columns: binary searches only, no hash of the i strings.

    Examples
    --------
    >>> k = np.array(["email", "ip", "ip"], dtype=object)
    >>> v = np.array(["x", "1", "2"], dtype=object)
    >>> sorted_positions(k, v, np.array(["ip", "ip"], dtype=object),
    ...                  np.array(["2", "3"], dtype=object)).tolist()
    [2, -1]
    """
    want_kinds = np.asarray(want_kinds, dtype=object)
    want_values = np.asarray(want_values, dtype=object)
    out = np.full(len(want_kinds), -1, dtype=np.int64)
    for kind in pd.unique(want_kinds):
        mine = np.flatnonzero(want_kinds == kind)
        lo = int(np.searchsorted(kinds, kind, side="left"))
        hi = int(np.searchsorted(kinds, kind, side="right"))
        if hi == lo:
            continue
        block = values[lo:hi]
        at = np.searchsorted(block, want_values[mine])
        inside = at < len(block)
        found = np.zeros(len(mine), dtype=bool)
        found[inside] = block[at[inside]] == want_values[mine][inside]
        out[mine[found]] = lo + at[found]
    return out


def _insertion_points(
    kinds: np.ndarray, values: np.ndarray, new_kinds: np.ndarray, new_values: np.ndarray
) -> np.ndarray:
    """Where (kind, value) pairs absent from columns sorted by (kind, value) go: the number
    of columns before each (binary searches, as :func:`sorted_positions`)."""
    out = np.zeros(len(new_kinds), dtype=np.int64)
    for kind in pd.unique(new_kinds):
        mine = np.flatnonzero(new_kinds == kind)
        lo = int(np.searchsorted(kinds, kind, side="left"))
        hi = int(np.searchsorted(kinds, kind, side="right"))
        out[mine] = lo + np.searchsorted(values[lo:hi], new_values[mine])
    return out


def extend_bipartite(
    account_ids: np.ndarray,
    kinds: np.ndarray,
    values: np.ndarray,
    rows: np.ndarray,
    columns: np.ndarray,
    pairs: pd.DataFrame,
) -> tuple[Bipartite, np.ndarray]:
    """The incidence matrix of a previous run with new account–identifier pairs added.

    Parameters
    ----------
    account_ids : numpy.ndarray of str
        Every account of the new state, in row order (``account_id`` order).
    kinds, values : numpy.ndarray of str
        The previous run's identifier columns, sorted by (kind, value) (its ``identifiers``).
    rows, columns : numpy.ndarray of int
        The previous incidence matrix's entries: account row (in ``account_ids``) and
        identifier column (in ``kinds``/``values``).
    pairs : pandas.DataFrame
        ``account_id, kind, value`` of the pairs not seen before
        (:func:`merge_observations`); rows with no value or an unknown account are ignored.

    Returns
    -------
    bipartite : Bipartite
        What :func:`linker.graph.bipartite.build_bipartite` gives on all the accounts and
        all the observations: the previous columns with the new identifiers inserted in
        (kind, value) order, the previous entries moved to their columns, the new ones added.
    previous_column : numpy.ndarray of int64
        Per column, its previous column (``-1`` for a new identifier).

    Notes
    -----
    O(e + q log i) for e previous entries, q new pairs and i identifiers: binary searches
    of the new pairs only; no string of the previous observations is read or hashed.
    """
    kinds = np.asarray(kinds, dtype=object)
    values = np.asarray(values, dtype=object)
    pairs = pairs[pairs["value"].notna().to_numpy(bool)]
    pair_kinds = pairs["kind"].astype(object).to_numpy()
    pair_values = pairs["value"].astype(object).to_numpy()
    pair_rows = _rows_in(pairs["account_id"], account_ids)
    known = pair_rows >= 0
    pair_kinds, pair_values, pair_rows = pair_kinds[known], pair_values[known], pair_rows[known]
    found = sorted_positions(kinds, values, pair_kinds, pair_values)
    fresh = pd.DataFrame({"kind": pair_kinds[found < 0], "value": pair_values[found < 0]})
    added = sorted(set(zip(fresh["kind"], fresh["value"], strict=True)))
    new_kinds = np.array([k for k, _ in added], dtype=object)
    new_values = np.array([v for _, v in added], dtype=object)
    at = _insertion_points(kinds, values, new_kinds, new_values)
    # np.insert puts the k-th new column (sorted, like ``at``) at ``at[k] + k``.
    all_kinds = np.insert(kinds, at, new_kinds)
    all_values = np.insert(values, at, new_values)
    moved = np.arange(len(kinds), dtype=np.int64) + np.searchsorted(
        at, np.arange(len(kinds)), side="right"
    )
    pair_columns = np.where(
        found >= 0,
        moved[np.maximum(found, 0)],
        -1,
    )
    if len(added):
        placed = at + np.arange(len(added), dtype=np.int64)
        where = sorted_positions(
            new_kinds, new_values, pair_kinds[found < 0], pair_values[found < 0]
        )
        pair_columns[found < 0] = placed[where]
    entry_rows = np.concatenate([np.asarray(rows, dtype=np.int64), pair_rows])
    entry_columns = np.concatenate([moved[np.asarray(columns, dtype=np.int64)], pair_columns])
    matrix = sp.csr_matrix(
        (np.ones(len(entry_rows), dtype=np.float64), (entry_rows, entry_columns)),
        shape=(len(account_ids), len(all_kinds)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    n_accounts = np.bincount(matrix.indices, minlength=len(all_kinds)).astype(np.int64)
    previous_column = np.full(len(all_kinds), -1, dtype=np.int64)
    previous_column[moved] = np.arange(len(kinds), dtype=np.int64)
    bip = Bipartite(
        account_ids=np.asarray(account_ids, dtype=object),
        kinds=all_kinds,
        values=all_values,
        matrix=matrix,
        n_accounts=n_accounts,
    )
    return bip, previous_column


def _rows_in(values: pd.Series, account_ids: np.ndarray) -> np.ndarray:
    """Row of each value in ``account_ids`` (``-1`` when absent)."""
    found = pc.index_in(_arrow(values), value_set=_arrow(np.asarray(account_ids, dtype=object)))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _merged_times(
    column: pd.Series, rows: np.ndarray, other: pd.Series, earliest: bool
) -> pd.Series:
    """``column`` with its ``rows`` set to the earlier (or later) of it and ``other``; a
    missing time (NaT) yields to a known one, as a minimum or maximum over rows does."""
    times = pd.DatetimeIndex(column)
    here = times.asi8.copy()
    there = pd.DatetimeIndex(other).as_unit(times.unit).asi8
    nat = np.iinfo(np.int64).min
    a, b = here[rows], there
    if earliest:
        a = np.where(a == nat, np.iinfo(np.int64).max, a)
        b = np.where(b == nat, np.iinfo(np.int64).max, b)
        picked = np.minimum(a, b)
        picked[picked == np.iinfo(np.int64).max] = nat
    else:
        picked = np.maximum(a, b)
    here[rows] = picked
    result = pd.DatetimeIndex(here.view(f"M8[{times.unit}]"))
    result = result.tz_localize("UTC") if times.tz is not None else result
    if times.tz is not None:
        result = result.tz_convert(times.tz)
    return pd.Series(result, index=column.index, name=column.name)


def merge_observations(
    previous: pd.DataFrame, new: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The previous observations with the new ones added.

    Parameters
    ----------
    previous : pandas.DataFrame
        Observations of a previous run (``account_id, kind, value, first_seen, last_seen,
        count``), one row per (account_id, kind, value).
    new : pandas.DataFrame
        Observations built from the rows that arrived since, with the same columns.

    Returns
    -------
    merged : pandas.DataFrame
        One row per (account_id, kind, value): the previous rows in their order (those the
        new rows also hold with ``first_seen`` the earlier, ``last_seen`` the later and
        ``count`` the sum of both), then the pairs not seen before, sorted by (kind, value,
        account_id).
    new_pairs : pandas.DataFrame
        ``account_id, kind, value`` of the pairs not seen before, in that order.

    Notes
    -----
    O(p + n log n) for p previous and n new rows (:func:`revise_observations`), plus a copy
    of the previous rows.

    Examples
    --------
    >>> t = pd.Timestamp("2026-01-01", tz="UTC")
    >>> old = pd.DataFrame({"account_id": ["a"], "kind": ["ip"], "value": ["1"],
    ...     "first_seen": [t], "last_seen": [t], "count": [2]})
    >>> add = pd.DataFrame({"account_id": ["a", "b"], "kind": ["ip", "ip"], "value": ["1", "1"],
    ...     "first_seen": [t, t], "last_seen": [t + pd.Timedelta("1D")] * 2, "count": [3, 1]})
    >>> merged, pairs = merge_observations(old, add)
    >>> merged[["account_id", "count"]].values.tolist(), pairs["account_id"].tolist()
    ([['a', 5], ['b', 1]], ['b'])
    """
    columns = list(previous.columns)
    rows, revised, fresh = revise_observations(previous, new)
    merged = previous
    if len(rows):
        merged = previous.copy()
        for column in ("count", "first_seen", "last_seen"):
            values = merged[column].copy()
            values.iloc[rows] = revised[column].to_numpy()
            merged[column] = values
    merged = pd.concat([merged, fresh[columns]], ignore_index=True)
    return merged, fresh[_KEY].reset_index(drop=True)


def revise_observations(
    previous: pd.DataFrame, new: pd.DataFrame
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """What adding new observations changes in a previous run's: the previous rows the new
    ones also hold, those rows merged, and the pairs not seen before.

    Parameters
    ----------
    previous, new : pandas.DataFrame
        As in :func:`merge_observations`.

    Returns
    -------
    rows : numpy.ndarray of int64
        Rows of ``previous`` (ascending) that a new row also holds.
    revised : pandas.DataFrame
        Those rows, in that order, with ``first_seen`` the earlier, ``last_seen`` the later
        and ``count`` the sum of both.
    fresh : pandas.DataFrame
        The new rows of pairs not seen before, sorted by (kind, value, account_id), with the
        columns of ``previous``.

    Notes
    -----
    O(p + n log n) for p previous and n new rows: only the new rows are sorted; the previous
    rows of the accounts the new rows speak of are found with one Arrow set look-up and
    matched on integer keys (:func:`key_codes`); nothing of size p is copied, so the
    previous rows but ``rows`` can be kept as they are stored
    (:class:`linker.engine.store.Appended` with ``replaced``).
    """
    columns = list(previous.columns)
    if new.empty:
        return np.zeros(0, dtype=np.int64), previous.iloc[0:0], new[columns].iloc[0:0]
    # Only the previous rows of accounts the new rows speak of can match: key those alone.
    # The previous ids as they are (no copy to another string type): the few wanted ids are
    # cast to their type instead.
    held = pa.array(previous["account_id"].astype("string[pyarrow]").array)
    wanted = pc.unique(_arrow(new["account_id"])).cast(held.type)
    hit = pc.is_in(held, value_set=wanted)
    mine = np.flatnonzero(np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool))
    old_keys, new_keys = key_codes([previous.iloc[mine], new], _KEY)
    found = pd.Index(old_keys).get_indexer(new_keys)
    seen = found >= 0
    rows = mine[found[seen]]
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    again = new[seen].iloc[order]
    revised = previous.iloc[rows].reset_index(drop=True)
    if len(rows):
        at = np.arange(len(rows))
        revised["count"] = revised["count"].to_numpy(np.int64) + again["count"].to_numpy(np.int64)
        revised["first_seen"] = _merged_times(revised["first_seen"], at, again["first_seen"], True)
        revised["last_seen"] = _merged_times(revised["last_seen"], at, again["last_seen"], False)
    fresh = new[~seen].sort_values(["kind", "value", "account_id"], kind="mergesort")
    return rows.astype(np.int64), revised, fresh[columns].reset_index(drop=True)


def touched_accounts(incidence: sp.csr_matrix, columns: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Accounts holding any of the identifier ``columns``, and the accounts ``rows``.

    Parameters
    ----------
    incidence : scipy.sparse.csr_matrix
        Accounts × identifiers incidence matrix.
    columns : numpy.ndarray of int
        Identifiers whose holders or weight changed.
    rows : numpy.ndarray of int
        Accounts touched themselves (new accounts, accounts with new observations).

    Returns
    -------
    numpy.ndarray of bool
        Per account, whether it is touched.

    Notes
    -----
    O(nnz of the chosen columns).

    Examples
    --------
    >>> m = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], dtype=float))
    >>> touched_accounts(m, np.array([0]), np.array([], dtype=int)).tolist()
    [True, True, False]
    """
    out = np.zeros(incidence.shape[0], dtype=bool)
    out[np.asarray(rows, dtype=np.int64)] = True
    if len(columns):
        holders = incidence.tocsc()[:, np.asarray(columns, dtype=np.int64)]
        out[holders.indices] = True
    return out


def components_touched(
    n_nodes: int, edges: np.ndarray, touched: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of a graph, and which of them hold a touched node.

    Parameters
    ----------
    n_nodes : int
    edges : numpy.ndarray
        ``(m, 2)`` node pairs.
    touched : numpy.ndarray of bool
        Per node, whether it is touched.

    Returns
    -------
    component : numpy.ndarray of int64
        Component per node.
    hit : numpy.ndarray of bool
        Per node, whether its component holds a touched node.

    Notes
    -----
    O(n + m).

    Examples
    --------
    >>> comp, hit = components_touched(4, np.array([[0, 1], [2, 3]]),
    ...                                np.array([False, True, False, False]))
    >>> hit.tolist()
    [True, True, False, False]
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    graph = sp.csr_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_nodes, n_nodes)
    )
    _, component = connected_components(graph, directed=False)
    component = np.asarray(component, dtype=np.int64)
    hit_component = np.zeros(int(component.max()) + 1 if n_nodes else 0, dtype=bool)
    hit_component[component[np.asarray(touched, dtype=bool)]] = True
    return component, hit_component[component]


def repartition_touched(
    graph: ContractedGraph,
    strong_labels: np.ndarray,
    touched: np.ndarray,
    previous: np.ndarray,
    *,
    resolution: float = 1.0,
    seed: int = 42,
    method: Method = "igraph",
    warm: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Communities of accounts where only the components holding a touched account are
    partitioned again.

    Parameters
    ----------
    graph : ContractedGraph
        The contracted account graph of the new state
        (:func:`linker.graph.communities.contract`).
    strong_labels : numpy.ndarray
        Strong-link component of each account.
    touched : numpy.ndarray of bool
        Per account, whether its links can have changed (:func:`touched_accounts`).
    previous : numpy.ndarray of int
        Per account, its community in the previous run before pruning (the ``partition``
        column of the ``communities`` artefact); ``-1`` for none and for new accounts.
    resolution, seed, method
        As in :func:`linker.graph.communities.partition_graph`.
    warm : bool, default True
        Start Leiden from the previous communities (new accounts and hubs alone) rather than
        from every node alone.

    Returns
    -------
    membership : numpy.ndarray of int64
        Community per account (``-1`` for none), as
        :func:`linker.graph.communities.detect_communities` gives.
    facts : dict
        ``nodes``, ``nodes_repartitioned``, ``components_repartitioned``.

    Notes
    -----
    O(n + m) to find the components, plus Leiden on the touched components' nodes only. A
    component with no touched account has the same nodes and links as before (up to the
    small change of every weight's rarity with the population), so it keeps its previous
    communities. Leiden's communities are connected, so no previous community spans two
    components.
    """
    n_comp = graph.n_comp
    n_nodes = n_comp + graph.n_hubs
    node_touched = np.zeros(n_nodes, dtype=bool)
    node_touched[strong_labels[np.asarray(touched, dtype=bool)]] = True
    component, hit = components_touched(n_nodes, graph.edges, node_touched)
    used = np.zeros(n_nodes, dtype=bool)
    used[graph.edges.ravel()] = True
    redo = hit & used
    prev_comp = np.full(n_comp, -1, dtype=np.int64)
    np.maximum.at(prev_comp, strong_labels, np.asarray(previous, dtype=np.int64))
    comp_comm = np.where(~hit[:n_comp] & used[:n_comp], prev_comp, -1)
    index = np.full(n_nodes, -1, dtype=np.int64)
    index[redo] = np.arange(int(redo.sum()))
    inside = redo[graph.edges[:, 0]]
    first_free = max(int(prev_comp.max(initial=-1)), int(comp_comm.max(initial=-1))) + 1
    if inside.any():
        initial = None
        if warm:
            start = np.r_[prev_comp, np.full(graph.n_hubs, -1, dtype=np.int64)][redo]
            alone = start < 0
            start[alone] = first_free + np.arange(int(alone.sum()))
            initial = start
        # Modularity's null model scales with the graph's total weight: the touched part,
        # partitioned alone, gets the resolution that keeps the whole graph's objective (as
        # the full run's per-component Leiden does).
        total = float(np.sum(graph.weights))
        share = float(np.sum(graph.weights[inside])) / total if total > 0 else 1.0
        sub = partition_graph(
            int(redo.sum()),
            index[graph.edges[inside]],
            graph.weights[inside],
            resolution=resolution * share,
            seed=seed,
            method=method,
            initial=initial,
        )
        mine = redo[:n_comp]
        comp_comm[mine] = first_free + sub[index[:n_comp][mine]]
        first_free += int(sub.max()) + 1
    comp_comm = with_lonely_components(comp_comm, graph.comp_size, first_free)
    membership = comp_comm[strong_labels]
    labels, dense = np.unique(membership, return_inverse=True)
    offset = 1 if len(labels) and labels[0] < 0 else 0
    membership = np.asarray(dense.ravel(), dtype=np.int64) - offset
    facts = {
        "nodes": int(used.sum()),
        "nodes_repartitioned": int(redo.sum()),
        "components_repartitioned": len(np.unique(component[redo])),
    }
    return membership, facts


def update_behaviour(
    previous: pd.DataFrame,
    accounts: pd.DataFrame,
    codes: pd.DataFrame,
    touched: np.ndarray,
    *,
    dormancy_days: float = 14.0,
    new_model_margin_days: float = 7.0,
) -> pd.DataFrame:
    """Behaviour features of the new state, recomputed for the touched accounts only.

    Parameters
    ----------
    previous : pandas.DataFrame
        The previous run's features (:func:`linker.graph.behaviour.account_behaviour`), one
        row per account it had.
    accounts : pandas.DataFrame
        All accounts of the new state (``account_id``, ``created_at``), in row order.
    codes : pandas.DataFrame
        The codes of all events for ``accounts``: :func:`linker.graph.behaviour.event_codes`
        or :func:`linker.graph.behaviour.codes_as_saved` (any numbering of the values, any
        order of the rows).
    touched : numpy.ndarray of bool
        Per account: new, or with new events. Every account missing from ``previous`` must
        be touched.
    dormancy_days, new_model_margin_days : float
        As in :func:`~linker.graph.behaviour.account_behaviour`.

    Returns
    -------
    pandas.DataFrame
        The features of every account, in the order of ``accounts``: the previous row of an
        untouched account, the recomputed row of a touched one (from all its events), and
        the ``pivot_*`` columns computed for all (:func:`pivot_features`).

    Raises
    ------
    ValueError
        When an account missing from ``previous`` is not touched.

    Notes
    -----
    An account's features other than the pivot depend on its own events and signup time
    only, so an account without new events keeps them exactly. O(m_t log m_t) for the m_t
    events of touched accounts, plus O(m) for the pivot columns.
    """
    ids = accounts["account_id"].astype("string")
    touched = np.asarray(touched, dtype=bool)
    at = pd.Index(previous["account_id"].astype("string")).get_indexer(pd.Index(ids))
    if ((at < 0) & ~touched).any():
        raise ValueError("every account without previous features must be touched")
    rows = np.flatnonzero(touched)
    acc = codes["acc"].to_numpy(np.int64)
    keep = touched[acc]
    remap = np.full(len(ids), -1, dtype=np.int64)
    remap[rows] = np.arange(len(rows))
    mine = codes[keep].reset_index(drop=True)
    mine["acc"] = remap[acc[keep]]
    # Sorted by account and time, as account_behaviour reads them (``codes`` need not be).
    mine = mine.take(np.lexsort((mine["t"].to_numpy(), mine["acc"].to_numpy())))
    mine = mine.reset_index(drop=True)
    mine.attrs = dict(codes.attrs)
    fresh = account_behaviour(
        mine,
        accounts.iloc[rows].reset_index(drop=True),
        codes=mine,
        dormancy_days=dormancy_days,
        new_model_margin_days=new_model_margin_days,
    )
    kept = np.flatnonzero(~touched)
    old = previous.take(at[kept]).reset_index(drop=True)[list(fresh.columns)]
    parts = pd.concat([old.astype(fresh.dtypes.to_dict()), fresh], ignore_index=True)
    order = np.argsort(np.r_[kept, rows], kind="stable")
    out = parts.take(order).reset_index(drop=True)
    pivot = pivot_features(codes, len(ids), new_model_margin_days)
    for column in pivot.columns:
        out[column] = pivot[column].array
    return out
