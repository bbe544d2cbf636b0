"""``linker expand``: rank accounts by their similarity and shared evidence with confirmed ones.

Given accounts an analyst confirmed (the seeds), :func:`expand` embeds the account–identifier
graph around them with FastRP (:func:`~linker.graph.proximity.embed_accounts`) and ranks every
other embedded account by a hybrid score: half its mean cosine similarity to its nearest
seeds, half the rarity-weighted identifier evidence it shares with the whole seed set
(:func:`~linker.graph.proximity.seed_evidence`, squashed to [0, 1)). Each row says why: the
nearest confirmed accounts, the non-supernode identifiers it shares with them, and both parts
of the score.

Which run it uses (:func:`resolve_run`):

1. ``source`` is a run directory (it holds ``manifest.json``): that run.
2. ``run_dir`` is given: the run there if its manifest's ``data_dir`` is ``source`` and its
   input files still have the recorded SHA-256; otherwise ``linker run`` writes a fresh run
   there.
3. Otherwise the first run directory directly under the working directory (``<DATA_DIR
   name>.run`` first, then the others by name) whose manifest matches ``source`` the same
   way; failing that, ``linker run`` writes a fresh run into ``<DATA_DIR name>.run`` in the
   working directory.
"""

from __future__ import annotations

import csv
import gzip
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linker.analyst import confirmed_accounts, load_decisions, resolve_decisions
from linker.cells import neutralise_columns
from linker.engine import RunDirectory
from linker.errors import InputError
from linker.graph.bipartite import IdentifierGraph, identifier_graph
from linker.graph.proximity import (
    AccountEmbedding,
    embed_accounts,
    seed_evidence,
    shared_identifiers,
)
from linker.io.atomic import atomic_path
from linker.io.files import file_sha256
from linker.settings import Settings

__all__ = [
    "EXPAND_COLUMNS",
    "expand",
    "is_decisions_file",
    "read_seeds",
    "resolve_run",
    "write_ranked",
]

logger = logging.getLogger(__name__)

EXPAND_COLUMNS: tuple[str, ...] = ("account_id", "score", "reasons")
"""The columns of ``ranked.csv``, in file order."""

NEAREST_SEEDS = 3
"""How many nearest seeds a score averages over and a reason names."""

EMBEDDING_SHARE = 0.5
"""The cosine part's share of the score; the shared-identifier evidence has the rest."""

EVIDENCE_HALF = 1.0
"""Evidence that counts half of its part: ``evidence / (evidence + EVIDENCE_HALF)``."""

SCORE_DECIMALS = 4


def _run_matches(run_dir: Path, data_dir: Path) -> bool:
    """Whether ``run_dir`` is a finished run of ``data_dir``'s current files."""
    if not RunDirectory.is_run(run_dir):
        return False
    try:
        manifest = RunDirectory(run_dir).read_json("manifest")
    except InputError:
        return False
    if not isinstance(manifest, dict) or manifest.get("data_dir") != str(data_dir.resolve()):
        return False
    inputs = manifest.get("inputs") or {}
    for name, info in inputs.items():
        path = data_dir / name
        if not path.is_file() or file_sha256(path) != info.get("sha256"):
            logger.info("%s: %s changed since the run, not reusing it", run_dir, name)
            return False
    return bool(inputs)


def resolve_run(
    source: str | Path,
    *,
    run_dir: str | Path | None = None,
    settings: Settings | None = None,
    cwd: str | Path | None = None,
) -> Path:
    """The run directory of ``source``: reused when one matches, else computed.

    Parameters
    ----------
    source : str or Path
        A run directory, or a dataset directory.
    run_dir : str or Path, optional
        Where the run of a dataset directory is (or goes).
    settings : Settings, optional
        Settings of a fresh run.
    cwd : str or Path, optional
        Where to look for saved runs (default: the working directory).

    Returns
    -------
    Path
        A finished run directory.

    Raises
    ------
    InputError
        When ``source`` does not exist, or the run fails on its input.

    Notes
    -----
    Checking a saved run hashes the dataset's files: O(bytes of input).
    """
    source = Path(source)
    if RunDirectory.is_run(source):
        return source
    if not source.is_dir():
        raise InputError(f"{source}: no such data directory or run directory")
    if run_dir is not None:
        target = Path(run_dir)
        if _run_matches(target, source):
            return target
    else:
        base = Path(cwd) if cwd is not None else Path.cwd()
        preferred = base / f"{source.resolve().name}.run"
        others = sorted(p for p in base.iterdir() if p.is_dir() and RunDirectory.is_run(p))
        for candidate in [preferred, *[p for p in others if p != preferred]]:
            if _run_matches(candidate, source):
                logger.info("reusing the run at %s", candidate)
                return candidate
        target = preferred
    from linker.pipeline import run

    logger.info("no saved run of %s: running the pipeline into %s", source, target)
    run(source, target / "takedown.csv", run_dir=target, settings=settings)
    return target


