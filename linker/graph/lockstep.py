"""Lockstep synchrony between accounts, in the style of SynchroTrap and CopyCatch.

Each account's *actions* are the set of (time bucket, prompt template) and the set of (time
bucket, model) tokens of its events; each set is compared separately. Accounts that one
controller dispatches act in the same buckets, so their action sets overlap far more than
strangers' do. Synchrony is measured at several
bucket widths (60 and 240 minutes by default), so that tens of minutes of jitter do not
hide it.

All pairs are never compared. Each account's token set gets a MinHash signature (one pass
over its tokens per hash function); locality-sensitive hashing bands the signatures, and
only accounts that collide in some band are compared (their Jaccard similarity is estimated
from the signatures). A band bucket with more than ``max_bucket`` accounts is cut into
seeded random blocks of that size, so the comparisons grow at most linearly with the
accounts: ``accounts × bands × max_bucket`` in the worst case. See docs/behaviour.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from linker.graph.behaviour import event_codes, sorted_unique

__all__ = ["LockstepResult", "action_tokens", "jaccard", "lockstep_pairs", "minhash_signatures"]

logger = logging.getLogger(__name__)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast, well-spread 64-bit hash of integer keys."""
    z = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)


@dataclass(frozen=True)
class LockstepResult:
    """Synchronised account pairs and what it cost to find them.

    Attributes
    ----------
    pairs : pandas.DataFrame
        ``a``, ``b`` (account rows, ``a < b``), ``jaccard`` (the highest estimate over the
        bucket widths and action kinds), ``bucket_minutes`` and ``action`` (``prompt`` or
        ``model``) that gave it; one row per pair at or above the threshold, sorted by (a, b).
    comparisons : int
        Candidate pairs whose similarity was estimated (over all widths).
    tokens : int
        Distinct (account, token) memberships over all widths.
    participants : int
        Accounts with enough tokens to take part at some width.
    per_width : dict
        Per width (both action kinds): ``comparisons``, ``pairs`` (before merging pairs
        found at several widths), ``participants``.
    """

    pairs: pd.DataFrame
    comparisons: int
    tokens: int
    participants: int
    per_width: dict[int, dict[str, int]] = field(default_factory=dict)


