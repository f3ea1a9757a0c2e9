"""Shared test helpers: run the `nas` command in-process and capture its output."""

from __future__ import annotations

import pytest

from nas.cli.main import main


@pytest.fixture
def run_nas(capsys: pytest.CaptureFixture[str]):
    """Call the CLI like a user would; returns (exit code, stdout, stderr)."""

    def _run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse exits on usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return _run
