"""The synthetic world: deterministic, on contract, and hard in the ways docs/synth.md says."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.errors import SettingsError
from linker.synth import KINDS, M4_RELEASE, MODELS, WINDOW_END, WINDOW_START, generate_world

N = 4_000
SEED = 11
TABLES = ("accounts", "payments", "events", "labels")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
RELEASE = pd.Timestamp(M4_RELEASE, unit="s", tz="UTC")


def _hashes(directory: Path, ext: str = "csv") -> dict[str, str]:
    return {t: hashlib.sha256((directory / f"{t}.{ext}").read_bytes()).hexdigest() for t in TABLES}


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(N, SEED, out)
    return out


@pytest.fixture(scope="module")
def world(world_dir: Path) -> dict[str, pd.DataFrame]:
    tables = {
        t: pd.read_csv(world_dir / f"{t}.csv", dtype=str, keep_default_na=False) for t in TABLES
    }
    for table, column in (("accounts", "created_at"), ("payments", "added_at"), ("events", "ts")):
        tables[table][column] = pd.to_datetime(tables[table][column], utc=True, format="ISO8601")
    events = tables["events"]
    for column in ("requests", "input_tokens", "output_tokens"):
        events[column] = events[column].astype(np.int64)
    labels = tables["labels"].set_index("account_id")
    for name in ("accounts", "payments", "events"):
        joined = labels.loc[tables[name]["account_id"]]
        tables[name]["group"] = joined["group"].to_numpy()
        tables[name]["ring_id"] = joined["ring_id"].to_numpy()
        tables[name]["role"] = joined["role"].to_numpy()
    return tables


def _ring_ids(world: dict[str, pd.DataFrame]) -> list[str]:
    return sorted(set(world["labels"]["ring_id"]) - {""})


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(
    world_dir: Path, tmp_path: Path
) -> None:
    again = generate_world(N, SEED, tmp_path / "again")
    assert _hashes(tmp_path / "again") == _hashes(world_dir)
    assert again.n_accounts == N
    generate_world(N, SEED + 1, tmp_path / "other")
    other = _hashes(tmp_path / "other")
    assert all(other[t] != h for t, h in _hashes(world_dir).items())


def test_parquet_is_deterministic_and_holds_the_same_world(
    world: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    first = generate_world(N, SEED, tmp_path / "a", fmt="parquet")
    generate_world(N, SEED, tmp_path / "b", fmt="parquet")
    assert _hashes(tmp_path / "a", "parquet") == _hashes(tmp_path / "b", "parquet")
    assert first.n_events == len(world["events"])
    events = pd.read_parquet(tmp_path / "a" / "events.parquet")
    assert str(events["ts"].dtype) == "datetime64[us, UTC]"
    assert events["account_id"].tolist() == world["events"]["account_id"].tolist()
    assert (events["ts"] == world["events"]["ts"]).all()
    assert events["prompt_fingerprint"].tolist() == world["events"]["prompt_fingerprint"].tolist()


def test_events_per_account_scales_the_event_volume(
    world: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    half = generate_world(N, SEED, tmp_path, events_per_account=10.0)
    ratio = half.n_events / len(world["events"])
    assert 0.4 < ratio < 0.6
    assert len(world["events"]) / N == pytest.approx(20, rel=0.2)


# --- contract ----------------------------------------------------------------------------------


def test_tables_follow_the_contract(world_dir: Path, world: dict[str, pd.DataFrame]) -> None:
    required = {
        "accounts": [
            "account_id", "created_at", "email", "signup_ip", "device_id", "country",
            "billing_customer_id",
        ],
        "payments": [
            "account_id", "payment_fingerprint", "card_bin", "billing_country", "added_at",
        ],
        "events": [
            "account_id", "ts", "ip", "device_id", "user_agent", "model", "requests",
            "input_tokens", "output_tokens", "prompt_fingerprint",
        ],
        "labels": ["account_id", "ring_id", "group", "role"],
    }  # fmt: skip
    for table, columns in required.items():
        header = (world_dir / f"{table}.csv").read_text().splitlines()[0].replace('"', "")
        assert header.split(",")[: len(columns)] == columns
    raw = {t: pd.read_csv(world_dir / f"{t}.csv", dtype=str, keep_default_na=False) for t in TABLES}
    for table, column in (("accounts", "created_at"), ("payments", "added_at"), ("events", "ts")):
        assert raw[table][column].str.match(ISO_UTC).all(), (table, column)

    accounts, events, payments = world["accounts"], world["events"], world["payments"]
    assert accounts["account_id"].is_unique and len(accounts) == N
    assert accounts["account_id"].str.match(r"^acct_[0-9a-f]{16}$").all()
    assert accounts["email"].is_unique
    assert accounts["email"].str.match(r"^[a-z0-9._+]+@[a-z0-9.-]+\.[a-z]+$").all()
    for ip in set(accounts["signup_ip"]) | set(events["ip"]):
        ipaddress.ip_address(ip)
    known = set(accounts["account_id"])
    assert set(payments["account_id"]) <= known and set(events["account_id"]) <= known
    assert (accounts["billing_customer_id"] != "").all()
    assert payments["card_bin"].str.match(r"^\d{6}$").all()
    assert set(events["model"]) == set(MODELS)
    assert (events["requests"] >= 1).all() and (events["output_tokens"] >= 1).all()
    assert (events["input_tokens"] >= events["requests"]).all()
    assert events["ts"].min() >= pd.Timestamp(WINDOW_START, unit="s", tz="UTC")
    assert events["ts"].max() < pd.Timestamp(WINDOW_END, unit="s", tz="UTC")
    first_event = events.groupby("account_id")["ts"].min()
    created = accounts.set_index("account_id")["created_at"]
    assert (first_event >= created.loc[first_event.index]).all()
    # Fixed row order: accounts by id, events by account then time.
    assert accounts["account_id"].is_monotonic_increasing
    key = events["account_id"] + events["ts"].astype("int64").astype(str).str.zfill(20)
    assert key.is_monotonic_increasing


def test_the_team_validator_accepts_every_row(world_dir: Path) -> None:
    from linker.io.validate import validate_dataset

    result = validate_dataset(world_dir, observations=False)
    assert result.problems == []
    assert all(c.rejected == 0 and c.read == c.accepted for c in result.summary.values())


def test_labels_cover_every_account_and_every_group_kind(world: dict[str, pd.DataFrame]) -> None:
    labels = world["labels"]
    assert set(labels["account_id"]) == set(world["accounts"]["account_id"])
    assert set(labels["group"]) == set(KINDS)
    assert ((labels["ring_id"] != "") == (labels["group"] == "ring")).all()
    assert len(_ring_ids(world)) >= 2
    ring_roles = set(labels.loc[labels["group"] == "ring", "role"])
    assert {"member", "aged", "controller_b"} <= ring_roles
    assert set(labels.loc[labels["group"] == "solo", "role"]) <= {"", "adopter"}
    assert 0.025 < (labels["group"] == "ring").mean() < 0.05


def test_a_two_thousand_account_world_still_has_rings_and_every_group(tmp_path: Path) -> None:
    summary = generate_world(2_000, 5, tmp_path)
    assert len(summary.rings) >= 2 and min(summary.rings.values()) >= 20
    assert all(summary.groups[k] > 0 for k in KINDS)
    assert sum(summary.groups.values()) == 2_000


def test_ring_members_are_scattered_through_the_tables(world: dict[str, pd.DataFrame]) -> None:
    is_ring = (world["accounts"]["group"] == "ring").to_numpy()
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], is_ring.astype(int), [0]]))))[::2]
    assert runs.max() < 8


# --- rings: camouflaged, yet jointly decisive -----------------------------------------------


def test_ring_cards_are_mostly_distinct_from_a_few_bins_that_benign_users_share(
    world: dict[str, pd.DataFrame],
) -> None:
    payments = world["payments"]
    ring_pay = payments[payments["group"] == "ring"]
    for _ring, cards in ring_pay.groupby("ring_id"):
        assert cards["payment_fingerprint"].nunique() / len(cards) > 0.85
        assert 2 <= cards["card_bin"].nunique() <= 3
    per_card = ring_pay.groupby("payment_fingerprint")["account_id"].nunique()
    assert per_card.between(2, 4).sum() >= 2 and per_card.max() <= 4  # a few reused cards
    benign = payments[payments["group"] != "ring"]
    assert benign["card_bin"].isin(set(ring_pay["card_bin"])).sum() > 0


def test_rings_hide_behind_mainstream_domains_and_common_clients(
    world: dict[str, pd.DataFrame],
) -> None:
    accounts, events = world["accounts"], world["events"]
    ring = accounts[accounts["group"] == "ring"]
    mainstream = {"gmail.com", "outlook.com", "yahoo.com", "icloud.com", "hotmail.com", "proton.me"}
    assert ring["email"].str.split("@").str[1].isin(mainstream).all()
    ring_uas = set(events.loc[events["group"] == "ring", "user_agent"])
    solo_uas = events.loc[events["group"] == "solo", "user_agent"].value_counts()
    assert ring_uas <= set(solo_uas.index)  # every ring client is also a benign one
    assert solo_uas.reindex(sorted(ring_uas)).min() >= 1
    # A share of ring mailboxes collapse onto a few Gmail boxes once normalised; no benign do.
    local = ring["email"].str.split("@").str[0].str.split("+").str[0].str.replace(".", "")
    gmail = ring["email"].str.endswith("@gmail.com")
    collapsed = local[gmail].value_counts()
    assert (collapsed > 1).sum() >= 2
    assert ring["email"].str.contains(r"\+").any()


def test_rings_use_residential_proxies_rotating_or_sticky(
    world: dict[str, pd.DataFrame],
) -> None:
    events = world["events"]
    ring_ev = events[events["group"] == "ring"]
    styles = set()
    for _ring, rows in ring_ev.groupby("ring_id"):
        subnets = rows["ip"].str.rsplit(".", n=1).str[0].nunique()
        assert subnets > 0.8 * rows["ip"].nunique()  # scattered over many /24s
        ips_per_account = rows.groupby("account_id")["ip"].nunique()
        accounts_per_ip = rows.groupby("ip")["account_id"].nunique()
        if ips_per_account.median() > 10:
            styles.add("rotating")
            assert rows["ip"].nunique() >= 200
            assert accounts_per_ip.max() >= 5  # hydra exits serve many accounts
        else:
            styles.add("sticky")
            assert ips_per_account.max() <= 3
    assert styles == {"rotating", "sticky"}
    benign_ips = set(events.loc[events["group"] != "ring", "ip"])
    assert len(set(ring_ev["ip"]) & benign_ips) > 0


def test_ring_signups_come_in_bursts_plus_aged_accounts_weeks_earlier(
    world: dict[str, pd.DataFrame],
) -> None:
    accounts, events = world["accounts"], world["events"]
    first_event = events.groupby("account_id")["ts"].min()
    for _ring, members in accounts[accounts["group"] == "ring"].groupby("ring_id"):
        fresh = members[members["role"] != "aged"].sort_values("created_at")
        times = fresh["created_at"].astype("int64").to_numpy() // 10**9
        near = np.array([((times > t - 2 * 3600) & (times < t + 2 * 3600)).sum() for t in times])
        assert (near >= min(15, len(times) // 2)).mean() > 0.9
        aged = members[members["role"] == "aged"]
        assert 0.05 < len(aged) / len(members) < 0.25 or len(members) < 60
        if len(aged):
            campaign = fresh["created_at"].min()
            gap_days = (campaign - aged["created_at"]).dt.total_seconds() / 86_400
            assert gap_days.min() >= 19 and gap_days.max() <= 71
            # Dormant until the campaign starts, then they all wake within two days.
            woke = first_event.loc[aged["account_id"]]
            assert (woke >= campaign).all()
            assert (woke - campaign).max() < pd.Timedelta(days=2)


def test_ring_prompts_mix_a_template_family_with_ordinary_prompts(
    world: dict[str, pd.DataFrame],
) -> None:
    events = world["events"]
    users = events.groupby("prompt_fingerprint")["account_id"].nunique()
    benign = events[events["group"] != "ring"].groupby("prompt_fingerprint")["account_id"]
    benign_users = benign.nunique()
    for _ring, rows in events[events["group"] == "ring"].groupby("ring_id"):
        ring_users = rows.groupby("prompt_fingerprint")["account_id"].nunique()
        family = ring_users[ring_users >= 3].index
        seen = benign_users.reindex(family).fillna(0)
        private, public = family[seen == 0], family[seen > 0]
        # Mostly the ring's own templates, plus one to three public ones (benign users send
        # those too, so they link the ring to strangers); no private template leaks.
        assert 4 <= len(private) <= 40 and len(public) <= 3 + 2  # + generic prompts
        assert (seen[seen > 0] >= 5).all()
        share = rows["prompt_fingerprint"].isin(family).mean()
        assert 0.45 < share < 0.9
        # Members work shards of the family: no template is used by every member.
        assert ring_users.loc[private].max() < rows["account_id"].nunique()
        own = rows.loc[~rows["prompt_fingerprint"].isin(family), "prompt_fingerprint"]
        assert (users.loc[own.unique()] == 1).mean() > 0.8


def test_ring_traffic_is_synchronised_across_accounts(world: dict[str, pd.DataFrame]) -> None:
    """Accounts per busy half-hour, against the same rows with each account's clock shifted."""
    events = world["events"]
    rng = np.random.default_rng(0)

    def lockstep(rows: pd.DataFrame) -> float:
        def per_bucket(ts: pd.Series) -> float:
            return float(rows.groupby(ts.dt.floor("30min"))["account_id"].nunique().mean())

        codes = pd.factorize(rows["account_id"])[0]
        shift = pd.to_timedelta(rng.uniform(0, 86_400, codes.max() + 1)[codes], unit="s")
        return per_bucket(rows["ts"]) / per_bucket(rows["ts"] + shift)

    for _ring, rows in events[events["group"] == "ring"].groupby("ring_id"):
        assert lockstep(rows) > 1.5
    solo = events[events["group"] == "solo"]
    sample = rng.choice(solo["account_id"].unique(), size=200, replace=False)
    assert lockstep(solo[solo["account_id"].isin(sample)]) < 1.2


