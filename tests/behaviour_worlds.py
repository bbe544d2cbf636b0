"""Small hand-built worlds with known answers for the behavioural-evidence tests.

One world holds a background of solo users and the populations of issue 5: an active ring
(proxy IPs, distinct virtual cards, a template family, controller slots, output-heavy traffic,
a pivot to ``m-4``), its reserve accounts (the ring's signup attributes, no traffic), its
aged accounts (no shared identifier at all: own IP, card, mailbox and
prompts; they only act on the ring's clock and models), a ring split across two controllers
whose clocks are 6 hours apart, a company batch pipeline (templated, synchronised, one NAT,
one card, one billing customer, one domain, a long history, and, to make it hard, output-heavy
and pivoting too), a second one with no card on file at all, a hackathon burst (one venue IP,
one starter template, a 36-hour event) and output-heavy individuals who rent some of the
ring's proxy exits, among solo users and heavy users (busy every day at human hours).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from linker.observations import build_observations

START = pd.Timestamp("2026-06-01", tz="UTC")
NAMES = ("ada", "alan", "grace", "edsger", "barbara", "donald")
SURNAMES = ("lovelace", "turing", "hopper", "dijkstra", "liskov", "knuth")
RELEASE = START + pd.Timedelta(days=60, hours=16)
HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.accounts: list[dict[str, object]] = []
        self.payments: list[dict[str, object]] = []
        self.events: list[pd.DataFrame] = []
        self.labels: list[dict[str, object]] = []
        self.devices: dict[str, str] = {}

    def account(
        self,
        group: str,
        created: pd.Timestamp,
        *,
        email: str,
        ip: str,
        card: str | None,
        bin_: str = "411111",
        billing: str | None = None,
        country: str = "US",
        role: str = "",
        device: str | None = None,
    ) -> str:
        aid = f"acc{len(self.accounts):05d}"
        self.accounts.append(
            {
                "account_id": aid,
                "created_at": created,
                "email": email,
                "signup_ip": ip,
                "device_id": self.devices.setdefault(aid, device or f"dev-{aid}"),
                "country": country,
                "billing_customer_id": billing or f"cust-{aid}",
            }
        )
        if card is not None:
            self.payments.append(
                {
                    "account_id": aid,
                    "payment_fingerprint": card,
                    "card_bin": bin_,
                    "billing_country": "US",
                    "added_at": created + pd.Timedelta(minutes=5),
                }
            )
        self.labels.append({"account_id": aid, "group": group, "role": role})
        return aid

    def traffic(
        self,
        aid: str,
        times: np.ndarray,
        *,
        ips: list[str],
        prompts: list[str],
        ratio: float,
        pivot_share: float = 0.0,
        pivot_after: pd.Timestamp | None = None,
        requests: int = 10,
    ) -> None:
        n = len(times)
        ts = pd.to_datetime(np.sort(times), utc=True)
        model = np.where(self.rng.random(n) < 0.9, "m-2", "m-1").astype(object)
        if pivot_after is not None:
            moved = (ts >= pivot_after) & (self.rng.random(n) < pivot_share)
            model[np.asarray(moved)] = "m-4"
        inp = np.full(n, 300 * requests)
        self.events.append(
            pd.DataFrame(
                {
                    "account_id": aid,
                    "ts": ts,
                    "ip": np.asarray(ips, dtype=object)[self.rng.integers(0, len(ips), n)],
                    "device_id": self.devices[aid],
                    "user_agent": "python-requests/2.31",
                    "model": model,
                    "requests": requests,
                    "input_tokens": inp,
                    "output_tokens": (inp * ratio).astype(np.int64),
                    "prompt_fingerprint": np.asarray(prompts, dtype=object)[
                        self.rng.integers(0, len(prompts), n)
                    ],
                }
            )
        )

    def human_times(self, n: int, first: pd.Timestamp, days: float) -> np.ndarray:
        day = self.rng.integers(0, int(days), n)
        hour = self.rng.normal(14, 3.5, n).clip(6, 23.5)
        offset = pd.to_timedelta(day, unit="D") + pd.to_timedelta(hour, unit="h")
        return np.asarray(first + offset)

    def slot_times(
        self, n: int, first_day: pd.Timestamp, n_days: int, slots: np.ndarray, jitter_min: float
    ) -> np.ndarray:
        day = self.rng.integers(0, n_days, n)
        slot = slots[self.rng.integers(0, len(slots), n)]
        jitter = self.rng.normal(0, jitter_min, n)
        offset = (
            pd.to_timedelta(day, unit="D")
            + pd.to_timedelta(slot, unit="h")
            + pd.to_timedelta(jitter, unit="min")
        )
        return np.asarray(first_day + offset)

    def tables(self) -> dict[str, pd.DataFrame]:
        accounts = pd.DataFrame(self.accounts)
        for c in (
            "account_id",
            "email",
            "signup_ip",
            "device_id",
            "country",
            "billing_customer_id",
        ):
            accounts[c] = accounts[c].astype("string")
        accounts["created_at"] = pd.to_datetime(accounts["created_at"], utc=True).astype(
            "datetime64[us, UTC]"
        )
        payments = pd.DataFrame(self.payments)
        for c in ("account_id", "payment_fingerprint", "card_bin", "billing_country"):
            payments[c] = payments[c].astype("string")
        payments["added_at"] = pd.to_datetime(payments["added_at"], utc=True).astype(
            "datetime64[us, UTC]"
        )
        events = pd.concat(self.events, ignore_index=True)
        for c in ("account_id", "ip", "device_id", "user_agent", "model", "prompt_fingerprint"):
            events[c] = events[c].astype("string")
        events["ts"] = events["ts"].astype("datetime64[us, UTC]")
        events["requests"] = events["requests"].astype(np.int64)
        for c in ("input_tokens", "output_tokens"):
            events[c] = events[c].astype("Int64")
        return {"accounts": accounts, "payments": payments, "events": events}


def _ring(
    b: _Builder,
    name: str,
    *,
    n: int,
    n_aged: int,
    campaign: pd.Timestamp,
    slots: np.ndarray,
    family: list[str],
    pool_prefix: int,
    role: str = "member",
    n_reserve: int = 0,
) -> list[str]:
    """Adds the ring's accounts and traffic; returns its proxy pool."""
    rng = b.rng
    pool = [f"{pool_prefix}.{rng.integers(0, 250)}.{k}.{rng.integers(2, 250)}" for k in range(60)]
    n_days = 15
    for k in range(n):
        created = campaign + pd.Timedelta(minutes=int(rng.integers(0, 90)))
        email = (
            f"{name}{rng.choice(['bold', 'calm', 'dark'])}wolf{rng.integers(1000, 9999)}@gmail.com"
        )
        ips = [pool[i] for i in rng.integers(0, len(pool), 3)]
        aid = b.account(
            "ring",
            created,
            email=email,
            ip=ips[0],
            card=f"vc-{name}-{k}",
            bin_="479038",
            role=role,
            device=f"vm-{name}-{rng.integers(0, 12)}",
        )
        shard = [family[i] for i in rng.choice(len(family), 3, replace=False)]
        times = b.slot_times(70, campaign + DAY, n_days, slots, 15.0)
        b.traffic(
            aid,
            times,
            ips=ips,
            prompts=[*shard, f"own-{aid}"],
            ratio=4.5,
            pivot_share=0.6,
            pivot_after=RELEASE + 2 * HOUR,
        )
    for k in range(n_reserve):
        # Reserve: opened with the ring's signup attributes (a proxy exit, a mailbox pattern,
        # a virtual card on the ring's BIN, one of the controller's twelve virtual machines),
        # never used.
        b.account(
            "ring",
            campaign + pd.Timedelta(minutes=int(rng.integers(0, 90))),
            email=f"{name}{rng.choice(['bold', 'calm', 'dark'])}wolf{rng.integers(1000, 9999)}"
            "@gmail.com",
            ip=pool[int(rng.integers(0, len(pool)))],
            card=f"vc-{name}-reserve-{k}",
            bin_="479038",
            role="reserve",
            device=f"vm-{name}-{rng.integers(0, 12)}",
        )
    for k in range(n_aged):
        # Aged: opened weeks early at a human hour, nothing shared with the ring.
        created = campaign - pd.Timedelta(days=int(rng.integers(25, 60)), hours=-10)
        aid = b.account(
            "ring",
            created,
            email=f"jane.doe.{name}.{k}@outlook.com",
            ip=f"100.{rng.integers(0, 250)}.{k}.{rng.integers(2, 250)}",
            card=f"aged-{name}-{k}",
            bin_=str(520000 + k),
            role="aged",
        )
        wake = campaign + pd.Timedelta(hours=float(rng.uniform(0, 30)))
        times = b.slot_times(60, wake.normalize() + DAY, n_days - 1, slots, 15.0)
        b.traffic(
            aid,
            times,
            ips=[f"100.{rng.integers(0, 250)}.{k}.{rng.integers(2, 250)}"],
            prompts=[f"aged-own-{aid}-{j}" for j in range(3)],
            ratio=4.5,
            pivot_share=0.6,
            pivot_after=RELEASE + 2 * HOUR,
        )

    return pool


