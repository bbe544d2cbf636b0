"""Paired whole-process timing: command A against command B, run in turn (A B A B ...).

Each run is timed from outside as a whole process: wall seconds by a monotonic clock around
the child, user + system seconds and peak resident memory from the operating system's own
accounting of the reaped child (``os.wait4``). The ratio A/B is taken pair by pair, so a
machine whose speed drifts during the call (a shared, noisy machine) still gives a meaningful
ratio; the median of each figure is the one to quote, min and max show the spread.

    python bench/paired.py -n 2 --vs "linker run OLD_WORLD --out /tmp/b.csv" -- \\
        linker run NEW_WORLD --out /tmp/a.csv

A variable for one side goes through ``env`` (``--vs "env PYTHONPATH=/tmp/base linker run
..."``). Output of the commands is discarded; ``--keep-output DIR`` writes each run's output to
files there instead. Only the standard library is used, so anyone can rerun a figure.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """One finished run of one command."""

    wall: float
    cpu: float
    peak_mib: float
    exit_code: int


def run_once(argv: list[str], output: Path | None) -> Run:
    """Run ``argv`` to completion; its wall and CPU seconds and its peak resident memory."""
    sink = output.open("wb") if output is not None else subprocess.DEVNULL
    try:
        started = time.monotonic()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
    finally:
        if output is not None and not isinstance(sink, int):
            sink.close()
    # os.wait4 reaped the child; telling Popen so keeps it from waiting on it again.
    child.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux: the largest resident set of the child and the
    # descendants it waited for.
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, child.returncode)


def _spread(values: list[float], digits: int = 1) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"(min {min(values):.{digits}f}, max {max(values):.{digits}f})"
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--runs", type=int, default=3, help="runs of each command")
    parser.add_argument("--vs", required=True, help="command B, one string split as a shell does")
    parser.add_argument("--keep-output", type=Path, help="write each run's output here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command A, after --")
    args = parser.parse_args(argv)
    command_a = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command_a or args.runs < 1:
        parser.error("give -n >= 1 and command A after --")
    commands = {"A": command_a, "B": shlex.split(args.vs)}
    runs: dict[str, list[Run]] = {"A": [], "B": []}
    if args.keep_output:
        args.keep_output.mkdir(parents=True, exist_ok=True)
    for label, command in commands.items():
        print(f"{label} = {shlex.join(command)}", flush=True)
    for i in range(args.runs):
        for label, command in commands.items():
            out = args.keep_output / f"{label}-{i + 1}.log" if args.keep_output else None
            result = run_once(command, out)
            runs[label].append(result)
            print(
                f"run {i + 1} {label}: wall {result.wall:.1f} s, cpu {result.cpu:.1f} s, "
                f"peak {result.peak_mib:,.0f} MiB, exit {result.exit_code}",
                flush=True,
            )
    for label in commands:
        done = runs[label]
        print(
            f"{label}: wall {_spread([r.wall for r in done])} s; "
            f"cpu {_spread([r.cpu for r in done])} s; "
            f"peak {_spread([r.peak_mib for r in done], 0)} MiB"
        )
    pairs = list(zip(runs["A"], runs["B"], strict=True))
    print(
        f"A/B per pair: wall {_spread([a.wall / b.wall for a, b in pairs], 3)}; "
        f"cpu {_spread([a.cpu / b.cpu for a, b in pairs], 3)}; "
        f"peak {_spread([a.peak_mib / b.peak_mib for a, b in pairs], 3)}"
    )
    failed = [r for rs in runs.values() for r in rs if r.exit_code != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
