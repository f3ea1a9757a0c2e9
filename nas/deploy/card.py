"""The model card of an export: a markdown page with what the network is, where it came from and how it was checked."""

from __future__ import annotations

from typing import Any, Sequence

from nas._common.tables import markdown_table
from nas.arch.cost import count_flops, count_params
from nas.arch.describe import stage_rows
from nas.arch.spec import Spec
from nas.deploy.preprocessing import InputConfig

# Provenance fields shown first, in this order, when the run recorded them; the rest follow alphabetically.
KEY_FACTS = ("source", "study", "trial", "seed", "dataset", "accuracy", "val_acc", "test_acc", "reward")
STAGE_COLUMNS = ("stage", "block", "repeats", "kernel", "stride", "expand", "in", "out", "se", "skip", "params")
PLACEHOLDER_WEIGHTS = ("none: architecture only (placeholder weights: a fresh initialisation, "
                       "BN statistics from random images)")


def render_card(spec: Spec, *, provenance: dict[str, Any], checks: dict[str, Any], files: Sequence[str],
                has_weights: bool, blocks: dict[str, Any] | None = None, config: InputConfig | None = None) -> str:
    """Markdown for README.md of an exported folder."""
    title = spec.name or "exported architecture"
    lines = [
        f"# {title}",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {count_params(spec):,} |",
        f"| FLOPs (multiply-adds, batch 1) | {count_flops(spec) / 1e6:,.1f}M |",
        f"| input | {spec.resolution}x{spec.resolution}x{spec.in_channels} |",
        f"| classes | {spec.num_classes} |",
        f"| dropout / drop-connect | {spec.dropout} / {spec.drop_connect} |",
        f"| weights | {'trained (model.safetensors)' if has_weights else PLACEHOLDER_WEIGHTS} |",
        "",
        "## Provenance",
        "",
        *_provenance_lines(provenance),
        "",
        "## Architecture",
        "",
        *_stage_table(spec),
        "",
        *_block_lines(blocks),
        *_preprocessing_lines(config),
        "## Verification",
        "",
        *(f"- {name}: {check_text(value)}" for name, value in checks.items()),
        "",
        "## Files and use",
        "",
        *(f"- `{name}`" for name in files),
        "",
        "```python",
        "import nas; model, config = nas.load('THIS_FOLDER', with_config=True)  # plain nn.Module, eval mode",
        "import torch; m = torch.export.load('THIS_FOLDER/model.pt2').module()  # BN folded, batch dynamic",
        "import onnxruntime; s = onnxruntime.InferenceSession('THIS_FOLDER/model.onnx')  # input 'images', batch dynamic",
        "```",
        "",
        "`nas predict THIS_FOLDER IMAGE...` prints the top classes of image files, preprocessed as above.",
        "",
    ]
    return "\n".join(lines)


def _preprocessing_lines(config: InputConfig | None) -> list[str]:
    if config is None:
        return []
    channels, height, width = config.input_size
    if config.normalized:
        normalise = (f"(pixel - mean) / std per channel, pixels 0..255: mean {_numbers(config.mean)}, "
                     f"std {_numbers(config.std)}")
    else:
        normalise = "unknown: no training run recorded it (mean and std are null)"
    lines = [
        "## Preprocessing (config.json)",
        "",
        f"- input: {config.layout} float32, {channels} channel(s) ({config.color_mode or 'no image mode'}), "
        f"{height}x{width}",
        f"- resize the shorter side to {height} px ({config.interpolation}, antialiased), "
        f"crop the {config.crop_mode} {height}x{width}",
        f"- normalise: {normalise}",
        f"- classes: {', '.join(config.class_names) if config.class_names else f'{config.num_classes} (unnamed)'}",
    ]
    if config.onnx_opset is not None:
        lines.append(f"- ONNX opset {config.onnx_opset}")
    return lines + [""]


def _numbers(values: Sequence[float] | None) -> str:
    return "[" + ", ".join(f"{value:.4g}" for value in values or ()) + "]"


def _provenance_lines(provenance: dict[str, Any]) -> list[str]:
    if not provenance:
        return ["- no run recorded (exported from a spec)"]
    ordered = [key for key in KEY_FACTS if key in provenance]
    ordered += sorted(key for key in provenance if key not in KEY_FACTS)
    return [f"- {key}: {provenance[key]}" for key in ordered]


def _stage_table(spec: Spec) -> list[str]:
    rows = [{column: row[column] for column in STAGE_COLUMNS} for row in stage_rows(spec) if row["stage"] != "total"]
    return markdown_table(rows, float_format="g").splitlines()


def _block_lines(blocks: dict[str, Any] | None) -> list[str]:
    if not blocks:
        return []
    lines = ["Block strings:", ""]
    for notation in ("tf", "timm"):
        if blocks.get(notation):
            lines.append(f"- {notation}: `{' '.join(blocks[notation])}`")
    return lines + [""]


def check_text(value: Any) -> str:
    """One check's outcome in words: passed/FAILED, a max abs difference, or a note."""
    if isinstance(value, bool):
        return "passed" if value else "FAILED"
    if isinstance(value, float):
        return f"max abs difference {value:.2e}"
    return str(value)
