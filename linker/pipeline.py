"""The main job: the run's declared stages, and what reuses a saved run.

:func:`run` runs :data:`linker.stages.RUN_STAGES` (validate, normalise, behaviour,
identifiers, communities, signals, score, proximity, decide, export) against a run directory,
then writes the run's manifest and the export's. :func:`link_accounts` runs the linking stages
in memory, for notebooks and tests. :func:`export_run`, :func:`explain` and
:func:`cluster_graph` read a saved run's artefacts instead of recomputing. The export format,
its row order and the run directory are specified in ``docs/pipeline.md``; the stages and
artefacts are drawn in ``docs/architecture.md``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from linker import __version__
from linker.allowlist import AllowList, load_allowlist
from linker.analyst import Decisions, load_decisions
from linker.changes import RunState, publish_changes
from linker.engine import (
    ArtefactStore,
    MemoryStore,
    RunContext,
    RunDirectory,
    StageReport,
    engine_named,
    run_stages,
)
from linker.engine.store import ExportLocation
from linker.errors import InputError, OutputError, ShrinkRefused
from linker.export import (
    SCORE_DECIMALS,
    ExportResult,
    Publication,
    export_format,
    takedown_frame,
    write_export,
    write_export_manifest,
)
from linker.graph.bipartite import Bipartite
from linker.graph.ties import shared_identifiers
from linker.kinds import all_kinds
from linker.observations import build_observations
from linker.pseudonyms import Pseudonymiser, recorded_key_id
from linker.settings import LinkSettings, RunSettings, Settings
from linker.signals import all_signals
from linker.stages import LINK_STAGES, RUN_STAGES, VIEWS, stage_names

__all__ = [
    "Explanation",
    "LinkResult",
    "LinkedAccount",
    "RunResult",
    "SharedIdentifier",
    "SignalTerm",
    "cluster_graph",
    "default_run_dir",
    "explain",
    "export_run",
    "link_accounts",
    "run",
    "run_lists",
]

if TYPE_CHECKING:  # networkx loads in a second; only cluster_graph needs it
    import networkx as nx

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` did.

    Attributes
    ----------
    run_dir : Path
        Where the artefacts were saved.
    export : ExportResult
        The takedown list.
    manifest : dict
        The run manifest (also in ``run_dir/manifest.json``).
    """

    run_dir: Path
    export: ExportResult
    manifest: dict[str, Any]

    @property
    def counts(self) -> dict[str, Any]:
        """The manifest's row counts."""
        counts: dict[str, Any] = self.manifest["counts"]
        return counts

    @property
    def n_spared(self) -> int:
        """Accounts the allow-list kept from being flagged."""
        return int(self.counts["spared_by_allowlist"])

    @property
    def placeholders(self) -> list[dict[str, Any]]:
        """Values of strong kinds (cards, mailboxes, billing customers) held by accounts that
        nothing else ties together, which link nobody (``stages.identifiers.facts``)."""
        facts = self.manifest.get("stages", {}).get("identifiers", {}).get("facts", {})
        return list(facts.get("placeholders", []))

    @property
    def cluster_warnings(self) -> list[dict[str, Any]]:
        """Flagged clusters most of whose ties run through one value (the manifest's
        ``stages.score.facts.cluster_warnings``; empty when the score stage was not run)."""
        facts = self.manifest.get("stages", {}).get("score", {}).get("facts", {})
        return list(facts.get("cluster_warnings", []))

    def render(self) -> str:
        """The summary ``linker run`` prints."""
        c = self.counts
        lines = []
        for name, t in c["tables"].items():
            lines.append(
                f"{name}: {t['read']:,} rows read, {t['accepted']:,} accepted, "
                f"{t['rejected']:,} rejected"
            )
        lines.append(
            f"linked {c['accounts']:,} accounts: {c['clusters']:,} clusters, {c['links']:,} links"
        )
        lines.append(
            f"suspend {c['suspend']:,}, review {c['review']:,}, "
            f"spared by allow-list {c['spared_by_allowlist']:,}"
        )
        d = self.manifest.get("decisions")
        if d:
            lines.append(
                f"decisions: {d['read']:,} rows read, {d['accepted']:,} accepted, "
                f"{d['rejected']:,} rejected, {d['unknown']:,} unknown; cleared kept "
                f"{d['kept_cleared']:,}, flagged on new evidence {d['flagged_on_new_evidence']:,}, "
                f"review tied to confirmed {d['tied_to_confirmed']:,}"
            )
        for p in self.placeholders:
            lines.append(
                f"warning: a {p['kind']} value held by {p['accounts']:,} accounts links nobody: "
                "nothing else ties its holders (a placeholder, not one customer)"
            )
        for w in self.cluster_warnings:
            lines.append(
                f"warning: cluster {w['cluster_id']} ({w['size']:,} accounts): "
                f"{w['share_of_ties']:.0%} of its ties run through one {w['kind']} value "
                f"held by {w['members_holding']:,} members; check it before acting"
            )
        lines.append(f"takedown list: {self.export.path} ({self.export.rows:,} rows)")
        changes = self.manifest.get("changes")
        if changes:
            counts = "".join(f", {k} {n:,}" for k, n in changes["by_change"].items() if n)
            lines.append(f"change list: {changes['file']} ({changes['rows']:,} rows{counts})")
        lines.append(f"run directory: {self.run_dir}")
        return "\n".join(lines)


