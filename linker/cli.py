"""The ``linker`` command line: a thin click layer over the library.

Each command parses its options, calls one public library function and formats the result.
Library errors become one-line messages with the exit codes documented in
:mod:`linker.errors`; this module imports neither ``neo4j`` nor Cypher text.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from linker import __version__, incremental, pipeline
from linker.cells import terminal_text
from linker.changes import DIFF_FORMATS
from linker.engine.compute import ENGINES
from linker.errors import LinkerError
from linker.evaluate import evaluate_decision_file, evaluate_files
from linker.scenarios.params import SCENARIOS
from linker.settings import load_settings
from linker.stages import stage_names

logger = logging.getLogger("linker")


class LinkerClickError(click.ClickException):
    """A library error shown as ``Error: <one line>`` with the library's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        line = message.splitlines()[0] if message else "error"
        # The message may repeat a user's value: nothing in it may drive the terminal.
        super().__init__(terminal_text(line, one_line=True) or "error")
        # click declares exit_code on the class; each library error carries its own.
        self.exit_code = exit_code  # type: ignore[misc]


class LinkerGroup(click.Group):
    """Turn library exceptions into one-line click errors instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LinkerError as exc:
            raise LinkerClickError(str(exc), exc.exit_code) from None
        except click.ClickException as exc:
            # click's own messages quote what the user typed.
            exc.message = terminal_text(exc.message)  # type: ignore[misc]
            raise
        except (click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if logger.isEnabledFor(logging.DEBUG):
                raise
            raise LinkerClickError(
                f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)", 1
            ) from None


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("linker")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(cls=LinkerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="linker")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Link fraudulent API accounts into rings and export takedown lists.

    Exit codes: 0 success; 1 runtime problem (server unreachable, missing tool);
    2 input or settings rejected, or a usage error.
    """
    _configure_logging(verbose)


# --- ingest: validate (linker.io.validate) ---


@cli.command("validate")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("validated"),
    show_default=True,
    help="Directory for tables/*.parquet, quarantine/*.csv, observations.parquet "
    "and validation.json.",
)
@click.option(
    "--on-error",
    type=click.Choice(["quarantine", "fail"]),
    help="Quarantine rejected rows and go on, or stop with exit code 2 if any row is "
    "rejected [default: quarantine].",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(path_type=Path),
    help="A TOML settings file (its [ingest] section: on_error, max_reported_rows, earliest, "
    "latest, future_skew_hours); --on-error overrides it.",
)
def validate_command(
    data_dir: Path, out_dir: Path, on_error: str | None, settings_file: Path | None
) -> None:
    """Check the dataset in DATA_DIR against the input contract (docs/contract.md).

    Prints rows read, accepted and rejected per table, and one line per problem on stderr.
    Exit code 0 when validation completed (even with quarantined rows); 2 for a file-level
    problem, or for any rejected row with --on-error fail.
    """
    from linker.io.validate import ValidationFailed, validate_dataset

    settings = load_settings(settings_file, overrides={"ingest.on_error": on_error})
    try:
        result = validate_dataset(
            data_dir,
            out_dir=out_dir,
            on_error=settings.ingest.on_error,
            max_reported_rows=settings.ingest.max_reported_rows,
            settings=settings.ingest,
        )
    except ValidationFailed as failed:
        for problem in failed.problems:
            click.echo(terminal_text(str(problem), one_line=True), err=True)
        raise
    for problem in result.problems:
        click.echo(terminal_text(str(problem), one_line=True), err=True)
    rows = [(name, c.read, c.accepted, c.rejected) for name, c in result.summary.items()]
    header = ("table", "read", "accepted", "rejected")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(v).rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)]
        click.echo("  ".join(cells))
    quarantined = f"; rejected rows in {out_dir / 'quarantine'}" if result.n_rejected else ""
    click.echo(f"wrote {out_dir}{quarantined}")


# --- the main job: run, export, explain, evaluate (linker.pipeline, linker.evaluate) ---

_FORMAT_CHOICE = click.Choice(["csv", "jsonl", "parquet"])
_ACTION_CHOICE = click.Choice(["suspend", "review", "none"])


