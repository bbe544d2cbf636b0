"""Cypher queries, stored as ``queries/*.cypher`` files and loaded by name.

Each file starts with a header of ``//`` comments::

    // Purpose: what the query answers (continuation lines are indented).
    // Param account_id (string, required): the account at the centre.
    // Param limit (int, default 100): the most rows returned.

Analyst queries sit at the top of ``queries/`` (``linker query NAME``); the loader's write
queries sit in ``queries/load/`` and are named ``load/<file>``. Values always travel as
parameters: :func:`coerce_parameters` turns ``--param k=v`` strings into the declared types.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linker.cells import neutralise_cell, terminal_text
from linker.errors import InputError, LinkerError

if TYPE_CHECKING:
    from linker.neo4j.runner import QueryResult, QueryRunner

__all__ = [
    "QUERY_DIR",
    "QueryInfo",
    "QueryParam",
    "available_queries",
    "coerce_parameters",
    "format_result",
    "load_query",
    "query_info",
    "render_template",
    "run_query",
    "split_statements",
]

logger = logging.getLogger(__name__)


def _query_dir() -> Path:
    # A wheel ships the repository's queries/ as linker/cypher/ (pyproject.toml maps that
    # package onto queries/); a checkout or an editable install reads queries/ itself.
    installed = Path(__file__).resolve().parent / "cypher"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "queries"


QUERY_DIR = _query_dir()
"""The folder of ``.cypher`` files: the repository's ``queries/``, or ``linker/cypher`` when
installed from a wheel."""

_NAME = re.compile(r"^(load/)?[A-Za-z0-9_]+$")
_PARAM = re.compile(
    r"^//\s*Param\s+(?P<name>\w+)\s*\((?P<type>\w+)\s*(?:,\s*(?P<spec>required|default\s+.+?))?\)"
    r"\s*:\s*(?P<doc>.*)$"
)
_TYPES = ("string", "int", "float", "bool", "list")


@dataclass(frozen=True)
class QueryParam:
    """One declared parameter of a query."""

    name: str
    type: str
    required: bool
    default: Any
    description: str


@dataclass(frozen=True)
class QueryInfo:
    """A query file's name, purpose and parameters, parsed from its header."""

    name: str
    purpose: str
    params: tuple[QueryParam, ...]
    path: Path


def available_queries(*, include_load: bool = False) -> list[str]:
    """The names of the stored queries, sorted.

    Parameters
    ----------
    include_load : bool
        Also list the loader's queries (``load/...``).

    Returns
    -------
    list of str
    """
    names = [p.stem for p in QUERY_DIR.glob("*.cypher")]
    if include_load:
        names += [f"load/{p.stem}" for p in (QUERY_DIR / "load").glob("*.cypher")]
    return sorted(names)


def _path_for(name: str) -> Path:
    if not _NAME.match(name) or not (QUERY_DIR / f"{name}.cypher").is_file():
        listed = ", ".join(available_queries())
        raise LinkerError(f"unknown query {name!r}; available: {listed}")
    return QUERY_DIR / f"{name}.cypher"


def load_query(name: str) -> str:
    """The Cypher text of the query ``name`` (header comments included).

    Parameters
    ----------
    name : str
        A name from :func:`available_queries`, e.g. ``"top_clusters"`` or ``"load/accounts"``.

    Returns
    -------
    str

    Raises
    ------
    LinkerError
        For an unknown name (the message lists the available ones).

    Examples
    --------
    >>> "MATCH (c:Cluster)" in load_query("top_clusters")
    True
    """
    return _path_for(name).read_text(encoding="utf-8")


_SCHEMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{(label|rel_type|constraint|key|start|start_key|end|end_key)\}")


def render_template(name: str, **names: str) -> str:
    """A loader query template with its schema names filled in.

    Labels, relationship types and constraint names cannot be Cypher parameters, so a few
    loader queries are templates with ``{label}``, ``{rel_type}`` or ``{constraint}`` in them. Only
    plain identifiers (letters, digits, ``_``) are accepted: the names come from the kind
    registry (:mod:`linker.kinds`), and values still travel as parameters.

    Raises
    ------
    LinkerError
        For a name that is not a plain identifier, or a placeholder left unfilled.

    Examples
    --------
    >>> "MERGE (n:IP {value: $value[i]})" in render_template("load/identifier", label="IP")
    True
    """
    for key, value in names.items():
        if not _SCHEMA_NAME.match(value):
            raise LinkerError(f"query {name}: {key} {value!r} is not a plain identifier")

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in names:
            raise LinkerError(f"query {name}: no value for {{{key}}}")
        return names[key]

    return _PLACEHOLDER.sub(fill, load_query(name))


def query_info(name: str) -> QueryInfo:
    """Parse the header of the query ``name``: purpose and parameters."""
    path = _path_for(name)
    purpose: list[str] = []
    params: list[QueryParam] = []
    in_purpose = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("//"):
            break
        match = _PARAM.match(line)
        if match:
            in_purpose = False
            spec = match["spec"] or "required"
            ptype = match["type"]
            if ptype not in _TYPES:
                raise LinkerError(f"{path}: parameter {match['name']} has unknown type {ptype}")
            default: Any = None
            if spec.startswith("default"):
                raw = spec.split(None, 1)[1].strip()
                default = None if raw == "null" else _coerce(raw, ptype, match["name"], name)
            params.append(
                QueryParam(match["name"], ptype, spec == "required", default, match["doc"].strip())
            )
            continue
        body = line[2:].strip()
        if body.startswith("Purpose:"):
            purpose.append(body[len("Purpose:") :].strip())
            in_purpose = True
        elif in_purpose and body:
            purpose.append(body)
    return QueryInfo(name=name, purpose=" ".join(purpose), params=tuple(params), path=path)


