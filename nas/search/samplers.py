"""The samplers a search can use, by name, each seeded so that a run repeats and a resumed run continues."""

from __future__ import annotations

import zlib
from collections.abc import Callable

from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler

from nas.errors import NasError
from nas.search.config import SAMPLERS


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