@cli.command("run")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The takedown list to write (.csv, .jsonl or .parquet).",
)
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    help="Where to save the run's artefacts [default: <export stem>.run beside the export].",
)
@click.option("--format", "fmt", type=_FORMAT_CHOICE, help="Export format [default: from --out].")
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(path_type=Path),
    help="A TOML settings file; the options below override it.",
)
@click.option("--seed", type=int, help="Seed of community detection [default: 42].")
@click.option("--suspend-threshold", type=float, help="Score from which accounts are suspended.")
@click.option("--review-threshold", type=float, help="Score from which accounts go to review.")
@click.option(
    "--on-error",
    type=click.Choice(["quarantine", "fail"]),
    help="Quarantine rejected rows and go on, or stop (exit 2) [default: quarantine].",
)
@click.option(
    "--allowlist",
    type=click.Path(path_type=Path),
    help="Accounts never flagged: a file of kind,value lines (see docs/pipeline.md).",
)
@click.option(
    "--decisions",
    type=click.Path(path_type=Path),
    help="Analysts' decisions: confirmed and cleared accounts or clusters (docs/decisions.md).",
)
@click.option("--min-score", type=float, help="Leave rows scoring below this out of the export.")
@click.option(
    "--action",
    "actions",
    multiple=True,
    type=_ACTION_CHOICE,
    help="Actions to export (repeatable) [default: suspend and review].",
)
@click.option(
    "--no-behaviour",
    is_flag=True,
    help="Link without behavioural evidence (lockstep, model pivot, traffic; docs/behaviour.md).",
)
@click.option(
    "--pseudonymise",
    is_flag=True,
    help="Replace every identifier value (e-mail, IP, card, device ...) in the run directory, "
    "reasons and Neo4j by its keyed HMAC pseudonym; the key is read from the environment "
    "variable LINKER_PSEUDONYM_KEY [default: run.pseudonymise of --settings, else off].",
)
@click.option(
    "--neo4j",
    "load_neo4j",
    is_flag=True,
    help="Then load the run into Neo4j (NEO4J_URI or the local server), as `linker neo4j load`.",
)
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="Replace the previous list at --out even when the new one is much smaller "
    "(below run.shrink_floor of its rows or suspend rows; otherwise exit 2 and keep it).",
)
@click.option(
    "--from",
    "start",
    type=click.Choice(stage_names()),
    help="Start at this stage, reusing what the earlier stages saved in the run directory "
    "(for example `--from score` after changing score settings).",
)
@click.option(
    "--previous",
    type=click.Path(path_type=Path),
    help="The previous run's directory: clusters keep its ids, and the change list "
    "published beside the export lists what changed since its list (may be the run "
    "directory this run replaces).",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="Compute engine: `spark` runs the stages that have a Spark implementation on a "
    "Spark session (needs linker[spark]; docs/scale.md).",
)
@click.option(
    "--spark-master",
    help="Spark master URL: local[2], spark://HOST:7077, yarn, k8s://... "
    "[default: spark.master of --settings, else local[2]].",
)
def run_command(
    data_dir: Path,
    out: Path,
    run_dir: Path | None,
    fmt: str | None,
    settings_file: Path | None,
    seed: int | None,
    suspend_threshold: float | None,
    review_threshold: float | None,
    on_error: str | None,
    allowlist: Path | None,
    decisions: Path | None,
    min_score: float | None,
    actions: tuple[str, ...],
    no_behaviour: bool,
    pseudonymise: bool | None,
    load_neo4j: bool,
    allow_shrink: bool,
    start: str | None,
    previous: Path | None,
    engine: str,
    spark_master: str | None,
) -> None:
    """Validate, link, score and export a takedown list for DATA_DIR (the main job).

    Runs the stages validate, normalise, behaviour, identifiers, communities, signals,
    score, proximity, decide and export; saves their artefacts (tables, graph, clusters,
    scores, manifest) in the run directory for `linker export`, `linker explain`, `linker
    expand` and the Neo4j load, and writes a manifest beside the export.
    """
    if spark_master is not None and engine != "spark":
        raise click.BadOptionUsage("spark_master", "--spark-master needs --engine spark")
    settings = load_settings(
        settings_file,
        overrides={
            "seed": seed,
            "link.suspend_threshold": suspend_threshold,
            "link.review_threshold": review_threshold,
            "ingest.on_error": on_error,
            "run.allowlist": str(allowlist) if allowlist is not None else None,
            "run.decisions": str(decisions) if decisions is not None else None,
            "run.min_score": min_score,
            "run.actions": list(actions) if actions else None,
            "link.behaviour.enabled": False if no_behaviour else None,
            "run.pseudonymise": True if pseudonymise else None,
            "spark.master": spark_master,
        },
    )
    if load_neo4j:
        from linker.neo4j.runner import check_server

        check_server()  # before the run, not after the export: no server, no run
    result = pipeline.run(
        data_dir,
        out,
        run_dir=run_dir,
        settings=settings,
        fmt=fmt,
        start=start,
        allow_shrink=allow_shrink,
        previous=previous,
        engine=engine,
    )
    click.echo(result.render())
    if load_neo4j:
        from linker.neo4j.loader import load_run

        _echo_load_summary(load_run(result.run_dir))


