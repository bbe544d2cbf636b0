"""The loader against the session's real Neo4j: counts, idempotence, resumption, injection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import ROOT, Neo4jTestServer, linker_cli
from neo4j_world import (
    INJECTION_DEVICE,
    INJECTION_EMAIL,
    INJECTION_PAYMENT,
    INJECTION_USER_AGENT,
    build_run_dir,
    random_world,
    small_world,
)

from linker.errors import InputError
from linker.neo4j.loader import graph_digest, load_run

# What the contract says each observation kind becomes; written out here, independently of
# the loader's own mapping, so a wrong mapping fails these tests.
EXPECTED_SCHEMA = {
    "payment": ("PaymentMethod", "HAS_PAYMENT"),
    "card_bin": ("CardBin", "HAS_CARD_BIN"),
    "mailbox": ("Mailbox", "HAS_MAILBOX"),
    "email_domain": ("EmailDomain", "HAS_EMAIL_DOMAIN"),
    "signup_ip": ("IP", "SIGNED_UP_FROM"),
    "ip": ("IP", "USED_IP"),
    "signup_subnet": ("Subnet", "SIGNED_UP_FROM_SUBNET"),
    "subnet": ("Subnet", "USED_SUBNET"),
    "device": ("Device", "USED_DEVICE"),
    "user_agent": ("UserAgent", "USED_USER_AGENT"),
    "prompt": ("PromptTemplate", "USED_PROMPT"),
}


def expected_counts(run_dir: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Nodes per label and relationships per type that the run directory should produce."""
    accounts = pd.read_parquet(run_dir / "tables" / "accounts.parquet")
    obs = pd.read_parquet(run_dir / "observations.parquet")
    scores = pd.read_parquet(run_dir / "scores.parquet")
    clusters = pd.read_parquet(run_dir / "clusters.parquet")
    events = pd.read_parquet(run_dir / "tables" / "events.parquet")
    obs["label"] = obs["kind"].map(lambda k: EXPECTED_SCHEMA[k][0])
    obs["rel"] = obs["kind"].map(lambda k: EXPECTED_SCHEMA[k][1])
    nodes = obs.drop_duplicates(["label", "value"]).groupby("label").size().to_dict()
    nodes["Account"] = accounts["account_id"].nunique()
    nodes["Cluster"] = len(clusters)
    nodes["Model"] = events["model"].nunique()
    # Each suspended or reviewed account also carries its action as a label.
    for action, label in (("suspend", "Suspend"), ("review", "Review")):
        if (scores["action"] == action).any():
            nodes[label] = int((scores["action"] == action).sum())
    rels = obs.groupby("rel").size().to_dict()
    rels["IN_CLUSTER"] = int(scores["cluster_id"].notna().sum())
    rels["USED_MODEL"] = len(events.drop_duplicates(["account_id", "model"]))
    rels["IN_SUBNET"] = obs.loc[obs["label"] == "IP", "value"].nunique()
    return {k: int(v) for k, v in nodes.items()}, {k: int(v) for k, v in rels.items()}


def db_counts(runner: Any) -> tuple[dict[str, int], dict[str, int]]:
    # The run's graph, without the (:LinkerRun) bookkeeping node (which run, loaded when).
    nodes = runner.run(
        "MATCH (n) WHERE NOT n:LinkerRun UNWIND labels(n) AS l RETURN l, count(*) ORDER BY l"
    ).rows
    rels = runner.run("MATCH ()-[r]->() RETURN type(r), count(*) ORDER BY type(r)").rows
    return {r[0]: r[1] for r in nodes}, {r[0]: r[1] for r in rels}


@pytest.fixture()
def small_run(tmp_path: Path) -> Path:
    return build_run_dir(small_world(), tmp_path / "run")


def test_load_counts_equal_the_runs_counts(neo4j_runner: Any, small_run: Path) -> None:
    summary = load_run(small_run, runner=neo4j_runner, batch_size=3)
    nodes, rels = expected_counts(small_run)
    assert db_counts(neo4j_runner) == (nodes, rels)
    assert (summary.nodes, summary.relationships) == (nodes, rels)
    assert summary.batches > len(rels)  # batch size 3 splits the steps


