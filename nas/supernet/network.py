"""The weight-sharing supernet of a search space: one network whose weights hold every architecture of the space.

Per stage there are as many block slots as the stage's largest layer count; an architecture uses the first
`repeats` of them (elastic depth). Each slot holds the weights of its largest configuration, and an
architecture uses a slice of them, the once-for-all / BigNAS way:

- the MBConv path (1x1 expand, kxk depthwise, SE, 1x1 project) at the largest input width, expansion ratio,
  kernel, SE width and output width. A smaller kernel is the centre of the largest one; a smaller expansion
  ratio, input or output width is a leading slice of the channels;
- the depthwise-separable path (kxk depthwise on the block input, SE, 1x1 project; also MBConv with expand
  ratio 1, the same block) and the regular-conv path (kxk conv, SE), each with its own weights where the stage
  offers it (separate paths, as single-path one-shot has). Depthwise-separable does not share the MBConv
  path's leading slices: its depthwise filters act on the block input, the MBConv path's on expanded
  channels, and one set of weights would serve two meanings;
- SE and the residual as switches.

`Supernet.forward(x, spec)` runs one architecture with its slices; `Supernet.extract(spec)` cuts the same
slices out into the state dict of `nas.model.builder.build_model(spec)`, so everything downstream (scoring,
export, latency) sees the ordinary network. In training mode BatchNorm uses batch statistics and tracks no
running statistics (they would mix architectures); the scorer recalibrates them per extracted network.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.layout import BlockLayout, block_layout
from nas.arch.space import SearchSpace, encode
from nas.arch.spec import Spec, squeeze_channels
from nas.errors import NasError
from nas.model.builder import BN_EPS

# A supernet holds every architecture's weights at once: refuse spaces whose largest configuration would not
# fit a workstation's memory several times over (weights, gradients, optimizer state, EMA).
MAX_PARAMETERS = 200_000_000


@dataclass(frozen=True)
class SlotShape:
    """The largest configuration one block slot must hold, over every architecture of the space."""

    stride: int
    in_channels: int  # widest input this slot can receive
    out_channels: int  # widest output
    mid_channels: int  # widest expanded width (input x expansion), 0 without an expanding MBConv choice
    kernel: int  # largest kernel
    se_channels: int  # widest SE squeeze, 0 when SE is never on
    separable_path: bool  # the stage offers depthwise-separable (or MBConv with expand ratio 1)
    conv_path: bool  # the stage offers the regular conv op


def _bn_parameters(channels: int) -> tuple[nn.Parameter, nn.Parameter]:
    return nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))


def _conv_weight(out: int, cin: int, kernel: int) -> nn.Parameter:
    weight = torch.empty(out, cin, kernel, kernel)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # PyTorch's Conv2d default: the proxy's fan-in init
    return nn.Parameter(weight)


class ElasticBatchNorm(nn.Module):
    """BatchNorm over the leading `channels` of its largest width. Running statistics (for eval mode) are
    kept as buffers so an extracted network carries them; training never updates them."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight, self.bias = _bn_parameters(channels)
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.training:
            return F.batch_norm(x, None, None, self.weight[:c], self.bias[:c], True, 0.0, BN_EPS)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            False, 0.0, BN_EPS)

    def state(self, channels: int) -> dict[str, torch.Tensor]:
        """The state dict of an `nn.BatchNorm2d(channels)` cut from these weights."""
        return {"weight": self.weight[:channels], "bias": self.bias[:channels],
                "running_mean": self.running_mean[:channels], "running_var": self.running_var[:channels],
                "num_batches_tracked": torch.tensor(0, device=self.weight.device)}


