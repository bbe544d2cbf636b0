"""The analyst queries on the small hand-built world, whose answers are known by construction
(see ``neo4j_world.small_world``), and the ``linker query`` command."""

from __future__ import annotations

import csv
import io
import json
import socket
from pathlib import Path
from typing import Any

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
    top = [(r["kind"], r["value"], r["members"], r["outside_cluster"]) for r in rows[:4]]
    assert top == [
        ("EmailDomain", "ring.example", 4, 0),
        ("PaymentMethod", "pay-ring", 4, 0),
        ("Subnet", "203.0.113.0/24", 4, 0),
        ("CardBin", "411111", 4, 2),
    ]
    device = next(r for r in rows if r["value"] == "dev-ring")
    assert (device["members"], device["outside_cluster"]) == (3, 1)
    assert [r["members"] for r in rows] == sorted((r["members"] for r in rows), reverse=True)


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
