"""BatchNorm statistics recomputed from data: exactly the batches' own, the model left as it was otherwise."""

from __future__ import annotations

import torch
from torch import nn

from nas.model.batchnorm import recalibrate_batchnorm


def test_statistics_are_the_average_of_the_batches_and_the_model_is_restored():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, momentum=0.01), nn.Dropout(0.9),
                        nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4))
    batches = [torch.randn(5, 3, 6, 6) * (k + 1) + k for k in range(3)]
    recalibrate_batchnorm(net, batches)
    with torch.no_grad():
        features = [net[0](b) for b in batches]
    means = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
    variances = torch.stack([f.var((0, 2, 3), unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(net[1].running_mean, means, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net[1].running_var, variances, rtol=1e-4, atol=1e-5)
    assert not net.training and not net[1].training and net[1].momentum == 0.01 and net[4].momentum == 0.1
    # Dropout stayed off during the pass: the second BN saw the deterministic features of the first.
    with torch.no_grad():
        second = [net[3](net[2](net[1](f))) for f in features]
    torch.testing.assert_close(net[4].running_mean, torch.stack([s.mean((0, 2, 3)) for s in second]).mean(0),
                               rtol=1e-4, atol=1e-5)
