"""How well one ranking of candidates agrees with another: Kendall's tau-b with a bootstrap interval, and the
precision of an estimator's top picks. The evidence figures of the supernet and search benches and summaries."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two paired sequences (ties in either count as neither concordant nor discordant,
    with the tie correction of tau-b); NaN when either sequence is constant."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs paired sequences, got {len(x)} and {len(y)} values")
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


def bootstrap_tau(x: Sequence[float], y: Sequence[float], *, level: float = 0.9, resamples: int = 2000,
                  seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of `kendall_tau(x, y)`, resampling the candidates with replacement."""
    rng = random.Random(seed)
    n = len(x)
    taus = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        tau = kendall_tau([x[i] for i in picks], [y[i] for i in picks])
        if not math.isnan(tau):
            taus.append(tau)
    taus.sort()
    low = taus[int((1 - level) / 2 * (len(taus) - 1))]
    high = taus[int((1 + level) / 2 * (len(taus) - 1))]
    return low, high


def top_precision(estimate: Sequence[float], truth: Sequence[float], fraction: float = 0.1) -> float:
    """Of the top `fraction` of candidates by `estimate` (at least one), the share that is also in the top
    `fraction` by `truth`."""
    k = max(1, math.ceil(fraction * len(truth)))
    by_estimate = sorted(range(len(estimate)), key=lambda i: -estimate[i])[:k]
    by_truth = set(sorted(range(len(truth)), key=lambda i: -truth[i])[:k])
    return sum(i in by_truth for i in by_estimate) / k
