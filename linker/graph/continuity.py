"""Cluster ids that carry over from one run to the next: majority remapping by members.

A run numbers its clusters by rank (:func:`linker.graph.scoring.cluster_labels`); between two
daily runs the ranks move, so the same ring would get another id. :func:`carry_cluster_ids`
matches the new clusters to the previous run's by the accounts they share and lets each new
cluster keep the id of the previous cluster most of its members come from. docs/pipeline.md
("Stable cluster ids") states the rules for users.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CarriedIds", "carry_cluster_ids", "cluster_number", "format_cluster_id"]

_CLUSTER_ID = re.compile(r"^C-(\d+)$")


def cluster_number(cluster_id: str) -> int:
    """The number of a cluster id (``"C-0017"`` -> 17).

    Raises
    ------
    ValueError
        When ``cluster_id`` is not ``C-`` followed by digits.

    Examples
    --------
    >>> cluster_number("C-0017")
    17
    """
    match = _CLUSTER_ID.match(str(cluster_id))
    if match is None:
        raise ValueError(f"not a cluster id: {cluster_id!r}")
    return int(match.group(1))


def format_cluster_id(number: int, width: int = 4) -> str:
    """``C-`` and ``number`` zero-padded to ``width`` digits (more when it needs them).

    Examples
    --------
    >>> format_cluster_id(58), format_cluster_id(12345)
    ('C-0058', 'C-12345')
    """
    return f"C-{number:0{width}d}"


@dataclass(frozen=True)
class CarriedIds:
    """The ids of a run's clusters after matching them to the previous run's.

    Attributes
    ----------
    labels : numpy.ndarray of str
        The id of each new cluster index.
    kept : int
        New clusters that kept a previous id.
    fresh : int
        New clusters that got a new id.
    retired : list of str
        Previous ids no cluster kept (their clusters dissolved, or merged into another's).
    highest : int
        The highest id number used so far: the next fresh id is ``highest + 1``.
    merges : list of dict
        ``{"from": [previous ids], "into": new id}`` for each new cluster that is the main
        successor of two or more previous clusters.
    splits : list of dict
        ``{"from": previous id, "into": [new ids]}`` for each previous cluster that two or
        more new clusters come mostly from; the first new id is the part that kept the id.
    """

    labels: np.ndarray
    kept: int
    fresh: int
    retired: list[str] = field(default_factory=list)
    highest: int = 0
    merges: list[dict[str, Any]] = field(default_factory=list)
    splits: list[dict[str, Any]] = field(default_factory=list)


def carry_cluster_ids(
    account_ids: np.ndarray,
    cluster_of: np.ndarray,
    previous_account_ids: np.ndarray,
    previous_cluster_ids: np.ndarray,
    *,
    n_clusters: int | None = None,
    order: np.ndarray | None = None,
    highest: int = 0,
) -> CarriedIds:
    """Give each new cluster the id of the previous cluster most of its members come from.

    Parameters
    ----------
    account_ids : numpy.ndarray of str
        The accounts of this run.
    cluster_of : numpy.ndarray of int
        Per account, its new cluster index (``-1`` for none).
    previous_account_ids, previous_cluster_ids : numpy.ndarray
        The previous run's accounts and their cluster ids (``C-`` and digits; ``None`` or NA
        for an account in no cluster).
    n_clusters : int, optional
        Number of new clusters (default ``cluster_of.max() + 1``).
    order : numpy.ndarray of int, optional
        The new cluster indices in the order fresh ids are handed out (a run passes its
        rank order: score, then size, then first account); default by index.
    highest : int, default 0
        The highest id number ever used before (the previous run's record); the previous
        run's own ids count too. Fresh ids continue after it, so no id is ever reused.

    Returns
    -------
    CarriedIds

    Raises
    ------
    ValueError
        When a previous cluster id is malformed or the arrays' lengths differ.

    Notes
    -----
    Only *carried-over* accounts count: accounts in a cluster in both runs. With
    ``overlap(n, o)`` the carried-over accounts new cluster ``n`` shares with previous
    cluster ``o``:

    1. **Source.** The source of ``n`` is the ``o`` with the largest overlap (the previous
       cluster most of its carried-over members come from); ties go to the previous cluster
       that was larger in the previous run, then to the smaller id number. A new cluster
       without carried-over members has no source. So a merge keeps the id of the cluster
       it took the most members from.
    2. **Heir.** Among the new clusters whose source is ``o``, the one with the largest
       overlap keeps ``o``'s id (a split: the largest part keeps it); ties go to the larger
       new cluster, then to the one whose smallest account id is smallest (code-point
       order). The other parts get fresh ids.
    3. **Fresh ids.** Every other new cluster gets ``highest + 1``, ``highest + 2`` ... in
       ``order``, zero-padded to the width of the widest previous id (at least four digits).

    The record names a **merge** when two or more previous clusters have the same *main
    successor* (the new cluster holding most of their carried-over members; ties as in
    step 2), and a **split** when two or more new clusters have the same source.

    Deterministic: the result depends on the memberships only, not on the order of the
    rows. Time O(m log m) and memory O(m) for m accounts of both runs (one join and a few
    sorts of the overlapping pairs).

    Examples
    --------
    >>> carried = carry_cluster_ids(
    ...     np.array(["a", "b", "c", "d", "e"]), np.array([1, 1, 1, 0, 0]),
    ...     np.array(["a", "b", "d", "e"]), np.array(["C-0002", "C-0002", "C-0007", None]),
    ...     highest=9)
    >>> carried.labels.tolist()
    ['C-0007', 'C-0002']
    >>> carried.kept, carried.fresh, carried.highest
    (2, 0, 9)
    """
    cluster_of = np.asarray(cluster_of, dtype=np.int64)
    if len(account_ids) != len(cluster_of) or len(previous_account_ids) != len(
        previous_cluster_ids
    ):
        raise ValueError("account ids and cluster memberships must have the same length")
    n = int(
        n_clusters if n_clusters is not None else (cluster_of.max() + 1 if len(cluster_of) else 0)
    )
    pairs, previous = _overlaps(
        account_ids, cluster_of, previous_account_ids, previous_cluster_ids, n
    )
    width = max([4, *(len(str(i)) - 2 for i in previous.index)])
    highest = max([int(highest), *previous["number"].tolist()])
    by_successor = ["old", "overlap", "new_size", "new_first"]
    descending = [True, False, False, True]
    source = pairs.sort_values(
        ["new", "overlap", "old_size", "old_number", "old"],
        ascending=[True, False, False, True, True],
        kind="mergesort",
    ).drop_duplicates("new")
    heirs = source.sort_values(by_successor, ascending=descending, kind="mergesort")
    heirs = heirs.drop_duplicates("old")
    labels = np.full(n, None, dtype=object)
    labels[heirs["new"].to_numpy(np.int64)] = heirs["old"].to_numpy(dtype=object)
    kept = len(heirs)
    sequence = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    for index in sequence:
        if labels[index] is None:
            highest += 1
            labels[index] = format_cluster_id(highest, width)
    successors = pairs.sort_values(by_successor, ascending=descending, kind="mergesort")
    successors = successors.drop_duplicates("old")
    return CarriedIds(
        labels=labels,
        kept=kept,
        fresh=n - kept,
        retired=sorted(set(previous.index) - set(heirs["old"]), key=cluster_number),
        highest=highest,
        merges=_grouped(successors, "new", "old", labels, merge=True),
        splits=_grouped(source, "old", "new", labels, merge=False),
    )


def _overlaps(
    account_ids: np.ndarray,
    cluster_of: np.ndarray,
    previous_account_ids: np.ndarray,
    previous_cluster_ids: np.ndarray,
    n: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (new, old) cluster pairs sharing carried-over accounts, with the overlap and
    both clusters' sizes and tie keys; and the previous clusters (size, number) by id."""
    clustered = cluster_of >= 0
    accounts = pd.Index(np.asarray(account_ids, dtype=object)[clustered])
    new_of = cluster_of[clustered]
    if not accounts.is_unique:
        first = ~accounts.duplicated()
        accounts, new_of = accounts[first], new_of[first]
    old_ids = pd.Series(np.asarray(previous_cluster_ids, dtype=object), dtype=object)
    known = old_ids.notna().to_numpy()
    codes, uniques = pd.factorize(old_ids[known].astype(str), sort=True)
    previous = pd.DataFrame(
        {"size": np.bincount(codes, minlength=len(uniques)).astype(np.int64)},
        index=pd.Index(uniques.astype(str), name="old"),
    )
    previous["number"] = [cluster_number(i) for i in previous.index]
    # Accounts are matched by hashing the ids once; pairs are counted on integer keys.
    at = accounts.get_indexer(np.asarray(previous_account_ids, dtype=object)[known])
    hit = at >= 0
    width = max(len(uniques), 1)
    keys, overlap = np.unique(new_of[at[hit]] * width + codes[hit], return_counts=True)
    pairs = pd.DataFrame({"new": keys // width, "overlap": overlap.astype(np.int64)})
    old_code = keys % width
    pairs["old"] = previous.index.to_numpy(dtype=object)[old_code]
    pairs["old_size"] = previous["size"].to_numpy()[old_code]
    pairs["old_number"] = previous["number"].to_numpy()[old_code]
    pairs["new_size"] = np.bincount(new_of, minlength=n)[pairs["new"].to_numpy()]
    first_account = pd.Series(accounts.to_numpy(dtype=object)).groupby(new_of).min()
    pairs["new_first"] = first_account.reindex(pairs["new"]).to_numpy(dtype=object)
    return pairs, previous


def _grouped(
    matched: pd.DataFrame, by: str, other: str, labels: np.ndarray, *, merge: bool
) -> list[dict[str, Any]]:
    """Merges (several previous clusters -> one new) or splits (one previous -> several new)
    among one-per-key matches, in id order."""
    records: list[dict[str, Any]] = []
    several = matched[matched.duplicated(by, keep=False)]
    for key, group in several.groupby(by, sort=True):
        if merge:
            olds = sorted(group[other].astype(str), key=cluster_number)
            records.append({"from": olds, "into": str(labels[int(str(key))])})
        else:
            # The rows are in heir order (largest overlap first): the first kept the id.
            ordered = group.sort_values(
                ["overlap", "new_size", "new_first"], ascending=[False, False, True]
            )
            news = [str(labels[int(i)]) for i in ordered[other]]
            records.append(
                {"from": str(key), "into": [news[0], *sorted(news[1:], key=cluster_number)]}
            )
    key_of = (
        (lambda r: cluster_number(r["into"])) if merge else (lambda r: cluster_number(r["from"]))
    )
    return sorted(records, key=key_of)
