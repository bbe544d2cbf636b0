"""Graph embeddings: node2vec (biased second-order walks + skip-gram) and FastRP.

Embeddings place accounts that sit near a ring in the account–identifier graph near the
ring's accounts, even when they share no single identifier with it. They are proximity, not
evidence an analyst can check, so the engine may only move an account to review with them
(see docs/embeddings.md).

Every function takes a symmetric scipy CSR adjacency whose rows and columns are node
indices ``0..n-1`` and returns plain numpy arrays. The account–identifier graph is built by
:func:`bipartite_adjacency` from the incidence matrix of
:class:`~linker.graph.bipartite.Bipartite`; :func:`candidate_subgraph` picks the nodes to
embed when the whole graph is too large.

* :func:`node2vec_walks` — biased second-order walks (``p``, ``q``) by rejection sampling, in
  numba: O(1) expected work per step, no O(Σ deg²) precomputation, bit-identical for a seed.
* :func:`train_skipgram` — skip-gram with negative sampling: a numba kernel that shares each
  window's negatives (Ji et al. 2016), or gensim ``Word2Vec`` as the measured reference.
* :func:`fastrp_embed` — FastRP (very sparse random projection propagated over the graph, as
  in Neo4j GDS): O(iterations · edges · dimensions), no training.
* :func:`embed` — one entry point: a CSR graph and node ids in, an ``(n, d)`` float32 out.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from linker.errors import EnvironmentProblem, SettingsError
from linker.settings import EmbedSettings, SkipgramTrainer

try:
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without the embed extra
    _HAVE_NUMBA = False

    def njit(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]
        def wrap(fn: Any) -> Any:
            return fn

        return wrap

    prange = range  # type: ignore[misc]

    def _prefetch(matrix: Any, row: Any, column: Any) -> None:
        """No-op without numba."""

else:

    @intrinsic
    def _prefetch(typingctx: Any, matrix: Any, row: Any, column: Any) -> Any:
        """Ask the CPU to bring ``matrix[row, column]``'s cache line in (LLVM's prefetch).

        A hint only: it changes no value. The skip-gram kernel issues it for the rows the
        next window will read, so their memory latency overlaps this window's arithmetic.
        """

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            array_type = sig.args[0]
            array = context.make_array(array_type)(context, builder, args[0])
            index = [
                context.cast(builder, args[1], sig.args[1], types.intp),
                context.cast(builder, args[2], sig.args[2], types.intp),
            ]
            pointer = cgutils.get_item_pointer(
                context, builder, array_type, array, index, wraparound=False
            )
            i32 = ir.IntType(32)
            byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
            signature = ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32])
            function = cgutils.get_or_insert_function(builder.module, signature, "llvm.prefetch.p0")
            # read, locality 3 (keep in all cache levels), data cache
            builder.call(function, [byte_pointer, i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(matrix, row, column), codegen


__all__ = [
    "bipartite_adjacency",
    "candidate_subgraph",
    "embed",
    "fastrp_embed",
    "node2vec_embed",
    "node2vec_walks",
    "train_skipgram",
    "write_walk_corpus",
]

logger = logging.getLogger(__name__)

SparseMatrix = Any
"""Any scipy sparse matrix or array (converted to CSR on entry)."""

_INSTALL_HINT = "install the embed extra: pip install -c constraints.txt -e '.[embed]'"

# splitmix64 (Steele, Lea & Flood 2014): a tiny counter-based generator, so that every walk
# and every random-projection row gets its own stream derived from (seed, index) and the
# result does not depend on how numba spreads the work over threads.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, inline="always")
def _mix(z: Any) -> Any:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _stream(seed: Any, index: Any) -> Any:
    return _mix(np.uint64(seed) * _GOLDEN + _mix(np.uint64(index) + _GOLDEN))


@njit(cache=True, inline="always")
def _uniform(state: Any) -> Any:
    state = state + _GOLDEN
    return state, (_mix(state) >> np.uint64(11)) * _TO_UNIT


@njit(cache=True, inline="always")
def _first_order(
    indptr: Any,
    indices: Any,
    alias_prob: Any,
    alias_idx: Any,
    weighted: bool,
    node: Any,
    state: Any,
) -> Any:
    start = indptr[node]
    deg = indptr[node + 1] - start
    state, u = _uniform(state)
    k = min(int(u * deg), deg - 1)
    if weighted:
        state, v = _uniform(state)
        if v >= alias_prob[start + k]:
            k = alias_idx[start + k]
    return state, indices[start + k]


@njit(cache=True, inline="always")
def _has_edge(indptr: Any, indices: Any, a: Any, b: Any) -> bool:
    lo = indptr[a]
    hi = indptr[a + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[mid] < b:
            lo = mid + 1
        else:
            hi = mid
    return lo < indptr[a + 1] and indices[lo] == b


@njit(cache=True)
def _alias_tables(indptr: Any, weights: Any) -> Any:
    """Walker/Vose alias tables of every node's out-edge weights, O(edges) in total."""
    n = indptr.shape[0] - 1
    prob = np.ones(weights.shape[0], dtype=np.float64)
    alias = np.zeros(weights.shape[0], dtype=np.int64)
    max_deg = 0
    for i in range(n):
        max_deg = max(max_deg, indptr[i + 1] - indptr[i])
    small = np.empty(max_deg, dtype=np.int64)
    large = np.empty(max_deg, dtype=np.int64)
    scaled = np.empty(max_deg, dtype=np.float64)
    for i in range(n):
        start = indptr[i]
        deg = indptr[i + 1] - start
        if deg == 0:
            continue
        total = 0.0
        for k in range(deg):
            total += weights[start + k]
        n_small = 0
        n_large = 0
        for k in range(deg):
            scaled[k] = weights[start + k] * deg / total
            if scaled[k] < 1.0:
                small[n_small] = k
                n_small += 1
            else:
                large[n_large] = k
                n_large += 1
        while n_small > 0 and n_large > 0:
            n_small -= 1
            s = small[n_small]
            g = large[n_large - 1]
            prob[start + s] = scaled[s]
            alias[start + s] = g
            scaled[g] = scaled[g] + scaled[s] - 1.0
            if scaled[g] < 1.0:
                n_large -= 1
                small[n_small] = g
                n_small += 1
        # Leftovers are 1 up to rounding: they keep prob 1 (no alias).
    return prob, alias


