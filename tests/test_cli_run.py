"""`linker run`, `export`, `explain` and `evaluate` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.synth import generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(2000, 5, out)
    return out


@pytest.fixture(scope="module")
def ran(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ran") / "takedown.csv"
    result = CliRunner().invoke(cli, ["run", str(world), "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "takedown list:" in result.output and "spared by allow-list 0" in result.output
    return out


def test_run_writes_export_and_run_dir(ran: Path) -> None:
    frame = pd.read_csv(ran, dtype="string", keep_default_na=False)
    assert list(frame.columns) == [
        "account_id",
        "billing_customer_id",
        "cluster_id",
        "cluster_size",
        "score",
        "action",
        "reason_codes",
    ]
    assert set(frame["action"]) <= {"suspend", "review"}
    assert (ran.with_name("takedown.run") / "manifest.json").is_file()
    manifest = json.loads((ran.with_name("takedown.run") / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 3


def test_threshold_options_reach_the_engine(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "strict.csv"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(world),
            "-o",
            str(out),
            "--suspend-threshold",
            "1.0",
            "--review-threshold",
            "1.0",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "strict.run" / "manifest.json").read_text())
    assert manifest["settings"]["link"]["suspend_threshold"] == 1.0
    scores = pd.read_parquet(tmp_path / "strict.run" / "scores.parquet")
    assert not ((scores["action"] == "suspend") & (scores["score"] < 1.0)).any()


def test_settings_file_and_cli_override(world: Path, tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('seed = 9\n[run]\nactions = ["suspend"]\n')
    out = tmp_path / "t.jsonl"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(world),
            "-o",
            str(out),
            "--settings",
            str(toml),
            "--seed",
            "4",
            "--run-dir",
            str(tmp_path / "rd"),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "rd" / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 4
    assert {json.loads(x)["action"] for x in out.read_text().splitlines()} <= {"suspend"}


def test_export_filters_and_formats(ran: Path, tmp_path: Path) -> None:
    run_dir = ran.with_name("takedown.run")
    out = tmp_path / "review.parquet"
    result = CliRunner().invoke(
        cli,
        [
            "export",
            "--run-dir",
            str(run_dir),
            "-o",
            str(out),
            "--action",
            "review",
            "--min-score",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert set(frame["action"]) <= {"review"} and (frame["score"] >= 0.5).all()
    full = pd.read_csv(ran, dtype={"score": float})
    assert len(frame) == int(((full["action"] == "review") & (full["score"] >= 0.5)).sum())


def test_explain_prints_cluster_and_evidence(ran: Path) -> None:
    frame = pd.read_csv(ran, dtype="string", keep_default_na=False)
    clustered = frame[frame["cluster_id"] != ""]
    account = clustered.iloc[0]["account_id"]
    result = CliRunner().invoke(
        cli, ["explain", account, "--run-dir", str(ran.with_name("takedown.run"))]
    )
    assert result.exit_code == 0, result.output
    assert f"account {account}" in result.output
    assert f"cluster {clustered.iloc[0]['cluster_id']}" in result.output
    assert "evidence:" in result.output


def test_evaluate_text_and_json(ran: Path, world: Path) -> None:
    labels = str(world / "labels.csv")
    text = CliRunner().invoke(cli, ["evaluate", "--labels", labels, "--takedown", str(ran)])
    assert text.exit_code == 0, text.output
    assert "adjusted Rand index" in text.output and "suspend + review" in text.output
    as_json = CliRunner().invoke(
        cli, ["evaluate", "--labels", labels, "--takedown", str(ran), "--json"]
    )
    data = json.loads(as_json.output)
    assert 0.0 <= data["suspend"]["recall"] <= 1.0
    assert data["n_accounts"] == 2000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "A-1", "--run-dir", "{tmp}/missing"], "run directory not found"),
        (["explain", "nobody", "--run-dir", "{run}"], "'nobody' is not in the run"),
        (["export", "--run-dir", "{tmp}/missing", "-o", "{tmp}/x.csv"], "run directory not found"),
        (["run", "{tmp}/no-data", "-o", "{tmp}/x.csv"], "not a directory"),
        (["run", "{world}", "-o", "{tmp}/x.txt"], "cannot tell the export format"),
        (
            [
                "run",
                "{world}",
                "-o",
                "{tmp}/x.csv",
                "--review-threshold",
                "0.9",
                "--suspend-threshold",
                "0.5",
            ],
            "invalid settings",
        ),
        (["evaluate", "--labels", "{tmp}/none.csv", "--takedown", "{tmp}/none.csv"], "not found"),
    ],
)
def test_one_line_errors(
    args: list[str], message: str, ran: Path, world: Path, tmp_path: Path
) -> None:
    values = {"tmp": tmp_path, "run": ran.with_name("takedown.run"), "world": world}
    result = CliRunner().invoke(cli, [a.format(**values) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert "Traceback" not in result.output
