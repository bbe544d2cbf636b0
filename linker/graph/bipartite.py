"""The account–identifier bipartite graph as a sparse incidence matrix.

Rows are accounts, columns are identifiers (a ``(kind, value)`` pair such as a payment
fingerprint, a signup /24 or a prompt fingerprint). networkx is only used for small
subgraphs handed to notebooks (:func:`subgraph_to_networkx`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

if TYPE_CHECKING:  # networkx loads in a second; only the notebook helper needs it
    import networkx as nx

__all__ = [
    "Bipartite",
    "IdentifierGraph",
    "build_bipartite",
    "identifier_graph",
    "subgraph_to_networkx",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bipartite:
    """Accounts × identifiers incidence matrix and its labels.

    Attributes
    ----------
    account_ids : numpy.ndarray
        Account id of each row, in the order of the accounts table.
    kinds, values : numpy.ndarray
        Kind and value of each identifier column, sorted by (kind, value).
    matrix : scipy.sparse.csr_matrix
        ``matrix[i, j] == 1`` when account ``i`` has identifier ``j``.
    n_accounts : numpy.ndarray
        Number of distinct accounts holding each identifier (column sums).
    """

    account_ids: np.ndarray
    kinds: np.ndarray
    values: np.ndarray
    matrix: sp.csr_matrix
    n_accounts: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(number of accounts, number of identifiers)."""
        return (len(self.account_ids), len(self.kinds))


def _arrow_strings(values: pd.Series | pd.Index) -> pa.Array:
    """The values as one Arrow string array (zero-copy for Arrow-backed pandas strings)."""
    return _chunked_strings(values).combine_chunks().cast(pa.string())


