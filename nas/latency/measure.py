"""Inference latency with the EfficientNet paper's protocol: batch 1, one thread, warm-up, then 20 timed runs.

Three backends run the same network: `eager` (the plain eval-mode nn.Module), `folded` (its inference form:
BN folded, channels-last input, captured by torch.export -- the graph `nas export` writes as model.pt2, see
nas.model.inference) and
`onnxruntime` (the BN-folded network exported to ONNX, run by onnxruntime on the same thread count).
The torch backends run on any torch device (`resolve_device`: cpu, cuda, cuda:N); onnxruntime on the CPU.
"""

import contextlib
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nas.arch.spec import Spec
from nas.errors import NasError
from nas.model.builder import build_model
from nas.model.device import resolve_device, synchronize
from nas.model.inference import export_inference_program, fold_batchnorm
from nas.model.onnx import export_onnx, onnx_session, run_onnx


@dataclass(frozen=True)
class Latency:
    """Timings of one network on one backend, in seconds per forward pass of one batch."""

    backend: str
    threads: int
    batch: int
    times_s: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.times_s)

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.times_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with torch limited to `threads` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_calls(call: Callable[[], object], runs: int, warmup: int,
               wait: Callable[[], None] = lambda: None) -> tuple[float, ...]:
    """Call `call` `warmup` times untimed, then `runs` times, returning each timed call's seconds.

    `wait` returns when the call's work is done (a GPU runs it asynchronously: nas.model.device.synchronize).
    """
    for _ in range(warmup):
        call()
    wait()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        wait()
        times.append(time.perf_counter() - start)
    return tuple(times)


def time_interleaved(calls: Sequence[Callable[[], object]], *, runs: int, warmup: int, rounds: int,
                     wait: Callable[[], None] = lambda: None) -> list[tuple[float, ...]]:
    """Each call's `runs` timed seconds (after `warmup` untimed calls), split over `rounds` rounds that each
    visit every call in turn, under torch.inference_mode."""
    times: list[list[float]] = [[] for _ in calls]
    with torch.inference_mode():
        for call in calls:
            time_calls(call, 0, warmup, wait)
        for index in range(rounds):
            share = runs // rounds + (1 if index < runs % rounds else 0)
            for i, call in enumerate(calls):
                times[i] += time_calls(call, share, 0, wait)
    return [tuple(t) for t in times]


def measure_model(model: nn.Module, input_shape: tuple[int, int, int], *, backend: str = "eager",
                  threads: int = 1, batch: int = 1, runs: int = 20, warmup: int = 5, seed: int = 0,
                  device: str | torch.device | None = "cpu", channels_last_input: bool = False) -> Latency:
    """Latency of `model` on inputs of shape (batch, *input_shape) with the given backend."""
    return compare_backends(model, input_shape, (backend,), threads=threads, batch=batch, runs=runs, warmup=warmup,
                            seed=seed, rounds=1, device=device, channels_last_input=channels_last_input)[backend]


def compare_backends(model: nn.Module, input_shape: tuple[int, int, int], backends: Sequence[str] | None = None, *,
                     threads: int = 1, batch: int = 1, runs: int = 20, warmup: int = 5, seed: int = 0,
                     rounds: int = 4, device: str | torch.device | None = "cpu",
                     channels_last_input: bool = False) -> dict[str, Latency]:
    """Latency of `model` on several backends, timed in interleaved rounds, on `device` (the paper's CPU by
    default; nas.model.device names the others).

    Each backend gets `runs` timed calls split over `rounds` rounds that alternate between backends, so a
    change in machine load during the measurement hits every backend alike and their ratios stay fair.
    The model is moved to `device`. `channels_last_input` feeds the input in channels-last layout, as a part
    inside the folded network receives it (the per-part latency table uses it).
    """
    backends = BACKENDS if backends is None else tuple(backends)
    unknown = [backend for backend in backends if backend not in BACKEND_FORMS]
    if unknown:
        raise NasError(f"unknown latency backend {unknown[0]!r}; choose one of {', '.join(BACKENDS)}")
    if threads < 1 or batch < 1 or runs < 1 or warmup < 0 or rounds < 1:
        raise NasError("threads, batch, runs and rounds must be at least 1 and warmup at least 0")
    device = resolve_device(device)
    if device.type != "cpu" and "onnxruntime" in backends:
        raise NasError(f"the onnxruntime backend runs on the CPU here; time eager or folded on {device}")
    x = torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(seed)).to(device)
    if channels_last_input:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch_threads(threads):
        forwards = {backend: BACKEND_FORMS[backend](model.eval().to(device), threads, x) for backend in backends}
        timed = time_interleaved([lambda forward=forward: forward(x) for forward in forwards.values()], runs=runs,
                                 warmup=warmup, rounds=rounds, wait=functools.partial(synchronize, device))
    times = dict(zip(forwards, timed))
    return {backend: Latency(backend, threads, batch, tuple(times[backend])) for backend in backends}


def measure_latency(spec: Spec, *, backend: str = "eager", threads: int = 1, batch: int = 1, runs: int = 20,
                    warmup: int = 5, seed: int = 0, device: str | torch.device | None = "cpu") -> Latency:
    """Latency of the network a spec describes, on inputs at the spec's resolution and channel count."""
    torch.manual_seed(seed)
    return measure_model(build_model(spec), (spec.in_channels, spec.resolution, spec.resolution), backend=backend,
                         threads=threads, batch=batch, runs=runs, warmup=warmup, seed=seed, device=device)


def time_networks(specs: Sequence[Spec], *, backend: str = "folded", threads: int = 1, batch: int = 1,
                  runs: int = 20, warmup: int = 5, rounds: int = 4, seed: int = 0,
                  device: str | torch.device | None = "cpu") -> list[Latency]:
    """Latency of several networks timed in interleaved rounds (each round visits every network), so that
    load which comes and goes on a shared machine hits them alike and their ratios stay fair."""
    if backend not in BACKEND_FORMS:
        raise NasError(f"unknown latency backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    device = resolve_device(device)
    calls = []
    with torch_threads(threads):
        for spec in specs:
            torch.manual_seed(seed)
            x = torch.randn((batch, spec.in_channels, spec.resolution, spec.resolution),
                            generator=torch.Generator().manual_seed(seed)).to(device)
            form = BACKEND_FORMS[backend](build_model(spec).eval().to(device), threads, x)
            calls.append(lambda form=form, x=x: form(x))
        timed = time_interleaved(calls, runs=runs, warmup=warmup, rounds=rounds,
                                 wait=functools.partial(synchronize, device))
    return [Latency(backend, threads, batch, times) for times in timed]


def _eager(model: nn.Module, threads: int, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
    return model


def _folded(model: nn.Module, threads: int, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
    return export_inference_program(model, example).module()


def _onnxruntime(model: nn.Module, threads: int, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
    with tempfile.TemporaryDirectory() as folder:
        session = onnx_session(export_onnx(fold_batchnorm(model), Path(folder) / "model.onnx", example[:1]), threads)
    return lambda x: run_onnx(session, x)


# Each backend: (eval-mode model, threads, example batch) -> the callable that runs one batch in that form.
BACKEND_FORMS: dict[str, Callable[[nn.Module, int, torch.Tensor], Callable[[torch.Tensor], object]]] = {
    "eager": _eager,
    "folded": _folded,
    "onnxruntime": _onnxruntime,
}
BACKENDS = tuple(BACKEND_FORMS)
