"""Exceptions raised by the library.

Every exception the CLI is expected to meet derives from :class:`LinkerError` and carries
an ``exit_code``; the CLI turns it into a one-line message and that exit code. Exit codes:

* ``1`` — a runtime problem outside the input (server unreachable, missing tool, I/O failure);
* ``2`` — the input, the settings or an output location were rejected (also click's code for
  a usage error).
"""

from __future__ import annotations

__all__ = [
    "EXIT_INPUT",
    "EXIT_RUNTIME",
    "EnvironmentProblem",
    "InputError",
    "LinkerError",
    "OutputBusy",
    "OutputError",
    "SettingsError",
    "ShrinkRefused",
]

EXIT_RUNTIME = 1
EXIT_INPUT = 2


class LinkerError(Exception):
    """Base class for errors that the CLI reports as one line, without a traceback."""

    exit_code: int = EXIT_RUNTIME


class InputError(LinkerError):
    """The dataset (a file, a row or a column) was rejected."""

    exit_code = EXIT_INPUT


class SettingsError(LinkerError):
    """One or more settings are invalid; the message lists all of them."""

    exit_code = EXIT_INPUT

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid settings: " + "; ".join(self.problems))


class EnvironmentProblem(LinkerError):
    """Something outside the project is missing or unreachable (Java, Maven, a server)."""

    exit_code = EXIT_RUNTIME


class OutputError(LinkerError):
    """An output location was refused before any work started: inside the input data
    directory, an existing directory, not writable, or an artefact of the run directory."""

    exit_code = EXIT_INPUT


class ShrinkRefused(OutputError):
    """A takedown list would have replaced a much larger one (``run.shrink_floor``); the
    previous list was kept. ``--allow-shrink`` accepts the smaller list."""


class OutputBusy(LinkerError):
    """Another linker process holds the lock on an output (a takedown list or a run
    directory); the message names the holder."""

    exit_code = EXIT_RUNTIME
