"""The identifier-kind registry: one entry (plus a normaliser) adds a kind end to end."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from linker import kinds
from linker.io import contract
from linker.kinds import IdentifierKind, Source
from linker.neo4j.loader import load_run
from linker.normalise import Memo, map_distinct
from linker.pipeline import explain, run
from linker.settings import LinkSettings, Settings
from linker.synth import generate_world

SHARED_PHONE = ["+1 (555) 010-9999", "15550109999", "+1-555-010-9999"]
"""One phone number in three spellings; the phone normaliser keeps its digits."""


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


def phone_array(values: pa.Array, memo: Memo | None = None) -> pa.Array:
    """The test's normaliser: a phone number's digits."""
    return map_distinct(values, _digits, memo)


PHONE = IdentifierKind(
    "phone",
    (Source("accounts", "phone"),),
    phone_array,
    "phone",
    prior=3.0,
    reason_label="phone",
    neo4j_label="Phone",
    neo4j_relationship="HAS_PHONE",
    family="phone",
    description="a phone number given at signup",
)


@pytest.fixture()
def phone_kind() -> Iterator[IdentifierKind]:
    with kinds.registered(PHONE) as entry:
        yield entry


@pytest.fixture(scope="module")
def phone_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A small synth world whose accounts table has a ``phone`` column: every account its
    own number, except three unrelated solo accounts that share one (spelt three ways) and
    signed up from one address. One family of evidence (the address) ties nobody; the phone
    is the second that makes them a group."""
    root = tmp_path_factory.mktemp("phone-world")
    generate_world(2000, 3, root)
    accounts = pd.read_csv(root / "accounts.csv", dtype=str, keep_default_na=False)
    labels = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    solo = labels.loc[labels["group"] == "solo", "account_id"].sort_values()
    sharers = [solo.iloc[10], solo.iloc[500], solo.iloc[900]]
    accounts["phone"] = [f"+44 20 7946 {i:04d}" for i in range(len(accounts))]
    for number, account in zip(SHARED_PHONE, sharers, strict=True):
        accounts.loc[accounts["account_id"] == account, "phone"] = number
        accounts.loc[accounts["account_id"] == account, "signup_ip"] = "198.51.100.23"
    accounts.to_csv(root / "accounts.csv", index=False)
    return root, sharers


def _run(world: Path, out: Path) -> Any:
    # Every clustered account is flagged, so each one gets a reason to read.
    settings = Settings(link=LinkSettings(review_threshold=0.0, suspend_threshold=1.0))
    return run(world, out, settings=settings)


def test_register_adds_the_source_column_to_the_contract_and_the_prior_to_settings(
    phone_kind: IdentifierKind,
) -> None:
    assert "phone" in contract.TABLES["accounts"].column_names
    assert LinkSettings().kind_priors["phone"] == 3.0
    assert kinds.reason_label("phone") == "phone"
    assert "Phone" in kinds.neo4j_labels()


def test_unregister_restores_the_contract() -> None:
    before = contract.TABLES["accounts"]
    with kinds.registered(PHONE):
        pass
    assert contract.TABLES["accounts"] == before
    assert "phone" not in kinds.kind_names()
    assert "phone" not in LinkSettings().kind_priors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Phone Number"}, "lower_snake_case"),
        ({"neo4j_label": "phone) DETACH DELETE (n"}, "CamelCase"),
        ({"neo4j_relationship": "HAS-PHONE"}, "UPPER_SNAKE_CASE"),
        ({"prior": -1.0}, "at least 0"),
        ({"name": "payment"}, "already registered"),
    ],
)
def test_register_rejects_invalid_entries(change: dict[str, Any], message: str) -> None:
    import dataclasses

    with pytest.raises(ValueError, match=message):
        kinds.register(dataclasses.replace(PHONE, **change))
    assert "phone" not in kinds.kind_names()


def test_a_registered_kind_links_accounts_and_reaches_the_reasons(
    phone_kind: IdentifierKind, phone_world: tuple[Path, list[str]], tmp_path: Path
) -> None:
    world, sharers = phone_world
    result = _run(world, tmp_path / "with.csv")
    scores = pd.read_parquet(result.run_dir / "scores.parquet").set_index("account_id")
    clusters = scores.loc[sharers, "cluster_id"]
    assert clusters.notna().all() and clusters.nunique() == 1
    for account in sharers:
        reason = scores.loc[account, "reasons"]
        assert "phone 15550109999 with 2 accounts" in reason, reason
        assert "signup IP 198.51.100.23 with 2 accounts" in reason, reason
    observations = pd.read_parquet(result.run_dir / "observations.parquet")
    phones = observations[observations["kind"] == "phone"]
    assert len(phones) == 2000 and phones["value"].str.fullmatch(r"[0-9]+").all()
    assert explain(result.run_dir, sharers[0]).identifiers[0]["kind"] == "phone"


def test_without_the_kind_the_same_accounts_stay_apart(
    phone_world: tuple[Path, list[str]], tmp_path: Path
) -> None:
    world, sharers = phone_world
    result = _run(world, tmp_path / "without.csv")
    scores = pd.read_parquet(result.run_dir / "scores.parquet").set_index("account_id")
    clusters = scores.loc[sharers, "cluster_id"]
    assert clusters.isna().any() or clusters.nunique() > 1


def test_a_registered_kind_loads_into_neo4j(
    phone_kind: IdentifierKind,
    phone_world: tuple[Path, list[str]],
    tmp_path: Path,
    neo4j_runner: Any,
) -> None:
    world, sharers = phone_world
    result = _run(world, tmp_path / "load.csv")
    try:
        _load_and_check(result.run_dir, sharers, neo4j_runner)
    finally:
        # The session's server outlives this test: leave its schema as the loader makes it.
        neo4j_runner.run("DROP CONSTRAINT phone_value_unique IF EXISTS", write=True)


def _load_and_check(run_dir: Path, sharers: list[str], neo4j_runner: Any) -> None:
    summary = load_run(run_dir, runner=neo4j_runner, batch_size=500)
    assert summary.nodes["Phone"] == 1998
    assert summary.relationships["HAS_PHONE"] == 2000
    rows = neo4j_runner.run(
        "MATCH (a:Account)-[:HAS_PHONE]->(p:Phone {value: $value}) RETURN a.account_id",
        {"value": "15550109999"},
    ).rows
    assert sorted(r[0] for r in rows) == sorted(sharers)
    constraints = neo4j_runner.run("SHOW CONSTRAINTS YIELD name RETURN name").rows
    assert ["phone_value_unique"] in [list(r) for r in constraints]
