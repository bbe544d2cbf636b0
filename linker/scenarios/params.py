"""The knobs of a scenario world, their documented ranges and the named scenarios.

:class:`ScenarioParams` holds every knob. Each field carries its range (or its choices) and
a one-line meaning in its metadata; ``docs/scenarios.md`` lists them, and the ``random``
scenario draws every knob from its range with the world's seed. :data:`SCENARIOS` maps a
scenario name to the knobs it changes from the defaults (the ``baseline`` world).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from linker.errors import SettingsError

__all__ = [
    "MAX_RING_SIZE",
    "MIN_RING_SIZE",
    "SCENARIOS",
    "ParamSpec",
    "ScenarioParams",
    "param_specs",
    "parse_overrides",
    "resolve_params",
]

MIN_RING_SIZE = 30
"""The smallest ring a world plants (also the floor when rings are scaled down to fit)."""
MAX_RING_SIZE = 20_000
"""The largest ring a scenario names."""

MAILBOX_STYLES = ("mixed", "dot_trick", "plus_tag", "sequential", "random")


def _knob(default: Any, lo: Any = None, hi: Any = None, doc: str = "", **extra: Any) -> Any:
    meta = {"range": (lo, hi), "doc": doc, **extra}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ScenarioParams:
    """Every knob of a scenario world (the defaults are the ``baseline`` scenario).

    Shares of innocent groups are fractions of the innocent accounts; what is left after
    them are ``solo`` accounts. Ring knobs apply to every ring of the world. Each field's
    range is in its metadata (:func:`param_specs`) and in ``docs/scenarios.md``.
    """

    # --- time and volume ---
    window_days: int = _knob(105, 90, 120, "days of traffic in the events table")
    release_day: int = _knob(
        62, 30, 80, "day of the window on which the new model is released, at 17:00 UTC"
    )
    events_per_account: float = _knob(
        30.0, 20.0, 70.0, "mean event rows per innocent account (rings: times the multiplier)"
    )
    inactive_share: float = _knob(
        0.2, 0.05, 0.4, "innocent accounts that never send traffic (sign-up only)"
    )
    timestamp_mix: float = _knob(
        0.0,
        0.0,
        0.5,
        "share of timestamps written in the contract's other ISO 8601 forms "
        "(+hh:mm offset, space and milliseconds, basic); 0 writes native Parquet timestamps",
    )
    missing_tokens_share: float = _knob(0.01, 0.0, 0.05, "event rows whose token counts are empty")
    event_device_share: float = _knob(
        0.5, 0.2, 1.0, "event rows that carry a device_id (API calls often carry none)"
    )
    # --- innocent population ---
    family_share: float = _knob(0.07, 0.0, 0.2, "families: 2-6 accounts, one card, one home")
    company_share: float = _knob(
        0.10, 0.0, 0.3, "company staff on a corporate domain behind an office NAT"
    )
    company_size_max: int = _knob(400, 20, 2000, "largest company (staff accounts)")
    company_shared_card_share: float = _knob(
        0.5, 0.0, 1.0, "companies whose staff share one corporate card (else own cards or none)"
    )
    company_billing_share: float = _knob(
        0.6, 0.0, 1.0, "companies whose accounts share one billing_customer_id"
    )
    batch_company_share: float = _knob(
        0.3, 0.0, 1.0, "companies that run cron batch jobs from service accounts"
    )
    batch_accounts_max: int = _knob(12, 1, 40, "most batch service accounts per company")
    batch_no_card_share: float = _knob(0.4, 0.0, 1.0, "batch service accounts with no card on file")
    batch_shared_card_share: float = _knob(
        0.3,
        0.0,
        1.0,
        "batch service accounts on the company's shared card (the rest have their own cards)",
    )
    university_share: float = _knob(
        0.04, 0.0, 0.15, "students: a class signs up within days from a campus /24"
    )
    class_size_max: int = _knob(300, 20, 600, "largest class")
    class_signup_days: int = _knob(7, 1, 7, "days over which a class signs up")
    hackathon_share: float = _knob(
        0.015, 0.0, 0.05, "hackathon participants: sign-ups within hours from one venue"
    )
    hackathon_size_max: int = _knob(400, 30, 600, "largest hackathon")
    hackathon_signup_hours: int = _knob(6, 1, 24, "hours over which a hackathon signs up")
    cgnat_share: float = _knob(0.08, 0.0, 0.4, "mobile users behind carrier-grade NAT gateways")
    cgnat_users_min: int = _knob(500, 500, 20_000, "smallest CGNAT gateway (users)")
    cgnat_users_max: int = _knob(5000, 500, 20_000, "largest CGNAT gateway (users)")
    cgnat_ips_per_gateway: int = _knob(4, 1, 16, "IPv4 addresses a gateway's users share")
    cgnat_ipv6_share: float = _knob(
        0.4, 0.0, 0.9, "share of a gateway's addresses that are IPv6 (NAT64 / 464XLAT)"
    )
    vpn_share: float = _knob(0.04, 0.0, 0.2, "commercial VPN users")
    vpn_exits: int = _knob(400, 50, 5000, "exit IPs of the VPN providers together")
    vpn_countries: int = _knob(
        40, 5, 40, "countries the VPN exits are in (one data-centre /24 per provider and country)"
    )
    vpn_residential_share: float = _knob(
        0.1, 0.0, 0.5, "VPN exits that are residential-proxy exits the rings also use"
    )
    app_share: float = _knob(
        0.05, 0.0, 0.2, "users of a popular app: its system prompt, output-heavy"
    )
    app_hosted_share: float = _knob(
        0.3, 0.0, 1.0, "app accounts driven from the app's hosted backend (a few cloud IPs)"
    )
    power_share: float = _knob(0.02, 0.0, 0.1, "innocent heavy users (code generation)")
    proxyware_share: float = _knob(
        0.01, 0.0, 0.05, "home users whose home IP is a residential-proxy exit of the rings"
    )
    agency_share: float = _knob(
        0.005, 0.0, 0.03, "agencies: one card and one office for many client accounts"
    )
    agency_size_max: int = _knob(120, 5, 300, "largest agency (client accounts)")
    residential_density: int = _knob(
        8, 2, 40, "innocent households per residential /24 (or /48): unrelated neighbours"
    )
    ipv6_share: float = _knob(0.15, 0.0, 0.5, "home connections on IPv6")
    popular_templates: int = _knob(4, 1, 6, "prompt templates sent by a large share of accounts")
    popular_template_share: float = _knob(
        0.12,
        0.05,
        0.40,
        "share of active accounts sending the top popular template; the j-th one gets "
        "this share times 0.55^j",
    )
    output_heavy_share: float = _knob(
        0.10, 0.02, 0.5, "innocent active accounts whose output tokens far exceed their input"
    )
    early_adopter_share: float = _knob(
        0.15, 0.02, 0.4, "innocent accounts that move part of their traffic to the new model"
    )
    innocent_virtual_bin_share: float = _knob(
        0.03, 0.0, 0.15, "innocent cards issued on virtual/prepaid BINs"
    )
    paying_share: float = _knob(0.55, 0.3, 0.9, "individual accounts with a card on file")
    # --- rings ---
    n_rings: int = _knob(3, 1, 8, "rings when ring_sizes is empty")
    ring_fraction: float = _knob(
        0.024,
        0.005,
        0.1,
        "ring accounts as a share of all accounts when neither ring_sizes nor ring_accounts "
        "is given (the reported campaign: 24,000 of 1M)",
    )
    ring_sizes: tuple[int, ...] = _knob(
        (),
        MIN_RING_SIZE,
        MAX_RING_SIZE,
        "explicit ring sizes; empty splits the ring accounts over n_rings",
    )
    max_ring_fraction: float = _knob(
        0.25,
        0.05,
        0.5,
        "most ring accounts as a share of all accounts; larger rings are scaled down to fit",
    )
    ring_event_multiplier: float = _knob(
        3.0, 1.5, 6.0, "a ring account's mean event rows over an innocent account's"
    )
    reserve_share: float = _knob(
        0.1, 0.0, 0.5, "ring accounts held in reserve: sign-up attributes only, no traffic"
    )
    camouflage: float = _knob(
        0.05,
        0.0,
        0.3,
        "share of a ring's accounts made to look innocent, and of the other accounts' "
        "traffic sent the innocent way",
    )
    two_controller_share: float = _knob(
        0.5, 0.0, 1.0, "rings run by two controllers (own clock, proxy pool, burst dates)"
    )
    controller_b_fraction: float = _knob(
        0.4, 0.2, 0.5, "share of a two-controller ring's accounts run by the second controller"
    )
    burst_hours: int = _knob(24, 2, 96, "length of one sign-up burst")
    burst_waves: int = _knob(2, 1, 4, "sign-up bursts per controller")
    proxy_pool_per_account: float = _knob(
        0.5, 0.05, 2.0, "residential-proxy exits in a controller's pool per account"
    )
    proxy_countries: int = _knob(25, 3, 40, "countries of a controller's proxy exits")
    proxy_network_size: int = _knob(
        60_000, 5_000, 400_000, "exits of the residential-proxy network the rings rent from"
    )
    ring_card_share: float = _knob(0.8, 0.3, 1.0, "ring accounts with a card on file")
    ring_accounts_per_card: float = _knob(1.5, 1.0, 5.0, "ring accounts per card (reuse)")
    ring_bins: int = _knob(2, 1, 4, "virtual BINs a ring's cards come from")
    ring_accounts_per_device: float = _knob(
        10.0, 1.0, 100.0, "ring accounts per device (1: a fresh device for every account)"
    )
    ring_mailbox_style: str = _knob(
        "mixed",
        doc="mailbox pattern of ring sign-ups: dot_trick (Gmail dots), plus_tag, sequential "
        "(name and counter), random, or mixed (one per controller)",
        choices=MAILBOX_STYLES,
    )
    fake_company_share: float = _knob(
        0.0, 0.0, 1.0, "rings that register their own domain to look like a company"
    )
    pivot_share: float = _knob(
        0.5, 0.3, 0.7, "share of a ring's traffic moved to the new model after its release"
    )
    pivot_lag_hours: float = _knob(
        12.0, 1.0, 24.0, "hours after the release at which a ring pivots"
    )
    ring_lifespan_days: float = _knob(
        60.0, 14.0, 120.0, "days a ring account is used after its sign-up"
    )
    ring_template_family: int = _knob(
        4, 2, 8, "prompt templates of a ring's family (its controllers share them)"
    )
    ring_popular_share: float = _knob(
        0.3, 0.0, 0.8, "ring accounts that also send the popular templates, as camouflage"
    )

    def to_dict(self) -> dict[str, Any]:
        """The knobs as a JSON-serialisable dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        out["ring_sizes"] = list(self.ring_sizes)
        return out


