"""Order independence: the same rows in another order give the same result.

A run's result must not depend on the order of the rows of any input table (accounts,
payments, events; CSV or Parquet), nor on the order of a CSV file's columns. The property
test shuffles every table of a small synthetic world (each table its own permutation of rows
and, for CSV, of columns) and demands a byte-identical export, the same manifest result
fields and the same artefact of every stage (a failure names the first stage whose artefacts
differ). The unit tests check the graph algorithms on their own: Leiden is independent of the
order of its edges, the event codes of the order of the events, the linking stages of the
order of an accounts artefact that the validate stage did not sort.

The default run is bounded (``LINKER_ORDER_EXAMPLES``, default 3 shuffles per format); a
longer run::

    LINKER_ORDER_EXAMPLES=50 .venv/bin/pytest tests/test_order.py
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ingest_world import plain_values

from linker.graph.behaviour import account_behaviour, event_codes
from linker.graph.communities import partition_graph
from linker.pipeline import link_accounts, run
from linker.settings import LinkSettings
from linker.stages import stage_names
from linker.stages.ingest import INPUT_TABLES
from linker.synth import generate_world

EXAMPLES = int(os.environ.get("LINKER_ORDER_EXAMPLES", "3"))
SHUFFLES = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # A seed has nothing to shrink: a failing one is reported as drawn.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
seeds = st.integers(min_value=0, max_value=2**32 - 1)

# Manifest fields that describe the result (not where, when or how fast it was computed).
RESULT_FIELDS = ("counts", "problems", "settings", "allowlist", "artefacts")
STAGE_FIELDS = ("reads", "writes", "facts", "settings", "reused")


def _shuffle_csv(source: Path, target: Path, rng: np.random.Generator) -> None:
    """``source`` with its data rows and its columns in a random order (cells unchanged)."""
    with source.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    columns = rng.permutation(len(header))
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([header[c] for c in columns])
        for r in rng.permutation(len(rows)):
            writer.writerow([rows[r][c] for c in columns])


def _shuffle_parquet(source: Path, target: Path, rng: np.random.Generator) -> None:
    """``source`` with its rows in a random order, in several row groups."""
    table = pq.read_table(source)
    table = table.take(rng.permutation(table.num_rows))
    pq.write_table(table, target, row_group_size=max(1, table.num_rows // 3))


def _result(out: Path) -> dict[str, Any]:
    """The export's bytes and the manifest fields that must not depend on row order.

    The validated events table keeps the input's row order (docs/reliability.md): its hash is
    left out of the stages' records and the table is compared as a multiset of rows.
    """
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    run_manifest = manifest["run"]
    events = pd.read_parquet(Path(manifest["run_dir"]) / "tables" / "events.parquet")
    events = plain_values(events)  # compared and sorted by value

    def record(stage: dict[str, Any]) -> dict[str, Any]:
        kept = {k: stage[k] for k in STAGE_FIELDS}
        for side in ("reads", "writes"):
            kept[side] = {k: v for k, v in kept[side].items() if k != "events"}
        return kept

    return {
        "export": out.read_bytes(),
        "export_manifest": {k: manifest["export"][k] for k in ("rows", "by_action", "sha256")},
        **{k: run_manifest[k] for k in RESULT_FIELDS},
        "stages": {name: record(stage) for name, stage in run_manifest["stages"].items()},
        "events": events.sort_values(sorted(events.columns)).reset_index(drop=True),
    }


def _assert_same(expected: dict[str, Any], got: dict[str, Any], what: str) -> None:
    # The first stage (in run order) whose artefacts differ is where the order leaks in.
    leaks = [n for n in stage_names() if got["stages"].get(n) != expected["stages"].get(n)]
    where = f" (first differing stage: {leaks[0]})" if leaks else ""
    assert got["export"] == expected["export"], f"{what}: the export differs{where}"
    for key in expected:
        if key == "events":
            pd.testing.assert_frame_equal(got[key], expected[key], check_exact=True)
        else:
            assert got[key] == expected[key], f"{what}: {key} differs{where}"


def _write_world(root: Path, n_accounts: int, seed: int) -> tuple[Path, Path]:
    """A synthetic world as CSV, and the same tables as typed Parquet (the validated ones)."""
    world = root / "csv"
    generate_world(n_accounts, seed, world)
    (world / "labels.csv").unlink()  # ground truth for `linker evaluate`, never read by a run
    typed = root / "parquet"
    typed.mkdir()
    probe = root / "probe"
    run(world, probe / "takedown.csv")
    for name in INPUT_TABLES:
        shutil.copyfile(
            probe / "takedown.run" / "tables" / f"{name}.parquet", typed / f"{name}.parquet"
        )
    return world, typed


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("order-world")
    csv_dir, parquet_dir = _write_world(root, 1000, 3)
    baselines = {}
    for fmt, directory in (("csv", csv_dir), ("parquet", parquet_dir)):
        out = root / f"base-{fmt}" / "takedown.csv"
        run(directory, out)
        baselines[fmt] = _result(out)
    return {"root": root, "csv": csv_dir, "parquet": parquet_dir, "baselines": baselines}


def _shuffled_run(world: dict[str, Any], fmt: str, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    work = world["root"] / f"{fmt}-{seed}"
    shutil.rmtree(work, ignore_errors=True)
    data = work / "data"
    data.mkdir(parents=True)
    for name in INPUT_TABLES:
        source = world[fmt] / f"{name}.{fmt}"
        if fmt == "csv":
            _shuffle_csv(source, data / source.name, rng)
        else:
            _shuffle_parquet(source, data / source.name, rng)
    out = work / "takedown.csv"
    run(data, out)
    result = _result(out)
    shutil.rmtree(work)
    return result


@SHUFFLES
@given(seed=seeds)
def test_shuffled_csv_rows_and_columns_give_the_same_result(
    small_world: dict[str, Any], seed: int
) -> None:
    got = _shuffled_run(small_world, "csv", seed)
    _assert_same(small_world["baselines"]["csv"], got, f"CSV shuffled with seed {seed}")


@SHUFFLES
@given(seed=seeds)
def test_shuffled_parquet_rows_give_the_same_result(small_world: dict[str, Any], seed: int) -> None:
    got = _shuffled_run(small_world, "parquet", seed)
    _assert_same(small_world["baselines"]["parquet"], got, f"Parquet shuffled with seed {seed}")


def test_the_world_is_not_trivially_order_free(small_world: dict[str, Any]) -> None:
    """The property means something only if the world has clusters, flags and lockstep."""
    counts = small_world["baselines"]["csv"]["counts"]
    assert counts["clusters"] > 0 and counts["suspend"] + counts["review"] > 0
    facts = small_world["baselines"]["csv"]["stages"]["behaviour"]["writes"]
    assert "lockstep" in facts


def test_larger_world_shuffled_gives_the_same_export(tmp_path: Path) -> None:
    """The issue's 10,000-account world (seed 3), every table shuffled once."""
    began = time.perf_counter()
    world = tmp_path / "world"
    generate_world(10_000, 3, world)
    (world / "labels.csv").unlink()
    run(world, tmp_path / "base" / "takedown.csv")
    expected = _result(tmp_path / "base" / "takedown.csv")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    rng = np.random.default_rng(12)
    for name in INPUT_TABLES:
        _shuffle_csv(world / f"{name}.csv", shuffled / f"{name}.csv", rng)
    run(shuffled, tmp_path / "again" / "takedown.csv")
    _assert_same(expected, _result(tmp_path / "again" / "takedown.csv"), "10k world shuffled")
    # Kept in the default run only while it stays cheap.
    assert time.perf_counter() - began < 120


