"""Ingest stages: validate the input tables, then normalise their identifiers.

``validate`` checks the dataset against the input contract (docs/contract.md) and keeps the
accepted rows as the ``accounts``, ``payments`` and ``events`` artefacts; rejected rows go to
quarantine. ``normalise`` turns every registered identifier kind's source columns into the
``observations`` artefact: the edges of the run's account–identifier graph.

The accepted tables are saved in a canonical row order (:func:`canonical_rows`: by the keys of
:data:`ROW_KEYS`, then by every other column), so nothing after ingest sees the order of the
input files' rows: the same rows in another order give the same artefacts and the same export.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linker.engine.stages import RunContext
from linker.io.files import file_sha256
from linker.io.validate import validate_dataset
from linker.observations import build_observations

__all__ = ["INPUT_TABLES", "ROW_KEYS", "canonical_rows", "normalise", "validate"]

logger = logging.getLogger(__name__)

INPUT_TABLES: tuple[str, ...] = ("accounts", "payments", "events")
"""The tables a run links (a labels table is ground truth for ``linker evaluate`` only)."""

ROW_KEYS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id",),
    "payments": ("account_id", "added_at", "payment_fingerprint"),
    "events": ("account_id", "ts"),
}
"""The leading sort keys of each table's canonical row order (every other column follows)."""


def canonical_rows(frame: pd.DataFrame, keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """The rows of ``frame`` in a canonical order that does not depend on their input order.

    Parameters
    ----------
    frame : pandas.DataFrame
        A validated table.
    keys : tuple of str
        Columns to sort by first (those present); every other column follows, by name, so
        the order is total: rows that compare equal are identical.

    Returns
    -------
    pandas.DataFrame
        The same rows and columns, sorted ascending (strings by code point, missing values
        last), with a fresh ``RangeIndex``; ``frame`` itself (index reset) when already in
        that order.

    Notes
    -----
    O(n log n) for n rows: one Arrow multi-key sort, which compares later keys only on ties
    of earlier ones.

    Examples
    --------
    >>> f = pd.DataFrame({"account_id": ["b", "a", "a"], "ts": [1, 2, 1]})
    >>> canonical_rows(f, ("account_id", "ts")).values.tolist()
    [['a', 1], ['a', 2], ['b', 1]]
    """
    if len(frame) < 2 or not len(frame.columns):
        return frame.reset_index(drop=True)
    leading = [k for k in keys if k in frame.columns]
    order_by = leading + sorted(str(c) for c in frame.columns if c not in leading)
    table = pa.Table.from_pandas(frame[order_by], preserve_index=False)
    order = np.asarray(
        pc.sort_indices(table, sort_keys=[(c, "ascending") for c in order_by]).to_numpy(),
        dtype=np.int64,
    )
    if bool((order == np.arange(len(order))).all()):
        return frame.reset_index(drop=True)
    return frame.take(order).reset_index(drop=True)


def validate(ctx: RunContext) -> Mapping[str, Any]:
    """Validate ``ctx.inputs["data_dir"]``; quarantine rejected rows.

    Returns the accepted input tables and the validation report.
    """
    result = validate_dataset(
        Path(ctx.inputs["data_dir"]), settings=ctx.settings.ingest, observations=False
    )
    # Labels are ground truth for `linker evaluate`; the linking never sees them.
    keep = {k: v for k, v in result.files.items() if k in INPUT_TABLES}
    result = dataclasses.replace(
        result,
        tables={k: v for k, v in result.tables.items() if k in INPUT_TABLES},
        summary={k: v for k, v in result.summary.items() if k in INPUT_TABLES},
        problems=[p for p in result.problems if p.table in INPUT_TABLES],
        quarantine={k: v for k, v in result.quarantine.items() if k in INPUT_TABLES},
        files=keep,
        sha256={k: v for k, v in result.sha256.items() if k in INPUT_TABLES},
    )
    for problem in result.problems:
        logger.warning("%s", problem)
    for name, path in result.files.items():
        result.sha256[name] = file_sha256(path)
    result.out_dir = ctx.store.directory
    result.quarantine_paths = {}
    for name in result.summary:
        where = ctx.store.write_quarantine(name, result.quarantine.get(name))
        if where is not None:
            result.quarantine_paths[name] = Path(where)
    tables = {k: canonical_rows(v, ROW_KEYS.get(k, ())) for k, v in result.tables.items()}
    return {**tables, "validation": result.report()}


def normalise(ctx: RunContext) -> Mapping[str, Any]:
    """Build the observations table from the accepted tables."""
    tables = {name: ctx.frame(name) for name in INPUT_TABLES if ctx.has(name)}
    observations = build_observations(tables)
    ctx.note(observations=len(observations))
    return {"observations": observations}
