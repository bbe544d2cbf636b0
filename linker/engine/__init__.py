"""The run engine: stages over named artefacts, the store and the compute seam."""

from linker.engine.compute import ENGINES, ComputeEngine, LocalEngine, engine_named
from linker.engine.stages import RunContext, Stage, StageReport, View, run_stages
from linker.engine.store import CATALOGUE, ArtefactStore, MemoryStore, RunDirectory

__all__ = [
    "CATALOGUE",
    "ENGINES",
    "ArtefactStore",
    "ComputeEngine",
    "LocalEngine",
    "MemoryStore",
    "RunContext",
    "RunDirectory",
    "Stage",
    "StageReport",
    "View",
    "engine_named",
    "run_stages",
]
