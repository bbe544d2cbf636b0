"""Community detection libraries side by side on the linking engine's account graph.

The graph is the one ``link_accounts`` partitions: rarity-weighted account links plus hub
nodes, with strong-link components contracted. Each library runs in its own process (so its
peak RSS is its own) on the same graph and reports wall time, peak RSS, modularity (igraph's,
at the engine's resolution) and the adjusted Rand index of ring accounts against their
planted rings.

Usage::

    .venv/bin/python bench/communities.py --accounts 100000 --seed 7 [--world DIR]

``--world DIR`` reads a dataset written by ``linker synth`` (accounts/payments/events and
labels); without it, ``linker.synth.generate_world`` is used when present, else a small
built-in planted world.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from linker.graph.bipartite import build_bipartite, derived_observations
from linker.graph.communities import components_over
from linker.graph.projection import project
from linker.graph.weights import identifier_weights
from linker.settings import LinkSettings

LIBRARIES = (
    "leidenalg",
    "igraph-leiden",
    "igraph-multilevel",
    "networkit-plm",
    "networkx-louvain",
)


def planted_world(n_accounts: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """A quick planted world (rings, families, companies, CGNAT) when synth is absent."""
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2024-01-01", tz="UTC").value // 10**9
    ids = np.array([f"acct{i:07d}" for i in range(n_accounts)], dtype=object)
    created = base + rng.integers(0, 180 * 86400, n_accounts)
    ring = np.full(n_accounts, -1)
    rows: list[pd.DataFrame] = []

    def obs(acc: np.ndarray, kind: str, values: np.ndarray) -> None:
        rows.append(pd.DataFrame({"account_id": ids[acc], "kind": kind, "value": values}))

    card = np.array([f"fp{i}" for i in range(n_accounts)], dtype=object)
    ip = np.array([f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(n_accounts)])
    bins = np.array([f"4{b:05d}" for b in rng.zipf(1.3, n_accounts) % 400])
    start = 0
    ring_id = 0
    while start < n_accounts * 0.06:
        size = int(rng.integers(20, 400))
        members = np.arange(start, min(start + size, n_accounts))
        ring[members] = ring_id
        pool = np.array(
            [
                f"{rng.integers(20, 220)}.{rng.integers(0, 256)}.{rng.integers(0, 256)}.{k}"
                for k in range(max(size // 6, 3))
            ]
        )
        ip[members] = pool[rng.integers(0, len(pool), len(members))]
        for _ in range(2):
            obs(members, "ip", pool[rng.integers(0, len(pool), len(members))])
        family = rng.integers(5, 40)
        for _ in range(3):
            obs(
                members,
                "prompt",
                np.array([f"tpl{ring_id}_{k}" for k in rng.integers(0, family, len(members))]),
            )
        bins[members] = np.array([f"5{ring_id:03d}{k}" for k in rng.integers(0, 3, len(members))])
        burst = rng.random(len(members)) < 0.87
        created[members[burst]] = created[members[0]] + rng.integers(0, 3600, int(burst.sum()))
        obs(members, "mailbox", np.array([f"stem{ring_id}{k}@gmail.com" for k in members]))
        obs(members, "email_domain", np.array(["gmail.com"] * len(members)))
        start += size
        ring_id += 1
    # Families (shared card and home IP) and companies (shared card, NAT IP, domain).
    while start < n_accounts * 0.2:
        size = int(rng.integers(2, 6)) if rng.random() < 0.8 else int(rng.integers(10, 150))
        members = np.arange(start, min(start + size, n_accounts))
        card[members] = card[members[0]]
        ip[members] = ip[members[0]]
        start += size
    cgnat = rng.random(n_accounts) < 0.05
    cgnat[: int(n_accounts * 0.2)] = False
    ip[cgnat] = np.array([f"100.64.0.{k}" for k in rng.integers(0, 3, int(cgnat.sum()))])
    everyone = np.arange(n_accounts)
    obs(everyone, "payment", card)
    obs(everyone, "card_bin", bins)
    obs(everyone, "signup_ip", ip)
    obs(everyone, "signup_subnet", np.array([v.rsplit(".", 1)[0] + ".0/24" for v in ip]))
    app = rng.random(n_accounts) < 0.1
    obs(everyone[app], "prompt", np.array(["app_system_prompt"] * int(app.sum())))
    observations = pd.concat(rows, ignore_index=True).astype("string")
    accounts = pd.DataFrame(
        {
            "account_id": pd.array(ids, dtype="string"),
            "created_at": pd.to_datetime(created, unit="s", utc=True),
            "billing_customer_id": pd.array([None] * n_accounts, dtype="string"),
        }
    )
    labels = pd.Series(np.where(ring >= 0, ring.astype(str), ""), index=ids)
    return accounts, observations, labels


def load_world(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, str]:
    if args.run_dir is not None:
        # A directory written by ``linker run``: validated tables and observations already there.
        accounts = pd.read_parquet(args.run_dir / "tables" / "accounts.parquet")
        observations = pd.read_parquet(args.run_dir / "observations.parquet")
        labels_path = args.world / "labels.csv" if args.world else args.run_dir / "labels.csv"
        if not labels_path.exists():
            labels_path = labels_path.with_suffix(".parquet")
        labels_frame = (
            pd.read_parquet(labels_path)
            if labels_path.suffix == ".parquet"
            else pd.read_csv(labels_path, dtype=str, keep_default_na=False)
        )
        labels = pd.Series(
            labels_frame["ring_id"].fillna("").astype(str).to_numpy(),
            index=labels_frame["account_id"].astype(str).to_numpy(),
        )
        return accounts, observations, labels, f"run directory {args.run_dir}"
    directory = args.world
    if directory is None:
        try:
            from linker import synth  # type: ignore[attr-defined]
        except ImportError:
            accounts, observations, labels = planted_world(args.accounts, args.seed)
            return accounts, observations, labels, "built-in planted world"
        directory = Path(tempfile.mkdtemp(prefix="bench-communities-"))
        synth.generate_world(args.accounts, args.seed, directory, fmt="csv")
    from linker.io.validate import validate_dataset
    from linker.observations import build_observations

    result = validate_dataset(Path(directory))
    observations = build_observations(result.tables)
    labels_frame = pd.read_csv(Path(directory) / "labels.csv", dtype=str, keep_default_na=False)
    labels = pd.Series(
        labels_frame["ring_id"].fillna("").to_numpy(), index=labels_frame["account_id"].to_numpy()
    )
    return result.tables["accounts"], observations, labels, f"linker synth world {directory}"


def contracted_graph(
    accounts: pd.DataFrame, observations: pd.DataFrame, settings: LinkSettings
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The weighted graph the engine partitions, plus the account → node map."""
    derived = derived_observations(accounts, observations)
    obs = pd.concat([observations, derived[observations.columns]], ignore_index=True)
    bip = build_bipartite(accounts["account_id"].astype("string"), obs)
    weights, supernode = identifier_weights(bip.kinds, bip.n_accounts, settings)
    projection = project(bip, weights, supernode, pair_max_accounts=settings.pair_max_accounts)
    adjacency = projection.adjacency.copy()
    adjacency.data[adjacency.data < settings.min_link_weight] = 0
    adjacency.eliminate_zeros()
    joinable = ~supernode & (bip.n_accounts >= 2)
    strong = components_over(
        bip.matrix, np.flatnonzero(joinable & np.isin(bip.kinds, list(settings.strong_kinds)))
    )
    n_acc, n_comp = bip.shape[0], int(strong.max()) + 1
    contract = sp.csr_matrix((np.ones(n_acc), (np.arange(n_acc), strong)), shape=(n_acc, n_comp))
    comp_adj = (contract.T @ (adjacency + adjacency.T) @ contract).tocoo()
    upper = comp_adj.row < comp_adj.col
    hub = (contract.T @ projection.hub_matrix).tocoo()
    edges = np.concatenate(
        [
            np.stack([comp_adj.row[upper], comp_adj.col[upper]], 1),
            np.stack([hub.row, n_comp + hub.col], 1),
        ]
    )
    weight = np.concatenate([comp_adj.data[upper] / 2, hub.data])
    used = np.zeros(n_comp + projection.hub_matrix.shape[1], dtype=bool)
    used[edges.ravel()] = True
    index = np.full(len(used), -1)
    index[used] = np.arange(int(used.sum()))
    node_of_account = index[strong]
    return int(used.sum()), index[edges], weight, node_of_account, bip.account_ids


