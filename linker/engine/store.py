"""The store: the one object that knows where a run's artefacts live.

A run is a list of stages over *named artefacts* (``observations``, ``identifiers``,
``scores`` ...; :data:`CATALOGUE` lists them all). Stages, exports, ``linker explain``,
``linker expand`` and the Neo4j loader ask a store for an artefact by name; none of them
knows a file name. Two stores implement the interface:

* :class:`RunDirectory` — today's behaviour: a directory of Parquet and JSON files
  (``RUN_DIR/scores.parquet`` ...), each written atomically, with ``manifest.json`` written
  last to mark a finished run;
* :class:`MemoryStore` — artefacts held in memory, for :func:`linker.graph.link.link_accounts`,
  notebooks and tests.

Layout of a run directory (the catalogue's paths)::

    manifest.json                written last: its presence marks a finished run
    validation.json              rows read/accepted/rejected and the problems found
    tables/{accounts,payments,events}.parquet   the validated input tables
    quarantine/<table>.csv       rejected input rows
    observations.parquet         the graph's edges: one row per (account, kind, value)
    identifiers.parquet          the graph's identifier nodes: weight, super-node flag
    state/event_{codes,values}.parquet   the events as integer codes, for `linker update`
    state/incidence.parquet      the incidence matrix's entries as integers, for `linker update`
    state/lockstep_signatures.parquet   each account's lockstep signatures, for `linker update`
    ...                          one file per artefact of CATALOGUE

A table artefact may instead be a directory of the same name holding part files
(``part-00000.parquet`` ...) and ``_parts.json`` (each part's rows and SHA-256): what
``linker update`` writes for a table that only grows (:class:`Appended`): the previous run's
parts are hard-linked, not copied, and only the new rows are written. Readers see the union of
the parts, in part order, exactly as they would see one file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from linker.cells import neutralise_columns
from linker.errors import InputError, LinkerError, OutputError
from linker.io.atomic import atomic_path, write_text_atomic
from linker.io.files import file_sha256
from linker.io.locking import OutputLock

if TYPE_CHECKING:
    from linker.io.validate import ValidationResult

__all__ = [
    "CATALOGUE",
    "Appended",
    "Artefact",
    "ArtefactStore",
    "Digest",
    "ExportLocation",
    "Filter",
    "MemoryStore",
    "RunDirectory",
    "parquet_options",
    "save_validation",
]

logger = logging.getLogger(__name__)

Filter = tuple[str, Literal["==", "in"], Any]
"""A row filter on one column: ``("account_id", "==", "a1")`` or ``(col, "in", [...])``."""

Digest = Callable[[], str]
"""What :meth:`ArtefactStore.write_behind` returns: call it for the artefact's SHA-256 (it
waits for the write)."""


@dataclass(frozen=True)
class Artefact:
    """One named artefact of a run.

    Attributes
    ----------
    name : str
        The name stages and commands ask for.
    path : str
        Where a :class:`RunDirectory` keeps it, relative to the run directory.
    description : str
        What it holds (docs/pipeline.md lists every artefact with it).
    """

    name: str
    path: str
    description: str

    @property
    def is_json(self) -> bool:
        """A JSON document rather than a Parquet table."""
        return self.path.endswith(".json")


@dataclass(frozen=True)
class Appended:
    """A table artefact that is another store's same artefact plus new rows, some of which
    may replace rows of the base.

    A stage returns it in place of a frame for a table that only grows (``linker update``'s
    validated tables) or whose few changed rows are known (its observations). A
    :class:`RunDirectory` keeps it as part files: the base's parts hard-linked (copied across
    file systems) and one new part for ``rows``, so the rows the base already had are neither
    read nor written again; the ``replaced`` rows are recorded as a list of row numbers per
    part that readers skip. Its content hash covers the parts' and the lists' hashes, the
    base's taken as recorded. A :class:`MemoryStore` keeps the result as one frame.

    Read back, the artefact is the base's rows but the replaced ones, in order, then
    ``rows``.

    Attributes
    ----------
    base : ArtefactStore
        The store holding the earlier rows (a previous run directory).
    rows : pandas.DataFrame
        The new rows, with the base artefact's columns.
    replaced : numpy.ndarray of int, optional
        Rows of the base artefact, as read (``0 .. n-1``), that ``rows`` supersede.
    """

    base: ArtefactStore
    rows: pd.DataFrame
    replaced: np.ndarray | None = None

    def applied(self, name: str) -> pd.DataFrame:
        """The artefact as one frame: the base's rows but the replaced ones, then ``rows``."""
        before = self.base.read(name) if self.base.has(name) else self.rows.iloc[0:0]
        if self.replaced is not None and len(self.replaced):
            keep = np.ones(len(before), dtype=bool)
            keep[np.asarray(self.replaced, dtype=np.int64)] = False
            before = before[keep]
        return pd.concat([before, self.rows], ignore_index=True)


