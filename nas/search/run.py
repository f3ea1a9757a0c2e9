"""The baseline search: an Optuna multi-objective search of a space toward a FLOPs target, run in phases.

Objectives: validation accuracy (maximised) and the cost of the deployed network (minimised) before any
training: its FLOPs by the analytic cost model, or (`objective="latency"`, MnasNet's original form) the
latency a per-part latency table predicts, FLOPs still recorded. A soft window around the target guides the
samplers through Optuna's constraints; a candidate above the hard cap is not scored (PRUNED, cost recorded).

Strategies (`SearchConfig.strategy`):

- `halving` (the default): successive halving in two rungs. The search phase trains every candidate over a
  quarter of the proxy preset's length (the screening run); the finalists phase retrains the Pareto candidates
  around the target (and the enqueued models) over all of it, and the selection uses the reward of those
  stand-alone accuracies.
- `supernet`: phase 1 trains (or reuses) the space's weight-sharing supernet; phase 2 scores thousands of
  candidates on it; phase 3 retrains the finalists stand-alone, as above.
- `standalone`: every candidate is trained stand-alone; the selection uses the reward of those accuracies.

Every phase resumes where a kill stopped it. From Python: `run_search(SearchConfig(...))`; with the
stand-alone and halving strategies `evaluate(spec, on_epoch) -> accuracy` may replace the trainer (halving
calls it with `fraction=` for the screening runs).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas._common.logs import configure_logging, tool_log_level
from nas.arch.resolve import resolve_spec
from nas.arch.space import SearchSpace, encode, load_space
from nas.errors import EXIT_ENVIRONMENT, EnvironmentFault, NasError, run_reporting
from nas.search.config import DIRECTIONS, IDENTITY_ABSENT, SearchConfig
from nas.search.estimators import (
    ESTIMATORS,
    Evaluate,
    standalone_estimator,
    supernet_folder,
)
from nas.search.finalists import prepare_finalists
from nas.search.cost import LATENCY
from nas.search.objective import make_objective, make_pricer
from nas.search.report import CONFIG_ATTR, SUPERNET_RUN_ATTR, write_outputs
from nas.search.samplers import make_sampler, trial_seed
from nas.studies.runner import REASON_ATTR, RunSummary, run_trials, trial_seconds
from nas.studies.storage import create_or_load_study, open_storage

PHASES = ("search", "finalists")
log = logging.getLogger(__name__)


def enqueue_params(space: SearchSpace, text: str) -> dict[str, Any]:
    """The space's choices for a model the user names (`b0`, a spec file, a run folder, block strings)."""
    spec = resolve_spec(text)
    try:
        return encode(space, spec)
    except NasError as exc:
        raise NasError(f"--enqueue {text}: not in space {space.name!r}: {exc}") from None


def open_study(config: SearchConfig, space: SearchSpace, enqueued: list[tuple[str, dict[str, Any]]]) -> optuna.Study:
    """Create the study, or load it to resume; a resume with different defining settings is refused."""
    storage = open_storage(config.storage, config.run_dir)
    study = create_or_load_study(storage, config.study, DIRECTIONS)
    stored = study.user_attrs.get(CONFIG_ATTR)
    identity = {**config.identity(), "space": space.name}
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, identity)
    else:
        # A study made before strategies (objectives) existed was a stand-alone (FLOPs) one.
        changed = [key for key in identity if stored.get(key, IDENTITY_ABSENT.get(key)) != identity[key]]
        if changed:
            details = ", ".join(f"{k}: {stored.get(k)!r} (now {identity[k]!r})" for k in changed)
            hint = (f" (a study of strategy {stored.get('strategy')!r} resumes with --strategy "
                    f"{stored.get('strategy')})" if "strategy" in changed else "")
            raise NasError(f"study {config.study!r} exists with other settings ({details}); "
                           f"use another --study name or the same settings{hint}")
    for label, params in enqueued:
        study.enqueue_trial(params, user_attrs={"enqueued": label}, skip_if_exists=True)
    return study


