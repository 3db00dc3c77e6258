"""TFeat (Balntas et al., BMVC 2016) and HardTFeat (TFeat trained with the HardNet loss, AffNet repo).

TFeat loads the official `tfeat-*.params`; HardTFeat loads `HardTFeat.pth` (its unused SIFT
buffers are ignored). Outputs are L2-normalised here (the original TFeat's are not).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class TFeat(nn.Module):
    arch = "tfeat"
    descriptor_size = 128
    config: dict = {}

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.InstanceNorm2d(1, affine=False), nn.Conv2d(1, 32, 7), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 6), nn.Tanh()
        )
        self.descr = nn.Sequential(nn.Linear(64 * 8 * 8, 128), nn.Tanh())

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.descr(self.features(patches).flatten(1)), dim=1)


class HardTFeat(nn.Module):
    arch = "hardtfeat"
    descriptor_size = 128
    config: dict = {}

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 7), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 6), nn.Tanh())
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(64, 128, 8), nn.Tanh())

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        std, mean = torch.std_mean(patches, dim=(1, 2, 3), keepdim=True)
        x = self.classifier(self.features((patches - mean) / (std + 1e-7)))
        return F.normalize(x.flatten(1), dim=1)
