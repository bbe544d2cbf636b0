"""A small dataset built by hand that satisfies the input contract, for the ingest tests.

Rows are lists of strings, exactly as they will appear in the CSV file, so a test can break
any cell (or the number of cells) of any row and know which data-row number it broke.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pandas as pd

HEADERS: dict[str, list[str]] = {
    "accounts": [
        "account_id",
        "created_at",
        "email",
        "signup_ip",
        "device_id",
        "country",
        "billing_customer_id",
    ],
    "payments": ["account_id", "payment_fingerprint", "card_bin", "billing_country", "added_at"],
    "events": [
        "account_id",
        "ts",
        "ip",
        "device_id",
        "user_agent",
        "model",
        "requests",
        "input_tokens",
        "output_tokens",
        "prompt_fingerprint",
    ],
    "labels": ["account_id", "ring_id", "group", "role"],
}

Tables = dict[str, list[list[str]]]

_EMAIL_DOMAINS = ["gmail.com", "googlemail.com", "outlook.com", "example.org", "uni.edu"]
_COUNTRIES = ["US", "GB", "DE", "FR", "BR", "IN"]
_AGENTS = ["python-httpx/0.27", "curl/8.4.0", "Mozilla/5.0 (X11; Linux x86_64)", "openai-py/1.3"]


def _timestamp(rng: random.Random, style: int) -> str:
    day = rng.randint(1, 28)
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    base = f"2026-07-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if style == 0:
        return base + "Z"
    if style == 1:
        return base + "+02:00"
    if style == 2:
        return base.replace("T", " ")  # no offset: UTC
    return base + ".250000Z"


def good_tables(n_accounts: int = 40, seed: int = 0) -> Tables:
    """A dataset on contract: every row valid, every optional feature used somewhere."""
    rng = random.Random(seed)
    accounts, payments, events, labels = [], [], [], []
    for i in range(n_accounts):
        account_id = f"acct-{i:04d}"
        domain = _EMAIL_DOMAINS[i % len(_EMAIL_DOMAINS)]
        local = f"user.{i % 7}+t{i}" if i % 3 else f"user{i}"
        if i % 4 == 0:
            signup_ip = f"2001:db8:{i:x}::{i + 1:x}"
        elif i % 9 == 0:
            signup_ip = ""
        else:
            signup_ip = f"203.0.{i % 5}.{10 + i}"
        accounts.append(
            [
                account_id,
                _timestamp(rng, i % 4),
                f"{local}@{domain}" if i % 10 else "",
                signup_ip,
                f"DEV-{i % 13:03d}",
                _COUNTRIES[i % len(_COUNTRIES)] if i % 8 else "",
                f"cus_{i // 2:04d}",
            ]
        )
        if i % 2 == 0:
            payments.append(
                [
                    account_id,
                    f"fp_{i // 4:04d}",
                    str(400000 + i) if i % 6 else str(51000000 + i),
                    _COUNTRIES[(i + 1) % len(_COUNTRIES)],
                    _timestamp(rng, 0) if i % 5 else "",
                ]
            )
        for k in range(5):
            events.append(
                [
                    account_id,
                    _timestamp(rng, k % 4),
                    f"198.51.100.{rng.randint(1, 254)}" if k % 3 else f"2001:db8:ff::{k + 1}",
                    f"DEV-{i % 13:03d}" if k else "",
                    rng.choice(_AGENTS),
                    f"m-{1 + k % 3}",
                    "" if k == 4 else str(rng.randint(1, 9)),
                    str(rng.randint(0, 9000)),
                    "" if k == 2 else str(rng.randint(0, 3000)),
                    f"pf_{rng.randint(0, 20):03d}",
                ]
            )
        ring = f"ring-{i % 3}" if i % 5 == 0 else ""
        labels.append([account_id, ring, "ring" if ring else "solo", "member" if ring else ""])
    rng.shuffle(events)
    return {"accounts": accounts, "payments": payments, "events": events, "labels": labels}


def copy_tables(tables: Tables) -> Tables:
    """A deep copy, to corrupt without touching the original."""
    return {name: [list(row) for row in rows] for name, rows in tables.items()}


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write rows as given (a row may have the wrong number of fields on purpose)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_dataset(tables: Tables, directory: Path) -> Path:
    """Write every table as ``NAME.csv`` into ``directory``; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        write_csv(directory / f"{name}.csv", HEADERS[name], rows)
    return directory


_TIMESTAMP_COLUMNS = {"created_at", "added_at", "ts"}
_INT_COLUMNS = {"requests", "input_tokens", "output_tokens"}


def native_frame(name: str, rows: list[list[str]]) -> pd.DataFrame:
    """A table with native types, as a warehouse would export it to Parquet."""
    frame = pd.DataFrame(rows, columns=HEADERS[name], dtype=object).replace("", None)
    for column in frame.columns:
        if column in _TIMESTAMP_COLUMNS:
            frame[column] = pd.to_datetime(frame[column], format="ISO8601", utc=True)
        elif column in _INT_COLUMNS:
            frame[column] = pd.array(
                [None if v is None else int(v) for v in frame[column]], dtype="Int64"
            )
    return frame


def write_parquet_dataset(tables: Tables, directory: Path) -> Path:
    """Write every table as ``NAME.parquet`` with native timestamp and integer columns."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        native_frame(name, rows).to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def plain_values(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its categorical columns as their values: validated events hold their
    text dictionary-encoded, categories in order of first appearance, and tests compare (or
    sort) the values, not that order."""
    return frame.apply(
        lambda c: (
            c.astype(c.cat.categories.dtype) if isinstance(c.dtype, pd.CategoricalDtype) else c
        )
    )