def action_tokens(
    codes: pd.DataFrame, bucket_minutes: int, kinds: tuple[str, ...] = ("prompt", "model")
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (account, action token) memberships at one bucket width.

    Parameters
    ----------
    codes : pandas.DataFrame
        From :func:`linker.graph.behaviour.event_codes`.
    bucket_minutes : int
    kinds : tuple of str, default ("prompt", "model")
        Which actions: (bucket, template) and/or (bucket, model).

    Returns
    -------
    (accounts, tokens) : tuple of numpy.ndarray
        Parallel int64 / uint64 arrays, grouped by account (ascending); a token hashes
        (bucket, template) or (bucket, model).

    Notes
    -----
    O(m log m) for m events.
    """
    acc = codes["acc"].to_numpy()
    bucket = (codes["t"].to_numpy() // (60 * int(bucket_minutes))).astype(np.uint64)
    parts = []
    for kind, column in ((1, "prompt"), (2, "model")):
        if column not in kinds:
            continue
        value = codes[column].to_numpy()
        ok = value >= 0
        key = (bucket[ok] << np.uint64(24)) ^ (
            (value[ok].astype(np.uint64) << np.uint64(2)) | np.uint64(kind)
        )
        parts.append((acc[ok], _mix64(key)))
    accounts = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    tokens = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.uint64)
    # Distinct (account, token): unique over one 64-bit hash of both (collisions are
    # negligible at 2^-64 per pair), then back to account order. Each half is already in
    # account order, so the stable sort merges two runs.
    member = _mix64(tokens ^ (accounts.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    first = np.sort(np.unique(member, return_index=True)[1])
    a, t = accounts[first], tokens[first]
    order = np.argsort(a, kind="stable")
    return a[order].astype(np.int64), t[order]


def minhash_signatures(
    accounts: np.ndarray, tokens: np.ndarray, n_accounts: int, n_hashes: int, *, seed: int = 0
) -> np.ndarray:
    """MinHash signatures of token sets.

    Parameters
    ----------
    accounts, tokens : numpy.ndarray
        Memberships sorted by account (from :func:`action_tokens`).
    n_accounts : int
    n_hashes : int
    seed : int, default 0

    Returns
    -------
    numpy.ndarray of uint32, shape (n_accounts, n_hashes)
        ``0xFFFFFFFF`` for accounts without tokens.

    Notes
    -----
    O(k m) for m memberships and k hash functions: per hash, one vectorised hash and one
    ``minimum.reduceat``.
    """
    sig = np.full((n_accounts, n_hashes), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    if len(accounts) == 0:
        return sig
    starts = np.r_[0, np.flatnonzero(np.diff(accounts)) + 1]
    owners = accounts[starts]
    # Tokens are already well-mixed 64-bit hashes, so multiply-shift by a random odd
    # multiplier is a good enough family of hash functions (one multiply per token and hash).
    multipliers = _mix64(np.arange(n_hashes, dtype=np.uint64) + np.uint64(seed) * np.uint64(7919))
    multipliers |= np.uint64(1)
    for k in range(n_hashes):
        with np.errstate(over="ignore"):
            hashed = ((tokens * multipliers[k]) >> np.uint64(32)).astype(np.uint32)
        sig[owners, k] = np.minimum.reduceat(hashed, starts)
    return sig


def jaccard(
    first: set[object] | frozenset[object], second: set[object] | frozenset[object]
) -> float:
    """Exact Jaccard similarity of two sets (0 for two empty sets).

    Examples
    --------
    >>> jaccard({1, 2, 3}, {2, 3, 4})
    0.5
    """
    union = len(first | second)
    return len(first & second) / union if union else 0.0


def _pairs_within_blocks(members: np.ndarray, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of ``members`` that share a ``block`` label (both arrays sorted by block)."""
    if len(block) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(block)) + 1]
    ends = np.r_[starts[1:], len(block)]
    end_of = np.repeat(ends, ends - starts)
    position = np.arange(len(block))
    partners = end_of - position - 1
    total = int(partners.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    left = np.repeat(position, partners)
    offsets = np.arange(total) - np.repeat(np.cumsum(partners) - partners, partners)
    right = left + 1 + offsets
    return members[left], members[right]


def lockstep_pairs(
    events: pd.DataFrame,
    account_ids: pd.Series | np.ndarray,
    *,
    bucket_minutes: tuple[int, ...] = (60, 240),
    min_jaccard: float | dict[int, float] = 0.3,
    model_min_jaccard: float | None = None,
    min_tokens: int = 8,
    n_hashes: int = 24,
    band_rows: int = 2,
    max_bucket: int = 30,
    seed: int = 0,
) -> LockstepResult:
    """Pairs of accounts acting in lockstep.

    Parameters
    ----------
    events : pandas.DataFrame
        Validated events (``account_id``, ``ts``, ``model``, ``prompt_fingerprint``), or the
        coded frame from :func:`linker.graph.behaviour.event_codes` (columns ``acc``, ``t``).
    account_ids : array-like
        The accounts; ``a`` and ``b`` of the result index into it.
    bucket_minutes : tuple of int, default (60, 240)
        Bucket widths.
    min_jaccard : float or dict, default 0.3
        Pairs with an estimated Jaccard at least this (per width when a dict) are kept.
    model_min_jaccard : float, optional
        The threshold of (bucket, model) sets, when stricter: every account uses one of a
        few models, so heavy users meet by chance more often than on templates.
    min_tokens : int, default 8
        Accounts with fewer distinct tokens at a width take no part in it: two accounts with
        one event each in the same hour are not "in lockstep".
    n_hashes : int, default 24
        MinHash functions (the estimate's standard error is about sqrt(J(1-J)/k)).
    band_rows : int, default 2
        Rows per LSH band; ``n_hashes // band_rows`` bands. A pair with Jaccard J becomes a
        candidate with probability ``1 - (1 - J**r)**b`` (J = 0.3: 68%, J = 0.5: 97%, J = 0.1:
        11% with the defaults); a ring member has hundreds of synchronised partners, so
        finding a fraction of them suffices.
    max_bucket : int, default 30
        Band buckets larger than this are cut into seeded random blocks of this size.
    seed : int, default 0
        Seeds the hash functions and the block cuts.

    Returns
    -------
    LockstepResult

    Notes
    -----
    Time O(2w (k m + b n B)) and memory O(k n + pairs) for w widths, m events, n accounts,
    k hashes, b bands and block size B: near-linear in the events. ``bench/lockstep.py``
    measures it.

    Examples
    --------
    >>> import pandas as pd
    >>> ts = pd.date_range("2026-07-01", periods=20, freq="D", tz="UTC")
    >>> ev = pd.DataFrame({"account_id": ["a"] * 20 + ["b"] * 20 + ["c"] * 20,
    ...     "ts": list(ts) * 2 + list(ts + pd.Timedelta(hours=7)),
    ...     "model": "m-1", "prompt_fingerprint": "pf_x"})
    >>> r = lockstep_pairs(ev, ["a", "b", "c"], bucket_minutes=(60,))
    >>> r.pairs[["a", "b", "jaccard"]].values.tolist()
    [[0, 1, 1.0]]
    """
    ids = pd.Series(account_ids).astype("string")
    n_acc = len(ids)
    codes = events if {"acc", "t"} <= set(events.columns) else event_codes(events, ids)
    thresholds = (
        dict(min_jaccard)
        if isinstance(min_jaccard, dict)
        else dict.fromkeys(bucket_minutes, float(min_jaccard))
    )
    n_bands = max(1, n_hashes // band_rows)
    rng = np.random.default_rng(seed)
    found: list[pd.DataFrame] = []
    per_width: dict[int, dict[str, int]] = {}
    comparisons = 0
    memberships = 0
    participating = np.zeros(n_acc, dtype=bool)
    for width, action in [(w, k) for w in bucket_minutes for k in ("prompt", "model")]:
        # Templates and models are separate action sets: an account that works other
        # templates than its ring (or none) is still on the ring's clock and models.
        accounts, tokens = action_tokens(codes, width, (action,))
        memberships += len(accounts)
        size = np.bincount(accounts, minlength=n_acc)
        keep = size[accounts] >= min_tokens
        accounts, tokens = accounts[keep], tokens[keep]
        live = np.flatnonzero(size >= min_tokens)
        participating[live] = True
        sig = minhash_signatures(
            accounts, tokens, n_acc, n_hashes, seed=seed + width + (0 if action == "model" else 7)
        )[live]
        left_all, right_all = [], []
        for band in range(n_bands):
            cols = sig[:, band * band_rows : (band + 1) * band_rows].astype(np.uint64)
            key = np.zeros(len(live), dtype=np.uint64)
            for c in range(cols.shape[1]):
                key = _mix64(key ^ cols[:, c])
            # Cut big buckets into random blocks: sort by (bucket, random), then number the
            # members of each bucket and divide by the block size.
            noise = rng.random(len(live))
            order = np.lexsort((noise, key))
            sorted_key = key[order]
            starts = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
            rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            bucket_no = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
            block = bucket_no.astype(np.int64) * np.int64(1 << 20) + rank // max_bucket
            left, right = _pairs_within_blocks(order, block)
            left_all.append(left)
            right_all.append(right)
        left = np.concatenate(left_all) if left_all else np.zeros(0, np.int64)
        right = np.concatenate(right_all) if right_all else np.zeros(0, np.int64)
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        pair_key = sorted_unique(lo.astype(np.int64) * np.int64(len(live)) + hi)
        lo = pair_key // np.int64(max(len(live), 1))
        hi = pair_key % np.int64(max(len(live), 1))
        estimate = np.zeros(len(pair_key))
        chunk = 500_000
        for s in range(0, len(pair_key), chunk):
            estimate[s : s + chunk] = (sig[lo[s : s + chunk]] == sig[hi[s : s + chunk]]).mean(
                axis=1
            )
        comparisons += len(pair_key)
        threshold = thresholds.get(width, 1.0)
        if action == "model" and model_min_jaccard is not None:
            threshold = max(threshold, model_min_jaccard)
        good = estimate >= threshold
        found.append(
            pd.DataFrame(
                {
                    "a": live[lo[good]],
                    "b": live[hi[good]],
                    "jaccard": estimate[good],
                    "bucket_minutes": np.full(int(good.sum()), width, dtype=np.int64),
                    "action": action,
                }
            )
        )
        stats = per_width.setdefault(int(width), {"comparisons": 0, "pairs": 0, "participants": 0})
        stats["comparisons"] += len(pair_key)
        stats["pairs"] += int(good.sum())
        stats["participants"] = max(stats["participants"], len(live))
        logger.debug("lockstep %d min %s: %d comparisons", width, action, len(pair_key))
    pairs = (
        pd.concat(found, ignore_index=True)
        if found
        else pd.DataFrame({"a": [], "b": [], "jaccard": [], "bucket_minutes": [], "action": []})
    )
    # One row per pair: its strongest width (ties: the narrower width).
    pairs = pairs.sort_values(
        ["a", "b", "jaccard", "bucket_minutes"], ascending=[True, True, False, True]
    ).drop_duplicates(["a", "b"])
    pairs = pairs.astype({"a": np.int64, "b": np.int64, "jaccard": np.float64})
    pairs["bucket_minutes"] = pairs["bucket_minutes"].astype(np.int64)
    pairs["action"] = pairs["action"].astype("string")
    return LockstepResult(
        pairs=pairs.reset_index(drop=True),
        comparisons=int(comparisons),
        tokens=int(memberships),
        participants=int(participating.sum()),
        per_width=per_width,
    )
