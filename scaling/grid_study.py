"""The grid at phi = 1 as a study: successive halving over the (alpha, beta, gamma) points.

Every point trains a short run (rung 0); the better part of them trains again, longer (rung 1, ...); the last
rung trains the final candidates under several seeds, so the winner's lead can be held against the seed
spread. The paper's own point (1.2, 1.1, 1.15) trains in every rung beside the grid as a reference. A trial
is one proxy training of one point at one rung under one seed: the base scaled in depth (alpha) and width
(beta) at the proxy resolution times gamma, scored by validation accuracy on one fixed validation set.

A run counts only if the network trained: its last-epoch training loss fell clearly below the loss of
guessing (ln of the class count) and its validation accuracy is clearly above chance. A run that did not
train fails (`did not train`) and its point is trained once more under another seed; a point that fails
again is reported as failed and can never win.

The trials run through the shared study runner (`nas.studies.runner`): one storage (the run folder's
scaling.journal or a URL), an exact budget over any number of `nas scale` processes, heartbeats, and the
retry of a killed process's trial.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.arch.spec import Spec
from nas.errors import NasError
from nas.proxy.data import ProxyData
from nas.proxy.presets import ProxyPreset
from nas.proxy.trainer import train
from nas.studies.runner import REASON_ATTR, run_trials
from scaling.grid import GridPoint, scale_point
from scaling.halving import DEFAULT_RUNGS, Rung, did_train, proxy_resolution, rung_data

log = logging.getLogger(__name__)

POINT, RUNG, SEED = "point", "rung", "seed"
SETTINGS_ATTR = "scaling_settings"  # what must match for a stored grid study to be resumed
RETRY_SEED_OFFSET = 1000  # a point that did not train runs once more under seed + this


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
    rungs: tuple[Rung, ...] = DEFAULT_RUNGS

    def to_json(self, base: Spec, points: list[GridPoint]) -> str:
        settings = dataclasses.asdict(self)
        return json.dumps({"base": base.to_dict(), "points": [p.label for p in points], **settings}, sort_keys=True)


class PointDidNotTrain(RuntimeError):
    """A grid point's run ended without learning: its accuracy is not evidence."""


def open_grid_study(storage: BaseStorage, study_name: str, base: Spec, points: list[GridPoint],
                    settings: GridSettings) -> optuna.Study:
    """Create the grid study, or load it if it exists with the same base and settings (NasError otherwise)."""
    from nas.studies.storage import create_or_load_study

    study = create_or_load_study(storage, study_name, ("maximize",))
    wanted = settings.to_json(base, points)
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, wanted)
    elif stored != wanted:
        raise NasError(
            f"study {study_name!r} already holds a scaling grid for another base or other options"
            " (grid step, tolerance, constraint, depth rounding, data, proxy, rungs, seed; the base is scaled with"
            " identity skips unless --keep-skips): pass the same ones, or another --study"
        )
    return study


def _objective(base: Spec, points: dict[str, GridPoint], data: ProxyData, settings: GridSettings,
               progress: bool, device: str | None = None):
    def objective(trial: Trial) -> list[float]:
        label = trial.suggest_categorical(POINT, list(points))
        rung_index = trial.suggest_int(RUNG, 0, len(settings.rungs) - 1)
        seed = trial.suggest_int(SEED, 0, 2**31 - 1)
        point, rung = points[label], settings.rungs[rung_index]
        # Depth and width scale the network; gamma scales the proxy's resolution (the trainer adapts the
        # spec's resolution, channels and classes to the proxy task).
        spec = scale_point(base, point.alpha, point.beta, 1.0, settings.depth_rounding)
        preset = settings.proxy.with_changes(resolution=proxy_resolution(settings.proxy, point.gamma),
                                             epochs=rung.epochs)
        preset = dataclasses.replace(preset, subset=None)
        trial.set_user_attr("flops_ratio", point.flops_ratio)

        def report(epoch: Any) -> None:
            if not progress:  # no progress bar (not a terminal): one line per epoch for the log
                log.info("grid point %s rung %d seed %d (%d px): epoch %d/%d loss %.3f val_acc %.4f, %.0f img/s",
                         label, rung_index, seed, preset.resolution, epoch.epoch + 1, preset.epochs,
                         epoch.train_loss, epoch.val_acc, epoch.images_per_s)

        result = train(spec, rung_data(data, rung), preset, seed=seed, on_epoch=report,
                       progress=progress, device=device)
        trial.set_user_attr("train_loss", [round(h.train_loss, 4) for h in result.history])
        trial.set_user_attr("val_acc_history", [round(h.val_acc, 5) for h in result.history])
        trial.set_user_attr("seconds", result.seconds)
        failure = did_train(result.history, data.num_classes)
        if failure:
            raise PointDidNotTrain(failure)
        return [result.val_acc]

    return objective


