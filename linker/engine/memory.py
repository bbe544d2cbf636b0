"""How much memory a run will need, estimated from its input before any work.

``linker run`` compares the estimate with ``run.memory_budget_gb`` and says up front when the
input is larger than the budget allows, with the number it would need; while it runs, the
stage engine keeps fewer artefacts in memory when the process nears the budget
(:func:`linker.engine.stages.run_stages`).

The estimate is linear in the rows of each table. Its coefficients are the peak resident
memory per row measured by ``bench/scale.py`` on worlds of 100k to 1M accounts (see
docs/performance.md, "Memory"), rounded up; the sharing structure of the data moves the real
peak around them, which is why the estimate warns and never refuses a run.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from linker.io.readers import find_table_files

__all__ = ["MemoryEstimate", "estimate_run_memory", "table_rows"]

logger = logging.getLogger(__name__)

BASE_BYTES = 2**30
"""The interpreter, its libraries and the run's fixed structures (the 100k synth world, 2.1M
events, peaks at 1.18 GiB)."""

BYTES_PER_ROW: dict[str, int] = {"accounts": 3_200, "payments": 600, "events": 120}
"""Peak resident bytes per input row, by table, refitted to the whole-run peaks of three
1M-account worlds measured after the events' text became dictionary columns and the stages'
duplicate copies went (docs/performance.md, "Memory budget"): synth (20.8M events, peak
6.25 GiB, in the identifiers stage; estimate 6.77), dense innocent sharing (31.2M events, 6.65
GiB; estimate 7.84) and random (52.0M events, 9.09 GiB; estimate 10.08). With fewer events the
peak moves from the stages that hold the events to the graph stages, which grow with the
accounts and with how much they share: hence the larger per-account share. The estimate is
not exact: the 200k random world (11.4M events, dense sharing) peaks at 3.24 GiB in its
identifiers stage against an estimate of 2.94."""

_HEAD_BYTES = 1 << 20


@dataclass(frozen=True)
class MemoryEstimate:
    """A run's estimated peak memory.

    Attributes
    ----------
    rows : dict of str to int
        Rows per table (exact for Parquet, estimated from the file size for CSV).
    peak_bytes : int
        The estimated peak resident memory.
    """

    rows: dict[str, int]
    peak_bytes: int

    @property
    def peak_gib(self) -> float:
        """:attr:`peak_bytes` in GiB."""
        return self.peak_bytes / 2**30


def table_rows(path: Path) -> int:
    """Data rows of a table file: exact for Parquet (its metadata) and for a CSV file of up
    to a MiB, otherwise estimated from the mean line length of the first MiB and the file's
    size (for CSV.gz, scaled by how much of the compressed file that MiB took)."""
    if path.suffix == ".parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    size = path.stat().st_size
    if path.suffix == ".gz":
        with path.open("rb") as raw, gzip.GzipFile(fileobj=raw) as handle:
            head = handle.read(_HEAD_BYTES)
            consumed = raw.tell()
    else:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
        consumed = len(head)
    if len(head) < _HEAD_BYTES:
        return max(sum(1 for line in head.splitlines() if line.strip()) - 1, 0)
    uncompressed = size * len(head) / max(consumed, 1)
    return max(int(uncompressed * head.count(b"\n") / len(head)) - 1, 0)


def estimate_run_memory(data_dir: str | Path) -> MemoryEstimate:
    """The peak memory ``linker run`` will need for the dataset in ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        The dataset directory.

    Returns
    -------
    MemoryEstimate

    Raises
    ------
    InputError
        When the directory holds no table files (as :func:`linker.io.readers.find_table_files`).

    Notes
    -----
    O(tables): Parquet footers and the first MiB of each CSV file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "accounts.csv").write_text("account_id,created_at\\na1,2024-01-01\\n")
    >>> estimate_run_memory(d).rows
    {'accounts': 1}
    """
    rows = {
        name: table_rows(path)
        for name, path in find_table_files(data_dir).items()
        if name in BYTES_PER_ROW
    }
    peak = BASE_BYTES + sum(BYTES_PER_ROW[name] * n for name, n in rows.items())
    return MemoryEstimate(rows=rows, peak_bytes=int(peak))
