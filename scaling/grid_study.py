"""The grid at phi = 1 as an Optuna study: one trial per (alpha, beta, gamma), trained on the proxy task.

The study lives in a storage (the run folder's scaling.journal by default), so a run can be interrupted and
resumed, and several `nas scale` processes can share one grid: GridSampler hands each an unvisited point.
A trial trains the base scaled in depth (alpha) and width (beta) at the proxy resolution times gamma; its
value is the proxy validation accuracy. The best point wins; equal accuracies go to the lower actual FLOPs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.samplers import GridSampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.arch.spec import Spec
from nas.errors import NasError
from nas.proxy.data import ProxyData
from nas.proxy.presets import ProxyPreset
from nas.proxy.trainer import TrainingDiverged, train
from scaling.grid import GridPoint, scale_point

POINT_PARAM = "point"
# What must match for a stored grid study to be resumed: the same base, grid and proxy training.
SETTINGS_ATTR = "scaling_settings"


@dataclass(frozen=True)
class GridSettings:
    """Everything that defines the grid study's numbers; stored with the study and checked on resume."""

    step: float
    tolerance: float
    constraint: str
    depth_rounding: str
    data: str
    proxy: ProxyPreset
    seed: int

    def to_json(self, base: Spec) -> str:
        settings = dataclasses.asdict(self)
        return json.dumps({"base": base.to_dict(), **settings}, sort_keys=True)


@dataclass(frozen=True)
class PointResult:
    """A grid point with its proxy accuracy (mean over completed trials; None if none completed yet)."""

    point: GridPoint
    proxy_resolution: int
    val_acc: float | None
    state: str  # 'complete', 'diverged', 'running' or 'pending'

    def row(self, chosen: bool) -> dict[str, Any]:
        """The point's line of grid.csv."""
        return {
            "alpha": self.point.alpha,
            "beta": self.point.beta,
            "gamma": self.point.gamma,
            "product": round(self.point.product, 4),
            "flops_ratio": round(self.point.flops_ratio, 4),
            "proxy_resolution": self.proxy_resolution,
            "val_acc": "" if self.val_acc is None else round(self.val_acc, 5),
            "state": self.state,
            "chosen": chosen,
        }


def proxy_resolution(preset: ProxyPreset, gamma: float) -> int:
    """The proxy's resolution scaled by gamma, to the nearest pixel."""
    return int(round(preset.resolution * gamma))


def open_grid_study(
    storage: BaseStorage, study_name: str, base: Spec, points: list[GridPoint], settings: GridSettings
) -> optuna.Study:
    """Create the grid study, or load it if it exists with the same base and settings (NasError otherwise)."""
    sampler = GridSampler({POINT_PARAM: [point.label for point in points]}, seed=settings.seed)
    study = optuna.create_study(
        study_name=study_name, storage=storage, sampler=sampler, direction="maximize", load_if_exists=True
    )
    wanted = settings.to_json(base)
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, wanted)
    elif stored != wanted:
        raise NasError(
            f"study {study_name!r} already holds a scaling grid for another base or other options"
            " (grid step, tolerance, constraint, depth rounding, data, proxy, seed): pass the same ones,"
            " or another --study"
        )
    return study


def _objective(
    base: Spec, points: list[GridPoint], data: ProxyData, settings: GridSettings, progress: bool,
    device: str | None = None,
) -> Callable[[Trial], float]:
    by_label = {point.label: point for point in points}

    def objective(trial: Trial) -> float:
        point = by_label[trial.suggest_categorical(POINT_PARAM, list(by_label))]
        # Depth and width scale the network; gamma scales the proxy's resolution (the trainer adapts the
        # spec's resolution, channels and classes to the proxy task).
        spec = scale_point(base, point.alpha, point.beta, 1.0, settings.depth_rounding)
        preset = dataclasses.replace(settings.proxy, resolution=proxy_resolution(settings.proxy, point.gamma))
        trial.set_user_attr("flops_ratio", point.flops_ratio)

        def report(epoch_report: Any) -> None:
            trial.report(epoch_report.val_acc, epoch_report.epoch)
            if not progress:  # no progress bar (not a terminal): one line per epoch for the log
                print(f"grid point {point.label} (proxy {preset.resolution}px): epoch {epoch_report.epoch + 1}"
                      f" (step {epoch_report.steps}) val_acc {epoch_report.val_acc:.4f}"
                      f" {epoch_report.images_per_s:.0f} img/s {epoch_report.seconds:.0f} s",
                      file=sys.stderr, flush=True)

        try:
            result = train(spec, data, preset, seed=settings.seed, on_epoch=report, progress=progress, device=device)
        except TrainingDiverged as exc:
            trial.set_user_attr("diverged", str(exc))
            raise
        trial.set_user_attr("seconds", result.seconds)
        return result.val_acc

    return objective