@njit(parallel=True, cache=True)
def _walk_kernel(
    indptr: Any,
    indices: Any,
    alias_prob: Any,
    alias_idx: Any,
    weighted: bool,
    starts: Any,
    walk_length: int,
    inv_p: float,
    inv_q: float,
    seed: Any,
    out: Any,
) -> None:
    upper = max(inv_p, 1.0, inv_q)
    lower_other = min(1.0, inv_q)
    upper_other = max(1.0, inv_q)
    uniform_bias = inv_p == 1.0 and inv_q == 1.0
    for w in prange(starts.shape[0]):
        state = _stream(seed, w)
        cur = starts[w]
        out[w, 0] = cur
        if indptr[cur + 1] == indptr[cur] or walk_length < 2:
            continue
        state, nxt = _first_order(indptr, indices, alias_prob, alias_idx, weighted, cur, state)
        out[w, 1] = nxt
        prev = cur
        cur = nxt
        for step in range(2, walk_length):
            # Rejection sampling: propose x by edge weight, accept with alpha(prev, x) / upper,
            # where alpha is 1/p (back to prev), 1 (x next to prev) or 1/q (moving outward).
            while True:
                state, x = _first_order(
                    indptr, indices, alias_prob, alias_idx, weighted, cur, state
                )
                if uniform_bias:
                    break
                state, u = _uniform(state)
                threshold = u * upper
                if x == prev:
                    if threshold < inv_p:
                        break
                elif threshold < lower_other:
                    break
                elif threshold >= upper_other:
                    continue
                elif _has_edge(indptr, indices, prev, x):
                    if threshold < 1.0:
                        break
                elif threshold < inv_q:
                    break
            out[w, step] = x
            prev = cur
            cur = x


def _as_csr(matrix: Any, copy: bool = False) -> sp.csr_matrix:
    return sp.csr_matrix(matrix, dtype=np.float64, copy=copy)


def _checked_adjacency(adjacency: Any) -> sp.csr_matrix:
    graph = _as_csr(adjacency, copy=True)
    if graph.shape[0] != graph.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, not {graph.shape}")
    graph.setdiag(0.0)
    graph.eliminate_zeros()
    if graph.nnz and graph.data.min() < 0:
        raise ValueError("adjacency must have non-negative edge weights")
    graph.sort_indices()
    return graph


def _require_numba() -> None:
    if not _HAVE_NUMBA:
        raise EnvironmentProblem(f"graph embeddings need numba: {_INSTALL_HINT}")


def _check_walk_params(walks_per_node: int, walk_length: int, p: float, q: float) -> None:
    problems = []
    if walks_per_node < 1:
        problems.append(f"embed.walks_per_node must be at least 1, not {walks_per_node}")
    if walk_length < 1:
        problems.append(f"embed.walk_length must be at least 1, not {walk_length}")
    if not p > 0:
        problems.append(f"embed.p must be greater than 0, not {p}")
    if not q > 0:
        problems.append(f"embed.q must be greater than 0, not {q}")
    if problems:
        raise SettingsError(problems)


