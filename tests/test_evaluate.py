"""Evaluation metrics on a hand-made labels/takedown pair whose metrics were worked out by hand."""

from __future__ import annotations

import json
from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from linker.errors import InputError
from linker.evaluate import adjusted_rand_index, evaluate, evaluate_files


def _labels() -> pd.DataFrame:
    # Ring R1 = a1..a4, ring R2 = b1, b2; benign: a family (f1, f2) and a company (c1, c2).
    return pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a3", "a4", "b1", "b2", "f1", "f2", "c1", "c2"],
            "ring_id": ["R1", "R1", "R1", "R1", "R2", "R2", "", "", None, ""],
            "group": ["ring"] * 6 + ["family", "family", "company", "company"],
        }
    )


def _takedown() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a1", "a2", "b1", "f1", "z9", "a3", "c1", "c2"],
            "cluster_id": ["C-1", "C-1", "C-2", "C-2", "C-9", "C-1", "C-3", "C-3"],
            "action": ["suspend"] * 5 + ["review"] * 3,
        }
    )


def test_suspend_metrics_by_hand() -> None:
    ev = evaluate(_labels(), _takedown())
    # Suspended: a1, a2, b1 (ring) and f1 (family); missed: a3, a4, b2.
    assert (ev.suspend.tp, ev.suspend.fp, ev.suspend.fn) == (3, 1, 3)
    assert ev.suspend.precision == pytest.approx(0.75)
    assert ev.suspend.recall == pytest.approx(0.5)
    assert ev.suspend.f1 == pytest.approx(0.6)


def test_suspend_plus_review_metrics_by_hand() -> None:
    ev = evaluate(_labels(), _takedown())
    # Flagged adds a3 (ring) and c1, c2 (company).
    assert (ev.flagged.tp, ev.flagged.fp, ev.flagged.fn) == (4, 3, 2)
    assert ev.flagged.precision == pytest.approx(4 / 7)
    assert ev.flagged.recall == pytest.approx(2 / 3)
    assert ev.flagged.f1 == pytest.approx(8 / 13)


def test_per_ring_recall_and_benign_groups() -> None:
    ev = evaluate(_labels(), _takedown())
    rings = {r.ring_id: (r.size, r.suspended, r.flagged) for r in ev.rings}
    assert rings == {"R1": (4, 2, 3), "R2": (2, 1, 1)}
    assert ev.rings[0].recall_flagged == pytest.approx(0.75)
    groups = {g.group: (g.size, g.suspended, g.flagged) for g in ev.benign_groups}
    assert groups == {"company": (2, 0, 2), "family": (2, 1, 1)}
    assert ev.n_accounts == 10 and ev.n_positive == 6
    assert ev.n_unlabelled_flagged == 1


def test_adjusted_rand_index_by_hand() -> None:
    # Contingency: (R1, C-1) = 3 gives 3 agreeing pairs; sum over rings C(4,2)+C(2,2) = 7;
    # sum over clusters C(3,2)+C(2,2)+C(2,2) = 5; C(10,2) = 45.
    # ARI = (3 - 7*5/45) / ((7+5)/2 - 7*5/45) = 20/47.
    ev = evaluate(_labels(), _takedown())
    assert ev.ari == pytest.approx(float(Fraction(20, 47)))


def test_no_group_column_and_undefined_precision() -> None:
    labels = _labels().drop(columns="group")
    empty = pd.DataFrame({"account_id": pd.Series([], dtype="string"), "action": []})
    ev = evaluate(labels, empty)
    assert ev.benign_groups == []
    assert ev.suspend.precision is None and ev.suspend.f1 is None
    assert ev.suspend.recall == 0.0
    assert "n/a" in ev.render()


def test_action_none_rows_count_as_unflagged() -> None:
    takedown = pd.DataFrame({"account_id": ["a1", "f1"], "action": ["suspend", "none"]})
    ev = evaluate(_labels(), takedown)
    assert (ev.suspend.tp, ev.suspend.fp) == (1, 0)


def test_duplicate_and_missing_columns_are_input_errors() -> None:
    dup = pd.DataFrame({"account_id": ["a1", "a1"], "action": ["suspend", "review"]})
    with pytest.raises(InputError, match="a1"):
        evaluate(_labels(), dup)
    with pytest.raises(InputError, match="ring_id"):
        evaluate(_labels().drop(columns="ring_id"), _takedown())


def test_evaluate_files_reads_csv_and_json_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    labels = tmp_path / "labels.csv"
    takedown = tmp_path / "takedown.csv"
    _labels().to_csv(labels, index=False)
    _takedown().to_csv(takedown, index=False)
    ev = evaluate_files(labels, takedown)
    data = json.loads(ev.to_json())
    assert data["suspend"]["precision"] == pytest.approx(0.75)
    assert data["rings"][0]["ring_id"] == "R1"
    assert data["rings"][0]["recall_suspend"] == pytest.approx(0.5)
    with pytest.raises(InputError, match="not found"):
        evaluate_files(tmp_path / "missing.csv", takedown)


def test_ari_known_value_and_identity() -> None:
    assert adjusted_rand_index(pd.Series([0, 0, 1, 1]), pd.Series([1, 1, 0, 0])) == 1.0
    # The textbook example (also sklearn's docs): [0,0,1,1] vs [0,0,1,2] -> 0.5714...
    value = adjusted_rand_index(pd.Series([0, 0, 1, 1]), pd.Series([0, 0, 1, 2]))
    assert value == pytest.approx(4 / 7)


@given(st.lists(st.integers(0, 4), min_size=2, max_size=40), st.randoms())
def test_ari_is_label_invariant_and_symmetric(labels: list[int], rnd) -> None:  # type: ignore[no-untyped-def]
    other = [rnd.randint(0, 4) for _ in labels]
    relabel = {v: 100 - v for v in range(5)}
    truth, pred = pd.Series(labels), pd.Series(other)
    assert adjusted_rand_index(truth, truth.map(relabel)) == pytest.approx(1.0)
    assert adjusted_rand_index(truth, pred) == pytest.approx(adjusted_rand_index(pred, truth))
    assert adjusted_rand_index(truth, pred) <= 1.0 + 1e-12
