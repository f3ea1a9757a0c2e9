"""Distributed training on the CPU: two gloo processes under torchrun train one network, and a killed
distributed run resumes from its last saved state to exactly the weights of an uninterrupted one."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nas.arch.spec import save_spec
from nas.model.builder import build_model
from nas.proxy.checkpoint import load_checkpoint, load_train_state
from tests.proxy.folders import SMALL, write_patch_folder

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 12  # long enough for the kill below to land mid-run
TRAIN_IMAGES = 288  # the tiny preset's 320-image pool less its validation split
TOTAL_STEPS = EPOCHS * (TRAIN_IMAGES // (32 * 2))  # batch 32 in each of 2 processes


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_patch_folder(tmp_path_factory.mktemp("patches"), 320, size=16)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, folder):
    """Each rank's EMA weights and per-epoch figures after an uninterrupted two-process run."""
    out = tmp_path_factory.mktemp("ddp")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(REPO / "tests" / "proxy" / "ddp_worker.py"), str(folder), str(out), str(EPOCHS)],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [load_file(str(out / f"rank{rank}.safetensors")) for rank in (0, 1)]


def test_two_gloo_processes_hold_identical_weights_and_their_loss_falls(ddp_run):
    first, second = ddp_run
    assert int(first["world_size"]) == 2 == int(second["world_size"])
    parameters = [name for name, _ in build_model(SMALL.replace(num_classes=4, resolution=16)).named_parameters()]
    assert all(torch.equal(first[f"ema.{name}"], second[f"ema.{name}"]) for name in parameters)
    # The BN statistics too: every process recomputes them on the same training images before evaluating.
    assert all(torch.equal(first[key], second[key]) for key in first if key.endswith("running_mean"))
    loss, accuracy = first["train_loss"], first["val_acc"]
    assert torch.equal(loss, second["train_loss"]) and torch.equal(accuracy, second["val_acc"])  # reduced figures
    assert loss[-1] < 0.7 * loss[0] and accuracy[-1] > 0.8  # four colours: chance is 0.25


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def test_killed_distributed_run_resumes_to_the_weights_of_an_uninterrupted_one(ddp_run, folder, tmp_path):
    save_spec(SMALL, tmp_path / "small.json")
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "nas", "train", str(tmp_path / "small.json"), "--data", f"folder:{folder}",
            "--preset", "tiny", "--epochs", str(EPOCHS), "--lr", "0.2", "--seed", "1", "--threads", "1",
            "--nproc", "2", "--out", str(out)]
    state = out / "train_state.safetensors"
    run = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 300
    while not state.is_file() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in [*_descendants(run.pid), run.pid]:  # the machine goes down: every process at once
        os.kill(pid, signal.SIGKILL)
    run.wait()
    assert state.is_file() and not (out / "metrics.json").exists(), "the run finished before the kill"
    killed_at = load_train_state(state)[1]["step"]
    assert 0 < killed_at < TOTAL_STEPS
    again = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed_at = int(again.stdout.split("at step ")[1].split()[0])
    assert resumed_at >= killed_at and f"{TOTAL_STEPS} steps on cpu x 2 processes" in again.stdout
    weights, _, _ = load_checkpoint(out / "checkpoint.safetensors")
    uninterrupted = ddp_run[0]
    assert all(torch.equal(value, uninterrupted[f"ema.{key}"]) for key, value in weights.items())
