"""Public values: identifiers that many accounts share without being tied to each other.

A value shared by many accounts is evidence of common control only when its holders are also
tied to each other by *independent* evidence. A ring's private prompt template is sent by
accounts that also share its proxy exits, its virtual cards and its mailbox patterns; an
SDK's default system prompt, a carrier's CGNAT address or a VPN exit is shared by strangers
who share nothing else. This module tells the two apart with a null model computed on the
data at hand, with no count threshold:

1. For a value ``v`` held by ``n_v`` accounts and an identifier ``u`` of another *family*
   (network, payment, e-mail, device, prompt: a proxy exit is not corroborated by another
   exit of the same pool) held by ``n_u``, the number of accounts holding both is about
   Poisson with mean ``n_v × n_u / N`` when holding ``v`` says nothing about holding ``u``.
   ``u`` *corroborates* ``v`` when at least two holders share it and the Poisson tail of the
   observed count is below ``alpha``.
2. The holders of ``v`` and the identifiers that corroborate it form a graph; a holder is
   *tied* when its component holds a real share of ``v``'s holders (``group_share``): a ring's
   template is sent by one group tied through its proxies and cards, while a popular
   template is also sent by families and offices, each tied within itself and to nothing
   else. ``v``'s *cohesion* is the share of its holders that are tied.
3. ``v`` is **public** when the data show that fewer than half of its holders are tied
   (``majority``): the binomial tail of its tied count under a half is below ``alpha``. Its
   sharing is then mostly coincidence, whatever its size.

The test runs in rounds: values found public in one round no longer corroborate others in
the next (a popular template must not vouch for a CGNAT address because the app's users
happen to be on mobile). A value held by too few accounts for the binomial test (fewer than
``log2(1 / alpha)``, 14 at the default) is never public: that nothing corroborates two
holders of a proxy exit is no evidence that they are strangers (a sparse ring's members share
a device here, an exit there). Such values are weighed by their rarity, and what keeps a
coincidence (two namesakes' mailbox stem) from linking strangers into a ring is downstream:
membership needs two families of values the cluster owns, and a suspension the account's own
evidence. Public values link nobody; they stay in the graph as features. Values held by many
accounts are judged on a deterministic sample of their holders, which keeps the cost
near-linear.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.special import bdtr, gammainc

__all__ = ["PublicTest", "public_values"]

logger = logging.getLogger(__name__)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class PublicTest:
    """The outcome of :func:`public_values`.

    Attributes
    ----------
    cohesion : numpy.ndarray
        Per identifier, the share of its (sampled) holders tied to another holder by an
        identifier that corroborates it; ``nan`` for identifiers not tested.
    public : numpy.ndarray of bool
        Identifiers whose holders are mostly not tied to each other.
    tested : numpy.ndarray of bool
        Identifiers that were tested.
    """

    cohesion: np.ndarray
    public: np.ndarray
    tested: np.ndarray


def _mix(keys: np.ndarray) -> np.ndarray:
    """splitmix64 of integer keys, as uniform floats in [0, 1)."""
    z = keys.astype(np.uint64) + _GOLDEN
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _sampled(
    incidence: sp.csc_matrix, columns: np.ndarray, sample: int, seed: int
) -> sp.csc_matrix:
    """The given columns, each cut to about ``sample`` holders chosen by a seeded hash."""
    sub = incidence[:, columns].tocoo()
    n = np.bincount(sub.col, minlength=len(columns)).astype(np.float64)
    keep_share = np.minimum(1.0, sample / np.maximum(n, 1.0))
    keys = sub.row.astype(np.uint64) * np.uint64(0x100000001B3) ^ (
        columns[sub.col].astype(np.uint64) + np.uint64(seed)
    )
    keep = _mix(keys) < keep_share[sub.col]
    return sp.csc_matrix(
        (np.ones(int(keep.sum())), (sub.row[keep], sub.col[keep])),
        shape=(incidence.shape[0], len(columns)),
    )


def _cohesion(
    holders: sp.csc_matrix,
    evidence: sp.csr_matrix,
    evidence_n: np.ndarray,
    n_accounts: int,
    alpha: float,
    group_share: float,
    budget: int = 1 << 24,
) -> tuple[np.ndarray, np.ndarray]:
    """Per tested column, how many of its (sampled) holders are tied, and how many it has.

    Works on blocks of columns whose holders' evidence memberships total about ``budget``, so
    memory stays bounded whatever the sizes.
    """
    degree = np.diff(evidence.indptr)
    n_cols = holders.shape[1]
    n_v = np.diff(holders.indptr).astype(np.float64)
    work = np.add.reduceat(degree[holders.indices], holders.indptr[:-1]) if holders.nnz else None
    per_col = np.zeros(n_cols) if work is None else np.where(n_v > 0, work, 0).astype(np.float64)
    cuts = np.searchsorted(np.cumsum(per_col), np.arange(budget, per_col.sum() + budget, budget))
    edges = np.unique(np.r_[0, np.minimum(cuts, n_cols), n_cols])
    tied = np.zeros(n_cols)
    for start, stop in itertools.pairwise(edges):
        block = holders[:, start:stop]
        tied[start:stop] = _tied(block, evidence, evidence_n, n_accounts, alpha, group_share)
    return tied, n_v


def _tied(
    holders: sp.csc_matrix,
    evidence: sp.csr_matrix,
    evidence_n: np.ndarray,
    n_accounts: int,
    alpha: float,
    group_share: float,
) -> np.ndarray:
    """Per column of ``holders``: how many of its holders belong to a group of holders tied
    together by corroborating identifiers, holding at least ``group_share`` of them."""
    overlap = (holders.T.tocsr() @ evidence).tocsr()
    overlap.sum_duplicates()
    n_v = np.diff(holders.indptr).astype(np.float64)
    rows = np.repeat(np.arange(overlap.shape[0]), np.diff(overlap.indptr))
    mean = n_v[rows] * evidence_n[overlap.indices] / float(n_accounts)
    tail = gammainc(overlap.data, mean)  # P(Poisson(mean) >= observed)
    strong = (overlap.data >= 2) & (tail < alpha)
    n_u = np.int64(evidence.shape[1])
    corroborating = np.sort(rows[strong].astype(np.int64) * n_u + overlap.indices[strong])
    if len(corroborating) == 0:
        return np.zeros(holders.shape[1])
    # Each membership (holder, column) against the holder's evidence columns.
    coo = holders.tocoo()
    start, stop = evidence.indptr[coo.row], evidence.indptr[coo.row + 1]
    length = (stop - start).astype(np.int64)
    member = np.repeat(np.arange(len(coo.row)), length)
    offset = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    u = evidence.indices[np.repeat(start, length) + offset]
    keys = coo.col[member].astype(np.int64) * n_u + u
    # A hash lookup: the keys are many and random, and a binary search per key misses the
    # cache at every step. The corroborating keys are distinct (one per overlap entry).
    at = pd.Index(corroborating).get_indexer(keys)
    hit = at >= 0
    # Holders and corroborating identifiers as one graph per value: a holder belongs to the
    # component of everything it is tied through. Only components holding a real share of
    # the value's holders count: a popular template is also sent by a few families and
    # offices, each tied within itself and unrelated to the rest.
    n_members = len(coo.row)
    graph = sp.csr_matrix(
        (np.ones(int(hit.sum())), (member[hit], n_members + at[hit])),
        shape=(n_members + len(corroborating), n_members + len(corroborating)),
    )
    _, label = connected_components(graph, directed=False)
    label = label[:n_members]
    holders_in = np.bincount(label, minlength=int(label.max()) + 1 if n_members else 0)
    n_holders = np.bincount(coo.col, minlength=holders.shape[1])
    least = np.maximum(2.0, np.ceil(group_share * n_holders))[coo.col]
    corroborated = np.zeros(n_members, dtype=bool)
    corroborated[member[hit]] = True
    tied_member = (holders_in[label] >= least) & corroborated
    return np.bincount(coo.col, weights=tied_member.astype(np.float64), minlength=holders.shape[1])


def _decided(
    tied: np.ndarray, judged: np.ndarray, tested: np.ndarray, alpha: float, majority: float
) -> np.ndarray:
    """Tested values whose own holders show them public: the share tied is below the
    majority, with a binomial tail under alpha."""
    below = bdtr(tied, np.maximum(judged, 1.0).astype(np.int64), majority)
    return np.asarray(tested & (below < alpha), dtype=bool)


def public_values(
    incidence: sp.csr_matrix,
    family: np.ndarray,
    linkable: np.ndarray,
    *,
    alpha: float = 1e-4,
    majority: float = 0.5,
    group_share: float = 0.05,
    min_accounts: int = 2,
    sample: int = 2048,
    rounds: int = 5,
    seed: int = 42,
    only: np.ndarray | None = None,
    prior: PublicTest | None = None,
) -> PublicTest:
    """Which linkable identifiers are public: shared by accounts not otherwise tied.

    Parameters
    ----------
    incidence : scipy.sparse.csr_matrix
        Accounts x identifiers incidence matrix.
    family : numpy.ndarray of int
        Per identifier, its kind's family; evidence of the same family does not count.
    linkable : numpy.ndarray of bool
        Identifiers of kinds that can link accounts (a prior above 0); only these are tested
        and only these corroborate.
    alpha : float, default 1e-4
        Poisson tail below which a co-held identifier corroborates a value.
    majority : float, default 0.5
        A value is public when the share of its holders that are tied is below this, with a
        binomial tail under ``alpha``.
    group_share : float, default 0.05
        A holder is tied when it belongs to a group of holders, linked through corroborating
        identifiers, of at least this share of the holders (and at least 3).
    min_accounts : int, default 2
        Values held by fewer accounts are not tested.
    sample : int, default 2048
        Values held by more accounts are judged on about this many holders, chosen by a
        seeded hash (deterministic).
    rounds : int, default 5
        Rounds of the test; public values of a round corroborate nothing in the next.
    seed : int, default 42
    only : numpy.ndarray of bool, optional
        Test only these identifiers (``linker update``: those whose holders changed); the
        others keep their outcome in ``prior``.
    prior : PublicTest, optional
        The outcome kept for the identifiers outside ``only`` (required with it).

    Returns
    -------
    PublicTest
        With ``only``, ``tested`` marks the identifiers tested in this call.

    Notes
    -----
    Per round and family, one sparse product of the sampled holders with the other
    families' evidence columns: O(sum over sampled memberships of the holder's evidence
    degree).

    Examples
    --------
    Value 0 is held by accounts 0-3, which are tied to each other through value 1 (another
    family): it is not public. Value 2 is held by accounts 0, 4 and 5, of whom no two share
    anything else: it is.

    >>> m = sp.csr_matrix(np.array(
    ...     [[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=float))
    >>> test = public_values(m, np.array([0, 1, 0]), np.ones(3, dtype=bool), alpha=1.0)
    >>> test.public.tolist(), test.cohesion.tolist()
    ([False, False, True], [1.0, 1.0, 0.0])
    """
    n_acc, n_ident = incidence.shape
    csc = incidence.tocsc()
    counts = np.diff(csc.indptr).astype(np.float64)
    tested = linkable & (counts >= min_accounts)
    cohesion = np.full(n_ident, np.nan)
    tied = np.zeros(n_ident)
    judged = np.zeros(n_ident)
    public = np.zeros(n_ident, dtype=bool)
    fixed = np.zeros(n_ident, dtype=bool)
    if only is not None:
        if prior is None:
            raise ValueError("public_values(only=...) needs the prior outcome")
        tested &= np.asarray(only, dtype=bool)
        fixed = np.asarray(prior.public, dtype=bool) & ~tested
        cohesion = np.where(tested, np.nan, prior.cohesion)
        public = fixed.copy()
    for round_ in range(rounds):
        previous = public.copy()
        for fam in np.unique(family[tested]):
            values = np.flatnonzero(tested & (family == fam))
            sources = np.flatnonzero(linkable & (family != fam) & (counts >= 2) & ~previous)
            if len(values) == 0:
                continue
            if len(sources) == 0:
                tied[values], judged[values] = 0.0, counts[values]
                continue
            holders = _sampled(csc, values, sample, seed + round_)
            evidence = csc[:, sources].tocsr()
            tied[values], judged[values] = _cohesion(
                holders, evidence, counts[sources], n_acc, alpha, group_share
            )
        cohesion[tested] = tied[tested] / np.maximum(judged[tested], 1.0)
        public = _decided(tied, judged, tested, alpha, majority) | fixed
        logger.debug("public values, round %d: %d of %d tested", round_, public.sum(), tested.sum())
        if np.array_equal(public, previous):
            break
    return PublicTest(cohesion=cohesion, public=public, tested=tested)
