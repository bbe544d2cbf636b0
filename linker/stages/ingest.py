"""Ingest stages: validate the input tables, then normalise their identifiers.

``validate`` checks the dataset against the input contract (docs/contract.md) and keeps the
accepted rows as the ``accounts``, ``payments`` and ``events`` artefacts; rejected rows go to
quarantine. ``normalise`` turns every registered identifier kind's source columns into the
``observations`` artefact: the edges of the run's account–identifier graph.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from linker.engine.stages import RunContext
from linker.io.files import file_sha256
from linker.io.validate import validate_dataset
from linker.observations import build_observations
from linker.pseudonyms import Pseudonymiser

__all__ = ["INPUT_TABLES", "normalise", "validate"]

logger = logging.getLogger(__name__)

INPUT_TABLES: tuple[str, ...] = ("accounts", "payments", "events")
"""The tables a run links (a labels table is ground truth for ``linker evaluate`` only)."""


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
    return {**result.tables, "validation": result.report()}


def normalise(ctx: RunContext) -> Mapping[str, Any]:
    """Build the observations table from the accepted tables."""
    tables = {name: ctx.frame(name) for name in INPUT_TABLES if ctx.has(name)}
    observations = build_observations(tables)
    ctx.note(observations=len(observations))
    pseudonymiser: Pseudonymiser | None = ctx.inputs.get("pseudonymiser")
    if pseudonymiser is not None:
        # Everything built from the observations holds pseudonyms only (run.pseudonymise).
        observations = pseudonymiser.observations(observations)
        ctx.note(pseudonym_key_id=pseudonymiser.key_id)
    return {"observations": observations}
