"""Where a study lives: an embedded journal file in the run folder by default, or any Optuna storage URL.

The journal file takes appends from many processes without "database is locked" errors, so local worker
processes can share it; a PostgreSQL (or MySQL) URL lets workers on several machines share one study.
Crash safety (heartbeats, retry of a dead worker's trial) is the study runner's, the same on every storage.

Faults of the storage underneath are met here, the same way for every caller (search, report, scaling):

- journal: a last record cut by a full disk or a power loss is moved aside on open (to `<journal>.partial`,
  with a one-line warning) and every complete record is kept; a damaged record elsewhere is refused with a
  NasError naming the file and line, before anything is written; a write the disk refuses leaves the file
  as it was and raises EnvironmentFault.
- database: a lost connection (server restarted, network blip) is retried with backoff for up to
  `NAS_STORAGE_RETRY_S` seconds (default 120); past that, EnvironmentFault names the database.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.exceptions import StorageInternalError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy.engine import make_url

from nas._common.atomic import fsync_path
from nas._common.parse import is_int
from nas._common.runfiles import STUDY_JOURNAL
from nas.errors import EnvironmentFault, NasError, write_fault

TABLE_RACE_ATTEMPTS = 5
RETRY_ENV = "NAS_STORAGE_RETRY_S"
DEFAULT_RETRY_S = 120.0
PARTIAL_SUFFIX = ".partial"
JOURNAL_PREFIXES = ("journal:", "file://", "file:")

_logger = logging.getLogger(__name__)
_OPS = {int(op) for op in JournalOperation}
T = TypeVar("T")


def default_storage_path(run_dir: Path) -> Path:
    return Path(run_dir) / STUDY_JOURNAL


def storage_target(url: str) -> tuple[str, str]:
    """('journal', path) or ('database', url) for a storage URL, checked without connecting.

    Journal files: `journal:PATH`, `file:PATH` or a path ending in `.journal`; anything else must be a
    SQLAlchemy URL whose dialect and driver are installed. A malformed URL raises NasError naming it.
    """
    if not isinstance(url, str) or not url.strip():
        raise NasError(f"storage URL {url!r} is empty")
    for prefix in JOURNAL_PREFIXES:
        if url.startswith(prefix):
            path = url[len(prefix):]
            if not path.strip():
                raise NasError(f"storage URL {url!r} names no journal file")
            return "journal", path
    if url.endswith(".journal"):
        return "journal", url
    try:
        make_url(url).get_dialect()
    except Exception as exc:  # SQLAlchemy raises ArgumentError, ValueError, NoSuchModuleError ...
        raise NasError(f"cannot open storage {url!r}: {_first_line(exc)}") from None
    return "database", url


def open_storage(url: str | None, run_dir: Path, *, retry_s: float | None = None) -> BaseStorage:
    """Open the study storage: `url` if given (any Optuna storage URL), else the run folder's journal file.

    An unreachable or malformed URL, or a journal damaged before its last record, raises NasError naming
    it, before anything is written. `retry_s` bounds the retries of a lost database connection (default:
    the NAS_STORAGE_RETRY_S environment variable, else 120 s).
    """
    if url is None:
        try:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_fault(run_dir, exc, "create") from exc
        return open_journal(default_storage_path(run_dir))
    kind, target = storage_target(url)
    if kind == "journal":
        return open_journal(Path(target))
    return _open_database(url, _retry_bound(retry_s))


# --- the journal file -------------------------------------------------------------------------------------


def open_journal(path: Path) -> JournalStorage:
    """A JournalStorage on `path`: every complete record checked and replayed, then a cut last record repaired."""
    backend = JournalFile(path)
    try:
        storage = JournalStorage(backend)
    except NasError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, AssertionError) as exc:
        # A record that reads as JSON but that Optuna cannot replay (a hand edit, a glued-on fragment).
        raise backend.damaged(backend.line_read, f"cannot replay it: {type(exc).__name__} {exc}") from None
    backend.repair()
    return storage


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend, kept whole.

    Reading checks every record and names the file and line of a damaged one. A last line without its
    newline is a record being written by another process, or one cut by a crash: `repair()` (under the
    journal's lock, so a writer in progress is waited for) moves a cut one to `<journal>.partial` and every
    append checks again, so no record is ever written onto a cut line. An append the disk refuses is
    truncated away, leaving the file as it was.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            super().__init__(str(self.path))  # creates the file when missing
        except OSError as exc:
            raise write_fault(self.path, exc, "create") from exc
        self._resume = (0, 0)  # (record number, byte offset) where the next read continues
        self.line_read = 0  # the line of the last record handed to the replay (1-based)

    # reading

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        number, offset = self._resume if self._resume[0] <= log_number_from else (0, 0)
        with open(self.path, "rb") as handle:
            end = os.fstat(handle.fileno()).st_size  # a writer may be appending: stop at what is there now
            handle.seek(offset)
            for line in handle:
                offset += len(line)
                if offset > end or not line.endswith(b"\n"):
                    break  # being written, or cut: not a record yet
                number += 1
                self._resume = (number, offset)
                if number > log_number_from:
                    self.line_read = number
                    yield self._decode(line, number)

    def _decode(self, line: bytes, line_number: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise self.damaged(line_number, f"not a JSON record: {getattr(exc, 'msg', exc)}") from None
        if not isinstance(record, dict) or not is_int(record.get("op_code")) or record["op_code"] not in _OPS:
            raise self.damaged(line_number, "not an Optuna journal record")
        return record

    def damaged(self, line_number: int, reason: str) -> NasError:
        """The refusal of a journal whose line `line_number` is damaged."""
        kept = line_number - 1
        return NasError(f"{self.path}: line {line_number} is damaged ({reason[:200]}); nothing was written to it. "
                        f"To keep the {kept} records before it, save a copy and cut the file to its first {kept} lines")

    # repairing and writing

    def repair(self) -> None:
        """Move a cut last record aside (see the class doc); nothing happens to a journal that ends whole."""
        try:
            if not self._cut_tail_start():
                return
            with self._locked():
                self._move_cut_tail_aside()
        except OSError as exc:
            raise write_fault(self.path, exc, "repair the cut last record of") from exc

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        try:
            with self._locked():
                self._move_cut_tail_aside()
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                try:
                    size = os.fstat(fd).st_size
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view):]
                        os.fsync(fd)
                    except OSError:
                        with _suppress_os_error():
                            os.ftruncate(fd, size)  # the disk took part of the records: give it back
                            os.fsync(fd)
                        raise
                finally:
                    os.close(fd)
        except OSError as exc:
            raise write_fault(self.path, exc) from exc

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def _cut_tail_start(self) -> int | None:
        """The byte offset where a last line without its newline starts, or None when the file ends whole."""
        with open(self.path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end == 0:
                return None
            handle.seek(end - 1)
            if handle.read(1) == b"\n":
                return None
            position = end
            while position > 0:
                start = max(0, position - 65536)
                handle.seek(start)
                newline = handle.read(position - start).rfind(b"\n")
                if newline >= 0:
                    return start + newline + 1
                position = start
            return 0

    def _move_cut_tail_aside(self) -> None:
        """Append the cut last line to the side file, then cut it off the journal (the lock is held)."""
        start = self._cut_tail_start()
        if start is None:
            return
        with open(self.path, "rb") as handle:
            handle.seek(start)
            fragment = handle.read()
            handle.seek(0)
            kept = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        side = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        with open(side, "ab") as out:  # written and flushed before the journal loses a byte
            out.write(fragment + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.truncate(self.path, start)
        fsync_path(self.path)
        _logger.warning("%s: its last record was cut (e.g. by a full disk or a power loss): moved its %d bytes "
                        "to %s; the %d complete records before it are kept", self.path, len(fragment), side, kept)


@contextmanager
def _suppress_os_error() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


# --- databases --------------------------------------------------------------------------------------------


def _retry_bound(retry_s: float | None) -> float:
    if retry_s is not None:
        return float(retry_s)
    text = os.environ.get(RETRY_ENV, "").strip()
    if not text:
        return DEFAULT_RETRY_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise NasError(f"{RETRY_ENV}={text!r}: expected a number of seconds >= 0")
    return value


def _open_database(url: str, retry_s: float) -> RDBStorage:
    engine_kwargs: dict = {"pool_pre_ping": True}  # a connection the server dropped is replaced, not used
    if url.startswith("postgresql"):
        # libpq waits about two minutes on a host that drops packets; a user deserves an answer sooner.
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    for attempt in range(TABLE_RACE_ATTEMPTS):
        try:
            return RetryingRDBStorage(url, engine_kwargs=engine_kwargs, retry_s=retry_s)
        except Exception as exc:  # SQLAlchemy raises many types; the user needs one line naming the URL
            if _lost_table_creation_race(exc) and attempt < TABLE_RACE_ATTEMPTS - 1:
                time.sleep(0.2 + random.random())
                continue
            raise NasError(f"cannot open storage {url!r}: {_first_line(exc)}") from None
    raise AssertionError("unreachable")


def _lost_table_creation_race(exc: Exception) -> bool:
    """Several workers creating a fresh database's tables at once: SQLAlchemy's create_all is not atomic, and
    the losers see a duplicate-key error; opening again then finds the tables made."""
    return any(marker in str(exc) for marker in ("UniqueViolation", "already exists"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_LOST = (sqlalchemy_exc.OperationalError, sqlalchemy_exc.InterfaceError, sqlalchemy_exc.PendingRollbackError)


def _connection_lost(exc: BaseException) -> bool:
    """Whether a storage error is the connection's (server gone or restarting), not the request's: Optuna
    wraps SQLAlchemy's errors, and a dropped connection may surface while handling another error."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, _LOST) or (isinstance(error, sqlalchemy_exc.DBAPIError) and error.connection_invalidated):
            return True
        if isinstance(error, (StorageInternalError, sqlalchemy_exc.SQLAlchemyError)):
            pending += [error.__cause__, error.__context__]
    return False


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r":[^:@/]*@", ":***@", url)


