"""Graph embeddings side by side: our node2vec and FastRP against the node2vec package and pecanpy.

Three graphs, each in one run of this script:

* **BlogCatalog** (``/work/shared/data/blogcatalog``; 10,312 nodes, 333,983 edges). Quality is
  the published protocol of node2vec's Table 2: 50% of nodes labelled, one-vs-rest logistic
  regression (liblinear), each test node given its top-k labels (k = its true label count),
  Macro-F1 and Micro-F1 averaged over ``--splits`` random splits. d=128, r=10, l=80, k=10,
  ``--epochs`` (default 2) skip-gram epochs for the peers and ``--our-epochs`` (default 3, our
  trainer's default) for ours, 5 negatives for every node2vec implementation;
  p and q are picked by a small grid with our implementation on a selection split whose seed
  no evaluation split uses, then every implementation gets the same p and q.
* **A synthetic account world** (``linker.synth.generate_world``, default 100,000 accounts):
  the account–identifier graph of the validated tables, with super-node identifiers (the
  engine's per-kind thresholds) and identifiers held by one account left out. Quality is
  ring recovery: the adjusted Rand index of KMeans (k = number of rings) on the ring
  accounts' vectors against their ``ring_id``, and the share of each ring account's 10
  nearest accounts (cosine, among all accounts) that belong to its ring.
* **A planted partition** (issue 16, ``--dataset planted``): 100 communities of 1,000 nodes,
  about 1M edges, a quarter of each node's edges to other communities
  (:func:`planted_partition`, seeded by ``--seed``). d=64, r=10, l=40, window 5, p = q = 1,
  one epoch for every implementation. Quality: Macro-F1 of a logistic regression on the
  planted labels, half the nodes labelled. pecanpy also runs ``FirstOrderUnweighted``, its
  mode for p = q = 1.

Every method runs ``--repeats`` times (seeds ``seed``, ``seed + 1``, ...; the ``node2vec``
package once), each time in a fresh child process (``--worker``), given the graph as CSR arrays: its
wall time covers everything from the CSR graph in memory to the ``(n, d)`` matrix (graph
conversion, JIT compilation, walks, training), its CPU seconds are the child's (all threads),
its peak RSS is the child's ``VmHWM``, and the 1-minute load average at its end is recorded
beside it (the machine is shared). The result JSON is written after every method.
The ``node2vec`` package precomputes O(Σ deg²) transition tables in Python; before it runs,
its precomputation time is estimated from a sample of 100 nodes, and it is skipped (and
reported so) when that estimate plus a lower bound of its walk time exceeds
``--reference-budget`` seconds, except on
BlogCatalog, the graph the speed target names.

Usage::

    python bench/embed.py                              # the docs/embeddings.md tables
    python bench/embed.py --dataset blogcatalog --p 0.25 --q 0.25
    python bench/embed.py --dataset accounts --accounts 100000
    python bench/embed.py --dataset planted --repeats 1      # issue 16: 100k nodes, 1M edges
    python bench/embed.py --markdown bench/results/embed-planted-100000.json   # its table
    python bench/embed.py --fastrp-world 1000000       # FastRP on a 1M-account world
    python bench/embed.py --fastrp-world 1000000 --run-dir RUN_DIR   # ... of an existing run

Needs the ``embed`` and ``embed-bench`` extras (numba and gensim; scikit-learn, pecanpy and the
``node2vec`` package): ``.venv/bin/pip install -c constraints.txt -e '.[embed,embed-bench]'``.
The bench checks them before any work and names the missing ones.

Results are printed as Markdown and saved under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.io
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
BLOGCATALOG = Path("/work/shared/data/blogcatalog/blogcatalog.mat")


class Shape(NamedTuple):
    """The walk and skip-gram shape every node2vec implementation gets on one graph."""

    dimensions: int  # d
    walks_per_node: int  # r
    walk_length: int  # l
    window: int  # k

    def flag(self) -> str:
        return ",".join(str(v) for v in self)


# The published setting (node2vec, Table 2) and the skip-gram knobs every method shares.
D, R, L, K = 128, 10, 80, 10
SHAPE = Shape(D, R, L, K)
# Issue 16's planted-partition setting.
PLANTED_SHAPE = Shape(64, 10, 40, 5)
NEGATIVE, WORKERS = 5, 2
EPOCHS = 2  # skip-gram passes of the peers and of ours-walks+gensim (``--epochs``)
OUR_EPOCHS = 3  # skip-gram passes of ours-node2vec (``--our-epochs``), its default
# The planted-partition graph of issue 16: 100 equal communities, 100k nodes, ~1M edges, a
# quarter of each node's edges leaving its community; d=64, r=10, l=40, window 5.
PLANTED_NODES, PLANTED_COMMUNITIES, PLANTED_MEAN_DEGREE, PLANTED_MIXING = 100_000, 100, 20.0, 0.25
PQ_GRID = [(0.25, 0.25), (0.25, 4.0), (1.0, 1.0), (4.0, 0.25), (4.0, 4.0)]
SELECTION_SEED = 1000  # the p, q selection split; evaluation splits use seeds 1, 2, ...

# FastRP on BlogCatalog: 1- to 3-hop terms, hubs damped (the best of weights {(0,1,1),
# (0,0,1,1), (0,1,1,1), (1,1,1)} x normalisation strength {0, -0.5, -1} on the selection split).
FASTRP_BLOGCATALOG: dict[str, Any] = {
    "dimensions": D,
    "iteration_weights": (1.0, 1.0, 1.0),
    "normalization_strength": -0.5,
}
FASTRP_ACCOUNTS: dict[str, Any] = {
    "dimensions": D,
    "iteration_weights": (1.0, 1.0, 1.0, 1.0),
    "normalization_strength": -0.5,
}

METHODS = [
    "ours-node2vec",
    "ours-walks+gensim",
    "ours-fastrp",
    "pecanpy-SparseOTF",
    "pecanpy-PreComp",
    "pecanpy-FirstOrderUnweighted",
    "node2vec-pypi",
]


# --- data ----------------------------------------------------------------------------------


def load_blogcatalog(path: Path = BLOGCATALOG) -> tuple[sp.csr_matrix, np.ndarray]:
    """BlogCatalog's symmetric adjacency and its (n, 39) 0/1 label matrix."""
    mat = scipy.io.loadmat(path)
    adjacency = sp.csr_matrix(mat["network"], dtype=np.float64)
    adjacency.data[:] = 1.0
    labels = sp.csr_matrix(mat["group"]).toarray().astype(np.int8)
    return adjacency, labels


