"""Analysts' decisions feed the next run (issue 13, item 4): real runs through the CLI.

A synthetic world is generated and run once; each test writes a decisions file (and, for new
evidence, new input rows dated after the decision), runs ``linker run --decisions`` and reads
the run directory. Expected accounts are computed here from the baseline run's own graph
(observations, identifiers), not taken from the code under test.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import poisson

from linker.cli import cli
from linker.settings import Settings

HEADER = "account_id,cluster_id,decision,analyst,decided_at,note\n"


def _invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def _run(world: Path, out: Path, *extra: str) -> Any:
    result = _invoke("run", world, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return result


def _scores(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out.with_name(f"{out.stem}.run") / "scores.parquet")
    return frame.set_index("account_id")


def _manifest(out: Path) -> dict[str, Any]:
    path = out.with_name(f"{out.stem}.run") / "manifest.json"
    return dict(json.loads(path.read_text()))


def _when(moment: pd.Timestamp) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _append(path: Path, row: dict[str, str]) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    with open(path, "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerow([row.get(c, "") for c in header])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("decisions")
    world = root / "world"
    result = _invoke("synth", "--accounts", "1500", "--seed", "3", "--out", world)
    assert result.exit_code == 0, result.output
    out = root / "base.csv"
    _run(world, out)
    run_dir = root / "base.run"
    as_of = pd.Timestamp(_manifest(out)["as_of"])
    return {
        "root": root,
        "world": world,
        "out": out,
        "scores": _scores(out),
        "observations": pd.read_parquet(run_dir / "observations.parquet"),
        "identifiers": pd.read_parquet(run_dir / "identifiers.parquet"),
        "payments": pd.read_csv(world / "payments.csv", dtype=str),
        "accounts": pd.read_csv(world / "accounts.csv", dtype=str),
        "decided_at": as_of + pd.Timedelta(days=1),
    }


def _ring_pair(base: dict[str, Any]) -> tuple[str, str, str]:
    """A suspended account and another suspended member of its cluster with a card the
    first does not have: (account, peer, the peer's card)."""
    scores, payments = base["scores"], base["payments"]
    suspended = scores[scores["action"] == "suspend"].sort_index()
    cards = payments.groupby("account_id")["payment_fingerprint"].apply(set)
    account = next(a for a in suspended.index if a in cards.index)
    cluster = suspended.loc[account, "cluster_id"]
    for peer in suspended[suspended["cluster_id"] == cluster].index:
        if peer != account and peer in cards.index and cards[peer] - cards[account]:
            return account, peer, sorted(cards[peer] - cards[account])[0]
    raise AssertionError("no suspended peer with another card")


def test_cleared_account_stays_cleared_on_unchanged_evidence_and_is_flagged_on_new(
    base: dict[str, Any], tmp_path: Path
) -> None:
    account, peer, card = _ring_pair(base)
    before = base["scores"]
    assert before.loc[account, "action"] == "suspend"
    when = base["decided_at"]
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(HEADER + f"{account},,cleared,alice,{_when(when)},a family card\n")
    outs = [tmp_path / "first.csv", tmp_path / "second.csv"]
    for out in outs:
        result = _run(base["world"], out, "--decisions", decisions)
        assert "cleared kept 1, flagged on new evidence 0" in result.output
        after = _scores(out)
        assert after.loc[account, "action"] == "none"
        assert after.loc[account, "reasons"].startswith(
            f"cleared by alice on {_when(when)}; would be suspend: "
        )
        assert after.loc[account, "reason_codes"] == (
            "cleared:1;" + before.loc[account, "reason_codes"]
        )
        assert account not in pd.read_csv(out)["account_id"].tolist()
        others = after.index != account
        assert (after.loc[others, "action"] == before.loc[after.index[others], "action"]).all()
    assert outs[0].read_bytes() == outs[1].read_bytes()
    # New evidence: a payment with the peer's card, added after the clearing.
    world = tmp_path / "world"
    shutil.copytree(base["world"], world)
    added = _when(when + pd.Timedelta(days=1))
    _append(world / "payments.csv", {"account_id": account, "payment_fingerprint": card})
    rows = pd.read_csv(world / "payments.csv", dtype=str)
    rows.loc[rows.index[-1], "added_at"] = added
    rows.to_csv(world / "payments.csv", index=False)
    out = tmp_path / "third.csv"
    result = _run(world, out, "--decisions", decisions)
    assert "flagged on new evidence 1" in result.output
    after = _scores(out)
    assert after.loc[account, "action"] == "suspend"
    reason = after.loc[account, "reasons"]
    assert reason.startswith(f"new since cleared by alice on {_when(when)}: ")
    assert f"card {card} with {peer} (since {added})" in reason
    assert after.loc[account, "reason_codes"].startswith("new_since_cleared:1;")
    exported = pd.read_csv(out).set_index("account_id")
    assert exported.loc[account, "action"] == "suspend"


def _linking(observations: pd.DataFrame, identifiers: pd.DataFrame) -> pd.DataFrame:
    nodes = identifiers
    keep = (nodes["weight"] > 0) & ~nodes["is_supernode"] & (nodes["n_accounts"] >= 2)
    held = observations.merge(nodes.loc[keep, ["kind", "value", "n_accounts"]])
    return held[["account_id", "kind", "value", "n_accounts"]]


def _tied_to(run_dir: Path, confirmed: str) -> set[str]:
    """Unflagged members of the confirmed account's cluster holding values the cluster owns
    (Poisson tail below link.public_alpha) that it holds too, through two families or more:
    computed from the run's own graph with scipy, not with linker's code."""
    scores = pd.read_parquet(run_dir / "engine_scores.parquet").set_index("account_id")
    held = _linking(
        pd.read_parquet(run_dir / "observations.parquet"),
        pd.read_parquet(run_dir / "identifiers.parquet"),
    )
    cluster = scores.loc[confirmed, "cluster_id"]
    members = scores.index[scores["cluster_id"] == cluster]
    mine = held[held["account_id"].isin(members)].copy()
    k = mine.groupby(["kind", "value"])["account_id"].transform("size")
    mean = len(members) * mine["n_accounts"] / len(scores)
    owned = mine[(k >= 2) & (poisson.sf(k - 1, mean) < Settings().link.public_alpha)]
    values = owned[owned["account_id"] == confirmed][["kind", "value"]]
    ties = owned.merge(values)
    ties = ties[ties["account_id"] != confirmed]
    family = {"ip": "network", "signup_ip": "network"}
    ties = ties.assign(family=ties["kind"].map(lambda k: family.get(k, k)))
    reach = ties.groupby("account_id")["family"].nunique()
    unflagged = scores.index[scores["action"] == "none"]
    return set(reach.index[reach >= 2]) & set(unflagged)


def test_confirmed_member_sends_tied_members_and_a_newcomer_to_review(
    base: dict[str, Any], tmp_path: Path
) -> None:
    scores = base["scores"]
    sizes = scores[scores["action"] == "none"].dropna(subset=["cluster_id"])
    cluster = sizes["cluster_id"].value_counts().sort_index().idxmax()
    members = scores.index[scores["cluster_id"] == cluster]
    assert (scores.loc[members, "action"] == "none").all()
    held = _linking(base["observations"], base["identifiers"])
    in_cluster = held[held["account_id"].isin(members)]
    confirmed = in_cluster["account_id"].value_counts().sort_index().idxmin()
    mine = in_cluster[in_cluster["account_id"] == confirmed][["kind", "value"]]
    # A newcomer signing up after the confirmation on the confirmed member's network.
    world = tmp_path / "world"
    shutil.copytree(base["world"], world)
    when = base["decided_at"]
    me = base["accounts"].set_index("account_id").loc[confirmed]
    newcomer = "acct_newcomer_0001"
    signup = _when(when + pd.Timedelta(hours=2))
    _append(
        world / "accounts.csv",
        {
            "account_id": newcomer,
            "created_at": signup,
            "email": "late.student@" + str(me["email"]).rpartition("@")[2],
            "signup_ip": str(me["signup_ip"]),
            "country": str(me["country"]),
        },
    )
    ips = sorted(mine.loc[mine["kind"] == "ip", "value"])
    prompts = sorted(mine.loc[mine["kind"] == "prompt", "value"]) or [""]
    for i, ip in enumerate(ips or [str(me["signup_ip"])]):
        _append(
            world / "events.csv",
            {
                "account_id": newcomer,
                "ts": _when(when + pd.Timedelta(hours=3 + i)),
                "ip": ip,
                "model": "m-1",
                "requests": "3",
                "prompt_fingerprint": prompts[i % len(prompts)],
            },
        )
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(HEADER + f"{confirmed},,confirmed,bob,{_when(when)},\n")
    out = tmp_path / "t.csv"
    result = _run(world, out, "--decisions", decisions)
    after = _scores(out)
    assert after.loc[newcomer, "cluster_id"] == after.loc[confirmed, "cluster_id"]
    expected = _tied_to(out.with_name("t.run"), confirmed)
    assert newcomer in expected and len(expected) > 1
    assert f"review tied to confirmed {len(expected)}" in result.output
    moved = after[after["reason_codes"].astype(str).str.startswith("tied_to_confirmed:")]
    assert set(moved.index) == expected
    assert (moved["action"] == "review").all()
    assert moved["reasons"].str.contains(f"with {confirmed} \\(confirmed by bob on ").all()
    assert after.loc[confirmed, "action"] == "none"  # a confirmation never suspends
    assert after.loc[confirmed, "reason_codes"] == "confirmed:1"
    engine = pd.read_parquet(out.with_name("t.run") / "engine_scores.parquet")
    engine = engine.set_index("account_id")
    untouched = after.index.difference(pd.Index(sorted(expected)))
    assert (after.loc[untouched, "action"] == engine.loc[untouched, "action"]).all()


def test_bad_decision_rows_are_quarantined_and_counted(
    base: dict[str, Any], tmp_path: Path
) -> None:
    scores = base["scores"]
    some = scores.index.sort_values()[:2]
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(
        HEADER
        + f"{some[0]},,confirmed,ann,2026-10-01T00:00:00Z,ok\n"
        + f"{some[1]},,maybe,ann,2026-10-01T00:00:00Z,bad decision\n"
        + ",,cleared,ann,2026-10-01T00:00:00Z,no subject\n"
        + f"{some[1]},C-0001,cleared,ann,2026-10-01T00:00:00Z,both\n"
        + f"{some[1]},,cleared,ann,yesterday,bad time\n"
        + ",cluster one,cleared,ann,2026-10-01T00:00:00Z,bad cluster id\n"
        + "acct_nobody,,cleared,ann,2026-10-01T00:00:00Z,unknown account\n"
        + f"{some[1]},,cleared,,2026-10-01T00:00:00Z,no analyst\n"
        + f"{some[1]},,cleared,ann,2026-10-01T00:00:00Z\n"  # a field short
    )
    out = tmp_path / "t.csv"
    result = _run(base["world"], out, "--decisions", decisions)
    assert "decisions: 9 rows read, 2 accepted, 7 rejected, 1 unknown" in result.output
    record = _manifest(out)["decisions"]
    assert record["read"] == record["accepted"] + record["rejected"] == 9
    assert record["quarantine"] == "quarantine/decisions.csv"
    quarantine = pd.read_csv(out.with_name("t.run") / "quarantine" / "decisions.csv")
    assert quarantine["row"].tolist() == [2, 3, 4, 5, 6, 8, 9]
    assert quarantine["rule"].tolist() == [
        "bad_decision",
        "bad_subject",
        "bad_subject",
        "bad_timestamp",
        "bad_cluster_id",
        "missing_value",
        "field_count",
    ]
    assert record["problems"][0] == (
        "decisions.csv: row 2: column decision: decision 'maybe' is not 'confirmed' or 'cleared'"
    )
    assert record["unknown_lines"] == [
        "decisions.csv: row 7: column account_id: account 'acct_nobody' is not in this run's "
        "accounts (decision ignored)"
    ]
    failed = _invoke(
        "run", base["world"], "--out", tmp_path / "f.csv", "--decisions", decisions,
        "--on-error", "fail",
    )  # fmt: skip
    assert failed.exit_code == 2
    assert failed.output.count("\n") == 1
    assert "decisions.csv: row 2: column decision" in failed.output


def test_evaluate_against_decisions(base: dict[str, Any], tmp_path: Path) -> None:
    takedown = pd.read_csv(base["out"], dtype=str)
    scores = base["scores"].sort_index()
    suspended = list(scores.index[scores["action"] == "suspend"][:6])
    unflagged = list(scores.index[scores["action"] == "none"][:4])
    confirmed = suspended[:4] + unflagged[:1]
    cleared = suspended[4:] + unflagged[1:3]
    rows = [f"{a},,confirmed,ann,2026-10-01T00:00:00Z,\n" for a in confirmed]
    rows += [f"{a},,cleared,ann,2026-10-01T00:00:00Z,\n" for a in cleared]
    # A later decision overrides an earlier one; a cluster decision is not evaluated.
    rows.append(f"{unflagged[3]},,cleared,ann,2026-10-01T00:00:00Z,\n")
    rows.append(f"{unflagged[3]},,confirmed,ann,2026-10-02T00:00:00Z,\n")
    rows.append(",C-0001,confirmed,ann,2026-10-01T00:00:00Z,\n")
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(HEADER + "".join(rows))
    positives = set(confirmed) | {unflagged[3]}
    negatives = set(cleared)
    flagged = set(takedown.loc[takedown["action"].isin(["suspend", "review"]), "account_id"])
    tp, fp = len(flagged & positives), len(flagged & negatives)
    fn = len(positives - flagged)
    result = _invoke("evaluate", "--decisions", decisions, "--takedown", base["out"], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["flagged"]["tp"], report["flagged"]["fp"], report["flagged"]["fn"]) == (
        tp,
        fp,
        fn,
    )
    assert report["flagged"]["precision"] == pytest.approx(tp / (tp + fp))
    assert report["flagged"]["recall"] == pytest.approx(tp / (tp + fn))
    judged = positives | negatives
    assert report["unjudged"]["suspend"] == len(
        set(takedown.loc[takedown["action"] == "suspend", "account_id"]) - judged
    )
    assert (report["n_confirmed"], report["n_cleared"]) == (len(positives), len(negatives))
    assert report["n_cluster_decisions"] == 1
    both = _invoke(
        "evaluate", "--labels", base["world"] / "labels.csv", "--decisions", decisions,
        "--takedown", base["out"],
    )  # fmt: skip
    assert both.exit_code == 0, both.output
    assert "adjusted Rand index" in both.output and "analysts' decisions:" in both.output
    assert _invoke("evaluate", "--takedown", base["out"]).exit_code == 2


def test_expand_takes_a_decisions_file_as_seeds(base: dict[str, Any], tmp_path: Path) -> None:
    scores = base["scores"].sort_index()
    ring = list(scores.index[scores["action"] == "suspend"][:3])
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(
        HEADER
        + "".join(f"{a},,confirmed,ann,2026-10-01T00:00:00Z,\n" for a in ring)
        + f"{ring[2]},,cleared,ann,2026-10-02T00:00:00Z,changed my mind\n"
    )
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("account_id\n" + "".join(f"{a}\n" for a in ring[:2]))
    run_dir = base["out"].with_name("base.run")
    ranked = []
    for name, given in (("a.csv", decisions), ("b.csv", seeds)):
        result = _invoke(
            "expand", run_dir, "--seeds", given, "--top", "20", "--out", tmp_path / name
        )
        assert result.exit_code == 0, result.output
        ranked.append((tmp_path / name).read_bytes())
    assert ranked[0] == ranked[1]


def test_decision_rules_are_documented() -> None:
    from linker.analyst import DECISION_RULES

    doc = (Path(__file__).resolve().parents[1] / "docs" / "decisions.md").read_text()
    for rule in DECISION_RULES:
        assert f"| `{rule}` |" in doc, rule
