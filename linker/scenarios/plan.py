"""The plan of a world before it is written: accounts, payments and each account's traffic.

A world is built as :class:`Segment` objects, one per innocent group and one per ring. A
segment holds its accounts' attributes as integer keys and codes (see
:mod:`linker.scenarios.render`) and, per account, the parameters from which
:mod:`linker.scenarios.events` draws its event rows. :class:`Context` holds what segments
share: the time window, the address pools, the schedules (ring sessions, cron slots, class
deadlines) and the residential address space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linker.scenarios.params import ScenarioParams
from linker.scenarios.render import DAY_US, HOUR_US, block24, ipv4_code, ipv6_code
from linker.scenarios.tables import (
    CONSUMER_BINS,
    CONSUMER_DOMAIN_WEIGHTS,
    CONSUMER_DOMAINS,
    COUNTRIES,
    COUNTRY_TZ,
    COUNTRY_WEIGHTS,
    FIRST_NAMES,
    LAST_NAMES,
    UA_WEIGHTS,
    VIRTUAL_BINS,
)

__all__ = [
    "ALL_BINS",
    "GROUPS",
    "ROLES",
    "WINDOW_START",
    "Context",
    "Segment",
    "make_rng",
]

WINDOW_START = np.datetime64("2026-01-05T00:00:00", "us")
"""First instant of every world's event window (a Monday, UTC)."""
_W0 = int(WINDOW_START.astype(np.int64))

GROUPS: tuple[str, ...] = (
    "solo", "family", "company", "university", "hackathon", "cgnat", "vpn", "app", "power",
    "proxyware", "agency", "ring",
)  # fmt: skip
ROLES: tuple[str, ...] = (
    "user", "payer", "member", "staff", "batch", "student", "participant", "integration",
    "client", "reserve", "controller_b", "camouflage",
)  # fmt: skip
G = {g: i for i, g in enumerate(GROUPS)}
R = {r: i for i, r in enumerate(ROLES)}

ALL_BINS: tuple[str, ...] = (*CONSUMER_BINS, *VIRTUAL_BINS)
"""Card BINs by index: consumer BINs, then the virtual ones."""
BIN_CONSUMER = np.arange(len(CONSUMER_BINS))
BIN_VIRTUAL = np.arange(len(CONSUMER_BINS), len(ALL_BINS))

# Schedules: how an account's event times are drawn (see linker.scenarios.events).
HUMAN, CRON, SESSIONS, DEADLINE, WINDOW = 0, 1, 2, 3, 4
# Token profiles: (median input tokens, sd of log, median output tokens, sd of log) per request.
CHAT, OUTPUT_HEAVY, RAG, BATCH, DISTILL, CODE = 0, 1, 2, 3, 4, 5
PROFILES = np.array(
    [
        [900, 1.0, 400, 0.8],
        [150, 0.8, 2200, 0.6],
        [5000, 0.7, 350, 0.7],
        [1500, 0.15, 700, 0.2],
        [350, 0.6, 1700, 0.5],
        [700, 0.9, 3500, 0.7],
    ],
    dtype=np.float64,
)

# Key spaces (top byte) of identifiers; each identifier column has its own salt as well.
K_ACCOUNT, K_RING_ACCOUNT = 0x01, 0x02
K_CARD, K_RING_CARD = 0x03, 0x04
K_DEVICE, K_RING_DEVICE = 0x05, 0x06
K_POPULAR, K_OWN_PROMPT, K_GROUP_PROMPT, K_RING_PROMPT = 0x07, 0x08, 0x09, 0x0A
K_BILLING, K_RING_BILLING = 0x0B, 0x0C

# IPv4 /24 index ranges of kinds of network (disjoint; see render.block24).
NET_RES, NET_OFFICE, NET_CAMPUS, NET_VENUE = 0, 1 << 21, 3 << 20, 13 << 18
NET_CARRIER, NET_VPN, NET_APP, NET_AGENCY = 14 << 18, 15 << 18, 16 << 18, 17 << 18
# IPv6 /48 kinds (render.ipv6_code).
V6_RES, V6_OFFICE, V6_CARRIER, V6_CAMPUS = 0, 1, 2, 4


