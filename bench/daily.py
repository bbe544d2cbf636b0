"""What ``--previous`` costs: carrying cluster ids and the change list, beside a full run.

Runs ``linker run`` on a synthetic world twice (day 1 without, day 2 with ``--previous``
day 1; the same data, so every cluster should keep its id), then times, on the saved runs,
the two steps ``--previous`` adds: matching the clusters (``carry_cluster_ids``) and
computing the change list (``change_frame``), each as a share of the day-2 run's wall time
(the peer, measured in the same process).

Usage::

    .venv/bin/python bench/daily.py --accounts 20000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from linker.changes import RunState, change_frame
from linker.graph.continuity import carry_cluster_ids
from linker.pipeline import run
from linker.synth import generate_world


def _best(seconds: list[float]) -> float:
    return min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_world(args.accounts, args.seed, root / "world")
        began = time.perf_counter()
        first = run(root / "world", root / "d1" / "takedown.csv")
        day1 = time.perf_counter() - began
        began = time.perf_counter()
        second = run(root / "world", root / "d2" / "takedown.csv", previous=first.run_dir)
        day2 = time.perf_counter() - began
        before, after = RunState.open(first.run_dir), RunState.open(second.run_dir)
        scores = pd.read_parquet(second.run_dir / "communities.parquet")
        accounts = pd.read_parquet(second.run_dir / "engine_scores.parquet")["account_id"]
        cluster_of = scores["cluster"].to_numpy(np.int64)
        carry, diff = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            carry_cluster_ids(
                accounts.to_numpy(dtype=object),
                cluster_of,
                before.scores["account_id"].to_numpy(dtype=object),
                before.scores["cluster_id"].to_numpy(dtype=object),
                highest=before.highest_cluster_id,
            )
            carry.append(time.perf_counter() - t)
            t = time.perf_counter()
            change_frame(None, after)
            diff.append(time.perf_counter() - t)
        record = second.manifest["cluster_ids"]
        report = {
            "accounts": args.accounts,
            "clusters": second.counts["clusters"],
            "flagged": second.counts["suspend"] + second.counts["review"],
            "run_without_previous_s": round(day1, 2),
            "run_with_previous_s": round(day2, 2),
            "carry_cluster_ids_s": round(_best(carry), 4),
            "change_list_all_new_s": round(_best(diff), 4),
            "carry_share_of_run": round(_best(carry) / day2, 5),
            "change_list_share_of_run": round(_best(diff) / day2, 5),
            "kept": record["kept"],
            "fresh": record["fresh"],
            "change_rows_day2": second.manifest["changes"]["rows"],
            "same_export": first.export.sha256 == second.export.sha256,
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
