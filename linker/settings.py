"""Typed settings that drive the pipeline.

Settings are a tree of frozen dataclasses. They load from a TOML file whose tables match
the dataclass sections, and take overrides (from CLI options) as dotted keys. Every problem
found is collected, and :class:`~linker.errors.SettingsError` is raised once with all of them.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from linker import kinds, signals
from linker.errors import SettingsError

__all__ = [
    "BehaviourSettings",
    "EmbedSettings",
    "EmbeddingReviewSettings",
    "IngestSettings",
    "LinkSettings",
    "RunSettings",
    "Settings",
    "SparkSettings",
    "load_settings",
]

logger = logging.getLogger(__name__)

OnError = Literal["quarantine", "fail"]


@dataclass(frozen=True)
class IngestSettings:
    """How input tables are read and checked."""

    on_error: OnError = "quarantine"
    """``quarantine`` sets rejected rows aside beside the output and goes on; ``fail`` exits 2."""

    max_reported_rows: int = 10
    """How many row numbers an error message lists before it gives a count."""

    earliest: str = "2000-01-01"
    """The earliest plausible timestamp (ISO 8601; no offset means UTC). Anything earlier is
    rejected as ``implausible_timestamp``. The default is older than any account of a public
    API: a date before it is a placeholder or an epoch-zero default (``1970-01-01``,
    ``0001-01-01``), not an event."""

    latest: str | None = None
    """The latest plausible timestamp (ISO 8601), or unset: then the later of the time of the
    run plus ``future_skew_hours`` and each column's own range (its third quartile plus three
    inter-quartile ranges, plus a day), so a dataset dated after the machine's clock is kept
    while a lone ``9999-12-31`` is not. A timestamp after it is rejected as
    ``implausible_timestamp``. Set it to validate an old export reproducibly, or to pin the
    bound in tests."""

    future_skew_hours: float = 24.0
    """How far past the run's clock a timestamp may lie when ``latest`` is unset: the skew of
    the exporting system's clock, and local times mislabelled as UTC (up to 14 h)."""

    def problems(self) -> list[str]:
        found = []
        if self.on_error not in ("quarantine", "fail"):
            found.append(f"ingest.on_error must be 'quarantine' or 'fail', not {self.on_error!r}")
        if self.max_reported_rows < 1:
            found.append("ingest.max_reported_rows must be at least 1")
        earliest = _instant(self.earliest, "ingest.earliest", found)
        latest = _instant(self.latest, "ingest.latest", found) if self.latest else None
        if earliest is not None and latest is not None and latest <= earliest:
            found.append(
                f"ingest.latest ({self.latest}) must be later than ingest.earliest "
                f"({self.earliest})"
            )
        if not 0 <= self.future_skew_hours <= 24 * 366:
            found.append("ingest.future_skew_hours must be between 0 and 8784 (a year)")
        return found

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The plausible timestamps ``(earliest, latest)``, both UTC.

        Parameters
        ----------
        now : datetime, optional
            The run's clock (default: now); used only when ``latest`` is unset.

        Returns
        -------
        tuple of datetime
            Timezone-aware UTC bounds, both inclusive.
        """
        problems: list[str] = []
        earliest = _instant(self.earliest, "ingest.earliest", problems)
        if self.latest:
            latest = _instant(self.latest, "ingest.latest", problems)
        else:
            latest = (now or datetime.now(UTC)) + timedelta(hours=self.future_skew_hours)
        if problems or earliest is None or latest is None:
            raise SettingsError(problems)
        return earliest, latest


def _instant(text: str, name: str, problems: list[str]) -> datetime | None:
    """An ISO 8601 date or date-time as an aware UTC datetime (no offset means UTC)."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        problems.append(f"{name} must be an ISO 8601 date or timestamp, not {text!r}")
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class BehaviourSettings:
    """Behavioural evidence from the events table (see docs/behaviour.md)."""

    enabled: bool = True
    """Compute behaviour features and lockstep pairs and use them (``linker run
    --no-behaviour`` turns this off)."""

    bucket_minutes: tuple[int, ...] = (60, 240)
    """Widths of the time buckets of lockstep actions."""

    min_jaccard: float = 0.3
    """Lockstep pairs need at least this estimated Jaccard similarity at some width."""

    model_min_jaccard: float = 0.4
    """... and at least this on (bucket, model) sets, where heavy users meet by chance."""

    min_tokens: int = 8
    """Accounts with fewer distinct actions at a width take no part in lockstep there."""

    n_hashes: int = 24
    """MinHash functions per signature."""

    band_rows: int = 2
    """MinHash rows per LSH band."""

    max_bucket: int = 30
    """LSH buckets larger than this are cut into random blocks of at most this mean size
    (bounds the comparisons; docs/behaviour.md)."""

    lockstep_is_a_family: bool = False
    """Count lockstep with cluster members as a family of evidence for membership."""

    lockstep_weight: float = 0.75
    """Link weight of one lockstep pair (two pairs reach ``link.min_attachment``)."""

    min_lockstep_partners: int = 3
    """An account shows lockstep in full with this many synchronised cluster members."""

    output_heavy_quantile: float = 0.9
    """An account is output-heavy in full when its output/input token ratio reaches this
    quantile of the ratios of all accounts with traffic, and not at all at their median (in
    proportion on a log scale between): heavy relative to how this population uses the API."""

    min_rows: int = 3
    """Accounts with fewer event rows show no traffic features."""

    pivot_prior_requests: float = 20.0
    """Pseudo-requests at the population's share that shrink a small account's pivot share."""

    pivot_full_share: float = 0.5
    """Share of traffic on a new model (in the 72 h after its release) counting in full."""

    dormancy_days: float = 14.0
    """An account first used this long after signup, then heavily within a week, has woken."""

    wake_window_hours: float = 48.0
    """Woken accounts of a cluster count as waking together within this window."""

    def problems(self) -> list[str]:
        found = []
        if not self.bucket_minutes or any(w < 1 for w in self.bucket_minutes):
            found.append("link.behaviour.bucket_minutes must list widths of at least 1 minute")
        if not 0 < self.min_jaccard <= 1 or not 0 < self.model_min_jaccard <= 1:
            found.append("link.behaviour.min_jaccard and model_min_jaccard must be in (0, 1]")
        for name in ("min_tokens", "n_hashes", "band_rows", "max_bucket", "min_lockstep_partners"):
            if getattr(self, name) < 1:
                found.append(f"link.behaviour.{name} must be at least 1")
        if self.band_rows > self.n_hashes:
            found.append("link.behaviour.band_rows must not exceed link.behaviour.n_hashes")
        for name in ("lockstep_weight", "pivot_prior_requests", "dormancy_days"):
            if getattr(self, name) < 0:
                found.append(f"link.behaviour.{name} must be at least 0")
        if not 0.5 < self.output_heavy_quantile < 1:
            found.append("link.behaviour.output_heavy_quantile must be in (0.5, 1)")
        if not 0 < self.pivot_full_share <= 1:
            found.append("link.behaviour.pivot_full_share must be in (0, 1]")
        if self.wake_window_hours <= 0:
            found.append("link.behaviour.wake_window_hours must be greater than 0")
        return found


