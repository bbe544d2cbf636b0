"""Linking quality and speed: `linker run` against two connected-components baselines.

On one synthetic world (``linker.synth.generate_world``), measured in one process run:

* (a) connected components over any shared identifier;
* (b) the same over identifiers shared by at most 10 accounts (the Neo4j fraud-ring recipe);
* (c) ``linker run`` (validate, normalise, link, score, export).

A baseline flags every account in a component of at least ``--min-size`` accounts (default 2)
as ``suspend``. Both baselines see the observations table plus each account's
``billing_customer_id`` as an identifier. Quality is measured by ``linker.evaluate``; the
baselines' time is the components step alone (validation and normalisation, shared by all
methods, are timed separately). Then ``linker run`` is timed end to end in a fresh child
process, whose peak RSS is read from ``getrusage(RUSAGE_CHILDREN)``.

Usage::

    python bench/link.py --accounts 100000                        # the docs/performance.md table
    python bench/link.py --accounts 1000000 --events-per-account 30 --format parquet --no-compare
    python bench/link.py --accounts 100000 --no-compare --no-behaviour   # the same, without

Results are printed as Markdown and saved under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from linker.baselines import shared_identifier_components
from linker.evaluate import Evaluation, evaluate
from linker.io.validate import validate_dataset
from linker.observations import build_observations
from linker.pipeline import run
from linker.settings import Settings
from linker.synth import generate_world

ROOT = Path(__file__).resolve().parent.parent


def _world(args: argparse.Namespace) -> Path:
    tag = f"world-{args.accounts}-s{args.seed}-e{args.events_per_account:g}-{args.format}"
    out = Path(args.work) / tag
    marker = out / ".complete"
    if not marker.exists():
        start = time.perf_counter()
        generate_world(
            args.accounts,
            args.seed,
            out,
            fmt=args.format,
            events_per_account=args.events_per_account,
        )
        marker.write_text("ok\n")
        print(f"generated {out} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return out


def _labels(world: Path) -> pd.DataFrame:
    path = next(p for p in world.iterdir() if p.name.startswith("labels."))
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype="string", keep_default_na=False)


def _row(name: str, ev: Evaluation, seconds: float, note: str = "") -> dict[str, object]:
    return {
        "method": name,
        "suspend_precision": ev.suspend.precision,
        "suspend_recall": ev.suspend.recall,
        "suspend_f1": ev.suspend.f1,
        "flagged_precision": ev.flagged.precision,
        "flagged_recall": ev.flagged.recall,
        "flagged_f1": ev.flagged.f1,
        "ari": ev.ari,
        "false_positives": ev.suspend.fp,
        "seconds": seconds,
        "note": note,
    }


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _e2e(world: Path, work: Path, fmt: str, behaviour: bool = True) -> dict[str, float]:
    """`linker run` in a fresh child process: wall and CPU time, peak RSS, load average."""
    out = work / f"e2e-takedown.{'parquet' if fmt == 'parquet' else 'csv'}"
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = usage.ru_maxrss
    cpu_before = usage.ru_utime + usage.ru_stime
    load_before = os.getloadavg()
    cmd = [str(Path(sys.executable).with_name("linker")), "run", str(world), "--out", str(out)]
    if not behaviour:
        cmd.append("--no-behaviour")
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kib = usage.ru_maxrss
    manifest = json.loads((out.with_name(out.stem + ".run") / "manifest.json").read_text())
    timings = manifest["timings_seconds"]
    return {
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_before,
        "load_before": load_before[0],
        "load_after": os.getloadavg()[0],
        "behaviour": float(behaviour),
        "peak_rss_gib": peak_kib / 2**20,
        "peak_rss_is_exact": float(before == 0),
        **{f"stage_{k}": v for k, v in timings.items() if isinstance(v, int | float)},
        **{f"engine_{k}": v for k, v in timings.get("engine", {}).items()},
        "events": float(manifest["counts"]["tables"].get("events", {}).get("accepted", 0)),
        "accounts": float(manifest["counts"]["accounts"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events-per-account", type=float, default=20.0)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--min-size", type=int, default=2, help="baseline: flag components >= k")
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "link"))
    parser.add_argument("--no-compare", action="store_true", help="only the end-to-end run")
    parser.add_argument("--keep", action="store_true", help="keep the generated world")
    parser.add_argument(
        "--no-behaviour", action="store_true", help="end to end without behavioural evidence"
    )
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    world = _world(args)

    # End to end first, so the child is the only one getrusage has seen.
    e2e = _e2e(world, work, args.format, behaviour=not args.no_behaviour)
    print(
        f"linker run end to end: {e2e['wall_seconds']:.1f}s wall, {e2e['cpu_seconds']:.1f}s CPU, "
        f"peak RSS {e2e['peak_rss_gib']:.2f} GiB, 1-minute load {e2e['load_before']:.1f} "
        f"before and {e2e['load_after']:.1f} after"
    )

    rows: list[dict[str, object]] = []
    shared: dict[str, float] = {}
    if not args.no_compare:
        labels = _labels(world)
        start = time.perf_counter()
        tables = validate_dataset(world, observations=False).tables
        shared["validate"] = time.perf_counter() - start
        start = time.perf_counter()
        observations = build_observations(tables)
        shared["normalise"] = time.perf_counter() - start
        accounts = tables["accounts"]
        billing = accounts[["account_id", "billing_customer_id"]].dropna()
        identifiers = pd.concat(
            [
                observations[["account_id", "kind", "value"]],
                billing.rename(columns={"billing_customer_id": "value"}).assign(
                    kind="billing_customer"
                ),
            ],
            ignore_index=True,
        )
        ids = accounts["account_id"]
        for name, limit in (
            ("(a) components, any shared identifier", None),
            ("(b) components, identifiers of <= 10 accounts", 10),
        ):
            start = time.perf_counter()
            result = shared_identifier_components(
                identifiers, ids, max_accounts=limit, min_size=args.min_size
            )
            seconds = time.perf_counter() - start
            rows.append(_row(name, evaluate(labels, result), seconds, "components step only"))

        out = work / "takedown.csv"
        start = time.perf_counter()
        result_run = run(world, out, settings=Settings())
        total = time.perf_counter() - start
        link_seconds = float(result_run.manifest["timings_seconds"]["link"])
        takedown = pd.read_csv(out, dtype="string", keep_default_na=False)
        rows.append(
            _row(
                "(c) linker run",
                evaluate(labels, takedown),
                link_seconds,
                f"link step; whole run {total:.1f}s",
            )
        )

        header = (
            "| method | suspend P | suspend R | suspend F1 | +review P | +review R | +review F1 "
            "| ARI | FP (suspend) | time (s) | note |"
        )
        print()
        print(header)
        print("|" + "---|" * 11)
        for r in rows:
            cells = [
                r["method"],
                r["suspend_precision"],
                r["suspend_recall"],
                r["suspend_f1"],
                r["flagged_precision"],
                r["flagged_recall"],
                r["flagged_f1"],
                r["ari"],
                r["false_positives"],
                r["seconds"],
                r["note"],
            ]
            print("| " + " | ".join(_fmt(c) for c in cells) + " |")
        b_time = float(rows[1]["seconds"])  # type: ignore[arg-type]
        print(
            f"\nlinker's link step takes {link_seconds / b_time:.1f}x the time of baseline (b) "
            f"({link_seconds:.2f}s vs {b_time:.2f}s); validation {shared['validate']:.1f}s and "
            f"normalisation {shared['normalise']:.1f}s are shared by all methods."
        )

    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    tag = f"link-{args.accounts}-{args.format}" + ("-e2e" if args.no_compare else "")
    tag += "-no-behaviour" if args.no_behaviour else ""
    (results / f"{tag}.json").write_text(
        json.dumps(
            {
                "accounts": args.accounts,
                "seed": args.seed,
                "events_per_account": args.events_per_account,
                "format": args.format,
                "min_size": args.min_size,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "end_to_end": e2e,
                "shared_seconds": shared,
                "methods": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nsaved bench/results/{tag}.json")
    if not args.keep:
        shutil.rmtree(work / "e2e-takedown.run", ignore_errors=True)


if __name__ == "__main__":
    main()
