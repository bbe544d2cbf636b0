"""The Spark engine (issue 15): same artefacts and the same takedown list as the embedded one.

One SparkSession (``local[2]``, no UI) serves the whole test session: starting one costs
about 18 s. The tests that need Spark skip only when ``pyspark`` is not installed; `make
test` installs the ``spark`` extra, so there they run.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.engine.spark import pyspark_available
from linker.errors import SettingsError
from linker.graph.behaviour import account_totals, event_codes
from linker.graph.bipartite import IdentifierGraph, build_bipartite
from linker.graph.communities import components_over
from linker.settings import load_settings
from linker.synth import generate_world

needs_spark = pytest.mark.skipif(
    not pyspark_available(), reason="pyspark is not installed (pip install 'linker[spark]')"
)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need linker's venv
    session = (
        SparkSession.builder.master("local[2]")
        .appName("linker-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spark-world")
    generate_world(1500, 5, root)
    return root


def _run(world: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(cli, ["run", str(world), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output


def test_spark_settings_collect_every_problem() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            overrides={
                "spark.master": " ",
                "spark.shuffle_partitions": 0,
                "spark.conf": {"executor.memory": "4g"},
            }
        )
    message = str(caught.value)
    assert "spark.master" in message
    assert "spark.shuffle_partitions" in message
    assert "executor.memory" in message
    settings = load_settings(overrides={"spark.conf": {"spark.executor.memory": "4g"}})
    assert settings.spark.conf == {"spark.executor.memory": "4g"}


def test_engine_spark_without_pyspark_is_one_line(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("linker.engine.spark.pyspark_available", lambda: False)
    out = tmp_path / "takedown.csv"
    result = CliRunner().invoke(cli, ["run", str(world), "--out", str(out), "--engine", "spark"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: --engine spark needs pyspark: install linker[spark]"
    ]
    assert not out.exists()


def test_spark_master_needs_the_spark_engine(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "takedown.csv"
    args = ["run", str(world), "--out", str(out), "--spark-master", "local[2]"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "--spark-master needs --engine spark" in result.output
    assert not out.exists()


def _events() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events with the awkward cases: missing requests and tokens, missing IP and prompt,
    events at the same second, sessions split by a pause, a heavy day, prompt ties, an
    unknown account's events and an account without events."""
    accounts = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "quiet"],
            "created_at": pd.to_datetime(["2026-01-01"] * 4, utc=True),
        }
    )
    stamps = [
        "2026-01-20T10:00:00",
        "2026-01-20T10:00:00",
        "2026-01-20T10:20:00",
        "2026-01-20T12:00:00",
        "2026-01-21T23:59:59",
        "2026-01-22T00:00:00",
        "2026-01-22T00:00:00",
        "2026-01-25T05:00:00",
        "2026-01-25T05:10:00",
    ]
    events = pd.DataFrame(
        {
            "account_id": ["a", "a", "a", "a", "b", "b", "c", "ghost", "c"],
            "ts": pd.to_datetime(stamps, utc=True),
            "ip": ["1.1.1.1", None, "1.1.1.2", "1.1.1.1", "2.2.2.2", "2.2.2.3", None, "9", "3"],
            "prompt_fingerprint": ["p1", "p2", "p2", None, "p1", "p3", "p4", "p1", "p4"],
            "model": ["m"] * 9,
            "requests": pd.array([1, None, 60, 2, 30, 30, 5, 1, 70], dtype="Int64"),
            "input_tokens": pd.array([10, 20, None, 5, 1, 1, 1, 1, 1], dtype="Int64"),
            "output_tokens": pd.array([100, 0, 30, None, 2, 2, 2, 2, 2], dtype="Int64"),
        }
    )
    return events, accounts


@needs_spark
@pytest.mark.spark
def test_spark_totals_equal_the_embedded_totals(spark: Any) -> None:
    from linker.stages.spark import spark_account_totals

    events, accounts = _events()
    ids = accounts["account_id"].astype("string")
    expected = account_totals(event_codes(events, ids), len(ids))
    # Row order must not matter to Spark either.
    shuffled = events.sample(frac=1.0, random_state=3).reset_index(drop=True)
    got = spark_account_totals(
        spark.createDataFrame(pa.Table.from_pandas(shuffled, preserve_index=False)), ids
    )
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert expected["sessions"].tolist() == [2.0, 1.0, 2.0, 0.0]
    assert expected["heavy_day"].to_numpy()[3] == np.iinfo(np.int64).max


