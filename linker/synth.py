"""A synthetic world of API accounts with planted distillation rings and innocent look-alikes.

The world is the ground truth for demos, tests, benchmarks and quality targets. It is built to
be hard: every single signal a ring leaves (a shared card, a shared IP or subnet, a burst of
signups, a shared prompt template, synchronised traffic, patterned emails, a pivot to a new
model) is also left by some benign population, and every ring hides behind camouflage
(residential proxies, distinct virtual cards, randomised devices, mainstream email domains,
aged accounts, ordinary prompts and user agents). Only the combination gives a ring away.
``docs/synth.md`` describes the populations, the signals they mimic and the label columns.

Everything is drawn from :func:`numpy.random.default_rng` seeded by the caller, and all times
derive from a fixed reference window, never from the clock: the same seed, size and options
give byte-identical files. Generation is vectorised (Python loops run over groups, never over
accounts' events), and events are generated and written in chunks of accounts so that memory
stays bounded for worlds of millions of accounts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.dtypes import StringDType

from linker.errors import SettingsError
from linker.io.atomic import atomic_path
from linker.progress import progress

__all__ = [
    "KINDS",
    "M4_RELEASE",
    "MODELS",
    "WINDOW_END",
    "WINDOW_START",
    "WorldSummary",
    "generate_world",
]

logger = logging.getLogger(__name__)

Format = Literal["csv", "parquet"]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]
UIntArray = np.ndarray[Any, np.dtype[np.uint64]]

DAY = 86_400
HOUR = 3_600
MINUTE = 60

WINDOW_END = 1_790_726_400
"""End of the reference window, 2026-09-30T00:00:00Z (epoch seconds). Events lie before it."""
WINDOW_DAYS = 120
WINDOW_START = WINDOW_END - WINDOW_DAYS * DAY
"""Start of the event window, 2026-06-02T00:00:00Z (accounts may be older)."""
M4_RELEASE = WINDOW_START + 100 * DAY + 16 * HOUR
"""Release of model ``m-4``, 2026-09-10T16:00:00Z: no event uses it earlier."""
MODELS = ("m-1", "m-2", "m-3", "m-4")

KINDS = ("solo", "family", "company", "university", "hackathon", "cgnat", "app", "ring")
"""Group kinds written to the ``group`` column of ``labels``."""
SOLO, FAMILY, COMPANY, UNIVERSITY, HACKATHON, CGNAT, APP, RING = range(len(KINDS))

ROLES = ("", "member", "aged", "controller_b", "batch", "adopter")
R_NONE, R_MEMBER, R_AGED, R_CTRL_B, R_BATCH, R_ADOPTER = range(len(ROLES))

# Event timing modes: 0 human (diurnal in the account's time zone), or one of the synchronised
# schedules below, chosen per row with probability ``sync_p``.
SYNC_NONE, SYNC_SLOTS, SYNC_CRON, SYNC_DEADLINE, SYNC_WINDOW = range(5)

V6_BASE = 1 << 32
ACCOUNTS_PER_CHUNK = 25_000
N_PUBLIC_TEMPLATES = 40

# ---------------------------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------------------------

# (ISO code, UTC offset in minutes, weight among benign users)
COUNTRIES: tuple[tuple[str, int, float], ...] = (
    ("US", -300, 0.26),
    ("IN", 330, 0.09),
    ("GB", 0, 0.06),
    ("DE", 60, 0.055),
    ("BR", -180, 0.05),
    ("FR", 60, 0.04),
    ("CA", -300, 0.04),
    ("JP", 540, 0.035),
    ("KR", 540, 0.03),
    ("AU", 600, 0.025),
    ("ES", 60, 0.022),
    ("IT", 60, 0.022),
    ("NL", 60, 0.02),
    ("PL", 60, 0.018),
    ("MX", -360, 0.018),
    ("ID", 420, 0.017),
    ("TR", 180, 0.016),
    ("VN", 420, 0.015),
    ("PH", 480, 0.014),
    ("NG", 60, 0.013),
    ("SE", 60, 0.012),
    ("SG", 480, 0.012),
    ("ZA", 120, 0.011),
    ("AR", -180, 0.011),
    ("UA", 120, 0.01),
    ("EG", 120, 0.01),
    ("PK", 300, 0.01),
    ("CH", 60, 0.009),
    ("IL", 120, 0.009),
    ("TW", 480, 0.009),
)
COUNTRY_CODES = tuple(c[0] for c in COUNTRIES)
COUNTRY_TZ = np.array([c[1] for c in COUNTRIES], dtype=np.int64)
COUNTRY_W = np.array([c[2] for c in COUNTRIES]) / sum(c[2] for c in COUNTRIES)
US = 0
RING_EXIT_COUNTRIES = (0, 2, 3, 5, 6, 9, 12, 20)  # US GB DE FR CA AU NL SE: proxy exits

MAINSTREAM_DOMAINS: tuple[tuple[str, float], ...] = (
    ("gmail.com", 0.42),
    ("outlook.com", 0.11),
    ("yahoo.com", 0.09),
    ("icloud.com", 0.09),
    ("hotmail.com", 0.07),
    ("proton.me", 0.04),
    ("gmx.de", 0.02),
    ("live.com", 0.015),
    ("web.de", 0.015),
    ("aol.com", 0.01),
    ("mail.com", 0.01),
    ("naver.com", 0.01),
    ("yahoo.co.jp", 0.01),
)
DOMAIN_NAMES = tuple(d[0] for d in MAINSTREAM_DOMAINS)
DOMAIN_W = np.array([d[1] for d in MAINSTREAM_DOMAINS]) / sum(d[1] for d in MAINSTREAM_DOMAINS)
GMAIL = 0
RING_DOMAIN_W = np.array([0.6, 0.16, 0.08, 0.04, 0.08, 0.04] + [0.0] * 7)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "james mary john patricia robert jennifer michael linda william elizabeth david barbara "
    "richard susan joseph jessica thomas sarah charles karen daniel nancy matthew lisa anthony "
    "betty mark sandra donald ashley steven kimberly paul emily andrew donna joshua michelle "
    "kevin carol brian amanda george melissa edward deborah ronald stephanie timothy rebecca "
    "jason laura jeffrey sharon ryan cynthia jacob kathleen gary amy nicholas angela eric anna "
    "jonathan emma stephen olivia larry sophia justin ava scott mia brandon isabella benjamin "
    "charlotte samuel amelia gregory harper alexander evelyn patrick abigail frank ella raymond "
    "lucas noah liam ethan mason logan aiden arjun priya rahul ananya wei li hiroshi yuki "
    "minjun seoyeon lukas lena felix marie hugo chloe mateo lucia diego valentina omar fatima "
    "ahmed aisha ivan olga piotr zofia lars ingrid tomas nina carlos ana joao beatriz kofi amara"
)
LAST_NAMES = _words(
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez "
    "gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris "
    "sanchez clark ramirez lewis robinson walker young allen king wright scott torres nguyen "
    "hill flores green adams nelson baker hall rivera campbell mitchell carter roberts gomez "
    "phillips evans turner diaz parker cruz edwards collins reyes stewart morris morales murphy "
    "cook rogers gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos kim cox "
    "ward richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes price "
    "alvarez castillo sanders patel myers long ross foster jimenez sharma singh kumar gupta "
    "wang zhang liu chen yang tanaka suzuki sato park choi muller schmidt schneider fischer "
    "weber dubois moreau laurent rossi russo ferrari silva santos oliveira costa kowalski "
    "nowak novak horvat jensen hansen larsen johansson nilsson okafor mensah ivanov petrov"
)
ADJECTIVES = _words(
    "happy brave calm clever swift bright quiet wild silent golden silver lucky cosmic "
    "crimson frozen hidden mighty noble rapid shiny sunny witty fuzzy gentle jolly lazy "
    "proud rusty salty sneaky spicy stormy tiny vivid wise young zesty bold cool dark "
    "electric epic fancy fiery grand icy lunar mystic neon pixel primal royal solar "
    "turbo ultra velvet misty amber azure coral jade ivory onyx scarlet urban"
)
NOUNS = _words(
    "tiger falcon panda otter wolf eagle fox lion bear hawk raven shark whale dolphin "
    "dragon phoenix comet rocket nova star moon river ocean forest mountain canyon desert "
    "island meadow thunder storm cloud breeze flame spark stone crystal shadow ghost ninja "
    "pirate wizard knight ranger pilot coder hacker gamer rider runner skater surfer "
    "mango cherry lemon pepper cookie muffin waffle biscuit taco noodle pixel byte "
    "vector matrix quantum photon atom orbit"
)
TLDS = ("com", "io", "ai", "co", "net", "dev", "tech", "app")
COMPANY_SUFFIXES = ("labs", "systems", "tech", "works", "data", "soft", "cloud", "ai", "hq", "co")
UNI_NAMES = (
    "stateu",
    "northfield",
    "lakeside",
    "westbrook",
    "riverton",
    "easton",
    "highland",
    "bayview",
    "midvale",
    "summit",
    "oakridge",
    "pinecrest",
)

USER_AGENTS = (
    "openai-python/1.54.4",
    "python-requests/2.32.3",
    "openai-python/1.51.2",
    "OpenAI/NodeJS/4.67.3",
    "python-requests/2.31.0",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "curl/8.7.1",
    "openai-python/1.40.6",
    "axios/1.7.7",
    "python-httpx/0.27.2",
    "Go-http-client/2.0",
    "curl/7.81.0",
    "OpenAI/NodeJS/4.52.0",
    "aiohttp/3.10.10",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Safari/605.1.15",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
    "PostmanRuntime/7.42.0",
    "Java-http-client/17.0.12",
    "langchain-openai/0.2.3",
    "python-urllib3/2.2.3",
    "Apache-HttpClient/4.5.14 (Java/11.0.24)",
    "Dart/3.5 (dart:io)",
    "reqwest/0.12.8",
    "undici",
    "Bun/1.1.30",
    "Deno/2.0.2",
    "ruby-openai/7.3.1",
    "python-httpx/0.23.0",
)
UA_W = 1.0 / np.arange(1, len(USER_AGENTS) + 1) ** 1.25
UA_W = UA_W / UA_W.sum()
UA_RING_RARE = USER_AGENTS.index("python-httpx/0.23.0")
N_RING_COMMON_UA = 8  # rings blend in with the most common clients
APP_UA = len(USER_AGENTS)
EXTRA_UAS = ("QuillWrite/3.2 (openai-python/1.51.2)",)  # the popular app's own client
ALL_UAS = USER_AGENTS + EXTRA_UAS

DIURNAL = np.array(
    [
        1,
        0.6,
        0.4,
        0.3,
        0.3,
        0.4,
        0.8,
        1.5,
        2.5,
        3.5,
        4,
        4.2,
        4,
        4,
        4.2,
        4,
        3.6,
        3,
        2.8,
        3,
        3.2,
        3,
        2.4,
        1.6,
    ],
    dtype=np.float64,
)
DIURNAL = DIURNAL / DIURNAL.sum()
BUSINESS = np.array([0.1] * 7 + [1, 3, 5, 5, 4, 3, 5, 5, 5, 4, 2, 1, 0.6, 0.4, 0.3, 0.2, 0.1])
BUSINESS = BUSINESS / BUSINESS.sum()

# ---------------------------------------------------------------------------------------------
# Public result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`generate_world` wrote.

    Attributes
    ----------
    n_accounts, n_payments, n_events : int
        Rows written to ``accounts``, ``payments`` and ``events``.
    n_requests : int
        Sum of ``events.requests`` (an event row is a bucket of one or more requests).
    groups : dict of str to int
        Accounts per group kind (the ``group`` label), in :data:`KINDS` order.
    rings : dict of str to int
        Accounts per ring id.
    paths : dict of str to Path
        The file written for each table.
    seed : int
        The seed the world was drawn from.
    fmt : str
        ``csv`` or ``parquet``.
    elapsed_s : float
        Wall time of the generation, in seconds.
    """

    n_accounts: int
    n_payments: int
    n_events: int
    n_requests: int
    groups: dict[str, int]
    rings: dict[str, int]
    paths: dict[str, Path]
    seed: int
    fmt: str
    elapsed_s: float

    @property
    def tables(self) -> dict[str, int]:
        """Rows per table."""
        return {
            "accounts": self.n_accounts,
            "payments": self.n_payments,
            "events": self.n_events,
            "labels": self.n_accounts,
        }