def _index_in(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value in ``index`` (-1 when absent), with Arrow's hash join."""
    found = pc.index_in(_arrow_strings(values), value_set=_arrow_strings(index))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _sorted_codes(values: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Codes into the *sorted* distinct values, so the result ignores row order."""
    encoded = pc.dictionary_encode(values.combine_chunks())
    dictionary = encoded.dictionary
    order = np.asarray(pc.sort_indices(dictionary).to_numpy(), dtype=np.int64)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    codes = rank[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
    names = np.asarray(dictionary.to_numpy(zero_copy_only=False), dtype=object)[order]
    return codes, names


def _chunked_strings(values: pd.Series | pd.Index) -> pa.ChunkedArray:
    """A pandas string column as an Arrow chunked array, without copying Arrow-backed data."""
    strings = pd.Series(values, copy=False).astype("string[pyarrow]")
    array = pa.array(strings.array)
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


def _pair_labels(
    kind_array: pa.ChunkedArray, value_array: pa.ChunkedArray, first: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Kind and value of the rows ``first`` (one per identifier), as object arrays; the
    kinds share one Python string per distinct kind."""
    at = pa.array(first)
    kind_codes, kind_names = _sorted_codes(kind_array.take(at))
    kinds = np.asarray(kind_names, dtype=object)[kind_codes]
    values = np.asarray(value_array.take(at).to_numpy(zero_copy_only=False), dtype=object)
    return kinds, values


def _sorted_pairs(
    kind_array: pa.ChunkedArray, value_array: pa.ChunkedArray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Identifier labels and codes of rows already sorted by (kind, value), as a run's
    observations are: a comparison of neighbours, with no hashing or sorting. ``None`` when
    the rows are not in that order."""
    n = len(kind_array)
    if n < 2 or kind_array.null_count or value_array.null_count:
        return None
    k0, k1 = kind_array.slice(0, n - 1), kind_array.slice(1)
    v0, v1 = value_array.slice(0, n - 1), value_array.slice(1)
    same_kind = pc.equal(k0, k1)
    in_order = pc.or_(pc.less(k0, k1), pc.and_(same_kind, pc.less_equal(v0, v1)))
    if not pc.all(in_order).as_py():
        return None
    new = np.empty(n, dtype=bool)
    new[0] = True
    same = pc.and_(same_kind, pc.equal(v0, v1))
    new[1:] = ~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
    kinds, values = _pair_labels(kind_array, value_array, np.flatnonzero(new))
    return kinds, values, np.cumsum(new, dtype=np.int64) - 1


def _hashed_pairs(
    kind_array: pa.ChunkedArray, value_array: pa.ChunkedArray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Identifier labels (sorted by kind, value) and codes of rows in any order."""
    kind_codes, kind_names = _sorted_codes(kind_array)
    value_codes, value_names = _sorted_codes(value_array)
    # (kind, value) pairs as one int64 key; sorted codes keep (kind, value) order.
    pair_key = kind_codes.astype(np.int64) * np.int64(len(value_names) + 1) + value_codes
    unique_keys, codes = np.unique(pair_key, return_inverse=True)
    kinds = np.asarray(kind_names, dtype=object)[unique_keys // (len(value_names) + 1)]
    values = np.asarray(value_names, dtype=object)[unique_keys % (len(value_names) + 1)]
    return kinds, values, codes


def build_bipartite(account_ids: Iterable[str], observations: pd.DataFrame) -> Bipartite:
    """Build the accounts × identifiers incidence matrix.

    Parameters
    ----------
    account_ids : iterable of str
        Accounts (rows), in output order. Observations of other accounts are ignored.
    observations : pandas.DataFrame
        Long table with at least ``account_id``, ``kind`` and ``value``.

    Returns
    -------
    Bipartite

    Notes
    -----
    O(m log m) for m observations (one factorisation and a sparse COO→CSR conversion).

    Examples
    --------
    >>> obs = pd.DataFrame({"account_id": ["a", "b"], "kind": ["ip", "ip"], "value": ["1", "1"]})
    >>> build_bipartite(["a", "b"], obs).n_accounts.tolist()
    [2]
    """
    # A pandas or NumPy column converts as it is: no Python string per account on the way.
    listed = (
        account_ids
        if isinstance(account_ids, pd.Series | pd.Index | np.ndarray)
        else list(account_ids)
    )
    ids = pd.Index(pd.Series(listed, copy=False).astype("string"))
    if ids.has_duplicates:
        ids = ids.drop_duplicates()
    rows = _index_in(observations["account_id"], ids)
    known = (rows >= 0) & observations["value"].notna().to_numpy()
    rows = rows[known]
    kind_array = _chunked_strings(observations["kind"])
    value_array = _chunked_strings(observations["value"])
    if not known.all():
        keep = pa.array(known)
        kind_array, value_array = kind_array.filter(keep), value_array.filter(keep)
    pairs = _sorted_pairs(kind_array, value_array)
    if pairs is None:
        pairs = _hashed_pairs(kind_array, value_array)
    kinds, values, codes = pairs
    matrix = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.float64), (rows, codes)),
        shape=(len(ids), len(kinds)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    n_accounts = np.bincount(matrix.indices, minlength=len(kinds)).astype(np.int64)
    logger.debug("bipartite graph: %d accounts, %d identifiers", len(ids), len(kinds))
    return Bipartite(
        account_ids=ids.to_numpy(dtype=object),
        kinds=kinds,
        values=values,
        matrix=matrix,
        n_accounts=n_accounts,
    )


@dataclass(frozen=True)
class IdentifierGraph:
    """The run's account–identifier graph: the incidence matrix with each identifier's
    evidence weight and super-node flag (the ``observations`` and ``identifiers``
    artefacts, which every stage, ``linker expand`` and the Neo4j loader read).

    Attributes
    ----------
    bipartite : Bipartite
    weights : numpy.ndarray
        Evidence weight per identifier (0 for feature-only kinds and super-nodes).
    supernode : numpy.ndarray of bool
        Identifiers shared by too many accounts, or too diverse a population, to link anyone.
    """

    bipartite: Bipartite
    weights: np.ndarray
    supernode: np.ndarray

    @property
    def linkable(self) -> np.ndarray:
        """Identifiers that tie accounts together: shared, and not super-nodes."""
        return np.asarray((self.bipartite.n_accounts >= 2) & ~self.supernode, dtype=bool)

    def columns_of(self, kinds: Iterable[str]) -> np.ndarray:
        """Linkable identifier columns of the given kinds."""
        return np.flatnonzero(self.linkable & np.isin(self.bipartite.kinds, list(kinds)))

    @classmethod
    def of(cls, bipartite: Bipartite, identifiers: pd.DataFrame) -> IdentifierGraph:
        """``bipartite`` with the weights and flags of the identifiers table.

        Raises
        ------
        ValueError
            When ``identifiers`` does not list the matrix's identifier columns in order.
        """
        n = bipartite.shape[1]
        # Every kind, and the values at a fixed spread of positions: a mismatched pair of
        # artefacts differs almost everywhere, and comparing two million strings costs seconds.
        probe = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, 4096)).astype(np.int64))
        kinds = identifiers["kind"].to_numpy(dtype=object)
        if (
            len(identifiers) != n
            or (n and not (kinds == bipartite.kinds).all())
            or (
                n
                and not (
                    identifiers["value"].iloc[probe].to_numpy(dtype=object)
                    == bipartite.values[probe]
                ).all()
            )
        ):
            raise ValueError("the identifiers table does not match the observations' identifiers")
        return cls(
            bipartite,
            identifiers["weight"].to_numpy(np.float64),
            identifiers["is_supernode"].to_numpy(bool),
        )