def planted_partition(
    nodes: int = PLANTED_NODES,
    communities: int = PLANTED_COMMUNITIES,
    mean_degree: float = PLANTED_MEAN_DEGREE,
    mixing: float = PLANTED_MIXING,
    seed: int = 0,
) -> tuple[sp.csr_matrix, np.ndarray, dict[str, float]]:
    """A planted-partition graph: its symmetric adjacency, each node's community, its parameters.

    ``communities`` equal communities (node ``i`` is in community ``i // size``); each of the
    ``C(size, 2)`` pairs inside a community is an edge with probability ``p_in`` and each pair
    across communities with probability ``p_out``, chosen so that a node has ``mean_degree``
    neighbours on average, a share ``mixing`` of them outside its community. The edge counts
    inside and across are drawn from their binomials, the endpoints uniformly; the few
    duplicate pairs (about 0.5% of the edges here) are merged. A pure function of its arguments.
    """
    rng = np.random.default_rng(seed)
    size = nodes // communities
    nodes = size * communities
    pairs_in = communities * size * (size - 1) / 2
    pairs_out = nodes * (nodes - size) / 2
    p_in = mean_degree * (1.0 - mixing) * nodes / 2 / pairs_in
    p_out = mean_degree * mixing * nodes / 2 / pairs_out
    m_in = int(rng.binomial(int(pairs_in), p_in))
    m_out = int(rng.binomial(int(pairs_out), p_out))
    block = rng.integers(0, communities, m_in)
    a = block * size + rng.integers(0, size, m_in)
    b = block * size + (a % size + rng.integers(1, size, m_in)) % size
    c = rng.integers(0, nodes, m_out)
    other = (c // size + rng.integers(1, communities, m_out)) % communities
    d = other * size + rng.integers(0, size, m_out)
    rows = np.concatenate([a, c, b, d])
    cols = np.concatenate([b, d, a, c])
    adjacency = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(nodes, nodes))
    adjacency.data[:] = 1.0  # merged duplicates
    adjacency.sort_indices()
    labels = np.arange(nodes) // size
    src = np.repeat(np.arange(nodes), np.diff(adjacency.indptr))
    across = float((labels[src] != labels[adjacency.indices]).mean())
    return adjacency, labels, {"p_in": p_in, "p_out": p_out, "mixing_measured": across}


