"""The baseline search: Optuna multi-objective search of a space toward a FLOPs target.

Objectives: the proxy's validation accuracy (maximise) and the FLOPs of the deployed network (minimise),
counted by the analytic cost model before any training. A soft FLOPs window guides the samplers through
Optuna's constraints; a candidate above the hard cap is not trained (PRUNED, FLOPs recorded). Selection
uses the MnasNet reward (nas/reward.py); the outputs are written by nas/study_report.py.

From Python: `run_search(SearchConfig(...))`, or `search_study(config, evaluate)` with any accuracy source
`evaluate(spec, on_epoch) -> accuracy` (the shipped one, `proxy_evaluator`, trains for real).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.arch.cost import count_flops, count_params
from nas.arch.resolve import resolve_spec
from nas.arch.space import SearchSpace, arch_code, encode, load_space, sample
from nas.arch.spec import Spec
from nas.errors import NasError
from nas.search.config import DIRECTIONS, SAMPLERS, SearchConfig, with_changes
from nas.search.report import CONFIG_ATTR, write_outputs
from nas.studies.runner import REASON_ATTR, RunSummary, run_trials, trial_seconds
from nas.studies.storage import open_storage

Evaluate = Callable[[Spec, Callable[[Any], None]], float]


# --- samplers -----------------------------------------------------------------------------------


def trial_seed(seed: int, trials_so_far: int, salt: int = 0) -> int:
    """The sampler seed for the next trial: a fixed function of the run seed and the study's length, so a
    fresh run repeats its sequence exactly and a resumed run continues it rather than restarting it."""
    return zlib.crc32(f"{seed}:{trials_so_far}:{salt}".encode())


# Each sampler: (seed, population) -> a seeded Optuna sampler. NSGA-II and TPE read the soft FLOPs window from
# the constraints each trial sets (Trial.set_constraint); random sampling ignores it by definition.
SAMPLER_FACTORIES: dict[str, Callable[[int, int], BaseSampler]] = {
    "nsga2": lambda seed, population: NSGAIISampler(population_size=population, seed=seed),
    "tpe": lambda seed, population: TPESampler(seed=seed, n_startup_trials=population, multivariate=True),
    "random": lambda seed, population: RandomSampler(seed=seed),
}


def make_sampler(name: str, seed: int, population: int = 8) -> BaseSampler:
    """A seeded sampler by name (`SAMPLERS`: 'nsga2', the default, 'tpe' or 'random')."""
    if name not in SAMPLER_FACTORIES:
        raise NasError(f"unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}")
    return SAMPLER_FACTORIES[name](seed, population)


# --- the objective --------------------------------------------------------------------------------


def make_objective(space: SearchSpace, config: SearchConfig, evaluate: Evaluate) -> Callable[[Trial], list[float]]:
    """The trial function: sample, count FLOPs, prune above the hard cap, train, record the evidence."""
    reward = config.reward
    low, high = config.flops_window

    def objective(trial: Trial) -> list[float]:
        spec = sample(space, trial)
        spec_dict = spec.to_dict()
        flops, params = count_flops(spec), count_params(spec)
        ratio = flops / config.target_flops
        for key, value in (("arch", arch_code(space, spec)), ("flops", flops), ("params", params),
                           ("spec", spec_dict)):
            trial.set_user_attr(key, value)
        # The soft window: feasible (<= 0) inside [low, high] x target; samplers prefer feasible candidates.
        trial.set_constraint("flops_above_window", ratio - high)
        trial.set_constraint("flops_below_window", low - ratio)
        if flops > config.hard_cap_flops:
            raise optuna.TrialPruned(f"{flops / 1e6:.1f}M FLOPs is above the hard cap "
                                     f"{config.hard_cap_flops / 1e6:.0f}M: not trained")
        twin = _completed_twin(trial.study, spec_dict)
        if twin is not None:  # the proxy is seeded: training the same network again gives the same result
            trial.set_user_attr("duplicate_of", twin.number)
            trial.set_user_attr("val_acc_history", twin.user_attrs.get("val_acc_history", []))
            accuracy = float(twin.user_attrs["accuracy"])
        else:
            accuracy = _train(trial, spec, evaluate)
        if not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"proxy accuracy {accuracy!r} is not in [0, 1]")
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("reward", reward(accuracy, flops))
        return [accuracy, float(flops)]

    return objective


def _train(trial: Trial, spec: Spec, evaluate: Evaluate) -> float:
    history: list[float] = []

    def on_epoch(report: Any) -> None:
        history.append(float(report.val_acc))
        trial.set_user_attr("val_acc_history", list(history))  # per-epoch evidence (no pruner in MO studies)

    cpu_start = time.process_time()
    accuracy = float(evaluate(spec, on_epoch))
    # CPU seconds (all threads) next to the wall time: on a shared machine they tell the trial's real cost.
    trial.set_user_attr("cpu_seconds", round(time.process_time() - cpu_start, 2))
    return accuracy


def _completed_twin(study: optuna.Study, spec: dict[str, Any]) -> FrozenTrial | None:
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.user_attrs.get("spec") == spec and "accuracy" in other.user_attrs:
            return other
    return None


def proxy_evaluator(config: SearchConfig) -> Evaluate:
    """The shipped accuracy source: train the candidate on the proxy task, return its validation accuracy.

    The data set is loaded here, once per worker, so a missing data set is reported before any study
    is created or touched.
    """
    from nas.model.device import resolve_device
    from nas.proxy.data import load_dataset
    from nas.proxy.presets import get_preset
    from nas.proxy.trainer import train

    preset = get_preset(config.proxy)
    device = resolve_device(config.device)  # a missing GPU fails here, before the study, like missing data
    data = load_dataset(config.data, subset=preset.subset, seed=config.seed, image_size=preset.resolution)

    def evaluate(spec: Spec, on_epoch: Callable[[Any], None]) -> float:
        return train(spec, data, preset, seed=config.seed, on_epoch=on_epoch, device=device).val_acc

    return evaluate


# --- study set-up and runs ------------------------------------------------------------------------


def enqueue_params(space: SearchSpace, text: str) -> dict[str, Any]:
    """The space's choices for a model the user names (`b0`, a spec file, a run folder, block strings)."""
    spec = resolve_spec(text)
    try:
        return encode(space, spec)
    except NasError as exc:
        raise NasError(f"--enqueue {text}: not in space {space.name!r}: {exc}") from None


