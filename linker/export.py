"""The takedown list: which rows, in which order, in which format, written atomically.

The billing system ingests this file; docs/pipeline.md specifies its columns, order and
formats. :func:`takedown_frame` selects and orders the rows; a :class:`Publication` locks the
output, :func:`write_export_file` and :func:`write_export_manifest` write the export and its
manifest into it, and :meth:`Publication.commit` publishes the pair in one atomic step
(:func:`write_export` does all of it).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from linker.cells import neutralise_columns
from linker.engine.store import ExportLocation
from linker.errors import InputError, LinkerError, ShrinkRefused
from linker.io.atomic import atomic_path, write_text_atomic
from linker.io.files import file_sha256
from linker.io.locking import OutputLock

__all__ = [
    "ACTIONS",
    "EXPORT_COLUMNS",
    "EXPORT_SCHEMA",
    "FORMATS",
    "SCHEMA_VERSION",
    "SCORE_DECIMALS",
    "TEXT_COLUMNS",
    "ExportResult",
    "Publication",
    "export_format",
    "manifest_path",
    "takedown_frame",
    "write_export",
    "write_export_file",
    "write_export_manifest",
]

logger = logging.getLogger(__name__)

EXPORT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "billing_customer_id",
    "cluster_id",
    "cluster_size",
    "score",
    "action",
    "reason_codes",
)
"""The takedown list's columns, in file order. ``reason_codes`` holds codes with counts
(``shared_payment:3;signup_burst:45``, :mod:`linker.reasons`), never the evidence's values:
those stay in the run directory for analysts."""

TEXT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "billing_customer_id",
    "cluster_id",
    "action",
    "reason_codes",
)
"""The export's text columns: in CSV, :func:`linker.cells.neutralise_cell` applies to them
(and never to the numeric ``cluster_size`` and ``score``)."""

ACTIONS: tuple[str, ...] = ("suspend", "review", "none")
"""The actions, in export order."""

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")

SCHEMA_VERSION = "1.1"
"""The version of the export's format (the takedown list's rows and the change list's),
recorded in every export manifest; the JSON Schemas in ``linker/schemas/`` describe the rows.
The minor part grows with additions a reader may ignore, the major part with any change that
breaks a reader (docs/pipeline.md)."""

SCORE_DECIMALS = 4
"""Scores are rounded to this many decimals in every export (and before sorting)."""

_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


@dataclass(frozen=True)
class ExportResult:
    """An export that was written.

    Attributes
    ----------
    path : Path
        The export file.
    format : str
        ``csv``, ``jsonl`` or ``parquet``.
    rows : int
        Data rows written.
    by_action : dict
        Rows per action.
    sha256 : str
        Hash of the file's bytes.
    manifest_path : Path
        The manifest written beside the export.
    """

    path: Path
    format: str
    rows: int
    by_action: dict[str, int]
    sha256: str
    manifest_path: Path


def export_format(out: str | Path, fmt: str | None) -> str:
    """``fmt`` if given, else the format named by the file suffix.

    Raises
    ------
    InputError
        When ``fmt`` is unknown, or is ``None`` and the suffix names no format.
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise InputError(
            f"{out}: cannot tell the export format from the suffix {suffix!r}; "
            "use .csv, .jsonl or .parquet, or pass a format"
        )
    return _SUFFIX_FORMATS[suffix]