def identifier_graph(
    account_ids: Iterable[str], observations: pd.DataFrame, identifiers: pd.DataFrame
) -> IdentifierGraph:
    """The saved graph of a run: :func:`build_bipartite` with the identifiers' weights.

    Raises
    ------
    ValueError
        When ``identifiers`` does not list the observations' identifiers in order.

    Notes
    -----
    O(m log m) for m observations (:func:`build_bipartite`).
    """
    return IdentifierGraph.of(build_bipartite(account_ids, observations), identifiers)


def subgraph_to_networkx(
    bipartite: Bipartite,
    accounts: Iterable[str],
    *,
    identifier_weights: np.ndarray | None = None,
    include_supernodes: bool = False,
    is_supernode: np.ndarray | None = None,
) -> nx.Graph:
    """The bipartite subgraph around some accounts, as a networkx graph for notebooks.

    Parameters
    ----------
    bipartite : Bipartite
    accounts : iterable of str
        Account ids to include; unknown ids are ignored.
    identifier_weights : numpy.ndarray, optional
        Weight of each identifier, stored on its edges as ``weight``.
    include_supernodes : bool, default False
        Keep identifiers flagged in ``is_supernode`` (they are features, not links).
    is_supernode : numpy.ndarray, optional
        Boolean flag per identifier.

    Returns
    -------
    networkx.Graph
        Nodes ``("account", id)`` with ``bipartite=0`` and ``(kind, value)`` with
        ``bipartite=1``, ``n_accounts`` and ``weight``; only identifiers shared by at least two
        of the given accounts are kept.

    Notes
    -----
    O(size of the accounts' rows); meant for clusters, not the whole graph.
    """
    index = pd.Index(bipartite.account_ids)
    rows = index.get_indexer(list(accounts))
    rows = np.unique(rows[rows >= 0])
    sub = bipartite.matrix[rows].tocsc()
    shared = np.flatnonzero(np.diff(sub.indptr) >= 2)
    if not include_supernodes and is_supernode is not None:
        shared = shared[~is_supernode[shared]]
    import networkx as nx

    graph = nx.Graph()
    for r in rows:
        graph.add_node(("account", str(bipartite.account_ids[r])), bipartite=0)
    edges = sub[:, shared].tocoo()
    for r, c in zip(edges.row.tolist(), edges.col.tolist(), strict=True):
        j = int(shared[c])
        node = (str(bipartite.kinds[j]), str(bipartite.values[j]))
        weight = float(identifier_weights[j]) if identifier_weights is not None else 1.0
        if node not in graph:
            graph.add_node(
                node, bipartite=1, n_accounts=int(bipartite.n_accounts[j]), weight=weight
            )
        graph.add_edge(("account", str(bipartite.account_ids[rows[r]])), node, weight=weight)
    return graph
