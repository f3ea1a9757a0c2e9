import pytest

from nas.arch.compound import round_channels, round_repeats, scale
from nas.arch.efficientnet import efficientnet, efficientnet_b0
from nas.errors import NasError


@pytest.mark.parametrize(
    "channels, width, expected",
    [(32, 1.1, 32), (32, 2.0, 64), (1280, 1.1, 1408), (1280, 1.2, 1536), (16, 1.4, 24), (24, 1.1, 24),
     (40, 1.1, 48), (112, 1.1, 120), (320, 1.1, 352), (8, 0.5, 8), (40, 0.75, 32), (1280, 2.0, 2560)],
)
def test_round_channels_follows_the_reference_rule(channels, width, expected):
    assert round_channels(channels, width) == expected


def test_round_channels_never_loses_more_than_ten_percent():
    for channels in range(1, 400):
        for width in (0.25, 0.5, 0.75, 1.1, 1.3, 1.7, 2.3):
            rounded = round_channels(channels, width)
            assert rounded % 8 == 0 and rounded >= 0.9 * channels * width


def test_round_repeats_is_ceil_without_float_noise():
    assert [round_repeats(r, 1.1) for r in (1, 2, 2, 3, 3, 4, 1)] == [2, 3, 3, 4, 4, 5, 2]
    assert round_repeats(10, 1.1) == 11


def test_published_repeats_match_the_reference():
    assert [s.repeats for s in efficientnet("b1").stages] == [2, 3, 3, 4, 4, 5, 2]
    b7 = efficientnet("b7")
    assert [s.repeats for s in b7.stages] == [4, 7, 7, 10, 10, 13, 4] and b7.num_blocks == 55
    assert (b7.stem_channels, b7.head_channels) == (64, 2560)


def test_identity_scaling_and_resolution():
    b0 = efficientnet_b0()
    assert scale(b0) == b0
    assert scale(b0, resolution=1.15).resolution == 258


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_scale_rejects_non_positive_multipliers(bad):
    with pytest.raises(NasError, match="width"):
        scale(efficientnet_b0(), width=bad)
