"""The `nas` command: a thin layer over the Python API, one module per subcommand."""

from nas.cli.main import main

__all__ = ["main"]
