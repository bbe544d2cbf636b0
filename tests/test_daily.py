"""Daily runs: stable cluster ids, the change list billing applies exactly once, `linker
diff`, and the rows against the JSON Schemas shipped with the package.

Real runs (library and CliRunner) on two consecutive days of one warehouse
(tests/daily_world.py): ring-01 gains members, a group splits, two groups merge, the rest is
untouched.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
from click.testing import CliRunner
from daily_world import GAINED, build_days, ring_members

from linker.changes import (
    CHANGE_COLUMNS,
    CHANGE_KINDS,
    RunState,
    change_frame,
    decision_id,
    diff_runs,
    evidence_version,
    row_schema,
)
from linker.cli import cli
from linker.errors import InputError
from linker.export import EXPORT_COLUMNS, SCHEMA_VERSION
from linker.graph.continuity import cluster_number
from linker.pipeline import export_run, run
from linker.settings import load_settings


@dataclass(frozen=True)
class Published:
    """What one daily run published at the shared --out, read right after it."""

    run_dir: Path
    manifest: dict[str, Any]
    export_bytes: bytes
    changes_bytes: bytes

    @property
    def run_id(self) -> str:
        return str(self.manifest["run"]["run_id"])

    @property
    def previous_run_id(self) -> str | None:
        previous = self.manifest["run"]["previous_run"]
        return None if previous is None else str(previous["run_id"])

    def changes(self) -> pd.DataFrame:
        return _read_csv(self.changes_bytes)

    def flagged(self) -> dict[str, str]:
        """The full list's flagged accounts: what billing must end up holding."""
        rows = _read_csv(self.export_bytes)
        rows = rows[rows["action"].isin(["suspend", "review"])]
        return dict(zip(rows["account_id"], rows["action"], strict=True))


def _read_csv(data: bytes) -> pd.DataFrame:
    from io import BytesIO

    return pd.read_csv(BytesIO(data), dtype="string", keep_default_na=False)


def _publish(
    data: Path, out: Path, run_dir: Path, previous: Path | None, **overrides: Any
) -> Published:
    settings = load_settings(overrides={k.replace("__", "."): v for k, v in overrides.items()})
    result = run(data, out, run_dir=run_dir, settings=settings, previous=previous)
    changes = out.with_name(f"{out.stem}.changes{out.suffix}")
    manifest = json.loads(result.export.manifest_path.read_text())
    return Published(result.run_dir, manifest, out.read_bytes(), changes.read_bytes())


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("daily")
    day1, day2 = build_days(root)
    return root, day1, day2


@pytest.fixture(scope="module")
def runs(days: tuple[Path, Path, Path]) -> list[Published]:
    """Three consecutive daily runs publishing at one --out: day 1; day 2 with --previous;
    day 2 again with three ring members allow-listed and a stricter suspend threshold without
    suspension through peers (some suspensions become reviews)."""
    root, day1, day2 = days
    out = root / "billing" / "takedown.csv"
    first = _publish(day1, out, root / "run1", None)
    second = _publish(day2, out, root / "run2", first.run_dir)
    spared = sorted(first.flagged())[:3]
    allow = root / "allow.csv"
    allow.write_text("".join(f"account_id,{a}\n" for a in spared))
    third = _publish(
        day2,
        out,
        root / "run3",
        second.run_dir,
        run__allowlist=str(allow),
        link__suspend_threshold=0.995,
        link__suspend_with_peers=False,
    )
    return [first, second, third]


def _clusters(run_dir: Path) -> dict[str, frozenset[str]]:
    scores = pd.read_parquet(run_dir / "scores.parquet").dropna(subset=["cluster_id"])
    return {str(c): frozenset(g) for c, g in scores.groupby("cluster_id")["account_id"]}


def _cluster_of(clusters: dict[str, frozenset[str]], account: str) -> str:
    return next(c for c, members in clusters.items() if account in members)