# ---------------------------------------------------------------------------------------------
# Small vectorised helpers
# ---------------------------------------------------------------------------------------------


def _mix64(x: np.ndarray) -> UIntArray:
    """splitmix64 finaliser: a bijective scramble of 64-bit integers (wraps by design)."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)


def _rand_u64(rng: np.random.Generator, n: int) -> UIntArray:
    return rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64).astype(np.uint64)


def _hex_ids(values: np.ndarray, prefix: str) -> pa.Array:
    """Format 64-bit integers as ``prefix`` + 16 lowercase hex digits, vectorised."""
    raw = np.ascontiguousarray(values.astype(">u8")).tobytes().hex().encode("ascii")
    fixed = pa.array(np.frombuffer(raw, dtype="S16"), type=pa.binary()).cast(pa.string())
    return pc.binary_join_element_wise(prefix, fixed, "")


def _format_ips(codes: np.ndarray, v6_hi: UIntArray, v6_lo: UIntArray) -> pa.Array:
    """Format IP codes: below 2**32 an IPv4 address, else a row of the IPv6 table."""
    codes = np.asarray(codes, dtype=np.int64)
    out = np.empty(len(codes), dtype=object)
    is4 = codes < V6_BASE
    v4 = codes[is4]
    if len(v4):
        octets = [pa.array((v4 >> s) & 0xFF).cast(pa.string()) for s in (24, 16, 8, 0)]
        out[is4] = pc.binary_join_element_wise(*octets, ".").to_numpy(zero_copy_only=False)
    if (~is4).any():
        rows = codes[~is4] - V6_BASE
        words = np.stack([v6_hi[rows], v6_lo[rows]], axis=1).astype(">u8")
        raw = np.ascontiguousarray(words).tobytes().hex().encode("ascii")
        groups = np.frombuffer(raw, dtype="S4").reshape(-1, 8)
        parts = [pa.array(groups[:, i], type=pa.binary()).cast(pa.string()) for i in range(8)]
        out[~is4] = pc.binary_join_element_wise(*parts, ":").to_numpy(zero_copy_only=False)
    return pa.array(out, type=pa.string())


def _take_codes(codes: np.ndarray, formatter: Callable[[np.ndarray], pa.Array]) -> pa.Array:
    """Format each distinct code once and expand: strings cost O(distinct), not O(rows)."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    return formatter(uniq).take(pa.array(inverse.astype(np.int64)))


