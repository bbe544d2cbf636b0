"""The signal registry: one class adds a signal to the score and to the explanations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linker import signals
from linker.errors import SettingsError
from linker.pipeline import explain, run
from linker.settings import LinkSettings, Settings, load_settings
from linker.signals import EvidenceInputs, Signal, SignalValues
from linker.synth import generate_world


class NightSignup(Signal):
    """A toy signal: the account signed up between midnight and 06:00 UTC."""

    name = "night_signup"
    level = "account"
    default_weight = 2.0
    description = "signed up between 00:00 and 06:00 UTC"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        hour = (inputs.created // 3600) % 24
        account = ((hour < 6) & (inputs.cluster_of >= 0)).astype(np.float64)
        return SignalValues(inputs.cluster_mean(account), account=account)

    def account_reason(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        assert values.account is not None
        hours = ((inputs.created[rows] // 3600) % 24).astype(int)
        text = np.array([f"signed up at {h:02d}h UTC" for h in hours], dtype=object)
        return np.where(values.account[rows] > 0, text, "").astype(object)


@pytest.fixture()
def night_signal() -> Iterator[Signal]:
    with signals.registered_signal(NightSignup()) as entry:
        yield entry


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("signal-world")
    generate_world(3000, 5, root)
    return root


def _settings() -> Settings:
    return Settings(link=LinkSettings(review_threshold=0.0, suspend_threshold=1.0))


def test_registry_lists_each_built_in_signal_once_with_its_group() -> None:
    names = [s.name for s in signals.all_signals()]
    assert len(names) == len(set(names))
    assert {"customers", "ip_spread", "burst", "lockstep", "output_heavy"} <= set(names)
    assert [g.name for g in signals.groups()] == ["identity", "behaviour"]
    assert LinkSettings().score_weights == signals.default_weights()


def test_a_registered_signal_gets_a_default_weight_and_unknown_weights_are_rejected(
    night_signal: Signal,
) -> None:
    assert LinkSettings().score_weights["night_signup"] == 2.0
    with pytest.raises(SettingsError, match="unknown features: no_such_signal"):
        load_settings(overrides={"link.score_weights": {"no_such_signal": 1.0}})


def test_register_rejects_a_taken_name_or_an_unknown_group() -> None:
    with pytest.raises(ValueError, match="already registered"):
        signals.register_signal(signals.signal("burst"))

    class Orphan(NightSignup):
        name = "orphan"
        group = "no_such_group"

    with pytest.raises(ValueError, match="unknown group"):
        signals.register_signal(Orphan())


def test_a_registered_signal_moves_the_score_and_explains_itself(
    world: Path, tmp_path: Path
) -> None:
    plain = run(world, tmp_path / "plain.csv", settings=_settings())
    with signals.registered_signal(NightSignup()):
        toy = run(world, tmp_path / "toy.csv", settings=_settings())
        evidence = pd.read_parquet(toy.run_dir / "evidence.parquet").set_index("account_id")
        night = evidence.index[evidence["night_signup"] > 0]
        assert len(night) > 0
        account = str(night[0])
        why = explain(toy.run_dir, account)
    before = pd.read_parquet(plain.run_dir / "scores.parquet").set_index("account_id")
    after = pd.read_parquet(toy.run_dir / "scores.parquet").set_index("account_id")
    assert (after.loc[night, "score"] > before.loc[night, "score"]).all()
    assert "signed up at 0" in why.reasons
    term = next(t for t in why.signals if t.name == "night_signup")
    assert term.own == 1.0 and term.term > 0
    assert "night_signup" in why.render()
    assert "night_signup" not in [t.name for t in explain(plain.run_dir, account).signals]


def test_signal_values_survive_the_evidence_artefacts(world: Path, tmp_path: Path) -> None:
    result = run(world, tmp_path / "t.csv", settings=_settings())
    evidence = pd.read_parquet(result.run_dir / "evidence.parquet")
    cluster_evidence = pd.read_parquet(result.run_dir / "cluster_evidence.parquet")
    values = signals.values_from_columns(signals.all_signals(), evidence, cluster_evidence)
    account, cluster = signals.values_to_columns(values)
    for name, column in account.items():
        np.testing.assert_array_equal(column, evidence[name].to_numpy())
    for name, column in cluster.items():
        np.testing.assert_array_equal(column, cluster_evidence[name].to_numpy())
    assert values["burst"].account_detail["burst_peers"].dtype == np.int64


class _Clusters:
    """The two members of EvidenceInputs that the network share reads."""

    def __init__(self, size: list[int]) -> None:
        self.size = np.asarray(size)
        self.n_clusters = len(size)

    def per_cluster(self, counts: pd.Series, fill: float = 0) -> np.ndarray:
        return counts.reindex(pd.RangeIndex(self.n_clusters), fill_value=fill).to_numpy()


def test_network_share_counts_members_behind_any_of_the_clusters_own_subnets() -> None:
    from linker.signals.identity import _network_share

    rows: list[tuple[int, int, int]] = []  # (cluster, member row, identifier)
    subnet: dict[int, int] = {}
    # Cluster 0, a campus: 12 students on three subnets, four per subnet, one address each.
    for member in range(12):
        rows.append((0, member, member))
        subnet[member] = member // 4
    # Cluster 1, a proxy-pool ring: 10 members each touching the same 8 exits on 8 subnets.
    for member in range(100, 110):
        for exit_ in range(8):
            rows.append((1, member, 1000 + exit_))
            subnet[1000 + exit_] = 10 + exit_
    # Cluster 2: 5 members each alone on its own subnet (sticky home addresses).
    for member in range(200, 205):
        rows.append((2, member, 2000 + member))
        subnet[2000 + member] = 100 + member
    # Cluster 3: 10 members, each with two exits of a proxy pool on two subnets, every subnet
    # shared by two members: a network shared with one other member is no organisation's.
    for member in range(300, 310):
        for k in (0, 1):
            address = 3000 + 2 * member + k
            rows.append((3, member, address))
            subnet[address] = 1000 + (member + k * 5) // 2 + 10 * k
    # Cluster 4: a family of two behind its home router, with a third member elsewhere.
    rows += [(4, 400, 4000), (4, 401, 4001), (4, 402, 4002)]
    subnet.update({4000: 5000, 4001: 5000, 4002: 5001})
    ip_rows = pd.DataFrame(rows, columns=["cluster", "row", "identifier"])
    share = _network_share(_Clusters([12, 10, 5, 10, 3]), ip_rows, pd.Series(subnet))  # type: ignore[arg-type]
    # The campus: a member's network holds 4 members, so 1 − 1/4; the pool and the sticky
    # ring: no shared network; the pairs: 1 − 1/2, no more than the guard lets pass in full
    # (organisation_share 0.5); the family: two of three behind the most-held subnet.
    assert share.tolist() == pytest.approx([0.75, 0.0, 0.0, 0.5, 2 / 3])
