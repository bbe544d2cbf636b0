"""A local Neo4j Community server, provisioned from Maven Central and run from plain jars.

``linker neo4j start | stop | status`` call :func:`start_server`, :func:`stop_server` and
:func:`server_status`. The jars are resolved once by Maven from ``linker/neo4j/pom.xml``
(package data) into a cache folder (:func:`ensure_jars`); each server instance lives in one
*data directory* holding its ``conf/neo4j.conf``, ``data/``, ``logs/``, ``run/`` (pid file),
the password file (mode 0600, only with auth) and ``state.json``, which
:mod:`linker.neo4j.runner` reads to connect.

The server binds 127.0.0.1 only. Its password is set with Neo4j's own
``neo4j-admin dbms set-initial-password`` (main class ``org.neo4j.cli.AdminTool``) before the
first start; the password travels through a Java argument file with mode 0600, never through
the command line, and the file is removed at once. A password the user supplied
(``NEO4J_PASSWORD``) is never printed or logged; only a generated one is handed back, to be
shown once.

The data directory is private: it is mode 0700, every directory linker keeps in it 0700 and
every file 0600 (:func:`make_private`, run on every start, fixes a store made before), and the
Java processes (server, ``neo4j-admin``) run with umask 077, so the store files they create
(``data/dbms/auth.ini`` included) are 0600 from the start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from linker.errors import EnvironmentProblem, LinkerError
from linker.io.atomic import write_text_atomic
from linker.neo4j import guide
from linker.neo4j.redact import redact, register_secret, secret_safe_logger

__all__ = [
    "BROWSER_VERSION",
    "NEO4J_VERSION",
    "ServerInfo",
    "ServerStatus",
    "StopResult",
    "cache_dir",
    "default_data_dir",
    "ensure_jars",
    "jar_dir",
    "make_private",
    "read_state",
    "server_status",
    "start_server",
    "stop_server",
]

logger = secret_safe_logger(__name__)

NEO4J_VERSION = "5.26.30"
"""The Neo4j Community version in ``linker/neo4j/pom.xml``."""

BROWSER_VERSION = "5.24.0"
"""The Neo4j Browser version in ``linker/neo4j/pom.xml``."""

DEFAULT_BOLT_PORT = 7687
DEFAULT_HTTP_PORT = 7474
DEFAULT_HEAP = "2g"
DEFAULT_PAGECACHE = "2g"

STATE_FILE = "state.json"
PASSWORD_FILE = "password"
PID_FILE = "run/linker-neo4j.pid"
CONSOLE_LOG = "logs/console.log"

BOLT_SHUTDOWN: dict[str, str] = {
    "internal.server.bolt.connection_shutdown_wait_time": "1s",
    "internal.server.bolt.thread_pool_shutdown_wait_time": "1s",
    "internal.dbms.bolt.netty_server_shutdown_quiet_period": "0",
    "internal.dbms.bolt.netty_server_shutdown_timeout": "1s",
}
"""Bolt's shutdown waits (Neo4j's internal settings; defaults 5 s each). Measured on an empty
database: ``linker neo4j stop`` 10.5 s with the defaults, 1.4 s with these."""

PRIVATE_UMASK = 0o077
"""The umask of every Java process linker starts on a data directory: files 0600, dirs 0700."""

# The parts of a data directory that linker creates and keeps private.
_PRIVATE_DIRS = ("conf", "data", "logs", "run", "import", "plugins", "browser-content")
_PRIVATE_FILES = (STATE_FILE, PASSWORD_FILE)

_MAIN_CLASS = "org.neo4j.server.CommunityEntryPoint"
_ADMIN_CLASS = "org.neo4j.cli.AdminTool"
_COMPLETE_MARKER = ".complete"

# The module openings Neo4j 5 needs on Java 17+ (neo4j-admin's config migrator recommends
# exactly these in server.jvm.additional), plus the GC and flags of Neo4j's default neo4j.conf.
JVM_FLAGS: tuple[str, ...] = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dlog4j2.disable.jmx=true",
    "-Dfile.encoding=UTF-8",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
)


@dataclass(frozen=True)
class ServerInfo:
    """A running server, as :func:`start_server` leaves it.

    ``password`` is set only when this call *generated* the password, so that the CLI can
    print it once; a password the user supplied (``NEO4J_PASSWORD``) is never handed back to
    be shown. ``password_source`` says where the password of a store set up by this call
    came from (``"generated"``, ``"NEO4J_PASSWORD"`` or ``"password file"``). The password
    is never written to ``state.json`` (only to the 0600 password file).
    """

    data_dir: Path
    pid: int
    bolt_port: int
    http_port: int
    auth: bool
    version: str
    already_running: bool = False
    password: str | None = dataclasses.field(default=None, repr=False)
    password_file: Path | None = None
    password_source: str | None = None

    @property
    def bolt_uri(self) -> str:
        """``bolt://127.0.0.1:PORT``."""
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def browser_url(self) -> str:
        """``http://127.0.0.1:PORT/browser/``."""
        return f"http://127.0.0.1:{self.http_port}/browser/"