@dataclass(frozen=True)
class EmbeddingReviewSettings:
    """Embedding proximity as review evidence (``[link.embedding]``; docs/embeddings.md)."""

    enabled: bool = False
    """Move unflagged accounts near a flagged cluster to review (never to suspend)."""

    threshold: float = 0.9
    """Cosine similarity to the flagged cluster's centroid from which an account is near it."""

    dimensions: int = 256
    """Length of the FastRP vectors for the rule and for ``linker expand`` (also the Neo4j
    vector index's dimension); bench/expand.py measured 256 against 64 (docs/embeddings.md)."""

    min_shared: int = 1
    """Non-supernode identifiers the account must share with that cluster's accounts."""

    def problems(self) -> list[str]:
        found = []
        if not -1 <= self.threshold <= 1:
            found.append(f"link.embedding.threshold must be in [-1, 1], not {self.threshold}")
        if not 1 <= self.dimensions <= 4096:
            found.append(f"link.embedding.dimensions must be in [1, 4096], not {self.dimensions}")
        if self.min_shared < 1:
            found.append(f"link.embedding.min_shared must be at least 1, not {self.min_shared}")
        return found


@dataclass(frozen=True)
class LinkSettings:
    """How accounts are linked, clustered and scored (see docs/linking.md)."""

    kind_priors: dict[str, float] = field(default_factory=kinds.default_priors)
    """Prior strength of an exact shared value per identifier kind (default: each registered
    kind's prior, :mod:`linker.kinds`); unknown kinds get 0."""

    strong_kinds: tuple[str, ...] = field(default_factory=kinds.strong_kinds)
    """Kinds whose shared value always keeps the accounts in one cluster."""

    customer_kinds: tuple[str, ...] = field(default_factory=kinds.customer_kinds)
    """Kinds whose shared value means 'one paying customer' (used to count customers)."""

    public_alpha: float = 1e-4
    """A value is corroborated by an identifier of another family that at least two of its
    holders share, when the Poisson tail of that count (its mean being what independent
    holding predicts) is below this (docs/linking.md §2, :mod:`linker.graph.public`)."""

    public_majority: float = 0.5
    """A value whose corroborated holders are fewer than this share is public: it links
    nobody (an SDK's default prompt, a CGNAT or VPN address, a placeholder card)."""

    public_sample: int = 2048
    """Values held by more accounts are judged on about this many holders (cost only)."""

    pair_max_accounts: int = 48
    """Values shared by more accounts than this are linked through a hub node, not pairs."""

    min_link_weight: float = 0.5
    """Account pairs whose summed evidence is below this are not linked."""

    min_attachment: float = 1.5
    """A community member whose values shared with the others weigh less than this (and none of
    them strong) is dropped from the cluster: one shared residential IP is not evidence."""

    relative_attachment: float = 0.0
    """... and less than this share of the median attachment of the community's other members."""

    organisation_share: float = 0.5
    """A cluster whose members sit behind networks it owns (an office NAT, a campus, a
    home, a venue) is one organisation, and behaving alike is its routine: routine signals
    (shared templates, bursts, lockstep, the model pivot) count in full while ``c`` is at
    most this and not at all at ``c = 1``, where ``c`` measures how far its members
    sit behind networks of their own (the share behind the most-held subnet, or ``1 − 1/n``
    for ``n`` the members' mean network size; :mod:`linker.signals.identity`)."""

    min_attachment_families: int = 2
    """A member whose ties to the rest of its cluster (its strong-link unit aside) come from
    fewer kind families than this leaves it: one family of evidence is coincidence until
    another corroborates it (a VPN user sharing proxy exits with a ring, a neighbour sharing
    a home /24)."""

    suspend_with_peers: bool = True
    """Suspend a clustered account whose own shared values reach members suspended on their
    own evidence through ``min_attachment_families`` families (a reserve account on the
    ring's devices and signup IPs, with no traffic to judge it by). One hop: an account
    suspended this way never suspends another."""

    min_cluster_size: int = 3
    """Communities with fewer accounts get no cluster id."""

    confirm_membership: bool = True
    """In a cluster with flagged members, release the members the scoring leaves unflagged:
    a cluster lists the accounts its evidence implicates, not every account Leiden placed
    beside them. The other members' scores are unchanged."""

    resolution: float = 0.25
    """Resolution of the modularity objective of community detection."""

    burst_window_minutes: float = 60.0
    """Two signups this close in time (sharing a burst key) count towards a burst."""

    burst_min_accounts: int = 5
    """An account is in a burst when this many others with its key signed up in the window."""

    burst_kinds: tuple[str, ...] = field(default_factory=kinds.burst_kinds)
    """Keys along which signup bursts are counted."""

    burst_excess: float = 5.0
    """A key burst needs this many times the signups the key's base rate predicts."""

    score_weights: dict[str, float] = field(default_factory=signals.default_weights)
    """Weights of the cluster features in the cluster score (see docs/linking.md)."""

    score_bias: float = -3.0
    """Intercept of the logistic cluster score."""

    suspend_threshold: float = 0.8
    """Accounts scoring at least this are suspended."""

    review_threshold: float = 0.5
    """Accounts scoring at least this (and below suspend) are sent to review."""

    max_reasons: int = 3
    """How many evidence items a reason text cites."""

    behaviour: BehaviourSettings = field(default_factory=BehaviourSettings)
    """Behavioural evidence: features, lockstep, template populations (docs/behaviour.md)."""

    embedding: EmbeddingReviewSettings = field(default_factory=EmbeddingReviewSettings)
    """Embedding proximity as review-only evidence (docs/embeddings.md)."""

    def problems(self) -> list[str]:
        found = self.behaviour.problems() + self.embedding.problems()
        for kind, prior in self.kind_priors.items():
            if prior < 0:
                found.append(f"link.kind_priors.{kind} must be at least 0, not {prior}")
        if not 0 < self.public_alpha < 1:
            found.append("link.public_alpha must be in (0, 1)")
        if not 0 < self.public_majority <= 1:
            found.append("link.public_majority must be in (0, 1]")
        if self.public_sample < 16:
            found.append("link.public_sample must be at least 16")
        if self.pair_max_accounts < 2:
            found.append("link.pair_max_accounts must be at least 2")
        if self.min_link_weight < 0:
            found.append("link.min_link_weight must be at least 0")
        if not 0 <= self.relative_attachment <= 1:
            found.append("link.relative_attachment must be in [0, 1]")
        if self.min_attachment < 0:
            found.append("link.min_attachment must be at least 0")
        if self.min_cluster_size < 2:
            found.append("link.min_cluster_size must be at least 2")
        if self.resolution <= 0:
            found.append("link.resolution must be greater than 0")
        if self.burst_window_minutes <= 0:
            found.append("link.burst_window_minutes must be greater than 0")
        if self.burst_excess < 1:
            found.append("link.burst_excess must be at least 1")
        if self.burst_min_accounts < 1:
            found.append("link.burst_min_accounts must be at least 1")
        unknown = set(self.score_weights) - set(signals.default_weights())
        if unknown:
            found.append(f"link.score_weights has unknown features: {', '.join(sorted(unknown))}")
        if not 0 <= self.review_threshold <= 1 or not 0 <= self.suspend_threshold <= 1:
            found.append("link.review_threshold and link.suspend_threshold must be in [0, 1]")
        elif self.review_threshold > self.suspend_threshold:
            found.append("link.review_threshold must not exceed link.suspend_threshold")
        if not 0 <= self.organisation_share < 1:
            found.append("link.organisation_share must be in [0, 1)")
        if self.max_reasons < 1:
            found.append("link.max_reasons must be at least 1")
        return found


