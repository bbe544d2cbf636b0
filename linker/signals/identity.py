"""Identity signals: what a cluster's shared identifiers and signups say.

A ring shows a *conjunction* of weak signals that innocent groups show only some of: many
distinct payers, shared IPs spread over many subnets (a proxy pool), a family of shared prompt
templates, card BINs concentrated far above their base rate while the cards themselves are
distinct, patterned mailboxes, and signup bursts. Each is a value in [0, 1]
(docs/linking.md gives the definitions and weights).

The ``identity`` group scores them: the cluster logit adds ``weight × value``; an account's
logit adds the same term for a cluster-level signal, and for an account-level one only in
proportion to the account's own value: an account is never credited with evidence that only
its cluster shows. Signals an organisation shows as routine (shared templates, signing up
together) count only as far as the cluster's traffic is spread over a proxy pool
(:func:`~linker.signals.base.organisation_guard`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa

from linker import kinds
from linker.pseudonyms import network_of
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
    "BinConcentration",
    "Burst",
    "Customers",
    "EmailPattern",
    "IdentityGroup",
    "IpSpread",
    "PromptFamily",
    "Size",
    "Ties",
    "spread",
]

logger = logging.getLogger(__name__)


def spread(count: np.ndarray, full: float = 8.0) -> np.ndarray:
    """0 for at most one distinct value, rising log-linearly to 1 at ``full`` values.

    Examples
    --------
    >>> spread(np.array([1, 2, 8, 20])).round(2).tolist()
    [0.0, 0.33, 1.0, 1.0]
    """
    c = np.maximum(np.asarray(count, dtype=np.float64), 1.0)
    return np.asarray(np.clip(np.log2(c) / np.log2(full), 0.0, 1.0), dtype=np.float64)


def _flag(n: int, rows: np.ndarray) -> np.ndarray:
    out = np.zeros(n, dtype=np.float64)
    out[rows] = 1.0
    return out


class Customers(Signal):
    """Distinct payers in the cluster: one payer is one legitimate customer."""

    name = "customers"
    level = "cluster"
    default_weight = 1.0
    spread_counts_as = True
    description = "(distinct payers - 1) / (size - 1); payers = components over customer kinds"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        rows = inputs.rows
        frame = pd.DataFrame(
            {"cluster": inputs.cluster_of[rows], "customer": inputs.customer_of[rows]}
        )
        n_customers = inputs.per_cluster(frame.drop_duplicates().groupby("cluster").size(), 1)
        size = inputs.size
        value = np.where(size > 1, (n_customers - 1) / np.maximum(size - 1, 1), 0.0)
        return SignalValues(
            np.asarray(value, dtype=np.float64),
            detail={"n_accounts": size, "n_customers": n_customers.astype(np.int64)},
        )

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        size = int(values.detail["n_accounts"][cluster])
        return f"{size} accounts paid by {int(values.detail['n_customers'][cluster])} payers"


def _network_share(
    inputs: EvidenceInputs, ip_rows: pd.DataFrame, subnet_of: pd.Series
) -> np.ndarray:
    """Per cluster, how far its members sit behind networks of its own.

    A member is behind a subnet when that subnet carries at least half of the member's
    addresses in ``ip_rows`` (those the cluster holds in excess, public ones included; the
    subnet holding most members, when two do); a member behind none, or without such an
    address, is a network of its own. Two measures, the larger wins:

    * the share of members behind the most-held subnet, when another member is behind it
      too (one office NAT, one home router);
    * ``1 − 1 / n``, where ``n`` is the size of a member's network averaged over members
      (``Σ m_s² / M``): students behind any of a campus's subnets, staff behind several
      offices' NATs share their network with many others (``n`` in the tens), while a ring
      whose members each hold a few proxy exits spread over the pool's subnets shares one
      with about one other member at most (``n`` near 1 or 2).

    A ring member rotating through a proxy pool is behind no subnet at all, even when every
    member touches the same exits.
    """
    held = ip_rows[["cluster", "row", "identifier"]].drop_duplicates()
    held = held.assign(subnet=subnet_of.reindex(held["identifier"]).to_numpy())
    per_member = held.groupby(["cluster", "row", "subnet"]).size().rename("n").reset_index()
    owned = per_member.groupby(["cluster", "row"])["n"].transform("sum")
    majority = per_member[per_member["n"] >= 0.5 * owned]
    majority = majority.assign(
        members=majority.groupby(["cluster", "subnet"])["row"].transform("nunique")
    )
    network = majority.sort_values(
        ["cluster", "row", "members", "subnet"],
        ascending=[True, True, False, True],
        kind="stable",
    ).drop_duplicates(["cluster", "row"])
    per_network = network.groupby(["cluster", "subnet"]).size().astype(np.float64)
    size = np.maximum(inputs.size, 1).astype(np.float64)
    shared = per_network[per_network >= 2]
    top = inputs.per_cluster(shared.groupby(level=0).max()) / size
    alone = size - inputs.per_cluster(network.groupby("cluster").size())
    squares = inputs.per_cluster((per_network**2).groupby(level=0).sum()) + alone
    mean_network = squares / size
    spread = 1.0 - 1.0 / np.maximum(mean_network, 1.0)
    return np.asarray(np.maximum(top, spread), dtype=np.float64)


class IpSpread(Signal):
    """A proxy pool: IPs the cluster holds in excess, spread over many subnets.

    Public addresses count: a residential pool's exits are rented by strangers too, so the
    null model makes them public (they link nobody), yet a ring's members rotate through them
    far more often than chance (``memberships``' ``excess``).
    """

    name = "ip_spread"
    level = "account"
    default_weight = 1.2
    network_spread = True
    description = "spread(# subnets of IPs held in excess) x min(1, subnets per account / 0.25)"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        m = inputs.memberships
        ip_rows = m[m["excess"] & m["kind"].isin(kinds.ip_kinds())]
        ip_ids = np.unique(ip_rows["identifier"].to_numpy())
        texts = pa.array(inputs.bipartite.values[ip_ids].astype(str), pa.large_string())
        subnet_of = pd.Series(pd.factorize(network_of(texts).to_numpy(False))[0], index=ip_ids)
        address_of = pd.Series(pd.factorize(inputs.bipartite.values[ip_ids])[0], index=ip_ids)
        pairs = ip_rows[["cluster", "identifier"]].drop_duplicates()
        pairs = pairs.assign(
            address=address_of.reindex(pairs["identifier"]).to_numpy(),
            subnet=subnet_of.reindex(pairs["identifier"]).to_numpy(),
        )
        n_ips = inputs.per_cluster(
            pairs[["cluster", "address"]].drop_duplicates().groupby("cluster").size()
        )
        n_subnets = inputs.per_cluster(
            pairs[["cluster", "subnet"]].drop_duplicates().groupby("cluster").size()
        )
        # A NAT or a campus puts many accounts behind few subnets; a proxy pool gives nearly
        # every account its own. Scaled by subnets per account (full at one per 4 accounts).
        per_account = n_subnets / np.maximum(inputs.size, 1)
        value = spread(n_subnets) * np.clip(per_account / 0.25, 0.0, 1.0)
        network_share = _network_share(inputs, ip_rows, subnet_of)
        return SignalValues(
            value,
            account=_flag(inputs.n_accounts, ip_rows["row"].to_numpy()),
            detail={
                "n_ips": n_ips.astype(np.int64),
                "n_ip_subnets": n_subnets.astype(np.int64),
                "network_share": network_share.astype(np.float64),
            },
        )

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        n_ips = int(values.detail["n_ips"][cluster])
        if n_ips == 0:
            return ""
        return f"{n_ips} shared IPs across {int(values.detail['n_ip_subnets'][cluster])} subnets"


class PromptFamily(Signal):
    """A family of several cluster-owned prompt templates."""

    name = "prompt_family"
    level = "account"
    default_weight = 1.0
    routine = True
    description = "spread(# cluster-owned prompt fingerprints)"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        m = inputs.memberships
        prompt_rows = m[m["owned"] & (m["kind"] == "prompt")]
        counts = prompt_rows[["cluster", "identifier"]].drop_duplicates().groupby("cluster").size()
        n_prompts = inputs.per_cluster(counts).astype(np.int64)
        return SignalValues(
            spread(n_prompts),
            account=_flag(inputs.n_accounts, prompt_rows["row"].to_numpy()),
            detail={"n_prompts": n_prompts},
        )

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        n = int(values.detail["n_prompts"][cluster])
        return f"{n} shared prompt templates" if n > 0 else ""


class BinConcentration(Signal):
    """Members' card BINs mostly used inside the cluster (a ring's virtual-card BINs), while
    the cards themselves are distinct (not one family card)."""

    name = "bin_concentration"
    level = "account"
    default_weight = 1.0
    description = "share of carded members on a cluster-owned BIN x distinct cards / carded"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        m = inputs.memberships
        bin_rows = m[m["kind"] == "card_bin"]
        owned_bin = bin_rows[(bin_rows["in_cluster"] >= 3) & bin_rows["owned"]]
        with_bin = inputs.per_cluster(bin_rows.drop_duplicates("row").groupby("cluster").size())
        on_owned = inputs.per_cluster(owned_bin.drop_duplicates("row").groupby("cluster").size())
        share = on_owned / np.maximum(with_bin, 1)
        pay_rows = m[m["kind"] == "payment"]
        n_cards = inputs.per_cluster(
            pay_rows[["cluster", "identifier"]].drop_duplicates().groupby("cluster").size()
        )
        with_card = inputs.per_cluster(pay_rows.drop_duplicates("row").groupby("cluster").size())
        distinct_cards = n_cards / np.clip(with_card, 1, None)
        top = owned_bin[["cluster", "identifier", "in_cluster"]].drop_duplicates()
        top = top.sort_values(
            ["cluster", "in_cluster", "identifier"], ascending=[True, False, True]
        )
        top = top[top.groupby("cluster").cumcount() < 3]
        top = top.assign(value=inputs.bipartite.values[top["identifier"].to_numpy()])
        top_bins = inputs.per_cluster(
            top.groupby("cluster")["value"].agg(lambda v: ", ".join(map(str, v))), ""
        )
        top_set = pd.MultiIndex.from_frame(owned_bin[["cluster", "identifier"]])
        on_top = pd.MultiIndex.from_frame(bin_rows[["cluster", "identifier"]]).isin(top_set)
        return SignalValues(
            np.asarray(share * distinct_cards, dtype=np.float64),
            account=_flag(inputs.n_accounts, bin_rows["row"].to_numpy()[on_top]),
            detail={"bin_share": np.asarray(share, dtype=np.float64), "top_bins": top_bins},
        )

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        if values.cluster[cluster] <= 0:
            return ""
        share = float(values.detail["bin_share"][cluster])
        return f"{share:.0%} of cards on BINs {values.detail['top_bins'][cluster]}"


class EmailPattern(Signal):
    """Members whose mailbox or mailbox pattern the cluster owns: far more of its holders are
    members than chance predicts (two namesakes sharing ``barbarahopper#`` in a cluster of
    60 among 6,000 accounts are not; a ring's generated stem shared by 17 is)."""

    name = "email_pattern"
    level = "account"
    default_weight = 0.8
    description = "share of members whose mailbox or email pattern is cluster-owned"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        m = inputs.memberships
        shared = m[m["kind"].isin(("email_pattern", "mailbox")) & m["owned"]]
        account = _flag(inputs.n_accounts, shared["row"].to_numpy())
        return SignalValues(inputs.cluster_mean(account), account=account)

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        share = float(values.cluster[cluster])
        return f"{share:.0%} with patterned or shared mailboxes" if share > 0 else ""


class Burst(Signal):
    """Signups in a burst: along a burst key above its base rate, or inside the cluster."""

    name = "burst"
    level = "account"
    default_weight = 1.0
    routine = True
    description = "share of members in a key burst or a cluster burst"
    code = "signup_burst"
    count_means = "members of its cluster created within the burst window of it"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        min_peers = inputs.settings.burst_min_accounts
        account = ((inputs.burst_peers >= min_peers) | inputs.key_burst).astype(np.float64)
        outside = inputs.cluster_of < 0
        account[outside] = 0.0
        return SignalValues(
            inputs.cluster_mean(account),
            account=account,
            account_detail={"burst_peers": inputs.burst_peers},
        )

    def cluster_reason(self, inputs: EvidenceInputs, values: SignalValues, cluster: int) -> str:
        share = float(values.cluster[cluster])
        if share <= 0:
            return ""
        window = inputs.settings.burst_window_minutes
        return f"{share:.0%} signed up in bursts (within {window:g} minutes)"

    def account_reason(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        peers = values.account_detail["burst_peers"][rows]
        text = (
            f"created within {inputs.settings.burst_window_minutes:g} minutes of "
            + peers.astype(str).astype(object)
            + " of them"
        )
        return np.where(peers >= inputs.settings.burst_min_accounts, text, "").astype(object)

    def account_count(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        return np.asarray(values.account_detail["burst_peers"][rows], dtype=np.int64)


class Ties(Signal):
    """How strongly the account itself is tied to other members: the summed weight of the
    specific (non-public) identifiers it shares with at least one of them, saturating. The
    account's own evidence of belonging: a card, a device, a mailbox, proxy exits or
    templates it shares with specific other members."""

    name = "ties"
    level = "account"
    default_weight = 1.0
    description = "1 - exp(-(summed weight of identifiers shared with other members) / 4)"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        m = inputs.memberships
        shared = m[m["in_cluster"] >= 2]
        weight = inputs.weights[shared["identifier"].to_numpy()]
        strength = np.bincount(
            shared["row"].to_numpy(), weights=weight, minlength=inputs.n_accounts
        )
        account = np.asarray(1.0 - np.exp(-strength / 4.0), dtype=np.float64)
        account[inputs.cluster_of < 0] = 0.0
        return SignalValues(
            inputs.cluster_mean(account), account=account, account_detail={"strength": strength}
        )


class Size(Signal):
    """Cluster size, saturating at 64 accounts."""

    name = "size"
    level = "cluster"
    default_weight = 0.4
    description = "spread(size, full at 64)"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        return SignalValues(spread(inputs.size, full=64.0))


class IdentityGroup(SignalGroup):
    """``weight × value`` in the cluster logit; in an account's logit, an account-level
    signal counts in proportion to the account's own value (never on its cluster's alone)."""

    name = "identity"

    def terms(
        self,
        signals: list[Signal],
        values: dict[str, SignalValues],
        weights: dict[str, float],
        inputs: EvidenceInputs,
    ) -> GroupTerms:
        n_acc = inputs.n_accounts
        rows, of = inputs.rows, inputs.cluster_of[inputs.rows]
        guard = organisation_guard(values, inputs.settings.organisation_share)
        cluster = np.zeros(inputs.n_clusters)
        per_signal: dict[str, np.ndarray] = {}
        for s in signals:
            v = values[s.name]
            w = weights.get(s.name, s.default_weight) * (guard if s.routine else 1.0)
            shown = np.maximum(v.cluster, guard) if s.spread_counts_as else v.cluster
            weighted = w * shown
            cluster = cluster + weighted
            term = np.zeros(n_acc)
            contribution = weighted[of]
            if v.account is not None:
                # Own evidence only: an account-level signal counts for an account that shows
                # it, never because its cluster does.
                contribution = contribution * v.account[rows]
            term[rows] = contribution
            per_signal[s.name] = term
        total = self.add_to(np.zeros(n_acc), GroupTerms(cluster, per_signal, np.zeros(n_acc)))
        return GroupTerms(cluster, per_signal, total)

    def add_to(self, logit: np.ndarray, terms: GroupTerms) -> np.ndarray:
        # Term by term onto the running logit: the order of the additions is the score's.
        for term in terms.account.values():
            logit = logit + term
        return logit


BUILT_IN: tuple[Signal, ...] = (
    Customers(),
    IpSpread(),
    PromptFamily(),
    BinConcentration(),
    EmailPattern(),
    Burst(),
    Ties(),
    Size(),
)
"""The identity signals, in reason order."""