def test_load_writes_attributes_and_account_counts(neo4j_runner: Any, small_run: Path) -> None:
    load_run(small_run, runner=neo4j_runner)
    rows = neo4j_runner.run(
        "MATCH (a:Account {account_id: 'r2'}) RETURN a.email, a.country, a.billing_customer_id,"
        " a.score, a.action, a.cluster_id, a.cluster_size, a.created_at.epochSeconds"
    ).rows
    created = pd.Timestamp("2025-03-01T00:30:00Z").timestamp()
    assert rows == [("r2@ring.example", "US", "cust-r2", 0.93, "suspend", "C-0001", 4, created)]
    # n_accounts: the distinct accounts on the identifier, over every kind of its label.
    ip = neo4j_runner.run("MATCH (i:IP {value: '203.0.113.200'}) RETURN i.n_accounts").rows
    assert ip == [(3,)]
    subnet = neo4j_runner.run(
        "MATCH (s:Subnet {value: '203.0.113.0/24'}) RETURN s.n_accounts,"
        " [(i:IP)-[:IN_SUBNET]->(s) | i.value]"
    ).rows
    assert subnet[0][0] == 4
    assert sorted(subnet[0][1]) == [f"203.0.113.{n}" for n in (10, 11, 12, 13, 200)]
    rel = neo4j_runner.run(
        "MATCH (:Account {account_id: 'r2'})-[r:USED_IP]->(:IP {value: '203.0.113.200'})"
        " RETURN r.count, r.first_seen.epochSeconds, r.last_seen.epochSeconds"
    ).rows
    t0 = pd.Timestamp("2025-03-01T00:00:00Z").timestamp()
    assert rel == [(100, t0 + 4 * 3600, t0 + 6 * 3600)]
    bin_node = neo4j_runner.run("MATCH (c:CardBin {value: '411111'}) RETURN c.is_supernode").rows
    assert bin_node == [(True,)]
    used = neo4j_runner.run(
        "MATCH (:Account {account_id: 'r2'})-[u:USED_MODEL]->(m:Model) "
        "RETURN m.name, u.requests, m.first_seen.epochSeconds"
    ).rows
    assert used == [("model-new", 100, t0 + 3 * 3600)]
    members = neo4j_runner.run(
        "MATCH (c:Cluster {cluster_id: 'C-0001'})<-[:IN_CLUSTER]-(a) "
        "RETURN c.size, c.score, c.n_suspend, collect(a.account_id)"
    ).rows
    assert members[0][:3] == (4, 0.95, 3) and sorted(members[0][3]) == ["r1", "r2", "r3", "r4"]


def test_reload_is_idempotent(neo4j_runner: Any, small_run: Path) -> None:
    load_run(small_run, runner=neo4j_runner, batch_size=4)
    first = db_counts(neo4j_runner)
    props = "MATCH (n) RETURN n.account_id, n.value, n.n_accounts, n.score ORDER BY 1, 2"
    first_props = neo4j_runner.run(props).rows
    load_run(small_run, runner=neo4j_runner, batch_size=7)
    assert db_counts(neo4j_runner) == first
    assert neo4j_runner.run(props).rows == first_props
    assert first == expected_counts(small_run)


def _action_labels(runner: Any) -> dict[str, list[str]]:
    rows = runner.run(
        "MATCH (a:Account) RETURN a.account_id, [l IN labels(a) WHERE l <> 'Account'] "
        "ORDER BY a.account_id"
    ).rows
    return {r[0]: sorted(r[1]) for r in rows}


def test_accounts_carry_their_action_as_a_label_and_a_reload_drops_a_stale_one(
    neo4j_runner: Any, small_run: Path, tmp_path: Path
) -> None:
    load_run(small_run, runner=neo4j_runner)
    scores = pd.read_parquet(small_run / "scores.parquet")
    labels = _action_labels(neo4j_runner)
    for row in scores.itertuples():
        expected = {"suspend": ["Suspend"], "review": ["Review"]}.get(row.action, [])
        assert labels[row.account_id] == expected, row.account_id
    # The next day r1 is cleared and r4 suspended: a load over the first leaves no stale label.
    scores["action"] = (
        scores["account_id"].map({"r1": "none", "r4": "suspend"}).fillna(scores["action"])
    )
    scores.to_parquet(small_run / "scores.parquet", index=False)
    (small_run / "manifest.json").write_text(
        '{"run_id": "day-2", "as_of": "2025-03-02T00:00:00+00:00"}\n'
    )
    summary = load_run(small_run, runner=neo4j_runner)
    assert summary.rows_written["accounts"] == 2  # only the two changed accounts are rewritten
    after = _action_labels(neo4j_runner)
    assert after["r1"] == [] and after["r4"] == ["Suspend"] and after["r2"] == ["Suspend"]
    incremental = graph_digest(neo4j_runner)
    load_run(small_run, runner=neo4j_runner, replace=True)
    assert graph_digest(neo4j_runner).sha256 == incremental.sha256


