"""An export carries its preprocessing: config.json (also in the safetensors metadata and the card) is enough for
someone with only the folder, Pillow, numpy and onnxruntime (or torch.export) to get the network's own answer."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import nas
from nas.deploy.preprocessing import (
    InputConfig,
    input_config,
    preprocess_images,
    read_config,
)
from nas.errors import NasError
from nas.proxy.augment import normalize, resize_images
from nas.proxy.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx
from tests.deploy.conftest import TINY_NET

REPO = Path(__file__).resolve().parents[2]

# What a user with only the export folder writes: config.json's rule with Pillow and numpy, then a runtime.
FRESH_PROCESS = r"""
import json, sys
import numpy as np
from PIL import Image

folder, image_path, runtime = sys.argv[1:4]
config = json.load(open(f"{folder}/config.json"))
channels, height, width = config["input_size"]
image = Image.open(image_path).convert(config["color_mode"])
scale = height / min(image.size)
w, h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
image = image.resize((w, h), Image.BILINEAR)
left, top = (w - width) // 2, (h - height) // 2
pixels = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32).reshape(height, width, -1)
x = ((pixels - np.float32(config["mean"])) / np.float32(config["std"])).transpose(2, 0, 1)[None].copy()
if runtime == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
else:
    import torch
    module = torch.export.load(f"{folder}/model.pt2").module()
    with torch.no_grad():
        logits = module(torch.from_numpy(x))[0].numpy()
heavy = sorted(name for name in ("optuna", "fvcore", "nas") if name in sys.modules)
print(json.dumps({"logits": logits.tolist(), "top": config["class_names"][int(logits.argmax())], "heavy": heavy,
                  "torch": "torch" in sys.modules}))
"""


def fashion_mnist_test_images(count: int) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(Path(FASHION_MNIST_DIR) / "t10k-images-idx3-ubyte.gz")[:count]
    labels = read_idx(Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz")[:count]
    return images, labels


def test_a_fresh_process_with_only_the_folder_gets_the_networks_answer(exported_run, tmp_path):
    """A real PNG (a Fashion-MNIST test image, enlarged, RGB, not square) through config.json's rule with Pillow
    and numpy: onnxruntime and torch.export.load give the PyTorch model's top class and logits within 1e-4."""
    images, _ = fashion_mnist_test_images(1)
    png = tmp_path / "photo.png"
    Image.fromarray(images[0]).convert("RGB").resize((44, 60), Image.BICUBIC).save(png)
    model, config = nas.load(exported_run, with_config=True)
    with torch.no_grad():
        expected = model(torch.from_numpy(preprocess_images([png], config)))[0]
    assert expected.abs().max() > 0.1  # a trained network's logits, not zeros
    for runtime in ("onnx", "pt2"):
        done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(exported_run), str(png), runtime],
                              capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["heavy"] == [] and answer["torch"] == (runtime == "pt2")
        got = torch.tensor(answer["logits"])
        assert (got - expected).abs().max() < 1e-4, runtime
        assert answer["top"] == FASHION_MNIST_CLASSES[int(expected.argmax())]


def test_config_json_carries_the_training_runs_preprocessing(trained_run, exported_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    config = read_config(exported_run)
    assert config.input_size == (1, metrics["preset"]["resolution"], metrics["preset"]["resolution"])
    assert config.color_mode == "L" and config.layout == "NCHW" and config.pixel_range == (0, 255)
    assert config.mean == pytest.approx(metrics["mean"]) and config.std == pytest.approx(metrics["std"])
    assert config.class_names == FASHION_MNIST_CLASSES and config.dataset == "fashion-mnist"
    assert config.onnx_opset == 20
    with safe_open(str(exported_run / "model.safetensors"), framework="numpy") as handle:
        assert InputConfig.from_dict(json.loads(handle.metadata()["config"])) == config
    card = (exported_run / "README.md").read_text()
    assert "## Preprocessing (config.json)" in card and "ONNX opset 20" in card and "Ankle boot" in card
    assert f"{config.mean[0]:.4g}" in card
    # nas.load gives the same config for the export, and the one an export would write for the run folder
    assert nas.load(exported_run, with_config=True)[1] == config
    assert nas.load(trained_run, with_config=True)[1] == dataclasses.replace(config, onnx_opset=None)


def test_the_preprocessing_rule_is_the_training_pipelines(exported_run, tmp_path):
    """Dataset images saved as PNG files and preprocessed by config.json reach the network as the trainer's own
    pipeline makes them (torch's antialiased resize, normalisation): the same inputs up to one grey level."""
    images, _ = fashion_mnist_test_images(64)
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(image).save(paths[-1])
    config = read_config(exported_run)
    ours = torch.from_numpy(preprocess_images(paths, config))
    mean, std = torch.tensor(config.mean), torch.tensor(config.std)
    trainer = normalize(resize_images(torch.from_numpy(images.copy()).unsqueeze(1), config.input_size[1]), mean, std)
    assert ours.shape == trainer.shape == (64, 1, 16, 16)
    assert (ours - trainer).abs().max() * std.max() <= 1.0 + 1e-3
    model = nas.load(exported_run)
    with torch.no_grad():
        agree = (model(ours).argmax(1) == model(trainer.contiguous()).argmax(1)).float().mean()
    assert agree >= 0.95


def test_an_export_without_training_has_no_normalisation_and_predict_says_so(tmp_path, run_nas):
    out = tmp_path / "out"
    code, _, err = run_nas("export", "b0", "--out", str(out), "--format", "json")
    assert code == 0, err
    config = read_config(out)
    assert config.mean is None and config.std is None and config.input_size == (3, 224, 224)
    assert config.color_mode == "RGB" and config.class_names is None and config.onnx_opset is None
    assert "unknown: no training run recorded it" in (out / "README.md").read_text()
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    with pytest.raises(NasError, match="no input normalisation"):
        preprocess_images([tmp_path / "x.png"], config)


def test_a_malformed_config_is_a_user_error(tmp_path):
    config = input_config(TINY_NET)
    document = json.loads(config.to_json())
    for change, message in (({"mean": [1.0, 2.0]}, "2 values for 1 channel"), ({"schema_version": 9}, "schema 9"),
                            ({"class_names": ["a"]}, "1 class names"), ({"surprise": 1}, "not an export config")):
        (tmp_path / "config.json").write_text(json.dumps({**document, **change}))
        with pytest.raises(NasError, match=message):
            read_config(tmp_path)
    with pytest.raises(NasError, match="not found"):
        read_config(tmp_path / "missing")
