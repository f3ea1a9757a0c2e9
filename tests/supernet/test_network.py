"""The supernet holds every architecture of its space: a sampled architecture's forward with its slices of the
weights equals the ordinary `build_model(spec)` network holding the extracted weights."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
import torch

from nas.arch.efficientnet import efficientnet
from nas.arch.space import RandomChoices, decode, load_space, sample
from nas.errors import NasError
from nas.model.builder import model_from_state
from nas.supernet.network import Supernet, _centre, supernet_parameters


def randomized(net: Supernet, seed: int = 1) -> Supernet:
    """Non-trivial BN statistics and affine parameters, and a classifier with outputs of order one, so that a
    wrong slice cannot hide behind BN identities and tiny logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in itertools.chain(net.named_parameters(), net.named_buffers()):
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean") or name.endswith("bn.bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)
            elif name.endswith("bn.weight"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
        net.classifier.weight.mul_(20.0)
    return net.eval()


@pytest.fixture(scope="module")
def mnasnet_supernet() -> Supernet:
    torch.manual_seed(0)
    return randomized(Supernet(load_space("mnasnet"), in_channels=1, num_classes=10))


def assert_same_network(net: Supernet, spec, resolution: int, batch: int = 3) -> None:
    fitted = net.fit(spec, resolution)
    model = model_from_state(fitted, net.extract(fitted)).eval()  # strict: exactly build_model's keys and shapes
    x = torch.randn((batch, net.in_channels, resolution, resolution), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = net(x, fitted)
        got = model(x)
    assert expected.abs().max() > 0.5  # logits of order one: a wrong slice shows
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_b0_extracted_from_the_mnasnet_supernet_is_the_same_network(mnasnet_supernet):
    assert_same_network(mnasnet_supernet, efficientnet("b0").replace(name=""), resolution=32)


@pytest.mark.parametrize("seed", range(4))
def test_sampled_mnasnet_architectures_extract_exactly(mnasnet_supernet, seed):
    spec = sample(load_space("mnasnet"), RandomChoices(random.Random(seed)))
    assert_same_network(mnasnet_supernet, spec, resolution=32)


def test_every_choice_of_the_tiny_space_extracts_into_its_network():
    """Each stage's every combination of choices (the other stages drawn at random) gives a valid module whose
    forward equals the supernet's for that choice; at 8 px the last stages run on maps smaller than the
    kernel, so the tap-skipping path is exercised too."""
    space = load_space("tiny")
    torch.manual_seed(0)
    net = randomized(Supernet(space, in_channels=3, num_classes=5))
    params = space.param_choices()
    rng = random.Random(0)
    specs = set()
    for stage in range(1, len(space.stages) + 1):
        names = [name for name in params if name.startswith(f"s{stage}_")]
        for values in itertools.product(*(params[name] for name in names)):
            choice = {name: rng.choice(options) for name, options in params.items()}
            choice.update(dict(zip(names, values)))
            specs.add(decode(space, choice))  # expand ratios of non-MBConv blocks decode alike
    for spec in specs:
        assert_same_network(net, spec, resolution=8, batch=2)
    for i, choices in enumerate(space.stages):  # every value of every choice was extracted at least once
        seen = [spec.stages[i] for spec in specs]
        assert {s.block for s in seen} == set(choices.block)
        assert {s.kernel for s in seen} == set(choices.kernel)
        assert {s.se_ratio for s in seen} == set(choices.se_ratio)
        assert {s.skip for s in seen} == {True, False}
        assert {s.out_channels for s in seen} == set(choices.filters)
        assert {s.repeats for s in seen} == set(choices.layers)
        assert {s.expand for s in seen if s.block in ("mbconv", "ds")} == set(choices.expand)


def test_depthwise_separable_blocks_have_their_own_weights(mnasnet_supernet):
    """ds and MBConv with expand ratio 1 are one block and share one path; an expanding MBConv has its own
    depthwise and projection weights, so training one never pulls the other's filters."""
    net = mnasnet_supernet
    base = efficientnet("b0").replace(name="")
    stages = list(base.stages)

    def block_state(block: str, expand: int) -> dict[str, torch.Tensor]:
        stages[3] = dataclasses.replace(base.stages[3], block=block, expand=expand)
        fitted = net.fit(base.replace(stages=tuple(stages)), 32)
        first = sum(stage.repeats for stage in fitted.stages[:3])
        return {key.split(".", 2)[2]: value for key, value in net.extract(fitted).items()
                if key.startswith(f"blocks.{first}.")}

    ds, mbconv1, mbconv6 = block_state("ds", 1), block_state("mbconv", 1), block_state("mbconv", 6)
    assert ds.keys() == mbconv1.keys() and all(torch.equal(ds[key], mbconv1[key]) for key in ds)
    slot = net.stages[3][0]
    assert torch.equal(ds["conv.conv.weight"], _centre(slot.separable.dw_weight[:ds["conv.conv.weight"].shape[0]], 3))
    assert torch.equal(mbconv6["conv.conv.weight"], _centre(slot.mbconv.dw_weight[:mbconv6["conv.conv.weight"].shape[0]], 3))
    assert slot.separable.dw_weight.data_ptr() != slot.mbconv.dw_weight.data_ptr()
    assert slot.separable.project_weight.shape[1] == slot.shape.in_channels < slot.mbconv.project_weight.shape[1]


def test_the_parameter_count_is_known_before_allocation():
    for name in ("tiny", "mnasnet"):
        space = load_space(name)
        assert supernet_parameters(space, 1, 10) == sum(p.numel() for p in Supernet(space, 1, 10).parameters())


def test_a_space_too_large_for_a_supernet_is_refused(tmp_path):
    text = (load_space("tiny").source and open(load_space("tiny").source).read())
    huge = text.replace("filters = 40", "filters = 40000").replace("head_channels = 128", "head_channels = 128")
    path = tmp_path / "huge.toml"
    path.write_text(huge)
    with pytest.raises(NasError, match="would hold .* parameters"):
        Supernet(load_space(str(path)), 3, 10)


def test_a_spec_outside_the_space_is_refused(mnasnet_supernet):
    wide = efficientnet("b0").replace(stem_channels=48)
    with pytest.raises(NasError, match="not an architecture of space 'mnasnet'"):
        mnasnet_supernet.fit(wide, 32)
    b3 = efficientnet("b3")
    with pytest.raises(NasError, match="not an architecture"):
        mnasnet_supernet.fit(b3, 32)
