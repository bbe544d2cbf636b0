"""Regenerate docs/cli.md from the commands' own help text.

``tests/test_docs.py`` fails when docs/cli.md and the help text disagree; run
``make docs`` (this script) after changing a command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

from linker.cli import cli

HEADER = """# Command reference

Generated from each command's `--help` by `make docs` (tools/gen_cli_docs.py);
`tests/test_docs.py` checks that this page matches the help text.
"""


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        path = (*prefix, name)
        paths.append(path)
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, path))
    return paths


def render() -> str:
    runner = CliRunner()
    parts = [HEADER]
    for path in [(), *command_paths(cli)]:
        result = runner.invoke(cli, [*path, "--help"], prog_name="linker", terminal_width=100)
        if result.exit_code != 0:
            raise SystemExit(f"linker {' '.join(path)} --help failed: {result.output}")
        title = "linker " + " ".join(path) if path else "linker"
        parts.append(f"## `{title.strip()}`\n\n```text\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        raise SystemExit(0 if target.read_text() == render() else 1)
    target.write_text(render())


if __name__ == "__main__":
    main()