def read_seeds(path: str | Path) -> list[str]:
    """The ``account_id`` column of a CSV file of confirmed accounts, in file order, deduplicated.

    Raises
    ------
    InputError
        When the file is unreadable, has no ``account_id`` column or has an empty id (the
        message names the file, the row and the column).
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "account_id" not in reader.fieldnames:
                found = ", ".join(reader.fieldnames or []) or "none"
                raise InputError(f"{path}: no account_id column (columns: {found})")
            ids: list[str] = []
            for number, row in enumerate(reader, start=2):
                value = (row.get("account_id") or "").strip()
                if not value:
                    raise InputError(f"{path}: row {number}: column account_id: empty account id")
                ids.append(value)
    except OSError as exc:
        raise InputError(f"{path}: cannot read seeds file ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    if not ids:
        raise InputError(f"{path}: no account ids (column account_id is empty)")
    return list(dict.fromkeys(ids))


def _seed_list(seeds: str | Path | Iterable[str]) -> tuple[list[str], str | None]:
    """The distinct seed ids in order, and the file they came from (None when given in code)."""
    if isinstance(seeds, str | Path):
        return read_seeds(seeds), str(seeds)
    seed_ids = list(dict.fromkeys(str(s) for s in seeds))
    if not seed_ids:
        raise InputError("no seed accounts given")
    return seed_ids, None


def _seed_rows(
    ids: np.ndarray, seed_ids: list[str], seed_file: str | None, run_root: Path
) -> np.ndarray:
    """Rows of ``seed_ids`` among the run's account ``ids``.

    Raises InputError naming the first unknown seed (with its file, row and column when the
    seeds came from a file) and how many are unknown.
    """
    position = pd.Series(np.arange(len(ids)), index=ids)
    known = pd.Index(ids)
    unknown = [s for s in seed_ids if s not in known]
    if unknown:
        where = f"{seed_file}: " if seed_file else ""
        row = ""
        if seed_file:
            row = f"row {_first_row(seed_file, unknown[0])}: column account_id: "
        raise InputError(
            f"{where}{row}{unknown[0]!r} is not an account of the run at {run_root} "
            f"({len(unknown)} unknown id{'s' if len(unknown) > 1 else ''})"
        )
    return position.loc[seed_ids].to_numpy(dtype=np.int64)


def _seeds_and_candidates(
    embedding: AccountEmbedding, seed_rows: np.ndarray, is_seed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``embedding`` of the embedded seeds, and of the accounts to rank.

    The accounts to rank are the embedded non-seeds whose vector is not zero (an account with
    no linking identifier has no direction to compare).
    """
    rows, unit = embedding.rows, embedding.vectors
    at = {int(r): k for k, r in enumerate(rows)}
    seed_at = np.array([at[int(r)] for r in seed_rows if int(r) in at], dtype=np.int64)
    candidates = np.flatnonzero(~is_seed[rows] & (np.abs(unit).sum(axis=1) > 0))
    return seed_at, candidates


def _embed_around_seeds(
    graph: IdentifierGraph, is_seed: np.ndarray, settings: Settings
) -> AccountEmbedding:
    """The embedding ``settings`` choose (FastRP or node2vec) of the seeds' neighbourhood."""
    return embed_accounts(
        graph,
        is_seed,
        dimensions=settings.link.embedding.dimensions,
        hops=settings.embed.hops,
        whole_graph_max_nodes=settings.embed.whole_graph_max_nodes,
        node2vec=settings.embed if settings.embed.method == "node2vec" else None,
        seed=settings.seed,
    )


