"""Event rows drawn from the accounts' traffic plans, vectorised per chunk of accounts.

Each row is a bucket of ``requests`` with summed tokens. Its time follows the account's
schedule: a person's day (``HUMAN``), a company's cron slots (``CRON``), a ring controller's
operating sessions (``SESSIONS``), a class's deadlines (``DEADLINE``) or an event's window
(``WINDOW``). With probability ``p_alt`` a row is an *alternative* one: a person's time,
a home address and no group template (how rings camouflage and how hackathon participants
carry on afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linker.scenarios.plan import (
    CRON,
    DEADLINE,
    HUMAN,
    PROFILES,
    SESSIONS,
    Context,
    Segment,
    make_rng,
    sched_key,
)
from linker.scenarios.render import DAY_US, FORM_SPACE_MS, HOUR_US
from linker.scenarios.tables import DIURNAL, NEW_MODEL, OFFSETS

__all__ = ["EventColumns", "chunk_slices", "generate_segment_events"]

STREAM_EVENTS = 20
MAX_CHUNK_ROWS = 1_000_000
_DIURNAL_CDF = np.cumsum(DIURNAL)
_TOKEN_CAP = 2_000_000_000


@dataclass
class EventColumns:
    """Preallocated event columns (codes and keys; ``-1`` for a missing value)."""

    acct: np.ndarray
    ts: np.ndarray
    ip: np.ndarray
    device: np.ndarray
    ua: np.ndarray
    model: np.ndarray
    requests: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    prompt: np.ndarray
    form: np.ndarray
    offset: np.ndarray

    @classmethod
    def allocate(cls, n: int) -> EventColumns:
        """Columns for ``n`` rows."""
        return cls(
            acct=np.empty(n, np.int32),
            ts=np.empty(n, np.int64),
            ip=np.empty(n, np.int64),
            device=np.empty(n, np.int64),
            ua=np.empty(n, np.int16),
            model=np.empty(n, np.int8),
            requests=np.empty(n, np.int32),
            input_tokens=np.empty(n, np.int32),
            output_tokens=np.empty(n, np.int32),
            prompt=np.empty(n, np.int64),
            form=np.empty(n, np.int8),
            offset=np.empty(n, np.int8),
        )

    def names(self) -> tuple[str, ...]:
        """The column names."""
        return tuple(self.__dataclass_fields__)

    def permute(self, order: np.ndarray) -> None:
        """Reorder every column by ``order``, one column at a time (bounded memory)."""
        for name in self.names():
            column = getattr(self, name)
            column[:] = column[order]


def chunk_slices(n_events: np.ndarray, max_rows: int = MAX_CHUNK_ROWS) -> list[slice]:
    """Consecutive account slices with at most ``max_rows`` events each (at least 1 account)."""
    ends = np.cumsum(n_events)
    slices = []
    start = 0
    done = 0
    while start < len(n_events):
        stop = int(np.searchsorted(ends, done + max_rows, side="right"))
        stop = max(stop, start + 1)
        slices.append(slice(start, stop))
        done = int(ends[stop - 1])
        start = stop
    return slices


def _human(
    rng: np.random.Generator, uniform: np.ndarray, a: np.ndarray, b: np.ndarray, tz: np.ndarray
) -> np.ndarray:
    """Times on a person's local day: the day of ``uniform``, an hour by :data:`DIURNAL`."""
    shift = tz * HOUR_US
    local = uniform + shift
    day = local - local % DAY_US
    hour = np.searchsorted(_DIURNAL_CDF, rng.random(len(uniform)), side="right")
    t = day + hour * HOUR_US + rng.integers(0, HOUR_US, len(uniform)) - shift
    return np.where((t >= a) & (t <= b), t, uniform)


