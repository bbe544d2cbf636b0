"""Hand-built run directories for the Neo4j tests, written with the contract's columns.

``build_run_dir`` turns account, payment and event tables into a run directory
(tables/, observations.parquet, identifiers.parquet, scores.parquet, clusters.parquet,
links.parquet, manifest.json) the way the contract describes, independently of the linking
engine. ``small_world`` is a world whose query answers are known by construction;
``random_world`` is a larger seeded one for load-volume tests.
"""

from __future__ import annotations

import ipaddress
import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

T0 = datetime(2025, 3, 1, tzinfo=UTC)

INJECTION_EMAIL = "x'}) DETACH DELETE n //@evil.example"
INJECTION_DEVICE = '"}) MATCH (n) DETACH DELETE n //'
INJECTION_PAYMENT = "' OR 1=1 MERGE (z:Pwned) //"
INJECTION_USER_AGENT = "`}) CREATE (:Pwned {x: 1}) //"


@dataclass
class World:
    accounts: pd.DataFrame
    payments: pd.DataFrame
    events: pd.DataFrame
    scores: pd.DataFrame
    clusters: pd.DataFrame
    supernodes: set[tuple[str, str]]


def _subnet(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    return str(ipaddress.ip_network(f"{ip}/{24 if address.version == 4 else 48}", strict=False))


def _ts(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True).astype("datetime64[us, UTC]")


def observations(world: World) -> pd.DataFrame:
    """The contract's observations table, derived directly from the world's tables."""
    rows: list[dict[str, object]] = []
    for a in world.accounts.itertuples():
        email = str(a.email).lower()
        base = {"account_id": a.account_id, "first_seen": a.created_at, "last_seen": a.created_at}
        for kind, value in (
            ("mailbox", email),
            ("email_domain", email.rsplit("@", 1)[1]),
            ("signup_ip", a.signup_ip),
            ("signup_subnet", _subnet(a.signup_ip)),
            ("device", a.device_id),
        ):
            rows.append({**base, "kind": kind, "value": value, "count": 1})
    for p in world.payments.itertuples():
        base = {"account_id": p.account_id, "first_seen": p.added_at, "last_seen": p.added_at}
        rows.append({**base, "kind": "payment", "value": p.payment_fingerprint, "count": 1})
        rows.append({**base, "kind": "card_bin", "value": p.card_bin, "count": 1})
    for e in world.events.itertuples():
        base = {"account_id": e.account_id, "first_seen": e.ts, "last_seen": e.ts}
        for kind, value in (
            ("ip", e.ip),
            ("subnet", _subnet(e.ip)),
            ("device", e.device_id),
            ("user_agent", e.user_agent),
            ("prompt", e.prompt_fingerprint),
        ):
            if isinstance(value, str) and value:
                rows.append({**base, "kind": kind, "value": value, "count": e.requests})
    frame = pd.DataFrame(rows)
    frame = (
        frame.groupby(["account_id", "kind", "value"], sort=False)
        .agg(
            first_seen=("first_seen", "min"), last_seen=("last_seen", "max"), count=("count", "sum")
        )
        .reset_index()
    )
    frame = frame.astype({"account_id": "string", "kind": "string", "value": "string"})
    frame["first_seen"] = _ts(frame["first_seen"])
    frame["last_seen"] = _ts(frame["last_seen"])
    frame["count"] = frame["count"].astype("int64")
    frame = frame[["account_id", "kind", "value", "first_seen", "last_seen", "count"]]
    return frame.sort_values(["kind", "value", "account_id"]).reset_index(drop=True)


def build_run_dir(world: World, run_dir: Path) -> Path:
    """Write ``world`` as a run directory with the contract's files and columns."""
    (run_dir / "tables").mkdir(parents=True, exist_ok=True)
    (run_dir / "quarantine").mkdir(exist_ok=True)
    accounts = world.accounts.copy()
    accounts["created_at"] = _ts(accounts["created_at"])
    for col in ("account_id", "email", "signup_ip", "device_id", "country", "billing_customer_id"):
        accounts[col] = accounts[col].astype("string")
    accounts.to_parquet(run_dir / "tables" / "accounts.parquet", index=False)
    payments = world.payments.copy()
    payments["added_at"] = _ts(payments["added_at"])
    payments.astype({c: "string" for c in payments.columns if c != "added_at"}).to_parquet(
        run_dir / "tables" / "payments.parquet", index=False
    )
    events = world.events.copy()
    events["ts"] = _ts(events["ts"])
    events["requests"] = events["requests"].astype("int64")
    events.to_parquet(run_dir / "tables" / "events.parquet", index=False)

    obs = observations(world)
    obs.to_parquet(run_dir / "observations.parquet", index=False)
    idents = obs.groupby(["kind", "value"], sort=True)["account_id"].nunique().reset_index()
    idents = idents.rename(columns={"account_id": "n_accounts"})
    idents["n_accounts"] = idents["n_accounts"].astype("int64")
    idents["weight"] = [1.0 / math.log(1.0 + n) for n in idents["n_accounts"]]
    idents["is_supernode"] = [
        (k, v) in world.supernodes for k, v in zip(idents["kind"], idents["value"], strict=True)
    ]
    idents.to_parquet(run_dir / "identifiers.parquet", index=False)

    scores = world.scores.copy()
    scores = scores.merge(accounts[["account_id", "billing_customer_id"]], on="account_id")
    scores["cluster_id"] = scores["cluster_id"].astype("string")
    scores = scores[
        [
            "account_id",
            "billing_customer_id",
            "cluster_id",
            "cluster_size",
            "score",
            "action",
            "reasons",
        ]
    ]
    scores.to_parquet(run_dir / "scores.parquet", index=False)
    world.clusters.to_parquet(run_dir / "clusters.parquet", index=False)
    pd.DataFrame(
        {"account_a": ["r1"], "account_b": ["r2"], "weight": [1.0], "evidence": ["payment"]}
    ).iloc[:0].to_parquet(run_dir / "links.parquet", index=False)
    (run_dir / "manifest.json").write_text(json.dumps({"test_world": True}) + "\n")
    return run_dir


def small_world() -> World:
    """A ring (C-0001), a family (C-0002), two benign accounts and an injection attempt.

    Known answers (the tests assert them):

    * ring around r1: r2, r3, r4 (many shared identifiers) and b1 (device dev-ring); b2 only
      through card BIN 411111, a supernode, so only with include_supernodes.
    * accounts on payment pay-fam: f1, f2.
    * signup bursts (>= 2 in 24 h): only 203.0.113.0/24 (r1..r4 within 2 h); f1 and f2 signed up
      exactly 24 h apart in 198.51.100.0/24, so they need a 48 h window.
    * review queue: b1 (device shared with 3 members of the suspended cluster C-0001).
    * model-new first used at T0+3h: within 24 h r1 (+0 h), r2 (+1 h), r3 (+17 h); not r4
      (+37 h) nor f1 (+57 h). model-old first used by f1 at T0-20d; only f1 within 24 h.
    """
    h = timedelta(hours=1)
    d = timedelta(days=1)
    accounts = pd.DataFrame(
        [
            ("r1", T0, "R1@ring.example", "203.0.113.10", "dev-ring", "US", "cust-r1"),
            ("r2", T0 + 0.5 * h, "r2@ring.example", "203.0.113.11", "dev-ring", "US", "cust-r2"),
            ("r3", T0 + 1 * h, "r3@ring.example", "203.0.113.12", "dev-ring", "US", "cust-r3"),
            ("r4", T0 + 2 * h, "r4@ring.example", "203.0.113.13", "dev-r4", "US", "cust-r4"),
            ("f1", T0 - 30 * d, "mom@family.example", "198.51.100.7", "dev-f1", "GB", "cust-f"),
            ("f2", T0 - 29 * d, "kid@family.example", "198.51.100.8", "dev-f2", "GB", "cust-f"),
            ("b1", T0 - 10 * d, "b1@corp.example", "192.0.2.50", "dev-ring", "DE", "cust-b1"),
            ("b2", T0 - 5 * d, "b2@solo.example", "192.0.2.99", "dev-b2", "FR", "cust-b2"),
            ("x1", T0 - 3 * d, INJECTION_EMAIL, "10.0.0.1", INJECTION_DEVICE, "US", "cust-`x`"),
        ],
        columns=[
            "account_id",
            "created_at",
            "email",
            "signup_ip",
            "device_id",
            "country",
            "billing_customer_id",
        ],
    )
    payments = pd.DataFrame(
        [
            ("r1", "pay-ring", "411111", "US", T0 + 0.1 * h),
            ("r2", "pay-ring", "411111", "US", T0 + 0.6 * h),
            ("r3", "pay-ring", "411111", "US", T0 + 1.1 * h),
            ("r4", "pay-ring", "411111", "US", T0 + 2.1 * h),
            ("f1", "pay-fam", "522222", "GB", T0 - 30 * d),
            ("f2", "pay-fam", "522222", "GB", T0 - 28 * d),
            ("b1", "pay-b1", "411111", "DE", T0 - 10 * d),
            ("b2", "pay-b2", "411111", "FR", T0 - 5 * d),
            ("x1", INJECTION_PAYMENT, "999999", "US", T0 - 3 * d),
        ],
        columns=["account_id", "payment_fingerprint", "card_bin", "billing_country", "added_at"],
    )
    ev = [
        ("f1", T0 - 20 * d, "198.51.100.7", "dev-f1", "Mozilla/5.0", "model-old", 1, "p-f1"),
        ("b1", T0 - 9 * d, "192.0.2.50", "dev-ring", "curl/8", "model-old", 3, "p-b1"),
        ("r1", T0 + 3 * h, "203.0.113.200", "dev-ring", "py-ring/1", "model-new", 100, "tmpl"),
        ("r2", T0 + 4 * h, "203.0.113.200", "dev-ring", "py-ring/1", "model-new", 80, "tmpl"),
        ("r2", T0 + 6 * h, "203.0.113.200", "dev-ring", "py-ring/1", "model-new", 20, "tmpl"),
        ("r3", T0 + 20 * h, "203.0.113.200", "dev-ring", "py-ring/1", "model-new", 50, "tmpl"),
        ("r4", T0 + 5 * h, "198.18.0.1", "dev-r4", "py-ring/2", "model-old", 2, None),
        ("r4", T0 + 40 * h, "198.18.0.1", "dev-r4", "py-ring/2", "model-new", 7, None),
        ("f1", T0 + 60 * h, "198.51.100.7", "dev-f1", "Mozilla/5.0", "model-new", 1, "p-f1"),
        (
            "x1",
            T0 - 2 * d,
            "10.0.0.1",
            INJECTION_DEVICE,
            INJECTION_USER_AGENT,
            "model-old",
            1,
            None,
        ),
    ]
    events = pd.DataFrame(
        ev,
        columns=[
            "account_id",
            "ts",
            "ip",
            "device_id",
            "user_agent",
            "model",
            "requests",
            "prompt_fingerprint",
        ],
    )
    scores = pd.DataFrame(
        [
            ("r1", "C-0001", 4, 0.95, "suspend", "shared payment; shared device"),
            ("r2", "C-0001", 4, 0.93, "suspend", "shared payment; shared device"),
            ("r3", "C-0001", 4, 0.90, "suspend", "shared payment; shared device"),
            ("r4", "C-0001", 4, 0.60, "review", "shared payment"),
            ("f1", "C-0002", 2, 0.20, "none", ""),
            ("f2", "C-0002", 2, 0.20, "none", ""),
            ("b1", None, 0, 0.30, "none", ""),
            ("b2", None, 0, 0.05, "none", ""),
            ("x1", None, 0, 0.00, "none", ""),
        ],
        columns=["account_id", "cluster_id", "cluster_size", "score", "action", "reasons"],
    )
    clusters = pd.DataFrame(
        [
            ("C-0001", 4, 0.95, 3, 1, "4 accounts share payment pay-ring"),
            ("C-0002", 2, 0.20, 0, 0, "2 accounts share payment pay-fam"),
        ],
        columns=["cluster_id", "size", "score", "n_suspend", "n_review", "reasons"],
    )
    return World(accounts, payments, events, scores, clusters, {("card_bin", "411111")})


def random_world(n_accounts: int, seed: int) -> World:
    """A seeded world of ``n_accounts`` accounts in rings of 5 and singletons (load volume)."""
    rng = random.Random(seed)
    acc, pay, ev, sc = [], [], [], []
    for i in range(n_accounts):
        ring = i // 5 if i % 2 == 0 else None
        aid = f"a{i:06d}"
        created = T0 + timedelta(minutes=rng.randrange(0, 60 * 24 * 30))
        ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        device = f"ring-dev-{ring}" if ring is not None else f"dev-{i}"
        acc.append((aid, created, f"u{i}@d{i % 97}.example", ip, device, "US", f"c{i}"))
        fp = f"ring-pay-{ring}" if ring is not None else f"pay-{i}"
        pay.append((aid, fp, f"4{i % 50:05d}", "US", created))
        for j in range(2):
            ev.append(
                (
                    aid,
                    created + timedelta(hours=j + 1),
                    ip,
                    device,
                    f"ua-{i % 13}",
                    f"model-{j}",
                    1 + j,
                    f"tmpl-{i % 31}",
                )
            )
        cluster = f"C-{ring:05d}" if ring is not None else None
        sc.append(
            (
                aid,
                cluster,
                0,
                0.8 if ring is not None else 0.1,
                "review" if ring is not None else "none",
                "",
            )
        )
    accounts = pd.DataFrame(
        acc,
        columns=[
            "account_id",
            "created_at",
            "email",
            "signup_ip",
            "device_id",
            "country",
            "billing_customer_id",
        ],
    )
    payments = pd.DataFrame(
        pay,
        columns=["account_id", "payment_fingerprint", "card_bin", "billing_country", "added_at"],
    )
    events = pd.DataFrame(
        ev,
        columns=[
            "account_id",
            "ts",
            "ip",
            "device_id",
            "user_agent",
            "model",
            "requests",
            "prompt_fingerprint",
        ],
    )
    scores = pd.DataFrame(
        sc, columns=["account_id", "cluster_id", "cluster_size", "score", "action", "reasons"]
    )
    sizes = scores.dropna(subset=["cluster_id"]).groupby("cluster_id").size()
    scores["cluster_size"] = scores["cluster_id"].map(sizes).fillna(0).astype("int64")
    clusters = pd.DataFrame(
        {
            "cluster_id": sizes.index,
            "size": sizes.to_numpy(),
            "score": 0.8,
            "n_suspend": 0,
            "n_review": sizes.to_numpy(),
            "reasons": "shared payment and device",
        }
    )
    return World(accounts, payments, events, scores, clusters, set())