def test_rings_pivot_to_the_new_model_within_a_day_and_benign_users_slowly(
    world: dict[str, pd.DataFrame],
) -> None:
    events = world["events"]
    on_m4 = events[events["model"] == "m-4"]
    first = on_m4["ts"].min()
    assert first >= RELEASE and first < RELEASE + pd.Timedelta(hours=12)
    day = events[(events["ts"] >= first) & (events["ts"] < first + pd.Timedelta(hours=24))]
    ring_day = day[day["group"] == "ring"]
    for _ring, rows in ring_day.groupby("ring_id"):
        assert (rows["model"] == "m-4").any()
    ring_share = np.average(ring_day["model"] == "m-4", weights=ring_day["requests"])
    assert ring_share > 0.3
    after = events[(events["ts"] >= first) & (events["group"] != "ring")]
    benign_share = np.average(after["model"] == "m-4", weights=after["requests"])
    assert 0.02 < benign_share < 0.12
    adopters_in_a_day = day[(day["group"] != "ring") & (day["model"] == "m-4")]
    assert adopters_in_a_day["account_id"].nunique() > 0  # some benign users move fast too


def test_ring_traffic_is_output_heavy_and_so_is_the_writing_app(
    world: dict[str, pd.DataFrame],
) -> None:
    events = world["events"]
    sums = events.groupby("group")[["input_tokens", "output_tokens"]].sum()
    ratio = sums["output_tokens"] / sums["input_tokens"]
    assert ratio["ring"] > 2 and ratio["solo"] < 1 and ratio["app"] > 2


