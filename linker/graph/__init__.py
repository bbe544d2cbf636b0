"""Graph algorithms of the linking engine, as pure functions (see docs/linking.md)."""

from __future__ import annotations

from linker.graph.bipartite import Bipartite, build_bipartite, subgraph_to_networkx
from linker.graph.link import LinkResult, link_accounts

__all__ = [
    "Bipartite",
    "LinkResult",
    "build_bipartite",
    "link_accounts",
    "subgraph_to_networkx",
]