@dataclass(frozen=True)
class SharedIdentifier:
    """One identifier behind a link: its kind, value (or pseudonym) and evidence weight."""

    kind: str
    value: str
    weight: float
    n_accounts: int
    """How many accounts hold it."""


@dataclass(frozen=True)
class LinkedAccount:
    """One member of the explained account's cluster that it is tied to."""

    account_id: str
    weight: float
    """The stored link's weight; for a pair with no stored link, the summed weight of the
    identifiers the two share."""
    evidence: str
    """The stored link's evidence text (``""`` when there is no stored link)."""
    action: str
    score: float
    cluster_id: str | None
    identifiers: tuple[SharedIdentifier, ...] = ()
    """Every weighted, non-public identifier the two share, strongest first."""
    stored: bool = True
    """Whether the run's ``links`` artefact holds the pair (its weight reaches
    ``link.min_link_weight`` over identifiers held by at most ``link.pair_max_accounts``
    accounts, plus lockstep)."""


@dataclass(frozen=True)
class SignalTerm:
    """One signal's part in an account's score."""

    name: str
    level: str
    own: float | None
    """The account's own value (``None`` for a cluster-level signal)."""
    cluster: float
    """Its cluster's value."""
    term: float
    """What it added to the account's logit."""


@dataclass(frozen=True)
class Explanation:
    """Why an account got its action: its cluster, its links and their evidence."""

    account_id: str
    billing_customer_id: str | None
    score: float
    action: str
    reasons: str
    cluster_id: str | None
    cluster_size: int
    cluster: dict[str, Any] | None
    links: list[LinkedAccount] = field(default_factory=list)
    reason_codes: str = ""
    """The codes the export carries for it (:mod:`linker.reasons`)."""
    identifiers: list[dict[str, Any]] = field(default_factory=list)
    signals: list[SignalTerm] = field(default_factory=list)
    """Each registered signal's value for the account and its cluster, and its score term."""

    def render(self, max_links: int = 25, max_identifiers: int = 5) -> str:
        """The text ``linker explain`` prints: at most ``max_links`` linked accounts, each with
        at most ``max_identifiers`` of the identifiers behind the link."""
        billing = self.billing_customer_id or "-"
        lines = [
            f"account {self.account_id} (billing customer {billing})",
            f"  action: {self.action}  score: {self.score:.{SCORE_DECIMALS}f}",
            f"  account reasons: {self.reasons or '-'}",
            f"  reason codes (as exported): {self.reason_codes or '-'}",
        ]
        if self.cluster is not None:
            c = self.cluster
            lines.append(
                f"cluster {self.cluster_id}: {c['size']} accounts, score "
                f"{float(c['score']):.{SCORE_DECIMALS}f}, {c['n_suspend']} suspend, "
                f"{c['n_review']} review"
            )
            lines.append(f"  cluster reasons: {c.get('reasons') or '-'}")
        else:
            lines.append("cluster: none")
        if self.signals:
            lines.append("signals (own value, cluster value, score term):")
            for t in self.signals:
                own = "-" if t.own is None else f"{t.own:.2f}"
                lines.append(
                    f"  {t.name:<18} {t.level:<8} own {own:>5}  cluster {t.cluster:.2f}  "
                    f"term {t.term:+.3f}"
                )
        if self.identifiers:
            lines.append("identifiers shared with other accounts (strongest first):")
            for ident in self.identifiers[:10]:
                hub = ", supernode" if ident["is_supernode"] else ""
                lines.append(
                    f"  {ident['kind']} {ident['value']}: {ident['n_accounts']} accounts, "
                    f"weight {ident['weight']:.3f}{hub}"
                )
            lines.extend(_more(len(self.identifiers), 10, "identifiers", "  "))
        lines.extend(self._link_lines(max_links, max_identifiers))
        return "\n".join(lines)

    def _link_lines(self, max_links: int, max_identifiers: int) -> list[str]:
        """The linked-accounts part of :meth:`render`."""
        if self.cluster_id is None:
            return ["linked accounts: none (the account is in no cluster)"]
        if not self.links:
            return [
                f"linked accounts in cluster {self.cluster_id}: none (it shares no weighted, "
                "non-public identifier with another member)"
            ]
        lines = [
            f"linked accounts in cluster {self.cluster_id} ({len(self.links)}, strongest first):"
        ]
        for link in self.links[:max_links]:
            how = f"evidence: {link.evidence}" if link.stored else "shared identifiers only*"
            lines.append(
                f"  {link.account_id}  weight {link.weight:.3f}  {link.action} "
                f"{link.score:.{SCORE_DECIMALS}f}  {how}"
            )
            for ident in link.identifiers[:max_identifiers]:
                lines.append(
                    f"      {ident.kind} {ident.value}  weight {ident.weight:.3f}  "
                    f"({ident.n_accounts} accounts)"
                )
            lines.extend(_more(len(link.identifiers), max_identifiers, "identifiers", "      "))
        lines.extend(_more(len(self.links), max_links, "linked accounts", "  "))
        if any(not link.stored for link in self.links[:max_links]):
            lines += [
                "  * no stored link: the pair's weight is below link.min_link_weight, or each",
                "    value they share is held by more than link.pair_max_accounts accounts",
            ]
        return lines


