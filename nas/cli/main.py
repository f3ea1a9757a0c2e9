"""Entry point of the `nas` command: builds the parser from the command modules and turns user errors
into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from nas.cli import export, latency, report, scale, search, show, train
from nas.errors import NasError

# Each command module exposes add_parser(subparsers) and run(args) -> int.
COMMANDS = (show, train, search, report, scale, export, latency)

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="nas", description="EfficientNet-style architecture search, scaling and export.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `nas` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a command that relaunches itself repeats
    try:
        return int(args.run(args) or 0)
    except NasError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