def _times(
    ctx: Context,
    rng: np.random.Generator,
    sched: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    tz: np.ndarray,
    ref: np.ndarray,
) -> np.ndarray:
    n = len(sched)
    uniform = a + (rng.random(n) * (b - a)).astype(np.int64)
    ts = uniform.copy()
    human = sched == HUMAN
    m = np.flatnonzero(sched == CRON)
    if len(m):
        r = ref[m]
        day = uniform[m] - uniform[m] % DAY_US
        slot = ctx.cron_slots[r, (rng.random(len(m)) * ctx.cron_n[r]).astype(np.int64)]
        t = day + slot * 1_000_000 + rng.integers(0, 20_000_000, len(m))
        ts[m] = np.where((t >= a[m]) & (t <= b[m]), t, uniform[m])
    m = np.flatnonzero(sched == SESSIONS)
    if len(m):
        lo = np.searchsorted(ctx.session_key, sched_key(ref[m], a[m]))
        hi = np.searchsorted(ctx.session_key, sched_key(ref[m], b[m]))
        have = hi > lo
        idx = np.minimum(
            lo + (rng.random(len(m)) * (hi - lo)).astype(np.int64), len(ctx.session_key) - 1
        )
        t = ctx.session_start[idx] + (rng.random(len(m)) * ctx.session_dur[idx]).astype(np.int64)
        ok = have & (t >= a[m]) & (t <= b[m])
        ts[m] = np.where(ok, t, uniform[m])
        human[m[~ok]] = True
    m = np.flatnonzero(sched == DEADLINE)
    if len(m):
        lo = np.searchsorted(ctx.deadline_key, sched_key(ref[m], a[m]))
        hi = np.searchsorted(ctx.deadline_key, sched_key(ref[m], b[m] + 48 * HOUR_US))
        rush = (hi > lo) & (rng.random(len(m)) < 0.6)
        idx = np.minimum(
            lo + (rng.random(len(m)) * (hi - lo)).astype(np.int64),
            max(len(ctx.deadline_key) - 1, 0),
        )
        at = ctx.deadline_at[idx] if len(ctx.deadline_at) else np.zeros(len(m), np.int64)
        t = at - (rng.random(len(m)) * 48 * HOUR_US).astype(np.int64)
        ok = rush & (t >= a[m]) & (t <= b[m])
        ts[m] = np.where(ok, t, uniform[m])
        human[m[~ok]] = True
    h = np.flatnonzero(human)
    if len(h):
        ts[h] = _human(rng, uniform[h], a[h], b[h], tz[h])
    return ts


def generate_segment_events(
    ctx: Context,
    seg: Segment,
    rows: np.ndarray,
    popular_keys: np.ndarray,
    out: EventColumns,
    at: int,
) -> int:
    """Draw the events of ``seg`` into ``out`` from position ``at``; returns the rows written.

    ``rows`` maps the segment's accounts to their rows in the accounts table. Chunks of
    accounts draw from streams keyed by the seed, the segment and the chunk number, so a
    segment's events do not depend on the rest of the world.
    """
    written = 0
    for number, sl in enumerate(chunk_slices(seg.n_events)):
        n = int(seg.n_events[sl].sum())
        if n == 0:
            continue
        rng = make_rng(ctx.seed, STREAM_EVENTS, seg.stream, number)
        _draw_chunk(ctx, rng, seg, sl, popular_keys, rows, out, at + written)
        written += n
    return written


def _draw_chunk(
    ctx: Context,
    rng: np.random.Generator,
    seg: Segment,
    sl: slice,
    popular_keys: np.ndarray,
    rows: np.ndarray,
    out: EventColumns,
    start: int,
) -> None:
    """Draw the events of the accounts ``sl`` of ``seg`` into ``out`` from position ``start``.

    ``rows`` maps the segment's accounts to their rows in the accounts table. The draws from
    ``rng`` come in a fixed order that the world's bytes depend on: keep it.
    """
    p = ctx.params
    counts = seg.n_events[sl]
    n = int(counts.sum())
    local = np.repeat(np.arange(sl.start, sl.stop), counts)
    alt = rng.random(n) < seg.p_alt[local]
    ts, form = _event_times(ctx, rng, seg, local, alt)
    ip = _event_addresses(ctx, rng, seg, local, alt)
    device = seg.device[local]
    dev = np.where(rng.random(n) < 0.85, device, seg.dev2[local])
    dev = np.where(dev < 0, device, dev)
    dev = np.where(rng.random(n) < p.event_device_share, dev, -1)
    ua = np.where(rng.random(n) < 0.92, seg.ua[local], seg.ua2[local])
    prompt = _event_prompts(rng, seg, sl, local, alt, popular_keys)
    old = np.where(rng.random(n) < 0.8, seg.model_pref[local], rng.integers(0, 3, n))
    pivot = (ts >= ctx.release + seg.new_lag[local]) & (rng.random(n) < seg.new_share[local])
    model = np.where(pivot, NEW_MODEL, old)
    requests = np.clip(np.rint(np.exp(seg.req_mu[local] + 0.8 * rng.standard_normal(n))), 1, 5000)
    prof = PROFILES[seg.profile[local]]
    inp = np.rint(requests * np.exp(np.log(prof[:, 0]) + prof[:, 1] * rng.standard_normal(n)))
    outp = np.rint(requests * np.exp(np.log(prof[:, 2]) + prof[:, 3] * rng.standard_normal(n)))
    missing = rng.random(n) < p.missing_tokens_share
    where = slice(start, start + n)
    out.acct[where] = rows[local]
    out.ts[where] = ts
    out.ip[where] = ip
    out.device[where] = dev
    out.ua[where] = ua
    out.model[where] = model
    out.requests[where] = requests
    out.input_tokens[where] = np.where(missing, -1, np.minimum(inp, _TOKEN_CAP))
    out.output_tokens[where] = np.where(missing, -1, np.minimum(outp, _TOKEN_CAP))
    out.prompt[where] = prompt
    out.form[where] = form
    out.offset[where] = rng.integers(0, len(OFFSETS), n)


