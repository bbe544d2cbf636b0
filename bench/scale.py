"""Scale bench (issue 16): `linker run` on 100k, 300k and 1M worlds in one run, against a floor.

For each size it makes (or reuses) a Parquet world, then in fresh child processes, one after
the other:

* the **floor**: one polars ``scan_parquet`` pass over the world's events table that
  aggregates per account (group by ``account_id``: rows, first and last ``ts``, total
  ``requests``) — the least any run must do with the events;
* ``linker run WORLD --out takedown.csv`` as a user runs it (behaviour on unless
  ``--no-behaviour``).

Each child's wall time, CPU seconds (user + system) and peak RSS come from ``os.wait4``
(the kernel's accounting of that child alone). Per stage, the run's manifest gives seconds
and peak RSS (``stages.<name>.seconds`` / ``peak_rss_bytes``); the bench prints them per
event row (microseconds per event) and as a multiple of the floor measured in the same run,
then the time per event of the largest world over the smallest (issue target: at most 1.3x
from 100k to 1M) and the 1M targets (at most 120 s and 8 GB). Suspend precision and recall
against the world's labels (``linker.evaluate``) show the run still detects.

Worlds are cached in ``--worlds`` as ``{scenario}-{size}-s{seed}-parquet``: ``synth`` is
``linker synth`` (``linker.synth.generate_world``) with ``--events-per-account``; any other
name is that scenario of the robustness bench (``linker.scenarios``, e.g.
``dense_innocent_sharing``, the one with the densest innocent sharing). ``--world SIZE=DIR``
uses an existing world for one size instead.

Usage::

    python bench/scale.py                                    # synth 100k, 300k, 1M
    python bench/scale.py --world 1000000=/work/perf/w1m --worlds /tmp/worlds
    python bench/scale.py --scenario dense_innocent_sharing --seed 0
    python bench/scale.py --sizes 100000 --no-behaviour

Needs the ``bench`` extra (polars). Results: Markdown on stdout and JSON in
``bench/results/scale-{scenario}-{sizes}.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from linker.stages import stage_names

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 120.0
TARGET_BYTES = 8 * 10**9
TARGET_RATIO = 1.3
GIB = 2**30


def parse_sizes(spec: str) -> list[int]:
    """Sizes from ``100000,300000,1000000`` (``k``/``m`` suffixes allowed).

    >>> parse_sizes("100k,1m")
    [100000, 1000000]
    """
    sizes = []
    for part in spec.replace(" ", "").lower().split(","):
        if part:
            scale = {"k": 1_000, "m": 1_000_000}.get(part[-1], 1)
            sizes.append(int(float(part.rstrip("km")) * scale))
    if not sizes:
        raise SystemExit("--sizes: no size given")
    return sizes


def parse_worlds(specs: list[str]) -> dict[int, Path]:
    """``SIZE=DIR`` overrides of the cached worlds."""
    worlds = {}
    for spec in specs:
        size, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"--world: {spec!r} is not SIZE=DIR")
        worlds[parse_sizes(size)[0]] = Path(path)
    return worlds


def run_child(cmd: list[str], out_file: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` in a child whose stdout goes to ``out_file``; reap it with ``os.wait4``."""
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        out = open(out_file, "w") if out_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            child = subprocess.Popen(cmd, stdout=out, stderr=err)
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            if out_file:
                out.close()  # type: ignore[union-attr]
        wall = time.perf_counter() - began
        err.seek(0)
        tail = err.read()[-3000:]
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(tail)
        raise SystemExit(f"{' '.join(cmd)} failed (exit {code})")
    return {
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_bytes": int(usage.ru_maxrss) * 1024,
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def table_path(world: Path, name: str) -> Path:
    """The world's ``name`` table (Parquet or CSV)."""
    for suffix in (".parquet", ".csv"):
        path = world / f"{name}{suffix}"
        if path.exists():
            return path
    raise SystemExit(f"{world}: no {name}.parquet or {name}.csv")


def ensure_world(size: int, args: argparse.Namespace, given: dict[int, Path]) -> Path:
    """The world of ``size``: given, cached, or generated now (in a child) into the cache."""
    if size in given:
        return given[size]
    world = Path(args.worlds) / f"{args.scenario}-{size}-s{args.seed}-parquet"
    if (world / "labels.parquet").exists():
        return world
    partial = world.with_name(world.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-m", "linker.cli", "synth", "--accounts", str(size)]
    cmd += ["--seed", str(args.seed), "--out", str(partial), "--format", "parquet"]
    if args.scenario == "synth":
        cmd += ["--events-per-account", str(args.events_per_account)]
    else:
        cmd += ["--scenario", args.scenario]
    print(f"generating {world.name} ...", file=sys.stderr, flush=True)
    took = run_child(cmd)
    print(f"  {took['wall_seconds']:.0f}s", file=sys.stderr, flush=True)
    partial.rename(world)
    return world


def floor_pass(events: str) -> None:
    """The floor, in this (child) process: print its rows, accounts and seconds as JSON."""
    import polars as pl

    began = time.perf_counter()
    scan = pl.scan_parquet(events) if events.endswith(".parquet") else pl.scan_csv(events)
    per_account = (
        scan.group_by("account_id")
        .agg(
            pl.len().alias("rows"),
            pl.col("ts").min().alias("first"),
            pl.col("ts").max().alias("last"),
            pl.col("requests").sum().alias("requests"),
        )
        .collect()
    )
    seconds = time.perf_counter() - began
    rows = int(per_account["rows"].sum())
    print(json.dumps({"seconds": seconds, "rows": rows, "accounts": per_account.height}))


def measure_floor(world: Path, work: Path) -> dict[str, Any]:
    """The polars floor of ``world`` in a child process."""
    out = work / "floor.json"
    child = run_child(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--floor",
            str(table_path(world, "events")),
        ],
        out,
    )
    inner = json.loads(out.read_text())
    return {**child, **inner, "seconds": round(inner["seconds"], 3)}


def measure_run(world: Path, work: Path, behaviour: bool) -> dict[str, Any]:
    """``linker run`` on ``world`` in a child process, with its manifest's stages."""
    shutil.rmtree(work / "takedown.run", ignore_errors=True)
    cmd = [sys.executable, "-m", "linker.cli", "run", str(world)]
    cmd += ["--out", str(work / "takedown.csv"), "--run-dir", str(work / "takedown.run")]
    if not behaviour:
        cmd.append("--no-behaviour")
    child = run_child(cmd)
    manifest = json.loads((work / "takedown.run" / "manifest.json").read_text())
    stages = {
        name: {"seconds": report["seconds"], "peak_rss_bytes": report.get("peak_rss_bytes")}
        for name, report in manifest["stages"].items()
    }
    order = stage_names()  # pipeline order
    stages = {name: stages[name] for name in order if name in stages} | stages
    events = int(manifest["counts"]["tables"]["events"]["read"])
    return {**child, "stages": stages, "events": events, "accounts": manifest["counts"]["accounts"]}


def quality(world: Path, work: Path) -> dict[str, Any]:
    """Suspend and flagged precision / recall of the run against the world's labels."""
    from linker.evaluate import evaluate, read_table

    labels = read_table(table_path(world, "labels"))
    ev = evaluate(labels, read_table(work / "takedown.csv"))
    return {
        part: {
            "precision": getattr(ev, part).precision,
            "recall": getattr(ev, part).recall,
            "fp": getattr(ev, part).fp,
            "fn": getattr(ev, part).fn,
        }
        for part in ("suspend", "flagged")
    }


def available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def wait_for_memory(needed_gb: float, limit_seconds: float = 1800.0) -> float:
    """On a shared machine: wait (up to ``limit_seconds``) until ``needed_gb`` are available;
    the seconds waited."""
    began = time.perf_counter()
    while needed_gb > 0 and time.perf_counter() - began < limit_seconds:
        available = available_bytes()
        if available is None or available >= needed_gb * GIB:
            break
        print(
            f"  waiting: {available / GIB:.1f} GiB available, {needed_gb} needed",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(20)
    return round(time.perf_counter() - began, 1)


def bench_size(size: int, args: argparse.Namespace, given: dict[int, Path]) -> dict[str, Any]:
    """Floor, run and quality for one size."""
    world = ensure_world(size, args, given)
    waited = wait_for_memory(args.wait_for_gb * size / 1_000_000)
    work = Path(args.work) / f"{args.scenario}-{size}"
    work.mkdir(parents=True, exist_ok=True)
    print(f"{size:,}: floor ...", file=sys.stderr, flush=True)
    floor = measure_floor(world, work)
    print(f"{size:,}: linker run ...", file=sys.stderr, flush=True)
    run = measure_run(world, work, behaviour=not args.no_behaviour)
    row = {"size": size, "world": str(world), "floor": floor, "run": run, "waited": waited}
    row["quality"] = quality(world, work)
    for report in run["stages"].values():
        report["us_per_event"] = round(report["seconds"] / run["events"] * 1e6, 3)
        report["x_floor"] = round(report["seconds"] / floor["seconds"], 2)
    run["us_per_event"] = round(run["wall_seconds"] / run["events"] * 1e6, 3)
    run["x_floor"] = round(run["wall_seconds"] / floor["seconds"], 2)
    print(render_size(row), flush=True)
    return row


def render_size(row: dict[str, Any]) -> str:
    """One size's per-stage Markdown table."""
    run, floor = row["run"], row["floor"]
    lines = [
        f"\n### {row['size']:,} accounts, {run['events']:,} events ({row['world']})\n",
        "| stage | seconds | peak RSS GiB | µs / event | × floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in run["stages"].items():
        peak = s["peak_rss_bytes"] / GIB if s["peak_rss_bytes"] else float("nan")
        lines.append(
            f"| {name} | {s['seconds']:.2f} | {peak:.2f} | {s['us_per_event']:.2f} "
            f"| {s['x_floor']:.2f} |"
        )
    lines.append(
        f"| **whole run (wall)** | **{run['wall_seconds']:.1f}** | "
        f"**{run['peak_rss_bytes'] / GIB:.2f}** | **{run['us_per_event']:.2f}** | "
        f"**{run['x_floor']:.1f}** |"
    )
    lines.append(
        f"\nCPU {run['cpu_seconds']:.1f} s; floor (polars scan + group-by) "
        f"{floor['seconds']:.2f} s, {floor['peak_rss_bytes'] / GIB:.2f} GiB; 1-minute load "
        f"{run['load_before']:.1f} before, {run['load_after']:.1f} after; "
        + "; ".join(
            f"{part} precision {q['precision']:.4f}, recall {q['recall']:.4f}"
            for part, q in row["quality"].items()
        )
    )
    return "\n".join(lines)


def cpu_us_per_event(row: dict[str, Any]) -> float:
    """CPU microseconds per event of one run (less sensitive to a busy machine than wall)."""
    return round(row["run"]["cpu_seconds"] / row["run"]["events"] * 1e6, 3)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Scaling ratios (wall and CPU per event, largest world over smallest) and the 1M
    targets."""
    first, last = rows[0], rows[-1]
    out: dict[str, Any] = {
        "sizes": [r["size"] for r in rows],
        "us_per_event": {r["size"]: r["run"]["us_per_event"] for r in rows},
        "cpu_us_per_event": {r["size"]: cpu_us_per_event(r) for r in rows},
    }
    if len(rows) > 1:
        out["ratio_largest_to_smallest"] = round(
            last["run"]["us_per_event"] / first["run"]["us_per_event"], 3
        )
        out["cpu_ratio_largest_to_smallest"] = round(
            cpu_us_per_event(last) / cpu_us_per_event(first), 3
        )
        out["ratio_target"] = TARGET_RATIO
    big = next((r for r in rows if r["size"] >= 1_000_000), None)
    if big:
        out["at_1m"] = {
            "wall_seconds": big["run"]["wall_seconds"],
            "cpu_seconds": big["run"]["cpu_seconds"],
            "peak_rss_bytes": big["run"]["peak_rss_bytes"],
            "wall_ok": big["run"]["wall_seconds"] <= TARGET_SECONDS,
            "memory_ok": big["run"]["peak_rss_bytes"] <= TARGET_BYTES,
        }
    return out


def render_summary(rows: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    """The whole-run table over sizes and the targets."""
    lines = [
        "\n### Whole runs\n",
        "| accounts | events | wall s | CPU s | peak RSS GiB | µs / event | CPU µs / event "
        "| floor s | × floor | load before / after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        run = r["run"]
        lines.append(
            f"| {r['size']:,} | {run['events']:,} | {run['wall_seconds']:.1f} | "
            f"{run['cpu_seconds']:.1f} | {run['peak_rss_bytes'] / GIB:.2f} | "
            f"{run['us_per_event']:.2f} | {cpu_us_per_event(r):.2f} | "
            f"{r['floor']['seconds']:.2f} | {run['x_floor']:.1f} | "
            f"{run['load_before']:.1f} / {run['load_after']:.1f} |"
        )
    if "ratio_largest_to_smallest" in facts:
        lines.append(
            f"\nTime per event, {rows[-1]['size']:,} over {rows[0]['size']:,}: "
            f"{facts['ratio_largest_to_smallest']:.2f}x wall, "
            f"{facts['cpu_ratio_largest_to_smallest']:.2f}x CPU (target <= {TARGET_RATIO}x)"
        )
    if "at_1m" in facts:
        at = facts["at_1m"]
        lines.append(
            f"1M: {at['wall_seconds']:.0f} s wall, {at['cpu_seconds']:.0f} s CPU (target <= "
            f"{TARGET_SECONDS:.0f} s: {'met' if at['wall_ok'] else 'missed'}), peak "
            f"{at['peak_rss_bytes'] / 1e9:.1f} GB "
            f"(target <= 8 GB: {'met' if at['memory_ok'] else 'missed'})"
        )
    return "\n".join(lines)


def render(path: Path) -> str:
    """The Markdown tables of a saved results file (``--render``)."""
    result = json.loads(path.read_text())
    rows = result["rows"]
    parts = [render_size(row) for row in rows]
    parts.append(render_summary(rows, summary(rows)))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--scenario", default="synth", help="synth, or a linker.scenarios name")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events-per-account", type=float, default=20.0, help="synth only")
    parser.add_argument("--worlds", default=str(ROOT / "bench" / "out" / "scale" / "worlds"))
    parser.add_argument("--world", action="append", default=[], help="SIZE=DIR (repeatable)")
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "scale"))
    parser.add_argument("--no-behaviour", action="store_true")
    parser.add_argument(
        "--wait-for-gb",
        type=float,
        default=0.0,
        help="on a shared machine, wait before each size until this many GiB per 1M accounts "
        "are available (MemAvailable), at most 30 minutes [default: 0, do not wait]",
    )
    parser.add_argument("--out", help="results JSON [default: bench/results/scale-...json]")
    parser.add_argument("--render", type=Path, help="print the tables of a saved results JSON")
    parser.add_argument("--floor", help=argparse.SUPPRESS)  # the child's floor pass
    args = parser.parse_args(argv)
    if args.render:
        print(render(args.render))
        return 0
    if args.floor:
        floor_pass(args.floor)
        return 0
    if args.scenario != "synth":
        from linker.scenarios import SCENARIOS

        if args.scenario not in SCENARIOS:
            raise SystemExit(f"--scenario: unknown {args.scenario!r}; one of synth, {SCENARIOS}")
    sizes = sorted(parse_sizes(args.sizes))
    given = parse_worlds(args.world)
    Path(args.worlds).mkdir(parents=True, exist_ok=True)
    tag = "-".join(str(s) for s in sizes)
    out = Path(args.out or ROOT / "bench" / "results" / f"scale-{args.scenario}-{tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        rows.append(bench_size(size, args, given))
        save(out, args, rows)  # after every size: a long run stopped early keeps what it had
    print(render_summary(rows, summary(rows)))
    print(f"\nsaved {out}")
    return 0


def save(out: Path, args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Write the results so far (``complete`` once every size is in)."""
    result = {
        "bench": "scale",
        "scenario": args.scenario,
        "seed": args.seed,
        "behaviour": not args.no_behaviour,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "complete": len(rows) == len(parse_sizes(args.sizes)),
        "rows": rows,
        "summary": summary(rows),
    }
    partial = out.with_suffix(".json.tmp")
    partial.write_text(json.dumps(result, indent=2, default=str) + "\n")
    partial.replace(out)


if __name__ == "__main__":
    sys.exit(main())