# --- benign hard negatives -------------------------------------------------------------------


def test_cgnat_addresses_are_shared_by_many_unrelated_users(world: dict[str, pd.DataFrame]) -> None:
    accounts, events = world["accounts"], world["events"]
    per_ip = events.groupby("ip")["account_id"].nunique().sort_values(ascending=False)
    top = per_ip.index[0]
    users = accounts[accounts["account_id"].isin(events.loc[events["ip"] == top, "account_id"])]
    assert len(users) >= 0.03 * N
    assert users["billing_customer_id"].is_unique
    assert users["email"].str.split("@").str[1].nunique() >= 10
    assert (users["group"] == "cgnat").mean() > 0.6


def test_the_app_prompt_is_shared_by_strangers_across_countries(
    world: dict[str, pd.DataFrame],
) -> None:
    accounts, events = world["accounts"], world["events"]
    app_rows = events[events["group"] == "app"]
    prompt = app_rows["prompt_fingerprint"].value_counts().index[0]
    users = accounts[
        accounts["account_id"].isin(
            events.loc[events["prompt_fingerprint"] == prompt, "account_id"]
        )
    ]
    assert len(users) >= 0.5 * (accounts["group"] == "app").sum()
    assert users["country"].nunique() >= 10
    assert users["signup_ip"].nunique() > 0.9 * len(users)
    assert (users["created_at"].max() - users["created_at"].min()) > pd.Timedelta(days=180)