@dataclass(frozen=True)
class ServerStatus:
    """What :func:`server_status` found in a data directory."""

    data_dir: Path
    running: bool
    pid: int | None
    bolt_port: int | None
    http_port: int | None
    version: str | None
    auth: bool | None
    store_bytes: int
    bolt_answers: bool

    @property
    def bolt_uri(self) -> str | None:
        return None if self.bolt_port is None else f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def browser_url(self) -> str | None:
        return None if self.http_port is None else f"http://127.0.0.1:{self.http_port}/browser/"


@dataclass(frozen=True)
class StopResult:
    """What :func:`stop_server` did: ``stopped`` is False when nothing was running."""

    data_dir: Path
    stopped: bool
    pid: int | None
    forced: bool = False


# -- locations ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The cache root: ``$LINKER_CACHE_DIR`` or ``~/.cache/linker``."""
    env = os.environ.get("LINKER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "linker"


def jar_dir() -> Path:
    """Where the Neo4j jars of :data:`NEO4J_VERSION` live once provisioned."""
    return cache_dir() / f"neo4j-{NEO4J_VERSION}" / "lib"


def default_data_dir() -> Path:
    """The data directory used when ``--data-dir`` is not given."""
    return cache_dir() / f"neo4j-{NEO4J_VERSION}" / "instance"


def _pom_path() -> Path:
    return Path(__file__).resolve().parent / "pom.xml"


# -- provisioning ------------------------------------------------------------------------------


def _require_tool(name: str, what: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise EnvironmentProblem(
            f"{name} not found on PATH: install {what} "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless maven), "
            "or use Docker/Aura and set NEO4J_URI (see docs/neo4j.md)"
        )
    return found


def ensure_jars(*, quiet: bool = True) -> Path:
    """Resolve the Neo4j jars with Maven into the cache, once; return the jar folder.

    Parameters
    ----------
    quiet : bool
        Pass ``-q`` to Maven.

    Returns
    -------
    Path
        The folder holding the jars (``<cache>/neo4j-<version>/lib``).

    Raises
    ------
    EnvironmentProblem
        When Maven or Java is missing, or Maven fails (the message names its log file).

    Notes
    -----
    Maven copies into a temporary sibling folder that is renamed into place when complete,
    so an interrupted download is never mistaken for a complete one.
    """
    target = jar_dir()
    if (target / _COMPLETE_MARKER).exists():
        return target
    _require_tool("java", "Java 17 or 21")
    mvn = _require_tool("mvn", "Apache Maven")
    pom = _pom_path()
    if not pom.exists():
        raise EnvironmentProblem(f"{pom}: the Neo4j pom is missing; run from a linker checkout")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="lib.", suffix=".tmp", dir=target.parent))
    log_path = target.parent / "mvn.log"
    cmd = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(pom),
        "org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    logger.info("resolving Neo4j %s jars with Maven into %s", NEO4J_VERSION, target)
    with open(log_path, "wb") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    jars = list(staging.glob("*.jar"))
    if proc.returncode != 0 or not any(j.name.startswith("neo4j-server-") for j in jars):
        shutil.rmtree(staging, ignore_errors=True)
        raise EnvironmentProblem(
            f"Maven could not resolve Neo4j {NEO4J_VERSION} (exit {proc.returncode}); "
            f"see {log_path}"
        )
    (staging / _COMPLETE_MARKER).write_text(f"{len(jars)} jars\n", encoding="utf-8")
    try:
        os.replace(staging, target)
    except OSError:
        # Another process finished first (the target is a non-empty folder): keep theirs.
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / _COMPLETE_MARKER).exists():
            raise
    logger.info("provisioned %d jars", len(jars))
    return target