@dataclass(frozen=True)
class ParamSpec:
    """One knob: its name, type, default, range (or choices) and meaning."""

    name: str
    type: str
    default: Any
    low: Any
    high: Any
    choices: tuple[str, ...] | None
    doc: str


def param_specs() -> list[ParamSpec]:
    """Every knob of :class:`ScenarioParams`, in declaration order."""
    specs = []
    for f in dataclasses.fields(ScenarioParams):
        lo, hi = f.metadata["range"]
        specs.append(
            ParamSpec(
                name=f.name,
                type=type(f.default).__name__,
                default=f.default,
                low=lo,
                high=hi,
                choices=f.metadata.get("choices"),
                doc=f.metadata["doc"],
            )
        )
    return specs


SCENARIOS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "popular_templates": {
        "popular_templates": 6,
        "popular_template_share": 0.40,
        "ring_popular_share": 0.8,
    },
    "output_heavy_innocents": {
        "output_heavy_share": 0.5,
        "power_share": 0.08,
        "app_share": 0.15,
    },
    "shared_proxy_exits": {
        "proxyware_share": 0.05,
        "vpn_share": 0.08,
        "vpn_residential_share": 0.5,
        "proxy_network_size": 20_000,
        "ipv6_share": 0.3,
    },
    "company_batch_no_card": {
        "company_share": 0.2,
        "batch_company_share": 1.0,
        "batch_accounts_max": 30,
        "batch_no_card_share": 1.0,
        "batch_shared_card_share": 0.0,
    },
    "company_batch_shared_card": {
        "company_share": 0.2,
        "batch_company_share": 1.0,
        "batch_accounts_max": 30,
        "batch_no_card_share": 0.0,
        "batch_shared_card_share": 1.0,
    },
    "reserve_accounts": {"reserve_share": 0.5},
    "tiny_rings": {"ring_sizes": (30, 30, 30, 30, 30, 30)},
    "giant_ring": {"ring_sizes": (20_000,)},
    "camouflage_high": {"camouflage": 0.3, "ring_popular_share": 0.8},
    "two_controllers": {"two_controller_share": 1.0, "controller_b_fraction": 0.5},
    "cgnat_heavy": {
        "cgnat_share": 0.3,
        "cgnat_users_max": 20_000,
        "cgnat_ips_per_gateway": 2,
        "cgnat_ipv6_share": 0.5,
    },
    "vpn_heavy": {"vpn_share": 0.2, "vpn_exits": 100, "vpn_countries": 40},
    "fake_company_ring": {"fake_company_share": 1.0, "company_share": 0.15},
    "fake_company_shared_pool": {
        "fake_company_share": 1.0,
        "company_share": 0.15,
        "proxy_pool_per_account": 0.3,
        "proxy_network_size": 9_000,
        "proxy_countries": 6,
        "vpn_share": 0.2,
        "vpn_residential_share": 0.4,
        "vpn_exits": 2_700,
    },
    "dense_innocent_sharing": {
        "residential_density": 40,
        "family_share": 0.15,
        "company_share": 0.2,
        "company_shared_card_share": 0.9,
        "company_billing_share": 0.9,
        "cgnat_share": 0.15,
        "university_share": 0.1,
        "agency_share": 0.02,
        "hackathon_share": 0.04,
    },
    "random": {},
}
"""Named scenarios: the knobs each changes from the defaults (``random`` draws them all)."""