def test_injection_attempts_are_stored_as_plain_data(neo4j_runner: Any, small_run: Path) -> None:
    load_run(small_run, runner=neo4j_runner)
    assert db_counts(neo4j_runner) == expected_counts(small_run)  # nothing deleted or added
    labels = {r[0] for r in neo4j_runner.run("CALL db.labels()").rows}
    assert "Pwned" not in labels
    row = neo4j_runner.run(
        "MATCH (a:Account {account_id: 'x1'}) RETURN a.email, a.device_id, a.billing_customer_id"
    ).rows
    assert row == [(INJECTION_EMAIL, INJECTION_DEVICE, "cust-`x`")]
    for label, value in (
        ("PaymentMethod", INJECTION_PAYMENT),
        ("Device", INJECTION_DEVICE),
        ("UserAgent", INJECTION_USER_AGENT),
        ("Mailbox", INJECTION_EMAIL.lower()),
    ):
        found = neo4j_runner.run(
            "MATCH (n {value: $value})<--(:Account {account_id: 'x1'}) RETURN labels(n)",
            {"value": value},
        ).rows
        assert found == [([label],)], (label, value)


def test_interrupted_load_completes_when_rerun(
    neo4j_server: Neo4jTestServer, neo4j_runner: Any, tmp_path: Path
) -> None:
    run_dir = build_run_dir(random_world(600, seed=3), tmp_path / "big")
    expected = expected_counts(run_dir)
    cmd = [sys.executable, "-m", "linker.cli", "neo4j", "load", str(run_dir), "--batch-size", "20"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=neo4j_server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            rels = neo4j_runner.run("MATCH ()-[r]->() RETURN count(r)").rows[0][0]
            if rels > 0:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the loader finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    partial = db_counts(neo4j_runner)
    assert partial != expected, "the kill came too late to interrupt the load"
    assert sum(partial[1].values()) < sum(expected[1].values())

    rerun = linker_cli("neo4j", "load", str(run_dir), env=neo4j_server.env)
    assert rerun.returncode == 0, rerun.stderr
    assert db_counts(neo4j_runner) == expected
    assert f"(:Account) {expected[0]['Account']:,}" in rerun.stdout


def test_replace_clears_another_runs_graph(
    neo4j_runner: Any, small_run: Path, tmp_path: Path
) -> None:
    other = build_run_dir(random_world(30, seed=1), tmp_path / "other")
    load_run(other, runner=neo4j_runner)
    load_run(small_run, runner=neo4j_runner, replace=True)
    assert db_counts(neo4j_runner) == expected_counts(small_run)


def test_bad_run_dir_is_a_one_line_input_error(neo4j_runner: Any, small_run: Path) -> None:
    obs = pd.read_parquet(small_run / "observations.parquet")
    obs.loc[0, "account_id"] = "ghost"
    obs.to_parquet(small_run / "observations.parquet", index=False)
    with pytest.raises(InputError, match=r"observations.parquet: row 0: column account_id"):
        load_run(small_run, runner=neo4j_runner)
    (small_run / "scores.parquet").unlink()
    with pytest.raises(InputError, match=r"scores\.parquet: missing"):
        load_run(small_run, runner=neo4j_runner)


def test_cli_load_reports_counts_and_errors(
    neo4j_server: Neo4jTestServer, neo4j_runner: Any, small_run: Path, tmp_path: Path
) -> None:
    done = linker_cli("neo4j", "load", str(small_run), env=neo4j_server.env)
    assert done.returncode == 0, done.stderr
    nodes, rels = expected_counts(small_run)
    assert f"(:Account) {nodes['Account']}" in done.stdout
    assert f"[:USED_IP] {rels['USED_IP']}" in done.stdout
    missing = linker_cli("neo4j", "load", str(tmp_path / "nope"), env=neo4j_server.env)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'nope'}: run directory not found "
        "(create one with `linker run DATA_DIR --out FILE`)"
    ]
