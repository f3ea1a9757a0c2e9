"""The trial function of a search: sample a candidate, count its FLOPs and price it in the study's cost (the
FLOPs, or the predicted latency), prune it above the hard cap, score it with the study's estimator, and
record the evidence on the trial.

Pricers: what gives a candidate's cost, one per objective, `make_pricer(config, space) -> (spec -> cost)`.
The latency pricer loads its table once (per worker, like the estimators' data) and checks up front that
it covers the whole space, so a missing or incomplete table is one line before any study is touched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.arch.cost import count_flops, count_params
from nas.arch.space import SearchSpace, arch_code, sample
from nas.arch.spec import Spec
from nas.errors import NasError
from nas.search.config import SearchConfig
from nas.search.estimators import Estimator

Pricer = Callable[[Spec], float]  # a candidate's cost in base units (FLOPs, seconds)


def latency_pricer(config: SearchConfig, space: SearchSpace) -> Pricer:
    """The latency the table at `config.latency_table` predicts, checked to cover every part of `space`."""
    from nas.latency.predict import load_predictor

    try:
        return load_predictor(config.latency_table, space)
    except NasError as exc:
        raise NasError(f"--latency-table: {exc}") from None


PRICERS: dict[str, Callable[[SearchConfig, SearchSpace], Pricer]] = {
    "flops": lambda config, space: count_flops,
    "latency": latency_pricer,
}


def make_pricer(config: SearchConfig, space: SearchSpace) -> Pricer:
    """What prices a candidate in the study's cost (`config.objective`)."""
    return PRICERS[config.objective](config, space)


def make_objective(space: SearchSpace, config: SearchConfig, estimator: Estimator,
                   price: Pricer) -> Callable[[Trial], list[float]]:
    """Objectives (accuracy maximised, the cost of the deployed network minimised) of one sampled candidate;
    FLOPs and parameters are recorded whatever the cost, and the cost under its own key (`latency_s`)."""
    reward, cost = config.reward, config.cost
    low, high = cost.window_multiples
    twins = CompletedTwins()

    def objective(trial: Trial) -> list[float]:
        spec = sample(space, trial)
        spec_dict = spec.to_dict()
        value = price(spec)
        # A dict, so the FLOPs objective's cost (under "flops") is set once: each attribute is a storage write.
        attrs = {"arch": arch_code(space, spec), "flops": count_flops(spec), "params": count_params(spec),
                 cost.kind.attr: value, "spec": spec_dict}
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        # The soft window: feasible (<= 0) inside [low, high] x target; samplers prefer feasible candidates.
        ratio = value / cost.target
        trial.set_constraint(f"{cost.kind.key}_above_window", ratio - high)
        trial.set_constraint(f"{cost.kind.key}_below_window", low - ratio)
        if value > cost.hard_cap:
            raise optuna.TrialPruned(f"{cost.kind.amount(value, cost.kind.digits + 1)} is above the hard cap "
                                     f"{cost.kind.plain(cost.hard_cap)}: not scored")
        twin = twins.find(trial.study, spec_dict)
        if twin is not None:  # estimators are seeded: scoring the same network again gives the same result
            trial.set_user_attr("duplicate_of", twin.number)
            for key in ("val_acc_history", "supernet_loss", "classes"):
                if key in twin.user_attrs:
                    trial.set_user_attr(key, twin.user_attrs[key])
            accuracy = float(twin.user_attrs["accuracy"])
        else:
            accuracy = float(estimator(spec, trial.set_user_attr))
        if not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy {accuracy!r} is not in [0, 1]")
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("reward", reward(accuracy, value))
        return [accuracy, float(value)]

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
