"""Run the trials of one Optuna study from any number of workers, crash-safely, to an exact trial budget.

Shared study plumbing for the search (nas/search.py) and the scaling stage. API:

- `run_trials(study, objective, n_trials=..., ...)`: ask/tell loop of one worker. `objective(trial)` returns
  the objective values; it raises `optuna.TrialPruned(reason)` to end the trial PRUNED, and any other
  exception ends it FAILED with the reason in the trial's user attribute `reason` (the study goes on).
  `n_trials` is the study's total budget of finished (COMPLETE or PRUNED) trials, shared by all workers and
  kept across runs: running the same command again resumes and tops the study up to `n_trials`.
- `recover_stale_trials(study, grace_s)`: RUNNING trials whose worker is gone (a dead pid on this host,
  or no heartbeat for `grace_s` seconds from another host) are marked FAILED (`fail_kind` = "stale")
  and their parameters enqueued again (`retry_of` = the old number). `run_trials` calls it before every trial.
- `worker_id()`, and user attributes `worker` / `heartbeat` that every running trial carries.

One mechanism serves every storage: a heartbeat thread writes the trial's `heartbeat` user attribute, so the
journal file (which has no Optuna heartbeat) and PostgreSQL recover the same way.

A fault of the environment (EnvironmentFault: disk full, database gone past its retry bound) is not the
trial's: it stops the worker at once, and its running trial is recovered like a dead worker's (by any
worker once the process is gone, or by the next `run_trials` in this process).
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.errors import EnvironmentFault, NasError

WORKER_ATTR = "worker"
HEARTBEAT_ATTR = "heartbeat"
REASON_ATTR = "reason"
FAIL_KIND_ATTR = "fail_kind"  # 'error' (raised in the trial), 'stale' (worker died), 'surplus' (over budget)
RETRY_ATTR = "retry_of"

DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_GRACE_S = 60.0
# Not counted in the budget: failed trials (the search retries or replaces them) and waiting ones.
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)

Objective = Callable[[Trial], Sequence[float]]
TrialCallback = Callable[[optuna.Study, FrozenTrial], None]
SamplerFactory = Callable[[int], optuna.samplers.BaseSampler]

# (study, trial number) of the trials this process is running now; a RUNNING trial of this process that is
# not here was left behind by an earlier run in it (stopped by a fault) and is stale.
_RUNNING_HERE: set[tuple[str, int]] = set()


def worker_id() -> str:
    """'host:pid' of this process, recorded on every trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _is_stale(study_name: str, trial: FrozenTrial, now: float, grace_s: float) -> bool:
    worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
    host, _, pid = worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return (study_name, trial.number) not in _RUNNING_HERE
        return not _pid_alive(int(pid))
    # Another host (or no worker recorded yet): judge by the last sign of life.
    last = trial.user_attrs.get(HEARTBEAT_ATTR)
    if last is None and trial.datetime_start is not None:
        last = trial.datetime_start.timestamp()
    return last is not None and now - float(last) > grace_s


def recover_stale_trials(study: optuna.Study, grace_s: float = DEFAULT_GRACE_S,
                         running: Sequence[FrozenTrial] | None = None) -> list[int]:
    """Fail the RUNNING trials of dead workers and enqueue their parameters again; returns their numbers.

    `running`: the study's RUNNING trials when the caller has just read them (else they are read here).
    Several workers may recover at once: the storage lets exactly one of them finish a trial (the others get
    UpdateFinishedTrialError), and only that one enqueues the retry, so a trial is retried once.
    """
    now = time.time()
    recovered = []
    if running is None:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        if not _is_stale(study.study_name, trial, now, grace_s):
            continue
        storage = study._storage  # no public API sets attributes of a trial another process owns
        try:
            storage.set_trial_user_attr(trial._trial_id, FAIL_KIND_ATTR, "stale")
            storage.set_trial_user_attr(trial._trial_id, REASON_ATTR,
                                        f"worker {trial.user_attrs.get(WORKER_ATTR, '?')} stopped; retried")
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another worker recovered it first (or it just finished)
        _retry(study, trial.params, trial.user_attrs, trial.number)
        recovered.append(trial.number)
    return recovered