def _centre(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The centre kernel x kernel taps of a larger odd kernel."""
    start = (weight.shape[-1] - kernel) // 2
    return weight[..., start:start + kernel, start:start + kernel]


class DepthwisePath(nn.Module):
    """kxk depthwise conv with BN, SE on its width, 1x1 projection with BN, at their widest: the part an MBConv
    (on expanded channels) and a depthwise-separable block (on the block input) each hold on their own."""

    def __init__(self, width: int, out_channels: int, kernel: int, se_channels: int) -> None:
        super().__init__()
        self.dw_weight = _conv_weight(width, 1, kernel)
        self.dw_bn = ElasticBatchNorm(width)
        self.se_reduce = nn.Conv2d(width, se_channels, 1) if se_channels else None
        self.se_expand = nn.Conv2d(se_channels, width, 1) if se_channels else None
        self.project_weight = _conv_weight(out_channels, width, 1)
        self.project_bn = ElasticBatchNorm(out_channels)

    def forward(self, x: torch.Tensor, block: BlockLayout, kernel: int) -> torch.Tensor:
        mid = block.mid_channels
        weight = _centre(self.dw_weight[:mid], kernel)
        out = F.silu(self.dw_bn(F.conv2d(x, weight.contiguous(), None, block.stride, kernel // 2, groups=mid)))
        if block.se_channels:
            out = _squeeze_excite(out, self.se_reduce, self.se_expand, block.se_channels)
        return self.project_bn(F.conv2d(out, self.project_weight[:block.out_channels, :mid].contiguous()))

    def extract(self, block: BlockLayout) -> dict[str, torch.Tensor]:
        """The depthwise, SE and projection entries of `nas.model.builder.Block(block)`'s state dict."""
        mid, cout = block.mid_channels, block.out_channels
        state = {"conv.conv.weight": _centre(self.dw_weight[:mid], block.kernel)}
        state.update(_prefixed("conv.bn.", self.dw_bn.state(mid)))
        if block.se_channels:
            state.update(_se_state(self.se_reduce, self.se_expand, mid, block.se_channels))
        state["project.conv.weight"] = self.project_weight[:cout, :mid]
        state.update(_prefixed("project.bn.", self.project_bn.state(cout)))
        return state


class ElasticSlot(nn.Module):
    """One block slot: the MBConv path (expand, then its depthwise path), the depthwise-separable path and the
    regular-conv path (conv, SE), each where the stage offers it, at the slot's largest shape."""

    def __init__(self, shape: SlotShape) -> None:
        super().__init__()
        self.shape = shape
        cin, cout, mid, k, se = shape.in_channels, shape.out_channels, shape.mid_channels, shape.kernel, shape.se_channels
        if mid:
            self.expand_weight = _conv_weight(mid, cin, 1)
            self.expand_bn = ElasticBatchNorm(mid)
            self.mbconv = DepthwisePath(mid, cout, k, se)
        if shape.separable_path:
            self.separable = DepthwisePath(cin, cout, k, se)
        if shape.conv_path:
            self.conv_weight = _conv_weight(cout, cin, k)
            self.conv_bn = ElasticBatchNorm(cout)
            if se:
                self.conv_se_reduce = nn.Conv2d(cout, se, 1)
                self.conv_se_expand = nn.Conv2d(se, cout, 1)

    def forward(self, x: torch.Tensor, block: BlockLayout) -> torch.Tensor:
        # Taps that only ever see padding are left out (maps smaller than the kernel), as the proxy trainer's
        # nas.model.builder.conv_on_reachable_taps does: the same function, computed faster.
        k = min(block.kernel, 2 * x.shape[-1] - 1)
        if block.block == "conv":
            weight = _centre(self.conv_weight[:block.out_channels, :block.in_channels], k)
            out = F.silu(self.conv_bn(F.conv2d(x, weight.contiguous(), None, block.stride, k // 2)))
            if block.se_channels:
                out = _squeeze_excite(out, self.conv_se_reduce, self.conv_se_expand, block.se_channels)
        elif block.has_expansion:
            weight = self.expand_weight[:block.mid_channels, :block.in_channels]
            out = self.mbconv(F.silu(self.expand_bn(F.conv2d(x, weight.contiguous()))), block, k)
        else:
            out = self.separable(x, block, k)
        return out + x if block.residual else out

    def extract(self, block: BlockLayout) -> dict[str, torch.Tensor]:
        """The state dict of `nas.model.builder.Block(block)` cut from this slot's weights."""
        k, mid, cin, cout, se = block.kernel, block.mid_channels, block.in_channels, block.out_channels, block.se_channels
        state: dict[str, torch.Tensor] = {}
        if block.block == "conv":
            state["conv.conv.weight"] = _centre(self.conv_weight[:cout, :cin], k)
            state.update(_prefixed("conv.bn.", self.conv_bn.state(cout)))
            if se:
                state.update(_se_state(self.conv_se_reduce, self.conv_se_expand, cout, se))
            return state
        if not block.has_expansion:
            return self.separable.extract(block)
        state["expand.conv.weight"] = self.expand_weight[:mid, :cin]
        state.update(_prefixed("expand.bn.", self.expand_bn.state(mid)))
        return {**state, **self.mbconv.extract(block)}


def _squeeze_excite(x: torch.Tensor, reduce: nn.Conv2d, expand: nn.Conv2d, squeeze: int) -> torch.Tensor:
    channels = x.shape[1]
    gate = x.mean((2, 3), keepdim=True)
    gate = F.silu(F.conv2d(gate, reduce.weight[:squeeze, :channels], reduce.bias[:squeeze]))
    gate = F.conv2d(gate, expand.weight[:channels, :squeeze], expand.bias[:channels])
    return x * gate.sigmoid()


def _se_state(reduce: nn.Conv2d, expand: nn.Conv2d, channels: int, squeeze: int) -> dict[str, torch.Tensor]:
    return {"se.reduce.weight": reduce.weight[:squeeze, :channels], "se.reduce.bias": reduce.bias[:squeeze],
            "se.expand.weight": expand.weight[:channels, :squeeze], "se.expand.bias": expand.bias[:channels]}


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}


def slot_shapes(space: SearchSpace) -> list[list[SlotShape]]:
    """Per stage, the largest shape of each block slot over every choice the space offers."""
    shapes: list[list[SlotShape]] = []
    previous_widths = (space.network["stem_channels"],)
    for stage in space.stages:
        expand = max(stage.expand) if "mbconv" in stage.block else 1  # > 1: the stage has an expanding MBConv
        separable = "ds" in stage.block or ("mbconv" in stage.block and 1 in stage.expand)
        se_ratio = max(stage.se_ratio)
        slots = []
        for slot in range(max(stage.layers)):
            widest_in = max(previous_widths) if slot == 0 else max(stage.filters)
            slots.append(SlotShape(
                stride=stage.stride if slot == 0 else 1,
                in_channels=widest_in,
                out_channels=max(stage.filters),
                mid_channels=widest_in * expand if expand > 1 else 0,
                kernel=max(stage.kernel),
                se_channels=squeeze_channels(widest_in, se_ratio),
                separable_path=separable,
                conv_path="conv" in stage.block,
            ))
        shapes.append(slots)
        previous_widths = stage.filters
    return shapes


def supernet_parameters(space: SearchSpace, in_channels: int, num_classes: int) -> int:
    """The parameter count of the space's supernet, from its slot shapes (before allocating anything)."""
    stem, head = space.network["stem_channels"], space.network["head_channels"]
    total = stem * (in_channels * 9 + 2) + head * (max(space.stages[-1].filters) + 2) + (head + 1) * num_classes
    for slots in slot_shapes(space):
        for s in slots:
            paths = []
            if s.mid_channels:  # expand, depthwise (each with BN), project with BN; SE on the depthwise width
                total += s.mid_channels * (s.in_channels + 2 + s.kernel**2 + 2 + s.out_channels) + 2 * s.out_channels
                paths.append(s.mid_channels)
            if s.separable_path:  # depthwise with BN on the input width, project with BN; SE on the input width
                total += s.in_channels * (s.kernel**2 + 2 + s.out_channels) + 2 * s.out_channels
                paths.append(s.in_channels)
            if s.conv_path:  # conv with BN; SE on the output width
                total += s.out_channels * (s.in_channels * s.kernel**2 + 2)
                paths.append(s.out_channels)
            if s.se_channels:
                total += sum(2 * width * s.se_channels + s.se_channels + width for width in paths)
    return total


class Supernet(nn.Module):
    """Stem, the block slots of every stage, head conv (elastic input width), pool and classifier.

    Built for a space at the proxy's input channels, class count and resolution (`in_channels`,
    `num_classes`); `forward` and `extract` take a spec of the space with those three fields (see `fit`).
    """

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.space, self.in_channels, self.num_classes = space, in_channels, num_classes
        network = space.network
        self.shapes = slot_shapes(space)
        params = supernet_parameters(space, in_channels, num_classes)
        if params > MAX_PARAMETERS:
            raise NasError(f"space {space.name!r}: its supernet would hold {params:,} parameters (more than "
                           f"{MAX_PARAMETERS:,}); narrow the widest choices or search it stand-alone")
        self.stem_weight = _conv_weight(network["stem_channels"], in_channels, 3)
        self.stem_bn = ElasticBatchNorm(network["stem_channels"])
        self.stages = nn.ModuleList(nn.ModuleList(ElasticSlot(shape) for shape in slots) for slots in self.shapes)
        widest_last = max(space.stages[-1].filters)
        self.head_weight = _conv_weight(network["head_channels"], widest_last, 1)
        self.head_bn = ElasticBatchNorm(network["head_channels"])
        self.classifier = nn.Linear(network["head_channels"], num_classes)

    def fit(self, spec: Spec, resolution: int) -> Spec:
        """`spec` (a deployed-shape network of the space) at this supernet's input channels, classes and
        `resolution`; NasError if the spec is not an architecture of the space."""
        _check_in_space(self.space, spec)
        return spec.replace(in_channels=self.in_channels, num_classes=self.num_classes, resolution=resolution)

    def _blocks(self, spec: Spec) -> Iterator[tuple[ElasticSlot, BlockLayout]]:
        layout = block_layout(spec)
        index = 0
        for stage, slots in zip(spec.stages, self.stages):
            for slot in slots[:stage.repeats]:
                yield slot, layout[index]
                index += 1

    def forward(self, x: torch.Tensor, spec: Spec, dropout: float = 0.0) -> torch.Tensor:
        """The logits of architecture `spec` (already `fit`), computed with its slices of the weights."""
        x = F.silu(self.stem_bn(F.conv2d(x, self.stem_weight, None, 2, 1)))
        for slot, block in self._blocks(spec):
            x = slot(x, block)
        x = F.silu(self.head_bn(F.conv2d(x, self.head_weight[:, :x.shape[1]])))
        x = x.mean((2, 3))
        return self.classifier(F.dropout(x, dropout, self.training) if dropout else x)

    @torch.no_grad()
    def extract(self, spec: Spec) -> dict[str, torch.Tensor]:
        """The state dict of `build_model(spec)` (spec already `fit`) holding copies of this architecture's
        slices of the weights (and of the running statistics the supernet holds)."""
        state: dict[str, torch.Tensor] = {"stem.conv.weight": self.stem_weight}
        state.update(_prefixed("stem.bn.", self.stem_bn.state(self.stem_weight.shape[0])))
        for index, (slot, block) in enumerate(self._blocks(spec)):
            state.update(_prefixed(f"blocks.{index}.", slot.extract(block)))
        last = spec.stages[-1].out_channels
        state["head.conv.weight"] = self.head_weight[:, :last]
        state.update(_prefixed("head.bn.", self.head_bn.state(self.head_weight.shape[0])))
        state["classifier.weight"], state["classifier.bias"] = self.classifier.weight, self.classifier.bias
        return {key: value.detach().clone(memory_format=torch.contiguous_format) for key, value in state.items()}


def _check_in_space(space: SearchSpace, spec: Spec) -> None:
    try:
        encode(space, spec.replace(resolution=space.network["resolution"]))  # checks every stage's choices
    except NasError as exc:
        raise NasError(f"not an architecture of space {space.name!r}: {exc}") from None
