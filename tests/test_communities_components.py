"""Leiden per connected component (issue 16): the same objective as on the whole graph, and
the components whose best partition is known settled without Leiden."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import igraph as ig
import numpy as np
import pandas as pd
import pytest

import linker.graph.communities as communities
from linker.evaluate import adjusted_rand_index
from linker.graph.communities import (
    partition_components,
    partition_graph,
    settled_components,
)


def clique(nodes: range, weight: float = 1.0) -> list[tuple[int, int, float]]:
    return [(a, b, weight) for a, b in itertools.combinations(nodes, 2)]


def as_arrays(edges: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.array([(a, b) for a, b, _ in edges], dtype=np.int64)
    return pairs, np.array([w for _, _, w in edges], dtype=np.float64)


def modularity(
    n: int, edges: np.ndarray, weights: np.ndarray, membership: np.ndarray, resolution: float
) -> float:
    """igraph's modularity of ``membership`` on the whole graph (lonely nodes alone)."""
    member = membership.copy()
    free = member < 0
    member[free] = member.max() + 1 + np.arange(int(free.sum()))
    graph = ig.Graph(n=n, edges=edges.tolist())
    return float(graph.modularity(member.tolist(), weights=weights.tolist(), resolution=resolution))


def planted_components(
    n_components: int, blocks: int, block_size: int, rng: np.random.Generator
) -> tuple[int, list[tuple[int, int, float]], np.ndarray]:
    """Disjoint components, each of ``blocks`` dense blocks joined by a few light edges."""
    edges: list[tuple[int, int, float]] = []
    node = 0
    for _ in range(n_components):
        starts = []
        for _ in range(blocks):
            members = range(node, node + block_size)
            edges += [
                (a, b, 1.0 + rng.random()) for a, b, _ in clique(members) if rng.random() < 0.8
            ]
            starts.append(node)
            node += block_size
        for left, right in itertools.pairwise(starts):
            edges.append((left, right, 0.5))
            edges.append((left + 1, right + 2, 0.5))
    return node, edges, np.arange(node) // block_size


def test_per_component_leiden_matches_the_whole_graph_run_on_planted_communities() -> None:
    rng = np.random.default_rng(3)
    n, edge_list, planted = planted_components(6, 3, 12, rng)
    edges, weights = as_arrays(edge_list)
    for resolution in (0.25, 1.0):
        whole = partition_graph(n, edges, weights, resolution=resolution, seed=5)
        split = partition_components(n, edges, weights, resolution=resolution, seed=5)
        q_whole = modularity(n, edges, weights, whole, resolution)
        q_split = modularity(n, edges, weights, split, resolution)
        assert q_split >= q_whole - 1e-9
        if resolution == 1.0:
            # At resolution 1 the planted blocks are the communities, and both runs find them.
            assert adjusted_rand_index(pd.Series(planted), pd.Series(split)) == 1.0
            assert adjusted_rand_index(pd.Series(planted), pd.Series(whole)) == 1.0
        # The same seed gives the same partition; a community never spans two components.
        assert np.array_equal(
            split, partition_components(n, edges, weights, resolution=resolution, seed=5)
        )
        component = np.arange(n) // 36
        for label in np.unique(split):
            assert len(np.unique(component[split == label])) == 1


def test_the_resolution_of_a_component_run_is_scaled_to_the_whole_graph() -> None:
    # Two 5-cliques joined by three edges (one component), a light pendant that keeps the
    # bound from settling it, and a large clique elsewhere. Against the whole graph's total
    # weight the two cliques belong together; against the component's own they would split.
    edge_list = clique(range(0, 5)) + clique(range(5, 10))
    edge_list += [(0, 5, 1.0), (1, 6, 1.0), (2, 7, 1.0), (9, 10, 0.05)]
    edge_list += clique(range(11, 41))
    edges, weights = as_arrays(edge_list)
    n = 41
    inside = edges[:, 0] <= 10
    alone = partition_graph(11, edges[inside], weights[inside], resolution=1.0, seed=1)
    assert alone[0] != alone[5]  # run alone, unscaled: the cliques split
    whole = partition_graph(n, edges, weights, resolution=1.0, seed=1)
    split = partition_components(n, edges, weights, resolution=1.0, seed=1)
    assert whole[0] == whole[5]
    assert split[0] == split[5] == split[9]
    assert len(np.unique(split[11:])) == 1 and split[11] != split[0]
    assert modularity(n, edges, weights, split, 1.0) >= modularity(n, edges, weights, whole, 1.0)


