"""A small synthetic world, its run and its ring report, shared by the report tests."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from linker.cli import cli
from linker.synth import generate_world

ACCOUNTS = 1500
SEED = 7


def build_run(root: Path) -> Path:
    """``linker synth`` (small) then ``linker run``: the run directory."""
    world = root / "world"
    generate_world(ACCOUNTS, SEED, world)
    result = CliRunner().invoke(cli, ["run", str(world), "--out", str(root / "takedown.csv")])
    assert result.exit_code == 0, result.output
    return root / "takedown.run"


def figures(page: str) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Every Plotly chart on the page: its div id -> (traces, layout), read back from the
    ``Plotly.newPlot`` calls."""
    decoder = json.JSONDecoder()
    found = {}
    for match in re.finditer(r"Plotly\.newPlot\(\s*", page):
        chart_id, end = decoder.raw_decode(page, match.end())
        end = re.compile(r"\s*,\s*").match(page, end).end()  # type: ignore[union-attr]
        traces, end = decoder.raw_decode(page, end)
        end = re.compile(r"\s*,\s*").match(page, end).end()  # type: ignore[union-attr]
        layout, _ = decoder.raw_decode(page, end)
        found[chart_id] = (traces, layout)
    return found


class _Tables(HTMLParser):
    """The member tables' rows by cluster (``section data-cluster``)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.headers: dict[str, list[str]] = {}
        self._cluster: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section" and values.get("data-cluster"):
            self._cluster = values["data-cluster"]
            self.rows[self._cluster] = []
            self.headers[self._cluster] = []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self._cluster is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._cluster is not None:
            if self._in_head:
                self.headers[self._cluster] = self._row
            else:
                self.rows[self._cluster].append(self._row)
            self._row = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "section":
            self._cluster = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def member_tables(page: str) -> tuple[dict[str, list[str]], dict[str, list[list[str]]]]:
    """The header and the rows of each cluster's member table."""
    parser = _Tables()
    parser.feed(page)
    return parser.headers, parser.rows
