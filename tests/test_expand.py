"""`linker expand` and the embedding-review rule, on a tiny world with a known answer.

The world: two rings of eight accounts (each ring shares signup subnets, devices in pairs,
three cards and a mail domain among its own accounts only) and twenty unrelated accounts
with nothing in common with anyone.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.errors import InputError
from linker.expand import expand, read_seeds, resolve_run
from linker.graph.bipartite import IdentifierGraph, build_bipartite
from linker.graph.proximity import embedding_review
from linker.graph.weights import identifier_weights
from linker.observations import build_observations
from linker.pipeline import run
from linker.settings import EmbeddingReviewSettings, LinkSettings, Settings

RING_SIZE = 8


def _ring(tag: str, octet: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    accounts, payments = [], []
    for i in range(RING_SIZE):
        account = f"{tag}{i}"
        accounts.append(
            {
                "account_id": account,
                "created_at": f"2026-03-0{1 + i % 5}T10:{i:02d}:00Z",
                "email": f"{tag}{i}x{octet}@{tag}-mail.example",
                "signup_ip": f"10.0.{octet}.{10 + i}",
                "device_id": f"dev-{tag}-{i // 2}",
                "country": "US",
                "billing_customer_id": f"cust-{account}",
            }
        )
        payments.append(
            {
                "account_id": account,
                "payment_fingerprint": f"card-{tag}-{i % 3}",
                "card_bin": "",
                "billing_country": "US",
                "added_at": "2026-03-05T00:00:00Z",
            }
        )
    return accounts, payments


def write_world(folder: Path) -> Path:
    ring_a, pay_a = _ring("a", 1)
    ring_b, pay_b = _ring("b", 2)
    benign = [
        {
            "account_id": f"u{i:02d}",
            "created_at": f"2025-0{1 + i % 9}-1{i % 10}T08:00:00Z",
            "email": f"user{i}@home{i}.example",
            "signup_ip": f"172.16.{i}.5",
            "device_id": f"dev-u{i}",
            "country": "DE",
            "billing_customer_id": f"cust-u{i}",
        }
        for i in range(20)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(ring_a + ring_b + benign).to_csv(folder / "accounts.csv", index=False)
    pd.DataFrame(pay_a + pay_b).to_csv(folder / "payments.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_world(tmp_path_factory.mktemp("expand") / "world")


@pytest.fixture(scope="module")
def run_dir(world: Path) -> Path:
    target = world.parent / "world.run"
    run(world, target / "takedown.csv", run_dir=target)
    return target


def test_expand_ranks_the_seeds_ring_first_with_concrete_reasons(run_dir: Path) -> None:
    seeds = ["a0", "a3"]
    ranked = expand(run_dir, seeds, top=RING_SIZE - len(seeds))
    ring_a = {f"a{i}" for i in range(RING_SIZE)}
    assert list(ranked.columns) == ["account_id", "score", "reasons"]
    assert set(ranked["account_id"]) == ring_a - set(seeds)
    assert ranked["score"].is_monotonic_decreasing
    for _, row in ranked.iterrows():
        assert "nearest confirmed: a" in row["reasons"]
        # A shared identifier, and the seed it is shared with, are named.
        assert "shares " in row["reasons"] and (
            " with a0" in row["reasons"] or " with a3" in row["reasons"]
        )
    # Beyond the ring, seeds stay out and ring B and the unrelated accounts rank below ring A.
    everything = expand(run_dir, seeds, top=1000)
    assert not set(seeds) & set(everything["account_id"])
    assert set(everything["account_id"].head(RING_SIZE - len(seeds))) == ring_a - set(seeds)


def test_expand_is_deterministic_and_writes_atomically(run_dir: Path, tmp_path: Path) -> None:
    first = tmp_path / "one.csv"
    second = tmp_path / "two.csv"
    expand(run_dir, ["b1"], top=20, out=first)
    expand(run_dir, ["b1"], top=20, out=second)
    assert first.read_bytes() == second.read_bytes()
    written = pd.read_csv(first, dtype={"account_id": str})
    assert written["account_id"].head(RING_SIZE - 1).str.startswith("b").all()
    assert {p.name for p in tmp_path.iterdir()} == {"one.csv", "two.csv"}  # no temp files left


def test_expand_with_node2vec_finds_the_ring_and_repeats_byte_for_byte(
    run_dir: Path, tmp_path: Path
) -> None:
    seeds = tmp_path / "confirmed.csv"
    seeds.write_text("account_id\na0\na3\n")
    outputs = [tmp_path / "n2v-1.csv", tmp_path / "n2v-2.csv"]
    for out in outputs:
        done = CliRunner().invoke(
            cli,
            ["expand", str(run_dir), "--seeds", str(seeds), "--top", "10", "--out", str(out),
             "--method", "node2vec"],
        )  # fmt: skip
        assert done.exit_code == 0, done.output
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    ranked = pd.read_csv(outputs[0], dtype={"account_id": str})
    ring_a = {f"a{i}" for i in range(RING_SIZE)} - {"a0", "a3"}
    assert set(ranked["account_id"].head(len(ring_a))) == ring_a
    fastrp = expand(run_dir, ["a0", "a3"], top=10)
    # A different embedding: the same ring, other similarities.
    assert not np.array_equal(ranked["score"].to_numpy(), fastrp["score"].to_numpy())


def test_seed_file_errors_name_the_file_row_and_column(run_dir: Path, tmp_path: Path) -> None:
    no_column = tmp_path / "confirmed.csv"
    no_column.write_text("id\na0\n")
    with pytest.raises(InputError, match=r"confirmed.csv: no account_id column"):
        read_seeds(no_column)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("account_id\na0\nnobody\n")
    with pytest.raises(InputError, match=r"unknown.csv: row 3: column account_id: 'nobody'"):
        expand(run_dir, unknown, top=5)


def test_a_saved_run_of_the_data_dir_is_found_and_reused(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    created = resolve_run(world)
    assert created == tmp_path / "world.run"
    stamp = (created / "manifest.json").stat().st_mtime_ns
    again = resolve_run(world)
    assert again == created and (created / "manifest.json").stat().st_mtime_ns == stamp
    # A changed input file makes the saved run stale: it is recomputed.
    accounts = world.parent / "changed"
    write_world(accounts)
    with open(accounts / "accounts.csv", "a", encoding="utf-8") as handle:
        handle.write("late,2026-04-01T00:00:00Z,late@x.example,192.0.2.1,dev-late,FR,c-late\n")
    changed_run = resolve_run(accounts)
    assert changed_run == tmp_path / "changed.run"
    os.utime(accounts / "accounts.csv")
    assert resolve_run(accounts) == changed_run


def test_cli_expand_writes_the_ranking_and_reports_one_line_errors(
    world: Path, run_dir: Path, tmp_path: Path
) -> None:
    seeds = tmp_path / "confirmed.csv"
    seeds.write_text("account_id,note\nb2,chargeback\nb5,confirmed\n")
    out = tmp_path / "ranked.csv"
    runner = CliRunner()
    done = runner.invoke(
        cli,
        [
            "expand",
            str(world),
            "--seeds",
            str(seeds),
            "--top",
            "6",
            "--out",
            str(out),
            "--run-dir",
            str(run_dir),
        ],
    )
    assert done.exit_code == 0, done.output
    ranked = pd.read_csv(out, dtype={"account_id": str})
    assert set(ranked["account_id"]) == {f"b{i}" for i in (0, 1, 3, 4, 6, 7)}

    bad = tmp_path / "bad.csv"
    bad.write_text("customer\nb2\n")
    failed = runner.invoke(cli, ["expand", str(run_dir), "--seeds", str(bad), "--out", str(out)])
    assert failed.exit_code == 2
    assert failed.output.strip().count("\n") == 0 and "no account_id column" in failed.output
    assert "Traceback" not in failed.output

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("account_id\nzz-missing\n")
    failed = runner.invoke(
        cli, ["expand", str(run_dir), "--seeds", str(unknown), "--out", str(out)]
    )
    assert failed.exit_code == 2
    assert failed.output.strip().count("\n") == 0
    assert "row 2: column account_id: 'zz-missing'" in failed.output


# -- the embedding-review rule -------------------------------------------------------------------


def _near_world() -> tuple[pd.DataFrame, IdentifierGraph]:
    """Ring A flagged (suspend, cluster C-0001); `near` shares ring A's subnet and mail
    domain; `far` shares nothing with anyone."""
    ring, payments = _ring("a", 1)
    near = dict(
        ring[0],
        account_id="near",
        email="near@a-mail.example",
        device_id="dev-near",
        signup_ip="10.0.1.250",
        billing_customer_id="cust-near",
    )
    far = dict(
        ring[0],
        account_id="far",
        email="far@far.example",
        device_id="dev-far",
        signup_ip="198.51.100.7",
        billing_customer_id="cust-far",
    )
    accounts = pd.DataFrame([*ring, near, far]).astype("string")
    accounts["created_at"] = pd.to_datetime(accounts["created_at"], utc=True).dt.as_unit("us")
    pay = pd.DataFrame(payments).astype("string")
    pay["added_at"] = pd.to_datetime(pay["added_at"], utc=True).dt.as_unit("us")
    pay["card_bin"] = pd.array([pd.NA] * len(pay), dtype="string")
    observations = build_observations({"accounts": accounts, "payments": pay})
    bipartite = build_bipartite(accounts["account_id"], observations)
    public = np.zeros(bipartite.shape[1], dtype=bool)
    weights = identifier_weights(
        bipartite.kinds,
        bipartite.n_accounts,
        LinkSettings().kind_priors,
        bipartite.shape[0],
        public,
    )
    graph = IdentifierGraph(bipartite, weights, public)
    n = len(accounts)
    scores = pd.DataFrame(
        {
            "account_id": accounts["account_id"],
            "cluster_id": pd.array(["C-0001"] * RING_SIZE + [pd.NA, pd.NA], dtype="string"),
            "cluster_size": [RING_SIZE] * RING_SIZE + [1, 1],
            "score": [0.95] * RING_SIZE + [0.1, 0.0],
            "action": ["suspend"] * RING_SIZE + ["none", "none"],
            "reasons": ["shared cards"] * RING_SIZE + ["", ""],
        }
    )
    assert len(scores) == n
    return scores, graph


def _with_rule(threshold: float, enabled: bool = True) -> LinkSettings:
    return dataclasses.replace(
        LinkSettings(),
        embedding=EmbeddingReviewSettings(enabled=enabled, threshold=threshold, dimensions=32),
    )


def test_embedding_review_moves_a_near_account_to_review_with_a_shared_identifier() -> None:
    scores, bipartite = _near_world()
    result = embedding_review(scores, bipartite, _with_rule(0.3), seed=1)
    by_id = result.scores.set_index("account_id")
    assert by_id.loc["near", "action"] == "review"
    assert by_id.loc["near", "score"] >= LinkSettings().review_threshold
    assert "C-0001" in by_id.loc["near", "reasons"]
    assert "email_domain:a-mail.example" in by_id.loc["near", "reasons"] or (
        "signup_subnet:10.0.1.0/24" in by_id.loc["near", "reasons"]
    )
    assert by_id.loc["far", "action"] == "none"
    assert result.moved == 1
    assert result.embeddings is not None
    assert list(result.embeddings.columns) == ["account_id", "embedding"]
    assert len(result.embeddings["embedding"].iloc[0]) == 32


@pytest.mark.parametrize("threshold", [-1.0, 0.0, 0.3, 0.9])
def test_embedding_review_never_suspends(threshold: float) -> None:
    scores, bipartite = _near_world()
    # Even a "near" account already scored just under suspension is only ever reviewed.
    scores.loc[scores["account_id"] == "near", "score"] = 0.79
    result = embedding_review(scores, bipartite, _with_rule(threshold), seed=3)
    before, after = scores["action"].to_numpy(), result.scores["action"].to_numpy()
    changed = before != after
    assert (before[changed] == "none").all() and (after[changed] == "review").all()
    assert (after == "suspend").sum() == (before == "suspend").sum()
    # Without a shared non-supernode identifier nothing moves, however low the threshold.
    assert result.scores.set_index("account_id").loc["far", "action"] == "none"


def test_embedding_review_disabled_leaves_scores_alone() -> None:
    scores, bipartite = _near_world()
    result = embedding_review(scores, bipartite, _with_rule(-1.0, enabled=False))
    assert result.scores is scores and result.embeddings is None and result.moved == 0


def test_run_with_the_rule_saves_embeddings_and_keeps_suspensions(
    world: Path, tmp_path: Path
) -> None:
    off = run(world, tmp_path / "off.csv", run_dir=tmp_path / "off.run")
    settings = dataclasses.replace(Settings(), link=_with_rule(0.9))
    on = run(world, tmp_path / "on.csv", run_dir=tmp_path / "on.run", settings=settings)
    assert on.counts["suspend"] == off.counts["suspend"]
    assert on.counts["review"] >= off.counts["review"]
    embeddings = pd.read_parquet(tmp_path / "on.run" / "embeddings.parquet")
    assert embeddings["account_id"].is_unique
    assert {len(v) for v in embeddings["embedding"]} == {32}
    assert np.isfinite(np.stack(embeddings["embedding"].to_numpy())).all()
    assert not (tmp_path / "off.run" / "embeddings.parquet").exists()


def _parts(reasons: str) -> tuple[float, float]:
    cosine = float(reasons.split("; cosine ")[1].split(",")[0])
    evidence = float(reasons.split("shared-identifier evidence ")[1])
    return cosine, evidence


def test_shared_rare_evidence_outranks_embedding_similarity_alone(tmp_path: Path) -> None:
    # "x" shares one rare card with the seed a0, and a device and subnet with ring B; "y"
    # shares a device, two cards and a subnet with ring-A accounts that are not seeds, so it
    # sits near the ring in the embedding without sharing anything weighted with a seed.
    world = write_world(tmp_path / "world")
    accounts = pd.read_csv(world / "accounts.csv", dtype=str)
    payments = pd.read_csv(world / "payments.csv", dtype=str)
    extra = {"created_at": "2025-06-01T08:00:00Z", "country": "FR"}
    accounts = pd.concat(
        [
            accounts,
            pd.DataFrame(
                [
                    {
                        **extra,
                        "account_id": "x",
                        "email": "x@x.example",
                        "signup_ip": "10.0.2.99",
                        "device_id": "dev-b-0",
                        "billing_customer_id": "cust-x",
                    },
                    {
                        **extra,
                        "account_id": "y",
                        "email": "y@y.example",
                        "signup_ip": "10.0.1.99",
                        "device_id": "dev-a-3",
                        "billing_customer_id": "cust-y",
                    },
                ]
            ),
        ]
    )
    payments = pd.concat(
        [
            payments,
            pd.DataFrame(
                [
                    {
                        "account_id": aid,
                        "payment_fingerprint": "card-rare",
                        "card_bin": "",
                        "billing_country": "FR",
                        "added_at": "2026-03-05T00:00:00Z",
                    }
                    for aid in ("a0", "x")
                ]
                + [
                    {
                        "account_id": "y",
                        "payment_fingerprint": card,
                        "card_bin": "",
                        "billing_country": "FR",
                        "added_at": "2026-03-05T00:00:00Z",
                    }
                    for card in ("card-a-1", "card-a-2")
                ]
            ),
        ]
    )
    accounts.to_csv(world / "accounts.csv", index=False)
    payments.to_csv(world / "payments.csv", index=False)
    ranked = expand(world, ["a0"], top=100, run_dir=tmp_path / "world.run").set_index("account_id")
    x_cos, x_evidence = _parts(str(ranked.loc["x", "reasons"]))
    y_cos, y_evidence = _parts(str(ranked.loc["y", "reasons"]))
    assert y_cos > x_cos and y_evidence == 0 < x_evidence  # embedding alone prefers y
    assert ranked.loc["x", "score"] > ranked.loc["y", "score"]
    assert "card-rare with a0" in str(ranked.loc["x", "reasons"])
