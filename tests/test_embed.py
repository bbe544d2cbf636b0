"""Graph embeddings: node2vec walks, skip-gram training, FastRP and subgraph selection."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import chisquare

pytest.importorskip("numba")

from linker.errors import SettingsError
from linker.graph.embed import (
    _alias_tables,
    _draw_negative,
    _epoch_rates,
    _gensim_end_rate,
    _output_gradient,
    _sigmoid_table,
    bipartite_adjacency,
    candidate_subgraph,
    embed,
    fastrp_embed,
    node2vec_embed,
    node2vec_walks,
    train_skipgram,
    write_walk_corpus,
)
from linker.settings import EmbedSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
BLOGCATALOG = Path("/work/shared/data/blogcatalog/blogcatalog.mat")


def _adjacency(graph: nx.Graph, weight: str | None = None) -> sp.csr_matrix:
    return sp.csr_matrix(nx.to_scipy_sparse_array(graph, nodelist=sorted(graph), weight=weight))


def _two_communities(size: int = 30, seed: int = 3) -> nx.Graph:
    graph = nx.planted_partition_graph(2, size, 0.5, 0.01, seed=seed)
    if not nx.is_connected(graph):
        graph.add_edge(0, size)
    return graph


def _separation(vectors: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = groups[:, None] == groups[None, :]
    off_diagonal = ~np.eye(len(groups), dtype=bool)
    return float(cosine[same & off_diagonal].mean()), float(cosine[~same].mean())


# --- walks -------------------------------------------------------------------------------


def test_walks_are_bit_identical_for_a_seed_and_differ_across_seeds() -> None:
    graph = _adjacency(nx.gnm_random_graph(200, 800, seed=1))
    first = node2vec_walks(graph, walks_per_node=3, walk_length=20, p=0.5, q=2.0, seed=11)
    again = node2vec_walks(graph, walks_per_node=3, walk_length=20, p=0.5, q=2.0, seed=11)
    other = node2vec_walks(graph, walks_per_node=3, walk_length=20, p=0.5, q=2.0, seed=12)
    assert first.dtype == np.int32 and first.shape == (600, 20)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_walks_do_not_depend_on_the_thread_count() -> None:
    import numba

    graph = _adjacency(nx.gnm_random_graph(300, 1500, seed=2))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = node2vec_walks(graph, walks_per_node=4, walk_length=30, p=0.25, q=4.0, seed=5)
        numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS))
        parallel = node2vec_walks(graph, walks_per_node=4, walk_length=30, p=0.25, q=4.0, seed=5)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(serial, parallel)


def test_walks_follow_edges_start_everywhere_and_stop_at_isolated_nodes() -> None:
    graph = nx.gnm_random_graph(50, 120, seed=4)
    graph.add_node(50)  # isolated
    adjacency = _adjacency(graph)
    walks = node2vec_walks(adjacency, walks_per_node=2, walk_length=15, p=2.0, q=0.5, seed=1)
    for round_ in range(2):
        starts = walks[round_ * 51 : (round_ + 1) * 51, 0]
        assert sorted(starts.tolist()) == list(range(51))
    for walk in walks:
        if walk[0] == 50:
            assert (walk[1:] == -1).all()
            continue
        assert (walk >= 0).all()
        for a, b in itertools.pairwise(walk):
            assert graph.has_edge(int(a), int(b))


def _transition_counts(walks: np.ndarray, prev: int, cur: int) -> Counter[int]:
    counts: Counter[int] = Counter()
    for walk in walks:
        for i in range(1, walk.shape[0] - 1):
            if walk[i - 1] == prev and walk[i] == cur and walk[i + 1] >= 0:
                counts[int(walk[i + 1])] += 1
    return counts


def _expected(graph: nx.Graph, prev: int, cur: int, p: float, q: float, weight: str | None):
    """node2vec's biased transition probabilities, from the paper's definition."""
    targets = sorted(graph.neighbors(cur))
    raw = []
    for x in targets:
        w = graph[cur][x].get(weight, 1.0) if weight else 1.0
        if x == prev:
            alpha = 1.0 / p
        elif graph.has_edge(prev, x):
            alpha = 1.0
        else:
            alpha = 1.0 / q
        raw.append(w * alpha)
    probs = np.array(raw) / sum(raw)
    return targets, probs


@pytest.mark.parametrize(
    ("p", "q", "weighted"), [(0.5, 2.0, False), (4.0, 0.25, False), (2.0, 0.5, True)]
)
def test_transition_frequencies_match_the_biased_probabilities(
    p: float, q: float, weighted: bool
) -> None:
    # Node 1's neighbours seen from 0: 0 itself (1/p), 2 and 3 (next to 0: 1), 4 and 5 (1/q).
    graph = nx.Graph()
    edges = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (1, 4), (1, 5), (4, 5), (2, 3), (5, 6), (3, 6)]
    rng = np.random.default_rng(0)
    for a, b in edges:
        graph.add_edge(a, b, weight=float(rng.integers(1, 5)) if weighted else 1.0)
    adjacency = _adjacency(graph, weight="weight")
    walks = node2vec_walks(
        adjacency, walks_per_node=3000, walk_length=12, p=p, q=q, weighted=weighted, seed=3
    )
    key = "weight" if weighted else None
    for prev, cur in [(0, 1), (4, 1), (1, 3), (6, 5)]:
        counts = _transition_counts(walks, prev, cur)
        targets, probs = _expected(graph, prev, cur, p, q, key)
        observed = np.array([counts.get(t, 0) for t in targets])
        assert set(counts) <= set(targets)
        assert observed.sum() > 2000
        result = chisquare(observed, probs * observed.sum())
        assert result.pvalue > 1e-4, (prev, cur, observed, probs)
        # The test has power: the unbiased (first-order) distribution is rejected.
        weights = np.array([graph[cur][t]["weight"] if weighted else 1.0 for t in targets])
        flat = weights / weights.sum()
        assert chisquare(observed, flat * observed.sum()).pvalue < 1e-6


def test_first_step_follows_edge_weights() -> None:
    graph = nx.star_graph(3)  # hub 0
    for leaf, weight in zip((1, 2, 3), (1.0, 2.0, 5.0), strict=True):
        graph[0][leaf]["weight"] = weight
    adjacency = _adjacency(graph, weight="weight")
    walks = node2vec_walks(adjacency, walks_per_node=20000, walk_length=2, weighted=True, seed=9)
    from_hub = walks[walks[:, 0] == 0, 1]
    observed = np.bincount(from_hub, minlength=4)[1:]
    expected = np.array([1.0, 2.0, 5.0]) / 8.0 * observed.sum()
    assert chisquare(observed, expected).pvalue > 1e-4
    unweighted = node2vec_walks(adjacency, walks_per_node=20000, walk_length=2, seed=9)
    flat = np.bincount(unweighted[unweighted[:, 0] == 0, 1], minlength=4)[1:]
    assert chisquare(flat, np.full(3, flat.sum() / 3)).pvalue > 1e-4


def test_walk_parameters_are_checked_all_at_once() -> None:
    graph = _adjacency(nx.path_graph(3))
    with pytest.raises(SettingsError) as info:
        node2vec_walks(graph, walks_per_node=0, p=0.0, q=-1.0)
    message = str(info.value)
    assert "walks_per_node" in message and "embed.p" in message and "embed.q" in message
    with pytest.raises(ValueError, match="square"):
        node2vec_walks(sp.csr_matrix((3, 4)))


# --- training ----------------------------------------------------------------------------


def test_walk_corpus_round_trips(tmp_path: Path) -> None:
    walks = np.array([[0, 12, 305, -1], [7, 7, 1000000, 3], [4, -1, -1, -1]], dtype=np.int32)
    path = tmp_path / "walks.txt"
    assert write_walk_corpus(walks, path) == 8
    assert path.read_text() == "0 12 305\n7 7 1000000 3\n4\n"


@pytest.mark.parametrize("trainer", ["numba", "gensim"])
def test_node2vec_separates_planted_communities_and_is_repeatable_with_one_worker(
    trainer: str,
) -> None:
    if trainer == "gensim":
        pytest.importorskip("gensim")
    graph = _two_communities()
    groups = np.array([graph.nodes[n]["block"] for n in sorted(graph)])
    adjacency = _adjacency(graph)
    params: dict[str, Any] = dict(
        dimensions=16,
        walks_per_node=10,
        walk_length=20,
        window=5,
        epochs=10,
        workers=1,
        trainer=trainer,
        seed=4,
    )
    vectors = node2vec_embed(adjacency, **params)
    assert vectors.dtype == np.float32 and vectors.shape == (60, 16)
    within, across = _separation(vectors, groups)
    assert within > across + 0.3
    assert np.array_equal(vectors, node2vec_embed(adjacency, **params))
    assert not np.array_equal(vectors, node2vec_embed(adjacency, **{**params, "seed": 5}))
    picked = node2vec_embed(adjacency, [5, 0], **params)
    assert np.array_equal(picked, vectors[[5, 0]])


def test_numba_trainer_on_two_threads_learns_the_same_structure() -> None:
    graph = _two_communities(seed=8)
    groups = np.array([graph.nodes[n]["block"] for n in sorted(graph)])
    vectors = node2vec_embed(
        _adjacency(graph), dimensions=16, walk_length=20, window=5, epochs=10, workers=2, seed=1
    )
    within, across = _separation(vectors, groups)
    assert within > across + 0.3


def test_negative_samples_follow_the_unigram_distribution_to_the_three_quarters() -> None:
    counts = np.array([1, 10, 100, 1000, 0, 50], dtype=np.float64)
    expected = counts**0.75 / (counts**0.75).sum()
    prob, alias = _alias_tables(np.array([0, len(counts)], dtype=np.int64), counts**0.75)
    state = np.uint64(12345)
    drawn = np.zeros(len(counts), dtype=np.int64)
    for _ in range(60_000):
        # np.uint64 each time: a state returned to Python comes back as a plain (signed) int.
        state, node = _draw_negative(prob, alias, np.uint64(state))
        drawn[node] += 1
    assert drawn[4] == 0  # a node in no walk is never a negative
    seen = expected > 0
    _, p_value = chisquare(drawn[seen], expected[seen] * drawn.sum())
    assert p_value > 1e-4
    _, p_uniform = chisquare(drawn[seen], np.full(seen.sum(), drawn.sum() / seen.sum()))
    assert p_uniform < 1e-6


def test_learning_rate_schedule_does_not_depend_on_the_gensim_worker_count() -> None:
    rates = _epoch_rates(0.025, 0.0001, 2)
    assert rates[0][0] == 0.025 and rates[-1][1] == pytest.approx(0.0001)
    assert rates[0][1] == pytest.approx(rates[1][0])
    for workers in (1, 2, 3, 8):
        for start, end in rates:
            given = _gensim_end_rate(start, end, workers)
            # gensim moves each worker 1/workers of the way from start to the rate given.
            assert start - (start - given) / workers == pytest.approx(end)


def test_unknown_trainer_is_a_settings_error() -> None:
    walks = np.array([[0, 1, 0]], dtype=np.int32)
    with pytest.raises(SettingsError, match="trainer"):
        train_skipgram(walks, 2, trainer="word2vec")  # type: ignore[arg-type]
    assert any("embed.trainer" in p for p in EmbedSettings(trainer="x").problems())  # type: ignore[arg-type]


def test_skipgram_leaves_nodes_without_walk_tokens_at_zero() -> None:
    walks = np.array([[0, 1, 0, 1], [1, 0, 1, 0]], dtype=np.int32)
    vectors = train_skipgram(walks, 3, dimensions=4, window=2, workers=1)
    assert vectors.shape == (3, 4)
    assert (vectors[2] == 0).all() and (vectors[:2] != 0).any()


def test_skipgram_gradient_follows_the_logistic_function_and_saturates_beyond_six() -> None:
    table = _sigmoid_table()
    alpha = np.float32(0.5)
    for f in np.linspace(-8.0, 8.0, 641):
        exact = 1.0 / (1.0 + np.exp(-f))
        for label in (np.float32(0.0), np.float32(1.0)):
            got = _output_gradient(np.float32(f), label, alpha, table)
            if abs(f) >= 6.0:  # word2vec: σ taken as exactly 0 or 1
                assert got == pytest.approx((float(label) - float(f > 0)) * 0.5, abs=1e-7)
            else:  # the table's step is 12/4096: σ' <= 1/4, so the error is <= 12/4096/4/2
                assert got == pytest.approx((float(label) - exact) * 0.5, abs=0.5 * 3.7e-4)


def _planted(communities: int, size: int, degree: float, mixing: float, seed: int) -> Any:
    """A planted-partition graph as numpy draws (the bench's generator, at test size)."""
    rng = np.random.default_rng(seed)
    n = communities * size
    m_in, m_out = int(n * degree * (1 - mixing) / 2), int(n * degree * mixing / 2)
    block = rng.integers(0, communities, m_in)
    a = block * size + rng.integers(0, size, m_in)
    b = block * size + (a % size + rng.integers(1, size, m_in)) % size
    c = rng.integers(0, n, m_out)
    d = ((c // size + rng.integers(1, communities, m_out)) % communities) * size
    d += rng.integers(0, size, m_out)
    rows, cols = np.concatenate([a, c, b, d]), np.concatenate([b, d, a, c])
    adjacency = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    adjacency.data[:] = 1.0
    return adjacency, np.arange(n) // size


def _nearest_centroid_accuracy(vectors: np.ndarray, labels: np.ndarray, seed: int) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    order = np.random.default_rng(seed).permutation(len(labels))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    centroids = np.stack([unit[train][labels[train] == k].mean(axis=0) for k in range(20)])
    predicted = np.argmax(unit[test] @ centroids.T, axis=1)
    return float((predicted == labels[test]).mean())


@pytest.mark.parametrize(("p", "q", "workers"), [(1.0, 1.0, 2), (1.0, 1.0, 1), (0.5, 2.0, 2)])
def test_node2vec_recovers_planted_communities_with_a_quarter_of_edges_across(
    p: float, q: float, workers: int
) -> None:
    # The bench's planted graph at 1/50 of its size: 20 communities of 100 nodes, degree 20,
    # a quarter of each node's edges to other communities; its shape (d=64, r=10, l=40,
    # window 5, one epoch). A random embedding would score 1/20 here.
    adjacency, labels = _planted(20, 100, 20.0, 0.25, seed=6)
    params: dict[str, Any] = dict(
        dimensions=64, walks_per_node=10, walk_length=40, window=5, epochs=1, p=p, q=q
    )
    vectors = node2vec_embed(adjacency, workers=workers, seed=2, **params)
    assert _nearest_centroid_accuracy(vectors, labels, seed=1) >= 0.95
    if workers == 1:
        assert np.array_equal(vectors, node2vec_embed(adjacency, workers=1, seed=2, **params))


# --- FastRP ------------------------------------------------------------------------------


def test_fastrp_is_deterministic_and_separates_planted_communities() -> None:
    graph = _two_communities()
    graph.add_node(60)  # isolated
    groups = np.array([graph.nodes[n].get("block", 2) for n in sorted(graph)])
    adjacency = _adjacency(graph)
    vectors = fastrp_embed(adjacency, dimensions=64, seed=2)
    assert vectors.dtype == np.float32 and vectors.shape == (61, 64)
    assert np.array_equal(vectors, fastrp_embed(adjacency, dimensions=64, seed=2))
    assert not np.array_equal(vectors, fastrp_embed(adjacency, dimensions=64, seed=3))
    assert (vectors[60] == 0).all()
    within, across = _separation(vectors[:60], groups[:60])
    assert within > across + 0.3


def test_fastrp_one_step_is_the_normalised_neighbour_mean() -> None:
    graph = nx.path_graph(4)
    adjacency = _adjacency(graph)
    base = fastrp_embed(adjacency, dimensions=32, iteration_weights=(0.0,), self_influence=1.0)
    one = fastrp_embed(adjacency, dimensions=32, iteration_weights=(1.0,))
    mean = (base[0] + base[2]) / 2  # node 1's neighbours
    assert np.allclose(one[1], mean / np.linalg.norm(mean), atol=1e-6)
    assert np.allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-6)
    values = np.unique(np.abs(base[base != 0]))
    assert np.allclose(values, np.sqrt(3.0))


# --- graph and subgraph ------------------------------------------------------------------


def test_bipartite_adjacency_links_accounts_to_their_identifiers() -> None:
    incidence = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 1]]))
    adjacency = bipartite_adjacency(incidence, identifier_weights=np.array([1.0, 2.0, 0.5]))
    assert adjacency.shape == (5, 5)
    assert (adjacency != adjacency.T).nnz == 0
    dense = adjacency.toarray()
    assert dense[0, 2] == 1.0 and dense[0, 4] == 0.5 and dense[1, 3] == 2.0
    assert dense[:2, :2].sum() == 0 and dense[2:, 2:].sum() == 0
    with pytest.raises(ValueError, match="identifier_weights"):
        bipartite_adjacency(incidence, identifier_weights=np.ones(2))


