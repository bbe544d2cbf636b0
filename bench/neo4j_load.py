"""Neo4j load speed: the UNWIND loader at several batch sizes against the bulk importer.

Each measurement gets its own throwaway server (``start_server(auth=False)`` on free ports, in
a fresh temporary data directory, stopped and deleted afterwards), so every load goes into an
empty database and no run warms the next one's page cache.

* ``unwind``: :func:`linker.neo4j.loader.load_run` at each ``--batch-sizes`` value. Time is
  ``LoadSummary.seconds``: schema creation, every batch, and the final counts.
* ``bulk``: :func:`linker.neo4j.bulk.bulk_load` (``linker neo4j load --bulk``). Time is
  ``BulkSummary.seconds``: CSV files written, server stopped, ``neo4j-admin database import``,
  server restarted, schema created and counted. The importer's own phase is reported too.

nodes/s and relationships/s divide the graph's final totals by the same wall time. The run
directory is made by the real pipeline (``linker synth`` + ``linker run``) unless
``--run-dir`` names one.

Usage::

    python bench/neo4j_load.py --accounts 100000 --batch-sizes 1000,5000,20000
    python bench/neo4j_load.py --run-dir /tmp/bench-w100k-run --no-bulk

Results are printed as Markdown and saved under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from linker.neo4j.bulk import bulk_load
from linker.neo4j.loader import batch_parameters, load_run, prepare_load
from linker.neo4j.runner import ConnectionSettings, QueryRunner
from linker.neo4j.server import start_server, stop_server
from linker.pipeline import run as run_pipeline
from linker.synth import generate_world

ROOT = Path(__file__).resolve().parent.parent
TARGET_RELS_PER_S = 50_000


def _run_dir(args: argparse.Namespace) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    work = Path(args.work)
    world = work / f"world-{args.accounts}-s{args.seed}"
    run_dir = work / f"run-{args.accounts}-s{args.seed}"
    if not (world / ".complete").exists():
        generate_world(args.accounts, args.seed, world)
        (world / ".complete").write_text("ok\n")
    if not (run_dir / ".complete").exists():
        began = time.perf_counter()
        run_pipeline(world, run_dir / "takedown.csv", run_dir=run_dir)
        (run_dir / ".complete").write_text("ok\n")
        print(f"linker run: {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return run_dir


def _load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


class _Server:
    """A throwaway server in a fresh temporary data directory."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="bench-neo4j-", dir=args.tmp))
        self.args = args

    def __enter__(self) -> _Server:
        self.info = start_server(
            data_dir=self.home,
            bolt_port="auto",
            http_port="auto",
            heap=self.args.heap,
            pagecache=self.args.pagecache,
            auth=False,
        )
        return self

    def runner(self) -> QueryRunner:
        return QueryRunner(ConnectionSettings(uri=self.info.bolt_uri, source="benchmark"))

    def __exit__(self, *exc: object) -> None:
        stop_server(data_dir=self.home)
        shutil.rmtree(self.home, ignore_errors=True)


def _row(mode: str, batch: str, seconds: float, nodes: int, rels: int, **extra: Any) -> dict:
    return {
        "mode": mode,
        "batch_size": batch,
        "seconds": seconds,
        "nodes": nodes,
        "relationships": rels,
        "nodes_per_s": nodes / seconds,
        "relationships_per_s": rels / seconds,
        "load_average": _load_average(),
        **extra,
    }


def _unwind(run_dir: Path, batch_size: int, args: argparse.Namespace) -> dict:
    with _Server(args) as srv, srv.runner() as runner:
        summary = load_run(run_dir, runner=runner, batch_size=batch_size)
    return _row(
        "UNWIND (`linker neo4j load`)",
        f"{batch_size:,}",
        summary.seconds,
        sum(summary.nodes.values()),
        sum(summary.relationships.values()),
        batches=summary.batches,
    )


def _bulk(run_dir: Path, args: argparse.Namespace) -> dict:
    with _Server(args) as srv:
        summary = bulk_load(run_dir, data_dir=srv.home)
    return _row(
        "bulk (`--bulk`, neo4j-admin import)",
        "—",
        summary.seconds,
        sum(summary.nodes.values()),
        sum(summary.relationships.values()),
        phases=summary.phases,
    )


