"""Artefacts written in the background (`RunDirectory.write_behind`): the next stage computes
while the previous one's tables are encoded, so no stage may modify a table it returned, the
manifest's hashes are the files', and a failed write fails the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from test_incremental import _split

from linker.engine.store import Appended, Digest, RunDirectory
from linker.incremental import update
from linker.io.files import file_sha256
from linker.pipeline import run
from linker.synth import generate_world


def _snapshot(value: pd.DataFrame | pa.Table) -> pd.DataFrame:
    frame = value.to_pandas() if isinstance(value, pa.Table) else value
    return frame.copy(deep=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("write-behind")
    generate_world(3000, 5, root / "world")
    return root / "world"


def test_no_stage_modifies_a_table_after_returning_it(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each table a stage hands to the store is copied at that moment and compared with
    # what the object holds once the run is over: a stage (or a later one, which gets the
    # same object from memory) that modified it in place would race the background write.
    written: list[tuple[str, pd.DataFrame | pa.Table, pd.DataFrame]] = []
    original = RunDirectory.write_behind

    def spy(self: RunDirectory, name: str, frame: Any) -> Digest:
        if not isinstance(frame, Appended):
            written.append((name, frame, _snapshot(frame)))
        return original(self, name, frame)

    monkeypatch.setattr(RunDirectory, "write_behind", spy)
    _split(world, tmp_path / "history", tmp_path / "day")
    run(tmp_path / "history", tmp_path / "previous" / "t.csv")
    update(tmp_path / "day", tmp_path / "previous" / "t.run", tmp_path / "next" / "t.csv")
    names = {name for name, _, _ in written}
    assert {"events", "observations", "identifiers", "behaviour", "scores"} <= names
    changed = [name for name, value, before in written if not _snapshot(value).equals(before)]
    assert changed == []


def test_the_manifest_hashes_are_the_written_files(world: Path, tmp_path: Path) -> None:
    result = run(world, tmp_path / "t.csv")
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    checked = 0
    for stage in manifest["stages"].values():
        for name, digest in {**stage["reads"], **stage["writes"]}.items():
            if name not in manifest["artefacts"]:
                continue  # an artefact this run did not write (no proximity seeds)
            path = result.run_dir / manifest["artefacts"][name]
            if path.suffix == ".parquet" and path.is_file():
                assert digest == file_sha256(path), name
                checked += 1
    assert checked >= 15


def test_a_failed_background_write_fails_the_run(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import linker.engine.store as store

    original = store._write_parquet

    def failing(target: Path, table: pa.Table) -> str:
        if target.name == "identifiers.parquet":
            raise OSError(28, "No space left on device")
        return original(target, table)

    monkeypatch.setattr(store, "_write_parquet", failing)
    run_dir = tmp_path / "t.run"
    with pytest.raises(OSError, match="No space left on device"):
        run(world, tmp_path / "t.csv", run_dir=run_dir)
    assert not (run_dir / "manifest.json").exists()
    assert not (tmp_path / "t.csv").exists()
    assert not list(run_dir.rglob("*.tmp"))
