"""linker: graph-based linking of fraudulent API accounts.

The library is the product; :mod:`linker.cli` is a thin click layer over it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("linker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from linker.io.validate import validate_dataset
from linker.observations import build_observations
from linker.pipeline import cluster_graph, link_accounts
from linker.synth import WorldSummary, generate_world

__all__ = [
    "WorldSummary",
    "__version__",
    "build_observations",
    "cluster_graph",
    "generate_world",
    "link_accounts",
    "validate_dataset",
]