def test_families_share_a_card_and_a_home_address(world: dict[str, pd.DataFrame]) -> None:
    labels = world["labels"].set_index("account_id")
    accounts = world["accounts"].join(labels["group_id"], on="account_id")
    payments = world["payments"].join(labels["group_id"], on="account_id")
    families = accounts[accounts["group"] == "family"]
    assert families.groupby("group_id")["signup_ip"].nunique().eq(1).all()
    cards = payments[payments["group"] == "family"].groupby("group_id")["payment_fingerprint"]
    assert cards.nunique().eq(1).all() and (cards.size() >= 2).any()


def test_companies_share_a_domain_a_nat_a_card_and_a_billing_customer(
    world: dict[str, pd.DataFrame],
) -> None:
    labels = world["labels"].set_index("account_id")
    accounts = world["accounts"].join(labels["group_id"], on="account_id")
    companies = accounts[accounts["group"] == "company"].groupby("group_id")
    assert companies["billing_customer_id"].nunique().eq(1).all()
    assert companies["email"].apply(lambda e: e.str.split("@").str[1].nunique()).eq(1).all()
    assert companies["signup_ip"].nunique().le(3).all()
    assert (companies.size() >= 20).all()
    # Batch jobs: templated prompts on a cron, synchronised to a few minutes.
    events = world["events"]
    batch = events[events["role"] == "batch"]
    assert len(batch)
    minute_of_day = (batch["ts"].dt.hour * 60 + batch["ts"].dt.minute).to_numpy()
    assert np.mean(minute_of_day == np.bincount(minute_of_day).argmax()) > 0.15