def set_partitions(items: list[int]) -> Iterator[list[list[int]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]
        yield [[first], *part]


def best_partitions(
    n: int, edges: np.ndarray, weights: np.ndarray, total: float, resolution: float
) -> tuple[float, list[list[list[int]]]]:
    """Every partition of the nodes with the highest modularity (unnormalised), by brute
    force; ``total`` is the strength of the whole graph the component sits in."""
    strength = np.bincount(edges.ravel(), weights=np.r_[weights, weights], minlength=n)
    scored = []
    for part in set_partitions(list(range(n))):
        label = np.empty(n, dtype=np.int64)
        for i, block in enumerate(part):
            label[block] = i
        same = label[edges[:, 0]] == label[edges[:, 1]]
        k = np.bincount(label, weights=strength)
        scored.append((2 * weights[same].sum() - resolution * (k**2).sum() / total, part))
    best = max(q for q, _ in scored)
    return best, [p for q, p in scored if q >= best - 1e-12]


def random_connected(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random connected graph on ``n`` nodes: a random tree plus random extra edges."""
    pairs = {(int(rng.integers(0, i)), i) for i in range(1, n)}
    for a, b in itertools.combinations(range(n), 2):
        if rng.random() < 0.3:
            pairs.add((a, b))
    edges = np.array(sorted(pairs), dtype=np.int64)
    return edges, rng.choice([0.2, 1.0, 3.0], size=len(edges))


def test_a_settled_component_has_that_partition_as_its_best_one() -> None:
    rng = np.random.default_rng(11)
    checked = {1: 0, 0: 0}
    for _ in range(150):
        n = int(rng.integers(2, 7))
        edges, weights = random_connected(n, rng)
        k = 2.0 * weights.sum()
        total = k * float(rng.choice([1.0, 1.5, 3.0, 20.0]))
        resolution = float(rng.choice([0.25, 1.0, 4.0]))
        state = int(
            settled_components(
                np.array([k]),
                np.array([weights.min()]),
                np.array([len(edges)]),
                total,
                resolution,
            )[0]
        )
        if state < 0:
            continue
        checked[state] += 1
        _, best = best_partitions(n, edges, weights, total, resolution)
        if state == 1:
            assert best == [[list(range(n))]]  # the whole component, and nothing else
        else:
            assert n == 2 and [[0], [1]] in best
    assert checked[1] > 20 and checked[0] > 0


def test_tiny_components_are_settled_without_calling_leiden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_leiden(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("Leiden was called")

    monkeypatch.setattr(communities, "_leiden", no_leiden)
    # Pairs, a triangle, a star, a path (one component each) and node 30 with no edge.
    edge_list = [(0, 1, 1.0), (2, 3, 2.5), (4, 5, 0.3)]
    edge_list += [*clique(range(6, 9)), (10, 11, 1.0), (10, 12, 1.0), (10, 13, 0.5)]
    edge_list += [(14, 15, 1.0), (15, 16, 1.0), (16, 17, 1.0)]
    for i in range(18, 30, 2):
        edge_list.append((i, i + 1, 1.0))
    edges, weights = as_arrays(edge_list)
    membership = partition_components(31, edges, weights, resolution=1.0, seed=0)
    expected = [0, 0, 1, 1, 2, 2, 3, 3, 3, -1, 4, 4, 4, 4, 5, 5, 5, 5]
    expected += [6 + (i - 18) // 2 for i in range(18, 30)] + [-1]
    assert membership.tolist() == expected
    # A pair that carries most of a graph's weight at a high resolution is best apart.
    heavy = partition_components(
        4, np.array([[0, 1], [2, 3]]), np.array([10.0, 0.5]), resolution=3.0, seed=0
    )
    assert heavy.tolist() == [0, 1, 2, 2]


def test_large_components_still_go_through_leiden(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = communities._leiden

    def counting(n_nodes: int, *args: object, **kwargs: object) -> np.ndarray:
        calls.append(n_nodes)
        return real(n_nodes, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(communities, "_leiden", counting)
    rng = np.random.default_rng(3)
    n, edge_list, _ = planted_components(2, 3, 12, rng)
    edge_list += [(n, n + 1, 1.0), (n + 2, n + 3, 1.0)]
    edges, weights = as_arrays(edge_list)
    membership = partition_components(n + 4, edges, weights, resolution=1.0, seed=0)
    assert sorted(calls) == [36, 36]  # the two planted components, not the pairs
    assert membership[n] == membership[n + 1] != membership[n + 2]
