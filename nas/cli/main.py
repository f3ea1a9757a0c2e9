"""Entry point of the `nas` command: builds the parser from the command modules, sets up logging (-v/-q),
reads a subcommand's --config file; a user's error becomes one line on stderr and exit code 2, a fault of the
environment (disk full, database gone) one line and exit code 3 (nas.errors.run_reporting)."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Sequence

from nas._common.logs import configure_logging
from nas.cli import (
    export,
    latency,
    latency_table,
    predict,
    report,
    scale,
    search,
    show,
    supernet,
    train,
)
from nas.cli.config_file import expand_command_line, resolved_settings
from nas.errors import EXIT_USAGE, run_reporting

# Each command module exposes add_parser(subparsers) and run(args) -> int.
COMMANDS = (show, train, supernet, search, report, scale, export, predict, latency, latency_table)

DISTRIBUTION = "effnas"  # the project's name in pyproject.toml


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's), or 'unknown' when running from a bare checkout."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="nas", description="EfficientNet-style architecture search, scaling and export.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="also show debug messages")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="show warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `nas` command; returns the exit code."""
    parser = build_parser()

    def run() -> int | None:
        command_line, configurable = expand_command_line(parser, list(sys.argv[1:] if argv is None else argv))
        args = parser.parse_args(command_line)
        args.argv = command_line  # what a command that relaunches itself (nas train --nproc) repeats
        configure_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
        if configurable is not None:
            args.resolved_settings = resolved_settings(configurable, args)
        return args.run(args)

    return run_reporting(run)


if __name__ == "__main__":
    sys.exit(main())
