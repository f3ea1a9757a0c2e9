"""ResNet-50 and ResNet-152 (v1.5, torchvision layout) built here as the paper's latency baselines.

Convs sit in `.conv`/`.bn`/`.act` blocks like nas.model.builder's, so the same folding and backends apply.
"""

import torch
from torch import nn


class ConvBNAct(nn.Module):
    """Bias-free conv, batch norm, optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, as in v1.5), 1x1 expand x4, projection shortcut when shapes change."""

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(ConvBNAct(cin, width, 1), ConvBNAct(width, width, 3, stride),
                                  ConvBNAct(width, cout, 1, relu=False))
        self.shortcut = ConvBNAct(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def resnet(depths: tuple[int, int, int, int], num_classes: int = 1000) -> nn.Sequential:
    """A bottleneck ResNet with the given blocks per stage (50: 3,4,6,3; 152: 3,8,36,3)."""
    layers: list[nn.Module] = [ConvBNAct(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, repeats in enumerate(depths):
        width = 64 * 2 ** stage
        for i in range(repeats):
            layers.append(Bottleneck(cin, width, 2 if i == 0 and stage > 0 else 1))
            cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def resnet50() -> nn.Sequential:
    return resnet((3, 4, 6, 3))


def resnet152() -> nn.Sequential:
    return resnet((3, 8, 36, 3))
