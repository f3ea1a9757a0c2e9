"""ONNX export of a network (dynamic batch dimension) and onnxruntime sessions to run it."""

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from nas.model.inference import MAX_BATCH

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
# The ONNX opset the graphs are written in: pinned, so a torch upgrade cannot change the files silently.
# 20 is torch 2.13's default and runs on onnxruntime 1.17 and later.
ONNX_OPSET = 20


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor) -> Path:
    """Write `model` (eval mode) as one self-contained ONNX file (opset ONNX_OPSET) whose batch dimension is dynamic.

    Uses torch's dynamo exporter (torch.export + onnxscript); `example` fixes every dimension but the batch.
    Export a network in NCHW layout: onnxruntime picks its own layouts, and a channels-last input would
    make torch.export specialise the batch size.
    """
    path = Path(path)
    example = example[:1].expand(2, *example.shape[1:]).contiguous()  # batch 1 would be specialised as a constant
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            model.eval(), (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamo=True, dynamic_shapes=({0: batch},), external_data=False, verbose=False, opset_version=ONNX_OPSET,
        )
    return path


def onnx_session(path: str | os.PathLike, threads: int = 1) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session on `threads` intra-op threads, one inter-op thread, all graph optimizations."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session: onnxruntime.InferenceSession, x: torch.Tensor) -> np.ndarray:
    """Run one batch (NCHW float32) through an ONNX session and return the logits."""
    return session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress prints and its notes about torchvision ops we never use."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
