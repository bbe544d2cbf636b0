"""Analysts' decisions: a file of confirmed and cleared accounts or clusters that feeds a run.

A decisions file is a table (CSV, CSV.gz or Parquet) with one decision per row::

    account_id,cluster_id,decision,analyst,decided_at,note
    acct_42,,cleared,alice,2026-07-01T09:00:00Z,family sharing a card
    ,C-0003,confirmed,bob,2026-07-01T10:30:00Z,ring of 38
    acct_77,,confirmed,bob,2026-07-02T08:00:00Z,

Exactly one of ``account_id`` and ``cluster_id`` names the subject; ``decision`` is
``confirmed`` or ``cleared`` (any case); ``analyst`` and ``decided_at`` (ISO 8601) are required;
``note`` is free text. The file is validated like the input tables
(:func:`linker.io.validate.validate_table`): a bad row is one problem line naming the file, the
row, the column and the reason, and is quarantined and counted (read = accepted + rejected);
file-level problems stop the run. A decision on an account or cluster the run does not have is
reported, not fatal.

What a run does with them (:func:`apply_decisions`, in the ``decide`` stage, before the
allow-list; docs/decisions.md):

* A **cluster** decision applies to the cluster's members that existed at ``decided_at``
  (accounts created then or before). Per account the latest decision wins (an account decision
  before a cluster decision at the same time, then the later row).
* A **cleared** account is never flagged again on the evidence that existed when it was
  cleared. Its ties to other members of its cluster (values both hold) carry the time they
  appeared (the later ``first_seen`` of the two); a tie younger than ``decided_at`` is new
  evidence. Without any, the account gets action ``none`` and ``cleared by ... on ...; would
  be ...``; with some, it keeps the engine's action (at most ``review`` unless a new tie is a
  strong kind: card, mailbox, billing customer) and its reason starts ``new since cleared by
  ... on ...`` naming the new values.
* A **confirmed** account keeps the engine's action (``confirmed by ...`` is added to its
  reason) and becomes evidence about the others: an unflagged, undecided member of its cluster
  that holds a value the confirmed member holds goes to ``review`` with a reason naming the
  confirmed member. A confirmation never suspends anyone.

Ties to confirmed members are what the engine's ties to suspended members use: values the
cluster *owns* (held by far more of its members than chance predicts); an unflagged member
goes to review when it shares such values with confirmed members through
``link.min_attachment_families`` families of evidence (a device *and* an IP, a card *and* a
template). New evidence about a cleared account is any linking value.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linker import kinds
from linker.errors import InputError
from linker.graph.analyst import cluster_ties
from linker.io.contract import Column, TableSpec
from linker.io.validate import (
    Problem,
    RowFinding,
    TableCounts,
    ValidationFailed,
    validate_table,
)
from linker.reasons import CLEARED, CONFIRMED, NEW_SINCE_CLEARED, TIED_TO_CONFIRMED, join_codes
from linker.settings import IngestSettings

__all__ = [
    "DECISIONS_SPEC",
    "DECISION_RULES",
    "DecisionOutcome",
    "Decisions",
    "Resolution",
    "apply_decisions",
    "confirmed_accounts",
    "load_decisions",
    "resolve_decisions",
]

logger = logging.getLogger(__name__)

DecisionKind = Literal["confirmed", "cleared"]

DECISIONS_SPEC = TableSpec(
    "decisions",
    (
        Column("account_id", "id", required=True),
        Column("cluster_id", "id"),
        Column("decision", "string", required=True, non_empty=True),
        Column("analyst", "id", required=True, non_empty=True),
        Column("decided_at", "timestamp", required=True, non_empty=True),
        Column("note", "string"),
    ),
    references_accounts=False,
)
"""The columns of a decisions file (``account_id`` must be in the header, even if empty)."""

DECISION_RULES: dict[str, str] = {
    "bad_decision": "decision is not `confirmed` or `cleared`",
    "bad_subject": "neither or both of account_id and cluster_id are given",
    "bad_cluster_id": "cluster_id is not `C-` and digits",
}
"""The decisions file's own row rules, besides the column rules of the input tables."""

