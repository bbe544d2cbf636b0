"""``linker score``: score new accounts against a finished run, without a run.

A signup-time check cannot wait for a full run. :class:`ScoringIndex` loads what it needs
from a finished run directory once (the flagged clusters, their flagged members, the
values those members hold with the run's saved weights and public flags, the members'
signup times and the run's settings); :meth:`ScoringIndex.score` then scores a batch of new
accounts in milliseconds. :func:`score_accounts` is the whole job behind the command:
validate a data directory of new accounts (the input contract, bad rows quarantined), load
the index, score, write the result atomically.

How a new account is scored (docs/score.md gives the same with examples):

* **Normalised as a run does**: :func:`linker.observations.build_observations` with the same
  kinds registry; in a pseudonymised run the values are pseudonymised with the run's key
  (``LINKER_PSEUDONYM_KEY``, checked against the key id the run recorded).
* **Shared values**: a value the new account holds that a flagged member of a flagged
  cluster (one with suspended or reviewed members) also holds, with the run's evidence
  weight; public values (``is_supernode``) and kinds without weight count for nothing. Per
  cluster the evidence is the sum, over kind families, of the heaviest shared value of each
  family (:func:`linker.kinds.families`): ten shared proxy exits are one family of evidence.
* **Signup burst**: the new account signed up within the cluster's burst window of at
  least ``link.burst_min_accounts`` of its flagged members, and that many is at least
  ``link.burst_excess`` times what the cluster's base rate predicts (its members spread
  evenly over the run's signup span). The window is the cluster's own
  (:func:`linker.graph.bursts.burst_window`): the median, over its flagged members, of the
  time to the ``burst_min_accounts``-th nearest other member's signup. A burst counts as one
  more family, weighing the median weight of the values the cluster's members share.
* **Score**: the cluster's score times ``min(1, E / M)``, ``E`` the new account's evidence
  and ``M`` the median of the same measure over the cluster's flagged members (each against
  the other members, counting only the kind families the new accounts' tables can carry):
  a newcomer tied to a ring as strongly as its typical member scores what the ring scores.
* **Action**: the run's ``link.suspend_threshold`` and ``link.review_threshold``; but
  ``none`` for a match that rests on fewer than ``link.min_attachment_families`` families
  and shares no value of a strong kind (the run's own rule for staying in a cluster).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linker import kinds
from linker.cells import neutralise_columns
from linker.engine import RunDirectory
from linker.errors import InputError, OutputError, SettingsError
from linker.graph.bursts import burst_window
from linker.io.atomic import atomic_path, write_text_atomic
from linker.io.validate import ValidationResult, validate_dataset
from linker.observations import build_observations
from linker.pseudonyms import KEY_ENV, Pseudonymiser, recorded_key_id
from linker.reasons import format_codes
from linker.settings import Settings, load_settings

__all__ = [
    "SCORE_COLUMNS",
    "ScoreResult",
    "ScoringIndex",
    "score_accounts",
    "write_scores",
]

logger = logging.getLogger(__name__)

SCORE_COLUMNS: tuple[str, ...] = (
    "account_id",
    "cluster_id",
    "cluster_size",
    "score",
    "action",
    "reason_codes",
    "reasons",
)
"""The columns of ``linker score``'s output, in file order."""

SCORE_DECIMALS = 4
BURST_CODE = "signup_burst"
"""The reason code of a signup inside a cluster's burst (the run's code for bursts)."""
BURST_FAMILY = "signup_burst"
"""The family a burst counts as: timing, independent of every identifier family."""
FLAGGED_ACTIONS = ("suspend", "review")
_ACTION_RANK = {"suspend": 0, "review": 1, "none": 2}
_SEP = "\x1f"
_INPUT_TABLES = ("accounts", "payments", "events")


@dataclass(frozen=True)
class _Clusters:
    """The flagged clusters, by code 0..n-1."""

    ids: np.ndarray  # cluster_id (str)
    size: np.ndarray  # accounts in the cluster (int64)
    score: np.ndarray  # the cluster's score (float64)
    window: np.ndarray  # burst half-width in seconds (0: no burst window)
    floor: np.ndarray  # members within the window that make a burst
    burst_weight: np.ndarray  # what a burst adds to the evidence
    times: list[np.ndarray]  # the flagged members' signup seconds, sorted
    members: list[np.ndarray]  # the flagged members in that order


@dataclass(frozen=True)
class _Members:
    """The flagged members of flagged clusters, by code 0..n-1 (sorted by account id)."""

    ids: np.ndarray  # account_id (str)
    cluster: np.ndarray  # cluster code
    attachment: np.ndarray  # members x families: heaviest value shared with the cluster
    in_burst: np.ndarray  # bool: signed up in its cluster's burst