class _TimeFormatter:
    """ISO 8601 UTC strings (``2026-06-02T13:45:12Z``) from epoch seconds, via lookup tables."""

    def __init__(self, lo: int, hi: int) -> None:
        self.day0 = lo // DAY
        days = np.arange(self.day0, hi // DAY + 2).astype("datetime64[D]")
        self.days = pa.array(np.datetime_as_string(days).astype(object), type=pa.string())
        tods = np.arange(DAY)
        hms = np.char.mod("T%02d:", tods // HOUR)
        hms = np.char.add(hms, np.char.mod("%02d:", (tods % HOUR) // MINUTE))
        hms = np.char.add(hms, np.char.mod("%02dZ", tods % MINUTE))
        self.tods = pa.array(hms.astype(object), type=pa.string())

    def __call__(self, seconds: np.ndarray) -> pa.Array:
        seconds = np.asarray(seconds, dtype=np.int64)
        day = pa.array(seconds // DAY - self.day0)
        tod = pa.array(seconds % DAY)
        return pc.binary_join_element_wise(self.days.take(day), self.tods.take(tod), "")


def _choice(rng: np.random.Generator, weights: np.ndarray, size: int) -> IntArray:
    return np.asarray(rng.choice(len(weights), size=size, p=weights), dtype=np.int64)


def _skewed_index(u: np.ndarray, n: np.ndarray, skew: np.ndarray | float) -> IntArray:
    """An index in ``[0, n)`` from uniforms ``u``; ``skew`` > 1 favours the first entries."""
    idx = np.floor(n * np.power(u, skew)).astype(np.int64)
    return np.minimum(idx, np.maximum(n - 1, 0))


def _human_time(
    rng: np.random.Generator,
    start: IntArray,
    end: IntArray,
    tz_min: IntArray,
    profile: np.ndarray = DIURNAL,
    weekdays_only: np.ndarray | None = None,
) -> IntArray:
    """Times in ``[start, end)`` at human hours of the local day (``profile`` over 24 hours)."""
    n = len(start)
    span = np.maximum(end - start, 1)
    t = start + (rng.random(n) * span).astype(np.int64)
    offset = tz_min * MINUTE
    local_day = (t + offset) // DAY
    tod = _choice(rng, profile, n) * HOUR + rng.integers(0, HOUR, n)
    if weekdays_only is not None:
        weekday = (local_day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        local_day = local_day - (weekdays_only & (weekday == 5)) + (weekdays_only & (weekday == 6))
    out = local_day * DAY + tod - offset
    out = np.where(out < start, out + DAY, out)
    out = np.where(out >= end, out - DAY, out)
    return np.clip(out, start, np.maximum(end - 1, start))


def _unique_prefixes(rng: np.random.Generator, n: int) -> IntArray:
    """``n`` distinct public-looking IPv4 /24 networks (as the address of host 0)."""
    first = np.array([o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)])
    found: list[np.ndarray] = []
    have = np.empty(0, dtype=np.int64)
    while len(have) < n:
        draw = (first[rng.integers(0, len(first), 2 * n)] << 24) | (
            rng.integers(0, 1 << 16, 2 * n) << 8
        )
        found.append(draw)
        allv = np.concatenate(found)
        _, first_idx = np.unique(allv, return_index=True)
        have = allv[np.sort(first_idx)]
    return np.asarray(have[:n], dtype=np.int64)


def _hosts(rng: np.random.Generator, prefixes: IntArray) -> IntArray:
    return prefixes + rng.integers(2, 255, len(prefixes))


def _pick(rng: np.random.Generator, words: tuple[str, ...] | list[str], n: int) -> np.ndarray:
    return np.array(words, dtype=StringDType())[rng.integers(0, len(words), n)]


def _digits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype(np.int64).astype(StringDType())


def _cat(*parts: np.ndarray | str) -> np.ndarray:
    out = parts[0]
    for p in parts[1:]:
        out = np.strings.add(out, p)
    return np.asarray(out)


# ---------------------------------------------------------------------------------------------
# Append-only code tables addressed by (start, length) segments
# ---------------------------------------------------------------------------------------------


class _Table:
    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, values: np.ndarray) -> int:
        start = self.size
        self.parts.append(np.asarray(values, dtype=self.dtype))
        self.size += len(values)
        return start

    def add_segments(self, values: np.ndarray, lengths: np.ndarray) -> IntArray:
        """Append ``values`` (segments laid end to end); return each segment's start."""
        base = self.add(values)
        return base + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def array(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.empty(0, dtype=self.dtype)


def _segment_offsets(lengths: np.ndarray) -> tuple[IntArray, IntArray]:
    """For segments of ``lengths``: each element's segment index and position inside it."""
    lengths = np.asarray(lengths, dtype=np.int64)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return owner, np.arange(lengths.sum()) - starts[owner]


# ---------------------------------------------------------------------------------------------
# The plan: how many accounts of each kind
# ---------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    n: int
    ring_sizes: list[int]
    family_sizes: IntArray
    company_sizes: list[int]
    university_sizes: list[int]
    hackathon_sizes: list[int]
    cgnat_ips: list[int]  # number of CGNAT addresses per carrier
    cgnat_n: int
    app_n: int
    solo_n: int

    def kinds(self) -> IntArray:
        sizes = [
            (RING, sum(self.ring_sizes)),
            (FAMILY, int(self.family_sizes.sum())),
            (COMPANY, sum(self.company_sizes)),
            (UNIVERSITY, sum(self.university_sizes)),
            (HACKATHON, sum(self.hackathon_sizes)),
            (CGNAT, self.cgnat_n),
            (APP, self.app_n),
            (SOLO, self.solo_n),
        ]
        return np.repeat([k for k, _ in sizes], [s for _, s in sizes]).astype(np.int64)


def _plan(rng: np.random.Generator, n: int) -> _Plan:
    scale = n / 100_000
    n_rings = max(2, round(8 * np.sqrt(scale)))
    ring_total = max(20 * n_rings, round(0.035 * n))
    # Sizes spread from ~80 to ~1,500 at 100k accounts (a narrower spread in small worlds).
    weights = np.geomspace(1, min(15.0, 1.5 * n_rings), n_rings) * rng.uniform(0.85, 1.15, n_rings)
    ring_sizes = np.maximum(20, np.floor(weights / weights.sum() * ring_total)).astype(int)
    ring_sizes = rng.permutation(ring_sizes)

    fam_total = round(0.08 * n)
    fam_sizes = rng.choice([2, 3, 4, 5], size=fam_total // 2, p=[0.4, 0.3, 0.2, 0.1])
    fam_sizes = fam_sizes[np.cumsum(fam_sizes) <= fam_total]

    cap = max(20, round(0.02 * n))
    n_comp = max(1, round(n / 2500))
    comp_sizes = np.exp(rng.uniform(np.log(20), np.log(300), n_comp)).astype(int)
    comp_sizes = np.minimum(comp_sizes, cap)

    n_uni = max(1, round(scale))
    uni_sizes = np.minimum(rng.integers(300, 801, n_uni), max(30, round(0.007 * n)))
    n_hack = max(1, round(scale))
    hack_sizes = np.minimum(rng.integers(100, 201, n_hack), max(20, round(0.002 * n)))

    n_cg_ips = max(2, round(6 * scale))
    n_carriers = max(1, min(n_cg_ips // 2, round(3 * np.sqrt(scale))))
    cg_ips = np.full(n_carriers, n_cg_ips // n_carriers)
    cg_ips[: n_cg_ips % n_carriers] += 1
    cgnat_n = round(0.15 * n)
    app_n = round(0.04 * n)

    used = (
        ring_sizes.sum()
        + fam_sizes.sum()
        + comp_sizes.sum()
        + uni_sizes.sum()
        + hack_sizes.sum()
        + cgnat_n
        + app_n
    )
    return _Plan(
        n=n,
        ring_sizes=[int(s) for s in ring_sizes],
        family_sizes=fam_sizes.astype(np.int64),
        company_sizes=[int(s) for s in comp_sizes],
        university_sizes=[int(s) for s in uni_sizes],
        hackathon_sizes=[int(s) for s in hack_sizes],
        cgnat_ips=[int(c) for c in cg_ips],
        cgnat_n=cgnat_n,
        app_n=app_n,
        solo_n=int(n - used),
    )


# ---------------------------------------------------------------------------------------------
# The account population
# ---------------------------------------------------------------------------------------------


@dataclass
class _Schedules:
    """Per-group synchronised schedules that event rows draw their times from."""

    slot_tab: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    slot_start: list[int] = field(default_factory=list)
    slot_n: list[int] = field(default_factory=list)
    day_tab: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    day_start: list[int] = field(default_factory=list)
    day_n: list[int] = field(default_factory=list)
    slot_jitter: list[float] = field(default_factory=list)
    cron_tod: list[int] = field(default_factory=list)
    cron_jitter: list[float] = field(default_factory=list)
    deadline_tab: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    deadline_start: list[int] = field(default_factory=list)
    deadline_n: list[int] = field(default_factory=list)
    window: list[tuple[int, int]] = field(default_factory=list)


class _World:
    """Every per-account attribute as a numpy array, plus the code tables they point into."""

    def __init__(self, n: int, kinds: IntArray, lam: float, prefixes: IntArray) -> None:
        self.n = n
        self.kind = kinds
        self.lam = lam
        self._prefixes = prefixes
        self._next_prefix = 0
        self.account_key = np.zeros(n, np.uint64)
        self.order = np.arange(n)
        i64 = np.int64
        self.group = np.full(n, -1, i64)  # instance within kind; ring index for rings
        self.role = np.zeros(n, i64)
        self.country = np.zeros(n, i64)
        self.created = np.zeros(n, i64)
        self.act_start = np.zeros(n, i64)
        self.act_end = np.full(n, WINDOW_END, i64)
        self.n_rows = np.zeros(n, i64)
        self.local: np.ndarray = np.empty(n, dtype=StringDType())
        self.domain: np.ndarray = np.empty(n, dtype=StringDType())
        self.signup_ip = np.zeros(n, i64)
        self.ipa_start = np.zeros(n, i64)
        self.ipa_n = np.ones(n, i64)
        self.ipa_skew = np.full(n, 3.0)
        self.ipb_start = np.zeros(n, i64)
        self.ipb_n = np.zeros(n, i64)
        self.ipb_p = np.zeros(n)
        self.dev_start = np.zeros(n, i64)
        self.dev_n = np.ones(n, i64)
        self.has_card = np.zeros(n, bool)
        self.card_fp = np.zeros(n, np.uint64)
        self.card_bin = np.zeros(n, i64)
        self.card_added = np.zeros(n, i64)
        self.billing = np.zeros(n, np.uint64)
        self.ua_a = np.zeros(n, i64)
        self.ua_b = np.zeros(n, i64)
        self.ua_b_p = np.zeros(n)
        self.pkey = np.zeros(n, np.uint64)
        self.p_personal = np.ones(n, i64)
        self.sp_start = np.zeros(n, i64)
        self.sp_n = np.zeros(n, i64)
        self.sp_p = np.zeros(n)
        self.sync_kind = np.zeros(n, i64)
        self.sync_grp = np.zeros(n, i64)
        self.sync_p = np.zeros(n)
        self.sy_start = np.zeros(n, i64)
        self.sy_n = np.zeros(n, i64)
        self.sy_p = np.zeros(n)
        self.sy_skew = np.ones(n)
        self.model = np.zeros(n, i64)
        self.switch = np.full(n, np.iinfo(np.int64).max, i64)
        self.p4 = np.zeros(n)
        self.mu_in = np.zeros(n)
        self.mu_out = np.zeros(n)
        self.req_mean = np.ones(n)
        self.weekdays = np.zeros(n, bool)
        self.ips = _Table(np.int64)
        self.devices = _Table(np.uint64)
        self.prompts = _Table(np.uint64)
        self.v6_hi = _Table(np.uint64)
        self.v6_lo = _Table(np.uint64)
        self.sched = _Schedules()
        self.bins = np.empty(0, np.int64)
        self.bin_country = np.empty(0, np.int64)
        self.ring_ids: list[str] = []

    def take_prefixes(self, k: int) -> IntArray:
        """``k`` /24 networks that no other population has been given."""
        out = self._prefixes[self._next_prefix : self._next_prefix + k]
        if len(out) < k:  # pragma: no cover - the allocation is sized up front
            raise RuntimeError("ran out of /24 networks")
        self._next_prefix += k
        return out

    @property
    def tz(self) -> IntArray:
        return np.asarray(COUNTRY_TZ[self.country], dtype=np.int64)

    def add_v6(self, hi: UIntArray, lo: UIntArray) -> IntArray:
        start = self.v6_hi.add(hi)
        self.v6_lo.add(lo)
        return V6_BASE + start + np.arange(len(hi), dtype=np.int64)


def _build_bins(rng: np.random.Generator, w: _World) -> list[tuple[IntArray, FloatArray]]:
    """A Zipf-weighted pool of ~1,500 card BINs, split by issuing country."""
    n_bins = 1_500
    per_country = np.maximum(8, np.round(COUNTRY_W * n_bins)).astype(int)
    total = int(per_country.sum())
    heads = rng.choice(
        [4, 51, 52, 53, 54, 55, 37, 6011], size=total, p=[0.55] + [0.07] * 5 + [0.05, 0.05]
    )
    tails = rng.integers(0, 10**6, total)
    digits = np.where(heads == 6011, 2, np.where(heads >= 10, 4, 5))
    bins = heads * 10**digits + tails % (10**digits)
    _, first = np.unique(bins, return_index=True)
    keep = np.sort(first)
    bins, countries = bins[keep], np.repeat(np.arange(len(COUNTRIES)), per_country)[keep]
    w.bins, w.bin_country = bins.astype(np.int64), countries.astype(np.int64)
    pools = []
    for c in range(len(COUNTRIES)):
        idx = np.flatnonzero(countries == c)
        weights = 1.0 / np.arange(1, len(idx) + 1) ** 1.1
        pools.append((idx, weights / weights.sum()))
    return pools


def _draw_bins(
    rng: np.random.Generator, pools: list[tuple[IntArray, FloatArray]], country: IntArray
) -> IntArray:
    out = np.zeros(len(country), np.int64)
    for c, (idx, weights) in enumerate(pools):
        sel = np.flatnonzero(country == c)
        if len(sel):
            out[sel] = idx[_choice(rng, weights, len(sel))]
    return out


def _solo_locals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Benign mailbox names: the same styles rings use appear here at ordinary rates."""
    first, last = _pick(rng, FIRST_NAMES, n), _pick(rng, LAST_NAMES, n)
    adj, noun = _pick(rng, ADJECTIVES, n), _pick(rng, NOUNS, n)
    d2 = _digits(rng.integers(10, 100, n))
    year = _digits(rng.integers(1960, 2009, n))
    d34 = _digits(rng.integers(10, 10_000, n))
    initial = np.strings.slice(first, 0, 1)
    styles = [
        _cat(first, ".", last),
        _cat(first, last, d2),
        _cat(first, ".", last, d2),
        _cat(initial, last),
        _cat(first, year),
        _cat(first, "_", last),
        _cat(adj, noun, d34),
        _cat(noun, _digits(rng.integers(100, 1000, n))),
        _cat(last, ".", first),
    ]
    style = _choice(rng, np.array([0.2, 0.14, 0.12, 0.1, 0.12, 0.06, 0.12, 0.08, 0.06]), n)
    out = np.empty(n, dtype=StringDType())
    for s, values in enumerate(styles):
        sel = style == s
        out[sel] = values[sel]
    return out


def _ring_locals(rng: np.random.Generator, n: int, style: int) -> np.ndarray:
    first, last = _pick(rng, FIRST_NAMES, n), _pick(rng, LAST_NAMES, n)
    adj, noun = _pick(rng, ADJECTIVES, n), _pick(rng, NOUNS, n)
    if style == 0:
        return _cat(adj, noun, _digits(rng.integers(1000, 10_000, n)))
    if style == 1:
        return _cat(first, ".", last, _digits(rng.integers(10, 100, n)))
    if style == 2:
        return _cat(first, np.strings.slice(last, 0, 1), _digits(rng.integers(1000, 10_000, n)))
    return _cat(noun, "_", _pick(rng, NOUNS, n), _digits(rng.integers(10, 100, n)))


def _domains(rng: np.random.Generator, n: int, tlds: tuple[str, ...] = TLDS) -> np.ndarray:
    """``n`` distinct made-up organisation domains."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        m = 2 * (n - len(out)) + 8
        cand = _cat(
            _pick(rng, ADJECTIVES + NOUNS, m),
            _pick(rng, NOUNS + COMPANY_SUFFIXES, m),
            ".",
            _pick(rng, tlds, m),
        )
        for c in cand.tolist():
            if c not in seen:
                seen.add(c)
                out.append(c)
    return np.array(out[:n], dtype=StringDType())


def _base_activity(rng: np.random.Generator, w: _World, lam: float) -> None:
    """Country, signup time, active span and event volume of an ordinary user."""
    n = w.n
    w.country = _choice(rng, COUNTRY_W, n)
    tz = w.tz
    recent = rng.random(n) < 0.3
    created = np.where(
        recent,
        WINDOW_START + (rng.random(n) * (WINDOW_DAYS - 1) * DAY).astype(np.int64),
        WINDOW_START - (rng.random(n) * 730 * DAY).astype(np.int64),
    )
    w.created = _human_time(rng, created, created + DAY, tz)
    start = np.maximum(w.created + (rng.exponential(1.5, n) * DAY).astype(np.int64), WINDOW_START)
    late = rng.random(n) < 0.1  # returning users who wake up inside the window
    start = np.where(late, WINDOW_START + (rng.random(n) * 90 * DAY).astype(np.int64), start)
    w.act_start = np.minimum(np.maximum(start, w.created), WINDOW_END - HOUR)
    churned = rng.random(n) < 0.06
    w.act_end = np.where(
        churned,
        np.minimum(w.act_start + (rng.uniform(5, 60, n) * DAY).astype(np.int64), WINDOW_END),
        WINDOW_END,
    )
    rows = rng.lognormal(np.log(lam * 0.55), 1.1, n)
    w.n_rows = np.where(rng.random(n) < 0.08, 0, np.maximum(1, np.round(rows))).astype(np.int64)
    w.n_rows = np.minimum(w.n_rows, int(lam * 60))


def _base_mailboxes(rng: np.random.Generator, w: _World) -> None:
    """Mailboxes: mainstream providers, plus small organisation domains a few people share."""
    n = w.n
    w.local = _solo_locals(rng, n)
    small = _domains(rng, max(50, n // 25))
    dom = np.array(DOMAIN_NAMES, dtype=StringDType())[_choice(rng, DOMAIN_W, n)]
    w.domain = np.where(rng.random(n) < 0.1, small[rng.integers(0, len(small), n)], dom)


def _base_addresses(rng: np.random.Generator, w: _World) -> tuple[IntArray, IntArray]:
    """Home addresses of every account; return the residential /24s and each home address.

    Residential /24s are shared by unrelated neighbours, with DHCP churn inside the /24; 8% of
    users are on IPv6 with rotating privacy addresses inside their /64.
    """
    n = w.n
    res = w.take_prefixes(max(500, n // 5))
    home = _hosts(rng, res[rng.integers(0, len(res), n)])
    n_ip = 1 + rng.choice([0, 1, 2, 3], size=n, p=[0.45, 0.3, 0.15, 0.1])
    owner, pos = _segment_offsets(n_ip)
    codes = np.where(
        pos == 0, home[owner], (home[owner] & ~0xFF) + rng.integers(2, 255, len(owner))
    )
    v6 = rng.random(n) < 0.08
    isp = np.array([0x2A01, 0x2600, 0x2001, 0x2406, 0x2804, 0x2A02, 0x2003], dtype=np.uint64)
    hi = (
        (isp[rng.integers(0, len(isp), n)] << np.uint64(48))
        | (rng.integers(0x1000, 1 << 32, n).astype(np.uint64) << np.uint64(16))
        | rng.integers(0, 1 << 16, n).astype(np.uint64)
    )
    v6_rows = np.flatnonzero(v6[owner])
    codes[v6_rows] = w.add_v6(
        np.asarray(hi, dtype=np.uint64)[owner[v6_rows]], _rand_u64(rng, len(v6_rows))
    )
    w.ipa_start = w.ips.add_segments(codes, n_ip)
    w.ipa_n = n_ip
    w.ipa_skew = np.full(n, 3.0)
    w.signup_ip = codes[w.ipa_start - w.ipa_start[0]]
    return res, home


def _base_payment(rng: np.random.Generator, w: _World) -> list[tuple[IntArray, FloatArray]]:
    """Devices, cards and billing customers; return the per-country BIN pools."""
    n = w.n
    w.dev_n = np.where(rng.random(n) < 0.15, 2, 1)
    w.dev_start = w.devices.add_segments(_rand_u64(rng, int(w.dev_n.sum())), w.dev_n)
    pools = _build_bins(rng, w)
    w.card_bin = _draw_bins(rng, pools, w.country)
    w.has_card = rng.random(n) < 0.85
    w.card_fp = _rand_u64(rng, n)
    w.card_added = w.created + (rng.exponential(2.0, n) * DAY * (rng.random(n) < 0.6)).astype(
        np.int64
    )
    w.billing = _rand_u64(rng, n)
    return pools


def _base_prompts(rng: np.random.Generator, w: _World) -> int:
    """Own and shared prompts; return where the public task templates start in ``w.prompts``.

    Every account has its own few fingerprints; a quarter of all users now and then send the
    generic public system prompts ("You are a helpful assistant"), and 10% send a few public
    task templates (from tutorials and benchmark sets). Rings draw some of their own templates
    from the same public pool.
    """
    n = w.n
    w.pkey = _rand_u64(rng, n)
    w.p_personal = 1 + rng.geometric(0.35, n)
    generic = _rand_u64(rng, 12)
    g_start = w.prompts.add(generic)
    uses_generic = rng.random(n) < 0.25
    w.sp_start = np.full(n, g_start)
    w.sp_n = np.where(uses_generic, len(generic), 0)
    w.sp_p = np.where(uses_generic, rng.uniform(0.05, 0.3, n), 0.0)
    public = w.prompts.add(_rand_u64(rng, N_PUBLIC_TEMPLATES))
    uses_public = ~uses_generic & (rng.random(n) < 0.13)
    w.sp_start = np.where(
        uses_public, public + rng.integers(0, N_PUBLIC_TEMPLATES - 2, n), w.sp_start
    )
    w.sp_n = np.where(uses_public, 3, w.sp_n)
    w.sp_p = np.where(uses_public, rng.uniform(0.1, 0.4, n), w.sp_p)
    w.sy_skew = np.full(n, 2.0)
    return public


def _base_usage(rng: np.random.Generator, w: _World) -> None:
    """Models, m-4 adoption and token volumes of an ordinary user."""
    n = w.n
    # Models: a preferred one; early adopters move part of their traffic to m-4 within days.
    w.model = _choice(rng, np.array([0.2, 0.35, 0.45]), n)
    adopter = rng.random(n) < 0.15
    w.switch = np.where(
        adopter, M4_RELEASE + (rng.exponential(2.5, n) * DAY).astype(np.int64), w.switch
    )
    w.p4 = np.where(adopter, rng.uniform(0.2, 0.7, n), 0.0)

    # Tokens: input-heavy chat on average; a minority of writers are output-heavy.
    writer = rng.random(n) < 0.06
    w.mu_in = np.where(writer, rng.normal(np.log(300), 0.4, n), rng.normal(np.log(700), 0.8, n))
    w.mu_out = np.where(writer, rng.normal(np.log(1400), 0.4, n), rng.normal(np.log(280), 0.7, n))
    w.req_mean = np.clip(rng.lognormal(np.log(1.5), 0.9, n), 1, 300)


def _build_base(rng: np.random.Generator, w: _World, plan: _Plan, lam: float) -> dict[str, Any]:
    """Attributes of an ordinary solo user, drawn for every account; kinds then override them.

    Returns the context later builders share: the residential /24s (``res``), each account's
    home address (``home``), the per-country BIN pools (``pools``) and the start of the public
    task templates (``public``).
    """
    n = w.n
    _base_activity(rng, w, lam)
    _base_mailboxes(rng, w)
    res, home = _base_addresses(rng, w)
    pools = _base_payment(rng, w)
    # Clients: popular user agents shared by everyone.
    w.ua_a = _choice(rng, UA_W, n)
    w.ua_b = _choice(rng, UA_W, n)
    w.ua_b_p = np.where(rng.random(n) < 0.3, rng.uniform(0.1, 0.5, n), 0.0)
    public = _base_prompts(rng, w)
    _base_usage(rng, w)
    return {"res": res, "home": home, "pools": pools, "public": public}


def _build_carriers(rng: np.random.Generator, w: _World, plan: _Plan) -> list[tuple[int, int, int]]:
    """CGNAT pools: a handful of addresses per carrier, each shared by thousands of users."""
    carriers = []
    prefixes = w.take_prefixes(len(plan.cgnat_ips))
    countries = rng.choice([US, 1, 2, 3, 4, 16, 7], size=len(plan.cgnat_ips))
    for prefix, n_ips, country in zip(prefixes, plan.cgnat_ips, countries, strict=True):
        hosts = prefix + rng.choice(np.arange(2, 255), size=n_ips, replace=False)
        carriers.append((w.ips.add(hosts), n_ips, int(country)))
    return carriers


def _build_cgnat(
    rng: np.random.Generator, w: _World, sel: IntArray, carriers: list[tuple[int, int, int]]
) -> None:
    n = len(sel)
    weights = np.array([c[1] for c in carriers], dtype=float)
    which = _choice(rng, weights / weights.sum(), n)
    starts = np.array([c[0] for c in carriers])[which]
    counts = np.array([c[1] for c in carriers])[which]
    w.country[sel] = np.array([c[2] for c in carriers])[which]
    assigned = starts + rng.integers(0, 1 << 30, n) % counts
    other = starts + rng.integers(0, 1 << 30, n) % counts
    all_ips = w.ips.array()
    seg = np.stack([all_ips[assigned], all_ips[other]], axis=1).reshape(-1)
    # Home Wi-Fi (their base segment) becomes the secondary source.
    w.ipb_start[sel], w.ipb_n[sel], w.ipb_p[sel] = w.ipa_start[sel], w.ipa_n[sel], 0.25
    w.ipa_start[sel] = w.ips.add_segments(seg, np.full(n, 2))
    w.ipa_n[sel], w.ipa_skew[sel] = 2, 2.0
    w.signup_ip[sel] = all_ips[assigned]
    w.group[sel] = which


def _build_families(
    rng: np.random.Generator, w: _World, sel: IntArray, sizes: IntArray, ctx: dict[str, Any]
) -> None:
    n_fam = len(sizes)
    fam = np.repeat(np.arange(n_fam), sizes)
    lead = sel[np.concatenate([[0], np.cumsum(sizes)[:-1]])]  # the first member's base values
    w.group[sel] = fam
    w.role[sel] = R_MEMBER
    w.country[sel] = w.country[lead][fam]
    # One home: the lead's IP segment is everyone's; one card; often one shared tablet.
    w.ipa_start[sel], w.ipa_n[sel] = w.ipa_start[lead][fam], w.ipa_n[lead][fam]
    w.signup_ip[sel] = w.signup_ip[lead][fam]
    w.card_fp[sel], w.card_bin[sel] = w.card_fp[lead][fam], w.card_bin[lead][fam]
    w.has_card[sel] = rng.random(len(sel)) < 0.85
    shared_dev = rng.random(len(sel)) < 0.4
    own = w.devices.array()[w.dev_start[sel]]
    fam_dev = _rand_u64(rng, n_fam)[fam]
    pairs = np.stack([own, fam_dev], axis=1).reshape(-1)
    starts = w.devices.add_segments(pairs, np.full(len(sel), 2))
    w.dev_start[sel] = starts
    w.dev_n[sel] = np.where(shared_dev, 2, 1)
    # Surname-patterned mailboxes, often on one provider.
    surname = _pick(rng, LAST_NAMES, n_fam)[fam]
    first = _pick(rng, FIRST_NAMES, len(sel))
    styles = [
        _cat(first, ".", surname),
        _cat(first, surname),
        _cat(surname, ".", first),
        _cat(first, "_", surname, _digits(rng.integers(10, 100, len(sel)))),
        _cat(surname, "family", _digits(rng.integers(1, 10, len(sel)))),
    ]
    style = _choice(rng, np.array([0.35, 0.25, 0.15, 0.15, 0.1]), len(sel))
    for s, values in enumerate(styles):
        w.local[sel[style == s]] = values[style == s]
    same_domain = rng.random(len(sel)) < 0.6
    w.domain[sel] = np.where(same_domain, w.domain[lead][fam], w.domain[sel])


def _build_companies(
    rng: np.random.Generator, w: _World, sel: IntArray, sizes: list[int], ctx: dict[str, Any]
) -> None:
    n_comp = len(sizes)
    domains = _domains(rng, n_comp)
    prefixes = w.take_prefixes(n_comp)
    all_generic = w.prompts
    offset = 0
    for c, size in enumerate(sizes):
        idx = sel[offset : offset + size]
        offset += size
        country = int(_choice(rng, COUNTRY_W, 1)[0])
        w.group[idx] = c
        w.role[idx] = R_MEMBER
        w.country[idx] = country
        tz = int(COUNTRY_TZ[country])
        # Long history: accounts opened over the past year or so.
        created = WINDOW_END - (rng.uniform(10, 400, size) * DAY).astype(np.int64)
        w.created[idx] = _human_time(rng, created, created + DAY, np.full(size, tz), BUSINESS)
        w.act_start[idx] = np.maximum(w.created[idx] + DAY, WINDOW_START)
        w.act_end[idx] = WINDOW_END
        w.weekdays[idx] = True
        first, last = _pick(rng, FIRST_NAMES, size), _pick(rng, LAST_NAMES, size)
        if rng.random() < 0.5:
            local = _cat(first, ".", last)
        else:
            local = _cat(np.strings.slice(first, 0, 1), last)
        w.local[idx] = local
        w.domain[idx] = domains[c]
        # One NAT address (or a few in one /24); staff work from home some of the time.
        n_nat = int(rng.choice([1, 1, 2, 3]))
        nat = prefixes[c] + rng.choice(np.arange(1, 255), n_nat, replace=False)
        nat_start = w.ips.add(nat)
        w.ipb_start[idx], w.ipb_n[idx], w.ipb_p[idx] = w.ipa_start[idx], w.ipa_n[idx], 0.15
        w.ipa_start[idx], w.ipa_n[idx], w.ipa_skew[idx] = nat_start, n_nat, 1.5
        w.signup_ip[idx] = nat[0]
        # One corporate card and one billing customer.
        w.card_fp[idx] = _rand_u64(rng, 1)[0]
        w.card_bin[idx] = _draw_bins(rng, ctx["pools"], np.array([country]))[0]
        w.has_card[idx] = rng.random(size) < 0.8
        w.billing[idx] = _rand_u64(rng, 1)[0]
        w.ua_a[idx] = w.ua_a[idx[0]]
        # An internal tool's system prompt shared by staff.
        tool = all_generic.add(_rand_u64(rng, int(rng.integers(1, 3))))
        w.sp_start[idx], w.sp_n[idx] = tool, all_generic.size - tool
        w.sp_p[idx] = rng.uniform(0.15, 0.4, size)
        w.n_rows[idx] = np.maximum(w.n_rows[idx], 1)
        if c == 0 or rng.random() < 0.4:
            # Batch service accounts, created long ago, that all start a nightly cron pipeline
            # on the same launch day: templated prompts, synchronised to the minute.
            n_batch = max(2, int(size * rng.uniform(0.1, 0.3)))
            batch = idx[:n_batch]
            templates = w.prompts.add(_rand_u64(rng, int(rng.integers(2, 6))))
            launch = WINDOW_START + int(rng.uniform(5, 80) * DAY)
            w.role[batch] = R_BATCH
            w.act_start[batch] = np.maximum(launch, w.created[batch] + DAY)
            w.sync_kind[batch] = SYNC_CRON
            w.sync_grp[batch] = len(w.sched.cron_tod)
            w.sync_p[batch] = 0.8
            w.sy_start[batch], w.sy_n[batch] = templates, w.prompts.size - templates
            w.sy_p[batch], w.sy_skew[batch] = 1.0, 1.0
            w.n_rows[batch] = np.round(rng.lognormal(np.log(ctx["lam"] * 2.5), 0.3, n_batch))
            w.mu_in[batch] = rng.normal(np.log(1800), 0.2, n_batch)
            w.mu_out[batch] = rng.normal(np.log(400), 0.2, n_batch)
            w.req_mean[batch] = rng.uniform(5, 40, n_batch)
            local_night = int(rng.integers(0, 5)) * HOUR + int(rng.integers(0, 60)) * MINUTE
            w.sched.cron_tod.append((local_night - tz * MINUTE) % DAY)
            w.sched.cron_jitter.append(float(rng.uniform(20, 120)))
            w.ua_a[batch] = int(rng.choice([0, 1, 4, 10]))
            w.ua_b_p[batch] = 0.0


def _build_universities(
    rng: np.random.Generator, w: _World, sel: IntArray, sizes: list[int]
) -> None:
    offset = 0
    for u, size in enumerate(sizes):
        idx = sel[offset : offset + size]
        offset += size
        country = int(rng.choice([US, 2, 3, 6, 9]))
        tz = int(COUNTRY_TZ[country])
        w.group[idx], w.role[idx], w.country[idx] = u, R_MEMBER, country
        term = WINDOW_START + int(rng.uniform(8, 30) * DAY)
        # The whole class signs up within one week.
        created = term + (rng.random(size) * 6 * DAY).astype(np.int64)  # + time of day
        w.created[idx] = _human_time(rng, created, created + DAY, np.full(size, tz))
        w.act_start[idx] = w.created[idx] + (rng.exponential(0.5, size) * DAY).astype(np.int64)
        w.act_end[idx] = WINDOW_END
        name = UNI_NAMES[u % len(UNI_NAMES)] + ("" if u < len(UNI_NAMES) else str(u))
        w.domain[idx] = f"{name}.edu"
        letters = _cat(
            _pick(rng, list("abcdefghijklmnopqrstuvwxyz"), size),
            _pick(rng, list("abcdefghijklmnopqrstuvwxyz"), size),
        )
        student_id = _cat(letters, _digits(rng.integers(1000, 10_000, size)))
        named = _cat(_pick(rng, FIRST_NAMES, size), ".", _pick(rng, LAST_NAMES, size))
        w.local[idx] = np.where(rng.random(size) < 0.7, student_id, named)
        # Campus NAT addresses spread over the campus /24 and its neighbour.
        prefix = int(w.take_prefixes(1)[0])
        campus = prefix + rng.choice(np.arange(1, 255), int(rng.integers(6, 16)), replace=False)
        start = w.ips.add(campus)
        w.ipb_start[idx], w.ipb_n[idx], w.ipb_p[idx] = w.ipa_start[idx], w.ipa_n[idx], 0.3
        w.ipa_start[idx], w.ipa_n[idx], w.ipa_skew[idx] = start, len(campus), 1.0
        w.signup_ip[idx] = campus[rng.integers(0, len(campus), size)]
        w.has_card[idx] = rng.random(size) < 0.4
        # Assignments: one shared prompt per deadline, worked on in the hours before it.
        n_dead = int(rng.integers(5, 9))
        deadlines = term + 10 * DAY + np.arange(n_dead) * int(rng.uniform(10, 14) * DAY)
        deadlines = (
            deadlines[deadlines < WINDOW_END - DAY] + (23 * HOUR + 59 * MINUTE) - tz * MINUTE
        )
        w.sched.deadline_start.append(len(w.sched.deadline_tab))
        w.sched.deadline_n.append(len(deadlines))
        w.sched.deadline_tab = np.concatenate([w.sched.deadline_tab, deadlines])
        prompts = w.prompts.add(_rand_u64(rng, len(deadlines)))
        w.sync_kind[idx], w.sync_grp[idx] = SYNC_DEADLINE, u
        w.sync_p[idx] = 0.35
        w.sy_start[idx], w.sy_n[idx], w.sy_p[idx] = prompts, len(deadlines), 0.9
        w.n_rows[idx] = np.maximum(w.n_rows[idx], 2)


def _build_hackathons(rng: np.random.Generator, w: _World, sel: IntArray, sizes: list[int]) -> None:
    offset = 0
    for h, size in enumerate(sizes):
        idx = sel[offset : offset + size]
        offset += size
        country = int(rng.choice([US, 2, 3, 1, 6]))
        tz = int(COUNTRY_TZ[country])
        w.group[idx], w.role[idx], w.country[idx] = h, R_MEMBER, country
        day = WINDOW_START + int(rng.integers(20, 85)) * DAY
        begin = day + 9 * HOUR - tz * MINUTE
        # Everyone signs up within about three hours, from the venue's one address.
        w.created[idx] = begin - HOUR + (rng.random(size) * 3 * HOUR).astype(np.int64)
        w.act_start[idx] = w.created[idx] + (rng.random(size) * HOUR).astype(np.int64)
        w.act_end[idx] = WINDOW_END
        venue = int(w.take_prefixes(1)[0]) + int(rng.integers(2, 255))
        venue_start = w.ips.add(np.array([venue]))
        w.ipb_start[idx], w.ipb_n[idx], w.ipb_p[idx] = w.ipa_start[idx], w.ipa_n[idx], 0.0
        w.ipa_start[idx], w.ipa_n[idx] = venue_start, 1
        w.signup_ip[idx] = venue
        w.has_card[idx] = rng.random(size) < 0.7
        starter = w.prompts.add(_rand_u64(rng, int(rng.integers(1, 3))))
        w.sync_kind[idx], w.sync_grp[idx], w.sync_p[idx] = SYNC_WINDOW, h, 0.7
        w.sy_start[idx], w.sy_n[idx], w.sy_p[idx] = starter, w.prompts.size - starter, 0.55
        w.sched.window.append((int(begin), int(begin + 36 * HOUR)))
        w.n_rows[idx] = np.maximum(1, np.round(rng.lognormal(np.log(w.lam * 0.6), 0.7, size)))


def _build_app(rng: np.random.Generator, w: _World, sel: IntArray) -> None:
    """Users of a popular writing app: its system prompt is shared by thousands of strangers."""
    n = len(sel)
    w.role[sel] = R_MEMBER
    w.group[sel] = 0
    app_prompts = w.prompts.add(_rand_u64(rng, 2))
    w.sp_start[sel], w.sp_n[sel] = app_prompts, 2
    w.sp_p[sel] = rng.uniform(0.4, 0.9, n)
    w.ua_b[sel] = APP_UA
    w.ua_b_p[sel] = np.where(rng.random(n) < 0.5, 0.8, 0.0)
    w.mu_in[sel] = rng.normal(np.log(350), 0.4, n)
    w.mu_out[sel] = rng.normal(np.log(1200), 0.4, n)
    w.n_rows[sel] = np.maximum(w.n_rows[sel], 1)


@dataclass(frozen=True)
class _RingPlaybook:
    """What a ring's operator decides once and applies to every account of the ring."""

    family: UIntArray  # the template family's prompt fingerprints
    family_w: FloatArray  # how often each template is drawn into an account's shard
    p_tmpl: float  # share of a member's traffic that uses its templates
    pivot: int  # when the ring moves to m-4
    p4: float  # share of traffic on m-4 after the pivot
    req_mean: float
    out_mu: float
    in_mu: float
    sticky: bool  # few exits per account (sticky proxies) or the whole pool (rotating)
    style: int  # mailbox naming style, see _ring_locals
    bins: IntArray  # the 2-3 card BINs virtual cards come from
    common_ua: IntArray
    rare_ua: bool
    base_hour: int  # start of controller A's dispatch day, UTC


def _ring_playbook(
    rng: np.random.Generator, w: _World, r: int, ctx: dict[str, Any]
) -> _RingPlaybook:
    """Draw ring ``r``'s template family, traffic shape, proxy style, cards and clients.

    The template family has 5-40 fingerprints, one to three of them public templates that
    benign users send too. Each account works a shard of 2-6 of them, so two members need not
    share a template, yet each template serves many members.
    """
    tmpl_n = int(rng.integers(5, 41))
    n_public = min(int(rng.integers(1, 4)), max(1, tmpl_n // 4))
    family = np.concatenate(
        [
            w.prompts.array()[
                ctx["public"] + rng.choice(N_PUBLIC_TEMPLATES, n_public, replace=False)
            ],
            _rand_u64(rng, tmpl_n - n_public),
        ]
    )
    zipf = 1.0 / np.arange(1, tmpl_n + 1) ** 0.7
    family_w = np.asarray(rng.permutation(zipf / zipf.sum()), dtype=np.float64)
    p_tmpl = float(rng.uniform(0.6, 0.8))
    pivot = M4_RELEASE + int(rng.uniform(1, 6) * HOUR)
    p4 = float(rng.uniform(0.5, 0.65))
    req_mean = float(rng.uniform(8, 30))
    out_mu, in_mu = np.log(rng.uniform(1200, 2500)), np.log(rng.uniform(250, 500))
    return _RingPlaybook(
        family=family,
        family_w=family_w,
        p_tmpl=p_tmpl,
        pivot=pivot,
        p4=p4,
        req_mean=req_mean,
        out_mu=out_mu,
        in_mu=in_mu,
        sticky=r % 2 == 1,  # sizes are shuffled: both proxy styles in every world
        style=int(rng.integers(0, 4)),
        bins=rng.choice(ctx["ring_bins"], size=int(rng.integers(2, 4)), replace=False),
        common_ua=rng.choice(N_RING_COMMON_UA, size=3, replace=False),
        rare_ua=bool(rng.random() < 0.5),
        base_hour=int(rng.integers(0, 24)),
    )


def _ring_signups(
    rng: np.random.Generator, w: _World, members: IntArray, is_aged: np.ndarray, start: int
) -> None:
    """Signup and activation times of one controller's accounts, its campaign opening at ``start``.

    Fresh accounts sign up in bursts of 20-300 within 1-2 hours over the first two weeks; aged
    accounts were opened 3-10 weeks earlier, left dormant, and wake together at the start.
    """
    m = len(members)
    fresh = np.flatnonzero(~is_aged)
    n_bursts = max(1, int(np.ceil(len(fresh) / rng.uniform(120, 250))))
    burst_at = start + np.sort(rng.uniform(0, 14 * DAY, n_bursts)).astype(np.int64)
    burst_at[0] = start
    burst_len = rng.uniform(1, 2, n_bursts) * HOUR
    which = rng.integers(0, n_bursts, len(fresh))
    created = np.empty(m, np.int64)
    created[fresh] = burst_at[which] + (rng.random(len(fresh)) * burst_len[which]).astype(np.int64)
    old = np.flatnonzero(is_aged)
    created[old] = start - (rng.uniform(21, 70, len(old)) * DAY).astype(np.int64)
    created[old] = _human_time(rng, created[old], created[old] + DAY, w.tz[members[old]])
    act = created + (rng.uniform(0.2, 36, m) * HOUR).astype(np.int64)
    act[old] = start + (rng.uniform(0, 36, len(old)) * HOUR).astype(np.int64)
    w.created[members] = created
    w.act_start[members] = np.minimum(act, WINDOW_END - HOUR)
    w.act_end[members] = WINDOW_END


def _ring_proxies(
    rng: np.random.Generator,
    w: _World,
    members: IntArray,
    sticky: bool,
    prefixes: tuple[IntArray, IntArray],
    benign_v4: IntArray,
) -> None:
    """Give one controller's accounts addresses from its residential proxy pool.

    The pool has hundreds to thousands of exits over many /24s, drawn from the residential
    ``prefixes`` benign users live in and extra ones; a few are the very addresses benign
    neighbours use at home (``benign_v4``). Sticky proxies give each account 1-3 exits,
    rotating ones the whole pool.
    """
    res, extra_res = prefixes
    m = len(members)
    pool_n = int(np.clip(m * rng.uniform(0.6, 1.0 if sticky else 2.5), 300, 5_000))
    from_res = rng.random(pool_n) < 0.6
    pref = np.where(
        from_res,
        res[rng.integers(0, len(res), pool_n)],
        extra_res[rng.integers(0, len(extra_res), pool_n)],
    )
    pool = _hosts(rng, pref)
    shared = rng.random(pool_n) < 0.03
    pool[shared] = benign_v4[rng.integers(0, len(benign_v4), int(shared.sum()))]
    pool_start = w.ips.add(pool)
    if sticky:
        per = rng.integers(1, 4, m)
        picks = pool[rng.integers(0, pool_n, int(per.sum()))]
        starts = w.ips.add_segments(picks, per)
        w.ipa_start[members], w.ipa_n[members], w.ipa_skew[members] = starts, per, 1.3
        w.signup_ip[members] = picks[starts - starts[0]]
    else:
        w.ipa_start[members], w.ipa_n[members], w.ipa_skew[members] = pool_start, pool_n, 1.0
        w.signup_ip[members] = pool[rng.integers(0, pool_n, m)]
    w.ipb_n[members], w.ipb_p[members] = 0, 0.0


def _ring_clock(
    rng: np.random.Generator, w: _World, members: IntArray, start: int, base_hour: int, c: int
) -> None:
    """Controller ``c``'s clock: a few dispatch slots a day, on most campaign days from ``start``.

    Controller B (``c`` = 1) runs the same playbook on a clock shifted by 4-8 hours.
    """
    n_slots = int(rng.integers(4, 11))
    # The shift is drawn even for controller A (c = 0), which keeps the seed's stream.
    base = (base_hour + c * int(rng.integers(4, 9))) * HOUR
    slots = (base + np.sort(rng.uniform(0, 14 * HOUR, n_slots)).astype(np.int64)) % DAY
    days = np.arange(start // DAY, WINDOW_END // DAY)
    days = days[rng.random(len(days)) < 0.8] * DAY
    grp = len(w.sched.slot_n)
    w.sched.slot_start.append(len(w.sched.slot_tab))
    w.sched.slot_n.append(n_slots)
    w.sched.slot_tab = np.concatenate([w.sched.slot_tab, slots])
    w.sched.day_start.append(len(w.sched.day_tab))
    w.sched.day_n.append(len(days))
    w.sched.day_tab = np.concatenate([w.sched.day_tab, days])
    w.sched.slot_jitter.append(float(rng.uniform(10, 30) * MINUTE))
    w.sync_kind[members], w.sync_grp[members], w.sync_p[members] = SYNC_SLOTS, grp, 1.0


def _ring_cards_and_devices(
    rng: np.random.Generator, w: _World, idx: IntArray, bins: IntArray
) -> None:
    """Virtual cards, billing customers and session devices of a ring's accounts.

    Cards are mostly distinct, from 2-3 BINs, with about 10% reused by 2-3 accounts; devices
    are randomised per session and a few leak across accounts.
    """
    size = len(idx)
    w.has_card[idx] = rng.random(size) < 0.95
    card_bins = bins[rng.integers(0, len(bins), size)]
    fps = _rand_u64(rng, size)
    reuse = np.flatnonzero(rng.random(size) < 0.07)
    source = rng.integers(0, size, len(reuse))
    fps[reuse], card_bins[reuse] = fps[source], card_bins[source]
    w.card_bin[idx] = card_bins
    w.card_fp[idx] = fps
    w.card_added[idx] = w.created[idx] + (rng.uniform(1, 30, size) * MINUTE).astype(np.int64)
    w.billing[idx] = _rand_u64(rng, size)

    n_dev = rng.integers(1, 5, size)
    devs = _rand_u64(rng, int(n_dev.sum()))
    leak = np.flatnonzero(rng.random(len(devs)) < 0.03)
    devs[leak] = devs[rng.integers(0, len(devs), len(leak))]
    w.dev_start[idx], w.dev_n[idx] = w.devices.add_segments(devs, n_dev), n_dev


def _ring_traffic(
    rng: np.random.Generator,
    w: _World,
    idx: IntArray,
    aged: np.ndarray,
    book: _RingPlaybook,
    lam: float,
) -> None:
    """Traffic: template family mixed with ordinary prompts, output-heavy, pivots to m-4."""
    size = len(idx)
    shard_n = np.minimum(rng.integers(2, 7, size), len(book.family))
    shard_n[aged] = np.minimum(shard_n[aged], 2)
    shards = book.family[_choice(rng, book.family_w, int(shard_n.sum()))]
    w.sy_start[idx], w.sy_n[idx] = w.prompts.add_segments(shards, shard_n), shard_n
    # Aged accounts are used lightly, and more of their traffic is ordinary.
    w.sy_p[idx] = np.where(aged, 0.6 * book.p_tmpl, book.p_tmpl)
    w.sy_skew[idx] = 1.3
    w.sp_p[idx] = np.where(w.sp_n[idx] > 0, 0.05, 0.0)
    w.n_rows[idx] = np.maximum(4, np.round(rng.lognormal(np.log(lam * 4), 0.35, size)))
    w.n_rows[idx[aged]] = np.maximum(3, w.n_rows[idx[aged]] // 2)
    w.req_mean[idx] = rng.uniform(0.7, 1.3, size) * book.req_mean
    w.mu_in[idx] = rng.normal(book.in_mu, 0.15, size)
    w.mu_out[idx] = rng.normal(book.out_mu, 0.15, size)
    w.model[idx] = np.where(rng.random(size) < 0.9, 2, 1)
    w.switch[idx] = book.pivot + (rng.uniform(0, 2, size) * HOUR).astype(np.int64)
    w.p4[idx] = book.p4
    w.weekdays[idx] = False


def _build_rings(
    rng: np.random.Generator, w: _World, sel: IntArray, plan: _Plan, ctx: dict[str, Any]
) -> None:
    """Plant the rings: each one's accounts, proxies, controllers' clocks, cards and traffic.

    The largest ring (and, in worlds of six rings or more, the fourth largest) is split across
    two controllers with their own proxy pools and clocks.
    """
    prefixes = (ctx["res"], w.take_prefixes(max(2_000, w.n // 10)))
    benign_v4 = ctx["home"][w.kind == SOLO]
    offset = 0
    by_size = np.argsort(plan.ring_sizes, kind="stable")[::-1]
    split_rings = {int(by_size[0])} | ({int(by_size[3])} if len(by_size) >= 6 else set())
    for r, size in enumerate(plan.ring_sizes):
        idx = sel[offset : offset + size]
        offset += size
        w.ring_ids.append(f"ring-{r + 1:02d}")
        w.group[idx] = r
        w.role[idx] = R_MEMBER

        # Proxy exits in a few countries; accounts claim the exit's country.
        n_c = int(rng.integers(1, 4))
        exits = rng.choice(RING_EXIT_COUNTRIES, size=n_c, replace=False)
        cw = rng.dirichlet(np.ones(n_c) * 2)
        w.country[idx] = exits[_choice(rng, cw, size)]

        ctrl = np.zeros(size, np.int64)
        if r in split_rings:
            ctrl[rng.random(size) < 0.4] = 1
        campaign = WINDOW_START + int(rng.uniform(55, 88) * DAY)
        aged = (rng.random(size) < rng.uniform(0.1, 0.15)) & (ctrl == 0)
        w.role[idx[aged]] = R_AGED
        w.role[idx[ctrl == 1]] = R_CTRL_B
        book = _ring_playbook(rng, w, r, ctx)

        for c in range(2 if r in split_rings else 1):
            members = idx[ctrl == c]
            # The offset is drawn even for controller A (c = 0), which keeps the seed's stream.
            start = campaign + c * int(rng.uniform(2, 6) * DAY)
            _ring_signups(rng, w, members, aged[ctrl == c], start)
            _ring_proxies(rng, w, members, book.sticky, prefixes, benign_v4)
            _ring_clock(rng, w, members, start, book.base_hour, c)

        _ring_cards_and_devices(rng, w, idx, book.bins)
        # Patterned mailboxes on mainstream providers; ~10% are dot/+tag variants of a few
        # base Gmail boxes, which collapse once addresses are normalised.
        w.local[idx] = _ring_locals(rng, size, book.style)
        w.domain[idx] = np.array(DOMAIN_NAMES, dtype=StringDType())[
            _choice(rng, RING_DOMAIN_W / RING_DOMAIN_W.sum(), size)
        ]
        ctx["collapse"].append((idx, rng.random(size) < 0.1, int(rng.integers(2, 7))))
        # Clients: the most common user agents, maybe one rare one.
        w.ua_a[idx] = rng.choice(book.common_ua, size=size)
        w.ua_b[idx] = UA_RING_RARE if book.rare_ua else rng.choice(book.common_ua, size=size)
        w.ua_b_p[idx] = 0.2 if book.rare_ua else 0.4
        _ring_traffic(rng, w, idx, aged, book, ctx["lam"])


# ---------------------------------------------------------------------------------------------
# Emails: distinct addresses, and distinct mailboxes except where a ring reuses one on purpose
# ---------------------------------------------------------------------------------------------


def _mailbox_key(local: np.ndarray, domain: np.ndarray) -> np.ndarray:
    gmail = np.isin(domain, np.array(["gmail.com", "googlemail.com"], dtype=StringDType()))
    plain = np.strings.partition(local, np.array("+", dtype=StringDType()))[0]
    nodots = np.strings.replace(plain, ".", "")
    return _cat(np.where(gmail, nodots, plain), "@", domain)


def _dedupe_emails(
    rng: np.random.Generator, w: _World, collapse: list[tuple[IntArray, np.ndarray, int]]
) -> None:
    """Make every address distinct, and every mailbox distinct except the ring reuse.

    Ring accounts flagged for reuse get dot and +tag variants of a few base Gmail boxes
    (other members' boxes): distinct strings that collapse once addresses are normalised.
    """
    variant = np.zeros(w.n, bool)
    plans: list[tuple[IntArray, IntArray]] = []
    for idx, mask, n_base in collapse:
        anchors, users = idx[~mask][:n_base], idx[mask]
        if not len(anchors) or not len(users):
            continue
        w.domain[anchors] = "gmail.com"
        w.local[anchors] = np.strings.replace(w.local[anchors], ".", "")
        variant[users] = True
        plans.append((anchors, users))
    placeholder = _cat("~", _digits(np.arange(w.n)))
    for _ in range(20):
        key = np.where(variant, placeholder, _mailbox_key(w.local, w.domain))
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        dup = np.flatnonzero(first[inverse] != np.arange(w.n))
        if not len(dup):
            break
        w.local[dup] = _cat(w.local[dup], _digits(rng.integers(1, 100, len(dup))))
    else:  # pragma: no cover - fresh digits make clashes vanishingly rare after a few rounds
        raise RuntimeError("could not make mailboxes distinct")
    for anchors, users in plans:
        base = w.local[anchors[rng.integers(0, len(anchors), len(users))]]
        length = np.strings.str_len(base)
        cut = 1 + rng.integers(0, 1 << 20, len(users)) % np.maximum(length - 1, 1)
        dotted = rng.random(len(users)) < 0.6
        tagged = ~dotted | (rng.random(len(users)) < 0.4)
        head = np.strings.slice(base, 0, cut)
        tail = np.strings.slice(base, cut, length)
        local = np.where(dotted, _cat(head, ".", tail), base)
        tags = _cat(
            "+",
            np.strings.slice(
                _hex_ids(_rand_u64(rng, len(users)), "")
                .to_numpy(zero_copy_only=False)
                .astype(StringDType()),
                0,
                5,
            ),
        )
        w.local[users] = np.where(tagged, _cat(local, tags), local)
        w.domain[users] = "gmail.com"
    for _ in range(20):
        raw = _cat(w.local, "@", w.domain)
        _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
        dup = np.flatnonzero(first[inverse] != np.arange(w.n))
        if not len(dup):
            return
        w.local[dup] = _cat(w.local[dup], "+", _digits(rng.integers(10, 1000, len(dup))))
    raise RuntimeError("could not make addresses distinct")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


def _slot_times(rng: np.random.Generator, w: _World, ar: IntArray) -> IntArray:
    """Times of rows dispatched by a ring controller: a slot on a dispatch day, jittered."""
    sched = w.sched
    g = w.sync_grp[ar]
    d_start = np.asarray(sched.day_start)[g]
    d_n = np.asarray(sched.day_n)[g]
    # First dispatch day on or after the account's activation, per row.
    lo = np.zeros(len(ar), np.int64)
    for grp in np.unique(g):
        sel = g == grp
        days = sched.day_tab[sched.day_start[grp] : sched.day_start[grp] + sched.day_n[grp]]
        lo[sel] = np.searchsorted(days, (w.act_start[ar[sel]] // DAY) * DAY)
    lo = np.minimum(lo, np.maximum(d_n - 1, 0))
    day = sched.day_tab[d_start + lo + (rng.random(len(ar)) * (d_n - lo)).astype(np.int64)]
    slot = sched.slot_tab[
        np.asarray(sched.slot_start)[g]
        + (rng.random(len(ar)) * np.asarray(sched.slot_n)[g]).astype(np.int64)
    ]
    jitter = rng.normal(0, 1, len(ar)) * np.asarray(sched.slot_jitter)[g]
    return np.asarray(day + slot + jitter.astype(np.int64), dtype=np.int64)


def _cron_times(rng: np.random.Generator, w: _World, ar: IntArray) -> IntArray:
    """Times of batch rows: the pipeline's nightly start on a day after activation, jittered."""
    sched = w.sched
    g = w.sync_grp[ar]
    first_day = w.act_start[ar] // DAY + 1
    n_days = np.maximum(WINDOW_END // DAY - first_day, 1)
    day = first_day + (rng.random(len(ar)) * n_days).astype(np.int64)
    jitter = rng.normal(0, 1, len(ar)) * np.asarray(sched.cron_jitter)[g]
    return np.asarray(
        day * DAY + np.asarray(sched.cron_tod)[g] + np.abs(jitter).astype(np.int64), np.int64
    )


def _deadline_times(rng: np.random.Generator, w: _World, ar: IntArray) -> tuple[IntArray, IntArray]:
    """Times of assignment rows in the hours before a deadline, and which deadline each is."""
    sched = w.sched
    g = w.sync_grp[ar]
    k = (rng.random(len(ar)) * np.asarray(sched.deadline_n)[g]).astype(np.int64)
    deadline = sched.deadline_tab[np.asarray(sched.deadline_start)[g] + k]
    return deadline - (rng.exponential(8 * HOUR, len(ar))).astype(np.int64), k


def _event_times(
    rng: np.random.Generator, w: _World, a: IntArray, kind: IntArray
) -> tuple[IntArray, IntArray]:
    """Time of each row of accounts ``a`` by timing mode ``kind``, inside the active span.

    Also returns, per row, the deadline whose prompt a deadline row carries (else -1).
    """
    n = len(a)
    ts = np.zeros(n, np.int64)
    sync_prompt_index = np.full(n, -1, np.int64)
    human = np.flatnonzero(kind == SYNC_NONE)
    ah = a[human]
    ts[human] = _human_time(
        rng,
        w.act_start[ah],
        w.act_end[ah],
        COUNTRY_TZ[w.country[ah]],
        weekdays_only=w.weekdays[ah],
    )
    rows = np.flatnonzero(kind == SYNC_SLOTS)
    if len(rows):
        ts[rows] = _slot_times(rng, w, a[rows])
    rows = np.flatnonzero(kind == SYNC_CRON)
    if len(rows):
        ts[rows] = _cron_times(rng, w, a[rows])
    rows = np.flatnonzero(kind == SYNC_DEADLINE)
    if len(rows):
        ts[rows], sync_prompt_index[rows] = _deadline_times(rng, w, a[rows])
    rows = np.flatnonzero(kind == SYNC_WINDOW)
    if len(rows):
        win = np.asarray(w.sched.window, dtype=np.int64).reshape(-1, 2)[w.sync_grp[a[rows]]]
        ts[rows] = win[:, 0] + (rng.random(len(rows)) * (win[:, 1] - win[:, 0])).astype(np.int64)

    # A jittered time that falls outside the account's active span moves by a day, not onto
    # the boundary (a pile-up at the boundary would be an artefact, not a signal).
    start, end = w.act_start[a], np.maximum(w.act_end[a], w.act_start[a] + 1)
    ts = np.where(ts >= end, ts - DAY, ts)
    ts = np.where(ts < start, ts + DAY, ts)
    return np.clip(ts, start, end - 1), sync_prompt_index


def _event_addresses(
    rng: np.random.Generator, w: _World, a: IntArray, ts: IntArray, ips: np.ndarray
) -> IntArray:
    """IP code of each row: the primary source (skewed to its first entries) or the secondary."""
    n = len(a)
    use_b = rng.random(n) < w.ipb_p[a]
    hack = np.flatnonzero(w.kind[a] == HACKATHON)
    if len(hack):
        # Hackers are at the venue during the event and at home afterwards.
        win_end = np.asarray(w.sched.window, dtype=np.int64).reshape(-1, 2)[w.sync_grp[a[hack]], 1]
        use_b[hack] = ts[hack] >= win_end
    ip_start = np.where(use_b, w.ipb_start[a], w.ipa_start[a])
    ip_n = np.where(use_b, w.ipb_n[a], w.ipa_n[a])
    skew = np.where(use_b, 3.0, w.ipa_skew[a])
    return np.asarray(ips[ip_start + _skewed_index(rng.random(n), ip_n, skew)], dtype=np.int64)


def _event_prompts(
    rng: np.random.Generator,
    w: _World,
    a: IntArray,
    synced: np.ndarray,
    sync_prompt_index: IntArray,
    prompts: np.ndarray,
) -> UIntArray:
    """Prompt fingerprint of each row.

    Synchronised rows carry the group's templates; others a shared prompt or the account's own.
    """
    n = len(a)
    u = rng.random(n)
    template = synced & (u < w.sy_p[a]) & (w.sy_n[a] > 0)
    ua2 = rng.random(n)
    shared = ~template & (ua2 < w.sp_p[a]) & (w.sp_n[a] > 0)
    k_own = _skewed_index(rng.random(n), w.p_personal[a], 2.0)
    prompt = _mix64(w.pkey[a] + k_own.astype(np.uint64))
    k_tmpl = np.where(
        sync_prompt_index >= 0,
        sync_prompt_index,
        _skewed_index(rng.random(n), w.sy_n[a], w.sy_skew[a]),
    )
    prompt = np.where(template, prompts[np.where(template, w.sy_start[a] + k_tmpl, 0)], prompt)
    k_sh = _skewed_index(rng.random(n), w.sp_n[a], 1.8)
    return np.where(shared, prompts[np.where(shared, w.sp_start[a] + k_sh, 0)], prompt)


def _event_chunk(
    rng: np.random.Generator, w: _World, positions: IntArray, tabs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Event rows of the accounts at output ``positions``, sorted by account then time."""
    accts = w.order[positions]
    counts = w.n_rows[accts]
    a = np.repeat(accts, counts)
    pos = np.repeat(positions, counts)
    n = len(a)
    synced = rng.random(n) < w.sync_p[a]
    kind = np.where(synced, w.sync_kind[a], SYNC_NONE)
    ts, sync_prompt_index = _event_times(rng, w, a, kind)
    ip = _event_addresses(rng, w, a, ts, tabs["ips"])
    device = tabs["devices"][w.dev_start[a] + _skewed_index(rng.random(n), w.dev_n[a], 1.5)]
    ua = np.where(rng.random(n) < w.ua_b_p[a], w.ua_b[a], w.ua_a[a])
    prompt = _event_prompts(rng, w, a, synced, sync_prompt_index, tabs["prompts"])

    # Models: a preferred one, some spread; m-4 only after its release and each switch time.
    model = np.where(rng.random(n) < 0.8, w.model[a], rng.integers(0, 3, n))
    model = np.where((ts >= w.switch[a]) & (rng.random(n) < w.p4[a]), 3, model)

    requests = 1 + rng.poisson(np.maximum(w.req_mean[a] - 1, 0))
    per_in = np.exp(w.mu_in[a] + rng.normal(0, 0.5, n))
    per_out = np.exp(w.mu_out[a] + rng.normal(0, 0.5, n))
    input_tokens = np.maximum(1, np.round(requests * per_in)).astype(np.int64)
    output_tokens = np.maximum(1, np.round(requests * per_out)).astype(np.int64)

    order = np.lexsort((ts, pos))
    return {
        "position": pos[order],
        "ts": ts[order],
        "ip": ip[order],
        "device": device[order],
        "ua": ua[order],
        "model": model[order],
        "requests": requests[order].astype(np.int64),
        "input_tokens": input_tokens[order],
        "output_tokens": output_tokens[order],
        "prompt": prompt[order],
    }


# ---------------------------------------------------------------------------------------------
# Generation and writing
# ---------------------------------------------------------------------------------------------


def _check_args(n_accounts: int, seed: int, fmt: str, events_per_account: float) -> None:
    problems = []
    if not isinstance(n_accounts, int | np.integer) or n_accounts < 1_000:
        problems.append(f"accounts must be an integer of at least 1000, not {n_accounts!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        problems.append(f"seed must be a non-negative integer, not {seed!r}")
    if fmt not in ("csv", "parquet"):
        problems.append(f"format must be 'csv' or 'parquet', not {fmt!r}")
    if not (0 < float(events_per_account) <= 1_000):
        problems.append(f"events_per_account must be in (0, 1000], not {events_per_account!r}")
    if problems:
        raise SettingsError(problems)


def _build_world(n: int, seed: int, lam: float) -> _World:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    plan = _plan(rng, n)
    n_prefixes = (
        max(500, n // 5)
        + max(2_000, n // 10)
        + len(plan.cgnat_ips)
        + len(plan.company_sizes)
        + len(plan.university_sizes)
        + len(plan.hackathon_sizes)
    )
    w = _World(n, plan.kinds(), lam, _unique_prefixes(rng, n_prefixes))
    ctx = _build_base(rng, w, plan, lam)
    ctx["lam"] = lam
    ctx["collapse"] = []
    # Ring BINs: moderately common US issuers of virtual cards, also used by benign US users.
    us_bins = np.flatnonzero(w.bin_country == US)
    ctx["ring_bins"] = us_bins[10 : min(len(us_bins), 150)]
    carriers = _build_carriers(rng, w, plan)

    def members(kind: int) -> IntArray:
        return np.flatnonzero(w.kind == kind)

    # A few solos use a carrier's mobile data now and then: CGNAT addresses are shared widely.
    solo = members(SOLO)
    mobile = solo[rng.random(len(solo)) < 0.06]
    w.ipb_start[mobile] = np.array([c[0] for c in carriers])[
        rng.integers(0, len(carriers), len(mobile))
    ]
    w.ipb_n[mobile], w.ipb_p[mobile] = 1, 0.2

    _build_rings(rng, w, members(RING), plan, ctx)
    _build_families(rng, w, members(FAMILY), plan.family_sizes, ctx)
    _build_companies(rng, w, members(COMPANY), plan.company_sizes, ctx)
    _build_universities(rng, w, members(UNIVERSITY), plan.university_sizes)
    _build_hackathons(rng, w, members(HACKATHON), plan.hackathon_sizes)
    _build_cgnat(rng, w, members(CGNAT), carriers)
    _build_app(rng, w, members(APP))
    _dedupe_emails(rng, w, ctx["collapse"])
    # Cards follow the country an account ended up in (carriers, campuses, venues).
    moved = np.flatnonzero(np.isin(w.kind, [CGNAT, UNIVERSITY, HACKATHON]))
    w.card_bin[moved] = _draw_bins(rng, ctx["pools"], w.country[moved])
    # Expats and travellers: some benign cards come from another country than the account's.
    foreign = np.flatnonzero(np.isin(w.kind, [SOLO, CGNAT, APP]) & (rng.random(n) < 0.05))
    w.card_bin[foreign] = _draw_bins(rng, ctx["pools"], _choice(rng, COUNTRY_W, len(foreign)))
    w.card_added = np.clip(np.maximum(w.card_added, w.created), None, WINDOW_END - 1)
    # Roles: ring roles are set; benign early adopters of m-4 and batch accounts are marked,
    # other members of a group are "member", and plain solo users have no role.
    benign = w.kind != RING
    w.role = np.where(benign & (w.role == R_NONE) & (w.kind != SOLO), R_MEMBER, w.role)
    w.role = np.where(benign & (w.p4 > 0) & (w.role != R_BATCH), R_ADOPTER, w.role)
    w.switch = np.maximum(w.switch, M4_RELEASE)
    w.n_rows = np.asarray(w.n_rows, dtype=np.int64)

    # Account ids: random hex, so ring members are scattered through every sorted table.
    ids = _rand_u64(rng, n)
    while len(np.unique(ids)) < n:  # pragma: no cover - 63-bit collisions
        ids = _rand_u64(rng, n)
    w.account_key = ids
    w.order = np.argsort(ids, kind="stable")
    return w


def _accounts_table(
    w: _World, ids: pa.Array, fmt_time: _TimeFormatter, parquet: bool, devices: np.ndarray
) -> pa.Table:
    o = w.order
    v6_hi, v6_lo = w.v6_hi.array(), w.v6_lo.array()
    email = pa.array(_cat(w.local[o], "@", w.domain[o]), type=pa.string())
    return pa.table(
        {
            "account_id": ids,
            "created_at": _time_column(w.created[o], fmt_time, parquet),
            "email": email,
            "signup_ip": _take_codes(w.signup_ip[o], lambda c: _format_ips(c, v6_hi, v6_lo)),
            "device_id": _hex_ids(devices[w.dev_start[o]], "dev_"),
            "country": pa.array(np.array(COUNTRY_CODES, dtype=object)[w.country[o]], pa.string()),
            "billing_customer_id": _hex_ids(w.billing[o], "cus_"),
        }
    )


def _time_column(seconds: np.ndarray, fmt_time: _TimeFormatter, parquet: bool) -> pa.Array:
    if parquet:
        return pa.array(
            np.asarray(seconds, dtype=np.int64) * 1_000_000, pa.timestamp("us", tz="UTC")
        )
    return fmt_time(seconds)


def _write(
    table_or_batches: Any, path: Path, parquet: bool, schema: pa.Schema | None = None
) -> int:
    """Write a table, or an iterator of tables, atomically; return the rows written."""
    rows = 0
    with atomic_path(path) as tmp:
        if isinstance(table_or_batches, pa.Table):
            rows = table_or_batches.num_rows
            if parquet:
                pq.write_table(table_or_batches, tmp, compression="zstd")
            else:
                pacsv.write_csv(table_or_batches, tmp)
            return rows
        assert schema is not None
        writer: Any = (
            pq.ParquetWriter(tmp, schema, compression="zstd")
            if parquet
            else pacsv.CSVWriter(tmp, schema)
        )
        try:
            for table in table_or_batches:
                rows += table.num_rows
                writer.write_table(table)
        finally:
            writer.close()
    return rows


def _payments_table(w: _World, ids: pa.Array, fmt_time: _TimeFormatter, parquet: bool) -> pa.Table:
    """The ``payments`` table: one row per account with a card, in output order."""
    o = w.order
    carded = np.flatnonzero(w.has_card[o])
    return pa.table(
        {
            "account_id": ids.take(pa.array(carded)),
            "payment_fingerprint": _hex_ids(w.card_fp[o][carded], "fp_"),
            "card_bin": pa.array(w.bins[w.card_bin[o][carded]].astype(object).astype(str)),
            "billing_country": pa.array(
                np.array(COUNTRY_CODES, dtype=object)[w.bin_country[w.card_bin[o][carded]]],
                pa.string(),
            ),
            "added_at": _time_column(w.card_added[o][carded], fmt_time, parquet),
        }
    )


def _labels_table(w: _World, ids: pa.Array) -> pa.Table:
    """The ``labels`` table: each account's ring, group kind, role and group instance."""
    o = w.order
    kinds = np.array(KINDS, dtype=object)[w.kind[o]]
    is_ring = w.kind[o] == RING
    ring_ids = np.array([*w.ring_ids, ""], dtype=object)[np.where(is_ring, w.group[o], -1)]
    group_ids = np.where(
        w.kind[o] == SOLO,
        "",
        np.char.add(
            np.char.add(kinds.astype(str), "-"),
            np.char.zfill((np.maximum(w.group[o], 0) + 1).astype(str), 3),
        ),
    ).astype(object)
    group_ids[is_ring] = ring_ids[is_ring]
    role = np.array(ROLES, dtype=object)[w.role[o]]
    return pa.table(
        {
            "account_id": ids,
            "ring_id": pa.array(ring_ids, pa.string()),
            "group": pa.array(kinds, pa.string()),
            "role": pa.array(role.astype(object), pa.string()),
            "group_id": pa.array(group_ids, pa.string()),
        }
    )


def _events_schema(parquet: bool) -> pa.Schema:
    """Columns of the ``events`` table (timestamps are typed in Parquet, strings in CSV)."""
    ts_type = pa.timestamp("us", tz="UTC") if parquet else pa.string()
    return pa.schema(
        [
            ("account_id", pa.string()),
            ("ts", ts_type),
            ("ip", pa.string()),
            ("device_id", pa.string()),
            ("user_agent", pa.string()),
            ("model", pa.string()),
            ("requests", pa.int64()),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("prompt_fingerprint", pa.string()),
        ]
    )


def _event_tables(
    w: _World,
    seed: int,
    ids: pa.Array,
    fmt_time: _TimeFormatter,
    parquet: bool,
    totals: dict[str, int],
) -> Iterator[pa.Table]:
    """The ``events`` table in chunks of accounts, each drawn from its own seeded stream.

    Adds each chunk's requests to ``totals["requests"]`` as it is generated.
    """
    tabs = {"ips": w.ips.array(), "devices": w.devices.array(), "prompts": w.prompts.array()}
    v6_hi, v6_lo = w.v6_hi.array(), w.v6_lo.array()
    ua_names = pa.array(ALL_UAS, pa.string())
    model_names = pa.array(MODELS, pa.string())
    schema = _events_schema(parquet)
    n = w.n
    n_chunks = (n + ACCOUNTS_PER_CHUNK - 1) // ACCOUNTS_PER_CHUNK
    for c in progress(range(n_chunks), total=n_chunks, desc="events", unit="chunk"):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2, c]))
        positions = np.arange(c * ACCOUNTS_PER_CHUNK, min(n, (c + 1) * ACCOUNTS_PER_CHUNK))
        ev = _event_chunk(rng, w, positions, tabs)
        totals["requests"] += int(ev["requests"].sum())
        yield pa.table(
            {
                "account_id": ids.take(pa.array(ev["position"])),
                "ts": _time_column(ev["ts"], fmt_time, parquet),
                "ip": _take_codes(ev["ip"], lambda x: _format_ips(x, v6_hi, v6_lo)),
                "device_id": _take_codes(ev["device"], lambda x: _hex_ids(x, "dev_")),
                "user_agent": ua_names.take(pa.array(ev["ua"])),
                "model": model_names.take(pa.array(ev["model"])),
                "requests": pa.array(ev["requests"]),
                "input_tokens": pa.array(ev["input_tokens"]),
                "output_tokens": pa.array(ev["output_tokens"]),
                "prompt_fingerprint": _take_codes(ev["prompt"], lambda x: _hex_ids(x, "pf_")),
            },
            schema=schema,
        )


def _write_tables(
    w: _World, seed: int, paths: dict[str, Path], parquet: bool
) -> tuple[int, int, int]:
    """Write the four tables of world ``w``; return the payments, events and requests written."""
    ids = _hex_ids(w.account_key[w.order], "acct_")
    lo = int(min(w.created.min(), w.card_added.min(), WINDOW_START))
    fmt_time = _TimeFormatter(lo, WINDOW_END)
    accounts = _accounts_table(w, ids, fmt_time, parquet, w.devices.array())
    _write(accounts, paths["accounts"], parquet)
    n_payments = _write(_payments_table(w, ids, fmt_time, parquet), paths["payments"], parquet)
    _write(_labels_table(w, ids), paths["labels"], parquet)
    totals = {"requests": 0}
    events = _event_tables(w, seed, ids, fmt_time, parquet, totals)
    n_events = _write(events, paths["events"], parquet, _events_schema(parquet))
    return n_payments, n_events, totals["requests"]


def generate_world(
    n_accounts: int,
    seed: int,
    out_dir: str | Path,
    *,
    fmt: Format = "csv",
    events_per_account: float = 20.0,
) -> WorldSummary:
    """Generate a synthetic world with planted rings and write its tables to ``out_dir``.

    Parameters
    ----------
    n_accounts : int
        Accounts in the world (at least 1,000). About 3.5% belong to rings.
    seed : int
        Seed of every random draw: the same seed, size, format and event rate give
        byte-identical files.
    out_dir : str or Path
        Directory to write ``accounts``, ``payments``, ``events`` and ``labels`` into
        (created if missing; existing tables of the same names are replaced atomically).
    fmt : {"csv", "parquet"}
        File format. CSV timestamps are ISO 8601 strings in UTC (``2026-06-02T13:45:12Z``);
        Parquet timestamps are ``timestamp[us, UTC]``.
    events_per_account : float
        Mean event rows per account (a row is a bucket of ``requests`` calls). Ring accounts
        get about four times the mean, benign accounts a heavy-tailed share of the rest.

    Returns
    -------
    WorldSummary
        Rows per table, accounts per group kind and per ring, the paths written, the time taken.

    Raises
    ------
    SettingsError
        If an argument is out of range (all problems are listed at once).

    Examples
    --------
    >>> import tempfile
    >>> s = generate_world(2_000, seed=3, out_dir=tempfile.mkdtemp())
    >>> s.n_accounts, len(s.rings) >= 2
    (2000, True)

    Notes
    -----
    Time and memory are linear in the number of accounts and events. Events are generated
    and written in chunks of 25,000 accounts, each drawn from its own seeded stream, so peak
    memory is bounded by the per-account arrays plus one chunk.
    """
    _check_args(n_accounts, seed, fmt, events_per_account)
    began = time.perf_counter()
    n = int(n_accounts)
    parquet = fmt == "parquet"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = "parquet" if parquet else "csv"
    paths = {t: out / f"{t}.{ext}" for t in ("accounts", "payments", "events", "labels")}

    w = _build_world(n, int(seed), float(events_per_account))
    logger.info("built %d accounts in %.1f s", n, time.perf_counter() - began)
    n_payments, n_events, n_requests = _write_tables(w, int(seed), paths, parquet)
    groups = {k: int((w.kind == i).sum()) for i, k in enumerate(KINDS)}
    rings = {
        rid: int(((w.kind == RING) & (w.group == r)).sum()) for r, rid in enumerate(w.ring_ids)
    }
    elapsed = time.perf_counter() - began
    logger.info("wrote %d accounts and %d events to %s in %.1f s", n, n_events, out, elapsed)
    return WorldSummary(
        n_accounts=n,
        n_payments=n_payments,
        n_events=n_events,
        n_requests=n_requests,
        groups=groups,
        rings=rings,
        paths=paths,
        seed=int(seed),
        fmt=fmt,
        elapsed_s=elapsed,
    )