def takedown_frame(
    scores: pd.DataFrame,
    *,
    actions: Iterable[str] = ("suspend", "review"),
    min_score: float = 0.0,
) -> pd.DataFrame:
    """Select, round and order the rows of a takedown list.

    Parameters
    ----------
    scores : pandas.DataFrame
        Per-account scores with the :data:`EXPORT_COLUMNS`.
    actions : iterable of str
        Actions to keep.
    min_score : float
        Keep rows whose rounded score is at least this.

    Returns
    -------
    pandas.DataFrame
        The :data:`EXPORT_COLUMNS`, score rounded to :data:`SCORE_DECIMALS`, sorted by action
        (suspend, review, none), score descending, cluster_id (rows without one last), then
        account_id; strings compare by code point. The index is 0..n-1.

    Examples
    --------
    >>> scores = pd.DataFrame({"account_id": ["b", "a", "c"], "billing_customer_id": ["x"] * 3,
    ...     "cluster_id": ["C-1", "C-1", None], "cluster_size": [2, 2, 1],
    ...     "score": [0.91234, 0.91236, 0.6], "action": ["suspend", "suspend", "review"],
    ...     "reason_codes": ["shared_payment:1"] * 3})
    >>> takedown_frame(scores)["account_id"].tolist()
    ['a', 'b', 'c']
    """
    actions = list(actions)
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise InputError(f"unknown action(s) {', '.join(unknown)} (one of {', '.join(ACTIONS)})")
    missing = [c for c in EXPORT_COLUMNS if c not in scores.columns]
    if missing:
        raise InputError(f"scores lack the export column(s) {', '.join(missing)}")
    frame = pd.DataFrame(
        {
            "account_id": scores["account_id"].astype("string"),
            "billing_customer_id": scores["billing_customer_id"].astype("string"),
            "cluster_id": scores["cluster_id"].astype("string"),
            "cluster_size": scores["cluster_size"].fillna(0).astype(np.int64),
            "score": scores["score"].astype(np.float64).round(SCORE_DECIMALS),
            "action": scores["action"].astype("string"),
            "reason_codes": scores["reason_codes"].astype("string").fillna(""),
        }
    )
    frame = frame[frame["action"].isin(actions) & (frame["score"] >= min_score)]
    rank = frame["action"].map({a: i for i, a in enumerate(ACTIONS)}).astype(np.int64)
    # Ordinal comparison of the ids: independent of locale and of the pandas string backend.
    order = np.lexsort(
        (
            _ordinal_keys(frame["account_id"]),
            _ordinal_keys(frame["cluster_id"]),
            frame["cluster_id"].isna().to_numpy(),
            -frame["score"].to_numpy(),
            rank.to_numpy(),
        )
    )
    return frame.iloc[order].reset_index(drop=True)


def _ordinal_keys(values: pd.Series) -> np.ndarray:
    """Integer ranks of strings in code-point order (missing values rank first)."""
    filled = values.fillna("").to_numpy(dtype=object).astype(str)
    return np.unique(filled, return_inverse=True)[1]


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    text = neutralise_columns(frame, TEXT_COLUMNS)
    text["score"] = frame["score"].map(lambda x: f"{x:.{SCORE_DECIMALS}f}")
    text.to_csv(
        path,
        index=False,
        lineterminator="\n",
        na_rep="",
        encoding="utf-8",
        quoting=csv.QUOTE_MINIMAL,
    )


def _write_jsonl(frame: pd.DataFrame, path: Path) -> None:
    columns = [
        frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in EXPORT_COLUMNS
    ]
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for row in zip(*columns, strict=True):
            record = dict(zip(EXPORT_COLUMNS, row, strict=True))
            record["cluster_size"] = int(record["cluster_size"])
            record["score"] = round(float(record["score"]), SCORE_DECIMALS)
            handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


EXPORT_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("billing_customer_id", pa.string()),
        ("cluster_id", pa.string()),
        ("cluster_size", pa.int64()),
        ("score", pa.float64()),
        ("action", pa.string()),
        ("reason_codes", pa.string()),
    ]
)
"""The Parquet export's schema (no pandas metadata is stored)."""


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    arrays = [
        pa.array(
            frame[f.name].to_numpy(dtype=object if f.type == pa.string() else None),
            type=f.type,
            from_pandas=True,
        )
        for f in EXPORT_SCHEMA
    ]
    table = pa.Table.from_arrays(arrays, schema=EXPORT_SCHEMA)
    pq.write_table(table, path, compression="zstd")


_WRITERS: dict[str, Callable[[pd.DataFrame, Path], None]] = {
    "csv": _write_csv,
    "jsonl": _write_jsonl,
    "parquet": _write_parquet,
}