@dataclass(frozen=True)
class _Values:
    """The linkable values the flagged members hold, with their holders."""

    keys: pd.Index  # "kind\\x1fvalue"
    kind: np.ndarray  # kind name (str)
    value: np.ndarray  # the value (str)
    family: np.ndarray  # family code (index into families)
    weight: np.ndarray  # the run's evidence weight
    strong: np.ndarray  # bool: a value of a strong kind (link.strong_kinds)
    pairs: np.ndarray  # (value, cluster) pairs of value v: pairs[v]:pairs[v + 1]
    pair_cluster: np.ndarray  # per pair: the cluster
    pair_start: np.ndarray  # per pair: its holders are holders[start:start + count]
    pair_count: np.ndarray  # per pair: flagged members of the cluster holding the value
    holders: np.ndarray  # member codes, sorted by (value, cluster, member)


class ScoringIndex:
    """What scoring new accounts needs from a finished run, loaded once.

    Build it with :meth:`load`; :meth:`score` scores any number of batches. See the module
    docstring for the rule.

    Attributes
    ----------
    run_dir : Path
        The run it was loaded from.
    settings : Settings
        The run's settings (from its manifest).
    pseudonymiser : Pseudonymiser or None
        The run's pseudonymiser, when the run was pseudonymised.
    families : tuple of str
        The kind families, then ``signup_burst`` (the attachment matrix's columns).
    """

    def __init__(
        self,
        run_dir: Path,
        settings: Settings,
        pseudonymiser: Pseudonymiser | None,
        clusters: _Clusters,
        members: _Members,
        values: _Values,
        families: tuple[str, ...],
    ) -> None:
        self.run_dir = run_dir
        self.settings = settings
        self.pseudonymiser = pseudonymiser
        self.families = families
        self._clusters = clusters
        self._members = members
        self._values = values
        pair_of_holder = np.repeat(np.arange(len(values.pair_count)), values.pair_count)
        # Sorted, since the holders are sorted by (value, cluster, member) like the pairs.
        self._holder_keys = pair_of_holder * len(members.ids) + values.holders

    def __repr__(self) -> str:
        return (
            f"ScoringIndex({str(self.run_dir)!r}: {len(self._clusters.ids)} flagged clusters, "
            f"{len(self._members.ids)} members, {len(self._values.keys)} values)"
        )

    @property
    def cluster_ids(self) -> list[str]:
        """The flagged clusters' ids."""
        return [str(c) for c in self._clusters.ids]

    def burst_windows(self) -> dict[str, float]:
        """Each flagged cluster's burst half-width, in minutes (derived from its members)."""
        return {
            str(c): float(w) / 60.0
            for c, w in zip(self._clusters.ids, self._clusters.window, strict=True)
        }

    @classmethod
    def load(
        cls, run_dir: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
    ) -> ScoringIndex:
        """Load the index of the finished run in ``run_dir``.

        Parameters
        ----------
        run_dir : str or Path
            A finished run directory (``linker run``'s).
        environ : mapping, optional
            Where the pseudonym key is read from (default ``os.environ``), for a
            pseudonymised run.

        Returns
        -------
        ScoringIndex

        Raises
        ------
        InputError
            When ``run_dir`` is not a finished run, an artefact is missing, or the run was
            pseudonymised with another key than the environment's.
        SettingsError
            When the run was pseudonymised and ``LINKER_PSEUDONYM_KEY`` is unset or short.

        Notes
        -----
        Reads the scores, clusters and accounts tables in full and the observations and
        identifiers of the flagged members' values only: O(accounts + m log m) for the
        ``m`` observations of flagged members.

        Examples
        --------
        >>> index = ScoringIndex.load("takedown.run")  # doctest: +SKIP
        >>> index.score({"accounts": new_accounts})  # doctest: +SKIP
        """
        store = RunDirectory.open(run_dir)
        manifest = store.read_json("manifest")
        settings = _run_settings(manifest, store.root)
        pseudonymiser = _run_pseudonymiser(manifest, settings, store.root, environ)
        clusters = store.read(
            "clusters", columns=["cluster_id", "size", "score", "n_suspend", "n_review"]
        )
        clusters = clusters[(clusters["n_suspend"] + clusters["n_review"]).to_numpy() > 0]
        clusters = clusters.sort_values("cluster_id", kind="stable").reset_index(drop=True)
        cluster_ids = clusters["cluster_id"].astype(str).to_numpy(dtype=object)
        scores = store.read("scores", columns=["account_id", "cluster_id", "action"])
        member_rows = scores["cluster_id"].isin(cluster_ids).fillna(False).to_numpy(bool) & scores[
            "action"
        ].isin(FLAGGED_ACTIONS).fillna(False).to_numpy(bool)
        members = scores[member_rows].sort_values("account_id", kind="stable")
        member_ids = members["account_id"].astype(str).to_numpy(dtype=object)
        member_cluster = pd.Index(cluster_ids).get_indexer(members["cluster_id"].astype(str))
        values = _member_values(store, member_ids)
        accounts = store.read("accounts", columns=["account_id", "created_at"])
        created = _seconds(accounts["created_at"])
        span = float(created.max() - created.min()) if len(created) else 0.0
        at = pd.Index(accounts["account_id"].astype(str)).get_indexer(pd.Index(member_ids))
        member_times = created[at] if len(at) else np.zeros(0)
        families = (*sorted(set(kinds.families().values())), BURST_FAMILY)
        built = _build(
            clusters, member_ids, member_cluster, member_times, values, families, span, settings
        )
        index = cls(store.root, settings, pseudonymiser, *built, families)
        logger.info("loaded %r", index)
        return index

    def score(self, tables: Mapping[str, pd.DataFrame] | pd.DataFrame) -> pd.DataFrame:
        """Score new accounts.

        Parameters
        ----------
        tables : mapping of str to pandas.DataFrame, or pandas.DataFrame
            Validated tables (as :func:`linker.io.validate.validate_dataset` returns them):
            ``accounts`` required, ``payments`` and ``events`` optional; or the accounts
            table alone.

        Returns
        -------
        pandas.DataFrame
            :data:`SCORE_COLUMNS`, one row per new account, ordered by action (suspend,
            review, none), score descending (rounded), cluster id (none last), account id.

        Notes
        -----
        Normalising the batch is O(rows); matching is one hash lookup per observation plus
        one binary search per account and flagged cluster; reasons are written for matched
        accounts only.
        """
        frames = {"accounts": tables} if isinstance(tables, pd.DataFrame) else dict(tables)
        frames = {k: v for k, v in frames.items() if k in _INPUT_TABLES}
        if "accounts" not in frames:
            raise InputError("scoring new accounts needs an accounts table")
        accounts = frames["accounts"]
        ids = accounts["account_id"].astype(str).to_numpy(dtype=object)
        created = _seconds(accounts["created_at"])
        observations = build_observations(frames)
        if self.pseudonymiser is not None:
            observations = self.pseudonymiser.observations(observations)
        ties = self._ties(observations, ids)
        bursts = self._bursts(ids, created)
        reference = self._reference(_carried_families(frames, self.families))
        best = _best_matches(
            ties,
            bursts,
            self._clusters,
            reference,
            self.families.index(BURST_FAMILY),
            self.settings.link.min_attachment_families,
        )
        return self._rows(ids, best, ties, bursts)

    def _ties(self, observations: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
        """Per (new account, value, flagged cluster): how many of the cluster's flagged
        members hold the value (the account itself left out, when it is one of them), and
        where they are in ``holders``."""
        v = self._values
        keys = observations["kind"].astype(str) + _SEP + observations["value"].astype(str)
        found = v.keys.get_indexer(pd.Index(keys))
        hit = np.flatnonzero(found >= 0)
        account = pd.Index(ids).get_indexer(observations["account_id"].astype(str).to_numpy()[hit])
        value = found[hit]
        n = v.pairs[value + 1] - v.pairs[value]
        first = np.repeat(v.pairs[value] - np.cumsum(n) + n, n)
        pair = first + np.arange(int(n.sum()), dtype=np.int64)
        account, value = np.repeat(account, n), np.repeat(value, n)
        me = self._self_codes(ids)[account]
        # The account itself, when it is a flagged member (re-scoring a known account).
        composite = pair * len(self._members.ids) + me
        at = np.searchsorted(self._holder_keys, composite)
        is_self = (me >= 0) & (at < len(self._holder_keys))
        is_self &= self._holder_keys[np.minimum(at, len(self._holder_keys) - 1)] == composite
        frame = pd.DataFrame(
            {
                "account": account,
                "value": value,
                "cluster": v.pair_cluster[pair],
                "n": v.pair_count[pair] - is_self,
                "start": v.pair_start[pair],
                "self": is_self,
                "family": v.family[value],
                "weight": v.weight[value],
                "strong": v.strong[value],
            }
        )
        return frame[frame["n"].to_numpy() > 0].reset_index(drop=True)

    def _self_codes(self, ids: np.ndarray) -> np.ndarray:
        """Each account's member code (-1 for an account that is not a flagged member)."""
        return np.asarray(pd.Index(self._members.ids).get_indexer(ids), dtype=np.int64)

    def _bursts(self, ids: np.ndarray, created: np.ndarray) -> pd.DataFrame:
        """Per (new account, flagged cluster) in the cluster's burst: the members within its
        window."""
        c = self._clusters
        me = self._self_codes(ids)
        parts = []
        for code in range(len(c.ids)):
            if c.window[code] <= 0:
                continue
            times = c.times[code]
            lo = np.searchsorted(times, created - c.window[code], side="left")
            hi = np.searchsorted(times, created + c.window[code], side="right")
            is_self = (me >= 0) & (self._members.cluster[np.maximum(me, 0)] == code)
            count = hi - lo - is_self  # the account itself, when it is one of the members
            inside = np.flatnonzero(count >= c.floor[code])
            parts.append(
                pd.DataFrame(
                    {
                        "account": inside,
                        "cluster": code,
                        "burst": count[inside],
                        "lo": lo[inside],
                        "hi": hi[inside],
                    }
                )
            )
        if not parts:
            return pd.DataFrame({k: pd.Series(dtype=np.int64) for k in _BURST_COLUMNS})
        return pd.concat(parts, ignore_index=True)

    def _reference(self, carried: np.ndarray) -> np.ndarray:
        """Per flagged cluster: the median evidence of its flagged members against the rest of
        it, over the ``carried`` families (bool per family)."""
        m, c = self._members, self._clusters
        own = m.attachment[:, carried].sum(axis=1)
        reference = np.zeros(len(c.ids), dtype=np.float64)
        for code in range(len(c.ids)):
            mine = own[m.cluster == code]
            reference[code] = float(np.median(mine)) if len(mine) else 0.0
        return reference

    def _rows(
        self, ids: np.ndarray, best: pd.DataFrame, ties: pd.DataFrame, bursts: pd.DataFrame
    ) -> pd.DataFrame:
        """The output rows: every new account, matched or not, in the output order."""
        n = len(ids)
        c = self._clusters
        cluster_id = np.full(n, None, dtype=object)
        size = np.zeros(n, dtype=np.int64)
        score = np.zeros(n, dtype=np.float64)
        action = np.full(n, "none", dtype=object)
        codes = np.full(n, "", dtype=object)
        reasons = np.full(n, "", dtype=object)
        thresholds = (self.settings.link.suspend_threshold, self.settings.link.review_threshold)
        cited, pairs = self._cited(best, ties, ids)
        me = self._self_codes(ids)
        burst_of = {
            (int(a), int(k)): (int(b), int(lo), int(hi))
            for a, k, b, lo, hi in bursts[list(_BURST_COLUMNS)].itertuples(index=False)
        }
        for row in best.itertuples(index=False):
            a, code = int(row.account), int(row.cluster)  # type: ignore[arg-type]
            cluster_id[a], size[a] = c.ids[code], int(c.size[code])
            score[a] = round(float(row.score), SCORE_DECIMALS)  # type: ignore[arg-type]
            action[a] = _action(score[a], bool(row.corroborated), thresholds)
            found = pairs.get(a, [])
            burst = burst_of.get((a, code))
            if burst is not None:
                found = [*found, (BURST_CODE, burst[0])]
            codes[a] = format_codes(found)
            reasons[a] = self._explain(cited.get(a, []), burst, code, row, int(me[a]))
        frame = pd.DataFrame(
            {
                "account_id": pd.array(ids, dtype="string"),
                "cluster_id": pd.array(cluster_id, dtype="string"),
                "cluster_size": size,
                "score": score,
                "action": pd.array(action, dtype="string"),
                "reason_codes": pd.array(codes, dtype="string"),
                "reasons": pd.array(reasons, dtype="string"),
            }
        )
        return _ordered(frame)

    def _cited(
        self, best: pd.DataFrame, ties: pd.DataFrame, ids: np.ndarray
    ) -> tuple[dict[int, list[tuple[int, int, list[str]]]], dict[int, list[tuple[str, int]]]]:
        """Per matched account, for its best cluster: the values its reason cites (value,
        members holding it, the first of them by id) and its ``shared_<kind>`` codes with
        their counts, strongest value first."""
        v, m = self._values, self._members
        limit = self.settings.link.max_reasons
        sel = ties.merge(best[["account", "cluster"]], on=["account", "cluster"])
        sel = sel.sort_values(
            ["account", "weight", "n", "value"], ascending=[True, False, False, True]
        )
        sel["rank"] = sel.groupby("account").cumcount()
        sel["kind"] = v.kind[sel["value"].to_numpy(dtype=np.int64)]
        per_kind = sel.groupby(["account", "kind"], sort=False).agg(
            n=("n", "max"), first=("rank", "min")
        )
        per_kind = per_kind.reset_index().sort_values(["account", "first"])
        pairs: dict[int, list[tuple[str, int]]] = {}
        for a, kind, count in zip(
            per_kind["account"], per_kind["kind"], per_kind["n"], strict=True
        ):
            pairs.setdefault(int(a), []).append((kinds.kind(str(kind)).reason_code, int(count)))
        shown = sel[sel["rank"].to_numpy() < limit]
        me = self._self_codes(ids)
        cited: dict[int, list[tuple[int, int, list[str]]]] = {}
        for a, j, count, start, own in zip(
            shown["account"], shown["value"], shown["n"], shown["start"], shown["self"], strict=True
        ):
            end = int(start) + min(int(count) + int(own), limit + 1)
            codes = v.holders[int(start) : end]
            held = [str(m.ids[x]) for x in codes if x != me[int(a)]][:limit]
            cited.setdefault(int(a), []).append((int(j), int(count), held))
        return cited, pairs

    def _explain(
        self,
        cited: list[tuple[int, int, list[str]]],
        burst: tuple[int, int, int] | None,
        code: int,
        row: Any,
        me: int,
    ) -> str:
        """The reason text of one matched account."""
        v, m, c = self._values, self._members, self._clusters
        limit = self.settings.link.max_reasons
        text = []
        if cited:
            parts = [
                f"{kinds.reason_label(str(v.kind[j]))} {v.value[j]} with "
                f"{_named(held, count, limit)}"
                for j, count, held in cited
            ]
            text.append("shares " + ", ".join(parts) + f" of cluster {c.ids[code]}")
        if burst is not None:
            count, lo, hi = burst
            near = sorted(str(m.ids[x]) for x in c.members[code][lo:hi] if x != me)
            text.append(
                f"signed up within {c.window[code] / 60:.0f} minutes of "
                f"{_named(near, count, limit)} (the burst window of cluster {c.ids[code]}, "
                "from its members' signups)"
            )
        text.append(
            f"score {row.score:.{SCORE_DECIMALS}f} = cluster {c.ids[code]} score "
            f"{c.score[code]:.{SCORE_DECIMALS}f} x min(1, evidence {row.evidence:.2f} / "
            f"its members' median {row.reference:.2f})"
        )
        if not row.corroborated:
            text.append(
                f"evidence from {int(row.families)} family only and no strong kind: not acted on"
            )
        return "; ".join(text)


_BURST_COLUMNS = ("account", "cluster", "burst", "lo", "hi")


def _named(accounts: list[str], count: int, limit: int) -> str:
    """``3 members (a, b, c)`` or ``12 members (a, b, c, +9 more)``: ``count`` members, the
    first ``limit`` of ``accounts`` named."""
    shown = ", ".join(accounts[:limit])
    more = f", +{count - limit} more" if count > limit else ""
    noun = "member" if count == 1 else "members"
    return f"{count} {noun} ({shown}{more})"


def _action(score: float, corroborated: bool, thresholds: tuple[float, float]) -> str:
    suspend, review = thresholds
    if not corroborated:
        return "none"
    if score >= suspend:
        return "suspend"
    return "review" if score >= review else "none"


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """The output order: action, score descending, cluster id (none last), account id
    (strings by code point)."""
    rank = frame["action"].map(_ACTION_RANK).to_numpy(dtype=np.int64)
    cluster_codes, _ = pd.factorize(frame["cluster_id"].astype(object), sort=True)
    cluster = np.where(cluster_codes < 0, np.iinfo(np.int64).max, cluster_codes)
    account = pd.factorize(frame["account_id"].astype(object), sort=True)[0]
    order = np.lexsort((account, cluster, -frame["score"].to_numpy(dtype=np.float64), rank))
    return frame.iloc[order].reset_index(drop=True)


def _best_matches(
    ties: pd.DataFrame,
    bursts: pd.DataFrame,
    clusters: _Clusters,
    reference: np.ndarray,
    burst_family: int,
    min_families: int,
) -> pd.DataFrame:
    """Per matched new account, its best flagged cluster: ``account``, ``cluster``,
    ``score``, ``evidence``, ``reference``, ``families``, ``corroborated``.

    The evidence is the sum over families of the heaviest shared value of each (a burst is
    one more family); the best cluster has the highest score, then evidence, then the
    smallest cluster id."""
    per_family = (
        ties.groupby(["account", "cluster", "family"], sort=False)
        .agg(weight=("weight", "max"), strong=("strong", "any"))
        .reset_index()
    )
    burst = bursts[["account", "cluster"]].copy()
    burst["family"] = burst_family
    burst["weight"] = clusters.burst_weight[burst["cluster"].to_numpy(dtype=np.int64)]
    burst["strong"] = False
    per_family = pd.concat([per_family, burst], ignore_index=True)
    if per_family.empty:
        return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in _BEST_COLUMNS})
    grouped = per_family.groupby(["account", "cluster"], sort=True)
    pairs = grouped.agg(
        evidence=("weight", "sum"), families=("family", "nunique"), strong=("strong", "any")
    ).reset_index()
    code = pairs["cluster"].to_numpy(dtype=np.int64)
    evidence = pairs["evidence"].to_numpy(dtype=np.float64)
    pairs["reference"] = reference[code]
    ratio = np.ones(len(pairs), dtype=np.float64)
    has = reference[code] > 0
    ratio[has] = np.minimum(1.0, evidence[has] / reference[code][has])
    pairs["score"] = clusters.score[code] * ratio
    pairs["corroborated"] = pairs["strong"].to_numpy(bool) | (
        pairs["families"].to_numpy() >= min_families
    )
    pairs = pairs.sort_values(
        ["account", "score", "evidence", "cluster"], ascending=[True, False, False, True]
    )
    return pairs.drop_duplicates("account", keep="first").reset_index(drop=True)