def _interrupted_points(study: optuna.Study) -> list[str]:
    """Points whose every trial failed without diverging (a crash or Ctrl-C): they are trained again.

    GridSampler counts a failed trial as visited, so without this a resumed study would skip them.
    """
    trials = study.get_trials(deepcopy=False)
    settled = {
        t.params.get(POINT_PARAM)
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING) or "diverged" in t.user_attrs
    }
    failed = {t.params.get(POINT_PARAM) for t in trials if t.state == TrialState.FAIL}
    return sorted(label for label in failed - settled if label is not None)


def _enqueue_grid_point(study: optuna.Study, labels: list[str], label: str) -> None:
    """Queue a trial of one grid point, tagged with its grid id as GridSampler tags its own trials, so the
    sampler's bookkeeping (which points are visited, when to stop) counts it like any other."""
    study.enqueue_trial({POINT_PARAM: label})
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    storage = study._storage  # Optuna has no public call to tag a queued trial
    storage.set_trial_system_attr(waiting[-1]._trial_id, "search_space", {POINT_PARAM: labels})
    storage.set_trial_system_attr(waiting[-1]._trial_id, "grid_id", labels.index(label))


def run_grid(
    study: optuna.Study,
    base: Spec,
    points: list[GridPoint],
    data: ProxyData,
    settings: GridSettings,
    progress: bool = False,
    device: str | None = None,
) -> None:
    """Train every grid point not yet trained in the study (this process's share of it) on `device`
    (nas.model.device: auto, cpu, cuda, cuda:N, mps; the device does not define the study)."""
    objective = _objective(base, points, data, settings, progress, device)
    labels = [point.label for point in points]
    for label in _interrupted_points(study):
        _enqueue_grid_point(study, labels, label)
        study.optimize(objective, n_trials=1, catch=(TrainingDiverged,))
    sampler = study.sampler
    if isinstance(sampler, GridSampler) and not sampler.is_exhausted(study):
        study.optimize(objective, catch=(TrainingDiverged,))


def _point_state(trials: list[FrozenTrial]) -> str:
    states = {t.state for t in trials}
    if TrialState.COMPLETE in states:
        return "complete"
    if any("diverged" in t.user_attrs for t in trials):
        return "diverged"
    return "running" if TrialState.RUNNING in states else "pending"


def collect_results(study: optuna.Study, points: list[GridPoint], preset: ProxyPreset) -> list[PointResult]:
    """Each grid point's accuracy from the study (mean when a point was trained more than once)."""
    trials = study.get_trials(deepcopy=False)
    results = []
    for point in points:
        mine = [t for t in trials if t.params.get(POINT_PARAM) == point.label]
        values = [t.value for t in mine if t.state == TrialState.COMPLETE and t.value is not None]
        accuracy = sum(values) / len(values) if values else None
        results.append(PointResult(point, proxy_resolution(preset, point.gamma), accuracy, _point_state(mine)))
    return results


def choose_point(results: list[PointResult]) -> PointResult:
    """The most accurate point; equal accuracies go to the lower actual FLOPs ratio. NasError if none trained."""
    trained = [result for result in results if result.val_acc is not None]
    if not trained:
        raise NasError("no grid point has finished training yet: nothing to choose coefficients from")
    return min(trained, key=lambda result: (-result.val_acc, result.point.flops_ratio))
