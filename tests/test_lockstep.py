"""Lockstep synchrony: Jaccard on tiny sets, MinHash estimates, blocking cost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from linker.graph.behaviour import event_codes
from linker.graph.lockstep import (
    action_tokens,
    jaccard,
    lockstep_pairs,
    minhash_signatures,
)


def test_exact_jaccard() -> None:
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard(set(), set()) == 0.0
    assert jaccard({"a"}, {"a"}) == 1.0


def _events(schedule: dict[str, list[pd.Timestamp]], prompt: str = "pf") -> pd.DataFrame:
    rows = [(acc, ts) for acc, times in schedule.items() for ts in times]
    frame = pd.DataFrame(rows, columns=["account_id", "ts"])
    frame["model"] = "m-1"
    frame["prompt_fingerprint"] = prompt
    return frame


def test_action_tokens_match_hand_count() -> None:
    t0 = pd.Timestamp("2026-07-01T10:05", tz="UTC")
    ev = _events({"a": [t0, t0 + pd.Timedelta(minutes=20), t0 + pd.Timedelta(minutes=70)]})
    codes = event_codes(ev, ["a"])
    # 60-min buckets: 10:05 and 10:25 share one, 11:15 another -> 2 buckets x 2 kinds.
    accounts, tokens = action_tokens(codes, 60)
    assert len(tokens) == 4 and set(accounts) == {0}
    # 15-min buckets: all three differ -> 3 x 2.
    assert len(action_tokens(codes, 15)[1]) == 6
    assert len(action_tokens(codes, 60, ("model",))[1]) == 2


def test_minhash_estimates_jaccard() -> None:
    rng = np.random.default_rng(1)
    universe = rng.integers(0, 2**63, 400, dtype=np.int64).astype(np.uint64)
    first, second = universe[:300], universe[100:400]  # |A∩B| = 200, |A∪B| = 400
    accounts = np.r_[np.zeros(300, np.int64), np.ones(300, np.int64)]
    sig = minhash_signatures(accounts, np.r_[first, second], 2, 400, seed=2)
    estimate = float((sig[0] == sig[1]).mean())
    assert estimate == pytest.approx(0.5, abs=0.08)


def test_lockstep_finds_synchronised_pair_only() -> None:
    days = pd.date_range("2026-07-01", periods=30, freq="D", tz="UTC")
    slots = [days + pd.Timedelta(hours=h) for h in (3, 9, 15)]
    together = [t for s in slots for t in s]
    rng = np.random.default_rng(4)
    jitter = pd.to_timedelta(rng.normal(0, 10, len(together)), unit="min")
    human = list(days + pd.to_timedelta(rng.uniform(0, 24, 30), unit="h")) * 3
    ev = _events(
        {
            "a": together,
            "b": list(pd.DatetimeIndex(together) + jitter),  # tens of minutes of jitter
            "c": human,
        }
    )
    result = lockstep_pairs(ev, ["a", "b", "c"], bucket_minutes=(60, 240), seed=1)
    assert result.pairs[["a", "b"]].values.tolist() == [[0, 1]]
    assert result.pairs["jaccard"].iloc[0] >= 0.5
    # Exact Jaccard at 240 min agrees with the estimate within MinHash error.
    codes = event_codes(ev, ["a", "b", "c"])
    acc, tok = action_tokens(codes, 240, ("model",))
    exact = jaccard(set(tok[acc == 0]), set(tok[acc == 1]))
    assert exact >= 0.5


def test_blocking_never_compares_all_pairs() -> None:
    # 600 accounts in 60 independent groups of 10 sharing a schedule, plus an identical
    # 1,500-account crowd (every pair collides in every band): the random blocks bound the
    # comparisons by 2 kinds x bands x accounts x (block size - 1) / 2, far below all pairs.
    rng = np.random.default_rng(7)
    base = pd.Timestamp("2026-07-01", tz="UTC")
    schedule: dict[str, list[pd.Timestamp]] = {}
    for g in range(60):
        hours = rng.choice(24 * 60, 20, replace=False)
        times = list(base + pd.to_timedelta(hours, unit="h"))
        for k in range(10):
            schedule[f"g{g}-{k}"] = times
    crowd = list(base + pd.to_timedelta(np.arange(20) * 7, unit="h"))
    for k in range(1500):
        schedule[f"crowd-{k}"] = crowd
    ids = list(schedule)
    n = len(ids)
    result = lockstep_pairs(
        _events(schedule), ids, bucket_minutes=(60,), max_bucket=20, n_hashes=24, band_rows=2
    )
    all_pairs = n * (n - 1) // 2
    bands = 24 // 2
    assert result.comparisons <= 2 * bands * n * (20 - 1) // 2
    assert result.comparisons < all_pairs / 4
    # Every group pair is synchronised and found.
    pairs = result.pairs
    group_of = np.array([i.split("-")[0] for i in ids])
    same = group_of[pairs["a"]] == group_of[pairs["b"]]
    assert same.all()
    assert (pairs["jaccard"] == 1.0).all()
    group_pairs = pairs[~pd.Series(group_of[pairs["a"]]).eq("crowd").to_numpy()]
    assert len(group_pairs) == 60 * 45


def test_deterministic_for_a_seed() -> None:
    days = pd.date_range("2026-07-01", periods=20, freq="D", tz="UTC")
    ev = _events({k: list(days + pd.Timedelta(hours=i % 3)) for i, k in enumerate("abcdef")})
    first = lockstep_pairs(ev, list("abcdef"), seed=5).pairs
    second = lockstep_pairs(ev, list("abcdef"), seed=5).pairs
    pd.testing.assert_frame_equal(first, second)
