"""Validate one dataset directory and nothing else: the ``validate`` stage's work alone, as one
process, for ``bench/paired.py`` to time and measure against another tree.

Usage (this tree against commit 143bf22, alternating, two pairs)::

    git worktree add /tmp/base 143bf22
    python bench/paired.py -n 2 \\
        --vs "env PYTHONPATH=/tmp/base .venv/bin/python bench/validate_world.py WORLD" \\
        -- env PYTHONPATH=. .venv/bin/python bench/validate_world.py WORLD

It prints the seconds inside the process and the accepted rows per table (``bench/paired.py``
keeps the whole process's wall, CPU and peak memory).
"""

from __future__ import annotations

import argparse
import sys
import time

from linker.io.validate import validate_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", help="a dataset directory (docs/contract.md)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    result = validate_dataset(args.world, observations=False)
    seconds = time.perf_counter() - began
    rows = {name: len(frame) for name, frame in result.tables.items()}
    sys.stdout.write(f"validate {seconds:.1f} s, accepted rows {rows}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
