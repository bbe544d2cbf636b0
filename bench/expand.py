"""Benchmark of ``linker expand``: precision@N when seeded with 5% of a ring's accounts.

Target (issue 6, item 2): on the 100k-account synthetic world, ``expand`` seeded with 5% of
a ring's accounts reaches precision >= 0.9 in its top N, where N is the number of that ring's
accounts not among the seeds. For each of the largest rings (``--rings``; 0 = all) this picks
5% of its accounts (at least one, seeded draw), runs :func:`linker.expand.expand` with
``top=N`` and counts the ring's accounts among the N rows. The peer, measured in the same
run: rank accounts by how many linking (non-supernode, shared) identifiers they share with
the seeds, a plain two-hop count on the same bipartite graph.

Usage::

    .venv/bin/python bench/expand.py                       # 100k world, 3 largest rings
    .venv/bin/python bench/expand.py --accounts 100000 --rings 0
    .venv/bin/python bench/expand.py --dimensions 256 --method node2vec   # node2vec instead

The world and its run directory are cached under bench/out/expand/; results go to
bench/results/expand-<accounts>-d<dimensions>.json (``-node2vec`` appended for that method;
node2vec uses the ``[embed]`` defaults, 128 dimensions, and ignores ``--dimensions``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from linker.engine import RunDirectory
from linker.expand import expand, resolve_run
from linker.graph.bipartite import identifier_graph
from linker.settings import Settings
from linker.synth import generate_world

logger = logging.getLogger("bench.expand")

ROOT = Path(__file__).resolve().parent


def shared_count_baseline(run_dir: Path, seeds: list[str], top: int) -> list[str]:
    """The peer: accounts ranked by identifier-sharing with the seeds (two-hop count)."""
    store = RunDirectory.open(run_dir)
    graph = identifier_graph(
        store.read("accounts", columns=["account_id"])["account_id"].astype("string"),
        store.read("observations"),
        store.read("identifiers"),
    )
    bipartite = graph.bipartite
    matrix = sp.csr_matrix(bipartite.matrix[:, np.flatnonzero(graph.linkable)])
    ids = bipartite.account_ids.astype(str)
    is_seed = np.isin(ids, seeds)
    held_by_seeds = np.asarray(matrix[is_seed].sum(axis=0)).ravel()
    score = matrix @ held_by_seeds
    score[is_seed] = -1
    order = np.lexsort((ids, -score))[:top]
    return list(ids[order])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7, help="world seed")
    parser.add_argument("--rings", type=int, default=3, help="largest rings to test (0 = all)")
    parser.add_argument("--seed-share", type=float, default=0.05)
    parser.add_argument("--dimensions", type=int, default=64, help="FastRP vector length")
    parser.add_argument("--method", choices=["fastrp", "node2vec"], default="fastrp")
    parser.add_argument(
        "--workers", type=int, default=1, help="node2vec training threads (1 = repeatable)"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "expand")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    world = args.work / f"world-{args.accounts}-s{args.seed}"
    if not (world / ".complete").exists():
        generate_world(args.accounts, args.seed, world, fmt="parquet")
        (world / ".complete").write_text("ok\n")
    started = time.perf_counter()
    run_dir = resolve_run(world, run_dir=args.work / f"{world.name}.run")
    run_seconds = time.perf_counter() - started

    labels = pd.read_parquet(world / "labels.parquet")
    ringed = labels[labels["ring_id"].notna() & (labels["ring_id"] != "")]
    rings = ringed.groupby("ring_id")["account_id"].apply(lambda s: sorted(s.astype(str)))
    rings = rings.loc[sorted(rings.index, key=lambda r: (-len(rings[r]), r))]
    if args.rings:
        rings = rings.iloc[: args.rings]

    link = dataclasses.replace(
        Settings().link,
        embedding=dataclasses.replace(Settings().link.embedding, dimensions=args.dimensions),
    )
    embed = dataclasses.replace(Settings().embed, method=args.method, workers=args.workers)
    settings = Settings(link=link, embed=embed)
    rows: list[dict[str, Any]] = []
    for index, (ring_id, members) in enumerate(rings.items()):
        rng = np.random.default_rng([args.seed, index])
        k = max(1, round(args.seed_share * len(members)))
        seeds = sorted(rng.choice(members, size=k, replace=False).tolist())
        top = len(members) - k
        began = time.perf_counter()
        ranked = expand(run_dir, seeds, top=top, settings=settings)
        seconds = time.perf_counter() - began
        precision = float(ranked["account_id"].isin(members).sum() / top)
        began = time.perf_counter()
        peer = shared_count_baseline(run_dir, seeds, top)
        peer_seconds = time.perf_counter() - began
        peer_precision = float(np.isin(peer, members).sum() / top)
        row = {
            "ring_id": ring_id,
            "ring_size": len(members),
            "seeds": k,
            "N": top,
            "precision_at_N": round(precision, 4),
            "expand_seconds": round(seconds, 2),
            "peer_shared_count_precision_at_N": round(peer_precision, 4),
            "peer_seconds": round(peer_seconds, 2),
        }
        rows.append(row)
        logger.info("%s", row)
    result = {
        "accounts": args.accounts,
        "world_seed": args.seed,
        "seed_share": args.seed_share,
        "dimensions": args.dimensions if args.method == "fastrp" else embed.dimensions,
        "method": args.method,
        "workers": args.workers,
        "run_seconds_or_reuse": round(run_seconds, 1),
        "rings": rows,
        "min_precision_at_N": min(r["precision_at_N"] for r in rows),
    }
    suffix = "" if args.method == "fastrp" else f"-{args.method}"
    out = ROOT / "results" / f"expand-{args.accounts}-d{args.dimensions}{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s", out)


if __name__ == "__main__":
    main()
