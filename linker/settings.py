"""Typed settings that drive the pipeline.

Settings are a tree of frozen dataclasses. They load from a TOML file whose tables match
the dataclass sections, and take overrides (from CLI options) as dotted keys. Every problem
found is collected, and :class:`~linker.errors.SettingsError` is raised once with all of them.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from linker.errors import SettingsError

__all__ = ["IngestSettings", "LinkSettings", "Settings", "load_settings"]

logger = logging.getLogger(__name__)

OnError = Literal["quarantine", "fail"]


@dataclass(frozen=True)
class IngestSettings:
    """How input tables are read and checked."""

    on_error: OnError = "quarantine"
    """``quarantine`` writes rejected rows beside the output and goes on; ``fail`` stops (exit 2)."""

    max_reported_rows: int = 10
    """How many row numbers an error message lists before it gives a count."""

    def problems(self) -> list[str]:
        found = []
        if self.on_error not in ("quarantine", "fail"):
            found.append(f"ingest.on_error must be 'quarantine' or 'fail', not {self.on_error!r}")
        if self.max_reported_rows < 1:
            found.append("ingest.max_reported_rows must be at least 1")
        return found


def _default_kind_priors() -> dict[str, float]:
    # Strength of an exact shared value of each kind, before the rarity adjustment.
    # Exact payment instruments and mailboxes are near-proof of a common owner; shared
    # network and template identifiers are circumstantial; a BIN or a domain alone is weak.
    return {
        "payment": 3.0,
        "billing_customer": 3.0,
        "mailbox": 3.0,
        "device": 1.5,
        "signup_ip": 1.0,
        "ip": 1.0,
        "prompt": 1.0,
        "user_agent": 0.2,
        "signup_subnet": 0.3,
        "subnet": 0.2,
        "email_pattern": 0.5,
        "email_domain": 0.1,
        "card_bin": 0.1,
    }


def _default_supernode_by_kind() -> dict[str, int]:
    # A card or a billing customer shared by hundreds of accounts is a corporate customer;
    # it must still keep its accounts together, so it never becomes a super-node.
    return {"payment": 1_000_000, "billing_customer": 1_000_000}


def _default_score_weights() -> dict[str, float]:
    return {
        "customers": 1.0,
        "ip_spread": 1.2,
        "prompt_family": 1.0,
        "bin_concentration": 1.0,
        "email_pattern": 0.8,
        "burst": 1.0,
        "density": 0.4,
        "size": 0.4,
    }


@dataclass(frozen=True)
class LinkSettings:
    """How accounts are linked, clustered and scored (see docs/linking.md)."""

    kind_priors: dict[str, float] = field(default_factory=_default_kind_priors)
    """Prior strength of an exact shared value per observation kind; unknown kinds get 0."""

    strong_kinds: tuple[str, ...] = ("payment", "billing_customer", "mailbox")
    """Kinds whose shared value always keeps the accounts in one cluster."""

    customer_kinds: tuple[str, ...] = ("payment", "billing_customer")
    """Kinds whose shared value means 'one paying customer' (used to count customers)."""

    supernode_max_accounts: int = 200
    """A value shared by more accounts than this creates no links (it stays a feature)."""

    supernode_by_kind: dict[str, int] = field(default_factory=_default_supernode_by_kind)
    """Per-kind overrides of ``supernode_max_accounts``."""

    pair_max_accounts: int = 48
    """Values shared by more accounts than this are linked through a hub node, not pairs."""

    min_link_weight: float = 0.5
    """Account pairs whose summed evidence is below this are not linked."""

    min_cluster_size: int = 3
    """Communities with fewer accounts get no cluster id."""

    resolution: float = 1.0
    """Resolution of the modularity objective of community detection."""

    burst_window_minutes: float = 60.0
    """Two signups this close in time (sharing a burst key) count towards a burst."""

    burst_min_accounts: int = 5
    """An account is in a burst when this many others with its key signed up in the window."""

    burst_kinds: tuple[str, ...] = ("signup_subnet", "email_pattern", "card_bin", "email_domain")
    """Keys along which signup bursts are counted."""

    score_weights: dict[str, float] = field(default_factory=_default_score_weights)
    """Weights of the cluster features in the cluster score (see docs/linking.md)."""

    score_bias: float = -4.0
    """Intercept of the logistic cluster score."""

    suspend_threshold: float = 0.8
    """Accounts scoring at least this are suspended."""

    review_threshold: float = 0.5
    """Accounts scoring at least this (and below suspend) are sent to review."""

    max_reasons: int = 3
    """How many evidence items a reason text cites."""

    def problems(self) -> list[str]:
        found = []
        for kind, prior in self.kind_priors.items():
            if prior < 0:
                found.append(f"link.kind_priors.{kind} must be at least 0, not {prior}")
        for kind, limit in self.supernode_by_kind.items():
            if limit < 2:
                found.append(f"link.supernode_by_kind.{kind} must be at least 2, not {limit}")
        if self.supernode_max_accounts < 2:
            found.append("link.supernode_max_accounts must be at least 2")
        if self.pair_max_accounts < 2:
            found.append("link.pair_max_accounts must be at least 2")
        if self.min_link_weight < 0:
            found.append("link.min_link_weight must be at least 0")
        if self.min_cluster_size < 2:
            found.append("link.min_cluster_size must be at least 2")
        if self.resolution <= 0:
            found.append("link.resolution must be greater than 0")
        if self.burst_window_minutes <= 0:
            found.append("link.burst_window_minutes must be greater than 0")
        if self.burst_min_accounts < 1:
            found.append("link.burst_min_accounts must be at least 1")
        unknown = set(self.score_weights) - set(_default_score_weights())
        if unknown:
            found.append(f"link.score_weights has unknown features: {', '.join(sorted(unknown))}")
        if not 0 <= self.review_threshold <= 1 or not 0 <= self.suspend_threshold <= 1:
            found.append("link.review_threshold and link.suspend_threshold must be in [0, 1]")
        elif self.review_threshold > self.suspend_threshold:
            found.append("link.review_threshold must not exceed link.suspend_threshold")
        if self.max_reasons < 1:
            found.append("link.max_reasons must be at least 1")
        return found


@dataclass(frozen=True)
class Settings:
    """All settings of a run. Each field is a section of the TOML file."""

    seed: int = 42
    ingest: IngestSettings = field(default_factory=IngestSettings)
    link: LinkSettings = field(default_factory=LinkSettings)

    def problems(self) -> list[str]:
        """Every problem in every section (an empty list when the settings are valid)."""
        found: list[str] = []
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            if dataclasses.is_dataclass(value) and hasattr(value, "problems"):
                found.extend(value.problems())
        return found

    def validate(self) -> Settings:
        """Return ``self``, or raise :class:`SettingsError` listing every problem."""
        problems = self.problems()
        if problems:
            raise SettingsError(problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (used in run manifests)."""
        return dataclasses.asdict(self)


