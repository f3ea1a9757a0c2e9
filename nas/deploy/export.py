"""`nas export`: write a spec as a self-contained, verified folder.

Formats: `json` (spec.json), `blocks` (blocks.json: TF and timm block strings), `safetensors`
(model.safetensors, when there are weights), `pt2` (model.pt2: the inference form captured by torch.export,
dynamic batch; `torch.export.load(...).module()` runs it), `onnx` (model.onnx: the inference form, dynamic
batch, opset ONNX_OPSET) -- the default set -- and, when asked for, `onnx-int8` (model.int8.onnx:
onnxruntime's static quantization calibrated on the run's training images, its test accuracy checked
against the float network's, see nas.deploy.int8) and `torchscript` (model.torchscript.pt: the frozen
inference form; torch deprecates TorchScript). config.json, the preprocessing contract
(nas.deploy.preprocessing), and README.md, the model card, are always written.
Every file is read back and checked before anything lands in the output folder: the spec, block strings and
config round-trip exactly, the weights reload bit-exact, the torch.export program, TorchScript and onnxruntime
match the eval-mode network within 1e-4 (max abs) on random inputs at the spec's resolution. Files are written
to a staging folder and moved into place only when every check passed.

An export without weights carries placeholder weights: a fresh initialisation whose BatchNorm statistics are
set by one pass over random images (`placeholder_model`). With BN at its initial statistics an untrained
network's activations shrink or grow block after block, down to logits far below 1e-4 for B0, so a check
within 1e-4 would pass an exported graph that output zeros.

The 1e-4 bound assumes the float32 network is itself accurate to well under 1e-4, which holds for trained
networks and for most placeholder ones. A very deep untrained one is not: it amplifies rounding block after
block (a deep B7-sized member of a searched family, with long stages without skips, ends up further than
1e-4 from the same network run in float64, and onnxruntime's rounding adds to that). Each check therefore also
runs the network in float64 and allows max(1e-4, NOISE_FACTOR x eager's own float32 error),
the card reporting that noise floor: still far below the order-one differences of a wrongly converted graph.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from nas._common.runfiles import (
    BLOCKS_FILE,
    CARD_FILE,
    CONFIG_FILE,
    FAMILY_FOLDER,
    INT8_ONNX_FILE,
    ONNX_FILE,
    PT2_FILE,
    SPEC_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
)
from nas.arch.blockstrings import parse_block_strings, to_tf_strings, to_timm_strings
from nas.arch.spec import Spec
from nas.deploy.card import render_card
from nas.deploy.load import build_with_weights, fit_spec_to_weights, read_weights
from nas.deploy.preprocessing import InputConfig, TrainingRecord, input_config
from nas.deploy.sources import read_source
from nas.errors import NasError, write_fault
from nas.model.batchnorm import recalibrate_batchnorm
from nas.model.builder import build_model
from nas.model.inference import (
    export_inference_program,
    fold_batchnorm,
    legacy_torchscript,
    scripted_inference_model,
)
from nas.model.onnx import ONNX_OPSET, export_onnx, onnx_session, run_onnx

TOLERANCE = 1e-4  # max abs difference allowed between an exported network and the eval-mode original
CHECK_BATCH = 3  # not the batch the ONNX graph was traced with, so the dynamic batch dimension is exercised
# An export's rounding error may exceed eager's own by a few times (another summation order, other kernels).
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


def parse_formats(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Formats from 'json,onnx' or a list (None: the default set); unknown names are a NasError."""
    if text is None:
        return DEFAULT_FORMATS
    names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text) if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise NasError(f"unknown export format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    return tuple(name for name in FORMATS if name in names)


def export(source: str | os.PathLike[str], out: str | os.PathLike[str], *, formats: str | Sequence[str] | None = None,
           weights: str | os.PathLike[str] | None = None) -> ExportReport:
    """Export a name, spec file, study folder or run folder to `out`.

    A study folder exports its selected architecture (with its checkpoint when present) and, when the
    scaling stage has run, each family member into `out/family/<member>/`.
    """
    found = read_source(source, weights)
    tensors = read_weights(found.weights) if found.weights else None
    provenance = dict(found.provenance)
    spec, training = found.spec, found.training if tensors is not None else None
    if found.weights:
        provenance["weights"] = str(found.weights)
    if training and training.resolution and training.resolution != spec.resolution:
        # The weights were trained at another resolution (a proxy task): export the network they are.
        provenance["resolution of the spec file"] = spec.resolution
        spec = spec.replace(resolution=training.resolution)
    report = export_spec(spec, out, formats=formats, tensors=tensors, provenance=provenance,
                         origin=str(found.weights), training=training)
    members, failed = [], []
    untrained = tuple(name for name in parse_formats(formats) if name != "onnx-int8")  # members have no weights
    for name, member in found.family:
        # One member the checks refuse must not cost the user the rest of the family.
        try:
            members.append(export_spec(member, Path(out) / FAMILY_FOLDER / name, formats=untrained,
                                       provenance={**found.provenance, "family member": name}))
        except ExportMismatch as exc:
            failed.append((name, str(exc)))
    return ExportReport(report.out, report.spec, report.files, report.checks, tuple(members), tuple(failed))


def export_spec(spec: Spec, out: str | os.PathLike[str], *, formats: str | Sequence[str] | None = None,
                tensors: dict[str, torch.Tensor] | None = None, provenance: dict[str, Any] | None = None,
                seed: int = 0, origin: str = "checkpoint", training: TrainingRecord | None = None) -> ExportReport:
    """Export one spec (with `tensors` as its weights, else freshly initialised) to the folder `out`.

    `origin` names where the tensors came from, for error messages; `training` is how the weights were
    trained to see their input (config.json's normalisation, classes; the int8 form's data set).
    """
    formats = parse_formats(formats)
    if "onnx-int8" in formats:
        from nas.deploy.int8 import require_training_data

        require_training_data(training if tensors is not None else None)  # before any work
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NasError(f"--out {out} exists and is not a folder")
    if tensors is not None:
        spec = fit_spec_to_weights(spec, tensors)
        model = build_with_weights(spec, tensors, origin=origin)
    else:
        model = placeholder_model(spec, seed)
    staging = None
    config = input_config(spec, training, ONNX_OPSET if {"onnx", "onnx-int8"} & set(formats) else None)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".export-"))
        job = ExportJob(spec, model, tensors is not None, staging, seed, config=config, training=training)
        checks = {**_write_config(job), **_write_formats(job, formats)}
        files = sorted(path.name for path in staging.iterdir())
        blocks = json.loads((staging / BLOCKS_FILE).read_text()) if (staging / BLOCKS_FILE).is_file() else None
        card = render_card(spec, provenance=provenance or {}, checks=checks, files=[*files, CARD_FILE],
                           has_weights=tensors is not None, blocks=blocks, config=config)
        (staging / CARD_FILE).write_text(card)
        for name in [*files, CARD_FILE]:
            os.replace(staging / name, out / name)
    except OSError as exc:  # disk full, read-only or forbidden folder: name the file the user asked for
        raise write_fault(out / Path(exc.filename).name if exc.filename else out, exc) from exc
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(out, spec, tuple([*files, CARD_FILE]), checks)


