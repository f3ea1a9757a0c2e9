"""RMSpropTF against the TF update formulas written out independently in numpy."""

import numpy as np
import pytest
import torch
from torch import nn

from nas.proxy.optim import RMSpropTF, weight_decay_groups


def tf_rmsprop_reference(p0, grads, lr, rho, momentum, eps, weight_decay):
    """TF's RMSProp: ms starts at one, eps inside the sqrt, lr folded into the momentum buffer."""
    p = p0.astype(np.float64).copy()
    ms = np.ones_like(p)
    mom = np.zeros_like(p)
    for g in grads:
        g = g + weight_decay * p
        ms = rho * ms + (1 - rho) * g * g
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        p = p - mom
    return p


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_tf_formulas_over_several_steps(weight_decay):
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(4, 3)).astype(np.float32)
    grads = [rng.normal(scale=s, size=(4, 3)).astype(np.float32) for s in (1.0, 0.1, 3.0, 0.01, 1.0)]
    param = nn.Parameter(torch.from_numpy(p0.copy()))
    opt = RMSpropTF([param], lr=0.05, rho=0.9, momentum=0.9, eps=1e-3, weight_decay=weight_decay)
    for g in grads:
        param.grad = torch.from_numpy(g)
        opt.step()
    expected = tf_rmsprop_reference(p0, grads, 0.05, 0.9, 0.9, 1e-3, weight_decay)
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_differs_from_torch_rmsprop():
    """Guards the point of the class: PyTorch's RMSprop (eps outside sqrt, ms from zero) gives another result."""
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(5))
    b = nn.Parameter(a.detach().clone())
    ours = RMSpropTF([a], lr=0.01)
    theirs = torch.optim.RMSprop([b], lr=0.01, alpha=0.9, momentum=0.9, eps=1e-3)
    for _ in range(3):
        g = torch.randn(5)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    assert not torch.allclose(a, b, rtol=1e-3)


def test_lr_change_does_not_rescale_accumulated_momentum():
    """With lr folded into the buffer, setting lr to 0 still lets the old momentum move the parameter."""
    p = nn.Parameter(torch.zeros(1))
    opt = RMSpropTF([p], lr=1.0, rho=0.9, momentum=0.5, eps=1e-3)
    p.grad = torch.ones(1)
    opt.step()
    first = -p.item()
    opt.param_groups[0]["lr"] = 0.0
    opt.step()
    assert -p.item() == pytest.approx(first * 1.5, rel=1e-6)


def test_weight_decay_groups_cover_conv_and_linear_weights_only():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1, bias=True),
                          nn.Flatten(), nn.Linear(4, 2))
    decayed, plain = weight_decay_groups(model, 1e-5)
    assert decayed["weight_decay"] == 1e-5 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model[0].weight), id(model[2].weight), id(model[4].weight)}
    assert {id(p) for p in plain["params"]} == {id(model[1].weight), id(model[1].bias), id(model[2].bias),
                                                  id(model[4].bias)}


def test_rejects_invalid_settings():
    with pytest.raises(ValueError):
        RMSpropTF([nn.Parameter(torch.zeros(1))], eps=0.0)
