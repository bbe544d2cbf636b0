"""The project's Neo4j Browser style and guide, served by the local server itself.

``linker neo4j start`` makes Browser open with the project's look and walk-through:

* :func:`style_text` is the shipped GraSS file (``linker/neo4j/browser/linker.grass``):
  accounts captioned with their id and coloured by action (the ``Suspend`` / ``Review``
  labels the loader sets, :data:`linker.neo4j.loader.ACTION_LABELS`), identifiers captioned
  with their value, one colour and size per kind, ``LINKED`` captioned with its weight;
* :func:`guide_html` is a Browser guide (``:play``) generated from ``queries/*.cypher`` on
  every start, so a step's query is always the query file's text (:data:`GUIDE_STEPS`);
* :func:`write_content_jar` puts both into a copy of the Neo4j Browser jar under
  ``browser/linker/``, which the server puts first on its class path: Neo4j serves Browser
  from the class path's ``browser/`` folder, so it then serves the style and the guide too,
  from the same origin as Browser (no other process, no CORS, no network);
* :func:`browser_settings` are the ``neo4j.conf`` lines that make Browser fetch them on
  connect (``browser.post_connect_cmd``; 127.0.0.1 allowed as a remote-content host).
"""

from __future__ import annotations

import hashlib
import html
import os
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linker.errors import EnvironmentProblem
from linker.io.atomic import write_text_atomic
from linker.queries import load_query, query_info

__all__ = [
    "CONTENT_FOLDER",
    "GUIDE_STEPS",
    "GuideStep",
    "browser_settings",
    "guide_html",
    "guide_url",
    "query_body",
    "step_parameters",
    "style_text",
    "style_url",
    "write_content_jar",
]

CONTENT_FOLDER = "browser/linker"
"""Where the style and the guide sit inside the content jar (served at ``/browser/linker/``)."""
GUIDE_FILE = "guide.html"
STYLE_FILE = "linker.grass"
CONTENT_JAR = "browser-content/linker-browser.jar"
"""The content jar, relative to the server's data directory."""
_STAMP = "browser-content/linker-browser.sha256"


@dataclass(frozen=True)
class GuideStep:
    """One slide of the guide: what to look at, and the stored query that shows it."""

    title: str
    lead: str
    text: str
    query: str
    """A name from ``queries/`` (:func:`linker.queries.available_queries`)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Values that differ from the query's declared defaults."""


GUIDE_STEPS: tuple[GuideStep, ...] = (
    GuideStep(
        "1. The top clusters",
        "Where the rings are.",
        "Clusters by score, with how many members the run suspends and sends to review, the "
        "identifiers most members share and the cluster's reasons. Pick one to look at.",
        "top_clusters",
        {"limit": 10, "evidence": 3},
    ),
    GuideStep(
        "2. One ring, drawn",
        "Accounts joined by weighted evidence.",
        "The members of one cluster (red: suspend, amber: review, grey: no action), the LINKED "
        "relationships between them captioned with the run's link weight, and the identifiers "
        "those links cite (payment, mailbox, device, prompt template, IP). A ring is a dense "
        "block of red accounts tied by heavy links through the same few identifiers. With "
        "account_id null it draws the highest-scoring ring; set account_id to draw another.",
        "ring_graph",
    ),
    GuideStep(
        "3. Its evidence",
        "What the members share, and with whom.",
        "The cluster's identifiers ranked by how many members share them, and how many accounts "
        "outside the cluster use them too: high inside and low outside is the ring pattern; a "
        "value many outsiders use (a card BIN, a NAT address) proves little.",
        "cluster_identifiers",
        {"limit": 15},
    ),
    GuideStep(
        "4. Its timeline",
        "Bursts and pivots.",
        "The members in signup order with the minutes since the member before: a ring signs up "
        "in bursts (runs of small gaps) and moves to a new model together.",
        "cluster_timeline",
    ),
    GuideStep(
        "5. Model pivots",
        "Who moved to a new model first.",
        "Accounts that used a model within a day of its first use by anyone: a ring moving its "
        "traffic to a new model right after release shows as a block of one cluster's members.",
        "new_model_adopters",
        {"limit": 50},
    ),
    GuideStep(
        "6. The review queue",
        "Where recall is won.",
        "Accounts tied to a cluster with suspended members that scored below the thresholds, "
        "most shared identifiers first. Check what they share before escalating.",
        "review_queue",
        {"limit": 25},
    ),
)
"""The guide's slides, in order: from the top clusters to one ring, its evidence, its
timeline and the review queue."""


def query_body(name: str) -> str:
    """The query's Cypher without its header comment lines, as it is pasted into Browser."""
    lines = load_query(name).splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("//")).strip()


def _cypher_literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def step_parameters(step: GuideStep) -> str:
    """The Browser command that sets the step's parameters, e.g. ``:params {limit: 10}``.

    Every declared parameter of the query is set (its default unless the step overrides it),
    so a step never runs with a value left over from another. Browser sends the numbers of
    ``:params`` as floats; the queries take ``toInteger()`` of their counts.
    """
    values = {p.name: p.default for p in query_info(step.query).params}
    unknown = set(step.params) - set(values)
    if unknown:
        raise ValueError(f"guide step {step.title!r}: {step.query} has no {sorted(unknown)}")
    values.update(step.params)
    inner = ", ".join(f"{k}: {_cypher_literal(v)}" for k, v in values.items())
    return f":params {{{inner}}}"


