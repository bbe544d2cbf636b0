"""Evaluate a takedown list against ground-truth labels.

Conventions (also in ``docs/pipeline.md``):

* The **universe** is the set of accounts in the labels. A takedown row whose account is not
  in the labels is counted in ``n_unlabelled_flagged`` and otherwise ignored.
* An account is a **positive** when its ``ring_id`` is non-empty; benign accounts have an empty
  ``ring_id``.
* The takedown list holds flagged rows only: an account absent from it is unflagged
  (``action = none``). Rows with ``action = none`` are treated the same way.
* Metrics are given twice: for ``suspend`` alone, and for ``suspend`` + ``review`` (*flagged*).
  Precision is undefined (``None``) when nothing is predicted, recall when there are no
  positives; F1 is undefined when either is.
* Against analysts' decisions (:func:`evaluate_decisions`): the universe is the accounts with
  an account decision (the latest per account); ``confirmed`` is a positive, ``cleared`` a
  negative; flagged accounts with no decision are counted as *unjudged*, and cluster decisions
  (which need a run to resolve) are counted and left out.
* **Adjusted Rand index** of the takedown's ``cluster_id`` against ``ring_id``, over all
  labelled accounts. Predicted side: accounts absent from the takedown, or without a
  ``cluster_id``, are singletons. True side: each benign account is a singleton. ARI is 1.0 when
  both partitions are identical (including the degenerate case of all singletons on both
  sides), about 0 for a random clustering.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linker.errors import InputError

__all__ = [
    "DecisionEvaluation",
    "Evaluation",
    "Metrics",
    "adjusted_rand_index",
    "evaluate",
    "evaluate_decision_file",
    "evaluate_decisions",
    "evaluate_files",
    "read_table",
]

logger = logging.getLogger(__name__)

FLAGGED = ("suspend", "review")


@dataclass(frozen=True)
class Metrics:
    """Confusion counts and the derived precision, recall and F1 of one decision rule."""

    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int) -> Metrics:
        """Build from confusion counts; undefined ratios are ``None``."""
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        if precision is None or recall is None:
            f1 = None
        elif precision + recall == 0:
            f1 = 0.0
        else:
            f1 = 2 * precision * recall / (precision + recall)
        return cls(tp, fp, fn, precision, recall, f1)


@dataclass(frozen=True)
class RingRecall:
    """How much of one ring was caught."""

    ring_id: str
    size: int
    suspended: int
    flagged: int

    @property
    def recall_suspend(self) -> float:
        """Share of the ring suspended."""
        return self.suspended / self.size

    @property
    def recall_flagged(self) -> float:
        """Share of the ring suspended or sent to review."""
        return self.flagged / self.size


@dataclass(frozen=True)
class GroupFalsePositives:
    """False positives among the benign accounts of one group (solo, family, company, ...)."""

    group: str
    size: int
    suspended: int
    flagged: int


@dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate`.

    Attributes
    ----------
    n_accounts, n_positive : int
        Labelled accounts, and those in a ring.
    suspend, flagged : Metrics
        For ``action == suspend``, and for ``action in (suspend, review)``.
    rings : list of RingRecall
        Per ring, sorted by ring_id.
    benign_groups : list of GroupFalsePositives
        Per benign group (empty when the labels have no ``group`` column), sorted by group.
    ari : float
        Adjusted Rand index of cluster_id against ring_id.
    n_unlabelled_flagged : int
        Takedown rows whose account is not in the labels (ignored by the metrics).
    """

    n_accounts: int
    n_positive: int
    suspend: Metrics
    flagged: Metrics
    ari: float
    rings: list[RingRecall] = field(default_factory=list)
    benign_groups: list[GroupFalsePositives] = field(default_factory=list)
    n_unlabelled_flagged: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``None`` for undefined ratios)."""
        data = asdict(self)
        data["rings"] = [
            {**asdict(r), "recall_suspend": r.recall_suspend, "recall_flagged": r.recall_flagged}
            for r in self.rings
        ]
        return data

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def render(self, max_rings: int = 20) -> str:
        """A human-readable report (what ``linker evaluate`` prints)."""
        lines = [
            f"accounts: {self.n_accounts:,} labelled, {self.n_positive:,} in rings",
            f"{'':22}{'precision':>10}{'recall':>10}{'F1':>10}{'TP':>8}{'FP':>8}{'FN':>8}",
        ]
        for name, m in (("suspend", self.suspend), ("suspend + review", self.flagged)):
            lines.append(
                f"{name:22}{_fmt(m.precision):>10}{_fmt(m.recall):>10}{_fmt(m.f1):>10}"
                f"{m.tp:>8}{m.fp:>8}{m.fn:>8}"
            )
        lines.append(f"adjusted Rand index (cluster_id vs ring_id): {self.ari:.4f}")
        if self.rings:
            lines.append(f"per-ring recall ({len(self.rings)} rings):")
            lines.append(f"  {'ring_id':20}{'size':>8}{'suspend':>10}{'flagged':>10}")
            ranked = sorted(self.rings, key=lambda r: (r.recall_flagged, r.ring_id))
            for ring in ranked[:max_rings]:
                lines.append(
                    f"  {ring.ring_id:20}{ring.size:>8}{ring.recall_suspend:>10.3f}"
                    f"{ring.recall_flagged:>10.3f}"
                )
            if len(ranked) > max_rings:
                lines.append(f"  ... {len(ranked) - max_rings} more (lowest recall shown first)")
        if self.benign_groups:
            lines.append("false positives per benign group:")
            lines.append(f"  {'group':20}{'accounts':>10}{'suspend':>10}{'flagged':>10}")
            for g in self.benign_groups:
                lines.append(f"  {g.group:20}{g.size:>10}{g.suspended:>10}{g.flagged:>10}")
        if self.n_unlabelled_flagged:
            lines.append(f"takedown rows not in the labels (ignored): {self.n_unlabelled_flagged}")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _comb2(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1) / 2).sum())


def adjusted_rand_index(truth: pd.Series, predicted: pd.Series) -> float:
    """Adjusted Rand index of two labelings of the same items (Hubert and Arabie, 1985).

    Parameters
    ----------
    truth, predicted : pandas.Series
        Cluster labels, aligned by position. Missing labels must be made unique by the
        caller (they are *not* treated as one cluster).

    Returns
    -------
    float
        1.0 for identical partitions (also when both are all singletons or both one cluster).

    Notes
    -----
    O(n) with a hash-based contingency table.

    Examples
    --------
    >>> adjusted_rand_index(pd.Series([0, 0, 1, 1]), pd.Series([5, 5, 7, 7]))
    1.0
    >>> round(adjusted_rand_index(pd.Series([0, 0, 0, 1, 1, 1]), pd.Series([0, 0, 1, 1, 2, 2])), 4)
    0.2424
    """
    n = len(truth)
    if n != len(predicted):
        raise ValueError("truth and predicted must have the same length")
    if n < 2:
        return 1.0
    t = pd.factorize(truth.to_numpy())[0]
    p = pd.factorize(predicted.to_numpy())[0]
    pairs = pd.DataFrame({"t": t, "p": p}).value_counts().to_numpy()
    index = _comb2(pairs)
    sum_t = _comb2(np.bincount(t))
    sum_p = _comb2(np.bincount(p))
    total = n * (n - 1) / 2
    expected = sum_t * sum_p / total
    maximum = (sum_t + sum_p) / 2
    if math.isclose(maximum, expected):
        return 1.0
    return float((index - expected) / (maximum - expected))


def _blank_to_na(series: pd.Series) -> pd.Series:
    s = series.astype("string").str.strip()
    return s.mask(s == "")


def _check_columns(labels: pd.DataFrame, takedown: pd.DataFrame) -> None:
    """Raise InputError when a required column is missing or an account appears twice."""
    for name, frame, needed in (
        ("labels", labels, ("account_id", "ring_id")),
        ("takedown", takedown, ("account_id", "action")),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise InputError(f"{name}: missing column(s) {', '.join(missing)}")
        dup = frame["account_id"].astype("string")
        dup = dup[dup.duplicated()]
        if len(dup):
            raise InputError(
                f"{name}: account_id {dup.iloc[0]!r} appears more than once "
                f"({dup.nunique()} duplicated id(s))"
            )


def _flagged_rows(takedown: pd.DataFrame, label_ids: pd.Index) -> tuple[pd.DataFrame, int]:
    """The flagged takedown rows of labelled accounts, by account, and how many were unlabelled.

    Actions are compared case-insensitively; unlabelled flagged accounts are logged.
    """
    td = takedown.copy()
    td["account_id"] = td["account_id"].astype("string")
    td["action"] = td["action"].astype("string").str.strip().str.lower()
    td = td[td["action"].isin(FLAGGED)]
    known = td["account_id"].isin(label_ids)
    n_unlabelled = int((~known).sum())
    if n_unlabelled:
        logger.warning("%d takedown rows name accounts that are not in the labels", n_unlabelled)
    return td[known].set_index("account_id"), n_unlabelled


def _metrics(pred: np.ndarray, positive: np.ndarray) -> Metrics:
    """Precision, recall and F1 of the predicted accounts ``pred`` against ``positive``."""
    return Metrics.from_counts(
        int((pred & positive).sum()),
        int((pred & ~positive).sum()),
        int((~pred & positive).sum()),
    )


def _cluster_ari(ids: np.ndarray, ring: pd.Series, td: pd.DataFrame) -> float:
    """Adjusted Rand index of the takedown's clusters against the rings.

    Unclustered accounts and benign ones are singletons, with a label that cannot collide with
    a real cluster or ring id.
    """
    singletons = pd.Series([f"\x00singleton:{i}" for i in range(len(ids))], dtype="string")
    if "cluster_id" in td.columns:
        cluster = pd.Series(ids).map(_blank_to_na(td["cluster_id"])).astype("string")
    else:
        cluster = pd.Series(pd.NA, index=range(len(ids)), dtype="string")
    cluster = cluster.fillna(singletons)
    truth = ring.fillna(singletons)
    return adjusted_rand_index(truth, cluster)


def _breakdowns(
    frame: pd.DataFrame, positive: np.ndarray, labels: pd.DataFrame
) -> tuple[list[RingRecall], list[GroupFalsePositives]]:
    """Recall per ring, and false positives per benign group when the labels have groups.

    ``frame`` has each labelled account's ``ring``, and whether it was ``suspended`` and
    ``flagged``.
    """
    rings = [
        RingRecall(str(rid), len(g), int(g["suspended"].sum()), int(g["flagged"].sum()))
        for rid, g in frame[positive].groupby("ring", sort=True)
    ]
    groups: list[GroupFalsePositives] = []
    if "group" in labels.columns:
        frame = frame.assign(
            group=_blank_to_na(labels["group"]).fillna("(none)").reset_index(drop=True)
        )
        groups = [
            GroupFalsePositives(
                str(name), len(g), int(g["suspended"].sum()), int(g["flagged"].sum())
            )
            for name, g in frame[~positive].groupby("group", sort=True)
        ]
    return rings, groups


def evaluate(labels: pd.DataFrame, takedown: pd.DataFrame) -> Evaluation:
    """Score a takedown list against labels.

    Parameters
    ----------
    labels : pandas.DataFrame
        ``account_id``, ``ring_id`` (empty or missing = benign), optional ``group``.
    takedown : pandas.DataFrame
        ``account_id``, ``action`` and optionally ``cluster_id`` (the export's columns).

    Returns
    -------
    Evaluation

    Raises
    ------
    InputError
        When a required column is missing or an account appears twice.

    Notes
    -----
    O(n) in the number of labelled accounts. Conventions are in the module docstring.

    Examples
    --------
    >>> labels = pd.DataFrame({"account_id": ["a", "b", "c", "d"],
    ...                        "ring_id": ["R1", "R1", "", ""]})
    >>> takedown = pd.DataFrame({"account_id": ["a", "c"], "action": ["suspend", "review"],
    ...                          "cluster_id": ["C-1", "C-1"]})
    >>> ev = evaluate(labels, takedown)
    >>> ev.suspend.precision, ev.suspend.recall, ev.flagged.precision
    (1.0, 0.5, 0.5)
    """
    _check_columns(labels, takedown)
    ids = labels["account_id"].astype("string").to_numpy()
    ring = _blank_to_na(labels["ring_id"]).reset_index(drop=True)
    positive = ring.notna().to_numpy()
    td, n_unlabelled = _flagged_rows(takedown, pd.Index(ids))
    action = pd.Series(ids).map(td["action"]).astype("string").fillna("none")
    suspended = (action == "suspend").to_numpy(dtype=bool)
    flagged = action.isin(FLAGGED).to_numpy(dtype=bool)
    ari = _cluster_ari(ids, ring, td)
    frame = pd.DataFrame({"ring": ring, "suspended": suspended, "flagged": flagged})
    rings, groups = _breakdowns(frame, positive, labels)
    return Evaluation(
        n_accounts=len(ids),
        n_positive=int(positive.sum()),
        suspend=_metrics(suspended, positive),
        flagged=_metrics(flagged, positive),
        ari=ari,
        rings=rings,
        benign_groups=groups,
        n_unlabelled_flagged=n_unlabelled,
    )


@dataclass(frozen=True)
class DecisionEvaluation:
    """A takedown list against analysts' decisions (:func:`evaluate_decisions`).

    Attributes
    ----------
    n_confirmed, n_cleared : int
        Accounts whose latest account decision is that.
    suspend, flagged : Metrics
        Confirmed = positive, cleared = negative; for ``suspend``, and ``suspend`` + ``review``.
    unjudged : dict of str to int
        Takedown rows with no account decision, per flagged action.
    n_cluster_decisions : int
        Decision rows naming a cluster (not evaluated).
    """

    n_confirmed: int
    n_cleared: int
    suspend: Metrics
    flagged: Metrics
    unjudged: dict[str, int]
    n_cluster_decisions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``None`` for undefined ratios)."""
        return asdict(self)

    def render(self) -> str:
        """The report ``linker evaluate --decisions`` prints."""
        lines = [
            f"analysts' decisions: {self.n_confirmed:,} confirmed, {self.n_cleared:,} cleared",
            f"{'':22}{'precision':>10}{'recall':>10}{'F1':>10}{'TP':>8}{'FP':>8}{'FN':>8}",
        ]
        for name, m in (("suspend", self.suspend), ("suspend + review", self.flagged)):
            lines.append(
                f"{name:22}{_fmt(m.precision):>10}{_fmt(m.recall):>10}{_fmt(m.f1):>10}"
                f"{m.tp:>8}{m.fp:>8}{m.fn:>8}"
            )
        lines.append(
            "unjudged (flagged, no decision): "
            + ", ".join(f"{action} {n:,}" for action, n in self.unjudged.items())
        )
        if self.n_cluster_decisions:
            lines.append(f"cluster decisions (not evaluated): {self.n_cluster_decisions:,}")
        return "\n".join(lines)


def evaluate_decisions(decisions: pd.DataFrame, takedown: pd.DataFrame) -> DecisionEvaluation:
    """Score a takedown list against analysts' decisions.

    Parameters
    ----------
    decisions : pandas.DataFrame
        ``account_id``, ``decision`` (``confirmed`` or ``cleared``), ``decided_at`` and
        optionally ``cluster_id`` and ``row`` (:attr:`linker.analyst.Decisions.frame`).
        Per account the latest decision counts (then the later row).
    takedown : pandas.DataFrame
        ``account_id`` and ``action``.

    Returns
    -------
    DecisionEvaluation

    Notes
    -----
    O(decisions + takedown rows).

    Examples
    --------
    >>> decisions = pd.DataFrame({"account_id": ["a", "b", "c"],
    ...     "decision": ["confirmed", "cleared", "confirmed"],
    ...     "decided_at": pd.to_datetime(["2026-01-01"] * 3, utc=True)})
    >>> takedown = pd.DataFrame({"account_id": ["a", "b", "x"], "action": ["suspend"] * 3})
    >>> ev = evaluate_decisions(decisions, takedown)
    >>> ev.suspend.precision, ev.suspend.recall, ev.unjudged
    (0.5, 0.5, {'suspend': 1, 'review': 0})
    """
    _check_columns(pd.DataFrame({"account_id": [], "ring_id": []}), takedown)
    frame = decisions.copy()
    if "row" not in frame.columns:
        frame["row"] = np.arange(len(frame))
    clustered = (
        _blank_to_na(frame["cluster_id"]).notna()
        if "cluster_id" in frame.columns
        else pd.Series(False, index=frame.index)
    )
    frame["account_id"] = _blank_to_na(frame["account_id"])
    accounts = frame[frame["account_id"].notna() & ~clustered.to_numpy()]
    latest = accounts.sort_values(["account_id", "decided_at", "row"], kind="stable")
    latest = latest.drop_duplicates("account_id", keep="last").set_index("account_id")
    positive = (latest["decision"].astype(str).str.lower() == "confirmed").to_numpy()
    td = takedown.assign(
        account_id=takedown["account_id"].astype("string"),
        action=takedown["action"].astype("string").str.strip().str.lower(),
    ).set_index("account_id")
    action = pd.Series(latest.index).map(td["action"]).fillna("none").to_numpy()
    unjudged = td[~td.index.isin(latest.index)]["action"]
    return DecisionEvaluation(
        n_confirmed=int(positive.sum()),
        n_cleared=int((~positive).sum()),
        suspend=_metrics(action == "suspend", positive),
        flagged=_metrics(np.isin(action, FLAGGED), positive),
        unjudged={a: int((unjudged == a).sum()) for a in FLAGGED},
        n_cluster_decisions=int(clustered.sum()),
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (optionally gzipped), JSON-lines or Parquet table with string columns.

    Raises
    ------
    InputError
        When the file is missing, unreadable or of an unknown format.
    """
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[""])
        if name.endswith((".jsonl", ".ndjson")):
            frame = pd.read_json(path, lines=True, dtype=False)
            return frame
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read table ({exc})") from None
    raise InputError(f"{path}: unknown table format (expected .csv, .csv.gz, .jsonl or .parquet)")


def evaluate_files(labels: str | Path, takedown: str | Path) -> Evaluation:
    """:func:`evaluate` on a labels file and a takedown file (csv, jsonl or parquet)."""
    return evaluate(read_table(labels), read_table(takedown))


def evaluate_decision_file(decisions: str | Path, takedown: str | Path) -> DecisionEvaluation:
    """:func:`evaluate_decisions` on a decisions file, validated as ``linker run`` validates
    it (bad rows are left out and logged; :func:`linker.analyst.load_decisions`), and a
    takedown file."""
    from linker.analyst import load_decisions

    return evaluate_decisions(load_decisions(decisions).frame, read_table(takedown))