# -- state -------------------------------------------------------------------------------------


def read_state(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The ``state.json`` that :func:`start_server` wrote in ``data_dir``, or ``None``."""
    path = _resolve_data_dir(data_dir) / STATE_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LinkerError(f"{path}: unreadable server state ({exc})") from None
    return data


def _resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    return (Path(data_dir).expanduser() if data_dir is not None else default_data_dir()).resolve()


def make_private(home: Path) -> int:
    """Make the data directory ``home`` private: itself and its directories 0700, files 0600.

    Only what linker keeps there is touched (``conf``, ``data``, ``logs``, ``run``,
    ``import``, ``plugins``, ``state.json``, ``password``); symbolic links are not followed.

    Returns
    -------
    int
        The number of entries whose mode was changed.
    """
    changed = 0

    def fix(path: Path, mode: int) -> None:
        nonlocal changed
        try:
            info = path.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode) or stat.S_IMODE(info.st_mode) == mode:
            return
        if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
            os.chmod(path, mode)
            changed += 1

    fix(home, 0o700)
    for name in _PRIVATE_FILES:
        fix(home / name, 0o600)
    for name in _PRIVATE_DIRS:
        top = home / name
        fix(top, 0o700)
        for root, dirs, files in os.walk(top):
            for entry in dirs:
                fix(Path(root) / entry, 0o700)
            for entry in files:
                fix(Path(root) / entry, 0o600)
    if changed:
        logger.info("made %d entries of %s private (0700 directories, 0600 files)", changed, home)
    return changed


def _read_pid(home: Path) -> int | None:
    try:
        return int((home / PID_FILE).read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return None


def _is_our_server(pid: int, home: Path) -> bool:
    """True when ``pid`` is alive and is the Neo4j process of ``home`` (not a reused pid)."""
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own child that already exited (else it lingers as a zombie).
        os.waitpid(pid, os.WNOHANG)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
        return False
    args = [a.decode("utf-8", "replace") for a in cmdline]
    return _MAIN_CLASS in args and f"--home-dir={home}" in args


# -- start -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _choose_port(requested: int | str | None, default: int, taken: set[int]) -> int:
    if requested is None:
        return default
    if isinstance(requested, str) and requested.lower() == "auto":
        port = _free_port()
        while port in taken:
            port = _free_port()
        return port
    try:
        port = int(requested)
    except (TypeError, ValueError):
        raise LinkerError(f"invalid port {requested!r}: give a number or 'auto'") from None
    if not 1 <= port <= 65535:
        raise LinkerError(f"invalid port {port}: must be in 1..65535")
    return port


def _validate_size(name: str, value: str) -> str:
    text = value.strip().lower()
    if not (text.isdigit() or (text[:-1].isdigit() and text[-1] in "kmg")):
        raise LinkerError(f"invalid {name} {value!r}: give a size like 512m or 2g")
    return text


def _write_conf(
    home: Path, *, bolt_port: int, http_port: int, heap: str, pagecache: str, auth: bool
) -> None:
    lines = [
        "# Written by `linker neo4j start`; rewritten on every start.",
        "server.default_listen_address=127.0.0.1",
        "server.default_advertised_address=127.0.0.1",
        f"server.bolt.listen_address=127.0.0.1:{bolt_port}",
        f"server.bolt.advertised_address=127.0.0.1:{bolt_port}",
        "server.bolt.tls_level=DISABLED",
        "server.http.enabled=true",
        f"server.http.listen_address=127.0.0.1:{http_port}",
        f"server.http.advertised_address=127.0.0.1:{http_port}",
        "server.https.enabled=false",
        f"server.memory.heap.initial_size={heap}",
        f"server.memory.heap.max_size={heap}",
        f"server.memory.pagecache.size={pagecache}",
        f"dbms.security.auth_enabled={'true' if auth else 'false'}",
        "dbms.usage_report.enabled=false",
        # Keep small stores small: no 250 MB pre-allocated transaction log per database.
        "db.tx_log.preallocate=false",
        "db.tx_log.rotation.retention_policy=2 files",
        # Stop in about a second, not ten: Bolt's shutdown otherwise waits out two fixed
        # 5-second grace periods even with no connection open (the databases are closed and
        # checkpointed before Bolt stops, so this cuts no data short).
        *(f"{key}={value}" for key, value in BOLT_SHUTDOWN.items()),
        f"server.directories.data={home / 'data'}",
        f"server.directories.logs={home / 'logs'}",
        f"server.directories.run={home / 'run'}",
        f"server.directories.import={home / 'import'}",
        f"server.directories.plugins={home / 'plugins'}",
        f"server.directories.lib={jar_dir()}",
        # Browser applies linker's style and opens its guide on connect (linker.neo4j.guide).
        *guide.browser_settings(http_port),
        "",
    ]
    write_text_atomic(home / "conf" / "neo4j.conf", "\n".join(lines))


def _java_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["NEO4J_HOME"] = str(home)
    env["NEO4J_CONF"] = str(home / "conf")
    env.pop("NEO4J_PASSWORD", None)
    return env


def _set_initial_password(java: str, home: Path, password: str) -> None:
    """Run ``neo4j-admin dbms set-initial-password`` through a 0600 Java argument file."""
    fd, argfile = tempfile.mkstemp(prefix=".setpw.", suffix=".args", dir=home)
    try:
        os.fchmod(fd, 0o600)
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        # "--" ends the options: a password starting with "-" is a password, not an option.
        args = ["-cp", f'"{jar_dir()}/*"', _ADMIN_CLASS, "dbms", "set-initial-password", "--"]
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join([*args, f'"{quoted}"']) + "\n")
        proc = subprocess.run(
            [java, f"@{argfile}"],
            env=_java_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
            umask=PRIVATE_UMASK,
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(argfile)
    if proc.returncode != 0:
        # The tool's output names the rule the password broke, never the password itself.
        detail = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        raise LinkerError(
            redact(
                "neo4j-admin set-initial-password failed: "
                + (detail[-1] if detail else "no output")
            )
        )


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    os.chmod(path, 0o600)


def _running_server(home: Path) -> ServerInfo | None:
    """The info of ``home``'s server when our process is already running it, else None."""
    state = read_state(home)
    pid = _read_pid(home)
    if pid is None or not _is_our_server(pid, home) or state is None:
        return None
    return ServerInfo(
        data_dir=home,
        pid=pid,
        bolt_port=int(state["bolt_port"]),
        http_port=int(state["http_port"]),
        auth=bool(state["auth"]),
        version=str(state["version"]),
        already_running=True,
        password_file=Path(state["password_file"]) if state.get("password_file") else None,
    )


def _choose_free_ports(bolt_port: int | str | None, http_port: int | str | None) -> tuple[int, int]:
    """The Bolt and HTTP ports to listen on; both must differ and be free on 127.0.0.1."""
    bolt = _choose_port(bolt_port, DEFAULT_BOLT_PORT, set())
    http = _choose_port(http_port, DEFAULT_HTTP_PORT, {bolt})
    if bolt == http:
        raise LinkerError(f"Bolt and HTTP ports must differ (both {bolt})")
    for port, what in ((bolt, "Bolt"), (http, "HTTP")):
        if _port_in_use(port):
            raise EnvironmentProblem(
                f"{what} port {port} on 127.0.0.1 is already in use; "
                "pass another port or --port auto"
            )
    return bolt, http


def _initial_password(java: str, home: Path) -> tuple[str | None, Path, str | None]:
    """Set the password of a fresh store; return the password when generated (to print once),
    its file and where it came from (None for a store that already had one).

    The password comes from an existing password file, ``NEO4J_PASSWORD`` or is generated.
    A store that already exists keeps its password. A password the user supplied is never
    returned: it must not be printed.
    """
    password_file = home / PASSWORD_FILE
    fresh_store = not (home / "data" / "databases" / "system").exists()
    if password_file.exists():
        if fresh_store:
            known = password_file.read_text(encoding="utf-8").strip()
            register_secret(known)
            _set_initial_password(java, home, known)
            return None, password_file, "password file"
        return None, password_file, None
    if fresh_store:
        supplied = os.environ.get("NEO4J_PASSWORD") or None
        password = supplied or secrets.token_urlsafe(18)
        register_secret(password)
        _set_initial_password(java, home, password)
        _write_secret(password_file, password)
        if supplied is not None:
            return None, password_file, "NEO4J_PASSWORD"
        return password, password_file, "generated"
    else:
        raise LinkerError(
            f"{home} holds a store without a password file: start it with --no-auth, "
            "or give a fresh --data-dir"
        )
    return password, password_file


def _launch(java: str, lib: Path, home: Path, heap: str) -> subprocess.Popen[bytes]:
    """Start the server's JVM in its own session, logging to the console log; record its pid."""
    cmd = [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        *JVM_FLAGS,
        "-cp",
        # The content jar first: Neo4j serves Browser from the first "browser/" folder on the
        # class path, and this one also holds linker's style and guide.
        f"{home / guide.CONTENT_JAR}:{home / 'plugins'}/*:{lib}/*",
        _MAIN_CLASS,
        f"--home-dir={home}",
        f"--config-dir={home / 'conf'}",
    ]
    logger.info("starting Neo4j %s in %s", NEO4J_VERSION, home)
    fd = os.open(home / CONSOLE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_java_env(home),
            cwd=home,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    write_text_atomic(home / PID_FILE, f"{proc.pid}\n")
    return proc


def _write_state(info: ServerInfo) -> None:
    """Record the started server in ``<data_dir>/state.json`` (no secret: the password's file)."""
    state_data = {
        "version": NEO4J_VERSION,
        "uri": info.bolt_uri,
        "browser_url": info.browser_url,
        "bolt_port": info.bolt_port,
        "http_port": info.http_port,
        "pid": info.pid,
        "auth": info.auth,
        "user": "neo4j",
        "password_file": str(info.password_file) if info.password_file else None,
        "data_dir": str(info.data_dir),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_text_atomic(info.data_dir / STATE_FILE, json.dumps(state_data, indent=2) + "\n")


def start_server(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    bolt_port: int | str | None = None,
    http_port: int | str | None = None,
    heap: str = DEFAULT_HEAP,
    pagecache: str = DEFAULT_PAGECACHE,
    auth: bool = True,
    timeout: float = 180.0,
) -> ServerInfo:
    """Start (or find running) the local Neo4j server of ``data_dir``.

    Parameters
    ----------
    data_dir : path, optional
        The instance folder; default :func:`default_data_dir`.
    bolt_port, http_port : int or "auto", optional
        Ports (default 7687 and 7474). ``"auto"`` picks a free port.
    heap, pagecache : str
        JVM heap and page cache sizes, e.g. ``"2g"``.
    auth : bool
        Authentication on (the default). The initial password comes from ``NEO4J_PASSWORD``
        or is generated, and is stored in ``<data_dir>/password`` with mode 0600.
        ``False`` is for throwaway test servers only.
    timeout : float
        Seconds to wait for Bolt to answer.

    Returns
    -------
    ServerInfo
        Ports, pid and, when it was set by this call, the password (to print once).

    Raises
    ------
    EnvironmentProblem
        Java or Maven missing, a port taken, or the server did not come up (the message names
        the log file).
    LinkerError
        Invalid options.

    Examples
    --------
    >>> info = start_server(bolt_port="auto", http_port="auto", auth=False)  # doctest: +SKIP
    >>> info.bolt_uri  # doctest: +SKIP
    'bolt://127.0.0.1:40123'
    """
    home = _resolve_data_dir(data_dir)
    heap = _validate_size("heap size", heap)
    pagecache = _validate_size("page cache size", pagecache)
    running = _running_server(home)
    if running is not None:
        make_private(home)
        return running
    java = _require_tool("java", "Java 17 or 21")
    lib = ensure_jars()
    bolt, http = _choose_free_ports(bolt_port, http_port)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in _PRIVATE_DIRS:
        (home / sub).mkdir(mode=0o700, exist_ok=True)
    _write_conf(home, bolt_port=bolt, http_port=http, heap=heap, pagecache=pagecache, auth=auth)
    guide.write_content_jar(home, lib / f"neo4j-browser-{BROWSER_VERSION}.jar")
    password, password_file, password_source = (
        _initial_password(java, home) if auth else (None, None, None)
    )
    make_private(home)
    proc = _launch(java, lib, home, heap)
    info = ServerInfo(
        data_dir=home,
        pid=proc.pid,
        bolt_port=bolt,
        http_port=http,
        auth=auth,
        version=NEO4J_VERSION,
        password=password,
        password_file=password_file,
        password_source=password_source,
    )
    _write_state(info)
    try:
        _wait_for_bolt(proc, bolt, timeout, home)
    except BaseException:
        _terminate(proc.pid, home, grace=20.0)
        (home / PID_FILE).unlink(missing_ok=True)
        raise
    make_private(home)  # the pid and state files written since, and anything created early
    return info


def _log_tail(home: Path) -> str:
    for name in ("logs/neo4j.log", CONSOLE_LOG):
        with contextlib.suppress(OSError):
            lines = [
                line
                for line in (home / name).read_text(encoding="utf-8", errors="replace").splitlines()
                if "ERROR" in line or "Exception" in line
            ]
            if lines:
                return lines[-1].strip()[:300]
    return ""


def _bolt_handshake(port: int) -> bool:
    """True when a Bolt server answers the version handshake on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            # Magic preamble, then four proposed versions (5.x, 4.4, none, none).
            sock.sendall(
                bytes.fromhex("6060B017")
                + bytes.fromhex("00000405")
                + bytes.fromhex("00000404")
                + bytes(8)
            )
            reply = sock.recv(4)
            return len(reply) == 4 and reply != bytes(4)
    except OSError:
        return False


def _wait_for_bolt(proc: subprocess.Popen[bytes], port: int, timeout: float, home: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = _log_tail(home)
            raise EnvironmentProblem(
                redact(
                    f"Neo4j exited with code {code} during start-up; see {home / 'logs'}"
                    + (f": {tail}" if tail else "")
                )
            )
        if _bolt_handshake(port):
            return
        time.sleep(0.5)
    raise EnvironmentProblem(
        f"Neo4j did not answer on Bolt port {port} within {timeout:.0f} s; see {home / 'logs'}"
    )


# -- stop and status ---------------------------------------------------------------------------


def _terminate(pid: int, home: Path, *, grace: float) -> bool:
    """SIGTERM ``pid`` (only if it is this home's server), SIGKILL after ``grace`` seconds.

    Returns True when SIGKILL was needed.
    """
    if not _is_our_server(pid, home):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _is_our_server(pid, home):
            return False
        time.sleep(0.2)
    logger.warning("Neo4j (pid %d) ignored SIGTERM for %.0f s; killing it", pid, grace)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while _is_our_server(pid, home):
        time.sleep(0.1)
    return True


def stop_server(
    *, data_dir: str | os.PathLike[str] | None = None, timeout: float = 60.0
) -> StopResult:
    """Stop the server of ``data_dir`` by its pid: SIGTERM, then SIGKILL after ``timeout``.

    Only the process recorded in the pid file, and only if it still is the Neo4j of that
    data directory, is signalled.

    Parameters
    ----------
    data_dir : path, optional
        The folder given to :func:`start_server`.
    timeout : float
        Seconds to wait for a clean shutdown.

    Returns
    -------
    StopResult
        ``stopped`` is False when no server of that data directory was running.
    """
    home = _resolve_data_dir(data_dir)
    pid = _read_pid(home)
    if pid is None or not _is_our_server(pid, home):
        (home / PID_FILE).unlink(missing_ok=True)
        return StopResult(data_dir=home, stopped=False, pid=pid)
    forced = _terminate(pid, home, grace=timeout)
    (home / PID_FILE).unlink(missing_ok=True)
    return StopResult(data_dir=home, stopped=True, pid=pid, forced=forced)


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


def server_status(*, data_dir: str | os.PathLike[str] | None = None) -> ServerStatus:
    """Report the server of ``data_dir``: running or not, pid, ports, version, store size.

    Returns
    -------
    ServerStatus
        ``bolt_answers`` is True when a Bolt handshake succeeded on the recorded port.
    """
    home = _resolve_data_dir(data_dir)
    state = read_state(home) or {}
    pid = _read_pid(home)
    running = pid is not None and _is_our_server(pid, home)
    bolt_port = int(state["bolt_port"]) if "bolt_port" in state else None
    return ServerStatus(
        data_dir=home,
        running=running,
        pid=pid if running else None,
        bolt_port=bolt_port,
        http_port=int(state["http_port"]) if "http_port" in state else None,
        version=state.get("version"),
        auth=state.get("auth"),
        store_bytes=_tree_size(home / "data"),
        bolt_answers=bool(running and bolt_port and _bolt_handshake(bolt_port)),
    )