@cli.command("update")
@click.argument("new_data", type=click.Path(path_type=Path))
@click.option(
    "--previous",
    required=True,
    type=click.Path(path_type=Path),
    help="The previous run directory (of `linker run` or `linker update`); left unchanged.",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The takedown list to write (.csv, .jsonl or .parquet).",
)
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    help="The new run directory [default: <export stem>.run beside the export]; not --previous.",
)
@click.option("--format", "fmt", type=_FORMAT_CHOICE, help="Export format [default: from --out].")
@click.option(
    "--allowlist",
    type=click.Path(path_type=Path),
    help="Another allow-list than the previous run's (kind,value lines, docs/pipeline.md).",
)
@click.option(
    "--decisions",
    type=click.Path(path_type=Path),
    help="Another analysts' decisions file than the previous run's (docs/decisions.md).",
)
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="Replace the previous list at --out even when the new one is much smaller.",
)
def update_command(
    new_data: Path,
    previous: Path,
    out: Path,
    run_dir: Path | None,
    fmt: str | None,
    allowlist: Path | None,
    decisions: Path | None,
    allow_shrink: bool,
) -> None:
    """Add the rows in NEW_DATA that arrived since a previous run, and export the new list.

    NEW_DATA holds the accounts opened since the previous run and the payments and events
    that arrived since (docs/contract.md). The previous run's tables, observations,
    identifier counts, behaviour features and communities are carried over and updated;
    the settings are the previous run's (docs/incremental.md).
    """
    result = incremental.update(
        new_data,
        previous,
        out,
        run_dir=run_dir,
        fmt=fmt,
        allowlist=allowlist,
        decisions=decisions,
        allow_shrink=allow_shrink,
    )
    click.echo(result.render())


@cli.command("export")
@click.option(
    "--run-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A run directory written by `linker run`.",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The file to write (.csv, .jsonl or .parquet).",
)
@click.option("--format", "fmt", type=_FORMAT_CHOICE, help="Export format [default: from --out].")
@click.option("--min-score", type=float, help="Leave rows scoring below this out.")
@click.option(
    "--action",
    "actions",
    multiple=True,
    type=_ACTION_CHOICE,
    help="Actions to export (repeatable) [default: the run's, suspend and review].",
)
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="Replace the previous list at --out even when the new one is much smaller "
    "(below run.shrink_floor of its rows or suspend rows; otherwise exit 2 and keep it).",
)
def export_command(
    run_dir: Path,
    out: Path,
    fmt: str | None,
    min_score: float | None,
    actions: tuple[str, ...],
    allow_shrink: bool,
) -> None:
    """Re-export the takedown list of a saved run, filtered, in csv, jsonl or parquet.

    The file and its manifest are published together; a list much smaller than the one it
    replaces is refused unless --allow-shrink.
    """
    result = pipeline.export_run(
        run_dir,
        out,
        fmt=fmt,
        min_score=min_score,
        actions=list(actions) or None,
        allow_shrink=allow_shrink,
    )
    counts = ", ".join(f"{a} {n:,}" for a, n in result.by_action.items() if n)
    click.echo(f"wrote {result.path} ({result.rows:,} rows{': ' + counts if counts else ''})")


