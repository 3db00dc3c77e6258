"""Inference-time form of a descriptor network: BatchNorm folded into the preceding convolution.

Folding removes one pass over every activation map; the output is unchanged up to float
rounding (tested). Training always uses the unfolded module.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with every Conv2d -> BatchNorm2d pair inside a Sequential fused."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
    return model


def _fold_sequential(seq: nn.Sequential) -> None:
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        conv, bn = seq._modules[first], seq._modules[second]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            seq._modules[first] = _fused(conv, bn)
            seq._modules[second] = nn.Identity()


@torch.no_grad()
def _fused(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    fused = copy.deepcopy(conv)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter(bias * scale + shift)
    return fused