_BEST_COLUMNS = (
    "account",
    "cluster",
    "score",
    "evidence",
    "reference",
    "families",
    "corroborated",
)


def _carried_families(frames: Mapping[str, pd.DataFrame], families: tuple[str, ...]) -> np.ndarray:
    """Which families the given tables can carry: those of the kinds with a source column
    in them, and the burst (every account has a signup time)."""
    carried = {BURST_FAMILY}
    for k in kinds.all_kinds():
        if any(s.table in frames and s.column in frames[s.table].columns for s in k.sources):
            carried.add(k.family)
    return np.array([f in carried for f in families], dtype=bool)


def _seconds(column: pd.Series) -> np.ndarray:
    """Timestamps as float seconds since the epoch (UTC)."""
    stamps = pd.to_datetime(column, utc=True).astype(pd.DatetimeTZDtype(unit="us", tz="UTC"))
    micros = np.asarray(stamps.to_numpy(dtype="datetime64[us]").astype(np.int64))
    return micros.astype(np.float64) / 1e6


def _run_settings(manifest: Mapping[str, Any], root: Path) -> Settings:
    """The settings the run recorded in its manifest."""
    recorded = manifest.get("settings")
    if not isinstance(recorded, Mapping):
        raise InputError(f"{root}: its manifest records no settings; run `linker run` again")
    try:
        return load_settings(overrides=dict(recorded))
    except SettingsError as exc:
        raise InputError(
            f"{root}: its manifest's settings are not this version's ({exc.problems[0]}); "
            "run `linker run` again"
        ) from None


