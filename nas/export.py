"""`nas export`: write a spec as a self-contained, verified folder.

Formats: `json` (spec.json), `blocks` (blocks.json: TF and timm block strings), `safetensors`
(model.safetensors, when there are weights), `torchscript` (model.torchscript.pt: the frozen inference form),
`onnx` (model.onnx: the inference form, dynamic batch). README.md, the model card, is always written.
Every file is read back and checked before anything lands in the output folder: the spec and block
strings round-trip exactly, the weights reload bit-exact, TorchScript and onnxruntime match the eval-mode
network within 1e-4 (max abs) on random inputs at the spec's resolution. Files are written to a staging
folder and moved into place only when every check passed.

An export without weights carries placeholder weights: a fresh initialisation whose BatchNorm statistics are
set by one pass over random images (`placeholder_model`). With BN at its initial statistics an untrained
network's activations shrink or grow block after block: B0's logits came out at 1.8e-5, so a check within 1e-4
would have passed an exported graph that output zeros.

The 1e-4 bound assumes the float32 network is itself accurate to well under 1e-4, which holds for trained
networks and for most placeholder ones. A very deep untrained one is not: it amplifies rounding block after
block (the 1068 px B7 member of a searched family, 87 blocks with long stages without skips, is 1.5e-3 away
from the same network run in float64, and onnxruntime's own rounding puts it 3.3e-3 from eager). Each check
therefore also runs the network in float64 and allows max(1e-4, NOISE_FACTOR x eager's own float32 error),
the card reporting that noise floor: still far below the order-one differences of a wrongly converted graph.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import save_file
from torch import nn

from nas.blockstrings import parse_block_strings, to_tf_strings, to_timm_strings
from nas.errors import NasError
from nas.fold import fold_batchnorm, frozen_inference_model
from nas.loader import build_with_weights, fit_spec_to_weights, read_weights
from nas.model import build_model
from nas.model_card import render_card
from nas.onnx_export import export_onnx, onnx_session, run_onnx
from nas.sources import FAMILY_FOLDER, SPEC_FILE, WEIGHTS_FILE, read_source
from nas.spec import Spec

FORMATS = ("json", "blocks", "safetensors", "torchscript", "onnx")
BLOCKS_FILE = "blocks.json"
TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
CARD_FILE = "README.md"
TOLERANCE = 1e-4  # max abs difference allowed between an exported network and the eval-mode original
CHECK_BATCH = 3  # not the batch the ONNX graph was traced with, so the dynamic batch dimension is exercised
# An export's rounding error may exceed eager's own by a few times (another summation order, other kernels):
# 2.1x seen for the B7 member above.
NOISE_FACTOR = 10.0
CALIBRATION_BATCH = 2  # images whose activations set a placeholder network's BN statistics (BN needs 2 or more)


class ExportMismatch(RuntimeError):
    """An exported file does not reproduce the network (a bug, not a user error); nothing was written."""


@dataclass(frozen=True)
class ExportReport:
    """What one export wrote and the outcome of each check (max abs differences or round-trip flags)."""

    out: Path
    spec: Spec
    files: tuple[str, ...]
    checks: dict[str, Any]
    family: tuple[ExportReport, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # family members whose checks failed: (name, reason); not written


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """Formats from 'json,onnx' or a list; unknown names are a NasError."""
    names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text) if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise NasError(f"unknown export format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    return tuple(name for name in FORMATS if name in names)


def export(source: str | os.PathLike[str], out: str | os.PathLike[str], *, formats: Sequence[str] = FORMATS,
           weights: str | os.PathLike[str] | None = None) -> ExportReport:
    """Export a name, spec file, study folder or run folder to `out`.

    A study folder exports its selected architecture (with its checkpoint when present) and, when the
    scaling stage has run, each family member into `out/family/<member>/`.
    """
    found = read_source(source, weights)
    tensors = read_weights(found.weights) if found.weights else None
    provenance = dict(found.provenance)
    if found.weights:
        provenance["weights"] = str(found.weights)
    report = export_spec(found.spec, out, formats=formats, tensors=tensors, provenance=provenance,
                         origin=str(found.weights))
    members, failed = [], []
    for name, spec in found.family:
        # One member the checks refuse must not cost the user the rest of the family.
        try:
            members.append(export_spec(spec, Path(out) / FAMILY_FOLDER / name, formats=formats,
                                       provenance={**found.provenance, "family member": name}))
        except ExportMismatch as exc:
            failed.append((name, str(exc)))
    return ExportReport(report.out, report.spec, report.files, report.checks, tuple(members), tuple(failed))


def export_spec(spec: Spec, out: str | os.PathLike[str], *, formats: Sequence[str] = FORMATS,
                tensors: dict[str, torch.Tensor] | None = None, provenance: dict[str, Any] | None = None,
                seed: int = 0, origin: str = "checkpoint") -> ExportReport:
    """Export one spec (with `tensors` as its weights, else freshly initialised) to the folder `out`.

    `origin` names where the tensors came from, for error messages.
    """
    formats = parse_formats(formats)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NasError(f"--out {out} exists and is not a folder")
    if tensors is not None:
        spec = fit_spec_to_weights(spec, tensors)
        model = build_with_weights(spec, tensors, origin=origin)
    else:
        model = placeholder_model(spec, seed)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".export-"))
    try:
        checks, blocks = _write_formats(spec, model, tensors is not None, formats, staging, seed)
        files = sorted(path.name for path in staging.iterdir())
        card = render_card(spec, provenance=provenance or {}, checks=checks, files=[*files, CARD_FILE],
                           has_weights=tensors is not None, blocks=blocks)
        (staging / CARD_FILE).write_text(card)
        for name in [*files, CARD_FILE]:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(out, spec, tuple([*files, CARD_FILE]), checks)


def _write_formats(spec: Spec, model: nn.Module, has_weights: bool, formats: tuple[str, ...], folder: Path,
                   seed: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    checks: dict[str, Any] = {}
    blocks = None
    if "json" in formats:
        checks["spec.json round trip"] = _write_spec(spec, folder / SPEC_FILE)
    if "blocks" in formats:
        blocks, checks["block strings round trip"] = _write_blocks(spec, folder / BLOCKS_FILE)
    if "safetensors" in formats and has_weights:
        checks["weights reload bit-exact"] = _write_weights(spec, model, folder / WEIGHTS_FILE)
    if "torchscript" in formats or "onnx" in formats:
        x = torch.randn((CHECK_BATCH, spec.in_channels, spec.resolution, spec.resolution),
                        generator=torch.Generator().manual_seed(seed))
        expected, noise = _eager_outputs(model, x)
        tolerance = max(TOLERANCE, NOISE_FACTOR * noise)
        checks["largest |logit| of the eval network"] = f"{expected.abs().max().item():.3g}"
        checks["float32 eager vs float64 (noise floor)"] = f"{noise:.3g}"
        checks["allowed max abs difference"] = f"{tolerance:.3g}"
        if "torchscript" in formats:
            checks["torchscript vs eager"] = _write_torchscript(model, folder / TORCHSCRIPT_FILE, x, expected,
                                                                tolerance)
        if "onnx" in formats:
            checks["onnxruntime vs eager"] = _write_onnx(model, folder / ONNX_FILE, x, expected, tolerance)
    return checks, blocks


@torch.no_grad()
def placeholder_model(spec: Spec, seed: int = 0) -> nn.Module:
    """A freshly initialised eval-mode network whose BN statistics are those of its own activations.

    Only the BN layers run in training mode for the one calibration pass (dropout and stochastic depth stay
    off), each with a cumulative average, so after the pass its statistics are exactly that batch's.
    """
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in batchnorms]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    model(torch.randn((CALIBRATION_BATCH, spec.in_channels, spec.resolution, spec.resolution),
                      generator=torch.Generator().manual_seed(seed + 1)))
    for bn, momentum in zip(batchnorms, momenta):
        bn.momentum = momentum
    return model.eval()


def _require(ok: bool, what: str) -> bool:
    if not ok:
        raise ExportMismatch(f"export check failed: {what}; nothing was written")
    return True


@torch.no_grad()
def _eager_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The eval-mode network's float32 output, and its max abs distance from the same network run in float64."""
    expected = model(x)
    exact = copy.deepcopy(model).double()(x.double())
    return expected, (expected.double() - exact).abs().max().item()


