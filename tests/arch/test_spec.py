import json

import pytest
from hypothesis import given, settings

from nas.arch.efficientnet import efficientnet, efficientnet_b0
from nas.arch.spec import SCHEMA_VERSION, Spec, StageSpec, load_spec, save_spec
from nas.errors import NasError
from tests.strategies import specs


def test_spec_is_immutable_and_hashable():
    spec = efficientnet_b0()
    with pytest.raises(AttributeError):
        spec.resolution = 300  # type: ignore[misc]
    assert hash(spec) == hash(efficientnet_b0())
    assert spec.replace(resolution=300).resolution == 300 and spec.resolution == 224


@given(specs())
@settings(max_examples=100, deadline=None)
def test_json_round_trip_is_lossless(spec):
    assert Spec.from_json(spec.to_json()) == spec


def test_json_carries_schema_version(tmp_path):
    path = tmp_path / "b3.json"
    save_spec(efficientnet("b3"), path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert load_spec(path) == efficientnet("b3")


def test_load_spec_accepts_documents_with_a_spec_key(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"spec": efficientnet_b0().to_dict(), "reward": 0.9}))
    assert load_spec(path) == efficientnet_b0()


def test_mbconv_without_expansion_is_stored_as_depthwise_separable():
    assert StageSpec("mbconv", 1, 3, 1, 1, 16) == StageSpec("ds", 1, 3, 1, 1, 16)


def _b0_dict():
    return efficientnet_b0().to_dict()


def _with(path, value):
    data = _b0_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "data, field",
    [
        (_with(["stages", 2, "out_channels"], -8), "stages[2].out_channels"),
        (_with(["stages", 0, "kernel"], 4), "stages[0].kernel"),
        (_with(["stages", 1, "block"], "transformer"), "stages[1].block"),
        (_with(["stages", 1, "stride"], 3), "stages[1].stride"),
        (_with(["stages", 1, "se_ratio"], 1.5), "stages[1].se_ratio"),
        (_with(["stages", 1, "repeats"], 0), "stages[1].repeats"),
        (_with(["stages", 1, "expand"], 2.5), "stages[1].expand"),
        (_with(["stages", 1, "skip"], "yes"), "stages[1].skip"),
        (_with(["schema_version"], 99), "schema_version"),
        (_with(["resolution"], 0), "resolution"),
        (_with(["stem_channels"], "32"), "stem_channels"),
        (_with(["dropout"], 1.0), "dropout"),
        (_with(["stages"], []), "stages"),
        (_with(["stages", 0, "colour"], "red"), "colour"),
        (_with(["widht"], 1.0), "widht"),
    ],
)
def test_invalid_spec_names_the_field(data, field):
    with pytest.raises(NasError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Spec.from_dict(data)


def test_missing_stage_field_is_named():
    data = _b0_dict()
    del data["stages"][3]["kernel"]
    with pytest.raises(NasError, match=r"stages\[3\]\.kernel"):
        Spec.from_dict(data)


def test_depthwise_blocks_cannot_expand():
    with pytest.raises(NasError, match="expand"):
        StageSpec("ds", 1, 3, 1, 6, 16)


def test_bad_spec_files(tmp_path):
    with pytest.raises(NasError, match="not found"):
        load_spec(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(NasError, match="not valid JSON"):
        load_spec(bad)
