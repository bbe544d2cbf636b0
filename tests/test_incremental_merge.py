"""The pure parts of `linker update` that must equal a full run: the observation merge, the
integer keys and the identifier positions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from linker.graph.bipartite import Bipartite, build_bipartite
from linker.graph.incremental import (
    extend_bipartite,
    key_codes,
    merge_observations,
    sorted_positions,
)

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


def test_repartitioned_component_keeps_the_whole_graphs_resolution() -> None:
    """Two triangles joined by one link, beside a heavy untouched clique: on the whole graph
    modularity's null model is tiny there and the six accounts are one community; partitioned
    alone with the resolution unscaled they would split in two."""
    import numpy as np

    from linker.graph.communities import ContractedGraph, partition_graph
    from linker.graph.incremental import repartition_touched

    ring = [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)]
    heavy = [(a, b) for a in range(6, 16) for b in range(a + 1, 16)]
    edges = np.array(ring + heavy, dtype=np.int64)
    weights = np.r_[np.ones(len(ring)), np.full(len(heavy), 50.0)]
    graph = ContractedGraph(
        n_comp=16, n_hubs=0, edges=edges, weights=weights, comp_size=np.ones(16, dtype=np.int64)
    )
    whole = partition_graph(16, edges, weights, resolution=1.0, seed=3)
    assert len(set(whole[:6].tolist())) == 1
    alone = partition_graph(6, edges[: len(ring)], weights[: len(ring)], resolution=1.0, seed=3)
    assert len(set(alone.tolist())) == 2  # what an unscaled resolution gives
    touched = np.zeros(16, dtype=bool)
    touched[0] = True
    previous = np.r_[np.zeros(6, dtype=np.int64), np.ones(10, dtype=np.int64)]
    membership, facts = repartition_touched(
        graph, np.arange(16), touched, previous, resolution=1.0, seed=3, warm=False
    )
    assert facts["nodes_repartitioned"] == 6
    assert len(set(membership[:6].tolist())) == 1
    assert membership[0] != membership[6]


def _extended(old: pd.DataFrame, new: pd.DataFrame, ids: list[str]) -> tuple[Bipartite, Bipartite]:
    """The incidence matrix of ``old`` extended with ``new``'s pairs, and the one built from
    all the observations, both for the accounts ``ids`` (in id order)."""
    before = build_bipartite(sorted(old["account_id"].unique()), old)
    merged, pairs = merge_observations(old, new)
    coo = before.matrix.tocoo()
    row = pd.Index(ids).get_indexer(before.account_ids[coo.row])
    got, previous_column = extend_bipartite(
        np.array(ids, dtype=object), before.kinds, before.values, row, coo.col, pairs
    )
    old_col = previous_column >= 0
    assert (got.kinds[old_col] == before.kinds).all() and (
        got.values[old_col] == before.values
    ).all()
    assert np.array_equal(previous_column[old_col], np.arange(len(before.kinds)))
    return got, build_bipartite(ids, merged)


def test_extended_incidence_equals_building_it_from_all_observations() -> None:
    rng = np.random.default_rng(11)
    for _ in range(3):
        old = _observations(rng, 400)
        new = _observations(rng, 150)
        # New accounts between the old ones, and identifiers of kinds before, among and after
        # the old ones' (new columns land everywhere in the sorted order).
        extra = pd.DataFrame(
            {
                "account_id": pd.array(["a0x", "a15x", "zz"], dtype="string"),
                "kind": pd.array(["aaa", "email", "zzz"], dtype="string"),
                "value": pd.array(["v0", "v10x", "v"], dtype="string"),
                "first_seen": new["first_seen"].iloc[:3].to_numpy(),
                "last_seen": new["last_seen"].iloc[:3].to_numpy(),
                "count": np.ones(3, dtype=np.int64),
            }
        )
        new = _aggregate(pd.concat([new, extra], ignore_index=True))
        ids = sorted(set(old["account_id"]) | set(new["account_id"]))
        got, want = _extended(old, new, ids)
        assert (got.kinds == want.kinds).all() and (got.values == want.values).all()
        assert (got.account_ids == want.account_ids).all()
        assert got.matrix.shape == want.matrix.shape
        assert (got.matrix != want.matrix).nnz == 0
        assert np.array_equal(got.n_accounts, want.n_accounts)
        assert len(got.kinds) > len(build_bipartite(ids, old).kinds)