@cli.command("diff")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(DIFF_FORMATS),
    help="table, csv, jsonl, json or parquet (parquet only with --out) [default: table, or "
    "from the suffix of --out].",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="Write the changes to this file (atomically) instead of the terminal.",
)
def diff_command(run_a: Path, run_b: Path, fmt: str | None, out: Path | None) -> None:
    """Print what changed from RUN_A's takedown list to RUN_B's (two run directories).

    The rows are the change list `linker run --previous RUN_A` publishes for RUN_B: new
    suspensions and reviews, lifted ones, changed clusters, each with its decision_id.
    """
    from linker.changes import diff_runs

    changes = diff_runs(run_a, run_b)
    if out is not None:
        changes.write(out, fmt)
        click.echo(f"wrote {out} ({changes.summary()})")
        return
    if fmt == "parquet":
        raise click.UsageError("--format parquet needs --out")
    click.echo(changes.render(fmt or "table"), nl=False)
    if (fmt or "table") == "table":
        click.echo(changes.summary())


@cli.command("explain")
@click.argument("account_id")
@click.option(
    "--run-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A run directory written by `linker run`.",
)
@click.option(
    "--max-links",
    type=click.IntRange(min=1),
    default=25,
    show_default=True,
    help="How many linked accounts to list.",
)
def explain_command(account_id: str, run_dir: Path, max_links: int) -> None:
    """Show why ACCOUNT_ID got its action: its cluster, linked accounts and evidence."""
    text = pipeline.explain(run_dir, account_id).render(max_links=max_links)
    click.echo(terminal_text(text))


@cli.command("expand")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option(
    "--seeds",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV of confirmed accounts, with an account_id column, or an analysts' decisions "
    "file (docs/decisions.md): its confirmed accounts and clusters.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="How many accounts to rank.",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The ranking to write (CSV: account_id, score, reasons; best first).",
)
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    help="The run of DATA_DIR to reuse, or where to run it "
    "[default: a matching run under the working directory, else <DATA_DIR name>.run].",
)
@click.option(
    "--method",
    type=click.Choice(["fastrp", "node2vec"]),
    help="The embedding: fastrp (linear time) or node2vec (walks and skip-gram) "
    "[default: embed.method of --settings, else fastrp].",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(path_type=Path),
    help="A TOML settings file (link, link.embedding, embed, seed).",
)
def expand_command(
    data_dir: Path,
    seeds: Path,
    top: int,
    out: Path,
    run_dir: Path | None,
    method: str | None,
    settings_file: Path | None,
) -> None:
    """Rank accounts by graph-embedding similarity to the confirmed ones in --seeds.

    DATA_DIR is a dataset or a run directory. A saved run of DATA_DIR is reused when its
    manifest names DATA_DIR and its input files are unchanged; otherwise `linker run` runs
    first. Seeds are left out of the ranking; each row names its nearest confirmed accounts
    and the identifiers it shares with them (docs/embeddings.md).
    """
    from linker.expand import expand

    settings = load_settings(settings_file, overrides={"embed.method": method})
    ranked = expand(data_dir, seeds, top=top, settings=settings, run_dir=run_dir, out=out)
    click.echo(f"wrote {out} ({len(ranked):,} accounts)")


@cli.command("score")
@click.argument("new_accounts", type=click.Path(path_type=Path))
@click.option(
    "--against",
    "run_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A finished run directory (`linker run`'s) to score the new accounts against.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every new account's score here (CSV); rejected rows go to OUT.quarantine/.",
)
@click.option(
    "--on-error",
    type=click.Choice(["quarantine", "fail"]),
    help="Quarantine rejected rows and go on, or stop with exit code 2 [default: the run's].",
)
def score_command(
    new_accounts: Path, run_dir: Path, out: Path | None, on_error: str | None
) -> None:
    """Score the new accounts in NEW_ACCOUNTS against a finished run, without a run.

    NEW_ACCOUNTS is a data directory in the input contract (accounts; payments and events
    optional). Each account is matched against the run's flagged clusters: values it shares
    with their flagged members (weighted as the run weighed them) and signups inside their
    bursts; it gets a score, an action and reasons naming the values and members
    (docs/score.md). Prints the flagged ones, or writes all of them to --out.
    """
    from linker.signup import score_accounts

    result = score_accounts(new_accounts, run_dir, out=out, on_error=on_error)
    for problem in result.validation.problems:
        click.echo(terminal_text(str(problem), one_line=True), err=True)
    if out is None:
        flagged = result.scores[result.scores["action"] != "none"]
        for row in flagged.itertuples(index=False):
            line = f"{row.account_id}\t{row.cluster_id}\t{row.score:.4f}\t{row.action}\t"
            click.echo(terminal_text(line + str(row.reason_codes), one_line=False))
    click.echo(result.render(), err=out is None)


