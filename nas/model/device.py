"""Where and in what precision a network runs: the device a user names, mixed precision, and one device per
worker on a machine with several GPUs.

`resolve_device('auto')` is CUDA when torch sees a GPU, else the CPU; `cpu`, `cuda`, `cuda:N` and `mps` are
checked against what this machine has, so a typo or a missing GPU is one NasError before any work starts.
Mixed precision (`--amp`) is autocast to bfloat16 or float16 (`AMP_DTYPES`); by default it is on for CUDA
(bfloat16 where the GPU supports it, else float16 with a gradient scaler) and off elsewhere, so nothing
changes for CPU users.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from nas.errors import NasError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")  # what --device accepts, for help texts


def _cpu(index: int | None) -> torch.device:
    if index is not None:
        raise NasError("device cpu takes no index (torch uses all cores of the CPU device)")
    return torch.device("cpu")


def _cuda(index: int | None) -> torch.device:
    if not torch.cuda.is_available():
        raise NasError("device cuda: torch sees no CUDA GPU on this machine (a CPU-only torch build, no driver, "
                       "or CUDA_VISIBLE_DEVICES hides them); use --device cpu")
    count = torch.cuda.device_count()
    if index is not None and not 0 <= index < count:
        raise NasError(f"device cuda:{index}: this machine has {count} visible GPU(s), cuda:0..cuda:{count - 1}")
    return torch.device("cuda", 0 if index is None else index)


def _mps(index: int | None) -> torch.device:
    if not torch.backends.mps.is_available():
        raise NasError("device mps: Apple's Metal backend is not available on this machine; use --device cpu")
    return torch.device("mps")


# Each device kind: (index or None) -> the checked torch device.
DEVICE_KINDS: dict[str, Callable[[int | None], torch.device]] = {"cpu": _cpu, "cuda": _cuda, "mps": _mps}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device for what a user typed: auto (None), cpu, cuda, cuda:N or mps; NasError if unavailable."""
    if isinstance(device, torch.device):
        device = str(device)
    text = (device or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    kind, colon, index_text = text.partition(":")
    if kind not in DEVICE_KINDS or (colon and not index_text.isdigit()):
        raise NasError(f"unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)}")
    return DEVICE_KINDS[kind](int(index_text) if colon else None)


def worker_devices(device: str | None, workers: int, gpus: int | None = None) -> list[str]:
    """The device of each of `workers` local worker processes: one per visible GPU, round-robin, when
    `device` is auto or cuda and there are GPUs; otherwise `device` for all of them.

    `gpus` is the number of visible GPUs (default: what torch sees); a given `cuda:N` pins every worker there.
    """
    text = (device or "auto").strip().lower()
    if gpus is None:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text in ("auto", "cuda") and gpus > 0:
        return [f"cuda:{i % gpus}" for i in range(workers)]
    if text == "auto":
        text = "cpu"
    return [text] * workers


AMP_DTYPES: dict[str, torch.dtype | None] = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def resolve_amp(amp: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` (bf16, fp16, off; None or 'auto' = the device's default), or None for off.

    The default is on for CUDA only: bfloat16 where the GPU has it (no loss scaling needed), else float16.
    On the CPU autocast runs too when asked for (bf16 there is what recent Xeons accelerate).
    """
    text = (amp or "auto").strip().lower()
    if text == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if text not in AMP_DTYPES:
        raise NasError(f"unknown --amp {amp!r}; use one of {', '.join(AMP_DTYPES)}")
    return AMP_DTYPES[text]


def amp_name(dtype: torch.dtype | None) -> str:
    """The --amp word for an autocast dtype (None -> 'off')."""
    return next(name for name, value in AMP_DTYPES.items() if value == dtype)


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """torch.autocast on `device` in `dtype`, or a no-op context when mixed precision is off."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A gradient scaler where float16 needs one (its range is too small for small gradients), else None."""
    if dtype != torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for honest timings on asynchronous devices)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