_DECISIONS = ("confirmed", "cleared")
_CLUSTER_PATTERN = r"^C-[0-9]+$"


@dataclass(frozen=True)
class Decisions:
    """A validated decisions file.

    Attributes
    ----------
    frame : pandas.DataFrame
        Accepted rows: ``row`` (1-based data row), ``account_id``, ``cluster_id``,
        ``decision`` (lower case), ``analyst``, ``decided_at`` (UTC), ``note``.
    counts : TableCounts
    problems : list of Problem
    quarantine : pandas.DataFrame
        Rejected rows with their reasons.
    source, sha256 : str
        The file and the hash of its bytes.
    """

    frame: pd.DataFrame
    counts: TableCounts
    problems: list[Problem] = field(default_factory=list)
    quarantine: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    source: str = ""
    sha256: str = ""

    @property
    def file_name(self) -> str:
        """The file's name, for problem lines."""
        return Path(self.source).name if self.source else "decisions"


def _text(typed: Mapping[str, pa.Array], name: str) -> pa.Array:
    array = typed.get(name)
    if array is None:
        n = len(next(iter(typed.values())))
        return pa.nulls(n, pa.large_string())
    return array


def _mask(condition: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), dtype=bool)


def _reasons_for(array: pa.Array, template: str) -> Any:
    def reasons(indices: np.ndarray) -> list[str]:
        values = pc.fill_null(array.take(pa.array(indices, pa.int64())), "").to_pylist()
        return [template.format(repr(str(v)[:60])) for v in values]

    return reasons


def _check_decisions(typed: Mapping[str, pa.Array]) -> list[RowFinding]:
    """The rules of :data:`DECISION_RULES` (values already rejected by a column rule are
    null here and not reported twice)."""
    findings: list[RowFinding] = []
    decision = _text(typed, "decision")
    known = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(decision)), pa.array(_DECISIONS))
    bad = _mask(pc.and_(pc.is_valid(decision), pc.invert(known)))
    if bad.any():
        why = _reasons_for(decision, "decision {} is not 'confirmed' or 'cleared'")
        findings.append(RowFinding("bad_decision", "decision", bad, why))
    account, cluster = _text(typed, "account_id"), _text(typed, "cluster_id")
    has_account, has_cluster = _mask(pc.is_valid(account)), _mask(pc.is_valid(cluster))
    neither, both = ~has_account & ~has_cluster, has_account & has_cluster
    if neither.any():
        findings.append(
            RowFinding(
                "bad_subject",
                "account_id",
                neither,
                lambda idx: ["no account_id or cluster_id (one of them is required)"] * len(idx),
            )
        )
    if both.any():
        findings.append(
            RowFinding(
                "bad_subject",
                "cluster_id",
                both,
                lambda idx: (
                    ["both account_id and cluster_id given (one subject per row)"] * len(idx)
                ),
            )
        )
    odd = _mask(pc.invert(pc.match_substring_regex(cluster, _CLUSTER_PATTERN))) & has_cluster
    if odd.any():
        why = _reasons_for(cluster, "cluster_id {} is not 'C-' and digits")
        findings.append(RowFinding("bad_cluster_id", "cluster_id", odd, why))
    return findings


