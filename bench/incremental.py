"""Incremental runs: ``linker update`` against a full run on all data, side by side.

One synthetic world is split into a history and one more day's arrivals
(:func:`split_world`): the newest ``--new-share`` of accounts (by ``created_at``) with every
payment and event of theirs, plus the events and payments of the older accounts from the
time ``T_e`` on, with ``T_e`` chosen so that the arrivals hold ``1 / --days`` of all event
rows. Then, in one process run:

1. ``linker run`` on the history (the previous run);
2. ``linker update`` with the arrivals against it;
3. ``linker run`` on all the data (the full run the update is compared with).

Reported: wall time of the update and of the full run and their ratio, the same in CPU
seconds of this process (``time.process_time``: steadier than wall time on a shared machine),
the wall time of every stage of both runs, and the agreement:
of the accounts flagged (suspend or review) by either, the share that get the same action
in both. Each seed is a new world; the worst seed is the headline.

Usage::

    python bench/incremental.py --accounts 100000 --seeds 7,8
    python bench/incremental.py --world /work/perf/w100000 --seeds 7   # an existing world

Results are printed as Markdown and saved under ``bench/results/`` (``--tag T`` adds ``-T`` to
the file's name, so that runs of two versions side by side keep their own files).
"""

from __future__ import annotations

import argparse
import json
import os
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
        parts["payments"] = (payments["account_id"].isin(new_ids) | (added >= t_e)).to_numpy()
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


def _flagged(path: Path) -> pd.Series:
    frame = pd.read_csv(path, dtype="string", keep_default_na=False)
    return frame.set_index("account_id")["action"]


def agreement(update_list: Path, full_list: Path) -> dict[str, float | int]:
    """Of the accounts flagged (suspend or review) by either list, the share with the same
    action in both (an account absent from a list has action ``none``)."""
    a, b = _flagged(update_list), _flagged(full_list)
    ids = a.index.union(b.index)
    left = a.reindex(ids).fillna("none")
    right = b.reindex(ids).fillna("none")
    same = int((left == right).sum())
    return {
        "flagged_either": len(ids),
        "same_action": same,
        "agreement": same / len(ids) if len(ids) else 1.0,
        "flagged_update": len(a),
        "flagged_full": len(b),
    }


def measure(world: Path, work: Path, *, new_share: float, days: int) -> dict[str, object]:
    """Split ``world``, run history, update and full run in this process; time and compare."""
    if work.exists():
        shutil.rmtree(work)
    counts = split_world(world, work, new_share=new_share, days=days)
    settings = Settings()
    began = time.perf_counter()
    run(work / "history", work / "previous" / "takedown.csv", settings=settings)
    history_seconds = time.perf_counter() - began
    began, began_cpu = time.perf_counter(), time.process_time()
    updated = update(
        work / "day",
        work / "previous" / "takedown.run",
        work / "updated" / "takedown.csv",
        allow_shrink=True,
    )
    update_seconds = time.perf_counter() - began
    update_cpu = time.process_time() - began_cpu
    whole = work / "all"
    for name in ("accounts", "payments", "events"):
        parts = [_read(work / part, name) for part in ("history", "day")]
        suffix = ".parquet" if (world / "accounts.parquet").exists() else ".csv"
        _write(pd.concat([p for p in parts if p is not None]), whole / f"{name}{suffix}")
    began, began_cpu = time.perf_counter(), time.process_time()
    full = run(whole, work / "full" / "takedown.csv", settings=settings)
    full_seconds = time.perf_counter() - began
    full_cpu = time.process_time() - began_cpu
    stages = updated.manifest["stages"]
    return {
        "world": str(world),
        "split": counts,
        "history_seconds": round(history_seconds, 2),
        "update_seconds": round(update_seconds, 2),
        "full_seconds": round(full_seconds, 2),
        "ratio": round(update_seconds / full_seconds, 3),
        "update_cpu_seconds": round(update_cpu, 2),
        "full_cpu_seconds": round(full_cpu, 2),
        "cpu_ratio": round(update_cpu / full_cpu, 3),
        "update_stage_seconds": updated.manifest["timings_seconds"],
        "full_stage_seconds": full.manifest["timings_seconds"],
        "load_average": list(os.getloadavg()),
        "update_facts": {
            name: stages[name]["facts"]
            for name in ("normalise", "behaviour", "identifiers", "communities")
        },
        **agreement(work / "updated" / "takedown.csv", work / "full" / "takedown.csv"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seeds", default="7", help="comma-separated seeds (one world each)")
    parser.add_argument("--world", type=Path, help="an existing world instead of generating")
    parser.add_argument("--format", default="csv", choices=["csv", "parquet"])
    parser.add_argument("--new-share", type=float, default=0.01)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--work", type=Path, default=Path("/tmp/linker-bench-incremental"))
    parser.add_argument("--tag", default="", help="suffix of the result file's name")
    args = parser.parse_args()
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        world = args.world
        if world is None:
            world = args.work / f"world-{args.accounts}-s{seed}"
            if not (world / ".complete").exists():
                generate_world(args.accounts, seed, world, fmt=args.format)
                (world / ".complete").write_text("ok\n")
        result = measure(
            world, args.work / f"split-s{seed}", new_share=args.new_share, days=args.days
        )
        result["seed"] = seed
        results.append(result)
        print(json.dumps(result, indent=1), file=sys.stderr)
    worst = min(results, key=lambda r: float(r["agreement"]))  # type: ignore[arg-type]
    print(
        "| seed | update s | full s | ratio | update CPU s | full CPU s | CPU ratio "
        "| flagged (either) | agreement |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        print(
            f"| {r['seed']} | {r['update_seconds']} | {r['full_seconds']} | {r['ratio']} | "
            f"{r['update_cpu_seconds']} | {r['full_cpu_seconds']} | {r['cpu_ratio']} | "
            f"{r['flagged_either']:,} | {float(r['agreement']):.4f} |"  # type: ignore[arg-type]
        )
    print(f"\nworst agreement: {float(worst['agreement']):.4f} (seed {worst['seed']})")  # type: ignore[arg-type]
    out = (
        ROOT
        / "bench"
        / "results"
        / f"incremental-{args.accounts if args.world is None else args.world.name}"
        f"{'-' + args.tag if args.tag else ''}.json"
    )
    out.write_text(
        json.dumps({"python": platform.python_version(), "results": results}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
