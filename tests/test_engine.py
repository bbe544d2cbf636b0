"""The run engine: declared stages, the store, resumed runs and the one saved graph."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from linker.engine import CATALOGUE, MemoryStore, RunContext, RunDirectory, Stage, run_stages
from linker.errors import InputError
from linker.neo4j.loader import load_run
from linker.pipeline import link_accounts, run
from linker.settings import LinkSettings, Settings
from linker.stages import LINK_STAGES, RUN_STAGES, VIEWS
from linker.synth import generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engine-world")
    generate_world(3000, 11, root)
    return root


@pytest.fixture(scope="module")
def full_run(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run(world, tmp_path_factory.mktemp("full") / "takedown.csv")


def test_every_stage_reads_what_an_earlier_stage_wrote() -> None:
    written: set[str] = set()
    names = [s.name for s in RUN_STAGES]
    assert len(names) == len(set(names))
    for stage in RUN_STAGES:
        for name in stage.reads:
            if name in VIEWS:
                continue
            assert name in written, f"{stage.name} reads {name} before any stage writes it"
        for name in stage.writes:
            assert name in CATALOGUE, f"{stage.name} writes {name}, not in the catalogue"
            assert name not in written, f"{name} has two writers"
            written.add(name)
    for view in VIEWS.values():
        assert set(view.reads) <= written | set(VIEWS)
    assert {s.name for s in LINK_STAGES} < set(names)


def test_manifest_records_every_stage_with_hashes_memory_and_settings(full_run: Any) -> None:
    stages = full_run.manifest["stages"]
    assert list(stages) == [s.name for s in RUN_STAGES]
    observations = stages["normalise"]["writes"]["observations"]
    assert len(observations) == 64
    assert len(stages["identifiers"]["writes"]["identifiers"]) == 64
    assert (
        stages["signals"]["reads"]["communities"] == stages["communities"]["writes"]["communities"]
    )
    assert all(s["peak_rss_bytes"] > 0 for s in stages.values())
    assert stages["score"]["settings"]["link"]["suspend_threshold"] == 0.8
    facts = stages["score"]["facts"]
    assert facts["suspended_with_peers"] <= full_run.manifest["counts"]["suspend"]
    for warning in facts["cluster_warnings"]:
        assert warning["share_of_ties"] >= 0.5 and warning["cluster_id"].startswith("C-")
    assert full_run.manifest["counts"]["links"] == len(
        pd.read_parquet(full_run.run_dir / "links.parquet")
    )


def test_a_run_resumed_at_a_stage_reuses_the_saved_artefacts(
    world: Path, full_run: Any, tmp_path: Path
) -> None:
    resumed = shutil.copytree(full_run.run_dir, tmp_path / "resumed.run")
    same = run(world, tmp_path / "again.csv", run_dir=resumed, start="score")
    assert same.export.path.read_bytes() == full_run.export.path.read_bytes()
    stages = same.manifest["stages"]
    assert [n for n, s in stages.items() if s["reused"]] == [
        "validate",
        "normalise",
        "behaviour",
        "identifiers",
        "communities",
        "signals",
    ]
    assert set(same.manifest["timings_seconds"]) >= {"score", "decide", "export", "total"}
    assert "validate" not in same.manifest["timings_seconds"]
    stricter = Settings(link=LinkSettings(suspend_threshold=0.99, suspend_with_peers=False))
    moved = run(world, tmp_path / "strict.csv", run_dir=resumed, settings=stricter, start="score")
    assert moved.counts["suspend"] < full_run.counts["suspend"]
    assert moved.counts["suspend"] + moved.counts["review"] >= full_run.counts["suspend"]


def test_resuming_without_saved_artefacts_is_refused(world: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run directory not found"):
        run(world, tmp_path / "t.csv", run_dir=tmp_path / "empty.run", start="signals")
    with pytest.raises(InputError, match="no stage 'nope'"):
        run(world, tmp_path / "t.csv", start="nope")
    store = MemoryStore()
    ctx = RunContext(Settings(), store, VIEWS)
    with pytest.raises(InputError, match=r"lacks .*communities"):
        run_stages(RUN_STAGES, ctx, start="signals")


def test_a_stage_may_not_write_what_it_did_not_declare() -> None:
    rogue = Stage("rogue", reads=(), writes=("links",), run=lambda ctx: {"scores": pd.DataFrame()})
    with pytest.raises(Exception, match="undeclared artefacts"):
        run_stages([rogue], RunContext(Settings(), MemoryStore(), VIEWS))


def test_the_store_is_the_only_door_to_a_run_directory(full_run: Any) -> None:
    store = RunDirectory.open(full_run.run_dir)
    written = store.written()
    for name in ("observations", "identifiers", "links", "scores", "evidence", "communities"):
        assert name in written and Path(written[name]).is_file()
    assert sorted(full_run.manifest["artefacts"]) == sorted(n for n in written if n != "manifest")
    one = store.read("observations", filters=[("account_id", "==", "nobody")])
    assert one.empty and list(one.columns)[:3] == ["account_id", "kind", "value"]


def test_link_accounts_in_memory_equals_the_run_directory(world: Path, full_run: Any) -> None:
    store = RunDirectory.open(full_run.run_dir)
    result = link_accounts(
        store.read("accounts"),
        store.read("observations"),
        LinkSettings(),
        seed=Settings().seed,
        events=store.read("events"),
    )
    pd.testing.assert_frame_equal(result.scores, store.read("engine_scores"))
    pd.testing.assert_frame_equal(result.links, store.read("links"))
    pd.testing.assert_frame_equal(result.identifiers, store.read("identifiers"))


def test_ip_spread_counts_ipv6_networks_not_addresses() -> None:
    base = pd.Timestamp("2024-05-01", tz="UTC")
    # Six ring members among 2,000 customers with an address and a card each: whether an
    # address is concentrated in a cluster is measured against the population.
    ids = [f"r{i}" for i in range(6)] + [f"u{i}" for i in range(2000)]
    accounts = pd.DataFrame(
        {
            "account_id": pd.array(ids, dtype="string"),
            "created_at": [base + pd.Timedelta(minutes=i) for i in range(len(ids))],
            "billing_customer_id": pd.array([None] * len(ids), dtype="string"),
        }
    )
    rows = []
    for i, account in enumerate(ids[:6]):
        # Two /48 networks, each with addresses shared by three members.
        network = "2001:db8:aa" if i < 3 else "2001:db8:bb"
        for k in range(3):
            rows.append((account, "ip", f"{network}:{k}::1"))
        rows.append((account, "payment", f"card{i // 2}"))
        # A second family of evidence: one family alone (the addresses) holds nobody in.
        rows.append((account, "prompt", "ring-template"))
    for i, account in enumerate(ids[6:]):
        rows.append((account, "ip", f"2001:db8:{i:x}::7"))
        rows.append((account, "payment", f"own-card{i}"))
    obs = pd.DataFrame(rows, columns=["account_id", "kind", "value"])
    obs = obs.astype("string").assign(first_seen=base, last_seen=base, count=1)
    result = link_accounts(accounts, obs, LinkSettings(review_threshold=0.0))
    reasons = " ".join(result.clusters["reasons"].astype(str))
    assert "shared IPs across 2 subnets" in reasons, reasons


def test_links_in_neo4j_are_exactly_the_runs_links(full_run: Any, neo4j_runner: Any) -> None:
    load_run(full_run.run_dir, runner=neo4j_runner, batch_size=2000)
    links = pd.read_parquet(full_run.run_dir / "links.parquet")
    scores = pd.read_parquet(full_run.run_dir / "scores.parquet")
    top = scores.dropna(subset=["cluster_id"])["cluster_id"].value_counts().index[0]
    members = set(scores.loc[scores["cluster_id"] == top, "account_id"])
    expected = links[links["account_a"].isin(members) & links["account_b"].isin(members)]
    rows = neo4j_runner.run(
        "MATCH (a:Account {cluster_id: $c})-[r:LINKED]->(b:Account) "
        "RETURN a.account_id, b.account_id, r.weight, r.evidence",
        {"c": str(top)},
    ).rows
    loaded = pd.DataFrame(rows, columns=["account_a", "account_b", "weight", "evidence"])
    loaded = loaded.sort_values(["account_a", "account_b"], ignore_index=True)
    expected = expected.sort_values(["account_a", "account_b"], ignore_index=True)
    assert len(loaded) == len(expected) > 0
    assert (
        loaded[["account_a", "account_b", "evidence"]]
        .astype(str)
        .equals(expected[["account_a", "account_b", "evidence"]].astype(str))
    )
    np.testing.assert_allclose(loaded["weight"], expected["weight"])
    total = neo4j_runner.run("MATCH ()-[r:LINKED]->() RETURN count(r)").rows[0][0]
    assert total == len(links)
