"""int8 ONNX: onnxruntime's static quantization of a float ONNX network, calibrated on given images.

The recipe is the one onnxruntime's CPU kernels run fastest: QDQ format, weights int8 per output channel,
activations uint8 (onnxruntime fuses DequantizeLinear -> op -> QuantizeLinear into its QLinear* kernels,
SiLU included as QLinearSigmoid and QLinearMul; with int8 activations the convolutions before a SiLU stay
in float), MinMax calibration, after onnxruntime's own pre-processing (shape inference, basic graph
optimizations). Before that, the squeeze-and-excitation poolings -- ReduceMean over H and W, as torch's
exporter writes `mean((2, 3))` -- become GlobalAveragePool, the same operation, which onnxruntime runs in
int8 (a ReduceMean runs in float between a dequantize and a quantize).

Weights keep to [-64, 64] (`reduce_range`; activations keep all of uint8): on x86 without VNNI (AVX2,
AVX-512) onnxruntime's uint8 x int8 kernel adds products in pairs into saturating 16-bit sums, which
full-range weights overflow (2 x 255 x 127 > 32767; 2 x 255 x 64 fits). A file exported on one machine may
run on any, so it never relies on VNNI. `bench/bench_int8.py` measures speed and accuracy.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from nas.model.onnx import INPUT_NAME

CALIBRATION_BATCH = 32  # images per calibration step (memory, not accuracy: MinMax sees every image)


def quantize_onnx(float_path: str | os.PathLike[str], out: str | os.PathLike[str], calibration: np.ndarray) -> Path:
    """Write the int8 form of the float ONNX file `float_path` to `out`, calibrated on `calibration`
    (float32 N x C x H x W, preprocessed exactly as the network's inputs)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(np.array_split(
                calibration, max(1, -(-len(calibration) // CALIBRATION_BATCH))))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

    out = Path(out)
    with tempfile.TemporaryDirectory() as folder:
        pooled, prepared = Path(folder) / "pooled.onnx", Path(folder) / "prepared.onnx"
        onnx.save(pools_as_global_average(onnx.load(str(float_path))), str(pooled))
        quant_pre_process(str(pooled), str(prepared))
        quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, reduce_range=True)
    return out


def pools_as_global_average(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every ReduceMean over axes (2, 3) that keeps its dimensions replaced by GlobalAveragePool."""
    constants = {tensor.name: numpy_helper.to_array(tensor).tolist() for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t).tolist()
    nodes = []
    for node in model.graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        axes = constants.get(node.input[1]) if len(node.input) > 1 else attributes.get("axes")
        if (node.op_type == "ReduceMean" and attributes.get("keepdims", 1) == 1 and isinstance(axes, list)
                and sorted(axes) in ([2, 3], [-2, -1])):
            node = onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    unused = [tensor for tensor in model.graph.initializer if tensor.name not in used]
    for tensor in unused:  # the axes the poolings no longer read (onnxruntime would warn about them)
        model.graph.initializer.remove(tensor)
    return model
