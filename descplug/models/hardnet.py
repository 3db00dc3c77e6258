"""L2-Net/HardNet-size network (Mishchuk et al. 2017) and SOSNet (Tian et al. 2019).

State dicts are those of kornia.feature.HardNet / SOSNet (and the original releases), so their
checkpoints load. Input: (N, 1, 32, 32) patches; each patch is standardised first.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def _l2net_layers(norm_first: bool) -> list[nn.Module]:
    spec = [(1, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1)]
    layers: list[nn.Module] = [nn.InstanceNorm2d(1, affine=False)] if norm_first else []
    for cin, cout, stride in spec:
        layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout, affine=False), nn.ReLU()]
    layers += [nn.Dropout(0.3), nn.Conv2d(128, 128, 8, bias=False), nn.BatchNorm2d(128, affine=False)]
    return layers


class HardNet(nn.Module):
    arch = "hardnet"
    descriptor_size = 128
    config: dict = {}

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*_l2net_layers(norm_first=False))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        std, mean = torch.std_mean(patches, dim=(1, 2, 3), keepdim=True)
        x = self.features((patches - mean) / (std + 1e-6))
        return F.normalize(x.flatten(1), dim=1)


class SOSNet(nn.Module):
    arch = "sosnet"
    descriptor_size = 128
    config: dict = {}

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*_l2net_layers(norm_first=True))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.layers(patches).flatten(1), dim=1)
