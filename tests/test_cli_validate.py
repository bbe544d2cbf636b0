"""`linker validate` through click's CliRunner: output, files, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from ingest_world import HEADERS, Tables, copy_tables, good_tables, write_dataset

from linker.cli import cli


@pytest.fixture(scope="module")
def good() -> Tables:
    return good_tables(n_accounts=30, seed=4)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["validate", *args])


def _summary_rows(stdout: str) -> dict[str, list[int]]:
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) == 4 and cells[0] in HEADERS and all(c.isdigit() for c in cells[1:]):
            rows[cells[0]] = [int(c) for c in cells[1:]]
    return rows


def test_good_dataset_exits_0_and_writes_outputs(good: Tables, tmp_path: Path) -> None:
    data = write_dataset(copy_tables(good), tmp_path / "data")
    out = tmp_path / "out"
    result = _invoke(str(data), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.splitlines()[0].split() == ["table", "read", "accepted", "rejected"]
    assert _summary_rows(result.stdout) == {
        name: [len(rows), len(rows), 0] for name, rows in good.items()
    }
    for name in good:
        assert (out / "tables" / f"{name}.parquet").is_file()
    assert (out / "observations.parquet").is_file()
    assert not (out / "quarantine").exists()
    report = json.loads((out / "validation.json").read_text())
    assert report["rejected"] == 0


def test_default_out_is_validated_in_the_working_directory(
    good: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_dataset(copy_tables(good), tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    result = _invoke(str(data))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "validated" / "validation.json").is_file()


def test_rejections_are_quarantined_and_exit_0(good: Tables, tmp_path: Path) -> None:
    tables = copy_tables(good)
    tables["events"][2][1] = "yesterday"
    tables["events"][16][1] = "yesterday"
    tables["payments"][0][2] = "12"
    data = write_dataset(tables, tmp_path / "data")
    out = tmp_path / "out"
    result = _invoke(str(data), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "payments.csv: row 1: column card_bin: card_bin '12' is not 6 to 8 digits",
        "events.csv: rows 3, 17: column ts: bad timestamp 'yesterday' (expected ISO 8601)",
    ]
    rows = _summary_rows(result.stdout)
    assert rows["events"] == [len(good["events"]), len(good["events"]) - 2, 2]
    assert rows["payments"] == [len(good["payments"]), len(good["payments"]) - 1, 1]
    quarantined = pd.read_csv(out / "quarantine" / "events.csv", dtype=str)
    assert quarantined["row"].tolist() == ["3", "17"]
    assert "quarantine" in result.stdout


def test_fail_mode_exits_2_with_one_line_error_and_the_problems(
    good: Tables, tmp_path: Path
) -> None:
    tables = copy_tables(good)
    tables["events"][4][2] = "1.2.3.4.5"
    data = write_dataset(tables, tmp_path / "data")
    result = _invoke(str(data), "--out", str(tmp_path / "out"), "--on-error", "fail")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "events.csv: row 5: column ip: malformed IP address '1.2.3.4.5'"
    assert len(lines) == 2 and lines[1].startswith("Error: rows rejected (1 in events)")
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_settings_file_sets_on_error_and_the_option_overrides_it(
    good: Tables, tmp_path: Path
) -> None:
    tables = copy_tables(good)
    tables["accounts"][3][5] = "Narnia"
    data = write_dataset(tables, tmp_path / "data")
    settings = tmp_path / "settings.toml"
    settings.write_text('[ingest]\non_error = "fail"\nmax_reported_rows = 1\n')
    failed = _invoke(str(data), "--out", str(tmp_path / "a"), "--settings", str(settings))
    assert failed.exit_code == 2
    overridden = _invoke(
        str(data),
        "--out",
        str(tmp_path / "b"),
        "--settings",
        str(settings),
        "--on-error",
        "quarantine",
    )
    assert overridden.exit_code == 0, overridden.output
    assert "column country" in overridden.stderr


def test_invalid_settings_exit_2(good: Tables, tmp_path: Path) -> None:
    data = write_dataset(copy_tables(good), tmp_path / "data")
    settings = tmp_path / "settings.toml"
    settings.write_text('[ingest]\non_error = "ignore"\n')
    result = _invoke(str(data), "--settings", str(settings))
    assert result.exit_code == 2
    assert "ingest.on_error" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: (d / "accounts.csv").unlink(), "required table accounts is missing"),
        (
            lambda d: (d / "events.csv").write_text("account_id,ip\na,1.2.3.4\n"),
            "events.csv: column ts: required column is missing",
        ),
        (
            lambda d: (d / "payments.csv").write_bytes(
                "account_id,payment_fingerprint\nä,x\n".encode("cp1252")
            ),
            "payments.csv: unknown encoding",
        ),
        (
            lambda d: (d / "labels.csv").write_text("account_id,ring_id\n"),
            "labels.csv: empty table (no data rows)",
        ),
    ],
)
def test_file_level_errors_exit_2_in_one_line(
    good: Tables, tmp_path: Path, damage: object, expected: str
) -> None:
    data = write_dataset(copy_tables(good), tmp_path / "data")
    damage(data)  # type: ignore[operator]
    for mode in ("quarantine", "fail"):
        result = _invoke(str(data), "--out", str(tmp_path / "out"), "--on-error", mode)
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        error_lines = result.stderr.splitlines()
        assert len(error_lines) == 1 and error_lines[0].startswith("Error: ")
        assert expected in error_lines[0]
        assert result.stdout == ""


def test_not_a_directory_exits_2(tmp_path: Path) -> None:
    result = _invoke(str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and "not a directory" in result.stderr


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(cli, ["validate", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--on-error", "--settings", "quarantine|fail"):
        assert option in result.output


# --- issue 12: file-level problems through the command ---------------------------------------


def _linker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed console script in a child with 2 GiB of address space and a timeout:
    a read that blocks or never ends fails the test instead of hanging the machine."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    linker = Path(sys.executable).parent / "linker"
    return subprocess.run(
        [str(linker), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=limit,
    )


def test_fifo_table_exits_2_without_blocking(good: Tables, tmp_path: Path) -> None:
    data = write_dataset(copy_tables(good), tmp_path / "data")
    (data / "events.csv").unlink()
    os.mkfifo(data / "events.csv")
    done = _linker("validate", str(data), "--out", str(tmp_path / "out"), timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"Error: {data / 'events.csv'}: a FIFO (named pipe), not a regular file; "
        "a table file must be a regular file"
    ]
    assert done.stdout == ""


def test_run_with_dev_zero_allowlist_exits_2_at_once(good: Tables, tmp_path: Path) -> None:
    data = write_dataset(copy_tables(good), tmp_path / "data")
    done = _linker("run", str(data), "--out", str(tmp_path / "t.csv"), "--allowlist", "/dev/zero")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "Error: /dev/zero: a character device, not a regular file; allow-list must be a "
        "regular file"
    ]


def _epoch_created_at(data: Path) -> str:
    frame = pd.read_csv(data / "accounts.csv", dtype=str, keep_default_na=False)
    created = pd.to_datetime(frame["created_at"], format="ISO8601", utc=True)
    frame["created_at"] = created.astype("int64") // 10**9
    frame.to_parquet(data / "accounts.parquet", index=False)
    (data / "accounts.csv").unlink()
    return "accounts.parquet: column created_at: Parquet type INT64 (read as int64)"


def _cr_only(data: Path) -> str:
    text = (data / "payments.csv").read_text()
    (data / "payments.csv").write_text(text.replace("\n", "\r"))
    return "payments.csv: line endings are CR only"


def _huge_header(data: Path) -> str:
    (data / "labels.csv").write_text("account_id,ring_id," + "h" * (1 << 20) + "\na,b,c\n")
    return "labels.csv: header line is longer than 1 MiB"


def _every_event_rejected(data: Path) -> str:
    text = (data / "events.csv").read_text().splitlines()
    rows = [line.replace("acct-", "nobody-", 1) for line in text[1:]]
    (data / "events.csv").write_text("\n".join([text[0], *rows]) + "\n")
    return "events.csv: every row was rejected"


@pytest.mark.parametrize(
    "damage", [_epoch_created_at, _cr_only, _huge_header, _every_event_rejected]
)
def test_unclear_inputs_exit_2_with_one_named_line(
    good: Tables, tmp_path: Path, damage: object
) -> None:
    data = write_dataset(copy_tables(good), tmp_path / "data")
    expected = damage(data)  # type: ignore[operator]
    result = _invoke(str(data), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: {data}/") and expected in line, line
    assert "internal error" not in line and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_settings_file_sets_the_plausibility_window(good: Tables, tmp_path: Path) -> None:
    data = write_dataset(copy_tables(good), tmp_path / "data")
    settings = tmp_path / "settings.toml"
    settings.write_text('[ingest]\nearliest = "2026-07-15"\nlatest = "2026-08-01"\n')
    result = _invoke(str(data), "--out", str(tmp_path / "out"), "--settings", str(settings))
    assert result.exit_code == 0, result.output
    assert "column created_at: timestamp" in result.stderr
    assert "is before 2026-07-15T00:00:00Z (ingest.earliest)" in result.stderr
