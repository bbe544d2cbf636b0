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
Memory: the driver's peak resident set for each run (this process's ``VmHWM``, reset before
each run through ``/proc/self/clear_refs``), the Spark JVM's own ``VmHWM`` (it is a child
process of this one in local mode) and the peak of the summed resident sets of the JVM's
children (Spark's Python daemon and workers: the normalisers, Leiden), sampled every 0.2 s.
Saves the figures in ``bench/results/spark-<name>.json``.

Usage::

    .venv/bin/python bench/spark.py DATA_DIR [--master local[2]] [--partitions 8]
        [--engines local,spark|spark,local] [--conf spark.driver.memory=4g ...]

It also records the takedown lists compared as decisions (same accounts and actions, same
clusters up to renaming, largest score difference), the run directory's artefact sizes
(rows, Parquet and Arrow bytes) and Spark's own per-stage metrics (task time, input,
shuffle, spill) summed per pipeline stage. The JSON is written after each run, so a run
stopped part-way keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import threading
import time
from datetime import UTC
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


def _jvm_pid() -> int | None:
    """The local Spark JVM's process id, None before it starts or when it is not local."""
    from pyspark import SparkContext

    proc = getattr(SparkContext._gateway, "proc", None)
    return None if proc is None else int(proc.pid)


