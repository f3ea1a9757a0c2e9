"""The int8 ONNX form of an export (`--format onnx-int8`): calibrated on training images of the run's data set,
its accuracy checked on the data set's test split against the float ONNX network's.

Calibration and test images go through the training pipeline itself (`nas.proxy`: resize, normalise by
the run's mean and std), so the quantization ranges are those the network meets. The export is refused
when int8 loses more than INT8_MAX_DROP of test accuracy; the card records both accuracies.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.arch.spec import Spec
from nas.deploy.preprocessing import TrainingRecord
from nas.errors import NasError
from nas.model.onnx import onnx_session
from nas.model.quantize import quantize_onnx
from nas.proxy.augment import normalize, resize_images
from nas.proxy.data import load_dataset

CALIBRATION_IMAGES = 512  # training images whose activations set the quantization ranges
INT8_MAX_DROP = 0.01  # most test accuracy (a fraction) the int8 form may lose against the float one
EVAL_BATCH = 256


def write_int8(spec: Spec, training: TrainingRecord | None, float_path: Path, out: Path,
               write_float: Callable[[Path], object]) -> dict[str, Any]:
    """Quantize the float ONNX network (`float_path`, written with `write_float` when absent) to `out` and
    check it on the test split; returns the checks for the card."""
    require_training_data(training)
    data = load_dataset(training.dataset, val_fraction=training.val_fraction, seed=training.seed)
    if (data.in_channels, data.num_classes) != (spec.in_channels, spec.num_classes):
        raise NasError(f"onnx-int8: the data set {training.dataset} has {data.in_channels} channel(s) and "
                       f"{data.num_classes} classes, the network {spec.in_channels} and {spec.num_classes}")
    test_x, test_y, split = ((data.test_x, data.test_y, "test") if data.test_x is not None
                             else (data.val_x, data.val_y, "validation"))
    mean, std = torch.tensor(training.mean), torch.tensor(training.std)
    calibration = _inputs(data.train_x[:CALIBRATION_IMAGES], spec.resolution, mean, std)
    with tempfile.TemporaryDirectory() as folder:
        if not float_path.is_file():
            float_path = Path(folder) / float_path.name
            write_float(float_path)
        quantize_onnx(float_path, out, calibration)
        inputs = _inputs(test_x, spec.resolution, mean, std)
        float_acc = onnx_accuracy(float_path, inputs, test_y.numpy())
    int8_acc = onnx_accuracy(out, inputs, test_y.numpy())
    drop = float_acc - int8_acc
    if drop > INT8_MAX_DROP:
        raise NasError(f"onnx-int8: the int8 network loses {100 * drop:.2f} points of {split} accuracy "
                       f"({100 * float_acc:.2f}% -> {100 * int8_acc:.2f}%, at most {100 * INT8_MAX_DROP:g} "
                       "allowed): nothing was written; export without onnx-int8")
    return {
        "int8 calibration": f"{len(calibration)} training images of {training.dataset}",
        f"float ONNX {split} accuracy": f"{100 * float_acc:.2f}% ({len(test_y)} images)",
        f"int8 ONNX {split} accuracy": f"{100 * int8_acc:.2f}% ({100 * drop:+.2f} points lost)",
    }


def require_training_data(training: TrainingRecord | None) -> TrainingRecord:
    """NasError unless the weights' training run named its data set (the int8 form calibrates on it)."""
    if training is None or training.dataset is None:
        raise NasError("onnx-int8 needs trained weights and the data set they were trained on: export a "
                       "`nas train` run folder (its metrics.json names the data set and the normalisation)")
    return training


def _inputs(images: torch.Tensor, resolution: int, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """uint8 images -> the float32 NCHW network inputs, as the trainer makes them."""
    return normalize(resize_images(images, resolution), mean, std).contiguous().numpy()


def onnx_accuracy(path: Path, inputs: np.ndarray, labels: np.ndarray, threads: int | None = None) -> float:
    """Top-1 accuracy (fraction) of an ONNX classifier on preprocessed inputs."""
    session = onnx_session(path, threads or torch.get_num_threads())
    name = session.get_inputs()[0].name
    correct = 0
    for start in range(0, len(inputs), EVAL_BATCH):
        logits = session.run(None, {name: inputs[start:start + EVAL_BATCH]})[0]
        correct += int((logits.argmax(1) == labels[start:start + EVAL_BATCH]).sum())
    return correct / len(inputs)
