"""The compute seam: which engine runs a stage.

A stage (:class:`~linker.engine.stages.Stage`) has one implementation for the embedded engine
(numpy, pandas, pyarrow and igraph in this process) and may have others, keyed by engine name
in ``Stage.engines``. A :class:`ComputeEngine` picks the implementation of each stage; a stage
that has none for it runs the embedded implementation on the artefacts as Arrow tables, so a
second engine can take over the heavy table stages one at a time without touching their
neighbours. This is Splink's ``DatabaseAPI`` and ibis' ``BaseBackend`` idea at the size the
project needs: artefacts cross the seam by name, through the store, as Arrow/Parquet tables.
"""

from __future__ import annotations

import logging
from abc import ABC
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from linker.engine.stages import Stage, StageFunction
    from linker.settings import Settings

__all__ = ["ENGINES", "ComputeEngine", "LocalEngine", "engine_named"]

logger = logging.getLogger(__name__)


class ComputeEngine(ABC):
    """Chooses each stage's implementation.

    Subclasses set :attr:`name`; a stage's ``engines[name]`` then replaces its embedded
    implementation when this engine runs it.
    """

    name: ClassVar[str]

    def implementation(self, stage: Stage) -> StageFunction:
        """The function that runs ``stage`` on this engine."""
        own = stage.engines.get(self.name)
        if own is None:
            logger.debug("stage %s: embedded implementation on engine %s", stage.name, self.name)
            return stage.run
        return own


class LocalEngine(ComputeEngine):
    """The embedded engine: every stage runs its default implementation in this process."""

    name = "local"


ENGINES: tuple[str, ...] = ("local", "spark")
"""The compute engines ``linker run --engine`` offers."""


def engine_named(name: str, settings: Settings) -> ComputeEngine:
    """The compute engine called ``name`` (:data:`ENGINES`), configured from ``settings``.

    Raises
    ------
    InputError
        When no engine has that name, or the Spark engine's ``pyspark`` is not installed.
    """
    from linker.errors import InputError

    if name == "local":
        return LocalEngine()
    if name == "spark":
        from linker.engine.spark import SparkEngine

        return SparkEngine(settings.spark)
    raise InputError(f"no compute engine {name!r} (engines: {', '.join(ENGINES)})")
