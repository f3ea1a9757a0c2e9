"""The names of the files and folders runs leave, and the one order in which a run folder's spec is read."""

from __future__ import annotations

RUNS_DIR = "runs"  # where run folders go, relative to the working directory

BEST_FILE = "best.json"  # a search study's selected architecture with its evidence
METRICS_FILE = "metrics.json"  # a `nas train` run: metrics, the trained (proxy) spec, the normalisation
SPEC_FILE = "spec.json"  # an exported folder's spec (a `nas train` run writes one too)
CHECKPOINT_FILE = "checkpoint.safetensors"  # the weights a search or training run leaves
TRAIN_STATE_FILE = "train_state.safetensors"  # a `nas train` run's resumable state (weights, optimizer, RNG, step)
WEIGHTS_FILE = "model.safetensors"  # the weights of an exported folder
CONFIG_FILE = "config.json"  # an exported folder's preprocessing contract (input size, mean/std, classes)
BLOCKS_FILE = "blocks.json"  # an exported folder's TF and timm block strings
PT2_FILE = "model.pt2"  # an exported folder's torch.export program
ONNX_FILE = "model.onnx"  # an exported folder's float ONNX graph
INT8_ONNX_FILE = "model.int8.onnx"  # an exported folder's int8 ONNX graph
TORCHSCRIPT_FILE = "model.torchscript.pt"  # an exported folder's TorchScript module (deprecated by torch)
CARD_FILE = "README.md"  # an exported folder's model card
FAMILY_FOLDER = "family"  # the scaling stage's members, b1.json ... b7.json, inside a run folder
STUDY_JOURNAL = "study.journal"  # a search study's Optuna journal
GRID_JOURNAL = "scaling.journal"  # the scaling grid's Optuna journal
LATENCY_TABLE_FILE = "latency_table.json"  # `nas latency-table`: per-part latencies on one device

# A folder's spec document and the weights file that goes with it, in the order they are looked for:
# a study folder, then a training run, then an export.
SPEC_DOCUMENTS = ((BEST_FILE, CHECKPOINT_FILE), (METRICS_FILE, CHECKPOINT_FILE), (SPEC_FILE, WEIGHTS_FILE))
