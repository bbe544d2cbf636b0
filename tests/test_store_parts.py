"""Table artefacts kept as part files (store.Appended): what `linker update` writes for the
tables that only grow, read back as one table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linker.engine.store import PARTS_FILE, Appended, MemoryStore, RunDirectory
from linker.errors import LinkerError
from linker.io.files import file_sha256


def _events(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": pd.array([f"a{i % 7}" for i in range(start, start + n)], dtype="string"),
            "ts": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")
            + pd.Timedelta(hours=start),
            "requests": list(range(start, start + n)),
        }
    )


@pytest.fixture
def first(tmp_path: Path) -> RunDirectory:
    store = RunDirectory(tmp_path / "one")
    store.begin()
    store.write("events", _events(0, 50))
    return store


def test_appended_reads_as_the_union_of_the_rows_in_order(
    first: RunDirectory, tmp_path: Path
) -> None:
    second = RunDirectory(tmp_path / "two")
    second.begin()
    digest = second.write("events", Appended(first, _events(50, 20)))
    assert second.has("events")
    expected = pd.concat([first.read("events"), _events(50, 20)], ignore_index=True)
    got = second.read("events")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["ts"].dtype == first.read("events")["ts"].dtype
    # Filters and columns work across the parts.
    some = second.read("events", columns=["requests"], filters=[("account_id", "==", "a3")])
    assert some["requests"].tolist() == [r for r in range(70) if r % 7 == 3]
    # A content hash over the parts, which another content changes.
    third = RunDirectory(tmp_path / "three")
    third.begin()
    assert third.write("events", Appended(first, _events(50, 21))) != digest
    # The new rows' columns in another order still make a part of the same schema.
    fourth = RunDirectory(tmp_path / "four")
    fourth.begin()
    reordered = _events(50, 20)[["requests", "ts", "account_id"]]
    assert fourth.write("events", Appended(first, reordered)) == digest
    assert len(fourth.parts("events")) == 2


def test_the_previous_part_is_hard_linked_and_its_hash_reused(
    first: RunDirectory, tmp_path: Path
) -> None:
    second = RunDirectory(tmp_path / "two")
    second.begin()
    second.write("events", Appended(first, _events(50, 20)))
    parts = second.parts("events")
    root = Path(second.location("events"))
    assert [p["rows"] for p in parts] == [50, 20]
    assert os.path.samefile(root / parts[0]["file"], first.location("events"))
    assert parts[0]["sha256"] == file_sha256(Path(first.location("events")))
    assert parts[1]["sha256"] == file_sha256(root / parts[1]["file"])
    # A chain of updates: each keeps the parts before it, as recorded.
    third = RunDirectory(tmp_path / "three")
    third.begin()
    third.write("events", Appended(second, _events(70, 5)))
    chained = third.parts("events")
    assert [p["rows"] for p in chained] == [50, 20, 5]
    assert [p["sha256"] for p in chained[:2]] == [p["sha256"] for p in parts]
    assert len(third.read("events")) == 75
    # No new rows: the previous parts alone.
    fourth = RunDirectory(tmp_path / "four")
    fourth.begin()
    fourth.write("events", Appended(third, pd.DataFrame()))
    assert [p["rows"] for p in fourth.parts("events")] == [50, 20, 5]


def test_parts_are_copied_where_hard_links_fail(
    first: RunDirectory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    second = RunDirectory(tmp_path / "two")
    second.begin()
    second.write("events", Appended(first, _events(50, 3)))
    root = Path(second.location("events"))
    assert not os.path.samefile(root / "part-00000.parquet", first.location("events"))
    assert len(second.read("events")) == 53


def test_rows_that_do_not_fit_the_schema_give_one_file(first: RunDirectory, tmp_path: Path) -> None:
    second = RunDirectory(tmp_path / "two")
    second.begin()
    odd = _events(50, 2).assign(note=["x", "y"])
    second.write("events", Appended(first, odd))
    assert Path(second.location("events")).is_file()
    got = second.read("events")
    assert len(got) == 52 and got["note"].tolist()[-2:] == ["x", "y"]


def test_a_parted_artefact_is_replaced_and_removed_like_a_file(
    first: RunDirectory, tmp_path: Path
) -> None:
    second = RunDirectory(tmp_path / "two")
    second.begin()
    second.write("events", Appended(first, _events(50, 2)))
    second.write("events", _events(0, 4))
    assert Path(second.location("events")).is_file() and len(second.read("events")) == 4
    second.write("events", Appended(first, _events(50, 2)))
    second.begin()
    assert not second.has("events") and not os.path.lexists(second.location("events"))
    # An unfinished append (no parts list) is not an artefact; its temporary directory is
    # cleaned like a temporary file.
    stale = Path(second.location("events")).with_name(".events.parquet.abcd1234.tmp")
    stale.mkdir(parents=True)
    (stale / "part-00000.parquet").write_bytes(b"x")
    assert stale in second.clean_stale() and not stale.exists()
    half = Path(second.location("events"))
    half.mkdir()
    assert not second.has("events")
    (half / PARTS_FILE).write_text(json.dumps({"parts": []}), encoding="utf-8")
    assert second.has("events")


def test_memory_store_keeps_the_concatenation(first: RunDirectory) -> None:
    memory = MemoryStore()
    memory.write("events", Appended(first, _events(50, 5)))
    assert memory.read("events")["requests"].tolist() == list(range(55))


def _applied(frame: pd.DataFrame, replaced: list[int], rows: pd.DataFrame) -> pd.DataFrame:
    keep = [i for i in range(len(frame)) if i not in set(replaced)]
    return pd.concat([frame.iloc[keep], rows], ignore_index=True)


def test_replaced_rows_are_skipped_through_a_chain_of_revisions(
    first: RunDirectory, tmp_path: Path
) -> None:
    """Rows replaced by later ones (linker update's observations) are not read back, in
    whichever part they are; the parts stay hard links."""
    base = first.read("events")
    second = RunDirectory(tmp_path / "two")
    second.begin()
    new_rows = _events(100, 5)
    second.write("events", Appended(first, new_rows, replaced=np.array([3, 0, 49])))
    want = _applied(base, [0, 3, 49], new_rows)
    pd.testing.assert_frame_equal(second.read("events"), want)
    # Rows of both parts replaced again: numbered over what the second run reads.
    third = RunDirectory(tmp_path / "three")
    third.begin()
    more = _events(200, 3)
    third.write("events", Appended(second, more, replaced=np.array([0, 46, 47, 51])))
    want_third = _applied(want, [0, 46, 47, 51], more)
    pd.testing.assert_frame_equal(third.read("events"), want_third)
    parts = json.loads((Path(third.location("events")) / PARTS_FILE).read_text())["parts"]
    # Second run's row 0 and 46 are the first part's rows 1 and 48 (0 and 3 were skipped).
    assert [p.get("replaced", []) for p in parts] == [[0, 1, 3, 48, 49], [0, 4], []]
    assert os.path.samefile(
        Path(third.location("events")) / parts[0]["file"],
        Path(first.location("events")),
    )
    # Columns and filters apply to the rows that remain.
    got = third.read("events", columns=["requests"], filters=[("account_id", "==", "a2")])
    wanted = want_third.loc[want_third["account_id"] == "a2", ["requests"]]
    pd.testing.assert_frame_equal(got, wanted.reset_index(drop=True))
    # The same in memory.
    memory = MemoryStore()
    memory.write("events", Appended(second, more, replaced=np.array([0, 46, 47, 51])))
    pd.testing.assert_frame_equal(memory.read("events"), want_third)


def test_replaced_rows_change_the_hash_and_are_checked(first: RunDirectory, tmp_path: Path) -> None:
    two, three = RunDirectory(tmp_path / "two"), RunDirectory(tmp_path / "three")
    two.begin()
    three.begin()
    rows = _events(100, 2)
    assert two.write("events", Appended(first, rows, replaced=np.array([1]))) != three.write(
        "events", Appended(first, rows, replaced=np.array([2]))
    )
    four = RunDirectory(tmp_path / "four")
    four.begin()
    with pytest.raises(LinkerError, match="outside"):
        four.write("events", Appended(first, rows, replaced=np.array([50])))


def test_random_revisions_read_back_as_applied(first: RunDirectory, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store, want = first, first.read("events")
    for step in range(4):
        nxt = RunDirectory(tmp_path / f"r{step}")
        nxt.begin()
        replaced = rng.choice(len(want), size=int(rng.integers(1, 12)), replace=False)
        rows = _events(1000 * (step + 1), int(rng.integers(0, 6)))
        nxt.write("events", Appended(store, rows, replaced=replaced))
        want = _applied(want, sorted(replaced.tolist()), rows)
        pd.testing.assert_frame_equal(nxt.read("events"), want)
        store = nxt


def _encodings(path: Path) -> dict[str, set[str]]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    found: dict[str, set[str]] = {}
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            column = meta.row_group(g).column(c)
            found.setdefault(column.path_in_schema, set()).update(column.encodings)
    return found


def test_large_dictionaries_are_written_plain_and_read_back_as_dictionaries(
    tmp_path: Path,
) -> None:
    # A dictionary larger than Parquet's dictionary page (many distinct account ids) would
    # be hashed into a Parquet dictionary only for the writer to fall back to plain: the
    # store writes it plain. A small one (four models) keeps Parquet's dictionary encoding.
    n = 120_000
    ids = [f"acct-{i:012d}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "account_id": pd.Categorical(ids[::-1] + ids[:10]),
            "model": pd.Categorical([f"m-{i % 4}" for i in range(n + 10)]),
            "requests": np.arange(n + 10),
        }
    )
    store = RunDirectory(tmp_path / "run")
    store.begin()
    store.write("events", frame)
    path = store.root / "tables" / "events.parquet"
    encodings = _encodings(path)
    assert not any("DICTIONARY" in e for e in encodings["account_id"])
    assert any("DICTIONARY" in e for e in encodings["model"])
    back = store.read("events")
    assert isinstance(back["account_id"].dtype, pd.CategoricalDtype)
    assert back["account_id"].astype(str).tolist() == frame["account_id"].astype(str).tolist()
    assert back["model"].astype(str).tolist() == frame["model"].astype(str).tolist()

    # The new rows' part of an appended table is written the same way.
    later = RunDirectory(tmp_path / "later")
    later.begin()
    later.write("events", Appended(store, frame.iloc[:5]))
    parts = sorted((later.root / "tables" / "events.parquet").glob("*.parquet"))
    assert len(parts) == 2
    assert not any("DICTIONARY" in e for e in _encodings(parts[-1])["account_id"])