# --- progress ---------------------------------------------------------------------------------------------


class OutputRefresher:
    """The per-trial callback: progress output, and the outputs rewritten from the study.

    Stand-alone trials take a minute, so each gets its line. Supernet trials take a fraction of a second: a
    summary line at most every `line_every_s`. Rewriting the outputs grows with the study, so a rewrite waits
    until `cost_share` of the time since the last one covers what that one took (every trial of a stand-alone
    search, every few seconds when thousands of short trials run); pareto.png (the slowest output to draw) is
    redrawn at most every `plot_every_s`, and the last write of a run always draws it."""

    def __init__(self, run_dir: Path, prefix: str = "", quiet: bool = False, per_trial: bool = True,
                 plot_every_s: float = 20.0, line_every_s: float = 10.0, cost_share: float = 0.1) -> None:
        self.run_dir, self.prefix, self.quiet, self.per_trial = run_dir, prefix, quiet, per_trial
        self.plot_every_s, self.line_every_s, self.cost_share = plot_every_s, line_every_s, cost_share
        self._last_plot = self._next_write = -math.inf
        self._last_line = time.monotonic()
        self._started, self._done = time.monotonic(), 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._done += 1
        start = time.monotonic()
        if not self.quiet and (self.per_trial or start - self._last_line >= self.line_every_s):
            log.info(progress_line(study, trial, self.prefix) if self.per_trial else self._summary_line(study))
            self._last_line = start
        if start < self._next_write:
            return
        plot = start - self._last_plot >= self.plot_every_s
        write_outputs(study, self.run_dir, plot=plot)
        end = time.monotonic()
        self._next_write = end + (end - start) * (1 - self.cost_share) / self.cost_share
        if plot:
            self._last_plot = end

    def _summary_line(self, study: optuna.Study) -> str:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        scored = [t for t in trials if t.state == TrialState.COMPLETE and "reward" in t.user_attrs]
        rate = self._done / max(time.monotonic() - self._started, 1e-9)
        text = f"{self.prefix}{len(trials)} candidates ({len(scored)} scored, {rate:.1f}/s here)"
        if scored:
            best = max(scored, key=lambda t: t.user_attrs["reward"])
            text += (f"; best supernet reward {best.user_attrs['reward']:.4f}: trial {best.number} "
                     f"{best.user_attrs['arch']} {best.user_attrs['flops'] / 1e6:.0f}M{_latency_text(best)} acc "
                     f"{best.user_attrs['accuracy']:.4f}")
        return text


def _latency_text(trial: FrozenTrial) -> str:
    """' 12.34 ms' when the trial has a predicted latency (the latency objective), else ''."""
    latency = trial.user_attrs.get(LATENCY.attr)
    return f" {LATENCY.short(latency)}" if latency is not None else ""


def progress_line(study: optuna.Study, trial: FrozenTrial, prefix: str = "") -> str:
    """One line per finished trial: number, arch code, FLOPs (and predicted latency), accuracy, reward, seconds."""
    attrs = trial.user_attrs
    flops = attrs.get("flops")
    flops_text = f"{flops / 1e6:7.1f}M" if flops is not None else "      ?"
    number = f"trial {attrs['source_trial']:3d}" if "source_trial" in attrs else f"trial {trial.number:3d}"
    head = f"{prefix}{number}  {attrs.get('arch', '?'):<38} {flops_text}{_latency_text(trial)}"
    seconds = trial_seconds(trial)
    if trial.state == TrialState.COMPLETE:
        return f"{head}  acc {attrs['accuracy']:.4f}  reward {attrs['reward']:.4f}  {seconds:5.1f}s"
    return f"{head}  {trial.state.name.lower()}: {attrs.get(REASON_ATTR, '')}  {seconds:5.1f}s"


# --- the phases -------------------------------------------------------------------------------------------


