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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from linker.graph.behaviour import coded_events

__all__ = [
    "LockstepResult",
    "PassSignatures",
    "action_tokens",
    "jaccard",
    "lockstep_pairs",
    "lockstep_update",
    "minhash_signatures",
]

logger = logging.getLogger(__name__)


_KINDS = {"prompt": 1, "model": 2}
_MIX_BLOCK = 1 << 16
"""Keys per block of the splitmix64 finaliser."""
_MINHASH_BLOCK = 1 << 15
"""Tokens per block of MinHash work (about 256 KB of hashes)."""
_PAIR_BLOCK = 1 << 16
"""Candidate pairs per block when signature rows are gathered."""
_VALUE_BITS = 22
"""Codes below ``2**22`` keep ``value << 2`` clear of the bucket's bits (``<< 24``) in a
token's pre-hash key, so distinct (bucket, value) pairs give distinct keys."""


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast, well-spread 64-bit hash of integer keys.

    Computed in place on a copy, in blocks that stay in the CPU cache.
    """
    z = np.array(x, dtype=np.uint64)
    scratch = np.empty(min(len(z), _MIX_BLOCK), dtype=np.uint64) if z.ndim == 1 else None
    if scratch is None:
        return _mix64_block(z, np.empty_like(z))
    for s in range(0, len(z), _MIX_BLOCK):
        block = z[s : s + _MIX_BLOCK]
        _mix64_block(block, scratch[: len(block)])
    return z


def _mix64_block(z: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            np.right_shift(z, np.uint64(shift), out=scratch)
            z ^= scratch
            z *= np.uint64(multiplier)
        np.right_shift(z, np.uint64(31), out=scratch)
        z ^= scratch
    return z


@dataclass(frozen=True)
class PassSignatures:
    """The MinHash signatures of one pass (bucket width and action kind): what
    :func:`lockstep_update` needs of the accounts whose events did not change.

    Attributes
    ----------
    width : int
        Bucket minutes.
    action : str
        ``prompt`` or ``model``.
    accounts : numpy.ndarray of int64
        The accounts that took part (enough distinct tokens), ascending.
    signatures : numpy.ndarray of uint32, shape (len(accounts), n_hashes)
    """

    width: int
    action: str
    accounts: np.ndarray
    signatures: np.ndarray


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
    signatures : tuple of PassSignatures
        Each pass's signatures, in pass order (widths, then ``prompt`` before ``model``).
    """

    pairs: pd.DataFrame
    comparisons: int
    tokens: int
    participants: int
    per_width: dict[int, dict[str, int]] = field(default_factory=dict)
    signatures: tuple[PassSignatures, ...] = ()


def _token_hashes(
    bucket: np.ndarray, value: np.ndarray, kind: int, value_keys: np.ndarray | None = None
) -> np.ndarray:
    """The 64-bit token of each (bucket, value) action of one kind: a hash of the bucket and
    of the value's key (``value_keys[code]``) or, without keys, of its code."""
    if value_keys is not None:
        key = (bucket.astype(np.uint64) << np.uint64(2)) | np.uint64(kind)
        key = _mix64(key)
        key ^= value_keys[value]
        return _mix64(key)
    key = (bucket.astype(np.uint64) << np.uint64(24)) ^ (
        (value.astype(np.uint64) << np.uint64(2)) | np.uint64(kind)
    )
    return _mix64(key)


def _value_keys(codes: np.ndarray, values: pa.Array) -> np.ndarray:
    """Per code of ``values``, a 64-bit hash of the value's text (of the codes that occur in
    ``codes``; the others are 0): a key that does not depend on how codes were numbered."""
    used = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(values)))
    keys = np.zeros(len(values), dtype=np.uint64)
    if len(used):
        text = pd.Series(pd.arrays.ArrowExtensionArray(values.take(pa.array(used))))
        keys[used] = pd.util.hash_pandas_object(text, index=False).to_numpy(np.uint64)
    return keys