def write_export_file(
    frame: pd.DataFrame, publication: Publication, *, fmt: str | None = None
) -> ExportResult:
    """Write a takedown frame (from :func:`takedown_frame`) into an open publication.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows in export order.
    publication : Publication
        The export being published; the file becomes visible at ``publication.out`` only
        when the publication commits, together with its manifest.
    fmt : str, optional
        ``csv``, ``jsonl`` or ``parquet``; by default taken from the suffix of the output.

    Returns
    -------
    ExportResult
        Without a manifest yet (:func:`write_export_manifest` writes it).
    """
    out = publication.out
    fmt = export_format(out, fmt)
    with publication.writing("the export"), atomic_path(publication.export_file) as tmp:
        _WRITERS[fmt](frame, tmp)
        sha256 = file_sha256(tmp)
    by_action = {a: int((frame["action"] == a).sum()) for a in ACTIONS}
    logger.info("wrote %s (%d rows, %s; not yet published)", out, len(frame), fmt)
    return ExportResult(out, fmt, len(frame), by_action, sha256, manifest_path(out))


def manifest_path(out: str | Path) -> Path:
    """The manifest written beside an export: ``<out name>.manifest.json``."""
    out = Path(out)
    return out.with_name(out.name + ".manifest.json")


def write_export_manifest(
    export: ExportResult, publication: Publication, extra: dict[str, Any] | None = None
) -> Path:
    """Write the manifest of an export into its publication: the export's file, format,
    rows, hash, columns and order, plus ``extra`` (the run manifest, the filters used).
    Returns the path it is published at."""
    content = {
        "schema_version": SCHEMA_VERSION,
        "export": {
            "file": export.path.name,
            "format": export.format,
            "rows": export.rows,
            "by_action": export.by_action,
            "sha256": export.sha256,
            "columns": list(EXPORT_COLUMNS),
            "score_decimals": SCORE_DECIMALS,
            "order": ["action (suspend, review, none)", "score desc", "cluster_id", "account_id"],
        },
        **(extra or {}),
    }
    with publication.writing("the manifest"):
        write_text_atomic(
            publication.manifest_file, json.dumps(content, indent=2, sort_keys=True) + "\n"
        )
    return export.manifest_path


def write_export(
    frame: pd.DataFrame,
    out: str | Path,
    *,
    fmt: str | None = None,
    manifest: dict[str, Any] | None = None,
    shrink_floor: float = 0.0,
    allow_shrink: bool = False,
) -> ExportResult:
    """Write a takedown frame and its manifest, and publish both in one atomic step.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows in export order (:func:`takedown_frame`).
    out : str or Path
        The export file.
    fmt : str, optional
        ``csv``, ``jsonl`` or ``parquet``; by default taken from the suffix of ``out``.
    manifest : dict, optional
        More manifest content (the run manifest, the filters used).
    shrink_floor : float, default 0.0
        Refuse to replace a list by one with fewer rows, or fewer suspend rows, than this
        share of the previous list's (``run.shrink_floor``; 0 never refuses).
    allow_shrink : bool, default False
        Replace the previous list however much smaller the new one is.

    Returns
    -------
    ExportResult

    Raises
    ------
    OutputError
        When ``out`` cannot be written; :class:`~linker.errors.ShrinkRefused` when the list
        would shrink past ``shrink_floor`` (the previous list is kept).
    OutputBusy
        When another process is writing ``out``.
    """
    with Publication(out, shrink_floor=shrink_floor, allow_shrink=allow_shrink) as publication:
        export = write_export_file(frame, publication, fmt=fmt)
        publication.check_shrink(export)
        write_export_manifest(export, publication, {**(manifest or {}), **publication.record()})
        publication.commit()
    return export


