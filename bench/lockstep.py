"""Cost of behaviour features and lockstep at three world sizes, and their share of `linker run`.

Part 1 (scaling): synthetic worlds of ``--sizes`` accounts (default 25k, 50k, 100k; events
scale with the accounts). For each, the validated events table is loaded once and timed:
``event_codes`` (shared), ``account_behaviour`` and ``lockstep_pairs`` with default settings.
Reported: seconds, seconds per million events, comparisons, and the ratio of time per event
between consecutive sizes (1.0 = linear).

Part 2 (end to end, ``--run``): ``linker run`` on the largest world with and without
behavioural evidence (``--no-behaviour``), each in a fresh child process, alternating
``--repeats`` times; reported: median wall time of each and their ratio, plus the quality
figures of ``linker evaluate``.

Usage::

    python bench/lockstep.py                              # scaling at 25k/50k/100k
    python bench/lockstep.py --run --repeats 2            # + with/without at 100k
    python bench/lockstep.py --sizes 1000000 --events-per-account 30 --format parquet --run

Results are printed as Markdown and saved under ``bench/results/``. The machine is shared:
the load average is recorded beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def _run_once(world: Path, out: Path, behaviour: bool) -> dict[str, float]:
    cmd = [str(Path(sys.executable).parent / "linker"), "run", str(world), "-o", str(out)]
    if not behaviour:
        cmd.append("--no-behaviour")
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    manifest = json.loads((out.with_name(out.stem + ".run") / "manifest.json").read_text())
    timings = manifest["timings_seconds"]
    labels = _read(world, "labels")
    ev = evaluate(labels, pd.read_csv(out, dtype="string", keep_default_na=False))
    return {
        "wall_s": wall,
        "link_s": float(timings["link"]),
        "total_s": float(timings["total"]),
        "precision": ev.suspend.precision,
        "recall": ev.suspend.recall,
        "load": os.getloadavg()[0],
        **{f"engine_{k}": float(v) for k, v in timings["engine"].items()},
    }


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
        runs: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
        for _ in range(args.repeats):
            for name in ("without", "with"):
                out = Path(args.work) / f"takedown-{name}.csv"
                runs[name].append(_run_once(world, out, name == "with"))
        report["runs"] = runs
        med = {k: statistics.median(r["total_s"] for r in v) for k, v in runs.items()}
        link = {k: statistics.median(r["link_s"] for r in v) for k, v in runs.items()}
        lines += [
            "",
            "| `linker run` | total s (median) | link stage s | suspend precision | recall |",
            "|---|---|---|---|---|",
        ]
        for name in ("without", "with"):
            r = runs[name][-1]
            lines.append(
                f"| {name} behaviour | {med[name]:.1f} | {link[name]:.1f} | "
                f"{r['precision']:.4f} | {r['recall']:.4f} |"
            )
        lines.append(f"\nwith / without: {med['with'] / med['without']:.2f}x total time")
        report["ratio_total"] = med["with"] / med["without"]
    text = "\n".join(lines)
    print(text)
    tag = "-".join(str(s) for s in args.sizes)
    results = ROOT / "bench" / "results" / f"lockstep-{tag}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