def _retry(study: optuna.Study, params: dict, attrs: dict, number: int) -> None:
    """Enqueue a stopped trial's parameters again, keeping the attributes it was enqueued with (what it is a
    finalist of, which model it is) but not those of the run that stopped."""
    keep = {k: v for k, v in attrs.items() if k not in (WORKER_ATTR, HEARTBEAT_ATTR, REASON_ATTR, FAIL_KIND_ATTR)}
    study.enqueue_trial(params, user_attrs={**keep, RETRY_ATTR: number})


class _Heartbeat:
    """Writes the trial's heartbeat attribute every `interval` seconds while the trial runs."""

    def __init__(self, trial: Trial, interval: float) -> None:
        self._trial, self._interval = trial, interval
        self._key = (trial.study.study_name, trial.number)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{trial.number}")

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            except Exception:  # the trial ended meanwhile, or the storage blinked: try again next beat
                pass

    def __enter__(self) -> _Heartbeat:
        self._trial.set_user_attr(WORKER_ATTR, worker_id())
        self._trial.set_user_attr(HEARTBEAT_ATTR, time.time())
        self._thread.start()
        _RUNNING_HERE.add(self._key)
        return self

    def __exit__(self, *exc: object) -> None:
        _RUNNING_HERE.discard(self._key)
        self._stop.set()
        self._thread.join()


class StudyTally:
    """A study's trials counted by state, for the loop's budget checks.

    A finished trial never changes again, so the counts of the longest run of finished trials from the first
    one are kept and each `read()` counts only the trials past it: a check costs the same at trial 5,000 as
    at trial 100, apart from Optuna's own list of the trials.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.trials: list[FrozenTrial] = []
        self._settled = 0  # self.trials[:_settled] are all finished
        self._settled_counts: Counter[TrialState] = Counter()

    def read(self) -> None:
        """Read the study's trials afresh."""
        self.trials = self.study.get_trials(deepcopy=False)
        while self._settled < len(self.trials) and self.trials[self._settled].state.is_finished():
            self._settled_counts[self.trials[self._settled].state] += 1
            self._settled += 1

    def count(self, states: Sequence[TrialState], below: int | None = None) -> int:
        """Trials in `states` (only those numbered below `below`, when given)."""
        if below is not None and below < self._settled:  # not the loop's case: a new trial is never settled
            return sum(1 for t in self.trials if t.state in states and t.number < below)
        tail = self.trials[self._settled:]
        return sum(self._settled_counts[state] for state in states) + sum(
            1 for t in tail if t.state in states and (below is None or t.number < below))

    def running(self) -> list[FrozenTrial]:
        return [t for t in self.trials[self._settled:] if t.state == TrialState.RUNNING]


def _is_surplus(tally: StudyTally, trial: Trial, n_trials: int) -> bool:
    """Whether workers that asked at the same moment already fill the budget without this trial.

    Trial numbers are handed out atomically by the storage, so ranking by number gives every worker the same
    answer: the budget goes to the lowest-numbered trials.
    """
    tally.read()
    return tally.count(BUDGET_STATES, below=trial.number) >= n_trials


@dataclass
class RunSummary:
    """What one worker's run did."""

    completed: int = 0
    pruned: int = 0
    failed: int = 0
    recovered: int = 0
    seconds: float = 0.0


def _tell(study: optuna.Study, trial: Trial, **kwargs) -> FrozenTrial | None:
    try:
        return study.tell(trial, **kwargs)
    except NasError:
        raise  # the storage refused (a damaged journal), not the trial
    except (UpdateFinishedTrialError, ValueError):
        return None  # declared stale by another worker while we ran (it has been retried)


