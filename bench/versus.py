"""Time two commands side by side: wall seconds and peak memory, run by run, paired.

Runs command A and command B in turn (A B A B ...) and reports, for each, the median, min and
max wall time and peak resident memory (the kernel's accounting of the finished child, from
``os.wait4``), and the median of the pair-by-pair ratios A/B: pairing keeps a ratio meaningful
when a shared machine's speed drifts during the measurement. Used to compare a change against
the commit before it, e.g. the run engine against the previous pipeline::

    git worktree add /tmp/before <commit> && (cd /tmp/before && make venv)
    .venv/bin/python bench/versus.py --runs 3 \\
        --a ".venv/bin/linker run W --out /tmp/a.csv" \\
        --b "/tmp/before/.venv/bin/linker run W --out /tmp/b.csv" \\
        --json bench/results/versus-NAME.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any


def run_once(command: list[str]) -> tuple[float, int, int, float]:
    """Wall seconds, peak RSS in bytes, exit status and CPU seconds (user + system, the
    child and what it waited for) of one run of ``command``.

    On a shared, overloaded machine the wall time mostly measures the other jobs; the CPU
    time is the work the command itself did, and moves much less between runs."""
    began = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=sink)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    cpu = float(usage.ru_utime + usage.ru_stime)
    return wall, int(usage.ru_maxrss) * 1024, os.waitstatus_to_exitcode(status), cpu


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="command A (the change), shell-quoted")
    parser.add_argument("--b", required=True, help="command B (the peer or the baseline)")
    parser.add_argument("--runs", type=int, default=3, help="pairs to time (after one warm-up)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    commands = {"a": shlex.split(args.a), "b": shlex.split(args.b)}
    for _ in range(args.warmup):
        for command in commands.values():
            run_once(command)
    runs: dict[str, list[tuple[float, int, int, float]]] = {"a": [], "b": []}
    for _ in range(args.runs):
        for name, command in commands.items():
            runs[name].append(run_once(command))
    report: dict[str, Any] = {"a": args.a, "b": args.b, "runs": args.runs}
    for name in ("a", "b"):
        walls = [r[0] for r in runs[name]]
        peaks = [r[1] / 2**20 for r in runs[name]]
        report[name + "_wall_s"] = summary(walls)
        report[name + "_peak_mib"] = summary(peaks)
        report[name + "_cpu_s"] = summary([r[3] for r in runs[name]])
        report[name + "_exit"] = sorted({r[2] for r in runs[name]})
    ratios = [a[0] / b[0] for a, b in zip(runs["a"], runs["b"], strict=True)]
    mem = [a[1] / b[1] for a, b in zip(runs["a"], runs["b"], strict=True)]
    report["wall_ratio_a_over_b"] = summary(ratios)
    report["peak_ratio_a_over_b"] = summary(mem)
    cpu = [a[3] / b[3] for a, b in zip(runs["a"], runs["b"], strict=True)]
    report["cpu_ratio_a_over_b"] = summary(cpu)
    for name in ("a", "b"):
        w, p = report[name + "_wall_s"], report[name + "_peak_mib"]
        print(
            f"{name.upper()}: wall {w['median']:.1f} s (min {w['min']:.1f}, max {w['max']:.1f}); "
            f"peak {p['median']:.0f} MiB (min {p['min']:.0f}, max {p['max']:.0f}); "
            f"exit {report[name + '_exit']}"
        )
    r, m = report["wall_ratio_a_over_b"], report["peak_ratio_a_over_b"]
    c = report["cpu_ratio_a_over_b"]
    print(f"A/B wall: median {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f})")
    print(f"A/B CPU:  median {c['median']:.3f} (min {c['min']:.3f}, max {c['max']:.3f})")
    print(f"A/B peak: median {m['median']:.3f} (min {m['min']:.3f}, max {m['max']:.3f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
