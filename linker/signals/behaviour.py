"""Behaviour signals: how a cluster's accounts use the API (docs/behaviour.md).

Output-heavy traffic, a pivot to a newly released model, lockstep with other members and
waking together after dormancy. Each is a per-account indicator in [0, 1]; a cluster's value
is its members' mean.

The ``behaviour`` group scores them with three guards, because plenty of innocent groups
show one behaviour: a group behind its own network (a family, a company, a class) gets no
behaviour credit (the organisation guard: behaving alike is its routine); synchrony and
waking count only in proportion to the cluster's ring-like traffic; and an account earns
full credit only when it shows at least two of the behaviours itself, half with one. An
account is never credited with a behaviour it does not show, nor penalised for one: it may be
held in reserve, or idle that week.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import pandas as pd

from linker.graph.bursts import window_counts
from linker.signals.base import (
    EvidenceInputs,
    GroupTerms,
    Signal,
    SignalGroup,
    SignalValues,
    organisation_guard,
)

__all__ = [
    "BUILT_IN",
    "AgedWake",
    "BehaviourGroup",
    "BehaviourSignal",
    "Lockstep",
    "ModelPivot",
    "OutputHeavy",
]

logger = logging.getLogger(__name__)


class BehaviourSignal(Signal):
    """A behaviour signal: its account value counts as corroboration from ``support_at``."""

    group = "behaviour"
    level = "account"
    support_at: ClassVar[float] = 0.5
    """An account 'shows' the behaviour when its value reaches this."""
    traffic: ClassVar[bool] = False
    """The signal measures ring-like traffic itself (it gates the synchrony signals)."""
    gated: ClassVar[bool] = False
    """The signal counts only in proportion to the cluster's ring-like traffic."""

    def _frame(self, inputs: EvidenceInputs) -> pd.DataFrame:
        if inputs.behaviour is None:
            raise ValueError(f"signal {self.name} needs behaviour features")
        return inputs.behaviour


def _percent(values: pd.Series) -> pd.Series:
    return values.fillna(0.0).map(lambda v: f"{v:.0%}")


