"""Settings of a search run: a frozen, validated dataclass (no Optuna or torch import, so the CLI stays fast)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nas._common.parse import is_int, is_number
from nas._common.runfiles import RUNS_DIR
from nas.arch.space import DEFAULT_SPACE
from nas.errors import NasError
from nas.search.reward import DEFAULT_TARGET_FLOPS, DEFAULT_WEIGHT, Reward, make_reward

SAMPLERS = ("nsga2", "tpe", "random")
DIRECTIONS = ("maximize", "minimize")  # (accuracy, FLOPs)
# How candidates are scored: on a weight-sharing supernet (thousands of candidates, the Pareto candidates
# around the target then retrained stand-alone) or each trained stand-alone (tens of candidates).
STRATEGIES = ("supernet", "standalone")
# Each strategy's budget when the settings leave it open (None): trials, NSGA-II population, and the time after
# which no new trial starts, so the default search of either kind ends within about 20 minutes on 2 cores.
STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    "supernet": {"n_trials": 1000, "population": 50, "timeout": 420.0},
    "standalone": {"n_trials": 20, "population": 8, "timeout": 1080.0},
}
# Settings that define a study: resuming with different ones would mix incomparable trials.
IDENTITY_FIELDS = ("strategy", "space", "data", "proxy", "supernet_preset", "target_flops", "reward_weight",
                   "hard_reward", "flops_window", "hard_cap", "sampler", "population", "seed")


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search run needs; the defaults are the README's main job (about 20 min on 2 cores).

    `n_trials`, `population` and `timeout` left at None take the strategy's defaults (STRATEGY_DEFAULTS);
    a timeout of math.inf means no limit.
    """

    study: str = "search"
    strategy: str = "supernet"
    space: str = DEFAULT_SPACE
    data: str = "fashion-mnist"
    proxy: str = "search"  # the stand-alone preset: every candidate (standalone) or the finalists (supernet)
    supernet_preset: str = "search"
    supernet: str | None = None  # a trained supernet's folder to reuse; None: train one in the run folder
    finalists: int = 4  # supernet strategy: Pareto candidates around the target retrained stand-alone
    target_flops: int = DEFAULT_TARGET_FLOPS
    reward_weight: float = DEFAULT_WEIGHT
    hard_reward: bool = False
    flops_window: tuple[float, float] = (0.75, 1.25)  # soft window, as multiples of the target
    hard_cap: float = 2.0  # candidates above hard_cap x target are not trained
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
        for name, value in STRATEGY_DEFAULTS[self.strategy].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        _check(is_int(self.finalists) and self.finalists >= 1, "finalists", self.finalists, "a positive integer")
        _check(isinstance(self.study, str) and self.study.strip() and "/" not in self.study
               and self.study not in (".", ".."), "study", self.study, "a plain folder name")
        _check(is_int(self.n_trials) and self.n_trials >= 1, "n_trials", self.n_trials, "a positive integer")
        _check(is_number(self.target_flops) and self.target_flops > 0 and math.isfinite(self.target_flops),
               "target_flops", self.target_flops, "a positive number")
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
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.study

    @property
    def reward(self) -> Reward:
        return make_reward(self.target_flops, self.reward_weight, self.hard_reward)

    @property
    def hard_cap_flops(self) -> float:
        return self.hard_cap * self.target_flops

    @property
    def window_flops(self) -> tuple[float, float]:
        """The soft FLOPs window in FLOPs."""
        low, high = self.flops_window
        return low * self.target_flops, high * self.target_flops

    @property
    def time_limit(self) -> float | None:
        """The timeout as the study runner takes it (None: no limit)."""
        return None if math.isinf(self.timeout) else self.timeout

    def identity(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: list(data[key]) if isinstance(data[key], tuple) else data[key] for key in IDENTITY_FIELDS}



def _check(ok: Any, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise NasError(f"invalid search setting {name}: got {value!r}, expected {expected}")