def test_two_daily_runs_keep_the_id_of_every_unchanged_cluster(
    days: tuple[Path, Path, Path], runs: list[Published]
) -> None:
    root = days[0]
    before, after = _clusters(runs[0].run_dir), _clusters(runs[1].run_dir)
    id_of = {members: cid for cid, members in before.items()}
    unchanged = [(id_of[m], cid) for cid, m in after.items() if m in id_of]
    assert len(unchanged) >= 10, "most clusters of the world are untouched on day 2"
    assert all(old == new for old, new in unchanged), unchanged

    # ring-01 gains members: its cluster keeps its id and holds the newcomers.
    ring = ring_members(root)
    ring_id = max(before, key=lambda c: len(before[c] & set(ring)))
    newcomers = {f"acct_new_{i:02d}" for i in range(GAINED)}
    assert newcomers <= after[ring_id] and before[ring_id] <= after[ring_id]

    # y splits 4 + 3: the larger part keeps the id, the other gets a fresh one.
    y_id = _cluster_of(before, "acct_y0")
    assert before[y_id] == {f"acct_y{i}" for i in range(7)}
    assert after[y_id] == {f"acct_y{i}" for i in range(4)}
    part = _cluster_of(after, "acct_y4")
    assert after[part] == {"acct_y4", "acct_y5", "acct_y6"}
    highest_before = runs[0].manifest["run"]["cluster_ids"]["highest"]
    assert cluster_number(part) > highest_before and part not in before

    # wb (3 accounts) merges into wa (5): the merged cluster keeps the larger one's id.
    wa, wb = _cluster_of(before, "acct_wa0"), _cluster_of(before, "acct_wb0")
    assert wa != wb and _cluster_of(after, "acct_wb0") == wa
    assert after[wa] == before[wa] | before[wb]

    record = runs[1].manifest["run"]["cluster_ids"]
    assert {"from": y_id, "into": [y_id, part]} in record["splits"]
    assert {"from": sorted([wa, wb], key=cluster_number), "into": wa} in record["merges"]
    assert record["previous_run_id"] == runs[0].run_id == runs[1].previous_run_id
    assert record["highest"] == max(cluster_number(c) for c in after)
    assert record["kept"] + record["fresh"] == len(after)


def test_same_inputs_and_previous_run_give_byte_identical_exports(
    days: tuple[Path, Path, Path], runs: list[Published], tmp_path: Path
) -> None:
    out = tmp_path / "again.csv"
    result = CliRunner().invoke(
        cli,
        ["run", str(days[2]), "--out", str(out), "--previous", str(runs[0].run_dir)],
    )
    assert result.exit_code == 0, result.output
    assert "change list: again.changes.csv" in result.output
    assert out.read_bytes() == runs[1].export_bytes
    assert (tmp_path / "again.changes.csv").read_bytes() == runs[1].changes_bytes


def test_a_run_against_itself_keeps_every_id_and_changes_nothing(
    days: tuple[Path, Path, Path], runs: list[Published], tmp_path: Path
) -> None:
    again = _publish(days[1], tmp_path / "t.csv", tmp_path / "t.run", runs[0].run_dir)
    assert again.export_bytes == runs[0].export_bytes, "same clusters, same ids, same bytes"
    assert again.changes().empty
    assert again.manifest["run"]["cluster_ids"]["fresh"] == 0


def test_without_previous_every_flagged_account_is_new(runs: list[Published]) -> None:
    changes = runs[0].changes()
    assert runs[0].previous_run_id is None
    assert dict(zip(changes["account_id"], changes["action"], strict=True)) == runs[0].flagged()
    assert set(changes["change"]) <= {"new_suspension", "new_review"}
    assert (changes["previous_action"] == "none").all()
    assert (changes["previous_run_id"] == "").all() and (changes["run_id"] == runs[0].run_id).all()


