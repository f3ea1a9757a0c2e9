"""Optuna studies on a real PostgreSQL server through nas.studies.storage: concurrent workers, bad URLs.

The server is the session's throwaway one (tests/postgres.py); without one these tests skip, under CI they fail.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from multiprocessing.synchronize import Barrier
from pathlib import Path

import optuna
import pytest
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from nas.errors import NasError
from nas.studies.storage import open_storage
from tests.postgres import free_port

N_TRIALS = 30
N_WORKERS = 3


def _objective(trial: optuna.Trial) -> float:
    # MaxTrialsCallback alone overshoots under concurrency (each worker only checks after its own trial,
    # so the others' trials in flight still complete). Trial numbers come from the storage under a row
    # lock, so gating on them yields exactly N_TRIALS complete trials: later ones stop the worker, pruned.
    if trial.number >= N_TRIALS:
        trial.study.stop()
        raise optuna.TrialPruned(f"trial budget of {N_TRIALS} reached")
    trial.set_user_attr("worker_pid", os.getpid())
    x = trial.suggest_float("x", -3.0, 3.0)
    y = trial.suggest_int("y", -2, 2)
    return (x - 1.0) ** 2 + y * y


def _worker(url: str, study_name: str, run_dir: str, start: Barrier) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_storage(url, Path(run_dir)))
    start.wait(timeout=60)  # all workers optimize at the same time, not one after another as they boot
    study.optimize(_objective, callbacks=[MaxTrialsCallback(N_TRIALS, states=(TrialState.COMPLETE,))])


def test_three_concurrent_workers_complete_exactly_the_requested_trials(postgres_url: str, tmp_path: Path):
    study_name = f"concurrent-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=study_name, storage=open_storage(postgres_url, tmp_path))
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(N_WORKERS)
    workers = [context.Process(target=_worker, args=(postgres_url, study_name, str(tmp_path), start))
               for _ in range(N_WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * N_WORKERS

    trials = optuna.load_study(study_name=study_name, storage=open_storage(postgres_url, tmp_path)).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    assert sorted(t.number for t in complete) == list(range(N_TRIALS))
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(trials)))
    assert not [t for t in trials if t.state in (TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)]
    extra = [t for t in trials if t.state == TrialState.PRUNED]
    assert all(t.number >= N_TRIALS for t in extra) and len(extra) <= N_WORKERS
    # What each worker wrote is what a reader gets back, and every worker did a share of the work.
    for t in complete:
        assert t.value == pytest.approx((t.params["x"] - 1.0) ** 2 + t.params["y"] ** 2)
    assert len({t.user_attrs["worker_pid"] for t in complete}) == N_WORKERS


def test_study_written_by_one_connection_is_read_by_another(postgres_url: str, tmp_path: Path):
    study_name = f"roundtrip-{uuid.uuid4().hex[:8]}"
    writer = optuna.create_study(study_name=study_name, storage=open_storage(postgres_url, tmp_path))
    writer.optimize(_objective, n_trials=5)
    reader = optuna.load_study(study_name=study_name, storage=open_storage(postgres_url, tmp_path))
    assert [(t.number, t.params, t.value) for t in reader.trials] == \
        [(t.number, t.params, t.value) for t in writer.trials]
    assert reader.best_value == min(t.value for t in writer.trials)
    assert not any(tmp_path.iterdir())  # a URL storage writes nothing into the run folder


@pytest.mark.parametrize("make_url", [
    lambda port: f"postgresql://nas@127.0.0.1:{port}/nas_test",  # nothing listens there
    lambda port: "postgresql://nas@127.0.0.1:not-a-port/nas_test",
    lambda port: "postgresql+nodriver://nas@127.0.0.1/nas_test",
])
def test_unusable_url_raises_one_line_nas_error_naming_it(make_url, tmp_path: Path):
    url = make_url(free_port())
    with pytest.raises(NasError) as caught:
        open_storage(url, tmp_path)
    message = str(caught.value)
    assert url in message and "\n" not in message
    assert not any(tmp_path.iterdir())


def test_missing_database_on_a_running_server_raises_nas_error(postgres_url: str, tmp_path: Path):
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(NasError, match="no_such_database") as caught:
        open_storage(url, tmp_path)
    assert "\n" not in str(caught.value)
