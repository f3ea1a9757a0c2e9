"""Transfer learning: fine-tuning exported weights on a data set with another class count (a new head) or
another channel count (an adapted stem), and refusing weights of another architecture."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nas.arch.spec import save_spec
from nas.cli.main import main
from nas.errors import NasError
from nas.model.builder import build_model
from nas.proxy.data import load_dataset
from nas.proxy.presets import get_preset
from nas.proxy.trainer import train
from nas.proxy.transfer import adapt_stem, transfer_weights
from tests.proxy.folders import SMALL, patch_image, write_patch_folder


def _two_colour_folder(root, n=160):
    """A new task: green patches against yellow ones (two of the four colours the source task knew)."""
    rng = np.random.default_rng(5)
    for i in range(n):
        label = (1, 3)[i % 2]
        folder = root / f"colour{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(patch_image(label, 16, rng)).save(folder / f"{i}.png")
    return root


def test_fine_tuning_an_export_on_data_with_another_class_count(tmp_path, run_nas):
    save_spec(SMALL, tmp_path / "small.json")
    source = write_patch_folder(tmp_path / "four", 320)
    code, _, err = run_nas("train", str(tmp_path / "small.json"), "--data", f"folder:{source}", "--preset", "tiny",
                           "--epochs", "6", "--lr", "0.2", "--out", str(tmp_path / "pretrained"))
    assert code == 0, err
    code, _, err = run_nas("export", str(tmp_path / "pretrained"), "--format", "json,safetensors",
                           "--out", str(tmp_path / "export"))
    assert code == 0, err
    target = _two_colour_folder(tmp_path / "two")
    short = ["--data", f"folder:{target}", "--resolution", "16", "--batch-size", "32", "--images", "960"]
    code, out, err = run_nas("train", str(tmp_path / "export"), "--init-from", str(tmp_path / "export"), *short,
                             "--out", str(tmp_path / "tuned"))
    assert code == 0, err
    assert "classifier replaced: 4 -> 2 classes" in out
    tuned = json.loads((tmp_path / "tuned" / "metrics.json").read_text())
    assert tuned["preset"]["name"] == "finetune" and tuned["spec"]["num_classes"] == 2
    assert tuned["init_from"].endswith("model.safetensors") and tuned["transfer"]
    # The same short, low-learning-rate run from scratch: the transferred features are what it learns with.
    code, _, err = run_nas("train", str(tmp_path / "export"), "--preset", "finetune", *short,
                           "--out", str(tmp_path / "scratch"))
    scratch = json.loads((tmp_path / "scratch" / "metrics.json").read_text())
    assert code == 0 and tuned["val_acc"] >= 0.9 and tuned["val_acc"] - scratch["val_acc"] >= 0.25


def test_stem_adapted_from_grey_to_colour_keeps_the_response_to_a_flat_image():
    grey = build_model(SMALL.replace(in_channels=1, num_classes=10, resolution=16)).eval()
    colour = build_model(SMALL.replace(in_channels=3, num_classes=4, resolution=16)).eval()
    notes = transfer_weights(colour, grey.state_dict())
    assert notes == ["stem adapted: 1 -> 3 input channels", "classifier replaced: 10 -> 4 classes (a new head)"]
    flat_grey, flat_colour = torch.full((1, 1, 16, 16), 0.7), torch.full((1, 3, 16, 16), 0.7)
    assert torch.allclose(grey.stem(flat_grey), colour.stem(flat_colour), atol=1e-6)
    assert torch.equal(colour.stem.conv.weight, adapt_stem(grey.stem.conv.weight, 3))
    shared = [k for k in grey.state_dict() if not k.startswith(("stem.conv", "classifier"))]
    assert all(torch.equal(colour.state_dict()[k], grey.state_dict()[k]) for k in shared)
    assert not colour.classifier.weight.any()  # the new head starts at the uniform prediction


def test_trained_grey_weights_fine_tune_on_colour_images(tmp_path):
    from tests.proxy.test_train import synthetic_data

    grey = train(SMALL, synthetic_data(), get_preset("tiny").with_changes(epochs=2))  # 1 channel, 4 classes
    colour = load_dataset(f"folder:{_two_colour_folder(tmp_path / 'two', 96)}", image_size=16)
    result = train(SMALL, colour, get_preset("finetune").with_changes(resolution=16, batch_size=32, images=96),
                   init_from=grey.state_dict)
    assert result.spec.in_channels == 3 and result.spec.num_classes == 2
    assert set(result.transfer_notes) == {"classifier replaced: 4 -> 2 classes (a new head)",
                                          "stem adapted: 1 -> 3 input channels"}


def test_weights_of_another_architecture_are_refused(tmp_path, capsys):
    other = build_model(SMALL.replace(head_channels=32, num_classes=4, resolution=16))
    with pytest.raises(NasError, match="head.conv.weight is .* the network's is"):
        transfer_weights(build_model(SMALL.replace(num_classes=4, resolution=16)), other.state_dict())
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "other.safetensors"))
    save_spec(SMALL, tmp_path / "small.json")
    rc = main(["train", str(tmp_path / "small.json"), "--init-from", str(tmp_path / "other.safetensors"),
               "--data", f"folder:{write_patch_folder(tmp_path / 'f', 40)}", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "same architecture" in err