def _create_or_load(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    # Look before creating: a create of an existing study would still append to the journal file.
    if name not in optuna.get_all_study_names(storage):
        try:
            return optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS))
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another worker created it a moment ago
    study = optuna.load_study(study_name=name, storage=storage)
    if [d.name.lower() for d in study.directions] != list(DIRECTIONS):
        raise NasError(f"study {name!r} is not a search study (directions {study.directions})")
    return study


def open_study(config: SearchConfig, space: SearchSpace, enqueued: list[tuple[str, dict[str, Any]]]) -> optuna.Study:
    """Create the study, or load it to resume; a resume with different defining settings is refused."""
    storage = open_storage(config.storage, config.run_dir)
    study = _create_or_load(storage, config.study)
    stored = study.user_attrs.get(CONFIG_ATTR)
    identity = {**config.identity(), "space": space.name}
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, identity)
    else:
        changed = [key for key in identity if stored.get(key) != identity[key]]
        if changed:
            details = ", ".join(f"{k}: {stored.get(k)!r} (now {identity[k]!r})" for k in changed)
            raise NasError(f"study {config.study!r} exists with other settings ({details}); "
                           f"use another --study name or the same settings")
    for label, params in enqueued:
        study.enqueue_trial(params, user_attrs={"enqueued": label}, skip_if_exists=True)
    return study


