"""Float ONNX against int8 ONNX (`nas export --format onnx-int8`) for EfficientNet-B0 and B1, in one run.

Each network is trained on Fashion-MNIST with the `search` preset (4 epochs on 10,000 images at 32 px, one
thread; `nas train NAME --preset search --threads 1`), exported with --format onnx,onnx-int8 (which
calibrates on 512 training images and scores both files on the 10,000 test images), then timed with the
paper's protocol: batch 1, one thread, warm-up, timed runs in interleaved rounds (float, int8, float, ...),
so a load change hits both alike. Latency is measured at the trained resolution (what the export runs at)
and, for the same trained weights quantized the same way, at the paper's resolution (224 for B0, 240 for
B1; no accuracy there: the network was trained at 32 px). Goal: int8 at most 0.67x the float latency with
at most 0.5 points of test accuracy lost (exit code 1 if missed).

    PYTHONPATH=. .venv/bin/python bench/bench_int8.py [--step train|measure|all] [--runs 200]

Training takes minutes: run `--step train` first (under the shared CPU lock), then `--step measure`.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from nas.arch.efficientnet import efficientnet
from nas.cli.main import main as nas_main
from nas.deploy.export import export, export_spec
from nas.deploy.load import read_weights
from nas.deploy.sources import read_source
from nas.latency.measure import time_calls
from nas.model.onnx import onnx_session
from nas.model.quantize import quantize_onnx
from nas.proxy.augment import normalize, resize_images
from nas.proxy.data import load_dataset

NETWORKS = ("b0", "b1")
RUNS = Path("runs/bench-int8")
LATENCY_GOAL = 0.67
DROP_GOAL = 0.5  # points of test accuracy


def train(name: str) -> Path:
    folder = RUNS / name
    if not (folder / "metrics.json").is_file():
        assert nas_main(["train", name, "--preset", "search", "--threads", "1", "--out", str(folder)]) == 0
    return folder


def accuracies(checks: dict) -> tuple[float, float]:
    """The float and int8 test accuracies (percent) the export measured, from its checks."""
    found = {kind: float(re.match(r"(\d+\.\d+)%", value).group(1)) for key, value in checks.items()
             for kind in ("float", "int8") if key == f"{kind} ONNX test accuracy"}
    return found["float"], found["int8"]


def interleaved(paths: dict[str, Path], shape: tuple[int, ...], runs: int, rounds: int, warmup: int) -> dict:
    """Median seconds per batch-1 call of each ONNX file on one thread, timed in alternating rounds."""
    sessions = {label: onnx_session(path, threads=1) for label, path in paths.items()}
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    calls = {label: (lambda s=session: s.run(None, {"images": x})) for label, session in sessions.items()}
    for call in calls.values():
        time_calls(call, 0, warmup)
    times: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(rounds):
        for label, call in calls.items():
            times[label] += time_calls(call, runs // rounds, 0)
    return {label: statistics.median(values) for label, values in times.items()}


def paper_resolution_files(run: Path, name: str, folder: Path) -> dict[str, Path]:
    """The trained weights exported and quantized at the paper's resolution (calibration images resized to it)."""
    found = read_source(run)
    resolution = efficientnet(name).resolution
    spec = found.spec.replace(resolution=resolution)
    export_spec(spec, folder, formats="onnx", tensors=read_weights(found.weights))
    data = load_dataset(found.training.dataset, seed=found.training.seed)
    mean, std = torch.tensor(found.training.mean), torch.tensor(found.training.std)
    calibration = normalize(resize_images(data.train_x[:128], resolution), mean, std).contiguous().numpy()
    quantize_onnx(folder / "model.onnx", folder / "model.int8.onnx", calibration)
    return {"float": folder / "model.onnx", "int8": folder / "model.int8.onnx"}


def measure(args: argparse.Namespace) -> bool:
    print(f"onnxruntime, {platform.processor() or platform.machine()}, batch 1, one thread, {args.runs} runs "
          f"per file in {args.rounds} interleaved rounds after {args.warmup} warm-up")
    print(f"{'model':<6}{'res':>5}{'float ms':>10}{'int8 ms':>9}{'ratio':>7}{'float acc':>11}{'int8 acc':>10}"
          f"{'lost':>7}")
    ok = True
    for name in args.networks.split(","):
        run = RUNS / name
        if not (run / "metrics.json").is_file():
            raise SystemExit(f"{run} is missing: run --step train first")
        export_dir = RUNS / f"{name}-export"
        float_acc, int8_acc = accuracies(export(run, export_dir, formats="onnx,onnx-int8").checks)
        resolution = read_source(run).training.resolution
        trained = interleaved({"float": export_dir / "model.onnx", "int8": export_dir / "model.int8.onnx"},
                              (1, 1, resolution, resolution), args.runs, args.rounds, args.warmup)
        with tempfile.TemporaryDirectory() as folder:
            paper = paper_resolution_files(run, name, Path(folder))
            big = efficientnet(name).resolution
            deployed = interleaved(paper, (1, 1, big, big), max(20, args.runs // 10), args.rounds, args.warmup)
        lost = float_acc - int8_acc
        for res, timing, acc in ((resolution, trained, True), (big, deployed, False)):
            ratio = timing["int8"] / timing["float"]
            accs = f"{float_acc:>10.2f}%{int8_acc:>9.2f}%{lost:>7.2f}" if acc else ""
            print(f"{name:<6}{res:>5}{timing['float'] * 1e3:>10.2f}{timing['int8'] * 1e3:>9.2f}{ratio:>7.2f}{accs}")
        ratio = trained["int8"] / trained["float"]
        met = ratio <= LATENCY_GOAL and lost <= DROP_GOAL
        ok &= met
        print(f"goal {name.upper()} at {resolution} px: int8 <= {LATENCY_GOAL}x float latency and <= {DROP_GOAL} "
              f"points lost: {ratio:.2f}x, {lost:.2f} points, {'met' if met else 'MISSED'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", choices=("train", "measure", "all"), default="all")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated (default %(default)s)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per file at the trained resolution")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.step in ("train", "all"):
        for name in args.networks.split(","):
            print(f"trained: {train(name)}")
    if args.step in ("measure", "all"):
        return 0 if measure(args) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
