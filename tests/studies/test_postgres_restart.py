"""A real PostgreSQL server stopped under three running search workers, then started again (or not).

Each worker is its own process running the real search (tiny space, a stub accuracy source that takes 0.3 s)
on the real RDB storage, through nas.errors.run_reporting as the `nas` command does. The server is a
throwaway one of this module (tests/postgres.py), stopped with `pg_ctl stop -m fast`, which ends every
session as an administrator's restart does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.errors import EXIT_ENVIRONMENT, run_reporting
from nas.search.config import SearchConfig
from nas.search.run import run_search
from nas.studies.runner import FAIL_KIND_ATTR, RETRY_ATTR
from nas.studies.storage import RETRY_ENV
from tests.postgres import PostgresServer, postgres_or_skip, restartable_postgres
from tests.search.test_search import fake_evaluate

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
OUTAGE_S = 10.0
TRIAL_S = 0.3


def slow_evaluate(spec, on_epoch) -> float:
    time.sleep(TRIAL_S)
    return fake_evaluate(spec, on_epoch)


def search_config(url: str, runs_dir: str, study: str, n_trials: int) -> SearchConfig:
    # A grace longer than the outage, short enough that a trial created twice by a commit whose answer was
    # lost (an orphan nobody runs) is recovered within the test.
    return SearchConfig(strategy="standalone", space="tiny", target_flops=60_000_000, sampler="random",
                        storage=url, study=study, runs_dir=runs_dir, n_trials=n_trials, timeout=None,
                        heartbeat_s=1.0, grace_s=20.0)


def worker_main(url: str, runs_dir: str, study: str, n_trials: int) -> None:
    """One search worker process, errors reported as the `nas` command reports them."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def search() -> None:
        run_search(search_config(url, runs_dir, study, n_trials), evaluate=slow_evaluate, quiet=True)

    sys.exit(run_reporting(search))


def start_worker(url: str, tmp_path: Path, study: str, n_trials: int, index: int,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{study}-worker{index}.log"
    code = (f"from tests.studies.test_postgres_restart import worker_main; "
            f"worker_main({url!r}, {str(tmp_path)!r}, {study!r}, {n_trials})")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", **(env or {})}
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                               stderr=log.open("w"), env=environment, cwd=ROOT)
    return process, log


def wait_for_finished(url: str, study: str, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name=study, storage=url).get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if len(trials) >= count:
                return
        except KeyError:
            pass  # not created yet
        time.sleep(0.2)
    raise AssertionError(f"the workers did not finish {count} trials in {timeout} s")


def assert_budget_exact(study: optuna.Study, n_trials: int) -> list:
    """The study holds exactly `n_trials` finished trials; returns its stale (recovered) trials."""
    trials = study.get_trials()
    assert len({t.number for t in trials}) == len(trials)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get(FAIL_KIND_ATTR) in ("stale", "surplus") for t in failed), \
        [t.user_attrs for t in failed]
    stale = [t for t in failed if t.user_attrs[FAIL_KIND_ATTR] == "stale"]
    retried = {t.user_attrs.get(RETRY_ATTR) for t in trials}
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert all(t.number in retried for t in stale)  # each was enqueued again
    assert len(waiting) <= len(stale)  # a retry the full budget left waiting, nothing else
    return stale


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_or_skip(restartable_postgres) as running:
        yield running


def test_a_restart_under_three_workers_loses_nothing(server: PostgresServer, tmp_path: Path):
    n_trials = 30
    workers = [start_worker(server.url, tmp_path, "restart", n_trials, i) for i in range(WORKERS)]
    try:
        wait_for_finished(server.url, "restart", 6)
        server.stop()
        time.sleep(OUTAGE_S)
        server.start()
        codes = [process.wait(timeout=180) for process, _ in workers]
    finally:
        for process, _ in workers:
            process.kill()
    logs = [log.read_text() for _, log in workers]
    assert codes == [0] * WORKERS, logs
    for log in logs:
        assert "Traceback" not in log
        assert "unreachable" in log and "retrying for up to 120 s" in log, log  # each met the outage mid-run
        assert "reachable again" in log
    study = optuna.load_study(study_name="restart", storage=server.url)
    stale = assert_budget_exact(study, n_trials)
    assert len(stale) <= WORKERS  # at most the trials that were running when the server went away


def test_a_database_away_past_the_bound_stops_each_worker_with_one_line(server: PostgresServer, tmp_path: Path):
    n_trials = 16
    workers = [start_worker(server.url, tmp_path, "bound", n_trials, i, env={RETRY_ENV: "3"})
               for i in range(WORKERS)]
    try:
        wait_for_finished(server.url, "bound", 6)
        server.stop()
        codes = [process.wait(timeout=60) for process, _ in workers]
    finally:
        for process, _ in workers:
            process.kill()
        server.start()
    logs = [log.read_text() for _, log in workers]
    assert codes == [EXIT_ENVIRONMENT] * WORKERS, logs
    for log in logs:
        assert "Traceback" not in log
        errors = [line for line in log.splitlines() if line.startswith("nas: error:")]
        assert len(errors) == 1 and errors == log.splitlines()[-1:], log
        assert f"database {server.url} unreachable" in errors[0] and "run the same command again" in errors[0]
    done_before = len(optuna.load_study(study_name="bound", storage=server.url).get_trials(
        states=(TrialState.COMPLETE, TrialState.PRUNED)))
    assert done_before < n_trials
    # The same command, once the database is back, resumes: the dead workers' trials are retried.
    process, log = start_worker(server.url, tmp_path, "bound", n_trials, 9)
    assert process.wait(timeout=120) == 0, log.read_text()
    stale = assert_budget_exact(optuna.load_study(study_name="bound", storage=server.url), n_trials)
    assert 1 <= len(stale) <= WORKERS  # the running trials of the stopped workers

