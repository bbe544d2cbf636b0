"""The one seam between linker and the Neo4j driver: :class:`QueryRunner`.

Every query linker sends goes through :meth:`QueryRunner.run`, which calls the driver's
``execute_query`` with explicit routing (``RoutingControl.WRITE`` or ``READ``) and retries only
the errors the driver marks retryable (``exc.is_retryable()``), with bounded exponential
backoff. Connection settings come from ``NEO4J_URI``, ``NEO4J_USER``, ``NEO4J_PASSWORD`` and
``NEO4J_DATABASE``, falling back to the ``state.json`` of the local server that
``linker neo4j start`` runs. Passwords never reach a log line, an error message or a command
line: a user and password inside ``NEO4J_URI`` (``neo4j://user:password@host``) are taken out
of the URI before the driver sees it, and every message passes through
:func:`linker.neo4j.redact.redact`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import neo4j
from neo4j.exceptions import AuthError, DriverError, Neo4jError, ServiceUnavailable

from linker.errors import EnvironmentProblem, LinkerError
from linker.neo4j import server
from linker.neo4j.redact import redact, register_secret, secret_safe_logger, split_uri_credentials

__all__ = [
    "ConnectionSettings",
    "QueryResult",
    "QueryRunner",
    "check_server",
    "resolve_connection",
]

logger = secret_safe_logger(__name__)
# The driver's own warnings (e.g. "Unable to retrieve routing information", once per retry)
# would reach stderr through logging's last-resort handler; the runner reports every failure
# itself, in one line. `-vv` users who want the driver's log attach a handler to "neo4j".
logging.getLogger("neo4j").addHandler(logging.NullHandler())

_HOW_TO_START = "start one with `linker neo4j start`, or set NEO4J_URI (and NEO4J_PASSWORD)"


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and as whom to connect. ``password`` is kept out of ``repr``."""

    uri: str
    user: str = "neo4j"
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    source: str = "environment"
    """Where the settings came from (``environment`` or the state file's path), for messages."""

    @property
    def auth(self) -> tuple[str, str] | None:
        return None if self.password is None else (self.user, self.password)


