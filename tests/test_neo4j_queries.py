"""The analyst queries on the small hand-built world, whose answers are known by construction
(see ``neo4j_world.small_world``), and the ``linker query`` command."""

from __future__ import annotations

import csv
import io
import json
import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import Neo4jTestServer
from neo4j_world import INJECTION_PAYMENT, build_run_dir, small_world

from linker.cli import cli
from linker.errors import EnvironmentProblem, InputError, LinkerError
from linker.neo4j.loader import load_run
from linker.neo4j.runner import ConnectionSettings, QueryRunner
from linker.queries import available_queries, load_query, query_info, run_query

ANALYST_QUERIES = {
    "ring_around_account",
    "shared_payment",
    "top_clusters",
    "signup_bursts",
    "review_queue",
    "cluster_identifiers",
    "new_model_adopters",
    "ring_graph",
    "cluster_timeline",
}


@pytest.fixture()
def loaded(neo4j_runner: Any, tmp_path: Path) -> Any:
    load_run(build_run_dir(small_world(), tmp_path / "run"), runner=neo4j_runner)
    return neo4j_runner


def records(runner: Any, name: str, **params: str) -> list[dict[str, Any]]:
    result = run_query(name, params, runner=runner)
    return result.records()  # type: ignore[no-any-return]


def test_every_query_has_a_header_and_is_listed() -> None:
    assert set(available_queries()) >= ANALYST_QUERIES
    assert all(
        n.startswith("load/")
        for n in set(available_queries(include_load=True)) - set(available_queries())
    )
    for name in available_queries():
        info = query_info(name)
        assert info.purpose, name
        for param in info.params:
            assert f"${param.name}" in load_query(name), (name, param.name)


def test_unknown_query_names_the_available_ones() -> None:
    with pytest.raises(LinkerError, match=r"unknown query 'nope'; available: .*top_clusters"):
        load_query("nope")
    with pytest.raises(LinkerError, match="unknown query"):
        load_query("../pyproject")


def test_ring_around_account(loaded: Any) -> None:
    rows = records(loaded, "ring_around_account", account_id="r1")
    assert {r["account_id"] for r in rows} == {"r2", "r3", "r4", "b1"}
    by_id = {r["account_id"]: r for r in rows}
    assert by_id["b1"]["shared"] == ["Device:dev-ring"]
    assert "PaymentMethod:pay-ring" in by_id["r2"]["shared"]
    assert "CardBin:411111" not in by_id["r2"]["shared"]  # a supernode
    assert rows[-1]["account_id"] == "b1"  # fewest shared identifiers last
    wide = records(loaded, "ring_around_account", account_id="r1", include_supernodes="true")
    assert {r["account_id"] for r in wide} == {"r2", "r3", "r4", "b1", "b2"}


def test_shared_payment(loaded: Any) -> None:
    rows = records(loaded, "shared_payment", fingerprint="pay-fam")
    assert [r["account_id"] for r in rows] == ["f1", "f2"]
    assert {r["billing_customer_id"] for r in rows} == {"cust-f"}
    injected = records(loaded, "shared_payment", fingerprint=INJECTION_PAYMENT)
    assert [r["account_id"] for r in injected] == ["x1"]


def test_top_clusters(loaded: Any) -> None:
    rows = records(loaded, "top_clusters")
    assert [(r["cluster_id"], r["size"]) for r in rows] == [("C-0001", 4), ("C-0002", 2)]
    assert rows[0]["top_evidence"] == [
        "EmailDomain:ring.example (4)",
        "PaymentMethod:pay-ring (4)",
        "Subnet:203.0.113.0/24 (4)",
    ]
    assert "PaymentMethod:pay-fam (2)" in rows[1]["top_evidence"]
    assert [r["cluster_id"] for r in records(loaded, "top_clusters", limit="1")] == ["C-0001"]


