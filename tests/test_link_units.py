"""The linking engine's building blocks, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from linker.errors import SettingsError
from linker.graph.bipartite import build_bipartite
from linker.graph.bursts import window_counts
from linker.graph.communities import components_over, detect_communities, split_disconnected
from linker.graph.projection import enumerate_pairs, project
from linker.graph.weights import identifier_weights, rarity
from linker.observations import build_observations
from linker.settings import LinkSettings, load_settings


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000)), min_size=0, max_size=60),
    st.integers(1, 3000),
)
def test_window_counts_match_brute_force(rows: list[tuple[int, int]], window: int) -> None:
    keys = np.array([k for k, _ in rows], dtype=np.int64)
    times = np.array([t for _, t in rows], dtype=np.int64)
    expected = [
        sum(
            1
            for j in range(len(rows))
            if j != i and keys[j] == keys[i] and abs(times[j] - times[i]) <= window
        )
        for i in range(len(rows))
    ]
    assert window_counts(keys, times, window).tolist() == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sets(st.integers(0, 7), max_size=8), min_size=1, max_size=12))
def test_enumerate_pairs_lists_every_pair_once(columns: list[set[int]]) -> None:
    rows = [r for c in columns for r in sorted(c)]
    cols = [j for j, c in enumerate(columns) for _ in c]
    matrix = sp.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(8, len(columns)))
    a, b, ident = enumerate_pairs(matrix, np.arange(len(columns)))
    got = sorted(zip(a.tolist(), b.tolist(), ident.tolist(), strict=True))
    want = sorted(
        (x, y, j) for j, c in enumerate(columns) for x, y in itertools.combinations(sorted(c), 2)
    )
    assert got == want


def test_rarity_falls_with_sharing_and_public_values_get_no_weight() -> None:
    priors = LinkSettings().kind_priors
    kinds = np.array(["payment", "payment", "card_bin", "ip", "ip"], dtype=object)
    n = np.array([2, 50, 2, 2, 101])
    public = np.array([False, False, False, False, True])
    weight = identifier_weights(kinds, n, priors, 1000, public)
    assert weight[0] > weight[1] > 0  # rarer is stronger
    assert weight[0] > weight[2] == 0  # a BIN is a feature: it links nobody
    assert weight[3] > 0 and weight[4] == 0  # a public value links nobody
    r = rarity(np.arange(2, 1001), 1000)
    assert np.all(np.diff(r) < 0) and r[0] == 1.0 and r[-1] == 0.0


def test_rarity_is_measured_against_the_population() -> None:
    """The same 200 accounts sharing a value are a crowd in a world of 2,000 and a small group
    in one of 200,000: no count threshold, only the share of the population."""
    assert rarity(np.array([200]), 2_000)[0] < rarity(np.array([200]), 200_000)[0]
    assert rarity(np.array([2, 2_000]), 2_000).tolist() == [1.0, 0.0]
    shares = rarity(np.array([20, 200, 2_000]), 20_000)
    assert np.all(np.diff(shares) < 0)


def test_projection_uses_hubs_for_large_groups_instead_of_pairs() -> None:
    n_acc = 150
    obs = pd.DataFrame(
        {
            "account_id": [f"a{i}" for i in range(n_acc)] + ["a0", "a1"],
            "kind": ["prompt"] * n_acc + ["payment", "payment"],
            "value": ["big"] * n_acc + ["card", "card"],
        }
    )
    bip = build_bipartite([f"a{i}" for i in range(n_acc)], obs)
    public = np.zeros(bip.shape[1], dtype=bool)
    weight = identifier_weights(bip.kinds, bip.n_accounts, LinkSettings().kind_priors, 1000, public)
    proj = project(bip, weight, public, pair_max_accounts=48)
    assert len(proj.pair_a) == 1  # only the card pair is materialised
    assert proj.hub_matrix.shape == (n_acc, 1)
    assert proj.hub_matrix.nnz == n_acc


def test_strong_components_are_contracted_before_communities() -> None:
    # Two cliques of 6 joined by one strong identifier between one member of each.
    n = 12
    adjacency = sp.lil_matrix((n, n))
    for group in (range(0, 6), range(6, 12)):
        for x, y in itertools.combinations(group, 2):
            adjacency[x, y] = 5.0
    incidence = sp.csr_matrix((np.ones(2), ([0, 6], [0, 0])), shape=(n, 1))
    strong = components_over(incidence, np.array([0]))
    assert strong[0] == strong[6] and len(set(strong.tolist())) == 11
    membership = detect_communities(
        adjacency.tocsr(), sp.csr_matrix((n, 0)), strong, resolution=1.0, seed=1
    )
    assert membership[0] == membership[6]
    loose = detect_communities(
        adjacency.tocsr(), sp.csr_matrix((n, 0)), np.arange(n), resolution=1.0, seed=1
    )
    assert loose[0] != loose[6]  # without contraction they fall apart


def test_billing_customer_and_email_pattern_are_kinds_of_the_accounts_table() -> None:
    accounts = pd.DataFrame(
        {
            "account_id": ["a", "b", "c"],
            "created_at": pd.to_datetime(["2024-01-01"] * 3, utc=True),
            "billing_customer_id": ["cus_1", "cus_1", None],
            "email": ["mark.hill1001@gmail.com", "markhill_77@gmail.com", "anna@gmail.com"],
        }
    )
    obs = build_observations({"accounts": accounts})
    billing = obs[obs["kind"] == "billing_customer"]
    assert billing["account_id"].tolist() == ["a", "b"]
    patterns = obs[obs["kind"] == "email_pattern"].set_index("account_id")["value"]
    assert patterns.to_dict() == {"a": "markhill#@gmail.com", "b": "markhill#@gmail.com"}


def test_link_settings_collect_every_problem() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            overrides={
                "link.suspend_threshold": 0.3,
                "link.review_threshold": 0.6,
                "link.public_majority": 1.5,
                "link.burst_window_minutes": 0.0,
            }
        )
    message = str(caught.value)
    assert "review_threshold must not exceed" in message
    assert "public_majority" in message
    assert "burst_window_minutes" in message
    assert load_settings(overrides={"link.kind_priors": {"ip": 2.0}}).link.kind_priors == {
        "ip": 2.0
    }


def _root(parent: dict[int, int], a: int) -> int:
    while parent[a] != a:
        a = parent[a]
    return a


def _tied_groups(
    incidence: np.ndarray, membership: np.ndarray, weights: np.ndarray
) -> set[frozenset[int]]:
    """Brute force: per community, the groups of accounts joined by chains of weighted
    values that two members of the community hold."""
    groups: set[frozenset[int]] = set()
    for community in set(membership[membership >= 0].tolist()):
        members = [int(a) for a in np.flatnonzero(membership == community)]
        parent = {a: a for a in members}
        for a, b in itertools.combinations(members, 2):
            if np.any((incidence[a] > 0) & (incidence[b] > 0) & (weights > 0)):
                parent[_root(parent, a)] = _root(parent, b)
        by_root: dict[int, set[int]] = {}
        for a in members:
            by_root.setdefault(_root(parent, a), set()).add(a)
        groups |= {frozenset(g) for g in by_root.values() if len(g) >= 2}
    return groups


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 7), max_size=3), min_size=1, max_size=14),
    st.lists(st.integers(-1, 2), min_size=14, max_size=14),
    st.lists(st.sampled_from([0.0, 1.0]), min_size=8, max_size=8),
)
def test_split_disconnected_keeps_exactly_the_tied_groups(
    held: list[list[int]], community: list[int], weight: list[float]
) -> None:
    n = len(held)
    incidence = np.zeros((n, 8))
    for row, values in enumerate(held):
        incidence[row, values] = 1.0
    membership = np.asarray(community[:n], dtype=np.int64)
    weights = np.asarray(weight)
    result = split_disconnected(
        sp.csr_matrix(incidence), membership, weights, np.arange(n, dtype=np.int64)
    )
    got: dict[int, set[int]] = {}
    for account, part in enumerate(result.tolist()):
        if part >= 0:
            got.setdefault(part, set()).add(account)
    assert {frozenset(g) for g in got.values()} == _tied_groups(incidence, membership, weights)
    # Parts refine the input communities, and the largest part keeps its community's id.
    for members in got.values():
        assert len({int(membership[a]) for a in members}) == 1
    for c in set(membership[membership >= 0].tolist()):
        sizes = {p: len(m) for p, m in got.items() if membership[next(iter(m))] == c}
        if sizes:
            assert c in sizes and sizes[c] == max(sizes.values())


def test_split_disconnected_never_splits_a_strong_unit_or_a_lockstep_pair() -> None:
    # Accounts 0-1 share a weighted value; 2 and 3 are one unit (one card) with no weighted
    # value; 4 is in lockstep with 0. All five were put in community 0.
    incidence = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 0]], dtype=float))
    units = np.array([0, 1, 2, 2, 3])
    lockstep = sp.csr_matrix(([1.0], ([0], [4])), shape=(5, 5))
    result = split_disconnected(
        incidence, np.zeros(5, dtype=np.int64), np.array([1.0, 0.0]), units, lockstep=lockstep
    )
    assert result.tolist() == [0, 0, 1, 1, 0]


def test_ownership_of_small_values_does_not_depend_on_the_population_size() -> None:
    # A group of 50 holds all three copies of value 0 and one of the two copies of value 1.
    # It is a twentieth of a small world and a two-thousandth of a large one: in the small
    # world no three-holder value could pass the Poisson test; the verdicts must agree.
    from linker.graph.ownership import owned_values

    verdicts = []
    for population in (1_000, 100_000):
        rows = [0, 1, 2, 3, 600]
        cols = [0, 0, 0, 1, 1]
        matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(population, 2))
        group = np.full(population, -1)
        group[:50] = 0
        _, owned = owned_values(matrix, group, 1e-4)
        verdicts.append(owned.toarray()[0].tolist())
    assert verdicts == [[True, False], [True, False]]


def test_reasons_cite_linking_values_before_context_values() -> None:
    from linker.graph.scoring import shared_evidence, shared_value_explanations

    obs = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "a", "b"],
            "kind": ["email_domain"] * 3 + ["ip"] * 2,
            "value": ["corp.example"] * 3 + ["192.0.2.7"] * 2,
        }
    )
    bip = build_bipartite(["a", "b", "c"], obs)
    cluster_of = np.zeros(3, dtype=np.int64)
    shared = shared_evidence(bip, cluster_of, np.array([0]))
    accounts = pd.DataFrame({"row": [0], "cluster_id": ["C-0001"], "cluster_size": [3]})
    # A prior that ranks the domain first: only the weights put the linking IP before it.
    priors = {"email_domain": 5.0, "ip": 1.0}
    weights = np.where(bip.kinds == "ip", 1.0, 0.0)
    unweighted, _ = shared_value_explanations(bip, shared, accounts, priors, max_reasons=2)
    weighted, codes = shared_value_explanations(
        bip, shared, accounts, priors, max_reasons=2, weights=weights
    )
    assert unweighted.iloc[0].startswith("shares email domain corp.example")
    assert weighted.iloc[0].startswith("shares IP 192.0.2.7 with 1 accounts, email domain")
    assert codes.iloc[0].startswith("shared_ip:1;shared_email_domain:2")