def _event_times(
    ctx: Context, rng: np.random.Generator, seg: Segment, local: np.ndarray, alt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's time (by its schedule, a person's for alternative rows) and text form."""
    n = len(local)
    sched = np.where(alt, HUMAN, seg.sched[local])
    a = np.where(alt, seg.alt_start[local], seg.act_start[local])
    b = np.maximum(np.where(alt, seg.alt_end[local], seg.act_end[local]), a + 1)
    ts = _times(ctx, rng, sched, a, b, seg.tz[local], seg.sched_ref[local])
    if ctx.params.timestamp_mix > 0:
        form = np.where(rng.random(n) < ctx.params.timestamp_mix, rng.integers(1, 4, n), 0)
    else:
        form = np.zeros(n, np.int64)
    # No finer than the row's text form shows: milliseconds for FORM_SPACE_MS, else seconds.
    ts = np.where(form == FORM_SPACE_MS, ts - ts % 1000, ts - ts % 1_000_000)
    return ts, form


def _event_addresses(
    ctx: Context, rng: np.random.Generator, seg: Segment, local: np.ndarray, alt: np.ndarray
) -> np.ndarray:
    """Each row's address: from the account's pool, or one of its three home slots.

    Pools are office NATs, carrier gateways, VPN and proxy exits; alternative rows never use
    them. Home slots are taken 80/15/5%: the home, its second address, the mobile one.
    """
    n = len(local)
    pool_len = seg.pool_len[local]
    use_pool = ~alt & (rng.random(n) < seg.p_pool[local]) & (pool_len > 0)
    pool_idx = seg.pool_start[local] + (rng.random(n) * pool_len).astype(np.int64)
    slot = np.searchsorted(np.array([0.8, 0.95]), rng.random(n), side="right")
    home = seg.home[local, slot]
    return np.where(use_pool, ctx.pool[np.where(use_pool, pool_idx, 0)], home)


def _event_prompts(
    rng: np.random.Generator,
    seg: Segment,
    sl: slice,
    local: np.ndarray,
    alt: np.ndarray,
    popular_keys: np.ndarray,
) -> np.ndarray:
    """Each row's prompt template: the group's, a popular one, the account's own, or none."""
    n = len(local)
    u, u2 = rng.random(n), rng.random(n)
    gt_n = seg.gt_n[local]
    p_gt = np.where(alt | (gt_n == 0), 0.0, seg.p_gt[local])
    pop = seg.pop_idx[local]
    p_pop = np.where(pop >= 0, seg.p_pop[local], 0.0)
    n_own = seg.n_own[local]
    p_own = np.where(n_own > 0, seg.p_own[local], 0.0)
    popular = popular_keys[np.maximum(pop, 0)]
    prompt = np.select(
        [u < p_gt, u < p_gt + p_pop, u < p_gt + p_pop + p_own],
        [
            seg.gt_base[local] + (u2 * gt_n).astype(np.int64),
            popular,
            seg.own_base[local] + (u2 * n_own).astype(np.int64),
        ],
        -1,
    )
    # Every adopter of a popular template sends it at least once (its first row).
    counts = seg.n_events[sl]
    firsts = (np.cumsum(counts) - counts)[(counts > 0) & (seg.pop_idx[sl] >= 0)]
    prompt[firsts] = popular[firsts]
    return prompt