def node2vec_walks(
    adjacency: SparseMatrix,
    *,
    walks_per_node: int = 10,
    walk_length: int = 80,
    p: float = 1.0,
    q: float = 1.0,
    weighted: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Biased second-order random walks of node2vec (Grover & Leskovec 2016).

    From a walk's previous node ``t`` and current node ``v``, the next node ``x`` is drawn with
    probability proportional to ``w(v, x) · alpha``, where ``alpha`` is ``1/p`` if ``x == t``,
    ``1`` if ``x`` is a neighbour of ``t`` and ``1/q`` otherwise. The first step is
    proportional to ``w(v, x)``.

    Parameters
    ----------
    adjacency : scipy sparse matrix, shape (n, n)
        Symmetric adjacency; self-loops are ignored.
    walks_per_node : int, default 10
        Walks started from every node (``r``).
    walk_length : int, default 80
        Nodes per walk (``l``), the start included.
    p, q : float, default 1.0
        Return and in-out parameters; ``p = q = 1`` gives DeepWalk's uniform walks.
    weighted : bool, default False
        Use the adjacency values as edge weights; otherwise every edge counts once.
    seed : int, default 0
        The walks are a pure function of the graph, the parameters and the seed.

    Returns
    -------
    numpy.ndarray of int32, shape (walks_per_node * n, walk_length)
        One walk per row, rounds of ``n`` walks each (the start nodes of a round in a
        seeded random order). A walk from an isolated node is its start followed by ``-1``.

    Raises
    ------
    SettingsError
        If a parameter is out of range.
    EnvironmentProblem
        If numba (the ``embed`` extra) is not installed.

    Notes
    -----
    A step proposes ``x`` by edge weight (uniformly, or by a per-node alias table built in
    O(edges)), then accepts it with probability ``alpha / max(1/p, 1, 1/q)``; the membership
    test ``x ∈ N(t)`` is a binary search, needed only when the draw falls between the
    bounds. Expected proposals per step are at most ``max(1/p,1,1/q) / min(1/p,1,1/q)``, so
    the total is O(n · r · l · log deg) with O(edges) memory, against the reference package's
    O(Σ deg²) precomputed tables. Each walk has its own splitmix64 stream seeded by
    ``(seed, walk index)``, so the result is bit-identical whatever the thread count.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> ring = sp.csr_matrix(([1.0] * 6, ([0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2])), shape=(3, 3))
    >>> node2vec_walks(ring, walks_per_node=2, walk_length=5, seed=1).shape
    (6, 5)
    """
    _require_numba()
    _check_walk_params(walks_per_node, walk_length, p, q)
    graph = _checked_adjacency(adjacency)
    n = graph.shape[0]
    rng = np.random.default_rng(seed)
    starts = np.concatenate([rng.permutation(n) for _ in range(walks_per_node)]).astype(np.int32)
    out = _walk_from(graph, starts, walk_length, p, q, weighted, seed)
    logger.debug("node2vec walks: %d walks of length %d on %d nodes", len(starts), walk_length, n)
    return out


def _walk_from(
    graph: sp.csr_matrix,
    starts: np.ndarray,
    walk_length: int,
    p: float,
    q: float,
    weighted: bool,
    seed: int,
) -> np.ndarray:
    """One walk from each node of ``starts`` on a checked ``graph``, ``-1`` padded.

    Builds the kernel's inputs: int CSR arrays, and alias tables of the edge weights when
    ``weighted`` (a one-entry placeholder otherwise, which the kernel never reads).
    """
    indptr = graph.indptr.astype(np.int64)
    indices = graph.indices.astype(np.int32)
    if weighted:
        alias_prob, alias_idx = _alias_tables(indptr, graph.data)
    else:
        alias_prob = np.ones(1, dtype=np.float64)
        alias_idx = np.zeros(1, dtype=np.int64)
    out = np.full((len(starts), walk_length), -1, dtype=np.int32)
    _walk_kernel(
        indptr,
        indices,
        alias_prob,
        alias_idx,
        bool(weighted),
        starts,
        int(walk_length),
        1.0 / float(p),
        1.0 / float(q),
        np.uint64(seed % 2**64),
        out,
    )
    return out


@njit(parallel=True, cache=True)
def _line_lengths(walks: Any) -> Any:
    lengths = np.zeros(walks.shape[0], dtype=np.int64)
    for w in prange(walks.shape[0]):
        total = 0
        for step in range(walks.shape[1]):
            node = walks[w, step]
            if node < 0:
                break
            digits = 1
            while node >= 10:
                node //= 10
                digits += 1
            total += digits + 1  # a space or the final newline
        lengths[w] = total
    return lengths


@njit(parallel=True, cache=True)
def _fill_lines(walks: Any, offsets: Any, buffer: Any) -> None:
    for w in prange(walks.shape[0]):
        pos = offsets[w]
        for step in range(walks.shape[1]):
            node = walks[w, step]
            if node < 0:
                break
            digits = 1
            rest = node
            while rest >= 10:
                rest //= 10
                digits += 1
            for k in range(digits - 1, -1, -1):
                buffer[pos + k] = 48 + node % 10
                node //= 10
            pos += digits
            buffer[pos] = 32
            pos += 1
        if pos > offsets[w]:
            buffer[pos - 1] = 10


def write_walk_corpus(walks: np.ndarray, path: str | os.PathLike[str]) -> int:
    """Write walks as a whitespace-separated text corpus, one walk per line.

    Parameters
    ----------
    walks : numpy.ndarray of int, shape (n_walks, walk_length)
        Node indices, ``-1`` padded (as returned by :func:`node2vec_walks`).
    path : path-like
        Destination file (a scratch file: it is not written atomically).

    Returns
    -------
    int
        Number of tokens written.

    Notes
    -----
    O(total tokens), two parallel numba passes (line lengths, then digits into one buffer).
    """
    _require_numba()
    walks = np.ascontiguousarray(walks, dtype=np.int64)
    lengths = _line_lengths(walks)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buffer = np.empty(int(offsets[-1]), dtype=np.uint8)
    _fill_lines(walks, offsets, buffer)
    with open(path, "wb") as handle:
        handle.write(buffer.tobytes())
    return int((walks >= 0).sum())


def _epoch_rates(alpha: float, min_alpha: float, epochs: int) -> list[tuple[float, float]]:
    """The (start, end) learning rate of each epoch of a linear decay over all epochs."""
    step = (alpha - min_alpha) / epochs
    return [(alpha - step * epoch, alpha - step * (epoch + 1)) for epoch in range(epochs)]


def _gensim_end_rate(start: float, end: float, workers: int) -> float:
    """The end rate to give gensim's ``corpus_file`` mode so each worker ends at ``end``.

    Each of ``w`` workers trains on ``1/w`` of the words but measures its progress against
    all of them, so it only gets ``1/w`` of the way from ``start`` to the end rate it is given.
    """
    return start - workers * (start - end)


@njit(cache=True, inline="always")
def _draw_negative(neg_prob: Any, neg_alias: Any, state: Any) -> Any:
    # One uniform draw gives both the alias column (integer part) and its coin (fraction).
    vocab = neg_prob.shape[0]
    state, u = _uniform(state)
    scaled = u * vocab
    out = min(int(scaled), vocab - 1)
    if scaled - out >= neg_prob[out]:
        out = neg_alias[out]
    return state, out


@njit(cache=True, inline="always")
def _subsampled_walk(walks: Any, row: Any, keep: Any, sentence: Any, state: Any) -> Any:
    """Copy walk ``row`` into ``sentence``, dropping frequent tokens; return the kept count."""
    m = 0
    for t in range(walks.shape[1]):
        token = walks[row, t]
        if token < 0:
            break
        if keep[token] < 1.0:
            state, u = _uniform(state)
            if u >= keep[token]:
                continue
        sentence[m] = token
        m += 1
    return state, m


@njit(cache=True, inline="always")
def _draw_negatives(neg_prob: Any, neg_alias: Any, drawn: Any, syn1: Any, state: Any) -> Any:
    """Fill ``drawn`` with negatives and prefetch their output rows; the new state."""
    for k in range(drawn.shape[0]):
        state, node = _draw_negative(neg_prob, neg_alias, state)
        drawn[k] = node
        _prefetch_row(syn1, node)
    return state


@njit(cache=True, inline="always")
def _prefetch_row(matrix: Any, row: Any) -> None:
    """Prefetch every cache line (16 float32) of ``matrix[row]``."""
    for column in range(0, matrix.shape[1], 16):
        _prefetch(matrix, row, column)


@njit(cache=True, inline="always")
def _window_outputs(target: Any, drawn: Any, outputs: Any, labels: Any) -> Any:
    """The target then the ``drawn`` negatives other than it (labels 1, 0); the count."""
    outputs[0] = target
    labels[0] = 1.0
    n_out = 1
    for k in range(drawn.shape[0]):
        if drawn[k] != target:
            outputs[n_out] = drawn[k]
            labels[n_out] = 0.0
            n_out += 1
    return n_out


# word2vec's sigmoid table: σ(f) for f in [-6, 6) in _SIGMOID_STEPS steps; beyond ±6 the
# gradient uses σ = 0 or 1 exactly.
_MAX_EXP = 6.0
_SIGMOID_STEPS = 4096


def _sigmoid_table() -> np.ndarray:
    centres = (np.arange(_SIGMOID_STEPS) + 0.5) / _SIGMOID_STEPS * 2 * _MAX_EXP - _MAX_EXP
    return (1.0 / (1.0 + np.exp(-centres))).astype(np.float32)


@njit(cache=True, inline="always")
def _output_gradient(f: Any, label: Any, alpha: Any, sigmoid: Any) -> Any:
    """``(label - σ(f)) · alpha``, σ from the table."""
    if f >= _MAX_EXP:
        return (label - np.float32(1.0)) * alpha
    if f <= -_MAX_EXP:
        return label * alpha
    k = int((f + _MAX_EXP) * (_SIGMOID_STEPS / (2 * _MAX_EXP)))
    return (label - sigmoid[min(k, _SIGMOID_STEPS - 1)]) * alpha


@njit(cache=True, inline="always")
def _window_step(
    syn0: Any,
    syn1: Any,
    contexts: Any,
    n_ctx: Any,
    outputs: Any,
    labels: Any,
    n_out: Any,
    alpha: Any,
    sigmoid: Any,
    grads: Any,
    context_step: Any,
) -> None:
    """One window's update: every (context, output) pair's logistic-loss gradient.

    For each context row, one pass over the outputs computes the dot product, the gradient
    (into ``grads``) and the context's step (into ``context_step``), all in float32; then the
    output vectors move, then the context vectors. The context steps are computed from the
    output vectors before they change, as word2vec does.
    """
    dim = syn0.shape[1]
    for a in range(n_ctx):
        x = syn0[contexts[a]]
        step = context_step[a]
        for c in range(dim):
            step[c] = np.float32(0.0)
        for b in range(n_out):
            y = syn1[outputs[b]]
            f = np.float32(0.0)
            for c in range(dim):
                f += x[c] * y[c]
            g = _output_gradient(f, labels[b], alpha, sigmoid)
            grads[a, b] = g
            for c in range(dim):
                step[c] += g * y[c]
    for b in range(n_out):
        y = syn1[outputs[b]]
        for a in range(n_ctx):
            g = grads[a, b]
            x = syn0[contexts[a]]
            for c in range(dim):
                y[c] += g * x[c]
    for a in range(n_ctx):
        x = syn0[contexts[a]]
        step = context_step[a]
        for c in range(dim):
            x[c] += step[c]


@njit(parallel=True, cache=True, fastmath=True)
def _skipgram_epoch(
    syn0: Any,
    syn1: Any,
    walks: Any,
    keep: Any,
    neg_prob: Any,
    neg_alias: Any,
    window: int,
    negative: int,
    start_alpha: float,
    end_alpha: float,
    n_chunks: int,
    seed: Any,
    stream: Any,
    sigmoid: Any,
) -> None:
    """One epoch of skip-gram with negative sampling over ``walks``, in place.

    word2vec's recipe: tokens of frequency ``f`` are kept with probability ``keep``, each
    token's window is reduced by a random amount, and negatives come from the unigram
    distribution to the power 3/4 (the alias table ``neg_prob``, ``neg_alias``). As in Ji et
    al. (2016), one draw of negatives serves a whole window, so every output vector is read
    once per window, not once per (context, output) pair. Each window's negatives are drawn
    while the previous window trains and their rows prefetched (a hint that changes no value),
    and a walk's rows are prefetched when it starts. The walks are split into
    ``n_chunks`` contiguous chunks run in parallel, each with its own random stream and the
    full learning-rate schedule from ``start_alpha`` to ``end_alpha``.
    """
    n_walks, length = walks.shape
    dim = syn0.shape[1]
    per = (n_walks + n_chunks - 1) // n_chunks
    for chunk in prange(n_chunks):
        lo = chunk * per
        hi = min(n_walks, lo + per)
        span = max(1, hi - lo)
        state = _stream(seed, stream + np.uint64(chunk))
        sentence = np.empty(length, dtype=np.int64)
        contexts = np.empty(2 * window, dtype=np.int64)
        outputs = np.empty(negative + 1, dtype=np.int64)
        drawn = np.empty(negative, dtype=np.int64)
        labels = np.empty(negative + 1, dtype=np.float32)
        grads = np.empty((2 * window, negative + 1), dtype=np.float32)
        context_step = np.empty((2 * window, dim), dtype=np.float32)
        for row in range(lo, hi):
            alpha = start_alpha - (start_alpha - end_alpha) * (row - lo) / span
            state, m = _subsampled_walk(walks, row, keep, sentence, state)
            for i in range(m):
                _prefetch_row(syn0, sentence[i])
                _prefetch_row(syn1, sentence[i])
            # Each window's negatives are drawn one window ahead, so their rows are on the
            # way into the cache while the previous window trains.
            state = _draw_negatives(neg_prob, neg_alias, drawn, syn1, state)
            for i in range(m):
                target = sentence[i]
                state, u = _uniform(state)
                reach = window - int(u * window)
                n_ctx = 0
                for j in range(max(0, i - reach), min(m, i + reach + 1)):
                    if j != i:
                        contexts[n_ctx] = sentence[j]
                        n_ctx += 1
                n_out = _window_outputs(target, drawn, outputs, labels)
                state = _draw_negatives(neg_prob, neg_alias, drawn, syn1, state)
                if n_ctx == 0:
                    continue
                _window_step(
                    syn0,
                    syn1,
                    contexts,
                    n_ctx,
                    outputs,
                    labels,
                    n_out,
                    np.float32(alpha),
                    sigmoid,
                    grads,
                    context_step,
                )


class _Training(NamedTuple):
    """The skip-gram settings both trainers take."""

    dimensions: int
    window: int
    negative: int
    epochs: int
    workers: int
    sample: float
    alpha: float
    min_alpha: float
    seed: int


def _node_counts(walks: np.ndarray, n_nodes: int) -> np.ndarray:
    """Occurrences of each node in ``walks``; ValueError if one is ``>= n_nodes``."""
    tokens = walks[walks >= 0]
    if len(tokens) and int(tokens.max()) >= n_nodes:
        raise ValueError(f"walks name node {int(tokens.max())} but n_nodes is {n_nodes}")
    return np.bincount(tokens, minlength=n_nodes)


def _train_numba(walks: np.ndarray, counts: np.ndarray, how: _Training) -> np.ndarray:
    """Skip-gram vectors from our kernel (nodes with ``counts`` 0 get zeros)."""
    _require_numba()
    n = len(counts)
    frequency = counts.astype(np.float64)
    threshold = how.sample * frequency.sum()
    keep = np.ones(n, dtype=np.float64)
    if threshold > 0:
        seen = frequency > 0
        # word2vec's down-sampling: keep a token of frequency f w.p. (√(f/t) + 1) · t/f.
        keep[seen] = (np.sqrt(frequency[seen] / threshold) + 1.0) * threshold / frequency[seen]
    neg_prob, neg_alias = _alias_tables(np.array([0, n], dtype=np.int64), frequency**0.75)
    rng = np.random.default_rng(how.seed)
    shape = (n, how.dimensions)
    syn0 = ((rng.random(shape, dtype=np.float32) - 0.5) / how.dimensions).astype(np.float32)
    syn1 = np.zeros(shape, dtype=np.float32)
    walks = np.ascontiguousarray(walks, dtype=np.int32)
    sigmoid = _sigmoid_table()
    for epoch, (start, end) in enumerate(_epoch_rates(how.alpha, how.min_alpha, how.epochs)):
        _skipgram_epoch(
            syn0,
            syn1,
            walks,
            keep,
            neg_prob,
            neg_alias,
            how.window,
            how.negative,
            start,
            end,
            how.workers,
            np.uint64(how.seed),
            np.uint64(epoch * how.workers),
            sigmoid,
        )
    syn0[counts == 0] = 0.0
    return syn0


def _train_gensim(
    walks: np.ndarray,
    counts: np.ndarray,
    how: _Training,
    tmp_dir: str | os.PathLike[str] | None,
) -> np.ndarray:
    """Skip-gram vectors from gensim ``Word2Vec`` over a scratch corpus file in ``tmp_dir``.

    gensim 4's ``corpus_file`` mode gives each of ``w`` workers ``1/w`` of the words but
    measures that worker's progress against all of them, so its learning rate only falls
    ``1/w`` of the way to ``min_alpha``. Each epoch therefore runs by its own call, with the
    end rate moved (:func:`_gensim_end_rate`) so that every worker ends it at the intended
    rate.
    """
    try:
        from gensim.models import Word2Vec
    except ImportError:
        raise EnvironmentProblem(f"the gensim trainer needs gensim: {_INSTALL_HINT}") from None
    vectors = np.zeros((len(counts), how.dimensions), dtype=np.float32)
    model = Word2Vec(
        vector_size=how.dimensions,
        window=how.window,
        sg=1,
        hs=0,
        negative=how.negative,
        min_count=1,
        sample=how.sample,
        workers=how.workers,
        epochs=how.epochs,
        seed=how.seed,
    )
    present = np.flatnonzero(counts)
    model.build_vocab_from_freq({str(i): int(counts[i]) for i in present.tolist()})
    with tempfile.TemporaryDirectory(prefix="linker-walks-", dir=tmp_dir) as scratch:
        corpus = os.path.join(scratch, "walks.txt")
        total = write_walk_corpus(walks, corpus)
        for epoch_start, epoch_end in _epoch_rates(how.alpha, how.min_alpha, how.epochs):
            # Set directly: Word2Vec.train ignores an end_alpha of 0.0 (`end_alpha or ...`).
            model.alpha = epoch_start
            model.min_alpha = _gensim_end_rate(epoch_start, epoch_end, how.workers)
            model.min_alpha_yet_reached = epoch_start
            model.train(corpus_file=corpus, total_words=total, epochs=1)
    keys = np.fromiter((int(k) for k in model.wv.index_to_key), dtype=np.int64)
    vectors[keys] = model.wv.vectors
    return vectors


def train_skipgram(
    walks: np.ndarray,
    n_nodes: int,
    *,
    dimensions: int = 128,
    window: int = 10,
    negative: int = 5,
    epochs: int = 3,
    workers: int = 1,
    sample: float = 1e-3,
    alpha: float = 0.025,
    min_alpha: float = 0.0001,
    trainer: SkipgramTrainer = "numba",
    seed: int = 0,
    tmp_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Skip-gram with negative sampling over walks.

    Parameters
    ----------
    walks : numpy.ndarray of int, shape (n_walks, walk_length)
        Node indices in ``0..n_nodes-1``, ``-1`` padded.
    n_nodes : int
        Number of rows of the result.
    dimensions, window, negative, epochs : int
        Vector size, context window, negative samples per window, passes over the walks.
    workers : int, default 1
        Training threads. Only ``workers=1`` gives the same vectors on every run: several
        threads update shared vectors without locks (Hogwild, as word2vec and gensim do).
    sample : float, default 1e-3
        word2vec's down-sampling threshold of frequent nodes (gensim's default).
    alpha, min_alpha : float, default 0.025 and 0.0001
        The learning rate falls linearly from ``alpha`` to ``min_alpha`` over all epochs,
        whatever the number of workers (see Notes).
    trainer : {"numba", "gensim"}, default "numba"
        ``numba``: our skip-gram kernel (see Notes). ``gensim``: gensim ``Word2Vec`` through
        its ``corpus_file`` mode, the measured reference (docs/embeddings.md).
    seed : int, default 0
        Seeds the initial vectors, the down-sampling and the negative samples.
    tmp_dir : path-like, optional
        ``trainer="gensim"`` only: where the scratch corpus file goes.

    Returns
    -------
    numpy.ndarray of float32, shape (n_nodes, dimensions)
        Row ``i`` is node ``i``'s vector; nodes that appear in no walk get zeros.

    Raises
    ------
    ValueError
        If a walk names a node ``>= n_nodes``.
    EnvironmentProblem
        If numba, or gensim for ``trainer="gensim"`` (the ``embed`` extra), is not installed.

    Notes
    -----
    O(epochs · tokens · window · (negative + 1) · dimensions) time, O(n_nodes · dimensions)
    memory. The numba kernel is word2vec's, except that a window's context nodes share one
    draw of negatives (Ji et al. 2016, "Parallelizing Word2Vec in Shared and Distributed
    Memory"): on BlogCatalog it trains 2.4–2.6× faster than gensim at equal epochs, about
    0.005 lower in Macro-F1, which a third epoch buys back (docs/embeddings.md; hence
    ``epochs=3``). The window step runs in float32 with word2vec's sigmoid table, and each
    window's negatives are drawn a window ahead with their rows prefetched. Threads split the
    walks into contiguous chunks, each with the full rate schedule; the gensim trainer runs one
    call per epoch so each worker ends it on schedule.

    Examples
    --------
    >>> walks = np.array([[0, 1, 0, 1], [2, 3, 2, -1]], dtype=np.int32)
    >>> train_skipgram(walks, 5, dimensions=4, window=2, seed=1).shape
    (5, 4)
    """
    if trainer not in ("numba", "gensim"):
        raise SettingsError([f"trainer must be 'numba' or 'gensim', not {trainer!r}"])
    walks = np.asarray(walks)
    counts = _node_counts(walks, n_nodes)
    if not counts.any():
        return np.zeros((n_nodes, dimensions), dtype=np.float32)
    how = _Training(dimensions, window, negative, epochs, workers, sample, alpha, min_alpha, seed)
    if trainer == "gensim":
        return _train_gensim(walks, counts, how, tmp_dir)
    return _train_numba(walks, counts, how)


def node2vec_embed(
    adjacency: SparseMatrix,
    nodes: Sequence[int] | np.ndarray | None = None,
    *,
    dimensions: int = 128,
    walks_per_node: int = 10,
    walk_length: int = 80,
    window: int = 10,
    p: float = 1.0,
    q: float = 1.0,
    negative: int = 5,
    epochs: int = 3,
    workers: int = 1,
    alpha: float = 0.025,
    min_alpha: float = 0.0001,
    trainer: SkipgramTrainer = "numba",
    weighted: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """node2vec embedding: :func:`node2vec_walks` then :func:`train_skipgram`.

    Parameters
    ----------
    adjacency : scipy sparse matrix, shape (n, n)
        Symmetric adjacency (walks start from every node).
    nodes : sequence of int, optional
        Rows of the result (default: all nodes in order).
    dimensions, walks_per_node, walk_length, window, p, q, negative, epochs, weighted
        See :func:`node2vec_walks` and :func:`train_skipgram`.
    workers, alpha, min_alpha, trainer
        Training threads, learning-rate schedule and trainer, see :func:`train_skipgram`.
    seed : int, default 0
        Seeds walks and training.

    Returns
    -------
    numpy.ndarray of float32, shape (len(nodes), dimensions)

    Raises
    ------
    SettingsError, EnvironmentProblem
        As :func:`node2vec_walks` and :func:`train_skipgram`.

    Notes
    -----
    Walks O(n · r · l) expected, training O(n · r · l · window · negative · d); training
    dominates. Walks are bit-identical for a seed; vectors are identical across runs only
    with ``workers=1`` (gensim's threads race on shared weights, by design).

    Examples
    --------
    >>> import networkx as nx
    >>> graph = nx.to_scipy_sparse_array(nx.karate_club_graph())
    >>> node2vec_embed(graph, [0, 33], dimensions=8, walk_length=10, workers=1).shape
    (2, 8)
    """
    n = adjacency.shape[0]
    walks = node2vec_walks(
        adjacency,
        walks_per_node=walks_per_node,
        walk_length=walk_length,
        p=p,
        q=q,
        weighted=weighted,
        seed=seed,
    )
    vectors = train_skipgram(
        walks,
        n,
        dimensions=dimensions,
        window=window,
        negative=negative,
        epochs=epochs,
        workers=workers,
        alpha=alpha,
        min_alpha=min_alpha,
        trainer=trainer,
        seed=seed,
    )
    return vectors if nodes is None else vectors[np.asarray(nodes, dtype=np.int64)]


@njit(parallel=True, cache=True)
def _sparse_projection(n: int, dimensions: int, density: float, seed: Any, scale: Any) -> Any:
    out = np.zeros((n, dimensions), dtype=np.float32)
    value = 1.0 / np.sqrt(density)
    half = density / 2.0
    for i in prange(n):
        state = _stream(seed, i)
        for j in range(dimensions):
            state, u = _uniform(state)
            if u < half:
                out[i, j] = value * scale[i]
            elif u < density:
                out[i, j] = -value * scale[i]
    return out


@njit(parallel=True, cache=True)
def _propagate(indptr: Any, indices: Any, weights: Any, degree: Any, current: Any) -> Any:
    """One step of ``D^-1 A X`` followed by a row-wise L2 normalisation."""
    n, d = current.shape
    out = np.zeros((n, d), dtype=np.float32)
    for i in prange(n):
        if degree[i] <= 0.0:
            continue
        row = out[i]
        for k in range(indptr[i], indptr[i + 1]):
            w = np.float32(weights[k])
            neighbour = current[indices[k]]
            for j in range(d):
                row[j] += w * neighbour[j]
        norm = 0.0
        for j in range(d):
            norm += row[j] * row[j]
        if norm > 0.0:
            inv = np.float32(1.0 / np.sqrt(norm))
            for j in range(d):
                row[j] *= inv
    return out


def _check_fastrp_params(
    dimensions: int, density: float, iteration_weights: Sequence[float]
) -> None:
    """Raise SettingsError listing every out-of-range FastRP parameter."""
    problems = []
    if dimensions < 1:
        problems.append(f"embed.dimensions must be at least 1, not {dimensions}")
    if not 0 < density <= 1:
        problems.append(f"embed.fastrp_density must be in (0, 1], not {density}")
    if not iteration_weights:
        problems.append("embed.fastrp_weights must name at least one iteration weight")
    if problems:
        raise SettingsError(problems)


def _degree_scaling(
    graph: sp.csr_matrix, normalization_strength: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Node degrees, FastRP's initial scale ``deg^β`` (0 when isolated), and D⁻¹A's weights.

    ``D⁻¹ A`` is given as row-scaled edge weights (float32, in ``graph``'s edge order): each
    propagation step averages the neighbours' vectors.
    """
    degree = np.asarray(graph.sum(axis=1)).ravel()
    safe = np.where(degree > 0, degree, 1.0)
    scale = np.where(degree > 0, safe**normalization_strength, 0.0).astype(np.float64)
    row_of_edge = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    edge_weights = (graph.data / safe[row_of_edge]).astype(np.float32)
    return degree, scale, edge_weights


def fastrp_embed(
    adjacency: SparseMatrix,
    nodes: Sequence[int] | np.ndarray | None = None,
    *,
    dimensions: int = 128,
    iteration_weights: Sequence[float] = (0.0, 1.0, 1.0),
    normalization_strength: float = 0.0,
    self_influence: float = 0.0,
    density: float = 1.0 / 3.0,
    weighted: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """FastRP: fast random projection embedding (Chen et al. 2019; Neo4j GDS ``fastRP``).

    ``X_0 = R · diag(deg^β)`` for a very sparse random ``n × d`` matrix ``R``;
    ``X_k = normalise(D⁻¹ A X_{k-1})``; the embedding is
    ``self_influence · X_0 + Σ_k iteration_weights[k-1] · X_k``.

    Parameters
    ----------
    adjacency : scipy sparse matrix, shape (n, n)
        Symmetric adjacency.
    nodes : sequence of int, optional
        Rows of the result (default: all nodes in order).
    dimensions : int, default 128
        Embedding size.
    iteration_weights : sequence of float, default (0.0, 1.0, 1.0)
        Weight of each propagation step (GDS's default: 1- and 2-hop... 3-hop terms).
    normalization_strength : float, default 0.0
        ``β``: negative values damp the influence of high-degree nodes.
    self_influence : float, default 0.0
        Weight of a node's own random vector.
    density : float, default 1/3
        Share of non-zero entries in ``R`` (Achlioptas' ``{-√3, 0, √3}``).
    weighted : bool, default False
        Use the adjacency values as edge weights.
    seed : int, default 0
        ``R``'s row ``i`` is drawn from its own stream seeded by ``(seed, i)``.

    Returns
    -------
    numpy.ndarray of float32, shape (len(nodes), dimensions)
        Bit-identical for a seed. Isolated nodes get ``self_influence · X_0`` rows.

    Raises
    ------
    SettingsError
        If a parameter is out of range.

    Notes
    -----
    O(len(iteration_weights) · edges · d) time and O(n · d) memory (three float32 blocks),
    parallel over rows. No training and no sampling.

    Examples
    --------
    >>> import networkx as nx
    >>> graph = nx.to_scipy_sparse_array(nx.karate_club_graph())
    >>> fastrp_embed(graph, dimensions=16).shape
    (34, 16)
    """
    _require_numba()
    _check_fastrp_params(dimensions, density, iteration_weights)
    graph = _checked_adjacency(adjacency)
    if not weighted:
        graph.data[:] = 1.0
    n = graph.shape[0]
    degree, scale, edge_weights = _degree_scaling(graph, normalization_strength)
    indptr = graph.indptr.astype(np.int64)
    indices = graph.indices.astype(np.int64)
    current = _sparse_projection(n, int(dimensions), float(density), np.uint64(seed % 2**64), scale)
    result = current * np.float32(self_influence)
    for weight in iteration_weights:
        current = _propagate(indptr, indices, edge_weights, degree, current)
        if weight != 0.0:
            result += np.float32(weight) * current
    return result if nodes is None else result[np.asarray(nodes, dtype=np.int64)]


def bipartite_adjacency(
    incidence: SparseMatrix, identifier_weights: np.ndarray | None = None
) -> sp.csr_matrix:
    """The symmetric adjacency of the account–identifier graph.

    Parameters
    ----------
    incidence : scipy sparse matrix, shape (n_accounts, n_identifiers)
        ``incidence[i, j] != 0`` when account ``i`` holds identifier ``j`` (for example
        :attr:`~linker.graph.bipartite.Bipartite.matrix`).
    identifier_weights : numpy.ndarray, optional
        A weight per identifier, put on all its edges (default 1).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_accounts + n_identifiers,) * 2
        Node ``i < n_accounts`` is account ``i``; node ``n_accounts + j`` is identifier ``j``.

    Notes
    -----
    O(nnz(incidence)).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> bipartite_adjacency(sp.csr_matrix([[1, 0], [1, 1]])).toarray().astype(int).tolist()
    [[0, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 0]]
    """
    links = _as_csr(incidence, copy=True)
    links.data[:] = 1.0
    if identifier_weights is not None:
        weights = np.asarray(identifier_weights, dtype=np.float64)
        if weights.shape != (links.shape[1],):
            raise ValueError(
                f"identifier_weights has {weights.shape[0]} entries for "
                f"{links.shape[1]} identifiers"
            )
        links = _as_csr(links @ sp.diags(weights))
    adjacency = _as_csr(sp.bmat([[None, links], [links.T, None]], format="csr"))
    adjacency.sort_indices()
    return adjacency


def candidate_subgraph(
    adjacency: SparseMatrix,
    seeds: np.ndarray,
    *,
    hops: int = 4,
    exclude: np.ndarray | None = None,
    whole_graph_max_nodes: int = 200_000,
) -> np.ndarray:
    """Nodes to embed: the whole graph when small, else the seeds' k-hop neighbourhood.

    Parameters
    ----------
    adjacency : scipy sparse matrix, shape (n, n)
        Symmetric adjacency (e.g. :func:`bipartite_adjacency`).
    seeds : numpy.ndarray of bool, shape (n,)
        Nodes that must be embedded: accounts of flagged and review clusters.
    hops : int, default 4
        Edges a neighbourhood reaches out from the seeds. In the account–identifier graph two
        hops lead from an account to the accounts it shares an identifier with, so 4 reaches
        accounts two shared identifiers away.
    exclude : numpy.ndarray of bool, shape (n,), optional
        Nodes left out and never traversed: super-node identifiers, which carry no link.
    whole_graph_max_nodes : int, default 200000
        When at most this many nodes remain after ``exclude``, all of them are returned.

    Returns
    -------
    numpy.ndarray of int64
        Sorted node indices; embed ``adjacency[nodes][:, nodes]``.

    Raises
    ------
    ValueError
        If a mask does not have one entry per node.

    Notes
    -----
    Breadth-first over CSR rows: O(edges of the reached nodes).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> path = sp.diags([1, 1, 1], 1, shape=(4, 4)); path = (path + path.T).tocsr()
    >>> candidate_subgraph(path, np.array([1, 0, 0, 0], bool), hops=2, whole_graph_max_nodes=2)
    array([0, 1, 2])
    """
    graph = _as_csr(adjacency)
    n = graph.shape[0]
    seeds = np.asarray(seeds, dtype=bool)
    keep = np.ones(n, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    if seeds.shape != (n,) or keep.shape != (n,):
        raise ValueError(f"seeds and exclude need one entry per node ({n})")
    if int(keep.sum()) <= whole_graph_max_nodes:
        return np.flatnonzero(keep).astype(np.int64)
    reached = seeds & keep
    frontier = np.flatnonzero(reached)
    for _ in range(hops):
        if len(frontier) == 0:
            break
        rows = graph[frontier]
        neighbours = np.unique(rows.indices)
        fresh = neighbours[keep[neighbours] & ~reached[neighbours]]
        reached[fresh] = True
        frontier = fresh
    nodes = np.flatnonzero(reached).astype(np.int64)
    logger.info(
        "candidate subgraph: %d of %d nodes (%d seeds, %d hops)",
        len(nodes),
        n,
        int(seeds.sum()),
        hops,
    )
    return nodes


def embed(
    adjacency: SparseMatrix,
    nodes: Sequence[int] | np.ndarray | None = None,
    *,
    settings: EmbedSettings | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Embed a graph with the method and parameters of :class:`~linker.settings.EmbedSettings`.

    Parameters
    ----------
    adjacency : scipy sparse matrix, shape (n, n)
        Symmetric adjacency, e.g. a candidate subgraph of :func:`bipartite_adjacency`.
    nodes : sequence of int, optional
        Rows of the result (default: all nodes in order).
    settings : EmbedSettings, optional
        Defaults to ``EmbedSettings()``.
    seed : int, default 0

    Returns
    -------
    numpy.ndarray of float32, shape (len(nodes), settings.dimensions)

    Raises
    ------
    SettingsError, EnvironmentProblem
        As :func:`node2vec_embed` and :func:`fastrp_embed`.

    Notes
    -----
    See :func:`node2vec_embed` and :func:`fastrp_embed` for the complexity.
    """
    settings = (settings or EmbedSettings()).validate_section()
    if settings.method == "fastrp":
        return fastrp_embed(
            adjacency,
            nodes,
            dimensions=settings.dimensions,
            iteration_weights=settings.fastrp_weights,
            normalization_strength=settings.fastrp_normalization_strength,
            weighted=settings.weighted,
            seed=seed,
        )
    return node2vec_embed(
        adjacency,
        nodes,
        dimensions=settings.dimensions,
        walks_per_node=settings.walks_per_node,
        walk_length=settings.walk_length,
        window=settings.window,
        p=settings.p,
        q=settings.q,
        negative=settings.negative,
        epochs=settings.epochs,
        workers=settings.workers,
        alpha=settings.alpha,
        min_alpha=settings.min_alpha,
        trainer=settings.trainer,
        weighted=settings.weighted,
        seed=seed,
    )