def _check(params: ScenarioParams) -> list[str]:
    problems: list[str] = []
    for spec in param_specs():
        value = getattr(params, spec.name)
        if spec.choices is not None:
            if value not in spec.choices:
                problems.append(f"{spec.name}={value!r} is not one of {', '.join(spec.choices)}")
            continue
        values = list(value) if isinstance(value, tuple) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                problems.append(f"{spec.name}={v!r} is not a finite number")
            elif not spec.low <= v <= spec.high:
                problems.append(f"{spec.name}={v!r} is outside {spec.low}..{spec.high}")
    if params.batch_no_card_share + params.batch_shared_card_share > 1.0 + 1e-9:
        problems.append("batch_no_card_share + batch_shared_card_share must be at most 1")
    if params.cgnat_users_min > params.cgnat_users_max:
        problems.append("cgnat_users_min must be at most cgnat_users_max")
    if params.release_day >= params.window_days - 3:
        problems.append("release_day must fall at least 3 days before the window ends")
    if len(params.ring_sizes) > 8:
        problems.append("ring_sizes names at most 8 rings")
    return problems


def _coerce(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name}: {value!r} is not a boolean")
        return bool(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            parts = [p for p in value.replace(" ", "").split(",") if p]
            return tuple(int(p) for p in parts)
        return tuple(int(v) for v in value)
    if isinstance(default, int):
        if isinstance(value, str):
            return int(value.replace("_", ""))
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name}: {value!r} is not a whole number")
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