def test_candidate_subgraph_walks_out_k_hops_around_super_nodes() -> None:
    # Accounts 0..5, identifiers 6..9 (node index 6 + j). Identifier 9 is a super-node.
    incidence = np.zeros((6, 4))
    incidence[[0, 1], 0] = 1  # 0 - id0 - 1
    incidence[[1, 2], 1] = 1  # 1 - id1 - 2
    incidence[[2, 3], 2] = 1  # 2 - id2 - 3
    incidence[:, 3] = 1  # everyone - id3 (super-node)
    adjacency = bipartite_adjacency(sp.csr_matrix(incidence))
    seeds = np.zeros(10, dtype=bool)
    seeds[0] = True
    exclude = np.zeros(10, dtype=bool)
    exclude[9] = True
    near = candidate_subgraph(adjacency, seeds, hops=2, exclude=exclude, whole_graph_max_nodes=0)
    assert near.tolist() == [0, 1, 6]
    far = candidate_subgraph(adjacency, seeds, hops=4, exclude=exclude, whole_graph_max_nodes=0)
    assert far.tolist() == [0, 1, 2, 6, 7]
    through_hub = candidate_subgraph(adjacency, seeds, hops=2, whole_graph_max_nodes=0)
    assert through_hub.tolist() == [0, 1, 2, 3, 4, 5, 6, 9]
    whole = candidate_subgraph(adjacency, seeds, hops=2, exclude=exclude)
    assert whole.tolist() == list(range(9))
    sub = adjacency[far][:, far]
    assert embed(sub, settings=EmbedSettings(method="fastrp", dimensions=8)).shape == (5, 8)