def behaviour_world(
    seed: int = 5, n_solo: int = 6000, n_heavy: int = 300
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """The world's input tables, its observations and its labels (group, role).

    The background is large enough that a ring of 58 is a small share of the world: whether
    a value is concentrated in a cluster, or corroborated by another, is a significance test
    against the population, and in a world of a few hundred accounts a 58-account cluster is
    a tenth of everybody.
    """
    b = _Builder(seed)
    rng = b.rng
    public = [f"public-template-{i}" for i in range(4)]

    # Background: solo users at human hours, a few early adopters of m-4, a public template.
    for k in range(n_solo):
        created = START - pd.Timedelta(days=int(rng.integers(30, 900)))
        ip = f"{rng.integers(11, 90)}.{rng.integers(0, 250)}.{rng.integers(0, 250)}.{k % 250 + 2}"
        aid = b.account(
            "solo",
            created,
            email=f"user{k}x@{rng.choice(['gmail.com', 'yahoo.com'])}",
            ip=ip,
            card=f"card-solo-{k}",
            bin_=str(400000 + int(rng.integers(0, 300))),
            country=str(rng.choice(["US", "GB", "DE", "FR", "BR", "IN", "JP", "CA"])),
        )
        prompts = [f"own-{aid}-{j}" for j in range(3)]
        if rng.random() < 0.4:
            prompts.append(str(rng.choice(public)))
        adopter = rng.random() < 0.15
        b.traffic(
            aid,
            b.human_times(int(rng.integers(5, 40)), START, 90),
            ips=[ip],
            prompts=prompts,
            ratio=float(rng.lognormal(np.log(0.5), 0.6)),
            pivot_share=0.5 if adopter else 0.0,
            pivot_after=RELEASE + pd.Timedelta(days=float(rng.exponential(2.5))),
            requests=int(rng.integers(1, 5)),
        )

    # Heavy users: busy every day at human hours, so they are in step with each other (and
    # now and then with a ring) by chance.
    for k in range(n_heavy):
        created = START - pd.Timedelta(days=int(rng.integers(60, 900)))
        ip = f"{rng.integers(11, 90)}.{rng.integers(0, 250)}.{rng.integers(0, 250)}.{k % 250 + 2}"
        aid = b.account(
            "heavy",
            created,
            email=f"dev{k}q@{rng.choice(['gmail.com', 'proton.me'])}",
            ip=ip,
            card=f"card-heavy-{k}",
            bin_=str(400000 + int(rng.integers(0, 300))),
        )
        b.traffic(
            aid,
            b.human_times(int(rng.integers(300, 600)), START, 90),
            ips=[ip],
            prompts=[f"own-{aid}-{j}" for j in range(4)],
            ratio=float(rng.lognormal(np.log(1.0), 0.5)),
            requests=int(rng.integers(1, 5)),
        )

    family = [f"ring-tmpl-{i}" for i in range(10)] + public[:1]
    # The active ring with its aged and reserve accounts.
    alpha_pool = _ring(
        b,
        "alpha",
        n=50,
        n_aged=8,
        n_reserve=8,
        campaign=START + pd.Timedelta(days=45),
        slots=np.array([3.0, 9.5, 14.0, 20.0]),
        family=family,
        pool_prefix=23,
    )
    # A ring split across two controllers, clocks 6 hours apart, own proxy pools.
    split_family = [f"split-tmpl-{i}" for i in range(8)]
    slots = np.array([1.0, 4.0, 8.0, 11.0])
    _ring(
        b,
        "splitA",
        n=30,
        n_aged=0,
        campaign=START + pd.Timedelta(days=44),
        slots=slots,
        family=split_family,
        pool_prefix=45,
        role="member",
    )
    _ring(
        b,
        "splitB",
        n=30,
        n_aged=0,
        campaign=START + pd.Timedelta(days=48),
        slots=slots + 6.0,
        family=split_family,
        pool_prefix=67,
        role="controller_b",
    )

    # A company batch pipeline: one card, one billing customer, one domain, one NAT, a long
    # history; templated, synchronised to the minute, and (the hard part) output-heavy and
    # pivoting like a ring.
    nat = "198.51.100.7"
    launch = START + pd.Timedelta(days=15)
    for k in range(40):
        created = START - pd.Timedelta(days=int(rng.integers(200, 400)))
        aid = b.account(
            "company",
            created,
            email=f"svc.batch{k}@acme-corp.com",
            ip=nat,
            card="card-acme",
            bin_="545454",
            billing="cust-acme",
            role="batch",
        )
        times = b.slot_times(60, launch, 70, np.array([2.0, 2.5]), 2.0)
        b.traffic(
            aid,
            times,
            ips=[nat],
            prompts=["acme-etl-1", "acme-etl-2", "acme-etl-3"],
            ratio=4.5,
            pivot_share=0.6,
            pivot_after=RELEASE + 3 * HOUR,
        )

    # A hackathon: signups within 3 hours from one venue IP, individual cards, a starter
    # template sent during a 36-hour event.
    venue = "203.0.113.50"
    event = START + pd.Timedelta(days=40)
    for k in range(40):
        created = event + pd.Timedelta(minutes=int(rng.integers(0, 180)))
        aid = b.account(
            "hackathon",
            created,
            email=f"hacker{k}{rng.integers(10, 99)}@{rng.choice(['gmail.com', 'uni.edu'])}",
            ip=venue,
            card=f"card-hack-{k}",
            bin_=str(410000 + int(rng.integers(0, 50))),
        )
        times = np.asarray(
            event + pd.to_timedelta(rng.uniform(3, 39, int(rng.integers(15, 30))), unit="h")
        )
        b.traffic(
            aid,
            times,
            ips=[venue],
            prompts=["starter-template", f"own-{aid}"],
            ratio=float(rng.lognormal(np.log(0.6), 0.4)),
        )

    # A second company's batch pipeline with no card on file: every service account is its
    # own billing customer, so no payer ties them; one NAT, one corporate domain, cron jobs in
    # lockstep, templated and output-heavy.
    nat = "198.51.100.77"
    for k in range(30):
        created = START - pd.Timedelta(days=int(rng.integers(100, 300)))
        aid = b.account(
            "company_nocard", created, email=f"etl.worker{k}@beta-labs.io", ip=nat, card=None
        )
        b.traffic(
            aid,
            b.slot_times(60, launch, 70, np.array([4.0, 4.5]), 2.0),
            ips=[nat],
            prompts=["beta-etl-1", "beta-etl-2"],
            ratio=4.0,
            pivot_share=0.5,
            pivot_after=RELEASE + 5 * HOUR,
        )

    # Output-heavy individuals in the ring's neighbourhood: each sends part of its traffic
    # through one of the ring's proxy exits (a residential proxy they also rent), with its
    # own card, mailbox, device and prompts.
    for k in range(6):
        created = START - pd.Timedelta(days=int(rng.integers(30, 300)))
        home = f"{rng.integers(11, 90)}.{rng.integers(0, 250)}.{rng.integers(0, 250)}.{k + 2}"
        aid = b.account(
            "neighbour",
            created,
            # The first two are namesakes: one mailbox stem, nothing else in common.
            email=(
                f"barbara.hopper{k}@gmail.com"
                if k < 2
                else f"{rng.choice(NAMES)}.{rng.choice(SURNAMES)}{k}@gmail.com"
            ),
            ip=home,
            card=f"card-neighbour-{k}",
            bin_=str(400000 + int(rng.integers(0, 300))),
        )
        b.traffic(
            aid,
            b.human_times(50, START + pd.Timedelta(days=40), 20),
            ips=[home, alpha_pool[k], alpha_pool[k + 6]],
            prompts=[f"own-{aid}-{j}" for j in range(3)],
            ratio=4.5,
            requests=int(rng.integers(1, 5)),
        )

    tables = b.tables()
    observations = build_observations(tables)
    labels = pd.DataFrame(b.labels).astype("string")
    return tables, observations, labels
