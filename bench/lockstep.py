"""Cost of behaviour features and lockstep at three world sizes, and their share of `linker run`.

Part 1 (scaling): synthetic worlds of ``--sizes`` accounts (default 25k, 50k, 100k; events
scale with the accounts). For each, the validated events table is loaded once and timed:
``event_codes`` (shared), ``account_behaviour`` and ``lockstep_pairs`` with default settings.
Reported: seconds, seconds per million events, comparisons, and the ratio of time per event
between consecutive sizes (1.0 = linear).

Part 2 (end to end, ``--run``): ``linker run`` on the largest world with and without
behavioural evidence (``--no-behaviour``), each in a fresh child process, alternating
``--repeats`` times; reported: the median wall time (the run's own total) and CPU time (the
child's user + system time) of each, their ratios, the ratio of each alternating pair, the
extra seconds per stage with behaviour, the SHA-256 of every export (the same input and seed
must give the same bytes), and the quality figures of ``linker evaluate`` (suspend precision
and recall, per-ring recall and suspended accounts per benign group in the JSON).

Usage::

    python bench/lockstep.py                              # scaling at 25k/50k/100k
    python bench/lockstep.py --run --repeats 5            # + with/without at 100k
    python bench/lockstep.py --sizes 1000000 --events-per-account 30 --format parquet --run

Results are printed as Markdown and saved under ``bench/results/``. The machine is shared:
the load average is recorded beside the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from linker.evaluate import evaluate
from linker.graph.behaviour import account_behaviour, event_codes
from linker.graph.lockstep import lockstep_pairs
from linker.settings import Settings
from linker.synth import generate_world

ROOT = Path(__file__).resolve().parent.parent


def _world(size: int, args: argparse.Namespace) -> Path:
    out = Path(args.work) / f"world-{size}-s{args.seed}-e{args.events_per_account:g}-{args.format}"
    marker = out / ".complete"
    if not marker.exists():
        generate_world(
            size, args.seed, out, fmt=args.format, events_per_account=args.events_per_account
        )
        marker.write_text("ok\n")
    return out


def _read(world: Path, name: str) -> pd.DataFrame:
    path = next(p for p in world.iterdir() if p.name.startswith(f"{name}."))
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype="string", keep_default_na=False)


def _scaling(size: int, args: argparse.Namespace) -> dict[str, float]:
    world = _world(size, args)
    events = pd.read_parquet(next(world.glob("events.*"))) if args.format == "parquet" else None
    if events is None:
        from linker.io.validate import validate_dataset

        tables = validate_dataset(world, observations=False).tables
        events, accounts = tables["events"], tables["accounts"]
    else:
        accounts = pd.read_parquet(next(world.glob("accounts.*")))
    cfg = Settings().link.behaviour
    start = time.perf_counter()
    codes = event_codes(events, accounts["account_id"])
    t_codes = time.perf_counter() - start
    start = time.perf_counter()
    account_behaviour(events, accounts, codes=codes)
    t_features = time.perf_counter() - start
    start = time.perf_counter()
    result = lockstep_pairs(
        codes,
        accounts["account_id"],
        bucket_minutes=cfg.bucket_minutes,
        min_jaccard=cfg.min_jaccard,
        model_min_jaccard=cfg.model_min_jaccard,
        min_tokens=cfg.min_tokens,
        n_hashes=cfg.n_hashes,
        band_rows=cfg.band_rows,
        max_bucket=cfg.max_bucket,
        seed=args.seed,
    )
    t_lockstep = time.perf_counter() - start
    n_events = len(events)
    return {
        "accounts": size,
        "events": n_events,
        "codes_s": t_codes,
        "features_s": t_features,
        "lockstep_s": t_lockstep,
        "total_s": t_codes + t_features + t_lockstep,
        "s_per_m_events": (t_codes + t_features + t_lockstep) / (n_events / 1e6),
        "lockstep_s_per_m_events": t_lockstep / (n_events / 1e6),
        "comparisons": result.comparisons,
        "pairs": len(result.pairs),
        "load": os.getloadavg()[0],
    }


def _run_once(world: Path, out: Path, behaviour: bool) -> dict[str, Any]:
    """One `linker run` in a fresh child process: wall and CPU seconds, stages, quality."""
    cmd = [str(Path(sys.executable).parent / "linker"), "run", str(world), "-o", str(out)]
    if not behaviour:
        cmd.append("--no-behaviour")
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    manifest = json.loads((out.with_name(out.stem + ".run") / "manifest.json").read_text())
    timings = manifest["timings_seconds"]
    labels = _read(world, "labels")
    ev = evaluate(labels, pd.read_csv(out, dtype="string", keep_default_na=False))
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "link_s": float(timings["link"]),
        "total_s": float(timings["total"]),
        "precision": ev.suspend.precision,
        "recall": ev.suspend.recall,
        "rings_suspend_recall": {r.ring_id: r.recall_suspend for r in ev.rings},
        "groups_suspended": {g.group: g.suspended for g in ev.benign_groups},
        "export_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "load_before": load_before,
        "load": os.getloadavg()[0],
        **{f"stage_{k}": float(v) for k, v in timings.items() if isinstance(v, int | float)},
        **{f"engine_{k}": float(v) for k, v in timings["engine"].items()},
    }


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r.get(key, 0.0)) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events-per-account", type=float, default=20.0)
    parser.add_argument("--format", choices=["csv", "parquet"], default="parquet")
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "lockstep"))
    parser.add_argument("--run", action="store_true", help="Also time `linker run` with/without.")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)

    report: dict[str, object] = {"machine": {"cpus": os.cpu_count()}, "args": vars(args)}
    lines = []
    if not args.skip_scaling:
        rows = [_scaling(size, args) for size in args.sizes]
        report["scaling"] = rows
        lines += [
            "| accounts | events | codes s | features s | lockstep s | s / M events | "
            "lockstep s / M events | comparisons | ratio vs previous | load |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        previous = None
        for row in rows:
            ratio = "" if previous is None else f"{row['s_per_m_events'] / previous:.2f}"
            lines.append(
                f"| {row['accounts']:,} | {row['events']:,} | {row['codes_s']:.2f} | "
                f"{row['features_s']:.2f} | {row['lockstep_s']:.2f} | "
                f"{row['s_per_m_events']:.2f} | {row['lockstep_s_per_m_events']:.2f} | "
                f"{row['comparisons']:,} | {ratio} | {row['load']:.1f} |"
            )
            previous = row["s_per_m_events"]
    if args.run:
        world = _world(args.sizes[-1], args)
        runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
        for _ in range(args.repeats):
            for name in ("without", "with"):
                out = Path(args.work) / f"takedown-{name}.csv"
                runs[name].append(_run_once(world, out, name == "with"))
        report["runs"] = runs
        lines += [
            "",
            "| `linker run` | wall s (median) | CPU s (median) | link stage s | "
            "suspend precision | recall | export sha256 (all repeats) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in ("without", "with"):
            r = runs[name][-1]
            digests = sorted({x["export_sha256"][:12] for x in runs[name]})
            lines.append(
                f"| {name} behaviour | {_median(runs[name], 'total_s'):.1f} | "
                f"{_median(runs[name], 'cpu_s'):.1f} | {_median(runs[name], 'link_s'):.1f} | "
                f"{r['precision']:.4f} | {r['recall']:.4f} | {', '.join(digests)} |"
            )
        # Ratios of each alternating pair (run i with / run i without), then their median:
        # both runs of a pair saw about the same load.
        pairs = list(zip(runs["with"], runs["without"], strict=True))
        pair_wall = [w["total_s"] / o["total_s"] for w, o in pairs]
        pair_cpu = [w["cpu_s"] / o["cpu_s"] for w, o in pairs]
        ratio_wall = _median(runs["with"], "total_s") / _median(runs["without"], "total_s")
        ratio_cpu = _median(runs["with"], "cpu_s") / _median(runs["without"], "cpu_s")
        lines.append(
            f"\nwith / without: {ratio_wall:.2f}x wall time ({ratio_cpu:.2f}x CPU time), "
            f"medians of {args.repeats}; per alternating pair: wall "
            f"{', '.join(f'{x:.2f}' for x in pair_wall)} (median "
            f"{statistics.median(pair_wall):.2f}), CPU "
            f"{', '.join(f'{x:.2f}' for x in pair_cpu)} (median {statistics.median(pair_cpu):.2f})"
        )
        stages = sorted(
            {k for r in runs["with"] for k in r if k.startswith(("stage_", "engine_"))}
            - {"stage_total"}
        )
        extra = {
            k: _median(runs["with"], k) - _median(runs["without"], k)
            for k in stages
            if abs(_median(runs["with"], k) - _median(runs["without"], k)) >= 0.05
        }
        lines.append(
            "extra seconds with behaviour, by stage (median with - median without): "
            + ", ".join(f"{k.split('_', 1)[1]} {v:+.2f}" for k, v in extra.items())
        )
        loads = [r["load_before"] for v in runs.values() for r in v]
        lines.append(f"1-minute load average before the runs: {min(loads):.1f}-{max(loads):.1f}")
        report["ratio_total"] = ratio_wall
        report["ratio_cpu"] = ratio_cpu
        report["ratio_pairs_wall"] = pair_wall
        report["ratio_pairs_cpu"] = pair_cpu
        report["extra_by_stage"] = extra
    text = "\n".join(lines)
    print(text)
    tag = "-".join(str(s) for s in args.sizes)
    results = ROOT / "bench" / "results" / f"lockstep-{tag}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
