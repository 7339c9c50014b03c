"""A network for small images, trained from scratch: the fast CPU student of ``headstart distill``.

``resnet_small`` is a CIFAR-style residual network (He et al. 2016, section 4.2: a 3×3 stem
and no early downsampling, because a 32-px image has no pixels to spare) with four stages of
basic blocks at widths 16, 32, 64, 128 and strides 1, 2, 2, 2: about 0.3 M parameters and
~17 M multiply-adds per 32-px image, against Lite0's ~100 M at 112 px. It has no ImageNet
weights and needs none: a student learns its features from a teacher's soft labels on the
unlabeled pool, at the images' own resolution. Each block has timm's ``drop_path`` slot, so
``--drop-path-rate`` (stochastic depth, the Noisy Student noise) applies.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (16, 32, 64, 128)
STRIDES = (1, 2, 2, 2)
NATIVE_SIZE = 32


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus the shortcut (a strided 1×1 conv where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.drop_path: nn.Module = nn.Identity()
        nn.init.zeros_(self.bn2.weight)  # each residual branch starts as the identity (Goyal et al. 2017)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        return self.act(self.shortcut(x) + self.drop_path(out))


class SmallResNet(nn.Module):
    """Stem + one basic block per stage; the head is the ``Backbone``'s."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, strides: tuple[int, ...] = STRIDES) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        cin = widths[0]
        blocks = []
        for w, s in zip(widths, strides):
            blocks.append(BasicBlock(cin, w, s))
            cin = w
        self.blocks = nn.ModuleList(blocks)
        self.num_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def split_small(m: SmallResNet) -> tuple[list[nn.Module], list[str], int, int]:
    stages = [m.stem, *m.blocks]
    return stages, ["stem"] + [f"block{i + 1}" for i in range(len(m.blocks))], m.num_features, len(stages) - 1