@dataclass(frozen=True)
class _Actions:
    """Distinct (account, bucket, value) actions, sorted, packed into one int64 each:
    account, bucket offset and value in fields of ``bucket_bits`` and ``value_bits``."""

    keys: np.ndarray
    bucket_min: int
    bucket_bits: int
    value_bits: int

    def unpack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        value = self.keys & np.int64((1 << self.value_bits) - 1)
        rest = self.keys >> np.int64(self.value_bits)
        bucket = (rest & np.int64((1 << self.bucket_bits) - 1)) + np.int64(self.bucket_min)
        return rest >> np.int64(self.bucket_bits), bucket, value

    def tokens(
        self, kind: int, value_keys: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        acc, bucket, value = self.unpack()
        return acc, _token_hashes(bucket, value, kind, value_keys)


def _sorted_unique_inplace(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an int array the caller gives up (it is
    sorted in place, saving a copy)."""
    keys.sort(kind="stable")  # equal values are interchangeable; timsort uses the runs
    if len(keys) < 2:
        return keys
    first = np.empty(len(keys), dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first]


def _distinct_actions(
    acc: np.ndarray,
    bucket: np.ndarray,
    value: np.ndarray,
    n_accounts: int,
    ok: np.ndarray | None = None,
) -> _Actions | None:
    """Distinct (account, bucket, value) triples (of the rows where ``ok``) by one sort of
    packed int64 keys; ``None`` when the key would not fit in 63 bits or the values in
    :data:`_VALUE_BITS`."""
    if len(acc) == 0 or (ok is not None and not ok.any()):
        return _Actions(np.zeros(0, np.int64), 0, 0, 0)
    low = int(bucket.min())
    bucket_bits = (int(bucket.max()) - low).bit_length()
    value_bits = int(value.max()).bit_length()
    account_bits = max(n_accounts - 1, 0).bit_length()
    if value_bits > _VALUE_BITS or account_bits + bucket_bits + value_bits > 62:
        return None
    keys = acc << np.int64(bucket_bits + value_bits)
    keys |= (bucket - np.int64(low)) << np.int64(value_bits)
    keys |= value
    if ok is not None:
        keys = keys[ok]  # rows without a value were packed with garbage: drop them
    return _Actions(_sorted_unique_inplace(keys), low, bucket_bits, value_bits)


def _hashed_tokens(
    acc: np.ndarray,
    bucket: np.ndarray,
    value: np.ndarray,
    kind: int,
    value_keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (account, token) by a hash of both: the general path, for codes too large
    to pack (collisions are negligible at 2^-64 per pair)."""
    tokens = _token_hashes(bucket, value, kind, value_keys)
    member = _mix64(tokens ^ (acc.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    first = np.sort(np.unique(member, return_index=True)[1])
    a, t = acc[first], tokens[first]
    order = np.argsort(a, kind="stable")
    return a[order].astype(np.int64), t[order]


class _Memberships:
    """(accounts, tokens) of one action kind, width after width, in the order of ``widths``.

    A width that is a multiple of an earlier one is derived from that width's distinct
    actions (``t // (60 w) == (t // (60 v)) // (w / v)``), not from the events. Only what a
    later width needs is kept between calls, and the arrays returned are the caller's own,
    so a pass frees its memory as soon as the caller drops them.
    """

    def __init__(
        self,
        codes: pd.DataFrame,
        widths: tuple[int, ...],
        action: str,
        values: pa.Array | None = None,
    ) -> None:
        self.codes = codes
        self.action = action
        self.kind = _KINDS[action]
        self.value_keys = (
            None if values is None else _value_keys(codes[action].to_numpy(np.int64), values)
        )
        self.widths = [int(w) for w in widths]
        acc = codes["acc"].to_numpy(np.int64)
        self.n_accounts = max(
            int(codes.attrs.get("n_accounts", 0)), int(acc.max()) + 1 if len(acc) else 0
        )
        self.done: dict[int, _Actions] = {}

    def next(self) -> tuple[int, np.ndarray, np.ndarray]:
        width = self.widths.pop(0)
        later = self.widths
        finer = [w for w in self.done if width % w == 0]
        actions = self._derived(width, max(finer)) if finer else self._from_events(width)
        if actions is None:
            return width, *self._hashed(width, max(finer) if finer else None)
        if any(w % width == 0 and w != width for w in later):
            self.done[width] = actions
        self.done = {w: x for w, x in self.done.items() if any(u % w == 0 for u in later)}
        return width, *actions.tokens(self.kind, self.value_keys)

    def _event_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        acc = self.codes["acc"].to_numpy(np.int64)
        value = self.codes[self.action].to_numpy(np.int64)
        ok = value >= 0
        return acc, self.codes["t"].to_numpy(np.int64), value, None if ok.all() else ok

    def _from_events(self, width: int) -> _Actions | None:
        acc, t, value, ok = self._event_columns()
        return _distinct_actions(acc, t // np.int64(60 * width), value, self.n_accounts, ok)

    def _derived(self, width: int, base: int) -> _Actions | None:
        acc, bucket, value = self.done[base].unpack()
        bucket //= np.int64(width // base)
        return _distinct_actions(acc, bucket, value, self.n_accounts)

    def _hashed(self, width: int, base: int | None) -> tuple[np.ndarray, np.ndarray]:
        if base is not None:
            acc, bucket, value = self.done[base].unpack()
            bucket //= np.int64(width // base)
            return _hashed_tokens(acc, bucket, value, self.kind, self.value_keys)
        acc, t, value, ok = self._event_columns()
        if ok is not None:
            acc, t, value = acc[ok], t[ok], value[ok]
        return _hashed_tokens(acc, t // np.int64(60 * width), value, self.kind, self.value_keys)


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
    O(m log m) for m events: one sort of packed (account, bucket, value) keys per kind.
    """
    parts = [
        _Memberships(codes, (int(bucket_minutes),), kind).next()[1:]
        for kind in ("prompt", "model")
        if kind in kinds
    ]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    accounts = np.concatenate([p[0] for p in parts])
    tokens = np.concatenate([p[1] for p in parts])
    # The same (bucket, value) of two kinds never share a token (the kind is in the key).
    order = np.argsort(accounts, kind="stable")
    return accounts[order], tokens[order]


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
    # Blocks of whole accounts of about _MINHASH_BLOCK tokens: each block's hashes stay in
    # the CPU cache for all hash functions (2 to 3 times faster than whole-array passes).
    cuts = np.unique(np.r_[np.searchsorted(starts, np.arange(0, len(tokens), _MINHASH_BLOCK)), 0])
    cuts = np.r_[cuts[cuts < len(starts)], len(starts)]
    bounds = np.r_[starts, len(tokens)]
    buffer = np.empty(int(np.diff(bounds[cuts]).max()), dtype=np.uint64)
    for first, last in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        block = tokens[bounds[first] : bounds[last]]
        offsets = starts[first:last] - bounds[first]
        hashed = buffer[: len(block)]
        rows = owners[first:last]
        for k in range(n_hashes):
            with np.errstate(over="ignore"):
                np.multiply(block, multipliers[k], out=hashed)
            np.right_shift(hashed, np.uint64(32), out=hashed)
            sig[rows, k] = np.minimum.reduceat(hashed, offsets)
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


def _agreement(sig: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Number of signature positions on which rows ``lo`` and ``hi`` agree (int32).

    Rows are gathered in blocks into reused buffers. With a multiple of 8 hash functions
    (at most 255), the equality bytes of a row are summed as 64-bit words and the bytes of
    that sum added by one multiplication: several times faster than ``count_nonzero``.
    """
    n_hashes = sig.shape[1]
    agree = np.empty(len(lo), dtype=np.int32)
    width = min(_PAIR_BLOCK, len(lo))
    left = np.empty((width, n_hashes), dtype=sig.dtype)
    right = np.empty((width, n_hashes), dtype=sig.dtype)
    equal = np.empty((width, n_hashes), dtype=bool)
    words = n_hashes // 8 if n_hashes % 8 == 0 and n_hashes <= 255 else 0
    for s in range(0, len(lo), _PAIR_BLOCK):
        m = min(_PAIR_BLOCK, len(lo) - s)
        np.take(sig, lo[s : s + m], axis=0, out=left[:m])
        np.take(sig, hi[s : s + m], axis=0, out=right[:m])
        np.equal(left[:m], right[:m], out=equal[:m])
        if words:
            lanes = equal[:m].view(np.uint64)
            total = lanes[:, 0].copy()
            for w in range(1, words):
                total += lanes[:, w]
            with np.errstate(over="ignore"):
                total *= np.uint64(0x0101010101010101)
            agree[s : s + m] = total >> np.uint64(56)
        else:
            agree[s : s + m] = np.count_nonzero(equal[:m], axis=1)
    return agree


def _group_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose ``key`` some other row shares, grouped by key (rows ascending within a
    group), and their keys.

    One plain sort of the key with the row packed into its low bits: several times faster
    than an argsort. Two keys that differ only in those low bits fall into one segment of
    the sort; such rare segments are sorted again by the full key.
    """
    n = len(key)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    bits = max(int(n - 1).bit_length(), 1)
    low = np.uint64((1 << bits) - 1)
    packed = np.sort((key & ~low) | np.arange(n, dtype=np.uint64), kind="stable")
    rows = (packed & low).astype(np.int64)
    head = packed & ~low
    full = key[rows]
    same_head = head[1:] == head[:-1]
    mixed = same_head & (full[1:] != full[:-1])
    if mixed.any():
        segment = np.cumsum(np.r_[True, ~same_head])
        bad = np.zeros(segment[-1] + 1, dtype=bool)
        bad[segment[1:][mixed]] = True
        at = np.flatnonzero(bad[segment])
        order = np.lexsort((rows[at], full[at], segment[at]))
        rows[at], full[at] = rows[at][order], full[at][order]
    same = full[1:] == full[:-1]
    shared = np.r_[same, False] | np.r_[False, same]
    return rows[shared], full[shared]


def _band_key(sig: np.ndarray, band: int, band_rows: int) -> np.ndarray:
    """Each row's LSH key in ``band``: a hash of its signature's values in the band."""
    cols = sig[:, band * band_rows : (band + 1) * band_rows].astype(np.uint64)
    key = np.zeros(len(sig), dtype=np.uint64)
    for c in range(cols.shape[1]):
        key = _mix64(key ^ cols[:, c])
    return key


def _candidate_pairs(
    sig: np.ndarray, n_bands: int, band_rows: int, max_bucket: int, rng: np.random.Generator
) -> np.ndarray:
    """Distinct candidate pairs ``lo * n + hi`` (``lo < hi``, rows of ``sig``) from LSH bands.

    Rows whose band collides are candidates; a band bucket of more than ``max_bucket`` rows
    is cut into blocks of that size after a seeded random shuffle (one ``rng.random(n)``
    draw per band, whether or not a bucket is cut).
    """
    n = len(sig)
    found: list[np.ndarray] = []
    for band in range(n_bands):
        key = _band_key(sig, band, band_rows)
        noise = rng.random(n)
        order, sorted_key = _group_rows(key)
        if not len(order):
            continue
        starts = np.r_[0, np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1]
        sizes = np.diff(np.r_[starts, len(order)])
        bucket_no = np.repeat(np.arange(len(starts)), sizes)
        big = sizes[bucket_no] > max_bucket
        if big.any():
            # Cut big buckets into random blocks: within each, order by the noise (then by
            # row), number the members and divide by the block size. Small buckets are one
            # block, whatever their order.
            at = np.flatnonzero(big)
            members = order[at]
            order[at] = members[np.lexsort((members, noise[members], bucket_no[at]))]
        rank = np.arange(len(order)) - np.repeat(starts, sizes)
        block = bucket_no.astype(np.int64) * np.int64(1 << 20) + rank // max_bucket
        left, right = _pairs_within_blocks(order, block)
        pair = np.minimum(left, right)
        pair *= np.int64(n)
        pair += np.maximum(left, right)
        found.append(pair)
        del left, right
    if not found:
        return np.zeros(0, np.int64)
    keys = np.concatenate(found)
    del found
    return _sorted_unique_inplace(keys)


@dataclass(frozen=True)
class _Lsh:
    """How signatures are hashed, banded and compared."""

    n_hashes: int
    n_bands: int
    band_rows: int
    max_bucket: int
    min_tokens: int  # accounts with fewer distinct tokens at a width take no part in it


@dataclass(frozen=True)
class _Pass:
    """The pairs found at one bucket width on one action kind, and what the search cost."""

    width: int
    action: str
    pairs: pd.DataFrame
    n_compared: int
    n_memberships: int
    live: np.ndarray  # the accounts that took part
    sig: np.ndarray  # their signatures


def _action_streams(
    events: pd.DataFrame,
    account_ids: pd.Series | np.ndarray,
    bucket_minutes: tuple[int, ...],
    values: Mapping[str, pa.Array] | None,
) -> dict[str, _Memberships]:
    """One membership stream per action kind, from raw or already coded events (whose
    ``values`` are known or not)."""
    if {"acc", "t"} <= set(events.columns):
        codes = events
    else:
        codes, values = coded_events(events, pd.Series(account_ids).astype("string"))
    return {
        action: _Memberships(
            codes, tuple(bucket_minutes), action, None if values is None else values[action]
        )
        for action in _KINDS
    }


def _threshold(
    min_jaccard: float | dict[int, float],
    model_min_jaccard: float | None,
    width: int,
    action: str,
) -> float:
    """The estimated Jaccard a pair needs at ``width`` on ``action`` tokens."""
    threshold = min_jaccard.get(width, 1.0) if isinstance(min_jaccard, dict) else float(min_jaccard)
    if action == "model" and model_min_jaccard is not None:
        threshold = max(threshold, model_min_jaccard)
    return threshold


def _pass_signatures(
    stream: _Memberships, action: str, n_acc: int, lsh: _Lsh, seed: int
) -> tuple[int, np.ndarray, np.ndarray, int]:
    """``stream``'s next width, its live accounts (enough distinct tokens), their MinHash
    signatures and the memberships read.

    The token arrays are this function's own and are dropped before it returns, so that a
    pass's peak memory is its signatures and pairs, not its tokens.
    """
    width, accounts, tokens = stream.next()
    n_memberships = len(accounts)
    size = np.bincount(accounts, minlength=n_acc)
    live = np.flatnonzero(size >= lsh.min_tokens)
    keep = size[accounts] >= lsh.min_tokens
    # Signatures of the live accounts only, indexed by their position in ``live``.
    position = np.cumsum(size >= lsh.min_tokens) - 1
    sig = minhash_signatures(
        position[accounts[keep]],
        tokens[keep],
        len(live),
        lsh.n_hashes,
        seed=seed + width + (0 if action == "model" else 7),
    )
    return width, live, sig, n_memberships


def _enough(threshold: float, n_hashes: int) -> int:
    """The fewest agreeing hashes whose estimate (agree / n_hashes) reaches ``threshold``, in
    the same floating-point arithmetic as the estimate itself."""
    return int(np.searchsorted(np.arange(n_hashes + 1) / n_hashes >= threshold, True))


def _similar_pairs(
    sig: np.ndarray,
    live: np.ndarray,
    pair_key: np.ndarray,
    threshold: float,
    width: int,
    action: str,
    n_hashes: int,
) -> pd.DataFrame:
    """The candidate pairs (``lo * len(live) + hi``) whose estimated Jaccard reaches
    ``threshold``, as account rows."""
    lo, hi = np.divmod(pair_key, np.int64(max(len(live), 1)))
    agree = _agreement(sig, lo, hi)
    good = np.flatnonzero(agree >= _enough(threshold, n_hashes))
    return pd.DataFrame(
        {
            "a": live[lo[good]],
            "b": live[hi[good]],
            "jaccard": agree[good] / n_hashes,
            "bucket_minutes": np.full(len(good), width, dtype=np.int64),
            "action": action,
        }
    )


def _lockstep_pass(
    stream: _Memberships,
    action: str,
    threshold: float,
    n_acc: int,
    lsh: _Lsh,
    seed: int,
    rng: np.random.Generator,
) -> _Pass:
    """Pairs at ``stream``'s next width whose estimated Jaccard reaches ``threshold``."""
    width, live, sig, n_memberships = _pass_signatures(stream, action, n_acc, lsh, seed)
    pair_key = _candidate_pairs(sig, lsh.n_bands, lsh.band_rows, lsh.max_bucket, rng)
    pairs = _similar_pairs(sig, live, pair_key, threshold, width, action, lsh.n_hashes)
    logger.debug("lockstep %d min %s: %d comparisons", width, action, len(pair_key))
    return _Pass(width, action, pairs, len(pair_key), n_memberships, live, sig)


def _combine_passes(
    passes: list[_Pass], n_acc: int, carried: pd.DataFrame | None = None
) -> LockstepResult:
    """One row per pair over all passes and the ``carried`` pairs (its strongest width;
    ties: the narrower), and totals."""
    per_width: dict[int, dict[str, int]] = {}
    participating = np.zeros(n_acc, dtype=bool)
    for p in passes:
        participating[p.live] = True
        stats = per_width.setdefault(
            int(p.width), {"comparisons": 0, "pairs": 0, "participants": 0}
        )
        stats["comparisons"] += p.n_compared
        stats["pairs"] += len(p.pairs)
        stats["participants"] = max(stats["participants"], len(p.live))
    found = [p.pairs for p in passes] + ([] if carried is None else [carried])
    pairs = (
        pd.concat(found, ignore_index=True)
        if found
        else pd.DataFrame({"a": [], "b": [], "jaccard": [], "bucket_minutes": [], "action": []})
    )
    pairs = pairs.sort_values(
        ["a", "b", "jaccard", "bucket_minutes"], ascending=[True, True, False, True]
    ).drop_duplicates(["a", "b"])
    pairs = pairs.astype({"a": np.int64, "b": np.int64, "jaccard": np.float64})
    pairs["bucket_minutes"] = pairs["bucket_minutes"].astype(np.int64)
    pairs["action"] = pairs["action"].astype("string")
    return LockstepResult(
        pairs=pairs.reset_index(drop=True),
        comparisons=int(sum(p.n_compared for p in passes)),
        tokens=int(sum(p.n_memberships for p in passes)),
        participants=int(participating.sum()),
        per_width=per_width,
        signatures=tuple(PassSignatures(p.width, p.action, p.live, p.sig) for p in passes),
    )


def lockstep_pairs(
    events: pd.DataFrame,
    account_ids: pd.Series | np.ndarray,
    *,
    values: Mapping[str, pa.Array] | None = None,
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
    values : mapping of str to pyarrow.Array, optional
        With coded events, the value of each code (``prompt`` and ``model``, as
        :func:`linker.graph.behaviour.coded_events` gives them): tokens then hash the values'
        text, not their codes, so that the signatures do not depend on how the codes were
        numbered (:func:`lockstep_update` relies on it). Raw events always hash the text;
        coded events without ``values`` hash the codes.
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
    >>> r.pairs[["a", "b"]].values.tolist(), r.pairs["jaccard"].tolist()
    ([[0, 1]], [1.0])
    """
    n_acc = len(account_ids)
    streams = _action_streams(events, account_ids, bucket_minutes, values)
    lsh = _Lsh(n_hashes, max(1, n_hashes // band_rows), band_rows, max_bucket, min_tokens)
    rng = np.random.default_rng(seed)
    passes: list[_Pass] = []
    for width, action in [(w, k) for w in bucket_minutes for k in ("prompt", "model")]:
        # Templates and models are separate action sets: an account that works other
        # templates than its ring (or none) is still on the ring's clock and models.
        threshold = _threshold(min_jaccard, model_min_jaccard, width, action)
        stream = streams[action]
        passes.append(_lockstep_pass(stream, action, threshold, n_acc, lsh, seed, rng))
    return _combine_passes(passes, n_acc)


def _touched_candidates(
    sig: np.ndarray, is_touched: np.ndarray, lsh: _Lsh, block_key: np.ndarray, salt: int
) -> np.ndarray:
    """Distinct candidate pairs ``lo * n + hi`` (rows of ``sig``) with a touched row.

    As :func:`_candidate_pairs`, but only the band buckets holding a touched row are looked
    at, and only the blocks of a cut bucket that hold one: the work grows with the touched
    rows, not with all of them. A big bucket is cut after ordering its rows by a hash of
    their ``block_key`` (uint64, the same from run to run), the band and ``salt``.
    """
    n = len(sig)
    found: list[np.ndarray] = []
    for band in range(lsh.n_bands):
        key = _band_key(sig, band, lsh.band_rows)
        rows = np.flatnonzero(pd.Series(key).isin(np.unique(key[is_touched])).to_numpy())
        if len(rows) < 2:
            continue
        bucket_key = key[rows]
        seed = _mix64(np.array([salt + band], dtype=np.uint64))[0]
        order = np.lexsort((rows, _mix64(block_key[rows] ^ seed), bucket_key))
        rows, bucket_key = rows[order], bucket_key[order]
        starts = np.r_[0, np.flatnonzero(bucket_key[1:] != bucket_key[:-1]) + 1]
        sizes = np.diff(np.r_[starts, len(rows)])
        rank = np.arange(len(rows)) - np.repeat(starts, sizes)
        block = np.repeat(np.arange(len(starts), dtype=np.int64), sizes) * np.int64(1 << 20)
        block += rank // lsh.max_bucket
        block_starts = np.r_[0, np.flatnonzero(block[1:] != block[:-1]) + 1]
        with_touched = np.maximum.reduceat(is_touched[rows].astype(np.int8), block_starts) > 0
        keep = np.repeat(with_touched, np.diff(np.r_[block_starts, len(rows)]))
        left, right = _pairs_within_blocks(rows[keep], block[keep])
        either = is_touched[left] | is_touched[right]
        left, right = left[either], right[either]
        pair = np.minimum(left, right) * np.int64(n)
        pair += np.maximum(left, right)
        found.append(pair)
    if not found:
        return np.zeros(0, np.int64)
    return _sorted_unique_inplace(np.concatenate(found))


def _merged_signatures(
    before: PassSignatures, touched: np.ndarray, live: np.ndarray, sig: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The untouched accounts' previous signatures and the touched ones' new signatures,
    ordered by account."""
    kept = ~touched[before.accounts]
    accounts = np.concatenate([before.accounts[kept], live])
    order = np.argsort(accounts, kind="stable")
    merged = np.concatenate([before.signatures[kept], sig])[order]
    return accounts[order], merged


def lockstep_update(
    events: pd.DataFrame,
    touched: np.ndarray,
    previous: Sequence[PassSignatures],
    previous_pairs: pd.DataFrame,
    block_key: np.ndarray,
    *,
    values: Mapping[str, pa.Array] | None = None,
    bucket_minutes: tuple[int, ...] = (60, 240),
    min_jaccard: float | dict[int, float] = 0.3,
    model_min_jaccard: float | None = None,
    min_tokens: int = 8,
    n_hashes: int = 24,
    band_rows: int = 2,
    max_bucket: int = 30,
    seed: int = 0,
) -> LockstepResult:
    """Lockstep pairs after some accounts' events changed, from the previous signatures.

    The touched accounts' signatures are computed again from their events; every other
    account keeps its previous signature (its token set did not change), so a pair of two
    untouched accounts keeps its previous verdict. The touched accounts are compared with
    the accounts they collide with in an LSH band, as :func:`lockstep_pairs` compares all
    accounts; big band buckets are cut into blocks by a random order of ``block_key``.

    Parameters
    ----------
    events : pandas.DataFrame
        Coded events (``acc``, ``t``, ``prompt``, ``model``) of the touched accounts: all
        their events, coded as the previous signatures' events were (the same value, the
        same code).
    touched : numpy.ndarray of bool
        Per account, whether its events changed (or it is new).
    previous : sequence of PassSignatures
        The previous run's signatures (:attr:`LockstepResult.signatures`), their accounts as
        rows of ``touched``; one per (width, action) pass of the settings.
    previous_pairs : pandas.DataFrame
        The previous run's pairs: ``a``, ``b`` (account rows), ``jaccard``,
        ``bucket_minutes``.
    block_key : numpy.ndarray of int
        Per account, a distinct integer that stays the same from run to run (its stored
        row): seeds the order in which a big band bucket is cut into blocks.
    values : mapping of str to pyarrow.Array, optional
        The value of each code of ``events``, as for :func:`lockstep_pairs`: given when the
        previous signatures were computed with values (their codes may then differ).
    bucket_minutes, min_jaccard, model_min_jaccard, min_tokens, n_hashes, band_rows, \
max_bucket, seed
        As for :func:`lockstep_pairs`, and as the previous run had them.

    Returns
    -------
    LockstepResult
        All pairs (carried ones have no ``action``) and the signatures of every live
        account; the counts cover the touched accounts' search only.

    Raises
    ------
    ValueError
        When ``previous`` lacks a pass of the settings, or its signatures have another
        number of hashes.

    Notes
    -----
    O(2w (k m_t + b n + b t B)) for w widths, m_t events of the t touched accounts, n live
    accounts, k hashes, b bands and block size B: every band key is hashed again (one
    vectorised hash per band of all signatures), the rest grows with the touched accounts.
    A full run cuts big buckets by another random order, so the pairs of a full run on the
    same data can differ in big buckets (docs/incremental.md measures the agreement).

    Examples
    --------
    >>> import pandas as pd
    >>> ts = pd.date_range("2026-07-01", periods=20, freq="D", tz="UTC")
    >>> ev = pd.DataFrame({"account_id": ["a"] * 20 + ["b"] * 20,
    ...     "ts": list(ts) * 2, "model": "m-1", "prompt_fingerprint": "pf_x"})
    >>> codes, values = coded_events(ev, ["a", "b"])  # day 1: only a's events
    >>> day1 = lockstep_pairs(codes[codes["acc"] == 0], ["a", "b"], values=values,
    ...     bucket_minutes=(60,))
    >>> len(day1.pairs)
    0
    >>> day2 = lockstep_update(codes[codes["acc"] == 1], np.array([False, True]),
    ...     day1.signatures, day1.pairs, np.arange(2), values=values, bucket_minutes=(60,))
    >>> day2.pairs[["a", "b"]].values.tolist(), day2.pairs["jaccard"].tolist()
    ([[0, 1]], [1.0])
    """
    touched = np.asarray(touched, dtype=bool)
    n_acc = len(touched)
    lsh = _Lsh(n_hashes, max(1, n_hashes // band_rows), band_rows, max_bucket, min_tokens)
    by_pass = {(int(p.width), p.action): p for p in previous}
    plan = [(int(w), k) for w in bucket_minutes for k in ("prompt", "model")]
    missing = [f"{w} min {k}" for w, k in plan if (w, k) not in by_pass]
    if missing:
        raise ValueError(f"the previous signatures lack the passes {', '.join(missing)}")
    if any(p.signatures.shape[1] != n_hashes for p in by_pass.values()):
        raise ValueError(f"the previous signatures do not have {n_hashes} hashes")
    codes = events.copy()
    codes.attrs["n_accounts"] = n_acc
    streams = _action_streams(codes, np.arange(n_acc), bucket_minutes, values)
    key = np.asarray(block_key).astype(np.uint64)
    passes: list[_Pass] = []
    for number, (width, action) in enumerate(plan):
        _, live, sig, n_memberships = _pass_signatures(streams[action], action, n_acc, lsh, seed)
        accounts, merged = _merged_signatures(by_pass[(width, action)], touched, live, sig)
        salt = (seed * 131 + number) * 1_000_003 % (1 << 62)
        pair_key = _touched_candidates(merged, touched[accounts], lsh, key[accounts], salt)
        threshold = _threshold(min_jaccard, model_min_jaccard, width, action)
        pairs = _similar_pairs(merged, accounts, pair_key, threshold, width, action, n_hashes)
        passes.append(_Pass(width, action, pairs, len(pair_key), n_memberships, accounts, merged))
    a = previous_pairs["a"].to_numpy(np.int64)
    b = previous_pairs["b"].to_numpy(np.int64)
    untouched = ~(touched[a] | touched[b])
    carried = pd.DataFrame(
        {
            "a": np.minimum(a, b)[untouched],
            "b": np.maximum(a, b)[untouched],
            "jaccard": previous_pairs["jaccard"].to_numpy(np.float64)[untouched],
            "bucket_minutes": previous_pairs["bucket_minutes"].to_numpy(np.int64)[untouched],
            "action": pd.Series(pd.NA, index=range(int(untouched.sum())), dtype="string"),
        }
    )
    return _combine_passes(passes, n_acc, carried)
