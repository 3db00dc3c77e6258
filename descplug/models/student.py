"""The DesDis light-weight student family (Liu & Dong, IJCV 2024), base width d = 8..32.

Layout (module names match the official checkpoints, which load unmodified):
InstanceNorm; conv3x3 s2 (1->d) BN ReLU; conv3x3 s2 (d->2d) BN ReLU; conv3x3 s2 (2d->4d) BN ReLU
conv3x3 s1 (4d->4d) BN ReLU; dropout; conv4x4 (4d->128, bias) BN; L2-normalise.
All BatchNorms are non-affine. Input: (N, 1, 32, 32) patches, any intensity scale.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout, affine=False), nn.ReLU()]


class DesDisNet(nn.Module):
    arch = "desdis"

    def __init__(self, width: int = 8, dim: int = 128, dropout: float = 0.1):
        super().__init__()
        if width < 1 or dim < 1:
            raise ValueError(f"DesDisNet: width and dim must be positive, got {width}, {dim}")
        self.width, self.descriptor_size = width, dim
        self.layer1 = nn.Sequential(nn.InstanceNorm2d(1, affine=False), *_conv_bn_relu(1, width, 2))
        self.layer2 = nn.Sequential(*_conv_bn_relu(width, 2 * width, 2))
        self.layer3 = nn.Sequential(*_conv_bn_relu(2 * width, 4 * width, 2), *_conv_bn_relu(4 * width, 4 * width, 1))
        self.desc = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(4 * width, dim, 4, bias=True), nn.BatchNorm2d(dim, affine=False))

    @property
    def config(self) -> dict:
        return {"width": self.width, "dim": self.descriptor_size}

    def unnormalised(self, patches: torch.Tensor) -> torch.Tensor:
        """The (N, dim) descriptors before L2 normalisation."""
        return self.desc(self.layer3(self.layer2(self.layer1(patches)))).flatten(1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.unnormalised(patches), dim=1)
