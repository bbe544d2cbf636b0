"""The pure parts of `linker update` that must equal a full run: the observation merge, the
integer keys and the identifier positions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from linker.graph.bipartite import build_bipartite
from linker.graph.incremental import key_codes, merge_observations, sorted_positions

_KEY = ["account_id", "kind", "value"]


def _observations(rng: np.random.Generator, n: int, *, nat: bool = False) -> pd.DataFrame:
    base = pd.Timestamp("2026-01-01", tz="UTC")
    first = base + pd.to_timedelta(rng.integers(0, 10_000, n), unit="min")
    last = first + pd.to_timedelta(rng.integers(0, 5_000, n), unit="min")
    frame = pd.DataFrame(
        {
            "account_id": pd.array([f"a{i}" for i in rng.integers(0, 30, n)], dtype="string"),
            "kind": pd.array(rng.choice(["ip", "email", "device"], n), dtype="string"),
            "value": pd.array([f"v{i}" for i in rng.integers(0, 40, n)], dtype="string"),
            "first_seen": pd.Series(first).dt.as_unit("us"),
            "last_seen": pd.Series(last).dt.as_unit("us"),
            "count": rng.integers(1, 9, n).astype(np.int64),
        }
    )
    if nat:
        frame.loc[rng.random(n) < 0.2, "first_seen"] = pd.NaT
        frame.loc[rng.random(n) < 0.2, "last_seen"] = pd.NaT
    return _aggregate(frame)


def _aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per key, as a full run builds them: earliest, latest, summed count."""
    out = frame.groupby(_KEY, as_index=False, sort=True).agg(
        first_seen=("first_seen", "min"), last_seen=("last_seen", "max"), count=("count", "sum")
    )
    return out.sort_values(["kind", "value", "account_id"]).reset_index(drop=True)


def test_merge_equals_aggregating_all_rows() -> None:
    rng = np.random.default_rng(3)
    for nat in (False, True):
        old, new = _observations(rng, 400, nat=nat), _observations(rng, 150, nat=nat)
        merged, pairs = merge_observations(old, new)
        whole = _aggregate(pd.concat([old, new], ignore_index=True))
        got = merged.sort_values(["kind", "value", "account_id"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, whole, check_dtype=False)
        assert got["first_seen"].dtype == old["first_seen"].dtype
        # The previous rows keep their place; the new pairs follow, sorted.
        assert merged[_KEY].iloc[: len(old)].equals(old[_KEY])
        known = pd.MultiIndex.from_frame(old[_KEY])
        assert not pd.MultiIndex.from_frame(pairs).isin(known).any()
        assert len(pairs) == len(whole) - len(old)


def test_key_codes_match_equal_tuples_only() -> None:
    a = pd.DataFrame({"kind": ["ip", "ip", None], "value": ["1", "2", "1"]})
    b = pd.DataFrame({"kind": ["ip", "email", None, "ip"], "value": ["2", "1", "1", "1"]})
    ka, kb = key_codes([a, b], ["kind", "value"])
    pairs_a = list(zip(a["kind"], a["value"], strict=True))
    pairs_b = list(zip(b["kind"], b["value"], strict=True))
    for i, x in enumerate(pairs_a):
        for j, y in enumerate(pairs_b):
            assert (ka[i] == kb[j]) == (x == y)


def test_sorted_positions_find_the_columns_of_a_bipartite_graph() -> None:
    rng = np.random.default_rng(5)
    obs = _observations(rng, 300)
    bip = build_bipartite(sorted(obs["account_id"].unique()), obs)
    want = obs.sample(50, random_state=1)
    absent = pd.DataFrame({"kind": ["ip", "zzz", "email"], "value": ["nope", "v1", "v999"]})
    kinds = np.r_[want["kind"].to_numpy(object), absent["kind"].to_numpy(object)]
    values = np.r_[want["value"].to_numpy(object), absent["value"].to_numpy(object)]
    at = sorted_positions(bip.kinds, bip.values, kinds, values)
    assert (at[-3:] == -1).all()
    assert (bip.kinds[at[:-3]] == kinds[:-3]).all() and (bip.values[at[:-3]] == values[:-3]).all()