ExportAction = Literal["suspend", "review", "none"]


@dataclass(frozen=True)
class RunSettings:
    """What ``linker run`` spares and exports (see docs/pipeline.md)."""

    allowlist: str = ""
    """An allow-list file (``kind,value`` lines); relative paths are taken from the current
    directory. Empty: no allow-list."""

    decisions: str = ""
    """An analysts' decisions file (confirmed and cleared accounts or clusters; CSV, CSV.gz
    or Parquet; docs/decisions.md); relative paths are taken from the current directory.
    Empty: none."""

    actions: tuple[ExportAction, ...] = ("suspend", "review")
    """Which actions the export holds (the billing system's takedown list: flagged rows)."""

    min_score: float = 0.0
    """Rows scoring below this are left out of the export."""

    pseudonymise: bool = False
    """Replace every identifier value by its keyed HMAC pseudonym right after normalisation
    (:mod:`linker.pseudonyms`; the key comes from the environment variable
    ``LINKER_PSEUDONYM_KEY`` only)."""

    shrink_floor: float = 0.5
    """A new takedown list may not replace the previous one at ``--out`` when it has fewer
    rows, or fewer ``suspend`` rows, than this share of the previous list's (each compared
    only when the previous list had some): the run stops with exit code 2 and the previous
    list is kept, unless ``--allow-shrink``. Relative, so it means the same for a list of 50
    rows and of 50,000; a list that empties is always caught. 0 turns the check off."""

    memory_budget_gb: float = 8.0
    """The memory the run may use, in GiB (0: no budget). Before any work the run estimates
    its peak from the size of its input and warns when the estimate is over the budget;
    while it runs, in-memory copies of artefacts are kept for later stages only while the
    process holds under half the budget (the other half is the next stage's working set):
    above it, an artefact the next stage does not read is dropped and read again from the
    run directory when a later stage needs it (docs/performance.md)."""

    def problems(self) -> list[str]:
        found = []
        if not self.memory_budget_gb >= 0.0:
            found.append(f"run.memory_budget_gb must be 0 or more, not {self.memory_budget_gb}")
        if not 0.0 <= self.shrink_floor <= 1.0:
            found.append(f"run.shrink_floor must be in [0, 1], not {self.shrink_floor}")
        bad = [a for a in self.actions if a not in ("suspend", "review", "none")]
        if bad:
            found.append(f"run.actions must be suspend, review or none, not {', '.join(bad)}")
        if not self.actions:
            found.append("run.actions must name at least one action")
        if not 0.0 <= self.min_score <= 1.0:
            found.append("run.min_score must be in [0, 1]")
        return found