class OutputRefresher:
    """The per-trial callback: print the progress line, rewrite the outputs. Drawing pareto.png costs about
    0.3 s, so it is redrawn at most every `plot_every_s` seconds (every trial of a real search); the last
    write of a run always draws it."""

    def __init__(self, run_dir: Path, prefix: str = "", quiet: bool = False, plot_every_s: float = 20.0) -> None:
        self.run_dir, self.prefix, self.quiet, self.plot_every_s = run_dir, prefix, quiet, plot_every_s
        self._last_plot = -math.inf

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not self.quiet:
            print(progress_line(study, trial, self.prefix), flush=True)
        plot = time.monotonic() - self._last_plot >= self.plot_every_s
        write_outputs(study, self.run_dir, plot=plot)
        if plot:
            self._last_plot = time.monotonic()


def progress_line(study: optuna.Study, trial: FrozenTrial, prefix: str = "") -> str:
    """One line per finished trial: number, arch code, FLOPs, accuracy, reward, seconds."""
    attrs = trial.user_attrs
    flops = attrs.get("flops")
    flops_text = f"{flops / 1e6:7.1f}M" if flops is not None else "      ?"
    head = f"{prefix}trial {trial.number:3d}  {attrs.get('arch', '?'):<38} {flops_text}"
    seconds = trial_seconds(trial)
    if trial.state == TrialState.COMPLETE:
        return f"{head}  acc {attrs['accuracy']:.4f}  reward {attrs['reward']:.4f}  {seconds:5.1f}s"
    return f"{head}  {trial.state.name.lower()}: {attrs.get(REASON_ATTR, '')}  {seconds:5.1f}s"


def search_study(config: SearchConfig, evaluate: Evaluate, *, worker_index: int = 0,
                 on_trial_end: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> RunSummary:
    """One worker of a search: open (or resume) the study and run trials until it holds `n_trials`."""
    space = load_space(config.space)
    enqueued = [(text, enqueue_params(space, text)) for text in config.enqueue]
    study = open_study(config, space, enqueued)
    # Workers on other machines share no index: keep their sampler seeds apart by process id.
    salt = worker_index if config.storage is None else os.getpid()
    objective = make_objective(space, config, evaluate)
    return run_trials(
        study, objective, n_trials=config.n_trials, timeout=config.timeout,
        sampler_factory=lambda k: make_sampler(config.sampler, trial_seed(config.seed, k, salt), config.population),
        on_trial_end=on_trial_end, heartbeat_s=config.heartbeat_s, grace_s=config.grace_s,
    )


def _worker_main(config: SearchConfig, worker_index: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search_study(config, proxy_evaluator(config), worker_index=worker_index,
                 on_trial_end=OutputRefresher(config.run_dir, prefix=f"[w{worker_index}] "))


def run_search(config: SearchConfig, *, evaluate: Evaluate | None = None, quiet: bool = False) -> optuna.Study:
    """Run (or resume) a search with `config.workers` worker processes and write its outputs.

    With one worker everything runs in this process (and `evaluate` may replace the proxy trainer); with
    several, worker processes share the study through its storage and each trains with cores / workers
    threads.
    """
    space = load_space(config.space)
    enqueued = [(text, enqueue_params(space, text)) for text in config.enqueue]
    if config.workers == 1:
        if config.threads is not None:
            import torch

            torch.set_num_threads(config.threads)
        evaluate = evaluate or proxy_evaluator(config)  # data errors surface before the study is touched
        search_study(config, evaluate, on_trial_end=OutputRefresher(config.run_dir, quiet=quiet))
    else:
        if evaluate is not None:
            raise NasError("a custom accuracy source runs with one worker only")
        proxy_evaluator(config)  # check the data once, here, before any worker starts
        open_study(config, space, enqueued)  # created once, so workers never race to create it
        from nas.model.device import worker_devices

        threads = config.threads or max(1, (os.cpu_count() or 1) // config.workers)
        devices = worker_devices(config.device, config.workers)  # one worker per visible GPU, round-robin
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_worker_main, args=(with_changes(config, device=devices[i]), i, threads),
                                   name=f"nas-worker-{i}")
                   for i in range(config.workers)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        bad = [w.name for w in workers if w.exitcode != 0]
        if bad:
            raise NasError(f"worker process(es) {', '.join(bad)} exited with an error (see above); "
                           "run the same command again to resume")
    study = open_study(config, space, [])
    write_outputs(study, config.run_dir)
    return study