def _vm_kib(field: str) -> float:
    """A memory figure of this process from /proc (Linux), in KiB; psutil elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 1024


def run_library(name: str, path: str, resolution: float, seed: int, queue: mp.Queue) -> None:
    data = np.load(path)
    n, edges, weight = int(data["n"]), data["edges"], data["weight"]
    base_rss = _vm_kib("VmRSS")
    start = time.perf_counter()
    if name == "leidenalg":
        import igraph as ig
        import leidenalg

        g = ig.Graph(n=n, edges=edges.tolist())
        g.es["weight"] = weight.tolist()
        part = leidenalg.find_partition(
            g,
            leidenalg.RBConfigurationVertexPartition,
            weights="weight",
            resolution_parameter=resolution,
            seed=seed,
            n_iterations=-1,
        )
        membership = np.asarray(part.membership)
    elif name.startswith("igraph"):
        import random

        import igraph as ig

        ig.set_random_number_generator(random.Random(seed))
        g = ig.Graph(n=n, edges=edges.tolist())
        g.es["weight"] = weight.tolist()
        if name == "igraph-leiden":
            clustering = g.community_leiden(
                objective_function="modularity",
                weights="weight",
                resolution=resolution,
                n_iterations=-1,
            )
        else:
            clustering = g.community_multilevel(weights="weight", resolution=resolution)
        membership = np.asarray(clustering.membership)
    elif name == "networkit-plm":
        import networkit as nk

        nk.setSeed(seed, False)
        nk.setNumberOfThreads(1)
        g = nk.Graph(n, weighted=True)
        g.addEdges((weight, (edges[:, 0], edges[:, 1])))
        plm = nk.community.PLM(g, refine=True, gamma=resolution)
        plm.run()
        membership = np.asarray(plm.getPartition().getVector())
    else:
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_weighted_edges_from(
            zip(edges[:, 0].tolist(), edges[:, 1].tolist(), weight.tolist(), strict=True)
        )
        communities = nx.community.louvain_communities(
            g, weight="weight", resolution=resolution, seed=seed
        )
        membership = np.empty(n, dtype=np.int64)
        for k, members in enumerate(communities):
            membership[list(members)] = k
    seconds = time.perf_counter() - start
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across exec.
    peak = _vm_kib("VmHWM")
    queue.put(
        {
            "seconds": seconds,
            "peak_rss_mb": peak / 1024,
            "delta_rss_mb": (peak - base_rss) / 1024,
            "membership": membership.tolist(),
        }
    )


def adjusted_rand(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Adjusted Rand index from the contingency table (Hubert & Arabie)."""
    if len(truth) < 2:
        return 1.0
    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(predicted, return_inverse=True)
    table = sp.coo_matrix((np.ones(len(t)), (t, p))).tocsr()
    table.sum_duplicates()

    def comb2(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    index = comb2(table.data)
    a = comb2(np.asarray(table.sum(axis=1)).ravel())
    b = comb2(np.asarray(table.sum(axis=0)).ravel())
    expected = a * b / comb2(np.array([len(t)]))
    maximum = (a + b) / 2
    return 1.0 if maximum == expected else (index - expected) / (maximum - expected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", type=Path, default=None, help="a linker synth world")
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="reuse a linker run directory's tables"
    )
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args()
    settings = LinkSettings()
    t0 = time.perf_counter()
    accounts, observations, labels, source = load_world(args)
    n, edges, weight, node_of_account, account_ids = contracted_graph(
        accounts, observations, settings
    )
    print(f"world: {source}; {len(accounts):,} accounts, {len(observations):,} observations")
    print(f"graph: {n:,} nodes, {len(edges):,} edges (built in {time.perf_counter() - t0:.1f} s)")
    import igraph as ig

    reference = ig.Graph(n=n, edges=edges.tolist())
    reference.es["weight"] = weight.tolist()
    ring_of = labels.reindex(account_ids.astype(str)).fillna("").to_numpy()
    ring_rows = np.flatnonzero((ring_of != "") & (node_of_account >= 0))
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/graph.npz"
        np.savez(path, n=n, edges=edges, weight=weight)
        ctx = mp.get_context("spawn")
        rows = []
        for name in args.libraries.split(","):
            queue: mp.Queue = ctx.Queue()
            proc = ctx.Process(
                target=run_library, args=(name, path, settings.resolution, args.seed, queue)
            )
            proc.start()
            out = queue.get()
            proc.join()
            membership = np.asarray(out["membership"])
            modularity = reference.modularity(
                membership.tolist(), weights="weight", resolution=settings.resolution
            )
            ari = adjusted_rand(ring_of[ring_rows], membership[node_of_account[ring_rows]])
            rows.append(
                {
                    "library": name,
                    "seconds": round(out["seconds"], 3),
                    "peak_rss_mb": round(out["peak_rss_mb"], 1),
                    "rss_growth_mb": round(out["delta_rss_mb"], 1),
                    "modularity": round(modularity, 4),
                    "ari_rings": round(ari, 4),
                    "communities": len(np.unique(membership)),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    fastest_peer = table.set_index("library")["seconds"]
    table["time_vs_networkx"] = (
        table["seconds"] / fastest_peer.get("networkx-louvain", np.nan)
    ).round(3)
    print(table.to_markdown(index=False) if hasattr(table, "to_markdown") else table.to_string())
    if args.out:
        args.out.write_text(table.to_json(orient="records", indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
