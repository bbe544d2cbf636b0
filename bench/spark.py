"""The Spark engine beside the embedded one on one world, in one process (issue 15).

Runs ``linker run`` on DATA_DIR with the embedded engine, then with ``--engine spark``
(``local[N]``), checks that the two takedown lists are byte-identical and the
``observations``, ``behaviour`` and ``communities`` artefacts equal, and prints each run's
per-stage seconds and the whole run's wall and CPU seconds (this process plus the Spark JVM)
side by side, with the Spark stages' splits: normalise (session start, Spark job); behaviour
(the per-account totals in Spark, the driver's pivot and lockstep); communities (the
strong-link and customer components by large-star / small-star and their rounds, Leiden per
component). After the runs, on the warm session, it times two parts that moved against their
embedded peers on the same files: the observations, the per-account totals, and the
strong-link components.
Saves the figures in ``bench/results/spark-<name>.json``.

Usage::

    .venv/bin/python bench/spark.py DATA_DIR [--master local[2]] [--partitions 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from linker.pipeline import run
from linker.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def _jvm_cpu_seconds() -> float:
    """CPU seconds of the local Spark JVM (the py4j gateway's process and its finished
    children), 0 before it starts or when it is not a local process."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if proc is None:
        return 0.0
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in fields[11:15]) / ticks


def _cpu_seconds() -> float:
    """CPU seconds of this process and the Spark JVM it started."""
    return time.process_time() + _jvm_cpu_seconds()


def _totals_warm(run_dir: Path) -> dict[str, float]:
    """The per-account totals again, on the warm session: Spark's job against the embedded
    engine's codes and totals (the part of the stage that moved), same events file."""
    from pyspark.sql import SparkSession

    from linker.graph.behaviour import account_totals, event_codes
    from linker.stages.spark import spark_account_totals

    events_file = run_dir / "tables" / "events.parquet"
    accounts = pd.read_parquet(run_dir / "tables" / "accounts.parquet", columns=["account_id"])
    ids = accounts["account_id"].astype("string").sort_values().reset_index(drop=True)
    began = time.perf_counter()
    codes = event_codes(pd.read_parquet(events_file), ids)
    expected = account_totals(codes, len(ids))
    embedded = time.perf_counter() - began
    spark = SparkSession.getActiveSession()
    began = time.perf_counter()
    got = spark_account_totals(spark.read.parquet(str(events_file)), ids)
    seconds = time.perf_counter() - began
    assert got.equals(expected), "Spark's totals differ from the embedded ones"
    return {"embedded_seconds": round(embedded, 2), "spark_seconds": round(seconds, 2)}


def _observations_warm(run_dir: Path) -> dict[str, float]:
    """The observations table again, on the warm session: Spark's plan against the embedded
    ``build_observations``, both from the validated tables' Parquet files."""
    from pyspark.sql import SparkSession

    from linker.observations import build_observations, observation_frame
    from linker.spark_observations import spark_observations

    files = {n: run_dir / "tables" / f"{n}.parquet" for n in ("accounts", "payments", "events")}
    began = time.perf_counter()
    expected = build_observations({n: pd.read_parquet(f) for n, f in files.items()})
    embedded = time.perf_counter() - began
    spark = SparkSession.getActiveSession()
    began = time.perf_counter()
    got = spark_observations({n: spark.read.parquet(str(f)) for n, f in files.items()})
    got = observation_frame(got.toArrow())
    seconds = time.perf_counter() - began
    assert got.equals(expected), "Spark's observations differ from the embedded ones"
    return {"embedded_seconds": round(embedded, 2), "spark_seconds": round(seconds, 2)}


