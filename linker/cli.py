"""The ``linker`` command line: a thin click layer over the library.

Each command parses its options, calls one public library function and formats the result.
Library errors become one-line messages with the exit codes documented in
:mod:`linker.errors`; this module imports neither ``neo4j`` nor Cypher text.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from linker import __version__
from linker.errors import LinkerError

logger = logging.getLogger("linker")


class LinkerClickError(click.ClickException):
    """A library error shown as ``Error: <one line>`` with the library's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message.splitlines()[0] if message else "error")
        self.exit_code = exit_code


class LinkerGroup(click.Group):
    """Turn library exceptions into one-line click errors instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LinkerError as exc:
            raise LinkerClickError(str(exc), exc.exit_code) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="linker")


if __name__ == "__main__":
    main()