PARTS_FILE = "_parts.json"
"""In a parted table artefact's directory: its parts, rows and SHA-256, in order."""

_PART = "part-{:05d}.parquet"


def _replaced_rows(part: dict[str, Any]) -> np.ndarray:
    """The rows of a part that readers skip (its ``replaced`` list in ``_parts.json``:
    rows that later rows replaced; sorted, none for most parts)."""
    return np.asarray(part.get("replaced", []), dtype=np.int64)


def _replaced_by_part(
    skipped: list[np.ndarray], counts: list[int], replaced: np.ndarray | None
) -> list[np.ndarray]:
    """Per part, the rows to skip: those skipped already and the ``replaced`` rows of the
    artefact as read (numbered over the parts' rows that are not skipped)."""
    out = [np.asarray(s, dtype=np.int64) for s in skipped]
    if replaced is None or not len(replaced):
        return out
    starts = np.cumsum([0, *(n - len(s) for n, s in zip(counts, out, strict=True))])
    wanted = np.unique(np.asarray(replaced, dtype=np.int64))
    if wanted.min() < 0 or wanted.max() >= starts[-1]:
        raise LinkerError("replaced rows outside the base artefact")
    part = np.searchsorted(starts, wanted, side="right") - 1
    for i in np.unique(part).tolist():
        rank = wanted[part == i] - starts[i]  # among the part's rows not skipped yet
        # The k-th row not skipped is row k plus the skipped rows at or before it: skipped
        # row s_j has s_j - j rows not skipped before it.
        skipped = out[i]
        local = rank + np.searchsorted(skipped - np.arange(len(skipped)), rank, side="right")
        out[i] = np.union1d(skipped, local)
    return out


def _catalogue(*entries: Artefact) -> dict[str, Artefact]:
    return {entry.name: entry for entry in entries}


CATALOGUE: dict[str, Artefact] = _catalogue(
    Artefact("manifest", "manifest.json", "the run's manifest; written last"),
    Artefact("validation", "validation.json", "rows read, accepted and rejected; problems"),
    Artefact("accounts", "tables/accounts.parquet", "validated accounts table"),
    Artefact("payments", "tables/payments.parquet", "validated payments table"),
    Artefact("events", "tables/events.parquet", "validated events table"),
    Artefact("labels", "tables/labels.parquet", "validated labels table (linker validate only)"),
    Artefact(
        "observations",
        "observations.parquet",
        "the graph's edges: account, identifier kind and value, first/last seen, count",
    ),
    Artefact(
        "identifiers",
        "identifiers.parquet",
        "the graph's identifier nodes: kind, value, accounts, weight, super-node flag",
    ),
    Artefact("behaviour", "behaviour.parquet", "per-account behaviour features"),
    Artefact("lockstep", "lockstep.parquet", "pairs of accounts acting in lockstep"),
    Artefact(
        "event_codes",
        "state/event_codes.parquet",
        "the events as integer codes (stored account row, time, value codes, counts): "
        "what `linker update` reads instead of the events",
    ),
    Artefact(
        "lockstep_signatures",
        "state/lockstep_signatures.parquet",
        "per lockstep pass (width, action): each account's stored row (acc) and MinHash "
        "signature (h00 ...); what `linker update` compares new activity with",
    ),
    Artefact(
        "incidence",
        "state/incidence.parquet",
        "the account-identifier incidence matrix's entries: acc (the account's row in "
        "tables/accounts), identifier (row of identifiers); what `linker update` extends",
    ),
    Artefact(
        "event_values",
        "state/event_values.parquet",
        "the value of each code of event_codes' model, prompt and ip columns",
    ),
    Artefact("communities", "communities.parquet", "per account: its community, if any"),
    Artefact("evidence", "evidence.parquet", "per account: each signal's value and score term"),
    Artefact("cluster_evidence", "cluster_evidence.parquet", "per cluster: each signal's value"),
    Artefact("engine_scores", "engine_scores.parquet", "per account: score, action, reasons"),
    Artefact("engine_clusters", "engine_clusters.parquet", "per cluster: score and reasons"),
    Artefact("links", "links.parquet", "account-account evidence links inside clusters"),
    Artefact("proximity", "proximity.parquet", "accounts moved to review by embeddings"),
    Artefact("embeddings", "embeddings.parquet", "per account: embedding vector"),
    Artefact("scores", "scores.parquet", "final per-account decisions (after the allow-list)"),
    Artefact("clusters", "clusters.parquet", "final per-cluster summary"),
)
"""Every artefact a run can write, by name."""

QUARANTINE_DIR = "quarantine"

LOCK_FILE = ".lock"
"""The lock file a run holds in its run directory."""

_SUBDIRS: tuple[str, ...] = (
    *sorted({str(Path(a.path).parent) for a in CATALOGUE.values()} - {"."}),
    QUARANTINE_DIR,
)
"""Folders of a run directory whose files a run writes."""

