"""Settings of a search run: a frozen, validated dataclass (no Optuna or torch import, so the CLI stays fast)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from nas._common.parse import is_int, is_number, parse_field_changes
from nas._common.runfiles import RUNS_DIR
from nas.arch.space import DEFAULT_SPACE
from nas.errors import NasError
from nas.search.cost import COST_KINDS, SearchCost
from nas.search.reward import DEFAULT_TARGET_FLOPS, DEFAULT_WEIGHT, Reward, make_reward

SAMPLERS = ("nsga2", "tpe", "random")
DIRECTIONS = ("maximize", "minimize")  # (accuracy, the cost: FLOPs or predicted latency)
OBJECTIVES = tuple(COST_KINDS)  # the cost beside accuracy: ("flops", "latency")


@dataclass(frozen=True)
class Strategy:
    """How a search scores its candidates. A staged strategy gives every candidate a cheap score first, then
    retrains the Pareto candidates around the target (and the enqueued models) stand-alone with the proxy
    preset, and selects by the reward of those accuracies; an unstaged one selects by its only score. The
    budget (trials, NSGA-II population, the time after which no new trial starts) applies where the settings
    leave it open; each strategy's is sized toward a default search of about 20 minutes on 2 cores."""

    name: str
    staged: bool
    score: str  # what a candidate's (first) accuracy is, in the outputs' words
    column: str  # staged: the prefix of that score's columns next to the stand-alone ones (<column>_acc)
    n_trials: int
    population: int
    timeout: float


STRATEGIES: dict[str, Strategy] = {
    # Successive halving in two rungs: every candidate trained over a quarter of the proxy's length (the
    # screening run), the finalists over all of it. bench/bench_supernet_ranking.py ranks this estimator best
    # per CPU-minute on the default space.
    "halving": Strategy("halving", True, "screening accuracy", "screen", n_trials=1000, population=12,
                        timeout=720.0),
    # Candidates scored on a weight-sharing supernet: thousands of them, a second each.
    "supernet": Strategy("supernet", True, "supernet score", "supernet", n_trials=1000, population=50,
                         timeout=420.0),
    # Every candidate trained with the full proxy preset: tens of candidates.
    "standalone": Strategy("standalone", False, "proxy accuracy", "", n_trials=20, population=8, timeout=1080.0),
}
BUDGET_FIELDS = ("n_trials", "population", "timeout")
# The halving strategy's screening run: this share of the proxy preset's length (a quarter of the search preset
# is one of its epochs). bench/bench_supernet_ranking.py ranks it against the full runs.
SCREEN_FRACTION = 0.25
# Settings that define a study: resuming with different ones would mix incomparable trials.
IDENTITY_FIELDS = ("strategy", "space", "data", "proxy", "proxy_changes", "screen_fraction", "supernet_preset",
                   "objective", "target_flops", "target_latency", "latency_table", "reward_weight", "hard_reward",
                   "flops_window", "hard_cap", "sampler", "population", "seed")