def load_decisions(
    path: str | Path,
    *,
    settings: IngestSettings | None = None,
    now: datetime | None = None,
) -> Decisions:
    """Read and validate a decisions file (format in the module docstring).

    Parameters
    ----------
    path : str or Path
        CSV, CSV.gz or Parquet.
    settings : IngestSettings, optional
        ``on_error`` (``fail`` raises on any bad row), the plausible timestamps and
        ``max_reported_rows``, as for the input tables.
    now : datetime, optional
        The run's clock (the latest plausible ``decided_at``).

    Returns
    -------
    Decisions

    Raises
    ------
    InputError
        A file-level problem (missing, not a table, a required column missing, no rows,
        every row rejected), one line naming the file.
    ValidationFailed
        With ``on_error = "fail"``, when a row is rejected.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "decisions.csv"
    >>> _ = p.write_text("account_id,cluster_id,decision,analyst,decided_at\\n"
    ...     "a1,,Cleared,ann,2026-01-01\\n,C-0001,confirmed,bo,2026-01-02\\n"
    ...     "a2,,maybe,ann,2026-01-02\\n")
    >>> d = load_decisions(p)
    >>> d.counts, list(d.frame["decision"])
    (TableCounts(read=3, accepted=2, rejected=1), ['cleared', 'confirmed'])
    >>> print(d.problems[0])
    decisions.csv: row 3: column decision: decision 'maybe' is not 'confirmed' or 'cleared'
    """
    settings = settings or IngestSettings()
    path = Path(path)
    checked = validate_table(
        DECISIONS_SPEC, path, checks=[_check_decisions], settings=settings, now=now
    )
    if settings.on_error == "fail" and checked.counts.rejected:
        raise ValidationFailed(checked.problems, {"decisions": checked.counts})
    for problem in checked.problems:
        logger.warning("%s", problem)
    frame = checked.accepted.copy()
    frame.insert(0, "row", checked.rows.astype(np.int64))
    frame["decision"] = frame["decision"].str.strip().str.lower()
    for column in ("account_id", "cluster_id", "analyst"):
        frame[column] = frame[column].str.strip()
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:  # pragma: no cover - read a moment ago
        raise InputError(f"{path}: cannot read decisions file ({exc.strerror})") from None
    logger.info("decisions %s: %s", path, checked.counts)
    return Decisions(
        frame.reset_index(drop=True),
        checked.counts,
        checked.problems,
        checked.quarantine,
        str(path),
        digest,
    )


@dataclass(frozen=True)
class Resolution:
    """The decision in force for each account of a run.

    Attributes
    ----------
    decided : pandas.DataFrame
        One row per decided account of the run: ``account_id``, ``decision``, ``analyst``,
        ``decided_at``, ``via`` (``""`` for an account decision, the cluster id otherwise),
        ``row`` (the decision's row in the file).
    unknown : list of str
        A line per decision that names an account or cluster the run does not have (or a
        cluster none of whose members existed at ``decided_at``); such decisions do nothing.
    """

    decided: pd.DataFrame
    unknown: list[str]

    def count(self, decision: DecisionKind) -> int:
        """Accounts whose decision in force is ``decision``."""
        return int((self.decided["decision"] == decision).sum())


def _cluster_members(
    decisions: pd.DataFrame, scores: pd.DataFrame, created: pd.Series
) -> pd.DataFrame:
    """Each cluster decision expanded to the members that existed at its ``decided_at``."""
    rows = decisions[decisions["cluster_id"].notna()]
    members = scores.loc[scores["cluster_id"].notna(), ["account_id", "cluster_id"]].astype(str)
    expanded = rows.drop(columns=["account_id"]).merge(members, on="cluster_id")
    born = expanded["account_id"].map(created)
    expanded = expanded[born.notna().to_numpy() & (born <= expanded["decided_at"]).to_numpy()]
    return expanded.assign(via=expanded["cluster_id"].astype(str), priority=0)


