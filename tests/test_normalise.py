"""Identifier normalisation: idempotent, spelling-blind, and the observations table."""

from __future__ import annotations

import ipaddress
import random
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ingest_world import good_tables, write_dataset

from linker.io.validate import validate_dataset
from linker.kinds import kind_names
from linker.normalise import (
    canonical_ipv4_mask,
    email_domain,
    ip_prefix,
    normalise_email,
    normalise_ip,
    normalise_token,
    normalise_user_agent,
)
from linker.observations import OBSERVATION_COLUMNS, build_observations

# --- examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mailbox", "domain"),
    [
        ("J.Doe@Gmail.com", "jdoe@gmail.com", "gmail.com"),
        (" j.d.o.e+promo@googlemail.com ", "jdoe@gmail.com", "gmail.com"),
        ("jane.doe+work@outlook.com", "jane.doe@outlook.com", "outlook.com"),
        ("Jane.Doe+x@Example.ORG", "jane.doe+x@example.org", "example.org"),
        ("+only@gmail.com", "+only@gmail.com", "gmail.com"),
        ("a@b@gmail.com", "a@b@gmail.com", "gmail.com"),
        ("user@gmail.com.", "user@gmail.com", "gmail.com"),
        ("no-at-sign", "no-at-sign", ""),
    ],
)
def test_email_examples(raw: str, mailbox: str, domain: str) -> None:
    assert normalise_email(raw) == mailbox
    assert email_domain(raw) == domain


@pytest.mark.parametrize(
    ("raw", "canonical", "prefix"),
    [
        ("203.0.113.77", "203.0.113.77", "203.0.113.0/24"),
        (" 10.1.2.3 ", "10.1.2.3", "10.1.2.0/24"),
        ("2001:0DB8:0001:0002:0000:0000:0000:0005", "2001:db8:1:2::5", "2001:db8:1::/48"),
        ("::ffff:198.51.100.4", "198.51.100.4", "198.51.100.0/24"),
        ("::1", "::1", "::/48"),
    ],
)
def test_ip_examples(raw: str, canonical: str, prefix: str) -> None:
    assert normalise_ip(raw) == canonical
    assert ip_prefix(raw) == prefix


