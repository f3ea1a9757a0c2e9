"""The parts a latency table times: keys that hold a part's geometry, modules that compose into the network."""

from __future__ import annotations

import itertools
import random

import torch

from nas.arch.efficientnet import efficientnet
from nas.arch.space import decode, load_space, sample
from nas.latency.parts import space_parts, spec_keys, spec_parts
from nas.model.builder import build_model
from tests.latency.micro_space import write_micro_space
from tests.trained_weights import trained_like

# EfficientNet-B0's parts written out by hand from the reference table (stage: repeats, kernel, stride, expand,
# in -> out; SE width = block input channels / 4), not derived from the layout code.
B0_KEYS = [
    "stem_i3_o32_224px",
    "ds_k3_s1_i32_m32_o16_se8_112px",
    "mbconv_k3_s2_i16_m96_o24_se4_112px", "mbconv_k3_s1_i24_m144_o24_se6_56px_res",
    "mbconv_k5_s2_i24_m144_o40_se6_56px", "mbconv_k5_s1_i40_m240_o40_se10_28px_res",
    "mbconv_k3_s2_i40_m240_o80_se10_28px", *["mbconv_k3_s1_i80_m480_o80_se20_14px_res"] * 2,
    "mbconv_k5_s1_i80_m480_o112_se20_14px", *["mbconv_k5_s1_i112_m672_o112_se28_14px_res"] * 2,
    "mbconv_k5_s2_i112_m672_o192_se28_14px", *["mbconv_k5_s1_i192_m1152_o192_se48_7px_res"] * 3,
    "mbconv_k3_s1_i192_m1152_o320_se48_7px",
    "head_i320_o1280_c1000_7px",
]


class RandomTrial:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def suggest_categorical(self, name, choices):
        return self.rng.choice(list(choices))


def test_b0_parts_match_the_reference_table():
    assert spec_keys(efficientnet("b0")) == B0_KEYS


def test_parts_with_the_network_weights_compute_the_network():
    spec = efficientnet("b0").replace(resolution=64, num_classes=10)
    net = trained_like(build_model(spec))
    parts = spec_parts(spec)
    modules = [part.make().eval() for part in parts]
    sources = [net.stem, *net.blocks, None]
    for module, source in zip(modules[:-1], sources):
        module.load_state_dict(source.state_dict())
    modules[-1].head.load_state_dict(net.head.state_dict())
    modules[-1].classifier.load_state_dict(net.classifier.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = x
        for part, module in zip(parts, modules):
            assert tuple(out.shape[1:]) == part.input_shape, part.key
            out = module(out)
        torch.testing.assert_close(out, net(x), rtol=1e-5, atol=1e-5)
    assert [part.channels_last_input for part in parts] == [False] + [True] * (len(parts) - 1)


def test_space_parts_are_exactly_the_parts_of_every_network_of_the_space(tmp_path):
    space = load_space(str(write_micro_space(tmp_path)))
    choices = space.param_choices()
    every = set()
    for values in itertools.product(*choices.values()):
        every.update(spec_keys(decode(space, dict(zip(choices, values)))))
    assert set(space_parts(space)) == every


def test_space_parts_cover_sampled_networks_of_the_default_space():
    space = load_space("mnasnet")
    parts = space_parts(space)
    for seed in range(300):
        spec = sample(space, RandomTrial(seed))
        assert set(spec_keys(spec)) <= set(parts)
    assert set(spec_keys(efficientnet("b0"))) <= set(parts)


def test_space_parts_follow_the_resolution():
    space = load_space("tiny")
    keys = set(space_parts(space, resolution=32))
    assert "stem_i3_o16_32px" in keys and all(key.endswith(("px", "px_res")) for key in keys)
    assert not keys & set(space_parts(space))