def test_the_university_signs_up_a_class_within_a_week(world: dict[str, pd.DataFrame]) -> None:
    students = world["accounts"][world["accounts"]["group"] == "university"]
    assert len(students) >= 25
    assert students["created_at"].max() - students["created_at"].min() <= pd.Timedelta(days=7)
    assert students["email"].str.endswith(".edu").all()
    assert students["email"].str.split("@").str[1].nunique() == 1
    assert students["signup_ip"].str.rsplit(".", n=1).str[0].nunique() == 1
    events = world["events"]
    rows = events[events["group"] == "university"]
    shared = rows.groupby("prompt_fingerprint")["account_id"].nunique()
    assert (shared >= 0.2 * len(students)).sum() >= 3  # class assignments


def test_the_hackathon_signs_up_from_one_venue_within_hours(
    world: dict[str, pd.DataFrame],
) -> None:
    hackers = world["accounts"][world["accounts"]["group"] == "hackathon"]
    assert len(hackers) >= 20
    assert hackers["signup_ip"].nunique() == 1
    assert hackers["created_at"].max() - hackers["created_at"].min() <= pd.Timedelta(hours=3)
    assert hackers["email"].str.split("@").str[1].nunique() >= 3
    rows = world["events"][world["events"]["group"] == "hackathon"]
    starter = rows.groupby("prompt_fingerprint")["account_id"].nunique().max()
    assert starter >= 0.4 * len(hackers)


# --- arguments and CLI -------------------------------------------------------------------------


def test_bad_arguments_are_all_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        generate_world(10, -1, tmp_path, fmt="xml", events_per_account=0)  # type: ignore[arg-type]
    assert len(info.value.problems) == 4
    assert not list(tmp_path.iterdir())


def test_cli_writes_a_world_and_summarises_it(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "w"
    result = runner.invoke(
        cli,
        ["synth", "--accounts", "2000", "--seed", "3", "--out", str(out), "--format", "parquet"],
    )
    assert result.exit_code == 0, result.output
    assert "2,000 accounts" in result.output and "rings: " in result.output
    assert "hackathon" in result.output
    labels = pd.read_parquet(out / "labels.parquet")
    assert len(labels) == 2_000 and labels["ring_id"].fillna("").ne("").sum() > 40
    from linker.io.validate import validate_dataset

    validated = validate_dataset(out, observations=False)
    assert validated.problems == [] and validated.summary["accounts"].accepted == 2_000

    bad = runner.invoke(cli, ["synth", "--accounts", "5", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert bad.output.strip().startswith("Error:") and len(bad.output.strip().splitlines()) == 1