def _run_pseudonymiser(
    manifest: Mapping[str, Any],
    settings: Settings,
    root: Path,
    environ: Mapping[str, str] | None,
) -> Pseudonymiser | None:
    """The run's pseudonymiser (``None`` for a run on raw values).

    Raises SettingsError when the key is missing, InputError when it is not the run's key.
    """
    recorded = recorded_key_id(manifest)
    if not settings.run.pseudonymise and recorded is None:
        return None
    pseudonymiser = Pseudonymiser.from_environment(environ)
    if recorded is not None and pseudonymiser.key_id != recorded:
        raise InputError(
            f"{root}: the run was pseudonymised with another key (key id {recorded}) than "
            f"the one in {KEY_ENV}; new accounts cannot be matched against it"
        )
    return pseudonymiser


def _member_values(store: RunDirectory, member_ids: np.ndarray) -> pd.DataFrame:
    """The linkable values the flagged members hold: ``account_id``, ``kind``, ``value``,
    ``weight`` (positive weight, not public)."""
    empty = pd.DataFrame(
        {
            "account_id": pd.Series(dtype=object),
            "kind": pd.Series(dtype=object),
            "value": pd.Series(dtype=object),
            "weight": pd.Series(dtype=np.float64),
        }
    )
    if not len(member_ids):
        return empty
    observations = store.read(
        "observations",
        columns=["account_id", "kind", "value"],
        filters=[("account_id", "in", [str(x) for x in member_ids])],
    )
    identifiers = store.read("identifiers", columns=["kind", "value", "weight", "is_supernode"])
    linkable = identifiers[
        (identifiers["weight"].to_numpy(np.float64) > 0)
        & ~identifiers["is_supernode"].to_numpy(bool)
    ]
    left = pa.Table.from_pandas(observations, preserve_index=False)
    right = pa.Table.from_pandas(linkable[["kind", "value", "weight"]], preserve_index=False)
    joined = left.join(right, keys=["kind", "value"], join_type="inner")
    if joined.num_rows == 0:
        return empty
    return pd.DataFrame(
        {
            "account_id": pc.cast(joined["account_id"], pa.string()).to_numpy(zero_copy_only=False),
            "kind": pc.cast(joined["kind"], pa.string()).to_numpy(zero_copy_only=False),
            "value": pc.cast(joined["value"], pa.string()).to_numpy(zero_copy_only=False),
            "weight": joined["weight"].to_numpy(),
        }
    )