def prepare_supernet(config: SearchConfig, space: SearchSpace, quiet: bool = False) -> dict[str, Any]:
    """Phase 1 of the supernet strategy: a trained supernet; returns its folder, steps and training seconds.
    A folder the settings name must hold a fully trained supernet of this space, data set and split; the
    run folder's own is trained, or resumed."""
    from nas.proxy.data import load_dataset
    from nas.supernet.training import (
        CHECKPOINT_FILE,
        checkpoint_complete,
        get_supernet_preset,
        load_supernet,
        mismatches,
        train_supernet,
    )

    folder = supernet_folder(config)
    preset = get_supernet_preset(config.supernet_preset)
    if config.supernet or ((folder / CHECKPOINT_FILE).is_file() and checkpoint_complete(folder / CHECKPOINT_FILE)):
        trained = load_supernet(folder)
        identity = trained.identity
        differs = mismatches(identity, space, config.data)
        if not config.supernet and (identity["preset"] != asdict(preset) or identity["seed"] != config.seed
                                    or identity["window"] != list(config.window_flops)):
            differs.append("supernet preset, seed or FLOPs window")
        if differs:
            raise NasError(f"the supernet in {folder} was trained for another {' and '.join(differs)}: "
                           "train one for this search or search what it was trained for")
        if not quiet:
            log.info(f"[supernet] reusing {folder} ({trained.steps_done} steps, {trained.seconds:.0f} s)")
        return {"folder": str(folder), "steps": trained.steps_done, "seconds": trained.seconds}
    data = load_dataset(config.data, seed=config.seed)
    if not quiet:
        low, high = config.window_flops
        log.info(f"[supernet] training {preset.steps} steps of batch {preset.batch_size} at {preset.resolution} px, "
                 f"sandwich members in {low / 1e6:g}M-{high / 1e6:g}M FLOPs -> {folder}")

    def on_log(figures: dict[str, Any]) -> None:
        if not quiet:
            log.info(f"[supernet] step {figures['step']}/{figures['steps']}: loss largest "
                     f"{figures['loss_largest']:.3f} smallest {figures['loss_smallest']:.3f}, "
                     f"{figures['images_per_s']:.0f} img/s, {figures['seconds']:.0f} s")

    trained = train_supernet(space, data, preset, window=config.window_flops, seed=config.seed, folder=folder,
                             on_log=on_log, data_source=config.data, log_every=max(1, preset.steps // 10),
                             device=config.device)
    return {"folder": str(folder), "steps": trained.steps_done, "seconds": trained.seconds}


def search_study(config: SearchConfig, evaluate: Evaluate | None = None, *, worker_index: int = 0,
                 on_trial_end: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> RunSummary:
    """The search phase (one worker): open (or resume) the study and score candidates until it holds
    `n_trials`."""
    space = load_space(config.space)
    enqueued = [(text, enqueue_params(space, text)) for text in config.enqueue]
    estimator = ESTIMATORS[config.strategy](config, evaluate)  # data errors surface before the study is touched
    price = make_pricer(config, space)  # and so do latency-table errors
    study = open_study(config, space, enqueued)
    # One sampler for the run, seeded by the study's length: a fresh run repeats its sequence, a resumed one
    # continues with another. (A new sampler per trial would lose NSGA-II's incremental search-space cache and
    # recompute it over every trial, each time.) Workers on other machines share no index: their seeds are
    # kept apart by process id.
    salt = worker_index if config.storage is None else os.getpid()
    study.sampler = make_sampler(config.sampler, trial_seed(config.seed, len(study.get_trials(deepcopy=False)), salt),
                                 config.population)
    return run_trials(study, make_objective(space, config, estimator, price), n_trials=config.n_trials,
                      timeout=config.time_limit, on_trial_end=on_trial_end, heartbeat_s=config.heartbeat_s,
                      grace_s=config.grace_s)


def finalists_study(config: SearchConfig, evaluate: Evaluate | None = None, *, worker_index: int = 0,
                    on_trial_end: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> RunSummary:
    """The finalists phase of a staged strategy (one worker): retrain the finalists stand-alone until each has
    its result."""
    space = load_space(config.space)
    estimator = standalone_estimator(config, evaluate)
    price = make_pricer(config, space)
    study, budget = prepare_finalists(config, open_study(config, space, []))
    study.sampler = make_sampler("random", config.seed)  # every finalist is enqueued: nothing is sampled
    return run_trials(study, make_objective(space, config, estimator, price), n_trials=budget,
                      on_trial_end=on_trial_end, heartbeat_s=config.heartbeat_s, grace_s=config.grace_s,
                      queued_only=True)


def _phase(config: SearchConfig, phase: str, evaluate: Evaluate | None, worker_index: int, quiet: bool) -> None:
    prefix = f"[w{worker_index}] " if config.workers > 1 else ""
    per_trial = phase == "finalists" or config.strategy != "supernet"  # a supernet score takes under a second
    refresher = OutputRefresher(config.run_dir, prefix=f"{prefix}[{phase}] " if config.staged else prefix,
                                quiet=quiet, per_trial=per_trial)
    run = search_study if phase == "search" else finalists_study
    run(config, evaluate, worker_index=worker_index, on_trial_end=refresher)


def _worker_main(config: SearchConfig, phase: str, worker_index: int, threads: int,
                 log_level: int | None = None) -> None:
    import torch

    if log_level is not None:  # a spawned process starts with no logging set up: mirror the parent's
        configure_logging(log_level)
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A worker's error is one line and an exit code, as the command's own would be (no traceback).
    sys.exit(run_reporting(lambda: _phase(config, phase, None, worker_index, quiet=False),
                           prog=f"nas: [w{worker_index}]"))


def _run_phase(config: SearchConfig, phase: str, evaluate: Evaluate | None, quiet: bool) -> None:
    """One phase in this process, or on `config.workers` worker processes sharing the study's storage."""
    if config.workers == 1:
        _phase(config, phase, evaluate, 0, quiet)
        return
    if evaluate is not None:
        raise NasError("a custom accuracy source runs with one worker only")
    from nas.model.device import worker_devices

    threads = config.threads or max(1, (os.cpu_count() or 1) // config.workers)
    devices = worker_devices(config.device, config.workers)  # one worker per visible GPU, round-robin
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker_main, name=f"nas-worker-{i}",
                               args=(replace(config, device=devices[i]), phase, i, threads, tool_log_level()))
               for i in range(config.workers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    bad = [w.name for w in workers if w.exitcode != 0]
    if bad:
        fault = EnvironmentFault if EXIT_ENVIRONMENT in [w.exitcode for w in workers] else NasError
        raise fault(f"worker process(es) {', '.join(bad)} exited with an error (see above); "
                    "run the same command again to resume")


def run_search(config: SearchConfig, *, evaluate: Evaluate | None = None, quiet: bool = False) -> optuna.Study:
    """Run (or resume) a search and write its outputs; returns the search study.

    With one worker everything runs in this process; with several, worker processes share each phase's
    study through its storage and each computes with cores / workers threads.
    """
    if evaluate is not None and config.strategy == "supernet":
        raise NasError("a custom accuracy source replaces stand-alone training: use the standalone or halving "
                       "strategy")
    from nas.model.device import resolve_device

    resolve_device(config.device)  # a missing GPU is one line before anything is written
    space = load_space(config.space)
    enqueued = [(text, enqueue_params(space, text)) for text in config.enqueue]
    make_pricer(config, space)  # a missing or incomplete latency table is one line before the supernet trains
    if config.threads is not None and config.workers == 1:
        import torch

        torch.set_num_threads(config.threads)
    if config.strategy == "supernet":
        supernet = prepare_supernet(config, space, quiet)
        open_study(config, space, enqueued).set_user_attr(SUPERNET_RUN_ATTR, supernet)
    if config.workers > 1:
        ESTIMATORS[config.strategy](config, None)  # data problems surface here, not once per worker
        open_study(config, space, enqueued)  # created once, so workers never race to create it
    _run_phase(config, "search", evaluate, quiet)
    if config.staged:
        _run_phase(config, "finalists", evaluate, quiet)
    study = open_study(config, space, [])
    write_outputs(study, config.run_dir)
    return study
