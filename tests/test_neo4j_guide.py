"""The Browser guide and style that ``linker neo4j start`` serves, and the LINKED relationships
they draw rings with.

* The guide is generated from ``queries/*.cypher``: every runnable block is exactly a query
  file's text, every parameter link sets exactly the query's declared parameters.
* The session's server (started by ``linker neo4j start``) serves the guide and the style
  itself and tells Browser to open them on connect.
* On a planted world run through the whole pipeline, every LINKED relationship carries the
  run's weight and the identifiers behind it, and none of them is a supernode or a kind that
  links nobody (card BIN, subnet, user agent, e-mail domain).
"""

from __future__ import annotations

import html.parser
import re
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import Neo4jTestServer, linker_cli

from linker import kinds
from linker.neo4j import guide
from linker.neo4j.loader import load_run
from linker.queries import available_queries, query_info


class _Blocks(html.parser.HTMLParser):
    """The guide's runnable query blocks and parameter links, by query name."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: dict[str, str] = {}
        self.params: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "pre" and found.get("data-linker-query"):
            self._open = str(found["data-linker-query"])
            self.queries[self._open] = ""
        if found.get("data-linker-step") and found.get("data-exec"):
            self.params[str(found["data-linker-step"])] = str(found["data-exec"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.queries[self._open] += data


def _blocks(text: str) -> _Blocks:
    parser = _Blocks()
    parser.feed(text)
    return parser


def test_the_guide_runs_exactly_the_query_files() -> None:
    blocks = _blocks(guide.guide_html())
    steps = [step.query for step in guide.GUIDE_STEPS]
    assert list(blocks.queries) == steps
    assert steps[:2] == ["top_clusters", "ring_graph"] and steps[-1] == "review_queue"
    for name in steps:
        assert name in available_queries()
        text = query_info(name).path.read_text(encoding="utf-8")
        body = "\n".join(line for line in text.splitlines() if not line.startswith("//"))
        assert blocks.queries[name] == body.strip(), name
        declared = {p.name for p in query_info(name).params}
        command = blocks.params[f"{name}-params"]
        assert command.startswith("params {")
        assert {item.split(":")[0].strip() for item in command[8:-1].split(",")} == declared


def test_a_step_cannot_name_a_parameter_its_query_lacks() -> None:
    bad = guide.GuideStep("x", "x", "x", "top_clusters", {"nope": 1})
    with pytest.raises(ValueError, match="nope"):
        guide.step_parameters(bad)


def test_the_server_serves_the_guide_and_style_and_opens_them_on_connect(
    neo4j_server: Neo4jTestServer,
) -> None:
    port = neo4j_server.http_port
    conf = (neo4j_server.data_dir / "conf" / "neo4j.conf").read_text(encoding="utf-8")
    assert (
        f"browser.post_connect_cmd=style {guide.style_url(port)}; play {guide.guide_url(port)}"
        in conf
    )
    for url, expected in (
        (guide.guide_url(port), guide.guide_html()),
        (guide.style_url(port), guide.style_text()),
    ):
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.status == 200
            assert answer.read().decode("utf-8") == expected, url
    with urllib.request.urlopen(neo4j_server.browser_url, timeout=30) as answer:
        assert answer.status == 200 and b"<html" in answer.read().lower()  # Browser itself


def plant(folder: Path) -> Path:
    """A synthetic world with planted rings, run through the whole pipeline: its run dir."""
    made = linker_cli("synth", "--accounts", "1000", "--seed", "7", "--out", str(folder / "w"))
    assert made.returncode == 0, made.stderr
    ran = linker_cli("run", str(folder / "w"), "--out", str(folder / "t.csv"))
    assert ran.returncode == 0, ran.stderr
    return folder / "t.run"


def test_linked_carries_weight_and_evidence_and_never_a_feature_or_supernode(
    neo4j_runner: Any, tmp_path: Path
) -> None:
    run_dir = plant(tmp_path)
    load_run(run_dir, runner=neo4j_runner, replace=True)
    rows = neo4j_runner.run(
        "MATCH (a:Account)-[r:LINKED]->(b:Account) "
        "RETURN a.account_id, b.account_id, a.cluster_id = b.cluster_id, r.weight, r.evidence"
    ).rows
    links = pd.read_parquet(run_dir / "links.parquet")
    assert len(rows) == len(links) > 0
    identifiers = pd.read_parquet(run_dir / "identifiers.parquet")
    weight = {
        (k, v): (w, s)
        for k, v, w, s in identifiers[["kind", "value", "weight", "is_supernode"]].itertuples(
            index=False
        )
    }
    cited: set[str] = set()
    for a, b, same_cluster, link_weight, evidence in rows:
        assert a < b and same_cluster and link_weight > 0, (a, b)
        for token in evidence.split(";"):
            kind, _, value = token.partition(":")
            cited.add(kind)
            if kind == "lockstep":
                continue
            w, supernode = weight[(kind, value)]
            assert w > 0 and not supernode, token
    assert not cited & {"card_bin", "subnet", "signup_subnet", "user_agent", "email_domain"}


def test_the_style_draws_every_registered_identifier_kind() -> None:
    # The GraSS file names node labels; the kinds registry is where labels are declared.
    styled = set(re.findall(r"(?m)^node\.(\w+) \{", guide.style_text()))
    assert set(kinds.neo4j_labels()) <= styled
