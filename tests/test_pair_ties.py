"""A value only two members hold is a pair, not a group (issue 11, ring/innocent mixing).

A proxyware user who signed up through a ring's proxy exit, and shares a mailbox stem by chance
with a family, must not carry that family into the ring's cluster, nor stay in it on the proxy
addresses alone; a pair tied through two families (a reserve account on a member's device and
signup IP) still ties.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from linker.graph.communities import prune_weak_members, split_disconnected

NETWORK, EMAIL, DEVICE = 0, 1, 2
# Identifiers: 0 ring proxy IP, 1 ring mailbox pattern, 2 mailbox stem of the proxy user
# and the family's payer, 3 family device, 4 family home IP, 5 reserve device, 6 reserve
# signup IP.
FAMILY = np.array([NETWORK, EMAIL, EMAIL, DEVICE, NETWORK, DEVICE, NETWORK])
WEIGHTS = np.ones(len(FAMILY))
HOLDINGS = {
    0: [0, 1],  # ring members 0-4: the proxy IP and the mailbox pattern
    1: [0, 1],
    2: [0, 1],
    3: [0, 1, 5, 6],  # ring member 3 shares its device and signup IP with the reserve 9
    4: [0, 1],
    5: [0, 2],  # the proxyware user: the ring's proxy IP, a mailbox stem shared by chance
    6: [2, 3, 4],  # the family's payer
    7: [3, 4],
    8: [3, 4],
    9: [5, 6],  # a reserve ring account
}


def incidence() -> sp.csr_matrix:
    rows = [a for a, held in HOLDINGS.items() for _ in held]
    cols = [c for held in HOLDINGS.values() for c in held]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(10, len(FAMILY)))


def test_an_uncorroborated_pair_does_not_join_a_family_to_a_ring() -> None:
    everyone = np.zeros(10, dtype=np.int64)
    units = np.arange(10)
    split = split_disconnected(
        incidence(), everyone, WEIGHTS, units, family=FAMILY, min_families=2
    ).tolist()
    assert split[:6] == [0] * 6 and split[9] == 0  # the ring, its proxy user and its reserve
    assert len(set(split[6:9])) == 1 and split[6] not in (0, -1)  # the family, on its own
    # Counting the pair as a tie (the rule off) keeps everyone together.
    assert set(split_disconnected(incidence(), everyone, WEIGHTS, units).tolist()) == {0}


def test_once_the_family_is_split_off_the_proxy_user_has_one_family_and_leaves() -> None:
    """The communities stage's order: prune, split, prune again."""

    def prune(membership: np.ndarray) -> np.ndarray:
        return prune_weak_members(
            incidence(),
            membership,
            WEIGHTS,
            np.arange(10),
            min_attachment=1.0,
            family=FAMILY,
            min_families=2,
        )

    everyone = np.zeros(10, dtype=np.int64)
    # Pruning alone keeps the proxy user: its chance stem with the family's payer is a
    # second family.
    assert prune(everyone)[5] == 0
    split = split_disconnected(
        incidence(), prune(everyone), WEIGHTS, np.arange(10), family=FAMILY, min_families=2
    )
    kept = prune(split)
    assert kept[5] != 0  # proxy addresses only, once the family is split off
    assert (kept[[0, 1, 2, 3, 4, 9]] == 0).all()  # the reserve: device and signup IP
    assert len(set(kept[[6, 7, 8]].tolist())) == 1 and kept[6] not in (0, -1)
