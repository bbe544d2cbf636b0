"""Build a scenario world and write its tables (accounts, payments, events, labels)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from linker.errors import SettingsError
from linker.io.atomic import atomic_path, write_text_atomic
from linker.scenarios.events import EventColumns, generate_segment_events
from linker.scenarios.innocents import build_innocents
from linker.scenarios.params import MIN_RING_SIZE, ScenarioParams, resolve_params
from linker.scenarios.plan import (
    ALL_BINS,
    GROUPS,
    HOUR_US,
    K_POPULAR,
    ROLES,
    Context,
    Segment,
    key_space,
    make_rng,
)
from linker.scenarios.render import (
    FORM_DATE,
    FORM_SPACE_MS,
    FORM_Z,
    render_ips,
    render_timestamps,
    salt,
    tokens,
)
from linker.scenarios.rings import build_network, build_ring, plan_ring_sizes, popular_shares
from linker.scenarios.tables import COMMERCIAL_BINS, COUNTRIES, MODELS, USER_AGENTS

__all__ = ["ScenarioSummary", "generate_scenario"]

logger = logging.getLogger(__name__)

TABLES = ("accounts", "payments", "events", "labels")
STREAM_COUNTS = 13
STREAM_POPULAR = 14
STREAM_FORMS = 15
WRITE_CHUNK = 1_000_000
MIN_ACCOUNTS = 1000
MAX_EVENTS_PER_ACCOUNT = 20_000

_PLUS_PROVIDERS = (
    "gmail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "icloud.com", "me.com",
    "mac.com", "proton.me", "protonmail.com", "fastmail.com", "yandex.ru", "yandex.com",
    "zoho.com", "zohomail.com", "hey.com",
)  # fmt: skip

_AGENTS = pa.array(USER_AGENTS)
_MODELS = pa.array(MODELS)


@dataclass(frozen=True)
class ScenarioSummary:
    """What :func:`generate_scenario` wrote.

    Attributes
    ----------
    scenario : str
        The scenario's name.
    seed : int
    fmt : str
        ``csv`` or ``parquet``.
    n_accounts, n_payments, n_events, n_requests : int
        Rows of accounts, payments and events, and the sum of ``requests``.
    rings : dict
        Accounts per ring id.
    ring_scale : float
        The factor the rings were scaled by to fit (1.0 when they were not).
    groups, roles : dict
        Accounts per label group and per role.
    window_start, window_end, release_at : str
        The event window and the new model's release (ISO 8601, UTC).
    files : list of str
        The files written.
    params : dict
        Every knob's value.
    """

    scenario: str
    seed: int
    fmt: str
    n_accounts: int
    n_payments: int
    n_events: int
    n_requests: int
    rings: dict[str, int]
    ring_scale: float
    groups: dict[str, int]
    roles: dict[str, int]
    window_start: str
    window_end: str
    release_at: str
    files: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)


def _iso(us: int) -> str:
    return str(np.datetime64(us, "us").astype("datetime64[s]")) + "Z"


def _mailbox(emails: pa.Array) -> pa.Array:
    """Mailbox identity as providers treat it (Gmail dots and provider +tags folded)."""
    e = pc.utf8_lower(pc.utf8_trim_whitespace(emails))
    parts = pc.split_pattern(e, "@")
    local, domain = pc.list_element(parts, 0), pc.list_element(parts, 1)
    domain = pc.if_else(pc.equal(domain, "googlemail.com"), "gmail.com", domain)
    local = pc.if_else(pc.equal(domain, "gmail.com"), pc.replace_substring(local, ".", ""), local)
    stripped = pc.list_element(pc.split_pattern(local, "+", max_splits=1), 0)
    plus = pc.and_(
        pc.is_in(domain, value_set=pa.array(_PLUS_PROVIDERS)), pc.not_equal(stripped, "")
    )
    return pc.binary_join_element_wise(pc.if_else(plus, stripped, local), domain, "@")


def _later_duplicates(codes: np.ndarray) -> np.ndarray:
    """True at every occurrence of a code after its first."""
    _, first = np.unique(codes, return_index=True)
    dup = np.ones(len(codes), dtype=bool)
    dup[first] = False
    return dup


def _dedupe_emails(email: pa.Array, is_ring: np.ndarray) -> pa.Array:
    """Give innocents that share a mailbox with anyone before them a mailbox of their own.

    Rings keep theirs: a ring's shared mailboxes (Gmail dots, +tags) are its signal.
    """
    positions = np.arange(len(email))
    for attempt in range(6):
        codes = pc.dictionary_encode(_mailbox(email)).indices.to_numpy()
        dup = np.isin(codes, codes[is_ring]) & ~is_ring
        innocent = np.flatnonzero(~is_ring)
        dup[innocent[_later_duplicates(codes[innocent])]] = True
        if not dup.any():
            return email
        if attempt == 5:
            raise RuntimeError("could not make innocent mailboxes unique")
        where = positions[dup]
        parts = pc.split_pattern(email.take(pa.array(where)), "@")
        base = pc.list_element(pc.split_pattern(pc.list_element(parts, 0), "+", max_splits=1), 0)
        number = pa.array((where % 9973 + 10) * 10 + attempt).cast(pa.string())
        fixed = pc.binary_join_element_wise(
            pc.binary_join_element_wise(base, number, ""), pc.list_element(parts, 1), "@"
        )
        index = positions.copy()
        index[where] = len(email) + np.arange(len(where))
        email = pa.concat_arrays([email, fixed]).take(pa.array(index))
    return email


class _Writer:
    """One table's file, written in chunks (CSV with a header, or Parquet row groups)."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema) -> None:
        self.fmt = fmt
        self.schema = schema
        self._ctx = atomic_path(path)
        tmp = self._ctx.__enter__()
        self.rows = 0
        self._csv: pacsv.CSVWriter | None = None
        self._pq: pq.ParquetWriter | None = None
        if fmt == "csv":
            options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
            self._csv = pacsv.CSVWriter(str(tmp), schema, write_options=options)
        else:
            self._pq = pq.ParquetWriter(str(tmp), schema, compression="zstd")

    def write(self, columns: dict[str, pa.Array]) -> None:
        table = pa.table([columns[f.name] for f in self.schema], schema=self.schema)
        if self._csv is not None:
            self._csv.write_table(table)
        elif self._pq is not None:
            self._pq.write_table(table, row_group_size=max(1, len(table)))
        self.rows += len(table)

    def close(self, ok: bool = True) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._pq is not None:
            self._pq.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


