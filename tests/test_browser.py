"""Neo4j Browser, in Debian's headless chromium, shows the analysts' top-clusters query.

The test loads a small run into the session's real Neo4j, drives Neo4j Browser with
playwright-core (``tests/browser/neo4j_browser.mjs``), runs ``queries/top_clusters.cypher`` in
the page and asserts that the rows the database returns appear on the page. The screenshot is
kept under the test's output folder (``test-output/browser/`` in the repo).
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
from conftest import ROOT, Neo4jTestServer
from neo4j_world import build_run_dir, small_world

from linker.neo4j.loader import load_run
from linker.queries import load_query, run_query

SCRIPT = ROOT / "tests" / "browser" / "neo4j_browser.mjs"
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
