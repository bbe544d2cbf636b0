"""The ring report: one self-contained HTML page that shows a run's rings at a glance.

``linker report RUN_DIR --out report.html`` (:func:`write_report`) writes, for each selected
cluster, a sortable table of its accounts (action, score, their own evidence, the cluster's
evidence labelled as such) and six Plotly charts:

* ``graph`` — the accounts and the identifiers that tie them, sized by weight (the saved graph,
  :func:`linker.graph.ties.cluster_identifiers`; the strongest identifiers first);
* ``signups`` — signups per burst window (bursts are spikes);
* ``activity`` — requests by account and hour over the cluster's busiest week (lockstep shows
  as vertical stripes);
* ``models`` — the members' model mix per day with each new model's release marked (a
  release is its first appearance in the events, :func:`linker.graph.behaviour.model_releases`);
* ``tokens`` — the members' output/input token ratio against the population's (the
  ``behaviour`` artefact);
* ``waterfall`` — per account, how each signal's score term moved its logit from the bias to
  the total (the ``evidence`` artefact's terms, in the order the score adds them).

Plotly's JavaScript is embedded once per page, so the page opens without a network. The
output depends only on the run: fixed chart ids, seeded layouts, no timestamps.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import networkx as nx
import numpy as np
import pandas as pd

from linker.engine.store import Filter, RunDirectory
from linker.errors import EnvironmentProblem, InputError, OutputError
from linker.graph.behaviour import event_codes, model_releases
from linker.graph.ties import cluster_identifiers
from linker.io.atomic import write_text_atomic
from linker.settings import LinkSettings
from linker.signals import all_signals

__all__ = ["CHARTS", "DEFAULT_TOP", "ReportResult", "write_report"]

logger = logging.getLogger(__name__)

CHARTS: tuple[str, ...] = ("graph", "signups", "activity", "models", "tokens", "waterfall")
"""The charts drawn for every cluster, in page order."""

DEFAULT_TOP = 10
"""Clusters in a report when neither a cluster nor ``top`` is given."""

MAX_GRAPH_IDENTIFIERS = 40
"""Identifiers drawn in a cluster's graph (the strongest; the title says how many exist)."""
MAX_GRAPH_ACCOUNTS = 80
"""Accounts drawn in a cluster's graph (those holding the most of the drawn evidence)."""
MAX_HEATMAP_ACCOUNTS = 60
"""Accounts in the activity heatmap (the busiest in the window)."""
MAX_WATERFALL_ACCOUNTS = 60
"""Accounts with a waterfall (the highest scores); the table lists every member."""
HEATMAP_HOURS = 7 * 24
"""The activity heatmap's window: the cluster's busiest week, hour by hour."""
TOKEN_BINS = 40

