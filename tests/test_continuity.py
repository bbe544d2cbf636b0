"""Majority remapping of cluster ids (linker.graph.continuity): gains, splits, merges, ties,
fresh ids and determinism, on hand-built memberships."""

from __future__ import annotations

import numpy as np
import pytest

from linker.graph.continuity import carry_cluster_ids, cluster_number, format_cluster_id


def _members(groups: dict[int, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Accounts and their new cluster index from ``{index: [accounts]}`` (index -1: none)."""
    accounts = [a for members in groups.values() for a in members]
    clusters = [c for c, members in groups.items() for _ in members]
    return np.array(accounts, dtype=object), np.array(clusters, dtype=np.int64)


def _previous(groups: dict[str | None, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    accounts = [a for members in groups.values() for a in members]
    ids = [c for c, members in groups.items() for _ in members]
    return np.array(accounts, dtype=object), np.array(ids, dtype=object)


def _ids(groups: dict[int, list[str]], previous: dict[str | None, list[str]], **kw: object):
    accounts, clusters = _members(groups)
    before_accounts, before_ids = _previous(previous)
    return carry_cluster_ids(accounts, clusters, before_accounts, before_ids, **kw)  # type: ignore[arg-type]


def test_unchanged_and_growing_clusters_keep_their_ids() -> None:
    carried = _ids(
        {0: ["a", "b", "c", "n1", "n2", "n3", "n4"], 1: ["d", "e"]},
        {"C-0002": ["a", "b", "c"], "C-0001": ["d", "e"], None: ["x"]},
        highest=2,
    )
    # Cluster 0 gained more new accounts than it kept: only carried-over members count.
    assert carried.labels.tolist() == ["C-0002", "C-0001"]
    assert (carried.kept, carried.fresh, carried.highest) == (2, 0, 2)
    assert carried.merges == [] and carried.splits == [] and carried.retired == []


def test_a_split_gives_the_largest_part_the_old_id_and_the_rest_fresh_ids() -> None:
    carried = _ids(
        {0: ["a", "b"], 1: ["c", "d", "e"], 2: ["f"]},
        {"C-0007": ["a", "b", "c", "d", "e", "f"]},
        highest=9,
    )
    assert carried.labels[1] == "C-0007"
    # Fresh ids continue after the highest id ever used, in the given order (by index).
    assert carried.labels[0] == "C-0010" and carried.labels[2] == "C-0011"
    assert carried.splits == [{"from": "C-0007", "into": ["C-0007", "C-0010", "C-0011"]}]
    assert carried.highest == 11


def test_a_split_into_equal_parts_goes_to_the_larger_new_cluster_then_the_smallest_account() -> (
    None
):
    bigger = _ids({0: ["a", "b"], 1: ["c", "d", "z"]}, {"C-0003": ["a", "b", "c", "d"]})
    assert bigger.labels.tolist() == ["C-0004", "C-0003"], "z (new) makes cluster 1 larger"
    equal = _ids({0: ["c", "d"], 1: ["a", "b"]}, {"C-0003": ["a", "b", "c", "d"]})
    assert equal.labels.tolist() == ["C-0004", "C-0003"], "cluster 1 holds the smallest id"


def test_a_merge_keeps_the_id_of_the_cluster_it_took_most_members_from() -> None:
    carried = _ids(
        {0: ["a", "b", "c", "d", "e"]}, {"C-0005": ["a", "b"], "C-0002": ["c", "d", "e"]}
    )
    assert carried.labels.tolist() == ["C-0002"]
    assert carried.merges == [{"from": ["C-0002", "C-0005"], "into": "C-0002"}]
    assert carried.retired == ["C-0005"]


def test_merge_ties_go_to_the_larger_previous_cluster_then_the_smaller_id() -> None:
    # Two members from each; C-0009 was larger in the previous run.
    larger = _ids(
        {0: ["a", "b", "c", "d"], 1: ["e"]},
        {"C-0002": ["a", "b"], "C-0009": ["c", "d", "e"]},
    )
    assert larger.labels[0] == "C-0009"
    same = _ids({0: ["a", "b", "c", "d"]}, {"C-0009": ["c", "d"], "C-0002": ["a", "b"]})
    assert same.labels.tolist() == ["C-0002"]


def test_a_cluster_mostly_from_a_split_part_does_not_take_a_minority_source_id() -> None:
    # Cluster 0 is 3 of B plus 1 of A; cluster 1 holds 4 of B. Cluster 0 is a split part of
    # B (fresh id); A's id is not handed to it through its one member.
    carried = _ids(
        {0: ["b1", "b2", "b3", "a1"], 1: ["b4", "b5", "b6", "b7"]},
        {"C-0001": ["a1", "a2"], "C-0002": ["b1", "b2", "b3", "b4", "b5", "b6", "b7"]},
    )
    assert carried.labels.tolist() == ["C-0003", "C-0002"]
    assert carried.retired == ["C-0001"]


def test_fresh_ids_never_reuse_a_retired_id_and_follow_the_order() -> None:
    carried = _ids(
        {0: ["n1", "n2"], 1: ["n3", "n4"], 2: ["a", "b"]},
        {"C-0004": ["a", "b"], "C-0012": ["gone1", "gone2"]},
        highest=20,
        order=np.array([1, 2, 0]),
    )
    assert carried.labels.tolist() == ["C-0022", "C-0021", "C-0004"]
    assert carried.retired == ["C-0012"]
    assert carried.highest == 22


def test_without_a_previous_run_every_cluster_is_fresh_and_width_follows_the_ids() -> None:
    carried = _ids({0: ["a"], 1: ["b"]}, {}, highest=0)
    assert carried.labels.tolist() == ["C-0001", "C-0002"]
    wide = _ids({0: ["a"], 1: ["z"]}, {"C-00042": ["a"]})
    assert wide.labels.tolist() == ["C-00042", "C-00043"]


def test_the_result_does_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(5)
    accounts = np.array([f"a{i:03d}" for i in range(300)], dtype=object)
    clusters = rng.integers(-1, 12, size=300)
    before = np.array([f"C-{c:04d}" if c else None for c in rng.integers(0, 15, 300)], dtype=object)
    first = carry_cluster_ids(accounts, clusters, accounts, before, n_clusters=12, highest=30)
    p, q = rng.permutation(300), rng.permutation(300)
    second = carry_cluster_ids(
        accounts[p], clusters[p], accounts[q], before[q], n_clusters=12, highest=30
    )
    assert first.labels.tolist() == second.labels.tolist()
    assert first.merges == second.merges and first.splits == second.splits
    assert len(set(first.labels.tolist())) == 12, "ids are unique"


def test_malformed_previous_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="not a cluster id"):
        _ids({0: ["a"]}, {"cluster-1": ["a"]})
    assert cluster_number(format_cluster_id(7)) == 7
