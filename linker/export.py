"""The takedown list: which rows, in which order, in which format, written atomically.

The billing system ingests this file; docs/pipeline.md specifies its columns, order and
formats. :func:`takedown_frame` selects and orders the rows, :func:`write_export_file` writes
them atomically, :func:`write_export_manifest` writes the manifest beside them.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from linker.cells import neutralise_columns
from linker.errors import InputError
from linker.io.atomic import atomic_path, write_text_atomic
from linker.io.files import file_sha256

__all__ = [
    "ACTIONS",
    "EXPORT_COLUMNS",
    "EXPORT_SCHEMA",
    "FORMATS",
    "SCORE_DECIMALS",
    "TEXT_COLUMNS",
    "ExportResult",
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
    frame: pd.DataFrame, out: str | Path, *, fmt: str | None = None
) -> ExportResult:
    """Write a takedown frame (from :func:`takedown_frame`) atomically.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows in export order.
    out : str or Path
        The export file; replaced atomically (a crash leaves the old file or the new one).
    fmt : str, optional
        ``csv``, ``jsonl`` or ``parquet``; by default taken from the suffix of ``out``.

    Returns
    -------
    ExportResult
        Without a manifest yet (:func:`write_export_manifest` writes it).
    """
    out = Path(out)
    fmt = export_format(out, fmt)
    with atomic_path(out) as tmp:
        _WRITERS[fmt](frame, tmp)
        sha256 = file_sha256(tmp)
    by_action = {a: int((frame["action"] == a).sum()) for a in ACTIONS}
    logger.info("wrote %s (%d rows, %s)", out, len(frame), fmt)
    return ExportResult(out, fmt, len(frame), by_action, sha256, manifest_path(out))


def manifest_path(out: str | Path) -> Path:
    """The manifest written beside an export: ``<out name>.manifest.json``."""
    out = Path(out)
    return out.with_name(out.name + ".manifest.json")


def write_export_manifest(export: ExportResult, extra: dict[str, Any] | None = None) -> Path:
    """Write the manifest beside an export: its file, format, rows, hash, columns and order,
    plus ``extra`` (the run manifest, the filters used). Returns its path."""
    content = {
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
    write_text_atomic(export.manifest_path, json.dumps(content, indent=2, sort_keys=True) + "\n")
    return export.manifest_path


def write_export(
    frame: pd.DataFrame,
    out: str | Path,
    *,
    fmt: str | None = None,
    manifest: dict[str, Any] | None = None,
) -> ExportResult:
    """Write a takedown frame atomically, then its manifest (:func:`write_export_file` and
    :func:`write_export_manifest`)."""
    export = write_export_file(frame, out, fmt=fmt)
    write_export_manifest(export, manifest)
    return export
