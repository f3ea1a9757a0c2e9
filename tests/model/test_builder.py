import pytest
import torch

from nas.arch.efficientnet import FAMILY_NAMES, efficientnet, efficientnet_b0
from nas.arch.spec import Spec, StageSpec
from nas.model.builder import (
    ConvBN,
    DropPath,
    SqueezeExcite,
    build_model,
    conv_on_reachable_taps,
    skip_unreachable_taps,
)

REFERENCE_PARAMS = {
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232, "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960,
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_has_the_reference_parameter_counts(name):
    assert n_params(build_model(efficientnet(name))) == REFERENCE_PARAMS[name]


def test_b0_forward_shape_and_block_structure():
    model = build_model(efficientnet_b0()).eval()
    assert len(model.blocks) == 16
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
    first_se = model.blocks[0].se
    assert isinstance(first_se, SqueezeExcite) and first_se.reduce.out_channels == 8  # int(32 * 0.25)
    # SE squeeze is relative to the block input: block 2 has input 16, expanded 96 -> squeeze 4, not 24.
    assert model.blocks[1].se.reduce.out_channels == 4 and model.blocks[1].se.reduce.in_channels == 96
    bn = model.stem.bn
    assert bn.eps == 1e-3 and bn.momentum == 0.01


def test_drop_path_rates_rise_linearly_and_only_on_residual_blocks():
    model = build_model(efficientnet_b0())
    rates = {i: b.drop_path.rate for i, b in enumerate(model.blocks) if isinstance(b.drop_path, DropPath)}
    assert list(rates) == [2, 4, 6, 7, 9, 10, 12, 13, 14]
    assert rates[14] == pytest.approx(0.2 * 14 / 16)


def test_drop_path_is_identity_at_eval_and_unbiased_in_training():
    layer = DropPath(0.5)
    x = torch.ones(20000, 1, 1, 1)
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()
    out = layer(x)
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)


def test_reference_initialisation():
    torch.manual_seed(0)
    model = build_model(efficientnet_b0())
    conv = model.blocks[4].project.conv  # 1x1, 240 -> 40
    assert conv.weight.std().item() == pytest.approx((2.0 / 40) ** 0.5, rel=0.05)
    bound = 1 / 1000**0.5
    assert model.classifier.weight.abs().max().item() <= bound and model.classifier.bias.abs().sum() == 0


def test_residual_only_when_shapes_allow_and_skip_enabled():
    spec = Spec(stages=(StageSpec("mbconv", 2, 3, 1, 3, 32, 0.0, skip=False), StageSpec("conv", 2, 3, 1, 1, 32)),
                resolution=32, num_classes=5, in_channels=1)
    model = build_model(spec)
    assert [b.residual for b in model.blocks] == [False, False, True, True]
    assert model(torch.randn(3, 1, 32, 32)).shape == (3, 5)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (1, 3), (3, 3)])
@pytest.mark.parametrize("depthwise", [True, False])
def test_conv_on_reachable_taps_matches_the_full_conv_and_its_gradients(kernel, stride, size, depthwise):
    """The training-time conv that skips taps which only ever see padding is the same function as nn.Conv2d,
    with the same input and weight gradients (zero for the skipped taps)."""
    torch.manual_seed(0)
    channels = 6
    conv = torch.nn.Conv2d(channels, channels, kernel, stride, padding=kernel // 2,
                           groups=channels if depthwise else 1, bias=False)
    x = torch.randn(4, channels, *size).to(memory_format=torch.channels_last).requires_grad_()
    results = []
    for forward in (conv, lambda inputs: conv_on_reachable_taps(conv, inputs)):
        x.grad, conv.weight.grad = None, None
        out = forward(x)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        results.append((out.detach(), x.grad.clone(), conv.weight.grad.clone()))
    (out, x_grad, w_grad), (out_c, x_grad_c, w_grad_c) = results
    assert out_c.shape == out.shape
    torch.testing.assert_close(out_c, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x_grad_c, x_grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_grad_c, w_grad, rtol=1e-5, atol=1e-6)


def test_training_forward_crops_only_where_taps_cannot_reach():
    block = ConvBN(4, 4, 5, groups=4).train()
    assert not block.crop_taps_in_training  # off unless switched on
    skip_unreachable_taps(block)
    calls = []
    block.conv.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[-1]))
    block(torch.randn(2, 4, 8, 8))  # every tap reaches an 8x8 map: the module itself runs
    block(torch.randn(2, 4, 1, 1))  # a 1x1 map: the cropped kernel, not the module
    block.eval()(torch.randn(2, 4, 1, 1))  # the deployed form always runs the module
    assert calls == [8, 1]
