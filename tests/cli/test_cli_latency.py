"""`nas latency-table` and `nas latency --predict` as a user runs them."""

from __future__ import annotations

import json

import pytest
import torch

from nas.arch.space import decode, load_space
from nas.arch.spec import save_spec
from tests.latency.micro_space import write_micro_space


def test_table_then_prediction_next_to_measurement(run_nas, tmp_path):
    space_file = write_micro_space(tmp_path)
    out = tmp_path / "runs" / "lat"
    code, stdout, _ = run_nas("latency-table", "--space", str(space_file), "--out", str(out), "--runs", "3",
                              "--warmup", "1", "--calibration", "2")
    assert code == 0 and "0 already in" in stdout and "measured" in stdout and "calibrated on 2 whole" in stdout
    data = json.loads((out / "latency_table.json").read_text())
    entries, calibration = data["entries"], data["calibration"]
    code, stdout, _ = run_nas("latency-table", "--space", str(space_file), "--out", str(out), "--runs", "3",
                              "--warmup", "1", "--calibration", "2")
    assert code == 0 and f"{len(entries)} already in" in stdout and "0 to measure" in stdout
    assert "calibrated" not in stdout and json.loads((out / "latency_table.json").read_text())["calibration"] == calibration
    code, _, stderr = run_nas("latency-table", "--space", str(space_file), "--out", str(out), "--calibration", "-1")
    assert code == 2 and "--calibration -1" in stderr and len(stderr.strip().splitlines()) == 1

    space = load_space(str(space_file))
    save_spec(decode(space, {name: choices[-1] for name, choices in space.param_choices().items()}),
              tmp_path / "spec.json")
    code, stdout, _ = run_nas("latency", str(tmp_path / "spec.json"), "--predict", str(out), "--breakdown")
    assert code == 0, stdout
    assert "predicted" in stdout and "median" in stdout and "prediction error" in stdout
    assert f"their sum x {calibration['scale']:.3f}, calibrated on 2 whole networks" in stdout
    assert "stem_i3_o8_32px" in stdout

    code, _, stderr = run_nas("latency", str(tmp_path / "spec.json"), "--predict", str(out), "--threads", "2")
    assert code == 2 and "threads 1" in stderr and len(stderr.strip().splitlines()) == 1


def test_a_network_outside_the_table_is_refused_or_measured_on_demand(run_nas, tmp_path):
    out = tmp_path / "t.json"
    assert run_nas("latency-table", "--space", str(write_micro_space(tmp_path)), "--out", str(out), "--runs", "2",
                   "--warmup", "0", "--calibration", "0")[0] == 0
    code, _, stderr = run_nas("latency", "b0", "--predict", str(out), "--resolution", "32", "--no-measure")
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "no entry for 'stem_i3_o32_32px' and 13 more" in stderr and "--measure-missing" in stderr
    code, stdout, _ = run_nas("latency", "b0", "--predict", str(out), "--resolution", "32", "--no-measure",
                              "--measure-missing")
    assert code == 0 and "predicted" in stdout and "mean " not in stdout
    assert "mbconv_k5_s1_i192_m1152_o192_se48_1px_res" in json.loads(out.read_text())["entries"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_no_gpu_here_is_one_line(run_nas, tmp_path):
    code, _, stderr = run_nas("latency-table", "--device", "cuda", "--out", str(tmp_path))
    assert code == 2 and "sees no CUDA GPU" in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = run_nas("latency", "b0", "--device", "cuda")
    assert code == 2 and "sees no CUDA GPU" in stderr
