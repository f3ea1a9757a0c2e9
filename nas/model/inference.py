"""The inference form of a network: batch norm folded into the preceding conv, channels-last input, captured
by `torch.export` into a graph (an ExportedProgram, saved as `model.pt2`).

Eval-mode batch norm is an affine map per channel, so it can be absorbed into the conv before it
(w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta). Drop-path and dropout
are already identities in eval mode, so folding leaves only convs, activations, SE and the classifier.
A channels-last input is the layout oneDNN's CPU convolutions (depthwise above all) run fastest in; the
convolutions pass it on, so the weights keep their own layout. The exported graph calls the ATen operators
directly, without the Python call overhead of ~300 small modules per forward. `bench/bench_latency.py` times
each form against the eager network.

TorchScript (`scripted_inference_model`) is deprecated by torch in favour of torch.export; it is kept only
for `nas export --format torchscript`, for consumers that still load TorchScript.
"""

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

MAX_BATCH = 4096  # upper bound of the dynamic batch dimension of exported graphs


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of `model` with every `.conv`/`.bn` pair folded into one biased conv.

    Works on any module tree whose conv blocks hold `.conv` (nn.Conv2d) and `.bn` (nn.BatchNorm2d),
    e.g. `nas.model.builder.ConvBN`; the folded block keeps its activation and its `.bn` becomes an identity.
    The input model is left untouched.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(conv, bn)
            module.bn = nn.Identity()
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded


class ChannelsLast(nn.Module):
    """Runs the wrapped network on a channels-last copy of its NCHW input (same results, faster convs).

    Only the input is converted: the convolutions follow their input's layout, and a channels-last copy of
    the 3-channel stem weight is not contiguous, which torch.export.save warns about.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))


def inference_model(model: nn.Module) -> nn.Module:
    """The network as deployed: batch norm folded, channels-last, eval mode, no gradients.

    Numerically equal to `model.eval()` up to float rounding (tested within 1e-4 max abs).
    """
    return ChannelsLast(fold_batchnorm(model)).eval()


def export_inference_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """The inference form captured by torch.export with a dynamic batch dimension: what `nas export` saves as
    model.pt2 and what `folded` latency times (`.module()` runs it).

    `example` fixes every dimension but the batch (a batch of 1 would be specialised as a constant, so the
    example is widened to 2 images).
    """
    example = example[:1].expand(2, *example.shape[1:]).contiguous()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        return torch.export.export(inference_model(model), (example,), dynamic_shapes=({0: batch},))


@contextlib.contextmanager
def legacy_torchscript() -> Iterator[None]:
    """Run TorchScript calls without torch's deprecation warnings: only `--format torchscript` makes them, the
    user asked for the format by name, and the README and the card say it is deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        yield


def scripted_inference_model(model: nn.Module) -> torch.jit.ScriptModule:
    """The inference form scripted and frozen by TorchScript (`nas export --format torchscript` only)."""
    with torch.no_grad(), legacy_torchscript():
        return torch.jit.freeze(torch.jit.script(inference_model(model)))