def linking_graph(account_ids: Any, observations: Any) -> tuple[Any, sp.csr_matrix]:
    """The bipartite graph without super-nodes and single-account identifiers."""
    from linker.graph.bipartite import build_bipartite
    from linker.graph.embed import bipartite_adjacency
    from linker.graph.weights import supernode_thresholds
    from linker.settings import LinkSettings

    bipartite = build_bipartite(account_ids, observations)
    limit = supernode_thresholds(bipartite.kinds, LinkSettings())
    linking = (bipartite.n_accounts >= 2) & (bipartite.n_accounts <= limit)
    return bipartite, bipartite_adjacency(bipartite.matrix[:, np.flatnonzero(linking)])


def account_graph(
    accounts: int, seed: int, work: Path, events_per_account: float = 20.0
) -> tuple[sp.csr_matrix, np.ndarray, int]:
    """The account–identifier graph of a synthetic world, ring labels of its account rows.

    Returns the adjacency (accounts first), each account's ring (-1 = benign) and the number
    of accounts.
    """
    import pandas as pd

    from linker.io.validate import validate_dataset
    from linker.observations import build_observations
    from linker.synth import generate_world

    world = work / f"world-{accounts}-s{seed}-e{events_per_account:g}"
    if not (world / ".complete").exists():
        generate_world(accounts, seed, world, fmt="parquet", events_per_account=events_per_account)
        (world / ".complete").write_text("ok\n")
    tables = validate_dataset(world).tables
    observations = build_observations(tables)
    bipartite, adjacency = linking_graph(tables["accounts"]["account_id"], observations)
    labels = pd.read_parquet(world / "labels.parquet")
    ring = labels.set_index("account_id")["ring_id"].reindex(bipartite.account_ids)
    codes, _ = pd.factorize(ring.fillna("").replace("", pd.NA))
    return adjacency, np.asarray(codes, dtype=np.int64), len(bipartite.account_ids)


# --- quality -------------------------------------------------------------------------------


def macro_micro_f1(
    vectors: np.ndarray, labels: np.ndarray, *, splits: int = 5, seed: int = 1
) -> tuple[float, float]:
    """Mean (Macro-F1, Micro-F1) of the node2vec/DeepWalk multi-label protocol, 50% labelled."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier

    scores = []
    for split in range(splits):
        order = np.random.default_rng(seed + split).permutation(len(vectors))
        train, test = order[: len(order) // 2], order[len(order) // 2 :]
        model = OneVsRestClassifier(LogisticRegression(solver="liblinear"))
        model.fit(vectors[train], labels[train])
        proba = model.predict_proba(vectors[test])
        top = np.argsort(-proba, axis=1)
        predicted = np.zeros_like(labels[test])
        for row, k in enumerate(labels[test].sum(axis=1)):
            predicted[row, top[row, :k]] = 1
        scores.append(
            (
                f1_score(labels[test], predicted, average="macro", zero_division=0),
                f1_score(labels[test], predicted, average="micro", zero_division=0),
            )
        )
    macro, micro = np.mean(scores, axis=0)
    return float(macro), float(micro)


def planted_macro_f1(vectors: np.ndarray, labels: np.ndarray, *, seed: int = 1) -> float:
    """Macro-F1 of a logistic regression on the planted labels, half the nodes labelled.

    Multinomial logistic regression (lbfgs) on the unit-normalised vectors of a random half of
    the nodes, scored on the other half (one split: with 50,000 test nodes its spread is far
    below the differences that matter).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    order = np.random.default_rng(seed).permutation(len(vectors))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    model = LogisticRegression(max_iter=500)
    model.fit(unit[train], labels[train])
    return float(f1_score(labels[test], model.predict(unit[test]), average="macro"))


def choose_pq(
    adjacency: sp.csr_matrix, labels: np.ndarray, *, seed: int = 0, epochs: int = OUR_EPOCHS
) -> tuple[float, float]:
    """The (p, q) of :data:`PQ_GRID` with the best Macro-F1 on the selection split."""
    from linker.graph.embed import node2vec_embed

    best: tuple[float, float, float] | None = None
    for p, q in PQ_GRID:
        vectors = node2vec_embed(adjacency, p=p, q=q, epochs=epochs, workers=WORKERS, seed=seed)
        macro, _ = macro_micro_f1(vectors, labels, splits=1, seed=SELECTION_SEED)
        print(f"  grid p={p:g} q={q:g}: Macro-F1 {macro:.4f}", file=sys.stderr, flush=True)
        if best is None or macro > best[2]:
            best = (p, q, macro)
    assert best is not None
    return best[0], best[1]


