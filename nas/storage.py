"""Where a study lives: an embedded journal file in the run folder by default, or any Optuna storage URL.

The journal file takes appends from many processes without "database is locked" errors, so local worker
processes can share it; a PostgreSQL (or MySQL) URL lets workers on several machines share one study.
"""

from __future__ import annotations

from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from nas.errors import NasError

JOURNAL_FILE = "study.journal"


def default_storage_path(run_dir: Path) -> Path:
    return Path(run_dir) / JOURNAL_FILE


def open_storage(url: str | None, run_dir: Path, heartbeat_interval: int | None = None) -> BaseStorage:
    """Open the study storage: `url` if given (any Optuna storage URL), else the run folder's journal file.

    An unreachable or malformed URL raises NasError naming it, before anything is written.
    """
    if url is None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(default_storage_path(run_dir))))
    if url.startswith(("journal:", "file:")) or url.endswith(".journal"):
        path = url.split(":", 1)[1] if ":" in url and not url.endswith(".journal") else url
        return JournalStorage(JournalFileBackend(path))
    try:
        kwargs = {}
        if heartbeat_interval:
            kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": 3 * heartbeat_interval}
        engine_kwargs: dict = {"pool_pre_ping": True}
        if url.startswith("postgresql"):
            # libpq waits about two minutes on a host that drops packets; a user deserves an answer sooner.
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
        return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except Exception as exc:  # SQLAlchemy raises many types; the user needs one line naming the URL
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NasError(f"cannot open storage {url!r}: {reason}") from None
