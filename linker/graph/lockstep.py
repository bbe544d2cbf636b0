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
2**b random blocks whose mean size is at most ``max_bucket``, each account's block set by a
hash of its id, so the comparisons grow about linearly with the accounts
(``accounts × bands × max_bucket``), and accounts joining a bucket leave the others in
their blocks until it doubles (what :func:`lockstep_update` relies on). See
docs/behaviour.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
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


def _block_bits(size: np.ndarray, max_bucket: int) -> np.ndarray:
    """Per band bucket of ``size`` rows, the bits ``b`` of its 2**b random blocks: none for a
    bucket of at most ``max_bucket`` rows, else the fewest that make the blocks' mean size at
    most ``max_bucket``."""
    over = np.maximum(-(-np.asarray(size, dtype=np.int64) // max_bucket), 1)
    return np.ceil(np.log2(over)).astype(np.int64)


def _sub_block(noise: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The block of each row within its bucket: the top ``bits`` bits of its noise (0 when
    the bucket is not cut). A row's block moves only when its bucket's bits change."""
    shift = np.minimum(64 - bits, 63).astype(np.uint64)
    return np.where(bits > 0, noise >> shift, np.uint64(0)).astype(np.int64)


def _band_noise(account_key: np.ndarray, salt: int, band: int) -> np.ndarray:
    """Per row, a random 64-bit number fixed by the account's key, the pass and the band."""
    seed = _mix64(np.array([salt * 4099 + band], dtype=np.uint64))[0]
    return _mix64(account_key ^ seed)


def _candidate_pairs(sig: np.ndarray, lsh: _Lsh, account_key: np.ndarray, salt: int) -> np.ndarray:
    """Distinct candidate pairs ``lo * n + hi`` (``lo < hi``, rows of ``sig``) from LSH bands.

    Rows whose band collides are candidates; a band bucket of more than ``max_bucket`` rows
    is cut into 2**b random blocks (:func:`_block_bits`), each row going to the block the top
    bits of its noise name (:func:`_band_noise` of ``account_key``, a number per row that is
    the same from run to run). A row's block depends on its own key and its bucket's size
    only, so rows joining a bucket leave the others where they were unless the bucket
    doubles (what :func:`lockstep_update` relies on).
    """
    n = len(sig)
    found: list[np.ndarray] = []
    for band in range(lsh.n_bands):
        key = _band_key(sig, band, lsh.band_rows)
        order, sorted_key = _group_rows(key)
        if not len(order):
            continue
        left, right = _block_pairs(order, sorted_key, _band_noise(account_key, salt, band), lsh)
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


def _buckets(sorted_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and size of each run of equal keys in ``sorted_key``."""
    starts = np.r_[0, np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1]
    return starts, np.diff(np.r_[starts, len(sorted_key)])


def _block_ids(sizes: np.ndarray, bits: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Per row of buckets laid out one after another (``sizes`` rows each, cut into
    ``2**bits`` blocks), a block id unique over all buckets; ``noise`` is the rows' own."""
    bucket_no = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return bucket_no * np.int64(1 << 20) + _sub_block(noise, np.repeat(bits, sizes))


def _block_pairs(
    rows: np.ndarray, sorted_key: np.ndarray, noise: np.ndarray, lsh: _Lsh
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of ``rows`` (grouped by ``sorted_key``) that share a block of their bucket."""
    _, sizes = _buckets(sorted_key)
    bits = _block_bits(sizes, lsh.max_bucket)
    block = _block_ids(sizes, bits, noise[rows])
    if (bits > 0).any():
        by_block = np.argsort(block, kind="stable")
        rows, block = rows[by_block], block[by_block]
    return _pairs_within_blocks(rows, block)


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
    account_key: np.ndarray,
    lsh: _Lsh,
    seed: int,
    salt: int,
) -> _Pass:
    """Pairs at ``stream``'s next width whose estimated Jaccard reaches ``threshold``."""
    n_acc = len(account_key)
    width, live, sig, n_memberships = _pass_signatures(stream, action, n_acc, lsh, seed)
    pair_key = _candidate_pairs(sig, lsh, account_key[live], salt)
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
        Band buckets larger than this are cut into 2**b random blocks of at most this mean
        size, by a hash of each account's id (``seed`` mixed in).
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
    account_key = _account_keys(account_ids)
    passes: list[_Pass] = []
    for number, (width, action) in enumerate(_plan(bucket_minutes)):
        # Templates and models are separate action sets: an account that works other
        # templates than its ring (or none) is still on the ring's clock and models.
        threshold = _threshold(min_jaccard, model_min_jaccard, width, action)
        salt = _pass_salt(seed, number)
        passes.append(
            _lockstep_pass(streams[action], action, threshold, account_key, lsh, seed, salt)
        )
    return _combine_passes(passes, n_acc)


def _plan(bucket_minutes: tuple[int, ...]) -> list[tuple[int, str]]:
    """The passes, in order: each width on templates, then on models."""
    return [(int(w), k) for w in bucket_minutes for k in ("prompt", "model")]


def _pass_salt(seed: int, number: int) -> int:
    return (seed * 131 + number) % (1 << 40)


def _account_keys(account_ids: pd.Series | np.ndarray) -> np.ndarray:
    """Per account, a 64-bit hash of its id: the same in every run that has the account."""
    ids = pd.Series(np.asarray(account_ids, dtype=object)).astype("string[pyarrow]")
    return pd.util.hash_pandas_object(ids, index=False).to_numpy(np.uint64)


def _affected_pairs(
    merged: np.ndarray,
    is_touched: np.ndarray,
    old: np.ndarray,
    lsh: _Lsh,
    noise_of: Callable[[int], np.ndarray],
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """The candidate pairs (``lo * n + hi``, rows of ``merged``) that the touched rows can
    change, and per band the keys of the buckets whose blocks were cut again.

    A band bucket is affected when it holds a touched row now (``merged``) or held one before
    (``old``: the touched rows' previous signatures). If its number of blocks is the same as
    before, only the blocks holding a touched row are looked at, and only their pairs with a
    touched row (the untouched rows kept their blocks); if the number changed, every pair of
    its new blocks is a candidate.
    """
    n = len(merged)
    found: list[np.ndarray] = []
    recut: list[tuple[int, np.ndarray]] = []
    for band in range(lsh.n_bands):
        key = _band_key(merged, band, lsh.band_rows)
        before = _band_key(old, band, lsh.band_rows)
        was = pd.Series(before).value_counts()
        affected = np.unique(np.r_[key[is_touched], before])
        rows = np.flatnonzero(pd.Series(key).isin(affected).to_numpy())
        if not len(rows):
            continue
        rows = rows[np.argsort(key[rows], kind="stable")]
        starts, sizes = _buckets(key[rows])
        keys_here = key[rows][starts]
        touched_now = np.add.reduceat(is_touched[rows].astype(np.int64), starts)
        touched_then = was.reindex(keys_here, fill_value=0).to_numpy(np.int64)
        bits = _block_bits(sizes, lsh.max_bucket)
        changed = bits != _block_bits(sizes - touched_now + touched_then, lsh.max_bucket)
        recut.append((band, keys_here[changed]))
        block = _block_ids(sizes, bits, noise_of(band)[rows])
        by_block = np.argsort(block, kind="stable")
        rows, block = rows[by_block], block[by_block]
        # Only blocks with a touched row, or of a bucket cut anew, can hold a changed pair.
        in_recut = np.zeros(n, dtype=bool)
        in_recut[rows[np.repeat(changed, sizes)[by_block]]] = True
        block_starts, block_sizes = _buckets(block)
        wanted = np.maximum.reduceat((is_touched | in_recut)[rows].astype(np.int8), block_starts)
        keep = np.repeat(wanted > 0, block_sizes)
        left, right = _pairs_within_blocks(rows[keep], block[keep])
        either = is_touched[left] | is_touched[right] | (in_recut[left] & in_recut[right])
        left, right = left[either], right[either]
        pair = np.minimum(left, right) * np.int64(n)
        pair += np.maximum(left, right)
        found.append(pair)
    if not found:
        return np.zeros(0, np.int64), recut
    return _sorted_unique_inplace(np.concatenate(found)), recut


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


@dataclass(frozen=True)
class _Recut:
    """One pass's state for checking carried pairs again: its live accounts, signatures,
    threshold, noise and the buckets cut again in each band."""

    width: int
    accounts: np.ndarray
    sig: np.ndarray
    enough: int
    noise_of: Callable[[int], np.ndarray]
    recut: list[tuple[int, np.ndarray]]


def _still_found(
    a: np.ndarray, b: np.ndarray, passes: list[_Recut], lsh: _Lsh
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of untouched pairs whose bucket was cut again somewhere, those still co-blocked in
    some band of a pass whose threshold they reach, with their best Jaccard and its
    (narrowest) width, as a full search would find them."""
    best = np.full(len(a), -1.0)
    width = np.zeros(len(a), dtype=np.int64)
    for p in passes:
        pa_, pb_, live = _positions(p.accounts, a, b)
        if not live.any():
            continue
        agree = np.zeros(len(a), dtype=np.int32)
        agree[live] = _agreement(p.sig, pa_[live], pb_[live])
        met = live & (agree >= p.enough)
        together = np.zeros(len(a), dtype=bool)
        for band in range(lsh.n_bands):
            key = _band_key(p.sig, band, lsh.band_rows)
            same = met & (key[pa_] == key[pb_])
            if not same.any():
                continue
            size = pd.Series(key).value_counts()
            bits = _block_bits(size.reindex(key[pa_[same]]).to_numpy(np.int64), lsh.max_bucket)
            noise = p.noise_of(band)
            at = np.flatnonzero(same)
            together[at] |= _sub_block(noise[pa_[at]], bits) == _sub_block(noise[pb_[at]], bits)
        jac = agree / lsh.n_hashes
        # As _combine_passes: the strongest estimate, ties to the narrower width.
        better = together & ((jac > best) | ((jac == best) & (p.width < width)))
        best[better], width[better] = jac[better], p.width
    return best >= 0, best, width


def _positions(
    accounts: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of accounts ``a`` and ``b`` in the ascending ``accounts``, and whether both
    are there."""
    if not len(accounts):
        zero = np.zeros(len(a), dtype=np.int64)
        return zero, zero, np.zeros(len(a), dtype=bool)
    pa_ = np.minimum(np.searchsorted(accounts, a), len(accounts) - 1)
    pb_ = np.minimum(np.searchsorted(accounts, b), len(accounts) - 1)
    return pa_, pb_, (accounts[pa_] == a) & (accounts[pb_] == b)


def lockstep_update(
    events: pd.DataFrame,
    touched: np.ndarray,
    previous: Sequence[PassSignatures],
    previous_pairs: pd.DataFrame,
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
    """Lockstep pairs after some accounts' events changed, from the previous signatures.

    The touched accounts' signatures are computed again from their events; every other
    account keeps its previous signature (its token set did not change), so a pair of two
    untouched accounts keeps its previous verdict unless a band bucket it shares was cut
    into another number of blocks (then it is checked again). The touched accounts are
    compared with the accounts they share a block with, as :func:`lockstep_pairs` compares
    all accounts: the result is the pairs :func:`lockstep_pairs` finds on all the events.

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
    account_ids : array-like
        The accounts (as for :func:`lockstep_pairs`): their ids place them in blocks.
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
    O(2w (k m_t + b n + b t B + b q)) for w widths, m_t events of the t touched accounts, n
    live accounts, k hashes, b bands, block size B and q previous pairs: every band key is
    hashed again (one vectorised hash per band of all signatures); the rest grows with the
    touched accounts, but for a bucket whose number of blocks changed (it crossed a power of
    two), whose every pair is compared again.

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
    ...     day1.signatures, day1.pairs, ["a", "b"], values=values, bucket_minutes=(60,))
    >>> day2.pairs[["a", "b"]].values.tolist(), day2.pairs["jaccard"].tolist()
    ([[0, 1]], [1.0])
    """
    touched = np.asarray(touched, dtype=bool)
    n_acc = len(touched)
    lsh = _Lsh(n_hashes, max(1, n_hashes // band_rows), band_rows, max_bucket, min_tokens)
    by_pass = {(int(p.width), p.action): p for p in previous}
    plan = _plan(bucket_minutes)
    missing = [f"{w} min {k}" for w, k in plan if (w, k) not in by_pass]
    if missing:
        raise ValueError(f"the previous signatures lack the passes {', '.join(missing)}")
    if any(p.signatures.shape[1] != n_hashes for p in by_pass.values()):
        raise ValueError(f"the previous signatures do not have {n_hashes} hashes")
    if len(account_ids) != n_acc:
        raise ValueError("account_ids and touched differ in length")
    codes = events.copy()
    codes.attrs["n_accounts"] = n_acc
    streams = _action_streams(codes, np.arange(n_acc), bucket_minutes, values)
    account_key = _account_keys(account_ids)
    passes: list[_Pass] = []
    recuts: list[_Recut] = []
    for number, (width, action) in enumerate(plan):
        _, live, sig, n_memberships = _pass_signatures(streams[action], action, n_acc, lsh, seed)
        before = by_pass[(width, action)]
        accounts, merged = _merged_signatures(before, touched, live, sig)
        noise_of = _noise_of(account_key[accounts], _pass_salt(seed, number))
        old = before.signatures[touched[before.accounts]]
        pair_key, recut = _affected_pairs(merged, touched[accounts], old, lsh, noise_of)
        threshold = _threshold(min_jaccard, model_min_jaccard, width, action)
        pairs = _similar_pairs(merged, accounts, pair_key, threshold, width, action, n_hashes)
        passes.append(_Pass(width, action, pairs, len(pair_key), n_memberships, accounts, merged))
        enough = _enough(threshold, n_hashes)
        recuts.append(_Recut(width, accounts, merged, enough, noise_of, recut))
    return _combine_passes(passes, n_acc, _carried(previous_pairs, touched, recuts, lsh))


def _noise_of(account_key: np.ndarray, salt: int) -> Callable[[int], np.ndarray]:
    """Per band, the noise of each row whose account key is ``account_key``."""

    def noise(band: int) -> np.ndarray:
        return _band_noise(account_key, salt, band)

    return noise


def _carried(
    previous_pairs: pd.DataFrame, touched: np.ndarray, recuts: list[_Recut], lsh: _Lsh
) -> pd.DataFrame:
    """The previous pairs of two untouched accounts that a full search finds again: all of
    them, but those sharing a bucket that was cut into another number of blocks, which are
    checked again (:func:`_still_found`)."""
    a = previous_pairs["a"].to_numpy(np.int64)
    b = previous_pairs["b"].to_numpy(np.int64)
    a, b = np.minimum(a, b), np.maximum(a, b)
    jaccard = previous_pairs["jaccard"].to_numpy(np.float64)
    width = previous_pairs["bucket_minutes"].to_numpy(np.int64)
    untouched = ~(touched[a] | touched[b])
    a, b, jaccard, width = a[untouched], b[untouched], jaccard[untouched], width[untouched]
    suspect = np.zeros(len(a), dtype=bool)
    for p in recuts:
        if not any(len(keys) for _, keys in p.recut):
            continue
        pa_, pb_, live = _positions(p.accounts, a, b)
        for band, keys in p.recut:
            if not len(keys) or not live.any():
                continue
            key = _band_key(p.sig, band, lsh.band_rows)
            shared = live & (key[pa_] == key[pb_])
            suspect |= shared & np.isin(key[pa_], keys)
    if suspect.any():
        at = np.flatnonzero(suspect)
        kept, best, best_width = _still_found(a[at], b[at], recuts, lsh)
        jaccard[at], width[at] = best, best_width
        keep = np.ones(len(a), dtype=bool)
        keep[at[~kept]] = False
        a, b, jaccard, width = a[keep], b[keep], jaccard[keep], width[keep]
    return pd.DataFrame(
        {
            "a": a,
            "b": b,
            "jaccard": jaccard,
            "bucket_minutes": width,
            "action": pd.Series(pd.NA, index=range(len(a)), dtype="string"),
        }
    )
