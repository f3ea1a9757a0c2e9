"""`nas predict`: classify image files with an exported folder, preprocessed by its config.json.

Forms (`FORMS`): `onnx` (model.onnx in onnxruntime), `onnx-int8` (model.int8.onnx), `pt2` (model.pt2 via
torch.export.load) and `eager` (nas.load: the nn.Module with model.safetensors). The default is the first
of onnx, pt2, eager the folder holds. onnxruntime needs neither torch nor this package's model code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas._common.runfiles import INT8_ONNX_FILE, ONNX_FILE, PT2_FILE, WEIGHTS_FILE
from nas.deploy.preprocessing import InputConfig, preprocess_images, read_config
from nas.errors import NasError

Forward = Callable[[np.ndarray], np.ndarray]  # a float32 N x C x H x W batch -> logits


@dataclass(frozen=True)
class Prediction:
    """The top classes of one image: (class index, class name, probability), most probable first."""

    image: str
    top: tuple[tuple[int, str, float], ...]
    logits: np.ndarray


def _onnx(path: Path, threads: int) -> Forward:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def _pt2(path: Path, threads: int) -> Forward:
    import torch

    torch.set_num_threads(threads)
    module = torch.export.load(str(path)).module()

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(batch)).numpy()

    return forward


def _eager(path: Path, threads: int) -> Forward:
    import torch

    from nas.deploy.load import load

    torch.set_num_threads(threads)
    model = load(path.parent)

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return forward


# Each form: (the file it runs, how to open it: (path, threads) -> forward).
FORMS: dict[str, tuple[str, Callable[[Path, int], Forward]]] = {
    "onnx": (ONNX_FILE, _onnx),
    "onnx-int8": (INT8_ONNX_FILE, _onnx),
    "pt2": (PT2_FILE, _pt2),
    "eager": (WEIGHTS_FILE, _eager),
}
DEFAULT_ORDER = ("onnx", "pt2", "eager")


def open_form(folder: str | os.PathLike[str], form: str | None = None, threads: int = 1) -> tuple[str, Forward]:
    """The form to run (`form`, or the first of DEFAULT_ORDER the folder holds) and its forward function."""
    folder = Path(folder)
    if form is not None and form not in FORMS:
        raise NasError(f"unknown form {form!r}; choose from {', '.join(FORMS)}")
    candidates = (form,) if form else DEFAULT_ORDER
    for name in candidates:
        file, opener = FORMS[name]
        if (folder / file).is_file():
            return name, opener(folder / file, threads)
    wanted = FORMS[form][0] if form else " or ".join(FORMS[name][0] for name in DEFAULT_ORDER)
    raise NasError(f"{folder} holds no {wanted}: export it with that format")


def predict(folder: str | os.PathLike[str], images: Sequence[str | os.PathLike[str]], *, form: str | None = None,
            top: int = 5, threads: int = 1, batch_size: int = 32) -> tuple[str, list[Prediction]]:
    """Classify image files with an exported folder; returns the form used and one Prediction per image."""
    if top < 1:
        raise NasError(f"--top must be at least 1, got {top}")
    if not images:
        raise NasError("give at least one image file")
    config = read_config(folder)
    name, forward = open_form(folder, form, threads)
    predictions = []
    for start in range(0, len(images), batch_size):
        paths = list(images[start:start + batch_size])
        logits = forward(preprocess_images(paths, config))
        predictions += [_top(str(path), row, config, top) for path, row in zip(paths, logits)]
    return name, predictions


def _top(image: str, logits: np.ndarray, config: InputConfig, top: int) -> Prediction:
    shifted = np.exp(logits - logits.max())
    probabilities = shifted / shifted.sum()
    order = np.argsort(-probabilities, kind="stable")[:top]
    return Prediction(image, tuple((int(i), config.class_name(int(i)), float(probabilities[i])) for i in order),
                      logits)