def _build(
    clusters: pd.DataFrame,
    member_ids: np.ndarray,
    member_cluster: np.ndarray,
    member_times: np.ndarray,
    held: pd.DataFrame,
    families: tuple[str, ...],
    span: float,
    settings: Settings,
) -> tuple[_Clusters, _Members, _Values]:
    """The index's tables from the run's flagged clusters, members and their values."""
    values = _values(held, member_ids, member_cluster, families, settings)
    n_clusters = len(clusters)
    link = settings.link
    windows = np.zeros(n_clusters, dtype=np.float64)
    floors = np.zeros(n_clusters, dtype=np.float64)
    times: list[np.ndarray] = []
    ordered: list[np.ndarray] = []
    in_burst = np.zeros(len(member_ids), dtype=bool)
    for code in range(n_clusters):
        mine = np.flatnonzero(member_cluster == code)
        order = mine[np.argsort(member_times[mine], kind="stable")]
        ordered.append(order)
        times.append(member_times[order])
        if len(mine) <= link.burst_min_accounts:
            continue  # too few members to hold burst_min_accounts others
        windows[code] = burst_window(member_times[mine], link.burst_min_accounts)
        expected = len(mine) * 2.0 * windows[code] / max(span, 2.0 * windows[code], 1.0)
        floors[code] = max(float(link.burst_min_accounts), link.burst_excess * expected)
        t = times[code]
        others = (
            np.searchsorted(t, t + windows[code], side="right")
            - np.searchsorted(t, t - windows[code], side="left")
            - 1
        )
        in_burst[order] = others >= floors[code]
    attachment, burst_weight = _attachment(values, member_cluster, n_clusters, families)
    attachment[:, families.index(BURST_FAMILY)] = burst_weight[member_cluster] * in_burst
    built_clusters = _Clusters(
        ids=clusters["cluster_id"].astype(str).to_numpy(dtype=object),
        size=clusters["size"].to_numpy(dtype=np.int64),
        score=clusters["score"].to_numpy(dtype=np.float64),
        window=windows,
        floor=floors,
        burst_weight=burst_weight,
        times=times,
        members=ordered,
    )
    members = _Members(member_ids, member_cluster, attachment, in_burst)
    return built_clusters, members, values