ACTION_COLOURS = {"suspend": "#d62728", "review": "#ff7f0e", "none": "#7f7f7f"}
_KIND_COLOURS = (
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#637939",
    "#843c39",
)
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote.

    Attributes
    ----------
    path : Path
        The HTML page.
    clusters : tuple of str
        The clusters it shows, in page order.
    charts : int
        Charts on the page (``len(CHARTS)`` per cluster).
    accounts : int
        Accounts listed in the clusters' tables.
    size_bytes : int
        The page's size.
    seconds : float
        Time taken (not written into the page).
    """

    path: Path
    clusters: tuple[str, ...]
    charts: int
    accounts: int
    size_bytes: int
    seconds: float = field(compare=False)

    def summary(self) -> str:
        """One line for the command line."""
        return (
            f"wrote {self.path} ({len(self.clusters)} clusters, {self.accounts} accounts, "
            f"{self.charts} charts, {self.size_bytes / 1e6:.1f} MB) in {self.seconds:.1f} s"
        )


@dataclass
class _RunData:
    """What the report reads from a run, once for all its clusters."""

    scores: pd.DataFrame
    clusters: pd.DataFrame
    accounts: pd.DataFrame
    evidence: pd.DataFrame
    cluster_evidence: pd.DataFrame
    ratios: pd.Series
    events: pd.DataFrame
    releases: pd.DataFrame
    observations: pd.DataFrame
    identifiers: pd.DataFrame
    bias: float
    burst_minutes: float


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    cluster: str | None = None,
    top: int | None = None,
) -> ReportResult:
    """Write the ring report of a run: one self-contained HTML page.

    Parameters
    ----------
    run_dir : str or Path
        A run directory written by ``linker run``.
    out : str or Path
        The HTML file to write (atomically).
    cluster : str, optional
        Show this cluster only (``C-0001``).
    top : int, optional
        Show the ``top`` clusters by score (then size); :data:`DEFAULT_TOP` when neither
        ``cluster`` nor ``top`` is given.

    Returns
    -------
    ReportResult

    Raises
    ------
    InputError
        When the run directory is missing or unfinished, the cluster is not in the run, or
        both ``cluster`` and ``top`` are given.
    OutputError
        When ``out`` is a directory.
    EnvironmentProblem
        When Plotly is not installed.

    Notes
    -----
    Reads the run's scores, clusters and behaviour once, the events' ``account_id``, ``ts``,
    ``model`` and ``requests`` columns once (model releases need every event), and only the
    selected members' rows of the other artefacts. Charts are bounded (see the ``MAX_*``
    constants), so a page's size grows with the clusters shown, not with the run.
    """
    started = time.perf_counter()
    target = Path(out)
    if target.is_dir():
        raise OutputError(f"{target}: is a directory; give the HTML file to write")
    if cluster is not None and top is not None:
        raise InputError("give --cluster or --top, not both")
    if top is not None and top < 1:
        raise InputError(f"top must be at least 1 (got {top})")
    store = RunDirectory.open(run_dir)
    chosen = _select(store, cluster, DEFAULT_TOP if top is None else top)
    data = _load(store, chosen)
    sections = [_section(data, cluster_id) for cluster_id in chosen]
    page = _page(store, sections)
    write_text_atomic(target, page)
    result = ReportResult(
        path=target,
        clusters=tuple(chosen),
        charts=len(chosen) * len(CHARTS),
        accounts=int(data.scores["cluster_id"].isin(chosen).sum()),
        size_bytes=target.stat().st_size,
        seconds=time.perf_counter() - started,
    )
    logger.info("%s", result.summary())
    return result


def _select(store: RunDirectory, cluster: str | None, top: int) -> list[str]:
    """The clusters to show: the one asked for, or the ``top`` by score, size and id."""
    clusters = store.read("clusters")
    if cluster is not None:
        if not clusters["cluster_id"].astype(str).eq(cluster).any():
            raise InputError(f"cluster {cluster!r} is not in the run at {store.root}")
        return [cluster]
    ranked = clusters.sort_values(
        ["score", "size", "cluster_id"], ascending=[False, False, True], kind="mergesort"
    )
    return [str(c) for c in ranked["cluster_id"].head(top)]


def _load(store: RunDirectory, chosen: Sequence[str]) -> _RunData:
    """Read what the chosen clusters' sections need (members' rows only where possible)."""
    scores = store.read("scores")
    members = scores.loc[scores["cluster_id"].isin(list(chosen)), "account_id"].astype(str)
    wanted: list[Filter] = [("account_id", "in", members.tolist())]
    evidence = store.read("evidence", filters=wanted)
    clustered = sorted({int(c) for c in evidence["cluster"] if int(c) >= 0})
    ratios = pd.Series(dtype=np.float64)
    if store.has("behaviour"):
        behaviour = store.read("behaviour", columns=["account_id", "output_input_ratio"])
        ratios = behaviour.set_index(behaviour["account_id"].astype(str))["output_input_ratio"]
    events, releases = _events(store, members)
    settings = store.read_json("manifest").get("settings", {}).get("link", {})
    defaults = LinkSettings()
    return _RunData(
        scores=scores,
        clusters=store.read("clusters"),
        accounts=store.read("accounts", columns=["account_id", "created_at"], filters=wanted),
        evidence=evidence,
        cluster_evidence=store.read("cluster_evidence", filters=[("cluster", "in", clustered)]),
        ratios=ratios,
        events=events,
        releases=releases,
        observations=store.read(
            "observations", columns=["account_id", "kind", "value"], filters=wanted
        ),
        identifiers=store.read(
            "identifiers", columns=["kind", "value", "n_accounts", "weight", "is_supernode"]
        ),
        bias=float(settings.get("score_bias", defaults.score_bias)),
        burst_minutes=float(settings.get("burst_window_minutes", defaults.burst_window_minutes)),
    )


def _no_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": pd.Series(dtype=str),
            "t": pd.Series(dtype=np.int64),
            "model": pd.Series(dtype=str),
            "requests": pd.Series(dtype=np.int64),
        }
    )


def _events(store: RunDirectory, members: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The members' events (``account_id``, ``t`` in epoch seconds, ``model``, ``requests``)
    and every model's release, from all the run's events (the behaviour stage's rule)."""
    if not store.has("events"):
        return _no_events(), model_releases(pd.DataFrame({"model": [], "t": []}))
    try:
        events = store.read("events", columns=["account_id", "ts", "model", "requests"])
    except InputError:  # model and requests are optional columns of the contract
        events = store.read("events")
    account_ids = store.read("accounts", columns=["account_id"])["account_id"]
    codes = event_codes(events, account_ids)
    releases = model_releases(codes)
    ids = account_ids.astype(str).to_numpy()
    names = np.array([*codes.attrs.get("models", []), ""], dtype=object)
    # A hash lookup per account row, then a gather per event (no string compare per event).
    is_member = pd.Index(ids).isin(members.to_numpy())
    mine = codes[is_member[codes["acc"].to_numpy()]]
    model = mine["model"].to_numpy()
    return (
        pd.DataFrame(
            {
                "account_id": ids[mine["acc"].to_numpy()],
                "t": mine["t"].to_numpy(),
                "model": np.where(model >= 0, names[model], "(none)"),
                "requests": mine["requests"].to_numpy(),
            }
        ),
        releases,
    )


