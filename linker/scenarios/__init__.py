"""Scenario worlds: an independently written family of synthetic worlds with documented knobs.

A scenario is a named set of knob values (:data:`SCENARIOS`) over :class:`ScenarioParams`;
:func:`generate_scenario` writes its world (accounts, payments, events, labels) in the
input contract's format. ``docs/scenarios.md`` describes every knob, the real behaviour it
models, how ring sizes scale with the population, and the seed split of the robustness bench.
"""

from __future__ import annotations

from linker.scenarios.generate import ScenarioSummary, generate_scenario
from linker.scenarios.params import (
    MAX_RING_SIZE,
    MIN_RING_SIZE,
    SCENARIOS,
    ParamSpec,
    ScenarioParams,
    param_specs,
    parse_overrides,
    resolve_params,
)
from linker.scenarios.plan import GROUPS, ROLES, WINDOW_START

__all__ = [
    "GROUPS",
    "MAX_RING_SIZE",
    "MIN_RING_SIZE",
    "ROLES",
    "SCENARIOS",
    "WINDOW_START",
    "ParamSpec",
    "ScenarioParams",
    "ScenarioSummary",
    "generate_scenario",
    "param_specs",
    "parse_overrides",
    "resolve_params",
]
