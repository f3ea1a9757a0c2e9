"""`nas predict` on an export's forms, the int8 ONNX form (calibrated and checked on the run's data set) and
TorchScript kept behind --format torchscript."""

from __future__ import annotations

import re
import warnings

import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime
import pytest
import torch
from PIL import Image

import nas
from nas.cli.main import main
from nas.deploy.export import export_spec
from nas.deploy.int8 import onnx_accuracy
from nas.deploy.predict import FORMS, predict
from nas.deploy.preprocessing import preprocess_images
from nas.errors import NasError
from nas.model.quantize import pools_as_global_average
from nas.proxy.data import FASHION_MNIST_CLASSES
from tests.deploy.conftest import TINY_NET
from tests.deploy.test_preprocessing import fashion_mnist_test_images


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index, image in enumerate(fashion_mnist_test_images(6)[0]):
        paths.append(folder / f"item{index}.png")
        Image.fromarray(image).resize((40, 40)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def int8_export(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "export"
    code = main(["-q", "export", str(trained_run), "--out", str(out), "--format",
                              "json,safetensors,pt2,onnx,onnx-int8"])
    assert code == 0
    return out


def test_predict_prints_the_top_classes_by_name(exported_run, images, run_nas):
    code, out, err = run_nas("predict", str(exported_run), *map(str, images), "--top", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(images) + 1 and lines[-1] == f"(onnx, {len(images)} image(s))"
    model, config = nas.load(exported_run, with_config=True)
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocess_images(images, config)))
    for line, path, row in zip(lines, images, logits):
        ranked = re.findall(r"([A-Za-z/ -]+?) (\d+\.\d)%", line.split(": ", 1)[1])
        assert line.startswith(f"{path}: ") and len(ranked) == 3
        assert ranked[0][0].strip(", ") == FASHION_MNIST_CLASSES[int(row.argmax())]
        probabilities = [float(p) for _, p in ranked]
        assert probabilities == sorted(probabilities, reverse=True)


def test_every_form_gives_the_same_answer(int8_export, images):
    outputs = {form: predict(int8_export, images, form=form)[1] for form in FORMS}
    reference = np.stack([p.logits for p in outputs["eager"]])
    for form in ("onnx", "pt2"):
        assert abs(np.stack([p.logits for p in outputs[form]]) - reference).max() < 1e-4, form
    int8_top = [p.top[0][0] for p in outputs["onnx-int8"]]
    assert sum(a == b for a, b in zip(int8_top, reference.argmax(1))) >= len(images) - 1


def test_int8_form_is_quantized_calibrated_and_checked_on_the_test_split(trained_run, int8_export):
    graph = onnx.load(str(int8_export / "model.int8.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "GlobalAveragePool"} <= ops
    # onnxruntime runs its convolutions and SiLUs in int8 (QLinearConv, QLinearSigmoid, QLinearMul)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(int8_export.parent / "optimized.onnx")
    onnxruntime.InferenceSession(str(int8_export / "model.int8.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
    assert "Conv" not in optimized and "Sigmoid" not in optimized and "QLinearConv" in optimized
    # the card's accuracies are the files' own on the 10,000 test images
    card = (int8_export / "README.md").read_text()
    stated = {kind: float(value) for kind, value in
              re.findall(r"(float|int8) ONNX test accuracy: (\d+\.\d+)% ", card)}
    images, labels = fashion_mnist_test_images(10_000)
    _, config = nas.load(int8_export, with_config=True)
    mean, std = np.float32(config.mean), np.float32(config.std)
    from nas.proxy.augment import resize_images

    x = resize_images(torch.from_numpy(images.copy()).unsqueeze(1), 16).float().numpy()
    x = (x - mean) / std
    for kind, file in (("float", "model.onnx"), ("int8", "model.int8.onnx")):
        assert 100 * onnx_accuracy(int8_export / file, x, labels) == pytest.approx(stated[kind], abs=0.021)
    assert stated["float"] >= 20.0 and stated["float"] - stated["int8"] <= 1.0  # a check above chance (10%)
    # weights keep to [-64, 64], which onnxruntime cannot saturate without VNNI (nas.model.quantize says why)
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(int8_export / "model.int8.onnx")).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims]
    assert weights and max(int(abs(w.astype(np.int32)).max()) for w in weights) <= 64
    assert "512 training images of fashion-mnist" in card and "ONNX opset 20" in card


def test_int8_needs_a_trained_run(tmp_path):
    with pytest.raises(NasError, match="onnx-int8 needs trained weights"):
        export_spec(TINY_NET, tmp_path / "out", formats="onnx,onnx-int8")
    assert not (tmp_path / "out" / "model.onnx").exists()  # nothing written


def test_global_pool_rewrite_keeps_the_function(tmp_path):
    from nas.deploy.export import placeholder_model
    from nas.model.inference import fold_batchnorm
    from nas.model.onnx import export_onnx, onnx_session

    path = export_onnx(fold_batchnorm(placeholder_model(TINY_NET)), tmp_path / "f.onnx", torch.randn(1, 1, 16, 16))
    model = onnx.load(str(path))
    pools = sum(node.op_type == "ReduceMean" for node in model.graph.node)
    rewritten = pools_as_global_average(model)
    rewritten_pools = sum(node.op_type == "GlobalAveragePool" for node in rewritten.graph.node)
    assert rewritten_pools >= TINY_NET.num_blocks  # every SE block's pool (the head's too when it keeps dims)
    assert sum(node.op_type == "ReduceMean" for node in rewritten.graph.node) == pools - rewritten_pools
    onnx.save(rewritten, str(tmp_path / "g.onnx"))
    x = torch.randn(3, 1, 16, 16).numpy()
    a, b = (onnx_session(p).run(None, {"images": x})[0] for p in (path, tmp_path / "g.onnx"))
    assert abs(a - b).max() < 1e-5


def test_torchscript_only_on_request_and_without_deprecation_warnings(tmp_path):
    state = nas.build_model(TINY_NET).state_dict()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export_spec(TINY_NET, tmp_path / "out", formats="torchscript", tensors=state)
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == []
    assert report.checks["torchscript vs eager"] < 1e-4 and (tmp_path / "out" / "model.torchscript.pt").is_file()
    assert not (tmp_path / "out" / "model.pt2").exists()


@pytest.mark.parametrize("argv, message", [
    (["predict", "MISSING", "x.png"], "config.json not found"),
    (["predict", "EXPORT", "nothere.png"], "nothere.png"),
    (["predict", "EXPORT", "x.png", "--form", "onnx-int8"], "holds no model.int8.onnx"),
    (["predict", "EXPORT", "x.png", "--top", "0"], "--top"),
])
def test_predict_bad_input_is_one_line_exit_2(exported_run, tmp_path, run_nas, argv, message):
    Image.new("L", (20, 20)).save(tmp_path / "x.png")
    argv = [str(exported_run) if a == "EXPORT" else str(tmp_path / a) if a.endswith(".png") or a == "MISSING"
            else a for a in argv]
    code, _, err = run_nas(*argv)
    assert code == 2 and message in err and err.count("\n") == 1
