"""Exports round-trip and match the original network, checked here independently of the exporter's own checks."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest
import torch
from safetensors.torch import load_file, save_file

from nas.arch.blockstrings import parse_block_strings
from nas.arch.efficientnet import efficientnet
from nas.arch.spec import Spec, StageSpec
from nas.cli.main import main
from nas.deploy.export import NOISE_FACTOR, export, export_spec
from nas.deploy.load import load
from nas.errors import NasError
from nas.model.builder import build_model
from tests.trained_weights import trained_like

REPO = Path(__file__).resolve().parents[2]

# Every block type, a no-skip stage, SE on and off, 1 input channel: small enough to export in seconds.
SMALL = Spec(
    stages=(
        StageSpec("ds", 1, 3, 1, 1, 16, 0.25),
        StageSpec("mbconv", 2, 5, 2, 3, 24, 0.25),
        StageSpec("conv", 1, 3, 2, 1, 32, 0.0),
        StageSpec("mbconv", 2, 3, 1, 6, 32, 0.0, skip=False),
    ),
    in_channels=1, resolution=48, num_classes=10, stem_channels=16, head_channels=64, name="small",
)


def trained_state(spec: Spec, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return trained_like(build_model(spec), seed).state_dict()


def write_checkpoint(spec: Spec, path: Path) -> dict[str, torch.Tensor]:
    state = trained_state(spec)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return state


def reference_logits(spec: Spec, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    model = build_model(spec)
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(x)


def assert_export_reproduces(out: Path, spec: Spec, state: dict[str, torch.Tensor], batches=(1, 4)) -> None:
    """spec/blocks round trips, bit-exact weights via nas.load, torch.export and onnxruntime within 1e-4."""
    assert Spec.from_json((out / "spec.json").read_text()) == spec
    blocks = json.loads((out / "blocks.json").read_text())
    assert parse_block_strings(" ".join(blocks["timm"]), **blocks["fields"]) == spec
    if blocks["tf"] is not None:
        assert parse_block_strings(" ".join(blocks["tf"]), **blocks["fields"]) == spec
    reloaded = load_file(str(out / "model.safetensors"))
    assert reloaded.keys() == state.keys()
    assert all(torch.equal(reloaded[k], state[k]) and reloaded[k].dtype == state[k].dtype for k in state)
    loaded = load(out)
    assert all(torch.equal(loaded.state_dict()[k], state[k]) for k in state) and not loaded.training
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    program = torch.export.load(str(out / "model.pt2")).module()
    for batch in batches:
        x = torch.randn(batch, spec.in_channels, spec.resolution, spec.resolution)
        expected = reference_logits(spec, state, x)
        assert expected.abs().max() > 0.5  # non-trivial logits, so 1e-4 is a real bound
        onnx_out = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
        assert (onnx_out - expected).abs().max() < 1e-4
        with torch.no_grad():
            assert (program(x) - expected).abs().max() < 1e-4
            assert (loaded(x) - expected).abs().max() == 0


def test_small_spec_with_weights_round_trips(tmp_path):
    state = write_checkpoint(SMALL, tmp_path / "ckpt.safetensors")
    (tmp_path / "small.json").write_text(SMALL.to_json())
    report = export(tmp_path / "small.json", tmp_path / "out", weights=tmp_path / "ckpt.safetensors")
    assert set(report.files) == {"spec.json", "blocks.json", "config.json", "model.safetensors", "model.pt2",
                                 "model.onnx", "README.md"}
    assert json.loads((tmp_path / "out" / "blocks.json").read_text())["tf"] is None  # a 'conv' stage has no TF form
    assert_export_reproduces(tmp_path / "out", SMALL, state)
    assert report.checks["allowed max abs difference"] == "0.0001"  # a trained-like network keeps the plain bound
    assert not list((tmp_path / "out").glob(".export-*"))  # staging folder cleaned up


def test_b0_with_weights_round_trips(tmp_path):
    spec = efficientnet("b0")
    state = write_checkpoint(spec, tmp_path / "b0.safetensors")
    export("b0", tmp_path / "out", weights=tmp_path / "b0.safetensors")
    assert_export_reproduces(tmp_path / "out", spec, state, batches=(2,))
    card = (tmp_path / "out" / "README.md").read_text()
    assert "5,288,548" in card and "224x224x3" in card and "399.4M" in card


def test_study_folder_exports_the_selected_architecture_and_its_family(tmp_path, capsys):
    study = tmp_path / "runs" / "demo"
    (study / "family").mkdir(parents=True)
    deployed = SMALL.replace(in_channels=3, num_classes=1000, resolution=64, name="demo_best")
    best = {"spec": deployed.to_dict(), "reward": 0.81, "accuracy": 0.873, "flops": 1, "params": 2,
            "trial": 17, "study": "demo", "seed": 3, "dataset": "fashion-mnist"}
    (study / "best.json").write_text(json.dumps(best))
    proxy = deployed.replace(in_channels=1, num_classes=10)  # the checkpoint is at the proxy shape
    state = write_checkpoint(proxy, study / "checkpoint.safetensors")
    for name, width in (("b1", 24), ("b2", 40)):
        member = deployed.replace(head_channels=width * 4, resolution=64 + width, name=f"demo_{name}")
        (study / "family" / f"{name}.json").write_text(member.to_json())
    out = tmp_path / "export"
    assert main(["export", str(study), "--out", str(out)]) == 0
    assert_export_reproduces(out, proxy, state, batches=(2,))
    card = (out / "README.md").read_text()
    for fact in ("study: demo", "trial: 17", "seed: 3", "dataset: fashion-mnist", "accuracy: 0.873"):
        assert fact in card
    for name in ("b1", "b2"):
        member = Spec.from_json((study / "family" / f"{name}.json").read_text())
        assert Spec.from_json((out / "family" / name / "spec.json").read_text()) == member
        assert (out / "family" / name / "model.onnx").is_file()
        assert not (out / "family" / name / "model.safetensors").exists()  # no trained weights for scaled members
    assert "onnxruntime vs eager" in capsys.readouterr().out


def test_train_run_folder_loads_with_its_weights(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    state = write_checkpoint(SMALL, run / "checkpoint.safetensors")
    (run / "metrics.json").write_text(json.dumps({"spec": SMALL.to_dict(), "test_acc": 0.9, "seed": 0}))
    model = load(run)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)


def test_loader_imports_neither_optuna_nor_fvcore(tmp_path):
    state = write_checkpoint(SMALL, tmp_path / "ckpt.safetensors")
    export_spec(SMALL, tmp_path / "out", formats="json,safetensors", tensors=state)
    code = (
        "import sys, torch, nas\n"
        f"model = nas.load({str(tmp_path / 'out')!r})\n"
        "print(model(torch.zeros(1, 1, 48, 48)).shape[1])\n"
        "assert 'optuna' not in sys.modules and 'fvcore' not in sys.modules, 'heavy import'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10"


def test_weights_that_do_not_fit_leave_the_output_untouched(tmp_path, capsys):
    other = SMALL.replace(head_channels=96)
    write_checkpoint(other, tmp_path / "wrong.safetensors")
    out = tmp_path / "out"
    out.mkdir()
    (out / "spec.json").write_text("previous export")
    code = main(["export", "b0", "--out", str(out), "--weights", str(tmp_path / "wrong.safetensors")])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("nas: error:") and "do not fit" in error and error.count("\n") == 1
    assert (out / "spec.json").read_text() == "previous export"
    assert sorted(p.name for p in out.iterdir()) == ["spec.json"]


@pytest.mark.parametrize("argv, message", [
    (["export", "b0", "--out", "OUT", "--format", "json,pickle"], "pickle"),
    (["export", "no_such_model", "--out", "OUT"], "no_such_model"),
    (["export", "b0", "--out", "OUT", "--weights", "missing.safetensors"], "missing.safetensors"),
    (["latency", "b0", "--runs", "0"], "runs"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    argv = [arg.replace("OUT", str(tmp_path / "out")) for arg in argv]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_corrupt_weights_are_a_user_error(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(NasError, match="bad.safetensors"):
        load(SMALL, weights=tmp_path / "bad.safetensors")


def test_bound_widens_to_the_float32_noise_floor_of_an_ill_conditioned_network(tmp_path):
    """Eval-mode BN with doubled gammas makes activations grow layer after layer, as in an untrained giant network:
    float32 itself is then far from 1e-4 exact, so the check allows NOISE_FACTOR x eager's own float32 error."""
    state = trained_state(SMALL)
    state = {k: v * 2 if k.endswith("bn.weight") else v for k, v in state.items()}
    report = export_spec(SMALL, tmp_path / "out", tensors=state)
    noise = float(report.checks["float32 eager vs float64 (noise floor)"])
    assert noise > 1e-4
    allowed = float(report.checks["allowed max abs difference"])
    assert allowed == pytest.approx(NOISE_FACTOR * noise, rel=1e-2)
    assert allowed < 1e-4 * float(report.checks["largest |logit| of the eval network"])  # still a sharp check
    for check in ("torch.export (pt2) vs eager", "onnxruntime vs eager"):
        assert report.checks[check] <= allowed
    card = (tmp_path / "out" / "README.md").read_text()
    assert "noise floor" in card and f"allowed max abs difference: {report.checks['allowed max abs difference']}" in card