def _components_warm(run_dir: Path, kinds: tuple[str, ...]) -> dict[str, float]:
    """The strong-link components again, on the warm session: Spark's large-star /
    small-star against the embedded incidence matrix and scipy, same artefact files."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from linker.graph.bipartite import IdentifierGraph, build_bipartite
    from linker.graph.communities import components_over
    from linker.graph.spark_components import identifier_components, labels_in_order

    files = {name: run_dir / f"{name}.parquet" for name in ("observations", "identifiers")} | {
        "accounts": run_dir / "tables" / "accounts.parquet"
    }
    began = time.perf_counter()
    accounts = pd.read_parquet(files["accounts"], columns=["account_id"])
    ids = accounts["account_id"].astype("string").sort_values().reset_index(drop=True)
    bip = build_bipartite(ids, pd.read_parquet(files["observations"]))
    graph = IdentifierGraph.of(bip, pd.read_parquet(files["identifiers"]))
    expected = components_over(bip.matrix, graph.columns_of(kinds))
    embedded = time.perf_counter() - began
    spark = SparkSession.getActiveSession()
    began = time.perf_counter()
    found = identifier_components(
        spark.read.parquet(str(files["observations"])),
        kinds,
        accounts=spark.read.parquet(str(files["accounts"])),
        excluded=spark.read.parquet(str(files["identifiers"])).where(F.col("is_supernode")),
    )
    got = labels_in_order(found.frame.toPandas(), ids)
    seconds = time.perf_counter() - began
    assert (got == expected).all(), "Spark's components differ from the embedded ones"
    return {
        "embedded_seconds": round(embedded, 2),
        "spark_seconds": round(seconds, 2),
        "rounds": found.rounds,
        "components_over_one": int((pd.Series(expected).value_counts() > 1).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    settings = load_settings(
        overrides={"spark.master": args.master, "spark.shuffle_partitions": args.partitions}
    )
    figures: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        outs = {}
        for engine in ("local", "spark"):
            out = Path(tmp) / f"{engine}.csv"
            began, cpu = time.perf_counter(), _cpu_seconds()
            result = run(args.data_dir, out, settings=settings, engine=engine)
            wall, cpu = time.perf_counter() - began, _cpu_seconds() - cpu
            stages = result.manifest["stages"]
            figures[engine] = {
                "wall_seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2),
                "stages": {name: stage["seconds"] for name, stage in stages.items()},
                "behaviour_facts": stages["behaviour"]["facts"],
                "communities_facts": stages["communities"]["facts"],
                "normalise_facts": stages["normalise"]["facts"],
            }
            outs[engine] = out
        same_export = outs["local"].read_bytes() == outs["spark"].read_bytes()
        same = {
            name: pd.read_parquet(Path(tmp) / "local.run" / f"{name}.parquet").equals(
                pd.read_parquet(Path(tmp) / "spark.run" / f"{name}.parquet")
            )
            for name in ("observations", "behaviour", "communities")
        }
        figures["observations_warm"] = _observations_warm(Path(tmp) / "spark.run")
        figures["totals_warm"] = _totals_warm(Path(tmp) / "spark.run")
        figures["components_warm"] = _components_warm(
            Path(tmp) / "spark.run", settings.link.strong_kinds
        )
    print(f"world: {args.data_dir}  master: {args.master}  partitions: {args.partitions}")
    print(f"machine: {platform.machine()}, {platform.python_version()}")
    print(f"same takedown list: {same_export}; same artefacts: {json.dumps(same)}")
    print(f"{'stage':<14}{'embedded s':>12}{'spark s':>10}")
    for name, seconds in figures["local"]["stages"].items():  # type: ignore[union-attr]
        other = figures["spark"]["stages"][name]  # type: ignore[index]
        print(f"{name:<14}{seconds:>12.2f}{other:>10.2f}")
    print(
        f"{'wall':<14}{figures['local']['wall_seconds']:>12}{figures['spark']['wall_seconds']:>10}"
    )
    print(f"{'cpu':<14}{figures['local']['cpu_seconds']:>12}{figures['spark']['cpu_seconds']:>10}")
    print("spark behaviour split:", json.dumps(figures["spark"]["behaviour_facts"]))
    print("spark normalise split:", json.dumps(figures["spark"]["normalise_facts"]))
    print("spark communities split:", json.dumps(figures["spark"]["communities_facts"]))
    print("observations again, warm session:", json.dumps(figures["observations_warm"]))
    print("totals again, warm session (read + totals):", json.dumps(figures["totals_warm"]))
    print("strong components again, warm session:", json.dumps(figures["components_warm"]))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    target = results / f"spark-{args.data_dir.name}.json"
    target.write_text(
        json.dumps(
            {
                "data_dir": str(args.data_dir),
                "master": args.master,
                "partitions": args.partitions,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "same_export": same_export,
                "same_artefacts": same,
                **figures,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
