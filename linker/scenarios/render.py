"""Identifiers as integers, rendered to contract strings in bulk.

Every identifier of a world (account, card, device, prompt template, billing customer) is an
int64 *key*, unique within its kind. :func:`tokens` renders keys through a bijective 64-bit
mix, so distinct keys give distinct strings and no string reveals its group. IP addresses are
int64 *codes* (:func:`ipv4_code`, :func:`ipv6_code`) rendered by :func:`render_ips`, and
timestamps are int64 microseconds rendered by :func:`render_timestamps` in the contract's
ISO 8601 forms. Everything here is vectorised (numpy and pyarrow compute).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linker.scenarios.tables import OFFSETS

__all__ = [
    "DAY_US",
    "FORM_BASIC",
    "FORM_DATE",
    "FORM_OFFSET",
    "FORM_SPACE_MS",
    "FORM_Z",
    "HOUR_US",
    "block24",
    "ipv4_code",
    "ipv6_code",
    "is_ipv6",
    "mix32",
    "render_ips",
    "render_timestamps",
    "salt",
    "splitmix64",
    "tokens",
]

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US

FORM_Z = 0  # 2026-06-02T13:45:12Z
FORM_OFFSET = 1  # 2026-06-02T15:45:12+02:00
FORM_SPACE_MS = 2  # 2026-06-02 13:45:12.250
FORM_BASIC = 3  # 20260602T134512Z
FORM_DATE = 4  # 2026-06-02 (midnight; used for payments.added_at only)

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_V6_FLAG = np.int64(1) << np.int64(62)

# 128 public first octets: a /24 block index in [0, 2**23) maps to one address block.
_FIRST_OCTETS = np.array(
    [o for o in range(2, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)][:128],
    dtype=np.int64,
)
# The first 16 bits of the IPv6 /48s, by kind of network (global unicast, not 2001:db8).
_V6_HEADS = np.array([0x2A02, 0x2A01, 0x2600, 0x2605, 0x2409, 0x240E, 0x2803, 0x2C0F])


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser: a bijection of uint64 (as int64 in, uint64 out)."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def mix32(x: np.ndarray) -> np.ndarray:
    """A bijection of 32-bit integers (multiply by odd constants, xor-shift)."""
    z = x.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    m = np.uint64(0xFFFFFFFF)
    z = (z * np.uint64(0x9E3779B1)) & m
    z ^= z >> np.uint64(16)
    z = (z * np.uint64(0x85EBCA6B)) & m
    z ^= z >> np.uint64(13)
    return z.astype(np.int64)


def _mix23(x: np.ndarray) -> np.ndarray:
    """A bijection of [0, 2**23)."""
    m = np.int64((1 << 23) - 1)
    z = x.astype(np.int64) & m
    z = (z * np.int64(0x2B5C5)) & m
    z ^= z >> np.int64(11)
    z = (z * np.int64(0x6A09B)) & m
    z ^= z >> np.int64(9)
    return z


def salt(seed: int, kind: str) -> int:
    """A 64-bit salt for one kind of identifier in one world."""
    h = np.uint64(seed & 0xFFFFFFFF) ^ np.uint64(int.from_bytes(kind.encode()[:8].ljust(8, b"_")))
    return int(splitmix64(np.array([h], dtype=np.uint64))[0])


# Two hex digits per byte value, as the two bytes they are written with.
_HEX_PAIRS = np.frombuffer(b"".join(f"{b:02x}".encode() for b in range(256)), dtype=np.uint16)


def tokens(keys: np.ndarray, prefix: str, salt_value: int, width: int = 16) -> pa.Array:
    """Render int64 keys as ``prefix`` + ``width`` hex digits, distinct for distinct keys.

    ``width`` 16 is a bijection of the key; shorter widths keep the low digits.
    """
    mixed = splitmix64(keys.astype(np.int64).view(np.uint64) ^ np.uint64(salt_value))
    big_endian = mixed.astype(">u8").view(np.uint8).reshape(len(keys), 8)
    digits = _HEX_PAIRS[big_endian].view(np.uint8).reshape(len(keys), 16)
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    chars = np.empty((len(keys), len(head) + width), dtype=np.uint8)
    chars[:, : len(head)] = head
    chars[:, len(head) :] = digits[:, 16 - width :]
    flat = np.ascontiguousarray(chars).view(f"S{len(head) + width}").ravel()
    return pa.array(flat, type=pa.binary()).cast(pa.string())


def block24(kind_base: int, index: np.ndarray, seed: int) -> np.ndarray:
    """The IPv4 /24 block (an int in [0, 2**23)) of block ``index`` of a kind of network.

    Kinds own disjoint index ranges starting at ``kind_base``; the world's seed shuffles
    the address space, so the same seed gives the same blocks.
    """
    seed_mask = np.int64(salt(seed, "v4block") & ((1 << 23) - 1))
    return _mix23((np.int64(kind_base) + index.astype(np.int64)) ^ seed_mask)


def ipv4_code(block: np.ndarray, host: np.ndarray) -> np.ndarray:
    """The code of host ``host`` (1-254) in /24 block ``block``."""
    return (block.astype(np.int64) << np.int64(8)) | host.astype(np.int64)


def ipv6_code(kind: int, prefix_index: np.ndarray, host: np.ndarray, seed: int) -> np.ndarray:
    """The code of host ``host`` (< 2**24) in /48 number ``prefix_index`` of ``kind`` (0-7)."""
    seed_mask = np.int64(salt(seed, "v6block") & 0xFFFFFFFF)
    p32 = mix32(((np.int64(kind) << np.int64(26)) | prefix_index.astype(np.int64)) ^ seed_mask)
    return (
        _V6_FLAG
        | (np.int64(kind) << np.int64(56))
        | (p32 << np.int64(24))
        | (host.astype(np.int64) & np.int64(0xFFFFFF))
    )


def is_ipv6(codes: np.ndarray) -> np.ndarray:
    """Which codes are IPv6 addresses."""
    return (codes & _V6_FLAG) != 0


@lru_cache(maxsize=1)
def _octet_table() -> pa.Array:
    return pa.array([str(i) for i in range(256)])


@lru_cache(maxsize=1)
def _hex16_table() -> pa.Array:
    return pa.array([format(i, "x") for i in range(65536)])


def render_ips(codes: np.ndarray) -> pa.Array:
    """Render IP codes (``-1`` for a missing address) as address strings."""
    codes = codes.astype(np.int64)
    out = pa.nulls(len(codes), pa.string())
    if not len(codes):
        return out
    missing = codes < 0
    v6 = is_ipv6(codes) & ~missing
    v4 = ~v6 & ~missing
    parts: list[tuple[np.ndarray, pa.Array]] = []
    if v4.any():
        c = codes[v4]
        block = c >> 8
        octets = _octet_table()
        cols = [
            octets.take(pa.array(_FIRST_OCTETS[block >> 16])),
            octets.take(pa.array((block >> 8) & 255)),
            octets.take(pa.array(block & 255)),
            octets.take(pa.array(c & 255)),
        ]
        parts.append((np.flatnonzero(v4), pc.binary_join_element_wise(*cols, ".")))
    if v6.any():
        c = codes[v6]
        hexes = _hex16_table()
        kind = (c >> 56) & 7
        p32 = (c >> 24) & 0xFFFFFFFF
        h1 = splitmix64(c)
        h2 = splitmix64(h1.view(np.int64))
        groups = [
            _V6_HEADS[kind],
            p32 >> 16,
            p32 & 0xFFFF,
            (h1 >> np.uint64(48)).astype(np.int64),
            (h1 >> np.uint64(16)).astype(np.int64) & 0xFFFF,
            (h2 >> np.uint64(48)).astype(np.int64),
            (h2 >> np.uint64(32)).astype(np.int64) & 0xFFFF,
            (h2 & np.uint64(0xFFFF)).astype(np.int64),
        ]
        cols = [hexes.take(pa.array(g.astype(np.int64))) for g in groups]
        parts.append((np.flatnonzero(v6), pc.binary_join_element_wise(*cols, ":")))
    return _scatter(len(codes), parts)


def _scatter(n: int, parts: list[tuple[np.ndarray, pa.Array]]) -> pa.Array:
    """Assemble an array of length ``n`` from pieces placed at the given positions."""
    positions = np.concatenate([p for p, _ in parts]) if parts else np.empty(0, np.int64)
    values = pa.concat_arrays([v for _, v in parts]) if parts else pa.array([], pa.string())
    # Missing positions take a null appended at the end of ``values``.
    where = np.full(n, len(values), dtype=np.int64)
    where[positions] = np.arange(len(positions), dtype=np.int64)
    values = pa.concat_arrays([values, pa.nulls(1, pa.string())])
    return values.take(pa.array(where))


_DAY0 = np.datetime64("2023-01-01", "D")
_N_DAYS = 365 * 5 + 1


@lru_cache(maxsize=1)
def _time_tables() -> dict[str, pa.Array]:
    days = _DAY0 + np.arange(_N_DAYS)
    iso = np.datetime_as_string(days, unit="D")
    sec = np.arange(86400)
    hh, mm, ss = sec // 3600, (sec // 60) % 60, sec % 60
    hms = np.char.add(
        np.char.add(np.char.zfill(hh.astype(str), 2), ":"),
        np.char.add(
            np.char.add(np.char.zfill(mm.astype(str), 2), ":"), np.char.zfill(ss.astype(str), 2)
        ),
    )
    return {
        "date": pa.array(iso),
        "date_basic": pa.array(np.char.replace(iso, "-", "")),
        "hms": pa.array(hms),
        "hms_basic": pa.array(np.char.replace(hms, ":", "")),
        "ms": pa.array(np.char.zfill(np.arange(1000).astype(str), 3)),
        "offset": pa.array([o for o, _ in OFFSETS]),
    }


_EPOCH_DAY0_US = int((_DAY0 - np.datetime64("1970-01-01", "D")).astype(np.int64)) * DAY_US


def _split(ts_us: np.ndarray) -> tuple[pa.Array, pa.Array, pa.Array]:
    rel = ts_us - _EPOCH_DAY0_US
    day = rel // DAY_US
    if len(day) and (day.min() < 0 or day.max() >= _N_DAYS):
        raise ValueError("timestamp outside 2023-2027, the range the renderer covers")
    sec = (rel % DAY_US) // 1_000_000
    ms = (rel % 1_000_000) // 1000
    return pa.array(day), pa.array(sec), pa.array(ms)


def render_timestamps(
    ts_us: np.ndarray, forms: np.ndarray | None = None, offsets: np.ndarray | None = None
) -> pa.Array:
    """Render UTC microseconds as ISO 8601 text in the contract's forms.

    Parameters
    ----------
    ts_us : numpy.ndarray
        int64 microseconds since the Unix epoch (UTC), 2023-2027.
    forms : numpy.ndarray, optional
        One ``FORM_*`` code per value; default all :data:`FORM_Z`. Forms other than
        :data:`FORM_SPACE_MS` write whole seconds and :data:`FORM_DATE` only the date, so
        the caller truncates ``ts_us`` accordingly to keep the written value exact.
    offsets : numpy.ndarray, optional
        For :data:`FORM_OFFSET`, an index into ``tables.OFFSETS`` per value.
    """
    t = _time_tables()
    ts_us = ts_us.astype(np.int64)
    if forms is None or not np.any(forms):
        day, sec, _ = _split(ts_us)
        return pc.binary_join_element_wise(
            t["date"].take(day), pa.scalar("T"), t["hms"].take(sec), pa.scalar("Z"), ""
        )
    parts: list[tuple[np.ndarray, pa.Array]] = []
    for form in np.unique(forms):
        where = np.flatnonzero(forms == form)
        sub = ts_us[where]
        if form == FORM_OFFSET:
            assert offsets is not None
            off_idx = offsets[where].astype(np.int64)
            shift = np.array([s for _, s in OFFSETS], dtype=np.int64)[off_idx] * 1_000_000
            day, sec, _ = _split(sub + shift)
            text = pc.binary_join_element_wise(
                t["date"].take(day), pa.scalar("T"), t["hms"].take(sec),
                t["offset"].take(pa.array(off_idx)), "",
            )  # fmt: skip
        else:
            day, sec, ms = _split(sub)
            if form == FORM_Z:
                pieces = [t["date"].take(day), pa.scalar("T"), t["hms"].take(sec), pa.scalar("Z")]
            elif form == FORM_SPACE_MS:
                pieces = [t["date"].take(day), pa.scalar(" "), t["hms"].take(sec), pa.scalar(".")]
                pieces.append(t["ms"].take(ms))
            elif form == FORM_BASIC:
                pieces = [t["date_basic"].take(day), pa.scalar("T"), t["hms_basic"].take(sec)]
                pieces.append(pa.scalar("Z"))
            else:
                pieces = [t["date"].take(day)]
            text = pc.binary_join_element_wise(*pieces, "") if len(pieces) > 1 else pieces[0]
        parts.append((where, text))
    return _scatter(len(ts_us), parts)