def test_embed_settings_load_from_toml_and_collect_problems(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[embed]\nmethod = "fastrp"\np = 0.25\nfastrp_weights = [0.0, 1.0]\n')
    settings = load_settings(path)
    assert settings.embed.method == "fastrp" and settings.embed.p == 0.25
    assert settings.embed.fastrp_weights == (0.0, 1.0)
    with pytest.raises(SettingsError) as info:
        load_settings(overrides={"embed.dimensions": 0, "embed.q": -1.0, "embed.method": "x"})
    message = str(info.value)
    assert "embed.method" in message
    bad = EmbedSettings(dimensions=0, q=-1.0)
    assert len(bad.problems()) == 2
    with pytest.raises(SettingsError):
        embed(_adjacency(nx.path_graph(3)), settings=bad)


# --- the published table (slow) ------------------------------------------------------------


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_embed", ROOT / "bench" / "embed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_embed"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_blogcatalog_node2vec_reaches_the_published_macro_f1() -> None:
    pytest.importorskip("sklearn")
    if not BLOGCATALOG.exists():
        pytest.skip(f"{BLOGCATALOG} is not available")
    bench = _bench_module()
    adjacency, labels = bench.load_blogcatalog(BLOGCATALOG)
    p, q = bench.choose_pq(adjacency, labels, seed=0)
    # One training thread: the vectors, and so this figure, are the same on every run.
    vectors = node2vec_embed(adjacency, p=p, q=q, workers=1, seed=0)
    macro, micro = bench.macro_micro_f1(vectors, labels, splits=5, seed=1)
    assert macro >= 0.25, (p, q, macro, micro)
    fastrp = fastrp_embed(adjacency, **bench.FASTRP_BLOGCATALOG)
    fastrp_macro, _ = bench.macro_micro_f1(fastrp, labels, splits=5, seed=1)
    assert fastrp_macro > 0.15  # far above chance (about 0.03), below node2vec