def _within_tolerance(got: torch.Tensor, expected: torch.Tensor, tolerance: float, what: str) -> float:
    difference = (got - expected).abs().max().item()
    _require(difference <= tolerance,
             f"{what} differs from the eval-mode network by {difference:.3g} (max abs; allowed {tolerance:.3g})")
    return difference


def _write_spec(spec: Spec, path: Path) -> bool:
    path.write_text(spec.to_json())
    return _require(Spec.from_json(path.read_text()) == spec, f"{path.name} does not read back as the same spec")


def _write_blocks(spec: Spec, path: Path) -> tuple[dict[str, Any], bool]:
    """TF strings (absent when a stage is a regular conv, which TF's notation cannot express), timm strings,
    and the spec fields strings do not carry; `parse_block_strings(' '.join(tf), **fields)` rebuilds the spec."""
    fields = {key: value for key, value in spec.to_dict().items() if key not in ("stages", "schema_version")}
    try:
        tf = to_tf_strings(spec)
    except NasError:
        tf = None
    document = {"tf": tf, "timm": to_timm_strings(spec), "fields": fields}
    path.write_text(json.dumps(document, indent=2) + "\n")
    reread = json.loads(path.read_text())
    for notation in ("tf", "timm"):
        if reread[notation] is not None:
            rebuilt = parse_block_strings(" ".join(reread[notation]), **reread["fields"])
            _require(rebuilt == spec, f"{notation} block strings do not rebuild the spec")
    return document, True


def _write_weights(spec: Spec, model: nn.Module, path: Path) -> bool:
    state = {key: tensor.detach().contiguous() for key, tensor in model.state_dict().items()}
    save_file(state, str(path), metadata={"spec": spec.to_json()})
    reread = read_weights(path)
    same = reread.keys() == state.keys() and all(
        reread[key].dtype == state[key].dtype and torch.equal(reread[key], state[key]) for key in state)
    return _require(same, f"{path.name} does not reload bit-exact")


def _write_torchscript(model: nn.Module, path: Path, x: torch.Tensor, expected: torch.Tensor,
                       tolerance: float) -> float:
    torch.jit.save(frozen_inference_model(model), str(path))
    with torch.no_grad():
        got = torch.jit.load(str(path))(x)
    return _within_tolerance(got, expected, tolerance, "TorchScript")


def _write_onnx(model: nn.Module, path: Path, x: torch.Tensor, expected: torch.Tensor, tolerance: float) -> float:
    export_onnx(fold_batchnorm(model), path, x[:1])
    got = torch.from_numpy(run_onnx(onnx_session(path), x))
    return _within_tolerance(got, expected, tolerance, "onnxruntime")
