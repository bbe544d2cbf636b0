"""The innocent population: ordinary people and the ways they legitimately share things.

One builder per group. Each starts from :func:`~linker.scenarios.plan.individuals` and
changes what makes the group what it is: a family's shared card and home, a company's NAT,
corporate card and lockstep cron jobs, a class's sign-up week on a campus /24, a carrier's
gateway, a VPN's exits, an app's system prompt, a proxyware home that doubles as a proxy
exit. The work is vectorised over accounts; loops run over groups (companies, classes,
gateways), never over accounts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linker.scenarios.params import ScenarioParams
from linker.scenarios.plan import (
    BATCH,
    BIN_CONSUMER,
    CODE,
    CRON,
    DEADLINE,
    K_BILLING,
    K_CARD,
    K_DEVICE,
    K_GROUP_PROMPT,
    K_POPULAR,
    NET_AGENCY,
    NET_APP,
    NET_CAMPUS,
    NET_CARRIER,
    NET_OFFICE,
    NET_VENUE,
    NET_VPN,
    OUTPUT_HEAVY,
    V6_CARRIER,
    V6_OFFICE,
    WINDOW,
    Context,
    G,
    R,
    Segment,
    consumer_bins,
    digits,
    draw_countries,
    individuals,
    join,
    key_space,
    make_rng,
    person_locals,
)
from linker.scenarios.render import DAY_US, HOUR_US, block24, ipv4_code, ipv6_code
from linker.scenarios.tables import (
    COMMERCIAL_BINS,
    COMPANY_SUFFIXES,
    COMPANY_WORDS,
    CONSUMER_BINS,
    COUNTRY_TZ,
    LAST_NAMES,
    TLDS,
    UNIVERSITY_WORDS,
    USER_AGENTS,
    VIRTUAL_BINS,
    ua_index,
)

__all__ = ["build_innocents", "group_counts"]

STREAM_GROUP = 100

# Commercial BINs sit after consumer and virtual BINs in the writer's BIN table.
BIN_COMMERCIAL_START = len(CONSUMER_BINS) + len(VIRTUAL_BINS)
_JOBS = pa.array(
    ["etl", "reports", "summarizer", "classifier", "tagging", "translate", "digest",
     "support-triage", "search-index", "qa", "enrich", "moderation"]
)  # fmt: skip


def group_counts(ctx: Context, n_innocent: int) -> dict[str, int]:
    """Innocent accounts per group (``solo`` takes what the shares leave)."""
    p = ctx.params
    shares = {
        "family": p.family_share,
        "company": p.company_share,
        "university": p.university_share,
        "hackathon": p.hackathon_share,
        "cgnat": p.cgnat_share,
        "vpn": p.vpn_share,
        "app": p.app_share,
        "power": p.power_share,
        "proxyware": p.proxyware_share,
        "agency": p.agency_share,
    }
    total = sum(shares.values())
    scale = min(1.0, 0.9 / total) if total > 0 else 1.0
    counts = {g: round(s * scale * n_innocent) for g, s in shares.items()}
    counts = {"solo": n_innocent - sum(counts.values()), **counts}
    return counts


def _partition(
    rng: np.random.Generator,
    total: int,
    draw: Callable[[int], np.ndarray],
    min_size: int,
) -> np.ndarray:
    """Group sizes drawn by ``draw`` that add up to exactly ``total``."""
    if total <= 0:
        return np.zeros(0, np.int64)
    chunks: list[np.ndarray] = []
    acc = 0
    while acc < total:
        more = np.maximum(1, draw(64).astype(np.int64))
        chunks.append(more)
        acc += int(more.sum())
    sizes = np.concatenate(chunks)
    cut = int(np.searchsorted(np.cumsum(sizes), total))
    sizes = sizes[: cut + 1].copy()
    sizes[-1] = total - sizes[:-1].sum()
    if len(sizes) > 1 and sizes[-1] < min_size:
        sizes[-2] += sizes[-1]
        sizes = sizes[:-1]
    return sizes


def _domains(
    rng: np.random.Generator, n: int, reserved: set[str], tlds: tuple[str, ...] = TLDS
) -> np.ndarray:
    """``n`` distinct company-like domains, none of them in ``reserved``."""
    w = np.array(COMPANY_WORDS)[rng.integers(0, len(COMPANY_WORDS), n)]
    s = np.array(COMPANY_SUFFIXES)[rng.integers(0, len(COMPANY_SUFFIXES), n)]
    t = np.array(tlds)[rng.integers(0, len(tlds), n)]
    hyphen = np.where(rng.random(n) < 0.3, "-", "")
    names: pd.Series[str] = pd.Series(np.char.add(np.char.add(w, hyphen), s), dtype=str)
    tld: pd.Series[str] = pd.Series(t, dtype=str)
    domains = names + "." + tld
    for attempt in range(10):
        dup = domains.duplicated() | domains.isin(reserved)
        if not dup.any():
            break
        number = pd.Series(rng.integers(2, 100 * (attempt + 1), n)).astype(str)
        domains = domains.where(~dup, names + "-" + number + "." + tld)
    return domains.to_numpy(dtype=object)


def _unique_locals(local: pa.Array, owner: np.ndarray) -> pa.Array:
    """Make ``local`` unique within each ``owner`` (a domain) by adding a digit run."""
    combined = join(local, "@", digits(owner))
    codes = pc.dictionary_encode(combined).indices.to_numpy()
    _, first = np.unique(codes, return_index=True)
    dup = np.ones(len(codes), dtype=bool)
    dup[first] = False
    if dup.any():
        suffix = digits(np.arange(len(owner)) % 997 + 2)
        local = pc.if_else(pa.array(dup), join(local, suffix), local)
    return local


def _pools(ctx: Context, codes: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Register consecutive pools of ``sizes`` addresses; returns their starts and lengths."""
    start, _ = ctx.add_pool(codes)
    starts = start + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return starts, sizes.astype(np.int64)


