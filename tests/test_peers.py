"""Suspension through an account's own ties to suspended members (reserve accounts)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from linker.graph.peers import PeerTies, suspended_peer_ties

# Identifier columns: 0 device (family 0), 1 signup IP (family 1), 2 mailbox pattern
# (family 2), 3 a public VPN exit (family 1), 4 a second device (family 0).
FAMILY = np.array([0, 1, 2, 1, 0])
WEIGHTS = np.array([1.5, 1.0, 0.4, 0.0, 1.5])
USABLE = np.array([True, True, True, False, True])


def _ties(rows: list[list[int]], cluster: list[int], suspended: list[bool]) -> PeerTies:
    m = sp.csr_matrix(np.array(rows, dtype=float))
    return suspended_peer_ties(
        m, USABLE, FAMILY, WEIGHTS, np.array(cluster), np.array(suspended), min_families=2
    )


def test_two_families_to_suspended_members_promote_one_does_not() -> None:
    ties = _ties(
        [
            [1, 1, 1, 0, 0],  # 0 suspended
            [1, 1, 0, 0, 0],  # 1: device and signup IP shared with 0 -> promoted
            [1, 0, 0, 1, 0],  # 2: device, and a public exit (does not count) -> not
            [0, 0, 1, 0, 0],  # 3: pattern only -> not
        ],
        [0, 0, 0, 0],
        [True, False, False, False],
    )
    assert ties.promoted.tolist() == [False, True, False, False]
    assert ties.families.tolist() == [0, 2, 1, 1]
    shared = ties.shared
    # Strongest first: the device (1.5) before the signup IP (1.0), each held by one.
    assert shared["identifier"].tolist() == [0, 1]
    assert shared["suspended"].tolist() == [1, 1]


def test_one_hop_only_and_only_inside_the_cluster() -> None:
    ties = _ties(
        [
            [1, 1, 0, 0, 0],  # 0 suspended
            [1, 1, 0, 0, 1],  # 1: promoted through 0
            [0, 0, 1, 0, 1],  # 2: ties only to 1 (device 4, pattern) -> 1 is not suspended
            [1, 1, 0, 0, 0],  # 3: same values as 0, but in another cluster
            [0, 0, 0, 0, 0],  # 4: outside every cluster
        ],
        [0, 0, 0, 1, -1],
        [True, False, False, False, False],
    )
    assert ties.promoted.tolist() == [False, True, False, False, False]


def test_nothing_suspended_promotes_nobody() -> None:
    ties = _ties([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]], [0, 0], [False, False])
    assert not ties.promoted.any()
    assert ties.shared.empty


def test_no_owned_ties_promotes_nobody() -> None:
    # The suspended account's values are held by half the world: the cluster owns none.
    n = 400
    m = np.zeros((n, 5))
    m[: n // 2, 0] = 1
    m[: n // 2, 1] = 1
    cluster = np.full(n, -1)
    cluster[:2] = 0
    suspended = np.zeros(n, dtype=bool)
    suspended[0] = True
    ties = suspended_peer_ties(
        sp.csr_matrix(m), USABLE, FAMILY, WEIGHTS, cluster, suspended, alpha=1e-4
    )
    assert not ties.promoted.any()
    assert ties.shared.empty
