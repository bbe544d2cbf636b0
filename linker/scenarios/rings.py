"""Distillation rings: the residential-proxy network and the rings that rent it.

A ring is one campaign: one or two *controllers* (operators with their own clock, proxy
pool, sign-up bursts, device pool and mailbox habit) that share a family of prompt
templates. A ring's accounts are drawn from streams keyed by the seed and the ring's number
only, so a ring of the same size is the same ring in a world of any population.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linker.errors import SettingsError
from linker.scenarios.params import MIN_RING_SIZE, ScenarioParams
from linker.scenarios.plan import (
    BIN_VIRTUAL,
    DISTILL,
    HOUR_US,
    K_RING_ACCOUNT,
    K_RING_BILLING,
    K_RING_CARD,
    K_RING_DEVICE,
    K_RING_PROMPT,
    NET_RES,
    SESSIONS,
    V6_RES,
    Context,
    G,
    R,
    Segment,
    concat_segments,
    digits,
    join,
    key_space,
    make_rng,
    person_locals,
)
from linker.scenarios.render import DAY_US, block24, ipv4_code, ipv6_code
from linker.scenarios.tables import (
    CHEAP_DOMAINS,
    COMPANY_SUFFIXES,
    COMPANY_WORDS,
    COUNTRIES,
    COUNTRY_WEIGHTS,
    USER_AGENTS,
    ua_index,
)

__all__ = ["build_network", "build_ring", "plan_ring_sizes", "popular_shares"]

STREAM_RING_SIZES = 11
STREAM_NETWORK = 12
STREAM_RING = 1000

# Issuing countries of the virtual BINs, by BIN index (fixed).
_VIRTUAL_COUNTRY = np.array(
    [COUNTRIES.index(c) for c in ("US", "GB", "SG", "HK", "NL", "AE", "US", "GB")], np.int64
)
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_ALNUM = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)


def plan_ring_sizes(
    params: ScenarioParams, n_accounts: int, ring_accounts: int | None, seed: int
) -> tuple[list[int], float]:
    """The ring sizes of a world and the factor they were scaled by to fit.

    Sizes come from ``ring_sizes`` (rescaled to total ``ring_accounts`` when given), or split
    ``ring_accounts`` (else ``ring_fraction`` of ``n_accounts``) over ``n_rings`` rings with
    weights drawn from the seed alone. When the rings would exceed ``max_ring_fraction`` of
    ``n_accounts`` they are all scaled down by the same factor (each keeps at least
    :data:`MIN_RING_SIZE` accounts).

    Raises
    ------
    SettingsError
        When even rings of the minimum size do not fit.
    """
    if params.ring_sizes:
        sizes = np.array(params.ring_sizes, dtype=np.float64)
        if ring_accounts is not None:
            sizes = sizes * ring_accounts / sizes.sum()
    else:
        total = ring_accounts if ring_accounts is not None else params.ring_fraction * n_accounts
        weights = make_rng(seed, STREAM_RING_SIZES).lognormal(0.0, 0.8, params.n_rings)
        sizes = total * weights / weights.sum()
    cap = params.max_ring_fraction * n_accounts
    scale = 1.0
    if sizes.sum() > cap:
        scale = cap / float(sizes.sum())
        sizes = sizes * scale
    out = np.maximum(MIN_RING_SIZE, np.round(sizes)).astype(np.int64)
    if out.sum() > cap + MIN_RING_SIZE:
        raise SettingsError(
            [
                f"{len(out)} rings of at least {MIN_RING_SIZE} accounts do not fit in "
                f"{params.max_ring_fraction:.0%} of {n_accounts} accounts"
            ]
        )
    return [int(s) for s in out], scale


def popular_shares(params: ScenarioParams) -> np.ndarray:
    """Share of active accounts sending each popular template (the top one first)."""
    return params.popular_template_share * 0.55 ** np.arange(params.popular_templates)


def build_network(ctx: Context, sizes: list[int]) -> None:
    """The residential-proxy network the rings rent exits from (seed and sizes only).

    Exits are home addresses in the residential space (90% IPv4, 10% IPv6), each in a
    country. The network has at least twice the exits the rings' pools need.
    """
    p = ctx.params
    need = sum(math.ceil(s * p.proxy_pool_per_account) + 40 for s in sizes)
    size = max(p.proxy_network_size, 2 * need)
    rng = make_rng(ctx.seed, STREAM_NETWORK)
    country = rng.choice(len(COUNTRIES), size, p=COUNTRY_WEIGHTS)
    v6 = rng.random(size) < 0.1
    blocks = block24(NET_RES, rng.integers(0, math.ceil(size / 4), size), ctx.seed)
    codes4 = ipv4_code(blocks, rng.integers(1, 255, size))
    codes6 = ipv6_code(
        V6_RES,
        rng.integers(0, math.ceil(size / 16), size),
        rng.integers(0, 1 << 24, size),
        ctx.seed,
    )
    codes = np.where(v6, codes6, codes4)
    _, first = np.unique(codes, return_index=True)
    keep = np.sort(first)
    ctx.exits = codes[keep]
    ctx.exit_country = country[keep].astype(np.int64)


def _random_strings(
    rng: np.random.Generator, n: int, lo: int, hi: int, alphabet: np.ndarray
) -> pa.Array:
    chars = alphabet[rng.integers(0, len(alphabet), (n, hi))]
    length = rng.integers(lo, hi + 1, n)
    chars[np.arange(hi)[None, :] >= length[:, None]] = ord(" ")
    flat = np.ascontiguousarray(chars).view(f"S{hi}").ravel()
    return pc.replace_substring(pa.array(flat, pa.binary()).cast(pa.string()), " ", "")


def _dot_variants(rng: np.random.Generator, n: int) -> pa.Array:
    """Gmail addresses that are one mailbox each per 64 accounts, spelt with dots."""
    length = 12
    per_base = 64
    n_bases = math.ceil(n / per_base)
    local, _, _ = person_locals(rng, n_bases)
    name = pc.replace_substring_regex(local, r"[^a-z]", "")
    padded = join(name, _random_strings(rng, n_bases, length, length, _LETTERS))
    base = pc.utf8_slice_codeunits(padded, 0, length)
    fixed = base.to_numpy(zero_copy_only=False).astype(f"S{length}")
    letters = fixed.view(np.uint8).reshape(n_bases, length)
    which = np.arange(n) // per_base
    j = np.arange(n) % per_base
    base_salt = rng.integers(0, 2047, n_bases)[which]
    mask = ((j + 1) * 1021 + base_salt) % 2047 + 1
    out = np.full((n, 2 * length - 1), ord(" "), dtype=np.uint8)
    out[:, 0::2] = letters[which]
    bits = (mask[:, None] >> np.arange(length - 1)[None, :]) & 1
    out[:, 1::2] = np.where(bits == 1, ord("."), ord(" "))
    flat = np.ascontiguousarray(out).view(f"S{2 * length - 1}").ravel()
    locals_ = pc.replace_substring(pa.array(flat, pa.binary()).cast(pa.string()), " ", "")
    domain = np.where(rng.random(n) < 0.9, "gmail.com", "googlemail.com")
    return join(locals_, "@", pa.array(domain))


def _ring_emails(rng: np.random.Generator, n: int, style: str, domain: str | None) -> pa.Array:
    if style == "dot_trick":
        return _dot_variants(rng, n)
    if style == "plus_tag":
        n_bases = math.ceil(n / 100)
        base, _, _ = person_locals(rng, n_bases)
        base_domain = pa.array(["gmail.com", "outlook.com", "proton.me", "icloud.com"]).take(
            pa.array(rng.integers(0, 4, n_bases))
        )
        which = pa.array(np.arange(n) // 100)
        tag = _random_strings(rng, n, 3, 8, _ALNUM)
        return join(base.take(which), "+", tag, "@", base_domain.take(which))
    if style == "sequential":
        n_bases = math.ceil(n / 200)
        base, _, _ = person_locals(rng, n_bases)
        base = pc.replace_substring_regex(base, r"[^a-z]", "")
        which = np.arange(n) // 200
        counter = rng.integers(0, 5000, n_bases)[which] + np.arange(n) % 200
        num = pc.utf8_lpad(digits(counter), 4, "0")
        doms = pa.array(["outlook.com", "hotmail.com", "mail.com", "gmx.com", "yahoo.com"])
        dom = doms.take(pa.array(rng.integers(0, len(doms), n_bases)[which]))
        return join(base.take(pa.array(which)), num, "@", dom)
    if style == "own_domain":
        assert domain is not None
        local, _, _ = person_locals(rng, n)
        local = pc.replace_substring_regex(local, r"[0-9_-]", ".")
        local = pc.replace_substring_regex(local, r"\.+", ".")
        local = pc.utf8_trim(local, ".")
        dup = pa.array(_duplicated(local))
        local = pc.if_else(dup, join(local, digits(np.arange(n))), local)
        return join(local, "@", domain)
    local = _random_strings(rng, n, 8, 12, _ALNUM)
    doms = pa.array(CHEAP_DOMAINS)
    return join(local, "@", doms.take(pa.array(rng.integers(0, len(doms), n))))


def _duplicated(values: pa.Array) -> np.ndarray:
    import pandas as pd

    return pd.Series(values.to_numpy(zero_copy_only=False)).duplicated().to_numpy()


# The client a controller scripts its accounts with: the vendor SDK most often, else a
# generic HTTP library.
_SDK_AGENTS = ua_index("apiclient-python/1.6")
_TOOL_AGENTS = np.array(
    [
        USER_AGENTS.index(a)
        for a in (
            "python-requests/2.31.0",
            "python-httpx/0.27.0",
            "Python/3.11 aiohttp/3.9.5",
            "Go-http-client/2.0",
        )
    ]
)


@dataclass(frozen=True)
class _ProxyPool:
    """A controller's rented proxy exits, registered in the world's pools."""

    codes: np.ndarray
    country: np.ndarray
    """Country index of each exit."""
    countries: np.ndarray
    """The countries the controller rents exits in."""
    start: int
    length: int


def _controller(
    ctx: Context,
    rng: np.random.Generator,
    ring: int,
    ctrl: int,
    n: int,
    family: tuple[int, int],
    bins: np.ndarray,
    style: str,
    domain: str | None,
) -> Segment:
    """The ``n`` accounts of controller ``ctrl`` (0 or 1) of ring number ``ring``.

    ``family`` is the controller's range of the ring's prompt templates and ``bins`` the
    ring's virtual BINs; ``style`` and ``domain`` shape its mailboxes. The draws from ``rng``
    come in a fixed order that the world's bytes (and the ring's sameness at any world size)
    depend on: keep it.
    """
    p = ctx.params
    controller = ring * 2 + ctrl
    tz = int(rng.choice([-8, -5, -3, 0, 1, 2, 3, 5, 7, 8, 9]))
    pool = _rent_proxy_pool(ctx, rng, n)
    first, created = _signup_bursts(ctx, rng, n)
    _add_operating_sessions(ctx, rng, controller, first, tz)
    idx = np.arange(n, dtype=np.int64)
    signup_pick = rng.integers(0, pool.length, n)
    sticky = pool.codes[rng.integers(0, pool.length, n)]
    country = _account_countries(rng, pool, signup_pick)
    n_dev = math.ceil(n / p.ring_accounts_per_device)
    device = key_space(K_RING_DEVICE, rng.integers(0, n_dev, n), controller)
    carded = rng.random(n) < p.ring_card_share
    billing = _ring_billing(carded, ring, controller, fake_company=domain is not None)
    ua = int(rng.choice(_SDK_AGENTS)) if rng.random() < 0.6 else int(rng.choice(_TOOL_AGENTS))
    start, end, n_events = _ring_activity(ctx, rng, created)
    shares = popular_shares(p)
    adopt = rng.random(n) < p.ring_popular_share
    pop_idx = np.where(adopt, rng.choice(len(shares), n, p=shares / shares.sum()), -1)
    fam_lo, fam_hi = family
    seg = Segment(
        stream=0,
        key=key_space(K_RING_ACCOUNT, idx, controller),
        group=np.full(n, G["ring"], np.int64),
        role=np.full(n, R["controller_b"] if ctrl else R["member"], np.int64),
        ring=np.full(n, ring, np.int64),
        created=created,
        email=_ring_emails(rng, n, style, domain),
        signup_ip=pool.codes[signup_pick],
        device=device,
        country=country,
        billing=billing,
        weight=np.zeros(n),
        n_events=n_events,
        act_start=start,
        act_end=end,
        alt_start=start.copy(),
        alt_end=end.copy(),
        p_alt=np.full(n, p.camouflage),
        tz=np.full(n, tz, np.int64),
        sched=np.full(n, SESSIONS, np.int64),
        sched_ref=np.full(n, controller, np.int64),
        home=np.stack([sticky, sticky, sticky], axis=1),
        pool_start=np.full(n, pool.start, np.int64),
        pool_len=np.full(n, pool.length, np.int64),
        p_pool=np.ones(n),
        dev2=np.full(n, -1, np.int64),
        ua=np.full(n, ua, np.int64),
        ua2=np.full(n, int(rng.choice(_SDK_AGENTS)), np.int64),
        own_base=key_space(K_RING_PROMPT, idx, 64 + controller),
        n_own=np.ones(n, np.int64),
        p_own=np.full(n, 0.1),
        gt_base=np.full(n, key_space(K_RING_PROMPT, fam_lo, ring), np.int64),
        gt_n=np.full(n, fam_hi - fam_lo, np.int64),
        p_gt=np.full(n, 0.75),
        pop_idx=pop_idx.astype(np.int64),
        p_pop=np.full(n, 0.12),
        profile=np.full(n, DISTILL, np.int64),
        req_mu=np.log(rng.uniform(4, 9, n)),
        model_pref=np.full(n, int(rng.choice(3, p=[0.25, 0.15, 0.6])), np.int64),
        new_share=np.full(n, float(np.clip(p.pivot_share + rng.normal(0, 0.03), 0.2, 0.8))),
        new_lag=np.full(
            n, int(max(0.5, p.pivot_lag_hours + rng.uniform(-2, 2)) * HOUR_US), np.int64
        ),
    )
    _add_ring_cards(ctx, rng, seg, np.flatnonzero(carded), bins, controller)
    return seg


def _rent_proxy_pool(ctx: Context, rng: np.random.Generator, n: int) -> _ProxyPool:
    """Exits of the residential-proxy network in the controller's countries, for ``n`` accounts."""
    p = ctx.params
    n_countries = min(p.proxy_countries, len(COUNTRIES))
    countries = rng.choice(len(COUNTRIES), n_countries, replace=False, p=COUNTRY_WEIGHTS)
    candidates = np.flatnonzero(np.isin(ctx.exit_country, countries))
    pool_n = min(len(candidates), max(20, math.ceil(n * p.proxy_pool_per_account)))
    chosen = rng.choice(candidates, pool_n, replace=False)
    codes = ctx.exits[chosen]
    start, length = ctx.add_pool(codes)
    return _ProxyPool(codes, ctx.exit_country[chosen], countries, start, length)


