"""Update stages: ``linker update`` adds the rows that arrived since a previous run to that
run's state instead of recomputing everything (docs/incremental.md).

The previous run directory is ``ctx.inputs["previous_run_dir"]`` (a
:class:`~linker.engine.store.RunDirectory`); the new rows come from
``ctx.inputs["data_dir"]``. Each stage writes the same artefacts as its namesake of
``linker run``, for the new state (all rows), so every later stage, ``linker explain``,
``linker export``, the Neo4j load and the next update read it as they read a full run:

* ``validate`` checks the new rows (new accounts must not repeat an account of the previous
  run; payments and events may refer to old and new accounts) and appends them to the
  previous tables;
* ``normalise`` builds the observations of the new rows only and merges them into the
  previous observations (:func:`linker.graph.incremental.revise_observations`): the previous
  ones are kept as stored, and only the rows the new ones change and the new pairs are
  written (:class:`~linker.engine.store.Appended` with replaced rows);
* ``behaviour`` reads the previous run's saved event codes instead of its events, codes the
  new events alone (:func:`linker.graph.behaviour.extend_saved_codes`) and reads all events
  as those codes (:func:`linker.graph.behaviour.codes_as_saved`: neither renumbered nor
  sorted); it recomputes the features of the accounts with new events only
  (:func:`linker.graph.incremental.update_behaviour`), and their lockstep signatures, which
  it compares with the previous signatures of the others
  (:func:`linker.graph.lockstep.lockstep_update`);
* the ``bipartite`` view (:func:`bipartite`) is the previous run's saved incidence matrix
  with the new account–identifier pairs added
  (:func:`linker.graph.incremental.extend_bipartite`);
* ``identifiers`` updates each identifier's account count from the previous counts and the
  new account–identifier pairs, and tests only identifiers whose holders changed for being
  public; weights follow from the counts;
* ``communities`` partitions again only the components holding a touched account
  (:func:`linker.graph.incremental.repartition_touched`); pruning runs on all.

The stages after them (signals, score, proximity, decide, export) are ``linker run``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from linker.engine.stages import RunContext
from linker.engine.store import Appended, RunDirectory
from linker.errors import InputError
from linker.graph.behaviour import (
    SAVED_CODE_COLUMNS,
    coded_events,
    codes_as_saved,
    extend_saved_codes,
    saved_codes,
)
from linker.graph.bipartite import Bipartite, IdentifierGraph
from linker.graph.communities import components_over, contract
from linker.graph.incremental import (
    extend_bipartite,
    repartition_touched,
    revise_observations,
    sorted_positions,
    touched_accounts,
    update_behaviour,
)
from linker.graph.lockstep import lockstep_update
from linker.graph.public import PublicTest
from linker.io.validate import validate_dataset
from linker.observations import build_observations
from linker.pseudonyms import Pseudonymiser
from linker.stages import linking
from linker.stages.ingest import accepted_tables, latest_timestamp

__all__ = [
    "PREVIOUS_ACCOUNT",
    "behaviour",
    "bipartite",
    "communities",
    "identifiers",
    "normalise",
    "validate",
]

logger = logging.getLogger(__name__)

PREVIOUS_ACCOUNT = "is already an account of the previous run"
"""What the reason of a new account row that repeats an earlier account says."""


def _row_of_stored(order: np.ndarray) -> np.ndarray:
    """Per stored account row, its row in ``account_id`` order: the inverse of
    :func:`linker.stages.linking.stored_order`."""
    row_of_stored = np.empty(len(order), dtype=np.int64)
    row_of_stored[order] = np.arange(len(order))
    return row_of_stored


def _previous(ctx: RunContext) -> RunDirectory:
    previous: RunDirectory = ctx.inputs["previous_run_dir"]
    return previous


def validate(ctx: RunContext) -> Mapping[str, Any]:
    """Validate the new rows and append them to the previous run's tables.

    Raises
    ------
    InputError
        When a new account repeats an account of the previous run (one line naming the
        file, row and id).
    """
    previous = _previous(ctx)
    known = previous.read("accounts", columns=["account_id"])["account_id"]
    result = validate_dataset(
        Path(ctx.inputs["data_dir"]),
        settings=ctx.settings.ingest,
        observations=False,
        known_accounts=pa.array(known.astype(str).to_numpy(), pa.large_string()),
    )
    repeated = [
        p for p in result.problems if p.table == "accounts" and PREVIOUS_ACCOUNT in p.reason
    ]
    if repeated:
        raise InputError(f"{repeated[0]}; `linker update` takes accounts opened since then only")
    new, report = accepted_tables(ctx, result)
    ctx.inputs["delta"] = new
    # The tables only grow: the new run's are the previous run's parts (hard-linked by the
    # store, neither read nor written again) plus one part of the new rows.
    tables: dict[str, Any] = {}
    for name in sorted({*new, "payments", "events"}):
        rows = new.get(name)
        if not previous.has(name):
            if rows is not None:
                tables[name] = rows
            continue
        tables[name] = Appended(previous, rows if rows is not None else pd.DataFrame())
    ctx.note(new_rows={name: len(frame) for name, frame in new.items()})
    stamps = [t for t in (latest_timestamp(new), _previous_as_of(previous)) if t is not None]
    if stamps:
        ctx.note(as_of=max(stamps, key=pd.Timestamp))
    return {**tables, "validation": report}


def _previous_as_of(previous: RunDirectory) -> str | None:
    as_of = previous.read_json("manifest").get("as_of")
    return str(as_of) if as_of else None


def normalise(ctx: RunContext) -> Mapping[str, Any]:
    """The observations of the new rows, merged into the previous run's."""
    delta: dict[str, pd.DataFrame] = ctx.inputs["delta"]
    fresh = delta["accounts"]
    referred = pd.concat(
        [delta[t]["account_id"] for t in ("payments", "events") if t in delta], ignore_index=True
    ).astype("string")
    old = ctx.frame("accounts", columns=["account_id", "created_at"])
    old = old[
        old["account_id"].isin(referred.unique()) & ~old["account_id"].isin(fresh["account_id"])
    ]
    # Old accounts only lend their signup time to their new payments and events: their own
    # attributes are in the previous observations already.
    accounts = pd.concat([fresh, old.reindex(columns=fresh.columns)], ignore_index=True)
    built = build_observations({**delta, "accounts": accounts})
    pseudonymiser: Pseudonymiser | None = ctx.inputs.get("pseudonymiser")
    if pseudonymiser is not None:
        built = pseudonymiser.observations(built)
        ctx.note(pseudonym_key_id=pseudonymiser.key_id)
    previous = _previous(ctx)
    before = previous.read("observations")
    rows, revised, fresh = revise_observations(before, built)
    ctx.inputs["new_pairs"] = fresh[["account_id", "kind", "value"]]
    ctx.note(
        observations=len(before) + len(fresh),
        new_observations=len(built),
        new_pairs=len(fresh),
        observations_revised=len(rows),
    )
    # Only the revised rows and the new pairs are written: the previous rows are kept as
    # they are stored, the revised ones skipped by readers.
    rows_written = pd.concat([revised, fresh], ignore_index=True)
    return {"observations": Appended(previous, rows_written, replaced=rows)}