# --- the results per point and rung --------------------------------------------------------------------


@dataclass(frozen=True)
class PointResult:
    """A grid point with its accuracies per rung (the mean over that rung's trained seeds) and its state."""

    point: GridPoint
    proxy_resolution: int
    rung_accuracies: tuple[float | None, ...]  # None: not trained at that rung (or not yet)
    final_seeds: tuple[float, ...]  # the last rung's accuracy per seed
    state: str  # 'complete', 'eliminated after rung N', 'failed', 'running' or 'pending'
    reference: bool = False

    @property
    def accuracy(self) -> float | None:
        """The accuracy at the highest rung it trained in."""
        return next((acc for acc in reversed(self.rung_accuracies) if acc is not None), None)

    def row(self, chosen: bool) -> dict[str, Any]:
        """The point's line of grid.csv."""
        row = {"alpha": self.point.alpha, "beta": self.point.beta, "gamma": self.point.gamma,
               "product": round(self.point.product, 4), "flops_ratio": round(self.point.flops_ratio, 4),
               "proxy_resolution": self.proxy_resolution}
        for index, accuracy in enumerate(self.rung_accuracies):
            row[f"rung{index}_acc"] = "" if accuracy is None else round(accuracy, 5)
        row["final_seeds"] = " ".join(f"{acc:.4f}" for acc in self.final_seeds)
        row["val_acc"] = "" if self.accuracy is None else round(self.accuracy, 5)
        return {**row, "state": self.state, "reference": self.reference, "chosen": chosen}


def _runs(trials: list[FrozenTrial], label: str, rung: int) -> list[FrozenTrial]:
    return [t for t in trials if t.params.get(POINT) == label and t.params.get(RUNG) == rung]


def _rung_accuracy(runs: list[FrozenTrial]) -> float | None:
    values = [t.value for t in runs if t.state == TrialState.COMPLETE and t.value is not None]
    return sum(values) / len(values) if values else None


def _failed_for_good(runs: list[FrozenTrial]) -> bool:
    """Every run (the first and its retry) of the point at this rung finished without training."""
    failed = [t for t in runs if t.state == TrialState.FAIL and "did not train" in str(t.user_attrs.get(REASON_ATTR))]
    return len(failed) >= 2 and not any(t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
                                        for t in runs)


def collect_results(study: optuna.Study, points: list[GridPoint], settings: GridSettings,
                    reference: str | None = None) -> list[PointResult]:
    """Each point's accuracies per rung and its state, from the study's trials. `reference` labels the
    paper's point when it was added beside the grid (it is then reported, never chosen)."""
    trials = study.get_trials(deepcopy=False)
    results = []
    last = len(settings.rungs) - 1
    for point in points:
        accuracies, state = [], "pending"
        for rung in range(len(settings.rungs)):
            runs = _runs(trials, point.label, rung)
            accuracies.append(_rung_accuracy(runs))
            if _failed_for_good(runs):
                state = "failed"
            elif any(t.state == TrialState.RUNNING for t in runs):
                state = "running"
        final = _runs(trials, point.label, last)
        seeds = tuple(t.value for t in sorted(final, key=lambda t: t.params[SEED])
                      if t.state == TrialState.COMPLETE and t.value is not None)
        if state not in ("failed", "running"):
            trained_rungs = [i for i, acc in enumerate(accuracies) if acc is not None]
            if accuracies[last] is not None:
                state = "complete"
            elif trained_rungs and _rung_done(trials, trained_rungs[-1] + 1, settings):
                state = f"eliminated after rung {trained_rungs[-1]}"
        results.append(PointResult(point, proxy_resolution(settings.proxy, point.gamma), tuple(accuracies), seeds,
                                   state, reference=point.label == reference))
    return results


