"""``linker update``: a new run from a previous one and the rows that arrived since.

:func:`update` runs :data:`linker.stages.UPDATE_STAGES` into a new run directory and
publishes its takedown list as :func:`linker.pipeline.run` does; docs/incremental.md says
what is recomputed, what is carried over and how far the result can differ from a full run
on all the data (with the measured agreement).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from linker.changes import RunState, publish_changes
from linker.engine import RunContext, RunDirectory, run_stages
from linker.errors import InputError, OutputError
from linker.export import ExportResult, Publication, export_format
from linker.pipeline import (
    RunResult,
    _check_outputs,
    _commit,
    _manifest,
    default_run_dir,
    run_lists,
)
from linker.pseudonyms import Pseudonymiser, recorded_key_id
from linker.settings import Settings, load_settings
from linker.stages import UPDATE_STAGES, UPDATE_VIEWS

__all__ = ["previous_settings", "update"]

logger = logging.getLogger(__name__)


def _dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def previous_settings(
    manifest: dict[str, Any],
    allowlist: str | Path | None = None,
    decisions: str | Path | None = None,
) -> Settings:
    """The settings a previous run recorded in its manifest (an update continues them),
    with another allow-list or decisions file when given."""
    overrides = _dotted(manifest.get("settings", {}))
    if allowlist is not None:
        overrides["run.allowlist"] = str(allowlist)
    if decisions is not None:
        overrides["run.decisions"] = str(decisions)
    return load_settings(overrides=overrides)


def update(
    new_data: str | Path,
    previous: str | Path,
    out: str | Path,
    *,
    run_dir: str | Path | None = None,
    fmt: str | None = None,
    allowlist: str | Path | None = None,
    decisions: str | Path | None = None,
    allow_shrink: bool = False,
) -> RunResult:
    """Add the rows that arrived since a previous run and publish the new takedown list.

    Parameters
    ----------
    new_data : str or Path
        A directory of new rows in the input contract (docs/contract.md): an ``accounts``
        table of accounts opened since the previous run, and the ``payments`` and
        ``events`` rows that arrived since (of old or new accounts).
    previous : str or Path
        The previous run directory (of ``linker run`` or ``linker update``); left unchanged.
    out : str or Path
        The takedown list to write (format from the suffix unless ``fmt`` is given).
    run_dir : str or Path, optional
        The new run directory; default :func:`~linker.pipeline.default_run_dir` of ``out``.
        It must not be ``previous``.
    fmt : str, optional
        ``csv``, ``jsonl`` or ``parquet``.
    allowlist : str or Path, optional
        An allow-list instead of the previous run's.
    decisions : str or Path, optional
        An analysts' decisions file (docs/decisions.md) instead of the previous run's. The
        previous run's file, when it had one, is read again otherwise: an update never
        drops the decisions a run applied, so a cleared account stays cleared.
    allow_shrink : bool, default False
        As in :func:`linker.pipeline.run`.

    Returns
    -------
    RunResult
        Its manifest has an ``update`` record: the previous run's directory and id, and the
        new rows per table.

    Raises
    ------
    InputError
        When the previous run directory is missing or unfinished, a new account repeats an
        account of the previous run, or the new rows are rejected (exit 2).
    OutputError
        When the new run directory is the previous one, or lies inside ``new_data``.

    Notes
    -----
    The settings (seed included) are the previous run's, so that what is carried over and
    what is recomputed agree. The same previous run and new rows give a byte-identical
    export.
    """
    before = RunDirectory.open(previous)
    before_manifest = before.read_json("manifest")
    settings = previous_settings(before_manifest, allowlist, decisions)
    out = Path(out)
    fmt = export_format(out, fmt)
    store = RunDirectory(run_dir if run_dir is not None else default_run_dir(out))
    if os.path.realpath(store.root) == os.path.realpath(before.root):
        raise OutputError(
            f"{store.root}: the new run directory is the previous one; give --run-dir "
            "another directory (the previous run stays as it is)"
        )
    pseudonymiser = Pseudonymiser.from_environment() if settings.run.pseudonymise else None
    _check_pseudonyms(before_manifest, pseudonymiser, before.root)
    data_dir = Path(new_data)
    _check_outputs(out, store, data_dir)
    allow, decided = run_lists(settings)
    publication = Publication(
        out, shrink_floor=settings.run.shrink_floor, allow_shrink=allow_shrink, changes=True
    )
    with publication, store.lock():
        store.clean_stale()
        store.begin()
        ctx = RunContext(
            settings,
            store,
            UPDATE_VIEWS,
            inputs={
                "data_dir": data_dir,
                "previous_run_dir": before,
                # Cluster ids carry over from the previous run and the change list is
                # against it, as with `linker run --previous`.
                "previous": RunState.open(before.root),
                "out": out,
                "fmt": fmt,
                "allowlist": allow,
                "decisions": decided,
                "pseudonymiser": pseudonymiser,
                "publication": publication,
            },
        )
        began = time.perf_counter()
        reports = run_stages(UPDATE_STAGES, ctx, desc="linker update")
        export: ExportResult = ctx.inputs["export"]
        manifest = _manifest(ctx, reports, None, time.perf_counter() - began)
        _record_update(manifest, before_manifest, before.root)
        manifest.update(publish_changes(ctx, manifest["run_id"]))
        _commit(publication, store, export, manifest)
    logger.info("update finished in %.1fs", manifest["timings_seconds"]["total"])
    return RunResult(store.root, export, manifest)


def _check_pseudonyms(
    manifest: dict[str, Any], pseudonymiser: Pseudonymiser | None, root: Path
) -> None:
    before = recorded_key_id(manifest)
    now = pseudonymiser.key_id if pseudonymiser is not None else None
    if before != now:
        raise InputError(
            f"{root}: the previous run's observations were made with another pseudonym key "
            "(LINKER_PSEUDONYM_KEY); an update must use the same one"
        )


def _record_update(manifest: dict[str, Any], before: dict[str, Any], root: Path) -> None:
    """The manifest's ``update`` record; the run id covers the previous run's id too."""
    facts = manifest["stages"].get("validate", {}).get("facts", {})
    manifest["update"] = {
        "previous_run_dir": str(Path(os.path.realpath(root))),
        "previous_run_id": before.get("run_id"),
        "new_rows": facts.get("new_rows", {}),
    }
    content = {"previous": before.get("run_id"), "update": manifest["run_id"]}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8"))
    manifest["run_id"] = digest.hexdigest()[:16]
