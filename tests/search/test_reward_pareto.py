"""The selection reward against its formula, and the Pareto front / hypervolume against brute force."""

from __future__ import annotations

import itertools
import random

import pytest

from nas.errors import NasError
from nas.search.pareto import hypervolume, pareto_front
from nas.search.reward import Reward


def test_soft_reward_is_mnasnet_formula():
    reward = Reward.soft()
    assert reward(0.8, 400e6) == pytest.approx(0.8)
    assert reward(0.8, 800e6) == pytest.approx(0.8 * 2 ** -0.07)
    assert reward(0.8, 200e6) == pytest.approx(0.8 * 0.5 ** -0.07)
    # 2x the FLOPs must buy about 5% more accuracy to break even (the paper's trade-off).
    assert reward(0.8 * 2 ** 0.07, 800e6) == pytest.approx(reward(0.8, 400e6))


def test_hard_reward_ignores_small_models_and_punishes_big_ones():
    reward = Reward.hard(300_000_000)
    assert reward(0.7, 100e6) == pytest.approx(0.7)
    assert reward(0.7, 600e6) == pytest.approx(0.35)
    assert reward.kind == "hard" and Reward.soft().kind == "soft"


def test_reward_settings_are_checked():
    with pytest.raises(NasError, match="target"):
        Reward.soft(0)
    with pytest.raises(NasError, match="weight"):
        Reward(400, float("nan"), 0.0)
    with pytest.raises(NasError, match="FLOPs"):
        Reward.soft()(0.5, 0)


def _dominates(a, b):
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def _brute_hypervolume(points, ref_flops):
    # Exact area on the grid spanned by every coordinate: a cell counts if some point dominates its corner.
    xs = sorted({p[1] for p in points} | {ref_flops})
    ys = sorted({0.0} | {p[0] for p in points})
    area = 0.0
    for x0, x1 in zip(xs, xs[1:]):
        for y0, y1 in zip(ys, ys[1:]):
            if any(p[1] <= x0 and p[0] >= y1 for p in points):
                area += (x1 - x0) * (y1 - y0)
    return area


@pytest.mark.parametrize("seed", range(20))
def test_front_and_hypervolume_match_brute_force(seed):
    rng = random.Random(seed)
    points = [(round(rng.random(), 2), rng.choice(range(100, 1000, 50))) for _ in range(rng.randint(1, 25))]
    front = pareto_front(points)
    expected = {i for i, p in enumerate(points) if not any(_dominates(q, p) for q in points)}
    # duplicates of a front point keep only one representative
    assert {points[i] for i in front} == {points[i] for i in expected}
    assert len(front) == len({points[i] for i in front})
    assert [points[i][1] for i in front] == sorted(points[i][1] for i in front)
    assert hypervolume(points, 1000) == pytest.approx(_brute_hypervolume(points, 1000))


def test_hypervolume_simple_cases():
    assert hypervolume([], 10) == 0
    assert hypervolume([(0.5, 4)], 10) == pytest.approx(3.0)
    assert hypervolume([(0.5, 4), (0.9, 8)], 10) == pytest.approx(0.5 * 4 + 0.9 * 2)
    assert hypervolume([(0.5, 12)], 10) == 0  # beyond the reference point
    for perm in itertools.permutations([(0.5, 4), (0.9, 8), (0.4, 6)]):
        assert hypervolume(list(perm), 10) == pytest.approx(3.8)