def _more(total: int, shown: int, what: str, indent: str) -> list[str]:
    """A "... and N more" line when ``total`` exceeds ``shown``."""
    return [f"{indent}... and {total - shown} more {what}"] if total > shown else []


@dataclass(frozen=True)
class LinkResult:
    """What :func:`link_accounts` returns (docs/linking.md describes every column)."""

    scores: pd.DataFrame
    clusters: pd.DataFrame
    links: pd.DataFrame
    identifiers: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""
    bipartite: Bipartite | None = field(default=None, repr=False, compare=False)
    """The incidence matrix, for :func:`~linker.graph.bipartite.subgraph_to_networkx`."""
    behaviour: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    """Per account: behaviour features, when computed (docs/behaviour.md)."""
    evidence: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    """Per account: each signal's value and score term."""


def default_run_dir(out: str | Path) -> Path:
    """The run directory used when none is given: ``<export stem>.run`` beside the export.

    Examples
    --------
    >>> default_run_dir("out/takedown.csv").as_posix()
    'out/takedown.run'
    """
    out = Path(out)
    return out.with_name(f"{out.stem}.run")


def run_lists(settings: Settings) -> tuple[AllowList | None, Decisions | None]:
    """The allow-list and the analysts' decisions the settings name (``run.allowlist``,
    ``run.decisions``), read and validated; ``None`` for each the settings leave out."""
    allow = load_allowlist(settings.run.allowlist) if settings.run.allowlist else None
    decisions = (
        load_decisions(settings.run.decisions, settings=settings.ingest)
        if settings.run.decisions
        else None
    )
    return allow, decisions


def run(
    data_dir: str | Path,
    out: str | Path,
    *,
    run_dir: str | Path | None = None,
    settings: Settings | None = None,
    fmt: str | None = None,
    start: str | None = None,
    allow_shrink: bool = False,
    previous: str | Path | None = None,
    engine: str = "local",
) -> RunResult:
    """Validate, link, score, apply the allow-list and export a takedown list.

    Parameters
    ----------
    data_dir : str or Path
        The dataset directory (accounts, payments, events; a labels table is ignored).
    out : str or Path
        The takedown list to write (format from the suffix unless ``fmt`` is given).
    run_dir : str or Path, optional
        Where to save the artefacts; default :func:`default_run_dir` of ``out``. Artefacts
        of an earlier run there are replaced; other files are left alone.
    settings : Settings, optional
        Defaults when omitted. ``settings.run`` selects the allow-list and the exported rows.
    fmt : str, optional
        ``csv``, ``jsonl`` or ``parquet``.
    start : str, optional
        Start at this stage (:func:`linker.stages.stage_names`), reusing what the earlier
        stages saved in ``run_dir`` (``linker run --from``).
    allow_shrink : bool, default False
        Replace the previous list at ``out`` however much smaller the new one is (otherwise
        ``settings.run.shrink_floor`` applies).
    previous : str or Path, optional
        The previous run's directory (``linker run --previous``): clusters keep its ids
        (:func:`linker.changes.stable_cluster_ids`) and the change list published beside the
        export is relative to its list. It is read before anything is written, so it may be
        the run directory this run replaces.
    engine : str, default "local"
        The compute engine (:data:`linker.engine.ENGINES`): ``spark`` runs the stages that
        have a Spark implementation on the session of ``settings.spark`` (docs/scale.md).

    Returns
    -------
    RunResult

    Raises
    ------
    InputError
        When the dataset, the allow-list, the export format, the stage or the previous run
        is rejected (exit 2).
    OutputError
        Before any work, when ``out`` or the run directory lies inside ``data_dir``, ``out``
        is a directory, or either cannot be written (exit 2).
    ShrinkRefused
        When the new list would shrink past ``settings.run.shrink_floor``: the previous list
        is kept, the run directory holds the new run (exit 2).
    OutputBusy
        When another process is writing ``out`` or the run directory (exit 1).
    SettingsError
        When the settings are invalid.

    Notes
    -----
    The export depends only on the input files, the settings and the seed: the same inputs
    give a byte-identical file. Timings and peak memory per stage live in the manifests.

    The export and its manifest are published together in one atomic rename after
    everything else, the run directory's manifest included, is written
    (:class:`~linker.engine.store.ExportLocation`): a run stopped at any point leaves the
    previous pair or the new one.
    """
    settings = (settings or Settings()).validate()
    out = Path(out)
    fmt = export_format(out, fmt)
    # The key is checked before any work; it lives in ctx.inputs only (never in the
    # settings, the manifest or a log line).
    pseudonymiser = Pseudonymiser.from_environment() if settings.run.pseudonymise else None
    compute = engine_named(engine, settings)
    store = RunDirectory(run_dir if run_dir is not None else default_run_dir(out))
    data_dir = Path(data_dir)
    prior = RunState.open(previous) if previous is not None else None
    if start is not None:  # a resumed run needs a finished one, before anything is created
        if start not in stage_names():
            raise InputError(f"no stage {start!r} (stages: {', '.join(stage_names())})")
        RunDirectory.open(store.root)
    _check_outputs(out, store, data_dir)
    allow, decisions = run_lists(settings)
    publication = Publication(
        out, shrink_floor=settings.run.shrink_floor, allow_shrink=allow_shrink, changes=True
    )
    with publication, store.lock():
        store.clean_stale()
        if start is not None:
            _check_resumed_pseudonyms(store, start, pseudonymiser)
        resumed = _resumed(store, start)
        ctx = RunContext(
            settings,
            store,
            VIEWS,
            engine=compute,
            inputs={
                "data_dir": data_dir,
                "out": out,
                "fmt": fmt,
                "allowlist": allow,
                "decisions": decisions,
                "pseudonymiser": pseudonymiser,
                "publication": publication,
                "previous": prior,
            },
        )
        began = time.perf_counter()
        reused = _reuse(resumed, start, ctx)
        reports = reused + run_stages(RUN_STAGES, ctx, start=start)
        export: ExportResult = ctx.inputs["export"]
        manifest = _manifest(ctx, reports, resumed, time.perf_counter() - began)
        manifest.update(publish_changes(ctx, manifest["run_id"]))
        _commit(publication, store, export, manifest)
    logger.info("run finished in %.1fs", manifest["timings_seconds"]["total"])
    return RunResult(store.root, export, manifest)