EmbedMethod = Literal["node2vec", "fastrp"]
SkipgramTrainer = Literal["numba", "gensim"]


@dataclass(frozen=True)
class EmbedSettings:
    """How graph embeddings are computed (see docs/embeddings.md)."""

    method: EmbedMethod = "fastrp"
    """``fastrp`` (linear-time random projection) or ``node2vec`` (biased walks + skip-gram):
    the embedding of ``linker expand`` and of :func:`linker.graph.embed.embed`."""

    dimensions: int = 128
    """Length of each embedding vector."""

    walks_per_node: int = 10
    """node2vec: walks started from every node (r)."""

    walk_length: int = 80
    """node2vec: nodes per walk (l)."""

    window: int = 10
    """node2vec: skip-gram context size (k)."""

    p: float = 1.0
    """node2vec return parameter: low values keep walks local."""

    q: float = 1.0
    """node2vec in-out parameter: low values push walks outward (depth-first)."""

    negative: int = 5
    """node2vec: negative samples per positive pair."""

    epochs: int = 3
    """node2vec: passes of skip-gram over the walks."""

    workers: int = 1
    """Skip-gram training threads; only 1 gives the same vectors on every run."""

    alpha: float = 0.025
    """node2vec: skip-gram learning rate at the start of training."""

    min_alpha: float = 0.0001
    """node2vec: learning rate at the end of training (linear decay, any thread count)."""

    trainer: SkipgramTrainer = "numba"
    """node2vec: ``numba`` (our skip-gram kernel) or ``gensim`` (the measured reference)."""

    weighted: bool = False
    """Walk and propagate by edge weight (identifier rarity) instead of uniformly."""

    fastrp_weights: tuple[float, ...] = (0.0, 1.0, 1.0)
    """FastRP: weight of each propagation step (1-hop, 2-hop, ...)."""

    fastrp_normalization_strength: float = 0.0
    """FastRP: exponent of the degree scaling of the initial random vectors."""

    hops: int = 4
    """Candidate subgraph: edges reached out from flagged and review accounts."""

    whole_graph_max_nodes: int = 200_000
    """Embed the whole graph (super-nodes left out) when it has at most this many nodes."""

    def problems(self) -> list[str]:
        found = []
        if self.method not in ("node2vec", "fastrp"):
            found.append(f"embed.method must be 'node2vec' or 'fastrp', not {self.method!r}")
        if self.trainer not in ("numba", "gensim"):
            found.append(f"embed.trainer must be 'numba' or 'gensim', not {self.trainer!r}")
        for name in ("dimensions", "walks_per_node", "walk_length", "window", "epochs", "workers"):
            if getattr(self, name) < 1:
                found.append(f"embed.{name} must be at least 1, not {getattr(self, name)}")
        if self.negative < 0:
            found.append(f"embed.negative must be at least 0, not {self.negative}")
        if not self.p > 0 or not self.q > 0:
            found.append("embed.p and embed.q must be greater than 0")
        if not 0 <= self.min_alpha <= self.alpha:
            found.append(
                "embed.min_alpha must be at least 0 and at most embed.alpha, "
                f"not {self.min_alpha} (alpha {self.alpha})"
            )
        if not self.fastrp_weights:
            found.append("embed.fastrp_weights must name at least one iteration weight")
        if self.hops < 0:
            found.append(f"embed.hops must be at least 0, not {self.hops}")
        if self.whole_graph_max_nodes < 0:
            found.append("embed.whole_graph_max_nodes must be at least 0")
        return found

    def validate_section(self) -> EmbedSettings:
        """Return ``self``, or raise :class:`SettingsError` listing every problem."""
        problems = self.problems()
        if problems:
            raise SettingsError(problems)
        return self


