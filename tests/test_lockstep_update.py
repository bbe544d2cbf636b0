"""Lockstep after new events: the touched accounts searched again from saved signatures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from linker.graph.behaviour import coded_events
from linker.graph.lockstep import lockstep_pairs, lockstep_update

BASE = pd.Timestamp("2026-07-01", tz="UTC")
SETTINGS = {"bucket_minutes": (60, 240), "min_tokens": 4, "seed": 3}


def _world(seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Six rings of eight accounts on their own clocks (minutes of jitter, a few templates
    each) and 150 people at random hours, over 40 days."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, pd.Timestamp, str, str]] = []
    for ring in range(6):
        hours = np.sort(rng.choice(24 * 40, 30, replace=False))
        templates = [f"pf-ring{ring}-{k}" for k in range(3)]
        for member in range(8):
            jitter = rng.normal(0, 8, len(hours))
            for h, j in zip(hours, jitter, strict=True):
                ts = BASE + pd.Timedelta(hours=int(h)) + pd.Timedelta(minutes=float(j))
                rows.append((f"r{ring}-{member}", ts, f"m-{ring % 2}", str(rng.choice(templates))))
    for person in range(150):
        for h in rng.choice(24 * 40, int(rng.integers(5, 40)), replace=False):
            model = f"m-{int(rng.integers(0, 3))}"
            rows.append((f"p{person}", BASE + pd.Timedelta(hours=int(h)), model, f"pf-{person}"))
    events = pd.DataFrame(rows, columns=["account_id", "ts", "model", "prompt_fingerprint"])
    return events, sorted(events["account_id"].unique())


def _split(events: pd.DataFrame, ids: list[str], seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The previous run's events: a third of the accounts lose their events after day 30
    (their later events are new), and every eighth account is new."""
    rng = np.random.default_rng(seed)
    touched = rng.random(len(ids)) < 1 / 3
    new = np.arange(len(ids)) % 8 == 5
    row = pd.Index(ids).get_indexer(events["account_id"])
    late = events["ts"] >= BASE + pd.Timedelta(days=30)
    before = events[~new[row] & ~(touched[row] & late.to_numpy())]
    return before, touched | new


def _pairs(frame: pd.DataFrame) -> pd.DataFrame:
    return (
        frame[["a", "b", "jaccard", "bucket_minutes"]]
        .astype({"a": np.int64, "b": np.int64})
        .sort_values(["a", "b"])
        .reset_index(drop=True)
    )


@pytest.mark.parametrize(("seed", "max_bucket"), [(1, 10**6), (2, 10**6), (1, 2), (2, 3), (3, 5)])
def test_update_equals_a_full_search(seed: int, max_bucket: int) -> None:
    """With big buckets cut into blocks (``max_bucket`` 2 to 5 cuts nearly every ring's
    bucket, and the new rows make some double) and without."""
    events, ids = _world(seed)
    before, touched = _split(events, ids, seed)
    settings = {**SETTINGS, "max_bucket": max_bucket}
    codes_before, values_before = coded_events(before, ids)
    previous = lockstep_pairs(codes_before, ids, values=values_before, **settings)
    codes, values = coded_events(events, ids)
    # Codes are numbered again over all events: the tokens hash the values, not the codes.
    assert not values["prompt"].equals(values_before["prompt"])
    mine = codes[touched[codes["acc"].to_numpy()]]
    updated = lockstep_update(
        mine, touched, previous.signatures, previous.pairs, ids, values=values, **settings
    )
    full = lockstep_pairs(codes, ids, values=values, **settings)
    assert len(full.pairs) > 100  # the rings are found
    pd.testing.assert_frame_equal(_pairs(updated.pairs), _pairs(full.pairs))
    for mine_pass, full_pass in zip(updated.signatures, full.signatures, strict=True):
        assert (mine_pass.width, mine_pass.action) == (full_pass.width, full_pass.action)
        np.testing.assert_array_equal(mine_pass.accounts, full_pass.accounts)
        np.testing.assert_array_equal(mine_pass.signatures, full_pass.signatures)
    # Only the touched accounts (and buckets cut anew) were compared again.
    assert updated.comparisons < full.comparisons
    # Without cuts, the untouched pairs are the previous ones.
    if max_bucket > len(ids):
        pairs = _pairs(updated.pairs)
        untouched = ~(touched[pairs["a"]] | touched[pairs["b"]])
        old = _pairs(previous.pairs)
        old = old[~(touched[old["a"]] | touched[old["b"]])].reset_index(drop=True)
        pd.testing.assert_frame_equal(pairs[untouched].reset_index(drop=True), old)


def test_blocks_move_only_when_a_bucket_doubles() -> None:
    """A crowd's bucket cut into blocks: accounts joining it leave every other account in
    its block until the bucket's number of blocks doubles."""
    ids = [f"c{k:04d}" for k in range(400)]
    events = pd.DataFrame(
        {
            "account_id": np.repeat(ids, 10),
            "ts": np.tile(BASE + pd.to_timedelta(np.arange(10) * 5, unit="h"), 400),
            "model": "m-1",
            "prompt_fingerprint": "pf-crowd",
        }
    )
    settings = {"bucket_minutes": (60,), "min_tokens": 4, "max_bucket": 30, "seed": 1}

    def pairs_among_first(n: int) -> set[tuple[int, int]]:
        codes, values = coded_events(events[events["account_id"] < ids[n]], ids)
        found = lockstep_pairs(codes, ids, values=values, **settings).pairs
        first = found[(found["a"] < 200) & (found["b"] < 200)]
        return set(zip(first["a"], first["b"], strict=True))

    # 200 accounts in one bucket: 8 blocks; 220 and 240: still 8, the same ones; 250: 16.
    at_200 = pairs_among_first(200)
    assert at_200 == pairs_among_first(220) == pairs_among_first(240)
    assert pairs_among_first(250) < at_200


def test_previous_signatures_must_cover_every_pass() -> None:
    events, ids = _world(5)
    codes, values = coded_events(events, ids)
    narrow = lockstep_pairs(codes, ids, values=values, bucket_minutes=(60,), min_tokens=4)
    touched = np.zeros(len(ids), dtype=bool)
    with pytest.raises(ValueError, match="lack the passes 240 min prompt, 240 min model"):
        lockstep_update(
            codes.iloc[0:0],
            touched,
            narrow.signatures,
            narrow.pairs,
            ids,
            values=values,
            **SETTINGS,
        )