def _rung_done(trials: list[FrozenTrial], rung: int, settings: GridSettings) -> bool:
    """Whether the next rung's points were chosen (some trial of it exists)."""
    return rung < len(settings.rungs) and any(t.params.get(RUNG) == rung for t in trials)


def promoted(results: list[PointResult], rung: int, settings: GridSettings,
             always: str | None = None) -> list[PointResult]:
    """The points that train in `rung`: all of them in rung 0; else the best of the previous rung (its
    `keep`), ties to the lower FLOPs ratio, plus the point labelled `always` (the paper's); never a failed one."""
    alive = [r for r in results if r.state != "failed"]
    if rung == 0:
        return alive
    previous = [r for r in alive if r.rung_accuracies[rung - 1] is not None]
    keep = settings.rungs[rung].keep
    candidates = [r for r in previous if not r.reference]
    count = max(1, math.ceil(keep * len(candidates))) if keep < 1 else int(keep)
    ranked = sorted(candidates, key=lambda r: (-r.rung_accuracies[rung - 1], r.point.flops_ratio))[:count]
    return ranked + [r for r in previous if r.point.label == always and r not in ranked]


def choose_point(results: list[PointResult]) -> PointResult:
    """The most accurate grid point of the last rung it reached (the reference never wins); equal accuracies
    go to the lower actual FLOPs ratio. NasError if no point has trained yet."""
    depth = max((len([a for a in r.rung_accuracies if a is not None]) for r in results if not r.reference),
                default=0)
    trained = [r for r in results if not r.reference and r.state != "failed"
               and len([a for a in r.rung_accuracies if a is not None]) == depth and depth]
    if not trained:
        raise NasError("no grid point has finished training yet: nothing to choose coefficients from")
    return min(trained, key=lambda result: (-result.accuracy, result.point.flops_ratio))


# --- running it ----------------------------------------------------------------------------------------


def _enqueue(study: optuna.Study, label: str, rung: int, seed: int) -> None:
    study.enqueue_trial({POINT: label, RUNG: rung, SEED: seed}, skip_if_exists=True)


def _budget(study: optuna.Study) -> int:
    """Distinct (point, rung, seed) trials queued, running or finished, not counting runs that did not
    train (their retry runs under another seed) or a killed run twice (the runner queues it again)."""
    keys = {tuple(sorted(t.system_attrs.get("fixed_params", t.params).items()))
            for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL}
    return len(keys)


def run_grid(study: optuna.Study, base: Spec, points: list[GridPoint], data: ProxyData, settings: GridSettings,
             reference: str | None = None, always: str | None = None, progress: bool = False,
             heartbeat_s: float = 10.0, device: str | None = None) -> None:
    """Train the study's rungs in turn (this process's share of them) on `device` (nas.model.device; the device
    does not define the study): queue each rung's promoted points, a second seed for runs that did not train,
    and run the queue with the study runner."""
    by_label = {point.label: point for point in points}
    objective = _objective(base, by_label, data, settings, progress, device)
    study.sampler = optuna.samplers.RandomSampler(seed=settings.seed)  # every trial is queued: nothing is sampled
    for rung_index, rung in enumerate(settings.rungs):
        for attempt in range(2):  # the rung's runs, then once more for those that did not train
            results = collect_results(study, points, settings, reference)
            for result in promoted(results, rung_index, settings, always):
                for k in range(rung.seeds):
                    seed = settings.seed + k + attempt * RETRY_SEED_OFFSET
                    runs = _runs(study.get_trials(deepcopy=False), result.point.label, rung_index)
                    first = [t for t in runs if t.params.get(SEED) == settings.seed + k]
                    if attempt == 0 or (first and all(t.state == TrialState.FAIL for t in first)
                                        and "did not train" in str(first[-1].user_attrs.get(REASON_ATTR))):
                        _enqueue(study, result.point.label, rung_index, seed)
            run_trials(study, objective, n_trials=_budget(study), heartbeat_s=heartbeat_s, queued_only=True)