@dataclass(frozen=True)
class SparkSettings:
    """The Spark engine's session (``linker run --engine spark``; docs/scale.md)."""

    master: str = "local[2]"
    """Where Spark runs: ``local[N]``, ``spark://HOST:7077``, ``yarn``, ``k8s://...``
    (``--spark-master`` overrides it). Ignored when a session is already running, as under
    ``spark-submit``."""

    app_name: str = "linker"
    """The application's name in Spark's UI and the cluster manager."""

    shuffle_partitions: int = 8
    """``spark.sql.shuffle.partitions``: partitions of every group-by's shuffle."""

    conf: dict[str, str] = field(default_factory=dict)
    """Further Spark configuration keys (``"spark.executor.memory" = "4g"`` ...)."""

    def problems(self) -> list[str]:
        found = []
        if not self.master.strip():
            found.append("spark.master must name a Spark master, not an empty string")
        if not self.app_name.strip():
            found.append("spark.app_name must not be empty")
        if self.shuffle_partitions < 1:
            found.append(
                f"spark.shuffle_partitions must be at least 1, not {self.shuffle_partitions}"
            )
        bad = sorted(k for k in self.conf if not k.startswith("spark."))
        if bad:
            found.append(f"spark.conf keys must start with 'spark.', not {', '.join(bad)}")
        return found


