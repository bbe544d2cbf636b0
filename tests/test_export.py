"""The takedown export: row order, formats, filters, atomic replacement, re-export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from linker import export
from linker.engine import RunDirectory
from linker.errors import InputError, LinkerError
from linker.export import EXPORT_COLUMNS, takedown_frame, write_export
from linker.pipeline import export_run


def _scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["r2", "s3", "s1", "s2", "n1", "r1", "s4", "s5"],
            "billing_customer_id": ["B-r2", "B-s3", None, "B-s2", "B-n1", "B-r1", "B-s4", "B-s5"],
            "cluster_id": ["C-0002", "C-0001", "C-0002", "C-0001", None, None, "C-0001", None],
            "cluster_size": [2, 3, 2, 3, 1, 1, 3, 1],
            "score": [0.6, 0.91244, 0.95, 0.91236, 0.1, 0.7, 0.9124, 0.9124],
            "action": [
                "review",
                "suspend",
                "suspend",
                "suspend",
                "none",
                "review",
                "suspend",
                "suspend",
            ],
            "reason_codes": [
                "in_cluster:2",
                "shared_payment:2",
                "shared_device:1",
                "shared_payment:2",
                "",
                "shared_ip:1",
                "shared_payment:2",
                "shared_mailbox:1",
            ],
        }
    )


def test_rows_in_documented_order() -> None:
    frame = takedown_frame(_scores())
    # suspend before review; score (rounded to 4 places) descending; ties by cluster_id
    # with rows lacking one last, then account_id. s3 (0.91244) and s2 (0.91236) both round to
    # 0.9124, so s2 comes first despite its lower raw score.
    assert frame["account_id"].tolist() == ["s1", "s2", "s3", "s4", "s5", "r1", "r2"]
    assert frame["score"].tolist()[1:5] == [0.9124] * 4
    assert list(frame.columns) == list(EXPORT_COLUMNS)


def test_order_does_not_depend_on_input_order() -> None:
    shuffled = _scores().sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(takedown_frame(shuffled), takedown_frame(_scores()))


def test_filters() -> None:
    assert takedown_frame(_scores(), actions=["review"])["account_id"].tolist() == ["r1", "r2"]
    assert takedown_frame(_scores(), actions=["none"])["account_id"].tolist() == ["n1"]
    high = takedown_frame(_scores(), min_score=0.9124)
    assert high["account_id"].tolist() == ["s1", "s2", "s3", "s4", "s5"]
    with pytest.raises(InputError, match="unknown action"):
        takedown_frame(_scores(), actions=["ban"])


def test_csv_bytes(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    result = write_export(takedown_frame(_scores(), actions=["review"]), out)
    assert out.read_bytes() == (
        b"account_id,billing_customer_id,cluster_id,cluster_size,score,action,reason_codes\n"
        b"r1,B-r1,,1,0.7000,review,shared_ip:1\n"
        b"r2,B-r2,C-0002,2,0.6000,review,in_cluster:2\n"
    )
    assert result.rows == 2 and result.format == "csv"
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["export"]["rows"] == 2
    assert manifest["export"]["by_action"]["review"] == 2
    assert "timings_seconds" not in out.read_text()


def test_jsonl_types_and_nulls(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    write_export(takedown_frame(_scores()), out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["account_id"] for r in rows] == ["s1", "s2", "s3", "s4", "s5", "r1", "r2"]
    first = rows[0]
    assert list(first) == list(EXPORT_COLUMNS)
    assert first["billing_customer_id"] is None and first["cluster_size"] == 2
    assert first["score"] == 0.95 and isinstance(first["score"], float)
    assert rows[4]["cluster_id"] is None


def test_parquet_schema(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    write_export(takedown_frame(_scores()), out)
    table = pq.read_table(out)
    assert table.column_names == list(EXPORT_COLUMNS)
    assert str(table.schema.field("cluster_size").type) == "int64"
    assert str(table.schema.field("score").type) == "double"
    assert str(table.schema.field("account_id").type) == "string"
    assert table.column("account_id").to_pylist()[0] == "s1"
    assert table.column("billing_customer_id").to_pylist()[0] is None


def test_format_from_suffix_or_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="suffix"):
        write_export(takedown_frame(_scores()), tmp_path / "t.txt")
    result = write_export(takedown_frame(_scores()), tmp_path / "t.txt", fmt="jsonl")
    assert result.format == "jsonl"


def test_interrupted_write_leaves_previous_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "takedown.csv"
    write_export(takedown_frame(_scores()), out)
    before = out.read_bytes()

    def crash_midway(frame: pd.DataFrame, path: Path) -> None:
        with open(path, "w") as handle:
            handle.write("account_id,billing_customer_id\nhalf-a-row")
        raise OSError("disk full")

    monkeypatch.setitem(export._WRITERS, "csv", crash_midway)
    with pytest.raises(LinkerError, match=r"disk full.*previous list is kept"):
        write_export(takedown_frame(_scores(), actions=["review"]), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".takedown.csv.d",
        "takedown.csv",
        "takedown.csv.manifest.json",
    ]
    # Only the committed version is left: the failed one was removed with its temporary file.
    assert sorted(p.name for p in (tmp_path / ".takedown.csv.d").iterdir()) == [
        "current",
        os.readlink(tmp_path / ".takedown.csv.d" / "current"),
        "lock",
    ]


def _saved_run(tmp_path: Path) -> Path:
    store = RunDirectory(tmp_path / "run")
    store.begin()
    store.write("scores", _scores())
    store.write_json("manifest", {"settings": {"run": {"actions": ["suspend"], "min_score": 0.0}}})
    return store.root


def test_export_run_reuses_saved_scores_with_filters(tmp_path: Path) -> None:
    run_dir = _saved_run(tmp_path)
    default = export_run(run_dir, tmp_path / "a.csv")
    assert default.by_action == {"suspend": 5, "review": 0, "none": 0}  # the run's setting
    filtered = export_run(
        run_dir, tmp_path / "b.parquet", actions=["suspend", "review"], min_score=0.7
    )
    table = pq.read_table(filtered.path).to_pandas()
    assert table["account_id"].tolist() == ["s1", "s2", "s3", "s4", "s5", "r1"]
    jsonl = export_run(run_dir, tmp_path / "c.jsonl", actions=["review"])
    assert [json.loads(x)["account_id"] for x in jsonl.path.read_text().splitlines()] == [
        "r1",
        "r2",
    ]
    manifest = json.loads(jsonl.manifest_path.read_text())
    assert manifest["filters"] == {"actions": ["review"], "min_score": 0.0}


def test_export_run_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run directory not found"):
        export_run(tmp_path / "nope", tmp_path / "a.csv")
    (tmp_path / "half").mkdir()
    with pytest.raises(InputError, match=r"no manifest\.json"):
        export_run(tmp_path / "half", tmp_path / "a.csv")
    with pytest.raises(InputError, match="min score"):
        export_run(_saved_run(tmp_path), tmp_path / "a.csv", min_score=2.0)
