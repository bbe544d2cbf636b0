"""`linker score`: new accounts scored against a finished run, on a held-out synthetic world.

The world: `linker synth` (3,000 accounts, seed 7). A tenth of every ring's accounts and sixty
benign accounts are held out (their rows removed from accounts, payments and events); the
run sees the rest. Scoring the held-out accounts must flag the members of every ring the run
flagged, with reasons naming that ring's cluster and its members, and flag no innocent
(`labels.csv` says which is which).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.graph.bursts import burst_window, kth_gaps
from linker.pipeline import run
from linker.settings import RunSettings, Settings
from linker.signup import SCORE_COLUMNS, ScoringIndex, score_accounts
from linker.synth import generate_world

TABLES = ("accounts", "payments", "events")
KEY = "0123456789abcdef-test-key"


def _hold_out(world: Path, keep: Path, new: Path) -> set[str]:
    labels = pd.read_csv(world / "labels.csv", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(1)
    held: list[str] = []
    for _, ring in labels[labels["ring_id"] != ""].groupby("ring_id"):
        held += list(rng.choice(ring["account_id"], size=max(1, len(ring) // 10), replace=False))
    benign = labels[labels["ring_id"] == ""]["account_id"]
    held += list(rng.choice(benign, size=60, replace=False))
    chosen = set(held)
    for folder in (keep, new):
        folder.mkdir(parents=True)
    for table in TABLES:
        frame = pd.read_csv(world / f"{table}.csv", dtype=str, keep_default_na=False)
        out = frame["account_id"].isin(chosen)
        frame[~out].to_csv(keep / f"{table}.csv", index=False)
        frame[out].to_csv(new / f"{table}.csv", index=False)
    return chosen


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("score")
    generate_world(3000, 7, root / "world")
    _hold_out(root / "world", root / "keep", root / "new")
    run(root / "keep", root / "takedown.csv")
    return {
        "root": root,
        "labels": root / "world" / "labels.csv",
        "new": root / "new",
        "run": root / "takedown.run",
    }


def _ring_clusters(run_dir: Path, labels: pd.DataFrame) -> dict[str, str]:
    """Each ring the run flagged: the cluster holding most of its flagged kept members."""
    scores = pd.read_parquet(run_dir / "scores.parquet")
    flagged = scores[scores["action"].isin(["suspend", "review"]) & scores["cluster_id"].notna()]
    flagged = flagged.merge(labels, on="account_id")
    flagged = flagged[flagged["ring_id"] != ""]
    return {
        str(ring): str(group["cluster_id"].mode().iloc[0])
        for ring, group in flagged.groupby("ring_id")
    }


def test_held_out_ring_members_are_flagged_with_their_rings_cluster(
    held_out: dict[str, Path],
) -> None:
    labels = pd.read_csv(held_out["labels"], dtype=str, keep_default_na=False)
    rings = _ring_clusters(held_out["run"], labels)
    assert rings, "the run flagged no ring: nothing to score against"
    result = score_accounts(held_out["new"], held_out["run"])
    scored = result.scores.merge(labels, on="account_id")
    members = scored[scored["ring_id"].isin(list(rings))]
    assert len(members) >= 5
    flagged = members[members["action"].isin(["suspend", "review"])]
    assert len(flagged) >= 0.8 * len(members), members[["account_id", "score", "reasons"]]
    ring_of = dict(zip(labels["account_id"], labels["ring_id"], strict=True))
    for row in flagged.itertuples(index=False):
        cluster = rings[row.ring_id]
        assert row.cluster_id == cluster
        assert f"cluster {cluster}" in row.reasons
        named = re.findall(r"acct_[0-9a-f]{16}", row.reasons)
        assert named and all(ring_of[a] == row.ring_id for a in named), row.reasons
        assert row.account_id not in named
        assert row.reason_codes and 0 < row.score <= 1


def test_held_out_innocents_are_not_flagged(held_out: dict[str, Path]) -> None:
    labels = pd.read_csv(held_out["labels"], dtype=str, keep_default_na=False)
    result = score_accounts(held_out["new"], held_out["run"])
    scored = result.scores.merge(labels, on="account_id")
    innocents = scored[scored["ring_id"] == ""]
    assert len(innocents) == 60
    assert (innocents["action"] == "none").all(), innocents[innocents["action"] != "none"]


def test_signup_data_alone_still_flags_ring_members_and_no_innocent(
    held_out: dict[str, Path], tmp_path: Path
) -> None:
    labels = pd.read_csv(held_out["labels"], dtype=str, keep_default_na=False)
    rings = _ring_clusters(held_out["run"], labels)
    shutil.copy(held_out["new"] / "accounts.csv", tmp_path / "accounts.csv")
    shutil.copy(held_out["new"] / "payments.csv", tmp_path / "payments.csv")
    scored = score_accounts(tmp_path, held_out["run"]).scores.merge(labels, on="account_id")
    assert (scored[scored["ring_id"] == ""]["action"] == "none").all()
    members = scored[scored["ring_id"].isin(list(rings))]
    assert (members["action"] != "none").sum() >= 0.5 * len(members)


def test_an_account_scores_the_same_alone_as_in_its_batch(held_out: dict[str, Path]) -> None:
    index = ScoringIndex.load(held_out["run"])
    tables = {
        t: pd.read_csv(held_out["new"] / f"{t}.csv", dtype=str, keep_default_na=False)
        for t in TABLES
    }
    for t in TABLES:
        for column in ("created_at", "added_at", "ts"):
            if column in tables[t]:
                tables[t][column] = pd.to_datetime(tables[t][column], utc=True)
    tables["events"]["requests"] = tables["events"]["requests"].astype("int64")
    batch = index.score(tables)
    top = batch.iloc[0]
    assert top["action"] == "suspend"
    alone = index.score(
        {
            t: f[f["account_id"] == top["account_id"]].reset_index(drop=True)
            for t, f in tables.items()
        }
    )
    assert alone.iloc[0].to_dict() == top.to_dict()


def test_rescoring_a_runs_own_member_leaves_itself_out(held_out: dict[str, Path]) -> None:
    index = ScoringIndex.load(held_out["run"])
    scores = pd.read_parquet(held_out["run"] / "scores.parquet")
    member = scores[scores["action"] == "suspend"]["account_id"].iloc[0]
    accounts = pd.read_parquet(held_out["run"] / "tables" / "accounts.parquet")
    row = index.score(accounts[accounts["account_id"] == member].reset_index(drop=True)).iloc[0]
    assert member not in row["reasons"]


def test_cli_writes_every_account_in_order_atomically_and_repeatably(
    held_out: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    runner = CliRunner()
    args = ["score", str(held_out["new"]), "--against", str(held_out["run"]), "--out", str(out)]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"wrote {out}" in first.output
    data = out.read_bytes()
    frame = pd.read_csv(out, dtype={"cluster_id": str}, keep_default_na=False)
    assert tuple(frame.columns) == SCORE_COLUMNS
    assert len(frame) == len(pd.read_csv(held_out["new"] / "accounts.csv"))
    rank = frame["action"].map({"suspend": 0, "review": 1, "none": 2})
    assert (np.diff(rank) >= 0).all()
    assert frame["score"].between(0, 1).all()
    assert not list(tmp_path.glob(".*.tmp"))
    assert runner.invoke(cli, args).exit_code == 0
    assert out.read_bytes() == data


def test_bad_rows_are_quarantined_and_counted(held_out: dict[str, Path], tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(held_out["new"], new)
    accounts = pd.read_csv(new / "accounts.csv", dtype=str, keep_default_na=False)
    accounts.loc[0, "created_at"] = "yesterday"
    accounts.to_csv(new / "accounts.csv", index=False)
    out = tmp_path / "scores.csv"
    runner = CliRunner()
    args = ["score", str(new), "--against", str(held_out["run"]), "--out", str(out)]
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert "1 rejected" in done.output
    assert len(pd.read_csv(out)) == len(accounts) - 1
    quarantined = pd.read_csv(tmp_path / "scores.csv.quarantine" / "accounts.csv")
    assert quarantined["account_id"].tolist() == [accounts.loc[0, "account_id"]]
    failed = runner.invoke(cli, [*args, "--on-error", "fail"])
    assert failed.exit_code == 2
    assert "column created_at" in failed.output and "Traceback" not in failed.output


def test_a_directory_without_a_finished_run_is_refused_in_one_line(
    held_out: dict[str, Path], tmp_path: Path
) -> None:
    done = CliRunner().invoke(cli, ["score", str(held_out["new"]), "--against", str(tmp_path)])
    assert done.exit_code == 2
    assert "not a finished run directory" in done.output
    assert len(done.output.strip().splitlines()) == 1


def test_an_output_inside_the_run_directory_is_refused(held_out: dict[str, Path]) -> None:
    target = held_out["run"] / "scores.parquet"
    before = target.read_bytes()
    args = ["score", str(held_out["new"]), "--against", str(held_out["run"]), "--out", str(target)]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 2 and "lies in the run directory" in done.output
    assert target.read_bytes() == before


def test_a_pseudonymised_run_needs_its_key(
    held_out: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINKER_PSEUDONYM_KEY", KEY)
    settings = Settings(run=RunSettings(pseudonymise=True))
    run(held_out["root"] / "keep", tmp_path / "p.csv", settings=settings)
    plain = score_accounts(held_out["new"], held_out["run"]).scores
    hidden = score_accounts(held_out["new"], tmp_path / "p.run").scores
    columns = ["account_id", "cluster_id", "score", "action", "reason_codes"]
    assert hidden[columns].equals(plain[columns])
    flagged = hidden[hidden["action"] != "none"]
    assert flagged["reasons"].str.contains("h:").all()
    runner = CliRunner()
    args = ["score", str(held_out["new"]), "--against", str(tmp_path / "p.run")]
    monkeypatch.setenv("LINKER_PSEUDONYM_KEY", KEY + "-other")
    wrong = runner.invoke(cli, args)
    assert wrong.exit_code == 2 and "another key" in wrong.output
    monkeypatch.delenv("LINKER_PSEUDONYM_KEY")
    missing = runner.invoke(cli, args)
    assert missing.exit_code == 2 and "LINKER_PSEUDONYM_KEY" in missing.output
    assert len(missing.output.strip().splitlines()) == 1


def test_the_burst_window_follows_the_data_not_a_constant() -> None:
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0, 3600, 40))
    window = burst_window(times, 5)
    assert 0 < window < 3600
    assert burst_window(times * 24, 5) == pytest.approx(window * 24)
    assert (kth_gaps(times, 5) > 0).all()
    assert burst_window(times[:5], 5) > 0  # fewer members than k: the k falls to n - 1
    assert burst_window(times[:1], 5) == 0.0


def test_a_run_without_flagged_clusters_flags_nobody(
    held_out: dict[str, Path], tmp_path: Path
) -> None:
    benign = tmp_path / "benign"
    benign.mkdir()
    labels = pd.read_csv(held_out["labels"], dtype=str, keep_default_na=False)
    innocent = set(labels[labels["ring_id"] == ""]["account_id"])
    for table in TABLES:
        frame = pd.read_csv(held_out["new"] / f"{table}.csv", dtype=str, keep_default_na=False)
        frame[frame["account_id"].isin(innocent)].to_csv(benign / f"{table}.csv", index=False)
    done = run(benign, tmp_path / "t.csv")
    assert done.counts["suspend"] == done.counts["review"] == 0
    index = ScoringIndex.load(tmp_path / "t.run")
    assert index.cluster_ids == []
    scores = score_accounts(held_out["new"], tmp_path / "t.run").scores
    assert (scores["action"] == "none").all() and scores["cluster_id"].isna().all()
