"""The main job: validate, normalise, link, score, allow-list and export.

:func:`run` does the whole job and saves its artefacts in a run directory
(:class:`~linker.backend.RunStore`); :func:`export_run`, :func:`explain` and
:func:`cluster_graph` reuse a saved run instead of recomputing. The export format, its row
order and the run directory layout are specified in ``docs/pipeline.md``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from linker import __version__
from linker.allowlist import AllowList, apply_allowlist, load_allowlist
from linker.backend import ARTEFACTS, RunStore
from linker.errors import InputError
from linker.graph.behaviour import event_codes
from linker.graph.link import link_accounts
from linker.graph.proximity import ProximityResult, embedding_review
from linker.io.atomic import atomic_path, write_text_atomic
from linker.io.validate import validate_dataset
from linker.normalise import build_observations
from linker.progress import progress
from linker.settings import Settings

__all__ = [
    "ACTIONS",
    "EXPORT_COLUMNS",
    "FORMATS",
    "Explanation",
    "ExportResult",
    "LinkedAccount",
    "RunResult",
    "cluster_graph",
    "default_run_dir",
    "explain",
    "export_run",
    "run",
    "takedown_frame",
    "write_export",
]

logger = logging.getLogger(__name__)

EXPORT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "billing_customer_id",
    "cluster_id",
    "cluster_size",
    "score",
    "action",
    "reasons",
)
"""The takedown list's columns, in file order."""

ACTIONS: tuple[str, ...] = ("suspend", "review", "none")
"""The actions, in export order."""

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")

SCORE_DECIMALS = 4
"""Scores are rounded to this many decimals in every export (and before sorting)."""

_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_INPUT_TABLES = ("accounts", "payments", "events")


@dataclass(frozen=True)
class ExportResult:
    """An export that was written.

    Attributes
    ----------
    path : Path
        The export file.
    format : str
        ``csv``, ``jsonl`` or ``parquet``.
    rows : int
        Data rows written.
    by_action : dict
        Rows per action.
    sha256 : str
        Hash of the file's bytes.
    manifest_path : Path
        The manifest written beside the export.
    """

    path: Path
    format: str
    rows: int
    by_action: dict[str, int]
    sha256: str
    manifest_path: Path


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
        lines.append(f"takedown list: {self.export.path} ({self.export.rows:,} rows)")
        lines.append(f"run directory: {self.run_dir}")
        return "\n".join(lines)


@dataclass(frozen=True)
class LinkedAccount:
    """One evidence edge of an explained account."""

    account_id: str
    weight: float
    evidence: str
    action: str
    score: float
    cluster_id: str | None


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
    identifiers: list[dict[str, Any]] = field(default_factory=list)

    def render(self, max_links: int = 25) -> str:
        """The text ``linker explain`` prints."""
        billing = self.billing_customer_id or "-"
        lines = [
            f"account {self.account_id} (billing customer {billing})",
            f"  action: {self.action}  score: {self.score:.{SCORE_DECIMALS}f}",
            f"  reasons: {self.reasons or '-'}",
        ]
        if self.cluster is not None:
            c = self.cluster
            lines.append(
                f"cluster {self.cluster_id}: {c['size']} accounts, score "
                f"{float(c['score']):.{SCORE_DECIMALS}f}, {c['n_suspend']} suspend, "
                f"{c['n_review']} review"
            )
            lines.append(f"  reasons: {c.get('reasons') or '-'}")
        else:
            lines.append("cluster: none")
        if self.identifiers:
            lines.append("identifiers shared with other accounts (strongest first):")
            for ident in self.identifiers[:10]:
                hub = ", supernode" if ident["is_supernode"] else ""
                lines.append(
                    f"  {ident['kind']} {ident['value']}: {ident['n_accounts']} accounts, "
                    f"weight {ident['weight']:.3f}{hub}"
                )
        lines.append(f"linked accounts ({len(self.links)}, strongest first):")
        for link in self.links[:max_links]:
            lines.append(
                f"  {link.account_id}  weight {link.weight:.3f}  {link.action} "
                f"{link.score:.{SCORE_DECIMALS}f}  evidence: {link.evidence}"
            )
        if len(self.links) > max_links:
            lines.append(f"  ... {len(self.links) - max_links} more")
        return "\n".join(lines)


