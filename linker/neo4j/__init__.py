"""Neo4j: the local server (:mod:`.server`), the query runner (:mod:`.runner`), the loader
(:mod:`.loader`) and credential redaction for messages and logs (:mod:`.redact`).

Importing this package does not import the ``neo4j`` driver; the submodules that talk to a
server do.
"""

from __future__ import annotations

__all__: list[str] = []