@pytest.mark.parametrize("bad", ["", "1.2.3", "256.0.0.1", "01.2.3.4", "2001:db8:::1", "x"])
def test_malformed_ip_raises(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_ip(bad)
    with pytest.raises(ValueError):
        ip_prefix(bad)


# --- properties: idempotence ---------------------------------------------------------------

_local = st.text(alphabet=st.sampled_from("abcXYZ019._+-"), min_size=1, max_size=16)
_domains = st.sampled_from(
    ["gmail.com", "GoogleMail.com", "outlook.com", "icloud.com", "example.org", "uni.edu"]
)
_emails = st.one_of(st.builds(lambda a, d: f"{a}@{d}", _local, _domains), st.text(max_size=30))
_ips = st.ip_addresses().map(str)


@given(_emails)
def test_normalise_email_is_idempotent(s: str) -> None:
    once = normalise_email(s)
    assert normalise_email(once) == once
    assert email_domain(once) == email_domain(s)


@given(_ips)
def test_normalise_ip_is_idempotent(s: str) -> None:
    once = normalise_ip(s)
    assert normalise_ip(once) == once
    assert ip_prefix(once) == ip_prefix(s)
    prefix = ip_prefix(s)
    network = ipaddress.ip_network(prefix)
    assert ipaddress.ip_address(once) in network
    assert ip_prefix(str(network.network_address)) == prefix


@given(st.text(max_size=40))
def test_token_and_user_agent_are_idempotent(s: str) -> None:
    assert normalise_token(normalise_token(s)) == normalise_token(s)
    assert normalise_user_agent(normalise_user_agent(s)) == normalise_user_agent(s)


# --- properties: equivalent spellings map to one value -------------------------------------

_plain_local = st.text(alphabet=st.sampled_from("abcdefxyz0123"), min_size=1, max_size=12)


def _respell(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


@given(_plain_local, st.text(alphabet="abc123", max_size=6), st.randoms(use_true_random=False))
def test_gmail_spellings_are_one_mailbox(local: str, tag: str, rng: random.Random) -> None:
    dotted = "".join(c + ("." if rng.random() < 0.3 else "") for c in local).rstrip(".")
    domain = rng.choice(["gmail.com", "googlemail.com"])
    spelled = _respell(rng, f"{dotted}+{tag}@{domain}" if tag else f"{dotted}@{domain}")
    assert normalise_email(spelled) == normalise_email(f"{local}@gmail.com") == f"{local}@gmail.com"


@given(_plain_local, st.text(alphabet="abc123", min_size=1, max_size=6))
def test_plus_tags_fold_only_where_the_provider_folds_them(local: str, tag: str) -> None:
    assert normalise_email(f"{local}+{tag}@outlook.com") == f"{local}@outlook.com"
    assert normalise_email(f"{local}.x+{tag}@icloud.com") == f"{local}.x@icloud.com"
    assert normalise_email(f"{local}+{tag}@example.org") == f"{local}+{tag}@example.org"


@given(st.ip_addresses(v=6), st.randoms(use_true_random=False))
def test_ipv6_spellings_are_one_address(address: ipaddress.IPv6Address, rng: random.Random) -> None:
    assume(address.ipv4_mapped is None and address.scope_id is None)
    spellings = [address.exploded, address.compressed, address.exploded.upper()]
    spellings.append(_respell(rng, address.compressed))
    canonical = {normalise_ip(s) for s in spellings}
    assert canonical == {address.compressed}
    assert len({ip_prefix(s) for s in spellings}) == 1


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_ipv6_is_its_ipv4(address: ipaddress.IPv4Address) -> None:
    for mapped in (f"::ffff:{address}", f"0:0:0:0:0:ffff:{address}".upper()):
        assert normalise_ip(mapped) == str(address)
        assert ip_prefix(mapped) == ip_prefix(str(address))


@given(st.text(alphabet=" \t\nAbC/1.0()", max_size=30))
def test_user_agent_whitespace_runs_do_not_matter(s: str) -> None:
    assert normalise_user_agent(s) == normalise_user_agent(s.replace(" ", "  \t"))


# --- the vectorised IPv4 fast path agrees with ipaddress -----------------------------------

_ipv4_like = st.lists(
    st.one_of(st.integers(0, 300).map(str), st.integers(0, 99).map(lambda i: f"0{i}")),
    min_size=3,
    max_size=5,
).map(".".join)


@given(st.lists(st.one_of(_ipv4_like, _ips, st.text(max_size=15)), max_size=30))
def test_canonical_ipv4_fast_path_agrees_with_ipaddress(values: list[str]) -> None:
    mask = canonical_ipv4_mask(pa.array(values, pa.string()))
    for value, fast in zip(values, mask, strict=True):
        try:
            canonical = normalise_ip(value)
        except ValueError:
            canonical = None
        is_v4_canonical = canonical == value and "." in value and ":" not in value
        assert bool(fast) == is_v4_canonical, value
        if fast:
            assert ip_prefix(value) == value.rsplit(".", 1)[0] + ".0/24"


_tricky_text = st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0AbZ9-\u0130\xdf"))


@given(st.lists(st.one_of(_tricky_text, st.text(max_size=12)), max_size=20))
def test_vectorised_tokens_equal_the_scalar_function(values: list[str]) -> None:
    from linker.normalise import token_array

    got = token_array(pa.array(values, pa.large_string())).to_pylist()
    assert got == [normalise_token(v) for v in values]


@given(st.lists(st.one_of(_emails, st.text(alphabet="a@\n.+G", max_size=10)), max_size=20))
def test_vectorised_email_domains_equal_the_scalar_function(values: list[str]) -> None:
    from linker.normalise import email_domain_array, mailbox_array

    mailboxes = mailbox_array(pa.array(values, pa.large_string()))
    assert mailboxes.to_pylist() == [normalise_email(v) for v in values]
    got = email_domain_array(pa.array(values, pa.large_string())).to_pylist()
    assert got == [email_domain(v) for v in values]


# --- build_observations --------------------------------------------------------------------


def _utc(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True)).astype("datetime64[us, UTC]")


def test_observations_follow_the_documented_rules() -> None:
    accounts = pd.DataFrame(
        {
            "account_id": ["b", "a"],
            "created_at": _utc("2026-01-02", "2026-01-01"),
            "email": ["J.Doe+x@googlemail.com", None],
            "signup_ip": ["2001:DB8:1:2::9", "203.0.113.9"],
            "device_id": ["Dev-1", "dev-2"],
        }
    )
    payments = pd.DataFrame(
        {
            "account_id": ["a", "a", "b"],
            "payment_fingerprint": ["FP1", "fp1", "fp2"],
            "card_bin": ["411111", "411111", None],
            "added_at": _utc("2026-02-01", "2026-03-01", "NaT"),
        }
    )
    events = pd.DataFrame(
        {
            "account_id": ["b", "b", "b", "a"],
            "ts": _utc("2026-05-03", "2026-05-01", "2026-05-02", "2026-05-04"),
            "ip": ["::ffff:203.0.113.200", "203.0.113.7", "203.0.113.7", None],
            "device_id": ["DEV-1", "dev-1", None, None],
            "user_agent": ["x  y", "x y", "x y", "z"],
            "requests": np.array([3, 4, 5, 1], dtype=np.int64),
            "prompt_fingerprint": [None, None, None, "P"],
        }
    )
    obs = build_observations({"accounts": accounts, "payments": payments, "events": events})

    assert list(obs.columns) == list(OBSERVATION_COLUMNS)
    assert str(obs["first_seen"].dtype) == "datetime64[us, UTC]"
    assert obs["count"].dtype == np.int64
    assert set(obs["kind"]) <= set(kind_names())
    keys = list(zip(obs["kind"], obs["value"], obs["account_id"], strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)

    def row(kind: str, value: str, account: str) -> tuple[str, str, int]:
        hit = obs[(obs.kind == kind) & (obs.value == value) & (obs.account_id == account)]
        assert len(hit) == 1, (kind, value, account)
        r = hit.iloc[0]
        return str(r.first_seen.date()), str(r.last_seen.date()), int(r["count"])

    assert row("mailbox", "jdoe@gmail.com", "b") == ("2026-01-02", "2026-01-02", 1)
    assert row("email_domain", "gmail.com", "b") == ("2026-01-02", "2026-01-02", 1)
    assert row("signup_ip", "2001:db8:1:2::9", "b")[2] == 1
    assert row("signup_subnet", "2001:db8:1::/48", "b")[2] == 1
    assert row("signup_subnet", "203.0.113.0/24", "a")[2] == 1
    # Two spellings of one fingerprint are one payment seen twice.
    assert row("payment", "fp1", "a") == ("2026-02-01", "2026-03-01", 2)
    # No added_at: the account's created_at.
    assert row("payment", "fp2", "b") == ("2026-01-02", "2026-01-02", 1)
    assert row("card_bin", "411111", "a")[2] == 2
    # Event identifiers: first and last ts, and the sum of requests.
    assert row("ip", "203.0.113.7", "b") == ("2026-05-01", "2026-05-02", 9)
    assert row("ip", "203.0.113.200", "b") == ("2026-05-03", "2026-05-03", 3)
    assert row("subnet", "203.0.113.0/24", "b") == ("2026-05-01", "2026-05-03", 12)
    assert row("user_agent", "x y", "b") == ("2026-05-01", "2026-05-03", 12)
    # A device at signup and in events is one observation.
    assert row("device", "dev-1", "b") == ("2026-01-02", "2026-05-03", 1 + 3 + 4)
    assert row("prompt", "p", "a") == ("2026-05-04", "2026-05-04", 1)
    assert not ((obs.kind == "mailbox") & (obs.account_id == "a")).any()


def _reference_observations(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The same table, row by row with plain Python: slow, obviously right."""
    created = dict(
        zip(tables["accounts"]["account_id"], tables["accounts"]["created_at"], strict=True)
    )
    found: dict[tuple[str, str, str], list[object]] = defaultdict(list)

    def add(account: str, kind: str, value: str, first: object, last: object, n: int) -> None:
        if not value:
            return
        entry = found[(account, kind, value)]
        if not entry:
            entry.extend([first, last, 0])
        entry[0] = min(entry[0], first)  # type: ignore[call-overload]
        entry[1] = max(entry[1], last)  # type: ignore[call-overload]
        entry[2] = int(entry[2]) + n  # type: ignore[call-overload]

    def safe(function: Callable[[str], str], value: str) -> str:
        try:
            return function(value)
        except ValueError:
            return ""

    def pattern(mailbox: str) -> str:
        parts = re.match(r"^([^@]+)@(.+)$", mailbox)
        if parts is None or not re.search(r"[0-9]", parts[1]):
            return ""
        stem = re.sub(r"[0-9._+\-]+", "", parts[1])
        return f"{stem}#@{parts[2]}" if len(stem) >= 3 else ""

    for r in tables["accounts"].itertuples():
        t = r.created_at
        if isinstance(r.email, str):
            add(r.account_id, "mailbox", normalise_email(r.email), t, t, 1)
            add(r.account_id, "email_domain", email_domain(r.email), t, t, 1)
            add(r.account_id, "email_pattern", pattern(normalise_email(r.email)), t, t, 1)
        if isinstance(r.billing_customer_id, str):
            add(r.account_id, "billing_customer", r.billing_customer_id, t, t, 1)
        if isinstance(r.signup_ip, str):
            add(r.account_id, "signup_ip", safe(normalise_ip, r.signup_ip), t, t, 1)
            add(r.account_id, "ip", safe(normalise_ip, r.signup_ip), t, t, 1)
            add(r.account_id, "signup_subnet", safe(ip_prefix, r.signup_ip), t, t, 1)
        if isinstance(r.device_id, str):
            add(r.account_id, "device", normalise_token(r.device_id), t, t, 1)
    for r in tables["payments"].itertuples():
        t = r.added_at if not pd.isna(r.added_at) else created[r.account_id]
        add(r.account_id, "payment", normalise_token(r.payment_fingerprint), t, t, 1)
        if isinstance(r.card_bin, str):
            add(r.account_id, "card_bin", normalise_token(r.card_bin), t, t, 1)
    for r in tables["events"].itertuples():
        for column, kind, function in (
            ("ip", "ip", lambda v: safe(normalise_ip, v)),
            ("ip", "subnet", lambda v: safe(ip_prefix, v)),
            ("device_id", "device", normalise_token),
            ("user_agent", "user_agent", normalise_user_agent),
            ("prompt_fingerprint", "prompt", normalise_token),
        ):
            value = getattr(r, column)
            if isinstance(value, str):
                add(r.account_id, kind, function(value), r.ts, r.ts, int(r.requests))
    rows = [(a, k, v, f, last, n) for (a, k, v), (f, last, n) in found.items()]
    frame = pd.DataFrame(rows, columns=list(OBSERVATION_COLUMNS))
    return frame.sort_values(["kind", "value", "account_id"]).reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_observations_equal_a_row_by_row_reference(seed: int, tmp_path: Path) -> None:
    directory = write_dataset(good_tables(n_accounts=60, seed=seed), tmp_path)
    result = validate_dataset(directory, observations=False)
    obs = build_observations(result.tables)
    tables = {
        name: frame.astype(
            {c: object for c in frame.columns if frame[c].dtype == "string"}
        ).replace({pd.NA: None})
        for name, frame in result.tables.items()
    }
    expected = _reference_observations(tables)
    assert len(obs) == len(expected) > 0
    for column in ("account_id", "kind", "value"):
        assert obs[column].tolist() == expected[column].tolist(), column
    assert obs["count"].tolist() == expected["count"].astype(int).tolist()
    assert (obs["first_seen"] == pd.to_datetime(expected["first_seen"], utc=True)).all()
    assert (obs["last_seen"] == pd.to_datetime(expected["last_seen"], utc=True)).all()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.one_of(_ips, st.just("bad ip"))),
        min_size=1,
        max_size=20,
    )
)
def test_observations_of_any_ips_match_the_scalar_functions(rows: list[tuple[str, str]]) -> None:
    accounts = pd.DataFrame(
        {
            "account_id": ["a", "b", "c"],
            "created_at": _utc("2026-01-01", "2026-01-02", "2026-01-03"),
        }
    )
    events = pd.DataFrame(
        {
            "account_id": [a for a, _ in rows],
            "ts": _utc(*["2026-02-01"] * len(rows)),
            "ip": [ip for _, ip in rows],
            "requests": np.ones(len(rows), dtype=np.int64),
        }
    )
    obs = build_observations({"accounts": accounts, "events": events})
    expected_ips: dict[tuple[str, str], int] = defaultdict(int)
    for account, ip in rows:
        if ip != "bad ip":
            expected_ips[(normalise_ip(ip), account)] += 1
    got = obs[obs.kind == "ip"]
    assert dict(
        zip(zip(got.value, got.account_id, strict=True), got["count"], strict=True)
    ) == dict(expected_ips)
    subnets = {(ip_prefix(ip), a) for a, ip in rows if ip != "bad ip"}
    got_subnets = obs[obs.kind == "subnet"]
    assert set(zip(got_subnets.value, got_subnets.account_id, strict=True)) == subnets


def test_empty_optional_tables_give_account_observations_only() -> None:
    accounts = pd.DataFrame({"account_id": ["a"], "created_at": _utc("2026-01-01")})
    obs = build_observations({"accounts": accounts})
    assert obs.empty and list(obs.columns) == list(OBSERVATION_COLUMNS)
    assert str(obs["last_seen"].dtype) == "datetime64[us, UTC]"


def _reference_ip(text: str) -> str:
    """normalise_ip through the standard library alone (the behaviour the fast path keeps)."""
    import ipaddress

    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _reference_prefix(text: str) -> str:
    import ipaddress

    address = ipaddress.ip_address(_reference_ip(text))
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(address) >> 8 << 8, 24)))
    return str(ipaddress.IPv6Network((int(address) >> 80 << 80, 48)))


def _fuzzed_addresses(n: int) -> list[str]:
    import ipaddress
    import random

    rng = random.Random(20261207)
    out = []
    for _ in range(n):
        words = [rng.choice([0, 0, 0, 1, 0xFFFF, rng.randrange(65536)]) for _ in range(8)]
        address = ipaddress.IPv6Address(int.from_bytes(b"".join(w.to_bytes(2) for w in words)))
        form = rng.random()
        if form < 0.3:
            text = address.exploded.upper()
        elif form < 0.6:
            text = address.compressed
        elif form < 0.7:
            text = ":".join(f"{w:x}" for w in words)
        elif form < 0.8:
            exploded = address.exploded
            at = rng.randrange(len(exploded))
            text = exploded[:at] + rng.choice(":xg.1 ") + exploded[at + 1 :]
        elif form < 0.9:
            last = rng.choice(["2", "02", "300"])
            text = f"::ffff:{rng.randrange(256)}.{rng.randrange(256)}.1.{last}"
        else:
            text = address.compressed + rng.choice(["", "::", ":1", "%eth0", " "])
        out.append(text)
    return out


def test_ipv6_fast_path_gives_the_standard_librarys_text_or_its_error() -> None:
    from linker.normalise import ip_prefix, normalise_ip

    checked = 0
    for text in _fuzzed_addresses(20_000):
        try:
            expected = _reference_ip(text)
        except ValueError:
            with pytest.raises(ValueError):
                normalise_ip(text)
            continue
        assert normalise_ip(text) == expected, text
        assert ip_prefix(text) == _reference_prefix(text), text
        checked += 1
    assert checked > 15_000
