"""Ingest stages: validate the input tables, then normalise their identifiers.

``validate`` checks the dataset against the input contract (docs/contract.md) and keeps the
accepted rows as the ``accounts``, ``payments`` and ``events`` artefacts; rejected rows go to
quarantine. ``normalise`` turns every registered identifier kind's source columns into the
``observations`` artefact: the edges of the run's account–identifier graph.

The accepted accounts and payments are saved in a canonical row order (:func:`canonical_rows`:
by the keys of :data:`ROW_KEYS`, then by every other column); the events keep their order, which
nothing computed from them depends on. The same rows in another order give the same
artefacts (the validated events table aside) and the same export.
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

from linker.engine.memory import estimate_run_memory
from linker.engine.stages import RunContext
from linker.io.files import file_sha256
from linker.io.validate import ValidationResult, validate_dataset
from linker.observations import build_observations
from linker.pseudonyms import Pseudonymiser

__all__ = [
    "INPUT_TABLES",
    "ROW_KEYS",
    "accepted_tables",
    "canonical_rows",
    "latest_timestamp",
    "normalise",
    "observations_artefact",
    "validate",
]

logger = logging.getLogger(__name__)

INPUT_TABLES: tuple[str, ...] = ("accounts", "payments", "events")
"""The tables a run links (a labels table is ground truth for ``linker evaluate`` only)."""

ROW_KEYS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id",),
    "payments": ("account_id", "added_at", "payment_fingerprint"),
}
"""The tables saved in canonical row order, and the leading keys of that order (every other
column follows). The events table keeps its input order: sorting it would copy the run's
largest table at its memory peak, and what is computed from it ignores its row order (the
observations aggregate it; :func:`linker.graph.behaviour.event_codes` sorts it by account and
time and codes its values by first appearance in that order)."""


def canonical_rows(frame: pd.DataFrame, keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """The rows of ``frame`` in a canonical order that does not depend on their input order.

    Parameters
    ----------
    frame : pandas.DataFrame
        A validated table.
    keys : tuple of str
        Columns to sort by first (those present); rows equal on all of them are ordered by
        every other column, by name, so the order is total: rows that compare equal are
        identical.

    Returns
    -------
    pandas.DataFrame
        The same rows and columns, sorted ascending (strings by code point, missing values
        last), with a fresh ``RangeIndex``; ``frame`` itself (index reset) when already in
        that order.

    Notes
    -----
    O(n log n) for n rows, on integer ranks of the key columns (strings are ranked through
    their distinct values); no sort at all when the rows already come in key order, as
    ``linker synth``'s do. Only the rows that tie on every key (usually few) are sorted by
    the other columns.

    Examples
    --------
    >>> f = pd.DataFrame({"account_id": ["b", "a", "a"], "ts": [1, 2, 1]})
    >>> canonical_rows(f, ("account_id", "ts")).values.tolist()
    [['a', 1], ['a', 2], ['b', 1]]
    >>> canonical_rows(pd.DataFrame({"k": [1, 1], "x": ["b", "a"]}), ("k",))["x"].tolist()
    ['a', 'b']
    """
    n = len(frame)
    if n < 2 or not len(frame.columns):
        return frame.reset_index(drop=True)
    leading = [k for k in keys if k in frame.columns]
    rest = sorted(str(c) for c in frame.columns if c not in leading)
    ranks = [_ranks(frame[k]) for k in leading]
    order = np.arange(n, dtype=np.int64)
    if ranks and not _non_decreasing(ranks):
        order = np.lexsort(tuple(reversed(ranks)))
        ranks = [r[order] for r in ranks]
    tied = np.zeros(n, dtype=bool)
    if ranks:
        same = np.ones(n - 1, dtype=bool)
        for r in ranks:
            same &= r[1:] == r[:-1]
    else:
        same = np.ones(n - 1, dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    if tied.any() and rest:
        # Tie groups are runs of the sorted rows: order each run by the other columns.
        at = np.flatnonzero(tied)
        run = np.cumsum(np.r_[True, ~same])[at]
        sub = pa.Table.from_pandas(frame.iloc[order[at]][rest], preserve_index=False)
        sub = sub.append_column("__run__", pa.array(run))
        within = np.asarray(
            pc.sort_indices(
                sub, sort_keys=[("__run__", "ascending"), *((c, "ascending") for c in rest)]
            ).to_numpy(),
            dtype=np.int64,
        )
        order[at] = order[at][within]
    if bool((order == np.arange(n)).all()):
        return frame.reset_index(drop=True)
    return frame.take(order).reset_index(drop=True)


def _ranks(column: pd.Series) -> np.ndarray:
    """Int64 ranks of a column's values in ascending order (strings by code point), missing
    values last; equal values get equal ranks."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        stamps = pd.to_datetime(column)
        naive = stamps.dt.tz_localize(None) if isinstance(dtype, pd.DatetimeTZDtype) else stamps
        ticks = np.asarray(naive.to_numpy()).view(np.int64).copy()  # the column's own unit
        ticks[np.asarray(stamps.isna().to_numpy(), dtype=bool)] = np.iinfo(np.int64).max
        return ticks
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        array = pa.array(column.astype("string[pyarrow]").array)
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        encoded = pc.dictionary_encode(array)
        by_value = np.asarray(pc.sort_indices(encoded.dictionary).to_numpy(), dtype=np.int64)
        rank = np.empty(len(by_value) + 1, dtype=np.int64)
        rank[by_value] = np.arange(len(by_value))
        rank[-1] = len(by_value)  # missing values last
        codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False))
        return rank[codes.astype(np.int64)]
    codes, uniques = pd.factorize(column, sort=True, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    codes[codes < 0] = len(uniques)
    return codes


def _non_decreasing(ranks: list[np.ndarray]) -> bool:
    """Whether rows are already in lexicographic order of the rank arrays."""
    undecided = np.ones(len(ranks[0]) - 1, dtype=bool)
    for r in ranks:
        if (undecided & (r[1:] < r[:-1])).any():
            return False
        undecided &= r[1:] == r[:-1]
    return True


def validate(ctx: RunContext) -> Mapping[str, Any]:
    """Validate ``ctx.inputs["data_dir"]``; quarantine rejected rows.

    Returns the accepted input tables and the validation report.
    """
    _check_memory(ctx, Path(ctx.inputs["data_dir"]))
    result = validate_dataset(
        Path(ctx.inputs["data_dir"]), settings=ctx.settings.ingest, observations=False
    )
    tables, report = accepted_tables(ctx, result)
    as_of = latest_timestamp(tables)
    if as_of is not None:
        ctx.note(as_of=as_of)
    return {**tables, "validation": report}


def _check_memory(ctx: RunContext, data_dir: Path) -> None:
    """Estimate the run's peak memory before reading a row; say so when it is over the
    budget (the run goes on, keeping fewer artefacts in memory)."""
    budget = float(ctx.settings.run.memory_budget_gb)
    if budget <= 0:
        return
    estimate = estimate_run_memory(data_dir)
    ctx.note(memory_estimate_gib=round(estimate.peak_gib, 2), memory_budget_gib=budget)
    if estimate.peak_gib > budget:
        rows = ", ".join(f"{n:,} {name}" for name, n in sorted(estimate.rows.items()))
        logger.warning(
            "%s: this input (%s) needs about %.1f GiB, over the memory budget of %.1f GiB "
            "(run.memory_budget_gb): the run goes on, keeping artefacts on disk between "
            "stages, and may still go over it; raise the budget or split the input",
            data_dir,
            rows,
            estimate.peak_gib,
            budget,
        )


def accepted_tables(
    ctx: RunContext, result: ValidationResult
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The input tables a run links (accounts and payments in canonical row order) and the
    validation report; rejected rows are written to the store's quarantine."""
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
    tables = {
        k: canonical_rows(v, ROW_KEYS[k]) if k in ROW_KEYS else v for k, v in result.tables.items()
    }
    return tables, result.report()


def latest_timestamp(tables: Mapping[str, pd.DataFrame]) -> str | None:
    """The latest time the accepted data speaks of (signups, payments, events), in ISO 8601
    UTC: how recent a run's picture is, so that runs over a growing warehouse can be ordered."""
    when = (("accounts", "created_at"), ("payments", "added_at"), ("events", "ts"))
    latest = [
        tables[table][column].max()
        for table, column in when
        if table in tables and column in tables[table].columns and len(tables[table])
    ]
    found = [t for t in latest if t is not None and not pd.isna(t)]
    if not found:
        return None
    return str(pd.Timestamp(max(found)).tz_convert("UTC").isoformat())


def normalise(ctx: RunContext) -> Mapping[str, Any]:
    """Build the observations table from the accepted tables."""
    tables = {name: ctx.frame(name) for name in INPUT_TABLES if ctx.has(name)}
    return observations_artefact(ctx, build_observations(tables))


def observations_artefact(ctx: RunContext, observations: pd.DataFrame) -> Mapping[str, Any]:
    """The ``normalise`` stage's result from the observations table, on any engine:
    pseudonymised when the run asks for it (``run.pseudonymise``)."""
    ctx.note(observations=len(observations))
    pseudonymiser: Pseudonymiser | None = ctx.inputs.get("pseudonymiser")
    if pseudonymiser is not None:
        # Everything built from the observations holds pseudonyms only (run.pseudonymise).
        observations = pseudonymiser.observations(observations)
        ctx.note(pseudonym_key_id=pseudonymiser.key_id)
    return {"observations": observations}
