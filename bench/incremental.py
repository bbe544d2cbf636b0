"""Incremental runs: ``linker update`` against a full run on all data, side by side.

One synthetic world is split into a history and one more day's arrivals
(:func:`split_world`): the newest ``--new-share`` of accounts (by ``created_at``) with every
payment and event of theirs, plus the events and payments of the older accounts from the
time ``T_e`` on, with ``T_e`` chosen so that the arrivals hold ``1 / --days`` of all event
rows. Then, in one process run:

1. ``linker run`` on the history (the previous run);
2. ``linker update`` with the arrivals against it;
3. ``linker run`` on all the data (the full run the update is compared with).

Reported: wall time of the update and of the full run and their ratio, and the agreement:
of the accounts flagged (suspend or review) by either, the share that get the same action
in both. Each seed is a new world; the worst seed is the headline.

Usage::

    python bench/incremental.py --accounts 100000 --seeds 7,8
    python bench/incremental.py --world /work/perf/w100000 --seeds 7   # an existing world

Results are printed as Markdown and saved under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from linker.incremental import update
from linker.pipeline import run
from linker.settings import Settings
from linker.synth import generate_world

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("accounts", "payments", "events", "labels")


def _read(world: Path, name: str) -> pd.DataFrame | None:
    for suffix in (".parquet", ".csv"):
        path = world / f"{name}{suffix}"
        if path.exists():
            if suffix == ".parquet":
                return pd.read_parquet(path)
            return pd.read_csv(path, dtype="string", keep_default_na=False)
    return None


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def _stamps(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column.replace("", None), utc=True, format="ISO8601")


def split_world(world: Path, out: Path, *, new_share: float, days: int) -> dict[str, int]:
    """Write ``out/history`` and ``out/day``: the world before and after the split (module
    docstring). Rows keep the world's own format (CSV or Parquet); labels go with both."""
    frames = {name: _read(world, name) for name in TABLES}
    accounts, events = frames["accounts"], frames["events"]
    assert accounts is not None and events is not None
    suffix = ".parquet" if (world / "accounts.parquet").exists() else ".csv"
    created = _stamps(accounts["created_at"])
    t_a = created.quantile(1.0 - new_share)
    new_ids = set(accounts.loc[created >= t_a, "account_id"])
    ts = _stamps(events["ts"])
    of_new = events["account_id"].isin(new_ids).to_numpy()
    budget = len(events) / days - int(of_new.sum())
    old_ts = np.sort(ts[~of_new].to_numpy())
    t_e = old_ts[max(len(old_ts) - max(int(budget), 0), 0)] if budget > 0 else old_ts[-1]
    late = of_new | (ts >= t_e).to_numpy()
    parts = {"events": late}
    payments = frames["payments"]
    if payments is not None:
        added = _stamps(payments["added_at"]).fillna(pd.Timestamp(t_e))
        parts["payments"] = (
            payments["account_id"].isin(new_ids) | (added >= t_e)
        ).to_numpy()
    parts["accounts"] = accounts["account_id"].isin(new_ids).to_numpy()
    counts = {}
    for name, mask in parts.items():
        frame = frames[name]
        assert frame is not None
        _write(frame[~mask], out / "history" / f"{name}{suffix}")
        _write(frame[mask], out / "day" / f"{name}{suffix}")
        counts[f"{name}_history"] = int((~mask).sum())
        counts[f"{name}_day"] = int(mask.sum())
    if frames["labels"] is not None:
        _write(frames["labels"], out / "labels" / f"labels{suffix}")
    return counts
