"""The memory budget: an estimate before any work, and fewer artefacts kept in memory when a
run nears its budget, with the same export."""

from __future__ import annotations

import dataclasses
import gzip
import logging
from pathlib import Path

import pandas as pd
import pytest

from linker.engine.memory import estimate_run_memory, table_rows
from linker.pipeline import run
from linker.settings import Settings
from linker.synth import generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("budget-world")
    generate_world(2000, 5, root)
    return root


def test_table_rows_is_exact_for_parquet_and_small_csv_and_close_for_large_gzip(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame({"account_id": [f"a{i}" for i in range(120_000)], "x": range(120_000)})
    frame.to_parquet(tmp_path / "t.parquet")
    assert table_rows(tmp_path / "t.parquet") == 120_000
    frame.head(37).to_csv(tmp_path / "small.csv", index=False)
    assert table_rows(tmp_path / "small.csv") == 37
    text = frame.to_csv(index=False).encode()
    assert len(text) > 1 << 20  # past the head the estimate reads
    (tmp_path / "big.csv").write_bytes(text)
    with gzip.open(tmp_path / "big.csv.gz", "wb") as handle:
        handle.write(text)
    for name in ("big.csv", "big.csv.gz"):
        assert table_rows(tmp_path / name) == pytest.approx(120_000, rel=0.05)


def test_estimate_grows_with_the_events(world: Path, tmp_path: Path) -> None:
    small = estimate_run_memory(world)
    events = pd.read_csv(world / "events.csv")
    bigger = tmp_path / "bigger"
    bigger.mkdir()
    for name in ("accounts.csv", "payments.csv"):
        (bigger / name).write_bytes((world / name).read_bytes())
    pd.concat([events] * 3).to_csv(bigger / "events.csv", index=False)
    large = estimate_run_memory(bigger)
    assert small.rows["events"] == pytest.approx(len(events), rel=0.05)
    assert large.rows["events"] == pytest.approx(3 * len(events), rel=0.05)
    assert large.peak_bytes > small.peak_bytes
    assert large.rows["accounts"] == small.rows["accounts"]


def test_a_run_over_its_budget_warns_up_front_and_exports_the_same_list(
    world: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    roomy = run(world, tmp_path / "roomy" / "t.csv", settings=Settings())
    tight_settings = Settings()
    tight_settings = dataclasses.replace(
        tight_settings, run=dataclasses.replace(tight_settings.run, memory_budget_gb=0.01)
    )
    with caplog.at_level(logging.INFO, logger="linker"):
        tight = run(world, tmp_path / "tight" / "t.csv", settings=tight_settings)
    over = [r.getMessage() for r in caplog.records if "over the memory budget" in r.getMessage()]
    assert len(over) == 1 and "GiB" in over[0] and str(world) in over[0]
    dropped = [r.getMessage() for r in caplog.records if "kept on disk only" in r.getMessage()]
    assert dropped, "no artefact was dropped from memory although the budget was exceeded"
    # The observations are not read by the behaviour stage that follows normalise.
    assert any("observations" in m for m in dropped)
    facts = tight.manifest["stages"]["validate"]["facts"]
    assert facts["memory_budget_gib"] == 0.01
    assert facts["memory_estimate_gib"] > 0.01
    assert (tmp_path / "tight" / "t.csv").read_bytes() == (
        tmp_path / "roomy" / "t.csv"
    ).read_bytes()
    assert "memory_estimate_gib" in roomy.manifest["stages"]["validate"]["facts"]
    assert not any(
        "over the memory budget" in r.getMessage() and "roomy" in r.getMessage()
        for r in caplog.records
    )


def test_a_negative_budget_is_a_settings_error() -> None:
    settings = Settings()
    bad = dataclasses.replace(settings, run=dataclasses.replace(settings.run, memory_budget_gb=-1))
    with pytest.raises(Exception, match="memory_budget_gb"):
        bad.validate()
