"""Logging for the tool's own output: library code logs through `logging.getLogger(__name__)` under the
`nas` and `scaling` loggers, and the `nas` command (or a worker process it starts) attaches one handler.

A program embedding the API keeps Python's default: nothing below WARNING is shown until it configures
logging itself, and it can silence or redirect these loggers like any other.
"""

from __future__ import annotations

import logging
import sys

LOGGERS = ("nas", "scaling")  # the top-level packages whose loggers the command configures
_HANDLER_NAME = "nas-cli"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (a test harness may swap it between commands)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Send the tool's log records at `level` and above to stderr as plain lines (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers):
            handler = _StderrHandler()
            handler.set_name(_HANDLER_NAME)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)


def tool_log_level() -> int | None:
    """The level `configure_logging` set in this process, or None when the tool's output is not configured
    here (a worker process mirrors its parent with this)."""
    logger = logging.getLogger(LOGGERS[0])
    configured = any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers)
    return logger.level if configured else None