@cli.command("evaluate")
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="Ground truth: account_id, ring_id (empty = benign), optional group.",
)
@click.option(
    "--decisions",
    type=click.Path(path_type=Path),
    help="Analysts' decisions (docs/decisions.md): confirmed = positive, cleared = negative.",
)
@click.option(
    "--takedown",
    required=True,
    type=click.Path(path_type=Path),
    help="A takedown list (csv, jsonl or parquet) from `linker run` or `linker export`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate_command(
    labels: Path | None, decisions: Path | None, takedown: Path, as_json: bool
) -> None:
    """Precision, recall, F1, per-ring recall, false positives per group and ARI.

    Against --labels (ground truth), against analysts' --decisions (confirmed = positive,
    cleared = negative; flagged accounts without a decision are counted as unjudged), or
    both; one of them is needed.
    """
    if labels is None and decisions is None:
        raise click.UsageError("give --labels, --decisions or both")
    parts: list[tuple[str, Any]] = []
    if labels is not None:
        parts.append(("labels", evaluate_files(labels, takedown)))
    if decisions is not None:
        parts.append(("decisions", evaluate_decision_file(decisions, takedown)))
    if not as_json:
        click.echo("\n".join(result.render() for _, result in parts))
    elif len(parts) == 1:
        click.echo(json.dumps(parts[0][1].to_dict(), indent=2, sort_keys=True))
    else:
        both = {**parts[0][1].to_dict(), "decisions": parts[1][1].to_dict()}
        click.echo(json.dumps(both, indent=2, sort_keys=True))


# --- the ring report: one self-contained HTML page per run (linker.report) ---


@cli.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The HTML page to write (self-contained: opens without a network).",
)
@click.option("--cluster", "cluster_id", help="Show this cluster only (e.g. C-0001).")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    help="Show the N clusters with the highest scores [default: 10].",
)
def report_command(run_dir: Path, out: Path, cluster_id: str | None, top: int | None) -> None:
    """Write the ring report of RUN_DIR: per cluster, its accounts and the charts that show
    it is a ring (link graph, signups, hourly activity, model mix, token ratio, score
    waterfall). docs/report.md describes the page.
    """
    from linker.report import write_report

    result = write_report(run_dir, out, cluster=cluster_id, top=top)
    click.echo(result.summary())


# --- Neo4j: local server, load, analyst queries (linker.neo4j, linker.queries) ---
# The Neo4j modules are imported inside the commands: they pull in the driver, which the
# other commands do not need.

_DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="The local server's folder [default: ~/.cache/linker/neo4j-<version>/instance, "
    "or under $LINKER_CACHE_DIR].",
)


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