def _pick(
    rng: np.random.Generator, starts: np.ndarray, lens: np.ndarray, pool: np.ndarray, base: int
) -> np.ndarray:
    """One address per row from its pool (``pool`` holds the pools from offset ``base``)."""
    return pool[starts - base + (rng.random(len(starts)) * lens).astype(np.int64)]


def _own_cards(ctx: Context, rng: np.random.Generator, seg: Segment, acct: np.ndarray) -> None:
    k = len(acct)
    seg.add_payments(
        acct,
        ctx.next_keys(K_CARD, k),
        consumer_bins(rng, k, ctx.params.innocent_virtual_bin_share),
        seg.country[acct],
        np.minimum(
            seg.created[acct] + (rng.exponential(2.0, k) * DAY_US).astype(np.int64),
            ctx.w_end - HOUR_US,
        ),
    )
    seg.billing[acct] = ctx.next_keys(K_BILLING, k)


def _cgnat(ctx: Context, rng: np.random.Generator, n: int) -> Segment | None:
    p = ctx.params
    lo, hi = math.log(p.cgnat_users_min), math.log(p.cgnat_users_max)
    sizes = _partition(rng, n, lambda k: np.exp(rng.uniform(lo, hi, k)), p.cgnat_users_min)
    n_gw = len(sizes)
    s6 = p.cgnat_ipv6_share
    n4 = p.cgnat_ips_per_gateway
    n6 = round(n4 * s6 / (1 - s6))
    gw4 = np.repeat(np.arange(n_gw), n4)
    hosts4 = (
        np.concatenate([rng.choice(np.arange(1, 255), n4, replace=False) for _ in range(n_gw)])
        if n_gw
        else np.zeros(0, np.int64)
    )
    codes4 = ipv4_code(block24(NET_CARRIER, gw4, ctx.seed), hosts4)
    gw6 = np.repeat(np.arange(n_gw), n6)
    codes6 = ipv6_code(V6_CARRIER, gw6, np.tile(np.arange(1, n6 + 1), n_gw), ctx.seed)
    # Each gateway's pool: its IPv4 addresses then its IPv6 ones.
    per = np.concatenate([codes4.reshape(n_gw, n4), codes6.reshape(n_gw, n6)], axis=1).ravel()
    starts, lens = _pools(ctx, per, np.full(n_gw, n4 + n6))
    ctx.mobile_ips = codes4
    if n == 0:
        return None
    seg = individuals(ctx, rng, n, "cgnat", STREAM_GROUP + G["cgnat"])
    gw = np.repeat(np.arange(n_gw), sizes)
    gw_country = draw_countries(rng, n_gw)
    seg.country = gw_country[gw]
    seg.tz = COUNTRY_TZ[seg.country].astype(np.int64)
    seg.pay_country = seg.country[seg.pay_acct]
    seg.pool_start, seg.pool_len = starts[gw], lens[gw]
    seg.p_pool = np.full(n, 0.9)
    gateway_ip = _pick(rng, seg.pool_start, seg.pool_len, per, int(starts[0]))
    wifi = rng.random(n) < 0.4
    seg.home[:, 0] = np.where(wifi, seg.home[:, 0], gateway_ip)
    seg.home[:, 1] = seg.home[:, 0]
    seg.home[:, 2] = gateway_ip
    seg.signup_ip = _pick(rng, seg.pool_start, seg.pool_len, per, int(starts[0]))
    mobile_ua = np.concatenate(
        [ua_index("Mozilla/5.0 (iPhone"), ua_index("okhttp"), ua_index("apiclient-node")]
    )
    seg.ua = np.where(rng.random(n) < 0.6, rng.choice(mobile_ua, n), seg.ua)
    seg.weight *= 0.7
    return seg


