"""Scenario worlds (linker.scenarios): contract, determinism, and that each knob does its job.

Worlds are small (2,000-5,000 accounts) and written once per module. Every world goes
through the real validator; the knob tests measure the written tables, read back through
``validate_dataset`` (typed as the pipeline sees them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from ingest_world import plain_values

from linker.cli import cli
from linker.errors import SettingsError
from linker.io.validate import validate_dataset
from linker.scenarios import (
    SCENARIOS,
    ScenarioParams,
    ScenarioSummary,
    generate_scenario,
    param_specs,
    resolve_params,
)

ROOT = Path(__file__).resolve().parent.parent
N = 2500
SEED = 4
# Worlds written in Parquet (the rest in CSV), and one with the other timestamp forms.
PARQUET = {"random", "giant_ring", "cgnat_heavy"}
MIXED_TIMESTAMPS = {"timestamp_mix": 0.4}


@dataclass
class World:
    path: Path
    summary: ScenarioSummary
    tables: dict[str, pd.DataFrame]
    rejected: int

    @property
    def accounts(self) -> pd.DataFrame:
        return self.tables["accounts"]

    @property
    def events(self) -> pd.DataFrame:
        return self.tables["events"]

    @property
    def payments(self) -> pd.DataFrame:
        return self.tables["payments"]

    @property
    def labels(self) -> pd.DataFrame:
        return self.tables["labels"]

    def ids(self, **where: str) -> set[str]:
        frame = self.labels
        for column, value in where.items():
            frame = frame[frame[column] == value]
        return set(frame["account_id"].astype(str))

    def ring_ids(self) -> set[str]:
        return set(self.labels.loc[self.labels["ring_id"].notna(), "account_id"].astype(str))


def _load(path: Path, summary: ScenarioSummary) -> World:
    result = validate_dataset(path, observations=False)
    tables = {name: plain_values(frame) for name, frame in result.tables.items()}
    return World(path, summary, tables, result.n_rejected)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, World]:
    root = tmp_path_factory.mktemp("scenarios")
    out: dict[str, World] = {}
    for name in SCENARIOS:
        path = root / name
        overrides = MIXED_TIMESTAMPS if name == "baseline" else None
        fmt = "parquet" if name in PARQUET else "csv"
        summary = generate_scenario(name, N, SEED, path, fmt=fmt, overrides=overrides)
        out[name] = _load(path, summary)
    return out


def _hashes(path: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.iterdir())
        if p.is_file()
    }


# --- contract and determinism ---


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_validates_with_no_rejection(worlds: dict[str, World], name: str) -> None:
    world = worlds[name]
    assert world.rejected == 0
    assert set(world.tables) == {"accounts", "payments", "events", "labels"}
    assert len(world.accounts) == N == world.summary.n_accounts
    assert len(world.events) == world.summary.n_events > 0


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_labels_cover_every_account_exactly_once(worlds: dict[str, World], name: str) -> None:
    world = worlds[name]
    labels, accounts = world.labels, world.accounts
    assert not labels["account_id"].duplicated().any()
    assert set(labels["account_id"]) == set(accounts["account_id"])
    ring = labels["ring_id"].notna()
    assert (labels.loc[ring, "group"] == "ring").all()
    assert (labels.loc[~ring, "group"] != "ring").all()
    assert labels.loc[ring, "ring_id"].str.fullmatch(r"ring-\d\d").all()
    assert set(labels.loc[ring, "role"]) <= {"member", "reserve", "controller_b", "camouflage"}
    assert dict(labels.loc[ring, "ring_id"].value_counts()) == world.summary.rings


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    for fmt in ("csv", "parquet"):
        a, b, c = tmp_path / f"a-{fmt}", tmp_path / f"b-{fmt}", tmp_path / f"c-{fmt}"
        overrides = {"timestamp_mix": 0.2, "camouflage": 0.2}
        generate_scenario("two_controllers", 2000, 11, a, fmt=fmt, overrides=overrides)
        generate_scenario("two_controllers", 2000, 11, b, fmt=fmt, overrides=overrides)
        generate_scenario("two_controllers", 2000, 12, c, fmt=fmt, overrides=overrides)
        assert _hashes(a) == _hashes(b)
        assert len(_hashes(a)) == 5  # four tables and scenario.json
        differ = {k for k, v in _hashes(a).items() if _hashes(c)[k] != v}
        assert {f"events.{fmt}", f"accounts.{fmt}"} <= differ


def test_events_are_in_warehouse_time_order(worlds: dict[str, World]) -> None:
    for name in ("baseline", "random", "giant_ring"):
        ts = worlds[name].events["ts"]
        assert ts.is_monotonic_increasing, name
        # Not grouped by account: consecutive rows change account most of the time.
        acct = worlds[name].events["account_id"]
        assert (acct != acct.shift()).mean() > 0.5


def test_timestamp_mix_writes_every_contract_form(worlds: dict[str, World]) -> None:
    text = (worlds["baseline"].path / "events.csv").read_text().splitlines()[1:4000]
    stamps = [line.split(",")[1].strip('"') for line in text]
    forms = {
        "Z": any(s.endswith("Z") and "T" in s and "-" in s for s in stamps),
        "offset": any(s[-6] in "+-" and s[-3] == ":" for s in stamps),
        "space": any(" " in s and "." in s for s in stamps),
        "basic": any(len(s) == 16 and s[8] == "T" for s in stamps),
    }
    assert all(forms.values()), forms
    # Without the knob, Parquet timestamps are native.
    import pyarrow.parquet as pq

    schema = pq.read_schema(worlds["giant_ring"].path / "events.parquet")
    assert str(schema.field("ts").type) == "timestamp[us, tz=UTC]"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_events_never_precede_sign_up_and_stay_in_the_window(
    worlds: dict[str, World], name: str
) -> None:
    w = worlds[name]
    created = w.accounts.set_index("account_id")["created_at"]
    first = w.events.groupby("account_id")["ts"].min()
    assert (first >= created.loc[first.index]).all()
    start = pd.Timestamp(w.summary.window_start)
    end = pd.Timestamp(w.summary.window_end)
    assert w.events["ts"].min() >= start and w.events["ts"].max() <= end
    # Cards are added after sign-up (a bare-date added_at may read as that day's midnight).
    added = w.payments.merge(w.accounts[["account_id", "created_at"]], on="account_id")
    assert (added["added_at"] >= added["created_at"].dt.floor("D")).all()


def test_addresses_are_valid_and_public(worlds: dict[str, World]) -> None:
    ips = pd.concat([worlds["cgnat_heavy"].events["ip"], worlds["baseline"].accounts["signup_ip"]])
    parsed = [ipaddress.ip_address(v) for v in ips.dropna().unique()]
    assert any(a.version == 6 for a in parsed) and any(a.version == 4 for a in parsed)
    assert not any(a.is_private or a.is_loopback or a.is_multicast for a in parsed)


# --- volume and the new model ---


def test_event_volume_is_realistic_and_heavy_tailed(worlds: dict[str, World]) -> None:
    w = worlds["baseline"]
    per = w.events.groupby("account_id").size().reindex(w.accounts["account_id"], fill_value=0)
    assert 20 <= per.mean() <= 70
    assert per.max() > 10 * per.median()
    ring = per[per.index.isin(w.ring_ids())]
    innocent = per[~per.index.isin(w.ring_ids())]
    assert ring.mean() > 1.5 * innocent.mean()


def test_rings_pivot_about_half_their_traffic_within_a_day_of_release(
    worlds: dict[str, World],
) -> None:
    w = worlds["baseline"]
    release = pd.Timestamp(w.summary.release_at)
    ev = w.events[w.events["account_id"].isin(w.ring_ids())]
    before = ev[ev["ts"] < release]
    after = ev[ev["ts"] >= release + pd.Timedelta(hours=26)]
    assert (before["model"] == "aurora-3").sum() == 0
    assert 0.35 <= (after["model"] == "aurora-3").mean() <= 0.65
    innocent = w.events[~w.events["account_id"].isin(w.ring_ids())]
    early = innocent[
        (innocent["ts"] >= release) & (innocent["ts"] < release + pd.Timedelta(days=1))
    ]
    assert 0 < (early["model"] == "aurora-3").mean() < 0.3  # some innocent early adopters


# --- each knob does what it says ---


def _template_share(w: World) -> float:
    active = w.events["account_id"].nunique()
    top = w.events.groupby("prompt_fingerprint")["account_id"].nunique().max()
    return float(top / active)


def test_popular_templates_are_sent_by_the_configured_share(worlds: dict[str, World]) -> None:
    assert _template_share(worlds["popular_templates"]) == pytest.approx(0.40, abs=0.04)
    assert _template_share(worlds["baseline"]) == pytest.approx(0.12, abs=0.03)
    # Rings send them too, as camouflage.
    w = worlds["popular_templates"]
    top = w.events.groupby("prompt_fingerprint")["account_id"].nunique().idxmax()
    senders = set(w.events.loc[w.events["prompt_fingerprint"] == top, "account_id"])
    assert senders & w.ring_ids()


def _output_heavy_share(w: World) -> float:
    ev = w.events[~w.events["account_id"].isin(w.ring_ids())]
    tok = ev.groupby("account_id")[["input_tokens", "output_tokens"]].sum()
    return float((tok["output_tokens"] >= 5 * tok["input_tokens"]).mean())


def test_output_heavy_innocents_knob(worlds: dict[str, World]) -> None:
    heavy = _output_heavy_share(worlds["output_heavy_innocents"])
    base = _output_heavy_share(worlds["baseline"])
    assert heavy >= 0.45
    assert heavy > 2 * base


def test_reserve_accounts_have_no_traffic_but_full_sign_up(worlds: dict[str, World]) -> None:
    w = worlds["reserve_accounts"]
    reserve = w.ids(role="reserve")
    ring = w.ring_ids()
    assert len(reserve) == pytest.approx(0.5 * len(ring), abs=0.05 * len(ring))
    assert not reserve & set(w.events["account_id"])
    rows = w.accounts[w.accounts["account_id"].isin(reserve)]
    assert rows[["email", "signup_ip", "device_id"]].notna().all().all()
    assert set(w.payments["account_id"]) & reserve  # cards on file too
    assert len(worlds["baseline"].ids(role="reserve")) < 0.2 * len(worlds["baseline"].ring_ids())


def _batch(w: World) -> tuple[pd.DataFrame, set[str]]:
    batch = w.ids(group="company", role="batch")
    accounts = w.accounts[w.accounts["account_id"].isin(batch)].copy()
    accounts["domain"] = accounts["email"].str.split("@").str[1]
    return accounts, batch


def test_company_batch_without_cards(worlds: dict[str, World]) -> None:
    w = worlds["company_batch_no_card"]
    accounts, batch = _batch(w)
    assert len(batch) >= 30
    assert not batch & set(w.payments["account_id"])
    # Lockstep: a company's batch accounts fire at the same minutes from the office NAT.
    ev = w.events[w.events["account_id"].isin(batch)].merge(accounts, on="account_id")
    ev["minute"] = ev["ts"].dt.floor("min")
    together = ev.groupby(["domain", "minute"])["account_id"].nunique()
    assert (together >= 3).any()
    ips_per_company = ev.groupby("domain")["ip"].nunique()
    assert ips_per_company.max() <= 4


def test_company_batch_on_the_shared_card(worlds: dict[str, World]) -> None:
    w = worlds["company_batch_shared_card"]
    _, batch = _batch(w)
    pay = w.payments.merge(w.accounts[["account_id", "email"]], on="account_id")
    pay["domain"] = pay["email"].str.split("@").str[1]
    on_card = pay[pay["account_id"].isin(batch)]
    assert set(on_card["account_id"]) == batch
    # Each batch account's card is its company's: shared with another account of the domain.
    per_card = pay.groupby("payment_fingerprint")["account_id"].nunique()
    assert (per_card.loc[on_card["payment_fingerprint"]] >= 2).all()
    corporate = pay[pay["payment_fingerprint"].isin(on_card["payment_fingerprint"])]
    assert (corporate.groupby("payment_fingerprint")["domain"].nunique() == 1).all()


def test_ring_accounts_fixed_across_sizes_gives_the_same_rings(tmp_path: Path) -> None:
    small = generate_scenario("baseline", 3000, 9, tmp_path / "s", ring_accounts=400)
    large = generate_scenario("baseline", 5000, 9, tmp_path / "l", ring_accounts=400)
    assert small.rings == large.rings
    assert sum(small.rings.values()) == pytest.approx(400, abs=2)
    a, b = _load(tmp_path / "s", small), _load(tmp_path / "l", large)
    cols = ["account_id", "created_at", "email", "signup_ip", "device_id", "country"]

    def rings(w: World) -> pd.DataFrame:
        frame = w.accounts[w.accounts["account_id"].isin(w.ring_ids())][cols]
        return frame.sort_values("account_id").reset_index(drop=True)

    pd.testing.assert_frame_equal(rings(a), rings(b))
    ev_a = a.events[a.events["account_id"].isin(a.ring_ids())].reset_index(drop=True)
    ev_b = b.events[b.events["account_id"].isin(b.ring_ids())].reset_index(drop=True)
    pd.testing.assert_frame_equal(ev_a, ev_b)
    # Without ring_accounts, rings grow with the population (ring_fraction).
    grown = generate_scenario("baseline", 5000, 9, tmp_path / "g")
    assert sum(grown.rings.values()) != sum(small.rings.values())


def test_rings_too_big_for_the_world_scale_down_to_fit(worlds: dict[str, World]) -> None:
    giant = worlds["giant_ring"].summary
    assert list(giant.rings.values()) == [round(0.25 * N)]
    assert giant.ring_scale == pytest.approx(0.25 * N / 20_000)
    assert sorted(worlds["tiny_rings"].summary.rings.values()) == [30] * 6


def test_camouflage_knob(worlds: dict[str, World]) -> None:
    high = worlds["camouflage_high"]
    active = high.ring_ids() - high.ids(role="reserve")
    camo = high.ids(role="camouflage")
    assert len(camo) == pytest.approx(0.3 * len(active), abs=0.04 * len(active))
    # Camouflage accounts use a device of their own, and most of their rows come from one
    # home-like address instead of rotating proxies.
    dev = high.accounts[high.accounts["account_id"].isin(high.ring_ids())]
    shared = dev.groupby("device_id")["account_id"].transform("size")
    assert (shared[dev["account_id"].isin(camo)] == 1).all()
    ev = high.events[high.events["account_id"].isin(camo)]
    top_ip = ev.groupby("account_id")["ip"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    assert top_ip.median() > 0.5
    base = worlds["baseline"]
    assert len(base.ids(role="camouflage")) < len(camo)


def test_two_controllers_have_own_bursts_and_proxies(worlds: dict[str, World]) -> None:
    w = worlds["two_controllers"]
    labels = w.labels[
        w.labels["ring_id"].notna() & w.labels["role"].isin(["member", "controller_b"])
    ]
    for ring_id, members in labels.groupby("ring_id"):
        a = set(members.loc[members["role"] == "member", "account_id"])
        b = set(members.loc[members["role"] == "controller_b", "account_id"])
        assert len(b) >= 0.35 * len(members), ring_id
        days = w.accounts.set_index("account_id")["created_at"].dt.floor("D")
        assert set(days.loc[list(a)]) != set(days.loc[list(b)])
        ips_a = set(w.events.loc[w.events["account_id"].isin(a), "ip"])
        ips_b = set(w.events.loc[w.events["account_id"].isin(b), "ip"])
        assert len(ips_a & ips_b) < 0.5 * min(len(ips_a), len(ips_b))


def test_cgnat_gateways_put_hundreds_behind_a_few_addresses(worlds: dict[str, World]) -> None:
    w = worlds["cgnat_heavy"]
    cgnat = w.ids(group="cgnat")
    ev = w.events[w.events["account_id"].isin(cgnat)]
    per_ip = ev.groupby("ip")["account_id"].nunique()
    assert per_ip.max() >= 100
    assert ev["ip"].str.contains(":").mean() > 0.2  # IPv6 gateways too
    assert len(cgnat) >= 0.25 * N


def test_vpn_exits_are_shared_by_many_unrelated_users(worlds: dict[str, World]) -> None:
    w = worlds["vpn_heavy"]
    vpn = w.ids(group="vpn")
    ev = w.events[w.events["account_id"].isin(vpn)]
    per_ip = ev.groupby("ip")["account_id"].nunique()
    assert (ev["ip"].map(per_ip) >= 10).mean() > 0.6
    assert ev.groupby("account_id")["ip"].nunique().median() >= 5  # users rotate exits


def _innocents_on_ring_exits(w: World) -> int:
    ring_ips = set(w.events.loc[w.events["account_id"].isin(w.ring_ids()), "ip"])
    innocent = w.events[~w.events["account_id"].isin(w.ring_ids())]
    return int(innocent.loc[innocent["ip"].isin(ring_ips), "account_id"].nunique())


def test_proxy_exits_are_innocent_homes(worlds: dict[str, World]) -> None:
    shared = _innocents_on_ring_exits(worlds["shared_proxy_exits"])
    assert shared > 2 * _innocents_on_ring_exits(worlds["baseline"])
    w = worlds["shared_proxy_exits"]
    assert _innocents_on_ring_exits(w) >= 0.5 * len(w.ids(group="proxyware"))


def test_fake_company_rings_use_their_own_domain_and_billing(worlds: dict[str, World]) -> None:
    w = worlds["fake_company_ring"]
    ring = w.accounts.merge(w.labels, on="account_id")
    ring = ring[ring["ring_id"].notna() & (ring["role"] != "camouflage")]
    for ring_id, members in ring.groupby("ring_id"):
        domains = members["email"].str.split("@").str[1]
        assert domains.nunique() == 1 and not domains.iloc[0].startswith("gmail"), ring_id
        assert members["billing_customer_id"].nunique() == 1
    assert not worlds["baseline"].accounts["email"].str.endswith("-1.com").any()


def _shared_card_accounts(w: World) -> float:
    innocent = w.payments[~w.payments["account_id"].isin(w.ring_ids())]
    per = innocent.groupby("payment_fingerprint")["account_id"].transform("nunique")
    return float(innocent.loc[per > 1, "account_id"].nunique() / (N - len(w.ring_ids())))


def test_dense_innocent_sharing(worlds: dict[str, World]) -> None:
    assert _shared_card_accounts(worlds["dense_innocent_sharing"]) > 1.5 * _shared_card_accounts(
        worlds["baseline"]
    )


def test_innocent_groups_are_labelled(worlds: dict[str, World]) -> None:
    groups = set(worlds["dense_innocent_sharing"].labels["group"])
    assert groups >= {
        "solo", "family", "company", "university", "hackathon", "cgnat", "vpn", "app", "power",
        "proxyware", "agency", "ring",
    }  # fmt: skip


def test_university_class_signs_up_within_a_week_from_one_campus_subnet(
    worlds: dict[str, World],
) -> None:
    w = worlds["dense_innocent_sharing"]
    students = w.accounts[w.accounts["account_id"].isin(w.ids(group="university"))].copy()
    students["domain"] = students["email"].str.split("@").str[1].str.replace("student.", "")
    assert students["domain"].str.endswith(".edu").all()
    students["subnet"] = students["signup_ip"].str.rsplit(".", n=1).str[0]
    assert students.groupby("domain")["subnet"].nunique().max() <= 2


def test_hackathon_signs_up_within_hours_from_the_venue(worlds: dict[str, World]) -> None:
    w = worlds["dense_innocent_sharing"]
    hack = w.accounts[w.accounts["account_id"].isin(w.ids(group="hackathon"))]
    per_ip = hack.groupby("signup_ip")["created_at"].agg(["size", "min", "max"])
    big = per_ip[per_ip["size"] >= 10]
    assert len(big) and ((big["max"] - big["min"]) <= pd.Timedelta(hours=24)).all()


# --- parameters ---


def test_random_scenario_draws_every_knob_from_its_range() -> None:
    draws = [resolve_params("random", seed) for seed in range(12)]
    for spec in param_specs():
        values = [getattr(d, spec.name) for d in draws]
        if spec.name == "ring_sizes":
            continue
        assert len({json.dumps(v) for v in values}) > 1, spec.name
        if spec.choices is None:
            assert all(spec.low <= v <= spec.high for v in values), spec.name
    assert resolve_params("random", 3) == resolve_params("random", 3)


def test_every_named_scenario_is_within_the_documented_ranges() -> None:
    for name in SCENARIOS:
        params = resolve_params(name, 0)
        assert isinstance(params, ScenarioParams)
    assert resolve_params("baseline", 0) == ScenarioParams()


def test_bad_knobs_are_rejected_all_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        resolve_params("baseline", 0, {"camouflage": "0.9", "no_such_knob": 1})
    assert "no_such_knob" in str(info.value)
    with pytest.raises(SettingsError) as info:
        resolve_params("baseline", 0, {"camouflage": 0.9, "n_rings": 12})
    assert "camouflage" in str(info.value) and "n_rings" in str(info.value)
    with pytest.raises(SettingsError):
        resolve_params("no_such_scenario", 0)
    assert resolve_params("baseline", 0, {"ring_sizes": "30,60"}).ring_sizes == (30, 60)


def test_docs_describe_every_scenario_and_knob() -> None:
    text = (ROOT / "docs" / "scenarios.md").read_text()
    for name in SCENARIOS:
        assert f"| `{name}` |" in text, name
    for spec in param_specs():
        if spec.choices is None and spec.name != "ring_sizes":
            assert f"| `{spec.name}` | {spec.default} | {spec.low}–{spec.high} |" in text, spec.name
        else:
            assert f"| `{spec.name}` |" in text, spec.name


# --- the command line ---


def test_synth_scenario_command(tmp_path: Path) -> None:
    out = tmp_path / "w"
    args = ["synth", "--scenario", "tiny_rings", "--accounts", "2000", "--seed", "2"]
    result = CliRunner().invoke(
        cli, [*args, "--out", str(out), "--param", "camouflage=0.2", "--ring-accounts", "300"]
    )
    assert result.exit_code == 0, result.output
    assert "rings: 6 with 300 accounts" in result.output
    meta: dict[str, Any] = json.loads((out / "scenario.json").read_text())
    assert meta["params"]["camouflage"] == 0.2
    assert list(meta["rings"].values()) == [50] * 6
    bad = CliRunner().invoke(cli, [*args, "--out", str(out), "--param", "nope=1"])
    assert bad.exit_code == 2 and "unknown scenario parameter 'nope'" in bad.output
    bad = CliRunner().invoke(
        cli, ["synth", "--accounts", "2000", "--out", str(out), "--param", "a=1"]
    )
    assert bad.exit_code == 2 and "need --scenario" in bad.output


# --- the bench's seed split ---


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("robustness", ROOT / "bench" / "robustness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_refuses_held_out_seeds_without_the_flag() -> None:
    bench = _bench()
    assert bench.parse_seeds("0-9") == list(range(10))
    assert bench.parse_seeds("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(bench.SeedError, match="held out"):
        bench.parse_seeds("100-119")
    with pytest.raises(bench.SeedError, match="held-out"):
        bench.parse_seeds("5,110")
    assert bench.parse_seeds("100-119", held_out=True) == list(range(100, 120))
    with pytest.raises(bench.SeedError):
        bench.parse_seeds("nine")
    with pytest.raises(SystemExit):
        bench.main(["--seeds", "100", "--scenarios", "baseline"])


def test_bench_cluster_metrics() -> None:
    bench = _bench()
    labels = pd.DataFrame(
        {"account_id": list("abcdef"), "ring_id": ["r1", "r1", "r1", None, None, None]}
    )
    everyone = pd.DataFrame(
        {"account_id": list("abcdef"), "cluster_id": ["C1", "C1", "C2", "C2", "C2", None]}
    )
    m = bench.cluster_metrics(everyone, labels)
    assert m["largest_cluster"] == 3 and m["largest_cluster_share"] == pytest.approx(0.5)
    assert m["worst_mixing"] == pytest.approx(1 / 3) and m["worst_mixing_cluster"] == "C2"