def test_signup_bursts(loaded: Any) -> None:
    rows = records(loaded, "signup_bursts", min_accounts="2")
    assert [(r["subnet"], r["signups_in_window"]) for r in rows] == [("203.0.113.0/24", 4)]
    assert rows[0]["window_start"].iso_format().startswith("2025-03-01T00:00:00")
    wider = records(loaded, "signup_bursts", min_accounts="2", window_hours="48")
    assert ("198.51.100.0/24", 2) in [(r["subnet"], r["signups_in_window"]) for r in wider]
    assert records(loaded, "signup_bursts", min_accounts="5") == []


def test_review_queue(loaded: Any) -> None:
    rows = records(loaded, "review_queue")
    assert [(r["account_id"], r["flagged_cluster"]) for r in rows] == [("b1", "C-0001")]
    assert rows[0]["members_linked"] == 3 and rows[0]["shared"] == ["Device:dev-ring"]
    wide = records(loaded, "review_queue", include_supernodes="true")
    assert {r["account_id"] for r in wide} == {"b1", "b2"}


def test_cluster_identifiers(loaded: Any) -> None:
    rows = records(loaded, "cluster_identifiers", cluster_id="C-0001")
    top = [(r["kind"], r["value"], r["members"], r["outside_cluster"]) for r in rows[:3]]
    assert top == [
        ("EmailDomain", "ring.example", 4, 0),
        ("PaymentMethod", "pay-ring", 4, 0),
        ("Subnet", "203.0.113.0/24", 4, 0),
    ]
    device = next(r for r in rows if r["value"] == "dev-ring")
    assert (device["members"], device["outside_cluster"], device["links"]) == (3, 1, True)
    # The supernode card BIN is shared by all four members, but it links nobody: it comes
    # after every linking identifier.
    card_bin = next(i for i, r in enumerate(rows) if r["value"] == "411111")
    assert not rows[card_bin]["links"] and all(r["links"] for r in rows[:card_bin])
    assert all(not r["links"] for r in rows[card_bin:])
    linking = [r["members"] for r in rows if r["links"]]
    assert linking == sorted(linking, reverse=True)
    assert records(loaded, "cluster_identifiers") == rows  # null: the top-scoring cluster
    family = records(loaded, "cluster_identifiers", cluster_id="C-0002")
    assert {r["cluster_size"] for r in family} == {2}


def test_cluster_timeline(loaded: Any) -> None:
    rows = records(loaded, "cluster_timeline")  # null: the top-scoring cluster, C-0001
    assert [(r["account_id"], r["minutes_after_previous"]) for r in rows] == [
        ("r1", None),
        ("r2", 30.0),
        ("r3", 30.0),
        ("r4", 60.0),
    ]
    assert [r["action"] for r in rows] == ["suspend", "suspend", "suspend", "review"]
    assert rows[0]["models"][0] == "model-new"
    family = records(loaded, "cluster_timeline", cluster_id="C-0002")
    assert [r["account_id"] for r in family] == ["f1", "f2"]
    assert family[1]["minutes_after_previous"] == 24 * 60.0


def test_new_model_adopters(loaded: Any) -> None:
    rows = records(loaded, "new_model_adopters", model="model-new")
    assert [(r["account_id"], r["hours_after_first_use"]) for r in rows] == [
        ("r1", 0.0),
        ("r2", 1.0),
        ("r3", 17.0),
    ]
    every = records(loaded, "new_model_adopters")
    assert [(r["model"], r["account_id"]) for r in every] == [
        ("model-new", "r1"),
        ("model-new", "r2"),
        ("model-new", "r3"),
        ("model-old", "f1"),
    ]
    assert [r["account_id"] for r in records(loaded, "new_model_adopters", hours="48")][-2:] == [
        "r4",
        "f1",
    ]


def test_parameters_are_checked_before_any_query() -> None:
    with pytest.raises(InputError, match="missing parameter account_id"):
        run_query("ring_around_account", {})
    with pytest.raises(InputError) as caught:
        run_query("top_clusters", {"limit": "many", "x": "1"})
    assert "limit must be int, not 'many'" in str(caught.value)
    assert "unknown parameter 'x'" in str(caught.value)


