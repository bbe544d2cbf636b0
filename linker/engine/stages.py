"""Stages over named artefacts, and the loop that runs them.

A :class:`Stage` declares its name, the artefacts it reads, the artefacts it writes and its
function. A run is a declared list of stages (``linker.stages.RUN_STAGES``); :func:`run_stages`
runs them in order against a :class:`RunContext`, which reads artefacts through the store
(:mod:`linker.engine.store`) and keeps each one in memory only until the last stage that
reads it has run. Every stage is timed and its peak memory measured; the report of each goes
into the run's manifest with the SHA-256 of every artefact it read and wrote and the settings
sections it used. A run can start at any stage (``linker run --from STAGE``) when the
artefacts that the earlier stages wrote are in the store.

*Views* are in-memory objects derived deterministically from artefacts (the sparse
account–identifier matrix, for instance): they are built on first use and dropped, like
artefacts, after their last reader.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import resource
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from linker.engine.compute import ComputeEngine, LocalEngine
from linker.engine.store import CATALOGUE, Appended, ArtefactStore, Digest, Filter
from linker.errors import InputError, LinkerError
from linker.progress import progress

if TYPE_CHECKING:
    from linker.settings import Settings

__all__ = [
    "RunContext",
    "Stage",
    "StageFunction",
    "StageReport",
    "View",
    "resident_bytes",
    "run_stages",
]

logger = logging.getLogger(__name__)

StageFunction = Callable[["RunContext"], Mapping[str, Any]]
"""A stage's work: reads through the context, returns its artefacts by name."""


@dataclass(frozen=True)
class Stage:
    """One step of a run.

    Attributes
    ----------
    name : str
        The stage's name (``linker run --from NAME``).
    reads : tuple of str
        Artefacts and views the stage needs.
    writes : tuple of str
        Artefacts it returns (each in :data:`~linker.engine.store.CATALOGUE`).
    run : StageFunction
        The embedded engine's implementation.
    settings : tuple of str
        Settings sections it uses, recorded in the manifest (``link``, ``ingest`` ...).
    optional : tuple of str
        Artefacts it reads when they exist (``payments``, ``events``).
    engines : mapping of str to StageFunction
        Implementations on other compute engines (:mod:`linker.engine.compute`), by name.
    doc : str
        One line on what it does.
    """

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    run: StageFunction
    settings: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    engines: Mapping[str, StageFunction] = field(default_factory=dict)
    doc: str = ""

    def needs(self) -> tuple[str, ...]:
        """Everything the stage may read."""
        return (*self.reads, *self.optional)


@dataclass(frozen=True)
class View:
    """An in-memory object built from artefacts (never stored)."""

    reads: tuple[str, ...]
    build: Callable[[RunContext], Any]


@dataclass(frozen=True)
class StageReport:
    """What one stage did: the manifest's record of it."""

    name: str
    seconds: float
    peak_rss_bytes: int | None
    reads: dict[str, str]
    writes: dict[str, str]
    settings: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)
    """What the stage noted about its work (row counts, ...; :meth:`RunContext.note`)."""
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return dataclasses.asdict(self)


