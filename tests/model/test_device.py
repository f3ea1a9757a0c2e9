"""Device and precision resolution (nas.model.device): what --device and --amp accept, on this CPU machine and,
with torch's CUDA queries answered as on a two-GPU machine, what a GPU user gets."""

import pytest
import torch

from nas.errors import NasError
from nas.model.device import (
    autocast,
    grad_scaler,
    resolve_amp,
    resolve_device,
    worker_devices,
)


@pytest.fixture
def two_gpus(monkeypatch):
    """torch's CUDA queries answered as on a machine with two GPUs (nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_cpu_machine_resolves_auto_to_cpu_and_refuses_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == resolve_device(None) == resolve_device("CPU") == torch.device("cpu")
    for text, message in (("cuda", "no CUDA GPU"), ("cuda:1", "no CUDA GPU"), ("tpu", "unknown device"),
                          ("cuda:x", "unknown device"), ("cpu:0", "takes no index")):
        with pytest.raises(NasError, match=message):
            resolve_device(text)
    if not torch.backends.mps.is_available():
        with pytest.raises(NasError, match="Metal"):
            resolve_device("mps")


def test_gpu_machine_resolves_auto_to_the_first_gpu_and_checks_the_index(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0) and resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(NasError, match="2 visible GPU"):
        resolve_device("cuda:2")
    assert resolve_device("cpu") == torch.device("cpu")


def test_mixed_precision_is_on_for_cuda_by_default_and_off_elsewhere(two_gpus, monkeypatch):
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert resolve_amp(None, cuda) == torch.bfloat16 and resolve_amp("auto", cpu) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a V100
    assert resolve_amp(None, cuda) == torch.float16
    assert resolve_amp("off", cuda) is None and resolve_amp("bf16", cpu) == torch.bfloat16
    assert resolve_amp("fp16", cpu) == torch.float16
    with pytest.raises(NasError, match="unknown --amp"):
        resolve_amp("fp8", cuda)
    # Only float16 needs a gradient scaler; off needs no autocast at all.
    assert isinstance(grad_scaler(cpu, torch.float16), torch.amp.GradScaler)
    assert grad_scaler(cpu, torch.bfloat16) is None and grad_scaler(cpu, None) is None
    with autocast(cpu, None):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_one_worker_per_visible_gpu():
    assert worker_devices("auto", 4, gpus=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert worker_devices("cuda", 3, gpus=3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert worker_devices("cuda:1", 2, gpus=2) == ["cuda:1", "cuda:1"]  # pinned by the user
    assert worker_devices("auto", 2, gpus=0) == ["cpu", "cpu"] and worker_devices("cpu", 2, gpus=4) == ["cpu", "cpu"]
