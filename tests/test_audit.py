"""Cluster checks: the value that holds a cluster together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from linker.export import ExportResult
from linker.graph.audit import dominant_values
from linker.pipeline import RunResult


def test_one_card_holding_a_cluster_dominates_and_a_ring_does_not() -> None:
    # Cluster 0: ten accounts on one card (weight 3) and nothing else.
    # Cluster 1: ten accounts over twenty proxy exits (weight 1), each exit held by three.
    rng = np.random.default_rng(0)
    n = 20
    cols = 1 + 20
    m = np.zeros((n, cols))
    m[:10, 0] = 1
    for j in range(1, cols):
        m[10 + rng.choice(10, 3, replace=False), j] = 1
    weights = np.r_[3.0, np.ones(20)]
    top = dominant_values(sp.csr_matrix(m), weights, np.r_[np.zeros(10), np.ones(10)].astype(int))
    assert top["cluster"].tolist() == [0, 1]
    assert top.loc[0, "identifier"] == 0 and top.loc[0, "members"] == 10
    assert top.loc[0, "share"] == pytest.approx(1.0)
    assert top.loc[1, "share"] == pytest.approx(3 / 60)  # one exit of twenty, three pairs each


def test_public_values_carry_no_ties_and_empty_clusters_have_none() -> None:
    m = sp.csr_matrix(np.ones((3, 2)))
    top = dominant_values(m, np.array([0.0, 0.0]), np.array([0, 0, 0]))
    assert top.loc[0, "share"] == 0.0
    assert dominant_values(m, np.ones(2), np.array([-1, -1, -1])).empty


def test_the_run_summary_names_the_clusters_to_check(tmp_path: Path) -> None:
    warning = {
        "cluster_id": "C-0004",
        "size": 40,
        "kind": "payment",
        "value": "card-acme",
        "members_holding": 40,
        "share_of_ties": 0.97,
    }
    manifest = {
        "counts": {
            "tables": {},
            "accounts": 100,
            "clusters": 4,
            "links": 10,
            "suspend": 1,
            "review": 2,
            "spared_by_allowlist": 0,
        },
        "stages": {"score": {"facts": {"cluster_warnings": [warning]}}},
    }
    export = ExportResult(
        tmp_path / "t.csv", "csv", 3, {"suspend": 1, "review": 2}, "0" * 64, tmp_path / "m.json"
    )
    text = RunResult(tmp_path, export, manifest).render()
    assert (
        "warning: cluster C-0004 (40 accounts): 97% of its ties run through one payment value "
        "held by 40 members; check it before acting"
    ) in text
