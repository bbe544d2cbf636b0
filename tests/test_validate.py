"""Validation against the input contract: every rule, every count, nothing lost."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_world import (
    HEADERS,
    Tables,
    copy_tables,
    good_tables,
    plain_values,
    write_csv,
    write_dataset,
    write_parquet_dataset,
)

from linker.errors import InputError
from linker.io.contract import FILE_RULES, ROW_RULES, TABLES
from linker.io.readers import TEXT_KINDS
from linker.io.validate import ValidationFailed, ValidationResult, _categorical, validate_dataset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def good() -> Tables:
    return good_tables()


@pytest.fixture(scope="module")
def good_result(good: Tables, tmp_path_factory: pytest.TempPathFactory) -> ValidationResult:
    directory = write_dataset(good, tmp_path_factory.mktemp("good"))
    return validate_dataset(directory, out_dir=directory / "out")


def _assert_counts_add_up(result: ValidationResult) -> None:
    for name, counts in result.summary.items():
        assert counts.read == counts.accepted + counts.rejected, name
        assert len(result.tables[name]) == counts.accepted, name


def _quarantine(result: ValidationResult, table: str) -> pd.DataFrame:
    return pd.read_csv(result.quarantine_paths[table], dtype=str, keep_default_na=False)


# --- a good dataset ------------------------------------------------------------------------


def test_good_dataset_has_no_rejections(good: Tables, good_result: ValidationResult) -> None:
    assert good_result.problems == []
    for name, rows in good.items():
        counts = good_result.summary[name]
        assert (counts.read, counts.accepted, counts.rejected) == (len(rows), len(rows), 0)
    assert good_result.quarantine_paths == {}
    _assert_counts_add_up(good_result)


def test_accepted_tables_are_typed_per_contract(good_result: ValidationResult) -> None:
    for name, frame in good_result.tables.items():
        spec = TABLES[name]
        assert list(frame.columns) == spec.column_names
        for column in spec.columns:
            dtype = frame[column.name].dtype
            if column.kind == "timestamp":
                assert str(dtype) == "datetime64[us, UTC]", column.name
            elif column.kind == "count":
                assert dtype == "int64", column.name
            elif column.kind == "tokens":
                assert str(dtype) == "Int64", column.name
            elif spec.dictionary_strings and column.kind in TEXT_KINDS:
                # Each distinct value once, a small code per row; only used values.
                assert isinstance(dtype, pd.CategoricalDtype), column.name
                assert pd.api.types.is_string_dtype(dtype.categories.dtype), column.name
                values = frame[column.name]
                assert set(dtype.categories) == set(values.dropna()), column.name
            else:
                assert isinstance(dtype, pd.StringDtype), column.name
                assert dtype.na_value is pd.NA


def test_values_are_parsed_not_altered(good: Tables, good_result: ValidationResult) -> None:
    events = good_result.tables["events"]
    raw = pd.DataFrame(good["events"], columns=HEADERS["events"])
    # Offsets are honoured and a timestamp without one is UTC.
    expected_ts = pd.to_datetime(raw["ts"], format="ISO8601", utc=True)
    assert (events["ts"].reset_index(drop=True) == expected_ts).all()
    # An empty `requests` means 1; an empty token count stays missing.
    assert (events["requests"][raw["requests"] == ""] == 1).all()
    assert events["output_tokens"][raw["output_tokens"] == ""].isna().all()
    assert events["ip"].tolist() == raw["ip"].tolist()
    accounts = good_result.tables["accounts"]
    assert accounts["email"].isna().sum() == sum(1 for r in good["accounts"] if r[2] == "")


def test_validation_json_reports_counts_and_hashes(good_result: ValidationResult) -> None:
    import hashlib

    assert good_result.out_dir is not None
    report = json.loads((good_result.out_dir / "validation.json").read_text())
    for name, entry in report["tables"].items():
        path = good_result.files[name]
        assert entry["file"] == path.name
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["read"] == entry["accepted"] + entry["rejected"]
    assert report["rejected"] == 0 and report["problems"] == []


def test_every_rule_is_documented() -> None:
    text = (ROOT / "docs" / "contract.md").read_text()
    for rule in [*FILE_RULES, *ROW_RULES]:
        assert f"`{rule}`" in text, f"rule {rule} is not in docs/contract.md"


# --- each row-level rule -------------------------------------------------------------------

# (table, column, bad value, rule, reason as printed); row 3 of the table is broken.
ROW_CASES = [
    (
        "accounts",
        "created_at",
        "yesterday",
        "bad_timestamp",
        "bad timestamp 'yesterday' (expected ISO 8601)",
    ),
    (
        "accounts",
        "created_at",
        "2026-13-40",
        "bad_timestamp",
        "bad timestamp '2026-13-40' (expected ISO 8601)",
    ),
    ("accounts", "created_at", "", "missing_value", "empty created_at (a value is required)"),
    ("accounts", "account_id", "", "missing_value", "empty account_id (a value is required)"),
    ("accounts", "signup_ip", "999.1.1.1", "bad_ip", "malformed IP address '999.1.1.1'"),
    ("accounts", "signup_ip", "010.0.0.1", "bad_ip", "malformed IP address '010.0.0.1'"),
    ("accounts", "signup_ip", "2001:db8:::1", "bad_ip", "malformed IP address '2001:db8:::1'"),
    (
        "accounts",
        "country",
        "USA",
        "bad_country",
        "country 'USA' is not two letters (ISO 3166-1 alpha-2)",
    ),
    (
        "payments",
        "account_id",
        "ghost",
        "unknown_account",
        "account_id 'ghost' is not in accounts.csv",
    ),
    (
        "payments",
        "payment_fingerprint",
        "",
        "missing_value",
        "empty payment_fingerprint (a value is required)",
    ),
    ("payments", "card_bin", "41111", "bad_card_bin", "card_bin '41111' is not 6 to 8 digits"),
    ("payments", "card_bin", "4111x1", "bad_card_bin", "card_bin '4111x1' is not 6 to 8 digits"),
    (
        "payments",
        "billing_country",
        "1A",
        "bad_country",
        "billing_country '1A' is not two letters (ISO 3166-1 alpha-2)",
    ),
    ("payments", "added_at", "soon", "bad_timestamp", "bad timestamp 'soon' (expected ISO 8601)"),
    ("events", "ts", "yesterday", "bad_timestamp", "bad timestamp 'yesterday' (expected ISO 8601)"),
    ("events", "ts", "", "missing_value", "empty ts (a value is required)"),
    ("events", "ip", "not-an-ip", "bad_ip", "malformed IP address 'not-an-ip'"),
    (
        "events",
        "account_id",
        "ghost",
        "unknown_account",
        "account_id 'ghost' is not in accounts.csv",
    ),
    ("events", "account_id", "", "missing_value", "empty account_id (a value is required)"),
    ("events", "requests", "1.5", "not_integer", "requests '1.5' is not an integer"),
    ("events", "requests", "0", "out_of_range", "requests '0' is not positive"),
    ("events", "requests", "-2", "out_of_range", "requests '-2' is not positive"),
    ("events", "input_tokens", "-5", "out_of_range", "input_tokens '-5' is negative"),
    ("events", "output_tokens", "many", "not_integer", "output_tokens 'many' is not an integer"),
    (
        "labels",
        "account_id",
        "ghost",
        "unknown_account",
        "account_id 'ghost' is not in accounts.csv",
    ),
]


@pytest.mark.parametrize(("table", "column", "bad", "rule", "reason"), ROW_CASES)
def test_row_rule_gives_its_documented_error(
    good: Tables, tmp_path: Path, table: str, column: str, bad: str, rule: str, reason: str
) -> None:
    tables = copy_tables(good)
    row_number = 3
    original = tables[table][row_number - 1]
    original[HEADERS[table].index(column)] = bad
    result = validate_dataset(write_dataset(tables, tmp_path / "data"), out_dir=tmp_path / "out")

    _assert_counts_add_up(result)
    assert result.summary[table].rejected == 1
    mine = [p for p in result.problems if p.table == table]
    assert len(mine) == 1
    problem = mine[0]
    assert (problem.rule, problem.column, problem.rows, problem.count) == (rule, column, (3,), 1)
    assert problem.reason == reason
    assert str(problem) == f"{table}.csv: row 3: column {column}: {reason}"

    quarantined = _quarantine(result, table)
    assert len(quarantined) == 1
    record = quarantined.iloc[0]
    assert (record["row"], record["column"], record["rule"]) == ("3", column, rule)
    assert record["reason"] == reason
    assert record[HEADERS[table]].tolist() == original  # the row as read


def test_duplicate_account_keeps_the_first(good: Tables, tmp_path: Path) -> None:
    tables = copy_tables(good)
    lost_id = tables["accounts"][5][0]
    tables["accounts"][5][0] = tables["accounts"][1][0]  # row 6 repeats row 2's id
    result = validate_dataset(write_dataset(tables, tmp_path / "data"), out_dir=tmp_path / "out")

    _assert_counts_add_up(result)
    duplicate = next(p for p in result.problems if p.rule == "duplicate_id")
    assert str(duplicate) == (
        f"accounts.csv: row 6: column account_id: duplicate account_id "
        f"'{tables['accounts'][1][0]}' (first at row 2)"
    )
    accounts = result.tables["accounts"]
    assert accounts["account_id"].is_unique
    kept = accounts[accounts["account_id"] == tables["accounts"][1][0]]
    first_created = pd.to_datetime(tables["accounts"][1][1], format="ISO8601", utc=True)
    assert kept["created_at"].tolist() == [first_created]
    # The account that lost its row takes its events, payments and labels with it.
    lost_events = sum(1 for row in good["events"] if row[0] == lost_id)
    assert result.summary["events"].rejected == lost_events > 0
    unknown = next(p for p in result.problems if p.table == "events")
    assert unknown.rule == "unknown_account"
    assert unknown.reason == f"account_id '{lost_id}' is not in accounts.csv"


def test_rows_of_a_rejected_account_are_rejected_with_reason(good: Tables, tmp_path: Path) -> None:
    tables = copy_tables(good)
    tables["accounts"][0][1] = "not a time"
    account = tables["accounts"][0][0]
    result = validate_dataset(write_dataset(tables, tmp_path / "data"))

    expected_rows = tuple(i + 1 for i, row in enumerate(good["events"]) if row[0] == account)
    problem = next(p for p in result.problems if p.table == "events")
    assert problem.rows == expected_rows
    assert problem.reason == f"account_id '{account}' was rejected in accounts.csv"
    assert account not in set(result.tables["events"]["account_id"])
    _assert_counts_add_up(result)


def test_duplicate_label_is_rejected(good: Tables, tmp_path: Path) -> None:
    tables = copy_tables(good)
    tables["labels"].append(list(tables["labels"][0]))
    result = validate_dataset(write_dataset(tables, tmp_path / "data"))
    problem = next(p for p in result.problems if p.table == "labels")
    assert problem.rule == "duplicate_id"
    assert problem.rows == (len(tables["labels"]),)
    assert "(first at row 1)" in problem.reason


def test_wrong_field_count_is_rejected_and_kept_whole(good: Tables, tmp_path: Path) -> None:
    tables = copy_tables(good)
    tables["events"][6].append("surplus")
    del tables["events"][9][3:]
    result = validate_dataset(write_dataset(tables, tmp_path / "data"), out_dir=tmp_path / "out")

    _assert_counts_add_up(result)
    assert result.summary["events"].rejected == 2
    problem = next(p for p in result.problems if p.rule == "field_count")
    assert problem.rows == (7, 10) and problem.column is None
    assert str(problem) == ("events.csv: rows 7, 10: 11 fields, expected 10 (other rows differ)")
    quarantined = _quarantine(result, "events")
    assert quarantined["row"].tolist() == ["7", "10"]
    assert quarantined["raw_line"].iloc[0].endswith(",surplus")
    assert quarantined["reason"].tolist() == ["11 fields, expected 10", "3 fields, expected 10"]
    # The rows after the broken ones keep their own numbers.
    tables["events"][20][1] = "bad-ts"
    result = validate_dataset(write_dataset(tables, tmp_path / "data2"))
    assert next(p for p in result.problems if p.rule == "bad_timestamp").rows == (21,)


def test_row_numbers_skip_header_and_blank_lines_and_span_quoted_newlines(
    tmp_path: Path,
) -> None:
    (tmp_path / "accounts.csv").write_text(
        "account_id,created_at,email\n"
        'a1,2026-01-01T00:00:00Z,"multi\nline"\n'
        "\n"
        "a2,2026-01-02T00:00:00Z,x@y.org\n"
        "a3,never,x@y.org\n"
    )
    result = validate_dataset(tmp_path)
    (problem,) = result.problems
    assert problem.rows == (3,)
    assert result.tables["accounts"]["email"].iloc[0] == "multi\nline"


def test_several_problems_in_one_row_are_one_quarantine_record(
    good: Tables, tmp_path: Path
) -> None:
    tables = copy_tables(good)
    row = tables["events"][4]
    row[1], row[2], row[6] = "later", "1.2.3", "x"
    result = validate_dataset(write_dataset(tables, tmp_path / "data"), out_dir=tmp_path / "out")
    assert result.summary["events"].rejected == 1
    assert len([p for p in result.problems if p.table == "events"]) == 3
    quarantined = _quarantine(result, "events")
    assert len(quarantined) == 1
    record = quarantined.iloc[0]
    assert record["column"] == "ts; ip; requests"
    assert record["rule"] == "bad_timestamp; bad_ip; not_integer"
    assert record["reason"] == (
        "bad timestamp 'later' (expected ISO 8601); malformed IP address '1.2.3'; "
        "requests 'x' is not an integer"
    )


def test_problem_line_lists_ten_rows_then_a_count(good: Tables, tmp_path: Path) -> None:
    tables = copy_tables(good)
    broken = list(range(2, 60, 4))
    for index in broken:
        tables["events"][index][7] = "-1"
    result = validate_dataset(write_dataset(tables, tmp_path / "data"))
    (problem,) = result.problems
    shown = ", ".join(str(i + 1) for i in broken[:10])
    assert str(problem) == (
        f"events.csv: rows {shown} (+{len(broken) - 10} more): column input_tokens: "
        "input_tokens '-1' is negative"
    )
    assert problem.count == len(broken)
    fewer = validate_dataset(tmp_path / "data", max_reported_rows=3)
    assert fewer.problems[0].rows == tuple(i + 1 for i in broken[:3])


# --- the corrupted copy --------------------------------------------------------------------

_CORRUPTIONS: dict[str, list[tuple[str, str]]] = {
    "accounts": [
        ("created_at", "yesterday"),
        ("created_at", ""),
        ("signup_ip", "256.1.1.1"),
        ("country", "Germany"),
        ("account_id", ""),
        ("*", "extra"),
    ],
    "payments": [
        ("account_id", "nobody"),
        ("card_bin", "12"),
        ("added_at", "31/12/2026"),
        ("payment_fingerprint", ""),
        ("billing_country", "U1"),
    ],
    "events": [
        ("ts", "2026-02-30T00:00:00Z"),
        ("ts", "tomorrow"),
        ("ip", "10.0.0"),
        ("ip", "fe80::zz"),
        ("requests", "two"),
        ("requests", "0"),
        ("input_tokens", "-7"),
        ("output_tokens", "3.5"),
        ("account_id", "ghost"),
        ("*", "short"),
    ],
}


def _corrupt(good: Tables, seed: int) -> tuple[Tables, dict[str, set[int]]]:
    """Break about 15% of the rows of each table; return the rows that must be rejected."""
    rng = random.Random(seed)
    tables = copy_tables(good)
    broken: dict[str, set[int]] = {name: set() for name in tables}
    lost_accounts: set[str] = set()
    for name, corruptions in _CORRUPTIONS.items():
        rows = tables[name]
        for index in rng.sample(range(len(rows)), k=max(3, len(rows) // 7)):
            column, value = rng.choice(corruptions)
            if name == "accounts":
                lost_accounts.add(rows[index][0])
            if column == "*":
                if value == "extra":
                    rows[index].append("surplus")
                else:
                    del rows[index][-2:]
            else:
                rows[index][HEADERS[name].index(column)] = value
            broken[name].add(index + 1)
    for name in ("payments", "events", "labels"):
        for index, row in enumerate(good[name]):
            if row[0] in lost_accounts:  # its account was rejected: so is the row
                broken[name].add(index + 1)
    return tables, broken


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_corrupted_copy_reports_every_bad_row_and_keeps_every_good_one(
    good: Tables, good_result: ValidationResult, tmp_path: Path, seed: int
) -> None:
    tables, broken = _corrupt(good, seed)
    result = validate_dataset(write_dataset(tables, tmp_path / "data"), out_dir=tmp_path / "out")
    _assert_counts_add_up(result)
    for name, rows in good.items():
        expected = broken[name]
        counts = result.summary[name]
        assert counts.read == len(rows)
        assert counts.rejected == len(expected), name
        reported = {r for p in result.problems if p.table == name for r in p.rows}
        problem_rows = sum(p.count for p in result.problems if p.table == name)
        assert reported <= expected and problem_rows >= len(expected)
        if expected:
            quarantined = _quarantine(result, name)
            assert set(map(int, quarantined["row"])) == expected, name
            assert quarantined["row"].is_unique
        else:
            assert name not in result.quarantine_paths
        # Every good row is kept, and kept exactly as the clean dataset gives it.
        good_rows = [i for i in range(len(rows)) if i + 1 not in expected]
        clean = good_result.tables[name].iloc[good_rows].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            plain_values(result.tables[name].reset_index(drop=True)), plain_values(clean)
        )


# --- file-level errors ---------------------------------------------------------------------


def _write_good(good: Tables, directory: Path) -> Path:
    return write_dataset(copy_tables(good), directory)


def _truncate_gzip(directory: Path) -> str:
    data = (directory / "events.csv").read_bytes()
    (directory / "events.csv").unlink()
    (directory / "events.csv.gz").write_bytes(gzip.compress(data)[:-200])
    return "events.csv.gz: unreadable or truncated file"


def _truncate_parquet(directory: Path) -> str:
    (directory / "payments.csv").unlink()
    pq.write_table(pa.table({"account_id": ["a"] * 50}), directory / "payments.parquet")
    data = (directory / "payments.parquet").read_bytes()
    (directory / "payments.parquet").write_bytes(data[: len(data) // 2])
    return "payments.parquet: unreadable or truncated file"


def _latin1(directory: Path) -> str:
    text = (directory / "accounts.csv").read_text().replace("user3@", "usér3@")
    (directory / "accounts.csv").write_bytes(text.encode("latin-1"))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "usér3@" in t)
    return f"accounts.csv: unknown encoding (byte 0xe9 on line {line} is not UTF-8); expected UTF-8"


def _utf16(directory: Path) -> str:
    text = (directory / "labels.csv").read_text()
    (directory / "labels.csv").write_bytes(text.encode("utf-16"))
    return "labels.csv: unknown encoding (UTF-16 byte-order mark); expected UTF-8"


def _missing_column(directory: Path) -> str:
    rows = [r[:1] + r[2:] for r in good_tables()["events"]]
    write_csv(directory / "events.csv", ["account_id", *HEADERS["events"][2:]], rows)
    return "events.csv: column ts: required column is missing"


def _header_only(directory: Path) -> str:
    write_csv(directory / "payments.csv", HEADERS["payments"], [])
    return "payments.csv: empty table (no data rows)"


def _zero_bytes(directory: Path) -> str:
    (directory / "labels.csv").write_bytes(b"")
    return "labels.csv: empty table"


def _no_accounts(directory: Path) -> str:
    (directory / "accounts.csv").unlink()
    return "required table accounts is missing"


def _two_files(directory: Path) -> str:
    write_parquet_dataset({"events": good_tables()["events"]}, directory)
    return "table events has more than one file (events.csv, events.parquet)"


def _repeated_column(directory: Path) -> str:
    rows = [[*r, r[2]] for r in good_tables()["events"]]
    write_csv(directory / "events.csv", [*HEADERS["events"], "ip"], rows)
    return "events.csv: column ip: column appears more than once"


FILE_CASES = {
    "truncated gzip": _truncate_gzip,
    "truncated parquet": _truncate_parquet,
    "latin-1": _latin1,
    "utf-16": _utf16,
    "missing column": _missing_column,
    "header only": _header_only,
    "zero bytes": _zero_bytes,
    "no accounts": _no_accounts,
    "two files": _two_files,
    "repeated column": _repeated_column,
}


@pytest.mark.parametrize("on_error", ["quarantine", "fail"])
@pytest.mark.parametrize("case", list(FILE_CASES))
def test_file_level_problem_raises_one_line_input_error(
    good: Tables, tmp_path: Path, case: str, on_error: str
) -> None:
    directory = _write_good(good, tmp_path / "data")
    expected = FILE_CASES[case](directory)
    with pytest.raises(InputError) as raised:
        validate_dataset(directory, out_dir=tmp_path / "out", on_error=on_error)  # type: ignore[arg-type]
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    assert raised.value.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_utf8_bom_is_fine(good: Tables, tmp_path: Path) -> None:
    directory = _write_good(good, tmp_path / "data")
    data = (directory / "accounts.csv").read_bytes()
    (directory / "accounts.csv").write_bytes(b"\xef\xbb\xbf" + data)
    result = validate_dataset(directory)
    assert result.problems == []
    assert result.summary["accounts"].accepted == len(good["accounts"])


def test_missing_optional_column_is_filled(tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text("account_id,created_at,note\na1,2026-01-01,hi\n")
    (tmp_path / "events.csv").write_text("account_id,ts\na1,2026-01-02T00:00:00Z\n")
    result = validate_dataset(tmp_path)
    events = result.tables["events"]
    assert list(events.columns) == TABLES["events"].column_names
    assert events["requests"].tolist() == [1]
    assert events["ip"].isna().all()
    assert "note" not in result.tables["accounts"].columns


# --- on_error="fail" -----------------------------------------------------------------------


def test_fail_mode_raises_with_every_problem_and_writes_nothing(
    good: Tables, tmp_path: Path
) -> None:
    tables = copy_tables(good)
    tables["events"][0][1] = "never"
    tables["payments"][1][2] = "12"
    directory = write_dataset(tables, tmp_path / "data")
    with pytest.raises(ValidationFailed) as raised:
        validate_dataset(directory, out_dir=tmp_path / "out", on_error="fail")
    failure = raised.value
    assert failure.exit_code == 2
    assert {p.rule for p in failure.problems} == {"bad_timestamp", "bad_card_bin"}
    assert failure.summary["events"].rejected == 1
    assert "\n" not in str(failure) and "1 in payments" in str(failure)
    assert not (tmp_path / "out").exists()


def test_output_is_byte_identical_and_stale_files_go(good: Tables, tmp_path: Path) -> None:
    tables = copy_tables(good)
    tables["events"][3][1] = "never"
    data = write_dataset(tables, tmp_path / "data")
    first, second = tmp_path / "first", tmp_path / "second"
    validate_dataset(data, out_dir=first)
    validate_dataset(data, out_dir=second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert Path("quarantine/events.csv") in files and Path("tables/labels.parquet") in files
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    # The same directory, now for a clean dataset without labels: nothing stale is left.
    (data / "labels.csv").unlink()
    write_dataset({"events": good["events"]}, data)
    result = validate_dataset(data, out_dir=first)
    assert result.quarantine_paths == {}
    assert not (first / "quarantine" / "events.csv").exists()
    assert not (first / "tables" / "labels.parquet").exists()


# --- round trips ---------------------------------------------------------------------------


def test_written_tables_read_back_equal(good_result: ValidationResult) -> None:
    assert good_result.out_dir is not None
    for name, frame in good_result.tables.items():
        back = pd.read_parquet(good_result.out_dir / "tables" / f"{name}.parquet")
        pd.testing.assert_frame_equal(back, frame)
    assert good_result.observations is not None
    back = pd.read_parquet(good_result.out_dir / "observations.parquet")
    pd.testing.assert_frame_equal(back, good_result.observations)


def test_parquet_input_with_native_types_equals_csv_input(
    good: Tables, good_result: ValidationResult, tmp_path: Path
) -> None:
    directory = write_parquet_dataset(good, tmp_path / "parquet")
    schema = pq.read_schema(directory / "events.parquet")
    assert pa.types.is_timestamp(schema.field("ts").type)
    assert pa.types.is_integer(schema.field("requests").type)
    result = validate_dataset(directory)
    assert result.problems == []
    for name in good:
        pd.testing.assert_frame_equal(result.tables[name], good_result.tables[name])
    assert result.observations is not None and good_result.observations is not None
    pd.testing.assert_frame_equal(result.observations, good_result.observations)


def test_validated_output_is_valid_input(good_result: ValidationResult, tmp_path: Path) -> None:
    assert good_result.out_dir is not None
    result = validate_dataset(good_result.out_dir / "tables")
    assert result.problems == []
    for name, frame in good_result.tables.items():
        pd.testing.assert_frame_equal(result.tables[name], frame)


def test_gzip_csv_equals_plain_csv(
    good: Tables, good_result: ValidationResult, tmp_path: Path
) -> None:
    directory = _write_good(good, tmp_path / "gz")
    for name in good:
        plain = directory / f"{name}.csv"
        (directory / f"{name}.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    result = validate_dataset(directory)
    for name in good:
        pd.testing.assert_frame_equal(result.tables[name], good_result.tables[name])


def test_parquet_values_of_other_types(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array([1, 2, 3], pa.int64()),
                "created_at": pa.array(
                    [1_750_000_000 + d * 86_400 for d in range(3)], pa.timestamp("s")
                ),
                "country": pa.array(["us", "gb", "de"]).dictionary_encode(),
            }
        ),
        tmp_path / "accounts.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "account_id": ["1", "2", "3"],
                "ts": pa.array(["2026-01-01T00:00:00+01:00", "2026-01-01", "bad"]),
                "requests": pa.array([2.0, 1.5, None]),
            }
        ),
        tmp_path / "events.parquet",
    )
    result = validate_dataset(tmp_path)
    accounts = result.tables["accounts"]
    assert accounts["account_id"].tolist() == ["1", "2", "3"]
    assert accounts["country"].tolist() == ["US", "GB", "DE"]
    assert accounts["created_at"].iloc[1] == pd.Timestamp(1_750_086_400, unit="s", tz="UTC")
    assert [(p.rule, p.column, p.rows) for p in result.problems] == [
        ("not_integer", "requests", (2,)),
        ("bad_timestamp", "ts", (3,)),
    ]
    events = result.tables["events"]
    assert events["ts"].iloc[0] == pd.Timestamp("2025-12-31T23:00:00", tz="UTC")
    assert events["requests"].tolist() == [2]


# --- a synthetic world ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from linker.synth import generate_world

    directory = tmp_path_factory.mktemp("synth")
    generate_world(2_000, 7, directory)
    return directory


def test_synthetic_world_validates_with_zero_rejections(synthetic_world: Path) -> None:
    result = validate_dataset(synthetic_world)
    assert [str(p) for p in result.problems] == []
    assert set(result.summary) == {"accounts", "payments", "events", "labels"}
    assert result.summary["accounts"].accepted == 2_000
    for counts in result.summary.values():
        assert counts.rejected == 0 and counts.read > 0
    assert result.observations is not None
    kinds = set(result.observations["kind"])
    assert {"mailbox", "email_domain", "ip", "subnet", "device", "payment", "prompt"} <= kinds


def test_problem_lines_match_the_documented_format(good: Tables, tmp_path: Path) -> None:
    tables, _ = _corrupt(good, 5)
    result = validate_dataset(write_dataset(tables, tmp_path / "data"))
    pattern = re.compile(
        r"^(accounts|payments|events|labels)\.csv: (row \d+|rows \d+(, \d+)*( \(\+\d+ more\))?): "
        r"(column [a-z_]+: )?\S.*$"
    )
    assert result.problems
    for problem in result.problems:
        assert pattern.match(str(problem)), str(problem)


def test_corrupted_synthetic_world_loses_no_good_row(synthetic_world: Path, tmp_path: Path) -> None:
    import csv
    import shutil

    clean = validate_dataset(synthetic_world, observations=False)
    copy = tmp_path / "world"
    shutil.copytree(synthetic_world, copy)
    with open(synthetic_world / "events.csv", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    rng = random.Random(11)
    damage = [("ts", "2026-06-31T00:00:00Z"), ("ip", "1.2.3.999"), ("requests", "-1")]
    broken = sorted(rng.sample(range(len(rows)), 60))
    for index in broken:
        column, value = damage[index % len(damage)]
        rows[index][header.index(column)] = value
    with open(copy / "events.csv", "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *rows])

    result = validate_dataset(copy, out_dir=tmp_path / "out", observations=False)
    counts = result.summary["events"]
    assert (counts.read, counts.rejected) == (len(rows), len(broken))
    quarantined = pd.read_csv(result.quarantine_paths["events"], dtype=str)
    assert quarantined["row"].astype(int).tolist() == [i + 1 for i in broken]
    kept = [i for i in range(len(rows)) if i not in set(broken)]
    expected = clean.tables["events"].iloc[kept].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        plain_values(result.tables["events"].reset_index(drop=True)), plain_values(expected)
    )
    for name in ("accounts", "payments", "labels"):
        assert result.summary[name].rejected == 0


# --- issue 12: table files that are not regular files ----------------------------------------


def _dangling_symlink(directory: Path) -> tuple[str, str]:
    (directory / "events.csv").unlink()
    (directory / "events.csv").symlink_to(directory / "gone.csv")
    return "events.csv", "symbolic link to a missing file"


def _symlink_loop(directory: Path) -> tuple[str, str]:
    (directory / "events.csv").unlink()
    (directory / "loop.csv").symlink_to(directory / "events.csv")
    (directory / "events.csv").symlink_to(directory / "loop.csv")
    return "events.csv", "symbolic link loop"


def _directory(directory: Path) -> tuple[str, str]:
    (directory / "payments.csv").unlink()
    (directory / "payments.csv").mkdir()
    return "payments.csv", "a directory"


def _fifo(directory: Path) -> tuple[str, str]:
    import os

    (directory / "events.csv").unlink()
    os.mkfifo(directory / "events.csv")
    return "events.csv", "a FIFO"


def _dev_null(directory: Path) -> tuple[str, str]:
    (directory / "payments.csv").unlink()
    (directory / "payments.csv").symlink_to("/dev/null")
    return "payments.csv", "a character device"


def _other_case(directory: Path) -> tuple[str, str]:
    (directory / "events.csv").rename(directory / "Events.CSV")
    return "Events.CSV", "differs from events.csv only in case"


def _other_case_accounts(directory: Path) -> tuple[str, str]:
    (directory / "accounts.csv").rename(directory / "ACCOUNTS.csv")
    return "ACCOUNTS.csv", "differs from accounts.csv only in case"


NOT_REGULAR = {
    "dangling symlink": _dangling_symlink,
    "symlink loop": _symlink_loop,
    "directory": _directory,
    "fifo": _fifo,
    "symlink to /dev/null": _dev_null,
    "name in another case": _other_case,
    "accounts in another case": _other_case_accounts,
}


@pytest.mark.parametrize("case", list(NOT_REGULAR))
def test_table_file_that_is_not_a_regular_file_is_a_file_error(
    good: Tables, tmp_path: Path, case: str
) -> None:
    directory = _write_good(good, tmp_path / "data")
    name, reason = NOT_REGULAR[case](directory)
    with pytest.raises(InputError) as raised:
        validate_dataset(directory, out_dir=tmp_path / "out")
    message = str(raised.value)
    assert message.startswith(f"{directory / name}: "), message
    assert reason in message
    assert "\n" not in message and raised.value.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_symlink_to_a_regular_file_is_a_table(good: Tables, tmp_path: Path) -> None:
    directory = _write_good(good, tmp_path / "data")
    elsewhere = tmp_path / "elsewhere.csv"
    (directory / "events.csv").rename(elsewhere)
    (directory / "events.csv").symlink_to(elsewhere)
    result = validate_dataset(directory)
    assert result.summary["events"].accepted == len(good["events"])


# --- issue 12: an unbalanced quote never merges records -------------------------------------


def _csv_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    return [",".join(header), *(",".join(row) for row in rows)]


@pytest.mark.parametrize(
    ("column", "where"),
    [("account_id", "start"), ("email", "middle"), ("billing_customer_id", "last")],
)
def test_unbalanced_quote_rejects_its_line_and_keeps_the_rest(
    good: Tables, tmp_path: Path, column: str, where: str
) -> None:
    rows = copy_tables(good)["accounts"]
    broken = 9  # 0-based index into rows; data row 10, file line 11
    index = HEADERS["accounts"].index(column)
    rows[broken][index] = '"' + rows[broken][index]
    directory = tmp_path / "data"
    directory.mkdir()
    lines = _csv_lines(HEADERS["accounts"], rows)
    (directory / "accounts.csv").write_text("\n".join(lines) + "\n")
    result = validate_dataset(directory, out_dir=tmp_path / "out")

    counts = result.summary["accounts"]
    assert (counts.read, counts.rejected) == (len(rows), 1)
    (problem,) = result.problems
    assert (problem.rule, problem.rows, problem.column) == ("unbalanced_quote", (10,), None)
    assert "line 11" in problem.reason
    expected = [r[0] for i, r in enumerate(good["accounts"]) if i != broken]
    assert result.tables["accounts"]["account_id"].tolist() == expected
    quarantined = _quarantine(result, "accounts")
    assert quarantined["rule"].tolist() == ["unbalanced_quote"]
    assert quarantined["raw_line"].iloc[0] == lines[broken + 1]


def test_unbalanced_quote_closed_later_by_another_field_is_caught(tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text(
        "account_id,created_at,email\n"
        'a1,2026-01-01,"x@y.org\n'
        "a2,2026-01-02,y@y.org\n"
        'a3,2026-01-03,"z@y.org"\n'
        'a4,2026-01-04,"multi\nline"\n'
        "a5,2026-01-05,w@y.org\n"
    )
    result = validate_dataset(tmp_path)
    counts = result.summary["accounts"]
    assert (counts.read, counts.accepted, counts.rejected) == (5, 4, 1)
    (problem,) = result.problems
    assert (problem.rule, problem.rows) == ("unbalanced_quote", (1,))
    accounts = result.tables["accounts"]
    assert accounts["account_id"].tolist() == ["a2", "a3", "a4", "a5"]
    assert accounts["email"].tolist() == ["y@y.org", "z@y.org", "multi\nline", "w@y.org"]


def test_quote_inside_an_unquoted_field_is_an_ordinary_character(tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text(
        'account_id,created_at,device_id\na1,2026-01-01,5\'10" tall\na2,2026-01-02,"x\ny"\n'
    )
    result = validate_dataset(tmp_path)
    assert result.problems == []
    assert result.tables["accounts"]["device_id"].tolist() == ["5'10\" tall", "x\ny"]


# --- issue 12: ids ---------------------------------------------------------------------------

BAD_IDS = {
    "nul": "acct\x00x",
    "newline": "acct\nx",
    "tab": "acct\tx",
    "del": "acct\x7fx",
    "c1": "acct\x85x",
    "blank": "   ",
}


@pytest.mark.parametrize("case", list(BAD_IDS))
@pytest.mark.parametrize(
    ("table", "column"),
    [("accounts", "account_id"), ("accounts", "billing_customer_id"), ("events", "account_id")],
)
def test_ids_with_control_characters_or_only_blanks_are_rejected(
    good: Tables, tmp_path: Path, case: str, table: str, column: str
) -> None:
    tables = copy_tables(good)
    bad = BAD_IDS[case]
    tables[table][2][HEADERS[table].index(column)] = bad
    result = validate_dataset(write_dataset(tables, tmp_path / "data"), out_dir=tmp_path / "out")
    _assert_counts_add_up(result)
    mine = [p for p in result.problems if p.table == table]
    assert [(p.rule, p.column, p.rows) for p in mine] == [("bad_id", column, (3,))]
    assert mine[0].reason == f"{column} {bad!r} is blank or contains control characters"
    assert bad not in set(result.tables[table][column].dropna())


# --- issue 12: timestamps --------------------------------------------------------------------

# (as written, the instant it means); every form docs/contract.md lists.
ACCEPTED_TIMESTAMPS = [
    ("2026-06-02", "2026-06-02T00:00:00Z"),
    ("2026-06-02T13", "2026-06-02T13:00:00Z"),
    ("2026-06-02T13:45", "2026-06-02T13:45:00Z"),
    ("2026-06-02T13:45:12", "2026-06-02T13:45:12Z"),
    ("2026-06-02 13:45:12", "2026-06-02T13:45:12Z"),
    ("2026-06-02T13:45:12.250", "2026-06-02T13:45:12.250Z"),
    ("2026-06-02T13:45:12.123456789", "2026-06-02T13:45:12.123456Z"),
    ("2026-06-02T13:45:12Z", "2026-06-02T13:45:12Z"),
    ("2026-06-02T15:45:12+02:00", "2026-06-02T13:45:12Z"),
    ("2026-06-02T15:45:12+0200", "2026-06-02T13:45:12Z"),
    ("2026-06-02T15:45:12+02", "2026-06-02T13:45:12Z"),
    ("2026-06-02T08:45:12.5-05:00", "2026-06-02T13:45:12.5Z"),
    ("2026-06-02 13:45Z", "2026-06-02T13:45:00Z"),
    ("20260602T134512Z", "2026-06-02T13:45:12Z"),
    ("20260602T154512+0200", "2026-06-02T13:45:12Z"),
    ("20260602T134512.75", "2026-06-02T13:45:12.75Z"),
]

REJECTED_TIMESTAMPS = [
    "2025-1-1",
    " 2025-01-01",
    "2025-01-01 ",
    "2026-06-02t13:45:12z",
    "2026-06-02T24:00:00",
    "2026-06-02T13:45:60",
    "2026-02-30",
    "2025-02-29",
    "2026-06-02Z",
    "2026-06-02T13:45:12 Z",
    "2026-06-02T13:45:12+2",
    "2026-06-02T13:45:12+24:00",
    "2026-06-02T13:45:12.",
    "2026-06-02T13:45:12,5",
    "2026-06-02T1345",
    "20260602",
    "2026-W23-2",
    "2026-153",
    "1717335912",
    "0000-01-01",
    "+2026-06-02",
]


def _accounts_with(tmp_path: Path, created: list[str]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [[f"a{i}", value] for i, value in enumerate(created)]
    write_csv(tmp_path / "accounts.csv", ["account_id", "created_at"], rows)
    return tmp_path


@pytest.mark.parametrize("mixed", [False, True])
def test_every_documented_timestamp_form_is_accepted(tmp_path: Path, mixed: bool) -> None:
    values = [written for written, _ in ACCEPTED_TIMESTAMPS]
    if mixed:  # a column mixing forms takes the slow path; one form alone the fast one
        result = validate_dataset(_accounts_with(tmp_path, values))
        parsed = result.tables["accounts"]["created_at"].tolist()
    else:
        parsed = []
        for i, value in enumerate(values):
            result = validate_dataset(_accounts_with(tmp_path / str(i), [value]))
            assert result.problems == [], value
            parsed.extend(result.tables["accounts"]["created_at"].tolist())
    assert [str(p) for p in parsed] == [
        str(pd.Timestamp(meant)) for _, meant in ACCEPTED_TIMESTAMPS
    ]
    text = (ROOT / "docs" / "contract.md").read_text()
    for written, _ in ACCEPTED_TIMESTAMPS:
        assert f"`{written}`" in text, f"{written} is not in docs/contract.md"


@pytest.mark.parametrize("value", REJECTED_TIMESTAMPS)
def test_undocumented_timestamp_forms_are_rejected(tmp_path: Path, value: str) -> None:
    result = validate_dataset(_accounts_with(tmp_path, ["2026-06-02T13:45:12Z", value]))
    assert [(p.rule, p.rows) for p in result.problems] == [("bad_timestamp", (2,))], value
    assert result.problems[0].reason == f"bad timestamp {value!r} (expected ISO 8601)"


@pytest.mark.parametrize("odd_one_out", [None, "2026-02-30T00:00:00Z", "0000-01-01T00:00:00Z"])
def test_a_mostly_utc_column_of_mixed_forms_parses_each_value_as_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, odd_one_out: str | None
) -> None:
    import linker.io.validate as validate_module

    slow_rows: list[int] = []
    slow = validate_module._parse_any_form

    def spy(strings: pa.Array, empty: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        slow_rows.append(len(strings))
        return slow(strings, empty)

    monkeypatch.setattr(validate_module, "_parse_any_form", spy)
    utc = [f"2026-06-{day:02d}T13:45:12.{day}Z" for day in range(1, 29)] * 2
    odd = [odd_one_out] if odd_one_out else []
    # The rejected forms that end in Z are UTC-shaped ones Arrow refuses: the odd ones out.
    rejected = [v for v in REJECTED_TIMESTAMPS if not v.endswith("Z")]
    values = utc + [written for written, _ in ACCEPTED_TIMESTAMPS] + rejected + odd
    result = validate_dataset(_accounts_with(tmp_path, values))
    first_bad = len(utc) + len(ACCEPTED_TIMESTAMPS) + 1
    expected_bad = tuple(range(first_bad, len(values) + 1))
    assert [p.rule for p in result.problems] == ["bad_timestamp"]
    assert result.summary["accounts"].rejected == len(expected_bad)
    assert tuple(result.quarantine["accounts"]["row"].astype(int)) == expected_bad
    parsed = [str(p) for p in result.tables["accounts"]["created_at"]]
    meant = [str(pd.Timestamp(v)) for v in utc] + [
        str(pd.Timestamp(m)) for _, m in ACCEPTED_TIMESTAMPS
    ]
    assert parsed == meant
    # The UTC majority is cast at once; only the other rows (or, when Arrow refuses one of
    # the UTC-shaped values, the whole column) go through the regular expressions.
    refused = odd_one_out is not None and not odd_one_out.startswith("0000")
    assert len(slow_rows) == 1
    if refused:
        assert slow_rows[0] == len(values)
    else:
        assert slow_rows[0] <= len(values) - len(utc)


@pytest.mark.parametrize("sparse", [False, True])
def test_a_long_column_parses_as_the_slow_path_does(sparse: bool) -> None:
    """Columns long enough for the sampled casts: the same values and the same rejected rows
    as every row checked by regular expression, whether the sample sees the odd forms (one
    row in 7) or not (three odd rows, none on the sample's stride)."""
    from linker.io.validate import _parse_any_form, _parse_timestamps

    n = 300_000
    forms = REJECTED_TIMESTAMPS + [w for w, _ in ACCEPTED_TIMESTAMPS]
    odd_rows = [1, 150_001, 299_999] if sparse else list(range(0, n, 7))
    values = [f"2026-03-{1 + i % 28:02d}T10:00:{i % 60:02d}Z" for i in range(n)]
    for k, row in enumerate(odd_rows):
        values[row] = forms[k % len(forms)]
    strings = pa.array(values, pa.large_string())
    empty = np.zeros(n, dtype=bool)
    typed, bad = _parse_timestamps(strings, empty)
    expected_typed, expected_bad = _parse_any_form(strings, empty)
    assert bad.tolist() == expected_bad.tolist()
    assert typed.equals(expected_typed)
    assert bad.sum() > 0


LATEST = "the later of the time of the run (+ 24 h) and the column's own range (ingest.latest)"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0001-01-01", "timestamp '0001-01-01' is before 2000-01-01T00:00:00Z (ingest.earliest)"),
        (
            "1970-01-01T00:00:00Z",
            "timestamp '1970-01-01T00:00:00Z' is before 2000-01-01T00:00:00Z (ingest.earliest)",
        ),
        (
            "9999-12-31",
            "timestamp '9999-12-31' is after " + LATEST,
        ),
        (
            "2999-01-01T00:00:00+01:00",
            "timestamp '2999-01-01T00:00:00+01:00' is after " + LATEST,
        ),
    ],
)
def test_implausible_timestamps_are_rejected_with_their_own_rule(
    good: Tables, tmp_path: Path, value: str, reason: str
) -> None:
    tables = copy_tables(good)
    tables["events"][4][1] = value
    result = validate_dataset(write_dataset(tables, tmp_path / "data"))
    _assert_counts_add_up(result)
    assert [(p.rule, p.column, p.rows, p.reason) for p in result.problems] == [
        ("implausible_timestamp", "ts", (5,), reason)
    ]


