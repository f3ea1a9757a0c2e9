"""Search spaces: the format's validation, the MnasNet space's choices, B0 as a point of it, sampling."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.arch.cost import count_flops, count_params
from nas.arch.efficientnet import efficientnet
from nas.arch.space import arch_code, decode, encode, load_space, sample
from nas.errors import NasError

# EfficientNet-B0's choices written out by hand from the reference table (not via encode()).
B0_TABLE = [  # block, kernel, expand, filters, layers
    ("ds", 3, 1, 16, 1), ("mbconv", 3, 6, 24, 2), ("mbconv", 5, 6, 40, 2), ("mbconv", 3, 6, 80, 3),
    ("mbconv", 5, 6, 112, 3), ("mbconv", 5, 6, 192, 4), ("mbconv", 3, 6, 320, 1),
]
B0_CHOICES = {}
for _i, (_block, _kernel, _expand, _filters, _layers) in enumerate(B0_TABLE, start=1):
    B0_CHOICES.update({f"s{_i}_block": _block, f"s{_i}_kernel": _kernel, f"s{_i}_expand": _expand,
                       f"s{_i}_se": 0.25, f"s{_i}_skip": "identity", f"s{_i}_filters": _filters,
                       f"s{_i}_layers": _layers})


class RandomTrial:
    """Stands in for an Optuna trial: picks uniformly among the offered choices, remembers them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.params: dict = {}

    def suggest_categorical(self, name, choices):
        self.params[name] = self.rng.choice(list(choices))
        return self.params[name]


def test_b0_is_a_point_of_the_mnasnet_space():
    space = load_space("mnasnet")
    spec = decode(space, B0_CHOICES)
    assert count_params(spec) == 5_288_548
    assert count_flops(spec) == count_flops(efficientnet("b0"))
    assert spec == efficientnet("b0").replace(name="")
    assert encode(space, efficientnet("b0")) == B0_CHOICES
    assert arch_code(space, spec) == "D31 M632 M652 M633 M653 M654 M631"


def test_mnasnet_space_choices_follow_the_issue():
    space = load_space("mnasnet")
    assert len(space.stages) == 7
    assert [s.stride for s in space.stages] == [1, 2, 2, 2, 1, 2, 1]
    for stage, (_, _, _, base_filters, base_layers) in zip(space.stages, B0_TABLE):
        assert stage.block == ("mbconv", "ds", "conv")
        assert stage.kernel == (3, 5) and stage.expand == (1, 3, 6) and stage.se_ratio == (0.0, 0.25)
        assert stage.skip == ("identity", "none")
        assert stage.layers == tuple(n for n in (base_layers - 1, base_layers, base_layers + 1) if n >= 1)
        # x0.75 / x1 / x1.25 rounded to 8 with compound scaling's rule (duplicates merged).
        assert base_filters in stage.filters and all(f % 8 == 0 for f in stage.filters)
        assert min(stage.filters) <= base_filters <= max(stage.filters)
    assert space.stages[3].filters == (64, 80, 104)
    assert space.stages[6].filters == (240, 320, 400)
    assert space.network["resolution"] == 224


@pytest.mark.parametrize("name", ["mnasnet", "tiny"])
def test_sampled_specs_decode_and_encode_back(name):
    space = load_space(name)
    for seed in range(30):
        trial = RandomTrial(seed)
        spec = sample(space, trial)
        assert spec.num_classes == 1000 and spec.in_channels == 3 and spec.resolution == 224
        assert len(spec.stages) == len(space.stages)
        for stage, choices, i in zip(spec.stages, space.stages, range(1, 99)):
            assert stage.out_channels == trial.params[f"s{i}_filters"]
            assert stage.repeats == trial.params[f"s{i}_layers"]
            assert stage.stride == choices.stride
            assert stage.skip == (trial.params[f"s{i}_skip"] == "identity")
        # encode is the inverse of decode up to the unused expand of non-MBConv stages
        assert decode(space, encode(space, spec)) == spec
        assert count_flops(spec) > 0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6))
def test_every_sampled_choice_is_one_the_space_offers(seed):
    space = load_space("mnasnet")
    trial = RandomTrial(seed)
    sample(space, trial)
    choices = space.param_choices()
    assert set(trial.params) == set(choices)
    assert all(trial.params[k] in choices[k] for k in choices)