class _SecretSafeGroup(LinkerGroup):
    """The neo4j commands' group: every error message is redacted once more before it is
    shown (a password in a URI, or NEO4J_PASSWORD; :func:`linker.neo4j.redact.redact`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LinkerClickError as exc:
            from linker.neo4j.redact import redact

            message = redact(exc.message)
            if message == exc.message:
                raise
            raise LinkerClickError(message, exc.exit_code) from None


@cli.group("neo4j", cls=_SecretSafeGroup)
def neo4j_group() -> None:
    """Run a local Neo4j server and load runs into it.

    Connection settings come from NEO4J_URI, NEO4J_USER, NEO4J_PASSWORD and NEO4J_DATABASE,
    or else from the local server that `linker neo4j start` runs.
    """


@neo4j_group.command("start")
@_DATA_DIR_OPTION
@click.option(
    "--port",
    default="7687",
    show_default=True,
    help="Bolt port, or 'auto' for a free one (then the HTTP port is auto too).",
)
@click.option("--http-port", help="HTTP (Browser) port, or 'auto' [default: 7474].")
@click.option("--heap", default="2g", show_default=True, help="JVM heap size.")
@click.option("--pagecache", default="2g", show_default=True, help="Page cache size.")
@click.option(
    "--no-auth", is_flag=True, help="Turn authentication off (throwaway test servers only)."
)
@click.option(
    "--timeout", default=180.0, show_default=True, help="Seconds to wait for Bolt to answer."
)
def neo4j_start_command(
    data_dir: Path | None,
    port: str,
    http_port: str | None,
    heap: str,
    pagecache: str,
    no_auth: bool,
    timeout: float,
) -> None:
    """Start a local Neo4j Community server on 127.0.0.1 (jars resolved by Maven, once).

    The initial password is NEO4J_PASSWORD (never printed), or a generated one printed here
    once; either is kept in <data-dir>/password (mode 0600). The data directory is private
    (mode 0700, its files 0600).
    """
    from linker.neo4j.server import start_server

    if http_port is None:
        http_port = "auto" if port.lower() == "auto" else "7474"
    info = start_server(
        data_dir=data_dir,
        bolt_port=port,
        http_port=http_port,
        heap=heap,
        pagecache=pagecache,
        auth=not no_auth,
        timeout=timeout,
    )
    verb = "already running" if info.already_running else "started"
    click.echo(f"Neo4j {info.version} {verb} (pid {info.pid}, data {info.data_dir})")
    click.echo(f"Bolt URI:    {info.bolt_uri}")
    click.echo(f"Browser URL: {info.browser_url}")
    if not info.auth:
        click.echo("Auth:        off")
    elif info.password is not None:
        click.echo("User:        neo4j")
        click.echo(f"Password:    {info.password}  (shown once; kept in {info.password_file})")
    elif info.password_source == "NEO4J_PASSWORD":
        click.echo(
            f"User:        neo4j (password from NEO4J_PASSWORD; kept in {info.password_file})"
        )
    else:
        click.echo(f"User:        neo4j (password in {info.password_file})")


@neo4j_group.command("stop")
@_DATA_DIR_OPTION
@click.option("--timeout", default=60.0, show_default=True, help="Seconds before a forced kill.")
def neo4j_stop_command(data_dir: Path | None, timeout: float) -> None:
    """Stop the local server of --data-dir (by its pid file)."""
    from linker.neo4j.server import stop_server

    result = stop_server(data_dir=data_dir, timeout=timeout)
    if not result.stopped:
        click.echo(f"no Neo4j server running in {result.data_dir}")
    else:
        how = " (forced)" if result.forced else ""
        click.echo(f"stopped Neo4j (pid {result.pid}){how}")


@neo4j_group.command("status")
@_DATA_DIR_OPTION
def neo4j_status_command(data_dir: Path | None) -> None:
    """Report the local server: running or not, version, ports, pid and store size."""
    from linker.neo4j.server import server_status

    status = server_status(data_dir=data_dir)
    click.echo(f"data dir:   {status.data_dir}")
    if not status.running:
        click.echo("state:      stopped")
    else:
        answering = "answering" if status.bolt_answers else "not answering yet"
        click.echo(f"state:      running (pid {status.pid}, Bolt {answering})")
    if status.version:
        click.echo(f"version:    Neo4j {status.version}")
    if status.bolt_uri:
        click.echo(f"Bolt URI:   {status.bolt_uri}")
        click.echo(f"Browser:    {status.browser_url}")
    if status.auth is not None:
        click.echo(f"auth:       {'on' if status.auth else 'off'}")
    click.echo(f"store size: {_human_bytes(status.store_bytes)}")


@neo4j_group.command("jars")
def neo4j_jars_command() -> None:
    """Resolve the Neo4j jars with Maven into the cache (start does this when needed)."""
    from linker.neo4j.server import ensure_jars

    click.echo(f"Neo4j jars in {ensure_jars()}")


@neo4j_group.command("load")
@click.argument("run_dir", type=click.Path(path_type=Path))
@_DATA_DIR_OPTION
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Rows per UNWIND transaction (and per inner transaction with --concurrency).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Delete everything in the database first, in batches (with --bulk: overwrite it); "
    "also loads a run older than the one the database holds.",
)
@click.option(
    "--bulk",
    is_flag=True,
    help="First load into the EMPTY database of the local server with neo4j-admin import: "
    "stops the server, imports, restarts it (refused on a non-empty database without "
    "--replace).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Create the rows known to be new with CREATE in CALL { ... } IN N CONCURRENT "
    "TRANSACTIONS (Neo4j 5.21+); 0: every row with MERGE, one transaction per batch.",
)
@click.option(
    "--compress",
    is_flag=True,
    help="With --bulk: write the import files gzip-compressed (slower on a 2-core machine).",
)
def neo4j_load_command(
    run_dir: Path,
    data_dir: Path | None,
    batch_size: int,
    replace: bool,
    bulk: bool,
    concurrency: int,
    compress: bool,
) -> None:
    """Make Neo4j hold RUN_DIR's graph (accounts, identifiers, clusters, model use).

    After an earlier run, only what changed is written or deleted; the same run again is a
    no-op; a run older than the one held is refused without --replace.
    """
    if bulk:
        from linker.neo4j.bulk import bulk_load

        done = bulk_load(run_dir, data_dir=data_dir, replace=replace, compress=compress)
        click.echo(
            f"bulk-imported {done.run_dir} in {done.seconds:.1f} s "
            f"(neo4j-admin import {done.phases.get('import', 0.0):.1f} s)"
            + (" over the previous graph" if done.replaced else "")
        )
        _echo_load_counts(done.nodes, done.relationships, done.skipped)
        return
    from linker.neo4j.loader import load_run

    _echo_load_summary(
        load_run(
            run_dir,
            batch_size=batch_size,
            replace=replace,
            data_dir=data_dir,
            concurrency=concurrency,
        )
    )


def _echo_load_summary(summary: Any) -> None:
    """A load's :class:`linker.neo4j.loader.LoadSummary`: what changed, then the counts."""
    if summary.already_loaded:
        click.echo(f"{summary.run_dir}: run {summary.run_id} is already loaded; nothing written")
    else:
        click.echo(
            f"loaded {summary.run_dir} into Neo4j in {summary.batches:,} batches: "
            f"{sum(summary.rows_written.values()):,} rows written, "
            f"{sum(summary.rows_deleted.values()):,} deleted, {summary.unchanged:,} unchanged"
        )
    _echo_load_counts(summary.nodes, summary.relationships, summary.skipped)