def ring_recovery(vectors: np.ndarray, rings: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(ARI of KMeans on ring accounts, mean same-ring share of their 10 nearest accounts)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    members = np.flatnonzero(rings >= 0)
    n_rings = len(np.unique(rings[members]))
    found = KMeans(n_clusters=n_rings, n_init=4, random_state=seed).fit_predict(unit[members])
    ari = adjusted_rand_score(rings[members], found)
    shares = []
    for chunk in np.array_split(members, max(1, len(members) // 512)):
        similarity = unit[chunk] @ unit.T
        similarity[np.arange(len(chunk)), chunk] = -np.inf
        nearest = np.argpartition(-similarity, 10, axis=1)[:, :10]
        shares.append((rings[nearest] == rings[chunk][:, None]).mean(axis=1))
    return float(ari), float(np.concatenate(shares).mean())


# --- the reference package's cost estimate ------------------------------------------------


def estimate_reference_seconds(
    adjacency: sp.csr_matrix, shape: Shape = SHAPE, sample: int = 100
) -> dict[str, float]:
    """A lower bound of the node2vec package's run time, from samples.

    ``precompute``: its O(Σ deg²) transition tables, timed on 100 sampled source nodes and
    scaled by Σ deg². ``walks``: ``n·r·l`` steps at the cost of one ``numpy.random.choice`` over
    a mean-degree neighbourhood (each step of its walks makes exactly one such call, plus
    dictionary look-ups). Skip-gram training is left out, so the true time is higher.
    """
    from collections import defaultdict

    import networkx as nx
    from node2vec import Node2Vec

    graph = nx.from_scipy_sparse_array(adjacency)
    degree = np.diff(adjacency.indptr).astype(np.float64)
    rng = np.random.default_rng(0)
    nodes = rng.choice(adjacency.shape[0], min(sample, adjacency.shape[0]), replace=False)
    work = sum(
        float(degree[adjacency.indices[adjacency.indptr[s] : adjacency.indptr[s + 1]]].sum())
        for s in nodes
    )

    class _Sampled:
        def nodes(self) -> list[int]:
            return nodes.tolist()

        def neighbors(self, node: int) -> Any:
            return graph.neighbors(node)

        def __getitem__(self, node: int) -> Any:
            return graph[node]

    probe = Node2Vec.__new__(Node2Vec)
    probe.graph, probe.p, probe.q, probe.weight_key = _Sampled(), 1.0, 1.0, "weight"
    probe.quiet, probe.sampling_strategy, probe.d_graph = True, {}, defaultdict(dict)
    start = time.perf_counter()
    probe._precompute_probabilities()
    rate = work / max(time.perf_counter() - start, 1e-9)
    # Walks visit nodes in proportion to degree: the mean neighbourhood a step draws from.
    step_degree = max(1, round((degree**2).sum() / max(degree.sum(), 1.0)))
    choices, probs = list(range(step_degree)), np.full(step_degree, 1.0 / step_degree)
    start = time.perf_counter()
    for _ in range(2000):
        np.random.choice(choices, p=probs)
    per_step = (time.perf_counter() - start) / 2000
    return {
        "precompute": float((degree**2).sum() / rate),
        "walks": float(adjacency.shape[0] * shape.walks_per_node * shape.walk_length * per_step),
    }


# --- one method in a child process -------------------------------------------------------


def _numpy2_aliases_for_nptyping() -> None:
    # pecanpy 2.0.9 imports nptyping 2.0.1, which reads aliases NumPy 2 removed.
    aliases = {
        "bool8": np.bool_,
        "object0": np.object_,
        "int0": np.intp,
        "uint0": np.uintp,
        "void0": np.void,
        "str0": np.str_,
        "bytes0": np.bytes_,
        "float_": np.float64,
        "complex_": np.complex128,
        "unicode_": np.str_,
        "string_": np.bytes_,
        "longfloat": np.longdouble,
        "singlecomplex": np.complex64,
        "cfloat": np.complex128,
        "longcomplex": np.clongdouble,
        "clongfloat": np.clongdouble,
    }
    for name, value in aliases.items():
        if name not in np.__dict__:
            setattr(np, name, value)


STAGES: dict[str, float] = {}
"""Seconds per stage of ours-node2vec and ours-walks+gensim in this worker process."""


def _ours_by_stage(
    method: str,
    adjacency: sp.csr_matrix,
    p: float,
    q: float,
    seed: int,
    epochs: int,
    shape: Shape,
) -> np.ndarray:
    """``node2vec_embed``'s two steps, timed apart (plus loading numba's cached kernels).

    ``jit``: a 2-node call that loads (or compiles) every kernel; ``walks``: graph checks,
    CSR conversion and the walks; ``training``: skip-gram, node counts and tables included.
    """
    from linker.graph.embed import node2vec_walks, train_skipgram

    d, r, length, k = shape
    trainer = "numba" if method == "ours-node2vec" else "gensim"
    start = time.perf_counter()
    pair = sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 0.0]]))
    tiny = node2vec_walks(pair, walks_per_node=1, walk_length=3, p=p, q=q, seed=seed)
    if trainer == "numba":
        train_skipgram(tiny, 2, dimensions=d, window=k, epochs=1, workers=WORKERS, seed=seed)
    STAGES["jit"] = time.perf_counter() - start
    start = time.perf_counter()
    walks = node2vec_walks(adjacency, walks_per_node=r, walk_length=length, p=p, q=q, seed=seed)
    STAGES["walks"] = time.perf_counter() - start
    start = time.perf_counter()
    vectors = train_skipgram(
        walks,
        adjacency.shape[0],
        dimensions=d,
        window=k,
        negative=NEGATIVE,
        epochs=epochs,
        workers=WORKERS,
        trainer=trainer,
        seed=seed,
    )
    STAGES["training"] = time.perf_counter() - start
    return vectors