def resolve_decisions(
    decisions: Decisions, scores: pd.DataFrame, accounts: pd.DataFrame
) -> Resolution:
    """The decision in force for each account of a run.

    Parameters
    ----------
    decisions : Decisions
    scores : pandas.DataFrame
        The run's ``account_id`` and ``cluster_id`` per account.
    accounts : pandas.DataFrame
        The run's accounts (``account_id``, ``created_at``).

    Returns
    -------
    Resolution
        Cluster decisions expanded to the members that existed at ``decided_at``; per
        account the latest decision (an account decision before a cluster decision at the
        same time, then the later row).

    Notes
    -----
    O(decisions + members of the decided clusters).
    """
    frame = decisions.frame
    created = pd.Series(
        pd.to_datetime(accounts["created_at"], utc=True).to_numpy(),
        index=accounts["account_id"].astype(str).to_numpy(),
    )
    created = created[~created.index.duplicated()]
    direct = frame[frame["account_id"].notna()].assign(via="", priority=1)
    direct = direct.assign(account_id=direct["account_id"].astype(str))
    by_cluster = _cluster_members(frame, scores, created)
    name = decisions.file_name
    missing = [
        (r.row, f"{name}: row {r.row}: column account_id: account {r.account_id!r} "
         "is not in this run's accounts (decision ignored)")
        for r in direct[~direct["account_id"].isin(created.index)].itertuples()
    ]  # fmt: skip
    found = set(by_cluster["row"].tolist())
    missing += [
        (r.row, f"{name}: row {r.row}: column cluster_id: cluster {r.cluster_id!r} "
         "has no member that existed at decided_at in this run (decision ignored)")
        for r in frame[frame["cluster_id"].notna()].itertuples()
        if r.row not in found
    ]  # fmt: skip
    unknown = [line for _, line in sorted(missing)]
    for line in unknown:
        logger.warning("%s", line)
    both = pd.concat([direct[direct["account_id"].isin(created.index)], by_cluster])
    both = both.sort_values(["account_id", "decided_at", "priority", "row"], kind="stable")
    decided = both.drop_duplicates("account_id", keep="last")
    columns = ["account_id", "decision", "analyst", "decided_at", "via", "row"]
    return Resolution(decided[columns].reset_index(drop=True), unknown)


def confirmed_accounts(resolution: Resolution) -> list[str]:
    """The accounts whose decision in force is ``confirmed``, sorted (``linker expand``'s
    seeds when it is given a decisions file)."""
    confirmed = resolution.decided[resolution.decided["decision"] == "confirmed"]
    return sorted(confirmed["account_id"].astype(str))


@dataclass(frozen=True)
class DecisionOutcome:
    """What applying the decisions changed.

    Attributes
    ----------
    scores : pandas.DataFrame
        The scores with the decisions applied (a copy).
    counts : dict of str to int
        ``confirmed`` and ``cleared`` (accounts whose decision in force is that),
        ``kept_cleared`` (cleared accounts the engine flagged on old evidence only, now
        ``none``), ``flagged_on_new_evidence`` (cleared accounts flagged again on new
        evidence) and ``tied_to_confirmed`` (unflagged accounts moved to review).
    """

    scores: pd.DataFrame
    counts: dict[str, int]