def test_plausibility_window_comes_from_the_settings(good: Tables, tmp_path: Path) -> None:
    from linker.settings import IngestSettings

    directory = write_dataset(copy_tables(good), tmp_path / "data")
    window = IngestSettings(earliest="2026-07-10", latest="2026-07-20T00:00:00Z")
    result = validate_dataset(directory, settings=window)
    created = pd.to_datetime([r[1] for r in good["accounts"]], format="ISO8601", utc=True)
    outside = (created < pd.Timestamp("2026-07-10", tz="UTC")) | (
        created > pd.Timestamp("2026-07-20", tz="UTC")
    )
    assert result.summary["accounts"].rejected == int(outside.sum()) > 0
    problem = next(p for p in result.problems if p.table == "accounts")
    assert problem.rule == "implausible_timestamp"
    assert (
        "(ingest.earliest)" in problem.reason
        or "is after 2026-07-20T00:00:00Z (ingest.latest)" in problem.reason
    )


def test_invalid_plausibility_settings_are_settings_errors() -> None:
    from linker.errors import SettingsError
    from linker.settings import load_settings

    with pytest.raises(SettingsError) as raised:
        load_settings(overrides={"ingest.earliest": "soon", "ingest.latest": "2001-01-01"})
    assert "ingest.earliest" in str(raised.value)
    with pytest.raises(SettingsError, match=r"ingest\.latest"):
        load_settings(overrides={"ingest.earliest": "2020-01-01", "ingest.latest": "2019-01-01"})