def _hwm_bytes(pid: int | str = "self") -> int:
    """A process's peak resident set (``VmHWM``) in bytes, 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_hwm() -> bool:
    """Resets this process's ``VmHWM`` (Linux ``clear_refs`` 5); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _WorkerSampler:
    """Samples the summed resident set of the Spark JVM's child processes (the Python
    daemon and workers) every ``interval`` seconds and keeps the peak."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(self.interval):
            pid = _jvm_pid()
            if pid is None:
                continue
            try:
                children = psutil.Process(pid).children(recursive=True)
            except psutil.Error:
                continue
            total = 0
            for child in children:
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            self.peak = max(self.peak, total)
            self.samples += 1

    def __enter__(self) -> _WorkerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _spark_stages(began: float, stages: dict[str, float]) -> dict[str, dict[str, int]]:
    """Spark's own metrics of the run's Spark stages, summed per pipeline stage: tasks,
    executor run time (ms), input, shuffle write and read, spill (bytes). They come from the
    session UI's status REST API; a Spark stage belongs to the pipeline stage whose time
    window (run start plus the manifest's stage seconds, in order) holds its submission.
    Empty when the session has no UI."""
    import urllib.request
    from datetime import datetime

    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    url = spark.sparkContext.uiWebUrl if spark is not None else None
    if not url:
        return {}
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{url}/api/v1/applications/{app}/stages", timeout=60) as r:
        listed = json.load(r)
    fields = (
        "numTasks",
        "executorRunTime",
        "inputBytes",
        "inputRecords",
        "shuffleWriteBytes",
        "shuffleWriteRecords",
        "shuffleReadBytes",
        "memoryBytesSpilled",
        "diskBytesSpilled",
        "outputBytes",
    )
    ends, total = [], began
    for name, seconds in stages.items():
        total += seconds
        ends.append((total, name))
    found: dict[str, dict[str, int]] = {}
    for stage in listed:
        if stage.get("status") != "COMPLETE" or "submissionTime" not in stage:
            continue
        when = datetime.strptime(stage["submissionTime"], "%Y-%m-%dT%H:%M:%S.%f%Z").replace(
            tzinfo=UTC
        )
        at = when.timestamp()
        owner = next((name for end, name in ends if at <= end + 0.5), "after")
        entry = found.setdefault(owner, {"spark_stages": 0} | dict.fromkeys(fields, 0))
        entry["spark_stages"] += 1
        for field in fields:
            entry[field] += int(stage.get(field, 0))
    return found


def _mib(n: int) -> float:
    return round(n / 2**20, 1)


def _cpu_seconds() -> float:
    """CPU seconds of this process and the Spark JVM it started."""
    return time.process_time() + _jvm_cpu_seconds()


def _artefact_sizes(run_dir: Path) -> dict[str, dict[str, int]]:
    """Rows, bytes on disk (Parquet) and bytes in memory (Arrow) of every Parquet artefact
    of a run directory: the per-row sizes that docs/scale.md's plan scales from."""
    import pyarrow.parquet as pq

    sizes = {}
    for path in sorted(run_dir.rglob("*.parquet")):
        table = pq.read_table(path)
        sizes[str(path.relative_to(run_dir))] = {
            "rows": table.num_rows,
            "parquet_bytes": path.stat().st_size,
            "arrow_bytes": table.nbytes,
        }
    return sizes


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
    from linker.spark_observations import collect_sorted, spark_observations

    files = {n: run_dir / "tables" / f"{n}.parquet" for n in ("accounts", "payments", "events")}
    began = time.perf_counter()
    expected = build_observations({n: pd.read_parquet(f) for n, f in files.items()})
    embedded = time.perf_counter() - began
    spark = SparkSession.getActiveSession()
    began = time.perf_counter()
    got = spark_observations({n: spark.read.parquet(str(f)) for n, f in files.items()})
    # The engine's way back (Parquet parts): at 1M, toArrow's results exceed the driver's
    # default spark.driver.maxResultSize of 1 GiB.
    got = observation_frame(collect_sorted(got, run_dir))
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


def _same_decisions(local: Path, spark: Path) -> dict[str, object]:
    """The two takedown lists compared as decisions: the same accounts per action, the same
    clusters up to renaming (the same partition of the listed accounts), and the largest
    score difference."""
    a = pd.read_csv(local, dtype={"cluster_id": "string"}).set_index("account_id").sort_index()
    b = pd.read_csv(spark, dtype={"cluster_id": "string"}).set_index("account_id").sort_index()
    same_accounts = a.index.equals(b.index)
    same_actions = same_accounts and bool((a["action"] == b["action"]).all())
    same_clusters = False
    score_gap = None
    if same_accounts:
        pairs = pd.DataFrame({"a": a["cluster_id"].fillna(""), "b": b["cluster_id"].fillna("")})
        unique = pairs.drop_duplicates()
        same_clusters = bool(unique["a"].is_unique and unique["b"].is_unique)
        score_gap = float((a["score"] - b["score"]).abs().max())
    return {
        "listed": [len(a), len(b)],
        "suspended": [int((a["action"] == "suspend").sum()), int((b["action"] == "suspend").sum())],
        "same_accounts_and_actions": same_actions,
        "same_clusters_up_to_renaming": same_clusters,
        "max_score_difference": score_gap,
    }


def _save(args: argparse.Namespace, figures: dict[str, object]) -> Path:
    """Writes what was measured so far (a long run that is stopped keeps its first part)."""
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    target = results / f"spark-{args.data_dir.name}.json"
    target.write_text(
        json.dumps(
            {
                "data_dir": str(args.data_dir),
                "master": args.master,
                "partitions": args.partitions,
                "conf": dict(args.conf),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                **figures,
            },
            indent=2,
        )
        + "\n"
    )
    return target


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: give KEY=VALUE")
    return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--conf",
        type=_key_value,
        action="append",
        default=[],
        help="a Spark configuration key as KEY=VALUE (repeatable), e.g. spark.driver.memory=4g",
    )
    parser.add_argument(
        "--engines",
        default="local,spark",
        choices=["local,spark", "spark,local"],
        help="the order of the two runs (spark first on a world the time box may not finish)",
    )
    args = parser.parse_args()
    settings = load_settings(
        overrides={
            "spark.master": args.master,
            "spark.shuffle_partitions": args.partitions,
            "spark.conf": dict(args.conf),
        }
    )
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        outs = {}
        for engine in args.engines.split(","):
            out = Path(tmp) / f"{engine}.csv"
            reset = _reset_hwm()
            with _WorkerSampler() as workers:
                began, cpu, started = time.perf_counter(), _cpu_seconds(), time.time()
                result = run(args.data_dir, out, settings=settings, engine=engine)
                wall, cpu = time.perf_counter() - began, _cpu_seconds() - cpu
            driver_peak = _hwm_bytes()
            jvm = _jvm_pid() if engine == "spark" else None
            stages = result.manifest["stages"]
            figures[engine] = {
                "wall_seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2),
                "stages": {name: stage["seconds"] for name, stage in stages.items()},
                "behaviour_facts": stages["behaviour"]["facts"],
                "communities_facts": stages["communities"]["facts"],
                "normalise_facts": stages["normalise"]["facts"],
                "driver_peak_mib": _mib(driver_peak),
                "driver_peak_reset": reset,
                "jvm_peak_mib": _mib(_hwm_bytes(jvm)) if jvm is not None else None,
                "python_workers_peak_mib": _mib(workers.peak) if jvm is not None else None,
                "worker_samples": workers.samples,
            }
            if engine == "spark":
                figures["spark_stages"] = _spark_stages(started, figures[engine]["stages"])
            outs[engine] = out
            _save(args, figures)
        same_export = outs["local"].read_bytes() == outs["spark"].read_bytes()
        figures["same_export"] = same_export
        figures["decisions"] = _same_decisions(outs["local"], outs["spark"])
        same = {
            name: pd.read_parquet(Path(tmp) / "local.run" / f"{name}.parquet").equals(
                pd.read_parquet(Path(tmp) / "spark.run" / f"{name}.parquet")
            )
            for name in ("observations", "behaviour", "communities")
        }
        figures["same_artefacts"] = same
        figures["artefacts"] = _artefact_sizes(Path(tmp) / "spark.run")
        _save(args, figures)
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
    for key in ("driver_peak_mib", "jvm_peak_mib", "python_workers_peak_mib"):
        print(f"{key:<24}{figures['local'][key]!s:>10}{figures['spark'][key]!s:>10}")
    print("spark behaviour split:", json.dumps(figures["spark"]["behaviour_facts"]))
    print("spark normalise split:", json.dumps(figures["spark"]["normalise_facts"]))
    print("spark communities split:", json.dumps(figures["spark"]["communities_facts"]))
    print("observations again, warm session:", json.dumps(figures["observations_warm"]))
    print("totals again, warm session (read + totals):", json.dumps(figures["totals_warm"]))
    print("strong components again, warm session:", json.dumps(figures["components_warm"]))
    print("decisions:", json.dumps(figures["decisions"]))
    print("saved:", _save(args, figures))


if __name__ == "__main__":
    main()