@needs_spark
@pytest.mark.spark
def test_run_on_spark_gives_the_embedded_takedown_list(
    spark: Any, world: Path, tmp_path: Path
) -> None:
    del spark  # the engine reuses the test session's Spark session
    local, remote = tmp_path / "local.csv", tmp_path / "spark.csv"
    _run(world, local)
    _run(world, remote, "--engine", "spark", "--spark-master", "local[2]")
    assert local.read_bytes() == remote.read_bytes()
    assert len(local.read_text().splitlines()) > 1, "the world must flag someone"
    for name in ("observations", "behaviour", "lockstep", "communities"):
        a = pd.read_parquet(tmp_path / "local.run" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "spark.run" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    manifests = [
        json.loads((tmp_path / f"{n}.run" / "manifest.json").read_text())
        for n in ("local", "spark")
    ]
    assert [m["engine"] for m in manifests] == ["local", "spark"]
    assert manifests[0]["run_id"] == manifests[1]["run_id"]
    facts = manifests[1]["stages"]["behaviour"]["facts"]
    assert facts["on_driver"] == ["pivot", "lockstep"] and facts["spark_seconds"] > 0
    assert "spark_seconds" not in manifests[0]["stages"]["behaviour"]["facts"]
    assert manifests[1]["stages"]["normalise"]["facts"]["spark_seconds"] > 0
    facts = manifests[1]["stages"]["communities"]["facts"]
    assert facts["strong_rounds"] >= 0 and facts["components_spark_seconds"] > 0
    assert facts["contracted_components"] > facts["leiden_components"] >= 1
    assert "strong_rounds" not in manifests[0]["stages"]["communities"]["facts"]
    communities = pd.read_parquet(tmp_path / "spark.run" / "communities.parquet")
    assert (communities["customer"].value_counts() > 1).any(), "some customer pays for two"


def _chain_edges(rng: np.random.Generator) -> list[tuple[int, int]]:
    """Long chains (the worst case for the rounds), in label order and shuffled, with
    duplicates, reversed duplicates, self-loops, a node with only a self-loop and a tree."""
    ordered = np.arange(120)
    shuffled = rng.permutation(80) + 1000
    tree = [(2000 + i, 2000 + (i - 1) // 2) for i in range(1, 31)]
    edges = [*itertools.pairwise(ordered), *itertools.pairwise(shuffled), *tree]
    edges += [(5, 4), (4, 5), (1000, 1000), (9000, 9000), (3000, 3001)]
    return [(int(a), int(b)) for a, b in edges]


@needs_spark
@pytest.mark.spark
def test_star_components_are_the_connected_components_on_long_chains(spark: Any) -> None:
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from linker.graph.spark_components import star_components

    edges = _chain_edges(np.random.default_rng(7))
    found = star_components(spark.createDataFrame(edges, ["src", "dst"]))
    got = found.frame.toPandas()
    pairs = np.array([e for e in edges if e[0] != e[1]])
    n = int(pairs.max()) + 1
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    nodes = np.unique(pairs)
    smallest = pd.Series(nodes).groupby(label[nodes]).transform("min").to_numpy()
    assert dict(zip(got["node"], got["component"], strict=True)) == dict(
        zip(nodes.tolist(), smallest.tolist(), strict=True)
    )
    assert len(got) == len(nodes)  # one row per node; 9000 has only a self-loop
    # A chain of 120 needs several rounds, and fewer than log2(n)^2 (Kiveris et al.).
    assert 2 <= found.rounds <= int(np.ceil(np.log2(len(nodes)))) ** 2


@needs_spark
@pytest.mark.spark
def test_spark_identifier_components_equal_components_over(spark: Any) -> None:
    from linker.graph.spark_components import identifier_components, labels_in_order

    rng = np.random.default_rng(11)
    names = [f"acc-{i:03d}" for i in rng.permutation(150)]
    # A chain of 100 accounts through cards, in shuffled id order; pairs through emails; a
    # super-node card that would join everyone; a card of an unknown account; IPs (not strong).
    rows = [(names[i], "card", f"c{i}") for i in range(99)]
    rows += [(names[i + 1], "card", f"c{i}") for i in range(99)]
    rows += [(names[100 + i], "email", f"e{i // 2}") for i in range(40)]
    rows += [(name, "card", "public") for name in names]
    rows += [("ghost", "card", "c5"), ("ghost", "card", "g"), (names[140], "card", "g")]
    rows += [(names[141 + i % 2], "ip", "10.0.0.1") for i in range(2)]
    rows += [(names[145], "email", None)]
    observations = pd.DataFrame(rows, columns=["account_id", "kind", "value"])
    account_ids = pd.Series(sorted(names), dtype="string")
    bip = build_bipartite(account_ids, observations)
    public = (bip.values == "public") & (bip.kinds == "card")
    identifiers = pd.DataFrame(
        {"kind": bip.kinds, "value": bip.values, "weight": 1.0, "is_supernode": public}
    )
    graph = IdentifierGraph.of(bip, identifiers)
    expected = components_over(bip.matrix, graph.columns_of(["card", "email"]))
    found = identifier_components(
        spark.createDataFrame(observations.sample(frac=1.0, random_state=1)),
        ["card", "email"],
        accounts=spark.createDataFrame(account_ids.to_frame("account_id")),
        excluded=spark.createDataFrame(identifiers[public][["kind", "value"]]),
    )
    got = labels_in_order(found.frame.toPandas(), account_ids)
    np.testing.assert_array_equal(got, expected)
    assert np.bincount(expected).max() == 100  # the chain, not cut and not joined to all
    assert found.rounds >= 2


_AWKWARD = {
    "accounts.csv": """account_id,created_at,email,signup_ip,device_id,country,billing_customer_id
a,2026-01-01T00:00:00Z,J.Doe+promo@GoogleMail.com,10.1.2.3,Dev-1,de,cust-1
b,2026-01-02T08:00:00+02:00,jdoe@gmail.com,2001:DB8::1,dev-1 ,DE,cust-1
c,2026-01-03,Ünïcode.Name42@Exämple.org,,ＤＥＶ-2,fr,
d,2026-01-04T00:00:00Z,,10.1.2.200,,,cust-2
e,2026-01-05T00:00:00Z,anna.lee1987@gmail.com,,dev-2,us,
""",
    "payments.csv": """account_id,payment_fingerprint,card_bin,billing_country,added_at
a,FP-1,411111,DE,2026-01-10T00:00:00Z
b,fp-1 ,411111,DE,
c,fp-2,55555555,FR,2026-01-11T00:00:00Z
c,fp-2,55555555,FR,2026-01-12T00:00:00Z
""",
    "events.csv": "account_id,ts,ip,device_id,user_agent,model,requests,input_tokens,"
    """output_tokens,prompt_fingerprint
a,2026-01-20T10:00:00Z,10.1.2.3,dev-1,Mozilla/5.0 (X11; Linux) Chrome/120.0.1,m1,3,10,20,P1
a,2026-01-21T10:00:00Z,10.1.2.3,dev-1,Mozilla/5.0 (X11; Linux) Chrome/121.0.2,m1,,10,20,p1
b,2026-01-20T11:00:00Z,2001:db8:0:0::1,,python-requests/2.31,m1,7,,,p1
d,2026-01-22T00:00:00Z,,dev-9,,m2,1,1,1,
e,2026-01-19T00:00:00Z,10.1.3.4,ＤＥＶ-2,curl/8.0,m2,2,1,1,p2
""",
}


@needs_spark
@pytest.mark.spark
def test_spark_observations_equal_the_embedded_ones(spark: Any, tmp_path: Path) -> None:
    from linker.io.validate import validate_dataset
    from linker.observations import build_observations, observation_frame
    from linker.spark_observations import collect_sorted, spark_observations

    for name, text in _AWKWARD.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    tables = validate_dataset(tmp_path, observations=False).tables
    expected = build_observations(tables)
    frames = {
        name: spark.createDataFrame(
            pa.Table.from_pandas(frame.sample(frac=1.0, random_state=5), preserve_index=False)
        )
        for name, frame in tables.items()
    }
    got = observation_frame(spark_observations(frames).toArrow())
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    # The engine's way to the driver: Parquet parts in the run directory, read in order.
    through_files = observation_frame(collect_sorted(spark_observations(frames), tmp_path))
    pd.testing.assert_frame_equal(through_files, expected, check_exact=True)
    # The awkward values did reach the normalisers: shared mailbox, device, payment, subnet.
    shared = expected.groupby(["kind", "value"])["account_id"].nunique()
    for kind, value in [
        ("mailbox", "jdoe@gmail.com"),
        ("device", "dev-1"),
        ("device", "ｄｅｖ-2"),  # from accounts and events, non-ASCII
        ("payment", "fp-1"),
        ("signup_subnet", "10.1.2.0/24"),
    ]:
        assert shared[(kind, value)] == 2
    assert not (expected["value"] == "").any()


def test_collect_sorted_keeps_the_global_order_across_parts(spark: Any, tmp_path: Path) -> None:
    from linker.spark_observations import collect_sorted

    rng = np.random.default_rng(11)
    n = 5000
    words = np.array(["b", "a", "ä", "Z", "a\u0301", "𝔸", "ab", ""])
    source = pa.table(
        {
            "text": words[rng.integers(0, len(words), n)],
            "number": rng.integers(-1000, 1000, n),
            "when": pa.array(rng.integers(0, 2**40, n) * 1000, pa.timestamp("us", tz="UTC")),
        }
    )
    frame = spark.createDataFrame(source).repartition(7).orderBy("text", "number", "when")
    got = collect_sorted(frame, tmp_path)
    assert got.num_rows == n
    assert got.equals(frame.toArrow())
    expected = source.sort_by(
        [("text", "ascending"), ("number", "ascending"), ("when", "ascending")]
    )
    assert got.to_pylist() == expected.to_pylist(), "Arrow's order is code-point order too"
    assert list(tmp_path.iterdir()) == [], "the parts are removed"


def _clustered_graph(rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
    """Components Leiden must split (cliques joined by light edges, shuffled node numbers),
    pairs and stars that are settled, a heavy single edge, parallel edges and lonely nodes."""
    edges: list[tuple[int, int]] = []
    weights: list[float] = []
    base = 0
    for cliques in (2, 3, 4):
        for c in range(cliques):
            members = range(base + 6 * c, base + 6 * c + 6)
            for a, b in itertools.combinations(members, 2):
                edges.append((a, b))
                weights.append(float(rng.uniform(1.0, 3.0)))
            if c:
                edges.append((base + 6 * c, base + 6 * c - 1))
                weights.append(0.2)
        base += 6 * cliques + 1  # one lonely node between components
    for _ in range(8):
        edges.append((base, base + 1))
        weights.append(float(rng.uniform(0.5, 2.0)))
        base += 2
    edges += [(base, base + i) for i in range(1, 5)] + [(base + 5, base + 6)] * 2
    weights += [1.0] * 4 + [40.0, 35.5]  # a star; a heavy pair given as parallel edges
    n = base + 8
    relabel = rng.permutation(n)
    pairs = relabel[np.array(edges)]
    flip = rng.random(len(pairs)) < 0.5
    pairs[flip] = pairs[flip][:, ::-1]
    order = rng.permutation(len(pairs))
    return n, pairs[order], np.array(weights)[order]


@needs_spark
@pytest.mark.spark
def test_spark_leiden_per_component_equals_partition_components(spark: Any) -> None:
    from linker.graph.communities import partition_components
    from linker.graph.spark_communities import spark_partition_components

    n, edges, weights = _clustered_graph(np.random.default_rng(4))
    for resolution in (1.0, 6.0):
        expected = partition_components(n, edges, weights, resolution=resolution, seed=9)
        found = spark_partition_components(spark, n, edges, weights, resolution=resolution, seed=9)
        np.testing.assert_array_equal(found.membership, expected)
        assert found.components == 3 + 8 + 2
        assert found.leiden_components >= 3  # the clique components were Leiden's
        assert (expected == -1).sum() == 4  # the lonely nodes
    # Leiden did split the cliques, and the heavy pair is two communities at resolution 6.
    assert len(np.unique(expected[expected >= 0])) > 13