def make_rng(seed: int, *stream: int) -> np.random.Generator:
    """The generator of one named stream of a world (independent of every other stream)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *stream])))


def key_space(kind: int, index: np.ndarray | int, sub: int = 0) -> np.ndarray:
    """Keys ``kind:sub:index`` (``sub`` < 2**24 and ``index`` < 2**32)."""
    return (
        (np.int64(kind) << np.int64(56))
        | (np.int64(sub) << np.int64(32))
        | np.asarray(index, dtype=np.int64)
    )


@dataclass
class Segment:
    """Accounts of one group (or one ring) with their attributes and traffic plan.

    Every array has one value per account, except the payment arrays (one per card row)
    and ``home`` (three home-address slots per account). Keys and codes are ``-1`` when
    absent. Times are int64 microseconds since the Unix epoch (UTC).
    """

    stream: int
    key: np.ndarray
    group: np.ndarray
    role: np.ndarray
    ring: np.ndarray
    created: np.ndarray
    email: pa.Array
    signup_ip: np.ndarray
    device: np.ndarray
    country: np.ndarray
    billing: np.ndarray
    # traffic plan
    weight: np.ndarray
    n_events: np.ndarray
    act_start: np.ndarray
    act_end: np.ndarray
    alt_start: np.ndarray
    alt_end: np.ndarray
    p_alt: np.ndarray
    tz: np.ndarray
    sched: np.ndarray
    sched_ref: np.ndarray
    home: np.ndarray
    pool_start: np.ndarray
    pool_len: np.ndarray
    p_pool: np.ndarray
    dev2: np.ndarray
    ua: np.ndarray
    ua2: np.ndarray
    own_base: np.ndarray
    n_own: np.ndarray
    p_own: np.ndarray
    gt_base: np.ndarray
    gt_n: np.ndarray
    p_gt: np.ndarray
    pop_idx: np.ndarray
    p_pop: np.ndarray
    profile: np.ndarray
    req_mu: np.ndarray
    model_pref: np.ndarray
    new_share: np.ndarray
    new_lag: np.ndarray
    # payments (one row per card on an account)
    pay_acct: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pay_fp: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pay_bin: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pay_country: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pay_added: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return len(self.key)

    def add_payments(
        self,
        acct: np.ndarray,
        fp: np.ndarray,
        bins: np.ndarray,
        country: np.ndarray,
        added: np.ndarray,
    ) -> None:
        """Append card rows (``acct`` is the account's position in this segment)."""
        self.pay_acct = np.concatenate([self.pay_acct, acct.astype(np.int64)])
        self.pay_fp = np.concatenate([self.pay_fp, fp.astype(np.int64)])
        self.pay_bin = np.concatenate([self.pay_bin, bins.astype(np.int64)])
        self.pay_country = np.concatenate([self.pay_country, country.astype(np.int64)])
        self.pay_added = np.concatenate([self.pay_added, added.astype(np.int64)])


def concat_segments(stream: int, parts: list[Segment]) -> Segment:
    """One segment made of ``parts`` in order."""
    out: dict[str, object] = {}
    for f in fields(Segment):
        if f.name.startswith("pay_") or f.name == "stream":
            continue
        values = [getattr(p, f.name) for p in parts]
        if isinstance(values[0], pa.Array):
            out[f.name] = pa.concat_arrays(values)
        else:
            out[f.name] = np.concatenate(values)
    seg = Segment(stream=stream, **out)  # type: ignore[arg-type]
    offset = 0
    for p in parts:
        seg.add_payments(p.pay_acct + offset, p.pay_fp, p.pay_bin, p.pay_country, p.pay_added)
        offset += len(p)
    return seg


class Context:
    """What the segments of one world share.

    Parameters
    ----------
    params : ScenarioParams
    seed : int
    n_innocent : int
        Innocent accounts of the world (sizes the residential address space).
    """

    def __init__(self, params: ScenarioParams, seed: int, n_innocent: int) -> None:
        self.params = params
        self.seed = seed
        self.n_innocent = n_innocent
        self.w0 = _W0
        self.w_end = _W0 + params.window_days * DAY_US
        self.release = _W0 + params.release_day * DAY_US + 17 * HOUR_US
        self._pools: list[np.ndarray] = []
        self._pool_size = 0
        self.pool = np.empty(0, dtype=np.int64)
        # Schedules, each a list of arrays finalised by finish().
        self._sessions: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._deadlines: list[tuple[np.ndarray, np.ndarray]] = []
        self.cron_slots = np.zeros((0, 4), dtype=np.int64)
        self.cron_n = np.zeros(0, dtype=np.int64)
        self.session_key = np.empty(0, dtype=np.int64)
        self.session_start = np.empty(0, dtype=np.int64)
        self.session_dur = np.empty(0, dtype=np.int64)
        self.deadline_key = np.empty(0, dtype=np.int64)
        self.deadline_at = np.empty(0, dtype=np.int64)
        # Residential space: innocent homes share /24s (and /48s) with neighbours and with
        # the proxy network's exits, which sit in the first blocks of the same space.
        self.res_blocks = max(1, math.ceil(n_innocent / params.residential_density))
        self.res_blocks6 = max(1, math.ceil(n_innocent * 0.5 / params.residential_density))
        self.exits = np.empty(0, dtype=np.int64)
        self.exit_country = np.empty(0, dtype=np.int64)
        self.ring_exits = np.empty(0, dtype=np.int64)
        self.mobile_ips = np.empty(0, dtype=np.int64)
        self.counters: dict[int, int] = {}
        self.reserved_domains: set[str] = set()

    # --- keys ---
    def next_keys(self, kind: int, n: int) -> np.ndarray:
        """``n`` fresh innocent keys of ``kind``."""
        start = self.counters.get(kind, 0)
        self.counters[kind] = start + n
        return key_space(kind, np.arange(start, start + n, dtype=np.int64))

    # --- address pools ---
    def add_pool(self, codes: np.ndarray) -> tuple[int, int]:
        """Register an address pool; returns (start, length) in :attr:`pool`."""
        start = self._pool_size
        self._pools.append(codes.astype(np.int64))
        self._pool_size += len(codes)
        return start, len(codes)

    def pool_so_far(self) -> np.ndarray:
        """Every address registered in a pool until now."""
        return np.concatenate(self._pools) if self._pools else np.empty(0, np.int64)

    # --- schedules ---
    def add_sessions(self, controller: int, start: np.ndarray, duration: np.ndarray) -> None:
        """Operating sessions of a ring controller (global controller id)."""
        self._sessions.append((np.full(len(start), controller, np.int64), start, duration))

    def add_deadlines(self, cls: int, at: np.ndarray) -> None:
        """Assignment deadlines of class ``cls``."""
        self._deadlines.append((np.full(len(at), cls, np.int64), at))

    def finish(self) -> None:
        """Freeze pools and schedules into sorted lookup arrays."""
        self.pool = np.concatenate(self._pools) if self._pools else np.zeros(1, np.int64)
        if self._sessions:
            ctrl = np.concatenate([s[0] for s in self._sessions])
            start = np.concatenate([s[1] for s in self._sessions])
            dur = np.concatenate([s[2] for s in self._sessions])
            key = sched_key(ctrl, start)
            order = np.argsort(key, kind="stable")
            self.session_key, self.session_start = key[order], start[order]
            self.session_dur = dur[order]
        if self._deadlines:
            cls = np.concatenate([d[0] for d in self._deadlines])
            at = np.concatenate([d[1] for d in self._deadlines])
            key = sched_key(cls, at)
            order = np.argsort(key, kind="stable")
            self.deadline_key, self.deadline_at = key[order], at[order]

    # --- addresses ---
    def homes(
        self, rng: np.random.Generator, n: int, ipv6_share: float | None = None
    ) -> np.ndarray:
        """Home addresses of ``n`` innocent households in the shared residential space."""
        share = self.params.ipv6_share if ipv6_share is None else ipv6_share
        v6 = rng.random(n) < share
        blocks = block24(NET_RES, rng.integers(0, self.res_blocks, n), self.seed)
        codes = ipv4_code(blocks, rng.integers(1, 255, n))
        prefixes = rng.integers(0, self.res_blocks6, n)
        codes6 = ipv6_code(V6_RES, prefixes, rng.integers(0, 1 << 24, n), self.seed)
        codes = np.where(v6, codes6, codes)
        return self.avoid_exits(codes)

    def avoid_exits(self, codes: np.ndarray) -> np.ndarray:
        """Move addresses that collide with a proxy exit to the next host of their /24."""
        if not len(self.exits):
            return codes
        exits = np.sort(self.exits)
        for _ in range(64):
            hit = np.isin(codes, exits)
            if not hit.any():
                break
            host = codes[hit] & 255
            codes[hit] = (codes[hit] & ~np.int64(255)) | (host % 254 + 1)
        return codes

    def time_in_window(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Innocent sign-up times: 60% in the 18 months before the window, 40% inside it."""
        before = rng.random(n) < 0.6
        early = self.w0 - (rng.random(n) * 540 * DAY_US).astype(np.int64)
        late = self.w0 + (rng.random(n) * (self.w_end - self.w0 - DAY_US)).astype(np.int64)
        return np.where(before, early, late)


def sched_key(owner: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Sortable (owner, time) key: owner in the high bits, time since 2023 in the low 47."""
    base = int(np.datetime64("2023-01-01T00:00:00", "us").astype(np.int64))
    rel = np.clip(at.astype(np.int64) - base, 0, (1 << 47) - 1)
    return (owner.astype(np.int64) << np.int64(47)) | rel


# --- people ---

_FIRST = pa.array(FIRST_NAMES)
_LAST = pa.array(LAST_NAMES)
_INITIAL = pa.array([n[0] for n in FIRST_NAMES])
_SEPS = pa.array([".", "", "_", "-"])


def digits(values: np.ndarray) -> pa.Array:
    """Integers as decimal strings."""
    return pa.array(values.astype(np.int64)).cast(pa.string())


def join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate string arrays and literals element-wise."""
    items = [pa.scalar(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*items, "")


def person_locals(
    rng: np.random.Generator, n: int, last: np.ndarray | None = None
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Mailbox local parts of ``n`` people, with their first- and last-name indices.

    Patterns: ``first.last``, ``firstlast42``, ``flast1990``, ``first_last``, ``first87``,
    ``first.last7``, ``first-last``.
    """
    first = rng.integers(0, len(FIRST_NAMES), n)
    if last is None:
        last = rng.integers(0, len(LAST_NAMES), n)
    pattern = rng.choice(7, n, p=[0.26, 0.2, 0.12, 0.08, 0.12, 0.14, 0.08])
    head = pc.if_else(
        pa.array(pattern == 2), _INITIAL.take(pa.array(first)), _FIRST.take(pa.array(first))
    )
    sep_idx = np.select([pattern == 0, pattern == 5, pattern == 3, pattern == 6], [0, 0, 2, 3], 1)
    sep = _SEPS.take(pa.array(sep_idx))
    tail = pc.if_else(pa.array(pattern == 4), pa.scalar(""), _LAST.take(pa.array(last)))
    number = np.select(
        [pattern == 1, pattern == 2, pattern == 4, pattern == 5],
        [rng.integers(1, 100, n), rng.integers(1955, 2008, n), rng.integers(1, 1000, n),
         rng.integers(1, 10, n)],
        -1,
    )  # fmt: skip
    num = pc.if_else(pa.array(number < 0), pa.scalar(""), digits(number))
    return join(head, sep, tail, num), first, last


def consumer_domains(rng: np.random.Generator, n: int) -> pa.Array:
    """Consumer mail domains drawn by their share of sign-ups."""
    idx = rng.choice(len(CONSUMER_DOMAINS), n, p=CONSUMER_DOMAIN_WEIGHTS)
    return pa.array(CONSUMER_DOMAINS).take(pa.array(idx))


def draw_countries(rng: np.random.Generator, n: int) -> np.ndarray:
    """Country indices by share of innocent sign-ups."""
    return rng.choice(len(COUNTRIES), n, p=COUNTRY_WEIGHTS).astype(np.int64)


def draw_ua(rng: np.random.Generator, n: int) -> np.ndarray:
    """User-agent indices by how common each is."""
    return rng.choice(len(UA_WEIGHTS), n, p=UA_WEIGHTS).astype(np.int64)


def consumer_bins(rng: np.random.Generator, n: int, virtual_share: float) -> np.ndarray:
    """BIN indices of innocent cards: consumer BINs, a share on virtual BINs."""
    virtual = rng.random(n) < virtual_share
    return np.where(
        virtual,
        rng.choice(BIN_VIRTUAL, n),
        rng.choice(BIN_CONSUMER, n, p=_consumer_bin_weights()),
    )


_BIN_WEIGHTS: list[np.ndarray] = []


def _consumer_bin_weights() -> np.ndarray:
    # Big issuers dominate: a Zipf-like share over the consumer BINs.
    if not _BIN_WEIGHTS:
        w = 1.0 / np.arange(1, len(CONSUMER_BINS) + 1) ** 0.9
        _BIN_WEIGHTS.append(w / w.sum())
    return _BIN_WEIGHTS[0]


_TAGS = pa.array(["api", "dev", "ai", "test", "work", "llm", "bot", "keys"])


def individuals(
    ctx: Context, rng: np.random.Generator, n: int, group: str, stream: int, cards: bool = True
) -> Segment:
    """``n`` ordinary individuals: own mailbox, home, device and (maybe) card.

    Group builders start from this and change what makes their group what it is. With
    ``cards=False`` nobody gets a card (the builder adds its own). The draws from ``rng``
    come in a fixed order that the world's bytes depend on: keep it.
    """
    p = ctx.params
    key = ctx.next_keys(K_ACCOUNT, n)
    created = ctx.time_in_window(rng, n)
    email = _personal_emails(rng, n)
    home, home2, mobile = _personal_addresses(ctx, rng, n)
    country = draw_countries(rng, n)
    country = np.where(rng.random(n) < 0.01, -1, country)
    tz = COUNTRY_TZ[np.maximum(country, 0)].astype(np.int64)
    paying = (rng.random(n) < p.paying_share) & cards
    billing = np.where(paying, ctx.next_keys(K_BILLING, n), -1)
    act_start, act_end = _active_span(ctx, rng, created)
    ua = draw_ua(rng, n)
    profile = np.select(
        [rng.random(n) < p.output_heavy_share, rng.random(n) < 0.15], [OUTPUT_HEAVY, RAG], CHAT
    )
    adopter = rng.random(n) < p.early_adopter_share
    weight = rng.lognormal(0.0, 1.1, n)
    weight = np.where(rng.random(n) < p.inactive_share, 0.0, weight)
    n_own = rng.integers(1, 5, n)
    seg = Segment(
        stream=stream,
        key=key,
        group=np.full(n, G[group], np.int64),
        role=np.full(n, R["user"], np.int64),
        ring=np.full(n, -1, np.int64),
        created=created,
        email=email,
        signup_ip=np.where(rng.random(n) < 0.85, home, mobile),
        device=ctx.next_keys(K_DEVICE, n),
        country=country,
        billing=billing,
        weight=weight,
        n_events=np.zeros(n, np.int64),
        act_start=act_start,
        act_end=act_end,
        alt_start=act_start.copy(),
        alt_end=act_end.copy(),
        p_alt=np.zeros(n),
        tz=tz,
        sched=np.full(n, HUMAN, np.int64),
        sched_ref=np.zeros(n, np.int64),
        home=np.stack([home, home2, mobile], axis=1),
        pool_start=np.zeros(n, np.int64),
        pool_len=np.zeros(n, np.int64),
        p_pool=np.zeros(n),
        dev2=np.where(rng.random(n) < 0.4, ctx.next_keys(K_DEVICE, n), -1),
        ua=ua,
        ua2=draw_ua(rng, n),
        own_base=ctx.next_keys(K_OWN_PROMPT, 4 * n)[::4],
        n_own=n_own,
        p_own=rng.uniform(0.3, 0.8, n),
        gt_base=np.full(n, -1, np.int64),
        gt_n=np.zeros(n, np.int64),
        p_gt=np.zeros(n),
        pop_idx=np.full(n, -1, np.int64),
        p_pop=rng.uniform(0.2, 0.6, n),
        profile=profile,
        req_mu=np.log(rng.uniform(1.2, 4.0, n)),
        model_pref=rng.choice(3, n, p=[0.5, 0.3, 0.2]),
        new_share=np.where(adopter, rng.uniform(0.3, 1.0, n), 0.0),
        new_lag=np.where(adopter, (rng.exponential(3.0, n) * DAY_US).astype(np.int64), 0),
    )
    _add_personal_cards(ctx, rng, seg, np.flatnonzero(paying))
    return seg


def _personal_emails(rng: np.random.Generator, n: int) -> pa.Array:
    """Mailboxes of ``n`` people at consumer mail domains."""
    local, _, _ = person_locals(rng, n)
    # A few people sign up with a +tag (which the provider, and the linker, fold away).
    tagged = pa.array(rng.random(n) < 0.03)
    local = pc.if_else(tagged, join(local, "+", _TAGS.take(pa.array(rng.integers(0, 8, n)))), local)
    return join(local, "@", consumer_domains(rng, n))


def _personal_addresses(
    ctx: Context, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each person's home address, its second address and a mobile carrier address."""
    home = ctx.homes(rng, n)
    # Dynamic addressing: a second address in the same /24 (or /48) some of the time.
    v6 = home >= (1 << 62)
    home2 = np.where(
        v6, home ^ rng.integers(1, 256, n), (home & ~np.int64(255)) | rng.integers(1, 255, n)
    )
    home2 = ctx.avoid_exits(home2)
    # A world without carrier gateways has no mobile addresses: mobile traffic comes from home.
    mobile = (
        ctx.mobile_ips[rng.integers(0, len(ctx.mobile_ips), n)]
        if len(ctx.mobile_ips)
        else home.copy()
    )
    return home, home2, mobile


def _active_span(
    ctx: Context, rng: np.random.Generator, created: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """When each account is active: some start late, some churn before the window ends."""
    n = len(created)
    act_start = np.maximum(created, ctx.w0)
    span = ctx.w_end - act_start
    late_start = rng.random(n) < 0.3
    act_start = act_start + np.where(late_start, (rng.random(n) * 0.6 * span).astype(np.int64), 0)
    churn = rng.random(n) < 0.25
    act_end = np.where(
        churn,
        act_start + ((ctx.w_end - act_start) * (0.2 + 0.8 * rng.random(n))).astype(np.int64),
        ctx.w_end,
    )
    return act_start, np.maximum(act_end, act_start + HOUR_US)


def _add_personal_cards(
    ctx: Context, rng: np.random.Generator, seg: Segment, paying: np.ndarray
) -> None:
    """Cards of the ``paying`` accounts: one each, a second for some."""
    acct = np.concatenate([paying, paying[rng.random(len(paying)) < 0.12]])
    k = len(acct)
    card_country = np.where(rng.random(k) < 0.93, seg.country[acct], draw_countries(rng, k))
    added = seg.created[acct] + (rng.exponential(3.0, k) * DAY_US).astype(np.int64)
    seg.add_payments(
        acct,
        ctx.next_keys(K_CARD, k),
        consumer_bins(rng, k, ctx.params.innocent_virtual_bin_share),
        card_country,
        np.minimum(added, ctx.w_end - HOUR_US),
    )