def _run_method(
    method: str,
    adjacency: sp.csr_matrix,
    p: float,
    q: float,
    seed: int,
    epochs: int,
    shape: Shape = SHAPE,
) -> np.ndarray:
    n = adjacency.shape[0]
    d, r, length, k = shape
    if method in ("ours-node2vec", "ours-walks+gensim"):
        return _ours_by_stage(method, adjacency, p, q, seed, epochs, shape)
    if method == "ours-fastrp":
        from linker.graph.embed import fastrp_embed

        params = (
            FASTRP_BLOGCATALOG
            if os.environ.get("BENCH_DATASET") == "blogcatalog"
            else (FASTRP_ACCOUNTS)
        )
        return fastrp_embed(adjacency, seed=seed, **{**params, "dimensions": d})
    if method.startswith("pecanpy-"):
        _numpy2_aliases_for_nptyping()
        from pecanpy import pecanpy

        mode = getattr(pecanpy, method.split("-", 1)[1])
        graph = mode(p=p, q=q, workers=WORKERS, random_state=seed)
        graph.indptr = adjacency.indptr.astype(np.uint32)
        graph.indices = adjacency.indices.astype(np.uint32)
        graph.data = adjacency.data.astype(np.float32)
        graph.set_node_ids([str(i) for i in range(n)])
        graph.preprocess_transition_probs()
        return np.asarray(
            graph.embed(dim=d, num_walks=r, walk_length=length, window_size=k, epochs=epochs),
            dtype=np.float32,
        )
    if method == "node2vec-pypi":
        import networkx as nx
        from node2vec import Node2Vec

        graph = nx.from_scipy_sparse_array(adjacency)
        # workers=1 for its walks: joblib would copy the O(Σ deg²) tables into each process.
        model = Node2Vec(
            graph,
            dimensions=d,
            walk_length=length,
            num_walks=r,
            p=p,
            q=q,
            workers=1,
            quiet=True,
            seed=seed,
        ).fit(window=k, min_count=1, negative=NEGATIVE, epochs=epochs, workers=WORKERS, seed=seed)
        return np.stack([model.wv[str(i)] for i in range(n)]).astype(np.float32)
    raise ValueError(f"unknown method {method}")