_TEMP_NAME = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")
"""A temporary file of :func:`linker.io.atomic.atomic_path` (``.<name>.XXXXXXXX.tmp``)."""


def _artefact(name: str) -> Artefact:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise LinkerError(f"unknown run artefact {name!r}") from None


def _apply_filters(frame: pd.DataFrame, filters: Sequence[Filter] | None) -> pd.DataFrame:
    for column, op, value in filters or ():
        values = [value] if op == "==" else list(value)
        frame = frame[frame[column].isin(values).to_numpy(dtype=bool)]
    return frame


class ArtefactStore(ABC):
    """Read and write a run's named artefacts (see :data:`CATALOGUE`)."""

    @property
    def directory(self) -> Path | None:
        """The directory the store keeps its files in (``None`` in memory)."""
        return None

    @abstractmethod
    def has(self, name: str) -> bool:
        """Whether artefact ``name`` was written."""

    @abstractmethod
    def read(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        filters: Sequence[Filter] | None = None,
    ) -> pd.DataFrame:
        """Read table artefact ``name`` (some ``columns``; rows matching ``filters``).

        Raises
        ------
        InputError
            When the artefact is missing.
        """

    @abstractmethod
    def write(self, name: str, frame: pd.DataFrame | pa.Table) -> str:
        """Write table artefact ``name``; returns its content's SHA-256 (``""`` in memory)."""

    def write_behind(self, name: str, frame: pd.DataFrame | pa.Table | Appended) -> Digest:
        """Write table artefact ``name``, possibly in the background; returns a function
        that gives its content's SHA-256 once written (it waits for the write).

        The caller must not modify ``frame`` afterwards: a background write reads it while
        the caller goes on. Reading the artefact back waits for its write. This store
        writes at once.
        """
        digest = self.write(name, frame)
        return lambda: digest

    def settle(self, *, raise_errors: bool = True) -> None:
        """Wait for every background write (:meth:`write_behind`); the first write that
        failed raises its error here unless ``raise_errors`` is false."""
        del raise_errors

    @abstractmethod
    def read_json(self, name: str) -> dict[str, Any]:
        """Read JSON artefact ``name`` (``manifest``, ``validation``)."""

    @abstractmethod
    def write_json(self, name: str, document: dict[str, Any], *, sort_keys: bool = True) -> None:
        """Write JSON artefact ``name`` (keys sorted unless ``sort_keys`` is false)."""

    @abstractmethod
    def write_quarantine(self, table: str, frame: pd.DataFrame | None) -> str | None:
        """Write the rejected rows of ``table`` (``None`` removes a stale file); returns
        where they went."""

    @abstractmethod
    def begin(self) -> None:
        """Forget the artefacts of an earlier run, manifest first."""

    @abstractmethod
    def location(self, name: str) -> str:
        """Where artefact ``name`` lives, for messages."""

    def file_of(self, name: str) -> Path | None:
        """The Parquet file another engine (Spark) may read artefact ``name`` from, or
        ``None`` when the store keeps it elsewhere (in memory) or has not written it."""
        del name
        return None

    @abstractmethod
    def remove(self, names: Iterable[str]) -> None:
        """Delete the given artefacts (stale ones, or those a resumed run writes again)."""

    def written(self) -> dict[str, str]:
        """The artefacts present, by name, with their locations."""
        return {name: self.location(name) for name in CATALOGUE if self.has(name)}


class MemoryStore(ArtefactStore):
    """Artefacts held in memory (nothing touches the disk).

    Examples
    --------
    >>> store = MemoryStore()
    >>> _ = store.write("scores", pd.DataFrame({"account_id": ["a"], "score": [0.5]}))
    >>> store.read("scores")["score"].tolist()
    [0.5]
    """

    def __init__(self) -> None:
        self._tables: dict[str, pd.DataFrame] = {}
        self._json: dict[str, dict[str, Any]] = {}
        self.quarantine: dict[str, pd.DataFrame] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({sorted([*self._tables, *self._json])})"

    def has(self, name: str) -> bool:
        _artefact(name)
        return name in self._tables or name in self._json

    def read(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        filters: Sequence[Filter] | None = None,
    ) -> pd.DataFrame:
        _artefact(name)
        if name not in self._tables:
            raise InputError(f"artefact {name} was not written in this run")
        frame = _apply_filters(self._tables[name], filters)
        return frame[list(columns)] if columns is not None else frame

    def write(self, name: str, frame: pd.DataFrame | pa.Table | Appended) -> str:
        _artefact(name)
        if isinstance(frame, Appended):
            frame = frame.applied(name)
        self._tables[name] = frame.to_pandas() if isinstance(frame, pa.Table) else frame
        return ""

    def read_json(self, name: str) -> dict[str, Any]:
        _artefact(name)
        if name not in self._json:
            raise InputError(f"artefact {name} was not written in this run")
        return self._json[name]

    def write_json(self, name: str, document: dict[str, Any], *, sort_keys: bool = True) -> None:
        _artefact(name)
        self._json[name] = document

    def write_quarantine(self, table: str, frame: pd.DataFrame | None) -> str | None:
        if frame is None:
            self.quarantine.pop(table, None)
            return None
        self.quarantine[table] = frame
        return f"memory:quarantine/{table}"

    def begin(self) -> None:
        self._tables.clear()
        self._json.clear()
        self.quarantine.clear()

    def location(self, name: str) -> str:
        return f"memory:{_artefact(name).name}"

    def remove(self, names: Iterable[str]) -> None:
        for name in names:
            self._tables.pop(name, None)
            self._json.pop(name, None)