def _packing(run_dir: Path, batch_size: int) -> dict[str, float]:
    """Seconds to pack every batch into Bolt bytes, with the driver's Rust and pure-Python
    packers (``neo4j-rust-ext`` against the driver's fallback), no server involved."""
    from neo4j._codec.packstream.v1 import Packer  # the driver's internals: bench only

    class Sink:
        size = 0

        def write(self, data: bytes) -> None:
            self.size += len(data)

    prepared = prepare_load(run_dir)
    batches = [p for step in prepared.steps for _, p in batch_parameters(step, batch_size)]
    out: dict[str, float] = {}
    for name in ("rust", "python"):
        sink = Sink()
        packer = Packer(sink)
        began = time.perf_counter()
        for params in batches:
            if name == "rust":
                packer.pack(params)
            else:
                packer._py_pack(params, Packer._inject_hooks())
        out[name] = time.perf_counter() - began
        out[f"{name}_bytes"] = sink.size
    return out


def _table(rows: list[dict], peer: dict | None) -> str:
    lines = [
        "| mode | batch size | seconds | nodes | relationships | nodes/s | relationships/s |"
        + (" vs bulk |" if peer else ""),
        "|:--|--:|--:|--:|--:|--:|--:|" + ("--:|" if peer else ""),
    ]
    for r in rows:
        ratio = f" {r['relationships_per_s'] / peer['relationships_per_s']:.2f}× |" if peer else ""
        lines.append(
            f"| {r['mode']} | {r['batch_size']} | {r['seconds']:.1f} | {r['nodes']:,} | "
            f"{r['relationships']:,} | {r['nodes_per_s']:,.0f} | {r['relationships_per_s']:,.0f} |"
            + ratio
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", help="An existing run directory (default: make one).")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "neo4j"))
    parser.add_argument("--tmp", default=None, help="Parent of the servers' data directories.")
    parser.add_argument("--batch-sizes", default="1000,5000,20000")
    parser.add_argument("--no-bulk", action="store_true", help="Skip the bulk importer.")
    parser.add_argument(
        "--no-packing", action="store_true", help="Skip the Rust vs Python packing figure."
    )
    parser.add_argument("--heap", default="2g")
    parser.add_argument("--pagecache", default="2g")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]

    run_dir = _run_dir(args)
    started_load = _load_average()
    rows: list[dict] = []
    for size in sizes:
        rows.append(_unwind(run_dir, size, args))
        print(f"batch {size}: {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    bulk = None if args.no_bulk else _bulk(run_dir, args)
    if bulk is not None:
        rows.append(bulk)

    best = max((r for r in rows if r is not bulk), key=lambda r: r["relationships_per_s"])
    print(f"## Neo4j load: {run_dir}\n")
    print(_table(rows, bulk))
    print(
        f"\nbest UNWIND batch size: {best['batch_size']} "
        f"({best['relationships_per_s']:,.0f} relationships/s; target {TARGET_RELS_PER_S:,})"
    )
    if bulk is not None:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in bulk["phases"].items())
        import_rate = bulk["relationships"] / bulk["phases"]["import"]
        print(f"bulk phases: {phases}; the importer alone: {import_rate:,.0f} relationships/s")
        print(f"bulk vs best UNWIND: {best['seconds'] / bulk['seconds']:.2f}× faster end to end")
    packing = None if args.no_packing else _packing(run_dir, 5000)
    if packing is not None:
        print(
            f"packing every batch (5,000 rows) into Bolt: neo4j-rust-ext {packing['rust']:.1f} s, "
            f"pure-Python driver {packing['python']:.1f} s "
            f"({packing['python'] / packing['rust']:.1f}× slower)"
        )
    print(f"load average (1/5/15 min) at start: {started_load}; at end: {_load_average()}")

    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"neo4j-load-{run_dir.name}.json"
    out.write_text(
        json.dumps(
            {
                "run_dir": str(run_dir),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "rows": rows,
                "packing_seconds": packing,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nsaved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