def _family(ctx: Context, rng: np.random.Generator, n: int) -> Segment:
    sizes = _partition(
        rng, n, lambda k: rng.choice([2, 3, 4, 5, 6], k, p=[0.35, 0.3, 0.2, 0.1, 0.05]), 2
    )
    f = len(sizes)
    fam = np.repeat(np.arange(f), sizes)
    seg = individuals(ctx, rng, n, "family", STREAM_GROUP + G["family"], cards=False)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    is_first = np.zeros(n, bool)
    is_first[first] = True
    surname = rng.integers(0, len(LAST_NAMES), f)[fam]
    local, _, _ = person_locals(rng, n, last=surname)
    fam_domain = pa.array(np.where(rng.random(f) < 0.5, "gmail.com", "outlook.com")[fam])
    own_domain = pc.list_element(pc.split_pattern(seg.email, "@"), 1)
    domain = pc.if_else(pa.array(rng.random(n) < 0.5), fam_domain, own_domain)
    seg.email = join(local, "@", domain)
    home = ctx.homes(rng, f)[fam]
    seg.home[:, 0] = home
    seg.home[:, 1] = home
    seg.signup_ip = home
    fam_created = seg.created[first][fam]
    later = np.where(rng.random(n) < 0.3, 0, (rng.exponential(60, n) * DAY_US).astype(np.int64))
    seg.created = np.where(
        is_first, fam_created, np.minimum(fam_created + later, ctx.w_end - DAY_US)
    )
    seg.act_start = np.maximum(seg.act_start, seg.created)
    seg.act_end = np.maximum(seg.act_end, seg.act_start + HOUR_US)
    seg.alt_start, seg.alt_end = seg.act_start.copy(), seg.act_end.copy()
    shared_device = ctx.next_keys(K_DEVICE, f)[fam]
    seg.device = np.where(rng.random(n) < 0.5, shared_device, seg.device)
    seg.country = seg.country[first][fam]
    seg.tz = COUNTRY_TZ[np.maximum(seg.country, 0)].astype(np.int64)
    seg.role = np.where(is_first, R["payer"], R["member"])
    # The payer's card, on every member of most families; else members pay for themselves.
    share_card = (rng.random(f) < 0.85)[fam]
    card = ctx.next_keys(K_CARD, f)
    card_bin = consumer_bins(rng, f, ctx.params.innocent_virtual_bin_share)
    on = np.flatnonzero(share_card)
    seg.add_payments(
        on,
        card[fam[on]],
        card_bin[fam[on]],
        seg.country[on],
        seg.created[on] + (rng.exponential(1.0, len(on)) * DAY_US).astype(np.int64),
    )
    seg.billing[on] = ctx.next_keys(K_BILLING, len(on))
    own = np.flatnonzero(~share_card & (rng.random(n) < ctx.params.paying_share))
    _own_cards(ctx, rng, seg, own)
    seg.weight *= 0.6
    return seg


@dataclass(frozen=True)
class _Companies:
    """Which company each account belongs to, and whether it is staff or a batch account.

    A company's accounts are consecutive: its staff first, then its batch accounts.
    """

    staff: np.ndarray
    """Staff accounts per company."""
    country: np.ndarray
    """Country index per company."""
    comp: np.ndarray
    """Company of each account."""
    pos: np.ndarray
    """Position of each account within its company."""
    is_batch: np.ndarray

    @property
    def n(self) -> int:
        """The number of companies."""
        return len(self.staff)


def _company(ctx: Context, rng: np.random.Generator, n: int) -> Segment:
    """Companies: staff on the office NAT and corporate cards, and lockstep batch accounts.

    The draws from ``rng`` come in a fixed order that the world's bytes depend on: keep it.
    """
    staff, batch = _company_sizes(ctx.params, rng, n)
    sizes = staff + batch
    comp = np.repeat(np.arange(len(sizes)), sizes)
    pos = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    seg = individuals(ctx, rng, n, "company", STREAM_GROUP + G["company"], cards=False)
    domains = _domains(rng, len(sizes), ctx.reserved_domains)
    ctx.reserved_domains.update(domains.tolist())
    co = _Companies(staff, draw_countries(rng, len(sizes)), comp, pos, pos >= staff[comp])
    seg.country = co.country[comp]
    seg.tz = COUNTRY_TZ[seg.country].astype(np.int64)
    _office_nat(ctx, rng, seg, co)
    seg.email = join(_company_locals(rng, co), "@", pa.array(domains[comp]))
    _company_timeline(ctx, rng, seg, co)
    _batch_jobs(ctx, rng, seg, co)
    _company_cards(ctx, rng, seg, co)
    return seg


