"""The latency table: measured on the folded form, stored with its setup, resumable, never mixing setups."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from nas.arch.space import load_space
from nas.errors import NasError
from nas.model.device import resolve_device
from nas.latency.parts import space_parts
from nas.latency.parts import spec_keys
from nas.latency.predict import predict_latency
from nas.latency.table import (
    Calibration,
    CalibrationPoint,
    LatencyTable,
    build_latency_table,
    build_table,
    calibrate_table,
    calibration_specs,
    current_setup,
    load_table,
    open_table,
)
from tests.latency.micro_space import write_micro_space

FAST = {"runs": 3, "warmup": 1}


@pytest.fixture
def micro_parts(tmp_path):
    return space_parts(load_space(str(write_micro_space(tmp_path))))


def test_a_small_space_table_is_measured_and_stored_with_its_setup(tmp_path, micro_parts):
    table = build_latency_table(tmp_path / "run", space=str(tmp_path / "micro.toml"), device="cpu", calibration=3,
                                **FAST)
    assert list(table.entries) == list(micro_parts) and len(micro_parts) > 10
    data = json.loads((tmp_path / "run" / "latency_table.json").read_text())
    assert data["setup"]["torch"] == torch.__version__ and data["setup"]["threads"] == 1
    assert data["setup"]["backend"] == "folded" and data["setup"]["machine"]
    again = load_table(tmp_path / "run")
    assert again.entries == table.entries and again.setup == table.setup
    assert all(0 < seconds < 1 for seconds in again.entries.values())
    assert again.calibration == table.calibration and data["calibration"]["scale"] == table.scale


def test_the_calibration_times_whole_networks_against_the_sum_of_their_parts(tmp_path, micro_parts):
    space = load_space(str(tmp_path / "micro.toml"))
    networks = calibration_specs(space, count=3)
    assert networks == calibration_specs(space, count=3)  # a fixed draw: a recalibration times the same networks
    table = build_latency_table(tmp_path / "t.json", space=space, calibration=3, **FAST)
    points = table.calibration.networks
    assert [point.network for point in points] == [spec.name for spec in networks]
    for point, spec in zip(points, networks):
        assert point.parts_s == pytest.approx(sum(table.entries[key] for key in spec_keys(spec)), rel=1e-12)
        assert 0 < point.measured_s < 1
    assert table.scale == statistics.median(point.measured_s / point.parts_s for point in points)
    # The predictor scales the sum by it; an uncalibrated table predicts the plain sum.
    spec = networks[0]
    assert predict_latency(table, spec) == pytest.approx(table.scale * points[0].parts_s, rel=1e-12)
    plain = LatencyTable(setup=table.setup, entries=table.entries)
    assert plain.scale == 1.0 and predict_latency(plain, spec) == pytest.approx(points[0].parts_s, rel=1e-12)
    # Reopening keeps the calibration; asking times the networks again; 0 builds none.
    assert build_latency_table(tmp_path / "t.json", space=space, calibration=3, **FAST).calibration == table.calibration
    again = build_latency_table(tmp_path / "t.json", space=space, calibration=3, recalibrate=True, **FAST)
    assert [p.parts_s for p in again.calibration.networks] == [p.parts_s for p in points]
    assert [p.measured_s for p in again.calibration.networks] != [p.measured_s for p in points]
    assert load_table(tmp_path / "t.json").calibration == again.calibration
    assert build_latency_table(tmp_path / "u.json", specs=networks[:1], calibration=0, **FAST).calibration is None


def test_a_calibration_needs_every_part_of_its_networks(tmp_path, micro_parts):
    table = LatencyTable(setup=current_setup(**FAST), entries={key: 1e-3 for key in list(micro_parts)[1:]})
    with pytest.raises(NasError, match=f"no entry for {list(micro_parts)[0]!r}.*calibration network"):
        calibrate_table(table, calibration_specs(load_space(str(tmp_path / "micro.toml")), count=3))
    assert table.calibration is None


def test_a_damaged_calibration_is_a_clear_error(tmp_path):
    table = LatencyTable(setup=current_setup(**FAST), entries={"stem": 1e-3},
                         calibration=Calibration((CalibrationPoint("a", 1e-3, 2e-3),)))
    path = table.save(tmp_path / "t.json")
    assert load_table(path).scale == 2.0
    data = json.loads(path.read_text())
    data["calibration"]["networks"][0]["measured_s"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(NasError, match="calibration needs at least one network with positive times"):
        load_table(path)
    del data["calibration"]["networks"][0]["parts_s"]
    path.write_text(json.dumps(data))
    with pytest.raises(NasError, match="malformed latency table"):
        load_table(path)


def test_a_resumed_table_measures_nothing_twice(tmp_path, micro_parts):
    path = tmp_path / "table.json"
    first: list[str] = []

    def stop_after_five(done, total, key, seconds):
        first.append(key)
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_table(open_table(path, current_setup(**FAST)), micro_parts, progress=stop_after_five)
    kept = load_table(path).entries
    assert list(kept) == first and len(first) == 5
    resumed = open_table(path, current_setup(**FAST))
    second = build_table(resumed, micro_parts)
    assert not set(first) & set(second) and set(first) | set(second) == set(micro_parts)
    assert {key: resumed.entries[key] for key in first} == kept
    assert build_table(open_table(path, current_setup(**FAST)), micro_parts) == []


def test_a_table_of_another_setup_is_refused(tmp_path, micro_parts):
    path = tmp_path / "table.json"
    some = dict(list(micro_parts.items())[:2])
    build_table(open_table(path, current_setup(**FAST)), some)
    with pytest.raises(NasError, match="threads 1, this run has 2"):
        open_table(path, current_setup(threads=2, **FAST))
    with pytest.raises(NasError, match="runs"):
        open_table(path, current_setup(runs=7))


def test_a_file_that_is_not_a_table_is_a_clear_error(tmp_path):
    with pytest.raises(NasError, match="not found"):
        load_table(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    with pytest.raises(NasError, match="not a latency table"):
        load_table(tmp_path / "bad.json")
    (tmp_path / "cut.json").write_text('{"kind": "effnas lat')
    with pytest.raises(NasError, match="not valid JSON"):
        load_table(tmp_path / "cut.json")


def test_devices_resolve_or_fail_in_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(NasError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(NasError, match="sees no CUDA GPU"):
            current_setup("cuda")
        with pytest.raises(NasError, match="sees no CUDA GPU"):
            resolve_device("cuda:1")


def test_gpu_indices_are_checked_against_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(NasError, match="has 2 visible GPU"):
        resolve_device("cuda:2")