def _check_resumed_pseudonyms(
    store: RunDirectory, start: str, pseudonymiser: Pseudonymiser | None
) -> None:
    """A run resumed after ``normalise`` reuses its observations: they must have been made
    with the same pseudonymisation (or none) as this run asks for."""
    if start not in stage_names() or stage_names().index(start) <= stage_names().index("normalise"):
        return
    before = recorded_key_id(RunDirectory.open(store.root).read_json("manifest"))
    now = pseudonymiser.key_id if pseudonymiser is not None else None
    if before != now:
        what = {
            (True, True): "with another pseudonym key",
            (True, False): "with pseudonyms",
            (False, True): "without pseudonyms",
        }[(before is not None, now is not None)]
        raise InputError(
            f"{store.root}: its observations were made {what}; resume with the same "
            "run.pseudonymise and key, or start from normalise"
        )


def _commit(
    publication: Publication, store: RunDirectory, export: ExportResult, manifest: dict[str, Any]
) -> None:
    """Write the export's manifest and the run's, then publish the export and its manifest
    in one atomic step; or, when the list would shrink too far, keep the previous one."""
    refusal = publication.refusal(export)
    settings = manifest["settings"]["run"]
    write_export_manifest(
        export,
        publication,
        {
            "filters": {"actions": list(settings["actions"]), "min_score": settings["min_score"]},
            "run_dir": str(_located(store.root)),
            "run": manifest,
            "changes": manifest.get("changes"),
            **publication.record(),
        },
    )
    manifest["export"] = {
        "file": str(_located(export.path)),
        "rows": export.rows,
        "sha256": export.sha256,
        "published": refusal is None,
    }
    if refusal is not None:
        manifest["export"]["refused"] = refusal
    # The run directory is finished before its export is published: a published list's
    # run directory always explains it.
    store.write_json("manifest", manifest)
    if refusal is not None:
        raise ShrinkRefused(
            f"{refusal} (the run is saved in {store.root}; with --from export it is not recomputed)"
        )
    publication.commit()


def _located(path: Path) -> Path:
    """``path`` with its directory resolved and its own name kept (an export's name is a
    symbolic link into its committed version: naming the link, not the version)."""
    return Path(os.path.realpath(path.parent)) / path.name


def _check_outputs(
    out: Path, store: RunDirectory, data_dir: Path | None, *, writes_run_dir: bool = True
) -> None:
    """Refuse outputs that would overwrite the input or the run's own artefacts, or that
    cannot be written, before any work starts.

    Raises
    ------
    OutputError
        Naming the path and the reason.
    """
    if data_dir is not None and data_dir.is_dir():
        data = Path(os.path.realpath(data_dir))
        for option, where in (
            ("--out", _located(out)),
            ("--run-dir", Path(os.path.realpath(store.root))),
        ):
            if where == data or where.is_relative_to(data):
                path = out if option == "--out" else store.root
                raise OutputError(
                    f"{path}: {option} lies inside the input data directory {data_dir}; "
                    "write outputs outside it"
                )
        if store.owns(data_dir):
            raise OutputError(
                f"{data_dir}: the input data directory lies inside the run directory "
                f"{store.root}, whose files a run replaces"
            )
    if store.owns(out):
        raise OutputError(f"{out}: --out is an artefact of the run directory {store.root}")
    ExportLocation(out).check_writable()
    if writes_run_dir:
        store.check_writable()


