"""Saved event codes (``linker update``'s behaviour state) against coding all events anew."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from linker.graph.behaviour import (
    SAVED_CODE_COLUMNS,
    account_behaviour,
    coded_events,
    codes_as_saved,
    extend_saved_codes,
    saved_codes,
)
from linker.graph.lockstep import lockstep_pairs


def _events(rng: np.random.Generator, ids: list[str], n: int, start: str) -> pd.DataFrame:
    """Events of ``ids`` at whole minutes (many at the same moment), values drawn so that
    their first appearance and their code-point order disagree."""
    t0 = pd.Timestamp(start, tz="UTC")
    return pd.DataFrame(
        {
            "account_id": pd.array(rng.choice(ids, n), dtype="string"),
            "ts": t0 + pd.to_timedelta(rng.integers(0, 3 * 24 * 60, n), unit="min"),
            "model": pd.array(rng.choice(["m-z", "m-a", "m-k", None], n), dtype="string"),
            "prompt_fingerprint": pd.array(
                [f"p{v}" if v < 40 else None for v in rng.integers(0, 45, n)], dtype="string"
            ),
            "ip": pd.array([f"10.0.{v % 7}.{v}" for v in rng.integers(0, 60, n)], dtype="string"),
            "requests": rng.integers(1, 20, n),
            "input_tokens": rng.integers(0, 500, n),
            "output_tokens": rng.integers(0, 900, n),
        }
    )


def _world(seed: int) -> tuple[list[str], list[str], pd.DataFrame, pd.DataFrame]:
    """Old accounts (in stored order), new ones (ids between the old ones), old and new
    events; the new events reach back into the old ones' time and bring new values."""
    rng = np.random.default_rng(seed)
    old_ids = sorted(f"a{v:04d}" for v in rng.choice(5000, 60, replace=False))
    new_ids = sorted({f"a{v:04d}x" for v in rng.choice(5000, 15)} - set(old_ids))
    old = _events(rng, old_ids, 3000, "2026-01-01")
    new = _events(rng, old_ids + new_ids, 600, "2026-01-02")
    new.loc[new.index[:50], "model"] = "m-0new"  # a model first seen in the new rows
    new.loc[new.index[50:90], "prompt_fingerprint"] = "p-new"
    # A new account first in id order using old values all at one moment: in all the
    # events they are first seen there, so their codes follow code-point order, not the
    # order in which the previous run first saw them.
    first = pd.DataFrame(
        {
            "account_id": pd.array(["A0"] * 40, dtype="string"),
            "ts": pd.Timestamp("2026-01-02T12:00", tz="UTC"),
            "model": pd.array((["m-z", "m-a", "m-k"] * 14)[:40], dtype="string"),
            "prompt_fingerprint": pd.array([f"p{v}" for v in range(40)], dtype="string"),
            "ip": pd.array([f"10.0.{v % 7}.{v}" for v in range(40)], dtype="string"),
            "requests": 1,
            "input_tokens": 10,
            "output_tokens": 10,
        }
    )
    new = pd.concat([new, first], ignore_index=True)
    return old_ids, [*new_ids, "A0"], old, new.sample(frac=1.0, random_state=seed)


def _ordered(codes: pd.DataFrame) -> pd.DataFrame:
    """Rows at the same account and moment in one order (their order is not part of the
    result)."""
    return codes.sort_values(list(codes.columns), kind="mergesort").reset_index(drop=True)


def _decoded(codes: pd.DataFrame, values: dict[str, pa.Array]) -> pd.DataFrame:
    """The events of ``codes`` with each code replaced by its value, in one row order."""
    out = codes.copy()
    for column, array in values.items():
        text = np.append(np.asarray(array.to_pylist(), dtype=object), None)
        out[column] = text[codes[column].to_numpy()]  # -1 (none) takes the appended None
    return out.astype({c: "string" for c in values}).pipe(_ordered)


def _saved_world(seed: int) -> tuple[pd.DataFrame, dict[str, pa.Array], pd.DataFrame, list[str]]:
    """The saved codes of a previous run extended with new events, read back as saved
    (:func:`codes_as_saved`), and all the events, for the accounts in id order."""
    old_ids, new_ids, old, new = _world(seed)
    stored = old_ids + new_ids  # an update appends the new accounts after the others
    by_id = sorted(stored)
    # The previous run: its accounts in id order, stored in that order.
    codes, values = coded_events(old, pd.Series(old_ids, dtype="string"))
    saved, dictionary = saved_codes(codes, values, np.arange(len(old_ids)))
    added_codes, added_values = extend_saved_codes(new, pd.Series(stored), dictionary)
    assert set(added_values["value"]) >= {"m-0new", "p-new"}
    got, got_values = codes_as_saved(
        [saved, added_codes],
        pd.concat([dictionary, added_values], ignore_index=True),
        np.array([by_id.index(a) for a in stored]),
    )
    return got, got_values, pd.concat([old, new], ignore_index=True), by_id


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_saved_codes_extended_give_every_event_with_its_value(seed: int) -> None:
    got, got_values, everything, by_id = _saved_world(seed)
    want, want_values = coded_events(everything, pd.Series(by_id, dtype="string"))
    assert len(got) == len(want)
    pd.testing.assert_frame_equal(_decoded(got, got_values), _decoded(want, want_values))
    assert sorted(got.attrs["models"]) == sorted(want.attrs["models"])
    assert got.attrs["n_accounts"] == len(by_id)