@dataclass(frozen=True)
class QueryResult:
    """The rows of one query: ``columns`` in order, ``rows`` as tuples."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def resolve_connection(
    data_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ConnectionSettings:
    """Connection settings from the environment, else from the local server's state file.

    Parameters
    ----------
    data_dir : path, optional
        The local server's data directory (default: the one ``linker neo4j start`` uses).
        Ignored when ``NEO4J_URI`` is set.
    env : mapping, optional
        The environment to read (default ``os.environ``).

    Returns
    -------
    ConnectionSettings

    Raises
    ------
    EnvironmentProblem
        When neither ``NEO4J_URI`` nor a local server's state is found.
    """
    env = os.environ if env is None else env
    database = env.get("NEO4J_DATABASE") or None
    register_secret(env.get("NEO4J_PASSWORD"))
    if env.get("NEO4J_URI"):
        # A user and password inside the URI are credentials like NEO4J_USER/NEO4J_PASSWORD
        # (which take precedence); the URI kept and shown in messages has neither.
        uri, uri_user, uri_password = split_uri_credentials(env["NEO4J_URI"])
        return ConnectionSettings(
            uri=uri,
            user=env.get("NEO4J_USER") or uri_user or "neo4j",
            password=env.get("NEO4J_PASSWORD") or uri_password or None,
            database=database,
        )
    state = server.read_state(data_dir)
    if state is None:
        raise EnvironmentProblem(f"no Neo4j server configured: {_HOW_TO_START}")
    password = env.get("NEO4J_PASSWORD") or None
    if state.get("auth") and password is None and state.get("password_file"):
        try:
            password = Path(state["password_file"]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise EnvironmentProblem(
                f"{state['password_file']}: cannot read the server's password ({exc.strerror})"
            ) from None
        register_secret(password)
    return ConnectionSettings(
        uri=str(state["uri"]),
        user=env.get("NEO4J_USER") or str(state.get("user") or "neo4j"),
        password=password if state.get("auth") else None,
        database=database,
        source=str(server._resolve_data_dir(data_dir) / server.STATE_FILE),
    )


class QueryRunner:
    """Run Cypher through the official driver, with routing and bounded retries.

    Parameters
    ----------
    connection : ConnectionSettings, optional
        Default: :func:`resolve_connection`.
    max_attempts : int
        Attempts per query for retryable errors (at least 1).
    backoff : float
        First wait in seconds; doubles per attempt, capped at ``max_backoff``.
    max_backoff : float
        The longest single wait.

    Examples
    --------
    >>> with QueryRunner() as runner:  # doctest: +SKIP
    ...     runner.run("RETURN 1 AS x").rows
    [(1,)]
    """

    def __init__(
        self,
        connection: ConnectionSettings | None = None,
        *,
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        connection = connection if connection is not None else resolve_connection()
        uri, uri_user, uri_password = split_uri_credentials(connection.uri)
        if uri != connection.uri:  # credentials inside the URI: the driver never sees them
            connection = dataclasses.replace(
                connection,
                uri=uri,
                user=uri_user or connection.user,
                password=connection.password or uri_password,
            )
        self.connection = connection
        register_secret(self.connection.password)
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        try:
            self._driver = neo4j.GraphDatabase.driver(
                self.connection.uri,
                auth=self.connection.auth,
                # This class is the one retry policy: the driver's own retry loop is off.
                max_transaction_retry_time=0.0,
                connection_timeout=10.0,
                # Server notifications (e.g. "label does not exist" on an empty database)
                # would be logged to stderr on every query; errors still raise.
                notifications_min_severity="OFF",
            )
        except (ValueError, DriverError) as exc:
            raise LinkerError(redact(f"invalid Neo4j URI {self.connection.uri!r}: {exc}")) from None

    def __enter__(self) -> QueryRunner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the driver and its connections."""
        self._driver.close()

    def verify(self) -> None:
        """Check the server answers and accepts the credentials.

        Raises
        ------
        EnvironmentProblem
            Unreachable server (saying how to start one) or rejected credentials.
        """
        self._call(lambda: self._driver.verify_connectivity(), "connect")

    def run(
        self, query: str, parameters: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> QueryResult:
        """Run one Cypher statement in a managed transaction and return all its rows.

        Parameters
        ----------
        query : str
            Cypher text, from :func:`linker.queries.load_query`; values go in ``parameters``.
        parameters : mapping, optional
            Query parameters.
        write : bool
            Route to a writer (``RoutingControl.WRITE``); otherwise to a reader.

        Returns
        -------
        QueryResult

        Raises
        ------
        EnvironmentProblem
            Server unreachable after the retries, or credentials rejected.
        LinkerError
            The server rejected the query (syntax, constraint, ...).
        """
        routing = neo4j.RoutingControl.WRITE if write else neo4j.RoutingControl.READ
        params = dict(parameters or {})

        def call() -> QueryResult:
            records, _summary, keys = self._driver.execute_query(
                query, params, routing_=routing, database_=self.connection.database
            )
            return QueryResult(columns=list(keys), rows=[tuple(r.values()) for r in records])

        return self._call(call, "query")

    def run_autocommit(
        self, query: str, parameters: Mapping[str, Any] | None = None
    ) -> QueryResult:
        """Run one statement in an implicit (auto-commit) transaction, never retried.

        ``CALL { ... } IN [CONCURRENT] TRANSACTIONS`` needs an implicit transaction, and it
        commits its inner transactions as it goes, so running it again after a failure could
        write rows twice: it is not retried (the query reports its failed inner transactions).

        Raises
        ------
        EnvironmentProblem
            Server unreachable, or credentials rejected.
        LinkerError
            The server rejected the query.
        """
        params = dict(parameters or {})

        def call() -> QueryResult:
            with self._driver.session(database=self.connection.database) as session:
                result = session.run(query, params)
                keys = list(result.keys())
                rows = [tuple(r.values()) for r in result]
            return QueryResult(columns=keys, rows=rows)

        return self._call(call, "query", attempts=1)

    def run_in_transaction(self, statements: list[str]) -> None:
        """Run ``statements`` (without parameters) in one write transaction, in order.

        Schema commands in one transaction are committed together, and Neo4j populates
        their indexes in one scan of the store instead of one scan each.
        """

        def work(tx: Any) -> None:
            for statement in statements:
                tx.run(statement).consume()

        def call() -> None:
            with self._driver.session(database=self.connection.database) as session:
                session.execute_write(work)

        self._call(call, "query")

    def _call(self, fn: Any, what: str, *, attempts: int | None = None) -> Any:
        attempt = 0
        max_attempts = self.max_attempts if attempts is None else attempts
        while True:
            attempt += 1
            try:
                return fn()
            except AuthError as exc:
                raise EnvironmentProblem(
                    redact(
                        f"Neo4j at {self.connection.uri} rejected the credentials of user "
                        f"{self.connection.user!r} ({exc.code}); check NEO4J_USER/NEO4J_PASSWORD"
                    )
                ) from None
            except (Neo4jError, DriverError) as exc:
                retryable = exc.is_retryable()
                if retryable and attempt < max_attempts:
                    wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                    logger.info(
                        "retryable %s error (%s), attempt %d/%d, waiting %.1f s",
                        what,
                        type(exc).__name__,
                        attempt,
                        max_attempts,
                        wait,
                    )
                    time.sleep(wait)
                    continue
                if isinstance(exc, ServiceUnavailable) or (
                    isinstance(exc, DriverError) and retryable
                ):
                    raise EnvironmentProblem(
                        redact(f"cannot reach Neo4j at {self.connection.uri}: {_HOW_TO_START}")
                    ) from None
                if isinstance(exc, Neo4jError):
                    message = (exc.message or str(exc)).splitlines()[0]
                    raise LinkerError(
                        redact(f"Neo4j rejected the {what}: {exc.code}: {message}")
                    ) from None
                raise LinkerError(redact(f"Neo4j driver error: {exc}")) from None


def check_server(data_dir: str | os.PathLike[str] | None = None) -> ConnectionSettings:
    """Check that the configured Neo4j server answers and accepts the credentials.

    ``linker run --neo4j`` calls it before the run starts, so a missing server stops the
    command at once instead of after the whole run.

    Parameters
    ----------
    data_dir : path, optional
        The local server's data directory (as for :func:`resolve_connection`).

    Returns
    -------
    ConnectionSettings
        The settings that answered.

    Raises
    ------
    EnvironmentProblem
        No server configured, unreachable (the message says how to start one), or
        credentials rejected.
    """
    settings = resolve_connection(data_dir)
    with QueryRunner(settings) as runner:
        runner.verify()
    return settings
