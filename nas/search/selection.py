"""Which trials a search reports and selects: the completed ones, their Pareto front, the reward's choice,
EfficientNet-B0's trial, and (staged strategies) the finalists to retrain stand-alone."""

from __future__ import annotations

import math

from optuna.trial import FrozenTrial, TrialState

from nas.arch.efficientnet import efficientnet
from nas.search.cost import FLOPS
from nas.search.pareto import pareto_front

ENQUEUED_ATTR = "enqueued"


def completed_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that finished with an accuracy and FLOPs."""
    return [t for t in trials if t.state == TrialState.COMPLETE
            and t.user_attrs.get("accuracy") is not None and t.user_attrs.get("flops") is not None]


def front_trials(completed: list[FrozenTrial], attr: str = FLOPS.attr) -> list[FrozenTrial]:
    """The (accuracy max, cost min) Pareto front, by increasing cost (the user attribute `attr`: FLOPs, or
    the study's `SearchCost.kind.attr`)."""
    points = [(t.user_attrs["accuracy"], t.user_attrs[attr]) for t in completed]
    return [completed[i] for i in pareto_front(points)]


def selected_trial(completed: list[FrozenTrial]) -> FrozenTrial | None:
    """The completed trial with the highest reward (ties: the earlier trial)."""
    if not completed:
        return None
    return max(completed, key=lambda t: (t.user_attrs["reward"], -t.number))


def b0_trial(completed: list[FrozenTrial]) -> FrozenTrial | None:
    """The completed trial whose architecture is exactly EfficientNet-B0, if there is one."""
    b0 = efficientnet("b0").replace(name="").to_dict()
    return next((trial for trial in completed if trial.user_attrs.get("spec") == b0), None)


def choose_finalists(completed: list[FrozenTrial], window: tuple[float, float], target: float,
                     count: int, attr: str = FLOPS.attr) -> list[FrozenTrial]:
    """The candidates worth retraining stand-alone: `count` of its Pareto front inside the cost
    `window` (the highest rewards when more), topped up with the front's members nearest the target when
    fewer, then with the best-rewarded candidates inside the window, plus every enqueued model (B0 as the
    reference). Ordered by trial number. The cost is the user attribute `attr` (FLOPs, or predicted latency)."""
    front = front_trials(completed, attr)
    inside = lambda t: window[0] <= t.user_attrs[attr] <= window[1]  # noqa: E731
    by_reward = lambda t: (-t.user_attrs["reward"], t.number)  # noqa: E731
    chosen = sorted(filter(inside, front), key=by_reward)[:count]
    nearest = sorted((t for t in front if t not in chosen),
                     key=lambda t: (abs(math.log(t.user_attrs[attr] / target)), t.number))
    chosen += nearest[:count - len(chosen)]
    chosen += sorted((t for t in completed if inside(t) and t not in chosen), key=by_reward)[:count - len(chosen)]
    chosen += [t for t in completed if t.user_attrs.get(ENQUEUED_ATTR) and t not in chosen]
    unique: dict[str, FrozenTrial] = {}
    for trial in sorted(chosen, key=lambda t: t.number):
        unique.setdefault(repr(sorted(trial.params.items())), trial)  # a duplicate candidate is retrained once
    return list(unique.values())
