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

__all__ = ["IngestSettings", "Settings", "load_settings"]

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


@dataclass(frozen=True)
class Settings:
    """All settings of a run. Each field is a section of the TOML file."""

    seed: int = 42
    ingest: IngestSettings = field(default_factory=IngestSettings)

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
