"""Fake companies on a residential proxy pool that strangers rent too (issue 11).

A ring posing as one company (its own domain, one billing customer) rotates through a small
pool of residential exits. Thousands of VPN users rent the same exits, so the null model makes
nearly every exit public and the ring owns only a few of them. Read through its owned
addresses alone, the ring looked like staff behind an office NAT: the organisation guard
discounted its behaviour and its IP spread showed a handful of subnets, and whole rings went
unflagged. The cluster's IP evidence now reads every address its members hold far more often
than chance, public or not: each member rotates through exits the others use too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from linker import pipeline
from linker.evaluate import evaluate, read_table
from linker.graph.bipartite import Bipartite
from linker.scenarios import generate_scenario
from linker.settings import LinkSettings
from linker.signals.base import EvidenceInputs

ORGANISATIONS = ("company", "university", "hackathon", "cgnat", "app")


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("shared-pool")
    world = root / "world"
    # Seed 5 of the tuning seeds: on the code before this rule, two of its three rings
    # (30 and 55 accounts) were never suspended.
    generate_scenario("fake_company_shared_pool", 10_000, 5, world, fmt="parquet")
    run_dir = root / "run"
    pipeline.run(world, root / "takedown.csv", run_dir=run_dir)
    everyone = root / "everyone.parquet"
    pipeline.export_run(run_dir, everyone, actions=["suspend", "review", "none"])
    return read_table(world / "labels.parquet"), pd.read_parquet(everyone)


def test_every_fake_company_on_the_shared_pool_is_suspended(
    pool_run: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    labels, everyone = pool_run
    result = evaluate(labels, everyone)
    assert len(result.rings) == 3
    for ring in result.rings:
        assert ring.recall_suspend >= 0.9, ring
    assert result.suspend.precision >= 0.99


def test_no_organisation_on_the_shared_pool_world_is_suspended(
    pool_run: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    labels, everyone = pool_run
    result = evaluate(labels, everyone)
    suspended = {g.group: g.suspended for g in result.benign_groups}
    assert all(suspended.get(kind, 0) == 0 for kind in ORGANISATIONS), suspended


def test_memberships_mark_public_values_held_in_excess_but_never_own_them() -> None:
    """``excess``: the cluster holds the value far more often than chance; ``owned`` also
    needs it not to be public. A public exit most of a cluster rotates through is in excess."""
    n = 4000
    # Identifier 0: an exit held by accounts 0-9 (the cluster) and 30 strangers, public.
    # Identifier 1: an address held by two cluster members and nobody else, not public.
    # Identifier 2: a value 200 accounts hold, 2 of them in the cluster: no excess.
    rows = [*range(10), *range(100, 130), 0, 1, *range(2), *range(200, 398)]
    cols = [0] * 40 + [1, 1] + [2] * 200
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, 3))
    bipartite = Bipartite(
        account_ids=np.array([f"a{i}" for i in range(n)]),
        kinds=np.array(["ip", "ip", "prompt"]),
        values=np.array(["203.0.113.9", "198.51.100.7", "pf_sdk"]),
        matrix=matrix,
        n_accounts=np.asarray(matrix.sum(axis=0)).ravel().astype(np.int64),
    )
    cluster_of = np.full(n, -1)
    cluster_of[:10] = 0
    inputs = EvidenceInputs(
        bipartite=bipartite,
        weights=np.ones(3),
        supernode=np.array([True, False, False]),
        cluster_of=cluster_of,
        n_clusters=1,
        customer_of=np.arange(n),
        link_weight=sp.csr_matrix((n, n)),
        created=np.zeros(n),
        settings=LinkSettings(),
    )
    m = inputs.memberships.drop_duplicates("identifier").set_index("identifier")
    assert m.loc[0, "excess"] and not m.loc[0, "owned"]
    assert m.loc[1, "excess"] and m.loc[1, "owned"]
    assert not m.loc[2, "excess"] and not m.loc[2, "owned"]


def test_a_camouflage_account_on_the_rings_public_exits_stays_in_its_community() -> None:
    """Pruning counts a public exit the community holds in excess for the network family
    (with no weight): an account on the ring's templates and its pool stays; a VPN user on
    the pool alone still leaves."""
    from linker.graph.communities import prune_weak_members

    n = 2000
    network, prompt, device = 0, 1, 2
    # Identifiers 0-3: pool exits, each rented by 60 strangers too (public, weightless);
    # 4-5: the ring's templates; 6: a device its members share.
    family = np.array([network] * 4 + [prompt] * 2 + [device])
    weights = np.array([0.0] * 4 + [1.0] * 3)
    public = np.array([True] * 4 + [False] * 3)
    holdings: dict[int, list[int]] = {member: [0, 1, 2, 3, 4, 5, 6] for member in range(8)}
    holdings[8] = [1, 3, 4, 5]  # the camouflage account: two exits and the templates
    holdings[9] = [0, 1, 2]  # a VPN user on the pool
    for k, exit_ in enumerate(range(4)):
        for stranger in range(100 + 60 * k, 160 + 60 * k):
            holdings.setdefault(stranger, []).append(exit_)
    rows = [a for a, held in holdings.items() for _ in held]
    cols = [c for held in holdings.values() for c in held]
    incidence = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, len(family)))
    community = np.full(n, -1)
    community[:10] = 0

    def prune(family_only: np.ndarray | None) -> list[int]:
        return prune_weak_members(
            incidence,
            community,
            weights,
            np.arange(n),
            min_attachment=1.5,
            family=family,
            min_families=2,
            alpha=1e-4,
            family_only=family_only,
        )[:10].tolist()

    assert prune(public) == [0] * 9 + [-1]
    # Without it, the camouflage account has one family (its templates) and leaves.
    assert prune(None) == [0] * 8 + [-1, -1]