def expand(
    source: str | Path,
    seeds: str | Path | Iterable[str],
    *,
    top: int,
    settings: Settings | None = None,
    run_dir: str | Path | None = None,
    out: str | Path | None = None,
) -> pd.DataFrame:
    """Rank the accounts most similar to confirmed ones, with reasons.

    Parameters
    ----------
    source : str or Path
        A dataset directory or a run directory (see :func:`resolve_run` for which run is
        used).
    seeds : str, Path or iterable of str
        A CSV file with an ``account_id`` column, or the account ids, or an analysts'
        decisions file (:mod:`linker.analyst`; it has a ``decision`` column): its confirmed
        accounts, and the members of its confirmed clusters at the time of the decision.
    top : int
        The most rows returned.
    settings : Settings, optional
        ``link`` (super-node thresholds), ``embed.method`` (``fastrp``, with
        ``link.embedding.dimensions``, or ``node2vec``, with the rest of ``embed``),
        ``embed.hops``, ``embed.whole_graph_max_nodes`` and ``seed``; defaults when omitted.
    run_dir : str or Path, optional
        The run directory of a dataset directory.
    out : str or Path, optional
        Also write the ranking there as CSV, atomically.

    Returns
    -------
    pandas.DataFrame
        :data:`EXPAND_COLUMNS`, best first: score descending (rounded to 4 decimals), then
        account_id. The score is ``EMBEDDING_SHARE`` times the mean cosine similarity to
        the ``NEAREST_SEEDS`` nearest seeds plus the rest times ``E / (E + EVIDENCE_HALF)``,
        ``E`` the rarity-weighted evidence of identifiers shared with the seed set
        (:func:`~linker.graph.proximity.seed_evidence`, weights as in the linking
        engine). Seeds are left out.

    Raises
    ------
    InputError
        When the seeds file is malformed or names accounts not in the run (the message
        names the file, row and column), or ``top`` is below 1.

    Notes
    -----
    FastRP (or node2vec) on the seeds' candidate subgraph, O(edges · dimensions), then
    O(candidates · seeds · dimensions) for the similarities and O(edges) for the evidence.
    The result is identical for the same run, seeds and settings.

    Examples
    --------
    >>> ranked = expand("world/", "confirmed.csv", top=100)  # doctest: +SKIP
    >>> list(ranked.columns)  # doctest: +SKIP
    ['account_id', 'score', 'reasons']
    """
    if top < 1:
        raise InputError(f"top must be at least 1, not {top}")
    settings = (settings or Settings()).validate()
    from_decisions = isinstance(seeds, str | Path) and is_decisions_file(seeds)
    if not from_decisions:
        seed_ids, seed_file = _seed_list(seeds)
    store = RunDirectory.open(resolve_run(source, run_dir=run_dir, settings=settings))
    if from_decisions:
        seed_ids, seed_file = _decision_seeds(Path(str(seeds)), store, settings), None
    graph = identifier_graph(
        store.read("accounts", columns=["account_id"])["account_id"].astype("string"),
        store.read("observations"),
        store.read("identifiers"),
    )
    bipartite = graph.bipartite
    seed_rows = _seed_rows(bipartite.account_ids.astype(str), seed_ids, seed_file, store.root)
    is_seed = np.zeros(len(bipartite.account_ids), dtype=bool)
    is_seed[seed_rows] = True
    embedding = _embed_around_seeds(graph, is_seed, settings)
    rows, unit = embedding.rows, embedding.vectors
    seed_at, candidates = _seeds_and_candidates(embedding, seed_rows, is_seed)
    linking = graph.linkable
    evidence = seed_evidence(bipartite, seed_rows, rows[candidates], graph.weights, linking)
    frame = _ranked(bipartite, linking, rows, unit, seed_at, candidates, evidence, top)
    if out is not None:
        write_ranked(frame, out)
    return frame


