"""Graph algorithms of the linking engine, as pure functions (see docs/linking.md)."""

from __future__ import annotations

from linker.graph.bipartite import Bipartite, build_bipartite, subgraph_to_networkx

__all__ = ["Bipartite", "build_bipartite", "subgraph_to_networkx"]
