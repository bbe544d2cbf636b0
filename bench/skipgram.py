"""Skip-gram trainers side by side: our numba kernel against gensim, on BlogCatalog's walks.

One set of node2vec walks (BlogCatalog, p = q = 1/4, r = 10, l = 80, walk seed 0) is trained
by each trainer with the same settings (d = 128, window 10, 5 negatives, ``sample=1e-3``,
learning rate 0.025 -> 0.0001) on 1 and 2 threads, and the vectors are scored with the
node2vec paper's protocol (bench/embed.py ``macro_micro_f1``: 50% labelled, one-vs-rest
logistic regression, Macro-F1 over 5 splits). Training time excludes the walks; the numba
kernels are compiled before the timing. Vectors from one thread are trained twice and
compared, to show they are bit-identical.

Usage::

    python bench/skipgram.py                 # the docs/embeddings.md trainer table
    python bench/skipgram.py --epochs 1 --trainers gensim   # gensim's schedule on 1 and 2 threads

Results are printed as Markdown and saved as
``bench/results/skipgram-blogcatalog-e<epochs>.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _embed_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_embed", ROOT / "bench" / "embed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_embed"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trainers", nargs="+", default=["gensim", "numba"])
    parser.add_argument("--p", type=float, default=0.25)
    parser.add_argument("--q", type=float, default=0.25)
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()

    from linker.graph.embed import node2vec_walks, train_skipgram

    bench = _embed_bench()
    adjacency, labels = bench.load_blogcatalog()
    walks = node2vec_walks(
        adjacency, walks_per_node=bench.R, walk_length=bench.L, p=args.p, q=args.q, seed=0
    )
    n = adjacency.shape[0]
    train_skipgram(walks[:20], n, dimensions=8, epochs=1)  # compile outside the timing
    rows: list[dict[str, Any]] = []
    for epochs in args.epochs:
        for threads in args.threads:
            for trainer in args.trainers:
                params: dict[str, Any] = dict(
                    dimensions=bench.D,
                    window=bench.K,
                    negative=bench.NEGATIVE,
                    epochs=epochs,
                    workers=threads,
                    trainer=trainer,
                    seed=0,
                )
                start = time.perf_counter()
                vectors = train_skipgram(walks, n, **params)
                seconds = time.perf_counter() - start
                macro, micro = bench.macro_micro_f1(vectors, labels, splits=args.splits)
                row: dict[str, Any] = {
                    "trainer": trainer,
                    "threads": threads,
                    "epochs": epochs,
                    "seconds": seconds,
                    "macro_f1": macro,
                    "micro_f1": micro,
                }
                if threads == 1:
                    row["repeat_identical"] = bool(
                        np.array_equal(vectors, train_skipgram(walks, n, **params))
                    )
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    lines = [
        f"BlogCatalog walks: {int((walks >= 0).sum()):,} tokens, p={args.p:g}, q={args.q:g}",
        "",
        "| trainer | threads | epochs | train s | × numba | Macro-F1 | Micro-F1 | repeatable |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ours = next(
            r["seconds"]
            for r in rows
            if r["trainer"] == "numba"
            and r["threads"] == row["threads"]
            and r["epochs"] == row["epochs"]
        )
        repeat = {True: "bit-identical", False: "differs"}.get(row.get("repeat_identical"), "")
        lines.append(
            f"| {row['trainer']} | {row['threads']} | {row['epochs']} | {row['seconds']:.1f} | "
            f"{row['seconds'] / ours:.2f} | {row['macro_f1']:.4f} | {row['micro_f1']:.4f} | "
            f"{repeat} |"
        )
    result = {
        "walk_tokens": int((walks >= 0).sum()),
        "p": args.p,
        "q": args.q,
        "rows": rows,
        "meta": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
    }
    epochs_tag = "-".join(str(e) for e in args.epochs)
    out = ROOT / "bench" / "results" / f"skipgram-blogcatalog-e{epochs_tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
