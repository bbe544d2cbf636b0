"""Cluster and account scores, actions and reasons.

A ring shows a *conjunction* of weak signals that innocent groups show only some of: many
distinct payers, shared IPs spread over many /24s (a proxy pool), a family of shared prompt
templates, card BINs concentrated far above their base rate while the cards themselves are
distinct, patterned mailboxes, and signup bursts. Each signal is a feature in [0, 1]; the
cluster score is a logistic function of their weighted sum (docs/linking.md gives the weights).
An account's score uses the same features, each counted in full when the account itself shows
the signal and at half when only its cluster does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from linker.graph.bipartite import Bipartite
from linker.settings import LinkSettings

__all__ = [
    "BEHAVIOUR_FEATURES",
    "FEATURES",
    "BehaviourEvidence",
    "ClusterEvidence",
    "account_reasons",
    "behaviour_cluster_reasons",
    "behaviour_evidence",
    "behaviour_reasons",
    "cluster_evidence",
    "cluster_reasons",
    "logistic",
    "spread",
]

logger = logging.getLogger(__name__)

FEATURES = (
    "customers",
    "ip_spread",
    "prompt_family",
    "bin_concentration",
    "email_pattern",
    "burst",
    "density",
    "size",
)
# Behavioural features (docs/behaviour.md): each in [0, 1] per account and, as the members'
# mean, per cluster. Synchrony and waking count only alongside ring-like traffic (see below).
BEHAVIOUR_FEATURES = ("output_heavy", "model_pivot", "lockstep", "aged_wake")
_GATED = ("lockstep", "aged_wake")
# Features an account can show by itself (the others belong to the cluster only).
ACCOUNT_FEATURES = ("ip_spread", "prompt_family", "bin_concentration", "email_pattern", "burst")

IP_KINDS = ("ip", "signup_ip")
KIND_LABELS = {
    "payment": "card",
    "billing_customer": "billing customer",
    "card_bin": "card BIN",
    "mailbox": "mailbox",
    "email_domain": "email domain",
    "email_pattern": "email pattern",
    "signup_ip": "signup IP",
    "ip": "IP",
    "signup_subnet": "signup subnet",
    "subnet": "subnet",
    "device": "device",
    "user_agent": "user agent",
    "prompt": "prompt template",
}


def logistic(x: np.ndarray) -> np.ndarray:
    """The logistic function, vectorised."""
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def spread(count: np.ndarray, full: float = 8.0) -> np.ndarray:
    """0 for at most one distinct value, rising log-linearly to 1 at ``full`` values.

    Examples
    --------
    >>> spread(np.array([1, 2, 8, 20])).round(2).tolist()
    [0.0, 0.33, 1.0, 1.0]
    """
    c = np.maximum(np.asarray(count, dtype=np.float64), 1.0)
    return np.asarray(np.clip(np.log2(c) / np.log2(full), 0.0, 1.0), dtype=np.float64)


def ip_subnet(values: pd.Series) -> pd.Series:
    """The /24 of IPv4 addresses; other values are returned unchanged."""
    text = values.astype("string")
    head = text.str.extract(r"^(\d+\.\d+\.\d+)\.\d+$")[0]
    return (head + ".0/24").fillna(text)


@dataclass(frozen=True)
class ClusterEvidence:
    """Features and evidence of every cluster and clustered account.

    Attributes
    ----------
    cluster_features : pandas.DataFrame
        One row per cluster (index 0..c-1): the features of :data:`FEATURES` plus ``size``
        (as ``n_accounts``), ``n_customers``, ``n_ips``, ``n_ip_subnets``, ``n_prompts``,
        ``top_bins``, ``bin_share``, ``burst_share``.
    account_features : pandas.DataFrame
        One row per clustered account (``row``, ``cluster``) and a 0/1 column per
        :data:`ACCOUNT_FEATURES`, plus ``burst_peers`` (cluster members created within the
        burst window).
    shared : pandas.DataFrame
        Memberships of clustered accounts in identifiers shared within their cluster:
        ``row``, ``cluster``, ``identifier``, ``in_cluster`` (members holding it).
    """

    cluster_features: pd.DataFrame
    account_features: pd.DataFrame
    shared: pd.DataFrame


def cluster_evidence(
    bipartite: Bipartite,
    cluster_of: np.ndarray,
    n_clusters: int,
    *,
    customer_labels: np.ndarray,
    link_weight: sp.csr_matrix,
    burst_peers: np.ndarray,
    key_burst: np.ndarray,
    settings: LinkSettings,
) -> ClusterEvidence:
    """Compute the features of every cluster and of every clustered account.

    Parameters
    ----------
    bipartite : Bipartite
    cluster_of : numpy.ndarray
        Cluster index per account, ``-1`` when none.
    n_clusters : int
    customer_labels : numpy.ndarray
        Customer component per account (shared card or billing customer).
    link_weight : scipy.sparse.csr_matrix
        Upper-triangular account link weights (after the minimum weight cut).
    burst_peers : numpy.ndarray
        Per account, members of its cluster created within the burst window.
    key_burst : numpy.ndarray of bool
        Per account, whether it is in a signup burst along some burst key.
    settings : LinkSettings

    Returns
    -------
    ClusterEvidence

    Notes
    -----
    O(nnz of the clustered accounts' rows): sparse products and pandas group-bys.
    """
    rows = np.flatnonzero(cluster_of >= 0)
    clusters = cluster_of[rows]
    n_acc = bipartite.shape[0]
    member = sp.csr_matrix((np.ones(len(rows)), (clusters, rows)), shape=(n_clusters, n_acc))
    size = np.bincount(clusters, minlength=n_clusters).astype(np.int64)
    held = (member @ bipartite.matrix).tocsr()  # clusters × identifiers: members holding it
    held.sum_duplicates()

    # Memberships of clustered accounts with the count of cluster members sharing the value.
    sub = bipartite.matrix[rows].tocoo()
    acc_row = rows[sub.row]
    acc_cluster = clusters[sub.row]
    ident = sub.col.astype(np.int64)
    in_cluster = (
        np.asarray(held[acc_cluster, ident]).ravel().astype(np.int64)
        if len(ident)
        else np.zeros(0, dtype=np.int64)
    )
    kinds = bipartite.kinds[ident]
    n_global = bipartite.n_accounts[ident]
    owned = (in_cluster >= 2) & (in_cluster >= settings.owned_share * n_global)
    memberships = pd.DataFrame(
        {
            "row": acc_row,
            "cluster": acc_cluster,
            "identifier": ident,
            "kind": kinds,
            "in_cluster": in_cluster,
            "owned": owned,
        }
    )

    features = pd.DataFrame(index=pd.RangeIndex(n_clusters))
    features["n_accounts"] = size

    # Customers: distinct payers in the cluster (1 payer = one legitimate customer).
    customers = pd.DataFrame({"cluster": clusters, "customer": customer_labels[rows]})
    n_customers = customers.drop_duplicates().groupby("cluster").size()
    features["n_customers"] = n_customers.reindex(features.index, fill_value=1).to_numpy()
    features["customers"] = np.where(
        size > 1, (features["n_customers"] - 1) / np.maximum(size - 1, 1), 0.0
    )

    # Proxy pools: cluster-owned IPs spread over many /24s.
    ip_rows = memberships[memberships["owned"] & memberships["kind"].isin(IP_KINDS)]
    ip_ids = np.unique(ip_rows["identifier"].to_numpy())
    subnet_of = pd.Series(
        pd.factorize(ip_subnet(pd.Series(bipartite.values[ip_ids])))[0], index=ip_ids
    )
    address_of = pd.Series(pd.factorize(bipartite.values[ip_ids])[0], index=ip_ids)
    ip_pairs = ip_rows[["cluster", "identifier"]].drop_duplicates()
    ip_pairs = ip_pairs.assign(
        address=address_of.reindex(ip_pairs["identifier"]).to_numpy(),
        subnet=subnet_of.reindex(ip_pairs["identifier"]).to_numpy(),
    )
    n_ips = ip_pairs[["cluster", "address"]].drop_duplicates().groupby("cluster").size()
    features["n_ips"] = n_ips.reindex(features.index, fill_value=0).to_numpy()
    n_subnets = ip_pairs[["cluster", "subnet"]].drop_duplicates().groupby("cluster").size()
    features["n_ip_subnets"] = n_subnets.reindex(features.index, fill_value=0).to_numpy()
    # A NAT or a campus puts many accounts behind few /24s; a proxy pool gives nearly every
    # account its own /24. Scale by subnets per account (full at one subnet per 4 accounts).
    per_account = features["n_ip_subnets"].to_numpy() / np.maximum(size, 1)
    features["ip_spread"] = spread(features["n_ip_subnets"].to_numpy()) * np.clip(
        per_account / 0.25, 0.0, 1.0
    )

    # Template families: several cluster-owned prompt fingerprints.
    prompt_rows = memberships[memberships["owned"] & (memberships["kind"] == "prompt")]
    n_prompts = prompt_rows[["cluster", "identifier"]].drop_duplicates().groupby("cluster").size()
    features["n_prompts"] = n_prompts.reindex(features.index, fill_value=0).to_numpy()
    features["prompt_family"] = spread(features["n_prompts"].to_numpy())

    # BIN concentration: members whose card BIN is mostly used inside this cluster (a ring's
    # virtual-card BINs), while the cards themselves are distinct (not one family card).
    bin_rows = memberships[memberships["kind"] == "card_bin"]
    owned_bin = bin_rows[(bin_rows["in_cluster"] >= 3) & bin_rows["owned"]]
    with_bin = (
        bin_rows.drop_duplicates("row")
        .groupby("cluster")
        .size()
        .reindex(features.index, fill_value=0)
        .to_numpy()
    )
    on_owned = (
        owned_bin.drop_duplicates("row")
        .groupby("cluster")
        .size()
        .reindex(features.index, fill_value=0)
        .to_numpy()
    )
    share = on_owned / np.maximum(with_bin, 1)
    pay_rows = memberships[memberships["kind"] == "payment"]
    n_cards = pay_rows[["cluster", "identifier"]].drop_duplicates().groupby("cluster").size()
    with_card = pay_rows.drop_duplicates("row").groupby("cluster").size()
    distinct_cards = (
        n_cards.reindex(features.index, fill_value=0)
        / with_card.reindex(features.index, fill_value=0).clip(lower=1)
    ).to_numpy()
    features["bin_share"] = share
    features["bin_concentration"] = share * distinct_cards
    top = owned_bin[["cluster", "identifier", "in_cluster"]].drop_duplicates()
    top = top.sort_values(["cluster", "in_cluster", "identifier"], ascending=[True, False, True])
    top = top[top.groupby("cluster").cumcount() < 3]
    top_bin_values = top.assign(value=bipartite.values[top["identifier"].to_numpy()])
    features["top_bins"] = (
        top_bin_values.groupby("cluster")["value"]
        .agg(lambda v: ", ".join(map(str, v)))
        .reindex(features.index, fill_value="")
        .to_numpy()
    )
    top_set = pd.MultiIndex.from_frame(owned_bin[["cluster", "identifier"]])

    # Account-level signals.
    acc = pd.DataFrame({"row": rows, "cluster": clusters})
    acc_ip = np.zeros(n_acc, dtype=bool)
    acc_ip[ip_rows["row"].to_numpy()] = True
    acc_prompt = np.zeros(n_acc, dtype=bool)
    acc_prompt[prompt_rows["row"].to_numpy()] = True
    acc_bin = np.zeros(n_acc, dtype=bool)
    bin_key = pd.MultiIndex.from_frame(bin_rows[["cluster", "identifier"]])
    acc_bin[bin_rows["row"].to_numpy()[bin_key.isin(top_set)]] = True
    email_rows = memberships[
        memberships["kind"].isin(("email_pattern", "mailbox")) & (memberships["in_cluster"] >= 2)
    ]
    acc_email = np.zeros(n_acc, dtype=bool)
    acc_email[email_rows["row"].to_numpy()] = True
    acc_burst = (burst_peers >= settings.burst_min_accounts) | key_burst
    acc["ip_spread"] = acc_ip[rows].astype(np.float64)
    acc["prompt_family"] = acc_prompt[rows].astype(np.float64)
    acc["bin_concentration"] = acc_bin[rows].astype(np.float64)
    acc["email_pattern"] = acc_email[rows].astype(np.float64)
    acc["burst"] = acc_burst[rows].astype(np.float64)
    acc["burst_peers"] = burst_peers[rows]

    features["email_pattern"] = (
        acc.groupby("cluster")["email_pattern"].mean().reindex(features.index, fill_value=0.0)
    ).to_numpy()
    features["burst_share"] = (
        acc.groupby("cluster")["burst"].mean().reindex(features.index, fill_value=0.0)
    ).to_numpy()
    features["burst"] = features["burst_share"]

    # Density: mean weighted degree inside the cluster, saturating.
    lw = link_weight.tocoo()
    same = (cluster_of[lw.row] >= 0) & (cluster_of[lw.row] == cluster_of[lw.col])
    internal = np.bincount(cluster_of[lw.row[same]], weights=lw.data[same], minlength=n_clusters)
    mean_degree = 2.0 * internal / np.maximum(size, 1)
    features["density"] = 1.0 - np.exp(-mean_degree / 4.0)
    features["size"] = spread(size, full=64.0)

    shared = memberships.loc[
        memberships["in_cluster"] >= 2, ["row", "cluster", "identifier", "in_cluster"]
    ].reset_index(drop=True)
    return ClusterEvidence(cluster_features=features, account_features=acc, shared=shared)


def cluster_reasons(features: pd.DataFrame, which: np.ndarray, window_minutes: float) -> list[str]:
    """Human-readable evidence of the given clusters.

    Parameters
    ----------
    features : pandas.DataFrame
        ``ClusterEvidence.cluster_features``.
    which : numpy.ndarray
        Cluster indices to describe.
    window_minutes : float
        The burst window, cited in the text.

    Returns
    -------
    list of str

    Notes
    -----
    A Python loop over the given clusters only (the flagged ones).
    """
    out = []
    for c in which.tolist():
        f = features.iloc[c]
        parts = [f"{int(f['n_accounts'])} accounts paid by {int(f['n_customers'])} payers"]
        if f["n_ips"] > 0:
            parts.append(f"{int(f['n_ips'])} shared IPs across {int(f['n_ip_subnets'])} /24s")
        if f["n_prompts"] > 0:
            parts.append(f"{int(f['n_prompts'])} shared prompt templates")
        if f["bin_concentration"] > 0:
            parts.append(f"{f['bin_share']:.0%} of cards on BINs {f['top_bins']}")
        if f["email_pattern"] > 0:
            parts.append(f"{f['email_pattern']:.0%} with patterned or shared mailboxes")
        if f["burst_share"] > 0:
            parts.append(
                f"{f['burst_share']:.0%} signed up in bursts (within {window_minutes:g} minutes)"
            )
        out.append("; ".join(parts))
    return out


def account_reasons(
    bipartite: Bipartite,
    shared: pd.DataFrame,
    accounts: pd.DataFrame,
    priors: dict[str, float],
    *,
    max_reasons: int,
    window_minutes: float,
    burst_min: int,
) -> pd.Series:
    """Reason text of each given account, citing the concrete shared values and counts.

    Parameters
    ----------
    bipartite : Bipartite
    shared : pandas.DataFrame
        ``ClusterEvidence.shared``.
    accounts : pandas.DataFrame
        The accounts to explain: ``row``, ``cluster_id``, ``cluster_size``, ``burst_peers``.
    priors : dict
        Kind priors, used to rank evidence (stronger kinds first).
    max_reasons : int
        How many values to cite.
    window_minutes : float
    burst_min : int
        Burst peers below this are not cited.

    Returns
    -------
    pandas.Series of str
        Indexed by ``accounts.index``.

    Notes
    -----
    Vectorised string building; one group-by join over the cited values of these accounts.
    """
    if accounts.empty:
        return pd.Series([], dtype="string", index=accounts.index)
    ev = shared[shared["row"].isin(accounts["row"])].copy()
    ev["kind"] = bipartite.kinds[ev["identifier"].to_numpy()]
    ev["value"] = bipartite.values[ev["identifier"].to_numpy()]
    prior = ev["kind"].map(priors).fillna(0.0).astype(np.float64)
    ev["rank_key"] = -(prior.to_numpy() + 0.05) * np.log2(ev["in_cluster"].to_numpy())
    ev = ev.sort_values(["row", "rank_key", "kind", "value"])
    ev = ev[ev.groupby("row").cumcount() < max_reasons]
    ev["text"] = (
        ev["kind"].map(KIND_LABELS).fillna(ev["kind"]).astype(str)
        + " "
        + ev["value"].astype(str)
        + " with "
        + (ev["in_cluster"] - 1).astype(str)
        + " accounts"
    )
    joined = ev.groupby("row")["text"].agg(lambda t: ", ".join(t))
    cited = joined.reindex(accounts["row"].to_numpy()).to_numpy()
    head = np.where(
        pd.isna(cited),
        "in cluster " + accounts["cluster_id"].astype(str).to_numpy(),
        "shares "
        + pd.Series(cited, dtype=object).fillna("").astype(str).to_numpy()
        + " of cluster "
        + accounts["cluster_id"].astype(str).to_numpy(),
    )
    head = head + " (" + accounts["cluster_size"].astype(str).to_numpy() + " accounts)"
    peers = accounts["burst_peers"].to_numpy()
    tail = np.where(
        peers >= burst_min,
        f"; created within {window_minutes:g} minutes of " + peers.astype(str) + " of them",
        "",
    )
    return pd.Series(head + tail, index=accounts.index, dtype="string")


@dataclass(frozen=True)
class BehaviourEvidence:
    """Behavioural score terms of every cluster and clustered account.

    Attributes
    ----------
    cluster_features : pandas.DataFrame
        Per cluster (index 0..c-1): the members' mean of each of :data:`BEHAVIOUR_FEATURES`,
        ``guard`` (behaviour credit allowed by the number of payers) and ``traffic`` (the gate
        of synchrony and waking: the larger of output_heavy and model_pivot).
    cluster_logit : numpy.ndarray
        Per cluster, the behavioural addition to the cluster logit (never negative).
    account_logit : numpy.ndarray
        Per account (all rows; 0 outside clusters), the behavioural addition to its logit:
        positive when it shows its cluster's behaviour, negative when it does not.
    account_features : pandas.DataFrame
        Per account row, the account indicators and ``lockstep_partners`` and
        ``lockstep_jaccard`` (partners within its cluster, their mean Jaccard).
    """

    cluster_features: pd.DataFrame
    cluster_logit: np.ndarray
    account_logit: np.ndarray
    account_features: pd.DataFrame


def behaviour_evidence(
    behaviour: pd.DataFrame,
    lockstep: pd.DataFrame,
    cluster_of: np.ndarray,
    n_clusters: int,
    customers: np.ndarray,
    weights: dict[str, float],
    settings: LinkSettings,
) -> BehaviourEvidence:
    """Behavioural score terms: output-heavy traffic, model pivot, lockstep, waking together.

    Parameters
    ----------
    behaviour : pandas.DataFrame
        :func:`linker.graph.behaviour.account_behaviour`, one row per account row.
    lockstep : pandas.DataFrame
        ``LockstepResult.pairs`` (``a``, ``b``, ``jaccard``, ``bucket_minutes``).
    cluster_of : numpy.ndarray
        Cluster index per account, ``-1`` when none.
    n_clusters : int
    customers : numpy.ndarray
        The ``customers`` feature per cluster (0 = one payer).
    weights : dict
        Score weights of :data:`BEHAVIOUR_FEATURES`.
    settings : LinkSettings

    Returns
    -------
    BehaviourEvidence

    Notes
    -----
    Precision first: the terms are scaled by ``guard = min(1, customers / guard_customers)``,
    so a one-customer group (shared card or billing customer) gets no behavioural credit,
    and synchrony and waking count only in proportion to the cluster's ring-like traffic
    (``traffic``): batch pipelines, classes and hackathons are synchronised too. An account
    term is ``weight × cluster feature × (2 × account indicator − 1)``: members who do not
    behave like their cluster are pushed down, and positive terms count in full only for
    accounts that show at least two of the behaviours (output-heavy, pivot, lockstep, waking
    together), at half with one. O(n + pairs).
    """
    cfg = settings.behaviour
    n_acc = len(cluster_of)
    rows = np.flatnonzero(cluster_of >= 0)
    has_traffic = behaviour["n_rows"].to_numpy(np.float64) >= cfg.min_rows

    ratio = behaviour["output_input_ratio"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        heavy = np.clip(np.log(ratio) / np.log(cfg.output_heavy_ratio), 0.0, 1.0)
    heavy = np.where(has_traffic, np.nan_to_num(heavy, nan=0.0), 0.0)

    total = behaviour["pivot_requests_72h"].to_numpy(np.float64)
    share = np.nan_to_num(behaviour["pivot_share_72h"].to_numpy(np.float64), nan=0.0)
    pop = behaviour["pivot_population_72h"].to_numpy(np.float64)
    pop_value = float(np.nanmax(pop)) if np.isfinite(pop).any() else 0.0
    shrunk = (share * total + pop_value * cfg.pivot_prior_requests) / (
        total + cfg.pivot_prior_requests
    )
    span = max(cfg.pivot_full_share - pop_value, 1e-6)
    pivot = np.clip((shrunk - pop_value) / span, 0.0, 1.0)

    a = lockstep["a"].to_numpy(np.int64)
    b = lockstep["b"].to_numpy(np.int64)
    same = (cluster_of[a] >= 0) & (cluster_of[a] == cluster_of[b])
    ends = np.r_[a[same], b[same]]
    jac = np.r_[lockstep["jaccard"].to_numpy()[same], lockstep["jaccard"].to_numpy()[same]]
    partners = np.bincount(ends, minlength=n_acc).astype(np.int64)
    mean_j = np.bincount(ends, weights=jac, minlength=n_acc) / np.maximum(partners, 1)
    widths = np.r_[lockstep["bucket_minutes"].to_numpy()[same]] if same.any() else np.zeros(0)
    width_of = np.zeros(n_acc, dtype=np.int64)
    if same.any():
        # The most frequent width among the account's partners (cited in the reason).
        w_all = np.r_[widths, widths].astype(np.int64)
        frame = pd.DataFrame({"row": ends, "w": w_all}).value_counts().reset_index()
        frame = frame.sort_values(["row", "count", "w"], ascending=[True, False, True])
        first = frame.drop_duplicates("row")
        width_of[first["row"].to_numpy()] = first["w"].to_numpy()
    lock = np.clip(partners / cfg.min_lockstep_partners, 0.0, 1.0)

    from linker.graph.bursts import window_counts  # local: bursts imports nothing of ours

    awake = behaviour["awakened"].to_numpy(bool) & (cluster_of >= 0)
    first_event = pd.to_datetime(behaviour["first_event_at"], utc=True)
    first_s = np.asarray(
        ((first_event - pd.Timestamp(0, tz="UTC")).dt.total_seconds()).fillna(0.0),
        dtype=np.float64,
    )
    woke_with = np.zeros(n_acc, dtype=np.int64)
    woken = np.flatnonzero(awake)
    if len(woken):
        woke_with[woken] = window_counts(
            cluster_of[woken], first_s[woken], cfg.wake_window_hours * 3600.0
        )
    wake = (awake & (woke_with >= 2)).astype(np.float64)

    indicators = {"output_heavy": heavy, "model_pivot": pivot, "lockstep": lock, "aged_wake": wake}
    features = pd.DataFrame(index=pd.RangeIndex(n_clusters))
    size = np.maximum(np.bincount(cluster_of[rows], minlength=n_clusters), 1)
    for name, values in indicators.items():
        sums = np.bincount(cluster_of[rows], weights=values[rows], minlength=n_clusters)
        features[name] = sums / size
    features["guard"] = np.clip(np.asarray(customers) / cfg.guard_customers, 0.0, 1.0)
    features["traffic"] = np.maximum(features["output_heavy"], features["model_pivot"])

    # An account earns full positive behavioural credit only when it shows at least two of
    # the ring behaviours itself (output-heavy, pivot, lockstep with min_lockstep_partners
    # members, waking together), half with
    # one: plenty of honest users are output-heavy, and a few meet a ring's clock by chance.
    support = (heavy >= 0.5).astype(int) + (pivot >= 0.5) + (lock >= 1.0) + (wake >= 1.0)
    corroborated = np.clip(support / 2.0, 0.0, 1.0)
    cluster_logit = np.zeros(n_clusters)
    account_logit = np.zeros(n_acc)
    guard = features["guard"].to_numpy()
    traffic = features["traffic"].to_numpy()
    for name, values in indicators.items():
        f = features[name].to_numpy() * guard * weights.get(name, 0.0)
        if name in _GATED:
            f = f * traffic
        cluster_logit += f
        term = f[cluster_of[rows]] * (2.0 * values[rows] - 1.0)
        account_logit[rows] += np.where(term > 0, term * corroborated[rows], term)

    acc = pd.DataFrame(
        {
            **{name: values for name, values in indicators.items()},
            "lockstep_partners": partners,
            "lockstep_jaccard": mean_j,
            "lockstep_minutes": width_of,
            "woke_with": woke_with,
        }
    )
    return BehaviourEvidence(features, cluster_logit, account_logit, acc)


def behaviour_reasons(
    behaviour: pd.DataFrame, evidence: BehaviourEvidence, rows: np.ndarray
) -> pd.Series:
    """Behavioural reason text of the given account rows ("" when they show none).

    Parameters
    ----------
    behaviour : pandas.DataFrame
        :func:`linker.graph.behaviour.account_behaviour`.
    evidence : BehaviourEvidence
    rows : numpy.ndarray
        Account rows to explain.

    Returns
    -------
    pandas.Series of str, indexed 0..len(rows)-1

    Notes
    -----
    Vectorised string building over the given rows.
    """
    acc = evidence.account_features.iloc[rows].reset_index(drop=True)
    beh = behaviour.iloc[rows].reset_index(drop=True)
    n = len(rows)
    text = pd.Series([""] * n, dtype=object)

    def add(mask: np.ndarray, part: pd.Series) -> None:
        sep = np.where(text[mask].str.len() > 0, "; ", "")
        text[mask] = text[mask] + sep + part[mask]

    lock = acc["lockstep_partners"].to_numpy() >= 1
    add(
        lock,
        "in lockstep with "
        + acc["lockstep_partners"].astype(str)
        + " cluster members (Jaccard "
        + acc["lockstep_jaccard"].map(lambda v: f"{v:.2f}")
        + " over "
        + acc["lockstep_minutes"].astype(str)
        + "-min buckets)",
    )
    heavy = acc["output_heavy"].to_numpy() >= 0.5
    add(
        heavy,
        "output-heavy traffic ("
        + beh["output_input_ratio"].map(lambda v: f"{v:.1f}")
        + "x output over input tokens)",
    )
    pivot = acc["model_pivot"].to_numpy() >= 0.5
    hours = beh["pivot_hours"].fillna(0.0).map(lambda v: f"{v:.0f}")
    add(
        pivot,
        "moved "
        + beh["pivot_share_72h"].fillna(0.0).map(lambda v: f"{v:.0%}")
        + " of its traffic to model "
        + beh["pivot_model"].astype(str)
        + " within "
        + hours
        + " h of release (population: "
        + beh["pivot_population_72h"].fillna(0.0).map(lambda v: f"{v:.0%}")
        + ")",
    )
    wake = acc["aged_wake"].to_numpy() >= 1
    add(
        wake,
        "woke after "
        + beh["dormant_days"].fillna(0.0).map(lambda v: f"{v:.0f}")
        + " dormant days together with "
        + acc["woke_with"].astype(str)
        + " cluster members",
    )
    return text.astype("string")


def behaviour_cluster_reasons(features: pd.DataFrame, which: np.ndarray) -> list[str]:
    """Behavioural summary of the given clusters ("" when they show none).

    Notes
    -----
    A Python loop over the given (flagged) clusters only.
    """
    out = []
    for c in which.tolist():
        f = features.iloc[c]
        parts = []
        if f["lockstep"] > 0:
            parts.append(f"{f['lockstep']:.0%} in lockstep")
        if f["output_heavy"] > 0.05:
            parts.append(f"output-heavy traffic {f['output_heavy']:.0%}")
        if f["model_pivot"] > 0.05:
            parts.append(f"model pivot {f['model_pivot']:.0%}")
        if f["aged_wake"] > 0:
            parts.append(f"{f['aged_wake']:.0%} woke together after dormancy")
        if parts and f["guard"] < 1:
            parts.append(f"behaviour credit x{f['guard']:.2f} (few payers)")
        out.append("; ".join(parts))
    return out
