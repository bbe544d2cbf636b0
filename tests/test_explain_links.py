"""`linker explain` lists an account's links inside its cluster with the identifiers and
weights behind each (issue 14, item 3), on real runs of a small synthetic world."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.pipeline import Explanation, explain
from linker.synth import generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(1000, 3, out)
    return out


def _run(world: Path, out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(cli, ["run", str(world), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return out.with_name(f"{out.stem}.run")


@pytest.fixture(scope="module")
def run_dir(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(world, tmp_path_factory.mktemp("run") / "takedown.csv")


@pytest.fixture(scope="module")
def hub_run_dir(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run where every value held by more than two accounts is a hub, not pairs: many
    clustered accounts then have no pair in the ``links`` artefact."""
    tmp = tmp_path_factory.mktemp("hubs")
    settings = tmp / "settings.toml"
    settings.write_text("[link]\npair_max_accounts = 2\n")
    return _run(world, tmp / "takedown.csv", "--settings", str(settings))


def _explain(run_dir: Path, account: str) -> str:
    result = CliRunner().invoke(cli, ["explain", account, "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    return result.output


def _expected_ties(run_dir: Path, account: str) -> pd.DataFrame:
    """(member, kind, value, weight): the weighted, non-public identifiers the account
    shares with other members of its cluster, straight from the saved artefacts."""
    scores = pd.read_parquet(run_dir / "scores.parquet")
    cluster = scores.loc[scores["account_id"] == account, "cluster_id"].iloc[0]
    members = set(scores.loc[scores["cluster_id"] == cluster, "account_id"]) - {account}
    obs = pd.read_parquet(run_dir / "observations.parquet", columns=["account_id", "kind", "value"])
    idents = pd.read_parquet(run_dir / "identifiers.parquet")
    idents = idents[(idents["weight"] > 0) & ~idents["is_supernode"]]
    mine = obs[obs["account_id"] == account][["kind", "value"]].merge(idents)
    theirs = obs[obs["account_id"].isin(members)].drop_duplicates()
    return theirs.merge(mine, on=["kind", "value"])[["account_id", "kind", "value", "weight"]]


def _check_against_artefacts(run_dir: Path, why: Explanation) -> None:
    """Every listed link and identifier is what the run saved."""
    links = pd.read_parquet(run_dir / "links.parquet")
    expected = _expected_ties(run_dir, why.account_id)
    pairs = links[(links["account_a"] == why.account_id) | (links["account_b"] == why.account_id)]
    stored = dict(
        zip(
            pairs["account_b"].where(pairs["account_a"] == why.account_id, pairs["account_a"]),
            pairs["weight"],
            strict=True,
        )
    )
    assert {link.account_id for link in why.links} == set(stored) | set(expected["account_id"])
    weights = [link.weight for link in why.links]
    assert weights == sorted(weights, reverse=True), "strongest first"
    for link in why.links:
        assert link.stored == (link.account_id in stored)
        mine = expected[expected["account_id"] == link.account_id]
        got = {(i.kind, i.value): i.weight for i in link.identifiers}
        keys = zip(mine["kind"], mine["value"], strict=True)
        assert got == dict(zip(keys, mine["weight"], strict=True))
        if link.stored:
            assert link.weight == pytest.approx(stored[link.account_id])
        else:
            assert link.weight == pytest.approx(sum(got.values()))


def test_a_flagged_account_lists_its_links_with_the_saved_weights(run_dir: Path) -> None:
    scores = pd.read_parquet(run_dir / "scores.parquet")
    flagged = scores[scores["action"].isin(["suspend", "review"])].sort_values("account_id")
    assert len(flagged), "the synthetic world has planted rings"
    account = str(flagged["account_id"].iloc[0])
    why = explain(run_dir, account)
    assert why.links and why.links[0].identifiers
    _check_against_artefacts(run_dir, why)

    text = _explain(run_dir, account)
    assert f"linked accounts in cluster {why.cluster_id} ({len(why.links)}," in text
    first = why.links[0]
    idents = pd.read_parquet(run_dir / "identifiers.parquet").set_index(["kind", "value"])
    block = text.split(f"  {first.account_id}  weight {first.weight:.3f}")[1]
    for ident in first.identifiers[:5]:
        saved = float(idents.loc[(ident.kind, ident.value), "weight"])
        assert f"{ident.kind} {ident.value}  weight {saved:.3f}" in block
    if len(first.identifiers) > 5:
        assert f"... and {len(first.identifiers) - 5} more identifiers" in block
    if len(why.links) > 25:
        assert f"... and {len(why.links) - 25} more linked accounts" in text


def test_reasons_are_labelled_account_or_cluster(run_dir: Path) -> None:
    scores = pd.read_parquet(run_dir / "scores.parquet")
    row = scores[scores["action"] == "suspend"].sort_values("account_id").iloc[0]
    clusters = pd.read_parquet(run_dir / "clusters.parquet").set_index("cluster_id")
    text = _explain(run_dir, str(row["account_id"]))
    assert f"  account reasons: {row['reasons']}\n" in text
    assert f"  cluster reasons: {clusters.loc[row['cluster_id'], 'reasons']}\n" in text


def test_pairs_below_the_link_floor_still_list_shared_identifiers(hub_run_dir: Path) -> None:
    scores = pd.read_parquet(hub_run_dir / "scores.parquet")
    links = pd.read_parquet(hub_run_dir / "links.parquet")
    paired = set(links["account_a"]) | set(links["account_b"])
    unpaired = scores[scores["cluster_id"].notna() & ~scores["account_id"].isin(paired)]
    account = next(
        (a for a in sorted(unpaired["account_id"]) if len(_expected_ties(hub_run_dir, a))), None
    )
    assert account is not None, "some clustered account has no stored pair but shares values"
    why = explain(hub_run_dir, account)
    assert why.links and not any(link.stored for link in why.links)
    _check_against_artefacts(hub_run_dir, why)

    text = _explain(hub_run_dir, account)
    assert ": none" not in text.split("linked accounts")[-1]
    assert f"linked accounts in cluster {why.cluster_id} ({len(why.links)}," in text
    assert f"  {why.links[0].account_id}  weight {why.links[0].weight:.3f}" in text
    assert "shared identifiers only*" in text and "* no stored link" in text
    ident = why.links[0].identifiers[0]
    assert re.search(rf"{ident.kind} {re.escape(ident.value)}  weight {ident.weight:.3f}", text)


def test_a_singleton_account_has_no_links(run_dir: Path) -> None:
    scores = pd.read_parquet(run_dir / "scores.parquet")
    alone = sorted(scores.loc[scores["cluster_id"].isna(), "account_id"])[0]
    assert explain(run_dir, alone).links == []
    text = _explain(run_dir, alone)
    assert "linked accounts: none (the account is in no cluster)" in text
    assert "cluster: none" in text