def default_run_dir(out: str | Path) -> Path:
    """The run directory used when none is given: ``<export stem>.run`` beside the export.

    Examples
    --------
    >>> default_run_dir("out/takedown.csv").as_posix()
    'out/takedown.run'
    """
    out = Path(out)
    return out.with_name(f"{out.stem}.run")


def export_format(out: str | Path, fmt: str | None) -> str:
    """``fmt`` if given, else the format named by the file suffix.

    Raises
    ------
    InputError
        When ``fmt`` is unknown, or is ``None`` and the suffix names no format.
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise InputError(
            f"{out}: cannot tell the export format from the suffix {suffix!r}; "
            "use .csv, .jsonl or .parquet, or pass a format"
        )
    return _SUFFIX_FORMATS[suffix]


def takedown_frame(
    scores: pd.DataFrame,
    *,
    actions: Iterable[str] = ("suspend", "review"),
    min_score: float = 0.0,
) -> pd.DataFrame:
    """Select, round and order the rows of a takedown list.

    Parameters
    ----------
    scores : pandas.DataFrame
        Per-account scores with the :data:`EXPORT_COLUMNS`.
    actions : iterable of str
        Actions to keep.
    min_score : float
        Keep rows whose rounded score is at least this.

    Returns
    -------
    pandas.DataFrame
        The :data:`EXPORT_COLUMNS`, score rounded to :data:`SCORE_DECIMALS`, sorted by action
        (suspend, review, none), score descending, cluster_id (rows without one last), then
        account_id; strings compare by code point. The index is 0..n-1.

    Examples
    --------
    >>> scores = pd.DataFrame({"account_id": ["b", "a", "c"], "billing_customer_id": ["x"] * 3,
    ...     "cluster_id": ["C-1", "C-1", None], "cluster_size": [2, 2, 1],
    ...     "score": [0.91234, 0.91236, 0.6], "action": ["suspend", "suspend", "review"],
    ...     "reasons": ["r"] * 3})
    >>> takedown_frame(scores)["account_id"].tolist()
    ['a', 'b', 'c']
    """
    actions = list(actions)
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise InputError(f"unknown action(s) {', '.join(unknown)} (one of {', '.join(ACTIONS)})")
    missing = [c for c in EXPORT_COLUMNS if c not in scores.columns]
    if missing:
        raise InputError(f"scores lack the export column(s) {', '.join(missing)}")
    frame = pd.DataFrame(
        {
            "account_id": scores["account_id"].astype("string"),
            "billing_customer_id": scores["billing_customer_id"].astype("string"),
            "cluster_id": scores["cluster_id"].astype("string"),
            "cluster_size": scores["cluster_size"].fillna(0).astype(np.int64),
            "score": scores["score"].astype(np.float64).round(SCORE_DECIMALS),
            "action": scores["action"].astype("string"),
            "reasons": scores["reasons"].astype("string").fillna(""),
        }
    )
    frame = frame[frame["action"].isin(actions) & (frame["score"] >= min_score)]
    rank = frame["action"].map({a: i for i, a in enumerate(ACTIONS)}).astype(np.int64)
    # Ordinal comparison of the ids: independent of locale and of the pandas string backend.
    order = np.lexsort(
        (
            _ordinal_keys(frame["account_id"]),
            _ordinal_keys(frame["cluster_id"]),
            frame["cluster_id"].isna().to_numpy(),
            -frame["score"].to_numpy(),
            rank.to_numpy(),
        )
    )
    return frame.iloc[order].reset_index(drop=True)


def _ordinal_keys(values: pd.Series) -> np.ndarray:
    """Integer ranks of strings in code-point order (missing values rank first)."""
    filled = values.fillna("").to_numpy(dtype=object).astype(str)
    return np.unique(filled, return_inverse=True)[1]


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    text = frame.copy()
    text["score"] = frame["score"].map(lambda x: f"{x:.{SCORE_DECIMALS}f}")
    text.to_csv(
        path,
        index=False,
        lineterminator="\n",
        na_rep="",
        encoding="utf-8",
        quoting=csv.QUOTE_MINIMAL,
    )


def _write_jsonl(frame: pd.DataFrame, path: Path) -> None:
    columns = [
        frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in EXPORT_COLUMNS
    ]
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for row in zip(*columns, strict=True):
            record = dict(zip(EXPORT_COLUMNS, row, strict=True))
            record["cluster_size"] = int(record["cluster_size"])
            record["score"] = round(float(record["score"]), SCORE_DECIMALS)
            handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


EXPORT_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("billing_customer_id", pa.string()),
        ("cluster_id", pa.string()),
        ("cluster_size", pa.int64()),
        ("score", pa.float64()),
        ("action", pa.string()),
        ("reasons", pa.string()),
    ]
)
"""The Parquet export's schema (no pandas metadata is stored)."""


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    arrays = [
        pa.array(
            frame[f.name].to_numpy(dtype=object if f.type == pa.string() else None),
            type=f.type,
            from_pandas=True,
        )
        for f in EXPORT_SCHEMA
    ]
    table = pa.Table.from_arrays(arrays, schema=EXPORT_SCHEMA)
    pq.write_table(table, path, compression="zstd")