def _resumed(store: RunDirectory, start: str | None) -> dict[str, Any] | None:
    """Prepare the store: a fresh run forgets everything; a resumed one reads the earlier
    run's manifest and forgets only what the stages from ``start`` on will write again."""
    if start is None:
        store.begin()
        return None
    if start not in stage_names():
        raise InputError(f"no stage {start!r} (stages: {', '.join(stage_names())})")
    previous = RunDirectory.open(store.root).read_json("manifest")
    first = stage_names().index(start)
    store.remove(["manifest", *(name for s in RUN_STAGES[first:] for name in s.writes)])
    return previous


def _reuse(
    previous: Mapping[str, Any] | None, start: str | None, ctx: RunContext
) -> list[StageReport]:
    """The earlier run's records of the stages before ``start``, marked as reused."""
    if previous is None or start is None:
        return []
    records = previous.get("stages", {})
    reports = []
    for name in stage_names()[: stage_names().index(start)]:
        record = dict(records.get(name, {"name": name}))
        record.update(name=name, reused=True)
        record.setdefault("seconds", 0.0)
        record.setdefault("peak_rss_bytes", None)
        record.setdefault("reads", {})
        record.setdefault("writes", {})
        record.setdefault("settings", {})
        record.setdefault("facts", {})
        reports.append(StageReport(**record))
        ctx.remember_hashes(record["writes"])
    return reports


def _manifest(
    ctx: RunContext,
    reports: list[StageReport],
    previous: Mapping[str, Any] | None,
    seconds: float,
) -> dict[str, Any]:
    """The run's manifest: inputs, settings, counts, problems, artefacts and every stage."""
    validation = ctx.store.read_json("validation")
    facts: dict[str, Any] = {"review_by_embedding": 0}
    for report in reports:
        facts.update(report.facts)
    cluster_ids = facts.pop("cluster_ids", None)
    prior: RunState | None = ctx.inputs.get("previous")
    allow: AllowList | None = ctx.inputs.get("allowlist")
    tables = validation["tables"]
    counts = {
        "tables": {
            name: {k: t[k] for k in ("read", "accepted", "rejected")} for name, t in tables.items()
        },
        **facts,
    }
    data_dir: Path = ctx.inputs["data_dir"]
    inputs = (
        previous["inputs"]
        if previous is not None
        else {
            t["file"]: {"sha256": t["sha256"], "bytes": (data_dir / t["file"]).stat().st_size}
            for t in tables.values()
        }
    )
    settings = ctx.settings.to_dict()
    decisions: Decisions | None = ctx.inputs.get("decisions")
    return {
        # Where the stages ran (the engine, its [spark] session) does not decide the result.
        "run_id": run_identity(
            inputs,
            {k: v for k, v in settings.items() if k != "spark"},
            allow.sha256 if allow is not None else None,
            prior.run_id if prior is not None else None,
            decisions_sha256=decisions.sha256 if decisions is not None else None,
        ),
        "as_of": facts.get("as_of"),
        "cluster_ids": cluster_ids,
        "linker_version": __version__,
        "engine": ctx.engine.name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_dir": str(data_dir.resolve()) if previous is None else previous["data_dir"],
        "inputs": inputs,
        "allowlist": None
        if allow is None
        else {
            "file": allow.source,
            "sha256": allow.sha256,
            "entries": allow.counts(),
            "matched": facts.get("allowlisted", 0),
            "spared": facts.get("spared_by_allowlist", 0),
        },
        "decisions": counts.pop("decisions", None),
        "settings": settings,
        "counts": counts,
        "problems": [p["line"] for p in validation["problems"][:100]],
        "quarantine": {n: t["quarantine"] for n, t in tables.items() if t.get("quarantine")},
        "artefacts": _artefacts(ctx.store),
        "stages": {r.name: r.to_dict() for r in reports},
        "timings_seconds": {
            **{r.name: r.seconds for r in reports if not r.reused},
            "total": round(seconds, 3),
        },
    }


def run_identity(
    inputs: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    allowlist_sha256: str | None,
    previous_run_id: str | None = None,
    *,
    decisions_sha256: str | None = None,
) -> str:
    """A run's id: 16 hex digits of SHA-256 over what decides its result (the input files'
    hashes, the settings, the allow-list, the analysts' decisions, linker's version and, with
    ``--previous``, the previous run's id), so the same run repeated has the same id and any
    change to its inputs gives another."""
    content: dict[str, Any] = {
        "inputs": {name: entry["sha256"] for name, entry in sorted(inputs.items())},
        "settings": settings,
        "allowlist": allowlist_sha256,
        "linker_version": __version__,
    }
    if previous_run_id is not None:
        content["previous_run_id"] = previous_run_id
    if decisions_sha256 is not None:
        content["decisions"] = decisions_sha256
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()[:16]


