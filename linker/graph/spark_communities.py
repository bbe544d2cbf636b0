"""Leiden per connected component, inside Spark (the Spark engine's communities; docs/scale.md).

:func:`spark_partition_components` is :func:`linker.graph.communities.partition_components`
with the work spread over Spark: the components of the weighted graph come from
:func:`~linker.graph.spark_components.star_components`, and each component's edges go to one
``applyInPandas`` group, where the embedded engine's own code settles it (one community, or
every node alone: :func:`~linker.graph.communities.settled_components`) or runs Leiden on it
alone (igraph in the Python worker) with the resolution scaled to its share of the whole
graph's strength and the seed of its smallest node. Each component's partition is therefore
the embedded one, and so is the whole membership.

``pyspark`` is imported inside the functions: the module imports without it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from linker.graph.communities import (
    Method,
    _canonical_edges,
    _leiden,
    _numbered_by_first_node,
    component_seed,
    settled_components,
)
from linker.graph.spark_components import star_components

__all__ = ["SparkPartition", "partition_one_component", "spark_partition_components"]

logger = logging.getLogger(__name__)

_RESULT = "node long, component long, community long, leiden boolean"


@dataclass(frozen=True)
class SparkPartition:
    """What :func:`spark_partition_components` found.

    Attributes
    ----------
    membership : numpy.ndarray of int64
        Community per node (``-1`` without edges), as ``partition_components`` gives it.
    components : int
        Connected components with an edge.
    leiden_components : int
        Components Leiden partitioned (the others were settled).
    rounds : int
        Large-star / small-star rounds of the components.
    """

    membership: np.ndarray
    components: int
    leiden_components: int
    rounds: int


def partition_one_component(
    edges: pd.DataFrame, *, total: float, resolution: float, seed: int, method: Method
) -> pd.DataFrame:
    """The communities of one connected component, as the embedded engine finds them.

    Parameters
    ----------
    edges : pandas.DataFrame
        ``low``, ``high``, ``weight``: the component's canonical edges (any row order).
    total : float
        The whole graph's total strength ``M`` (twice its total edge weight).
    resolution, seed, method
        As in :func:`linker.graph.communities.partition_components`.

    Returns
    -------
    pandas.DataFrame
        ``node``, ``component`` (its smallest node), ``community`` (within the component),
        ``leiden`` (whether Leiden ran), one row per node.

    Notes
    -----
    O(m log m) to order the edges, plus Leiden when the component is not settled. The edges
    are put back in canonical order and the strength summed edge by edge in that order (as
    ``numpy.bincount`` does on the embedded engine), so the scaled resolution is the same
    float.
    """
    edges = edges.sort_values(["low", "high"], kind="stable")
    low = edges["low"].to_numpy(np.int64)
    high = edges["high"].to_numpy(np.int64)
    weight = edges["weight"].to_numpy(np.float64)
    nodes = np.unique(np.concatenate([low, high]))
    strength = float(np.bincount(np.zeros(len(weight), np.intp), weights=2.0 * weight)[0])
    state = settled_components(
        np.array([strength]), np.array([weight.min()]), np.array([len(weight)]), total, resolution
    )[0]
    if state == 1:
        community = np.zeros(len(nodes), dtype=np.int64)
    elif state == 0:
        community = np.arange(len(nodes), dtype=np.int64)
    else:
        local = np.stack([np.searchsorted(nodes, low), np.searchsorted(nodes, high)], axis=1)
        community = _leiden(
            len(nodes),
            local,
            weight,
            resolution * strength / total,
            component_seed(seed, int(nodes[0])),
            method,
        )
    return pd.DataFrame(
        {
            "node": nodes,
            "component": np.full(len(nodes), nodes[0], dtype=np.int64),
            "community": community,
            "leiden": np.full(len(nodes), state < 0),
        }
    )


def spark_partition_components(
    spark: Any,
    n_nodes: int,
    edges: np.ndarray,
    weights: np.ndarray,
    *,
    resolution: float = 1.0,
    seed: int = 42,
    method: Method = "igraph",
) -> SparkPartition:
    """:func:`linker.graph.communities.partition_components`, each component in a Spark task.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    n_nodes, edges, weights, resolution, seed, method
        As in :func:`~linker.graph.communities.partition_components`.

    Returns
    -------
    SparkPartition
        Its ``membership`` equals ``partition_components``' result.

    Notes
    -----
    The edges are put in canonical order on the driver (O(m log m)) and handed to Spark;
    :func:`~linker.graph.spark_components.star_components` labels each with its component, and
    one ``applyInPandas`` group per component runs :func:`partition_one_component`. A
    component is one task: its edges must fit one Python worker, which bounds the largest
    component Spark can partition (docs/scale.md). Back on the driver: one row per node with
    an edge, and an O(n log n) renumbering by first node.
    """
    from functools import partial

    edges, weights = _canonical_edges(edges, weights)
    membership = np.full(n_nodes, -1, dtype=np.int64)
    if len(edges) == 0:
        return SparkPartition(membership, 0, 0, 0)
    total = float(2.0 * weights.sum())
    frame = spark.createDataFrame(
        pa.table({"low": edges[:, 0], "high": edges[:, 1], "weight": weights})
    )
    found = star_components(frame.selectExpr("low AS src", "high AS dst"))
    labelled = frame.join(found.frame.withColumnRenamed("node", "low"), "low")
    work = partial(
        partition_one_component, total=total, resolution=resolution, seed=seed, method=method
    )
    parts = labelled.groupBy("component").applyInPandas(lambda pdf: work(pdf), _RESULT).toPandas()
    nodes = parts["node"].to_numpy(np.int64)
    keys = pd.MultiIndex.from_arrays([parts["component"], parts["community"]])
    membership[nodes] = pd.factorize(keys)[0]
    used = membership >= 0
    membership[used] = _numbered_by_first_node(membership[used])
    leiden = parts.loc[parts["leiden"], "component"].nunique()
    logger.debug("communities: Leiden in Spark on %d components", leiden)
    return SparkPartition(membership, parts["component"].nunique(), int(leiden), found.rounds)
