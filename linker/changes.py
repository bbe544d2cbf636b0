"""Daily runs: cluster ids that stay stable, and the change list billing applies exactly once.

``linker run DATA --previous PREV_RUN_DIR`` reads the previous run (:class:`RunState`), lets
each new cluster keep the id of the previous cluster most of its members come from
(:func:`stable_cluster_ids`, over :func:`linker.graph.continuity.carry_cluster_ids`), and
publishes, beside the full takedown list, a change list (:func:`publish_changes`): what
billing must do to go from the previous run's list to this one. ``linker diff RUN_A RUN_B``
computes the same list for any two finished runs (:func:`diff_runs`).

Each change row carries a ``decision_id``: a hash of the account, its new action and the
*evidence version* (a hash of its reason codes and reasons in canonical order), so the same
decision on the same evidence always has the same id. docs/pipeline.md ("The change list")
gives the columns and the protocol billing follows.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linker.cells import neutralise_columns, terminal_text
from linker.engine.stages import RunContext
from linker.engine.store import RunDirectory
from linker.errors import InputError, OutputError
from linker.export import (
    EXPORT_COLUMNS,
    SCHEMA_VERSION,
    Publication,
    export_format,
    takedown_frame,
)
from linker.graph.continuity import carry_cluster_ids, cluster_number
from linker.io.atomic import atomic_path
from linker.io.files import file_sha256

__all__ = [
    "CHANGE_COLUMNS",
    "CHANGE_KINDS",
    "DIFF_FORMATS",
    "ChangeList",
    "RunState",
    "change_frame",
    "decision_id",
    "diff_runs",
    "evidence_version",
    "publish_changes",
    "row_schema",
    "stable_cluster_ids",
    "write_change_file",
]

logger = logging.getLogger(__name__)

CHANGE_COLUMNS: tuple[str, ...] = (
    "account_id",
    "billing_customer_id",
    "change",
    "previous_action",
    "action",
    "previous_cluster_id",
    "cluster_id",
    "reason_codes",
    "evidence_version",
    "decision_id",
    "run_id",
    "previous_run_id",
)
"""The change list's columns, in file order (all text; docs/pipeline.md)."""

CHANGE_KINDS: tuple[str, ...] = (
    "new_suspension",
    "new_review",
    "lifted_suspension",
    "lifted_review",
    "changed_cluster",
)
"""The kinds of change, in file order."""

DIFF_FORMATS: tuple[str, ...] = ("table", "csv", "jsonl", "json", "parquet")
"""What :meth:`ChangeList.render` and :meth:`ChangeList.write` produce."""

_FLAGGED = ("suspend", "review")
_SCORE_COLUMNS = (*EXPORT_COLUMNS, "reasons")
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".txt": "table",
}


@dataclass(frozen=True)
class RunState:
    """What a finished run decided: every account's row and the run's export filters.

    Attributes
    ----------
    run_id : str
        The run's id (manifest ``run_id``).
    scores : pandas.DataFrame
        Every account: the export columns and ``reasons``.
    actions : tuple of str
        The actions its takedown list exports.
    min_score : float
        The lowest score its takedown list exports.
    root : Path, optional
        Its run directory.
    manifest : dict
        Its manifest.
    """

    run_id: str
    scores: pd.DataFrame
    actions: tuple[str, ...] = ("suspend", "review")
    min_score: float = 0.0
    root: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> RunState:
        """Read a finished run directory (all of it that is needed, into memory: a run may
        then replace that directory).

        Raises
        ------
        InputError
            When the directory is missing or unfinished, predates run ids, or its takedown
            list was never published (a refused shrink: billing never received it).
        """
        store = RunDirectory.open(run_dir)
        manifest = store.read_json("manifest")
        run_id = manifest.get("run_id")
        if not isinstance(run_id, str):
            raise InputError(
                f"{store.root}: the run predates run ids; run `linker run` again "
                "(`--from export` reuses its work)"
            )
        export = manifest.get("export") or {}
        if export.get("published") is False:
            raise InputError(
                f"{store.root}: that run's takedown list was not published "
                f"({export.get('refused') or 'refused'}); name the last published run"
            )
        scores = store.read("scores")
        missing = [c for c in _SCORE_COLUMNS if c not in scores.columns]
        if missing:
            raise InputError(
                f"{store.location('scores')}: lacks column(s) {', '.join(missing)}; "
                "run `linker run` again"
            )
        run = (manifest.get("settings") or {}).get("run") or {}
        return cls(
            run_id=run_id,
            scores=scores[list(_SCORE_COLUMNS)],
            actions=tuple(run.get("actions", ("suspend", "review"))),
            min_score=float(run.get("min_score", 0.0)),
            root=store.root,
            manifest=manifest,
        )

    @property
    def highest_cluster_id(self) -> int:
        """The highest cluster id number this run (or any run before it) used."""
        record = self.manifest.get("cluster_ids") or {}
        ids = self.scores["cluster_id"].dropna().astype(str).unique()
        return max([int(record.get("highest") or 0), *(cluster_number(i) for i in ids)])

    def listed(self) -> pd.DataFrame:
        """Its takedown list's flagged rows (``suspend`` and ``review``): what billing holds
        after applying it."""
        frame = takedown_frame(self.scores, actions=self.actions, min_score=self.min_score)
        return frame[frame["action"].isin(_FLAGGED)]

    def record(self) -> dict[str, Any]:
        """What a run's manifest records of its previous run."""
        return {
            "run_id": self.run_id,
            "run_dir": str(self.root.resolve()) if self.root is not None else None,
            "as_of": self.manifest.get("as_of"),
        }