def _echo_load_counts(
    nodes: dict[str, int], relationships: dict[str, int], skipped: dict[str, int]
) -> None:
    for label, n in sorted(nodes.items()):
        click.echo(f"  (:{label}) {n:,}")
    for rel_type, n in sorted(relationships.items()):
        click.echo(f"  [:{rel_type}] {n:,}")
    for reason, n in sorted(skipped.items()):
        click.echo(f"  skipped {reason}: {n:,}")


def _parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not k=v", param_hint="--param")
        params[key] = value
    return params


@cli.command("query")
@click.argument("name", required=False)
@click.option("--param", "params", multiple=True, help="A query parameter as k=v (repeatable).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--list", "list_only", is_flag=True, help="List the queries and their parameters.")
@_DATA_DIR_OPTION
def query_command(
    name: str | None, params: tuple[str, ...], fmt: str, list_only: bool, data_dir: Path | None
) -> None:
    """Run the analyst query NAME (a file in queries/) against Neo4j and print its rows."""
    from linker.queries import available_queries, format_result, query_info, run_query

    if list_only or name is None:
        for query in available_queries():
            info = query_info(query)
            click.echo(f"{query}: {info.purpose}")
            for p in info.params:
                default = "unset" if p.default is None else p.default
                spec = "required" if p.required else f"default {default}"
                click.echo(f"    --param {p.name}=<{p.type}> ({spec}): {p.description}")
        return
    result = run_query(name, _parse_params(params), data_dir=data_dir)
    click.echo(format_result(result.columns, result.rows, fmt), nl=False)