def is_decisions_file(path: str | Path) -> bool:
    """Whether ``path`` is an analysts' decisions file (it has a ``decision`` column;
    :mod:`linker.analyst`) rather than a plain list of seeds."""
    path = Path(path)
    try:
        if path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return "decision" in pq.read_schema(path).names
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error, ValueError):
        return False  # read_seeds reports it
    return "decision" in [h.strip() for h in header]


def _decision_seeds(path: Path, store: RunDirectory, settings: Settings) -> list[str]:
    """The confirmed accounts of a decisions file (confirmed clusters: their members at the
    time of the decision), resolved against the run; decisions on accounts the run does not
    have are reported, not fatal."""
    decisions = load_decisions(path, settings=settings.ingest)
    scores = store.read("scores", columns=["account_id", "cluster_id"])
    accounts = store.read("accounts", columns=["account_id", "created_at"])
    seeds = confirmed_accounts(resolve_decisions(decisions, scores, accounts))
    if not seeds:
        raise InputError(f"{path}: no confirmed account of this run to expand from")
    logger.info("%s: %d confirmed accounts as seeds", path, len(seeds))
    return seeds


def _first_row(path: str, account_id: str) -> int:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            if (row.get("account_id") or "").strip() == account_id:
                return number
    return 0


def _ranked(
    bipartite: Any,
    linking: np.ndarray,
    rows: np.ndarray,
    unit: np.ndarray,
    seed_at: np.ndarray,
    candidates: np.ndarray,
    evidence: np.ndarray,
    top: int,
) -> pd.DataFrame:
    empty = pd.DataFrame({"account_id": [], "score": [], "reasons": []}).astype(
        {"account_id": "string", "score": "float64", "reasons": "string"}
    )
    if len(seed_at) == 0 or len(candidates) == 0:
        return empty
    k = min(NEAREST_SEEDS, len(seed_at))
    seed_vectors = unit[seed_at].astype(np.float64)
    similarity = unit[candidates].astype(np.float64) @ seed_vectors.T
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    near_sim = np.take_along_axis(similarity, nearest, axis=1)
    cosine = near_sim.mean(axis=1)
    squashed = evidence / (evidence + EVIDENCE_HALF)
    score = np.round(EMBEDDING_SHARE * cosine + (1.0 - EMBEDDING_SHARE) * squashed, SCORE_DECIMALS)
    cand_ids = bipartite.account_ids[rows[candidates]].astype(str)
    order = np.lexsort((cand_ids, -score))[:top]
    seed_ids = bipartite.account_ids[rows[seed_at]].astype(str)
    reasons = []
    for i in order:
        names = [f"{seed_ids[j]} ({near_sim[i, n]:.3f})" for n, j in enumerate(nearest[i])]
        shared_parts = []
        for j in nearest[i]:
            shared = shared_identifiers(
                bipartite, linking, int(rows[candidates[i]]), np.array([rows[seed_at[j]]])
            )
            if shared:
                shared_parts.append(f"{', '.join(shared)} with {seed_ids[j]}")
        text = "nearest confirmed: " + ", ".join(names)
        text += (
            "; shares " + "; ".join(shared_parts)
            if shared_parts
            else ("; no identifier shared directly with them")
        )
        text += f"; cosine {cosine[i]:.3f}, shared-identifier evidence {evidence[i]:.3f}"
        reasons.append(text)
    return pd.DataFrame(
        {
            "account_id": pd.array(cand_ids[order], dtype="string"),
            "score": score[order].astype(np.float64),
            "reasons": pd.array(reasons, dtype="string"),
        }
    )


def write_ranked(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write a ranking from :func:`expand` as CSV (UTF-8, ``\\n``), atomically; text cells
    that a spreadsheet would read as a formula are neutralised (:mod:`linker.cells`).

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    text = neutralise_columns(frame[list(EXPAND_COLUMNS)], ("account_id", "reasons"))
    text["score"] = frame["score"].map(lambda x: f"{x:.{SCORE_DECIMALS}f}")
    with atomic_path(out) as tmp:
        text.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
    logger.info("wrote %s (%d rows)", out, len(frame))
    return out