def _values(
    held: pd.DataFrame,
    member_ids: np.ndarray,
    member_cluster: np.ndarray,
    families: tuple[str, ...],
    settings: Settings,
) -> _Values:
    """The distinct linkable values (sorted by key) with their holders, grouped by cluster."""
    family_of = kinds.families()
    held = held[held["kind"].isin(list(family_of)).to_numpy(bool)]
    keys = (held["kind"].astype(str) + _SEP + held["value"].astype(str)).to_numpy(dtype=object)
    codes, uniques = pd.factorize(keys, sort=True)
    codes = np.asarray(codes, dtype=np.int64)
    member = np.asarray(
        pd.Index(member_ids).get_indexer(held["account_id"].to_numpy(dtype=object)), np.int64
    )
    cluster = member_cluster[member] if len(member) else np.zeros(0, np.int64)
    order = np.lexsort((member, cluster, codes))
    codes, cluster, member = codes[order], cluster[order], member[order]
    firsts = order[np.unique(codes, return_index=True)[1]]
    new_pair = np.ones(len(codes), dtype=bool)
    new_pair[1:] = (codes[1:] != codes[:-1]) | (cluster[1:] != cluster[:-1])
    pair_start = np.flatnonzero(new_pair)
    pair_value = codes[pair_start]
    kind = held["kind"].to_numpy(dtype=object)[firsts]
    family_code = {f: i for i, f in enumerate(families)}
    return _Values(
        keys=pd.Index(uniques),
        kind=kind,
        value=held["value"].to_numpy(dtype=object)[firsts],
        family=np.array([family_code[family_of[k]] for k in kind], dtype=np.int64),
        weight=held["weight"].to_numpy(dtype=np.float64)[firsts],
        strong=np.isin(kind, list(settings.link.strong_kinds)),
        pairs=np.concatenate([[0], np.cumsum(np.bincount(pair_value, minlength=len(uniques)))]),
        pair_cluster=cluster[pair_start],
        pair_start=pair_start,
        pair_count=np.diff(np.append(pair_start, len(codes))),
        holders=member,
    )


