import pytest
import torch

from nas.family import FAMILY_NAMES, efficientnet, efficientnet_b0
from nas.model import DropPath, SqueezeExcite, build_model
from nas.spec import Spec, StageSpec

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