def test_leiden_ignores_edge_order_and_direction() -> None:
    rng = np.random.default_rng(5)
    n = 300
    edges = rng.integers(0, n, size=(1500, 2))
    edges = edges[edges[:, 0] != edges[:, 1]]
    weights = rng.random(len(edges)) + 0.1
    expected = partition_graph(n, edges, weights, seed=9)
    assert len(np.unique(expected)) > 1
    for k in range(3):
        order = np.random.default_rng(k).permutation(len(edges))
        flipped = edges[order][:, ::-1] if k % 2 else edges[order]
        got = partition_graph(n, flipped, weights[order], seed=9)
        assert got.tolist() == expected.tolist()


def test_leiden_communities_are_numbered_by_their_first_node() -> None:
    edges = np.array([[3, 4], [4, 5], [3, 5], [0, 1], [1, 2], [0, 2]])
    membership = partition_graph(6, edges, np.ones(len(edges)), seed=1)
    assert membership.tolist() == [0, 0, 0, 1, 1, 1]


def _events(n_accounts: int, n_events: int, seed: int) -> pd.DataFrame:
    """Events over 30 days; a new model appears on day 20 (its pivot features are means
    over the accounts)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-07-01", tz="UTC")
    hour = rng.integers(0, 30 * 24, n_events)
    model = rng.choice(["m-2", "m-1", "m-3"], n_events).astype(object)
    late = hour >= 20 * 24
    model[late & (rng.random(n_events) < 0.4)] = "m-new"
    return pd.DataFrame(
        {
            "account_id": [f"a{i:03d}" for i in rng.integers(0, n_accounts, n_events)],
            # Whole hours: many events of one account share a timestamp.
            "ts": start + pd.to_timedelta(hour * 3600, unit="s"),
            "model": model,
            "prompt_fingerprint": rng.choice([f"pf{k}" for k in range(7)], n_events),
            "ip": rng.choice([f"10.0.0.{k}" for k in range(9)], n_events),
            "requests": rng.integers(1, 5, n_events),
            "input_tokens": rng.integers(1, 500, n_events),
            "output_tokens": rng.integers(1, 500, n_events),
        }
    )


def test_event_codes_ignore_the_order_of_the_events() -> None:
    events = _events(20, 600, 1)
    ids = pd.Series([f"a{i:03d}" for i in range(20)], dtype="string")
    expected = event_codes(events, ids)
    for k in range(3):
        shuffled = events.sample(frac=1.0, random_state=k).reset_index(drop=True)
        got = event_codes(shuffled, ids)
        assert got.attrs["models"] == expected.attrs["models"]
        # Rows at the same account and second may come in any order: compare as sets.
        columns = list(expected.columns)
        assert (
            got.sort_values(columns)
            .reset_index(drop=True)
            .equals(expected.sort_values(columns).reset_index(drop=True))
        )


def test_behaviour_features_ignore_the_order_of_accounts_and_events() -> None:
    events = _events(900, 20000, 2)
    accounts = pd.DataFrame(
        {
            "account_id": pd.array([f"a{i:03d}" for i in range(900)], dtype="string"),
            "created_at": pd.Timestamp("2026-06-01", tz="UTC")
            + pd.to_timedelta(np.arange(900) * 60, unit="s"),
        }
    )
    expected = account_behaviour(events, accounts).set_index("account_id")
    assert (expected["pivot_model"] == "m-new").any()
    shuffled_accounts = accounts.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled_events = events.sample(frac=1.0, random_state=4).reset_index(drop=True)
    got = account_behaviour(shuffled_events, shuffled_accounts).set_index("account_id")
    pd.testing.assert_frame_equal(got.loc[expected.index], expected, check_exact=True)


def test_link_accounts_ignores_the_order_of_an_unsorted_accounts_table(
    small_world: dict[str, Any],
) -> None:
    """The linking stages number accounts in account_id order themselves: an accounts
    artefact in any order (another engine's) gives the same scores and clusters."""
    tables = small_world["parquet"]
    accounts = pd.read_parquet(tables / "accounts.parquet")
    events = pd.read_parquet(tables / "events.parquet")
    from linker.observations import build_observations

    observations = build_observations(
        {
            "accounts": accounts,
            "events": events,
            "payments": pd.read_parquet(tables / "payments.parquet"),
        }
    )
    expected = link_accounts(accounts, observations, LinkSettings(), events=events)
    rng = np.random.default_rng(6)
    got = link_accounts(
        accounts.iloc[rng.permutation(len(accounts))].reset_index(drop=True),
        observations.iloc[rng.permutation(len(observations))].reset_index(drop=True),
        LinkSettings(),
        events=events.iloc[rng.permutation(len(events))].reset_index(drop=True),
    )
    by_id = got.scores.set_index("account_id").loc[expected.scores["account_id"]].reset_index()
    pd.testing.assert_frame_equal(by_id, expected.scores, check_exact=True)
    pd.testing.assert_frame_equal(got.clusters, expected.clusters, check_exact=True)
    pd.testing.assert_frame_equal(got.links, expected.links, check_exact=True)
