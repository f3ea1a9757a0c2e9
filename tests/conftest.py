"""Shared test helpers: run the `nas` command in-process and capture its output; a throwaway PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nas.cli.main import main
from tests.postgres import postgres_or_skip


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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL database shared by the session (see tests/postgres.py).

    Where no server can be started the tests using it skip, saying why; with CI set they fail instead.
    """
    with postgres_or_skip() as url:
        yield url
