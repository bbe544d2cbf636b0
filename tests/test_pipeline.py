"""The main job end to end on a small synthetic world: determinism, run directory, allow-list,
explain and cluster graphs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest

import linker
from linker.allowlist import AllowList, apply_allowlist, load_allowlist
from linker.engine import RunDirectory
from linker.errors import InputError
from linker.pipeline import RunResult, explain, export_run, run
from linker.settings import Settings, load_settings
from linker.synth import generate_world

N_ACCOUNTS = 3000
SEED = 11


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(N_ACCOUNTS, SEED, out)
    return out


@pytest.fixture(scope="module")
def first(world: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run(world, tmp_path_factory.mktemp("first") / "takedown.csv", settings=Settings())


@pytest.fixture(scope="module")
def labelled(first: RunResult, world: Path) -> pd.DataFrame:
    scores = RunDirectory(first.run_dir).read("scores")
    labels = pd.read_csv(world / "labels.csv", dtype="string", keep_default_na=False)
    return scores.merge(labels, on="account_id", how="left")


def test_same_input_and_seed_give_identical_bytes(
    world: Path, first: RunResult, tmp_path: Path
) -> None:
    second = run(world, tmp_path / "elsewhere" / "list.csv", settings=Settings())
    assert first.export.rows > 0, "the synthetic world should produce a non-empty takedown list"
    assert second.export.path.read_bytes() == first.export.path.read_bytes()
    # Timings differ between the runs, but only the manifests carry them.
    assert "timings_seconds" in second.manifest


def test_run_directory_layout_and_manifest(first: RunResult, world: Path) -> None:
    root = first.run_dir
    assert root == first.export.path.with_name("takedown.run")
    for relative in (
        "manifest.json",
        "tables/accounts.parquet",
        "observations.parquet",
        "identifiers.parquet",
        "links.parquet",
        "clusters.parquet",
        "scores.parquet",
    ):
        assert (root / relative).is_file(), relative
    assert not (root / "tables" / "labels.parquet").exists(), "labels must not reach the run"
    manifest = json.loads((root / "manifest.json").read_text())
    accounts_file = next(world.glob("accounts.*"))
    digest = hashlib.sha256(accounts_file.read_bytes()).hexdigest()
    assert manifest["inputs"][accounts_file.name]["sha256"] == digest
    assert manifest["linker_version"] == linker.__version__
    assert manifest["settings"]["seed"] == Settings().seed
    for counts in manifest["counts"]["tables"].values():
        assert counts["read"] == counts["accepted"] + counts["rejected"]
    assert manifest["counts"]["accounts"] == N_ACCOUNTS
    assert manifest["counts"]["suspend"] == first.export.by_action["suspend"]
    assert {"validate", "communities", "score", "export", "total"} <= set(
        manifest["timings_seconds"]
    )
    beside = json.loads(first.export.manifest_path.read_text())
    assert beside["export"]["sha256"] == hashlib.sha256(first.export.path.read_bytes()).hexdigest()
    assert beside["run"]["inputs"] == manifest["inputs"]


def test_reexport_from_run_dir_matches_run_export(first: RunResult, tmp_path: Path) -> None:
    again = export_run(first.run_dir, tmp_path / "again.csv")
    assert again.path.read_bytes() == first.export.path.read_bytes()


def test_scores_flag_rings_more_than_benign(labelled: pd.DataFrame) -> None:
    flagged = labelled["action"].isin(["suspend", "review"])
    in_ring = labelled["ring_id"].fillna("") != ""
    assert flagged[in_ring].mean() > flagged[~in_ring].mean()


def test_allowlisted_ring_account_is_spared(
    world: Path, first: RunResult, labelled: pd.DataFrame, tmp_path: Path
) -> None:
    suspended = labelled[(labelled["action"] == "suspend") & (labelled["ring_id"] != "")]
    suspended = suspended.sort_values("account_id")
    assert len(suspended) >= 2
    by_id, by_billing = suspended.iloc[0], suspended.iloc[1]
    allow = tmp_path / "allow.csv"
    allow.write_text(
        "# spare two ring accounts\n"
        "kind,value\n"
        f"account_id,{by_id['account_id']}\n"
        f"billing_customer_id,{by_billing['billing_customer_id']}\n"
    )
    settings = load_settings(overrides={"run.allowlist": str(allow)})
    spared_run = run(world, tmp_path / "takedown.csv", settings=settings)

    spared_billing = labelled["billing_customer_id"] == by_billing["billing_customer_id"]
    expected = labelled[(labelled["account_id"] == by_id["account_id"]) | spared_billing]
    expected_spared = int(expected["action"].isin(["suspend", "review"]).sum())
    assert spared_run.n_spared == expected_spared >= 2
    assert spared_run.manifest["allowlist"]["spared"] == expected_spared
    assert spared_run.manifest["counts"]["spared_by_allowlist"] == expected_spared
    assert f"spared by allow-list {expected_spared}" in spared_run.render()

    exported = pd.read_csv(spared_run.export.path, dtype="string")
    assert by_id["account_id"] not in set(exported["account_id"])
    assert by_billing["account_id"] not in set(exported["account_id"])
    assert spared_run.export.rows == first.export.rows - expected_spared

    scores = RunDirectory(spared_run.run_dir).read("scores").set_index("account_id")
    me = scores.loc[by_id["account_id"]]
    assert me["action"] == "none"
    assert me["reasons"].startswith(f"allow-listed (account_id {by_id['account_id']})")
    # Allow-listing changes actions only: scores and clusters stay.
    assert me["score"] == pytest.approx(by_id["score"])
    assert me["cluster_id"] == by_id["cluster_id"]


def test_allowlist_matching_kinds() -> None:
    accounts = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e", "f"],
            "email": ["x@Uni.edu", "y@mail.uni.edu", "z@x.org", "w@x.org", "v@x.org", None],
            "signup_ip": ["10.1.2.3", "10.9.9.9", "2001:db8::1", "192.0.2.7", "192.0.2.8", None],
            "billing_customer_id": ["c1", "c2", "c3", "c4", "c5", "c9"],
        },
        dtype="string",
    )
    scores = pd.DataFrame(
        {
            "account_id": list("abcdef"),
            "score": [0.9] * 6,
            "action": ["suspend", "review", "suspend", "suspend", "none", "suspend"],
            "reasons": ["r"] * 6,
        }
    )
    allow = AllowList(
        email_domains=frozenset({"uni.edu"}),
        ips=frozenset({"2001:db8::1"}),
        networks=(__import__("ipaddress").ip_network("192.0.2.0/28"),),
        billing_customer_ids=frozenset({"c9"}),
    )
    outcome = apply_allowlist(scores, accounts, allow)
    actions = dict(zip(outcome.scores["account_id"], outcome.scores["action"], strict=True))
    # b's domain is a subdomain (not covered); e is allow-listed but was not flagged.
    assert actions == {
        "a": "none",
        "b": "review",
        "c": "none",
        "d": "none",
        "e": "none",
        "f": "none",
    }
    assert (outcome.n_matched, outcome.n_spared) == (5, 4)
    reasons = dict(zip(outcome.scores["account_id"], outcome.scores["reasons"], strict=True))
    assert reasons["c"].startswith("allow-listed (ip 2001:db8::1)")
    assert reasons["d"].startswith("allow-listed (cidr 192.0.2.0/28)")
    assert reasons["e"] == "allow-listed (cidr 192.0.2.0/28)"


def test_allowlist_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "allow.csv"
    bad.write_text("kind,value\nip,10.0.0.1\ncidr,10.0.0.0/33\n")
    with pytest.raises(InputError, match=r"allow.csv: line 3, column value: '10.0.0.0/33'"):
        load_allowlist(bad)
    bad.write_text("phone,555\n")
    with pytest.raises(InputError, match="line 1, column kind: unknown kind 'phone'"):
        load_allowlist(bad)
    with pytest.raises(InputError, match="cannot read allow-list"):
        load_allowlist(tmp_path / "missing.csv")


def test_explain_cites_evidence(first: RunResult) -> None:
    store = RunDirectory(first.run_dir)
    scores = store.read("scores")
    links = store.read("links")
    observations = store.read("observations")
    flagged = scores[scores["action"] == "suspend"].sort_values("account_id")
    account = next(a for a in flagged["account_id"] if (links["account_a"] == a).any())
    explained = explain(first.run_dir, account)
    assert explained.cluster_id is not None and explained.cluster is not None
    assert explained.links, "a suspended clustered account has evidence links"
    own = set(
        observations.loc[observations["account_id"] == account, "kind"]
        + ":"
        + observations.loc[observations["account_id"] == account, "value"]
    )
    cited_shared = False
    for link in explained.links:
        assert link.evidence
        other = observations[observations["account_id"] == link.account_id]
        shared = own & set(other["kind"] + ":" + other["value"])
        cited_shared |= any(token in link.evidence for token in shared)
    assert cited_shared, "evidence should name an identifier the two accounts share"
    text = explained.render()
    assert explained.cluster_id in text
    assert explained.links[0].account_id in text and explained.links[0].evidence in text


def test_explain_unknown_account_and_missing_run(first: RunResult, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'no-such-account' is not in the run"):
        explain(first.run_dir, "no-such-account")
    with pytest.raises(InputError, match="run directory not found"):
        explain(tmp_path / "missing", "x")


def test_cluster_graph(first: RunResult) -> None:
    scores = RunDirectory(first.run_dir).read("scores")
    clustered = scores.dropna(subset=["cluster_id"])
    cluster_id = clustered.sort_values(["cluster_size", "cluster_id"]).iloc[-1]["cluster_id"]
    graph = linker.cluster_graph(first.run_dir, cluster_id)
    assert isinstance(graph, nx.Graph)
    members = set(clustered.loc[clustered["cluster_id"] == cluster_id, "account_id"])
    assert set(graph.nodes) == members
    assert graph.number_of_edges() > 0
    assert all(d["evidence"] for _, _, d in graph.edges(data=True))
    assert graph.graph["cluster_id"] == cluster_id
    with pytest.raises(InputError, match="not in the run"):
        linker.cluster_graph(first.run_dir, "C-none")


def test_rejected_rows_are_quarantined_and_counted(world: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for path in world.iterdir():
        if path.name.startswith("labels"):
            continue
        (data / path.name).write_bytes(path.read_bytes())
    accounts = next(data.glob("accounts.csv*"))
    if accounts.suffix != ".csv":
        pytest.skip("the synthetic world is not plain CSV")
    with open(accounts, "a") as handle:
        handle.write("bad-1,not-a-date,x@y.z,10.0.0.1,d,US,b\n")
    result = run(data, tmp_path / "t.csv", settings=Settings())
    counts = result.counts["tables"]["accounts"]
    assert counts["rejected"] == 1 and counts["read"] == N_ACCOUNTS + 1
    assert (result.run_dir / "quarantine" / "accounts.csv").is_file()
    with pytest.raises(InputError, match="accounts"):
        run(data, tmp_path / "u.csv", settings=load_settings(overrides={"ingest.on_error": "fail"}))
