"""Benchmark of ``linker score``: loading a run's index, and scoring 1,000 new accounts.

Target (issue 13, item 6): on the 100k-account world, ``linker score`` on 1,000 new accounts
finishes in well under a second after loading. The bench holds ``--batch`` accounts out of
the world (a seeded random sample: their rows leave accounts, payments and events), runs
the full pipeline (:func:`linker.pipeline.run`) on the rest, then, in the same process:

* loads the run's index (:meth:`linker.signup.ScoringIndex.load`);
* validates the held-out accounts' data directory (the contract checks ``linker score``
  runs);
* scores them ``--repeats`` times (:meth:`ScoringIndex.score`; the median is reported);
* scores ``--batch`` of the run's own suspended accounts (themselves left out of their
  ties): the worst case, where every account matches a ring and gets reasons;

and reports each time per 1,000 accounts and its ratio to the full run's wall time, plus
how many held-out ring members and innocents were flagged (from the world's labels).

Usage::

    .venv/bin/python bench/score.py          # /work/perf/w100000, or a new 100k world
    .venv/bin/python bench/score.py --world /path/to/world --batch 1000 --repeats 5

The split world and the run are written under ``--work`` (default bench/out/score/);
results go to bench/results/score-<accounts>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from linker.io.validate import validate_dataset
from linker.pipeline import run
from linker.signup import ScoringIndex
from linker.synth import generate_world

logger = logging.getLogger("bench.score")

ROOT = Path(__file__).resolve().parent
DEFAULT_WORLD = Path("/work/perf/w100000")
TABLES = ("accounts", "payments", "events", "labels")


def split_world(world: Path, keep: Path, new: Path, batch: int, seed: int) -> None:
    """Move ``batch`` random accounts' rows from ``world`` into ``new``; the rest into
    ``keep`` (CSV, every table)."""
    accounts = pv.read_csv(world / "accounts.csv")
    ids = accounts["account_id"].to_numpy(zero_copy_only=False)
    rng = np.random.default_rng(seed)
    held = pa.array(sorted(rng.choice(ids, size=batch, replace=False)))
    keep.mkdir(parents=True, exist_ok=True)
    new.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        source = world / f"{table}.csv"
        if not source.is_file():
            continue
        with open(source, encoding="utf-8", newline="") as handle:
            names = next(csv.reader(handle))
        # Every column as text: the new files hold exactly the world's cells.
        options = pv.ConvertOptions(column_types={name: pa.string() for name in names})
        frame = pv.read_csv(source, convert_options=options)
        mask = pc.is_in(frame["account_id"], value_set=held)
        pv.write_csv(frame.filter(pc.invert(mask)), keep / f"{table}.csv")
        pv.write_csv(frame.filter(mask), new / f"{table}.csv")
        logger.info("split %s", table)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - began


def quality(scores: pd.DataFrame, labels_path: Path) -> dict[str, int]:
    labels = pd.read_csv(labels_path, dtype=str, keep_default_na=False)
    scored = scores.merge(labels[["account_id", "ring_id"]], on="account_id")
    ring = scored["ring_id"] != ""
    flagged = scored["action"] != "none"
    return {
        "ring_members": int(ring.sum()),
        "ring_members_flagged": int((ring & flagged).sum()),
        "innocents": int((~ring).sum()),
        "innocents_flagged": int((~ring & flagged).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=None, help="a synth world directory")
    parser.add_argument("--accounts", type=int, default=100_000, help="world size if generated")
    parser.add_argument("--seed", type=int, default=7, help="world seed if generated")
    parser.add_argument("--batch", type=int, default=1000, help="new accounts per batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "score")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    world = args.world
    if world is None:
        world = DEFAULT_WORLD if DEFAULT_WORLD.is_dir() else args.work / "world"
        if not (world / "accounts.csv").is_file():
            generate_world(args.accounts, args.seed, world)
    keep, new = args.work / "keep", args.work / "new"
    if not (new / "accounts.csv").is_file():
        split_world(world, keep, new, args.batch, seed=1)
    run_dir = args.work / "takedown.run"
    result, run_seconds = timed(run, keep, args.work / "takedown.csv", run_dir=run_dir)

    index, load_seconds = timed(ScoringIndex.load, run_dir)
    validation, validate_seconds = timed(validate_dataset, new, observations=False)
    tables = {k: v for k, v in validation.tables.items() if k != "labels"}
    times = []
    for _ in range(args.repeats):
        scores, seconds = timed(index.score, tables)
        times.append(seconds)
    own = pd.read_parquet(run_dir / "scores.parquet", columns=["account_id", "action"])
    suspended = own[own["action"] == "suspend"]["account_id"].head(args.batch).tolist()
    saved = {
        t: pd.read_parquet(
            run_dir / "tables" / f"{t}.parquet", filters=[("account_id", "in", suspended)]
        )
        for t in ("accounts", "payments", "events")
    }
    worst_times = []
    for _ in range(args.repeats):
        worst, seconds = timed(index.score, saved)
        worst_times.append(seconds)

    per_thousand = 1000.0 / args.batch
    score_median = statistics.median(times) * per_thousand
    worst_median = statistics.median(worst_times) * 1000.0 / max(len(suspended), 1)
    report = {
        "world": str(world),
        "accounts_in_run": int(result.counts["accounts"]),
        "new_accounts": args.batch,
        "flagged_clusters": len(index.cluster_ids),
        "burst_windows_minutes": index.burst_windows(),
        "full_run_seconds": round(run_seconds, 3),
        "load_seconds": round(load_seconds, 3),
        "validate_seconds_per_1000": round(validate_seconds * per_thousand, 4),
        "score_seconds_per_1000_median": round(score_median, 4),
        "score_seconds_runs": [round(t, 4) for t in times],
        "worst_case_accounts": len(suspended),
        "worst_case_seconds_per_1000_median": round(worst_median, 4),
        "ratio_score_to_full_run": round(score_median / run_seconds, 6),
        "ratio_load_validate_score_to_full_run": round(
            (load_seconds + (validate_seconds + statistics.median(times)) * per_thousand)
            / run_seconds,
            4,
        ),
        "actions": scores["action"].value_counts().to_dict(),
        "quality": quality(scores, new / "labels.csv") if (new / "labels.csv").is_file() else None,
        "worst_case_actions": worst["action"].value_counts().to_dict(),
    }
    out = ROOT / "results" / f"score-{report['accounts_in_run'] + args.batch}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    logger.info("%s", json.dumps(report, indent=2, default=str))
    logger.info("wrote %s", out)


if __name__ == "__main__":
    main()