def behaviour(ctx: RunContext) -> Mapping[str, Any]:
    """Behaviour features recomputed for the accounts with new events; lockstep pairs of
    those accounts searched again from the previous signatures."""
    previous = _previous(ctx)
    if not linking.uses_behaviour(ctx):
        return {}
    if not previous.has("behaviour"):
        return linking.behaviour(ctx)
    cfg = ctx.settings.link.behaviour
    accounts = linking.account_frame(ctx, ["created_at"])
    ids = accounts["account_id"].astype("string")
    order = linking.stored_order(ctx)
    codes, state, as_saved, values = _event_codes(ctx, previous, ids, order)
    delta: dict[str, pd.DataFrame] = ctx.inputs["delta"]
    moved = [delta[t]["account_id"] for t in ("accounts", "events") if t in delta]
    touched = ids.isin(pd.concat(moved, ignore_index=True).astype("string")).to_numpy(bool)
    features = update_behaviour(
        previous.read("behaviour"), accounts, codes, touched, dormancy_days=cfg.dormancy_days
    )
    ctx.note(behaviour_recomputed=int(touched.sum()))
    if not (as_saved and previous.has("lockstep_signatures")):
        ctx.note(lockstep="all pairs searched again (the previous run saved no signatures)")
        lockstep = linking.lockstep_artefacts(ctx, codes, values, ids, order)
        return {"behaviour": features, **lockstep, **state}
    lockstep = _lockstep(ctx, previous, ids, touched, (codes, values), order)
    return {"behaviour": features, **lockstep, **state}