@dataclass(frozen=True)
class _Section:
    """One cluster's part of the page."""

    cluster_id: str
    header: str
    table: str
    charts: list[tuple[str, Any]]


def _section(data: _RunData, cluster_id: str) -> _Section:
    """Table and charts of one cluster."""
    members = data.scores[data.scores["cluster_id"] == cluster_id].sort_values(
        ["score", "account_id"], ascending=[False, True], kind="mergesort"
    )
    ids = members["account_id"].astype(str).tolist()
    evidence = data.evidence[data.evidence["account_id"].astype(str).isin(ids)]
    evidence = evidence.set_index(evidence["account_id"].astype(str)).reindex(ids)
    events = data.events[data.events["account_id"].isin(ids)]
    created = data.accounts[data.accounts["account_id"].astype(str).isin(ids)]
    charts = [
        ("graph", _graph_chart(data, members)),
        ("signups", _signup_chart(created, members, data.burst_minutes)),
        ("activity", _activity_chart(events)),
        ("models", _model_chart(events, data.releases)),
        ("tokens", _token_chart(data.ratios, ids)),
        ("waterfall", _waterfall_chart(evidence, members, data.bias)),
    ]
    return _Section(
        cluster_id=cluster_id,
        header=_cluster_header(data, cluster_id, evidence),
        table=_member_table(members, evidence, created),
        charts=charts,
    )


# --- charts ----------------------------------------------------------------------------------


def _go() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:  # pragma: no cover - plotly is a dependency
        raise EnvironmentProblem(
            "the ring report needs plotly: pip install -c constraints.txt -e ."
        ) from None
    return go


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "template": "plotly_white",
        "height": 420,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        **extra,
    }