_DICTIONARY_PAGE_BYTES = 1 << 20
"""Parquet's default ``dictionary_pagesize_limit``: a column chunk whose dictionary page
outgrows it falls back to plain encoding."""


def parquet_options(table: pa.Table) -> dict[str, Any]:
    """How the store writes ``table`` to Parquet.

    A dictionary column whose dictionary is larger than Parquet's dictionary page
    (:data:`_DICTIONARY_PAGE_BYTES`: a million account ids or templates of the events) is
    written plain: the writer would hash every value into its own dictionary only to fall
    back to plain encoding once the page is full, and each row group would carry the whole
    dictionary again. Readers still get the column as a dictionary (Arrow keeps the type in
    the file's schema). Other columns keep Parquet's dictionary encoding.
    """
    plain = {
        field.name
        for field, column in zip(table.schema, table.columns, strict=True)
        if pa.types.is_dictionary(field.type)
        and max((chunk.dictionary.nbytes for chunk in column.chunks), default=0)
        > _DICTIONARY_PAGE_BYTES
    }
    encoded: bool | list[str] = (
        [name for name in table.column_names if name not in plain] if plain else True
    )
    return {"compression": "zstd", "use_dictionary": encoded}


def _arrow_table(frame: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(frame, pa.Table):
        return frame
    return pa.Table.from_pandas(frame, preserve_index=False)


def _write_parquet(target: Path, table: pa.Table) -> str:
    """Write ``table`` to ``target`` atomically; its SHA-256."""
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, **parquet_options(table))
        digest = file_sha256(tmp)
    logger.debug("wrote %s (%d rows)", target, table.num_rows)
    return digest