def split_statements(text: str) -> list[str]:
    """Split a multi-statement file on ``;`` at line ends, dropping ``//`` comment lines."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


INT_MAX = 2**63 - 1
"""The largest integer parameter (Neo4j's integers are signed 64-bit)."""

_INT = re.compile(r"^[0-9]+$")
_FLOAT = re.compile(r"^[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?$|^\.[0-9]+(?:[eE][+-]?[0-9]+)?$")


def _coerce(raw: str, ptype: str, pname: str, qname: str) -> Any:
    text = raw.strip()
    if ptype in ("int", "float"):
        # Every numeric parameter of the analyst queries is a count, a size or a window:
        # a non-negative, finite number written in ASCII digits (no sign, no 1e20 for an
        # int, no nan or inf).
        if ptype == "int":
            if not _INT.match(text):
                raise InputError(
                    f"query {qname}: parameter {pname} must be int, not {_shown(raw)} "
                    f"(a whole number from 0 to {INT_MAX})"
                )
            value = int(text)
            if value > INT_MAX:
                raise InputError(
                    f"query {qname}: parameter {pname} must be int, not {_shown(raw)} "
                    f"(at most {INT_MAX})"
                )
            return value
        if not _FLOAT.match(text):
            raise InputError(
                f"query {qname}: parameter {pname} must be float, not {_shown(raw)} "
                "(finite, at least 0)"
            )
        number = float(text)
        if number == float("inf"):
            raise InputError(f"query {qname}: parameter {pname} is too large: {_shown(raw)}")
        return number
    try:
        if ptype == "bool":
            lowered = raw.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(raw)
        if ptype == "list":
            return [part for part in raw.split(",") if part]
    except ValueError:
        raise InputError(
            f"query {qname}: parameter {pname} must be {ptype}, not {_shown(raw)}"
        ) from None
    return raw


def _shown(raw: str, limit: int = 40) -> str:
    """A user's value, quoted, shortened and without control characters, for a message."""
    cut = raw if len(raw) <= limit else raw[:limit] + "..."
    return repr(terminal_text(cut, one_line=True))


def coerce_parameters(name: str, raw: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``--param k=v`` strings into the typed parameters the query ``name`` declares.

    Defaults fill the parameters not given.

    Raises
    ------
    InputError
        Listing every unknown, missing or mistyped parameter at once.
    """
    info = query_info(name)
    declared = {p.name: p for p in info.params}
    problems = [f"unknown parameter {_shown(k)}" for k in raw if k not in declared]
    values: dict[str, Any] = {}
    for param in info.params:
        if param.name in raw:
            try:
                values[param.name] = _coerce(raw[param.name], param.type, param.name, name)
            except InputError as exc:
                problems.append(str(exc).split(": ", 1)[1])
        elif param.required:
            problems.append(f"missing parameter {param.name} ({param.type}): {param.description}")
        else:
            values[param.name] = param.default
    if problems:
        accepted = ", ".join(p.name for p in info.params) or "none"
        raise InputError(f"query {name}: " + "; ".join(problems) + f" (parameters: {accepted})")
    return values


def run_query(
    name: str,
    raw_params: Mapping[str, str] | None = None,
    *,
    runner: QueryRunner | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> QueryResult:
    """Run the stored analyst query ``name`` (read-routed) with ``--param``-style strings.

    Parameters
    ----------
    name : str
        A query from :func:`available_queries`.
    raw_params : mapping of str to str, optional
        Parameter values as text; coerced by :func:`coerce_parameters`.
    runner : QueryRunner, optional
        Default: a runner on :func:`linker.neo4j.runner.resolve_connection`'s server.
    data_dir : path, optional
        The local server's data directory, used when ``runner`` is None and ``NEO4J_URI``
        is unset.

    Returns
    -------
    QueryResult
    """
    from linker.neo4j.runner import QueryRunner, resolve_connection

    if name.startswith("load/"):
        raise LinkerError(f"{name} is a loader query; run `linker neo4j load` instead")
    params = coerce_parameters(name, raw_params or {})
    text = load_query(name)
    if runner is not None:
        return runner.run(text, params)
    with QueryRunner(resolve_connection(data_dir)) as own:
        return own.run(text, params)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "; ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def format_result(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Render rows as ``table`` (aligned text), ``csv`` or ``json`` (a list of objects).

    ``table`` is for a terminal: escape sequences and control characters are removed from
    every cell. ``csv`` is for a spreadsheet: text cells starting with ``=``, ``+``, ``-``,
    ``@``, tab, carriage return or ``'`` get a leading ``'`` (:mod:`linker.cells`); numbers
    are written as they are.

    Examples
    --------
    >>> print(format_result(["a", "b"], [(1, "x")], "csv"), end="")
    a,b
    1,x
    """
    if fmt == "json":
        records = [{c: _jsonable(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    cells = [[_cell(v) for v in row] for row in rows]
    if fmt == "csv":
        # Numbers stay numbers; text cells a spreadsheet would run are neutralised.
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([neutralise_cell(c) for c in columns])
        writer.writerows(
            [
                [
                    c if _numeric(v) else neutralise_cell(c)
                    for v, c in zip(row, cells_row, strict=True)
                ]
                for row, cells_row in zip(rows, cells, strict=True)
            ]
        )
        return buffer.getvalue()
    if fmt != "table":
        raise LinkerError(f"unknown format {fmt!r}: use table, csv or json")
    # For a terminal: no escape sequences or control characters, one line per row.
    columns = [terminal_text(c, one_line=True) for c in columns]
    cells = [[terminal_text(v, one_line=True) for v in row] for row in cells]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.append(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")
    return "\n".join(lines) + "\n"