def _company_sizes(
    p: ScenarioParams, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Staff and batch accounts per company, drawn until the companies fill ``n`` accounts.

    The last company is cut to fit, batch accounts first; it keeps at least one staff.
    """
    staff_l: list[np.ndarray] = []
    batch_l: list[np.ndarray] = []
    acc = 0
    while acc < n:
        staff = np.clip(rng.lognormal(np.log(12), 1.1, 64), 3, p.company_size_max).astype(np.int64)
        has_batch = rng.random(64) < p.batch_company_share
        batch = np.where(has_batch, rng.integers(1, p.batch_accounts_max + 1, 64), 0)
        staff_l.append(staff)
        batch_l.append(batch)
        acc += int((staff + batch).sum())
    staff_all, batch_all = np.concatenate(staff_l), np.concatenate(batch_l)
    total = np.cumsum(staff_all + batch_all)
    c_n = int(np.searchsorted(total, n)) + 1
    staff_all, batch_all = staff_all[:c_n].copy(), batch_all[:c_n].copy()
    over = int((staff_all + batch_all).sum()) - n
    batch_all[-1] = max(0, batch_all[-1] - over)
    staff_all[-1] = n - int(staff_all[:-1].sum() + batch_all.sum())
    if staff_all[-1] < 1:
        staff_all[-1] += batch_all[-1]
        batch_all[-1] = 0
    return staff_all, batch_all


def _office_nat(ctx: Context, rng: np.random.Generator, seg: Segment, co: _Companies) -> None:
    """Office NAT: 1-4 addresses in the company's office /24 (big offices also on IPv6).

    Batch accounts always go out through it, staff most of the time.
    """
    n_nat = rng.integers(1, 5, co.n)
    nat_c = np.repeat(np.arange(co.n), n_nat)
    nat = ipv4_code(block24(NET_OFFICE, nat_c, ctx.seed), rng.integers(1, 255, len(nat_c)))
    v6 = (co.staff > 100)[nat_c] & (rng.random(len(nat_c)) < 0.5)
    nat = np.where(
        v6, ipv6_code(V6_OFFICE, nat_c, rng.integers(1, 1 << 16, len(nat_c)), ctx.seed), nat
    )
    starts, lens = _pools(ctx, nat, n_nat)
    seg.pool_start, seg.pool_len = starts[co.comp], lens[co.comp]
    seg.p_pool = np.where(co.is_batch, 1.0, 0.7)
    seg.signup_ip = _pick(rng, seg.pool_start, seg.pool_len, nat, int(starts[0]))


def _company_locals(rng: np.random.Generator, co: _Companies) -> pa.Array:
    """Mailbox local parts, unique within each company.

    Staff have ``first.last``; batch accounts a job name (``svc-etl``, ``batch-digest-14``).
    """
    local, _, _ = person_locals(rng, len(co.comp))
    local = pc.replace_substring_regex(local, r"[0-9_-]", ".")
    local = pc.utf8_trim(pc.replace_substring_regex(local, r"\.+", "."), ".")
    pos = co.pos
    job = _JOBS.take(pa.array(pos % len(_JOBS)))
    # Past the list of job names, a batch account's name takes its position as a number.
    job = pc.if_else(
        pa.array(pos - co.staff[co.comp] >= len(_JOBS)), join(job, "-", digits(pos)), job
    )
    svc = join(pa.array(np.where(rng.random(len(pos)) < 0.5, "svc-", "batch-")), job)
    local = pc.if_else(pa.array(co.is_batch), svc, local)
    return _unique_locals(local, co.comp)


def _company_timeline(ctx: Context, rng: np.random.Generator, seg: Segment, co: _Companies) -> None:
    """Sign-ups, activity, roles and templates.

    Staff join over the company's life; its batch accounts are set up within 40 minutes of
    each other and run to the end of the window.
    """
    comp, is_batch, n = co.comp, co.is_batch, len(co.comp)
    founded = ctx.w0 - (rng.uniform(30, 900, co.n) * DAY_US).astype(np.int64)
    joined = founded[comp] + (rng.random(n) * (ctx.w_end - DAY_US - founded[comp])).astype(np.int64)
    last_setup = ctx.params.window_days - 20
    setup = ctx.w0 + (rng.uniform(-200, last_setup, co.n) * DAY_US).astype(np.int64)
    batch_created = setup[comp] + (rng.uniform(0, 40, n) * 60_000_000).astype(np.int64)
    seg.created = np.where(is_batch, batch_created, joined)
    seg.act_start = np.maximum(seg.created, ctx.w0)
    seg.act_end = np.where(is_batch, ctx.w_end, np.maximum(seg.act_end, seg.act_start + HOUR_US))
    seg.alt_start, seg.alt_end = seg.act_start.copy(), seg.act_end.copy()
    seg.role = np.where(is_batch, R["batch"], R["staff"])
    seg.gt_base = np.where(
        is_batch,
        key_space(K_GROUP_PROMPT, comp * 64 + co.pos, 2),
        key_space(K_GROUP_PROMPT, comp * 2, 1),
    )
    seg.gt_n = np.where(is_batch, 1, 2)
    seg.p_gt = np.where(is_batch, 0.95, 0.25)


def _batch_jobs(ctx: Context, rng: np.random.Generator, seg: Segment, co: _Companies) -> None:
    """Batch jobs: cron slots of the company, one server, one client library, lockstep."""
    comp, is_batch, n = co.comp, co.is_batch, len(co.comp)
    batch_ua = np.concatenate([ua_index("python-requests/2.3"), ua_index("apiclient-python/1.5")])
    c_ua = rng.choice(batch_ua, co.n)
    server = ctx.next_keys(K_DEVICE, co.n)
    seg.device = np.where(is_batch, server[comp], seg.device)
    seg.dev2 = np.where(is_batch, -1, seg.dev2)
    seg.ua = np.where(is_batch, c_ua[comp], seg.ua)
    seg.ua2 = np.where(is_batch, c_ua[comp], seg.ua2)
    n_slots = rng.integers(1, 5, co.n)
    slot_hours = np.where(
        rng.random((co.n, 1)) < 0.5, rng.uniform(0, 6, (co.n, 4)), rng.uniform(0, 24, (co.n, 4))
    )
    c_tz = COUNTRY_TZ[co.country].astype(np.float64)
    slots = ((slot_hours - c_tz[:, None]) % 24 * 3600).astype(np.int64)
    slots = (slots // 300) * 300  # cron fires on the five minutes
    ref0 = len(ctx.cron_n)
    ctx.cron_slots = np.concatenate([ctx.cron_slots, slots])
    ctx.cron_n = np.concatenate([ctx.cron_n, n_slots])
    seg.sched = np.where(is_batch, CRON, seg.sched)
    seg.sched_ref = np.where(is_batch, ref0 + comp, 0)
    seg.profile = np.where(is_batch, BATCH, seg.profile)
    seg.req_mu = np.where(is_batch, np.log(rng.uniform(5, 40, n)), seg.req_mu)
    seg.home[:, 2] = np.where(is_batch, seg.home[:, 0], seg.home[:, 2])
    seg.weight = np.where(is_batch, 3.0 * rng.lognormal(0, 0.5, n), seg.weight * 1.2)
    # A company moves its batch jobs to the new model all at once, if it does.
    migrate = rng.random(co.n) < ctx.params.early_adopter_share
    lag = (rng.exponential(7.0, co.n) * DAY_US).astype(np.int64)
    seg.new_share = np.where(is_batch, np.where(migrate[comp], 1.0, 0.0), seg.new_share)
    seg.new_lag = np.where(is_batch, lag[comp], seg.new_lag)


def _company_cards(ctx: Context, rng: np.random.Generator, seg: Segment, co: _Companies) -> None:
    """Billing customers and cards.

    Where a company shares its corporate card, most staff pay with it; elsewhere about half
    pay with their own. A company's batch accounts have no card, the corporate card, or a
    card each.
    """
    p = ctx.params
    comp, is_batch, n = co.comp, co.is_batch, len(co.comp)
    shared_bill = rng.random(co.n) < p.company_billing_share
    bill = ctx.next_keys(K_BILLING, co.n)
    corp_card = ctx.next_keys(K_CARD, co.n)
    corp_bin = BIN_COMMERCIAL_START + rng.integers(0, len(COMMERCIAL_BINS), co.n)
    shared_card = rng.random(co.n) < p.company_shared_card_share
    u = rng.random(co.n)
    policy = np.where(
        u < p.batch_no_card_share,
        0,
        np.where(u < p.batch_no_card_share + p.batch_shared_card_share, 1, 2),
    )
    on_corp = np.where(is_batch, policy[comp] == 1, shared_card[comp] & (rng.random(n) < 0.9))
    own = np.where(is_batch, policy[comp] == 2, ~shared_card[comp] & (rng.random(n) < 0.5))
    corp = np.flatnonzero(on_corp)
    seg.add_payments(
        corp, corp_card[comp[corp]], corp_bin[comp[corp]], seg.country[corp],
        seg.created[corp] + (rng.uniform(0, 2, len(corp)) * HOUR_US).astype(np.int64),
    )  # fmt: skip
    own_idx = np.flatnonzero(own)
    k = len(own_idx)
    own_bin = np.where(
        is_batch[own_idx],
        BIN_COMMERCIAL_START + rng.integers(0, len(COMMERCIAL_BINS), k),
        rng.choice(BIN_CONSUMER, k),
    )
    seg.add_payments(
        own_idx, ctx.next_keys(K_CARD, k), own_bin, seg.country[own_idx],
        seg.created[own_idx] + (rng.uniform(0, 48, k) * HOUR_US).astype(np.int64),
    )  # fmt: skip
    has_card = on_corp | own
    seg.billing = np.where(
        shared_bill[comp], bill[comp], np.where(has_card, ctx.next_keys(K_BILLING, n), -1)
    )


def _university(ctx: Context, rng: np.random.Generator, n: int) -> Segment:
    p = ctx.params
    sizes = _partition(rng, n, lambda k: rng.integers(20, p.class_size_max + 1, k), 10)
    n_cls = len(sizes)
    cls = np.repeat(np.arange(n_cls), sizes)
    n_uni = max(1, math.ceil(n_cls / 6))
    uni = rng.integers(0, n_uni, n_cls)
    word = np.array(UNIVERSITY_WORDS)[np.arange(n_uni) % len(UNIVERSITY_WORDS)]
    suffix = np.where(
        np.arange(n_uni) < len(UNIVERSITY_WORDS),
        "",
        (np.arange(n_uni) // len(UNIVERSITY_WORDS)).astype(str),
    )
    domain = np.char.add(np.char.add(word, suffix), ".edu")
    u_country = np.where(rng.random(n_uni) < 0.6, 0, draw_countries(rng, n_uni))
    # Campus: two /24s; the NAT pool is eight addresses across them.
    nat_u = np.repeat(np.arange(n_uni), 8)
    nat = ipv4_code(
        block24(NET_CAMPUS, nat_u * 2 + rng.integers(0, 2, len(nat_u)), ctx.seed),
        rng.integers(1, 255, len(nat_u)),
    )
    starts, lens = _pools(ctx, nat, np.full(n_uni, 8))
    seg = individuals(ctx, rng, n, "university", STREAM_GROUP + G["university"], cards=False)
    su = uni[cls]
    seg.country = u_country[su]
    seg.tz = COUNTRY_TZ[seg.country].astype(np.int64)
    start = ctx.w0 + (rng.uniform(-100, p.window_days - 21, n_cls) * DAY_US).astype(np.int64)
    seg.created = start[cls] + (rng.random(n) * p.class_signup_days * DAY_US).astype(np.int64)
    seg.signup_ip = ipv4_code(
        block24(NET_CAMPUS, su * 2 + rng.integers(0, 2, n), ctx.seed), rng.integers(1, 255, n)
    )
    local, _, _ = person_locals(rng, n)
    local = pc.utf8_trim(
        pc.replace_substring_regex(pc.replace_substring_regex(local, r"[0-9_-]", "."), r"\.+", "."),
        ".",
    )
    sid = join("s", digits(rng.integers(1_000_000, 9_999_999, n)))
    local = pc.if_else(pa.array(rng.random(n) < 0.4), sid, local)
    local = _unique_locals(local, su)
    sub = np.where(rng.random(n_uni) < 0.5, "", "student.")
    seg.email = join(local, "@", pa.array(np.char.add(sub, domain)[su]))
    lab = ctx.next_keys(K_DEVICE, n_cls * 8)
    seg.device = np.where(rng.random(n) < 0.2, lab[cls * 8 + rng.integers(0, 8, n)], seg.device)
    seg.pool_start, seg.pool_len = starts[su], lens[su]
    seg.p_pool = np.full(n, 0.55)
    seg.sched = np.full(n, DEADLINE)
    seg.sched_ref = cls.astype(np.int64)
    seg.act_start = np.maximum(seg.created, ctx.w0)
    seg.act_end = np.maximum(
        np.minimum(ctx.w_end, start[cls] + 120 * DAY_US), seg.act_start + HOUR_US
    )
    seg.alt_start, seg.alt_end = seg.act_start.copy(), seg.act_end.copy()
    seg.gt_base = key_space(K_GROUP_PROMPT, cls * 4, 3)
    seg.gt_n = np.full(n, 3)
    seg.p_gt = np.full(n, 0.45)
    seg.role = np.full(n, R["student"])
    for c in range(n_cls):  # one loop step per class
        at = np.arange(start[c] + 7 * DAY_US, ctx.w_end, int(rng.uniform(7, 14) * DAY_US))
        ctx.add_deadlines(c, at + 23 * HOUR_US)
    paying = np.flatnonzero(rng.random(n) < 0.15)
    _own_cards(ctx, rng, seg, paying)
    return seg


def _hackathon(ctx: Context, rng: np.random.Generator, n: int) -> Segment:
    p = ctx.params
    sizes = _partition(rng, n, lambda k: rng.integers(30, p.hackathon_size_max + 1, k), 10)
    n_h = len(sizes)
    h = np.repeat(np.arange(n_h), sizes)
    seg = individuals(ctx, rng, n, "hackathon", STREAM_GROUP + G["hackathon"], cards=False)
    country = draw_countries(rng, n_h)
    tz = COUNTRY_TZ[country].astype(np.int64)
    day = rng.integers(3, p.window_days - 5, n_h)
    start = ctx.w0 + day * DAY_US + (9 - tz) * HOUR_US
    venue_h = np.repeat(np.arange(n_h), 2)
    venue = ipv4_code(block24(NET_VENUE, venue_h, ctx.seed), rng.integers(1, 255, len(venue_h)))
    starts, lens = _pools(ctx, venue, np.full(n_h, 2))
    seg.country, seg.tz = country[h], tz[h]
    seg.created = start[h] - (rng.random(n) * p.hackathon_signup_hours * HOUR_US).astype(np.int64)
    seg.pool_start, seg.pool_len = starts[h], lens[h]
    seg.p_pool = np.full(n, 0.85)
    seg.signup_ip = venue[seg.pool_start - int(starts[0])]  # the venue's main address
    seg.sched = np.full(n, WINDOW)
    seg.act_start = start[h].copy()
    seg.act_end = start[h] + 36 * HOUR_US
    go_on = rng.random(n) < 0.25
    seg.p_alt = np.where(go_on, 0.3, 0.0)
    seg.alt_start = seg.act_end.copy()
    seg.alt_end = np.full(n, ctx.w_end)
    seg.gt_base = key_space(K_GROUP_PROMPT, h, 4)
    seg.gt_n = np.ones(n, np.int64)
    seg.p_gt = np.full(n, 0.6)
    seg.role = np.full(n, R["participant"])
    seg.weight = np.where(seg.weight > 0, 1.5 * rng.lognormal(0, 0.6, n), 0.0)
    _own_cards(ctx, rng, seg, np.flatnonzero(rng.random(n) < 0.3))
    return seg


def _vpn(ctx: Context, rng: np.random.Generator, n: int) -> Segment:
    p = ctx.params
    n_exit = p.vpn_exits
    # Three providers, each with a data-centre /24 per country it serves (more /24s where
    # a location has more than 250 exits): fewer countries pack more exits per subnet.
    provider = np.arange(n_exit) % 3
    location = rng.integers(0, p.vpn_countries, n_exit)
    site = provider * p.vpn_countries + location
    slot = pd.Series(site).groupby(site).cumcount().to_numpy()
    block = (site * 8 + slot // 250).astype(np.int64)
    exits = ipv4_code(block24(NET_VPN, block, ctx.seed), slot % 250 + 2)
    residential = rng.random(n_exit) < p.vpn_residential_share
    source = ctx.ring_exits if len(ctx.ring_exits) else ctx.exits
    if len(source):
        exits = np.where(residential, source[rng.integers(0, len(source), n_exit)], exits)
    order = np.argsort(provider, kind="stable")
    starts, lens = _pools(ctx, exits[order], np.bincount(provider, minlength=3))
    seg = individuals(ctx, rng, n, "vpn", STREAM_GROUP + G["vpn"])
    user_provider = rng.integers(0, 3, n)
    seg.pool_start, seg.pool_len = starts[user_provider], lens[user_provider]
    seg.p_pool = np.full(n, 0.85)
    via = _pick(rng, seg.pool_start, seg.pool_len, exits[order], int(starts[0]))
    seg.signup_ip = np.where(rng.random(n) < 0.7, via, seg.home[:, 0])
    seg.weight *= 0.8
    return seg


def _app(ctx: Context, rng: np.random.Generator, n: int) -> Segment:
    p = ctx.params
    seg = individuals(ctx, rng, n, "app", STREAM_GROUP + G["app"])
    app_prompt = (
        key_space(K_POPULAR, 1) if p.popular_templates >= 2 else key_space(K_GROUP_PROMPT, 0, 5)
    )
    hosted = rng.random(n) < p.app_hosted_share
    backend = ipv4_code(
        block24(NET_APP, np.array([0, 0, 0, 1, 1, 1]), ctx.seed), np.array([10, 11, 12, 40, 41, 42])
    )
    start, length = ctx.add_pool(backend)
    desktop = USER_AGENTS.index("Quillmate/4.2.1 (+https://quillmate.app)")
    mobile = USER_AGENTS.index("Quillmate-Mobile/4.2.0 (iOS 17.5)")
    seg.ua = np.where(hosted | (rng.random(n) < 0.6), desktop, mobile)
    seg.ua2 = seg.ua.copy()
    seg.gt_base = np.full(n, app_prompt, np.int64)
    seg.gt_n = np.ones(n, np.int64)
    seg.p_gt = np.full(n, 0.85)
    seg.profile = np.full(n, OUTPUT_HEAVY)
    seg.pool_start = np.where(hosted, start, 0)
    seg.pool_len = np.where(hosted, length, 0)
    seg.p_pool = np.where(hosted, 1.0, 0.0)
    seg.device = np.where(hosted, -1, seg.device)
    seg.dev2 = np.where(hosted, -1, seg.dev2)
    seg.role = np.where(hosted, R["integration"], R["user"])
    seg.weight = np.where(hosted, 4.0, 1.2) * seg.weight
    seg.req_mu = np.where(hosted, np.log(rng.uniform(5, 30, n)), seg.req_mu)
    return seg


def _power(ctx: Context, rng: np.random.Generator, n: int) -> Segment:
    seg = individuals(ctx, rng, n, "power", STREAM_GROUP + G["power"])
    ide = np.concatenate(
        [
            ua_index("codepilot"),
            ua_index("Cursor"),
            ua_index("aider"),
            ua_index("apiclient-python/1.5"),
        ]
    )
    seg.ua = rng.choice(ide, n)
    seg.profile = np.full(n, CODE)
    seg.n_own = np.full(n, 4)
    seg.p_own = np.full(n, 0.7)
    seg.weight = 8.0 * rng.lognormal(0, 0.7, n) * (seg.weight > 0)
    seg.req_mu = np.log(rng.uniform(3, 12, n))
    return seg


def _proxyware(ctx: Context, rng: np.random.Generator, n: int) -> Segment:
    seg = individuals(ctx, rng, n, "proxyware", STREAM_GROUP + G["proxyware"])
    source = ctx.ring_exits if len(ctx.ring_exits) else ctx.exits
    if len(source):
        pick = rng.choice(len(source), n, replace=n > len(source))
        home = source[pick]
        seg.home[:, 0] = home
        seg.home[:, 1] = home
        seg.signup_ip = home
    return seg


def _agency(ctx: Context, rng: np.random.Generator, n: int) -> Segment:
    p = ctx.params
    sizes = _partition(rng, n, lambda k: rng.integers(5, p.agency_size_max + 1, k), 5)
    n_a = len(sizes)
    a = np.repeat(np.arange(n_a), sizes)
    seg = individuals(ctx, rng, n, "agency", STREAM_GROUP + G["agency"], cards=False)
    country = draw_countries(rng, n_a)
    seg.country = country[a]
    seg.tz = COUNTRY_TZ[seg.country].astype(np.int64)
    office_a = np.repeat(np.arange(n_a), 2)
    office = ipv4_code(block24(NET_AGENCY, office_a, ctx.seed), rng.integers(1, 255, len(office_a)))
    starts, lens = _pools(ctx, office, np.full(n_a, 2))
    seg.pool_start, seg.pool_len = starts[a], lens[a]
    seg.p_pool = np.full(n, 0.9)
    seg.signup_ip = _pick(rng, seg.pool_start, seg.pool_len, office, int(starts[0]))
    agency_domain = _domains(rng, n_a, ctx.reserved_domains)
    ctx.reserved_domains.update(agency_domain.tolist())
    client_domain = _domains(rng, n, ctx.reserved_domains)
    ctx.reserved_domains.update(client_domain.tolist())
    role_local = pa.array(["marketing", "content", "hello", "team", "social", "growth"]).take(
        pa.array(rng.integers(0, 6, n))
    )
    client = pc.utf8_slice_codeunits(pa.array(client_domain.astype(str)), 0, 12)
    client = pc.replace_substring_regex(client, r"[^a-z0-9]", "")
    plus = join("ops+", client, "@", pa.array(agency_domain[a]))
    seg.email = pc.if_else(
        pa.array(rng.random(n) < 0.4), plus, join(role_local, "@", pa.array(client_domain))
    )
    since = ctx.w0 - (rng.uniform(0, 400, n_a) * DAY_US).astype(np.int64)
    seg.created = since[a] + (rng.random(n) * (ctx.w_end - DAY_US - since[a])).astype(np.int64)
    seg.act_start = np.maximum(seg.created, ctx.w0)
    seg.act_end = np.full(n, ctx.w_end)
    seg.alt_start, seg.alt_end = seg.act_start.copy(), seg.act_end.copy()
    staff_devices = ctx.next_keys(K_DEVICE, n_a * 10)
    n_staff = rng.integers(3, 11, n_a)
    seg.device = staff_devices[a * 10 + (rng.random(n) * n_staff[a]).astype(np.int64)]
    seg.dev2 = staff_devices[a * 10 + (rng.random(n) * n_staff[a]).astype(np.int64)]
    seg.gt_base = key_space(K_GROUP_PROMPT, a, 6)
    seg.gt_n = np.ones(n, np.int64)
    seg.p_gt = np.full(n, 0.5)
    seg.profile = np.full(n, OUTPUT_HEAVY)
    seg.role = np.full(n, R["client"])
    seg.weight = 2.0 * seg.weight
    card = ctx.next_keys(K_CARD, n_a)
    card_bin = np.where(
        rng.random(n_a) < 0.5,
        BIN_COMMERCIAL_START + rng.integers(0, len(COMMERCIAL_BINS), n_a),
        rng.choice(BIN_CONSUMER, n_a),
    )
    seg.add_payments(
        np.arange(n), card[a], card_bin[a], seg.country,
        seg.created + (rng.uniform(0, 30, n) * 60_000_000).astype(np.int64),
    )  # fmt: skip
    seg.billing = ctx.next_keys(K_BILLING, n_a)[a]
    return seg


def build_innocents(ctx: Context, n_innocent: int) -> list[Segment]:
    """Every innocent group of the world, each drawn from its own stream."""
    counts = group_counts(ctx, n_innocent)
    segments: list[Segment] = []
    rng_cgnat = make_rng(ctx.seed, STREAM_GROUP + G["cgnat"])
    # Carrier gateways first: everyone's occasional mobile traffic goes through them.
    cg = _cgnat(ctx, rng_cgnat, counts["cgnat"])
    if cg is not None:
        segments.append(cg)
    builders: dict[str, Callable[[Context, np.random.Generator, int], Segment]] = {
        "solo": lambda c, r, k: individuals(c, r, k, "solo", STREAM_GROUP + G["solo"]),
        "family": _family,
        "company": _company,
        "university": _university,
        "hackathon": _hackathon,
        "vpn": _vpn,
        "app": _app,
        "power": _power,
        "proxyware": _proxyware,
        "agency": _agency,
    }
    for name, build in builders.items():
        k = counts[name]
        if k <= 0:
            continue
        segments.append(build(ctx, make_rng(ctx.seed, STREAM_GROUP + G[name]), k))
    return segments