@dataclass
class ExportJob:
    """What every format writer receives: the network to write, where, and the check inputs shared by the
    graph formats (random inputs, the eval network's outputs, the allowed difference), computed once."""

    spec: Spec
    model: nn.Module
    has_weights: bool
    folder: Path
    seed: int = 0
    config: InputConfig | None = None
    training: TrainingRecord | None = None
    _reference: tuple[torch.Tensor, torch.Tensor, float] | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # check facts shown once, whatever writers ran

    def reference(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(inputs, eval-mode outputs, allowed max abs difference) for comparing an exported graph."""
        if self._reference is None:
            spec = self.spec
            x = torch.randn((CHECK_BATCH, spec.in_channels, spec.resolution, spec.resolution),
                            generator=torch.Generator().manual_seed(self.seed))
            expected, noise = _eager_outputs(self.model, x)
            tolerance = max(TOLERANCE, NOISE_FACTOR * noise)
            self.facts.update({"largest |logit| of the eval network": f"{expected.abs().max().item():.3g}",
                               "float32 eager vs float64 (noise floor)": f"{noise:.3g}",
                               "allowed max abs difference": f"{tolerance:.3g}"})
            self._reference = (x, expected, tolerance)
        return self._reference


def _write_formats(job: ExportJob, formats: tuple[str, ...]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for name in formats:
        checks.update(FORMAT_WRITERS[name](job))
    return {**checks, **job.facts}


@torch.no_grad()
def placeholder_model(spec: Spec, seed: int = 0) -> nn.Module:
    """A freshly initialised eval-mode network whose BN statistics are those of its own activations on one
    batch of random images (`nas.model.batchnorm.recalibrate_batchnorm`)."""
    torch.manual_seed(seed)
    images = torch.randn((CALIBRATION_BATCH, spec.in_channels, spec.resolution, spec.resolution),
                         generator=torch.Generator().manual_seed(seed + 1))
    return recalibrate_batchnorm(build_model(spec), [images])


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


def _write_config(job: ExportJob) -> dict[str, Any]:
    path = job.folder / CONFIG_FILE
    path.write_text(job.config.to_json())
    ok = _require(InputConfig.from_dict(json.loads(path.read_text())) == job.config,
                  f"{path.name} does not read back as the same config")
    return {"config.json round trip": ok}


def _write_spec(job: ExportJob) -> dict[str, Any]:
    path = job.folder / SPEC_FILE
    path.write_text(job.spec.to_json())
    ok = _require(Spec.from_json(path.read_text()) == job.spec, f"{path.name} does not read back as the same spec")
    return {"spec.json round trip": ok}


def _write_blocks(job: ExportJob) -> dict[str, Any]:
    """TF strings (absent when a stage is a regular conv, which TF's notation cannot express), timm strings,
    and the spec fields strings do not carry; `parse_block_strings(' '.join(tf), **fields)` rebuilds the spec."""
    spec, path = job.spec, job.folder / BLOCKS_FILE
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
    return {"block strings round trip": True}


def _write_weights(job: ExportJob) -> dict[str, Any]:
    if not job.has_weights:
        return {}  # placeholder weights are not worth a file
    path = job.folder / WEIGHTS_FILE
    state = {key: tensor.detach().contiguous() for key, tensor in job.model.state_dict().items()}
    metadata = {"spec": job.spec.to_json(), "config": job.config.to_json()}
    path.write_bytes(save_safetensors(state, metadata=metadata))  # a full disk: OSError
    reread = read_weights(path)
    same = reread.keys() == state.keys() and all(
        reread[key].dtype == state[key].dtype and torch.equal(reread[key], state[key]) for key in state)
    return {"weights reload bit-exact": _require(same, f"{path.name} does not reload bit-exact")}


def _write_pt2(job: ExportJob) -> dict[str, Any]:
    x, expected, tolerance = job.reference()
    path = job.folder / PT2_FILE
    buffer = io.BytesIO()
    torch.export.save(export_inference_program(job.model, x[:1]), buffer)
    path.write_bytes(buffer.getvalue())
    with torch.no_grad():
        got = torch.export.load(str(path)).module()(x)
    return {"torch.export (pt2) vs eager": _within_tolerance(got, expected, tolerance, "the torch.export program")}


def _write_torchscript(job: ExportJob) -> dict[str, Any]:
    x, expected, tolerance = job.reference()
    path = job.folder / TORCHSCRIPT_FILE
    buffer = io.BytesIO()  # torch's file writer aborts the process on a full disk; a bytes write raises OSError
    with legacy_torchscript():
        torch.jit.save(scripted_inference_model(job.model), buffer)
        path.write_bytes(buffer.getvalue())
        with torch.no_grad():
            got = torch.jit.load(str(path))(x)
    return {"torchscript vs eager": _within_tolerance(got, expected, tolerance, "TorchScript")}


def _write_onnx(job: ExportJob) -> dict[str, Any]:
    x, expected, tolerance = job.reference()
    path = job.folder / ONNX_FILE
    export_onnx(fold_batchnorm(job.model), path, x[:1])
    got = torch.from_numpy(run_onnx(onnx_session(path), x))
    return {"onnxruntime vs eager": _within_tolerance(got, expected, tolerance, "onnxruntime")}


def _write_onnx_int8(job: ExportJob) -> dict[str, Any]:
    from nas.deploy.int8 import (
        write_int8,  # onnxruntime's quantization tools load only for this format
    )

    return write_int8(job.spec, job.training if job.has_weights else None, job.folder / ONNX_FILE,
                      job.folder / INT8_ONNX_FILE, lambda path: export_onnx(fold_batchnorm(job.model), path,
                                                                             job.reference()[0][:1]))


# Each format: a writer that puts its file into the job's folder, checks it and returns its checks by name.
# They run in this order (onnx-int8 quantizes the float file onnx wrote, when there is one).
FORMAT_WRITERS: dict[str, Callable[[ExportJob], dict[str, Any]]] = {
    "json": _write_spec,
    "blocks": _write_blocks,
    "safetensors": _write_weights,
    "pt2": _write_pt2,
    "onnx": _write_onnx,
    "onnx-int8": _write_onnx_int8,
    "torchscript": _write_torchscript,
}
FORMATS = tuple(FORMAT_WRITERS)
DEFAULT_FORMATS = ("json", "blocks", "safetensors", "pt2", "onnx")