def _lockstep(
    ctx: RunContext,
    previous: RunDirectory,
    ids: pd.Series,
    touched: np.ndarray,
    coded: tuple[pd.DataFrame, dict[str, pa.Array]],
    order: np.ndarray,
) -> dict[str, Any]:
    """The lockstep pairs and signatures from the previous ones: the touched accounts'
    signatures from all their events (``coded``: all events as saved codes, and the values
    of the codes), pairs of two untouched accounts carried over
    (:func:`linker.graph.lockstep.lockstep_update`)."""
    codes, values = coded
    row_of_stored = _row_of_stored(order)
    touched_stored = np.zeros(len(order), dtype=bool)
    touched_stored[order] = touched
    mine = touched[codes["acc"].to_numpy(np.int64)]
    events = pd.DataFrame({c: codes[c].to_numpy()[mine] for c in ("acc", "t", "prompt", "model")})
    before = previous.read("lockstep_signatures")
    account_ids = ids.to_numpy(object)
    try:
        lock = lockstep_update(
            events,
            touched,
            linking.signatures_of(before, row_of_stored),
            linking.pair_rows(previous.read("lockstep"), account_ids),
            account_ids,
            values=values,
            **linking.lockstep_settings(ctx),
        )
    except (ValueError, IndexError) as exc:
        raise InputError(
            f"{previous.location('lockstep_signatures')}: not the previous run's lockstep "
            f"signatures ({exc}); run `linker run` on all the data instead"
        ) from None
    replaced = np.flatnonzero(touched_stored[before["acc"].to_numpy(np.int64)])
    ctx.note(
        lockstep=f"signatures of {int(touched.sum())} accounts computed again, "
        f"{lock.comparisons} pairs compared"
    )
    return {
        "lockstep": linking.pair_table(lock.pairs, ids),
        "lockstep_signatures": Appended(
            previous,
            linking.signature_table(lock.signatures, order, only=touched),
            replaced=replaced,
        ),
    }


def _event_codes(
    ctx: RunContext, previous: RunDirectory, ids: pd.Series, order: np.ndarray
) -> tuple[pd.DataFrame, dict[str, Any], bool, dict[str, pa.Array]]:
    """The codes of all events and the values of their codes, the saved codes to write, and
    whether the codes are the saved ones.

    From the previous run's saved codes, the new events coded against them: the previous
    events are not read, and the codes are the saved ones, neither renumbered nor sorted
    (:func:`linker.graph.behaviour.codes_as_saved`). A previous run without saved codes has
    its events read and coded (:func:`linker.graph.behaviour.coded_events`). ``order`` is
    :func:`linker.stages.linking.stored_order`.
    """
    delta: dict[str, pd.DataFrame] = ctx.inputs["delta"]
    if not (previous.has("event_codes") and previous.has("event_values")):
        codes, values = coded_events(ctx.frame("events"), ids)
        ctx.release("events")
        saved, dictionary = saved_codes(codes, values, order)
        ctx.note(event_codes="all events coded (the previous run saved no codes)")
        return codes, {"event_codes": saved, "event_values": dictionary}, False, values
    before = previous.read("event_codes")
    known = previous.read("event_values")
    stored = ctx.frame("accounts", columns=["account_id"])["account_id"]
    events = delta.get("events")
    if events is None or events.empty:
        new = pd.DataFrame({c: np.zeros(0, np.int64) for c in SAVED_CODE_COLUMNS})
        added = known.iloc[0:0]
    else:
        try:
            new, added = extend_saved_codes(events, stored, known)
        except ValueError as exc:
            raise InputError(
                f"{previous.location('event_values')}: not the previous run's saved values "
                f"({exc}); run `linker run` on all the data instead"
            ) from None
    row_of_stored = _row_of_stored(order)
    dictionary = pd.concat([known, added], ignore_index=True)
    try:
        codes, values = codes_as_saved([before, new], dictionary, row_of_stored)
    except (ValueError, IndexError) as exc:
        raise InputError(
            f"{previous.location('event_codes')}: the previous run's saved event codes do not "
            f"match its accounts ({exc}); run `linker run` on all the data instead"
        ) from None
    ctx.note(event_codes=f"{len(new)} new events coded, {len(before)} read as codes")
    state = {"event_codes": Appended(previous, new), "event_values": Appended(previous, added)}
    return codes, state, True, values