def test_parquet_timestamps_are_checked_for_plausibility(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "account_id": ["a", "b", "c"],
                "created_at": pa.array([0, 1_750_000_000, 86_400], pa.timestamp("s")),
            }
        ),
        tmp_path / "accounts.parquet",
    )
    result = validate_dataset(tmp_path)
    assert [(p.rule, p.rows) for p in result.problems] == [("implausible_timestamp", (1, 3))]
    assert result.tables["accounts"]["account_id"].tolist() == ["b"]


# --- issue 12: Parquet column types, and tables that lose every row ---------------------------


def test_parquet_integer_epoch_timestamps_are_a_file_error(good: Tables, tmp_path: Path) -> None:
    directory = write_parquet_dataset(good, tmp_path / "data")
    frame = pd.read_parquet(directory / "accounts.parquet")
    frame["created_at"] = frame["created_at"].astype("int64") // 10**9
    frame.to_parquet(directory / "accounts.parquet", index=False)
    with pytest.raises(InputError) as raised:
        validate_dataset(directory, out_dir=tmp_path / "out")
    message = str(raised.value)
    assert message.startswith(f"{directory / 'accounts.parquet'}: column created_at: ")
    assert "int64" in message and "TIMESTAMP" in message
    assert raised.value.exit_code == 2 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("table", ["accounts", "payments", "events", "labels"])