@cli.command("synth")
@click.option(
    "--accounts",
    "n_accounts",
    type=int,
    default=100_000,
    show_default=True,
    help="Accounts in the world (at least 1000); about 3.5% belong to planted rings.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of every random draw.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for accounts, payments, events and labels.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet"]),
    default="csv",
    show_default=True,
    help="File format of the tables.",
)
@click.option(
    "--events-per-account",
    type=float,
    default=20.0,
    show_default=True,
    help="Mean event rows per account (rings get more, benign users a heavy-tailed share).",
)
@click.option(
    "--scenario",
    type=click.Choice(list(SCENARIOS)),
    help="Write a world of this scenario instead (docs/scenarios.md); --events-per-account, "
    "when given, overrides its events_per_account.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    help="With --scenario: a knob as KEY=VALUE, overriding the scenario's (repeatable).",
)
@click.option(
    "--ring-accounts",
    type=click.IntRange(min=1),
    help="With --scenario: total ring accounts, fixed whatever --accounts is (same seed, "
    "same rings).",
)
def synth_command(
    n_accounts: int,
    seed: int,
    out_dir: Path,
    fmt: str,
    events_per_account: float,
    scenario: str | None,
    params: tuple[str, ...],
    ring_accounts: int | None,
) -> None:
    """Write a synthetic world with planted rings and innocent look-alikes, plus its labels.

    The same seed and options give byte-identical files. docs/synth.md describes the world;
    with --scenario, docs/scenarios.md describes the scenario family.
    """
    if scenario is None:
        if params or ring_accounts is not None:
            raise click.UsageError("--param and --ring-accounts need --scenario")
    else:
        _synth_scenario(
            scenario, n_accounts, seed, out_dir, fmt, events_per_account, params, ring_accounts
        )
        return
    from linker.synth import generate_world

    s = generate_world(
        n_accounts,
        seed,
        out_dir,
        fmt="parquet" if fmt == "parquet" else "csv",
        events_per_account=events_per_account,
    )
    ring_accounts = sum(s.rings.values())
    click.echo(
        f"wrote {s.n_accounts:,} accounts, {s.n_payments:,} payments, {s.n_events:,} events "
        f"({s.n_requests:,} requests) to {out_dir} in {s.elapsed_s:.1f} s"
    )
    click.echo(f"rings: {len(s.rings)} with {ring_accounts:,} accounts")
    click.echo("groups: " + ", ".join(f"{k} {v:,}" for k, v in s.groups.items()))


def _synth_scenario(
    scenario: str,
    n_accounts: int,
    seed: int,
    out_dir: Path,
    fmt: str,
    events_per_account: float,
    params: tuple[str, ...],
    ring_accounts: int | None,
) -> None:
    import time

    from linker.scenarios import generate_scenario

    overrides: dict[str, Any] = dict(_parse_params(params))
    source = click.get_current_context().get_parameter_source("events_per_account")
    if source is not None and source != click.core.ParameterSource.DEFAULT:
        overrides.setdefault("events_per_account", events_per_account)
    started = time.perf_counter()
    s = generate_scenario(
        scenario,
        n_accounts,
        seed,
        out_dir,
        fmt="parquet" if fmt == "parquet" else "csv",
        overrides=overrides,
        ring_accounts=ring_accounts,
    )
    elapsed = time.perf_counter() - started
    click.echo(
        f"wrote scenario {s.scenario} (seed {s.seed}): {s.n_accounts:,} accounts, "
        f"{s.n_payments:,} payments, {s.n_events:,} events ({s.n_requests:,} requests) "
        f"to {out_dir} in {elapsed:.1f} s"
    )
    scaled = f" (scaled by {s.ring_scale:.3f} to fit)" if s.ring_scale < 1 else ""
    click.echo(
        f"rings: {len(s.rings)} with {sum(s.rings.values()):,} accounts{scaled}: "
        + ", ".join(f"{k} {v:,}" for k, v in s.rings.items())
    )
    click.echo("groups: " + ", ".join(f"{k} {v:,}" for k, v in s.groups.items()))
    click.echo(f"window {s.window_start} to {s.window_end}; new model released {s.release_at}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="linker")


if __name__ == "__main__":
    main()
