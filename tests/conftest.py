"""Shared fixtures.

Neo4j: ``neo4j_server`` starts ONE real local Neo4j for the whole test session, through the
project's own command (``linker neo4j start --port auto --no-auth --data-dir <tmp>``), and stops
it at the end. It is never skipped: without Java or Maven the session fails with the
command's message. Later fixtures and tests (the browser test, benchmarks) can use its
``http_port`` / ``browser_url`` as well as its Bolt URI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Neo4jTestServer:
    """The session's Neo4j: where it listens and the environment that points at it."""

    data_dir: Path
    bolt_uri: str
    bolt_port: int
    http_port: int
    browser_url: str
    pid: int
    env: dict[str, str] = field(repr=False)
    """``os.environ`` with NEO4J_URI set to this server (and no user/password)."""

    def runner(self) -> Any:
        """A new :class:`linker.neo4j.runner.QueryRunner` on this server (close it)."""
        from linker.neo4j.runner import ConnectionSettings, QueryRunner

        return QueryRunner(ConnectionSettings(uri=self.bolt_uri, source="test session"))


def linker_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    """Run ``python -m linker.cli ARGS`` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "linker.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jTestServer]:
    """One throwaway Neo4j server (auth off, free ports) for the whole test session."""
    from linker.neo4j.server import ensure_jars

    ensure_jars()  # the same provisioning as `make neo4j-jars` and `linker neo4j start`
    data_dir = tmp_path_factory.mktemp("neo4j-session")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    started = linker_cli(
        "neo4j",
        "start",
        "--port",
        "auto",
        "--no-auth",
        "--data-dir",
        str(data_dir),
        "--heap",
        "1g",
        "--pagecache",
        "512m",
        env=env,
    )
    if started.returncode != 0:
        pytest.fail(f"linker neo4j start failed:\n{started.stdout}\n{started.stderr}")
    state = json.loads((data_dir / "state.json").read_text())
    server = Neo4jTestServer(
        data_dir=data_dir,
        bolt_uri=state["uri"],
        bolt_port=int(state["bolt_port"]),
        http_port=int(state["http_port"]),
        browser_url=state["browser_url"],
        pid=int(state["pid"]),
        env={**env, "NEO4J_URI": state["uri"]},
    )
    assert server.bolt_uri in started.stdout and server.browser_url in started.stdout
    try:
        yield server
    finally:
        stopped = linker_cli("neo4j", "stop", "--data-dir", str(data_dir), env=env)
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture()
def neo4j_runner(neo4j_server: Neo4jTestServer) -> Iterator[Any]:
    """A query runner on the session server, over an EMPTY database."""
    from linker.neo4j.loader import clear_graph

    runner = neo4j_server.runner()
    try:
        clear_graph(runner)
        yield runner
    finally:
        runner.close()