def test_a_table_that_loses_every_row_is_a_file_error(
    good: Tables, tmp_path: Path, table: str
) -> None:
    tables = copy_tables(good)
    column = "created_at" if table == "accounts" else "account_id"
    for row in tables[table]:
        row[HEADERS[table].index(column)] = "nonsense" if table == "accounts" else "ghost"
    directory = write_dataset(tables, tmp_path / "data")
    with pytest.raises(InputError) as raised:
        validate_dataset(directory, out_dir=tmp_path / "out")
    message = str(raised.value)
    assert message.startswith(f"{directory / (table + '.csv')}: every row was rejected")
    assert "\n" not in message and raised.value.exit_code == 2
    assert not (tmp_path / "out").exists()


# --- issue 12: unclear file errors -----------------------------------------------------------


def test_cr_only_line_endings_are_a_file_error(good: Tables, tmp_path: Path) -> None:
    directory = _write_good(good, tmp_path / "data")
    text = (directory / "events.csv").read_text()
    (directory / "events.csv").write_text(text.replace("\n", "\r"))
    with pytest.raises(InputError) as raised:
        validate_dataset(directory)
    assert str(raised.value) == (
        f"{directory / 'events.csv'}: line endings are CR only (classic Mac OS); "
        "expected LF or CRLF"
    )