def _attachment(
    values: _Values, member_cluster: np.ndarray, n_clusters: int, families: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Per member and family, the heaviest value it shares with another flagged member of
    its cluster; per cluster, the median weight of the values its members share (what a
    burst weighs)."""
    value_of_pair = np.repeat(np.arange(len(values.keys)), np.diff(values.pairs))
    shared_pairs = np.flatnonzero(values.pair_count >= 2)
    counts = values.pair_count[shared_pairs]
    rows = np.repeat(values.pair_start[shared_pairs] - np.cumsum(counts) + counts, counts)
    rows = rows + np.arange(int(counts.sum()), dtype=np.int64)
    value = np.repeat(value_of_pair[shared_pairs], counts)
    attachment = np.zeros((len(member_cluster), len(families)), dtype=np.float64)
    np.maximum.at(attachment, (values.holders[rows], values.family[value]), values.weight[value])
    burst_weight = np.zeros(n_clusters, dtype=np.float64)
    pair_weight = values.weight[value_of_pair[shared_pairs]]
    pair_cluster = values.pair_cluster[shared_pairs]
    for code in np.unique(pair_cluster):
        burst_weight[code] = float(np.median(pair_weight[pair_cluster == code]))
    return attachment, burst_weight


@dataclass(frozen=True)
class ScoreResult:
    """What :func:`score_accounts` did.

    Attributes
    ----------
    scores : pandas.DataFrame
        :data:`SCORE_COLUMNS`, one row per accepted new account, in output order.
    validation : ValidationResult
        What validating the new accounts found (rows read, accepted, rejected; problems).
    run_dir : Path
        The run scored against.
    out : Path or None
        Where the scores were written.
    load_seconds, score_seconds : float
        Time to load the run's index; to normalise, match and explain the batch.
    """

    scores: pd.DataFrame
    validation: ValidationResult
    run_dir: Path
    out: Path | None
    load_seconds: float
    score_seconds: float

    @property
    def by_action(self) -> dict[str, int]:
        """Accounts per action."""
        counts = self.scores["action"].value_counts()
        return {a: int(counts.get(a, 0)) for a in ("suspend", "review", "none")}

    def render(self) -> str:
        """The summary ``linker score`` prints."""
        lines = [
            f"{name}: {c.read:,} rows read, {c.accepted:,} accepted, {c.rejected:,} rejected"
            for name, c in self.validation.summary.items()
        ]
        counts = self.by_action
        lines.append(
            f"scored {len(self.scores):,} new accounts against {self.run_dir}: "
            f"suspend {counts['suspend']:,}, review {counts['review']:,}, none {counts['none']:,}"
        )
        lines.append(
            f"loaded the run in {self.load_seconds:.2f} s, scored in {self.score_seconds:.3f} s"
        )
        if self.out is not None:
            lines.append(f"wrote {self.out}")
        return "\n".join(lines)


def score_accounts(
    new_accounts: str | os.PathLike[str],
    against: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    on_error: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ScoreResult:
    """Validate a data directory of new accounts and score them against a finished run.

    Parameters
    ----------
    new_accounts : str or Path
        A data directory in the input contract (docs/contract.md): ``accounts`` required,
        ``payments`` and ``events`` optional (a ``labels`` table is ignored).
    against : str or Path
        A finished run directory.
    out : str or Path, optional
        Write the scores there as CSV, atomically; rejected rows go to
        ``OUT.quarantine/<table>.csv``.
    on_error : {"quarantine", "fail"}, optional
        As ``linker validate`` (default: the run's ``ingest.on_error``).
    environ : mapping, optional
        Where a pseudonymised run's key is read from (default ``os.environ``).

    Returns
    -------
    ScoreResult

    Raises
    ------
    InputError
        For a file-level problem of the new data, rejected rows with ``on_error='fail'``,
        or a run directory that is not a finished run (one line each).
    OutputError
        When ``out`` is an artefact of the run directory or lies in one of its folders.

    Notes
    -----
    Validation O(rows), loading O(run's accounts + flagged members' observations), scoring
    as :meth:`ScoringIndex.score`.
    """
    if out is not None and RunDirectory(against).owns(out):
        raise OutputError(f"{out}: lies in the run directory {against}; write the scores elsewhere")
    began = time.perf_counter()
    index = ScoringIndex.load(against, environ=environ)
    loaded = time.perf_counter()
    ingest = index.settings.ingest
    result = validate_dataset(
        Path(new_accounts),
        on_error=on_error or ingest.on_error,  # type: ignore[arg-type]
        observations=False,
        settings=ingest,
    )
    result = _input_tables_only(result)
    for problem in result.problems:
        logger.warning("%s", problem)
    started = time.perf_counter()
    scores = index.score(result.tables)
    scored = time.perf_counter()
    written = None
    if out is not None:
        written = write_scores(scores, out)
        _write_quarantine(result, Path(out))
    return ScoreResult(scores, result, index.run_dir, written, loaded - began, scored - started)


def _input_tables_only(result: ValidationResult) -> ValidationResult:
    """``result`` without a labels table (ground truth for ``linker evaluate`` only)."""
    return dataclasses.replace(
        result,
        tables={k: v for k, v in result.tables.items() if k in _INPUT_TABLES},
        summary={k: v for k, v in result.summary.items() if k in _INPUT_TABLES},
        problems=[p for p in result.problems if p.table in _INPUT_TABLES],
        quarantine={k: v for k, v in result.quarantine.items() if k in _INPUT_TABLES},
        files={k: v for k, v in result.files.items() if k in _INPUT_TABLES},
    )


def _write_quarantine(result: ValidationResult, out: Path) -> None:
    """The rejected rows of each table, beside the output (``OUT.quarantine/<table>.csv``)."""
    folder = out.with_name(out.name + ".quarantine")
    for name in _INPUT_TABLES:
        target = folder / f"{name}.csv"
        frame = result.quarantine.get(name)
        if frame is None:
            target.unlink(missing_ok=True)
            continue
        text = neutralise_columns(frame).to_csv(index=False, lineterminator="\n")
        write_text_atomic(target, text)
        result.quarantine_paths[name] = target


def write_scores(frame: pd.DataFrame, out: str | os.PathLike[str]) -> Path:
    """Write scores from :meth:`ScoringIndex.score` as CSV (UTF-8, ``\\n``, score with 4
    decimals), atomically; text cells a spreadsheet would run as formulas are neutralised
    (:mod:`linker.cells`).

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    text = neutralise_columns(
        frame[list(SCORE_COLUMNS)],
        ("account_id", "cluster_id", "action", "reason_codes", "reasons"),
    )
    text["score"] = frame["score"].map(lambda x: f"{x:.{SCORE_DECIMALS}f}")
    with atomic_path(out) as tmp:
        text.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
    logger.info("wrote %s (%d rows)", out, len(frame))
    return out