def _artefacts(store: ArtefactStore) -> dict[str, str]:
    """The artefacts written, by name, relative to the run directory."""
    root = store.directory
    return {
        name: str(Path(where).relative_to(root)) if root is not None else where
        for name, where in store.written().items()
        if name != "manifest"
    }


def link_accounts(
    accounts: pd.DataFrame,
    observations: pd.DataFrame,
    settings: LinkSettings,
    *,
    seed: int = 42,
    events: pd.DataFrame | None = None,
) -> LinkResult:
    """Link accounts into scored clusters, in memory: the linking stages of a run.

    Parameters
    ----------
    accounts : pandas.DataFrame
        Validated accounts table (``account_id``, ``created_at``, ``billing_customer_id`` ...).
    observations : pandas.DataFrame
        Observations (:func:`linker.observations.build_observations`). Kinds it lacks whose
        sources are columns of ``accounts`` are built from them.
    settings : LinkSettings
    seed : int, default 42
        Seed of community detection; the same inputs and seed give identical frames.
    events : pandas.DataFrame, optional
        The validated events table; with it (and ``settings.behaviour.enabled``) behaviour
        features and lockstep pairs add evidence (docs/behaviour.md).

    Returns
    -------
    LinkResult
        ``scores``, ``behaviour`` and ``evidence`` have one row per account in the order of
        ``accounts``; the result does not depend on the order of the rows of ``accounts``,
        ``observations`` or ``events`` (``bipartite`` numbers accounts in ``account_id``
        order).

    Raises
    ------
    ValueError
        When a required column is missing.

    Notes
    -----
    Near-linear: O(m log m) for m observations, plus O(sum n^2) over values shared by at most
    ``pair_max_accounts`` accounts, plus Leiden on the contracted account graph.

    Examples
    --------
    >>> accounts = pd.DataFrame({"account_id": ["a", "b"],
    ...     "created_at": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
    ...     "billing_customer_id": [None, None]})
    >>> obs = pd.DataFrame({"account_id": ["a", "b"], "kind": ["payment", "payment"],
    ...     "value": ["fp1", "fp1"], "first_seen": accounts["created_at"],
    ...     "last_seen": accounts["created_at"], "count": [1, 1]})
    >>> link_accounts(accounts, obs, LinkSettings(min_cluster_size=2)).scores["cluster_id"].tolist()
    ['C-0001', 'C-0001']
    """
    for name, frame, needed in (
        ("accounts", accounts, ["account_id", "created_at"]),
        ("observations", observations, ["account_id", "kind", "value"]),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s): {', '.join(missing)}")
    store = MemoryStore()
    store.write("accounts", accounts)
    store.write("observations", _completed(accounts, observations))
    if events is not None:
        store.write("events", events)
    ctx = RunContext(Settings(seed=seed, link=settings), store, VIEWS)
    reports = run_stages(LINK_STAGES, ctx, keep=("bipartite",), desc="linking")
    # The stages number accounts in account_id order; the per-account frames come back in
    # the caller's order.
    order = pd.Index(accounts["account_id"].astype("string")).drop_duplicates()
    return LinkResult(
        scores=_in_account_order(store.read("engine_scores"), order),
        clusters=store.read("engine_clusters"),
        links=store.read("links"),
        identifiers=store.read("identifiers"),
        timings={r.name: r.seconds for r in reports},
        bipartite=ctx.view("bipartite"),
        behaviour=(
            _in_account_order(store.read("behaviour"), order) if store.has("behaviour") else None
        ),
        evidence=_in_account_order(store.read("evidence"), order),
    )


def _in_account_order(frame: pd.DataFrame, order: pd.Index) -> pd.DataFrame:
    """The rows of a per-account frame in the order of the account ids ``order``."""
    at = pd.Index(frame["account_id"].astype("string")).get_indexer(order)
    if (at < 0).any() or (len(at) == len(frame) and bool((at == np.arange(len(at))).all())):
        return frame
    return frame.take(at).reset_index(drop=True)


def _completed(accounts: pd.DataFrame, observations: pd.DataFrame) -> pd.DataFrame:
    """``observations`` plus the kinds it lacks that the accounts table's columns give."""
    present = set(observations["kind"].astype(str).unique())
    missing = [
        k
        for k in all_kinds()
        if k.name not in present
        and all(s.table == "accounts" and s.column in accounts.columns for s in k.sources)
    ]
    if not missing:
        return observations
    built = build_observations({"accounts": accounts}, missing)
    columns = [c for c in observations.columns if c in built.columns]
    return pd.concat([observations[columns], built[columns]], ignore_index=True)