def _account_countries(
    rng: np.random.Generator, pool: _ProxyPool, signup_pick: np.ndarray
) -> np.ndarray:
    """Each account's country: mostly its sign-up exit's, else one of the controller's.

    One in a hundred has none.
    """
    n = len(signup_pick)
    country = np.where(
        rng.random(n) < 0.75, pool.country[signup_pick], rng.choice(pool.countries, n)
    ).astype(np.int64)
    return np.where(rng.random(n) < 0.01, -1, country)


def _ring_billing(
    carded: np.ndarray, ring: int, controller: int, *, fake_company: bool
) -> np.ndarray:
    """Each account's billing customer (``-1``: none).

    A fake company bills every account to itself; otherwise each carded account has its own.
    """
    n = len(carded)
    if fake_company:
        return np.full(n, key_space(K_RING_BILLING, 1 << 31, 255 - ring), np.int64)
    idx = np.arange(n, dtype=np.int64)
    return np.where(carded, key_space(K_RING_BILLING, idx, controller), -1)


def _signup_bursts(ctx: Context, rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """The first burst's start, and each account's sign-up time in one of the bursts."""
    p = ctx.params
    first = ctx.w0 + int(rng.uniform(-20, p.release_day - 15) * DAY_US)
    gaps = rng.uniform(3, 15, p.burst_waves - 1) * DAY_US
    starts = first + np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64)
    wave = rng.integers(0, p.burst_waves, n)
    created = starts[wave] + (rng.beta(1.2, 2.5, n) * p.burst_hours * HOUR_US).astype(np.int64)
    return first, created