@dataclass(frozen=True)
class Settings:
    """All settings of a run. Each field is a section of the TOML file."""

    seed: int = 42
    ingest: IngestSettings = field(default_factory=IngestSettings)
    link: LinkSettings = field(default_factory=LinkSettings)
    run: RunSettings = field(default_factory=RunSettings)
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)

    def problems(self) -> list[str]:
        """Every problem in every section (an empty list when the settings are valid)."""
        found: list[str] = []
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            if dataclasses.is_dataclass(value) and hasattr(value, "problems"):
                found.extend(value.problems())
        return found

    def validate(self) -> Settings:
        """Return ``self``, or raise :class:`SettingsError` listing every problem."""
        problems = self.problems()
        if problems:
            raise SettingsError(problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (used in run manifests)."""
        return dataclasses.asdict(self)


def load_settings(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build :class:`Settings` from defaults, an optional TOML file and dotted overrides.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file; its tables are settings sections (``[ingest]``, ...).
    overrides : mapping, optional
        Dotted keys such as ``{"ingest.on_error": "fail"}``, applied after the file.
        ``None`` values are skipped, so unset CLI options can be passed straight through.

    Returns
    -------
    Settings
        Validated settings.

    Raises
    ------
    SettingsError
        Listing every unknown key, wrongly typed value and invalid value at once.

    Examples
    --------
    >>> load_settings(overrides={"ingest.on_error": "fail"}).ingest.on_error
    'fail'
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError([f"{path}: cannot read settings file ({exc.strerror})"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"{path}: not valid TOML ({exc})"]) from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    settings = _build(Settings, data, "", problems)
    if problems:
        raise SettingsError(problems)
    return settings.validate()


def _build(cls: type, data: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            problems.append(f"unknown setting {prefix}{key}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if not isinstance(value, Mapping):
                problems.append(f"{name} must be a table of settings")
                continue
            kwargs[f.name] = _build(hint, value, f"{name}.", problems)
            continue
        coerced = _coerce(value, hint, name, problems)
        if coerced is not _INVALID:
            kwargs[f.name] = coerced
    return cls(**kwargs)


_INVALID = object()


def _coerce(value: Any, hint: Any, name: str, problems: list[str]) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value in allowed:
            return value
        problems.append(f"{name} must be one of {', '.join(map(repr, allowed))}, not {value!r}")
        return _INVALID
    if origin in (dict, Mapping) or hint is dict:
        args = typing.get_args(hint)
        if not isinstance(value, Mapping):
            problems.append(f"{name} must be a table")
            return _INVALID
        if args:
            out = {}
            for k, v in value.items():
                c = _coerce(v, args[1], f"{name}.{k}", problems)
                if c is not _INVALID:
                    out[k] = c
            return out
        return dict(value)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            problems.append(f"{name} must be a list")
            return _INVALID
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{name}[{i}]", problems) for i, v in enumerate(value)]
        if any(i is _INVALID for i in items):
            return _INVALID
        return tuple(items) if origin is tuple else items
    if origin is types.UnionType or origin is typing.Union:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, members[0], name, problems)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if isinstance(hint, type) and hint in (int, float, bool, str):
        problems.append(f"{name} must be {hint.__name__}, not {type(value).__name__} {value!r}")
        return _INVALID
    return value