class RetryingRDBStorage(RDBStorage):
    """RDBStorage whose every call survives a database restart: a lost connection is retried with
    exponential backoff (0.5 s doubling to 4 s, jittered) for up to `retry_s` seconds, then EnvironmentFault.

    Each call is one transaction, so a retry repeats it whole. A commit whose answer was lost may have
    happened: setting an attribute again is harmless, finishing a trial again is refused (the runner treats
    it as done), and a trial created twice is an orphan the runner's stale recovery fails and replaces.
    """

    def __init__(self, url: str, *, engine_kwargs: dict[str, Any], retry_s: float) -> None:
        self.retry_s = retry_s
        super().__init__(url, engine_kwargs=engine_kwargs)

    def _retried(self, call: Callable[[], T]) -> T:
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                result = call()
            except Exception as exc:
                if not _connection_lost(exc):
                    raise
                waited = time.monotonic() - start
                delay = min(0.5 * 2 ** attempt, 4.0) * random.uniform(0.75, 1.25)
                reason = _first_line(exc.__cause__ or exc)
                self.scoped_session.remove()  # this thread's next try starts a fresh session
                if waited + delay > self.retry_s:
                    raise EnvironmentFault(
                        f"database {safe_url(self.url)} unreachable for {waited:.0f} s ({reason}); "
                        f"gave up after {self.retry_s:g} s ({RETRY_ENV}): run the same command again "
                        "once it is back, the study resumes") from None
                if attempt == 0:
                    _logger.warning("database %s unreachable (%s); retrying for up to %g s",
                                    safe_url(self.url), reason, self.retry_s)
                time.sleep(delay)
                attempt += 1
                continue
            if attempt:
                _logger.warning("database %s reachable again after %.0f s", safe_url(self.url),
                                time.monotonic() - start)
            return result