def _slide(step: GuideStep) -> str:
    purpose = query_info(step.query).purpose
    params = step_parameters(step)
    return (
        '<slide class="row-fluid">\n'
        '  <div class="col-sm-3">\n'
        f"    <h3>{html.escape(step.title)}</h3>\n"
        f'    <p class="lead">{html.escape(step.lead)}</p>\n'
        "  </div>\n"
        '  <div class="col-sm-9">\n'
        f"    <p>{html.escape(step.text)}</p>\n"
        f'    <p>Set the parameters: <a data-exec="{html.escape(params[1:])}" '
        f'data-linker-step="{step.query}-params">{html.escape(params)}</a></p>\n'
        f"    <p>Then click the query to put it into the editor and run it "
        f"(<code>queries/{step.query}.cypher</code>: {html.escape(purpose)})</p>\n"
        f'    <pre class="pre-scrollable code runnable" data-linker-query="{step.query}">'
        f"{html.escape(query_body(step.query))}</pre>\n"
        "  </div>\n"
        "</slide>\n"
    )


def guide_html(steps: tuple[GuideStep, ...] = GUIDE_STEPS) -> str:
    """The Browser guide: one slide per step, each with its parameters and query.

    Returns
    -------
    str
        An HTML fragment in Browser's guide format (``<article class="guide">`` with one
        ``<slide>`` per step; ``pre.runnable`` blocks go into the editor when clicked, and
        ``data-exec`` links run their command).
    """
    slides = "".join(_slide(step) for step in steps)
    return (
        '<article class="guide">\n'
        '<carousel class="deck container-fluid">\n'
        f"{slides}"
        "</carousel>\n"
        "</article>\n"
    )


def style_text() -> str:
    """The shipped GraSS style (``linker/neo4j/browser/linker.grass``)."""
    return (Path(__file__).resolve().parent / "browser" / STYLE_FILE).read_text(encoding="utf-8")


def style_url(http_port: int) -> str:
    """Where the server serves the style: ``http://127.0.0.1:PORT/browser/linker/linker.grass``."""
    return f"http://127.0.0.1:{http_port}/{CONTENT_FOLDER}/{STYLE_FILE}"


def guide_url(http_port: int) -> str:
    """Where the server serves the guide: ``http://127.0.0.1:PORT/browser/linker/guide.html``."""
    return f"http://127.0.0.1:{http_port}/{CONTENT_FOLDER}/{GUIDE_FILE}"


def browser_settings(http_port: int) -> list[str]:
    """The ``neo4j.conf`` lines that make Browser apply the style and open the guide.

    Browser runs ``browser.post_connect_cmd`` after connecting (commands separated by ``;``,
    each without its leading colon) and fetches remote content only from the hosts in
    ``browser.remote_content_hostname_whitelist``. Browser's usage statistics are turned off
    (``client.allow_telemetry``): an analyst's machine may have no network. (Neo4j 5.26 no
    longer declares ``browser.allow_outgoing_connections``; it refuses to start with it.)
    """
    return [
        f"browser.post_connect_cmd=style {style_url(http_port)}; play {guide_url(http_port)}",
        "browser.remote_content_hostname_whitelist=127.0.0.1,localhost",
        "client.allow_telemetry=false",
    ]


def write_content_jar(home: Path, browser_jar: Path) -> Path:
    """Write ``<home>/browser-content/linker-browser.jar``: Browser plus the style and guide.

    Parameters
    ----------
    home : Path
        The server's data directory.
    browser_jar : Path
        The ``neo4j-browser`` jar of the provisioned jars.

    Returns
    -------
    Path
        The jar, rewritten only when the Browser jar, the style or the guide changed.

    Raises
    ------
    EnvironmentProblem
        When the Browser jar is missing.

    Notes
    -----
    O(size of the Browser jar) when rewritten (a file copy and an appended entry or two).
    """
    if not browser_jar.is_file():
        raise EnvironmentProblem(f"{browser_jar}: the Neo4j Browser jar is missing")
    guide, style = guide_html(), style_text()
    info = browser_jar.stat()
    digest = hashlib.sha256(
        f"{browser_jar.name}:{info.st_size}:{info.st_mtime_ns}\n{style}\n{guide}".encode()
    ).hexdigest()
    target, stamp = home / CONTENT_JAR, home / _STAMP
    if target.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8") == digest:
        return target
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = target.with_suffix(".tmp")
    shutil.copyfile(browser_jar, staging)
    with zipfile.ZipFile(staging, "a", compression=zipfile.ZIP_DEFLATED) as jar:
        jar.writestr(f"{CONTENT_FOLDER}/", b"")
        jar.writestr(f"{CONTENT_FOLDER}/{GUIDE_FILE}", guide.encode("utf-8"))
        jar.writestr(f"{CONTENT_FOLDER}/{STYLE_FILE}", style.encode("utf-8"))
    os.chmod(staging, 0o600)
    os.replace(staging, target)
    write_text_atomic(stamp, digest)
    return target