def test_a_megabyte_header_is_a_file_error(good: Tables, tmp_path: Path) -> None:
    directory = _write_good(good, tmp_path / "data")
    header = ",".join(HEADERS["events"]) + "," + "x" * (1 << 20)
    (directory / "events.csv").write_text(header + "\n" + "a,b\n")
    with pytest.raises(InputError) as raised:
        validate_dataset(directory)
    message = str(raised.value)
    assert message == f"{directory / 'events.csv'}: header line is longer than 1 MiB"


def test_bom_with_crlf_is_fine(good: Tables, tmp_path: Path) -> None:
    directory = _write_good(good, tmp_path / "data")
    data = (directory / "accounts.csv").read_bytes().replace(b"\n", b"\r\n")
    (directory / "accounts.csv").write_bytes(b"\xef\xbb\xbf" + data)
    result = validate_dataset(directory)
    assert result.problems == []
    assert result.summary["accounts"].accepted == len(good["accounts"])


def test_header_only_gzip_is_an_empty_table(good: Tables, tmp_path: Path) -> None:
    directory = _write_good(good, tmp_path / "data")
    (directory / "labels.csv").unlink()
    (directory / "labels.csv.gz").write_bytes(gzip.compress(b"account_id,ring_id\n"))
    with pytest.raises(InputError, match=r"labels\.csv\.gz: empty table \(no data rows\)"):
        validate_dataset(directory)


