"""The ring report opens in Debian's headless chromium with the network blocked: every chart is
drawn, the tables list every member, nothing is fetched and the console stays clean.

``tests/browser/ring_report.mjs`` (playwright-core, as ``make browser-deps`` installs it) aborts
every request that is not a ``file://`` URL, waits for each Plotly chart's SVG, clicks a table
header to sort, and reports what it found; screenshots go to ``test-output/report/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT
from report_world import build_run

from linker.report import CHARTS, write_report

SCRIPT = ROOT / "tests" / "browser" / "ring_report.mjs"
OUTPUT = ROOT / "test-output" / "report"


@pytest.mark.browser
def test_ring_report_renders_every_chart_offline(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "the browser test needs Node.js"
    assert (ROOT / "tests" / "browser" / "node_modules" / "playwright-core").is_dir(), (
        "playwright-core is missing: run `make browser-deps`"
    )
    run_dir = build_run(tmp_path)
    result = write_report(run_dir, tmp_path / "report.html", top=3)
    expected = [f"{c}-{name}" for c in result.clusters for name in CHARTS]

    OUTPUT.mkdir(parents=True, exist_ok=True)
    screenshot, top = OUTPUT / "report.png", OUTPUT / "report_top.png"
    charts_png = OUTPUT / "report_charts.png"
    for old in (screenshot, top, charts_png):
        old.unlink(missing_ok=True)
    env = {
        **os.environ,
        "REPORT": str(result.path.resolve()),
        "SCREENSHOT": str(screenshot),
        "CLIP_SCREENSHOT": str(top),
        "CHARTS_SCREENSHOT": str(charts_png),
    }
    done = subprocess.run(
        [node, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    assert done.returncode == 0 and report.get("ok"), f"{report} {done.stderr[-2000:]}"

    assert report["errors"] == [], "no console errors"
    assert report["blocked"] == [], "the page asks for nothing over the network"
    charts = report["charts"]
    assert [c["id"] for c in charts] == expected
    for chart in charts:
        assert chart["svg"] > 0 and chart["drawn"] > 0 and chart["traces"] > 0, chart

    scores = pd.read_parquet(run_dir / "scores.parquet")
    for cluster in result.clusters:
        members = scores.loc[scores["cluster_id"] == cluster, "account_id"].astype(str)
        assert sorted(report["rows"][cluster]) == sorted(members)
    assert report["sorted"], "a click on the score header sorts the table"
    for png in (screenshot, top, charts_png):
        assert png.stat().st_size > 20_000, png