class RunContext:
    """What a stage sees: settings, the store, artefacts, views and the run's inputs.

    Parameters
    ----------
    settings : Settings
    store : ArtefactStore
    views : mapping of str to View
        The views stages may ask for by name.
    engine : ComputeEngine, optional
        Which implementation of each stage runs (default: the embedded engine).
    inputs : mapping, optional
        What the run was given beyond settings (``data_dir``, an allow-list ...).
    """

    def __init__(
        self,
        settings: Settings,
        store: ArtefactStore,
        views: Mapping[str, View] | None = None,
        *,
        engine: ComputeEngine | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.views = dict(views or {})
        self.engine = engine or LocalEngine()
        self.inputs: dict[str, Any] = dict(inputs or {})
        self._cache: dict[str, Any] = {}
        self._hashes: dict[str, str | Digest] = {}
        self.facts: dict[str, dict[str, Any]] = {}
        self.stage: str | None = None
        """The stage running now."""
        self.needed_later: set[str] | None = None
        """What the stages after the running one may read (``None``: unknown, keep all)."""

    def note(self, **facts: Any) -> None:
        """Record facts about the running stage's work (they go into its manifest record)."""
        self.facts.setdefault(self.stage or "", {}).update(facts)

    @property
    def seed(self) -> int:
        """The run's seed."""
        return int(self.settings.seed)

    def has(self, name: str) -> bool:
        """Whether artefact ``name`` exists (in memory or in the store)."""
        return name in self._cache or self.store.has(name)

    def frame(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        filters: Sequence[Filter] | None = None,
    ) -> pd.DataFrame:
        """Artefact ``name`` as a pandas DataFrame (from memory when a stage just wrote it)."""
        if name in self._cache:
            value = self._cache[name]
            frame = value.to_pandas() if isinstance(value, pa.Table) else value
            if filters:
                for column, op, wanted in filters:
                    keep = [wanted] if op == "==" else list(wanted)
                    frame = frame[frame[column].isin(keep).to_numpy(dtype=bool)]
            return frame[list(columns)] if columns is not None else frame
        frame = self.store.read(name, columns=columns, filters=filters)
        if columns is None and not filters:
            self._cache[name] = frame
        return frame

    def table(self, name: str) -> pa.Table:
        """Artefact ``name`` as an Arrow table (the compute seam's currency)."""
        value = self._cache.get(name)
        if isinstance(value, pa.Table):
            return value
        return pa.Table.from_pandas(self.frame(name), preserve_index=False)

    def optional_frame(self, name: str) -> pd.DataFrame | None:
        """Artefact ``name``, or ``None`` when the run has none."""
        return self.frame(name) if self.has(name) else None

    def view(self, name: str) -> Any:
        """View ``name``, built on first use."""
        if name not in self._cache:
            try:
                spec = self.views[name]
            except KeyError:
                raise LinkerError(f"unknown view {name!r}") from None
            self._cache[name] = spec.build(self)
        return self._cache[name]

    def put(self, name: str, value: Any) -> None:
        """Keep artefact ``name`` for later stages and write it to the store.

        A table may be written in the background (:meth:`ArtefactStore.write_behind`): the
        stage that returned ``value`` and every later stage must leave it unmodified (they
        share it through this context anyway). :meth:`hash_of` gives its content hash once
        written.
        """
        if name not in CATALOGUE:
            raise LinkerError(f"stage wrote unknown artefact {name!r}")
        if isinstance(value, Appended):
            self._cache.pop(name, None)  # later readers get the union from the store
        else:
            self._cache[name] = value
        if isinstance(value, dict):
            self.store.write_json(name, value)
            self._hashes[name] = ""
        else:
            self._hashes[name] = self.store.write_behind(name, value)

    def hash_of(self, name: str) -> str:
        """The content hash recorded when ``name`` was written (``""`` when unknown); waits
        for a background write."""
        digest = self._hashes.get(name, "")
        if callable(digest):
            digest = digest()
            self._hashes[name] = digest
        return digest

    def remember_hashes(self, hashes: Mapping[str, str]) -> None:
        """Hashes of artefacts an earlier run wrote (a run resumed with ``--from``)."""
        self._hashes.update(hashes)

    def release(self, *names: str) -> None:
        """Drop in-memory copies that no later stage reads, before the running stage ends.

        A stage that has turned a large artefact into what it needs (the events into integer
        codes) calls this so that the artefact does not stay in memory beside its successor
        until the stage returns.
        """
        if self.needed_later is not None:
            self.drop([n for n in names if n not in self.needed_later])

    def drop(self, names: Sequence[str]) -> None:
        """Forget in-memory copies (the store keeps its own)."""
        for name in names:
            self._cache.pop(name, None)

    def cached(self) -> tuple[str, ...]:
        """Names held in memory."""
        return tuple(self._cache)


class _PeakMemory:
    """The peak resident memory of this process while a stage runs, sampled.

    A thread reads the resident set size from ``/proc/self/statm`` every 20 ms and keeps the
    largest. The kernel's own high-water mark (``VmHWM``) cannot be used per stage: resetting
    it (``clear_refs``) also resets what ``getrusage`` and ``/usr/bin/time -v`` report, which
    would hide the run's real peak from anyone measuring it. Where ``/proc`` is absent, the
    process's peak so far (``getrusage``) is reported instead.
    """

    interval = 0.02

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="stage-rss", daemon=True)

    def _rss(self) -> int:
        return resident_bytes()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> _PeakMemory:
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        if self.peak == 0:
            self.peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _settings_of(settings: Settings, sections: Sequence[str]) -> dict[str, Any]:
    return {s: dataclasses.asdict(getattr(settings, s)) for s in sections}


def _needed_after(stages: Sequence[Stage], ctx: RunContext, index: int) -> set[str]:
    """Artefacts and views any stage after ``index`` may read; a view not built yet
    brings its inputs."""
    needed: set[str] = set()
    cached = set(ctx.cached())
    todo = [name for stage in stages[index + 1 :] for name in stage.needs()]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        if name in ctx.views and name not in cached:
            todo.extend(ctx.views[name].reads)
    return needed