def test_cli_query_formats(neo4j_server: Neo4jTestServer, loaded: Any) -> None:
    cli_runner = CliRunner(env={"NEO4J_URI": neo4j_server.bolt_uri, "NEO4J_PASSWORD": None})
    args = ["query", "shared_payment", "--param", "fingerprint=pay-ring"]
    as_csv = cli_runner.invoke(cli, [*args, "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["account_id"] for r in rows] == ["r1", "r2", "r3", "r4"]
    as_json = cli_runner.invoke(cli, [*args, "--format", "json"])
    assert [r["action"] for r in json.loads(as_json.stdout)] == ["suspend"] * 3 + ["review"]
    table = cli_runner.invoke(cli, args)
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["account_id", "billing_customer_id"]
    assert lines[-1] == "(4 rows)"
    listing = cli_runner.invoke(cli, ["query", "--list"])
    assert all(f"{name}:" in listing.stdout for name in ANALYST_QUERIES)
    bad = cli_runner.invoke(cli, ["query", "top_clusters", "--param", "limit=x"])
    assert bad.exit_code == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "limit must be int" in bad.stderr


def test_unreachable_server_says_how_to_start_one() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        runner = QueryRunner(ConnectionSettings(uri=f"bolt://127.0.0.1:{port}"), backoff=0.01)
        with runner, pytest.raises(EnvironmentProblem, match="linker neo4j start"):
            runner.run("RETURN 1")
        uri = f"bolt://127.0.0.1:{port}"
        done = CliRunner(env={"NEO4J_URI": uri}).invoke(cli, ["query", "top_clusters"])
    assert done.exit_code == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: cannot reach Neo4j at {uri}: start one with `linker neo4j start`,"
        " or set NEO4J_URI (and NEO4J_PASSWORD)"
    ]


@pytest.fixture()
def ring_loaded(neo4j_runner: Any, tmp_path: Path) -> Any:
    """The small world with the evidence links a run would save inside ring C-0001."""
    run_dir = build_run_dir(small_world(), tmp_path / "run")
    pd.DataFrame(
        {
            "account_a": ["r1", "r1", "r1", "r2"],
            "account_b": ["r2", "r3", "r4", "r3"],
            "weight": [4.5, 4.5, 3.0, 4.5],
            "evidence": [
                "payment:pay-ring;device:dev-ring;email_pattern:r#@ring.example",
                "payment:pay-ring;device:dev-ring",
                "payment:pay-ring",
                "device:dev-ring;payment:pay-ring",
            ],
        }
    ).to_parquet(run_dir / "links.parquet", index=False)
    load_run(run_dir, runner=neo4j_runner)
    return neo4j_runner


def test_ring_graph_draws_members_their_links_and_the_identifiers_the_links_cite(
    ring_loaded: Any,
) -> None:
    (row,) = records(ring_loaded, "ring_graph")  # null: the ring of the top-scoring account
    assert row["cluster_id"] == "C-0001"
    assert row["members"] == ["r1 (suspend)", "r2 (suspend)", "r3 (suspend)", "r4 (review)"]
    assert [n["account_id"] for n in row["accounts"]] == ["r1", "r2", "r3", "r4"]
    assert [r["weight"] for r in row["links"]] == [4.5, 4.5, 4.5, 3.0]  # strongest first
    # Only what the links cite: the shared payment and device; never the card BIN (a
    # supernode), nor the e-mail domain or the subnet that all four share too.
    assert sorted(n["value"] for n in row["identifiers"]) == ["dev-ring", "pay-ring"]
    assert {r.type for r in row["uses"]} == {"HAS_PAYMENT", "USED_DEVICE"}
    # Bounded: two members, the link between them, the one identifier it cites first.
    (small,) = records(ring_loaded, "ring_graph", account_id="r2", members="2", evidence="1")
    assert [n["account_id"] for n in small["accounts"]] == ["r2", "r1"]
    assert [r["weight"] for r in small["links"]] == [4.5]
    assert [n["value"] for n in small["identifiers"]] == ["pay-ring"]
    assert records(ring_loaded, "ring_graph", account_id="b1") == []  # in no cluster