# What a study stored before these settings existed ran with. Another absent setting differs from any value
# on resuming (open_study refuses it) and takes its default on reporting (stored_cost, stored_reward).
IDENTITY_ABSENT = {"strategy": "standalone", "objective": "flops", "screen_fraction": SCREEN_FRACTION,
                   "proxy_changes": []}


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search run needs; the defaults are the README's main job (aimed at about 20 min on 2 cores).

    `n_trials`, `population` and `timeout` left at None take the strategy's budget (STRATEGIES);
    a timeout of math.inf means no limit. The objective is the cost minimised beside accuracy and held to its
    target by the reward, window and hard cap (`cost`): the FLOPs (`target_flops`), or the latency the table
    at `latency_table` predicts (`target_latency`, seconds). `target_flops` places the supernet's sandwich
    window in either case (`window_flops`).
    """

    study: str = "search"
    strategy: str = "halving"
    space: str = DEFAULT_SPACE
    data: str = "fashion-mnist"
    proxy: str = "search"  # the stand-alone preset: every candidate (standalone) or the finalists (staged)
    # Fields of that preset changed for this search, "FIELD=VALUE" (e.g. "flip=false"); stored in a canonical
    # form (sorted, one per field), so the same recipe typed another way resumes the study.
    proxy_changes: tuple[str, ...] = ()
    screen_fraction: float = SCREEN_FRACTION  # halving: the screening run's share of the proxy preset's length
    supernet_preset: str = "search"
    supernet: str | None = None  # a trained supernet's folder to reuse; None: train one in the run folder
    finalists: int = 3  # staged strategies: Pareto candidates around the target retrained stand-alone
    objective: str = "flops"
    target_flops: int = DEFAULT_TARGET_FLOPS
    target_latency: float | None = None  # seconds; the objective latency's target
    latency_table: str | None = None  # the objective latency's table: a file or folder (nas latency-table)
    reward_weight: float = DEFAULT_WEIGHT
    hard_reward: bool = False
    flops_window: tuple[float, float] = (0.75, 1.25)  # soft window, as multiples of the target (FLOPs or latency)
    hard_cap: float = 2.0  # candidates above hard_cap x target (FLOPs or latency) are not trained
    n_trials: int | None = None
    timeout: float | None = None  # seconds after which no new trial starts
    sampler: str = "nsga2"
    population: int | None = None  # NSGA-II generation size / TPE start-up trials
    seed: int = 0
    enqueue: tuple[str, ...] = ()
    storage: str | None = None
    workers: int = 1
    threads: int | None = None  # torch threads per worker; None: torch's choice (one worker) or cores / workers
    device: str = "auto"  # where candidates train (nas.model.device); with several workers, one per visible GPU
    runs_dir: str = RUNS_DIR
    heartbeat_s: float = 10.0
    grace_s: float = 60.0

    def __post_init__(self) -> None:
        _check(self.strategy in STRATEGIES, "strategy", self.strategy, f"one of {', '.join(STRATEGIES)}")
        for name in BUDGET_FIELDS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(STRATEGIES[self.strategy], name))
        _check(is_number(self.screen_fraction) and 0 < self.screen_fraction < 1, "screen_fraction",
               self.screen_fraction, "a share of the proxy's length, 0 < f < 1 (the whole length: strategy "
               "standalone)")
        if self.screen_fraction != SCREEN_FRACTION and self.strategy != "halving":
            # it would be stored with the study and refuse a resume over a setting the strategy never reads
            raise NasError(f"invalid search settings: screen_fraction (--screen-fraction) goes with strategy "
                           f"halving (--strategy halving), not {self.strategy}")
        if self.supernet is not None and self.strategy != "supernet":
            raise NasError(f"invalid search settings: supernet (--supernet) goes with strategy supernet "
                           f"(--strategy supernet), not {self.strategy}")
        object.__setattr__(self, "proxy_changes", _canonical_changes(self.proxy, self.proxy_changes))
        _check(is_int(self.finalists) and self.finalists >= 1, "finalists", self.finalists, "a positive integer")
        _check(isinstance(self.study, str) and self.study.strip() and "/" not in self.study
               and self.study not in (".", ".."), "study", self.study, "a plain folder name")
        _check(is_int(self.n_trials) and self.n_trials >= 1, "n_trials", self.n_trials, "a positive integer")
        _check(is_number(self.target_flops) and self.target_flops > 0 and math.isfinite(self.target_flops),
               "target_flops", self.target_flops, "a positive number")
        _check(self.objective in OBJECTIVES, "objective", self.objective, f"one of {', '.join(OBJECTIVES)}")
        if isinstance(self.latency_table, os.PathLike):  # stored with the study, which holds JSON values only
            object.__setattr__(self, "latency_table", os.fspath(self.latency_table))
        _check_latency(self)
        _check(is_number(self.timeout) and self.timeout > 0, "timeout", self.timeout,
               "a positive number of seconds (math.inf: no limit)")
        _check(self.sampler in SAMPLERS, "sampler", self.sampler, f"one of {', '.join(SAMPLERS)}")
        _check(is_int(self.population) and self.population >= 2, "population", self.population, "an integer >= 2")
        _check(is_int(self.seed) and self.seed >= 0, "seed", self.seed, "a non-negative integer")
        _check(is_int(self.workers) and 1 <= self.workers <= 256, "workers", self.workers, "an integer from 1 to 256")
        _check(self.threads is None or (is_int(self.threads) and self.threads >= 1), "threads", self.threads,
               "a positive integer")
        _check(is_number(self.hard_cap) and self.hard_cap > 0, "hard_cap", self.hard_cap, "a positive number")
        low, high = self.flops_window
        _check(is_number(low) and is_number(high) and 0 < low <= high, "flops_window", self.flops_window,
               "two multiples of the target, 0 < low <= high")
        _check(is_number(self.reward_weight) and math.isfinite(self.reward_weight), "reward_weight",
               self.reward_weight, "a finite number")
        _check(is_number(self.heartbeat_s) and self.heartbeat_s > 0, "heartbeat_s", self.heartbeat_s, "> 0")
        _check(is_number(self.grace_s) and self.grace_s > 0, "grace_s", self.grace_s, "> 0")

    @property
    def staged(self) -> bool:
        """Whether the finalists are retrained stand-alone after the candidates' first scores."""
        return STRATEGIES[self.strategy].staged

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.study

    @property
    def cost(self) -> SearchCost:
        """The cost the search minimises beside accuracy, with its target, window and hard cap."""
        return stored_cost(self.identity())

    @property
    def reward(self) -> Reward:
        return stored_reward(self.identity())

    @property
    def window_flops(self) -> tuple[float, float]:
        """The FLOPs window around `target_flops` (in FLOPs) the supernet draws its sandwich members from,
        whatever the objective: it only shapes which sub-networks the supernet trains."""
        low, high = self.flops_window
        return low * self.target_flops, high * self.target_flops

    @property
    def time_limit(self) -> float | None:
        """The timeout as the study runner takes it (None: no limit)."""
        return None if math.isinf(self.timeout) else self.timeout

    @property
    def proxy_field_changes(self) -> dict[str, Any]:
        """`proxy_changes` as preset fields and values, for `ProxyPreset.with_changes`."""
        return parse_field_changes(list(self.proxy_changes), "--proxy-change")

    def identity(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: list(data[key]) if isinstance(data[key], tuple) else data[key] for key in IDENTITY_FIELDS}


