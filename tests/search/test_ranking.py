"""Rank agreement figures against values worked out by hand and against a brute-force definition."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from nas.search.ranking import bootstrap_tau, kendall_tau, top_precision


def brute_tau_b(x, y):
    """tau-b from its definition: sum of sign products over pairs, over the geometric mean of untied pairs."""
    pairs = list(itertools.combinations(range(len(x)), 2))
    sign = lambda v: (v > 0) - (v < 0)  # noqa: E731
    s = sum(sign(x[i] - x[j]) * sign(y[i] - y[j]) for i, j in pairs)
    untied_x = sum(x[i] != x[j] for i, j in pairs)
    untied_y = sum(y[i] != y[j] for i, j in pairs)
    return s / math.sqrt(untied_x * untied_y)


def test_hand_worked_values():
    assert kendall_tau([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == 1.0
    assert kendall_tau([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.6)  # 8 concordant, 2 discordant
    assert kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)  # 4 / sqrt(5 * 5)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


@pytest.mark.parametrize("seed", range(20))
def test_tau_matches_the_definition_with_ties(seed):
    rng = random.Random(seed)
    n = rng.randint(3, 25)
    x = [rng.randint(0, 5) for _ in range(n)]
    y = [v + rng.randint(-3, 3) for v in x]
    if len(set(x)) > 1 and len(set(y)) > 1:
        assert kendall_tau(x, y) == pytest.approx(brute_tau_b(x, y))


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_agreement():
    rng = random.Random(0)
    x = [rng.random() for _ in range(40)]
    noisy = [v + rng.gauss(0, 0.3) for v in x]
    low, high = bootstrap_tau(x, noisy)
    assert low <= kendall_tau(x, noisy) <= high
    assert bootstrap_tau(x, x) == (1.0, 1.0)
    assert high - low > 0.1


def test_top_precision():
    truth = list(range(20))
    assert top_precision(truth, truth) == 1.0  # top 2 of 20 agree
    assert top_precision([-v for v in truth], truth) == 0.0
    assert top_precision([9] + [0] * 18 + [5], truth) == 0.5  # picks 0 and 19: only 19 is in the true top 2
