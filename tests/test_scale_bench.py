"""bench/scale.py's arithmetic: sizes, per-event ratios and the 1M targets (issue 16)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "bench" / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_bench"] = module
    spec.loader.exec_module(module)
    return module


def _row(size: int, events: int, wall: float, cpu: float, peak: int) -> dict[str, Any]:
    return {
        "size": size,
        "run": {
            "events": events,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "peak_rss_bytes": peak,
            "us_per_event": wall / events * 1e6,
        },
    }


def test_sizes_and_world_overrides_parse() -> None:
    bench = _bench()
    assert bench.parse_sizes("100k, 300000,1m") == [100_000, 300_000, 1_000_000]
    assert bench.parse_worlds(["1m=/data/w1m"]) == {1_000_000: Path("/data/w1m")}
    with pytest.raises(SystemExit):
        bench.parse_worlds(["/data/w1m"])


def test_summary_gives_the_per_event_ratio_and_checks_the_1m_targets() -> None:
    bench = _bench()
    rows = [
        _row(100_000, 2_000_000, 20.0, 18.0, 10**9),
        _row(1_000_000, 20_000_000, 260.0, 200.0, 9 * 10**9),
    ]
    facts = bench.summary(rows)
    assert facts["ratio_largest_to_smallest"] == pytest.approx(1.3)
    assert facts["cpu_ratio_largest_to_smallest"] == pytest.approx(200 / 180, rel=1e-3)
    assert facts["at_1m"]["wall_ok"] is False  # 260 s > 120 s
    assert facts["at_1m"]["memory_ok"] is False  # 9 GB > 8 GB
    rows[1]["run"].update(wall_seconds=100.0, peak_rss_bytes=7 * 10**9)
    facts = bench.summary(rows)
    assert facts["at_1m"]["wall_ok"] and facts["at_1m"]["memory_ok"]