def _plain(value: Any) -> Any:
    """A JSON-serialisable copy of engine timings or a table cell (dicts, numbers, NA)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return _plain(vars(value))
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _record(row: pd.Series) -> dict[str, Any]:
    """One table row as a plain dict (``None`` for missing values)."""
    return {str(k): _plain(v) for k, v in row.items()}


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    fmt: str | None = None,
    min_score: float | None = None,
    actions: Iterable[str] | None = None,
    allow_shrink: bool = False,
) -> ExportResult:
    """Re-export the takedown list of a saved run, without recomputing anything.

    Parameters
    ----------
    run_dir : str or Path
        A run directory written by :func:`run`.
    out : str or Path
        The file to write (atomically).
    fmt : str, optional
        ``csv``, ``jsonl`` or ``parquet``; default from the suffix of ``out``.
    min_score : float, optional
        Keep rows whose (rounded) score is at least this; default the run's setting.
    actions : iterable of str, optional
        Actions to keep; default the run's setting (suspend and review).
    allow_shrink : bool, default False
        Replace a previous list at ``out`` however much smaller the new one is (otherwise
        the run's ``run.shrink_floor`` applies).

    Returns
    -------
    ExportResult

    Raises
    ------
    InputError
        When the run directory is missing or incomplete, or a filter is invalid.
    OutputError
        When ``out`` lies inside the run's data directory or is one of the run directory's
        artefacts, is a directory, or cannot be written; ``ShrinkRefused`` when the list
        would shrink too far.
    OutputBusy
        When another process is writing ``out``.
    """
    store = RunDirectory.open(run_dir)
    manifest = store.read_json("manifest")
    export_format(out, fmt)
    data_dir = manifest.get("data_dir")
    _check_outputs(
        Path(out),
        store,
        Path(data_dir) if isinstance(data_dir, str) else None,
        writes_run_dir=False,
    )
    run_settings = manifest.get("settings", {}).get("run", {})
    chosen_actions = (
        list(actions) if actions else list(run_settings.get("actions", ["suspend", "review"]))
    )
    chosen_min = float(min_score if min_score is not None else run_settings.get("min_score", 0.0))
    if not 0.0 <= chosen_min <= 1.0:
        raise InputError(f"min score must be in [0, 1], not {chosen_min}")
    scores = store.read("scores")
    if "reason_codes" not in scores.columns:
        raise InputError(
            f"{store.root}: the run predates reason codes; run `linker run` again "
            "(`--from score` reuses its linking)"
        )
    frame = takedown_frame(scores, actions=chosen_actions, min_score=chosen_min)
    return write_export(
        frame,
        out,
        fmt=fmt,
        manifest={
            "filters": {"actions": chosen_actions, "min_score": chosen_min},
            "run_dir": str(store.root.resolve()),
            "run": manifest,
        },
        shrink_floor=float(run_settings.get("shrink_floor", RunSettings().shrink_floor)),
        allow_shrink=allow_shrink,
    )


def explain(run_dir: str | Path, account_id: str) -> Explanation:
    """Explain one account: its score and action, its cluster, its links and their evidence.

    Parameters
    ----------
    run_dir : str or Path
        A run directory written by :func:`run`.
    account_id : str
        The account.

    Returns
    -------
    Explanation

    Raises
    ------
    InputError
        When the run directory is missing or the account is not in the run.
    """
    store = RunDirectory.open(run_dir)
    scores = store.read("scores")
    row = scores[scores["account_id"] == account_id]
    if row.empty:
        raise InputError(f"account {account_id!r} is not in the run at {store.root}")
    me = _record(row.iloc[0])
    cluster_id = me["cluster_id"]
    cluster: dict[str, Any] | None = None
    if cluster_id is not None:
        clusters = store.read("clusters")
        match = clusters[clusters["cluster_id"] == cluster_id]
        if not match.empty:
            cluster = _record(match.iloc[0])

    linked = _cluster_links(store, scores, account_id, cluster_id)

    identifiers: list[dict[str, Any]] = []
    if store.has("observations") and store.has("identifiers"):
        observed = store.read(
            "observations", columns=["kind", "value"], filters=[("account_id", "==", account_id)]
        )
        if not observed.empty:
            table = store.read("identifiers")
            joined = observed.drop_duplicates().merge(table, on=["kind", "value"], how="inner")
            joined = joined[joined["n_accounts"] > 1].sort_values(
                ["weight", "n_accounts", "kind", "value"],
                ascending=[False, True, True, True],
                kind="mergesort",
            )
            identifiers = [_record(r) for _, r in joined.iterrows()]
    return Explanation(
        signals=_signal_terms(store, account_id),
        account_id=account_id,
        billing_customer_id=me["billing_customer_id"],
        score=float(me["score"]),
        action=str(me["action"]),
        reasons=me["reasons"] or "",
        reason_codes=me.get("reason_codes") or "",
        cluster_id=cluster_id,
        cluster_size=int(me["cluster_size"] or 0),
        cluster=cluster,
        links=linked,
        identifiers=identifiers,
    )


def _cluster_links(
    store: RunDirectory, scores: pd.DataFrame, account_id: str, cluster_id: str | None
) -> list[LinkedAccount]:
    """The account's links inside its cluster, strongest first: the pairs of the ``links``
    artefact, and every other member it shares a weighted, non-public identifier with."""
    links = store.read("links")
    mine = links[(links["account_a"] == account_id) | (links["account_b"] == account_id)]
    other = mine["account_b"].where(mine["account_a"] == account_id, mine["account_a"])
    stored = {
        str(o): (float(w), str(e))
        for o, w, e in zip(other, mine["weight"], mine["evidence"], strict=True)
    }
    ties = _cluster_ties(store, scores, account_id, cluster_id)
    shared: dict[str, tuple[SharedIdentifier, ...]] = {
        str(member): tuple(
            SharedIdentifier(str(k), str(v), float(w), int(n))
            for k, v, w, n in zip(
                rows["kind"], rows["value"], rows["weight"], rows["n_accounts"], strict=True
            )
        )
        for member, rows in ties.groupby("account_id", sort=True)
    }
    neighbours = scores[scores["account_id"].isin([*stored, *shared])]
    info_of = {str(r["account_id"]): _record(r) for _, r in neighbours.iterrows()}
    linked = []
    for o in sorted({*stored, *shared}):
        info = info_of.get(o, {})
        idents = shared.get(o, ())
        weight, evidence = stored.get(o, (round(sum(i.weight for i in idents), 6), ""))
        linked.append(
            LinkedAccount(
                account_id=o,
                weight=weight,
                evidence=evidence,
                action=info.get("action") or "none",
                score=float(info.get("score") or 0.0),
                cluster_id=info.get("cluster_id"),
                identifiers=idents,
                stored=o in stored,
            )
        )
    linked.sort(key=lambda link: (-link.weight, link.account_id))
    return linked


def _cluster_ties(
    store: RunDirectory, scores: pd.DataFrame, account_id: str, cluster_id: str | None
) -> pd.DataFrame:
    """What the account shares with each other member of its cluster, from the saved graph
    (:func:`~linker.graph.ties.shared_identifiers`); reads only the rows of its values."""
    columns = ["account_id", "kind", "value", "weight", "n_accounts"]
    if cluster_id is None or not (store.has("observations") and store.has("identifiers")):
        return pd.DataFrame(columns=columns)
    members = set(scores.loc[scores["cluster_id"] == cluster_id, "account_id"].astype(str))
    wanted = ["account_id", "kind", "value"]
    own = store.read("observations", columns=wanted, filters=[("account_id", "==", account_id)])
    if own.empty:
        return pd.DataFrame(columns=columns)
    values = sorted(set(own["value"].astype(str)))
    held = store.read("observations", columns=wanted, filters=[("value", "in", values)])
    table = store.read("identifiers", filters=[("value", "in", values)])
    return shared_identifiers(held, table, account_id, members)


def _signal_terms(store: RunDirectory, account_id: str) -> list[SignalTerm]:
    """The account's row of the evidence artefacts, signal by signal."""
    if not (store.has("evidence") and store.has("cluster_evidence")):
        return []
    mine = store.read("evidence", filters=[("account_id", "==", account_id)])
    if mine.empty or int(mine["cluster"].iloc[0]) < 0:
        return []
    row = mine.iloc[0]
    cluster = store.read("cluster_evidence", filters=[("cluster", "==", int(row["cluster"]))])
    terms = []
    for s in all_signals():
        if s.name not in cluster.columns or f"{s.name}:term" not in mine.columns:
            continue
        own = float(row[s.name]) if s.name in mine.columns else None
        terms.append(
            SignalTerm(
                s.name, s.level, own, float(cluster[s.name].iloc[0]), float(row[f"{s.name}:term"])
            )
        )
    return terms


def cluster_graph(run_dir: str | Path, cluster_id: str) -> nx.Graph:
    """The accounts of one cluster and the evidence links between them, as networkx.

    Parameters
    ----------
    run_dir : str or Path
        A run directory written by :func:`run`.
    cluster_id : str
        A cluster id such as ``"C-0017"``.

    Returns
    -------
    networkx.Graph
        Nodes are account ids with attributes ``billing_customer_id``, ``score``, ``action``
        and ``reasons``; edges carry ``weight`` and ``evidence``. ``graph.graph`` holds the
        cluster's row of ``clusters.parquet``.

    Raises
    ------
    InputError
        When the run directory is missing or has no such cluster.

    Notes
    -----
    Reads the scores and links tables once: O(n + m).
    """
    store = RunDirectory.open(run_dir)
    scores = store.read("scores")
    members = scores[scores["cluster_id"] == cluster_id]
    if members.empty:
        raise InputError(f"cluster {cluster_id!r} is not in the run at {store.root}")
    clusters = store.read("clusters")
    row = clusters[clusters["cluster_id"] == cluster_id]
    import networkx as nx

    graph = nx.Graph()
    if len(row):
        graph.graph.update(_record(row.iloc[0]))
    for _, member in members.sort_values("account_id").iterrows():
        node = _record(member)
        graph.add_node(
            node["account_id"],
            billing_customer_id=node["billing_customer_id"],
            score=float(node["score"]),
            action=node["action"],
            reasons=node["reasons"] or "",
        )
    ids = set(members["account_id"])
    links = store.read("links")
    inside = links[links["account_a"].isin(ids) & links["account_b"].isin(ids)]
    for a, b, w, e in zip(
        inside["account_a"], inside["account_b"], inside["weight"], inside["evidence"], strict=True
    ):
        graph.add_edge(a, b, weight=float(w), evidence=e)
    return graph
