"""The run, as a declared list of stages over named artefacts.

``linker run`` is :data:`RUN_STAGES`, run by :func:`linker.engine.run_stages`::

    validate -> normalise -> behaviour -> identifiers -> communities -> signals -> score
             -> proximity -> decide -> export

:data:`LINK_STAGES` is the part that turns validated tables into scored clusters
(:func:`linker.pipeline.link_accounts` runs it in memory). docs/architecture.md draws the
stages, the artefacts each reads and writes, the registries and the seams.
"""

from __future__ import annotations

import dataclasses

from linker.engine.stages import Stage, View
from linker.stages import decisions, evidence, ingest, linking, spark, update

__all__ = ["LINK_STAGES", "RUN_STAGES", "UPDATE_STAGES", "UPDATE_VIEWS", "VIEWS", "stage_names"]

VIEWS: dict[str, View] = dict(linking.LINK_VIEWS)
"""In-memory views stages share, by name."""

_TABLES = ("accounts",)
_EVENTS = ("payments", "events")

RUN_STAGES: tuple[Stage, ...] = (
    Stage(
        "validate",
        reads=(),
        writes=("accounts", "payments", "events", "validation"),
        run=ingest.validate,
        settings=("ingest",),
        doc="check the input tables against the contract; quarantine rejected rows",
    ),
    Stage(
        "normalise",
        reads=_TABLES,
        optional=_EVENTS,
        writes=("observations",),
        run=ingest.normalise,
        engines={"spark": spark.normalise},
        doc="every identifier of every account, normalised (the graph's edges)",
    ),
    Stage(
        "behaviour",
        reads=_TABLES,
        optional=("events",),
        writes=("behaviour", "lockstep", "lockstep_signatures", "event_codes", "event_values"),
        run=linking.behaviour,
        settings=("link",),
        engines={"spark": spark.behaviour},
        doc="per-account behaviour features and lockstep pairs from the events",
    ),
    Stage(
        "identifiers",
        reads=("bipartite",),
        writes=("identifiers", "incidence"),
        run=linking.identifiers,
        settings=("link",),
        doc="evidence weight and public flag of every identifier (the graph's nodes)",
    ),
    Stage(
        "communities",
        reads=("graph", "projection"),
        optional=("lockstep",),
        writes=("communities",),
        run=linking.communities,
        settings=("link",),
        engines={"spark": spark.communities},
        doc="strong-link components contracted, Leiden, weak members pruned",
    ),
    Stage(
        "signals",
        reads=("accounts", "communities", "graph", "projection"),
        optional=("behaviour", "lockstep"),
        writes=("evidence", "cluster_evidence"),
        run=evidence.signals,
        settings=("link",),
        doc="every registered signal's values and score terms",
    ),
    Stage(
        "score",
        reads=("accounts", "communities", "evidence", "cluster_evidence", "graph", "projection"),
        optional=("behaviour", "lockstep"),
        writes=("engine_scores", "engine_clusters", "links"),
        run=evidence.score,
        settings=("link",),
        doc="scores, actions, cluster ids, reasons and the links inside clusters",
    ),
    Stage(
        "proximity",
        reads=("engine_scores",),
        optional=("graph",),
        writes=("proximity", "embeddings"),
        run=decisions.proximity,
        settings=("link", "embed"),
        doc="embedding proximity: unflagged accounts near a flagged cluster go to review",
    ),
    Stage(
        "decide",
        reads=("accounts", "engine_scores", "engine_clusters"),
        optional=("proximity",),
        writes=("scores", "clusters"),
        run=decisions.decide,
        settings=("run",),
        doc="the allow-list; the final scores and clusters",
    ),
    Stage(
        "export",
        reads=("scores",),
        writes=(),
        run=decisions.export,
        settings=("run",),
        doc="the takedown list for the billing system",
    ),
)
"""``linker run``'s stages, in order."""

LINK_STAGES: tuple[Stage, ...] = tuple(
    s
    for s in RUN_STAGES
    if s.name not in ("validate", "normalise", "proximity", "decide", "export")
)
"""From validated tables and observations to scored clusters and links."""


_UPDATED = {
    "validate": update.validate,
    "normalise": update.normalise,
    "behaviour": update.behaviour,
    "identifiers": update.identifiers,
    "communities": update.communities,
}

UPDATE_STAGES: tuple[Stage, ...] = tuple(
    dataclasses.replace(s, run=_UPDATED[s.name], engines={}) if s.name in _UPDATED else s
    for s in RUN_STAGES
)
"""``linker update``'s stages: :data:`RUN_STAGES` with the first five adding the new rows to
a previous run's state (:mod:`linker.stages.update`, docs/incremental.md)."""


UPDATE_VIEWS: dict[str, View] = {**VIEWS, "bipartite": View(("accounts",), update.bipartite)}
"""``linker update``'s views: the incidence matrix is the previous run's, extended with the new
account–identifier pairs (:func:`linker.stages.update.bipartite`)."""


def stage_names() -> tuple[str, ...]:
    """The names of :data:`RUN_STAGES`, in order (``linker run --from``'s choices)."""
    return tuple(s.name for s in RUN_STAGES)
