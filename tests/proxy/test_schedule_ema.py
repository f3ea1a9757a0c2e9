"""The compressed reference learning-rate schedule and the weight EMA."""

import math

import pytest
import torch
from torch import nn

from nas.proxy.ema import REFERENCE_DECAY, REFERENCE_STEPS, ModelEma, compressed_decay
from nas.proxy.schedule import LrSchedule, compressed_schedule


def test_schedule_warmup_then_staircase():
    s = LrSchedule(base_lr=0.1, warmup_steps=10, decay_steps=4, decay_rate=0.97)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.05)
    assert s(10) == pytest.approx(0.1 * 0.97 ** 2)  # TF decays from step 0; warmup only masks the start
    assert s(11) == s(10) and s(12) == pytest.approx(0.1 * 0.97 ** 3)


def test_compressed_schedule_keeps_reference_proportions():
    total = 3500  # 10 steps per reference epoch
    s = compressed_schedule(0.016, total)
    assert s.warmup_steps == 50 and s.decay_steps == pytest.approx(24.0)
    # The last step sees the reference's final learning rate: 0.97 ** floor(349.9 / 2.4).
    assert s(total - 1) == pytest.approx(0.016 * 0.97 ** math.floor((total - 1) / 24.0))
    assert s(total - 1) / 0.016 == pytest.approx(0.97 ** 145, rel=1e-9)


def test_same_curve_at_any_length():
    short, long = compressed_schedule(1.0, 700), compressed_schedule(1.0, 7000)
    for frac in (0.1, 0.33, 0.5, 0.9):
        assert short(int(frac * 700)) == pytest.approx(long(int(frac * 7000)), rel=0.04)


def test_compressed_decay_matches_reference_at_reference_length():
    assert compressed_decay(round(REFERENCE_STEPS)) == pytest.approx(REFERENCE_DECAY, abs=1e-9)
    assert compressed_decay(1000) < compressed_decay(10000) < REFERENCE_DECAY


def test_ema_follows_the_update_formula():
    model = nn.Linear(3, 2)
    ema = ModelEma(model, decay=0.9)
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # first update: decay = min(0.9, 1/10) = 0.1
    expected = 0.1 * start["weight"] + 0.9 * model.weight.detach()
    torch.testing.assert_close(ema.module.weight, expected)
    for _ in range(200):
        ema.update(model)
    torch.testing.assert_close(ema.module.weight, model.weight.detach())
    assert not ema.module.weight.requires_grad


def test_ema_averages_bn_statistics_and_copies_counters():
    model = nn.BatchNorm1d(2)
    ema = ModelEma(model, decay=0.5)
    model.train()(torch.randn(8, 2) * 3 + 5)
    ema.update(model)  # decay min(0.5, 0.1) = 0.1
    torch.testing.assert_close(ema.module.running_mean, 0.9 * model.running_mean)
    assert ema.module.num_batches_tracked.item() == 1
