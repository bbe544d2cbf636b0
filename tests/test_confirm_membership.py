"""Clusters list the accounts their evidence implicates (issue 11, ring/innocent mixing).

In a cluster with flagged members, a member that its own score leaves unflagged is released
and nobody else's score changes (``link.confirm_membership``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from linker.cli import cli
from linker.graph.scoring import confirm_membership
from linker.scenarios import generate_scenario


@st.composite
def memberships(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 60))
    k = draw(st.integers(1, 8))
    cluster_of = np.array(draw(st.lists(st.integers(-1, k - 1), min_size=n, max_size=n)))
    flagged = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return cluster_of, flagged


@settings(max_examples=300, deadline=None)
@given(memberships())
def test_confirm_membership_against_its_definition(case: tuple[np.ndarray, np.ndarray]) -> None:
    cluster_of, flagged = case
    out = confirm_membership(cluster_of, flagged)
    for i, c in enumerate(cluster_of.tolist()):
        others_flagged = bool(flagged[cluster_of == c].any()) if c >= 0 else False
        stays = c >= 0 and (bool(flagged[i]) or not others_flagged)
        assert out[i] == (c if stays else -1)


@pytest.fixture(scope="module")
def mixed_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tuning-seed scenario world where lockstep reattachment places innocent heavy users
    (scores below review) beside a ring."""
    out = tmp_path_factory.mktemp("camouflage") / "world"
    generate_scenario("camouflage_high", 20000, 2, out, fmt="parquet")
    return out


def _everyone(world: Path, out: Path, *extra: str) -> pd.DataFrame:
    args = ["run", str(world), "--out", str(out), *extra]
    args += ["--action", "suspend", "--action", "review", "--action", "none"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, dtype=str, keep_default_na=False)


def _unflagged_in_flagged_clusters(frame: pd.DataFrame) -> pd.DataFrame:
    clustered = frame[frame["cluster_id"] != ""]
    flagged = clustered.groupby("cluster_id")["action"].agg(lambda a: bool((a != "none").any()))
    return clustered[clustered["cluster_id"].map(flagged) & (clustered["action"] == "none")]


def test_unflagged_members_leave_flagged_clusters(mixed_world: Path, tmp_path: Path) -> None:
    off_settings = tmp_path / "off.toml"
    off_settings.write_text("[link]\nconfirm_membership = false\n")
    before = _everyone(mixed_world, tmp_path / "off.csv", "--settings", str(off_settings))
    after = _everyone(mixed_world, tmp_path / "on.csv")
    labels = pd.read_parquet(mixed_world / "labels.parquet")
    innocent = set(labels.loc[labels["ring_id"].isna(), "account_id"])

    stray = _unflagged_in_flagged_clusters(before)
    assert len(stray) > 0 and set(stray["account_id"]) <= innocent
    assert _unflagged_in_flagged_clusters(after).empty
    # The released accounts are no cluster's members, and nobody's action or score changed.
    released = after.set_index("account_id").loc[stray["account_id"]]
    assert (released["cluster_id"] == "").all() and (released["action"] == "none").all()
    merged = before.merge(after, on="account_id", suffixes=("_off", "_on"))
    assert (merged["action_off"] == merged["action_on"]).all()
    kept = merged[~merged["account_id"].isin(stray["account_id"])]
    assert (kept["score_off"] == kept["score_on"]).all()
    # Each row's cluster size is its cluster's published membership.
    clustered = after[after["cluster_id"] != ""]
    sizes = clustered.groupby("cluster_id")["cluster_size"].agg(["first", "size"])
    assert (sizes["first"].astype(int) == sizes["size"]).all()
    manifest = json.loads((tmp_path / "on.run" / "manifest.json").read_text())
    facts = json.dumps(manifest)
    assert '"released_members": ' + str(len(stray)) in facts


def test_a_chance_stem_carries_no_family_into_a_ring(tmp_path: Path) -> None:
    """The tuning world where a proxyware user on a ring's proxy exit shared a mailbox stem
    with a family's payer: the family (on one device and home IP) went into the ring's
    cluster and was flagged for review on values that counted as the cluster's."""
    world = tmp_path / "world"
    generate_scenario("tiny_rings", 20000, 2, world, fmt="parquet")
    everyone = _everyone(world, tmp_path / "all.csv")
    labels = pd.read_parquet(world / "labels.parquet")
    frame = everyone.merge(labels, on="account_id")
    clustered = frame[frame["cluster_id"] != ""]
    ring = clustered["ring_id"].notna()
    per = clustered.assign(ring=ring).groupby("cluster_id")["ring"].agg(["sum", "size"])
    assert not ((per["sum"] > 0) & (per["sum"] < per["size"])).any()
    flagged_innocent = frame[(frame["action"] != "none") & frame["ring_id"].isna()]
    assert flagged_innocent.empty
