"""The trial function of a search: sample a candidate, count its FLOPs, prune it above the hard cap, score it
with the study's estimator, and record the evidence on the trial."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.arch.cost import count_flops, count_params
from nas.arch.space import SearchSpace, arch_code, sample
from nas.search.config import SearchConfig
from nas.search.estimators import Estimator


def make_objective(space: SearchSpace, config: SearchConfig, estimator: Estimator) -> Callable[[Trial], list[float]]:
    """Objectives (accuracy maximised, FLOPs of the deployed network minimised) of one sampled candidate."""
    reward = config.reward
    low, high = config.flops_window
    twins = CompletedTwins()

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
                                     f"{config.hard_cap_flops / 1e6:.0f}M: not scored")
        twin = twins.find(trial.study, spec_dict)
        if twin is not None:  # estimators are seeded: scoring the same network again gives the same result
            trial.set_user_attr("duplicate_of", twin.number)
            for key, value in twin.user_attrs.items():
                if key in ("val_acc_history", "supernet_loss"):
                    trial.set_user_attr(key, value)
            accuracy = float(twin.user_attrs["accuracy"])
        else:
            accuracy = float(estimator(spec, trial.set_user_attr))
        if not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy {accuracy!r} is not in [0, 1]")
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("reward", reward(accuracy, flops))
        return [accuracy, float(flops)]

    return objective


class CompletedTwins:
    """The completed trials by architecture, to find one already scored. Kept across trials, so a study of
    thousands of trials costs a glance at each new completion, not a comparison with every earlier spec."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._by_spec: dict[str, FrozenTrial] = {}

    def find(self, study: optuna.Study, spec: dict[str, Any]) -> FrozenTrial | None:
        for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if other.number not in self._seen:
                self._seen.add(other.number)
                if "spec" in other.user_attrs and "accuracy" in other.user_attrs:
                    self._by_spec.setdefault(json.dumps(other.user_attrs["spec"], sort_keys=True), other)
        return self._by_spec.get(json.dumps(spec, sort_keys=True))