class Ledger:
    """A toy billing system following docs/pipeline.md's protocol: a list is applied once
    (by its run id), in order (its previous run id is the last list applied), and a row is
    skipped when the account's last applied decision has the row's decision_id."""

    def __init__(self) -> None:
        self.actions: dict[str, str] = {}
        self.decisions: dict[str, str] = {}
        self.applied_runs: list[str] = []

    def state(self) -> dict[str, Any]:
        return {"actions": dict(self.actions), "decisions": dict(self.decisions)}

    def apply(self, published: Published, *, crash_after: int | None = None) -> None:
        if published.run_id in self.applied_runs:
            return
        last = self.applied_runs[-1] if self.applied_runs else None
        assert published.previous_run_id == last, "a list is missing in between"
        rows = published.changes().to_dict("records")
        for done, row in enumerate(rows):
            if crash_after is not None and done == crash_after:
                return
            if self.decisions.get(row["account_id"]) == row["decision_id"]:
                continue
            if row["action"] == "none":
                self.actions.pop(row["account_id"], None)
            else:
                self.actions[row["account_id"]] = row["action"]
            self.decisions[row["account_id"]] = row["decision_id"]
        self.applied_runs.append(published.run_id)


def test_change_lists_applied_twice_end_where_applied_once_and_equal_the_last_list(
    runs: list[Published],
) -> None:
    kinds = [set(r.changes()["change"]) for r in runs]
    assert "new_suspension" in kinds[1], "day 2's newcomers are new suspensions"
    assert {"lifted_suspension", "new_review"} <= kinds[2], "allow-list and threshold"

    once = Ledger()
    for r in runs:
        once.apply(r)
    assert once.actions == runs[-1].flagged()

    each_twice, sequence_twice, crashed = Ledger(), Ledger(), Ledger()
    for r in runs:
        each_twice.apply(r)
        each_twice.apply(r)
    for r in [*runs, *runs]:
        sequence_twice.apply(r)
    for r in runs:
        crashed.apply(r, crash_after=len(r.changes()) // 2)
        crashed.apply(r)
    for ledger in (each_twice, sequence_twice, crashed):
        assert ledger.state() == once.state()
        assert ledger.applied_runs == [r.run_id for r in runs]


def test_a_suspension_lifted_and_back_on_the_same_evidence_repeats_its_decision_id(
    days: tuple[Path, Path, Path], runs: list[Published], tmp_path: Path
) -> None:
    day1 = days[1]
    account = sorted(runs[0].flagged())[0]
    allow = tmp_path / "allow.csv"
    allow.write_text(f"account_id,{account}\n")
    out = tmp_path / "list.jsonl"
    lifted = _publish(day1, out, tmp_path / "r2", runs[0].run_dir, run__allowlist=str(allow))
    back = _publish(day1, out, tmp_path / "r3", lifted.run_dir)
    first = runs[0].changes().set_index("account_id").loc[account]
    rows = [json.loads(line) for line in back.changes_bytes.decode().splitlines()]
    assert [r["account_id"] for r in rows] == [account]
    assert rows[0]["change"] == "new_suspension"
    assert rows[0]["decision_id"] == first["decision_id"], "same account, action, evidence"
    # So billing must compare a row with the account's *last* decision, not with every
    # decision it ever saw: the per-account rule puts the account back.
    chain = [runs[0], _as_csv(lifted), _as_csv(back)]
    ledger = Ledger()
    for r in chain:
        ledger.apply(r)
    assert ledger.actions == runs[0].flagged()
    seen: set[str] = set()
    naive: dict[str, str] = {}
    for r in chain:
        for row in r.changes().to_dict("records"):
            if row["decision_id"] not in seen:
                seen.add(row["decision_id"])
                naive.pop(row["account_id"], None) if row["action"] == "none" else naive.update(
                    {row["account_id"]: row["action"]}
                )
    assert account not in naive, "a global set of seen decision ids would miss the return"


def _as_csv(published: Published) -> Published:
    """A JSONL publication's change list as CSV bytes (for the ledger's reader)."""
    lines = published.changes_bytes.decode().splitlines()
    frame = pd.DataFrame([json.loads(line) for line in lines], columns=list(CHANGE_COLUMNS))
    export = [json.loads(line) for line in published.export_bytes.decode().splitlines()]
    return Published(
        published.run_dir,
        published.manifest,
        pd.DataFrame(export, columns=list(EXPORT_COLUMNS)).to_csv(index=False).encode(),
        frame.fillna("").to_csv(index=False).encode(),
    )


def test_diff_of_two_runs_is_the_change_list_the_later_run_published(
    runs: list[Published], tmp_path: Path
) -> None:
    for before, after in itertools.pairwise(runs):
        out = tmp_path / f"{after.run_id}.csv"
        result = CliRunner().invoke(
            cli, ["diff", str(before.run_dir), str(after.run_dir), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == after.changes_bytes
        assert not list(tmp_path.glob(".*.tmp")), "written atomically"
    table = CliRunner().invoke(cli, ["diff", str(runs[1].run_dir), str(runs[2].run_dir)])
    assert table.exit_code == 0, table.output
    changes = runs[2].changes()
    assert f"{len(changes):,} changes from run {runs[1].run_id} to run {runs[2].run_id}" in (
        table.output
    )
    as_json = CliRunner().invoke(
        cli, ["diff", str(runs[1].run_dir), str(runs[2].run_dir), "--format", "json"]
    )
    document = json.loads(as_json.output)
    assert document["schema_version"] == SCHEMA_VERSION
    assert [c["decision_id"] for c in document["changes"]] == changes["decision_id"].tolist()
    library = diff_runs(runs[0].run_dir, runs[1].run_dir)
    assert library.frame["decision_id"].tolist() == runs[1].changes()["decision_id"].tolist()


def test_diff_rejects_a_missing_run_in_one_line(tmp_path: Path, runs: list[Published]) -> None:
    result = CliRunner().invoke(cli, ["diff", str(tmp_path / "nope"), str(runs[0].run_dir)])
    assert result.exit_code == 2
    assert "run directory not found" in result.output and len(result.output.splitlines()) == 1
    scores = runs[0].run_dir / "scores.parquet"
    before = scores.read_bytes()
    clobber = CliRunner().invoke(
        cli, ["diff", str(runs[0].run_dir), str(runs[1].run_dir), "--out", str(scores)]
    )
    assert clobber.exit_code == 2 and "artefact of the run directory" in clobber.output
    assert scores.read_bytes() == before


def test_exported_and_change_rows_match_the_shipped_json_schemas(
    days: tuple[Path, Path, Path], runs: list[Published], tmp_path: Path
) -> None:
    out = tmp_path / "list.jsonl"
    result = run(
        days[2],
        out,
        run_dir=tmp_path / "r.run",
        previous=runs[0].run_dir,
        settings=load_settings(
            overrides={"link.suspend_threshold": 0.995, "link.suspend_with_peers": False}
        ),
    )
    manifest = json.loads(result.export.manifest_path.read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["changes"]["schema_version"] == SCHEMA_VERSION
    for kind, path, columns in (
        ("takedown", out, EXPORT_COLUMNS),
        ("change", tmp_path / "list.changes.jsonl", CHANGE_COLUMNS),
    ):
        schema = row_schema(kind)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith(SCHEMA_VERSION)
        assert schema["required"] == list(columns) == list(schema["properties"])
        validator = jsonschema.Draft202012Validator(schema)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert rows, f"{path.name} has rows to check"
        for row in rows:
            validator.validate(row)
        assert list(rows[0]) == list(columns)
    kinds = {json.loads(line)["change"] for line in (tmp_path / "list.changes.jsonl").open()}
    assert {"new_suspension", "new_review"} <= kinds
    broken = dict(rows[0], action="suspend", change="lifted_suspension")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, row_schema("change"))


def _state(run_id: str, rows: list[tuple[str, str | None, str, str]]) -> RunState:
    """A run's scores from (account, cluster id, action, reason codes) rows."""
    return RunState(
        run_id,
        pd.DataFrame(
            {
                "account_id": [r[0] for r in rows],
                "billing_customer_id": [f"cus-{r[0]}" for r in rows],
                "cluster_id": pd.array([r[1] for r in rows], dtype="string"),
                "cluster_size": [3 if r[1] else 0 for r in rows],
                "score": [
                    0.9 if r[2] == "suspend" else 0.6 if r[2] == "review" else 0.1 for r in rows
                ],
                "action": [r[2] for r in rows],
                "reason_codes": [r[3] for r in rows],
                "reasons": [f"because {r[3]}" if r[3] else "" for r in rows],
            }
        ),
    )


def test_change_kinds_from_two_hand_built_runs() -> None:
    before = _state(
        "a" * 16,
        [
            ("keep", "C-0001", "suspend", "shared_payment:2"),
            ("lift-s", "C-0001", "suspend", "shared_payment:2"),
            ("lift-r", "C-0002", "review", "shared_ip:4"),
            ("down", "C-0001", "suspend", "shared_payment:2"),
            ("moved", "C-0002", "review", "shared_ip:4"),
            ("gone", "C-0002", "suspend", "shared_ip:4"),
            ("up", None, "none", ""),
        ],
    )
    after = _state(
        "b" * 16,
        [
            ("up", "C-0003", "suspend", "shared_device:2"),
            ("keep", "C-0001", "suspend", "shared_payment:3"),
            ("lift-s", "C-0001", "none", "allowlisted:1;shared_payment:2"),
            ("lift-r", None, "none", ""),
            ("down", "C-0001", "review", "shared_payment:2"),
            ("moved", "C-0004", "review", "shared_ip:4"),
            ("fresh", "C-0004", "review", "shared_ip:4"),
        ],
    )
    frame = change_frame(before, after)
    assert list(frame.columns) == list(CHANGE_COLUMNS)
    got = list(zip(frame["account_id"], frame["change"], strict=True))
    assert got == [
        ("up", "new_suspension"),
        ("down", "new_review"),
        ("fresh", "new_review"),
        ("gone", "lifted_suspension"),
        ("lift-s", "lifted_suspension"),
        ("lift-r", "lifted_review"),
        ("moved", "changed_cluster"),
    ], "kind order, then account id; 'keep' changed evidence only and is no change"
    row = frame.set_index("account_id")
    assert row.loc["gone", "billing_customer_id"] == "cus-gone", "from the previous run"
    assert pd.isna(row.loc["gone", "cluster_id"]) and row.loc["gone", "action"] == "none"
    assert row.loc["moved", "previous_cluster_id"] == "C-0002"
    assert row.loc["lift-s", "reason_codes"].startswith("allowlisted:1")
    version = evidence_version(
        "allowlisted:1;shared_payment:2", "because allowlisted:1;shared_payment:2"
    )
    assert row.loc["lift-s", "evidence_version"] == version
    assert row.loc["lift-s", "decision_id"] == decision_id("lift-s", "none", version)
    assert set(frame["run_id"]) == {"b" * 16} and set(frame["previous_run_id"]) == {"a" * 16}
    assert set(frame["change"]) == set(CHANGE_KINDS)


def test_a_reexport_to_the_same_out_withdraws_the_change_list(
    runs: list[Published], tmp_path: Path
) -> None:
    out = tmp_path / "list.csv"
    changes = tmp_path / "list.changes.csv"
    run(runs[1].run_dir.parent / "day2", out, run_dir=tmp_path / "r.run", previous=runs[0].run_dir)
    assert changes.read_bytes() == runs[1].changes_bytes
    export_run(tmp_path / "r.run", out, actions=["suspend"])
    assert not changes.exists() and not changes.is_symlink(), "it belonged to the old pair"


def test_a_foreign_file_at_the_change_list_name_is_not_replaced(
    days: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    (tmp_path / "list.changes.csv").write_text("mine\n")
    result = CliRunner().invoke(cli, ["run", str(days[1]), "--out", str(tmp_path / "list.csv")])
    assert result.exit_code == 2
    assert "is not linker's change list" in result.output
    assert (tmp_path / "list.changes.csv").read_text() == "mine\n"
    with pytest.raises(InputError, match="run directory not found"):
        RunState.open(tmp_path / "missing.run")
