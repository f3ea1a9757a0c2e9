"""A throwaway PostgreSQL server for the tests: Debian's binaries, loopback only, deleted afterwards.

`throwaway_postgres()` runs initdb into a fresh temporary folder, starts the server on 127.0.0.1 at a free
unprivileged port with trust authentication, creates one database and yields its URL; on exit it stops the
server and deletes the folder, also when the test body failed. `restartable_postgres()` yields the server
itself, which a test may stop and start again. initdb refuses to run as root, so under root
the server runs as the `postgres` system user (created by Debian's package) and owns the folder.
We never touch the system cluster that Debian's package may have set up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

SUPERUSER = "nas"
DATABASE = "nas_test"
START_TIMEOUT_S = 60
# Durability is pointless for a server deleted after the tests; turning it off makes commits cheap.
SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


T = TypeVar("T")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def find_bin_dir() -> Path:
    """The newest Debian PostgreSQL bin folder holding initdb and pg_ctl (or the ones on PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for folder in candidates:
        if all(os.access(os.path.join(folder, tool), os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(folder)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    raise PostgresUnavailable(
        "no PostgreSQL binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH; "
        "install Debian's `postgresql` package (setup.sh does)"
    )


def _version_key(folder: str) -> tuple[int, ...]:
    version = Path(folder).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def free_port() -> int:
    """An unprivileged TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> str | None:
    """The system user to run the server as when we are root (initdb refuses root); None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        raise PostgresUnavailable(
            "running as root and there is no `postgres` system user to run the server as "
            "(Debian's `postgresql` package creates it)"
        ) from None


def _as_user(command: list[str], user: str | None) -> list[str]:
    return command if user is None else ["runuser", "-u", user, "--", *command]


def _run(command: list[str], user: str | None, cwd: Path) -> None:
    command = _as_user(command, user)
    # cwd: the server user cannot read the caller's folder (e.g. /root) and initdb complains about it.
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresUnavailable(f"`{' '.join(command)}` could not run: {exc}") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise PostgresUnavailable(f"`{' '.join(command)}` failed (exit {result.returncode}): {output}")


@dataclasses.dataclass
class PostgresServer:
    """A running throwaway server that a test may stop and start again (same port, same data)."""

    url: str
    port: int
    bin_dir: Path
    data: Path
    log: Path
    user: str | None
    root: Path

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: 'fast' ends every session (what a restart by an administrator does)."""
        _run([str(self.bin_dir / "pg_ctl"), "--pgdata", str(self.data), "--mode", mode, "--wait", "stop"],
             self.user, self.root)

    def start(self) -> None:
        _pg_ctl_start(self.bin_dir, self.data, self.log, self.user, self.root, self.port)

    def is_running(self) -> bool:
        status = subprocess.run(_as_user([str(self.bin_dir / "pg_ctl"), "--pgdata", str(self.data), "status"],
                                         self.user), cwd=self.root, capture_output=True)
        return status.returncode == 0


@contextlib.contextmanager
def restartable_postgres() -> Iterator[PostgresServer]:
    """Start a fresh server on 127.0.0.1 and yield it (its `url` is
    `postgresql://nas@127.0.0.1:PORT/nas_test`), then stop it and delete it all.

    Raises PostgresUnavailable (with the server log where there is one) when the server cannot start.
    """
    bin_dir = find_bin_dir()
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="nas-postgres-"))
    try:
        if user is not None:
            shutil.chown(root, user=user)
        data, log = root / "data", root / "server.log"
        _run([str(bin_dir / "initdb"), "--pgdata", str(data), "--username", SUPERUSER, "--auth", "trust",
              "--encoding", "UTF8", "--locale", "C", "--no-sync"], user, root)
        port = _start(bin_dir, data, log, user, root)
        server = PostgresServer(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}", port, bin_dir, data,
                                log, user, root)
        try:
            _create_database(port)
            yield server
        finally:
            if server.is_running():  # a test may leave it stopped
                # Immediate: the data is thrown away, so there is no point waiting for clients or a checkpoint.
                server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a fresh server on 127.0.0.1, yield `postgresql://nas@127.0.0.1:PORT/nas_test`, then delete it all.

    Raises PostgresUnavailable (with the server log where there is one) when the server cannot start.
    """
    with restartable_postgres() as server:
        yield server.url


@contextlib.contextmanager
def postgres_or_skip(server: Callable[[], contextlib.AbstractContextManager[T]] = throwaway_postgres) -> Iterator[T]:
    """`server()` (default `throwaway_postgres()`), but where no server can start: skip the test, or fail it
    when CI is set.

    CI installs PostgreSQL (setup.sh), so there a missing server is a broken set-up, not a reason to skip.
    """
    with contextlib.ExitStack() as stack:
        try:
            running = stack.enter_context(server())
        except PostgresUnavailable as exc:
            reason = str(exc)
        else:
            yield running
            return
    # Outside the except block, so the report shows the reason alone, not a chained traceback.
    if in_ci():
        pytest.fail(f"CI is set but no PostgreSQL server could be started: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server could be started: {reason.splitlines()[0]}")


def in_ci() -> bool:
    """Whether the CI environment variable is set (to anything but an explicit false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _start(bin_dir: Path, data: Path, log: Path, user: str | None, root: Path) -> int:
    """Start the server at a free port and return the port; a port taken in between means another try."""
    for attempt in range(3):
        port = free_port()
        try:
            _pg_ctl_start(bin_dir, data, log, user, root, port)
            return port
        except PostgresUnavailable as exc:
            server_log = _read(log)
            if attempt == 2 or "Address already in use" not in server_log:
                raise PostgresUnavailable(f"{exc}\nserver log:\n{server_log}") from None


def _pg_ctl_start(bin_dir: Path, data: Path, log: Path, user: str | None, root: Path, port: int) -> None:
    # The socket folder is ours too: /var/run/postgresql may be missing or belong to the system cluster.
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} {SERVER_OPTIONS}"
    _run([str(bin_dir / "pg_ctl"), "--pgdata", str(data), "--log", str(log), "--options", options,
          "--wait", "--timeout", str(START_TIMEOUT_S), "start"], user, root)


def _create_database(port: int) -> None:
    try:
        with psycopg.connect(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
    except psycopg.Error as exc:
        raise PostgresUnavailable(f"server started on port {port} but creating the database failed: {exc}") from None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return "(no log written)"
