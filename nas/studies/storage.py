"""Where a study lives: an embedded journal file in the run folder by default, or any Optuna storage URL.

The journal file takes appends from many processes without "database is locked" errors, so local worker
processes can share it; a PostgreSQL (or MySQL) URL lets workers on several machines share one study.
Crash safety (heartbeats, retry of a dead worker's trial) is the study runner's, the same on every storage.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from nas._common.runfiles import STUDY_JOURNAL
from nas.errors import NasError

TABLE_RACE_ATTEMPTS = 5


def default_storage_path(run_dir: Path) -> Path:
    return Path(run_dir) / STUDY_JOURNAL


def open_storage(url: str | None, run_dir: Path) -> BaseStorage:
    """Open the study storage: `url` if given (any Optuna storage URL), else the run folder's journal file.

    An unreachable or malformed URL raises NasError naming it, before anything is written.
    """
    if url is None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(default_storage_path(run_dir))))
    if url.startswith(("journal:", "file:")) or url.endswith(".journal"):
        path = url.split(":", 1)[1] if ":" in url and not url.endswith(".journal") else url
        return JournalStorage(JournalFileBackend(path))
    engine_kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        # libpq waits about two minutes on a host that drops packets; a user deserves an answer sooner.
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    for attempt in range(TABLE_RACE_ATTEMPTS):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as exc:  # SQLAlchemy raises many types; the user needs one line naming the URL
            if _lost_table_creation_race(exc) and attempt < TABLE_RACE_ATTEMPTS - 1:
                time.sleep(0.2 + random.random())
                continue
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NasError(f"cannot open storage {url!r}: {reason}") from None
    raise AssertionError("unreachable")


def _lost_table_creation_race(exc: Exception) -> bool:
    """Several workers creating a fresh database's tables at once: SQLAlchemy's create_all is not atomic, and
    the losers see a duplicate-key error; opening again then finds the tables made."""
    return any(marker in str(exc) for marker in ("UniqueViolation", "already exists"))


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