def peak_rss_mib() -> float:
    """This process's peak resident set size (``VmHWM``).

    Not ``ru_maxrss``: Linux keeps that across fork and exec, so a child would report at least
    its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> None:
    graph = np.load(args.graph)
    n = int(graph["n"])
    adjacency = sp.csr_matrix((graph["data"], graph["indices"], graph["indptr"]), shape=(n, n))
    start = time.perf_counter()
    shape = Shape(*(int(v) for v in args.shape.split(",")))
    vectors = _run_method(args.worker, adjacency, args.p, args.q, args.seed, args.epochs, shape)
    seconds = time.perf_counter() - start
    np.save(args.vectors, vectors)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": time.process_time(),
                "peak_rss_mib": peak_rss_mib(),
                "stages_s": STAGES,
                # 1-minute load average at the end of the run (2 cores, shared machine).
                "load_average_1m": os.getloadavg()[0],
            }
        )
    )


def _in_child(
    method: str,
    graph_file: Path,
    dataset: str,
    p: float,
    q: float,
    seed: int,
    epochs: int,
    work: Path,
    shape: Shape = SHAPE,
) -> dict[str, Any]:
    vectors = work / f"{dataset}-{method}.npy"
    command = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--graph",
        str(graph_file),
        "--vectors",
        str(vectors),
        "--p",
        str(p),
        "--q",
        str(q),
        "--seed",
        str(seed),
        "--epochs",
        str(epochs),
        "--shape",
        shape.flag(),
    ]
    env = dict(os.environ, BENCH_DATASET=dataset, PYTHONHASHSEED="0")
    print(f"  {dataset}: {method} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["vectors"] = np.load(vectors)
    print(f"  {dataset}: {method} {result['seconds']:.1f}s", file=sys.stderr, flush=True)
    return result


# --- the comparison ----------------------------------------------------------------------


def compare(
    dataset: str,
    args: argparse.Namespace,
    work: Path,
    save: Any = None,
) -> dict[str, Any]:
    """Run every method on ``dataset``; ``save(result)`` after each method (partial results)."""
    shape, planted = SHAPE, None
    if dataset == "blogcatalog":
        adjacency, labels = load_blogcatalog(BLOGCATALOG)
        n_accounts = adjacency.shape[0]
    elif dataset == "planted":
        adjacency, labels, planted = planted_partition(args.planted_nodes, seed=args.seed)
        n_accounts, shape = adjacency.shape[0], PLANTED_SHAPE
    else:
        adjacency, labels, n_accounts = account_graph(
            args.accounts, args.seed, work, args.events_per_account
        )
    n = adjacency.shape[0]
    graph_file = work / f"{dataset}-graph.npz"
    np.savez(
        graph_file, data=adjacency.data, indices=adjacency.indices, indptr=adjacency.indptr, n=n
    )
    # One epoch for everyone on the planted graph (pecanpy's default; it recovers the labels).
    peer_epochs = args.epochs if args.epochs is not None else (1 if planted else EPOCHS)
    our_epochs = args.our_epochs if args.our_epochs is not None else (1 if planted else OUR_EPOCHS)
    p, q = args.p, args.q
    if dataset == "blogcatalog" and (p is None or q is None):
        print("choosing p, q on the selection split", file=sys.stderr, flush=True)
        p, q = choose_pq(adjacency, labels, seed=args.seed, epochs=our_epochs)
    p, q = p if p is not None else 1.0, q if q is not None else 1.0
    sum_deg2 = float((np.diff(adjacency.indptr).astype(np.float64) ** 2).sum())
    rows: list[dict[str, Any]] = []
    result = {
        "dataset": dataset,
        "nodes": n,
        "edges": adjacency.nnz // 2,
        "sum_deg2": sum_deg2,
        "accounts": n_accounts,
        "planted": planted,
        "shape": shape._asdict(),
        "p": p,
        "q": q,
        "epochs": peer_epochs,
        "our_epochs": our_epochs,
        "workers": WORKERS,
        "repeats": args.repeats,
        "rows": rows,
    }
    methods = args.methods or [m for m in METHODS if dataset == "planted" or "FirstOrder" not in m]
    for method in methods:
        row: dict[str, Any] = {"method": method}
        if method == "node2vec-pypi":
            estimate = estimate_reference_seconds(adjacency, shape)
            row["estimated_s"] = estimate
            floor = estimate["precompute"] + estimate["walks"]
            if dataset != "blogcatalog" and floor > args.reference_budget:
                row["skipped"] = (
                    f"estimated at least {floor:.0f}s before training "
                    f"({estimate['precompute']:.0f}s of O(Σ deg²) tables, "
                    f"{estimate['walks']:.0f}s of walks) > budget {args.reference_budget:.0f}s"
                )
                rows.append(row)
                if save:
                    save(result)
                continue
        repeats = 1 if method == "node2vec-pypi" else args.repeats
        runs: list[dict[str, Any]] = []
        for repeat in range(repeats):
            epochs = our_epochs if method == "ours-node2vec" else peer_epochs
            run = _in_child(
                method, graph_file, dataset, p, q, args.seed + repeat, epochs, work, shape
            )
            vectors = run.pop("vectors")
            if dataset == "planted":
                run["macro_f1"] = planted_macro_f1(vectors, labels)
            elif dataset == "blogcatalog":
                run["macro_f1"], run["micro_f1"] = macro_micro_f1(
                    vectors, labels, splits=args.splits
                )
            else:
                run["ring_ari"], run["ring_knn10"] = ring_recovery(vectors[:n_accounts], labels)
            runs.append(run)
        # Seconds: the median run; quality: the mean over runs (seeds seed, seed+1, ...).
        row["runs"] = runs
        row["seconds"] = float(np.median([r["seconds"] for r in runs]))
        row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
        row["load_average_1m"] = [r["load_average_1m"] for r in runs]
        for key in ("macro_f1", "micro_f1", "ring_ari", "ring_knn10"):
            if key in runs[0]:
                values = [r[key] for r in runs]
                row[key] = float(np.mean(values))
                row[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        rows.append(row)
        if save:
            save(result)
    return result


def fastrp_world(
    accounts: int, seed: int, work: Path, events_per_account: float, run_dir: Path | None = None
) -> dict[str, Any]:
    """FastRP on the whole account–identifier graph of a large world (graph build excluded)."""
    from linker.graph.embed import fastrp_embed

    start = time.perf_counter()
    if run_dir is not None and (run_dir / "observations.parquet").exists():
        import pandas as pd

        accounts_table = pd.read_parquet(run_dir / "tables" / "accounts.parquet")
        observations = pd.read_parquet(run_dir / "observations.parquet")
        bipartite, adjacency = linking_graph(accounts_table["account_id"], observations)
        n_accounts = len(bipartite.account_ids)
        del observations, accounts_table, bipartite
    elif run_dir is not None:  # a world's raw tables
        from linker.io.validate import validate_dataset
        from linker.observations import build_observations

        tables = validate_dataset(run_dir).tables
        observations = build_observations(tables)
        bipartite, adjacency = linking_graph(tables["accounts"]["account_id"], observations)
        n_accounts = len(bipartite.account_ids)
        del observations, tables, bipartite
    else:
        adjacency, _, n_accounts = account_graph(accounts, seed, work, events_per_account)
    graph_seconds = time.perf_counter() - start
    fastrp_embed(sp.csr_matrix((1, 1)), dimensions=8)  # JIT compile outside the timing
    start = time.perf_counter()
    vectors = fastrp_embed(adjacency, seed=seed, **FASTRP_ACCOUNTS)
    seconds = time.perf_counter() - start
    return {
        "accounts": n_accounts,
        "nodes": adjacency.shape[0],
        "edges": adjacency.nnz // 2,
        "events_per_account": None if run_dir else events_per_account,
        "graph_seconds": graph_seconds,
        "source": str(run_dir) if run_dir else "generated",
        "seconds": seconds,
        "shape": list(vectors.shape),
        "peak_rss_mib": peak_rss_mib(),
    }


def _markdown(result: dict[str, Any]) -> str:
    dataset = result["dataset"]
    ours = next(
        (r for r in result["rows"] if r["method"] == "ours-node2vec" and "seconds" in r), None
    )
    keys = {
        "blogcatalog": ("macro_f1", "micro_f1"),
        "planted": ("macro_f1",),
    }.get(dataset, ("ring_ari", "ring_knn10"))
    headers = {
        "macro_f1": "Macro-F1",
        "micro_f1": "Micro-F1",
        "ring_ari": "ring ARI (KMeans)",
        "ring_knn10": "ring kNN@10",
    }
    shape = result.get("shape", SHAPE._asdict())
    lines = [
        f"{dataset}: {result['nodes']:,} nodes, {result['edges']:,} edges, "
        f"Σ deg² = {result['sum_deg2']:.3g}; d={shape['dimensions']}, "
        f"r={shape['walks_per_node']}, l={shape['walk_length']}, k={shape['window']}, "
        f"p={result['p']:g}, q={result['q']:g}, "
        f"{result['epochs']} epoch(s) ({result['our_epochs']} for ours-node2vec), "
        f"{result['workers']} training threads",
        "",
        "| method | wall s (median) | × ours-node2vec | CPU s | peak RSS MiB | "
        + " | ".join(headers[k] for k in keys)
        + " | runs | load avg (1 min, at the end of each run) |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(keys) + "---:|---|",
    ]
    for row in result["rows"]:
        if "skipped" in row:
            blank = " |" * (5 + len(keys))
            lines.append(f"| {row['method']} | skipped: {row['skipped']} |{blank}")
            continue
        ratio = row["seconds"] / ours["seconds"] if ours else float("nan")
        cells = []
        for key in keys:
            spread = row.get(f"{key}_sd")
            cells.append(f"{row[key]:.4f}" + (f" ± {spread:.4f}" if spread else ""))
        loads = ", ".join(f"{v:.1f}" for v in row.get("load_average_1m", []))
        cpu = np.median([r.get("cpu_seconds", np.nan) for r in row["runs"]])
        lines.append(
            f"| {row['method']} | {row['seconds']:.1f} | {ratio:.2f} | {cpu:.1f} | "
            f"{row['peak_rss_mib']:.0f} | {' | '.join(cells)} | {len(row['runs'])} | {loads} |"
        )
    for row in result["rows"]:
        for run in row.get("runs", []):
            if run.get("stages_s"):
                stages = ", ".join(f"{k} {v:.1f} s" for k, v in run["stages_s"].items())
                lines.append(f"\n{row['method']} by stage: {stages} (of {run['seconds']:.1f} s)")
    return "\n".join(lines)


def missing_modules(methods: list[str]) -> list[str]:
    """The modules the chosen methods (and the quality scores) need that are not installed."""
    import importlib.util

    needed = {"sklearn"}
    if any(m.startswith("ours") for m in methods):
        needed |= {"numba", "gensim"}
    if any(m.startswith("pecanpy") for m in methods):
        needed.add("pecanpy")
    if "node2vec-pypi" in methods:
        needed.add("node2vec")
    return sorted(m for m in needed if importlib.util.find_spec(m) is None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", choices=["blogcatalog", "accounts", "planted", "both"], default="both"
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--events-per-account", type=float, default=20.0)
    parser.add_argument("--planted-nodes", type=int, default=PLANTED_NODES)
    parser.add_argument(
        "--markdown", metavar="JSON", help="print the table of a saved result and stop"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p", type=float, default=None)
    parser.add_argument("--q", type=float, default=None)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument(
        "--epochs", type=int, default=None, help=f"peers' epochs ({EPOCHS}; planted: 1)"
    )
    parser.add_argument(
        "--our-epochs", type=int, default=None, help=f"ours ({OUR_EPOCHS}; planted: 1)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per method, seeds seed..seed+repeats-1 (the node2vec package runs once)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=METHODS,
        help="default: all (pecanpy-FirstOrderUnweighted on --dataset planted only, p = q = 1)",
    )
    parser.add_argument("--reference-budget", type=float, default=600.0)
    parser.add_argument("--fastrp-world", type=int, default=0, metavar="ACCOUNTS")
    parser.add_argument(
        "--run-dir",
        help="with --fastrp-world: take the graph from a `linker run` directory or a world",
    )
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "embed"))
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--graph", help=argparse.SUPPRESS)
    parser.add_argument("--vectors", help=argparse.SUPPRESS)
    parser.add_argument("--shape", default=SHAPE.flag(), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.markdown:
        print(_markdown(json.loads(Path(args.markdown).read_text())))
        return
    missing = missing_modules(args.methods or METHODS)
    if missing:
        raise SystemExit(
            f"bench/embed.py: missing {', '.join(missing)}; install the extras with "
            "`.venv/bin/pip install -c constraints.txt -e '.[embed,embed-bench]'`"
        )
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    if args.fastrp_world:
        result = fastrp_world(
            args.fastrp_world,
            args.seed,
            work,
            args.events_per_account,
            Path(args.run_dir) if args.run_dir else None,
        )
        result["meta"] = meta
        (results_dir / f"embed-fastrp-{args.fastrp_world}.json").write_text(
            json.dumps(result, indent=2) + "\n"
        )
        print(json.dumps(result, indent=2))
        return
    datasets = ["blogcatalog", "accounts"] if args.dataset == "both" else [args.dataset]
    for dataset in datasets:
        name = {"blogcatalog": dataset, "planted": f"planted-{args.planted_nodes}"}.get(
            dataset, f"accounts-{args.accounts}"
        )
        out = results_dir / f"embed-{name}.json"

        def save(partial: dict[str, Any], out: Path = out, complete: bool = False) -> None:
            # Written after every method, so a run cut short keeps what it measured.
            done = {**partial, "meta": meta, "complete": complete}
            out.write_text(json.dumps(done, indent=2) + "\n")

        result = compare(dataset, args, work, save)
        save(result, complete=True)
        print(_markdown(result) + "\n", flush=True)


if __name__ == "__main__":
    main()