def test_features_and_lockstep_from_saved_codes_equal_those_from_the_events() -> None:
    got, got_values, everything, by_id = _saved_world(4)
    accounts = pd.DataFrame(
        {
            "account_id": pd.array(by_id, dtype="string"),
            "created_at": pd.Timestamp("2025-12-20", tz="UTC"),
        }
    )
    want, want_values = coded_events(everything, accounts["account_id"])
    # The saved codes number the values otherwise: whatever reads them must not care.
    assert not got_values["prompt"].equals(want_values["prompt"])
    in_order = got.take(np.lexsort((got["t"], got["acc"]))).reset_index(drop=True)
    in_order.attrs = dict(got.attrs)
    pd.testing.assert_frame_equal(
        account_behaviour(everything, accounts, codes=in_order),
        account_behaviour(everything, accounts, codes=want),
    )
    ids = accounts["account_id"]
    pairs = [
        lockstep_pairs(c[["acc", "t", "prompt", "model"]], ids, values=v, min_tokens=2, seed=3)
        for c, v in ((got, got_values), (want, want_values))
    ]
    assert len(pairs[1].pairs)
    pd.testing.assert_frame_equal(pairs[0].pairs, pairs[1].pairs)


def test_saved_codes_out_of_range_are_refused() -> None:
    dictionary = pd.DataFrame(
        {
            "column": pd.array(["model", "prompt", "ip"], dtype="string"),
            "code": [0, 0, 0],
            "value": pd.array(["m", "p", "i"], dtype="string"),
        }
    )
    saved = pd.DataFrame({c: np.zeros(2, np.int64) for c in SAVED_CODE_COLUMNS})
    saved.loc[1, "prompt"] = 3
    with pytest.raises(ValueError, match="a saved prompt code has no saved value"):
        codes_as_saved([saved], dictionary, np.arange(1))
    saved.loc[1, ["prompt", "acc"]] = [0, 1]
    with pytest.raises(ValueError, match="stored account row is out of range"):
        codes_as_saved([saved], dictionary, np.arange(1))


def test_new_events_keep_the_saved_codes_and_number_new_values_after_them() -> None:
    dictionary = pd.DataFrame(
        {
            "column": pd.array(["model", "model", "ip"], dtype="string"),
            "code": [0, 1, 0],
            "value": pd.array(["m-b", "m-a", "1.1.1.1"], dtype="string"),
        }
    )
    events = pd.DataFrame(
        {
            "account_id": pd.array(["y", "x", "nobody", "y"], dtype="string"),
            "ts": pd.to_datetime(["2026-01-01"] * 4, utc=True),
            "model": pd.array(["m-a", "m-d", "m-a", "m-c"], dtype="string"),
            "ip": pd.array(["1.1.1.1", None, "1.1.1.1", "2.2.2.2"], dtype="string"),
        }
    )
    new, added = extend_saved_codes(events, pd.Series(["x", "y"]), dictionary)
    # The unknown account's event is dropped; the others are in (account, time, codes) order.
    assert new["acc"].tolist() == [0, 1, 1]
    assert new["model"].tolist() == [3, 1, 2]  # m-c and m-d after the saved codes, sorted
    assert new["ip"].tolist() == [-1, 0, 1]
    assert new["prompt"].tolist() == [-1, -1, -1]
    assert new["requests"].tolist() == [1, 1, 1]
    assert added[["column", "code", "value"]].values.tolist() == [
        ["model", 2, "m-c"],
        ["model", 3, "m-d"],
        ["ip", 1, "2.2.2.2"],
    ]
    with pytest.raises(ValueError, match=r"not 0\.\.k-1"):
        extend_saved_codes(events, pd.Series(["x", "y"]), dictionary.assign(code=[0, 2, 0]))


def test_saved_codes_do_not_depend_on_the_order_of_the_events() -> None:
    old_ids, new_ids, old, new = _world(5)
    ids = sorted(old_ids + new_ids)
    events = pd.concat([old, new], ignore_index=True)
    stored = np.arange(len(ids))[::-1].copy()  # stored order unlike id order
    saved = []
    for seed in (1, 2):
        shuffled = events.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        codes, values = coded_events(shuffled, pd.Series(ids, dtype="string"))
        saved.append(saved_codes(codes, values, stored))
        later = new.sample(frac=1.0, random_state=seed)
        extended = extend_saved_codes(later, pd.Series(ids), saved[-1][1])
        saved.append(extended)
    for a, b in ((saved[0], saved[2]), (saved[1], saved[3])):
        pd.testing.assert_frame_equal(a[0], b[0])
        pd.testing.assert_frame_equal(a[1], b[1])
