"""Cost of the ring report, and Plotly against Altair/Vega-Lite for the same charts.

Part 1 (``--top``): ``linker report RUN_DIR --top N`` timed end to end (median of
``--repeats`` runs, each in this process): wall seconds and this process's CPU seconds (the
fairer figure on a loaded machine), with the page's size.

Part 2 (``--versus``): the same four charts of the top cluster (signups per burst window, the
hour-by-account heatmap, the daily model mix, the token-ratio histogram), built from the same
pre-aggregated frames once with Plotly (plotly.js embedded once) and once with Altair
(``save(inline=True)``: Vega, Vega-Lite and vega-embed embedded once). Reported for each: the
page's bytes, the Python seconds to build and write it, and the seconds headless Chromium takes
until every chart is drawn (``bench/report_render.mjs``; network blocked). Altair is not a
dependency of linker: install it beside the bench (``pip install altair vl-convert-python``).

Usage::

    python bench/report.py RUN_DIR --top 10 --repeats 3
    python bench/report.py RUN_DIR --versus

Results are printed as Markdown and saved under ``bench/results/``. The machine is shared:
the load average is recorded beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linker import report as rr
from linker.engine.store import RunDirectory

HERE = Path(__file__).resolve().parent
RENDER = HERE / "report_render.mjs"


def time_report(run_dir: Path, top: int, repeats: int) -> dict[str, Any]:
    seconds, cpu, size = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            started = time.process_time()
            result = rr.write_report(run_dir, Path(tmp) / "report.html", top=top)
            cpu.append(round(time.process_time() - started, 3))
            seconds.append(round(result.seconds, 3))
            size = result.size_bytes
    return {
        "top": top,
        "seconds": seconds,
        "median_s": statistics.median(seconds),
        "cpu_seconds": cpu,
        "median_cpu_s": statistics.median(cpu),
        "bytes": size,
    }


def _frames(run_dir: Path) -> dict[str, Any]:
    """The top cluster's data, as the report reads it."""
    store = RunDirectory.open(run_dir)
    cluster = rr._select(store, None, 1)[0]
    data = rr._load(store, [cluster])
    members = data.scores[data.scores["cluster_id"] == cluster]
    ids = members["account_id"].astype(str).tolist()
    return {
        "data": data,
        "members": members,
        "ids": ids,
        "events": data.events[data.events["account_id"].isin(ids)],
        "created": data.accounts[data.accounts["account_id"].astype(str).isin(ids)],
    }


def plotly_page(f: dict[str, Any], out: Path) -> None:
    from plotly.offline import get_plotlyjs

    d = f["data"]
    figures = [
        rr._signup_chart(f["created"], f["members"], d.burst_minutes),
        rr._activity_chart(f["events"]),
        rr._model_chart(f["events"], d.releases),
        rr._token_chart(d.ratios, f["ids"]),
    ]
    divs = "".join(
        fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"c{i}")
        for i, fig in enumerate(figures)
    )
    out.write_text(
        f"<html><head><script>{get_plotlyjs()}</script></head><body>{divs}</body></html>",
        encoding="utf-8",
    )


def altair_page(f: dict[str, Any], out: Path) -> None:
    import altair as alt

    alt.data_transformers.disable_max_rows()
    d = f["data"]
    created = f["created"].assign(
        action=f["created"]["account_id"].map(
            f["members"].set_index("account_id")["action"].astype(str)
        )
    )
    signups = (
        alt.Chart(created)
        .mark_bar()
        .encode(x="yearmonthdatehours(created_at):T", y="count():Q", color="action:N")
        .properties(width=560, height=300, title="signups per hour")
    )
    ev = f["events"]
    hour = ev["t"] // 3600
    per_hour = ev.assign(hour=hour).groupby("hour")["requests"].sum()
    sums = per_hour.reindex(range(int(hour.min()), int(hour.max()) + 1), fill_value=0)
    start = int(sums.rolling(rr.HEATMAP_HOURS, min_periods=1).sum().idxmax()) - rr.HEATMAP_HOURS
    inside = ev[(hour > start) & (hour <= start + rr.HEATMAP_HOURS)]
    grid = (
        inside.assign(hour=inside["t"] // 3600 * 3600 * 1000)
        .groupby(["account_id", "hour"], as_index=False)["requests"]
        .sum()
    )
    grid["level"] = np.log1p(grid["requests"])
    heat = (
        alt.Chart(grid)
        .mark_rect()
        .encode(x="hour:T", y="account_id:N", color="level:Q")
        .properties(width=560, title="requests by account and hour")
    )
    daily = (
        ev.assign(day=ev["t"] // 86400 * 86400 * 1000)
        .groupby(["day", "model"], as_index=False)["requests"]
        .sum()
    )
    models = (
        alt.Chart(daily)
        .mark_area()
        .encode(x="day:T", y=alt.Y("requests:Q", stack="normalize"), color="model:N")
        .properties(width=560, height=300, title="model mix per day")
    )
    ratios = d.ratios[np.isfinite(d.ratios) & (d.ratios > 0)]
    tokens_frame = pd.DataFrame(
        {
            "log_ratio": np.log10(ratios.to_numpy()),
            "who": np.where(ratios.index.isin(f["ids"]), "members", "population"),
        }
    )
    tokens = (
        alt.Chart(tokens_frame)
        .mark_bar(opacity=0.6)
        .encode(
            x=alt.X("log_ratio:Q", bin=alt.Bin(maxbins=rr.TOKEN_BINS)),
            y=alt.Y("count():Q", stack=None),
            color="who:N",
        )
        .properties(width=560, height=300, title="output/input tokens")
    )
    alt.vconcat(signups, heat, models, tokens).save(str(out), format="html", inline=True)


def render_seconds(page: Path, selector: str, count: int, repeats: int) -> list[float]:
    node = shutil.which("node")
    if not node:
        raise SystemExit("node is needed for the render time")
    out = []
    for _ in range(repeats):
        env = {**os.environ, "PAGE": str(page.resolve()), "SELECTOR": selector, "COUNT": str(count)}
        done = subprocess.run(
            [node, str(RENDER)], env=env, capture_output=True, text=True, timeout=300, check=True
        )
        out.append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    return out


def versus(run_dir: Path, repeats: int) -> dict[str, Any]:
    frames = _frames(run_dir)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build, selector, count in (
            ("plotly", plotly_page, "div.js-plotly-plot svg.main-svg", 4),
            ("altair", altair_page, ".vega-embed canvas, .vega-embed svg", 1),
        ):
            page = Path(tmp) / f"{name}.html"
            started = time.perf_counter()
            build(frames, page)
            build_s = time.perf_counter() - started
            render = render_seconds(page, selector, count, repeats)
            results[name] = {
                "bytes": page.stat().st_size,
                "build_s": round(build_s, 3),
                "render_s": render,
                "render_median_s": statistics.median(render),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--versus", action="store_true")
    args = parser.parse_args()
    accounts = len(pd.read_parquet(args.run_dir / "scores.parquet", columns=["account_id"]))
    result: dict[str, Any] = {"accounts": accounts, "load_average": os.getloadavg()}
    if args.versus:
        result["versus"] = versus(args.run_dir, args.repeats)
        name = f"report-versus-{accounts}.json"
    else:
        result["report"] = time_report(args.run_dir, args.top, args.repeats)
        name = f"report-{accounts}-top{args.top}.json"
    out = HERE / "results" / name
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("```json")
    print(json.dumps(result, indent=2))
    print("```")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