def _when(moment: Any) -> str:
    return pd.Timestamp(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _by(decided: pd.DataFrame) -> pd.Series:
    """``by alice on 2026-07-01T09:00:00Z`` (``, cluster C-0003`` for a cluster decision)."""
    via = decided["via"].astype(str)
    text = [
        f"by {a} on {_when(t)}" + (f" (cluster {v})" if v else "")
        for a, t, v in zip(decided["analyst"].astype(str), decided["decided_at"], via, strict=True)
    ]
    return pd.Series(text, index=decided["account_id"].astype(str).to_numpy(), dtype=object)


def _tie_text(ties: pd.DataFrame, peer_note: pd.Series | None, max_reasons: int) -> pd.Series:
    """Per account: ``card fp1 with acct_b (since 2026-07-03T10:00:00Z), ...`` (or the
    peer's note instead of the date), at most ``max_reasons`` values each."""
    if ties.empty:
        return pd.Series(dtype=object)
    first = ties.drop_duplicates(["account_id", "kind", "value"])
    first = first[first.groupby("account_id").cumcount() < max_reasons]
    labels = {k: kinds.reason_label(k) for k in first["kind"].unique()}
    if peer_note is None:
        note = [f"since {_when(t)}" for t in first["since"]]
    else:
        note = first["peer"].map(peer_note).astype(str).tolist()
    text = [
        f"{labels[k]} {v} with {p} ({n})"
        for k, v, p, n in zip(first["kind"], first["value"], first["peer"], note, strict=True)
    ]
    return pd.Series(text, index=first.index).groupby(first["account_id"].to_numpy()).agg(", ".join)


def _is_strong(kind: str) -> bool:
    try:
        return bool(kinds.kind(kind).strong)
    except KeyError:
        return False


def _apply_cleared(
    out: pd.DataFrame, decided: pd.DataFrame, held: pd.DataFrame, max_reasons: int
) -> tuple[int, int]:
    """Cleared accounts: ``none`` on old evidence, flagged with a ``new since cleared``
    reason on new evidence. Returns (kept cleared, flagged on new evidence)."""
    cleared = decided[decided["decision"] == "cleared"]
    ids = pd.Index(cleared["account_id"].astype(str))
    at = out.index.isin(ids)
    if not at.any():
        return 0, 0
    cluster_of = out["cluster_id"].dropna().astype(str)
    ties = cluster_ties(held, cluster_of, ids, pd.Index(cluster_of.index))
    since = cleared.set_index("account_id")["decided_at"]
    ties = ties[(ties["since"] > ties["account_id"].map(since)).to_numpy(dtype=bool)]
    by = _by(cleared)
    flagged = out["action"].isin(["suspend", "review"]).to_numpy() & at
    fresh = out.index.isin(ties["account_id"]) & flagged
    stale = flagged & ~fresh
    rows = out.index[at]
    engine = out["action"].astype(str) + ": " + out["reasons"].astype(str)
    label = "cleared " + out.index.to_series().map(by).astype(str)
    reason = label.where(~stale, label + "; would be " + engine)
    code = pd.Series(f"{CLEARED.code}:1", index=out.index, dtype=object)
    code[stale] = join_codes(code[stale], out.loc[stale, "reason_codes"])
    keep = at & ~fresh
    out.loc[keep, "reasons"] = reason[keep]
    out.loc[keep, "reason_codes"] = code[keep]
    out.loc[keep, "action"] = "none"
    if fresh.any():
        _flag_again(out, fresh, ties, by, max_reasons)
    logger.info("cleared accounts: %d in this run, %d kept none", len(rows), int(stale.sum()))
    return int(stale.sum()), int(fresh.sum())


def _flag_again(
    out: pd.DataFrame, fresh: np.ndarray, ties: pd.DataFrame, by: pd.Series, max_reasons: int
) -> None:
    """Cleared accounts with new ties keep the engine's action (at most review unless a
    new tie is of a strong kind); their reason names the new values first."""
    rows = out.index[fresh]
    ties = ties[ties["account_id"].isin(rows)]
    strong = ties.assign(strong=ties["kind"].map(_is_strong)).groupby("account_id")["strong"].any()
    weak = rows[~strong.reindex(rows).fillna(False).to_numpy(dtype=bool)]
    capped = weak[out.loc[weak, "action"].to_numpy() == "suspend"]
    out.loc[capped, "action"] = "review"
    n_new = ties.drop_duplicates(["account_id", "kind", "value"]).groupby("account_id").size()
    text = _tie_text(ties, None, max_reasons).reindex(rows)
    head = "new since cleared " + rows.to_series().map(by).astype(str) + ": " + text.astype(str)
    out.loc[rows, "reasons"] = (head + "; " + out.loc[rows, "reasons"].astype(str)).to_numpy()
    codes = NEW_SINCE_CLEARED.code + ":" + n_new.reindex(rows).astype(str)
    out.loc[rows, "reason_codes"] = join_codes(codes.to_numpy(), out.loc[rows, "reason_codes"])


def _apply_confirmed(
    out: pd.DataFrame,
    decided: pd.DataFrame,
    held: pd.DataFrame,
    max_reasons: int,
    min_families: int,
) -> int:
    """Confirmed accounts get ``confirmed by ...``; unflagged, undecided members of their
    clusters tied to them by their own values of ``min_families`` families go to review.
    Returns how many moved."""
    confirmed = decided[decided["decision"] == "confirmed"]
    ids = pd.Index(confirmed["account_id"].astype(str))
    at = out.index.isin(ids)
    if not at.any():
        return 0
    by = _by(confirmed)
    note = "confirmed " + out.index.to_series().map(by).astype(str)
    flagged = at & out["action"].isin(["suspend", "review"]).to_numpy()
    out.loc[at, "reasons"] = note[at].where(~flagged[at], note + "; " + out["reasons"].astype(str))
    out.loc[at, "reason_codes"] = join_codes(
        np.full(int(at.sum()), f"{CONFIRMED.code}:1", dtype=object),
        out.loc[at, "reason_codes"].where(flagged[at], ""),
    )
    cluster_of = out["cluster_id"].dropna().astype(str)
    candidates = out.index[
        (out["action"] == "none").to_numpy()
        & out["cluster_id"].notna().to_numpy()
        & ~out.index.isin(decided["account_id"])
    ]
    if "owned" in held.columns:
        held = held[held["owned"].to_numpy(dtype=bool)]
    ties = cluster_ties(held, cluster_of, pd.Index(candidates), ids)
    family = kinds.families()
    reach = ties["kind"].map(lambda k: family.get(k, k)).groupby(ties["account_id"]).nunique()
    ties = ties[ties["account_id"].isin(reach.index[reach >= min_families])]
    if ties.empty:
        return 0
    rows = pd.Index(ties["account_id"].unique())
    text = _tie_text(ties, "confirmed " + by, max_reasons).reindex(rows)
    out.loc[rows, "action"] = "review"
    out.loc[rows, "reasons"] = (
        "tied by its own evidence to confirmed members of its cluster: shares " + text
    ).to_numpy()
    peers = ties.groupby("account_id")["peer"].nunique().reindex(rows)
    out.loc[rows, "reason_codes"] = (TIED_TO_CONFIRMED.code + ":" + peers.astype(str)).to_numpy()
    return len(rows)


def apply_decisions(
    scores: pd.DataFrame,
    resolution: Resolution,
    held: pd.DataFrame,
    *,
    max_reasons: int = 5,
    min_families: int = 2,
) -> DecisionOutcome:
    """Apply the analysts' decisions to a run's scores (rules in the module docstring).

    Parameters
    ----------
    scores : pandas.DataFrame
        Per account: ``account_id``, ``cluster_id``, ``action``, ``reasons``,
        ``reason_codes`` (the engine's, after embedding proximity).
    resolution : Resolution
        :func:`resolve_decisions` of the same run.
    held : pandas.DataFrame
        ``account_id``, ``kind``, ``value``, ``first_seen`` and optionally ``owned``: the
        linking values (not public, with a weight, held by two accounts or more) of the
        decided accounts and of the other members of their clusters, and whether the cluster
        owns them (:func:`linker.graph.analyst.owned_by_cluster`; ties to confirmed members
        count owned values only, new evidence about cleared accounts every linking value).
    max_reasons : int
        How many values a reason cites.
    min_families : int
        Families of evidence (:func:`linker.kinds.families`) through which an unflagged
        member must share values with confirmed members to go to review
        (``link.min_attachment_families``, as for ties to suspended members).

    Returns
    -------
    DecisionOutcome

    Notes
    -----
    O(ties of the decided accounts in their clusters) (:func:`linker.graph.analyst.cluster_ties`).
    Scores and clusters are unchanged: only actions, reasons and reason codes.
    """
    out = scores.copy()
    out.index = pd.Index(out["account_id"].astype(str))
    for column in ("action", "reasons", "reason_codes"):
        out[column] = out[column].astype(object).where(out[column].notna(), "")
    decided = resolution.decided
    kept, again = _apply_cleared(out, decided, held, max_reasons)
    moved = _apply_confirmed(out, decided, held, max_reasons, min_families)
    for column in ("action", "reasons", "reason_codes"):
        out[column] = out[column].astype("string")
    counts = {
        "confirmed": resolution.count("confirmed"),
        "cleared": resolution.count("cleared"),
        "kept_cleared": kept,
        "flagged_on_new_evidence": again,
        "tied_to_confirmed": moved,
    }
    logger.info("analysts' decisions: %s", counts)
    return DecisionOutcome(out.reset_index(drop=True), counts)
