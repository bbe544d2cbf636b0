"""Per-account behaviour features, from the events table.

Camouflaged rings share few exact identifiers, but they cannot hide how they behave:
output-heavy traffic, work concentrated on a family of templates, many IPs per session,
a controller's clock, a pivot to a newly released model, and dormant accounts that wake
together. This module turns the validated events table into one row of such features per
account (:func:`account_behaviour`). (An app's shared system prompt is recognised as a public
value by :mod:`linker.graph.public`, from who shares it.)

Everything is columnar: integer codes, ``np.bincount``, sorts and ``np.unique`` over the
event rows. No Python loop runs over rows or accounts (see docs/behaviour.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "BEHAVIOUR_COLUMNS",
    "SAVED_CODE_COLUMNS",
    "TOTALS_COLUMNS",
    "account_behaviour",
    "account_totals",
    "behaviour_from_totals",
    "coded_events",
    "codes_as_saved",
    "event_codes",
    "extend_saved_codes",
    "model_releases",
    "pivot_features",
    "saved_codes",
    "saved_values",
    "sorted_unique",
]

logger = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400

BEHAVIOUR_COLUMNS: tuple[str, ...] = (
    "account_id",
    "n_rows",
    "requests",
    "active_days",
    "output_input_ratio",
    "n_templates",
    "template_top_share",
    "ips_per_request",
    "ips_per_session",
    "sessions",
    "hour_entropy",
    "peak_hour",
    "first_event_at",
    "dormant_days",
    "hours_to_heavy_use",
    "awakened",
    "pivot_model",
    "pivot_requests_24h",
    "pivot_share_24h",
    "pivot_population_24h",
    "pivot_requests_72h",
    "pivot_share_72h",
    "pivot_population_72h",
    "pivot_hours",
)
"""Columns of :func:`account_behaviour` (followed by ``hour_00`` ... ``hour_23``)."""


_TICKS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _seconds(stamps: pd.Series) -> np.ndarray:
    """UTC epoch seconds of a datetime column (int64, floored; missing values become the
    minimum)."""
    values = pd.to_datetime(pd.Series(stamps, copy=False), utc=True)
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    # The integer ticks of the column, floored to seconds: no Timedelta objects per row.
    naive = values.dt.tz_localize(None).to_numpy()
    ticks = naive.view(np.int64)
    secs = np.floor_divide(ticks, _TICKS_PER_SECOND[np.datetime_data(naive.dtype)[0]])
    missing = np.asarray(values.isna().to_numpy(), dtype=bool)
    if missing.any():
        secs[missing] = int(secs[~missing].min()) if (~missing).any() else 0
    return secs


def _arrow_column(values: pd.Series | pd.Index | np.ndarray) -> pa.ChunkedArray:
    """A column as an Arrow chunked array (zero-copy for Arrow-backed pandas columns; a
    categorical one as a dictionary array over its categories, no string per row)."""
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        return pa.chunked_array([pa.array(values, from_pandas=True)])
    array = getattr(values, "array", values)
    if hasattr(array, "__arrow_array__"):
        out = array.__arrow_array__()
    else:
        out = pa.array(np.asarray(values, dtype=object), from_pandas=True)
    return out if isinstance(out, pa.ChunkedArray) else pa.chunked_array([out])


def _indices(encoded: pa.ChunkedArray) -> np.ndarray:
    """Int64 indices of an Arrow dictionary or ``index_in`` result, ``-1`` for nulls."""
    if pa.types.is_dictionary(encoded.type):
        index_type = encoded.type.index_type
        encoded = pa.chunked_array([c.indices for c in encoded.chunks], type=index_type)
    filled = pc.fill_null(encoded, -1)
    return np.asarray(filled.to_numpy(), dtype=np.int64)


def _codes(values: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """Dense int64 codes of a column, ranked in code-point order of the values (``-1`` for
    missing values), and the distinct values in that order (an Arrow string array).

    The codes depend on which values occur, never on the order of the rows
    (:func:`event_codes` relabels them in order of first appearance over the sorted events).
    """
    try:
        encoded = pc.dictionary_encode(_arrow_column(values)).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        codes, uniques = pd.factorize(values, use_na_sentinel=True, sort=True)
        names = pa.array(pd.Index(uniques).astype(str).tolist(), pa.large_string())
        return np.asarray(codes, dtype=np.int64), names
    dictionary = encoded.dictionary
    order = np.asarray(pc.sort_indices(dictionary).to_numpy(), dtype=np.int64)
    rank = np.empty(len(order) + 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    rank[-1] = -1
    codes = _indices(pa.chunked_array([encoded.indices]))
    return rank[codes], _as_text(dictionary.take(pa.array(order)))


def _as_text(values: pa.Array) -> pa.Array:
    """An Arrow array as large strings (values of other types as their text)."""
    if not pa.types.is_large_string(values.type):
        values = values.cast(pa.large_string())
    return values


def _rows_of(values: pd.Series, account_ids: pd.Series | np.ndarray) -> np.ndarray:
    """Row of each value in ``account_ids`` (first occurrence), ``-1`` when absent."""
    series = pd.Series(values, copy=False)
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Each distinct id looked up once, then spread over the rows by its code.
        by_category = _rows_of(pd.Series(series.cat.categories), account_ids)
        codes = np.asarray(series.cat.codes.to_numpy(), dtype=np.int64)
        return np.append(by_category, -1)[codes]
    needles = _arrow_column(series.astype("string"))
    haystack = _arrow_column(pd.Series(account_ids, copy=False).astype("string"))
    if needles.type != haystack.type:
        haystack = haystack.cast(needles.type)
    return _indices(pc.index_in(needles, value_set=haystack.combine_chunks()))


def event_codes(events: pd.DataFrame, account_ids: pd.Series | np.ndarray) -> pd.DataFrame:
    """The events as integer codes, sorted by account row and time.

    Parameters
    ----------
    events : pandas.DataFrame
        Validated events (``account_id``, ``ts`` required; ``model``, ``prompt_fingerprint``,
        ``ip``, ``requests``, ``input_tokens``, ``output_tokens`` optional).
    account_ids : array-like
        The accounts, in the order of the result's ``acc`` codes.

    Returns
    -------
    pandas.DataFrame
        ``acc`` (row of ``account_ids``), ``t`` (epoch seconds), ``model``, ``prompt``, ``ip``
        (int64 codes in order of first appearance over the rows sorted by account and time,
        values first seen at the same moment in code-point order; -1 when missing), ``requests``,
        ``input_tokens``, ``output_tokens`` (int64, missing = 0). Events of unknown accounts
        are dropped. ``attrs["models"]`` names the model codes and ``attrs["n_accounts"]``
        is ``len(account_ids)``.

    Notes
    -----
    O(m) hash passes with Arrow (``index_in``, ``dictionary_encode``) for m events, plus
    one sort unless the events already come in (account, time) order, as the validated
    tables of a run do, and one sort of each coded column. The result does not depend on
    the order of the events' rows (rows at the same account and second keep their relative
    order, which nothing downstream reads); it depends on the order of ``account_ids``.
    """
    return coded_events(events, account_ids)[0]


def coded_events(
    events: pd.DataFrame, account_ids: pd.Series | np.ndarray
) -> tuple[pd.DataFrame, dict[str, pa.Array]]:
    """:func:`event_codes` and the values its codes stand for.

    Returns
    -------
    codes : pandas.DataFrame
        As :func:`event_codes` returns.
    values : dict of str to pyarrow.Array
        Per coded column (``model``, ``prompt``, ``ip``), the value of each code (code ``k``
        is ``values[column][k]``), as large strings.

    Notes
    -----
    As :func:`event_codes`.
    """
    n = len(events)
    acc = _rows_of(events["account_id"], account_ids) if n else np.zeros(0, np.int64)

    def ints(name: str, default: int) -> np.ndarray:
        if name not in events.columns:
            return np.full(n, default, dtype=np.int64)
        column = events[name]
        if not pd.api.types.is_numeric_dtype(column.dtype):
            column = pd.to_numeric(column)
        return np.asarray(column.to_numpy(dtype=np.int64, na_value=default), dtype=np.int64)

    names_of: dict[str, pa.Array] = {}
    columns: dict[str, np.ndarray] = {"acc": acc, "t": _seconds(events["ts"])}
    for out_name, name in _CODED:
        if name in events.columns and n:
            columns[out_name], names_of[out_name] = _codes(events[name])
        else:
            columns[out_name] = np.full(n, -1, dtype=np.int64)
            names_of[out_name] = pa.array([], pa.large_string())
    columns["requests"] = np.maximum(ints("requests", 1), 1)
    columns["input_tokens"] = ints("input_tokens", 0)
    columns["output_tokens"] = ints("output_tokens", 0)

    known = acc >= 0
    del acc
    if not known.all():
        _take_in_place(columns, known)
    return _sorted_and_relabelled(columns, names_of, len(account_ids))


def _take_in_place(columns: dict[str, np.ndarray], rows: np.ndarray) -> None:
    """``columns[k] = columns[k][rows]`` for every column, one at a time: each old column is
    freed before the next is taken, so the events' codes are never held twice (all of them at
    once, a dict comprehension, doubled the behaviour stage's peak)."""
    for name in list(columns):
        columns[name] = columns[name][rows]