def bipartite(ctx: RunContext) -> Bipartite:
    """The ``bipartite`` view of an update: the previous run's incidence matrix (its saved
    entries) with the new account–identifier pairs added
    (:func:`linker.graph.incremental.extend_bipartite`); built from all the observations
    when the previous run saved no entries."""
    previous = _previous(ctx)
    if not (previous.has("incidence") and "new_pairs" in ctx.inputs):
        built: Bipartite = linking.LINK_VIEWS["bipartite"].build(ctx)
        return built
    ids = linking.account_frame(ctx, ["account_id"])["account_id"].astype(str)
    row_of_stored = _row_of_stored(linking.stored_order(ctx))
    saved = previous.read("incidence")
    before = previous.read("identifiers", columns=["kind", "value"])
    added = len(ctx.inputs["new_pairs"])
    ctx.note(incidence=f"{len(saved)} saved entries extended with {added} new pairs")
    try:
        bip, previous_column = extend_bipartite(
            ids.to_numpy(dtype=object),
            before["kind"].astype(object).to_numpy(),
            before["value"].astype(object).to_numpy(),
            row_of_stored[saved["acc"].to_numpy(np.int64)],
            saved["identifier"].to_numpy(np.int64),
            ctx.inputs["new_pairs"],
        )
    except (ValueError, IndexError) as exc:
        raise InputError(
            f"{previous.location('incidence')}: the previous run's saved incidence matrix does "
            f"not match its accounts and identifiers ({exc}); run `linker run` on all the data "
            "instead"
        ) from None
    # The identifiers stage reads each column's previous row from here instead of matching
    # the previous identifiers' strings again.
    ctx.inputs["previous_column"] = previous_column
    return bip


def identifiers(ctx: RunContext) -> Mapping[str, Any]:
    """Identifier counts from the previous counts and the new pairs; the public test of the
    identifiers whose holders changed; weights of all."""
    bip: Bipartite = ctx.view("bipartite")
    numbers = ["n_accounts", "is_supernode", "cohesion"]
    if "previous_column" in ctx.inputs:
        before = _previous(ctx).read("identifiers", columns=numbers)
        was, gained = _gained(bip, before, ctx.inputs["previous_column"])
    else:
        before = _previous(ctx).read("identifiers", columns=["kind", "value", *numbers])
        was, gained = _previous_columns(bip, before, ctx.inputs["new_pairs"])
    old = was >= 0
    n_accounts = gained.copy()
    n_accounts[old] += before["n_accounts"].to_numpy(np.int64)[was[old]]
    changed = gained > 0
    public = np.zeros(len(was), dtype=bool)
    public[old] = before["is_supernode"].to_numpy(bool)[was[old]]
    cohesion = np.full(len(was), np.nan)
    cohesion[old] = before["cohesion"].to_numpy(np.float64)[was[old]]
    test = linking.public_test(
        ctx, bip, only=changed, previous=PublicTest(cohesion, public, np.zeros_like(public))
    )
    ctx.inputs["touched_identifiers"] = changed | (test.public != public)
    ctx.note(identifiers_touched=int(changed.sum()), public_tested=int(test.tested.sum()))
    return {
        "identifiers": linking.identifier_table(ctx, bip, n_accounts, test),
        "incidence": linking.incidence_table(ctx, bip),
    }