_DEFAULTS = {field.name: field.default for field in fields(SearchConfig)}


def _canonical_changes(proxy: str, items: tuple[str, ...]) -> tuple[str, ...]:
    """FIELD=VALUE changes of the proxy preset checked against it (NasError naming a wrong field or value),
    in one form however they were typed: sorted, one per field (the last), values as the preset holds them
    (flip=False -> flip=false, crop_padding=0 -> 0.0), changes to the value the preset has already left out."""
    if isinstance(items, str) or not all(isinstance(item, str) for item in items):
        raise NasError(f"invalid search settings: proxy_changes must be a list of FIELD=VALUE texts, got {items!r}")
    if not items:
        return ()
    from nas.proxy.presets import get_preset  # torch loads only when a search changes its preset

    base = get_preset(proxy)
    changes = parse_field_changes(list(items), "--proxy-change")
    try:
        changed = base.with_changes(**changes)
    except NasError as exc:
        raise NasError(f"invalid search settings: proxy_changes (--proxy-change): {exc}") from None
    values = {key: getattr(changed, key) for key in sorted(changes) if getattr(changed, key) != getattr(base, key)}
    return tuple(f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in values.items())


def _stored(settings: Mapping[str, Any], name: str) -> Any:
    """A stored setting, or what a study without it ran with."""
    return settings.get(name, IDENTITY_ABSENT.get(name, _DEFAULTS[name]))


def proxy_label(settings: Mapping[str, Any]) -> str:
    """The proxy preset of a study's stored settings in words: 'search', or 'search with flip=false'."""
    changes = _stored(settings, "proxy_changes")
    return _stored(settings, "proxy") + (f" with {', '.join(changes)}" if changes else "")


def stored_cost(settings: Mapping[str, Any]) -> SearchCost:
    """The cost of a study's stored settings (`SearchConfig.identity()`; absent ones take their defaults)."""
    kind = COST_KINDS[_stored(settings, "objective")]
    low, high = _stored(settings, "flops_window")
    return SearchCost(kind, _stored(settings, f"target_{kind.key}"), (low, high), _stored(settings, "hard_cap"))


def stored_reward(settings: Mapping[str, Any]) -> Reward:
    """The reward of a study's stored settings (absent ones take their defaults)."""
    cost = stored_cost(settings)
    return make_reward(cost.target, _stored(settings, "reward_weight"), _stored(settings, "hard_reward"), cost.kind)


def _check_latency(config: SearchConfig) -> None:
    """The latency objective needs its target and table; they mean nothing to the FLOPs objective."""
    given = {name: getattr(config, name) for name in ("target_latency", "latency_table")}
    if config.objective == "latency":
        missing = [f"{name} (--{name.replace('_', '-')})" for name, value in given.items() if value is None]
        if missing:
            raise NasError(f"invalid search settings: objective latency needs {' and '.join(missing)}")
    elif any(value is not None for value in given.values()):
        raise NasError("invalid search settings: target_latency and latency_table go with objective latency "
                       "(--objective latency)")
    target = config.target_latency
    _check(target is None or (is_number(target) and target > 0 and math.isfinite(target)), "target_latency",
           target, "a positive number of seconds")
    _check(config.latency_table is None or (isinstance(config.latency_table, str) and config.latency_table.strip()),
           "latency_table", config.latency_table, "a table file or folder")


def _check(ok: Any, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise NasError(f"invalid search setting {name}: got {value!r}, expected {expected}")

