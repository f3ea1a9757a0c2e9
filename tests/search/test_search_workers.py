"""Several workers on one study (local processes on the journal file, processes on PostgreSQL) and crash
safety: a worker killed with SIGKILL mid-trial is recovered on the next run. These run the real `nas search`
command with the tiny space and the trainer's 'tiny' preset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from nas.search.report import OUTPUT_FILES, load_run_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[2]
TINY_ARGS = ["--strategy", "standalone", "--space", "tiny", "--proxy", "tiny", "--target-flops", "60M", "--population", "2"]


@pytest.fixture(autouse=True)
def _needs_data():
    from nas.proxy.data import FASHION_MNIST_DIR

    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")


def nas_process(*argv: str, log: Path) -> subprocess.Popen:
    """`nas ...` as its own process (this checkout's package), output to `log`."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "nas", *argv], stdout=handle, stderr=subprocess.STDOUT,
                            env=env, cwd=ROOT)


def finished_trials(study: optuna.Study) -> list:
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


def assert_clean_budget(study: optuna.Study, n_trials: int) -> None:
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == len({t._trial_id for t in trials})
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == n_trials
    # No errors: a failed trial may only be one that lost the race for the last slot of the budget.
    errors = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("fail_kind") != "surplus"]
    assert errors == [], [t.user_attrs for t in errors]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_local_workers_share_the_journal_study(tmp_path, run_nas):
    code, out, err = run_nas("search", *TINY_ARGS, "--workers", "3", "--n-trials", "6", "--study", "local",
                             "--runs-dir", str(tmp_path))
    assert code == 0, err
    study = load_run_study(tmp_path / "local")
    assert_clean_budget(study, 6)
    assert len({t.user_attrs["worker"] for t in finished_trials(study)}) >= 2  # the work was shared
    for name in OUTPUT_FILES:
        assert (tmp_path / "local" / name).is_file()


def test_processes_join_one_study_on_postgresql(tmp_path, postgres_url):
    """3 `nas search --storage postgresql://...` processes started at once fill one budget exactly."""
    argv = ["search", *TINY_ARGS, "--n-trials", "6", "--study", "pg3", "--storage", postgres_url,
            "--runs-dir", str(tmp_path)]
    workers = [nas_process(*argv, log=tmp_path / f"worker{i}.log") for i in range(3)]
    codes = [w.wait(timeout=600) for w in workers]
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(3)]
    assert codes == [0, 0, 0], logs
    assert not any("Traceback" in log for log in logs)
    study = optuna.load_study(study_name="pg3", storage=postgres_url)
    assert_clean_budget(study, 6)
    assert len({t.user_attrs["worker"] for t in finished_trials(study)}) >= 2


def _running_trial(run_dir: Path) -> optuna.trial.FrozenTrial | None:
    if not (run_dir / "study.journal").is_file():
        return None
    try:
        study = load_run_study(run_dir)
    except Exception:  # the study is being created right now
        return None
    running = study.get_trials(states=(TrialState.RUNNING,))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    # wait for a trial that has really started training (its worker and heartbeat are recorded)
    if done and running and "spec" in running[0].user_attrs:
        return running[0]
    return None


def test_a_killed_worker_is_recovered_and_nothing_is_lost(tmp_path):
    # A target whose hard cap prunes nothing: every trial trains, so a second one is running to be killed.
    argv = ["search", *TINY_ARGS, "--target-flops", "200M", "--n-trials", "4", "--study", "crash",
            "--runs-dir", str(tmp_path), "--seed", "2"]
    run_dir = tmp_path / "crash"
    worker = nas_process(*argv, log=tmp_path / "first.log")
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        victim = _running_trial(run_dir)
    assert victim is not None, (tmp_path / "first.log").read_text()
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    before = load_run_study(run_dir)
    completed_before = {t.number: t.values for t in before.get_trials(states=(TrialState.COMPLETE,))}
    stuck = before.get_trials(states=(TrialState.RUNNING,))
    assert [t.number for t in stuck] == [victim.number]  # the kill left the trial RUNNING

    again = nas_process(*argv, log=tmp_path / "second.log")
    assert again.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    study = load_run_study(run_dir)
    trials = {t.number: t for t in study.get_trials()}
    stale = trials[victim.number]
    assert stale.state == TrialState.FAIL and stale.user_attrs["fail_kind"] == "stale"
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    for number, values in completed_before.items():  # no completed trial lost
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    assert len([t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 4
    table = pd.read_csv(run_dir / "trials.csv")  # the outputs regenerated, the stale trial explained
    assert len(table) == len(trials)
    assert table.loc[table["number"] == victim.number, "fail_kind"].item() == "stale"
    assert "retried" in (run_dir / "summary.md").read_text()
