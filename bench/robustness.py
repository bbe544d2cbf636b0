"""Robustness bench: the detector on independently written scenario worlds.

For every (scenario, size, seed) it writes the scenario's world (``linker.scenarios``), runs
``linker.pipeline.run`` on it, exports every account (suspend, review and none) and scores
the run against the world's labels with ``linker.evaluate``. One row per world; at the end,
the WORST world for each metric (not the mean) and everything as JSON.

Seed split: seeds 0-9 are for tuning; seeds 100-119 are held out. The bench refuses a
held-out seed unless ``--held-out`` is given, so that tuning never sees them.

Usage::

    python bench/robustness.py --scenarios all --sizes 20000 --seeds 0-1
    python bench/robustness.py --scenarios baseline,giant_ring --sizes 20000,200000,1000000 \\
        --seeds 0 --ring-accounts 24000 --format parquet --keep-worlds /tmp/worlds
    python bench/robustness.py --scenarios all --sizes 200000 --seeds 100-119 --held-out

Columns: scenario, size, seed, accounts; suspend precision and recall (``sus P``, ``sus
R``); the smallest ring's suspend recall (``min ring R``); the lowest suspend recall of any
ring (``worst R``); suspend + review precision (``flag P``); review rows / suspend rows
(``rev/sus``); the largest cluster's share of all accounts (``big cl``); the worst
ring/innocent mixing over clusters (``mix``: for each cluster with both ring and innocent
members, min(ring, innocent) / size; the largest); suspended innocents per group (``innocent
suspensions``); the pipeline's run time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from linker import pipeline
from linker.evaluate import evaluate, read_table
from linker.scenarios import SCENARIOS, generate_scenario, resolve_params
from linker.settings import load_settings

TUNING_SEEDS = range(0, 10)
HELD_OUT_SEEDS = range(100, 120)


class SeedError(ValueError):
    """A --seeds value that is malformed or names held-out seeds without --held-out."""


def parse_seeds(spec: str, held_out: bool = False) -> list[int]:
    """Seeds from ``0-9``, ``100-119``, ``3`` or a comma list of those.

    Raises
    ------
    SeedError
        For a malformed spec, or a held-out seed (100-119) without ``held_out=True``.

    Examples
    --------
    >>> parse_seeds("0-2,7")
    [0, 1, 2, 7]
    """
    seeds: list[int] = []
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise SeedError(f"--seeds: {part!r} is not a seed or a range like 0-9") from None
        if last < first:
            raise SeedError(f"--seeds: range {part!r} runs backwards")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise SeedError("--seeds: no seed given")
    hidden = sorted({s for s in seeds if s in HELD_OUT_SEEDS})
    if hidden and not held_out:
        raise SeedError(
            f"--seeds: seeds {hidden[0]}-{hidden[-1]} include held-out seeds "
            f"({HELD_OUT_SEEDS.start}-{HELD_OUT_SEEDS.stop - 1} are held out; tune on "
            f"{TUNING_SEEDS.start}-{TUNING_SEEDS.stop - 1}); pass --held-out to evaluate on them"
        )
    return sorted(dict.fromkeys(seeds))


def parse_scenarios(spec: str) -> list[str]:
    """Scenario names from a comma list, or ``all``."""
    if spec.strip() == "all":
        return list(SCENARIOS)
    names = [s for s in spec.replace(" ", "").split(",") if s]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return names


def world_dir(root: Path, scenario: str, size: int, seed: int, args: argparse.Namespace) -> Path:
    """Where the world of (scenario, size, seed) lives; generated unless already complete."""
    ring = f"-r{args.ring_accounts}" if args.ring_accounts else ""
    out = root / f"{scenario}-{size}-s{seed}{ring}-{args.format}"
    marker = out / ".complete"
    # A kept world is reused only if it was written with the same knobs and options.
    wanted = json.dumps(
        {"scenario": scenario, "size": size, "seed": seed, "format": args.format,
         "ring_accounts": args.ring_accounts,
         "params": resolve_params(scenario, seed).to_dict()},
        sort_keys=True,
    )  # fmt: skip
    if not marker.exists() or marker.read_text() != wanted:
        marker.unlink(missing_ok=True)
        generate_scenario(
            scenario, size, seed, out, fmt=args.format, ring_accounts=args.ring_accounts
        )
        marker.write_text(wanted)
    return out


def cluster_metrics(everyone: pd.DataFrame, labels: pd.DataFrame) -> dict[str, Any]:
    """Largest cluster's share of all accounts and the worst ring/innocent mixing.

    ``everyone`` is an export of all accounts (with ``cluster_id``; empty for singletons).
    """
    frame = labels[["account_id", "ring_id"]].merge(
        everyone[["account_id", "cluster_id"]], on="account_id", how="left"
    )
    frame["ring"] = frame["ring_id"].fillna("").astype(str).str.strip() != ""
    clustered = frame[frame["cluster_id"].notna() & (frame["cluster_id"].astype(str) != "")]
    n = len(labels)
    if clustered.empty:
        return {"largest_cluster": 0, "largest_cluster_share": 0.0, "worst_mixing": 0.0,
                "worst_mixing_cluster": None, "mixed_clusters": 0}  # fmt: skip
    per = clustered.groupby("cluster_id")["ring"].agg(["size", "sum"])
    per["innocent"] = per["size"] - per["sum"]
    mixed = per[(per["sum"] > 0) & (per["innocent"] > 0)]
    mixing = (mixed[["sum", "innocent"]].min(axis=1) / mixed["size"]) if len(mixed) else None
    worst = None if mixing is None else str(mixing.idxmax())
    return {
        "largest_cluster": int(per["size"].max()),
        "largest_cluster_share": float(per["size"].max() / n),
        "worst_mixing": 0.0 if mixing is None else float(mixing.max()),
        "worst_mixing_cluster": worst,
        "mixed_clusters": len(mixed),
    }


def bench_world(world: Path, work: Path, settings: Any) -> dict[str, Any]:
    """Run, export everyone and score one world."""
    run_dir = work / "run"
    started = time.perf_counter()
    result = pipeline.run(world, work / "takedown.csv", run_dir=run_dir, settings=settings)
    run_s = time.perf_counter() - started
    everyone_path = work / "everyone.parquet"
    pipeline.export_run(run_dir, everyone_path, actions=["suspend", "review", "none"])
    everyone = pd.read_parquet(everyone_path)
    labels_file = next(p for p in world.iterdir() if p.name.startswith("labels."))
    labels = read_table(labels_file)
    ev = evaluate(labels, everyone)
    smallest = min(ev.rings, key=lambda r: (r.size, r.recall_suspend)) if ev.rings else None
    counts = result.counts
    row: dict[str, Any] = {
        "accounts": ev.n_accounts,
        "ring_accounts": ev.n_positive,
        "suspend_precision": ev.suspend.precision,
        "suspend_recall": ev.suspend.recall,
        "smallest_ring": None if smallest is None else smallest.ring_id,
        "smallest_ring_size": None if smallest is None else smallest.size,
        "smallest_ring_suspend_recall": None if smallest is None else smallest.recall_suspend,
        "worst_ring_suspend_recall": (
            min(r.recall_suspend for r in ev.rings) if ev.rings else None
        ),
        "flagged_precision": ev.flagged.precision,
        "flagged_recall": ev.flagged.recall,
        "suspend_rows": int(counts["suspend"]),
        "review_rows": int(counts["review"]),
        "innocent_suspended": {g.group: g.suspended for g in ev.benign_groups if g.suspended},
        "innocent_flagged": {g.group: g.flagged for g in ev.benign_groups if g.flagged},
        "ari": ev.ari,
        "rings": [
            {
                "ring_id": r.ring_id,
                "size": r.size,
                "recall_suspend": r.recall_suspend,
                "recall_flagged": r.recall_flagged,
            }
            for r in ev.rings
        ],
        "run_s": run_s,
    }
    row.update(cluster_metrics(everyone, labels))
    return row


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


HEADER = (
    f"{'scenario':26} {'size':>8} {'seed':>4} {'accounts':>9} {'sus P':>6} {'sus R':>6} "
    f"{'min ring R':>10} {'worst R':>7} {'flag P':>6} {'rev/sus':>11} {'big cl':>7} "
    f"{'mix':>6} {'run s':>7}  "
    "innocent suspensions"
)


def render_row(r: dict[str, Any]) -> str:
    """One printed line per world."""
    fp = ", ".join(f"{g} {n}" for g, n in sorted(r["innocent_suspended"].items())) or "-"
    return (
        f"{r['scenario']:26} {r['size']:>8} {r['seed']:>4} {r['accounts']:>9} "
        f"{_fmt(r['suspend_precision']):>6} {_fmt(r['suspend_recall']):>6} "
        f"{_fmt(r['smallest_ring_suspend_recall']):>10} "
        f"{_fmt(r.get('worst_ring_suspend_recall')):>7} {_fmt(r['flagged_precision']):>6} "
        f"{str(r['review_rows']) + '/' + str(r['suspend_rows']):>11} "
        f"{_fmt(r['largest_cluster_share']):>7} {_fmt(r['worst_mixing']):>6} "
        f"{r['run_s']:>7.1f}  {fp}"
    )


# (metric, worse is "min" or "max", label)
WORST: tuple[tuple[str, str, str], ...] = (
    ("suspend_precision", "min", "suspend precision"),
    ("suspend_recall", "min", "suspend recall"),
    ("smallest_ring_suspend_recall", "min", "smallest ring's suspend recall"),
    ("worst_ring_suspend_recall", "min", "worst ring's suspend recall"),
    ("flagged_precision", "min", "suspend+review precision"),
    ("review_per_suspend", "max", "review rows per suspend row"),
    ("largest_cluster_share", "max", "largest cluster's share"),
    ("worst_mixing", "max", "ring/innocent mixing"),
    ("innocent_suspended_total", "max", "innocents suspended"),
    ("run_s", "max", "run time (s)"),
)


def worst_worlds(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each metric, the world where it is worst (undefined values are skipped)."""
    out: dict[str, dict[str, Any]] = {}
    for metric, direction, _ in WORST:
        defined = [r for r in rows if r.get(metric) is not None]
        if not defined:
            continue
        pick = (min if direction == "min" else max)(defined, key=lambda r: r[metric])
        out[metric] = {
            "value": pick[metric],
            "scenario": pick["scenario"],
            "size": pick["size"],
            "seed": pick["seed"],
            "undefined_in": len(rows) - len(defined),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", default="all", help="comma list of scenarios, or all")
    parser.add_argument("--sizes", default="20000", help="comma list of world sizes (accounts)")
    parser.add_argument("--seeds", default="0-1", help="seeds: 0-9 tuning, 100-119 held out")
    parser.add_argument("--held-out", action="store_true", help="allow the held-out seeds 100-119")
    parser.add_argument("--ring-accounts", type=int, help="total ring accounts at every size")
    parser.add_argument("--format", choices=["csv", "parquet"], default="parquet")
    parser.add_argument("--out", type=Path, help="write every result to this JSON file")
    parser.add_argument("--keep-worlds", type=Path, help="keep (and reuse) worlds in this folder")
    parser.add_argument("--settings", type=Path, help="a TOML settings file for linker run")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds, held_out=args.held_out)
    except SeedError as exc:
        parser.error(str(exc))
    scenarios = parse_scenarios(args.scenarios)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    settings = load_settings(args.settings)
    rows: list[dict[str, Any]] = []
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        world_root = args.keep_worlds or Path(tmp) / "worlds"
        world_root.mkdir(parents=True, exist_ok=True)
        for scenario in scenarios:
            for size in sizes:
                for seed in seeds:
                    world = world_dir(world_root, scenario, size, seed, args)
                    work = Path(tmp) / f"run-{scenario}-{size}-{seed}"
                    work.mkdir()
                    row = {"scenario": scenario, "size": size, "seed": seed}
                    row.update(bench_world(world, work, settings))
                    row["review_per_suspend"] = (
                        row["review_rows"] / row["suspend_rows"] if row["suspend_rows"] else None
                    )
                    row["innocent_suspended_total"] = sum(row["innocent_suspended"].values())
                    rows.append(row)
                    print(render_row(row), flush=True)
                    if not args.keep_worlds:
                        _remove_tree(world)
                    _remove_tree(work)
    worst = worst_worlds(rows)
    print("\nworst world per metric:")
    labels = {m: label for m, _, label in WORST}
    for metric, w in worst.items():
        value = w["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        undefined = f" (undefined in {w['undefined_in']})" if w["undefined_in"] else ""
        where = f"{w['scenario']} size {w['size']} seed {w['seed']}"
        print(f"  {labels[metric]:32} {shown:>9}  {where}{undefined}")
    if args.out:
        payload = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "seeds": seeds,
            "worlds": rows,
            "worst": worst,
        }
        args.out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        print(f"\nwrote {args.out}")
    return 0


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