def test_spec_outside_the_space_is_refused_with_the_field():
    space = load_space("mnasnet")
    with pytest.raises(NasError, match="stage 1: kernel 7"):
        encode(space, efficientnet("b0").replace(stages=(efficientnet("b0").stages[0].__class__(
            "ds", 1, 7, 1, 1, 16, 0.25),) + efficientnet("b0").stages[1:]))
    with pytest.raises(NasError, match="resolution"):
        encode(space, efficientnet("b1"))
    with pytest.raises(NasError, match="s1_kernel"):
        decode(space, {**B0_CHOICES, "s1_kernel": 7})


def test_tiny_space_is_small_and_cheap():
    space = load_space("tiny")
    assert len(space.stages) == 3 and space.stages[2].kernel == (3,)
    specs = [sample(space, RandomTrial(seed)) for seed in range(20)]
    assert max(count_params(s) for s in specs) < 200_000


GOOD = load_space("tiny").source


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = Path(GOOD).read_text()
    assert old in text, old
    path = tmp_path / "space.toml"
    path.write_text(text.replace(old, new, 1))
    return path


BAD_SPACES = [  # (text to replace in tiny.toml, its replacement, what the error must name)
    ('name = "tiny"', 'name = ""', "name"),
    ('name = "tiny"', "name = 3", "name"),
    ('name = "tiny"', 'name = "tiny"\ncolour = "red"', "colour"),
    ("resolution = 224", "resolution = -1", "network.resolution"),
    ("resolution = 224", 'resolution = "big"', "network.resolution"),
    ("dropout = 0.1", "dropout = 1.5", "network.dropout"),
    ("stem_channels = 16", "stem_width = 16", "stem_width"),
    ('block = ["mbconv", "ds", "conv"]', 'block = ["mbconv", "resnet"]', "choices.block"),
    ('block = ["mbconv", "ds", "conv"]', "block = []", "choices.block"),
    ('block = ["mbconv", "ds", "conv"]', 'block = "mbconv"', "choices.block"),
    ("kernel = [3, 5]", "kernel = [3, 4]", "choices.kernel"),
    ("kernel = [3, 5]", "kernel = [3, 3]", "choices.kernel"),
    ("expand = [1, 3]", "expand = [0]", "choices.expand"),
    ("expand = [1, 3]", "expand = [1.5]", "choices.expand"),
    ("se_ratio = [0.0, 0.25]", "se_ratio = [1.5]", "choices.se_ratio"),
    ('skip = ["identity", "none"]', 'skip = ["pooling"]', "choices.skip"),
    ("filters = [0.75, 1.0, 1.25]", "filters = [-1.0]", "choices.filters"),
    ("layers = [0, 1]", "layers = [0.5]", "choices.layers"),
    ("layers = [0, 1]", "", "choices.layers: missing"),
    ("stride = 1", "stride = 3", "stages[0].stride"),
    ("stride = 1", "", "stages[0].stride: missing"),
    ("filters = 24\n", "filters = 0\n", "stages[1].filters"),
    ("filters = 24\n", 'filters = "24"\n', "stages[1].filters"),
    ("kernel = [3]             #", "kernel = [9]             #", "stages[2].kernel"),
    ("kernel = [3]             #", "width = [3]             #", "stages[2]: unknown key"),
    ('name = "tiny"', 'name = "tiny', "not valid TOML"),
    ("[choices]", "[choice]", "choice"),
]


@pytest.mark.parametrize("old,new,field", BAD_SPACES)
def test_bad_space_files_name_the_file_and_the_field(tmp_path, old, new, field):
    path = _variant(tmp_path, old, new)
    with pytest.raises(NasError) as info:
        load_space(str(path))
    message = str(info.value)
    assert str(path) in message and field in message
    assert "\n" not in message


def test_missing_space_and_stages(tmp_path):
    with pytest.raises(NasError, match="unknown search space 'nope'.*mnasnet"):
        load_space("nope")
    with pytest.raises(NasError, match="not found"):
        load_space(str(tmp_path / "gone.toml"))
    path = tmp_path / "empty.toml"
    path.write_text('name = "x"\n[choices]\nblock=["ds"]\nkernel=[3]\nexpand=[1]\nse_ratio=[0]\n'
                    'skip=["none"]\nfilters=[1.0]\nlayers=[0]\n')
    with pytest.raises(NasError, match="stages"):
        load_space(str(path))