def load_settings(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build :class:`Settings` from defaults, an optional TOML file and dotted overrides.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file; its tables are settings sections (``[ingest]``, ...).
    overrides : mapping, optional
        Dotted keys such as ``{"ingest.on_error": "fail"}``, applied after the file.
        ``None`` values are skipped, so unset CLI options can be passed straight through.

    Returns
    -------
    Settings
        Validated settings.

    Raises
    ------
    SettingsError
        Listing every unknown key, wrongly typed value and invalid value at once.

    Examples
    --------
    >>> load_settings(overrides={"ingest.on_error": "fail"}).ingest.on_error
    'fail'
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError([f"{path}: cannot read settings file ({exc.strerror})"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"{path}: not valid TOML ({exc})"]) from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    settings = _build(Settings, data, "", problems)
    if problems:
        raise SettingsError(problems)
    return settings.validate()


def _build(cls: type, data: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            problems.append(f"unknown setting {prefix}{key}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if not isinstance(value, Mapping):
                problems.append(f"{name} must be a table of settings")
                continue
            kwargs[f.name] = _build(hint, value, f"{name}.", problems)
            continue
        coerced = _coerce(value, hint, name, problems)
        if coerced is not _INVALID:
            kwargs[f.name] = coerced
    return cls(**kwargs)


_INVALID = object()


def _coerce(value: Any, hint: Any, name: str, problems: list[str]) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value in allowed:
            return value
        problems.append(f"{name} must be one of {', '.join(map(repr, allowed))}, not {value!r}")
        return _INVALID
    if origin in (dict, Mapping) or hint is dict:
        args = typing.get_args(hint)
        if not isinstance(value, Mapping):
            problems.append(f"{name} must be a table")
            return _INVALID
        if args:
            out = {}
            for k, v in value.items():
                c = _coerce(v, args[1], f"{name}.{k}", problems)
                if c is not _INVALID:
                    out[k] = c
            return out
        return dict(value)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            problems.append(f"{name} must be a list")
            return _INVALID
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{name}[{i}]", problems) for i, v in enumerate(value)]
        if any(i is _INVALID for i in items):
            return _INVALID
        return tuple(items) if origin is tuple else items
    if origin is types.UnionType or origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], name, problems)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if isinstance(hint, type) and hint in (int, float, bool, str):
        problems.append(f"{name} must be {hint.__name__}, not {type(value).__name__} {value!r}")
        return _INVALID
    return value