class Publication:
    """An export being published: its checks, its lock, a staged generation, the shrink
    guard and the commit (the layout is :class:`~linker.engine.store.ExportLocation`'s).

    Use it as a context manager: entering checks that ``out`` can be written, takes the
    output's lock (or raises :class:`~linker.errors.OutputBusy` naming the holder), removes
    what an interrupted writer left and stages a new generation; :meth:`commit` publishes the
    export and its manifest in one atomic rename; leaving without a commit discards the staged
    files and keeps the previous pair.

    Parameters
    ----------
    out : str or Path
        The export file (``--out``).
    shrink_floor : float, default 0.0
        See :meth:`check_shrink`.
    allow_shrink : bool, default False
        Do not refuse a shrinking list.
    changes : bool, default False
        A change list is published with the export (:attr:`changes_file`); refuse a file at
        its name that linker did not publish.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        shrink_floor: float = 0.0,
        allow_shrink: bool = False,
        changes: bool = False,
    ) -> None:
        self.out = Path(out)
        self.location = ExportLocation(self.out)
        self.changes = changes
        """Whether a change list is published with the export (``linker run``)."""
        self.shrink_floor = shrink_floor
        self.allow_shrink = allow_shrink
        self.previous: dict[str, Any] | None = None
        """The ``export`` section of the manifest this publication replaces, if any."""
        self._lock: OutputLock | None = None
        self._stage: Path | None = None
        self._committed = False

    def __enter__(self) -> Publication:
        self.location.check_writable()
        if self.changes:
            self.location.check_changes_free()
        self._lock = self.location.lock().acquire()
        try:
            with self.writing("a new version"):
                self.location.clean_stale()
                previous = self.location.committed_manifest()
                section = previous.get("export") if previous else None
                self.previous = section if isinstance(section, dict) else None
                self._stage = self.location.stage()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._stage is not None and not self._committed:
                self.location.discard(self._stage)
        finally:
            if self._lock is not None:
                self._lock.release()

    @property
    def export_file(self) -> Path:
        """Where the export is written before the commit."""
        return self.location.staged(self._staged())[0]

    @property
    def manifest_file(self) -> Path:
        """Where the manifest is written before the commit."""
        return self.location.staged(self._staged())[1]

    @property
    def changes_file(self) -> Path:
        """Where the change list is written before the commit."""
        return self.location.staged_changes(self._staged())

    def _staged(self) -> Path:
        if self._stage is None:
            raise LinkerError(f"{self.out}: the publication is not open")
        return self._stage

    @contextlib.contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Turn an I/O failure while writing ``what`` into a one-line error naming ``out``."""
        try:
            yield
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise LinkerError(
                f"{self.out}: cannot write {what} ({reason}); the previous list is kept"
            ) from None

    def refusal(self, export: ExportResult) -> str | None:
        """Why ``export`` may not replace the previous list, or ``None``.

        It may not when it has fewer rows, or fewer ``suspend`` rows, than ``shrink_floor``
        times the previous list's (each compared only when the previous list had some), unless
        ``allow_shrink``.
        """
        if self.allow_shrink or self.previous is None or self.shrink_floor <= 0:
            return None
        before_rows = _count(self.previous.get("rows"))
        before_suspend = _count((self.previous.get("by_action") or {}).get("suspend"))
        suspend = export.by_action.get("suspend", 0)
        shrunk = [
            f"{label} {now:,} < {self.shrink_floor:.0%} of {before:,}"
            for label, now, before in (
                ("rows", export.rows, before_rows),
                ("suspend rows", suspend, before_suspend),
            )
            if before > 0 and now < self.shrink_floor * before
        ]
        if not shrunk:
            return None
        return (
            f"{self.out}: refused to replace the takedown list with a much smaller one "
            f"({', '.join(shrunk)}; run.shrink_floor {self.shrink_floor:g}); the previous "
            "list is kept; check the run, then pass --allow-shrink to replace it"
        )

    def check_shrink(self, export: ExportResult) -> None:
        """Raise :class:`~linker.errors.ShrinkRefused` when :meth:`refusal` gives a reason."""
        reason = self.refusal(export)
        if reason is not None:
            raise ShrinkRefused(reason)

    def record(self) -> dict[str, Any]:
        """What the manifest records about the list replaced: its rows, actions and hash,
        and whether a shrink was allowed."""
        if self.previous is None:
            return {"replaced": None}
        kept = ("rows", "by_action", "sha256")
        return {
            "replaced": {k: self.previous.get(k) for k in kept},
            "allow_shrink": self.allow_shrink,
        }

    def commit(self) -> None:
        """Publish the staged export and manifest together (one atomic rename)."""
        with self.writing("the new version"):
            self.location.commit(self._staged())
        self._committed = True
        logger.info("published %s", self.out)


def _count(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0