def _gained(bip: Bipartite, before: pd.DataFrame, was: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``was`` (each column's previous row, from the extended matrix) and how many holders
    each column gained: its holders now less its previous count.

    Raises
    ------
    InputError
        When the counts do not add up (a column lost holders, or a new one has none).
    """
    gained = bip.n_accounts.astype(np.int64).copy()
    old = was >= 0
    gained[old] -= before["n_accounts"].to_numpy(np.int64)[was[old]]
    if len(before) != int(old.sum()) or (gained < 0).any() or (gained[~old] == 0).any():
        raise InputError(
            "the previous run's identifier counts do not match its saved incidence matrix; "
            "run `linker run` on all the data instead"
        )
    return was, gained


def _previous_columns(
    bip: Bipartite, before: pd.DataFrame, pairs: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Per identifier column of ``bip``: its row in the previous ``identifiers`` (``-1`` for
    a new one) and how many holders the new pairs gave it.

    Both lists are sorted by (kind, value) and the new one is the previous one plus the
    identifiers of new pairs, so the columns are found by binary search of the new pairs
    alone; an identifier is new when all its holders are new pairs.

    Raises
    ------
    InputError
        When the previous counts and the new pairs do not add up to the graph.
    """
    pairs = pairs[pairs["value"].notna()]
    where = sorted_positions(
        bip.kinds,
        bip.values,
        pairs["kind"].astype(object).to_numpy(),
        pairs["value"].astype(object).to_numpy(),
    )
    gained = np.bincount(where[where >= 0], minlength=len(bip.kinds)).astype(np.int64)
    known = gained < bip.n_accounts
    was = np.where(known, np.cumsum(known) - 1, -1)
    sample = np.linspace(0, max(len(before) - 1, 0), num=min(len(before), 1024)).astype(np.int64)
    cols = np.flatnonzero(known)
    agree = (
        (where >= 0).all()
        and len(cols) == len(before)
        and np.array_equal(before["kind"].astype(object).to_numpy(), bip.kinds[cols])
        and np.array_equal(
            before["value"].astype(object).to_numpy()[sample], bip.values[cols[sample]]
        )
        and np.array_equal(
            before["n_accounts"].to_numpy(np.int64) + gained[cols], bip.n_accounts[cols]
        )
    )
    if not agree:
        raise InputError(
            "the previous run's identifier counts do not match its observations; "
            "run `linker run` on all the data instead"
        )
    return was, gained


def communities(ctx: RunContext) -> Mapping[str, Any]:
    """Leiden again on the components a new link touches; the others keep their
    communities; then pruning, lockstep and sizes as in ``linker run``."""
    before = _previous(ctx).read("communities")
    if "partition" not in before.columns:
        ctx.note(repartitioned="all (the previous run saved no partition)")
        return linking.communities(ctx)
    settings = ctx.settings.link
    graph: IdentifierGraph = ctx.view("graph")
    linked: linking.LinkProjection = ctx.view("projection")
    bip = graph.bipartite
    strong = components_over(bip.matrix, graph.columns_of(settings.strong_kinds))
    ids = pd.Index(pd.array(bip.account_ids, dtype="string"))
    changed = np.flatnonzero(ctx.inputs["touched_identifiers"] & (graph.weights > 0))
    # New links come through identifiers that gained a holder (or lost their public flag):
    # every holder of one is touched, and so is every new account.
    touched = touched_accounts(bip.matrix, changed, np.zeros(0, dtype=np.int64))
    at = pd.Index(before["account_id"].astype("string")).get_indexer(ids)
    previous = np.where(at >= 0, before["partition"].to_numpy(np.int64)[np.maximum(at, 0)], -1)
    touched |= at < 0
    membership, facts = repartition_touched(
        contract(linked.links, linked.projection.hub_matrix, strong),
        strong,
        touched,
        previous,
        resolution=settings.resolution,
        seed=ctx.seed,
    )
    ctx.note(accounts_touched=int(touched.sum()), **facts)
    return {"communities": linking.community_table(ctx, membership, strong)}