def run_stages(
    stages: Sequence[Stage],
    ctx: RunContext,
    *,
    start: str | None = None,
    keep: Sequence[str] = (),
    desc: str = "linker run",
) -> list[StageReport]:
    """Run ``stages`` in order, from ``start`` (default: the first).

    Parameters
    ----------
    stages : sequence of Stage
    ctx : RunContext
    start : str, optional
        Skip the stages before this one; what they wrote must be in the store.
    keep : sequence of str
        Artefacts and views to keep in memory to the end (the caller reads them).
    desc : str
        The progress bar's label.

    Returns
    -------
    list of StageReport
        One per stage run.

    Raises
    ------
    InputError
        When ``start`` names no stage, or an artefact the remaining stages need is missing.
    """
    names = [s.name for s in stages]
    first = 0
    if start is not None:
        if start not in names:
            raise InputError(f"no stage {start!r} (stages: {', '.join(names)})")
        first = names.index(start)
        _check_resumable(stages, first, ctx)
    reports: list[StageReport] = []
    todo = stages[first:]
    try:
        for offset, stage in enumerate(progress(todo, desc=desc, unit="stage")):
            ctx.needed_later = _needed_after(stages, ctx, first + offset) | set(keep)
            reports.append(_run_one(stage, ctx))
            needed = _needed_after(stages, ctx, first + offset) | set(keep)
            ctx.drop([name for name in ctx.cached() if name not in needed])
            following = todo[offset + 1] if offset + 1 < len(todo) else None
            ctx.drop(_over_budget(ctx, following, keep))
    except BaseException:
        ctx.store.settle(raise_errors=False)  # no write outlives the failed run
        raise
    ctx.store.settle()
    ctx.needed_later = None
    return [
        dataclasses.replace(
            report,
            reads={name: ctx.hash_of(name) for name in report.reads},
            writes={name: ctx.hash_of(name) for name in report.writes},
        )
        for report in reports
    ]


def _over_budget(ctx: RunContext, following: Stage | None, keep: Sequence[str]) -> list[str]:
    """Artefacts to drop from memory because the process holds over half its memory budget
    (``run.memory_budget_gb``): every cached artefact the next stage does not read. Views
    (built structures, not in the store) stay; a later stage reads a dropped artefact again
    from the store."""
    budget = float(ctx.settings.run.memory_budget_gb) * 2**30
    if budget <= 0 or resident_bytes() <= budget / 2:
        return []
    wanted = set(following.needs()) if following is not None else set()
    dropped = [
        name
        for name in ctx.cached()
        if name in CATALOGUE and name not in wanted and name not in keep
    ]
    if dropped:
        logger.info(
            "memory: %.2f GiB resident, over half the budget of %.2f GiB: %s kept on disk only",
            resident_bytes() / 2**30,
            budget / 2**30,
            ", ".join(sorted(dropped)),
        )
    return dropped


def resident_bytes() -> int:
    """This process's resident memory now (0 where ``/proc`` is absent)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _check_resumable(stages: Sequence[Stage], first: int, ctx: RunContext) -> None:
    written_before = {name for stage in stages[:first] for name in stage.writes}
    missing = sorted(
        name
        for stage in stages[first:]
        for name in stage.reads
        if name in written_before and not ctx.has(name)
    )
    if missing:
        raise InputError(
            f"cannot start at stage {stages[first].name}: the store lacks "
            f"{', '.join(missing)} (run the whole pipeline first)"
        )


def _run_one(stage: Stage, ctx: RunContext) -> StageReport:
    function = ctx.engine.implementation(stage)
    ctx.stage = stage.name
    began = time.perf_counter()
    with _logged(stage), _PeakMemory() as memory:
        outputs = function(ctx)
        unexpected = sorted(set(outputs) - set(stage.writes))
        if unexpected:
            raise LinkerError(f"stage {stage.name} wrote undeclared artefacts {unexpected}")
        for name, value in outputs.items():
            ctx.put(name, value)
    seconds = round(time.perf_counter() - began, 3)
    # The hashes are filled in by run_stages once the background writes are done.
    return StageReport(
        name=stage.name,
        seconds=seconds,
        peak_rss_bytes=memory.peak,
        reads={name: "" for name in stage.needs() if name in CATALOGUE},
        writes=dict.fromkeys(outputs, ""),
        settings=_settings_of(ctx.settings, stage.settings),
        facts=dict(ctx.facts.get(stage.name, {})),
    )


@contextlib.contextmanager
def _logged(stage: Stage) -> Iterator[None]:
    began = time.perf_counter()
    logger.info("stage %s: started", stage.name)
    yield
    logger.info("stage %s: %.2fs", stage.name, time.perf_counter() - began)
