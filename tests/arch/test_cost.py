"""The analytic cost model against independent ground truth: fvcore and the built module."""

import logging

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from hypothesis import given, settings

from nas.arch.cost import count_flops, count_params, peak_activation_bytes
from nas.arch.efficientnet import FAMILY_NAMES, efficientnet, efficientnet_b0
from nas.model.builder import build_model
from tests.strategies import specs

logging.getLogger("fvcore").setLevel(logging.ERROR)


def fvcore_flops(spec) -> int:
    model = build_model(spec).eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total())


def module_params(spec) -> int:
    return sum(p.numel() for p in build_model(spec).parameters())


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_flops_and_params_match_fvcore_and_module(name):
    spec = efficientnet(name)
    assert count_params(spec) == module_params(spec)
    assert count_flops(spec) == pytest.approx(fvcore_flops(spec), rel=1e-3)


def test_b0_flops_are_the_papers_0_39b():
    assert count_flops(efficientnet_b0()) == 399_352_864  # fvcore: ~0.40G; paper: 0.39B


@given(specs())
@settings(max_examples=100, deadline=None)
def test_random_specs_match_fvcore_and_module(spec):
    assert count_params(spec) == module_params(spec)
    assert count_flops(spec) == pytest.approx(fvcore_flops(spec), rel=1e-3)


def test_peak_activation_memory_is_plausible():
    b0 = efficientnet_b0()
    peak = peak_activation_bytes(b0)
    # Largest layer of B0: block 2's stride-2 depthwise conv, 96 channels in at 112x112 and out at 56x56.
    assert peak == 4 * (96 * 112**2 + 96 * 56**2)
    assert peak_activation_bytes(b0, batch_size=8) == 8 * peak
    assert peak_activation_bytes(b0.replace(resolution=448)) > 3.9 * peak
