"""First load of a run into an empty local database with ``neo4j-admin database import full``.

``linker neo4j load RUN_DIR --bulk`` calls :func:`bulk_load`. It reads the run directory into
the same tables as the ``UNWIND`` loader (:func:`linker.neo4j.loader.prepare_load`), then:

1. checks that the database ``neo4j`` of the local server is empty (or that ``replace`` was
   given: the import overwrites it);
2. stops the server (Neo4j Community has one user database, and the importer needs it
   offline) *while* it writes the tables as typed CSV files (``:ID(Account)``,
   ``:START_ID(Account)``, ``first_seen:datetime``, ...) into a temporary folder, with
   Arrow, several files at once; node ids are integers (``--id-type=integer``), the keys
   ordinary string properties;
3. runs Neo4j's own importer, ``org.neo4j.cli.AdminTool database import full
   --overwrite-destination=true ... neo4j``, from the same jars as the server;
4. starts the server again on the same ports and with the same memory settings;
5. creates the constraints and indexes of ``queries/load/schema.cypher`` in one transaction,
   as the ``UNWIND`` loader does (the constraints are online when it returns; the plain
   indexes finish populating in the background), and, when the run has
   ``embeddings.parquet``, writes ``Account.embedding`` with the ``account_embedding`` vector
   index through the ``UNWIND`` loader's own step; then counts what is there.

The importer writes the store files directly, without transactions, so it is much faster
than transactional Cypher for a first load (figures in ``docs/performance.md``); it cannot
add to an existing graph, so later loads use the incremental loader
(:func:`linker.neo4j.loader.load_run`).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from linker.errors import EnvironmentProblem, LinkerError
from linker.queries import load_query

from . import server
from .incremental import record_run
from .loader import (
    ACTION_LABELS,
    LoadStep,
    PreparedLoad,
    create_schema,
    create_vector_index,
    graph_counts,
    prepare_load,
    write_steps,
)
from .redact import secret_safe_logger
from .runner import QueryRunner, resolve_connection

__all__ = ["BulkSummary", "ImportFiles", "ImportOptions", "bulk_load", "write_import_files"]

logger = secret_safe_logger(__name__)

_LABEL_COLUMN = "__labels"

DATABASE = "neo4j"
"""The one user database of Neo4j Community (its default database)."""

IMPORT_LOG = "logs/bulk-import.log"


@dataclass(frozen=True)
class ImportFiles:
    """The CSV files of one import, with the label or type each one carries."""

    folder: Path
    nodes: list[tuple[str, Path]]
    """(label, file) pairs, each file with its typed header on the first line."""
    relationships: list[tuple[str, Path]]
    """(relationship type, file) pairs."""
    rows: dict[str, int]
    """Data rows per step name (``accounts``, ``rel_USED_IP``, ...)."""
    multiline: bool
    """True when a value holds a line break (the importer must then parse multi-line fields)."""


@dataclass(frozen=True)
class BulkSummary:
    """What a bulk import wrote, how long each phase took, and what the database holds."""

    run_dir: Path
    data_dir: Path
    rows_written: dict[str, int]
    nodes: dict[str, int]
    relationships: dict[str, int]
    skipped: dict[str, int]
    seconds: float
    """Wall time from reading the run directory to the constraints online and the graph counted."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: ``prepare`` (reading the run), ``write_csv`` and ``stop`` (at the
    same time), ``import``, ``start`` (until Bolt answers), ``online`` (until the database
    answers), ``schema`` and, when the run has vectors, ``embeddings``."""
    replaced: bool = False
    """True when a non-empty database was overwritten."""


# -- CSV files ----------------------------------------------------------------------------------


def _neo4j_type(array: pa.Array) -> str:
    kind = array.type
    if pa.types.is_timestamp(kind):
        return "datetime"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "long"
    if pa.types.is_floating(kind):
        return "double"
    return "string"


def _as_text_timestamps(array: pa.Array) -> pa.Array:
    """ISO 8601 text in UTC with microseconds, e.g. ``2025-03-01T00:30:00.000000Z``."""
    if array.type.tz is not None:
        array = array.cast(pa.timestamp(array.type.unit))  # the same instants, as UTC wall time
    # Arrow's cast writes "2025-03-01 00:30:00.000000" (30x faster than its strftime).
    text = pc.replace_substring(
        array.cast(pa.timestamp("us")).cast(pa.string()), " ", "T", max_replacements=1
    )
    return pc.binary_join_element_wise(text, pa.scalar("Z"), "")


def _column(series: pd.Series) -> pa.Array:
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
        return pa.array(pd.to_datetime(series, utc=True).dt.as_unit("us"), from_pandas=True)
    array = pa.array(series, from_pandas=True)
    # The run's events table holds its text as categoricals (dictionary columns): an import
    # file and a key look-up need the values themselves.
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def _node_keys(prepared: PreparedLoad) -> dict[str, pa.Array]:
    """Each node label's keys, in the order of its step: a node's import id is its position."""
    return {
        step.label: _column(_node_frame(step).iloc[:, 0])
        for step in prepared.steps
        if step.label is not None
    }


def _node_frame(step: LoadStep) -> pd.DataFrame:
    # MERGE keeps one node per key, with the last row's properties: so does the import.
    key = step.frame.columns[0]
    frame = step.frame.dropna(subset=[key])
    return frame.drop_duplicates(subset=[key], keep="last").reset_index(drop=True)


def _step_table(step: LoadStep, keys: dict[str, pa.Array]) -> tuple[list[str], pa.Table]:
    """The header fields and the cells of one step's import file.

    Node ids are integers (``--id-type=integer``, one id space per label): a node's id is its
    row number, its key a plain string property; a relationship's ends are looked up in the
    end labels' keys, and a row whose end node is not in the run is dropped (the ``UNWIND``
    loader's ``MATCH`` finds nothing for it either).
    """
    headers: list[str] = []
    cells: dict[str, pa.Array] = {}
    frame = step.frame
    if step.label is not None:
        frame = _node_frame(step)
        headers.append(f":ID({step.label})")
        cells["__id"] = pa.array(np.arange(len(frame), dtype=np.int64))
    ends: dict[str, str] = {}
    if step.start is not None and step.end is not None:
        ends = {
            step.start[1]: f":START_ID({step.start[0]})",
            step.end[1]: f":END_ID({step.end[0]})",
        }
        labels = {step.start[1]: step.start[0], step.end[1]: step.end[0]}
    for column in frame.columns:
        array = _column(frame[column])
        if column in ends:
            headers.append(ends[column])
            key_set = keys[labels[column]]
            cells[column] = pc.index_in(array.cast(key_set.type), value_set=key_set)
            continue
        headers.append(f"{column}:{_neo4j_type(array)}")
        cells[column] = _as_text_timestamps(array) if pa.types.is_timestamp(array.type) else array
    if step.label == "Account" and "action" in frame.columns:
        # The action label (:Suspend, :Review) the UNWIND loader sets: an empty field is none.
        action_labels = frame["action"].map(ACTION_LABELS).astype("string")
        cells[_LABEL_COLUMN] = pa.array(action_labels, from_pandas=True)
        headers.append(":LABEL")
    table = pa.table(cells)
    if ends:
        found = pc.and_(*(pc.is_valid(table.column(c)) for c in ends))
        table = table.filter(found)
    return headers, table


def _write_step(step: LoadStep, path: Path, keys: dict[str, pa.Array], compress: bool) -> bool:
    """Write one step as a headed CSV file (gzip when ``compress``); return True when a value
    spans lines."""
    headers, table = _step_table(step, keys)
    sink = pa.BufferOutputStream()
    sink.write((",".join(headers) + "\n").encode("utf-8"))
    # Every present value is quoted and a null is an empty field, so the importer reads
    # "" as an empty string and ,, as a missing property (as the UNWIND loader writes them).
    pacsv.write_csv(
        table, sink, pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    )
    data = sink.getvalue()
    with open(path, "wb") as handle:
        if compress:
            handle.write(_gzip(data))
        else:
            handle.write(data)
    # A quoted value holding a line break shows as more lines than rows (header included).
    raw = memoryview(data)
    return bytes(raw).count(b"\n") != table.num_rows + 1 or b"\r" in raw


def _gzip(data: pa.Buffer) -> bytes:
    """``data`` as one gzip member at level 1 (fast; zlib releases the GIL while it works)."""
    return gzip.compress(memoryview(data), compresslevel=1, mtime=0)


def write_import_files(
    prepared: PreparedLoad,
    folder: str | os.PathLike[str],
    *,
    compress: bool = False,
    workers: int = 2,
) -> ImportFiles:
    """Write the steps of ``prepared`` as ``neo4j-admin database import`` CSV files.

    Parameters
    ----------
    prepared : PreparedLoad
        From :func:`linker.neo4j.loader.prepare_load`.
    folder : path
        An empty folder to write into (the caller makes it temporary).
    compress : bool
        Write ``.csv.gz`` files (gzip level 1); the importer reads them as they are.
    workers : int
        Files written at once (Arrow's CSV writer and zlib release the GIL).

    Returns
    -------
    ImportFiles
        The files and, for each, its label or relationship type.

    Notes
    -----
    Headers are typed from the column types: ``long``, ``double``, ``boolean``, ``datetime``
    (ISO 8601, UTC, microseconds) and ``string``. Node ids are integers, one id space per
    label (``:ID(Label)``: the same text may be an IP and a device), so the importer maps
    ids without hashing strings; the key itself is an ordinary string property, as the
    ``UNWIND`` loader writes it. O(rows), in Arrow, one file per step.
    """
    root = Path(folder)
    keys = _node_keys(prepared)
    steps = [step for step in prepared.steps if not step.frame.empty]
    suffix = ".csv.gz" if compress else ".csv"
    paths = [root / f"{step.name}{suffix}" for step in steps]
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bulk-csv") as pool:
        # Largest first, so that the last file to finish is a small one.
        order = sorted(range(len(steps)), key=lambda i: -len(steps[i].frame))
        futures = {i: pool.submit(_write_step, steps[i], paths[i], keys, compress) for i in order}
        multiline = any(futures[i].result() for i in order)
    nodes = [(s.label, p) for s, p in zip(steps, paths, strict=True) if s.label is not None]
    rels = [(s.rel_type, p) for s, p in zip(steps, paths, strict=True) if s.rel_type is not None]
    rows = {step.name: len(step.frame) for step in prepared.steps}
    return ImportFiles(root, nodes, rels, rows, multiline)


# -- the server and the importer ----------------------------------------------------------------


def _conf_value(home: Path, key: str, default: str) -> str:
    try:
        lines = (home / "conf" / "neo4j.conf").read_text(encoding="utf-8").splitlines()
    except OSError:
        return default
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return default


def _local_runner(home: Path) -> QueryRunner:
    # The bulk import works on this data directory's store, so always talk to its server,
    # whatever NEO4J_URI says.
    env = {k: v for k, v in os.environ.items() if k not in ("NEO4J_URI", "NEO4J_DATABASE")}
    return QueryRunner(resolve_connection(home, env=env))


def _database_size(home: Path, *, timeout: float = 0.0) -> tuple[int, int]:
    """Nodes and relationships in the database; waits up to ``timeout`` seconds for it to
    come online after a start (Bolt answers before the database is available)."""
    deadline = time.monotonic() + timeout
    with _local_runner(home) as runner:
        while True:
            try:
                row = runner.run(load_query("load/database_size")).rows[0]
                return int(row[0]), int(row[1])
            except LinkerError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)


@dataclass(frozen=True)
class ImportOptions:
    """How :func:`bulk_load` writes its files and runs ``neo4j-admin database import``."""

    threads: int = 2
    """Importer threads, and files written at once."""
    heap: str = "1g"
    """The importer's JVM heap."""
    compress: bool = False
    """Write gzip files (``.csv.gz``, level 1). Off by default: on this 2-core machine the
    compression costs more CPU than the smaller files save (``docs/performance.md``)."""


def _run_import(home: Path, files: ImportFiles, options: ImportOptions) -> float:
    java = shutil.which("java")
    if java is None:
        raise EnvironmentProblem("java not found on PATH: install Java 17 or 21")
    lib = server.ensure_jars()
    cmd = [
        java,
        f"-Xmx{options.heap}",
        *server.JVM_FLAGS,
        "-cp",
        f"{lib}/*",
        "org.neo4j.cli.AdminTool",
        "database",
        "import",
        "full",
        DATABASE,
        "--id-type=integer",  # before the file lists: --nodes/--relationships take several values
        "--overwrite-destination=true",
        f"--threads={options.threads}",
        "--max-off-heap-memory=2g",
        f"--report-file={files.folder / 'import.report'}",
        *(["--multiline-fields=true"] if files.multiline else []),
        *(f"--nodes={label}={path}" for label, path in files.nodes),
        *(f"--relationships={rel_type}={path}" for rel_type, path in files.relationships),
    ]
    env = dict(os.environ)
    env["NEO4J_HOME"] = str(home)
    env["NEO4J_CONF"] = str(home / "conf")
    env.pop("NEO4J_PASSWORD", None)
    log_path = home / IMPORT_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.run(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            check=False,
            umask=server.PRIVATE_UMASK,  # the store files it writes are 0600
        )
    if proc.returncode != 0:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        detail = next(
            (ln.strip() for ln in reversed(lines) if "rror" in ln or "xception" in ln),
            lines[-1].strip() if lines else "no output",
        )
        raise LinkerError(
            f"neo4j-admin database import failed (exit {proc.returncode}): {detail[:300]}; "
            f"see {log_path}"
        )
    return time.perf_counter() - began


def _local_server(data_dir: str | os.PathLike[str] | None) -> tuple[Path, dict[str, Any]]:
    """The resolved data directory of the local server and its state file's contents."""
    home = Path(data_dir).expanduser() if data_dir is not None else server.default_data_dir()
    home = home.resolve()
    state = server.read_state(home)
    if state is None or not (home / "conf" / "neo4j.conf").exists():
        raise LinkerError(
            f"no local Neo4j server in {home}: start one with `linker neo4j start` "
            "(and the same --data-dir) before a --bulk load"
        )
    return home, state


def _check_replaceable(home: Path, replace: bool) -> bool:
    """Refuse a database that is not empty, or cannot be checked, unless ``replace``.

    Returns whether a non-empty database is being replaced. A stopped server cannot say
    whether its database is empty, so an existing store is then refused without ``replace``.
    """
    status = server.server_status(data_dir=home)
    store = home / "data" / "databases" / DATABASE
    if status.running:
        nodes, rels = _database_size(home)
        if nodes or rels:
            if not replace:
                raise LinkerError(
                    f"database {DATABASE} in {home} is not empty ({nodes:,} nodes, "
                    f"{rels:,} relationships): --bulk only loads into an empty database; "
                    "pass --replace to overwrite it (its whole graph is deleted), "
                    "or load without --bulk"
                )
            return True
    elif store.exists() and not replace:
        raise LinkerError(
            f"the server of {home} is stopped, so database {DATABASE} cannot be checked for "
            "emptiness: start it with `linker neo4j start`, or pass --replace to overwrite it"
        )
    return False


def _timed_stop(home: Path) -> float:
    mark = time.perf_counter()
    server.stop_server(data_dir=home)
    return time.perf_counter() - mark


def _import_offline(
    prepared: PreparedLoad,
    home: Path,
    state: dict[str, Any],
    options: ImportOptions,
    timeout: float,
) -> tuple[ImportFiles, dict[str, float]]:
    """Stop the server while the import files are written, run the importer, restart.

    The server restarts with its own memory settings and ports even when writing the files
    or the import fails, and the import files are removed either way. Returns the files
    written and the seconds of each phase (``write_csv`` and ``stop`` overlap).
    """
    heap = _conf_value(home, "server.memory.heap.max_size", server.DEFAULT_HEAP)
    pagecache = _conf_value(home, "server.memory.pagecache.size", server.DEFAULT_PAGECACHE)
    phases: dict[str, float] = {}
    (home / "import").mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bulk.", suffix=".tmp", dir=home / "import"))
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-stop") as pool:
            stopping = pool.submit(_timed_stop, home)
            began = time.perf_counter()
            try:
                files = write_import_files(
                    prepared, folder, compress=options.compress, workers=options.threads
                )
                phases["write_csv"] = time.perf_counter() - began
            finally:
                phases["stop"] = stopping.result()
        phases["import"] = _run_import(home, files, options)
    finally:
        mark = time.perf_counter()
        server.start_server(
            data_dir=home,
            bolt_port=int(state["bolt_port"]),
            http_port=int(state["http_port"]),
            heap=heap,
            pagecache=pagecache,
            auth=bool(state.get("auth")),
            timeout=timeout,
        )
        phases["start"] = time.perf_counter() - mark
        shutil.rmtree(folder, ignore_errors=True)
    return files, phases


def _finish_online(
    prepared: PreparedLoad,
    home: Path,
    files: ImportFiles,
    phases: dict[str, float],
    embedding_batch: int,
    timeout: float,
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Once the server answers: constraints, the run's embeddings, and the graph's counts.

    Returns the rows written per step and the node and relationship counts; the seconds of
    the schema and embedding phases go into ``phases``.
    """
    mark = time.perf_counter()
    _database_size(home, timeout=timeout)  # Bolt answers before the database is online
    phases["online"] = time.perf_counter() - mark
    mark = time.perf_counter()
    rows_written = dict(files.rows)
    with _local_runner(home) as runner:
        # The constraints are online when this returns; the analysts' plain indexes finish
        # populating in the background (no write of a later load relies on them).
        create_schema(runner, wait=False)
        phases["schema"] = time.perf_counter() - mark
        if prepared.embeddings is not None and prepared.embedding_dimensions is not None:
            # Vectors go in as the UNWIND loader writes them: one list property per account.
            mark = time.perf_counter()
            create_vector_index(runner, prepared.embedding_dimensions)
            written, _ = write_steps(
                runner, [prepared.embeddings], embedding_batch, desc="neo4j embeddings"
            )
            rows_written.update(written)
            phases["embeddings"] = time.perf_counter() - mark
        record_run(runner, prepared)  # the database now holds this run, completely
        node_counts, rel_counts = graph_counts(runner)
    return rows_written, node_counts, rel_counts


def bulk_load(
    run_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    replace: bool = False,
    threads: int = 2,
    import_heap: str = "1g",
    timeout: float = 180.0,
    embedding_batch: int = 2000,
    compress: bool = False,
) -> BulkSummary:
    """Import ``run_dir`` into the local server's empty database with ``neo4j-admin``.

    Parameters
    ----------
    run_dir : path
        A run directory, as for :func:`linker.neo4j.loader.load_run`.
    data_dir : path, optional
        The local server's data directory (``linker neo4j start --data-dir``); default
        :func:`linker.neo4j.server.default_data_dir`. ``NEO4J_URI`` is not used: the import
        writes this directory's store.
    replace : bool
        Overwrite a database that is not empty. Without it a non-empty database is refused.
    threads : int
        Importer threads (this machine has 2 cores).
    import_heap : str
        JVM heap of the importer, e.g. ``"1g"``.
    timeout : float
        Seconds to wait for the restarted server's Bolt port.
    embedding_batch : int
        Accounts per transaction when the run has ``embeddings.parquet``: the vectors are
        written after the import, as ``Account.embedding``, with the ``account_embedding``
        vector index.
    compress : bool
        Write the import files gzip-compressed (see :class:`ImportOptions`).

    Returns
    -------
    BulkSummary
        Counts after the import, and the seconds of each phase.

    Raises
    ------
    InputError
        A missing or malformed run file (checked before the server is touched).
    LinkerError
        The database is not empty and ``replace`` is False; no server was ever started in
        ``data_dir``; or the importer failed (the message names its log; the server is
        restarted either way).
    EnvironmentProblem
        Java missing, or the server did not come back up.

    Notes
    -----
    The server is unavailable between the stop and the restart (the import itself plus two
    start-ups). The importer is O(nodes + relationships) with no per-row transaction or index
    look-up; the constraints are built afterwards in one pass per index.

    Examples
    --------
    >>> summary = bulk_load("runs/2025-03-01.run")  # doctest: +SKIP
    >>> summary.phases["import"]  # doctest: +SKIP
    21.4
    """
    began = time.perf_counter()
    prepared = prepare_load(run_dir)  # every input error before the server is touched
    prepare_seconds = time.perf_counter() - began
    home, state = _local_server(data_dir)
    replaced = _check_replaceable(home, replace)
    options = ImportOptions(threads=threads, heap=import_heap, compress=compress)
    files, phases = _import_offline(prepared, home, state, options, timeout)
    phases = {"prepare": prepare_seconds, **phases}
    written, nodes, rels = _finish_online(prepared, home, files, phases, embedding_batch, timeout)
    seconds = time.perf_counter() - began
    logger.info("bulk-imported %s into %s in %.1f s", prepared.run_dir, home, seconds)
    return BulkSummary(
        run_dir=prepared.run_dir,
        data_dir=home,
        rows_written=written,
        nodes=nodes,
        relationships=rels,
        skipped=prepared.skipped,
        seconds=seconds,
        phases=phases,
        replaced=replaced,
    )