def test_an_export_that_does_not_reproduce_the_network_writes_nothing(tmp_path, monkeypatch):
    import nas.deploy.export

    real = nas.deploy.export.export_inference_program

    def off_by_a_little(model, example):
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            shifted.classifier.bias += 1e-3
        return real(shifted, example)

    monkeypatch.setattr(nas.deploy.export, "export_inference_program", off_by_a_little)
    with pytest.raises(nas.deploy.export.ExportMismatch, match="torch.export program differs .* allowed 0.0001"):
        export_spec(SMALL, tmp_path / "out", tensors=trained_state(SMALL))
    assert list((tmp_path / "out").iterdir()) == []



def test_an_export_without_weights_is_checked_on_outputs_of_order_one(tmp_path, monkeypatch):
    """With BN at its initial statistics an untrained B0's logits were ~2e-5, so a graph that output zeros
    passed the 1e-4 check; the placeholder network's BN statistics come from its own activations instead."""
    import nas.deploy.export

    report = export_spec(efficientnet("b0"), tmp_path / "out", formats=("onnx",))
    assert float(report.checks["largest |logit| of the eval network"]) > 0.1
    assert report.checks["onnxruntime vs eager"] < 1e-4
    monkeypatch.setattr(nas.deploy.export, "run_onnx", lambda session, x: torch.zeros(len(x), 1000).numpy())
    with pytest.raises(nas.deploy.export.ExportMismatch, match="onnxruntime differs"):
        export_spec(efficientnet("b0"), tmp_path / "zeros", formats=("onnx",))


def test_placeholder_network_bn_statistics_are_those_of_its_activations():
    """BN statistics are the calibration batch's own, and the model comes back in eval mode."""
    from nas.deploy.export import CALIBRATION_BATCH, placeholder_model

    model = placeholder_model(SMALL, seed=0)
    assert not model.training and all(not m.training for m in model.modules())
    bn = model.stem.bn  # the first BN: its input does not depend on other BN layers' statistics
    seen = {}
    bn.register_forward_hook(lambda module, inputs, output: seen.update(x=inputs[0]))
    images = torch.randn((CALIBRATION_BATCH, 1, 48, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model(images)
    x = seen["x"]
    assert torch.allclose(bn.running_mean, x.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, x.var((0, 2, 3), unbiased=True), rtol=1e-4)
    assert bn.momentum == build_model(SMALL).stem.bn.momentum