def row_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema shipped with the package for a row of the takedown list
    (``"takedown"``) or of the change list (``"change"``), as JSON Lines carries them.

    Raises
    ------
    InputError
        For another ``kind``.

    Examples
    --------
    >>> row_schema("change")["$id"].endswith(SCHEMA_VERSION)
    True
    """
    if kind not in ("takedown", "change"):
        raise InputError(f"no row schema {kind!r} (takedown or change)")
    text = resources.files("linker").joinpath(f"schemas/{kind}-row.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def stable_cluster_ids(
    ctx: RunContext, ranked: np.ndarray, account_ids: np.ndarray, cluster_of: np.ndarray
) -> np.ndarray:
    """The score stage's cluster ids: the rank ids ``ranked`` (one per cluster index), or,
    with a previous run (``ctx.inputs["previous"]``), ids carried over from it. Notes the
    ``cluster_ids`` fact (kept, fresh, retired, merges, splits, highest)."""
    prior: RunState | None = ctx.inputs.get("previous")
    n = len(ranked)
    if prior is None:
        ctx.note(
            cluster_ids={
                "previous_run_id": None,
                "highest": n,
                "kept": 0,
                "fresh": n,
                "retired": 0,
                "merges": [],
                "splits": [],
            }
        )
        return ranked
    carried = carry_cluster_ids(
        account_ids,
        cluster_of,
        prior.scores["account_id"].to_numpy(dtype=object),
        prior.scores["cluster_id"].to_numpy(dtype=object),
        n_clusters=n,
        # The rank ids have one width: their text order is the rank order.
        order=np.argsort(ranked.astype(str), kind="stable"),
        highest=prior.highest_cluster_id,
    )
    ctx.note(
        cluster_ids={
            "previous_run_id": prior.run_id,
            "highest": carried.highest,
            "kept": carried.kept,
            "fresh": carried.fresh,
            "retired": len(carried.retired),
            "merges": carried.merges,
            "splits": carried.splits,
        }
    )
    logger.info(
        "cluster ids: %d kept from run %s, %d new, %d retired, %d merges, %d splits",
        carried.kept,
        prior.run_id,
        carried.fresh,
        len(carried.retired),
        len(carried.merges),
        len(carried.splits),
    )
    return carried.labels


def evidence_version(reason_codes: str, reasons: str) -> str:
    """The version of an account's evidence: 16 hex digits of SHA-256 over its reason codes
    and its reasons, each in canonical order.

    The canonical form is the JSON object ``{"reason_codes": [...], "reasons": [...]}`` with
    the codes (``code:count``, split at ``;``) and the reason parts (split at ``"; "``) each
    sorted by code point, empty parts dropped, compact separators, UTF-8. Reordering the
    same evidence keeps the version; any added, removed or changed code, count or reason
    (a value, a cluster, its size) gives another.

    Examples
    --------
    >>> evidence_version("shared_payment:3;signup_burst:4", "b; a") == evidence_version(
    ...     "signup_burst:4;shared_payment:3", "a; b")
    True
    >>> len(evidence_version("", ""))
    16
    """
    content = {
        "reason_codes": sorted(c for c in str(reason_codes).split(";") if c),
        "reasons": sorted(p for p in str(reasons).split("; ") if p),
    }
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def decision_id(account_id: str, action: str, version: str) -> str:
    """A decision's id: 32 hex digits of SHA-256 over the JSON array ``[account_id, action,
    evidence_version]`` (compact, UTF-8). The same decision on the same evidence has the
    same id in every run.

    Examples
    --------
    >>> decision_id("acct-1", "suspend", "0123456789abcdef") == decision_id(
    ...     "acct-1", "suspend", "0123456789abcdef")
    True
    >>> decision_id("acct-1", "suspend", "0") != decision_id("acct-1", "none", "0")
    True
    """
    text = json.dumps([account_id, action, version], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _by_account(frame: pd.DataFrame, column: str) -> pd.Series:
    """``column`` of a per-account frame, indexed by account id (the first row of each)."""
    return frame.drop_duplicates("account_id").set_index("account_id")[column].astype(object)


def _rows_of_accounts(frame: pd.DataFrame, accounts: pa.Array) -> pd.DataFrame:
    """The rows of ``frame`` whose ``account_id`` is one of ``accounts`` (in frame order)."""
    ids = pa.array(frame["account_id"].astype("string[pyarrow]").array)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    hit = pc.is_in(ids.cast(pa.large_string()), value_set=accounts)
    return frame[np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)]


def _kinds(previous: np.ndarray, now: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """The kind of change per account (``""`` for none)."""
    return np.select(
        [
            (now == "suspend") & (previous != "suspend"),
            (now == "review") & (previous != "review"),
            (now == "none") & (previous == "suspend"),
            (now == "none") & (previous == "review"),
            (now == previous) & (now != "none") & moved,
        ],
        list(CHANGE_KINDS),
        default="",
    )


def change_frame(before: RunState | None, after: RunState) -> pd.DataFrame:
    """What changed from ``before``'s takedown list to ``after``'s, one row per account.

    Parameters
    ----------
    before : RunState or None
        The previous run; ``None``: every flagged account of ``after`` is new.
    after : RunState
        The run whose change list this is.

    Returns
    -------
    pandas.DataFrame
        The :data:`CHANGE_COLUMNS`, in order: kind (:data:`CHANGE_KINDS` order), then
        account id (code point). An account is flagged when its list has a ``suspend`` or
        ``review`` row for it, else its action is ``none``.

    Notes
    -----
    O(n log n) for n accounts of both runs; the hashes are computed for changed rows only.
    """
    now = _by_account(after.listed(), "action")
    was = _by_account(before.listed(), "action") if before is not None else pd.Series(dtype=object)
    accounts = sorted(set(now.index) | set(was.index))
    table = pd.DataFrame({"account_id": pd.Series(accounts, dtype=object)})
    table["previous_action"] = table["account_id"].map(was).astype(object).fillna("none")
    table["action"] = table["account_id"].map(now).astype(object).fillna("none")
    # Only the listed accounts' rows of every account's scores are looked up.
    listed = pa.array(accounts, pa.large_string())
    after_rows = _rows_of_accounts(after.scores, listed)
    before_rows = _rows_of_accounts(before.scores, listed) if before is not None else None

    def cluster(rows: pd.DataFrame | None) -> pd.Series:
        if rows is None:
            return pd.Series(None, index=table.index, dtype=object)
        ids = _by_account(rows, "cluster_id")
        return table["account_id"].map(ids).astype(object).where(lambda s: s.notna(), None)

    table["previous_cluster_id"] = cluster(before_rows)
    table["cluster_id"] = cluster(after_rows)
    moved = (
        table["previous_cluster_id"].fillna("").to_numpy()
        != table["cluster_id"].fillna("").to_numpy()
    )
    table["change"] = _kinds(
        table["previous_action"].to_numpy(dtype=object),
        table["action"].to_numpy(dtype=object),
        moved,
    )
    table = table[table["change"] != ""].reset_index(drop=True)
    billing = table["account_id"].map(_by_account(after_rows, "billing_customer_id"))
    if before_rows is not None:
        billing = billing.fillna(
            table["account_id"].map(_by_account(before_rows, "billing_customer_id"))
        )
    table["billing_customer_id"] = billing.astype(object).where(billing.notna(), None)
    table["reason_codes"] = (
        table["account_id"].map(_by_account(after_rows, "reason_codes")).fillna("")
    )
    reasons = table["account_id"].map(_by_account(after_rows, "reasons")).fillna("")
    table["evidence_version"] = [
        evidence_version(c, r) for c, r in zip(table["reason_codes"], reasons, strict=True)
    ]
    table["decision_id"] = [
        decision_id(str(a), str(x), v)
        for a, x, v in zip(
            table["account_id"], table["action"], table["evidence_version"], strict=True
        )
    ]
    table["run_id"] = after.run_id
    table["previous_run_id"] = before.run_id if before is not None else None
    rank = table["change"].map({k: i for i, k in enumerate(CHANGE_KINDS)}).to_numpy(np.int64)
    ordinal = np.unique(table["account_id"].astype(str).to_numpy(), return_inverse=True)[1]
    order = np.lexsort((ordinal, rank))
    out = table.iloc[order][list(CHANGE_COLUMNS)].reset_index(drop=True)
    return out.astype({c: "string" for c in CHANGE_COLUMNS})


def _csv_text(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    neutralise_columns(frame, CHANGE_COLUMNS).to_csv(
        buffer, index=False, lineterminator="\n", na_rep=""
    )
    return buffer.getvalue()


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [
        frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in CHANGE_COLUMNS
    ]
    return [dict(zip(CHANGE_COLUMNS, row, strict=True)) for row in zip(*columns, strict=True)]


def _jsonl_text(frame: pd.DataFrame) -> str:
    return "".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in _records(frame)
    )


_CHANGE_SCHEMA = pa.schema([(c, pa.string()) for c in CHANGE_COLUMNS])


def write_change_file(frame: pd.DataFrame, path: str | os.PathLike[str], fmt: str) -> None:
    """Write change rows (:func:`change_frame`) to ``path`` (not atomically: callers write
    into a staged or temporary file).

    ``csv`` and ``jsonl`` follow the export's rules (docs/pipeline.md: UTF-8, ``\\n``,
    formula cells neutralised in CSV, ``null`` for missing values in JSONL); ``json`` is one
    document ``{"schema_version", "run_id", "previous_run_id", "changes": [...]}``;
    ``parquet`` has every column as a string, zstd-compressed, no pandas metadata.
    """
    target = Path(path)
    if fmt == "parquet":
        arrays = [
            pa.array(frame[c].astype(object).where(frame[c].notna(), None).tolist(), pa.string())
            for c in CHANGE_COLUMNS
        ]
        pq.write_table(
            pa.Table.from_arrays(arrays, schema=_CHANGE_SCHEMA), target, compression="zstd"
        )
        return
    writers: dict[str, Callable[[pd.DataFrame], str]] = {
        "csv": _csv_text,
        "jsonl": _jsonl_text,
        "json": _json_text,
        "table": _table_text,
    }
    target.write_bytes(writers[fmt](frame).encode("utf-8"))


def _json_text(frame: pd.DataFrame) -> str:
    first = frame.iloc[0] if len(frame) else None
    document = {
        "schema_version": SCHEMA_VERSION,
        "run_id": None if first is None else first["run_id"],
        "previous_run_id": None
        if first is None or pd.isna(first["previous_run_id"])
        else first["previous_run_id"],
        "changes": _records(frame),
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def _table_text(frame: pd.DataFrame) -> str:
    header = ("change", "account_id", "billing_customer_id", "action", "cluster", "decision_id")
    rows = [header]
    for r in _records(frame):
        rows.append(
            (
                r["change"],
                r["account_id"],
                r["billing_customer_id"] or "-",
                f"{r['previous_action']} -> {r['action']}",
                f"{r['previous_cluster_id'] or '-'} -> {r['cluster_id'] or '-'}",
                r["decision_id"],
            )
        )
    cells = [[terminal_text(str(v), one_line=True) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in cells
    )


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    return {k: int((frame["change"] == k).sum()) for k in CHANGE_KINDS}


def publish_changes(ctx: RunContext, run_id: str) -> dict[str, Any]:
    """Write the run's change list into its publication (``ctx.inputs["publication"]``),
    in the export's format, against the previous run (``ctx.inputs["previous"]``) or, without
    one, listing every flagged account as new.

    Returns
    -------
    dict
        The manifest's ``previous_run`` and ``changes`` sections.
    """
    prior: RunState | None = ctx.inputs.get("previous")
    publication: Publication = ctx.inputs["publication"]
    run = ctx.settings.run
    scores = ctx.frame("scores", columns=list(_SCORE_COLUMNS))
    after = RunState(run_id, scores, tuple(run.actions), float(run.min_score))
    frame = change_frame(prior, after)
    fmt = export_format(publication.out, ctx.inputs.get("fmt"))
    with publication.writing("the change list"), atomic_path(publication.changes_file) as tmp:
        write_change_file(frame, tmp, fmt)
        sha256 = file_sha256(tmp)
    counts = _counts(frame)
    logger.info("change list: %d rows (%s)", len(frame), counts)
    return {
        "previous_run": prior.record() if prior is not None else None,
        "changes": {
            "file": publication.location.changes.name,
            "format": fmt,
            "rows": len(frame),
            "by_change": counts,
            "sha256": sha256,
            "columns": list(CHANGE_COLUMNS),
            "schema_version": SCHEMA_VERSION,
        },
    }


@dataclass(frozen=True)
class ChangeList:
    """The changes from one run's takedown list to another's (:func:`diff_runs`).

    Attributes
    ----------
    frame : pandas.DataFrame
        The :data:`CHANGE_COLUMNS`, in change-list order.
    run_id, previous_run_id : str
        The two runs.
    """

    frame: pd.DataFrame
    run_id: str
    previous_run_id: str | None
    sources: tuple[Path, ...] = ()
    """The run directories compared (:meth:`write` never writes into them)."""

    @property
    def counts(self) -> dict[str, int]:
        """Rows per kind of change."""
        return _counts(self.frame)

    def summary(self) -> str:
        """One line: the runs and the rows per kind."""
        parts = ", ".join(f"{k} {n:,}" for k, n in self.counts.items() if n) or "no changes"
        runs = f"from run {self.previous_run_id} to run {self.run_id}"
        return f"{len(self.frame):,} changes {runs}: {parts}"

    def render(self, fmt: str = "table") -> str:
        """The changes as text: ``table``, ``csv``, ``jsonl`` or ``json``."""
        writers = {"table": _table_text, "csv": _csv_text, "jsonl": _jsonl_text, "json": _json_text}
        if fmt not in writers:
            raise InputError(f"cannot print the format {fmt!r} (one of {', '.join(writers)})")
        return writers[fmt](self.frame)

    def write(self, out: str | os.PathLike[str], fmt: str | None = None) -> Path:
        """Write the changes to ``out`` atomically; the format from ``fmt`` or the suffix
        (``.csv``, ``.jsonl``, ``.json``, ``.parquet``, ``.txt`` for the table)."""
        target = Path(out)
        chosen = fmt or _SUFFIX_FORMATS.get(target.suffix.lower())
        if chosen not in DIFF_FORMATS:
            raise InputError(
                f"{target}: cannot tell the format from the suffix {target.suffix!r}; "
                f"pass a format ({', '.join(DIFF_FORMATS)})"
            )
        if target.is_dir():
            raise OutputError(f"{target}: is a directory; --out names the file to write")
        for root in self.sources:
            if RunDirectory(root).owns(target):
                raise OutputError(f"{target}: is an artefact of the run directory {root}")
        try:
            with atomic_path(target) as tmp:
                write_change_file(self.frame, tmp, chosen)
        except OSError as exc:
            raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
        return target


def diff_runs(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str]) -> ChangeList:
    """The changes from run A's takedown list to run B's: the change list ``linker run`` with
    ``--previous RUN_A`` publishes for run B (same rows, same bytes when written).

    Raises
    ------
    InputError
        When a run directory is missing, unfinished or predates run ids.
    """
    before, after = RunState.open(run_a), RunState.open(run_b)
    sources = tuple(s.root for s in (before, after) if s.root is not None)
    return ChangeList(change_frame(before, after), after.run_id, before.run_id, sources)