def _sorted_and_relabelled(
    columns: dict[str, np.ndarray], ranked_names: dict[str, pa.Array], n_accounts: int
) -> tuple[pd.DataFrame, dict[str, pa.Array]]:
    """Event columns (``acc`` rows, ``t``, the coded columns as code-point ranks of
    ``ranked_names``) sorted by (account, time), codes relabelled in order of first
    appearance: :func:`coded_events`' result."""
    acc, t = columns["acc"], columns["t"]
    new_moment = np.ones(len(acc), dtype=bool)
    if len(acc) > 1:
        span = int(t.max()) - int(t.min()) + 1
        if n_accounts * span < 2**62:
            key = acc * np.int64(span) + (t - t.min())
            in_order = bool((key[1:] >= key[:-1]).all())
            order = None if in_order else np.argsort(key, kind="stable")
            del key
        else:
            order = np.lexsort((t, acc))
        if order is not None:
            del acc, t
            _take_in_place(columns, order)
            del order
            acc, t = columns["acc"], columns["t"]
        new_moment[1:] = (acc[1:] != acc[:-1]) | (t[1:] != t[:-1])
    moment = np.cumsum(new_moment) - 1
    names_of: dict[str, pa.Array] = {}
    for out_name, _ in _CODED:
        columns[out_name], names_of[out_name] = _first_seen_codes(
            columns[out_name], moment, ranked_names[out_name]
        )
    out = pd.DataFrame(columns, copy=False)
    out.attrs["models"] = [str(v) for v in names_of["model"].to_pylist()]
    out.attrs["n_accounts"] = n_accounts
    return out, names_of


_CODED: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("prompt", "prompt_fingerprint"),
    ("ip", "ip"),
)
"""The coded columns of :func:`event_codes` and the events columns they come from."""


