"""Neo4j hygiene (issue 12, item 10): no password shown, credentials redacted, a private store.

A server of its own (auth on, ``NEO4J_PASSWORD`` supplied by the "user") is started through the
CLI, as a user would, on a throwaway data directory with ``--port auto``, and stopped when the
module's tests are done; the session server of conftest keeps running for the other tests.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import linker_cli
from neo4j_world import build_run_dir, small_world

from linker.errors import EnvironmentProblem
from linker.neo4j.redact import RedactingFilter, redact, split_uri_credentials
from linker.neo4j.runner import ConnectionSettings, QueryRunner, resolve_connection

pytestmark = pytest.mark.neo4j


@dataclass(frozen=True)
class AuthServer:
    data_dir: Path
    password: str
    bolt_port: int
    start_stdout: str
    start_stderr: str
    env: dict[str, str]
    """The environment of the start: NEO4J_PASSWORD set, no NEO4J_URI."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """`linker -vv neo4j start` with a user-supplied NEO4J_PASSWORD, auth on."""
    data_dir = tmp_path_factory.mktemp("neo4j-hygiene") / "instance"
    password = "user-Supplied-" + secrets.token_hex(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    env["NEO4J_PASSWORD"] = password
    started = linker_cli(
        "-vv",
        "neo4j",
        "start",
        "--port",
        "auto",
        "--data-dir",
        str(data_dir),
        "--heap",
        "384m",
        "--pagecache",
        "32m",
        env=env,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads((data_dir / "state.json").read_text())
        yield AuthServer(
            data_dir=data_dir,
            password=password,
            bolt_port=int(state["bolt_port"]),
            start_stdout=started.stdout,
            start_stderr=started.stderr,
            env=env,
        )
    finally:
        stopped = linker_cli("neo4j", "stop", "--data-dir", str(data_dir), env=env)
        assert stopped.returncode == 0, stopped.stderr


def _files_holding(root: Path, needle: str) -> list[Path]:
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and needle.encode() in path.read_bytes()
    ]


def test_start_never_shows_a_supplied_password(auth_server: AuthServer) -> None:
    password = auth_server.password
    out, err = auth_server.start_stdout, auth_server.start_stderr
    assert password not in out and password not in err
    assert "password from NEO4J_PASSWORD" in out
    assert "INFO linker.neo4j.server" in err  # -vv: the log lines were there, and clean
    # Not in the server's logs, its configuration or state: only in the 0600 password file
    # (auth.ini holds a salted hash).
    assert _files_holding(auth_server.data_dir, password) == [auth_server.data_dir / "password"]
    # Neither when start finds the server running, nor in status.
    again = linker_cli(
        "-vv", "neo4j", "start", "--data-dir", str(auth_server.data_dir), env=auth_server.env
    )
    status = linker_cli("neo4j", "status", "--data-dir", str(auth_server.data_dir))
    assert again.returncode == 0 and "already running" in again.stdout
    for done in (again, status):
        assert password not in done.stdout + done.stderr
    # The password works (the server really has it).
    conn = resolve_connection(auth_server.data_dir, env={})
    assert conn.password == password
    with QueryRunner(conn) as runner:
        assert runner.run("RETURN 1 AS one").rows == [(1,)]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _loose_entries(root: Path) -> list[str]:
    """Entries under ``root`` readable, writable or searchable by group or others."""
    return [
        f"{path.relative_to(root)} {_mode(path):o}"
        for path in [root, *root.rglob("*")]
        if not path.is_symlink() and _mode(path) & 0o077
    ]


def test_data_directory_is_private(auth_server: AuthServer) -> None:
    home = auth_server.data_dir
    assert _mode(home) == 0o700
    auth_ini = home / "data" / "dbms" / "auth.ini"
    assert auth_ini.is_file() and _mode(auth_ini) == 0o600
    assert _mode(home / "password") == 0o600
    assert _loose_entries(home) == []
    files = [p for p in home.rglob("*") if p.is_file()]
    dirs = [p for p in home.rglob("*") if p.is_dir()]
    assert files and {_mode(p) for p in files} == {0o600}
    assert dirs and {_mode(p) for p in dirs} == {0o700}


def test_start_makes_an_existing_store_private(auth_server: AuthServer) -> None:
    """A store made before (0644 files in 0755 directories) is fixed by the next start."""
    home = auth_server.data_dir
    loosened = [home, home / "data", home / "data" / "dbms", home / "logs"]
    for path in loosened:
        path.chmod(0o755)
    for path in (home / "data" / "dbms" / "auth.ini", home / "state.json", home / "password"):
        path.chmod(0o644)
    assert _loose_entries(home)
    again = linker_cli("neo4j", "start", "--data-dir", str(home), env=auth_server.env)
    assert again.returncode == 0, again.stderr
    assert _loose_entries(home) == []


def test_unreachable_server_error_redacts_uri_credentials(tmp_path: Path) -> None:
    secret = "uri-Secret-" + secrets.token_hex(8)
    port = _free_port()
    run_dir = build_run_dir(small_world(), tmp_path / "run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    for uri in (
        f"neo4j://alice:{secret}@127.0.0.1:{port}",
        f"bolt://bob:{secret}@127.0.0.1:{port}",
    ):
        done = linker_cli("-vv", "neo4j", "load", str(run_dir), env={**env, "NEO4J_URI": uri})
        assert done.returncode == 1
        assert secret not in done.stdout + done.stderr
        scheme = uri.split("://")[0]
        assert done.stderr.strip().splitlines()[-1] == (
            f"Error: cannot reach Neo4j at {scheme}://127.0.0.1:{port}: start one with "
            "`linker neo4j start`, or set NEO4J_URI (and NEO4J_PASSWORD)"
        )
    # A malformed URI is reported without its password too.
    bad = linker_cli(
        "neo4j", "load", str(run_dir), env={**env, "NEO4J_URI": f"bolt://eve:{secret}@[::1"}
    )
    assert bad.returncode == 1 and secret not in bad.stdout + bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    # And through the library: the runner never keeps the password in its URI.
    conn = ConnectionSettings(uri=f"neo4j://carol:{secret}@127.0.0.1:{port}")
    with QueryRunner(conn, max_attempts=1) as runner:
        assert secret not in runner.connection.uri and runner.connection.user == "carol"
        with pytest.raises(EnvironmentProblem) as raised:
            runner.verify()
    assert secret not in str(raised.value)
    assert f"neo4j://127.0.0.1:{port}" in str(raised.value)


def test_uri_credentials_log_in_and_a_wrong_one_is_redacted(auth_server: AuthServer) -> None:
    password = auth_server.password
    uri = f"bolt://neo4j:{password}@127.0.0.1:{auth_server.bolt_port}"
    with QueryRunner(resolve_connection(env={"NEO4J_URI": uri})) as runner:
        assert runner.connection.password == password
        assert runner.run("RETURN 2 AS two").rows == [(2,)]
    wrong = "wrong-" + secrets.token_hex(8)
    bad = f"bolt://neo4j:{wrong}@127.0.0.1:{auth_server.bolt_port}"
    with (
        QueryRunner(resolve_connection(env={"NEO4J_URI": bad})) as runner,
        pytest.raises(EnvironmentProblem, match="rejected the credentials") as raised,
    ):
        runner.run("RETURN 1")
    assert wrong not in str(raised.value)


def test_redaction_of_messages_and_log_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_PASSWORD", "env-Password-77")
    assert redact("x neo4j+s://u:p%40ss@h:1 y") == "x neo4j+s://u:***@h:1 y"
    assert redact("login env-Password-77 failed") == "login *** failed"
    assert split_uri_credentials("neo4j+s://u:p%40ss@h:1/db") == ("neo4j+s://h:1/db", "u", "p@ss")
    assert redact("then p@ss again") == "then *** again"  # registered by the split
    record = logging.LogRecord(
        "linker.neo4j", logging.INFO, __file__, 1, "at %s", ("bolt://a:b-c-d@h",), None
    )
    assert RedactingFilter().filter(record) and record.getMessage() == "at bolt://a:***@h"