def _run_one(study: optuna.Study, trial: Trial, objective: Objective, heartbeat_s: float) -> FrozenTrial | None:
    try:
        with _Heartbeat(trial, heartbeat_s):
            try:
                values = objective(trial)
            except EnvironmentFault:
                raise  # not the trial's fault: stop this worker; its trial is recovered as stale
            except optuna.TrialPruned as exc:
                trial.set_user_attr(REASON_ATTR, str(exc) or "pruned")
                return _tell(study, trial, state=TrialState.PRUNED)
            except (KeyboardInterrupt, SystemExit):
                try:
                    trial.set_user_attr(FAIL_KIND_ATTR, "stale")
                    trial.set_user_attr(REASON_ATTR, "interrupted; retried on the next run")
                    _tell(study, trial, state=TrialState.FAIL)
                    _retry(study, trial.params, study._storage.get_trial(trial._trial_id).user_attrs, trial.number)
                except UpdateFinishedTrialError:
                    pass  # already recovered by another worker
                raise
            except Exception as exc:  # the trial fails, the study goes on
                trial.set_user_attr(FAIL_KIND_ATTR, "error")
                trial.set_user_attr(REASON_ATTR, f"{type(exc).__name__}: {exc}".strip()[:500])
                return _tell(study, trial, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        # Another worker declared it stale (e.g. no sign of life through a long database outage) and
        # enqueued its retry: nothing of it is ours to record.
        return None
    return _tell(study, trial, values=list(values))


def run_trials(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int,
    timeout: float | None = None,
    sampler_factory: SamplerFactory | None = None,
    on_trial_end: TrialCallback | None = None,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    grace_s: float = DEFAULT_GRACE_S,
    max_failures: int | None = None,
    queued_only: bool = False,
) -> RunSummary:
    """One worker's loop: run trials until the study holds `n_trials` finished ones (see the module doc).

    With `queued_only` the loop runs the study's queued (enqueued) trials and stops when none is left, once
    the ones other workers run have finished: a failed trial is not replaced by a sampled one.

    `sampler_factory(k)` (optional) gives the sampler for the next trial, `k` being the number of trials in
    the study; seeding it from `k` makes a resumed run continue a sequence instead of repeating its start.
    Stops early at `timeout` seconds (no new trial starts after it) or after `max_failures` failed trials
    (default: `n_trials`), so a study whose every trial fails cannot loop for ever.
    """
    start = time.monotonic()
    summary = RunSummary()
    max_failures = n_trials if max_failures is None else max_failures
    tally = StudyTally(study)
    while True:
        tally.read()
        recovered = recover_stale_trials(study, grace_s, running=tally.running())
        if recovered:
            summary.recovered += len(recovered)
            tally.read()
        if timeout is not None and time.monotonic() - start >= timeout:
            break
        if summary.failed >= max(1, max_failures):
            break
        if queued_only and not tally.count((TrialState.WAITING,)):
            if not tally.running():
                break
            time.sleep(min(heartbeat_s, 2.0))  # another worker's trial may stop and be queued again
            continue
        if tally.count(BUDGET_STATES) >= n_trials:
            if tally.count(FINISHED_STATES) >= n_trials:
                break
            time.sleep(min(heartbeat_s, 2.0))  # others' trials are running: wait for them or their recovery
            continue
        if sampler_factory is not None:
            study.sampler = sampler_factory(len(tally.trials))
        trial = study.ask()
        if _is_surplus(tally, trial, n_trials):
            try:
                trial.set_user_attr(WORKER_ATTR, worker_id())
                trial.set_user_attr(FAIL_KIND_ATTR, "surplus")
                trial.set_user_attr(REASON_ATTR, "another worker took the last trial of the budget")
                _tell(study, trial, state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                pass  # recovered as stale meanwhile: the retry takes its place
            continue
        frozen = _run_one(study, trial, objective, heartbeat_s)
        if frozen is None:
            continue
        summary.completed += frozen.state == TrialState.COMPLETE
        summary.pruned += frozen.state == TrialState.PRUNED
        summary.failed += frozen.state == TrialState.FAIL
        if on_trial_end is not None:
            on_trial_end(study, frozen)
    summary.seconds = time.monotonic() - start
    return summary


def trial_seconds(trial: FrozenTrial) -> float:
    """Wall time of a finished trial (NaN while it runs)."""
    if trial.datetime_start is None or trial.datetime_complete is None:
        return math.nan
    return (trial.datetime_complete - trial.datetime_start).total_seconds()