def _first_seen_codes(
    ranked: np.ndarray, moment: np.ndarray, names: pa.Array
) -> tuple[np.ndarray, pa.Array]:
    """Codes in order of first appearance over the (account, time)-sorted events, values
    first seen at the same moment in code-point order; ``-1`` stays ``-1``.

    ``ranked`` are code-point ranks of the values (:func:`_codes`) and ``moment`` the
    ascending (account, time) group of each row: the codes depend on the events, never on
    the order of their rows. Only the values present get codes (``names`` follows them).
    """
    ok = ranked >= 0
    if not ok.any():
        return ranked, names.slice(0, 0)
    present = ranked[ok]
    # Each value's first row: a scatter-min over the value ranks, with no sort of the rows.
    first_row = np.full(int(present.max()) + 1, len(present), dtype=np.int64)
    np.minimum.at(first_row, present, np.arange(len(present), dtype=np.int64))
    values = np.flatnonzero(first_row < len(present))
    first = first_row[values]
    # Rows are in moment order, so a value's first row is at its earliest moment.
    seen = np.lexsort((values, moment[ok][first]))
    code = np.full(int(values.max()) + 2, -1, dtype=np.int64)
    code[values[seen]] = np.arange(len(values))
    relabelled = code[ranked]  # ranked == -1 reads code[-1], which is -1
    return relabelled, names.take(pa.array(values[seen]))


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array (a sort and a mask: several times faster
    than ``np.unique``'s hash table on millions of int64 keys)."""
    ordered = np.sort(keys, kind="stable")
    if len(ordered) < 2:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def _sum_by_key(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and the sum of ``weights`` over each (exact for integer-valued
    weights, which requests and token counts are). Keys already in order, as (account,
    day) keys of the sorted event codes are, need no sort."""
    if len(keys) == 0:
        return keys, np.zeros(0)
    if not (keys[1:] >= keys[:-1]).all():
        order = np.argsort(keys, kind="stable")
        keys, weights = keys[order], weights[order]
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    return keys[starts], np.add.reduceat(weights, starts)


def _distinct_per_account(acc: np.ndarray, key: np.ndarray, n_acc: int) -> np.ndarray:
    """Number of distinct non-negative ``key`` values per account."""
    ok = key >= 0
    if not ok.any():
        return np.zeros(n_acc, dtype=np.int64)
    pair = acc[ok] * (np.int64(key[ok].max()) + 1) + key[ok]
    in_order = len(pair) < 2 or bool((pair[1:] >= pair[:-1]).all())
    uniq = pair[np.r_[True, pair[1:] != pair[:-1]]] if in_order else sorted_unique(pair)
    return np.bincount(uniq // (np.int64(key[ok].max()) + 1), minlength=n_acc).astype(np.int64)


@dataclass(frozen=True)
class _EventArrays:
    """The sorted event codes as arrays, with the per-account totals most features use."""

    acc: np.ndarray  # account row of each event
    t: np.ndarray  # epoch seconds
    req: np.ndarray  # requests, float64
    day: np.ndarray  # epoch day
    first_day: int  # the earliest day (0 without events)
    n_acc: int
    n_rows: np.ndarray  # event rows per account, float64
    requests: np.ndarray  # requests per account, float64
    has: np.ndarray  # the account has events

    @classmethod
    def of(cls, codes: pd.DataFrame, n_acc: int) -> _EventArrays:
        """The arrays of :func:`event_codes` output ``codes`` for ``n_acc`` accounts."""
        acc = codes["acc"].to_numpy()
        t = codes["t"].to_numpy()
        req = codes["requests"].to_numpy().astype(np.float64)
        n_rows = np.bincount(acc, minlength=n_acc).astype(np.float64)
        day = t // DAY
        return cls(
            acc=acc,
            t=t,
            req=req,
            day=day,
            first_day=day.min() if len(day) else 0,
            n_acc=n_acc,
            n_rows=n_rows,
            requests=np.bincount(acc, weights=req, minlength=n_acc),
            has=n_rows > 0,
        )


TOTALS_COLUMNS: tuple[str, ...] = (
    "n_rows",
    "requests",
    "tokens_in",
    "tokens_out",
    "active_days",
    "distinct_ips",
    "sessions",
    "session_ips",
    "n_templates",
    "top_requests",
    "prompt_requests",
    "first_event",
    "heavy_day",
    *(f"hour_{h:02d}" for h in range(24)),
)
"""Columns of :func:`account_totals`: per-account sums and extremes over the events from which
:func:`behaviour_from_totals` finishes the features (``hour_HH``: requests in that UTC hour)."""

_NEVER = np.iinfo(np.int64).max


def _volume_totals(ev: _EventArrays, codes: pd.DataFrame) -> dict[str, np.ndarray]:
    """Rows, requests, active days and token sums of each account."""
    acc, n_acc = ev.acc, ev.n_acc
    active_days = _distinct_per_account(acc, ev.day - ev.first_day, n_acc)
    return {
        "n_rows": ev.n_rows,
        "requests": ev.requests,
        "tokens_in": np.bincount(acc, weights=codes["input_tokens"].to_numpy(), minlength=n_acc),
        "tokens_out": np.bincount(acc, weights=codes["output_tokens"].to_numpy(), minlength=n_acc),
        "active_days": active_days.astype(np.float64),
    }


def _template_totals(
    ev: _EventArrays, prompt: np.ndarray, top_templates: int
) -> dict[str, np.ndarray]:
    """Distinct prompts per account, its requests on its top prompts and on all prompts."""
    acc, req, n_acc = ev.acc, ev.req, ev.n_acc
    with_prompt = prompt >= 0
    top: np.ndarray = np.zeros(n_acc)
    total: np.ndarray = np.zeros(n_acc)
    n_templates = np.zeros(n_acc, dtype=np.int64)
    if with_prompt.any():
        base = np.int64(prompt.max()) + 1
        uniq, per = _sum_by_key(acc[with_prompt] * base + prompt[with_prompt], req[with_prompt])
        owner = uniq // base
        order = np.lexsort((-per, owner))
        owner_sorted, per_sorted = owner[order], per[order]
        starts = np.r_[0, np.flatnonzero(np.diff(owner_sorted)) + 1]
        rank = np.arange(len(owner_sorted)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        top = np.bincount(
            owner_sorted[rank < top_templates], per_sorted[rank < top_templates], n_acc
        )
        total = np.bincount(owner_sorted, per_sorted, n_acc)
        n_templates = np.bincount(owner, minlength=n_acc).astype(np.int64)
    return {"n_templates": n_templates, "top_requests": top, "prompt_requests": total}


def _spread_totals(
    ev: _EventArrays, ip: np.ndarray, session_gap_minutes: float
) -> dict[str, np.ndarray]:
    """Sessions of each account, its distinct IPs, and its distinct (session, IP) pairs.

    Relies on the rows being sorted by account, then time.
    """
    acc, t, n_acc = ev.acc, ev.t, ev.n_acc
    new_session = np.ones(len(t), dtype=bool)
    if len(t) > 1:
        new_session[1:] = (acc[1:] != acc[:-1]) | (np.diff(t) > session_gap_minutes * 60)
    session = np.cumsum(new_session) - 1
    sessions = np.bincount(acc, weights=new_session.astype(np.float64), minlength=n_acc)
    distinct_ips = _distinct_per_account(acc, ip, n_acc)
    ok_ip = ip >= 0
    session_ips = np.zeros(n_acc)
    if ok_ip.any():
        base = np.int64(ip.max()) + 1
        # Each session belongs to one account: count its distinct IPs for that account.
        session_owner = acc[new_session]
        distinct = sorted_unique(session[ok_ip] * base + ip[ok_ip])
        session_ips = np.bincount(session_owner[distinct // base], minlength=n_acc).astype(
            np.float64
        )
    return {"distinct_ips": distinct_ips, "sessions": sessions, "session_ips": session_ips}


def _hour_totals(ev: _EventArrays) -> dict[str, np.ndarray]:
    """Requests of each account per UTC hour of the day."""
    hour = (ev.t // HOUR) % 24
    profile = np.bincount(ev.acc * 24 + hour, weights=ev.req, minlength=ev.n_acc * 24).reshape(
        ev.n_acc, 24
    )
    return {f"hour_{h:02d}": profile[:, h] for h in range(24)}


def _first_heavy_day(ev: _EventArrays, heavy_day_requests: int) -> np.ndarray:
    """Start (epoch seconds) of each account's first day of heavy use (int64 max: none)."""
    day_key = ev.acc * np.int64(1 << 20) + (ev.day - ev.first_day)
    dkeys, day_req = _sum_by_key(day_key, ev.req)
    heavy = day_req >= heavy_day_requests
    heavy_day = np.full(ev.n_acc, _NEVER, dtype=np.int64)
    heavy_owner = dkeys[heavy] // np.int64(1 << 20)
    heavy_start = (dkeys[heavy] % np.int64(1 << 20) + ev.first_day) * DAY
    # dkeys are sorted by (account, day): the first heavy key of each account is its earliest.
    if len(heavy_owner):
        firsts = np.r_[0, np.flatnonzero(np.diff(heavy_owner)) + 1]
        heavy_day[heavy_owner[firsts]] = heavy_start[firsts]
    return heavy_day


def account_totals(
    codes: pd.DataFrame,
    n_acc: int,
    *,
    session_gap_minutes: float = 30.0,
    heavy_day_requests: int = 50,
    top_templates: int = 3,
) -> pd.DataFrame:
    """Per-account sums and extremes over the events (:data:`TOTALS_COLUMNS`): everything
    :func:`behaviour_from_totals` needs, and all that a group-by engine (Spark) must compute.

    Parameters
    ----------
    codes : pandas.DataFrame
        :func:`event_codes` of the events.
    n_acc : int
        Number of accounts (rows of the result, in ``acc`` order).
    session_gap_minutes, heavy_day_requests, top_templates
        As in :func:`account_behaviour`.

    Returns
    -------
    pandas.DataFrame
        One row per account. Counts and sums are float64 except ``n_templates`` and
        ``distinct_ips`` (int64); ``first_event`` and ``heavy_day`` are epoch seconds (int64
        max when the account has none).

    Notes
    -----
    O(m log m) for m events (the sorts of the distinct counts).
    """
    ev = _EventArrays.of(codes, n_acc)
    first_event = np.full(n_acc, _NEVER, dtype=np.int64)
    starts_acc = np.r_[0, np.flatnonzero(np.diff(ev.acc)) + 1] if len(ev.acc) else np.zeros(0, int)
    first_event[ev.acc[starts_acc]] = ev.t[starts_acc]
    columns = {
        **_volume_totals(ev, codes),
        **_template_totals(ev, codes["prompt"].to_numpy(), top_templates),
        **_spread_totals(ev, codes["ip"].to_numpy(), session_gap_minutes),
        "first_event": first_event,
        "heavy_day": _first_heavy_day(ev, heavy_day_requests),
        **_hour_totals(ev),
    }
    return pd.DataFrame({name: columns[name] for name in TOTALS_COLUMNS})


def _clock_features(
    profile: np.ndarray, has: np.ndarray
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Entropy and peak of each account's hour-of-day profile, and the profile itself.

    Hours are UTC: a controller's clock shows there, not in the claimed country's time. The
    profile is the share of requests per hour, as columns ``hour_00`` ... ``hour_23``.
    """
    shares = profile / np.maximum(profile.sum(axis=1, keepdims=True), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(shares > 0, shares * np.log2(shares), 0.0), axis=1)
    features = {
        "hour_entropy": np.where(has, entropy, np.nan),
        "peak_hour": np.where(has, shares.argmax(axis=1), -1).astype(np.int64),
    }
    hours = pd.DataFrame(shares.astype(np.float32), columns=[f"hour_{h:02d}" for h in range(24)])
    return features, hours


def _waking_features(
    totals: pd.DataFrame, has: np.ndarray, created: np.ndarray, dormancy_days: float
) -> dict[str, object]:
    """First event, dormancy after signup, time to the first heavy day, and waking."""
    first_event = totals["first_event"].to_numpy(np.int64)
    heavy_day = totals["heavy_day"].to_numpy(np.int64)
    heavy_seen = heavy_day < _NEVER
    dormant = np.where(has, (first_event - created) / DAY, np.nan)
    hours_to_heavy = np.where(heavy_seen, (np.maximum(heavy_day, created) - created) / HOUR, np.nan)
    awakened = (
        has
        & (np.nan_to_num(dormant, nan=0.0) >= dormancy_days)
        & heavy_seen
        & (heavy_day - (first_event // DAY) * DAY <= 7 * DAY)
    )
    return {
        "first_event_at": pd.to_datetime(np.where(has, first_event, 0), unit="s", utc=True).where(
            has
        ),
        "dormant_days": dormant,
        "hours_to_heavy_use": hours_to_heavy,
        "awakened": awakened,
    }


def behaviour_from_totals(
    totals: pd.DataFrame, accounts: pd.DataFrame, *, dormancy_days: float = 14.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The behaviour features of :func:`account_behaviour` but the ``pivot_*`` columns, from
    :func:`account_totals` (or the same totals computed by another engine).

    Parameters
    ----------
    totals : pandas.DataFrame
        :data:`TOTALS_COLUMNS`, one row per account in the order of ``accounts``.
    accounts : pandas.DataFrame
        Validated accounts (``account_id``, ``created_at``).
    dormancy_days : float, default 14
        As in :func:`account_behaviour`.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        The features (``account_id`` ... ``awakened`` of :data:`BEHAVIOUR_COLUMNS`) and the
        hour-of-day shares (``hour_00`` ... ``hour_23``, float32).

    Notes
    -----
    O(n) for n accounts: only per-account arithmetic, the same on every engine.
    """
    ids = accounts["account_id"].astype("string")
    created = _seconds(accounts["created_at"]) if len(ids) else np.zeros(0, np.int64)
    col = {name: totals[name].to_numpy() for name in TOTALS_COLUMNS}
    n_rows = col["n_rows"].astype(np.float64)
    requests = col["requests"].astype(np.float64)
    has = n_rows > 0
    profile = np.column_stack([col[f"hour_{h:02d}"] for h in range(24)]).astype(np.float64)
    clock, hours = _clock_features(profile.reshape(len(ids), 24), has)
    top, total = col["top_requests"].astype(np.float64), col["prompt_requests"].astype(np.float64)
    ratio = (col["tokens_out"].astype(np.float64) + 1.0) / (
        col["tokens_in"].astype(np.float64) + 1.0
    )
    sessions = col["sessions"].astype(np.float64)
    frame = pd.DataFrame(
        {
            "account_id": pd.array(ids.to_numpy(), dtype="string"),
            "n_rows": n_rows,
            "requests": requests,
            "active_days": col["active_days"].astype(np.float64),
            "output_input_ratio": np.where(has, ratio, np.nan),
            "n_templates": col["n_templates"].astype(np.int64),
            "template_top_share": np.where(total > 0, top / np.maximum(total, 1e-12), np.nan),
            "ips_per_request": np.where(
                has, col["distinct_ips"].astype(np.int64) / np.maximum(requests, 1), np.nan
            ),
            "ips_per_session": np.where(
                has, col["session_ips"].astype(np.float64) / np.maximum(sessions, 1), np.nan
            ),
            "sessions": sessions,
            **clock,
            **_waking_features(totals, has, created, dormancy_days),
        }
    )
    return frame, hours


def account_behaviour(
    events: pd.DataFrame,
    accounts: pd.DataFrame,
    *,
    session_gap_minutes: float = 30.0,
    heavy_day_requests: int = 50,
    dormancy_days: float = 14.0,
    new_model_margin_days: float = 7.0,
    top_templates: int = 3,
    codes: pd.DataFrame | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-account behaviour features from the events table.

    Parameters
    ----------
    events : pandas.DataFrame
        Validated events (see :func:`event_codes`).
    accounts : pandas.DataFrame
        Validated accounts (``account_id``, ``created_at``); the result has their order.
    session_gap_minutes : float, default 30
        A pause longer than this starts a new session.
    heavy_day_requests : int, default 50
        A day with at least this many requests is a day of heavy use.
    dormancy_days : float, default 14
        An account whose first event comes this long after its creation, and which then has
        a heavy day within a week, has ``awakened``.
    new_model_margin_days : float, default 7
        A model first seen this long after the first event is a *new* model; its pivot
        windows start at its first appearance.
    top_templates : int, default 3
        ``template_top_share`` is the share of requests on this many top prompts.
    codes : pandas.DataFrame, optional
        :func:`event_codes` of ``events`` for these accounts, when already computed.
    seed : int, default 0
        Unused (the features are deterministic); kept for the module convention.

    Returns
    -------
    pandas.DataFrame
        One row per account with :data:`BEHAVIOUR_COLUMNS` and the hour-of-day profile
        ``hour_00`` ... ``hour_23`` (share of requests per UTC hour). Accounts without events
        have ``n_rows = 0`` and NaN ratios.

    Notes
    -----
    O(m log m) for m events: one sort by (account, time), then ``bincount`` and ``unique``
    over integer keys. The pivot loops over new models only (usually one).

    Examples
    --------
    >>> accounts = pd.DataFrame({"account_id": ["a"],
    ...     "created_at": pd.to_datetime(["2026-01-01"], utc=True)})
    >>> events = pd.DataFrame({"account_id": ["a", "a"],
    ...     "ts": pd.to_datetime(["2026-01-02T10:00", "2026-01-02T10:10"], utc=True),
    ...     "requests": [1, 3], "input_tokens": [100, 100], "output_tokens": [300, 500]})
    >>> f = account_behaviour(events, accounts)
    >>> f[["n_rows", "requests", "sessions", "output_input_ratio"]].iloc[0].round(3).tolist()
    [2.0, 4.0, 1.0, 3.985]
    """
    del seed
    ids = accounts["account_id"].astype("string")
    if codes is None:
        codes = event_codes(events, ids)
    totals = account_totals(
        codes,
        len(ids),
        session_gap_minutes=session_gap_minutes,
        heavy_day_requests=heavy_day_requests,
        top_templates=top_templates,
    )
    frame, hours = behaviour_from_totals(totals, accounts, dormancy_days=dormancy_days)
    pivot = _pivot(codes, len(ids), new_model_margin_days)
    return pd.concat([frame, pivot, hours], axis=1)


def pivot_features(codes: pd.DataFrame, n_acc: int, margin_days: float = 7.0) -> pd.DataFrame:
    """Per account, its strongest move to a new model in the 24/72 h after its release: the
    ``pivot_*`` columns of :func:`account_behaviour`, which depend on every account's events
    (a model's release is its first appearance; the population's share is a mean over the
    active accounts).

    Parameters
    ----------
    codes : pandas.DataFrame
        :func:`event_codes` of all events.
    n_acc : int
        Number of accounts.
    margin_days : float, default 7
        As ``new_model_margin_days`` of :func:`account_behaviour`.

    Returns
    -------
    pandas.DataFrame
        One row per account, the ``pivot_*`` columns.

    Notes
    -----
    O(m) per new model, for m events.
    """
    return _pivot(codes, n_acc, margin_days)


def model_releases(codes: pd.DataFrame, margin_days: float = 7.0) -> pd.DataFrame:
    """Each model's release: its first appearance in the events.

    A model first seen ``margin_days`` or more after the first event is *new*: accounts that
    move to it within hours of that moment pivot (:func:`pivot_features`). A model seen from
    the start was released before the events begin.

    Parameters
    ----------
    codes : pandas.DataFrame
        :func:`event_codes` of all events (``attrs["models"]`` names the codes).
    margin_days : float, default 7
        As ``new_model_margin_days`` of :func:`account_behaviour`.

    Returns
    -------
    pandas.DataFrame
        One row per model code (0..k-1): ``model`` (its name), ``release`` (epoch seconds of
        its first event) and ``new`` (released inside the events' span).

    Notes
    -----
    O(m) for m events: one ``np.minimum.at``.

    Examples
    --------
    >>> events = pd.DataFrame({"account_id": ["a", "a", "b"], "model": ["m1", "m1", "m2"],
    ...     "ts": pd.to_datetime(["2026-01-01", "2026-01-20", "2026-01-15"], utc=True)})
    >>> model_releases(event_codes(events, ["a", "b"]))[["model", "new"]].values.tolist()
    [['m1', False], ['m2', True]]
    """
    model = codes["model"].to_numpy()
    names = list(codes.attrs.get("models", []))
    known = model >= 0
    if not known.any():
        return pd.DataFrame(
            {
                "model": pd.Series(dtype="string"),
                "release": pd.Series(dtype=np.int64),
                "new": pd.Series(dtype=bool),
            }
        )
    t = codes["t"].to_numpy()
    first_seen = np.full(int(model.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, model[known], t[known])
    labels = [names[m] if m < len(names) else str(m) for m in range(len(first_seen))]
    return pd.DataFrame(
        {
            "model": pd.array(labels, dtype="string"),
            "release": first_seen,
            "new": first_seen >= t.min() + margin_days * DAY,
        }
    )


def _pivot(codes: pd.DataFrame, n_acc: int, margin_days: float) -> pd.DataFrame:
    """Per account, its strongest move to a new model in the 24/72 h after its release."""
    out = pd.DataFrame(
        {
            "pivot_model": pd.array([None] * n_acc, dtype="string"),
            "pivot_requests_24h": np.zeros(n_acc),
            "pivot_share_24h": np.full(n_acc, np.nan),
            "pivot_population_24h": np.full(n_acc, np.nan),
            "pivot_requests_72h": np.zeros(n_acc),
            "pivot_share_72h": np.full(n_acc, np.nan),
            "pivot_population_72h": np.full(n_acc, np.nan),
            "pivot_hours": np.full(n_acc, np.nan),
        }
    )
    model = codes["model"].to_numpy()
    if not len(model) or (model < 0).all():
        return out
    t = codes["t"].to_numpy()
    acc = codes["acc"].to_numpy()
    req = codes["requests"].to_numpy().astype(np.float64)
    names = codes.attrs.get("models", [])
    releases = model_releases(codes, margin_days)
    first_seen = releases["release"].to_numpy()
    new = np.flatnonzero(releases["new"].to_numpy())
    best = np.full(n_acc, -1.0)
    for m in sorted(new.tolist(), key=lambda k: names[k] if k < len(names) else str(k)):
        release = first_seen[m]
        shares: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        for hours in (24, 72):
            inside = (t >= release) & (t < release + hours * HOUR)
            total = np.bincount(acc[inside], weights=req[inside], minlength=n_acc)
            on = inside & (model == m)
            moved = np.bincount(acc[on], weights=req[on], minlength=n_acc)
            share = np.where(total > 0, moved / np.maximum(total, 1e-12), np.nan)
            # The population's share is the mean over active accounts, not over requests:
            # a ring's own heavy traffic must not set the baseline it is compared with.
            # An exact sum (math.fsum): the mean must not depend on the accounts' order.
            active = share[total > 0]
            population = math.fsum(active.tolist()) / len(active) if len(active) else np.nan
            shares[hours] = (total, share, population)
        first_on = np.full(n_acc, np.iinfo(np.int64).max, dtype=np.int64)
        on_m = model == m
        np.minimum.at(first_on, acc[on_m], t[on_m])
        _, share72, _ = shares[72]
        better = np.nan_to_num(share72, nan=-1.0) > best
        best = np.where(better, np.nan_to_num(share72, nan=-1.0), best)
        name = names[m] if m < len(names) else str(m)
        out.loc[better, "pivot_model"] = name
        for hours in (24, 72):
            total, share, population = shares[hours]
            out.loc[better, f"pivot_requests_{hours}h"] = total[better]
            out.loc[better, f"pivot_share_{hours}h"] = share[better]
            out.loc[better, f"pivot_population_{hours}h"] = population
        seen = first_on < np.iinfo(np.int64).max
        out.loc[better & seen, "pivot_hours"] = (first_on[better & seen] - release) / HOUR
    return out


SAVED_CODE_COLUMNS: tuple[str, ...] = (
    "acc",
    "t",
    "model",
    "prompt",
    "ip",
    "requests",
    "input_tokens",
    "output_tokens",
)
"""Columns of the saved event codes (:func:`saved_codes`)."""


def _values_frame(values: dict[str, pa.Array], first_code: dict[str, int]) -> pd.DataFrame:
    """``column, code, value`` rows of per-column value arrays (codes from ``first_code``)."""
    parts = []
    for name, _ in _CODED:
        array = values.get(name, pa.array([], pa.large_string()))
        start = first_code.get(name, 0)
        parts.append(
            pd.DataFrame(
                {
                    "column": pd.array([name] * len(array), dtype="string"),
                    "code": np.arange(start, start + len(array), dtype=np.int64),
                    # Straight from Arrow: no Python string per distinct value.
                    "value": pd.array(_as_text(array), dtype="string"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def saved_codes(
    codes: pd.DataFrame, values: dict[str, pa.Array], stored_row: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Event codes in the form a run saves for the next update.

    Parameters
    ----------
    codes, values : pandas.DataFrame, dict
        :func:`coded_events` of all events.
    stored_row : numpy.ndarray of int
        Per account row of ``codes`` (``acc``), the account's row in the stored accounts
        table. A stored row never changes: an update appends new accounts after the others.

    Returns
    -------
    saved : pandas.DataFrame
        :data:`SAVED_CODE_COLUMNS`: ``acc`` is the stored account row, the coded columns are
        codes of ``dictionary``.
    dictionary : pandas.DataFrame
        ``column`` (``model``, ``prompt`` or ``ip``), ``code``, ``value``.

    Notes
    -----
    O(m + v) for m events and v distinct values. :func:`codes_as_saved` reads them back with
    their values; :func:`extend_saved_codes` codes new events with the same codes, so the
    saved rows are never rewritten.
    """
    stored = np.asarray(stored_row, dtype=np.int64)
    columns = {
        name: stored[codes["acc"].to_numpy(np.int64)] if name == "acc" else codes[name].to_numpy()
        for name in SAVED_CODE_COLUMNS
    }
    acc, t = codes["acc"].to_numpy(np.int64), codes["t"].to_numpy(np.int64)
    tied = np.zeros(len(acc), dtype=bool)
    if len(acc) > 1:
        same = (acc[1:] == acc[:-1]) & (t[1:] == t[:-1])
        tied[1:] |= same
        tied[:-1] |= same
    if tied.any():
        # Rows at the same account and second keep the input's order in ``codes``; saved,
        # they are put in the order of their values, so that the same events in another
        # order save the same bytes.
        rows = np.flatnonzero(tied)
        order = _value_order({**{n: v[rows] for n, v in columns.items()}, "acc": acc[rows]})
        for name in SAVED_CODE_COLUMNS:
            column = columns[name].copy()
            column[rows] = column[rows][order]
            columns[name] = column
    return _compact(columns), _values_frame(values, {})


def _value_order(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The order of event rows by account, time and then every other saved column."""
    return np.lexsort(tuple(columns[name] for name in reversed(SAVED_CODE_COLUMNS)))


def _compact(columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Saved codes with int32 columns where the values fit (half the bytes to store and read
    of int64; ``t`` stays int64), column by column: no int64 copy of the whole table."""
    out = {}
    for name in SAVED_CODE_COLUMNS:
        values = np.asarray(columns[name])
        small = len(values) == 0 or (
            values.min() >= np.iinfo(np.int32).min and values.max() <= np.iinfo(np.int32).max
        )
        out[name] = values.astype(np.int32) if small and name != "t" else values
    return pd.DataFrame(out, copy=False)


def extend_saved_codes(
    events: pd.DataFrame, stored_ids: pd.Series | np.ndarray, dictionary: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """New events coded against saved codes (:func:`saved_codes`).

    Parameters
    ----------
    events : pandas.DataFrame
        The new validated events.
    stored_ids : array-like of str
        Every account, in the stored accounts table's order (the saved ``acc``).
    dictionary : pandas.DataFrame
        The saved ``column, code, value`` rows (codes dense from 0 per column).

    Returns
    -------
    saved : pandas.DataFrame
        The new events in the saved form (unknown accounts dropped), in their own order.
    added : pandas.DataFrame
        The values not in ``dictionary``, with the next codes of their column (code-point
        order among themselves).

    Notes
    -----
    O(q + v) hash look-ups for q new events and v saved values; the saved events are not
    read.
    """
    n = len(events)
    acc = _rows_of(events["account_id"], stored_ids) if n else np.zeros(0, np.int64)
    columns: dict[str, np.ndarray] = {"acc": acc, "t": _seconds(events["ts"])}
    added: dict[str, pa.Array] = {}
    first_code: dict[str, int] = {}
    known_values = saved_values(dictionary)
    for out_name, name in _CODED:
        known = known_values[out_name]
        first_code[out_name] = len(known)
        if name not in events.columns or not n:
            columns[out_name] = np.full(n, -1, dtype=np.int64)
            continue
        text = _as_text(_arrow_column(events[name]).combine_chunks())
        code = _indices(pa.chunked_array([pc.index_in(text, value_set=known)]))
        missing = (code < 0) & np.asarray(text.is_valid().to_numpy(zero_copy_only=False), bool)
        if missing.any():
            fresh = pc.unique(text.filter(pa.array(missing)))
            fresh = fresh.take(pc.sort_indices(fresh))
            at = _indices(pa.chunked_array([pc.index_in(text, value_set=fresh)]))
            code = np.where(missing, len(known) + at, code)
            added[out_name] = fresh
        columns[out_name] = code
    for name, default in (("requests", 1), ("input_tokens", 0), ("output_tokens", 0)):
        if name in events.columns:
            column = events[name]
            if not pd.api.types.is_numeric_dtype(column.dtype):
                column = pd.to_numeric(column)
            columns[name] = np.asarray(column.to_numpy(dtype=np.int64, na_value=default))
        else:
            columns[name] = np.full(n, default, dtype=np.int64)
    columns["requests"] = np.maximum(columns["requests"], 1)
    keep = columns["acc"] >= 0
    kept = {k: v[keep] for k, v in columns.items()}
    order = _value_order(kept)  # the same new events in another order save the same bytes
    return _compact({k: v[order] for k, v in kept.items()}), _values_frame(added, first_code)


def saved_values(dictionary: pd.DataFrame) -> dict[str, pa.Array]:
    """The saved values of each coded column, in code order (code ``k`` at ``k``).

    Parameters
    ----------
    dictionary : pandas.DataFrame
        ``column``, ``code``, ``value``: :func:`saved_codes`' dictionary.

    Returns
    -------
    dict of str to pyarrow.Array
        Per coded column (``model``, ``prompt``, ``ip``), its values as large strings.

    Raises
    ------
    ValueError
        When a column's codes are not ``0 .. k-1``.

    Notes
    -----
    O(v log v) for v saved values (one sort of each column's codes).
    """
    table = pa.Table.from_pandas(
        dictionary[["column", "code", "value"]].reset_index(drop=True), preserve_index=False
    )
    out: dict[str, pa.Array] = {}
    for name, _ in _CODED:
        mine = table.filter(pc.equal(table["column"], name))
        code = np.asarray(mine["code"].to_numpy(), dtype=np.int64)
        order = np.argsort(code, kind="stable")
        if not np.array_equal(code[order], np.arange(len(code))):
            raise ValueError(f"the saved {name} codes are not 0..k-1")
        out[name] = _as_text(mine["value"].combine_chunks()).take(pa.array(order))
    return out


def codes_as_saved(
    saved: Sequence[pd.DataFrame],
    dictionary: pd.DataFrame,
    row_of_stored: np.ndarray,
    columns: Sequence[str] = SAVED_CODE_COLUMNS,
) -> tuple[pd.DataFrame, dict[str, pa.Array]]:
    """All events as the saved codes number them: neither renumbered nor sorted.

    What needs no particular numbering of the values and no row order (the model pivot, the
    lockstep signatures, which hash the values' text, and the features of a few accounts
    once their rows are sorted) reads this: :func:`event_codes`' numbering would cost a sort
    of every value and every event.

    Parameters
    ----------
    saved : sequence of pandas.DataFrame
        Every event in the saved form, in any number of frames (:func:`saved_codes` of a
        run, then :func:`extend_saved_codes` of each update).
    dictionary : pandas.DataFrame
        Every saved value (``column, code, value``).
    row_of_stored : numpy.ndarray of int
        Per stored account row, its row in the accounts' ``account_id`` order.
    columns : sequence of str, default all of :data:`SAVED_CODE_COLUMNS`
        The columns wanted (``acc`` is always given).

    Returns
    -------
    codes : pandas.DataFrame
        ``columns`` of the events in the order of ``saved``, ``acc`` the account's row;
        ``attrs["models"]`` names the model codes and ``attrs["n_accounts"]`` is
        ``len(row_of_stored)``.
    values : dict of str to pyarrow.Array
        :func:`saved_values` of ``dictionary``.

    Raises
    ------
    ValueError
        When an account row or a code is out of range, or a column's saved codes are not
        ``0 .. k-1``.

    Notes
    -----
    O(m + v log v) for m events and v values: one copy of each wanted column.
    """
    values = saved_values(dictionary)
    n_acc = len(row_of_stored)
    out: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(["acc", *columns]):
        parts = [np.asarray(f[name].to_numpy(), dtype=np.int64) for f in saved]
        column = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if name == "acc":
            if len(column) and (column.min() < 0 or column.max() >= n_acc):
                raise ValueError("an event's stored account row is out of range")
            column = np.asarray(row_of_stored, dtype=np.int64)[column]
            if len(column) and column.min() < 0:
                raise ValueError("an event's account is not among the accounts")
        elif name in values and len(column) and column.max() >= len(values[name]):
            raise ValueError(f"a saved {name} code has no saved value")
        out[name] = column
    codes = pd.DataFrame(out, copy=False)  # one block per column: no 8-column copy
    codes.attrs["models"] = [str(v) for v in values["model"].to_pylist()]
    codes.attrs["n_accounts"] = n_acc
    return codes, values