def _retrying(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)

    def call(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retried(lambda: method(self, *args, **kwargs))

    call.__name__, call.__doc__ = name, method.__doc__
    return call


# Every RDBStorage method that talks to the database: the storage API and the private ones that Optuna's
# cache in front of it calls.
_DATABASE_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
    "create_new_trial", "set_trial_param", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "_get_trials", "get_best_trial",
    "record_heartbeat", "_get_stale_trial_ids", "_create_new_trial", "_set_trial_param", "_get_best_trial_id",
)
for _name in _DATABASE_METHODS:
    setattr(RetryingRDBStorage, _name, _retrying(_name))


def create_or_load_study(storage: BaseStorage, name: str, directions: Sequence[str]) -> optuna.Study:
    """The study `name` in `storage`, created with `directions` if it does not exist yet (several workers may
    race to create it: the losers load it); NasError if it exists with other directions."""
    # Look before creating: a create of an existing study would still append to the journal file.
    if name not in optuna.get_all_study_names(storage):
        try:
            return optuna.create_study(study_name=name, storage=storage, directions=list(directions))
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another worker created it a moment ago
    study = optuna.load_study(study_name=name, storage=storage)
    if [d.name.lower() for d in study.directions] != list(directions):
        raise NasError(f"study {name!r} has directions {[d.name.lower() for d in study.directions]}, "
                       f"not {list(directions)}: it is not a study of this kind")
    return study
