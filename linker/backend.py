"""The storage seam: where a run's artefacts live.

:class:`RunStore` is the only code that knows the run directory's layout (see
``docs/pipeline.md``). The pipeline hands it DataFrames and asks for DataFrames back, so the
same pipeline logic can later run against another backend (object storage, Spark tables) by
swapping this class.

Layout::

    RUN_DIR/manifest.json            written last: its presence marks a complete run
    RUN_DIR/tables/{accounts,payments,events}.parquet
    RUN_DIR/quarantine/*.csv         rejected input rows (written by validation)
    RUN_DIR/validation.json          rows read/accepted/rejected and the problems found
    RUN_DIR/observations.parquet     the normalised account-identifier observations
    RUN_DIR/identifiers.parquet      per identifier: n_accounts, weight, is_supernode
    RUN_DIR/links.parquet            account-account evidence edges (the graph)
    RUN_DIR/clusters.parquet
    RUN_DIR/scores.parquet
    RUN_DIR/embeddings.parquet       only when the linking step produced embeddings
    RUN_DIR/behaviour.parquet        per-account behaviour features (docs/behaviour.md)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from linker.errors import InputError, LinkerError
from linker.io.atomic import atomic_path, write_text_atomic
from linker.io.validate import ValidationResult, write_validated

__all__ = ["ARTEFACTS", "MANIFEST", "RunStore"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VALIDATION = "validation.json"

ARTEFACTS: dict[str, str] = {
    "accounts": "tables/accounts.parquet",
    "payments": "tables/payments.parquet",
    "events": "tables/events.parquet",
    "observations": "observations.parquet",
    "identifiers": "identifiers.parquet",
    "links": "links.parquet",
    "clusters": "clusters.parquet",
    "scores": "scores.parquet",
    "embeddings": "embeddings.parquet",
    "behaviour": "behaviour.parquet",
}
"""Artefact name -> path relative to the run directory."""


class RunStore:
    """Read and write the artefacts of one run directory.

    Parameters
    ----------
    root : str or Path
        The run directory. It need not exist until something is written.

    Examples
    --------
    >>> import tempfile
    >>> store = RunStore(tempfile.mkdtemp())
    >>> _ = store.write_table("scores", pd.DataFrame({"account_id": ["a"], "score": [0.5]}))
    >>> store.read_table("scores")["score"].tolist()
    [0.5]
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    @classmethod
    def open(cls, root: str | Path) -> RunStore:
        """Open a complete run directory for reading.

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
        if not (store.root / MANIFEST).is_file():
            raise InputError(
                f"{store.root}: not a finished run directory (no {MANIFEST}); "
                "run `linker run DATA_DIR --out FILE --run-dir` again"
            )
        return store

    def path(self, name: str) -> Path:
        """The file of artefact ``name`` (a key of :data:`ARTEFACTS`)."""
        try:
            return self.root / ARTEFACTS[name]
        except KeyError:
            raise LinkerError(f"unknown run artefact {name!r}") from None

    @property
    def quarantine_dir(self) -> Path:
        """Where validation writes rejected rows."""
        return self.root / "quarantine"

    def begin(self) -> None:
        """Prepare the directory for a new run.

        The manifest goes first, so an interrupted run never looks finished; then the known
        artefacts of an earlier run, so none of them is mistaken for this run's. Other files
        in the directory are left alone (it may be a directory the user chose).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MANIFEST).unlink(missing_ok=True)
        (self.root / VALIDATION).unlink(missing_ok=True)
        for relative in ARTEFACTS.values():
            (self.root / relative).unlink(missing_ok=True)
        for stale in self.quarantine_dir.glob("*.csv"):
            stale.unlink()

    def write_validation(self, validation: ValidationResult) -> None:
        """Write the validated tables, the quarantined rows and ``validation.json``."""
        write_validated(validation, self.root)

    def has_table(self, name: str) -> bool:
        """Whether artefact ``name`` was written."""
        return self.path(name).is_file()

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        """Write ``frame`` as artefact ``name`` (Parquet, atomically). Returns the path."""
        target = self.path(name)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        logger.debug("wrote %s (%d rows)", target, len(frame))
        return target

    def read_table(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Read artefact ``name``.

        Raises
        ------
        InputError
            When the run directory lacks that artefact.
        """
        target = self.path(name)
        if not target.is_file():
            raise InputError(f"{target}: missing from the run directory; run `linker run` again")
        return pd.read_parquet(target, columns=columns)

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        """Write ``manifest.json`` (atomically, sorted keys). Returns the path."""
        target = self.root / MANIFEST
        write_text_atomic(target, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return target

    def read_manifest(self) -> dict[str, Any]:
        """Read ``manifest.json``.

        Raises
        ------
        InputError
            When it is missing or not valid JSON.
        """
        target = self.root / MANIFEST
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"{target}: cannot read run manifest ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{target}: run manifest is not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise InputError(f"{target}: run manifest is not a JSON object")
        return data
