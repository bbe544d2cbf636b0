"""End-to-end behaviour of the linking engine on small hand-built worlds."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from linker.graph.bipartite import subgraph_to_networkx
from linker.pipeline import link_accounts
from linker.settings import LinkSettings

BASE = pd.Timestamp("2024-03-01", tz="UTC")


@dataclass
class World:
    """A tiny world: accounts plus their observations, built by hand."""

    accounts: list[dict[str, object]] = field(default_factory=list)
    observations: list[dict[str, object]] = field(default_factory=list)

    def add(
        self, account_id: str, created_at: pd.Timestamp, billing: str | None = None, **kinds: object
    ) -> None:
        self.accounts.append(
            {
                "account_id": account_id,
                "created_at": created_at,
                "email": kinds.get("mailbox"),
                "signup_ip": None,
                "device_id": None,
                "country": "US",
                "billing_customer_id": billing,
            }
        )
        for kind, values in kinds.items():
            for value in values if isinstance(values, list) else [values]:
                self.observations.append(
                    {
                        "account_id": account_id,
                        "kind": kind,
                        "value": value,
                        "first_seen": created_at,
                        "last_seen": created_at,
                        "count": 1,
                    }
                )

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        accounts = pd.DataFrame(self.accounts)
        accounts["account_id"] = accounts["account_id"].astype("string")
        accounts["billing_customer_id"] = accounts["billing_customer_id"].astype("string")
        observations = pd.DataFrame(self.observations)
        for column in ("account_id", "kind", "value"):
            observations[column] = observations[column].astype("string")
        observations = observations.sort_values(["kind", "value", "account_id"], ignore_index=True)
        return accounts, observations


def add_background(world: World, n: int, rng: np.random.Generator) -> None:
    """Unrelated benign accounts spread over three months with common BINs and domains."""
    domains = ["gmail.com", "yahoo.com", "outlook.com"]
    for i in range(n):
        created = BASE + pd.Timedelta(minutes=int(rng.integers(0, 60 * 24 * 90)))
        domain = domains[i % 3]
        world.add(
            f"solo{i:05d}",
            created,
            payment=f"fp_solo{i}",
            card_bin=f"4{int(rng.integers(0, 40)):05d}",
            mailbox=f"{['anna', 'li', 'omar', 'jo'][i % 4]}.person{i}@{domain}",
            email_domain=domain,
            signup_ip=f"10.{i % 250}.{(i * 7) % 250}.{(i * 13) % 250}",
            signup_subnet=f"10.{i % 250}.{(i * 7) % 250}.0/24",
            prompt=f"solo_prompt_{i}",
        )


def add_ring(world: World, n: int, rng: np.random.Generator, prefix: str = "ring") -> list[str]:
    """A camouflaged ring: distinct cards on 2 BINs, patterned mailboxes, a template family,
    proxy IPs spread over many /24s, all created within one hour."""
    ids = []
    proxies = [
        f"{int(rng.integers(20, 220))}.{int(rng.integers(0, 250))}.{k}.77" for k in range(15)
    ]
    for i in range(n):
        account = f"{prefix}{i:04d}"
        ids.append(account)
        signup = proxies[int(rng.integers(0, len(proxies)))]
        world.add(
            account,
            BASE + pd.Timedelta(days=40, minutes=int(rng.integers(0, 55))),
            payment=f"vcard_{prefix}_{i}",
            card_bin=["531993", "531994"][i % 2],
            mailbox=f"mark.hill{1000 + i}@gmail.com",
            email_domain="gmail.com",
            signup_ip=signup,
            signup_subnet=signup.rsplit(".", 1)[0] + ".0/24",
            ip=[proxies[int(k)] for k in rng.choice(len(proxies), 3, replace=False)],
            prompt=[f"tpl_{prefix}_{int(k)}" for k in rng.choice(12, 3, replace=False)],
        )
    return ids


def run(world: World, **overrides: object) -> pd.DataFrame:
    accounts, observations = world.frames()
    return link_accounts(accounts, observations, LinkSettings(**overrides), seed=7).scores


def test_same_input_and_seed_give_identical_frames() -> None:
    world = World()
    rng = np.random.default_rng(3)
    add_background(world, 300, rng)
    add_ring(world, 40, rng)
    accounts, observations = world.frames()
    first = link_accounts(accounts, observations, LinkSettings(), seed=11)
    shuffled = observations.sample(frac=1.0, random_state=5).reset_index(drop=True)
    second = link_accounts(accounts, shuffled, LinkSettings(), seed=11)
    for name in ("scores", "clusters", "links", "identifiers"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    assert (first.scores["action"] == "suspend").sum() > 0


def test_ring_burst_is_suspended_and_background_is_not() -> None:
    world = World()
    rng = np.random.default_rng(1)
    add_background(world, 400, rng)
    ring = add_ring(world, 40, rng)
    scores = run(world).set_index("account_id")
    assert (scores.loc[ring, "action"] == "suspend").all()
    assert (scores.drop(index=ring)["action"] == "none").all()
    # The whole ring is one cluster and every suspension carries a reason.
    assert scores.loc[ring, "cluster_id"].nunique() == 1
    assert scores.loc[ring, "reasons"].str.len().min() > 0


def test_cgnat_ip_of_two_thousand_accounts_links_nobody() -> None:
    world = World()
    rng = np.random.default_rng(2)
    for i in range(2000):
        created = BASE + pd.Timedelta(minutes=int(rng.integers(0, 60 * 24 * 30)))
        world.add(
            f"mobile{i:05d}",
            created,
            payment=f"fp_m{i}",
            card_bin=f"4{int(rng.integers(0, 40)):05d}",
            signup_ip="100.64.0.1",
            signup_subnet="100.64.0.0/24",
            ip="100.64.0.1",
        )
    accounts, observations = world.frames()
    result = link_accounts(accounts, observations, LinkSettings(), seed=7)
    cgnat = result.identifiers.set_index(["kind", "value"]).loc[("signup_ip", "100.64.0.1")]
    assert bool(cgnat["is_supernode"])
    assert cgnat["n_accounts"] == 2000
    assert not result.links["evidence"].str.contains("100.64.0.1").any()
    assert (result.scores["action"] != "suspend").all()


def test_family_sharing_card_and_home_ip_is_not_suspended() -> None:
    world = World()
    rng = np.random.default_rng(4)
    add_background(world, 200, rng)
    family = ["mum", "dad", "kid"]
    for k, account in enumerate(family):
        world.add(
            account,
            BASE + pd.Timedelta(days=3 * k, hours=k),
            payment="fp_family_visa",
            card_bin="411111",
            mailbox=f"{account}.smith@yahoo.com",
            email_domain="yahoo.com",
            signup_ip="73.12.40.8",
            signup_subnet="73.12.40.0/24",
            ip="73.12.40.8",
            device="family-ipad" if k else "dad-laptop",
        )
    scores = run(world).set_index("account_id")
    assert scores.loc[family, "cluster_id"].nunique() == 1
    assert scores.loc[family, "cluster_id"].notna().all()
    assert (scores.loc[family, "action"] == "none").all()


def test_exact_shared_card_is_never_split_across_clusters() -> None:
    world = World()
    rng = np.random.default_rng(5)
    add_background(world, 100, rng)
    # Two tight groups that community detection would keep apart, joined only by one card
    # that one member of each group uses.
    for group in ("east", "west"):
        for i in range(12):
            world.add(
                f"{group}{i:02d}",
                BASE + pd.Timedelta(days=5 if group == "east" else 50, minutes=i),
                payment="shared_card" if i == 0 else f"card_{group}_{i}",
                signup_ip=f"{group}-office-ip",
                device=f"{group}-device-{i % 3}",
                prompt=[f"{group}_prompt_{k}" for k in range(3)],
            )
    accounts, observations = world.frames()
    result = link_accounts(accounts, observations, LinkSettings(), seed=7)
    scores = result.scores.set_index("account_id")
    assert scores.loc["east00", "cluster_id"] == scores.loc["west00", "cluster_id"]
    assert pd.notna(scores.loc["east00", "cluster_id"])
    # The test can fail: without the strong-link contraction, modularity puts each card holder
    # with its own office.
    loose = link_accounts(accounts, observations, LinkSettings(strong_kinds=()), seed=7)
    loose_scores = loose.scores.set_index("account_id")
    assert loose_scores.loc["east00", "cluster_id"] != loose_scores.loc["west00", "cluster_id"]


def test_reason_text_cites_the_shared_values_and_counts() -> None:
    world = World()
    rng = np.random.default_rng(6)
    add_background(world, 300, rng)
    ring = []
    proxies = [f"{30 + k}.{k * 3}.{k}.5" for k in range(8)]
    for i in range(10):
        account = f"ring{i:02d}"
        ring.append(account)
        ip = proxies[i % 8]
        world.add(
            account,
            BASE + pd.Timedelta(days=20, minutes=3 * i),  # all within 27 minutes
            payment=f"vcard{i}",
            card_bin="531993",
            mailbox=f"mark.hill{100 + i}@gmail.com",
            email_domain="gmail.com",
            signup_ip=ip,
            signup_subnet=ip.rsplit(".", 1)[0] + ".0/24",
            ip=proxies,
            prompt=[f"tpl_{k}" for k in range(6)],
        )
    result = link_accounts(*world.frames(), LinkSettings(max_reasons=3), seed=7)
    scores = result.scores.set_index("account_id")
    assert (scores.loc[ring, "action"] == "suspend").all()
    cluster = scores.loc["ring00", "cluster_id"]
    reason = scores.loc["ring00", "reasons"]
    # Each ring member shares every proxy IP and prompt template with the 9 others, and was
    # created within the hour of all 9.
    assert reason.startswith("shares ")
    assert f"of cluster {cluster} (10 accounts)" in reason
    assert "with 9 accounts" in reason
    assert reason.endswith("created within 60 minutes of 9 of them")
    cited = [p for p in proxies if f"IP {p} " in reason] + [
        f"tpl_{k}" for k in range(6) if f"prompt template tpl_{k} " in reason
    ]
    assert len(cited) == 3
    clusters = result.clusters.set_index("cluster_id")
    text = clusters.loc[cluster, "reasons"]
    assert "10 accounts paid by 10 payers" in text
    assert "8 shared IPs across 8 subnets" in text
    assert "6 shared prompt templates" in text
    assert "100% of cards on BINs 531993" in text
    assert clusters.loc[cluster, "n_suspend"] == 10


def test_scores_frame_follows_the_contract() -> None:
    world = World()
    rng = np.random.default_rng(8)
    add_background(world, 150, rng)
    add_ring(world, 25, rng)
    accounts, observations = world.frames()
    result = link_accounts(accounts, observations, LinkSettings(), seed=1)
    scores = result.scores
    assert scores["account_id"].tolist() == accounts["account_id"].tolist()
    assert scores["score"].between(0, 1).all()
    assert set(scores["action"]) <= {"suspend", "review", "none"}
    assert (scores.loc[scores["cluster_id"].isna(), "cluster_size"] == 0).all()
    assert scores["cluster_size"].dtype == np.int64
    assert (scores.loc[scores["action"] == "none", "reasons"] == "").all()
    assert scores["cluster_id"].dropna().str.fullmatch(r"C-\d{4,}").all()
    sizes = scores.dropna(subset=["cluster_id"]).groupby("cluster_id").size()
    clusters = result.clusters.set_index("cluster_id")
    assert (clusters.loc[sizes.index, "size"] == sizes).all()
    assert (result.links["account_a"] < result.links["account_b"]).all()
    assert set(result.timings) >= {"identifiers", "communities", "signals", "score"}


def test_subgraph_to_networkx_returns_the_cluster_evidence() -> None:
    world = World()
    rng = np.random.default_rng(9)
    add_background(world, 50, rng)
    ring = add_ring(world, 12, rng)
    accounts, observations = world.frames()
    result = link_accounts(accounts, observations, LinkSettings(), seed=1)
    assert result.bipartite is not None
    weights = result.identifiers["weight"].to_numpy()
    graph = subgraph_to_networkx(result.bipartite, ring, identifier_weights=weights)
    assert isinstance(graph, nx.Graph)
    accounts_in = [n for n, d in graph.nodes(data=True) if d["bipartite"] == 0]
    assert len(accounts_in) == 12
    # Every identifier node is shared by at least two of the accounts.
    for node, data in graph.nodes(data=True):
        if data["bipartite"] == 1:
            assert graph.degree(node) >= 2
    assert ("card_bin", "531993") in graph


@pytest.mark.parametrize("threshold", [0.3, 0.95])
def test_action_thresholds_are_configurable(threshold: float) -> None:
    world = World()
    rng = np.random.default_rng(10)
    add_background(world, 100, rng)
    add_ring(world, 20, rng)
    scores = run(world, suspend_threshold=threshold, review_threshold=min(threshold, 0.3))
    suspended = scores["action"] == "suspend"
    # Below the threshold, only an account tied by its own evidence to members suspended on
    # theirs is suspended, and its reason says so first.
    by_peers = scores["reasons"].str.startswith("tied by its own evidence to suspended members")
    assert (scores.loc[suspended & ~by_peers, "score"] >= threshold).all()
    assert (scores.loc[~suspended, "score"] < threshold).all()
    assert not (by_peers & ~suspended).any()


def test_world_without_shared_values_has_no_clusters() -> None:
    world = World()
    add_background(world, 40, np.random.default_rng(11))
    accounts, observations = world.frames()
    observations = observations[observations["kind"].isin(["payment", "mailbox"])]
    result = link_accounts(accounts, observations, LinkSettings(), seed=3)
    assert result.scores["cluster_id"].isna().all()
    assert (result.scores["action"] == "none").all()
    assert result.clusters.empty and result.links.empty


def test_a_placeholder_card_on_half_the_accounts_links_nobody_and_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A "0000" default fingerprint on half the accounts, ring members included: strangers
    # who share nothing else. It must not glue them into one cluster (an exact card is
    # otherwise always kept together), and the ring must still be suspended.
    world = World()
    rng = np.random.default_rng(21)
    add_background(world, 1200, rng)
    ring = add_ring(world, 40, rng)
    accounts, observations = world.frames()
    half = np.sort(rng.choice(len(accounts), len(accounts) // 2, replace=False))
    placeholder = accounts["account_id"].iloc[half]
    extra = pd.DataFrame(
        {
            "account_id": placeholder.to_numpy(),
            "kind": "payment",
            "value": "0000",
            "first_seen": BASE,
            "last_seen": BASE,
            "count": 1,
        }
    ).astype({"account_id": "string", "kind": "string", "value": "string"})
    observations = pd.concat([observations, extra], ignore_index=True)
    with caplog.at_level("WARNING", logger="linker.stages.linking"):
        result = link_accounts(accounts, observations, LinkSettings(), seed=7)
    card = result.identifiers.set_index(["kind", "value"]).loc[("payment", "0000")]
    assert bool(card["is_supernode"]) and card["weight"] == 0.0
    scores = result.scores.set_index("account_id")
    assert int(scores["cluster_size"].max()) < 100
    assert (scores.loc[ring, "action"] == "suspend").mean() > 0.9
    solo = scores.index.str.startswith("solo")
    assert not (scores.loc[solo, "action"] == "suspend").any()
    assert f"a card value held by {len(half)} accounts links nobody" in caplog.text