_WRITERS: dict[str, Callable[[pd.DataFrame, Path], None]] = {
    "csv": _write_csv,
    "jsonl": _write_jsonl,
    "parquet": _write_parquet,
}


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks (manifests record it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_export(
    frame: pd.DataFrame,
    out: str | Path,
    *,
    fmt: str | None = None,
    manifest: dict[str, Any] | None = None,
) -> ExportResult:
    """Write a takedown frame (from :func:`takedown_frame`) atomically, with its manifest.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows in export order.
    out : str or Path
        The export file; replaced atomically (a crash leaves the old file or the new one).
    fmt : str, optional
        ``csv``, ``jsonl`` or ``parquet``; by default taken from the suffix of ``out``.
    manifest : dict, optional
        Extra content for the manifest written beside the export as
        ``<out name>.manifest.json`` (the run manifest, the filters used).

    Returns
    -------
    ExportResult
    """
    out = Path(out)
    fmt = export_format(out, fmt)
    with atomic_path(out) as tmp:
        _WRITERS[fmt](frame, tmp)
        sha256 = file_sha256(tmp)
    by_action = {a: int((frame["action"] == a).sum()) for a in ACTIONS}
    manifest_path = out.with_name(out.name + ".manifest.json")
    content = {
        "export": {
            "file": out.name,
            "format": fmt,
            "rows": len(frame),
            "by_action": by_action,
            "sha256": sha256,
            "columns": list(EXPORT_COLUMNS),
            "score_decimals": SCORE_DECIMALS,
            "order": ["action (suspend, review, none)", "score desc", "cluster_id", "account_id"],
        },
        **(manifest or {}),
    }
    write_text_atomic(manifest_path, json.dumps(content, indent=2, sort_keys=True) + "\n")
    logger.info("wrote %s (%d rows, %s)", out, len(frame), fmt)
    return ExportResult(out, fmt, len(frame), by_action, sha256, manifest_path)


_STAGES = ("validate", "normalise", "link", "allowlist", "save", "export")


class _Timer:
    """Times the stages of a run and shows them as a progress bar on a terminal."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._bar = progress(_STAGES, desc="linker run", unit="stage")

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        next(self._bar, None)
        start = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 3)
        logger.info("%s took %.2fs", stage, self.seconds[stage])

    def close(self) -> None:
        """Finish the progress bar."""
        for _ in self._bar:
            pass


def _complete_scores(scores: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """Give the engine's scores the export columns that come from the accounts table."""
    scores = scores.copy()
    if "billing_customer_id" not in scores.columns:
        billing = accounts.drop_duplicates("account_id").set_index("account_id")[
            "billing_customer_id"
        ]
        scores.insert(1, "billing_customer_id", scores["account_id"].map(billing))
    scores["billing_customer_id"] = scores["billing_customer_id"].astype("string")
    scores["cluster_id"] = scores["cluster_id"].astype("string")
    scores["reasons"] = scores["reasons"].astype("string").fillna("")
    return scores


def _recount_clusters(clusters: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Recount n_suspend/n_review per cluster after the allow-list changed some actions."""
    if clusters.empty:
        return clusters
    clustered = scores.dropna(subset=["cluster_id"])
    clusters = clusters.copy()
    for column, action in (("n_suspend", "suspend"), ("n_review", "review")):
        counts = clustered.loc[clustered["action"] == action, "cluster_id"].value_counts()
        clusters[column] = clusters["cluster_id"].map(counts).fillna(0).astype(np.int64)
    return clusters


def _account_order(accounts: pd.DataFrame) -> pd.Series:
    """The account ids in the linking engine's row order (first occurrence of each id)."""
    ids = accounts["account_id"].astype("string")
    return ids.drop_duplicates() if ids.duplicated().any() else ids


def run(
    data_dir: str | Path,
    out: str | Path,
    *,
    run_dir: str | Path | None = None,
    settings: Settings | None = None,
    fmt: str | None = None,
) -> RunResult:
    """Validate, normalise, link, score, apply the allow-list and export a takedown list.

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

    Returns
    -------
    RunResult

    Raises
    ------
    InputError
        When the dataset, the allow-list or the export path is rejected (exit 2).
    SettingsError
        When the settings are invalid.

    Notes
    -----
    The export depends only on the input files, the settings and the seed: the same inputs
    give a byte-identical file. Timings live in the manifests only.
    """
    settings = (settings or Settings()).validate()
    data_dir = Path(data_dir)
    out = Path(out)
    fmt = export_format(out, fmt)
    allow: AllowList | None = None
    if settings.run.allowlist:
        allow = load_allowlist(settings.run.allowlist)
    store = RunStore(run_dir if run_dir is not None else default_run_dir(out))
    timer = _Timer()
    started = time.perf_counter()

    with timer("validate"):
        validation = validate_dataset(
            data_dir,
            on_error=settings.ingest.on_error,
            max_reported_rows=settings.ingest.max_reported_rows,
            observations=False,  # built below, from the input tables only
        )
        # Labels are ground truth for `linker evaluate`; the linking never sees them.
        validation = dataclasses.replace(
            validation,
            tables={k: v for k, v in validation.tables.items() if k in _INPUT_TABLES},
            summary={k: v for k, v in validation.summary.items() if k in _INPUT_TABLES},
            problems=[p for p in validation.problems if p.table in _INPUT_TABLES],
            quarantine={k: v for k, v in validation.quarantine.items() if k in _INPUT_TABLES},
            files={k: v for k, v in validation.files.items() if k in _INPUT_TABLES},
            sha256={k: v for k, v in validation.sha256.items() if k in _INPUT_TABLES},
        )
        store.begin()
        store.write_validation(validation)
        tables = validation.tables
    for problem in validation.problems:
        logger.warning("%s", problem)

    with timer("normalise"):
        observations = build_observations(tables)
        store.write_table("observations", observations)
        # Linking needs only the accounts from here on; the events table is by far the
        # largest object, and freeing it lowers the run's peak memory (docs/performance.md).
        # Behavioural evidence (docs/behaviour.md) needs the events only as integer codes:
        # encode them once, here, and free the table.
        tables.pop("payments", None)
        raw_events = tables.pop("events", None)
        coded: dict[str, pd.DataFrame] = {}
        if settings.link.behaviour.enabled and raw_events is not None:
            coded["events"] = event_codes(raw_events, _account_order(tables["accounts"]))
        del raw_events

    with timer("link"):
        # Popped, not passed by name: the engine then holds the only reference and frees
        # the columns it has finished with.
        result = link_accounts(
            tables["accounts"],
            observations,
            settings.link,
            seed=settings.seed,
            events=coded.pop("events", None),
        )
        # Embedding proximity may move an unflagged account to review, never to suspend
        # (docs/embeddings.md); off unless settings.link.embedding.enabled.
        proximity = (
            embedding_review(
                result.scores,
                result.bipartite,
                settings.link,
                seed=settings.seed,
                hops=settings.embed.hops,
                whole_graph_max_nodes=settings.embed.whole_graph_max_nodes,
            )
            if result.bipartite is not None
            else ProximityResult(result.scores, None, 0)
        )
    scores = _complete_scores(proximity.scores, tables["accounts"])

    with timer("allowlist"):
        outcome = apply_allowlist(scores, tables["accounts"], allow)
        scores = outcome.scores
        clusters = _recount_clusters(result.clusters, scores)

    with timer("save"):
        store.write_table("scores", scores)
        store.write_table("clusters", clusters)
        store.write_table("links", result.links)
        store.write_table("identifiers", result.identifiers)
        if result.behaviour is not None:
            store.write_table("behaviour", result.behaviour)
        embeddings = getattr(result, "embeddings", None)
        if proximity.embeddings is not None:
            embeddings = proximity.embeddings
        if isinstance(embeddings, pd.DataFrame):
            store.write_table("embeddings", embeddings)

    identifiers = result.identifiers
    counts: dict[str, Any] = {
        "tables": {
            name: {"read": c.read, "accepted": c.accepted, "rejected": c.rejected}
            for name, c in validation.summary.items()
        },
        "observations": len(observations),
        "identifiers": len(identifiers),
        "supernodes": int(identifiers["is_supernode"].sum()) if len(identifiers) else 0,
        "links": len(result.links),
        "clusters": len(clusters),
        "accounts": len(scores),
        **{a: int((scores["action"] == a).sum()) for a in ACTIONS},
        "allowlisted": outcome.n_matched,
        "spared_by_allowlist": outcome.n_spared,
        "review_by_embedding": proximity.moved,
    }
    manifest: dict[str, Any] = {
        "linker_version": __version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_dir": str(data_dir.resolve()),
        "inputs": {
            validation.files[name].name: {
                "sha256": validation.sha256[name],
                "bytes": validation.files[name].stat().st_size,
            }
            for name in validation.files
        },
        "allowlist": None
        if allow is None
        else {
            "file": allow.source,
            "sha256": allow.sha256,
            "entries": allow.counts(),
            "matched": outcome.n_matched,
            "spared": outcome.n_spared,
        },
        "settings": settings.to_dict(),
        "counts": counts,
        "problems": [str(p) for p in validation.problems[:100]],
        "quarantine": {
            name: str(path.relative_to(store.root))
            for name, path in validation.quarantine_paths.items()
        },
        "artefacts": {
            name: relative for name, relative in ARTEFACTS.items() if store.has_table(name)
        },
        "timings_seconds": {
            **timer.seconds,
            "engine": _plain(getattr(result, "timings", {})),
        },
    }
    with timer("export"):
        frame = takedown_frame(
            scores, actions=settings.run.actions, min_score=settings.run.min_score
        )
        export = write_export(
            frame,
            out,
            fmt=fmt,
            manifest={
                "filters": {
                    "actions": list(settings.run.actions),
                    "min_score": settings.run.min_score,
                },
                "run_dir": str(store.root.resolve()),
                "run": manifest,
            },
        )
    timer.close()
    manifest["timings_seconds"]["export"] = timer.seconds["export"]
    manifest["timings_seconds"]["total"] = round(time.perf_counter() - started, 3)
    manifest["export"] = {"file": str(out.resolve()), "rows": export.rows, "sha256": export.sha256}
    store.write_manifest(manifest)
    logger.info("run finished in %.1fs", manifest["timings_seconds"]["total"])
    return RunResult(store.root, export, manifest)


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

    Returns
    -------
    ExportResult

    Raises
    ------
    InputError
        When the run directory is missing or incomplete, or a filter is invalid.
    """
    store = RunStore.open(run_dir)
    manifest = store.read_manifest()
    run_settings = manifest.get("settings", {}).get("run", {})
    chosen_actions = (
        list(actions) if actions else list(run_settings.get("actions", ["suspend", "review"]))
    )
    chosen_min = float(min_score if min_score is not None else run_settings.get("min_score", 0.0))
    if not 0.0 <= chosen_min <= 1.0:
        raise InputError(f"min score must be in [0, 1], not {chosen_min}")
    frame = takedown_frame(store.read_table("scores"), actions=chosen_actions, min_score=chosen_min)
    return write_export(
        frame,
        out,
        fmt=fmt,
        manifest={
            "filters": {"actions": chosen_actions, "min_score": chosen_min},
            "run_dir": str(store.root.resolve()),
            "run": manifest,
        },
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
    store = RunStore.open(run_dir)
    scores = store.read_table("scores")
    row = scores[scores["account_id"] == account_id]
    if row.empty:
        raise InputError(f"account {account_id!r} is not in the run at {store.root}")
    me = _record(row.iloc[0])
    cluster_id = me["cluster_id"]
    cluster: dict[str, Any] | None = None
    if cluster_id is not None:
        clusters = store.read_table("clusters")
        match = clusters[clusters["cluster_id"] == cluster_id]
        if not match.empty:
            cluster = _record(match.iloc[0])

    links = store.read_table("links")
    mine = links[(links["account_a"] == account_id) | (links["account_b"] == account_id)]
    other = mine["account_b"].where(mine["account_a"] == account_id, mine["account_a"])
    neighbours = scores[scores["account_id"].isin(other)].set_index("account_id")
    linked = []
    for o, w, e in zip(other, mine["weight"], mine["evidence"], strict=True):
        info = _record(neighbours.loc[o]) if o in neighbours.index else {}
        linked.append(
            LinkedAccount(
                account_id=str(o),
                weight=float(w),
                evidence=str(e),
                action=info.get("action") or "none",
                score=float(info.get("score") or 0.0),
                cluster_id=info.get("cluster_id"),
            )
        )
    linked.sort(key=lambda link: (-link.weight, link.account_id))

    identifiers: list[dict[str, Any]] = []
    if store.has_table("observations") and store.has_table("identifiers"):
        observed = pd.read_parquet(
            store.path("observations"),
            columns=["kind", "value"],
            filters=[("account_id", "==", account_id)],
        )
        if not observed.empty:
            table = store.read_table("identifiers")
            joined = observed.drop_duplicates().merge(table, on=["kind", "value"], how="inner")
            joined = joined[joined["n_accounts"] > 1].sort_values(
                ["weight", "n_accounts", "kind", "value"],
                ascending=[False, True, True, True],
                kind="mergesort",
            )
            identifiers = [_record(r) for _, r in joined.iterrows()]
    return Explanation(
        account_id=account_id,
        billing_customer_id=me["billing_customer_id"],
        score=float(me["score"]),
        action=str(me["action"]),
        reasons=me["reasons"] or "",
        cluster_id=cluster_id,
        cluster_size=int(me["cluster_size"] or 0),
        cluster=cluster,
        links=linked,
        identifiers=identifiers,
    )


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
    store = RunStore.open(run_dir)
    scores = store.read_table("scores")
    members = scores[scores["cluster_id"] == cluster_id]
    if members.empty:
        raise InputError(f"cluster {cluster_id!r} is not in the run at {store.root}")
    clusters = store.read_table("clusters")
    row = clusters[clusters["cluster_id"] == cluster_id]
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
    links = store.read_table("links")
    inside = links[links["account_a"].isin(ids) & links["account_b"].isin(ids)]
    for a, b, w, e in zip(
        inside["account_a"], inside["account_b"], inside["weight"], inside["evidence"], strict=True
    ):
        graph.add_edge(a, b, weight=float(w), evidence=e)
    return graph
