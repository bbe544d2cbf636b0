"""The Spark engine: the heavy table stages as Spark DataFrame jobs (docs/scale.md).

:class:`SparkEngine` is a :class:`~linker.engine.compute.ComputeEngine` named ``spark``. A stage
with an implementation in ``Stage.engines["spark"]`` runs it (``behaviour`` today:
:mod:`linker.stages.spark`); every other stage runs its embedded implementation on the
artefacts, which cross the seam by name through the store as Arrow tables. The session is
built from the ``[spark]`` settings (:class:`~linker.settings.SparkSettings`) on first use;
a session that is already running (``spark-submit``, a notebook, the test suite's) is reused.

``pyspark`` is an optional dependency (``pip install 'linker[spark]'``): it is imported only
here, when the engine is built.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from linker.engine.compute import ComputeEngine
from linker.errors import InputError

if TYPE_CHECKING:
    from linker.settings import SparkSettings

__all__ = ["SparkEngine", "pyspark_available"]

logger = logging.getLogger(__name__)


def pyspark_available() -> bool:
    """Whether ``pyspark`` can be imported (the ``spark`` extra is installed)."""
    return importlib.util.find_spec("pyspark") is not None


class SparkEngine(ComputeEngine):
    """Runs the stages that have a Spark implementation on a Spark session.

    Parameters
    ----------
    settings : SparkSettings
        Master, application name, shuffle partitions and further configuration keys.

    Raises
    ------
    InputError
        When ``pyspark`` is not installed (one line: install ``linker[spark]``).
    """

    name = "spark"

    def __init__(self, settings: SparkSettings) -> None:
        if not pyspark_available():
            raise InputError("--engine spark needs pyspark: install linker[spark]")
        self.settings = settings
        self._session: Any = None

    def session(self) -> Any:
        """The Spark session, built on first use (an active session is reused)."""
        if self._session is None:
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
            if active is not None:
                logger.info("spark: reusing the active session (%s)", active.sparkContext.master)
                self._session = active
            else:
                # Python workers (the normalisers, per-component Leiden) run this
                # interpreter, with linker and pyarrow, unless the environment says otherwise.
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
                builder = (
                    SparkSession.builder.master(self.settings.master)
                    .appName(self.settings.app_name)
                    .config("spark.ui.showConsoleProgress", "false")
                )
                for key, value in sorted(self.settings.conf.items()):
                    builder = builder.config(key, value)
                logger.info("spark: starting a session on %s", self.settings.master)
                self._session = builder.getOrCreate()
            partitions = str(self.settings.shuffle_partitions)
            self._session.conf.set("spark.sql.shuffle.partitions", partitions)
            # Epoch seconds and hours of day are UTC whatever the machine's zone; results
            # come back to the driver as Arrow batches.
            self._session.conf.set("spark.sql.session.timeZone", "UTC")
            self._session.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
        return self._session