def _graph_chart(data: _RunData, members: pd.DataFrame) -> Any:
    """Accounts and the identifiers that tie them: a seeded spring layout of the strongest."""
    go = _go()
    ids = members["account_id"].astype(str).tolist()
    ties = cluster_identifiers(data.observations, data.identifiers, ids)
    n_total = ties[["kind", "value"]].drop_duplicates().shape[0]
    kept = ties.merge(
        ties[["kind", "value"]].drop_duplicates().head(MAX_GRAPH_IDENTIFIERS), on=["kind", "value"]
    )
    busiest = (
        kept.groupby("account_id")["strength"].sum().sort_values(ascending=False, kind="mergesort")
    )
    drawn = sorted(busiest.head(MAX_GRAPH_ACCOUNTS).index.astype(str))
    kept = kept[kept["account_id"].isin(drawn)]
    graph = nx.Graph()
    graph.add_nodes_from(("a", a) for a in drawn)
    for row in kept.itertuples(index=False):
        graph.add_edge(("a", str(row.account_id)), ("i", f"{row.kind}:{row.value}"))
    position = nx.spring_layout(graph, seed=7) if len(graph) else {}
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for u, v in sorted(graph.edges()):
        edge_x += [float(position[u][0]), float(position[v][0]), None]
        edge_y += [float(position[u][1]), float(position[v][1]), None]
    traces = [
        go.Scatter(
            x=edge_x,
            y=edge_y,
            mode="lines",
            line={"width": 0.6, "color": "#bbbbbb"},
            hoverinfo="skip",
            showlegend=False,
        )
    ]
    traces += _identifier_traces(go, kept, position)
    traces += _account_traces(go, members, drawn, position)
    title = (
        f"Link graph: {len(drawn)} of {len(ids)} accounts, "
        f"{min(n_total, MAX_GRAPH_IDENTIFIERS)} of {n_total} shared identifiers (strongest)"
    )
    axis = {"visible": False}
    return go.Figure(traces, layout=_layout(title, xaxis=axis, yaxis=axis, height=520))


def _identifier_traces(go: Any, kept: pd.DataFrame, position: dict[Any, Any]) -> list[Any]:
    """One trace per identifier kind: squares sized by the identifier's weight."""
    traces = []
    nodes = kept.drop_duplicates(["kind", "value"])
    for i, (kind, rows) in enumerate(nodes.groupby("kind", sort=True)):
        keys = [("i", f"{kind}:{v}") for v in rows["value"]]
        traces.append(
            go.Scatter(
                x=[float(position[k][0]) for k in keys],
                y=[float(position[k][1]) for k in keys],
                mode="markers",
                name=str(kind),
                marker={
                    "symbol": "square",
                    "size": (8 + 6 * rows["weight"]).round(2).tolist(),
                    "color": _KIND_COLOURS[i % len(_KIND_COLOURS)],
                },
                text=[
                    f"{kind} {v}<br>weight {w:.2f}; {c} members, {n} accounts in the run"
                    for v, w, c, n in zip(
                        rows["value"],
                        rows["weight"],
                        rows["in_cluster"],
                        rows["n_accounts"],
                        strict=True,
                    )
                ],
                hoverinfo="text",
            )
        )
    return traces


def _account_traces(
    go: Any, members: pd.DataFrame, drawn: list[str], position: dict[Any, Any]
) -> list[Any]:
    """One trace per action: circles coloured by the account's action."""
    traces = []
    shown = members[members["account_id"].astype(str).isin(drawn)].sort_values(
        "account_id", kind="mergesort"
    )
    for action, rows in shown.groupby(shown["action"].astype(str), sort=True):
        keys = [("a", str(a)) for a in rows["account_id"]]
        traces.append(
            go.Scatter(
                x=[float(position[k][0]) for k in keys],
                y=[float(position[k][1]) for k in keys],
                mode="markers",
                name=f"account: {action}",
                marker={
                    "size": 11,
                    "color": ACTION_COLOURS.get(str(action), "#7f7f7f"),
                    "line": {"width": 1, "color": "white"},
                },
                text=[
                    f"{a}<br>{action}, score {s:.3f}"
                    for a, s in zip(rows["account_id"], rows["score"], strict=True)
                ],
                hoverinfo="text",
            )
        )
    return traces


