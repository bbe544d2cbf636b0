"""Neo4j Browser, in Debian's headless chromium, shows the analysts' queries and rings.

The tests load runs into the session's real Neo4j (started by ``linker neo4j start``, so with
linker's Browser style and guide) and drive Neo4j Browser with playwright-core:

* ``tests/browser/neo4j_browser.mjs`` runs ``queries/top_clusters.cypher`` typed into the
  editor and checks that the rows the database returns appear on the page;
* ``tests/browser/neo4j_guide.mjs`` checks that connecting applied the style and opened the
  guide, clicks through the guide's first steps, draws one planted ring with
  ``queries/ring_graph.cypher`` and reads the drawn nodes' captions and colours from the SVG.

Screenshots are kept under ``test-output/browser/`` in the repo.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Neo4jTestServer, linker_cli
from neo4j_world import build_run_dir, small_world

from linker.neo4j import guide
from linker.neo4j.loader import load_run
from linker.queries import load_query, run_query

SCRIPT = ROOT / "tests" / "browser" / "neo4j_browser.mjs"
GUIDE_SCRIPT = ROOT / "tests" / "browser" / "neo4j_guide.mjs"
OUTPUT = ROOT / "test-output" / "browser"


def _one_line(cypher: str) -> str:
    """The query without its header comments, on one line, as an analyst would paste it."""
    body = "\n".join(line for line in cypher.splitlines() if not line.lstrip().startswith("//"))
    return re.sub(r"\s+", " ", body).strip()


@pytest.mark.browser
def test_top_clusters_query_renders_in_neo4j_browser(
    neo4j_server: Neo4jTestServer, neo4j_runner: Any, tmp_path: Path
) -> None:
    node = shutil.which("node")
    assert node, "the browser test needs Node.js"
    assert (ROOT / "tests" / "browser" / "node_modules" / "playwright-core").is_dir(), (
        "playwright-core is missing: run `make browser-deps`"
    )
    load_run(build_run_dir(small_world(), tmp_path / "run"), runner=neo4j_runner)
    truth = run_query("top_clusters", {"limit": "5"}, runner=neo4j_runner).records()
    assert truth, "the loaded world has clusters"
    expected = [row["cluster_id"] for row in truth] + [truth[0]["top_evidence"][0]]

    OUTPUT.mkdir(parents=True, exist_ok=True)
    screenshot = OUTPUT / "top_clusters.png"
    screenshot.unlink(missing_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")},
        "BROWSER_URL": neo4j_server.browser_url,
        "BOLT_ADDRESS": f"127.0.0.1:{neo4j_server.bolt_port}",
        "COMMANDS_JSON": json.dumps(
            [":param limit => 5", ":param evidence => 3", _one_line(load_query("top_clusters"))]
        ),
        "EXPECT_JSON": json.dumps(expected),
        "SCREENSHOT": str(screenshot),
    }
    done = subprocess.run(
        [node, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    assert done.returncode == 0 and report.get("ok"), (
        f"Neo4j Browser did not show {report.get('missing', expected)}: "
        f"{report.get('error', '')} {done.stderr[-2000:]}"
    )
    assert screenshot.stat().st_size > 10_000, "the screenshot was written"


def _grass_colour(selector: str) -> str:
    """The ``color`` the shipped style gives ``selector`` (e.g. ``node.Suspend``)."""
    block = re.search(re.escape(selector) + r"\s*\{([^}]*)\}", guide.style_text())
    assert block, selector
    found = re.search(r"(?:^|;|\s)color:\s*(#[0-9A-Fa-f]{6})", block.group(1))
    assert found, selector
    return found.group(1).upper()


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic world with planted rings, run through the whole pipeline."""
    folder = tmp_path_factory.mktemp("planted")
    made = linker_cli("synth", "--accounts", "1000", "--seed", "7", "--out", str(folder / "w"))
    assert made.returncode == 0, made.stderr
    ran = linker_cli("run", str(folder / "w"), "--out", str(folder / "t.csv"))
    assert ran.returncode == 0, ran.stderr
    return folder / "t.run"


def _mixed_ring(runner: Any) -> tuple[str, str]:
    """The smallest cluster with both suspended and reviewed members, and one suspended member."""
    rows = runner.run(
        "MATCH (c:Cluster) WHERE c.n_suspend > 0 AND c.n_review > 0 "
        "MATCH (c)<-[:IN_CLUSTER]-(a:Account:Suspend) "
        "WITH c, min(a.account_id) AS member ORDER BY c.size, c.cluster_id LIMIT 1 "
        "RETURN c.cluster_id, member"
    ).rows
    assert rows, "the planted world has a ring with suspended and reviewed members"
    return str(rows[0][0]), str(rows[0][1])


@pytest.mark.browser
def test_browser_opens_with_the_style_and_guide_and_draws_a_ring_by_action(
    neo4j_server: Neo4jTestServer, neo4j_runner: Any, planted_run: Path
) -> None:
    node = shutil.which("node")
    assert node, "the browser test needs Node.js"
    load_run(planted_run, runner=neo4j_runner, replace=True)
    top = run_query("top_clusters", {"limit": "10"}, runner=neo4j_runner).records()
    cluster_id, account_id = _mixed_ring(neo4j_runner)
    (ring,) = run_query("ring_graph", {"account_id": account_id}, runner=neo4j_runner).records()
    assert ring["cluster_id"] == cluster_id
    actions = {n["account_id"]: n["action"] for n in ring["accounts"]}
    assert set(actions.values()) == {"suspend", "review"}

    OUTPUT.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT.glob("guide*.png"):
        old.unlink()
    shots = OUTPUT / "guide"
    shots.mkdir(exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")},
        "BROWSER_URL": neo4j_server.browser_url,
        "BOLT_ADDRESS": f"127.0.0.1:{neo4j_server.bolt_port}",
        "STEPS_JSON": json.dumps(["top_clusters", "ring_graph"]),
        "EXPECT_JSON": json.dumps({"top_clusters": [r["cluster_id"] for r in top[:3]]}),
        "COMMANDS_JSON": json.dumps(
            [f":param account_id => '{account_id}'", _one_line(load_query("ring_graph"))]
        ),
        "SHOTS_DIR": str(shots),
    }
    done = subprocess.run(
        [node, str(GUIDE_SCRIPT)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    assert report.get("guide_opened"), f"the guide did not open: {report} {done.stderr[-2000:]}"
    # The style frame that the post-connect command left shows linker's style in force.
    assert "{account_id}" in report["style_frame"] and "node.Suspend" in report["style_frame"]
    assert done.returncode == 0 and report.get("ok"), f"{report} {done.stderr[-2000:]}"

    # The drawn ring: every member of the cluster, captioned with its id, coloured by action.
    drawn = {n["caption"].strip(): n["fill"].upper() for n in report["nodes"]}
    assert set(actions) <= set(drawn), f"{sorted(actions)} not all drawn: {sorted(drawn)}"
    colour = {"suspend": _grass_colour("node.Suspend"), "review": _grass_colour("node.Review")}
    assert len({*colour.values(), _grass_colour("node.Account")}) == 3
    for member, action in actions.items():
        assert drawn[member] == colour[action], (member, action, drawn[member])
    # No account outside the ring is drawn, and no feature-only kind.
    assert {c for c in drawn if c.startswith("acct_")} == set(actions)
    feature_colours = {_grass_colour(f"node.{k}") for k in ("CardBin", "Subnet", "UserAgent")}
    assert not feature_colours & set(drawn.values())
    for shot in report["shots"]:
        assert Path(shot).stat().st_size > 10_000, shot