def test_file_level_problems_are_found_before_any_row_is_parsed(
    good: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import linker.io.readers as readers

    parsed: list[str] = []
    real = readers._parse_csv

    def spy(path: Path, *args: object, **kwargs: object) -> pa.Table:
        parsed.append(Path(path).name)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(readers, "_parse_csv", spy)
    directory = _write_good(good, tmp_path / "data")
    rows = [r[:1] + r[2:] for r in good["events"]]
    write_csv(directory / "events.csv", ["account_id", *HEADERS["events"][2:]], rows)
    with pytest.raises(InputError, match=r"events\.csv: column ts: required column is missing"):
        validate_dataset(directory)
    assert parsed == []


# --- issue 12: the allow-list is a bounded regular file --------------------------------------


def _load_allowlist_in_a_child(path: str) -> subprocess.CompletedProcess[str]:
    """Run load_allowlist in a child with 1 GiB of address space and 60 s, so a bug can't hang."""
    import resource
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    code = (
        "import sys\nfrom linker.allowlist import load_allowlist\n"
        "from linker.errors import InputError\n"
        "try:\n    load_allowlist(sys.argv[1])\n"
        "except InputError as e:\n    print(e)\n    sys.exit(2)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, path],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=False,
    )


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: "/dev/zero", "a character device"),
        (lambda d: str(d), "a directory"),
        (lambda d: (os.mkfifo(d / "fifo"), str(d / "fifo"))[1], "a FIFO"),
        (lambda d: _sparse(d / "big.csv", (64 << 20) + 1), "larger than 64 MiB"),
    ],
)
def test_allowlist_must_be_a_bounded_regular_file(
    tmp_path: Path, make: object, reason: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    done = _load_allowlist_in_a_child(path)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stdout.strip()
    assert line.startswith(f"{path}: ") and reason in line and "\n" not in line


def _sparse(path: Path, size: int) -> str:
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


def test_quoted_record_over_lines_that_does_not_fit_the_header_is_cut_back(
    tmp_path: Path,
) -> None:
    # Two stray quotes form a well-quoted field over three lines, but the record it makes
    # has 6 fields: it is cut at the line where the quote opened, the next lines read alone.
    (tmp_path / "accounts.csv").write_text(
        "account_id,created_at,email\n"
        'a1,2026-01-01,"x@y.org\n'
        "a2,2026-01-02,y@y.org\n"
        'a3",2026-01-03,z@y.org,surplus\n'
        "a4,2026-01-04,w@y.org\n"
    )
    result = validate_dataset(tmp_path)
    counts = result.summary["accounts"]
    assert (counts.read, counts.accepted, counts.rejected) == (4, 2, 2)
    assert [(p.rule, p.rows) for p in result.problems] == [
        ("unbalanced_quote", (1,)),
        ("field_count", (3,)),
    ]
    assert "the record it makes has 6 fields" in result.problems[0].reason
    assert result.tables["accounts"]["account_id"].tolist() == ["a2", "a4"]


def test_bare_cr_before_a_quoted_line_break_is_counted_not_a_crash(
    good: Tables, tmp_path: Path
) -> None:
    # Found by tests/test_fuzz_ingest.py: the record '\r,"\n"' made Python's csv module
    # raise inside the quote check and the quarantine writer.
    directory = _write_good(good, tmp_path / "data")
    lines = (directory / "events.csv").read_text().splitlines()
    lines.insert(1, '\r,"\n"')
    (directory / "events.csv").write_text("\n".join(lines) + "\n", newline="")
    result = validate_dataset(directory, out_dir=tmp_path / "out")
    _assert_counts_add_up(result)
    assert result.summary["events"].accepted == len(good["events"])
    assert result.summary["events"].rejected >= 1


def test_a_dataset_dated_after_the_machines_clock_is_kept(good: Tables, tmp_path: Path) -> None:
    """A synthetic world, or a machine whose clock is behind: the column's own range extends
    the default upper bound, so nothing is rejected; a lone far-future date still is."""
    early = datetime(2020, 1, 1, tzinfo=UTC)
    clean = validate_dataset(write_dataset(copy_tables(good), tmp_path / "a"), now=early)
    assert clean.n_rejected == 0
    tables = copy_tables(good)
    tables["events"][4][1] = "2999-01-01"
    result = validate_dataset(write_dataset(tables, tmp_path / "b"), now=early)
    assert [(p.rule, p.rows) for p in result.problems] == [("implausible_timestamp", (5,))]


@given(
    st.lists(st.one_of(st.none(), st.integers(0, 199)), max_size=400),
    st.integers(1, 200),
)
@settings(max_examples=60, deadline=None)
def test_categorical_keeps_only_used_values_as_pandas_would(
    codes: list[int | None], n_values: int
) -> None:
    """The accepted table's text columns: only the values its rows use are categories, in
    dictionary order, with the codes, nulls and code width pandas' own
    ``remove_unused_categories`` gives."""
    codes = [None if c is None else c % n_values for c in codes]
    width = pa.int8() if n_values < 128 else pa.int32()
    array = pa.DictionaryArray.from_arrays(
        pa.array(codes, width), pa.array([f"v{i:03d}" for i in range(n_values)])
    )
    expected = pd.Series(array.to_pandas()).cat.remove_unused_categories()
    got = _categorical(array)
    pd.testing.assert_series_equal(got, expected)
    assert got.cat.codes.dtype == expected.cat.codes.dtype
    assert set(got.cat.categories) == {f"v{c:03d}" for c in codes if c is not None}