class Lockstep(BehaviourSignal):
    """Synchronised with other members of its own cluster (a controller's clock)."""

    name = "lockstep"
    default_weight = 1.0
    support_at = 1.0
    gated = True
    description = "synchronised members of its own cluster / min_lockstep_partners, capped at 1"
    count_means = "members of its cluster it runs in lockstep with"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        pairs = inputs.lockstep
        n_acc, cluster_of = inputs.n_accounts, inputs.cluster_of
        if pairs is None or not len(pairs):
            pairs = pd.DataFrame({"a": [], "b": [], "jaccard": [], "bucket_minutes": []})
        a = pairs["a"].to_numpy(np.int64)
        b = pairs["b"].to_numpy(np.int64)
        same = (cluster_of[a] >= 0) & (cluster_of[a] == cluster_of[b])
        ends = np.r_[a[same], b[same]]
        jac = np.r_[pairs["jaccard"].to_numpy()[same], pairs["jaccard"].to_numpy()[same]]
        partners = np.bincount(ends, minlength=n_acc).astype(np.int64)
        mean_j = np.bincount(ends, weights=jac, minlength=n_acc) / np.maximum(partners, 1)
        width_of = np.zeros(n_acc, dtype=np.int64)
        if same.any():
            # The most frequent width among the account's partners (cited in the reason).
            widths = pairs["bucket_minutes"].to_numpy()[same].astype(np.int64)
            frame = pd.DataFrame({"row": ends, "w": np.r_[widths, widths]})
            counted = frame.value_counts().reset_index()
            counted = counted.sort_values(["row", "count", "w"], ascending=[True, False, True])
            first = counted.drop_duplicates("row")
            width_of[first["row"].to_numpy()] = first["w"].to_numpy()
        minimum = inputs.settings.behaviour.min_lockstep_partners
        account = np.clip(partners / minimum, 0.0, 1.0)
        return SignalValues(
            inputs.cluster_mean(account),
            account=account,
            account_detail={
                "lockstep_partners": partners,
                "lockstep_jaccard": mean_j,
                "lockstep_minutes": width_of,
            },
        )

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        share = float(values.cluster[cluster])
        return f"{share:.0%} in lockstep" if share > 0 else ""

    def account_reason(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        d = values.account_detail
        partners = pd.Series(d["lockstep_partners"][rows])
        text = (
            "in lockstep with "
            + partners.astype(str)
            + " cluster members (Jaccard "
            + pd.Series(d["lockstep_jaccard"][rows]).map(lambda v: f"{v:.2f}")
            + " over "
            + pd.Series(d["lockstep_minutes"][rows]).astype(str)
            + "-min buckets)"
        )
        return np.where(partners.to_numpy() >= 1, text.to_numpy(dtype=object), "").astype(object)

    def account_count(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        return np.asarray(values.account_detail["lockstep_partners"][rows], dtype=np.int64)


def _population_ratio(ratios: np.ndarray, quantile: float) -> tuple[float, float]:
    """The population's median output/input ratio and the ratio at ``quantile`` (at least a
    tenth above the median, so that a population of identical users divides by no zero)."""
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    if len(finite) == 0:
        return 1.0, 1.1
    median = float(np.median(finite))
    return median, max(float(np.quantile(finite, quantile)), median * 1.1)


class OutputHeavy(BehaviourSignal):
    """Much more output than input: answers harvested for training."""

    name = "output_heavy"
    default_weight = 1.5
    traffic = True
    description = (
        "clip(log(ratio / population median) / log(population quantile / median), 0, 1), "
        "ratio = output/input tokens"
    )
    count_means = "its output/input token ratio, rounded (at least 1)"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        frame = self._frame(inputs)
        cfg = inputs.settings.behaviour
        has_traffic = frame["n_rows"].to_numpy(np.float64) >= cfg.min_rows
        ratio = frame["output_input_ratio"].to_numpy(np.float64)
        median, full = _population_ratio(ratio[has_traffic], cfg.output_heavy_quantile)
        with np.errstate(divide="ignore", invalid="ignore"):
            heavy = np.clip(np.log(ratio / median) / np.log(full / median), 0.0, 1.0)
        account = np.where(has_traffic, np.nan_to_num(heavy, nan=0.0), 0.0)
        return SignalValues(
            inputs.cluster_mean(account),
            account=account,
            # The population's figures, repeated per cluster (the cluster evidence table).
            detail={
                "population_median": np.full(inputs.n_clusters, median),
                "population_full": np.full(inputs.n_clusters, full),
            },
        )

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        share = float(values.cluster[cluster])
        return f"output-heavy traffic {share:.0%}" if share > 0.05 else ""

    def account_reason(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        ratio = self._frame(inputs)["output_input_ratio"].iloc[rows].reset_index(drop=True)
        medians = values.detail["population_median"]
        median = float(medians[0]) if len(medians) else 1.0
        text = (
            "output-heavy traffic ("
            + ratio.map(lambda v: f"{v:.1f}")
            + f"x output over input tokens; population median {median:.1f}x)"
        )
        assert values.account is not None
        return np.where(values.account[rows] >= 0.5, text.to_numpy(dtype=object), "").astype(object)

    def account_count(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        ratio = self._frame(inputs)["output_input_ratio"].to_numpy(np.float64)[rows]
        return np.maximum(np.rint(np.nan_to_num(ratio, nan=1.0, posinf=1.0)), 1).astype(np.int64)


class ModelPivot(BehaviourSignal):
    """A move to a newly released model within hours of its release, far above the
    population's share."""

    name = "model_pivot"
    default_weight = 1.0
    traffic = True
    description = "share of traffic moved to a new model in 72 h, above the population's share"
    count_means = "per cent of its traffic moved to the new model within 72 h"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        frame = self._frame(inputs)
        cfg = inputs.settings.behaviour
        total = frame["pivot_requests_72h"].to_numpy(np.float64)
        share = np.nan_to_num(frame["pivot_share_72h"].to_numpy(np.float64), nan=0.0)
        pop = frame["pivot_population_72h"].to_numpy(np.float64)
        pop_value = float(np.nanmax(pop)) if np.isfinite(pop).any() else 0.0
        prior = cfg.pivot_prior_requests
        shrunk = (share * total + pop_value * prior) / (total + prior)
        span = max(cfg.pivot_full_share - pop_value, 1e-6)
        account = np.clip((shrunk - pop_value) / span, 0.0, 1.0)
        return SignalValues(inputs.cluster_mean(account), account=account)

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        share = float(values.cluster[cluster])
        return f"model pivot {share:.0%}" if share > 0.05 else ""

    def account_reason(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        beh = self._frame(inputs).iloc[rows].reset_index(drop=True)
        text = (
            "moved "
            + _percent(beh["pivot_share_72h"])
            + " of its traffic to model "
            + beh["pivot_model"].astype(str)
            + " within "
            + beh["pivot_hours"].fillna(0.0).map(lambda v: f"{v:.0f}")
            + " h of release (population: "
            + _percent(beh["pivot_population_72h"])
            + ")"
        )
        assert values.account is not None
        return np.where(values.account[rows] >= 0.5, text.to_numpy(dtype=object), "").astype(object)

    def account_count(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        share = self._frame(inputs)["pivot_share_72h"].to_numpy(np.float64)[rows]
        return np.rint(100.0 * np.nan_to_num(share, nan=0.0)).astype(np.int64)


class AgedWake(BehaviourSignal):
    """Opened long ago, dormant, then woken with other members within hours."""

    name = "aged_wake"
    default_weight = 0.5
    support_at = 1.0
    gated = True
    description = "woke from dormancy within wake_window_hours of two or more cluster members"
    count_means = "members of its cluster woken within the wake window of it"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        frame = self._frame(inputs)
        cluster_of = inputs.cluster_of
        awake = frame["awakened"].to_numpy(bool) & (cluster_of >= 0)
        first_event = pd.to_datetime(frame["first_event_at"], utc=True)
        first_s = np.asarray(
            ((first_event - pd.Timestamp(0, tz="UTC")).dt.total_seconds()).fillna(0.0),
            dtype=np.float64,
        )
        woke_with = np.zeros(inputs.n_accounts, dtype=np.int64)
        woken = np.flatnonzero(awake)
        if len(woken):
            hours = inputs.settings.behaviour.wake_window_hours
            woke_with[woken] = window_counts(cluster_of[woken], first_s[woken], hours * 3600.0)
        account = (awake & (woke_with >= 2)).astype(np.float64)
        return SignalValues(
            inputs.cluster_mean(account), account=account, account_detail={"woke_with": woke_with}
        )

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        share = float(values.cluster[cluster])
        return f"{share:.0%} woke together after dormancy" if share > 0 else ""

    def account_reason(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        dormant = self._frame(inputs)["dormant_days"].iloc[rows].reset_index(drop=True)
        text = (
            "woke after "
            + dormant.fillna(0.0).map(lambda v: f"{v:.0f}")
            + " dormant days together with "
            + pd.Series(values.account_detail["woke_with"][rows]).astype(str)
            + " cluster members"
        )
        assert values.account is not None
        return np.where(values.account[rows] >= 1, text.to_numpy(dtype=object), "").astype(object)

    def account_count(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        return np.asarray(values.account_detail["woke_with"][rows], dtype=np.int64)


class BehaviourGroup(SignalGroup):
    """Behaviour credit, guarded by payers, gated by traffic and corroborated per account.

    ``guard`` = :func:`~linker.signals.base.organisation_guard` (the cluster's network
    spread); a signal's cluster term is
    ``weight × value × guard`` (× ``traffic``, the larger traffic value, when gated); an
    account's term is ``cluster term × (2 × own value − 1)``, and a positive term counts in
    full only with two behaviours shown, at half with one.
    """

    name = "behaviour"

    def applies(self, inputs: EvidenceInputs) -> bool:
        return inputs.behaviour is not None

    def terms(
        self,
        signals: list[Signal],
        values: dict[str, SignalValues],
        weights: dict[str, float],
        inputs: EvidenceInputs,
    ) -> GroupTerms:
        rows, of = inputs.rows, inputs.cluster_of[inputs.rows]
        behaviours = [s for s in signals if isinstance(s, BehaviourSignal)]
        # Traffic first: the gated signals scale with it.
        ordered = [s for s in behaviours if s.traffic] + [s for s in behaviours if not s.traffic]
        guard = organisation_guard(values, inputs.settings.organisation_share)
        traffic = np.zeros(inputs.n_clusters)
        for s in behaviours:
            if s.traffic:
                traffic = np.maximum(traffic, values[s.name].cluster)
        support = np.zeros(inputs.n_accounts)
        for s in ordered:
            own = values[s.name].account
            assert own is not None
            support = support + (own >= s.support_at)
        corroborated = np.clip(support / 2.0, 0.0, 1.0)
        cluster = np.zeros(inputs.n_clusters)
        per_signal: dict[str, np.ndarray] = {}
        total = np.zeros(inputs.n_accounts)
        for s in ordered:
            v = values[s.name]
            assert v.account is not None
            f = v.cluster * guard * weights.get(s.name, s.default_weight)
            if s.gated:
                f = f * traffic
            cluster += f
            # Own evidence only: credit in proportion to the behaviour the account shows;
            # not showing it is no evidence against (it may be reserve, or idle that week).
            term = f[of] * v.account[rows]
            added = np.zeros(inputs.n_accounts)
            added[rows] = np.where(term > 0, term * corroborated[rows], term)
            per_signal[s.name] = added
            total[rows] += added[rows]
        return GroupTerms(cluster, {s.name: per_signal[s.name] for s in behaviours}, total)

    def cluster_note(
        self,
        inputs: EvidenceInputs,
        values: dict[str, SignalValues],
        parts: list[str],
        cluster: int,
    ) -> str:
        guard = float(organisation_guard(values, inputs.settings.organisation_share)[cluster])
        if not parts or guard >= 1:
            return ""
        return f"behaviour credit x{guard:.2f} (one organisation's network)"


BUILT_IN: tuple[Signal, ...] = (Lockstep(), OutputHeavy(), ModelPivot(), AgedWake())
"""The behaviour signals, in reason order (the group scores the traffic signals first)."""
