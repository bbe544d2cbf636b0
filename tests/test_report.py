"""`linker report` (issue 14, item 2): one self-contained HTML page per run, checked on a real
run of a small synthetic world against the run's own artefacts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from report_world import build_run, figures, member_tables

from linker.cli import cli
from linker.engine.store import RunDirectory
from linker.report import CHARTS, MAX_GRAPH_IDENTIFIERS, score_steps, write_report
from linker.signals import all_signals

TOP = 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def page(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("page") / "report.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(out), "--top", "3"])
    assert result.exit_code == 0, result.output
    assert f"{TOP} clusters" in result.output
    return out.read_text(encoding="utf-8")


def _scores(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "scores.parquet")


def _top_clusters(run_dir: Path) -> list[str]:
    clusters = pd.read_parquet(run_dir / "clusters.parquet")
    ranked = clusters.sort_values(
        ["score", "size", "cluster_id"], ascending=[False, False, True], kind="mergesort"
    )
    return ranked["cluster_id"].head(TOP).astype(str).tolist()


def test_the_page_shows_the_top_clusters_with_every_member(run_dir: Path, page: str) -> None:
    headers, rows = member_tables(page)
    assert list(rows) == _top_clusters(run_dir)
    scores = _scores(run_dir)
    for cluster, table in rows.items():
        header = headers[cluster]
        account, action, score = (header.index(h) for h in ("account", "action", "score"))
        members = scores[scores["cluster_id"] == cluster].set_index("account_id")
        assert sorted(r[account] for r in table) == sorted(members.index.astype(str))
        for r in table:
            assert r[action] == members.at[r[account], "action"]
            assert float(r[score]) == pytest.approx(members.at[r[account], "score"], abs=1e-6)


def test_every_cluster_has_every_chart_and_plotly_js_is_embedded_once(
    run_dir: Path, page: str
) -> None:
    charts = figures(page)
    expected = [f"{c}-{name}" for c in _top_clusters(run_dir) for name in CHARTS]
    assert list(charts) == expected
    assert all(traces for traces, _ in charts.values())
    assert page.count("* plotly.js v") == 1
    # Nothing is fetched: no script or stylesheet from elsewhere.
    assert "<script src" not in page and "<link " not in page


def test_the_waterfall_steps_add_up_to_each_accounts_score(run_dir: Path, page: str) -> None:
    scores = _scores(run_dir).set_index("account_id")
    bias = RunDirectory.open(run_dir).read_json("manifest")["settings"]["link"]["score_bias"]
    for cluster in _top_clusters(run_dir):
        traces, _ = figures(page)[f"{cluster}-waterfall"]
        assert traces, cluster
        for trace in traces:
            assert trace["type"] == "waterfall"
            steps = trace["y"][:-1]
            assert trace["measure"][0] == "absolute" and trace["measure"][-1] == "total"
            assert steps[0] == pytest.approx(bias)
            logit = math.fsum(steps)
            expected = scores.at[trace["name"], "score"]
            assert 1.0 / (1.0 + math.exp(-logit)) == pytest.approx(expected, abs=2e-6)


def test_score_steps_follow_the_evidence_artefact_for_every_clustered_account(
    run_dir: Path,
) -> None:
    evidence = pd.read_parquet(run_dir / "evidence.parquet")
    clustered = evidence[evidence["cluster"] >= 0]
    assert len(clustered) > 10
    levels = {s.name: s.level for s in all_signals()}
    for _, row in clustered.iterrows():
        steps = score_steps(row, -3.0)
        assert math.fsum(t for _, _, t in steps) == pytest.approx(row["logit"], abs=1e-9)
        assert all(levels[name] == level for name, level, _ in steps[1:])


def test_cluster_and_account_evidence_are_labelled(run_dir: Path, page: str) -> None:
    headers, _ = member_tables(page)
    assert all("own evidence (account-level)" in h for h in headers.values())
    assert page.count("cluster-level evidence</span>") == TOP
    cluster_level = {s.name for s in all_signals() if s.level == "cluster"}
    traces, _ = figures(page)[f"{_top_clusters(run_dir)[0]}-waterfall"]
    labels = [x for trace in traces for x in trace["x"]]
    named = [x for x in labels if x.split(" ")[0] in cluster_level]
    assert named, "some cluster-level signal moved a score"
    assert all(x.endswith("(cluster-level)") for x in named)


def test_the_graph_draws_the_strongest_shared_identifiers(run_dir: Path, page: str) -> None:
    cluster = _top_clusters(run_dir)[0]
    members = set(_scores(run_dir).query("cluster_id == @cluster")["account_id"].astype(str))
    obs = pd.read_parquet(run_dir / "observations.parquet", columns=["account_id", "kind", "value"])
    ids = pd.read_parquet(run_dir / "identifiers.parquet")
    ids = ids[(ids["weight"] > 0) & ~ids["is_supernode"]]
    held = obs[obs["account_id"].isin(members)].drop_duplicates().merge(ids, on=["kind", "value"])
    counts = held.groupby(["kind", "value"]).agg(k=("account_id", "size"), w=("weight", "first"))
    counts = counts[counts["k"] >= 2]
    strength = (counts["w"] * (counts["k"] - 1)).to_dict()
    traces, _ = figures(page)[f"{cluster}-graph"]
    kinds = set(ids["kind"])
    drawn = {
        (t["name"], text.split("<br>")[0].split(" ", 1)[1])
        for t in traces
        if t.get("name") in kinds
        for text in t["text"]
    }
    assert 0 < len(drawn) <= MAX_GRAPH_IDENTIFIERS
    assert drawn <= set(strength)
    left_out = [s for key, s in strength.items() if key not in drawn]
    assert min(strength[k] for k in drawn) >= max(left_out, default=0.0)
    accounts = {
        text.split("<br>")[0]
        for t in traces
        if str(t.get("name", "")).startswith("account:")
        for text in t["text"]
    }
    assert accounts and accounts <= members


def test_release_lines_mark_each_new_models_first_appearance(run_dir: Path, page: str) -> None:
    events = pd.read_parquet(run_dir / "tables" / "events.parquet", columns=["ts", "model"])
    first = events.dropna().groupby("model")["ts"].min()
    new = first[first >= events["ts"].min() + pd.Timedelta(days=7)]
    assert len(new), "the synthetic world releases a model mid-way"
    for cluster in _top_clusters(run_dir):
        _, layout = figures(page)[f"{cluster}-models"]
        marked = {pd.Timestamp(s["x0"], tz="UTC") for s in layout.get("shapes", [])}
        assert marked <= {t.floor("s") for t in new}
    _, layout = figures(page)[f"{_top_clusters(run_dir)[0]}-models"]
    assert layout.get("shapes"), "the top ring's events span a release"


def test_token_chart_compares_members_with_the_population(run_dir: Path, page: str) -> None:
    behaviour = pd.read_parquet(run_dir / "behaviour.parquet")
    ratio = behaviour.set_index("account_id")["output_input_ratio"]
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    cluster = _top_clusters(run_dir)[0]
    members = _scores(run_dir).query("cluster_id == @cluster")["account_id"]
    traces, _ = figures(page)[f"{cluster}-tokens"]
    names = [t["name"] for t in traces]
    assert names == [
        f"population ({len(ratio)} accounts)",
        f"members ({ratio.index.isin(members).sum()} accounts)",
    ]
    for t in traces:
        assert sum(t["y"]) == pytest.approx(100.0, abs=0.1)


def test_the_same_run_gives_the_same_bytes(run_dir: Path, tmp_path: Path) -> None:
    one = write_report(run_dir, tmp_path / "one.html", top=2)
    two = write_report(run_dir, tmp_path / "two.html", top=2)
    assert one.path.read_bytes() == two.path.read_bytes()
    assert one.charts == 2 * len(CHARTS)


def test_one_cluster_by_id(run_dir: Path, tmp_path: Path) -> None:
    cluster = _top_clusters(run_dir)[-1]
    result = write_report(run_dir, tmp_path / "one.html", cluster=cluster)
    assert result.clusters == (cluster,)
    meta = result.path.read_text(encoding="utf-8")
    assert list(figures(meta)) == [f"{cluster}-{name}" for name in CHARTS]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--out", "{out}"], "run directory not found"),
        (["{run}", "--out", "{out}", "--cluster", "C-9999"], "cluster 'C-9999' is not in the run"),
        (["{run}", "--out", "{out}", "--cluster", "C-0001", "--top", "2"], "not both"),
        (["{run}", "--out", "{tmp}"], "is a directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_leaves_the_old_page(
    run_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "report.html"
    out.write_text("old page")
    values = {"missing": tmp_path / "nope", "out": out, "run": run_dir, "tmp": tmp_path}
    result = CliRunner().invoke(cli, ["report", *(a.format(**values) for a in args)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert out.read_text() == "old page"
    assert "Traceback" not in result.output
