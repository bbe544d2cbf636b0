"""bench/paired.py: paired whole-process timing with the standard library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _paired(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "paired.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_runs_a_and_b_in_turn_and_reports_each_ones_peak_memory() -> None:
    small = f"{sys.executable} -c pass"
    # A fills 200 MB (every page touched); B allocates nothing.
    done = _paired("-n", "2", "--vs", small, "--", sys.executable, "-c", "x = b'1' * 200_000_000")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    order = [line.split(":")[0] for line in lines if line.startswith("run ")]
    assert order == ["run 1 A", "run 1 B", "run 2 A", "run 2 B"]
    peaks = {
        line[0]: float(line.split("peak ")[1].split(" ")[0].replace(",", ""))
        for line in lines
        if line[:2] in ("A:", "B:")
    }
    assert peaks["A"] > 150 > peaks["B"]
    assert any(line.startswith("A/B per pair: wall ") for line in lines)


def test_a_failing_command_makes_it_exit_non_zero() -> None:
    done = _paired(
        "-n",
        "1",
        "--vs",
        f"{sys.executable} -c pass",
        "--",
        sys.executable,
        "-c",
        "raise SystemExit(3)",
    )
    assert done.returncode == 1
    assert "exit 3" in done.stdout
