"""The `nas` command: a thin layer over the Python API, one module per subcommand (`main.COMMANDS` lists them),
each with `add_parser(subparsers)` and `run(args) -> exit code`.

May import every step; nothing imports it.
"""

from nas.cli.main import main

__all__ = ["main"]
