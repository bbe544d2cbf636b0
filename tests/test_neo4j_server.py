"""`linker neo4j start | stop | status` and the connection settings, on real servers."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import urllib.request
from pathlib import Path

import pytest
from conftest import Neo4jTestServer, linker_cli

from linker.errors import EnvironmentProblem
from linker.neo4j import server
from linker.neo4j.runner import QueryRunner, resolve_connection


def test_session_server_listens_on_localhost_only(neo4j_server: Neo4jTestServer) -> None:
    conf = (neo4j_server.data_dir / "conf" / "neo4j.conf").read_text()
    assert "server.default_listen_address=127.0.0.1" in conf
    assert f"server.bolt.listen_address=127.0.0.1:{neo4j_server.bolt_port}" in conf
    assert neo4j_server.bolt_uri == f"bolt://127.0.0.1:{neo4j_server.bolt_port}"
    with urllib.request.urlopen(neo4j_server.browser_url, timeout=10) as page:
        assert page.status == 200 and b"Neo4j Browser" in page.read()


def test_status_reports_version_ports_pid_and_size(neo4j_server: Neo4jTestServer) -> None:
    done = linker_cli("neo4j", "status", "--data-dir", str(neo4j_server.data_dir))
    assert done.returncode == 0, done.stderr
    assert f"running (pid {neo4j_server.pid}, Bolt answering)" in done.stdout
    assert f"Neo4j {server.NEO4J_VERSION}" in done.stdout
    assert neo4j_server.bolt_uri in done.stdout and neo4j_server.browser_url in done.stdout
    status = server.server_status(data_dir=neo4j_server.data_dir)
    assert status.running and status.store_bytes > 0
    with neo4j_server.runner() as runner:
        version = runner.run("CALL dbms.components() YIELD versions RETURN versions[0]").rows
    assert version == [(server.NEO4J_VERSION,)]


def test_start_again_finds_the_running_server(neo4j_server: Neo4jTestServer) -> None:
    info = server.start_server(data_dir=neo4j_server.data_dir, bolt_port="auto", auth=False)
    assert info.already_running and info.pid == neo4j_server.pid
    assert info.bolt_port == neo4j_server.bolt_port


def test_connection_falls_back_to_the_state_file(neo4j_server: Neo4jTestServer) -> None:
    conn = resolve_connection(neo4j_server.data_dir, env={})
    assert conn.uri == neo4j_server.bolt_uri and conn.password is None
    override = resolve_connection(neo4j_server.data_dir, env={"NEO4J_URI": "bolt://elsewhere:1"})
    assert override.uri == "bolt://elsewhere:1"
    with pytest.raises(EnvironmentProblem, match="linker neo4j start"):
        resolve_connection(neo4j_server.data_dir / "nothing-here", env={})


def test_auth_server_with_generated_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    caplog.set_level(logging.DEBUG, logger="linker")
    data_dir = tmp_path / "auth"
    info = server.start_server(
        data_dir=data_dir, bolt_port="auto", http_port="auto", heap="384m", pagecache="32m"
    )
    try:
        assert info.auth and info.password and len(info.password) >= 20
        assert info.password_source == "generated"
        assert info.password not in caplog.text  # handed back to be shown once, never logged
        assert info.password_file is not None
        assert stat.S_IMODE(info.password_file.stat().st_mode) == 0o600
        assert info.password_file.read_text().strip() == info.password
        assert info.password not in (data_dir / "state.json").read_text()
        assert not list(data_dir.glob(".setpw.*")), "the password argument file was left behind"
        conn = resolve_connection(data_dir, env={})
        assert conn.password == info.password and info.password not in repr(conn)
        with QueryRunner(conn) as runner:
            assert runner.run("RETURN 1 AS one").rows == [(1,)]
        wrong = resolve_connection(data_dir, env={"NEO4J_PASSWORD": "not-the-password"})
        with QueryRunner(wrong) as runner, pytest.raises(EnvironmentProblem, match="rejected"):
            runner.run("RETURN 1")
        with open(f"/proc/{info.pid}/cmdline", "rb") as handle:
            assert info.password.encode() not in handle.read()
    finally:
        stopped = server.stop_server(data_dir=data_dir)
    assert stopped.stopped and stopped.pid == info.pid and not stopped.forced
    assert not os.path.exists(f"/proc/{info.pid}") or not server._is_our_server(
        info.pid, data_dir.resolve()
    )
    again = linker_cli("neo4j", "stop", "--data-dir", str(data_dir))
    assert again.returncode == 0 and "no Neo4j server running" in again.stdout


def test_missing_java_or_maven_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = shutil.which("java")
    assert java is not None
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(EnvironmentProblem, match="java not found on PATH: install Java 17"):
        server.start_server(data_dir=tmp_path / "d")
    (empty / "java").symlink_to(java)
    monkeypatch.setenv("LINKER_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(EnvironmentProblem, match="mvn not found on PATH: install Apache Maven"):
        server.ensure_jars()


def test_a_password_starting_with_a_dash_is_a_password_not_an_option(tmp_path: Path) -> None:
    # token_urlsafe passwords start with "-" one time in 64; neo4j-admin read them as options.
    java = shutil.which("java")
    assert java is not None
    home = tmp_path / "home"
    (home / "conf").mkdir(parents=True)
    (home / "data").mkdir()
    server._set_initial_password(java, home, "-dash-first-password-1234")
    assert (home / "data" / "dbms" / "auth.ini").is_file()
