"""The predictor: the sum of a spec's part entries, a clear error for what the table lacks, measured on demand."""

from __future__ import annotations

import pytest

from nas.arch.efficientnet import efficientnet
from nas.arch.space import decode, load_space
from nas.errors import NasError
from nas.latency.parts import space_parts, spec_keys
from nas.latency.predict import (
    LatencyPredictor,
    check_covers,
    latency_breakdown,
    load_predictor,
    predict_latency,
)
from nas.latency.table import LatencyTable, build_table, current_setup, load_table, open_table
from tests.latency.micro_space import write_micro_space
from tests.latency.test_parts import B0_KEYS

FAST = {"runs": 3, "warmup": 1}


def hand_table(keys) -> LatencyTable:
    """Entries 1, 2, 4, 8 ... ms, so any wrong sum shows."""
    entries = {key: 2.0 ** index * 1e-3 for index, key in enumerate(dict.fromkeys(keys))}
    return LatencyTable(setup=current_setup(), entries=entries)


def test_prediction_is_the_sum_of_the_entries_of_every_part():
    table = hand_table(B0_KEYS)
    e = table.entries
    by_hand = (e["stem_i3_o32_224px"] + e["ds_k3_s1_i32_m32_o16_se8_112px"]
               + sum(e[key] for key in B0_KEYS[2:-1]) + e["head_i320_o1280_c1000_7px"])
    assert predict_latency(table, efficientnet("b0")) == pytest.approx(by_hand, rel=1e-12)
    # a repeated block counts each time: B0 has 3 identical blocks in stage 6
    assert [key for key, _ in latency_breakdown(table, efficientnet("b0"))].count(B0_KEYS[14]) == 3
    assert LatencyPredictor(table)(efficientnet("b0")) == predict_latency(table, efficientnet("b0"))


def test_a_missing_entry_is_an_error_naming_it():
    with pytest.raises(NasError, match=r"no entry for 'head_i320_o1280_c1000_7px' \(a part of efficientnet_b0\)"):
        predict_latency(hand_table(B0_KEYS[:-1]), efficientnet("b0"))
    with pytest.raises(NasError, match=r"no entry for 'stem_i3_o32_224px' and 2 more .*--spec efficientnet_b0"):
        predict_latency(hand_table(B0_KEYS[2:-1]), efficientnet("b0"))


def test_missing_parts_are_measured_on_demand_and_only_they(tmp_path):
    space = load_space(str(write_micro_space(tmp_path)))
    spec = decode(space, {name: choices[-1] for name, choices in space.param_choices().items()})
    keys = list(dict.fromkeys(spec_keys(spec)))
    path = tmp_path / "t.json"
    build_table(open_table(path, current_setup(**FAST)), {k: v for k, v in space_parts(space).items()
                                                         if k in keys[:2]})
    table = load_table(path)
    before = dict(table.entries)
    predicted = predict_latency(table, spec, measure_missing=True)
    assert set(load_table(path).entries) == set(keys) and {k: table.entries[k] for k in before} == before
    assert predicted == pytest.approx(sum(table.entries[k] for k in spec_keys(spec)))


def test_a_predictor_is_checked_to_cover_its_space(tmp_path):
    space = load_space(str(write_micro_space(tmp_path)))
    parts = space_parts(space)
    path = tmp_path / "t.json"
    table = open_table(path, current_setup(**FAST))
    table.entries.update({key: 1e-3 for key in list(parts)[1:]})  # all but the stem, without timing them
    table.save()
    with pytest.raises(NasError, match=f"no entry for {list(parts)[0]!r}.*--space"):
        load_predictor(path, space)
    table.entries[list(parts)[0]] = 1e-3
    table.save()
    predictor = load_predictor(path, space)
    check_covers(predictor.table, space)
    spec = decode(space, {name: choices[0] for name, choices in space.param_choices().items()})
    assert predictor(spec) == pytest.approx(1e-3 * len(spec_keys(spec)))
