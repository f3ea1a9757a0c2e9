"""The shared study plumbing: stale-trial recovery rules and the exact budget, on a real journal storage."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from nas.studies.runner import (
    FAIL_KIND_ATTR,
    HEARTBEAT_ATTR,
    RETRY_ATTR,
    WORKER_ATTR,
    recover_stale_trials,
    run_trials,
)
from nas.studies.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def new_study(tmp_path) -> optuna.Study:
    return optuna.create_study(storage=open_storage(None, tmp_path), study_name="s", directions=["maximize"])


def running_trial(study: optuna.Study, worker: str, heartbeat: float) -> optuna.trial.Trial:
    trial = study.ask()
    trial.suggest_int("x", 0, 100)
    trial.set_user_attr(WORKER_ATTR, worker)
    trial.set_user_attr(HEARTBEAT_ATTR, heartbeat)
    return trial


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_recovery_rules(tmp_path):
    study = new_study(tmp_path)
    host = socket.gethostname()
    now = time.time()
    dead_here = running_trial(study, f"{host}:{dead_pid()}", now)  # fresh heartbeat, but the process is gone
    alive_here = running_trial(study, f"{host}:{subprocess.os.getppid()}", now - 3600)  # a live process here
    silent_elsewhere = running_trial(study, "otherhost:1", now - 120)
    fresh_elsewhere = running_trial(study, "otherhost:2", now - 5)
    recovered = recover_stale_trials(study, grace_s=60)
    assert sorted(recovered) == sorted([dead_here.number, silent_elsewhere.number])
    trials = {t.number: t for t in study.get_trials()}
    for number in recovered:
        assert trials[number].state == TrialState.FAIL and trials[number].user_attrs[FAIL_KIND_ATTR] == "stale"
    for trial in (alive_here, fresh_elsewhere):
        assert trials[trial.number].state == TrialState.RUNNING
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs[RETRY_ATTR] for t in waiting) == sorted(recovered)
    # a second recovery finds nothing more to do: each stale trial is retried once
    assert recover_stale_trials(study, grace_s=60) == []


def test_run_trials_retries_first_and_keeps_the_exact_budget(tmp_path):
    study = new_study(tmp_path)
    stale = running_trial(study, "otherhost:7", time.time() - 999)
    seen = []

    def objective(trial):
        x = trial.suggest_int("x", 0, 100)
        seen.append((trial.number, trial.user_attrs.get(RETRY_ATTR)))
        if x % 5 == 0:
            raise optuna.TrialPruned("multiple of five")
        return [float(x)]

    summary = run_trials(study, objective, n_trials=5, grace_s=60,
                         sampler_factory=lambda k: optuna.samplers.RandomSampler(seed=k))
    assert seen[0][1] == stale.number  # the retry ran first, with the stale trial's parameters
    assert study.get_trials()[seen[0][0]].params == {"x": stale.params["x"]}
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 5 and summary.completed + summary.pruned == 5 and summary.recovered == 1
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert all(t.user_attrs["reason"] == "multiple of five" for t in pruned)
    # run again: the budget is already full, nothing runs
    assert run_trials(study, objective, n_trials=5).completed == 0


def test_an_exception_fails_the_trial_and_the_loop_goes_on(tmp_path):
    study = new_study(tmp_path)
    calls = iter(range(100))

    def objective(trial):
        if next(calls) % 2 == 0:
            raise MemoryError("simulated out of memory")
        return [1.0]

    summary = run_trials(study, objective, n_trials=3, max_failures=10)
    assert summary.completed == 3 and summary.failed == 3
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert all(t.user_attrs["reason"] == "MemoryError: simulated out of memory" for t in failed)
    assert all(t.user_attrs[FAIL_KIND_ATTR] == "error" for t in failed)


def test_failures_are_bounded(tmp_path):
    study = new_study(tmp_path)

    def broken(trial):
        raise RuntimeError("always")

    summary = run_trials(study, broken, n_trials=4)
    assert summary.failed == 4 and summary.completed == 0


@pytest.mark.parametrize("n_trials", [1, 3])
def test_surplus_trials_give_their_slot_up(tmp_path, n_trials):
    """Two workers asking at the same moment for the last slot: the higher trial number yields."""
    study = new_study(tmp_path)
    for _ in range(n_trials):  # other workers' trials already fill the budget
        running_trial(study, f"{socket.gethostname()}:{subprocess.os.getpid()}", time.time())
    from nas.studies.runner import StudyTally, _is_surplus

    late = study.ask()
    assert _is_surplus(StudyTally(study), late, n_trials)
    assert not _is_surplus(StudyTally(study), late, n_trials + 1)


def _quick_worker(url: str | None, folder: str, name: str, n_trials: int, seed: int) -> None:
    """One worker process: many very short trials, so workers ask for trials at nearly the same moments."""
    from pathlib import Path

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=open_storage(url, Path(folder)))

    def objective(trial):
        return [float(trial.suggest_int("x", 0, 10**6))]

    run_trials(study, objective, n_trials=n_trials,
               sampler_factory=lambda k: optuna.samplers.RandomSampler(seed=seed * 100_003 + k))


def _stress(url: str | None, folder, workers: int, n_trials: int) -> optuna.Study:
    import multiprocessing
    import uuid

    storage = open_storage(url, folder)
    name = f"stress-{uuid.uuid4().hex[:8]}"  # the PostgreSQL test database is shared by the session
    optuna.create_study(storage=storage, study_name=name, directions=["maximize"])
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_quick_worker, args=(url, str(folder), name, n_trials, i)) for i in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * workers
    return optuna.load_study(study_name=name, storage=storage)


def _assert_exact(study: optuna.Study, n_trials: int) -> None:
    trials = study.get_trials()
    assert len({t.number for t in trials}) == len(trials)
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == n_trials
    assert all(t.state == TrialState.COMPLETE or t.user_attrs.get(FAIL_KIND_ATTR) == "surplus" for t in trials)


def test_many_processes_fill_the_budget_exactly_on_the_journal(tmp_path):
    _assert_exact(_stress(None, tmp_path, workers=4, n_trials=40), 40)


def test_many_processes_fill_the_budget_exactly_on_postgresql(tmp_path, postgres_url):
    _assert_exact(_stress(postgres_url, tmp_path, workers=4, n_trials=40), 40)


def test_a_fault_stops_the_worker_and_the_next_run_in_the_same_process_retries_its_trial(tmp_path):
    """An EnvironmentFault is not the trial's: it is not recorded as a failure, the loop stops at once, and
    the trial it left RUNNING (this very process's, so no dead pid to find) is retried by the next run."""
    from nas.errors import EnvironmentFault

    study = new_study(tmp_path)
    calls = []

    def objective(trial):
        x = trial.suggest_int("x", 0, 100)
        calls.append(x)
        if len(calls) == 2:
            raise EnvironmentFault("cannot write somewhere: No space left on device")
        return [float(x)]

    with pytest.raises(EnvironmentFault):
        run_trials(study, objective, n_trials=4, sampler_factory=lambda k: optuna.samplers.RandomSampler(seed=k))
    left = study.get_trials(states=(TrialState.RUNNING,))
    assert len(left) == 1 and not study.get_trials(states=(TrialState.FAIL,))
    summary = run_trials(study, objective, n_trials=4, sampler_factory=lambda k: optuna.samplers.RandomSampler(seed=k))
    assert summary.recovered == 1 and len(study.get_trials(states=(TrialState.COMPLETE,))) == 4
    retried = [t for t in study.get_trials() if t.user_attrs.get(RETRY_ATTR) == left[0].number]
    assert len(retried) == 1 and retried[0].params == left[0].params and retried[0].state == TrialState.COMPLETE
    stale = study.get_trials(states=(TrialState.FAIL,))
    assert [t.user_attrs[FAIL_KIND_ATTR] for t in stale] == ["stale"]


def test_the_tally_counts_what_a_full_count_does_as_trials_change_state(tmp_path):
    from nas.studies.runner import BUDGET_STATES, StudyTally

    study = new_study(tmp_path)
    tally = StudyTally(study)

    def check() -> None:
        tally.read()
        trials = study.get_trials()
        for states in (BUDGET_STATES, (TrialState.COMPLETE,), (TrialState.RUNNING,), (TrialState.FAIL,)):
            assert tally.count(states) == sum(t.state in states for t in trials)
        assert [t.number for t in tally.running()] == [t.number for t in trials if t.state == TrialState.RUNNING]
        last = trials[-1].number
        assert tally.count(BUDGET_STATES, below=last) == sum(t.state in BUDGET_STATES for t in trials[:-1])

    held = study.ask()  # stays RUNNING in the middle: the finished run stops before it
    for i in range(6):
        trial = study.ask()
        study.tell(trial, state=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)[i % 3],
                   values=[1.0] if i % 3 == 0 else None)
        check()
    study.tell(held, [2.0])  # it finishes: everything before the next trial is settled now
    check()
    study.ask()
    check()