def _signup_chart(created: pd.DataFrame, members: pd.DataFrame, burst_minutes: float) -> Any:
    """Signups per burst window, stacked by action: a burst is a spike."""
    go = _go()
    action = members.set_index(members["account_id"].astype(str))["action"].astype(str)
    frame = created.assign(
        action=created["account_id"].astype(str).map(action).fillna("none"),
        at=pd.to_datetime(created["created_at"], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S"),
    ).sort_values(["at", "account_id"], kind="mergesort")
    traces = [
        go.Histogram(
            x=rows["at"].tolist(),
            name=name,
            marker={"color": ACTION_COLOURS.get(str(name), "#7f7f7f")},
            xbins={"size": burst_minutes * 60_000},
        )
        for name, rows in frame.groupby("action", sort=True)
    ]
    peak = _peak_window(frame["at"], burst_minutes)
    title = f"Signups per {burst_minutes:g} minutes (peak: {peak} in one window)"
    return go.Figure(
        traces,
        layout=_layout(
            title, barmode="stack", xaxis={"title": "signup time (UTC)"}, yaxis={"title": "signups"}
        ),
    )


def _peak_window(stamps: pd.Series, minutes: float) -> int:
    """Most signups inside any window of ``minutes`` (sliding)."""
    if stamps.empty:
        return 0
    since = pd.to_datetime(stamps, utc=True) - pd.Timestamp(0, tz="UTC")
    t = np.sort((since // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64))
    ends = np.searchsorted(t, t + minutes * 60, side="left")
    return int((ends - np.arange(len(t))).max())


def _activity_chart(events: pd.DataFrame) -> Any:
    """Requests by account and hour over the cluster's busiest week."""
    go = _go()
    if events.empty:
        return go.Figure(layout=_layout("Activity by hour: no events"))
    hour = events["t"].to_numpy() // 3600
    first = int(hour.min())
    per_hour = np.bincount(hour - first, weights=events["requests"].to_numpy())
    window = min(HEATMAP_HOURS, len(per_hour))
    sums = np.convolve(per_hour, np.ones(window), mode="valid")
    start = first + int(np.argmax(sums))
    inside = events[(hour >= start) & (hour < start + window)]
    busiest = inside.groupby("account_id")["requests"].sum()
    busiest = busiest.sort_index().sort_values(ascending=False, kind="mergesort")
    rows = sorted(busiest.head(MAX_HEATMAP_ACCOUNTS).index.astype(str))
    inside = inside[inside["account_id"].isin(rows)]
    grid = np.zeros((len(rows), window))
    np.add.at(
        grid,
        (
            pd.Index(rows).get_indexer(inside["account_id"]),
            inside["t"].to_numpy() // 3600 - start,
        ),
        inside["requests"].to_numpy(),
    )
    hours = pd.to_datetime((start + np.arange(window)) * 3600, unit="s", utc=True)
    heat = go.Heatmap(
        z=np.log1p(grid).round(3).tolist(),
        x=hours.strftime("%Y-%m-%d %H:00").tolist(),
        y=rows,
        customdata=grid.astype(int).tolist(),
        hovertemplate="%{y}<br>%{x}<br>%{customdata} requests<extra></extra>",
        colorscale="Viridis",
        colorbar={"title": "log(1+req)"},
    )
    title = (
        f"Activity by hour, busiest week from {hours[0]:%Y-%m-%d} "
        f"({len(rows)} of {events['account_id'].nunique()} accounts)"
    )
    return go.Figure([heat], layout=_layout(title, height=max(420, 14 * len(rows) + 120)))


def _model_chart(events: pd.DataFrame, releases: pd.DataFrame) -> Any:
    """The members' daily model mix (share of requests), new models' releases marked."""
    go = _go()
    if events.empty:
        return go.Figure(layout=_layout("Model mix: no events"))
    day = events["t"].to_numpy() // 86400
    daily = (
        events.assign(day=day)
        .groupby(["day", "model"], sort=True)["requests"]
        .sum()
        .unstack(fill_value=0)
    )
    x = pd.to_datetime(daily.index.to_numpy() * 86400, unit="s", utc=True).strftime("%Y-%m-%d")
    traces = [
        go.Scatter(
            x=x.tolist(),
            y=daily[model].astype(int).tolist(),
            name=str(model),
            mode="lines",
            stackgroup="models",
            groupnorm="percent",
            line={"width": 0.5, "shape": "hv"},
        )
        for model in daily.columns
    ]
    figure = go.Figure(
        traces,
        layout=_layout(
            "Model mix per active day (% of the members' requests); releases dashed",
            yaxis={"title": "% of requests", "range": [0, 100]},
        ),
    )
    lo, hi = int(day.min()) * 86400, (int(day.max()) + 1) * 86400
    new = releases[releases["new"]]
    for model, release in zip(new["model"], new["release"], strict=True):
        if lo <= int(release) <= hi:
            at = pd.Timestamp(int(release), unit="s", tz="UTC")
            figure.add_vline(
                x=at.strftime("%Y-%m-%d %H:%M:%S"),
                line={"dash": "dash", "color": "black", "width": 1},
            )
            figure.add_annotation(
                x=at.strftime("%Y-%m-%d %H:%M:%S"),
                y=100,
                text=f"{model} released",
                showarrow=False,
                yanchor="bottom",
            )
    return figure


def _token_chart(ratios: pd.Series, ids: list[str]) -> Any:
    """Output/input token ratio: the members' distribution over the population's."""
    go = _go()
    values = ratios[np.isfinite(ratios.to_numpy(dtype=np.float64)) & (ratios > 0)]
    if values.empty:
        return go.Figure(layout=_layout("Output/input tokens: no token counts"))
    logs = np.log10(values.to_numpy(dtype=np.float64))
    edges = np.linspace(logs.min(), logs.max() + 1e-9, TOKEN_BINS + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).round(4).tolist()
    mine = logs[values.index.isin(ids)]
    traces = []
    for name, sample, colour in (
        ("population", logs, "#9e9e9e"),
        ("members", mine, ACTION_COLOURS["suspend"]),
    ):
        counts, _ = np.histogram(sample, bins=edges)
        share = (100 * counts / max(len(sample), 1)).round(3).tolist()
        traces.append(
            go.Bar(
                x=centres,
                y=share,
                name=f"{name} ({len(sample)} accounts)",
                marker={"color": colour},
                opacity=0.6,
            )
        )
    ticks = np.arange(math.floor(edges[0]), math.ceil(edges[-1]) + 1)
    median = float(np.median(values.to_numpy()))
    members = float(np.median(10**mine)) if len(mine) else math.nan
    title = f"Output/input tokens: members' median {members:.2f} vs population {median:.2f}"
    return go.Figure(
        traces,
        layout=_layout(
            title,
            barmode="overlay",
            bargap=0,
            xaxis={
                "title": "output tokens / input tokens (log scale)",
                "tickvals": ticks.tolist(),
                "ticktext": [f"{10.0**k:g}" for k in ticks],
            },
            yaxis={"title": "% of accounts"},
        ),
    )


def score_steps(evidence: pd.Series, bias: float) -> list[tuple[str, str, float]]:
    """An account's score as steps: the bias, then each signal's term in the order the score
    adds them (the ``evidence`` artefact's ``NAME:term`` columns), zero terms left out.

    Returns ``(signal, level, term)`` triples; ``level`` is the signal's registry level
    (``account`` or ``cluster``), ``bias`` for the first step. Their sum is the account's logit
    and its score ``1 / (1 + exp(-logit))``.
    """
    level = {s.name: s.level for s in all_signals()}
    steps = [("bias", "bias", float(bias))]
    for column in evidence.index:
        name = str(column)
        if name.endswith(":term") and float(evidence[column]) != 0.0:
            signal = name[: -len(":term")]
            steps.append((signal, level.get(signal, "account"), float(evidence[column])))
    return steps


def _waterfall_chart(evidence: pd.DataFrame, members: pd.DataFrame, bias: float) -> Any:
    """Per account, how each signal moved its logit: one waterfall, a menu to pick the
    account (the highest scores first)."""
    go = _go()
    shown = members.head(MAX_WATERFALL_ACCOUNTS)
    traces: list[Any] = []
    buttons: list[dict[str, Any]] = []
    for i, (account, score) in enumerate(
        zip(shown["account_id"].astype(str), shown["score"], strict=True)
    ):
        steps = score_steps(cast(pd.Series, evidence.loc[account]), bias)
        labels = [f"{s} ({lv}-level)" if lv != "bias" else "bias" for s, lv, _ in steps]
        traces.append(
            go.Waterfall(
                x=[*labels, "total (logit)"],
                y=[round(t, 6) for _, _, t in steps] + [0.0],
                measure=["absolute"] + ["relative"] * (len(steps) - 1) + ["total"],
                name=account,
                visible=i == 0,
                decreasing={"marker": {"color": "#2ca02c"}},
                increasing={"marker": {"color": "#d62728"}},
                totals={"marker": {"color": "#1f77b4"}},
            )
        )
        visible = [j == i for j in range(len(shown))]
        title = f"Score waterfall: score {float(score):.4f} = logistic(total)"
        buttons.append(
            {"label": account, "method": "update", "args": [{"visible": visible}, {"title": title}]}
        )
    first = buttons[0]["args"][1]["title"] if buttons else "Score waterfall: no accounts"
    layout = _layout(
        first,
        showlegend=False,
        yaxis={"title": "logit"},
        updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.25}],
        height=460,
    )
    return go.Figure(traces, layout=layout)


# --- HTML --------------------------------------------------------------------------------------


def _cluster_header(data: _RunData, cluster_id: str, evidence: pd.DataFrame) -> str:
    """The cluster's summary and its cluster-level evidence."""
    row: Any = data.clusters[data.clusters["cluster_id"].astype(str) == cluster_id].iloc[0]
    numbers = (
        f"{int(row['size'])} accounts, score {float(row['score']):.3f}, "
        f"{int(row['n_suspend'])} suspend, {int(row['n_review'])} review"
    )
    values = []
    clusters = evidence["cluster"].dropna()
    if len(clusters):
        own = data.cluster_evidence[data.cluster_evidence["cluster"] == int(clusters.iloc[0])]
        for s in all_signals():
            if s.name in own.columns and len(own) and float(own[s.name].iloc[0]) > 0:
                values.append(f"{s.name} {float(own[s.name].iloc[0]):.2f}")
    reasons = html.escape(str(row["reasons"] or ""))
    return (
        f'<h2 id="{html.escape(cluster_id)}">{html.escape(cluster_id)}</h2>'
        f"<p>{html.escape(numbers)}</p>"
        f'<p><span class="label">cluster-level evidence</span> {reasons}</p>'
        f'<p><span class="label">cluster-level signal values</span> '
        f"{html.escape('; '.join(values) or 'none')}</p>"
    )


def _number(value: Any) -> float:
    """A table cell as a float (missing = 0)."""
    return 0.0 if value is None or pd.isna(value) else float(value)


def _member_table(members: pd.DataFrame, evidence: pd.DataFrame, created: pd.DataFrame) -> str:
    """Every member: action, score, signup, its own (account-level) evidence and reasons."""
    account_level = [s.name for s in all_signals() if s.level == "account"]
    signup = created.set_index(created["account_id"].astype(str))["created_at"]
    head = (
        "<tr><th>account</th><th>action</th><th>score</th><th>billing customer</th>"
        "<th>signed up (UTC)</th><th>own evidence (account-level)</th><th>reasons</th></tr>"
    )
    body = []
    for row in members.itertuples(index=False):
        account = str(row.account_id)
        own = [
            f"{name} {_number(evidence.at[account, name]):.2f}"
            for name in account_level
            if name in evidence.columns and _number(evidence.at[account, name]) > 0
        ]
        at = signup.get(account)
        cells = [
            account,
            str(row.action),
            f"{_number(row.score):.6f}",
            str(row.billing_customer_id or ""),
            pd.Timestamp(at).strftime("%Y-%m-%d %H:%M:%S") if at is not None else "",
            "; ".join(own),
            str(row.reasons or ""),
        ]
        body.append(
            f'<tr class="{html.escape(str(row.action))}">'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    return f'<table class="members"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h2{border-top:2px solid #ccc;padding-top:.6em}
.label{font-size:.8em;background:#eee;border-radius:3px;padding:1px 5px;margin-right:.4em}
table.members{border-collapse:collapse;font-size:.8em;margin:1em 0;width:100%}
table.members th{cursor:pointer;background:#f3f3f3;text-align:left;position:sticky;top:0}
table.members th,table.members td{border:1px solid #ddd;padding:2px 6px;vertical-align:top}
tr.suspend td:nth-child(2){color:#d62728;font-weight:bold}
tr.review td:nth-child(2){color:#ff7f0e;font-weight:bold}
.table{max-height:420px;overflow:auto;margin-bottom:1em}
.charts{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:1em}
@media (max-width:1100px){.charts{grid-template-columns:minmax(0,1fr)}}
.chart{min-width:0;overflow:hidden}
"""

_SORT = """
document.querySelectorAll('table.members th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var up = th.dataset.dir !== 'asc';
    th.dataset.dir = up ? 'asc' : 'desc';
    Array.from(body.rows).sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var n = parseFloat(x) - parseFloat(y);
      var c = isNaN(n) ? x.localeCompare(y) : n;
      return up ? c : -c;
    }).forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _page(store: RunDirectory, sections: list[_Section]) -> str:
    """The whole page: plotly.js once, then each cluster's header, table and charts."""
    from plotly.offline import get_plotlyjs

    manifest = store.read_json("manifest")
    run = html.escape(str(manifest.get("run_id") or store.root.name))
    parts = []
    for section in sections:
        charts = "".join(
            '<div class="chart">'
            + figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"{section.cluster_id}-{name}",
                config={"displaylogo": False, "responsive": True},
                default_width="100%",
                default_height=f"{figure.layout.height or 420}px",
            )
            + "</div>"
            for name, figure in section.charts
        )
        parts.append(
            f'<section class="cluster" data-cluster="{html.escape(section.cluster_id)}">'
            f'{section.header}<div class="charts">{charts}</div>'
            f'<div class="table">{section.table}</div></section>'
        )
    index = " · ".join(
        f'<a href="#{html.escape(s.cluster_id)}">{html.escape(s.cluster_id)}</a>' for s in sections
    )
    as_of = html.escape(str(manifest.get("as_of") or ""))
    meta = json.dumps(
        {
            "run_id": manifest.get("run_id"),
            "clusters": [s.cluster_id for s in sections],
            "charts": [f"{s.cluster_id}-{name}" for s in sections for name, _ in s.charts],
        }
    ).replace("<", "\\u003c")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>linker ring report: {run}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        f'<script type="application/json" id="report-meta">{meta}</script>'
        f"</head><body><h1>Ring report</h1><p>run {run}, data as of {as_of}: {index}</p>"
        f"{''.join(parts)}<script>{_SORT}</script></body></html>\n"
    )