class RunDirectory(ArtefactStore):
    """A run directory of Parquet and JSON files: the layout of :data:`CATALOGUE`.

    Parameters
    ----------
    root : str or Path
        The run directory. It need not exist until something is written.

    Examples
    --------
    >>> import tempfile
    >>> store = RunDirectory(tempfile.mkdtemp())
    >>> _ = store.write("scores", pd.DataFrame({"account_id": ["a"], "score": [0.5]}))
    >>> store.read("scores")["score"].tolist()
    [0.5]
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._pending: dict[str, Future[str]] = {}
        self._writer: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.root)!r})"

    def write_behind(self, name: str, frame: pd.DataFrame | pa.Table | Appended) -> Digest:
        """Write table artefact ``name`` in a background thread (Parquet encoding and
        compression release the GIL, so the next stage computes meanwhile on another core);
        an :class:`Appended` artefact is written at once (its new part is small)."""
        if isinstance(frame, Appended):
            return super().write_behind(name, frame)
        target = self._replaceable(name)
        table = _arrow_table(frame)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artefact-write")
        future = self._writer.submit(_write_parquet, target, table)
        self._pending[name] = future
        return future.result

    def settle(self, *, raise_errors: bool = True) -> None:
        pending, self._pending = self._pending, {}
        first: BaseException | None = None
        for future in pending.values():
            error = future.exception()
            if error is not None and first is None:
                first = error
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if first is not None and raise_errors:
            raise first

    def _settle(self, name: str) -> None:
        """Wait for the background write of ``name``, if one is pending."""
        future = self._pending.pop(name, None)
        if future is not None:
            future.result()

    def _replaceable(self, name: str) -> Path:
        """The path of artefact ``name``, ready for a new single file: its pending write
        finished, a parted artefact of an earlier run removed."""
        self._settle(name)
        target = self._path(name)
        if target.is_dir():
            _remove_artefact(target)
        return target

    @property
    def directory(self) -> Path | None:
        return self.root

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> RunDirectory:
        """Open a finished run directory for reading.

        Raises
        ------
        InputError
            When the directory does not exist or holds no manifest (no finished run).
        """
        store = cls(root)
        if not store.root.is_dir():
            raise InputError(
                f"{store.root}: run directory not found (create one with "
                "`linker run DATA_DIR --out FILE`)"
            )
        if not store.has("manifest"):
            raise InputError(
                f"{store.root}: not a finished run directory (no {CATALOGUE['manifest'].path}); "
                "run `linker run DATA_DIR --out FILE --run-dir` again"
            )
        return store

    @staticmethod
    def is_run(root: str | os.PathLike[str]) -> bool:
        """Whether ``root`` holds a finished run (its manifest)."""
        return (Path(root) / CATALOGUE["manifest"].path).is_file()

    def _path(self, name: str) -> Path:
        return self.root / _artefact(name).path

    def location(self, name: str) -> str:
        return str(self._path(name))

    def file_of(self, name: str) -> Path | None:
        self._settle(name)
        path = self._path(name)
        return path if path.suffix == ".parquet" and path.is_file() else None

    def has(self, name: str) -> bool:
        self._settle(name)
        path = self._path(name)
        return path.is_file() or (path / PARTS_FILE).is_file()

    def parts(self, name: str) -> list[dict[str, Any]]:
        """The part files of table artefact ``name`` (``file``, ``rows``, ``sha256``, paths
        relative to the artefact); one entry for an artefact kept as one file (``file`` is
        ``""``, ``rows`` and ``sha256`` ``None``: not recorded)."""
        self._settle(name)
        path = self._path(name)
        if path.is_file():
            return [{"file": "", "rows": None, "sha256": None}]
        document = json.loads((path / PARTS_FILE).read_text(encoding="utf-8"))
        return list(document["parts"])

    def _sources(self, name: str) -> Path | list[str]:
        self._settle(name)
        path = self._path(name)
        if path.is_dir():
            return [str(path / part["file"]) for part in self.parts(name)]
        return path

    def read(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        filters: Sequence[Filter] | None = None,
    ) -> pd.DataFrame:
        target = self._path(name)
        if not self.has(name):
            raise InputError(f"{target}: missing from the run directory; run `linker run` again")
        arrow_filters = [(c, "in" if op == "in" else "==", v) for c, op, v in filters or ()]
        try:
            if target.is_dir() and any(p.get("replaced") for p in self.parts(name)):
                return self._read_revised(name, columns, filters)
            return pd.read_parquet(
                cast(Any, self._sources(name)),  # one file, or its parts in order
                columns=list(columns) if columns is not None else None,
                filters=arrow_filters or None,
            )
        except (OSError, ValueError, pa.ArrowException) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{target}: not a readable artefact ({first})") from None

    def _read_revised(
        self, name: str, columns: Sequence[str] | None, filters: Sequence[Filter] | None
    ) -> pd.DataFrame:
        """A parted artefact some of whose parts' rows were replaced: each part without its
        replaced rows, in order; the filters apply to what remains."""
        path = self._path(name)
        wanted = None
        if columns is not None:
            wanted = list(dict.fromkeys([*columns, *(c for c, _, _ in filters or ())]))
        tables = []
        for part in self.parts(name):
            table = pq.read_table(path / part["file"], columns=wanted)
            skip = _replaced_rows(part)
            if len(skip):
                keep = np.ones(table.num_rows, dtype=bool)
                keep[skip] = False
                table = table.filter(pa.array(keep))
            tables.append(table)
        frame = _apply_filters(pa.concat_tables(tables).to_pandas(), filters).reset_index(drop=True)
        return frame[list(columns)] if columns is not None else frame

    def write(self, name: str, frame: pd.DataFrame | pa.Table | Appended) -> str:
        if isinstance(frame, Appended):
            self._settle(name)
            return self._append(name, frame)
        return _write_parquet(self._replaceable(name), _arrow_table(frame))

    def read_json(self, name: str) -> dict[str, Any]:
        target = self._path(name)
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"{target}: cannot read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{target}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise InputError(f"{target}: not a JSON object")
        return data

    def write_json(self, name: str, document: dict[str, Any], *, sort_keys: bool = True) -> None:
        text = json.dumps(document, indent=2, sort_keys=sort_keys) + "\n"
        write_text_atomic(self._path(name), text)

    def write_quarantine(self, table: str, frame: pd.DataFrame | None) -> str | None:
        target = self.root / QUARANTINE_DIR / f"{table}.csv"
        if frame is None:
            target.unlink(missing_ok=True)
            return None
        buffer = io.StringIO()
        # For people to read in a spreadsheet: formula-leading text cells are neutralised.
        neutralise_columns(frame).to_csv(buffer, index=False, lineterminator="\n")
        write_text_atomic(target, buffer.getvalue())
        return str(target)

    def begin(self) -> None:
        """Prepare the directory for a new run.

        The manifest goes first, so an interrupted run never looks finished; then every
        artefact of an earlier run, so none of them is mistaken for this run's. Other files
        in the directory are left alone (it may be a directory the user chose).
        """
        self.settle(raise_errors=False)
        self.root.mkdir(parents=True, exist_ok=True)
        for name in CATALOGUE:
            _remove_artefact(self._path(name))
        for stale in (self.root / QUARANTINE_DIR).glob("*.csv"):
            stale.unlink()

    def remove(self, names: Iterable[str]) -> None:
        for name in names:
            self._settle(name)
            _remove_artefact(self._path(name))

    def _append(self, name: str, appended: Appended) -> str:
        """Write ``appended`` as parts: the base's hard-linked, then the new rows' part
        (cast to the base's schema). A base that is not a run directory, or whose schema
        the new rows do not fit, gives one file of all rows instead."""
        base = appended.base
        if not isinstance(base, RunDirectory) or not base.has(name):
            return self.write(name, appended.applied(name))
        sources = base._sources(name)
        files = [Path(sources)] if isinstance(sources, Path) else [Path(f) for f in sources]
        try:
            schema = pq.read_schema(files[0])
            rows = schema.empty_table()
            if len(appended.rows):
                table = pa.Table.from_pandas(appended.rows, preserve_index=False)
                if sorted(table.column_names) == sorted(schema.names):
                    table = table.select(schema.names)
                rows = table.cast(schema)
        except (pa.ArrowException, ValueError):
            return self.write(name, appended.applied(name))
        target = self._path(name)
        known_parts = base.parts(name)
        counts = [
            known["rows"] if known["rows"] is not None else pq.read_metadata(source).num_rows
            for source, known in zip(files, known_parts, strict=True)
        ]
        replaced = _replaced_by_part(
            [_replaced_rows(known) for known in known_parts],
            counts,
            appended.replaced,
        )
        _remove_artefact(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(target) as tmp:
            parts = []
            for i, (source, known) in enumerate(zip(files, known_parts, strict=True)):
                _link_or_copy(source, tmp / _PART.format(i))
                digest = known["sha256"] or file_sha256(source)
                part: dict[str, Any] = {
                    "file": _PART.format(i),
                    "rows": counts[i],
                    "sha256": digest,
                }
                if len(replaced[i]):
                    part["replaced"] = [int(r) for r in replaced[i]]
                parts.append(part)
            if rows.num_rows or not parts:
                new = tmp / _PART.format(len(parts))
                pq.write_table(rows, new, **parquet_options(rows))
                parts.append({"file": new.name, "rows": rows.num_rows, "sha256": file_sha256(new)})
            text = json.dumps({"parts": parts}, indent=2, sort_keys=True) + "\n"
            (tmp / PARTS_FILE).write_text(text, encoding="utf-8")
        logger.debug("wrote %s (%d parts, %d new rows)", target, len(parts), rows.num_rows)
        hashes = [[p["sha256"], p["replaced"]] if "replaced" in p else p["sha256"] for p in parts]
        summary = json.dumps(hashes).encode("utf-8")
        return hashlib.sha256(summary).hexdigest()

    def lock(self) -> OutputLock:
        """The lock a run holds on this directory while it writes (``RUN_DIR/.lock``)."""
        return OutputLock(self.root / LOCK_FILE, f"run directory {self.root}")

    def check_writable(self) -> None:
        """Create the directory if needed and prove a file can be written in it.

        Raises
        ------
        OutputError
            When it is not a directory, cannot be created, or refuses a new file.
        """
        if os.path.lexists(self.root) and not self.root.is_dir():
            raise OutputError(f"{self.root}: run directory is not a directory")
        _probe_directory(self.root, f"run directory {self.root}", ".probe.")

    def owns(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is one of this directory's artefacts, or lies in a folder whose
        files a run replaces (``tables/``, ``quarantine/``)."""
        target = _located(path)
        root = _located(self.root)
        if any(target == _located(self._path(name)) for name in CATALOGUE):
            return True
        return any(target == root / sub or target.is_relative_to(root / sub) for sub in _SUBDIRS)

    def clean_stale(self) -> list[Path]:
        """Delete the temporary files that writers of an interrupted run left behind
        (``.<artefact>.XXXXXXXX.tmp`` beside each artefact). Call it holding :meth:`lock`.

        Returns
        -------
        list of Path
            The files removed.
        """
        self.settle(raise_errors=False)  # a write in flight has a temporary file too
        removed: list[Path] = []
        for sub in ("", *_SUBDIRS):
            folder = self.root / sub
            if not folder.is_dir():
                continue
            names = {
                Path(a.path).name
                for a in CATALOGUE.values()
                if str(Path(a.path).parent) == (sub or ".")
            }
            for entry in folder.iterdir():
                match = _TEMP_NAME.match(entry.name)
                if match is None or entry.is_symlink():
                    continue
                stem = match.group(1)
                if entry.is_dir() and stem in names:
                    shutil.rmtree(entry, ignore_errors=True)  # parts of an unfinished append
                    removed.append(entry)
                elif entry.is_file() and (
                    stem in names
                    or stem == "probe"
                    or (sub == QUARANTINE_DIR and stem.endswith(".csv"))
                ):
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
        if removed:
            logger.info("removed %d stale temporary file(s) from %s", len(removed), self.root)
        return removed


VALIDATED_TABLES: tuple[str, ...] = ("accounts", "payments", "events", "labels")
"""The input tables validation writes, in contract order."""


def save_validation(store: ArtefactStore, result: ValidationResult) -> None:
    """Write what validation kept and rejected: the tables, the quarantined rows, the
    observations (when built) and the validation report.

    A table or quarantine file of an earlier dataset in the same store, for a table that is
    now absent or clean, is removed, so the store describes this dataset only. Sets
    ``result.quarantine_paths`` (and ``result.out_dir`` for a run directory).
    """
    for name, path in result.files.items():
        if name not in result.sha256:
            result.sha256[name] = file_sha256(path)
    for name in VALIDATED_TABLES:
        if name in result.tables:
            store.write(name, result.tables[name])
        else:
            store.remove([name])
    result.quarantine_paths = {}
    for name in result.summary:
        where = store.write_quarantine(name, result.quarantine.get(name))
        if where is not None:
            result.quarantine_paths[name] = Path(where)
    result.out_dir = store.directory
    if result.observations is not None:
        store.write("observations", result.observations)
    store.write_json("validation", result.report(), sort_keys=False)


def _remove_artefact(path: Path) -> None:
    """Remove an artefact kept as one file or as a directory of parts."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link of ``source`` at ``target`` (both stay valid alone: files are replaced,
    never rewritten in place); a copy where links are impossible (another file system)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """A temporary directory beside ``target``, renamed to ``target`` when the block ends
    without error (removed otherwise)."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        _fsync_directory(tmp)
        os.replace(tmp, target)
        _fsync_directory(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _located(path: str | os.PathLike[str]) -> Path:
    """``path`` with its directory resolved (symbolic links, ``..``) and its own name kept:
    where a write to ``path`` lands, for comparing locations."""
    path = Path(path)
    return Path(os.path.realpath(path.parent)) / path.name


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _probe_directory(directory: Path, what: str, prefix: str) -> None:
    """Create ``directory`` (and its parents) and write and delete a file in it.

    Raises
    ------
    OutputError
        Naming ``what``, the directory and why it cannot take a new file.
    """
    existing = directory
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if os.path.lexists(existing) and not existing.is_dir():
        raise OutputError(f"{what}: cannot create {directory}: {existing} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{what}: cannot create the directory {directory} ({_reason(exc)})"
        ) from None
    try:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError(f"{what}: cannot write in {directory} ({_reason(exc)})") from None


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ExportLocation:
    """Where a takedown list and its manifest live, and how a new pair is published.

    Layout, for ``out = DIR/takedown.csv``::

        DIR/takedown.csv                -> .takedown.csv.d/current/takedown.csv
        DIR/takedown.csv.manifest.json  -> .takedown.csv.d/current/takedown.csv.manifest.json
        DIR/takedown.changes.csv        -> .takedown.csv.d/current/takedown.changes.csv
        DIR/.takedown.csv.d/current     -> g-XXXXXXXX      (the committed generation)
        DIR/.takedown.csv.d/g-XXXXXXXX/ the export and its manifest
        DIR/.takedown.csv.d/lock        held by the process writing the export

    The two names a reader opens are symbolic links through ``current``; a new pair is written
    into a new generation directory (:meth:`stage`) and published by replacing ``current`` in
    one atomic rename (:meth:`commit`), so the export and its manifest are always a pair, the
    old one or the new one, whenever the writer is stopped. The change list
    (:attr:`changes`, written by ``linker run``) is a third name through ``current``: it
    belongs to the generation it was staged in (a generation without one leaves the name
    absent). An export written by an earlier
    version (two regular files) is first moved into a generation of its own, in steps that
    each leave it readable and unchanged.

    Parameters
    ----------
    out : str or Path
        The export file's path (``--out``).
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.manifest = self.out.with_name(self.out.name + ".manifest.json")
        self.changes = self.out.with_name(f"{self.out.stem}.changes{self.out.suffix}")
        """The change list published with the export (``takedown.changes.csv``)."""
        self.home = self.out.with_name(f".{self.out.name}.d")
        self.current = self.home / "current"
        self.lock_file = self.home / "lock"

    def __repr__(self) -> str:
        return f"ExportLocation({str(self.out)!r})"

    def lock(self) -> OutputLock:
        """The lock a writer of this export holds from its checks to its commit."""
        return OutputLock(self.lock_file, str(self.out))

    def check_writable(self) -> None:
        """Refuse an ``out`` that is a directory or a special file, or whose directory
        cannot be created or written.

        Raises
        ------
        OutputError
        """
        out = self.out
        if out.is_dir():
            raise OutputError(f"{out}: is a directory; --out names the file to write")
        if os.path.lexists(out) and not out.is_symlink() and not out.is_file():
            raise OutputError(f"{out}: exists and is not a regular file; it is not replaced")
        _probe_directory(out.parent, str(out), f".{out.name}.")

    def check_changes_free(self) -> None:
        """Refuse to publish a change list over a file that is not one linker published.

        Raises
        ------
        OutputError
        """
        target = f"{self.home.name}/current/{self.changes.name}"
        if os.path.lexists(self.changes) and not _is_link_to(self.changes, target):
            raise OutputError(
                f"{self.changes}: exists and is not linker's change list for {self.out}; "
                "it is not replaced (move it, or choose another --out)"
            )

    def _links(self) -> dict[Path, str]:
        """The two published names and the link each must hold."""
        return {
            self.out: f"{self.home.name}/current/{self.out.name}",
            self.manifest: f"{self.home.name}/current/{self.manifest.name}",
        }

    def committed(self) -> str | None:
        """The name of the committed generation, or ``None``."""
        try:
            return os.readlink(self.current)
        except OSError:
            return None

    def committed_manifest(self) -> dict[str, Any] | None:
        """The published manifest (of this layout or an earlier one), or ``None`` when there
        is none or it is unreadable."""
        try:
            data = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def clean_stale(self) -> list[Path]:
        """Delete what an interrupted writer left: generations never committed, half-made
        links, temporary files beside the export. Call it holding :meth:`lock`.

        Returns
        -------
        list of Path
            What was removed.
        """
        removed: list[Path] = []
        keep = self.committed()
        if self.home.is_dir():
            for entry in self.home.iterdir():
                if entry.name.startswith("g-") and entry.name != keep and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
                elif (match := _TEMP_NAME.match(entry.name)) and match.group(1) == "current":
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
        names = {self.out.name, self.manifest.name, self.changes.name}
        if self.out.parent.is_dir():
            for entry in self.out.parent.iterdir():
                match = _TEMP_NAME.match(entry.name)
                if match and match.group(1) in names and not entry.is_dir():
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
        if removed:
            logger.info(
                "removed %d stale file(s) of an interrupted export of %s", len(removed), self.out
            )
        return removed

    def stage(self) -> Path:
        """A new, empty generation directory: write the export and its manifest into it
        under their own names (:meth:`staged`), then :meth:`commit` it."""
        self.home.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix="g-", dir=self.home))
        os.chmod(stage, 0o777 & ~_umask())
        return stage

    def staged(self, stage: Path) -> tuple[Path, Path]:
        """Where the export and its manifest go in a staged generation."""
        return stage / self.out.name, stage / self.manifest.name

    def staged_changes(self, stage: Path) -> Path:
        """Where the change list goes in a staged generation."""
        return stage / self.changes.name

    def discard(self, stage: Path) -> None:
        """Remove a staged generation that will not be committed."""
        if stage.name != self.committed():
            shutil.rmtree(stage, ignore_errors=True)

    def commit(self, stage: Path) -> None:
        """Publish a staged generation: one atomic rename of ``current``; then remove the
        generations it replaced."""
        self._adopt_earlier_files()
        for path, target in self._links().items():
            if not os.path.lexists(path):
                _replace_with_link(path, target)
        changes = f"{self.home.name}/current/{self.changes.name}"
        with_changes = self.staged_changes(stage).is_file()
        if with_changes and not os.path.lexists(self.changes):
            _replace_with_link(self.changes, changes)
        _replace_with_link(self.current, stage.name)
        if not with_changes and _is_link_to(self.changes, changes):
            # The list published before belonged to the generation just replaced.
            self.changes.unlink(missing_ok=True)
            _fsync_directory(self.changes.parent)
        for entry in self.home.iterdir():
            if entry.name.startswith("g-") and entry.name != stage.name and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
        logger.debug("committed %s as %s", self.out, stage.name)

    def _adopt_earlier_files(self) -> None:
        """Turn published files that are not this layout's links into a generation of their
        own, without changing what a reader sees at any step."""
        links = self._links()
        foreign = [p for p, t in links.items() if os.path.lexists(p) and not _is_link_to(p, t)]
        if not foreign:
            return
        adopted = self.stage()
        for path in links:
            if path.exists():  # the content a reader sees now, through whichever link
                shutil.copyfile(path, adopted / path.name)
                with open(adopted / path.name, "rb+") as handle:
                    os.fsync(handle.fileno())
        _fsync_directory(adopted)
        _replace_with_link(self.current, adopted.name)
        for path in foreign:
            _replace_with_link(path, links[path])
        logger.info("moved the earlier export %s into %s", self.out, adopted)


def _is_link_to(path: Path, target: str) -> bool:
    try:
        return os.readlink(path) == target
    except OSError:
        return False


def _replace_with_link(path: Path, target: str) -> None:
    """Make ``path`` a symbolic link to ``target`` in one atomic rename."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    os.symlink(target, temporary)
    try:
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
