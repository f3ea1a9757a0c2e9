"""The throwaway PostgreSQL server itself: it serves, leaves nothing behind, and skips or fails when it cannot start."""

from __future__ import annotations

import glob
import os
import pwd
import tempfile

import psycopg
import pytest

from tests import postgres


def _our_folders() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "nas-postgres-*")))


def _refuses_connections(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        return True
    return False


def test_server_runs_on_loopback_and_is_gone_after_a_failing_body(postgres_url: str):
    # postgres_url makes this skip (or fail under CI) like the other PostgreSQL tests where none can start.
    before = _our_folders()
    with pytest.raises(RuntimeError, match="body failed"):
        with postgres.throwaway_postgres() as url:
            with psycopg.connect(url) as conn:
                address, user, database = conn.execute(
                    "SELECT host(inet_server_addr()), current_user, current_database()").fetchone()
                data_dir = conn.execute("SHOW data_directory").fetchone()[0]
            assert (address, user, database) == ("127.0.0.1", postgres.SUPERUSER, postgres.DATABASE)
            # initdb refuses root, so under root the server runs as the postgres system user.
            server_uid = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.getuid()
            assert os.stat(data_dir).st_uid == server_uid
            raise RuntimeError("body failed")
    assert _refuses_connections(url)
    assert not os.path.exists(data_dir) and _our_folders() == before


def test_session_server_is_a_different_one_from_a_fresh_server(postgres_url: str):
    with postgres.throwaway_postgres() as url:
        assert url != postgres_url
    with psycopg.connect(postgres_url) as conn:  # stopping the fresh one left the session's running
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _no_binaries() -> None:
    raise postgres.PostgresUnavailable("no PostgreSQL binaries (test)")


def test_missing_server_skips_outside_ci(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(postgres, "find_bin_dir", _no_binaries)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL binaries"):
        with postgres.postgres_or_skip():
            pass


@pytest.mark.parametrize("value", ["true", "1"])
def test_missing_server_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str):
    monkeypatch.setattr(postgres, "find_bin_dir", _no_binaries)
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI is set.*no PostgreSQL binaries"):
        with postgres.postgres_or_skip():
            pass