def _ts_column(
    values: np.ndarray, forms: np.ndarray | None, offsets: np.ndarray | None, native: bool
) -> pa.Array:
    if native:
        return pa.array(values, type=pa.timestamp("us", tz="UTC"))
    return render_timestamps(values, forms, offsets)


def _nullable_tokens(keys: np.ndarray, prefix: str, salt_value: int, width: int = 16) -> pa.Array:
    present = keys >= 0
    out = tokens(np.where(present, keys, 0), prefix, salt_value, width)
    if present.all():
        return out
    return pc.if_else(pa.array(present), out, pa.scalar(None, pa.string()))


def _nullable_take(table: pa.Array, idx: np.ndarray) -> pa.Array:
    return table.take(pa.array(idx, mask=idx < 0))


def _chunks(n: int, size: int = WRITE_CHUNK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _assign_counts(ctx: Context, innocents: list[Segment]) -> None:
    """Event rows per innocent account: weights scaled to ``events_per_account`` on average."""
    if not innocents:
        return
    rng = make_rng(ctx.seed, STREAM_COUNTS)
    weight = np.concatenate([s.weight for s in innocents])
    total = ctx.params.events_per_account * len(weight)
    lam = weight * (total / weight.sum()) if weight.sum() > 0 else weight
    counts = np.minimum(rng.poisson(lam), MAX_EVENTS_PER_ACCOUNT)
    start = 0
    for seg in innocents:
        n = counts[start : start + len(seg)]
        start += len(seg)
        usable = seg.act_start < ctx.w_end - HOUR_US
        seg.n_events = np.where(usable, n, 0).astype(np.int64)


def _assign_popular(ctx: Context, innocents: list[Segment]) -> None:
    """Which active innocent accounts send a popular template (one template each)."""
    rng = make_rng(ctx.seed, STREAM_POPULAR)
    shares = popular_shares(ctx.params)
    probs = np.concatenate([shares, [1.0 - shares.sum()]])
    for seg in innocents:
        pick = rng.choice(len(probs), len(seg), p=probs)
        seg.pop_idx = np.where((pick < len(shares)) & (seg.n_events > 0), pick, -1).astype(np.int64)


def _remove_stale(out_dir: Path) -> None:
    for table in TABLES:
        for suffix in (".csv", ".csv.gz", ".parquet"):
            path = out_dir / f"{table}{suffix}"
            if path.exists():
                path.unlink()


def generate_scenario(
    name: str,
    n_accounts: int,
    seed: int,
    out_dir: str | Path,
    *,
    fmt: Literal["csv", "parquet"] = "csv",
    overrides: dict[str, Any] | None = None,
    ring_accounts: int | None = None,
) -> ScenarioSummary:
    """Write the world of scenario ``name``: accounts, payments, events and labels.

    Parameters
    ----------
    name : str
        A scenario of :data:`linker.scenarios.SCENARIOS` (``random`` draws every knob).
    n_accounts : int
        Accounts in the world, rings included (at least 1000).
    seed : int
        Seed of every draw. Seeds 0-9 are for tuning, 100-119 are held out (docs/scenarios.md).
    out_dir : str or Path
        Directory for ``accounts``, ``payments``, ``events`` and ``labels`` (other formats
        of these four tables there are removed) and ``scenario.json``.
    fmt : {"csv", "parquet"}
        File format. Parquet timestamps are native unless ``timestamp_mix`` > 0.
    overrides : dict, optional
        Knob values that replace the scenario's (strings are converted).
    ring_accounts : int, optional
        Total ring accounts, independent of ``n_accounts``: the same seed gives the same
        rings at any population (scaled down only when they exceed ``max_ring_fraction``).

    Returns
    -------
    ScenarioSummary

    Raises
    ------
    SettingsError
        For an unknown scenario or knob, a value outside its range, or a world too small.

    Notes
    -----
    Same arguments, same bytes: every draw comes from a stream keyed by the seed, and no
    clock is read. Time O(events); memory about 55 bytes per event row plus the accounts.

    Examples
    --------
    >>> import tempfile
    >>> s = generate_scenario("tiny_rings", 2000, 0, tempfile.mkdtemp())
    >>> sorted(s.rings.values())
    [30, 30, 30, 30, 30, 30]
    """
    problems = []
    if n_accounts < MIN_ACCOUNTS:
        problems.append(f"n_accounts={n_accounts} is below {MIN_ACCOUNTS}")
    if fmt not in ("csv", "parquet"):
        problems.append(f"fmt={fmt!r} is not csv or parquet")
    if ring_accounts is not None and ring_accounts < MIN_RING_SIZE:
        problems.append(f"ring_accounts={ring_accounts} is below {MIN_RING_SIZE}")
    if problems:
        raise SettingsError(problems)
    params = resolve_params(name, seed, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes, scale = plan_ring_sizes(params, n_accounts, ring_accounts, seed)
    if scale < 1.0:
        logger.warning(
            "rings scaled by %.3f to fit in %.0f%% of %d accounts",
            scale,
            100 * params.max_ring_fraction,
            n_accounts,
        )
    n_innocent = n_accounts - sum(sizes)
    ctx = Context(params, seed, n_innocent)
    build_network(ctx, sizes)
    rings = [build_ring(ctx, r, s) for r, s in enumerate(sizes)]
    ctx.ring_exits = np.unique(ctx.pool_so_far())
    innocents = build_innocents(ctx, n_innocent)
    ctx.finish()
    _assign_counts(ctx, innocents)
    _assign_popular(ctx, innocents)
    segments = innocents + rings
    logger.info("planned %d accounts in %d segments", n_accounts, len(segments))
    summary = _write_world(ctx, params, name, out, fmt, segments, scale)
    return summary


@dataclass
class _Target:
    """Where and how the tables go, and the files written so far (in order)."""

    out: Path
    fmt: str
    native: bool
    """Timestamps as native Parquet timestamps, not text."""
    files: list[str] = field(default_factory=list)

    @property
    def ts_type(self) -> pa.DataType:
        """The type of timestamp columns."""
        return pa.timestamp("us", tz="UTC") if self.native else pa.string()

    def file_name(self, table: str) -> str:
        """``table``'s file name in this format."""
        return table + (".csv" if self.fmt == "csv" else ".parquet")

    def write(self, table: str, schema: pa.Schema, columns: dict[str, pa.Array]) -> None:
        """Write one whole table and record its file."""
        _write_table(self.out / self.file_name(table), self.fmt, schema, columns)
        self.files.append(self.file_name(table))


@dataclass(frozen=True)
class _Accounts:
    """The world's accounts in sign-up order: the rows the other tables refer to."""

    order: np.ndarray
    """Index, into the segments' accounts end to end, of each row."""
    row_of: np.ndarray
    """Row of each of the segments' accounts (the inverse of ``order``)."""
    segment_start: np.ndarray
    """Index of each segment's first account in the segments' accounts end to end."""
    account_id: pa.Array
    created: np.ndarray
    """Sign-up time of each row, whole seconds."""
    email: pa.Array
    group: np.ndarray
    role: np.ndarray
    ring: np.ndarray

    def column(self, segments: list[Segment], attribute: str) -> np.ndarray:
        """A per-account attribute of the segments, in row order."""
        return np.concatenate([getattr(s, attribute) for s in segments])[self.order]


def _write_world(
    ctx: Context,
    params: ScenarioParams,
    name: str,
    out: Path,
    fmt: str,
    segments: list[Segment],
    scale: float,
) -> ScenarioSummary:
    """Write the tables of the planned ``segments`` and ``scenario.json`` into ``out``.

    The draws from the timestamp-forms stream come in a fixed order (accounts, then
    payments) that the world's bytes depend on: keep it.
    """
    forms_rng = make_rng(ctx.seed, STREAM_FORMS)
    accounts = _order_accounts(ctx.seed, segments)
    _remove_stale(out)
    target = _Target(out, fmt, native=fmt == "parquet" and params.timestamp_mix == 0)
    _write_accounts(target, ctx, segments, accounts, forms_rng)
    logger.info("wrote %d accounts", len(accounts.order))
    n_payments = _write_payments(target, ctx, segments, accounts, forms_rng)
    _write_labels(target, accounts)
    n_events, n_requests = _write_events(target, ctx, segments, accounts)
    ring = accounts.ring
    rings_count = (
        {f"ring-{r + 1:02d}": int((ring == r).sum()) for r in range(int(ring.max()) + 1)}
        if (ring >= 0).any()
        else {}
    )
    group, role = accounts.group, accounts.role
    summary = ScenarioSummary(
        scenario=name,
        seed=ctx.seed,
        fmt=fmt,
        n_accounts=len(accounts.order),
        n_payments=n_payments,
        n_events=n_events,
        n_requests=n_requests,
        rings=rings_count,
        ring_scale=round(scale, 6),
        groups={g: int((group == i).sum()) for i, g in enumerate(GROUPS) if (group == i).any()},
        roles={r: int((role == i).sum()) for i, r in enumerate(ROLES) if (role == i).any()},
        window_start=_iso(ctx.w0),
        window_end=_iso(ctx.w_end),
        release_at=_iso(ctx.release),
        files=target.files,
        params=params.to_dict(),
    )
    write_text_atomic(
        out / "scenario.json", json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n"
    )
    return summary


def _order_accounts(seed: int, segments: list[Segment]) -> _Accounts:
    """Put the accounts in sign-up order, give them ids, and make innocent mailboxes unique."""
    key = np.concatenate([s.key for s in segments])
    created = np.concatenate([s.created for s in segments])
    created -= created % 1_000_000
    order = np.lexsort((key, created))
    row_of = np.empty(len(order), np.int64)
    row_of[order] = np.arange(len(order))
    group = np.concatenate([s.group for s in segments])[order]
    email = pa.concat_arrays([s.email for s in segments]).take(pa.array(order))
    return _Accounts(
        order=order,
        row_of=row_of,
        segment_start=np.cumsum([0] + [len(s) for s in segments[:-1]]),
        account_id=tokens(key[order], "acct_", salt(seed, "account")),
        created=created[order],
        email=_dedupe_emails(email, group == GROUPS.index("ring")),
        group=group,
        role=np.concatenate([s.role for s in segments])[order],
        ring=np.concatenate([s.ring for s in segments])[order],
    )


def _write_accounts(
    target: _Target,
    ctx: Context,
    segments: list[Segment],
    accounts: _Accounts,
    forms_rng: np.random.Generator,
) -> None:
    """The accounts table, in sign-up order."""
    n = len(accounts.order)
    form = np.zeros(n, np.int64)
    if ctx.params.timestamp_mix > 0:
        mixed = forms_rng.random(n) < ctx.params.timestamp_mix
        form = np.where(mixed, forms_rng.integers(1, 4, n), 0)
    offsets = forms_rng.integers(0, 8, n)
    schema = pa.schema(
        [("account_id", pa.string()), ("created_at", target.ts_type), ("email", pa.string()),
         ("signup_ip", pa.string()), ("device_id", pa.string()), ("country", pa.string()),
         ("billing_customer_id", pa.string())]
    )  # fmt: skip
    seed = ctx.seed
    columns = {
        "account_id": accounts.account_id,
        "created_at": _ts_column(accounts.created, form, offsets, target.native),
        "email": accounts.email,
        "signup_ip": render_ips(accounts.column(segments, "signup_ip")),
        "device_id": _nullable_tokens(
            accounts.column(segments, "device"), "dev_", salt(seed, "device")
        ),
        "country": _nullable_take(pa.array(COUNTRIES), accounts.column(segments, "country")),
        "billing_customer_id": _nullable_tokens(
            accounts.column(segments, "billing"), "cus_", salt(seed, "billing"), 14
        ),
    }
    target.write("accounts", schema, columns)


def _write_payments(
    target: _Target,
    ctx: Context,
    segments: list[Segment],
    accounts: _Accounts,
    forms_rng: np.random.Generator,
) -> int:
    """The payments table, by the time each card was added; returns its rows (no file if 0)."""
    p_row = np.concatenate(
        [
            accounts.row_of[s.pay_acct + o]
            for s, o in zip(segments, accounts.segment_start, strict=True)
        ]
    )
    p_added = _card_added_times(ctx, segments, accounts, p_row)
    p_order = np.lexsort((p_row, p_added))
    p_row, p_added = p_row[p_order], p_added[p_order]
    k = len(p_row)
    p_form = np.zeros(k, np.int64)
    if ctx.params.timestamp_mix > 0:
        u = forms_rng.random(k)
        p_form = np.where(u < ctx.params.timestamp_mix, forms_rng.integers(1, 5, k), FORM_Z)
    # Truncated to what the row's text form shows; then no earlier than sign-up, except a
    # bare date (raising it to the sign-up time would give it a time of day).
    p_added = np.where(
        p_form == FORM_SPACE_MS, p_added - p_added % 1000, p_added - p_added % 1_000_000
    )
    p_added = np.where(p_form == FORM_DATE, p_added - p_added % (24 * HOUR_US), p_added)
    p_added = np.maximum(p_added, np.where(p_form == FORM_DATE, 0, accounts.created[p_row]))
    if not k:
        return 0
    bins = pa.array([*ALL_BINS, *COMMERCIAL_BINS])
    fp = np.concatenate([s.pay_fp for s in segments])[p_order]
    schema = pa.schema(
        [("account_id", pa.string()), ("payment_fingerprint", pa.string()),
         ("card_bin", pa.string()), ("billing_country", pa.string()),
         ("added_at", target.ts_type)]
    )  # fmt: skip
    columns = {
        "account_id": accounts.account_id.take(pa.array(p_row)),
        "payment_fingerprint": tokens(fp, "fp_", salt(ctx.seed, "card")),
        "card_bin": bins.take(pa.array(np.concatenate([s.pay_bin for s in segments])[p_order])),
        "billing_country": _nullable_take(
            pa.array(COUNTRIES), np.concatenate([s.pay_country for s in segments])[p_order]
        ),
        "added_at": _ts_column(p_added, p_form, forms_rng.integers(0, 8, k), target.native),
    }
    target.write("payments", schema, columns)
    return k


def _card_added_times(
    ctx: Context, segments: list[Segment], accounts: _Accounts, p_row: np.ndarray
) -> np.ndarray:
    """When each card was added: at least a second after sign-up, an hour before the end."""
    created = accounts.created[p_row]
    p_added = np.concatenate([s.pay_added for s in segments])
    p_added = np.minimum(np.maximum(p_added, created + 1_000_000), ctx.w_end - HOUR_US)
    return np.maximum(p_added, created)


def _write_labels(target: _Target, accounts: _Accounts) -> None:
    """The labels table: each account's ring, group and role."""
    ring_ids = pa.array([f"ring-{i + 1:02d}" for i in range(max(1, int(accounts.ring.max()) + 1))])
    schema = pa.schema(
        [
            ("account_id", pa.string()),
            ("ring_id", pa.string()),
            ("group", pa.string()),
            ("role", pa.string()),
        ]
    )
    columns = {
        "account_id": accounts.account_id,
        "ring_id": _nullable_take(ring_ids, accounts.ring),
        "group": pa.array(GROUPS).take(pa.array(accounts.group)),
        "role": pa.array(ROLES).take(pa.array(accounts.role)),
    }
    target.write("labels", schema, columns)


def _write_events(
    target: _Target, ctx: Context, segments: list[Segment], accounts: _Accounts
) -> tuple[int, int]:
    """The events table, in warehouse (time) order; returns its rows and total requests."""
    cols = _draw_events(ctx, segments, accounts)
    total = len(cols.acct)
    n_requests = int(cols.requests.sum(dtype=np.int64))
    schema = pa.schema(
        [("account_id", pa.string()), ("ts", target.ts_type), ("ip", pa.string()),
         ("device_id", pa.string()), ("user_agent", pa.string()), ("model", pa.string()),
         ("requests", pa.int64()), ("input_tokens", pa.int64()), ("output_tokens", pa.int64()),
         ("prompt_fingerprint", pa.string())]
    )  # fmt: skip
    path = target.out / target.file_name("events")
    writer = _Writer(path, target.fmt, schema)
    try:
        # In chunks, to bound the memory the rendered text takes.
        for sl in _chunks(total):
            writer.write(_event_chunk(cols, sl, accounts.account_id, ctx.seed, target.native))
    except BaseException:
        writer.close(ok=False)
        raise
    writer.close()
    target.files.append(target.file_name("events"))
    logger.info("wrote %d event rows to %s", total, path)
    return total, n_requests


def _draw_events(ctx: Context, segments: list[Segment], accounts: _Accounts) -> EventColumns:
    """Every segment's event rows, sorted by time (then account row)."""
    total = int(sum(int(s.n_events.sum()) for s in segments))
    cols = EventColumns.allocate(total)
    popular_keys = key_space(K_POPULAR, np.arange(8))
    at = 0
    for seg, o in zip(segments, accounts.segment_start, strict=True):
        rows = accounts.row_of[o : o + len(seg)]
        at += generate_segment_events(ctx, seg, rows, popular_keys, cols, at)
    ev_order = np.lexsort((cols.acct, cols.ts))
    logger.info("drew %d event rows", total)
    cols.permute(ev_order)
    del ev_order
    logger.info("sorted the event rows by time")
    return cols


def _event_chunk(
    cols: EventColumns, sl: slice, account_id: pa.Array, seed: int, native: bool
) -> dict[str, pa.Array]:
    """The event rows ``sl`` as the table's columns."""
    inp = cols.input_tokens[sl].astype(np.int64)
    outp = cols.output_tokens[sl].astype(np.int64)
    return {
        "account_id": account_id.take(pa.array(cols.acct[sl])),
        "ts": _ts_column(cols.ts[sl], cols.form[sl], cols.offset[sl], native),
        "ip": render_ips(cols.ip[sl]),
        "device_id": _nullable_tokens(cols.device[sl], "dev_", salt(seed, "device")),
        "user_agent": _AGENTS.take(pa.array(cols.ua[sl])),
        "model": _MODELS.take(pa.array(cols.model[sl])),
        "requests": pa.array(cols.requests[sl].astype(np.int64)),
        "input_tokens": pa.array(inp, mask=inp < 0),
        "output_tokens": pa.array(outp, mask=outp < 0),
        "prompt_fingerprint": _nullable_tokens(cols.prompt[sl], "pf_", salt(seed, "prompt")),
    }


def _write_table(path: Path, fmt: str, schema: pa.Schema, columns: dict[str, pa.Array]) -> None:
    writer = _Writer(path, fmt, schema)
    try:
        n = len(next(iter(columns.values())))
        for sl in _chunks(n):
            writer.write({k: v.slice(sl.start, sl.stop - sl.start) for k, v in columns.items()})
    except BaseException:
        writer.close(ok=False)
        raise
    writer.close()
