"""Two consecutive days of one warehouse, for the stable-id and change-list tests.

Day 1 is a synthetic world (:func:`linker.synth.generate_world`) plus three hand-built groups
of accounts sharing a card each: ``y`` (7 accounts), ``w1`` (5) and ``w2`` (3). Day 2 is the
same warehouse one day later:

* ring-01 **gains members**: six new accounts that copy six ring members' signup IP, device,
  card and events (new account ids, e-mails and billing customers);
* ``y`` **splits**: the card of ``y4``..``y6`` was re-tokenised (a new fingerprint), so
  ``y0``..``y3`` and ``y4``..``y6`` no longer share anything;
* ``w2`` **merges** into ``w1``: the three ``w2`` accounts added ``w1``'s card;
* everything else is **untouched**.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from linker.synth import generate_world

GAINED = 6
"""Accounts ring-01 gains on day 2."""


def _read(directory: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(directory / f"{table}.csv", dtype="string", keep_default_na=False)


def _write(directory: Path, tables: dict[str, pd.DataFrame]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(directory / f"{name}.csv", index=False, lineterminator="\n")
    return directory


def _group(prefix: str, size: int, card: str, created: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``size`` accounts with nothing in common but one card."""
    ids = [f"acct_{prefix}{i}" for i in range(size)]
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "created_at": [f"{created}T{8 + i:02d}:1{i}:00Z" for i in range(size)],
            "email": [f"{prefix}.{i}@example-{prefix}{i}.org" for i in range(size)],
            "signup_ip": [f"198.18.{40 + len(prefix)}.{10 + i}" for i in range(size)],
            "device_id": [f"dev_{prefix}_{i}" for i in range(size)],
            "country": ["DE"] * size,
            "billing_customer_id": [f"cus_{prefix}_{i}" for i in range(size)],
        },
        dtype="string",
    )
    payments = pd.DataFrame(
        {
            "account_id": ids,
            "payment_fingerprint": [card] * size,
            "card_bin": ["535522"] * size,
            "billing_country": ["DE"] * size,
            "added_at": [f"{created}T20:00:00Z"] * size,
        },
        dtype="string",
    )
    return accounts, payments


def build_days(root: Path, *, accounts: int = 1500, seed: int = 3) -> tuple[Path, Path]:
    """Write day 1 and day 2 under ``root``; returns their directories."""
    base = generate_world(accounts, seed, root / "synth")
    tables = {t: _read(root / "synth", t) for t in ("accounts", "payments", "events")}
    labels = _read(root / "synth", "labels")
    del base
    groups = [
        _group("y", 7, "fp_card_y", "2026-04-02"),
        _group("wa", 5, "fp_card_w1", "2026-04-05"),
        _group("wb", 3, "fp_card_w2", "2026-04-07"),
    ]
    day1 = {
        "accounts": pd.concat([tables["accounts"], *(g[0] for g in groups)], ignore_index=True),
        "payments": pd.concat([tables["payments"], *(g[1] for g in groups)], ignore_index=True),
        "events": tables["events"],
    }
    day2 = {name: frame.copy() for name, frame in day1.items()}
    # y splits: a new card fingerprint for y4..y6.
    retokenised = day2["payments"]["account_id"].isin([f"acct_y{i}" for i in (4, 5, 6)])
    day2["payments"].loc[retokenised, "payment_fingerprint"] = "fp_card_y_new"
    # w2 merges into w1: its accounts add w1's card.
    added = day2["payments"][day2["payments"]["account_id"].str.startswith("acct_wb")].copy()
    added["payment_fingerprint"] = "fp_card_w1"
    added["added_at"] = "2026-04-09T20:00:00Z"
    day2["payments"] = pd.concat([day2["payments"], added], ignore_index=True)
    # ring-01 gains members that copy some of its members.
    ring = labels.loc[labels["ring_id"] == "ring-01", "account_id"].sort_values().head(GAINED)
    copies = {old: f"acct_new_{i:02d}" for i, old in enumerate(ring)}
    for name in ("accounts", "payments", "events"):
        frame = day2[name]
        copied = frame[frame["account_id"].isin(list(copies))].copy()
        copied["account_id"] = copied["account_id"].map(copies)
        if name == "accounts":
            copied["email"] = [f"newcomer{i}@example.net" for i in range(len(copied))]
            copied["billing_customer_id"] = [f"cus_new_{i}" for i in range(len(copied))]
        day2[name] = pd.concat([frame, copied], ignore_index=True)
    return _write(root / "day1", day1), _write(root / "day2", day2)


def ring_members(root: Path, ring: str = "ring-01") -> list[str]:
    """The day-1 accounts of ``ring`` (from the synthetic world's labels)."""
    labels = _read(root / "synth", "labels")
    return sorted(labels.loc[labels["ring_id"] == ring, "account_id"])