def parse_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Check and convert knob overrides (values may be strings, as from the command line).

    Raises
    ------
    SettingsError
        Listing every unknown knob and every value that cannot be converted.
    """
    if not overrides:
        return {}
    defaults = {f.name: f.default for f in dataclasses.fields(ScenarioParams)}
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in defaults:
            problems.append(f"unknown scenario parameter {name!r}")
            continue
        try:
            out[name] = _coerce(name, value, defaults[name])
        except (TypeError, ValueError) as exc:
            problems.append(f"{name}={value!r}: {exc}")
    if problems:
        raise SettingsError(problems)
    return out


def _draw_random(seed: int) -> dict[str, Any]:
    """Every knob drawn from its range (log-uniform for wide integer ranges)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5CE7A410]))
    drawn: dict[str, Any] = {}
    for spec in param_specs():
        if spec.name == "ring_sizes":
            continue
        if spec.choices is not None:
            drawn[spec.name] = spec.choices[int(rng.integers(len(spec.choices)))]
        elif isinstance(spec.default, int):
            lo, hi = int(spec.low), int(spec.high)
            if hi >= 20 * max(lo, 1):
                drawn[spec.name] = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            else:
                drawn[spec.name] = int(rng.integers(lo, hi + 1))
        else:
            drawn[spec.name] = float(rng.uniform(spec.low, spec.high))
    # Keep the drawn world coherent where two knobs constrain each other.
    drawn["cgnat_users_min"] = min(drawn["cgnat_users_min"], drawn["cgnat_users_max"])
    no_card = drawn["batch_no_card_share"]
    drawn["batch_shared_card_share"] = min(drawn["batch_shared_card_share"], 1.0 - no_card)
    drawn["release_day"] = min(drawn["release_day"], drawn["window_days"] - 10)
    return drawn


def resolve_params(name: str, seed: int, overrides: dict[str, Any] | None = None) -> ScenarioParams:
    """The knobs of scenario ``name`` with ``overrides`` applied, checked against the ranges.

    Parameters
    ----------
    name : str
        A key of :data:`SCENARIOS`; ``random`` draws every knob from its range with ``seed``.
    seed : int
        The world's seed (only ``random`` uses it here).
    overrides : dict, optional
        Knob values that win over the scenario's (strings are converted).

    Returns
    -------
    ScenarioParams

    Raises
    ------
    SettingsError
        For an unknown scenario or knob, or values outside their documented ranges (all
        problems in one message).

    Examples
    --------
    >>> resolve_params("tiny_rings", 0).ring_sizes
    (30, 30, 30, 30, 30, 30)
    """
    if name not in SCENARIOS:
        raise SettingsError([f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})"])
    values: dict[str, Any] = _draw_random(seed) if name == "random" else {}
    values.update(SCENARIOS[name])
    values.update(parse_overrides(overrides))
    params = ScenarioParams(**values)
    problems = _check(params)
    if problems:
        raise SettingsError(problems)
    return params
