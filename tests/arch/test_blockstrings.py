import pytest
from hypothesis import given, settings

from nas.arch.blockstrings import parse_block_strings, to_tf_strings, to_timm_strings
from nas.arch.efficientnet import FAMILY_NAMES, efficientnet, efficientnet_b0
from nas.errors import NasError
from tests.strategies import specs

B0_TF = [
    "r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25", "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25", "r3_k5_s11_e6_i80_o112_se0.25", "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
]
B0_TIMM = [
    "ds_r1_k3_s1_e1_c16_se0.25", "ir_r2_k3_s2_e6_c24_se0.25", "ir_r2_k5_s2_e6_c40_se0.25",
    "ir_r3_k3_s2_e6_c80_se0.25", "ir_r3_k5_s1_e6_c112_se0.25", "ir_r4_k5_s2_e6_c192_se0.25",
    "ir_r1_k3_s1_e6_c320_se0.25",
]


def test_b0_encodes_to_the_reference_strings():
    assert to_tf_strings(efficientnet_b0()) == B0_TF
    assert to_timm_strings(efficientnet_b0()) == B0_TIMM


def test_reference_strings_decode_to_b0():
    b0 = efficientnet_b0().replace(name="")
    assert parse_block_strings(" ".join(B0_TF)) == b0
    assert parse_block_strings(",".join(B0_TIMM)) == b0


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_round_trips_through_both_notations(name):
    spec = efficientnet(name)
    keep = dict(resolution=spec.resolution, dropout=spec.dropout, head_channels=spec.head_channels, name=spec.name)
    assert parse_block_strings(" ".join(to_tf_strings(spec)), **keep) == spec
    timm = parse_block_strings(" ".join(to_timm_strings(spec)), stem_channels=spec.stem_channels, **keep)
    assert timm == spec


@given(specs())
@settings(max_examples=100, deadline=None)
def test_timm_strings_round_trip_any_spec(spec):
    fields = {k: getattr(spec, k) for k in ("in_channels", "resolution", "num_classes", "stem_channels",
                                            "head_channels", "dropout", "drop_connect")}
    assert parse_block_strings(" ".join(to_timm_strings(spec)), **fields) == spec


def test_noskip_survives():
    spec = parse_block_strings("r2_k3_s11_e6_i32_o32_se0.25_noskip")
    assert spec.stages[0].skip is False
    assert to_tf_strings(spec) == ["r2_k3_s11_e6_i32_o32_se0.25_noskip"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("r1_k3_s11_e1_o16_se0.25", "missing option 'i'"),
        ("r1_k4_s11_e1_i32_o16", "kernel"),
        ("rX_k3_s11_e1_i32_o16", "bad value"),
        ("r1_k3_s12_e1_i32_o16", "stride"),
        ("r1_k3_s11_e1_i32_o16_zz9", "unknown option"),
        ("xx_r1_k3_s1_c16", "malformed"),
        ("ir_r1_k3_s1_e6_c-16", "bad value|out_channels"),
        ("r1_k3_s11_e1_i32_o16 r1_k3_s11_e6_i24_o24", "do not match"),
        ("", "empty"),
    ],
)
def test_malformed_strings_raise_clear_errors(text, message):
    with pytest.raises(NasError, match=message):
        parse_block_strings(text)


def test_regular_conv_has_no_tf_form():
    spec = parse_block_strings("cn_r1_k3_s1_c16")
    with pytest.raises(NasError, match="no TF block-string form"):
        to_tf_strings(spec)
