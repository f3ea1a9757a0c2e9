"""Shared test helpers: run the `nas` command in-process and capture its output; a throwaway PostgreSQL."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from nas.cli.main import main
from tests.postgres import PostgresUnavailable, throwaway_postgres


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


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL database shared by the session (see tests/postgres.py).

    Where no server can be started the tests using it skip, saying why; with CI set they fail instead:
    CI installs PostgreSQL, so these tests must run there.
    """
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as exc:
            if _in_ci():
                pytest.fail(f"CI is set but no PostgreSQL server could be started: {exc}", pytrace=False)
            pytest.skip(f"no PostgreSQL server could be started: {str(exc).splitlines()[0]}")
        yield url