def _add_operating_sessions(
    ctx: Context, rng: np.random.Generator, controller: int, first: int, tz: int
) -> None:
    """The controller's sessions: every day from its first burst, in its working hours.

    Half the controllers work round the clock, the others from 7:00 to 22:00 their time.
    """
    day0 = (max(first, ctx.w0 - 30 * DAY_US) - ctx.w0) // DAY_US
    days = np.arange(day0, ctx.params.window_days + 1, dtype=np.int64)
    per_day = rng.integers(2, 7, len(days))
    sess_day = np.repeat(days, per_day)
    round_the_clock = rng.random() < 0.5
    hour = (
        rng.uniform(0, 24, len(sess_day)) if round_the_clock else rng.uniform(7, 22, len(sess_day))
    )
    sess_start = ctx.w0 + sess_day * DAY_US + ((hour - tz) * HOUR_US).astype(np.int64)
    sess_dur = (rng.uniform(1, 5, len(sess_day)) * HOUR_US).astype(np.int64)
    ctx.add_sessions(controller, sess_start, sess_dur)


def _ring_activity(
    ctx: Context, rng: np.random.Generator, created: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each ring account's active span (from soon after sign-up, for its lifespan) and events.

    Ring accounts send ``ring_event_multiplier`` times the mean, none when they start too
    late in the window.
    """
    p = ctx.params
    n = len(created)
    start = np.maximum(created, ctx.w0) + (rng.uniform(0.5, 72, n) * HOUR_US).astype(np.int64)
    life = (p.ring_lifespan_days * rng.uniform(0.5, 1.5, n) * DAY_US).astype(np.int64)
    end = np.minimum(ctx.w_end, np.maximum(created, ctx.w0) + life)
    end = np.maximum(end, np.minimum(start + HOUR_US, ctx.w_end))
    lam = p.events_per_account * p.ring_event_multiplier * rng.lognormal(-0.18, 0.6, n)
    n_events = np.where(start < ctx.w_end - HOUR_US, rng.poisson(lam), 0)
    return start, end, n_events.astype(np.int64)


def _add_ring_cards(
    ctx: Context,
    rng: np.random.Generator,
    seg: Segment,
    with_card: np.ndarray,
    bins: np.ndarray,
    controller: int,
) -> None:
    """Cards on the ring's virtual BINs, each on up to ``ring_accounts_per_card`` accounts."""
    n_cards = max(1, math.ceil(len(with_card) / ctx.params.ring_accounts_per_card))
    card = rng.permutation(np.arange(len(with_card)) % n_cards)
    card_bin = bins[card % len(bins)]
    added = seg.created[with_card]
    seg.add_payments(
        with_card,
        key_space(K_RING_CARD, card, controller),
        card_bin,
        _VIRTUAL_COUNTRY[(card_bin - BIN_VIRTUAL[0]) % len(_VIRTUAL_COUNTRY)],
        added + (rng.uniform(1, 240, len(with_card)) * 60_000_000).astype(np.int64),
    )


def _camouflage(
    ctx: Context, rng: np.random.Generator, seg: Segment, which: np.ndarray, ring: int
) -> None:
    """Make the accounts at ``which`` look like ordinary people (role ``camouflage``)."""
    if not len(which):
        return
    k = len(which)
    local, _, _ = person_locals(rng, k)
    doms = pa.array(["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "hotmail.com"])
    email = join(local, "@", doms.take(pa.array(rng.integers(0, len(doms), k))))
    emails = seg.email.to_numpy(zero_copy_only=False).astype(object)
    emails[which] = email.to_numpy(zero_copy_only=False)
    seg.email = pa.array(emails, pa.string())
    seg.role[which] = R["camouflage"]
    seg.device[which] = key_space(K_RING_DEVICE, np.arange(k) + (1 << 24), 200 + ring)
    seg.signup_ip[which] = seg.home[which, 0]
    spread = (rng.normal(0, 10, k) * DAY_US).astype(np.int64)
    seg.created[which] = np.minimum(seg.created[which] + spread, ctx.w_end - 2 * DAY_US)
    seg.p_alt[which] = 0.7
    start = np.maximum(seg.act_start[which], seg.created[which] + HOUR_US)
    seg.act_start[which] = start
    seg.alt_start[which] = start
    seg.n_events[which] = np.where(start < seg.act_end[which], seg.n_events[which], 0)
    # Each camouflage account pays with a card of its own (still a virtual BIN).
    on = np.isin(seg.pay_acct, which)
    seg.pay_fp[on] = key_space(K_RING_CARD, np.arange(int(on.sum())) + (1 << 24), 200 + ring)


def build_ring(ctx: Context, ring: int, size: int) -> Segment:
    """Ring number ``ring`` (0-based) with ``size`` accounts, drawn from its own stream."""
    p = ctx.params
    rng = make_rng(ctx.seed, STREAM_RING + ring)
    two = rng.random() < p.two_controller_share
    n_b = round(size * p.controller_b_fraction) if two else 0
    n_a = size - n_b
    family = p.ring_template_family
    bins = rng.choice(BIN_VIRTUAL, p.ring_bins, replace=False)
    fake = rng.random() < p.fake_company_share
    domain = None
    if fake:
        words = rng.integers(0, len(COMPANY_WORDS)), rng.integers(0, len(COMPANY_SUFFIXES))
        domain = f"{COMPANY_WORDS[words[0]]}{COMPANY_SUFFIXES[words[1]]}-{ring + 1}.com"
        ctx.reserved_domains.add(domain)
    styles = ("dot_trick", "plus_tag", "sequential", "random")
    parts = []
    for ctrl, n in ((0, n_a), (1, n_b)):
        if n == 0:
            continue
        if fake:
            style = "own_domain"
        elif p.ring_mailbox_style == "mixed":
            style = styles[int(rng.integers(len(styles)))]
        else:
            style = p.ring_mailbox_style
        fam = (0, max(1, family - 1)) if ctrl == 0 else (1, family)
        parts.append(_controller(ctx, rng, ring, ctrl, n, fam, bins, style, domain))
    seg = concat_segments(STREAM_RING + ring, parts)
    order = rng.permutation(size)
    n_reserve = round(size * p.reserve_share)
    reserve = np.sort(order[:n_reserve])
    n_camo = round((size - n_reserve) * p.camouflage)
    camo = np.sort(order[n_reserve : n_reserve + n_camo])
    _camouflage(ctx, rng, seg, camo, ring)
    seg.role[reserve] = R["reserve"]
    seg.n_events[reserve] = 0
    return seg
