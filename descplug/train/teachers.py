"""Frozen teachers for distillation and an on-disk cache of their outputs.

A teacher is either ``"rootsift"`` (kornia's SIFTDescriptor on the 32x32 patch, RootSIFT
normalisation) or anything :func:`descplug.models.zoo.load_model` accepts (a shipped name or a
checkpoint path). Outputs for a patch set are computed once and cached as float16 ``.npy`` files
keyed by the teacher's identity and the patch set's digest.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

ROOTSIFT = "rootsift"


class Teacher:
    """A frozen descriptor: ``teacher(patches (N,1,32,32) float [0,1]) -> (N, D)`` unit vectors."""

    def __init__(self, spec: str, device: str = "cpu"):
        self.spec = str(spec)
        self.device = device
        if self.spec == ROOTSIFT:
            import kornia.feature

            self.net = kornia.feature.SIFTDescriptor(32, rootsift=True)
            self.identity = ROOTSIFT
        else:
            from descplug.models.zoo import load_model

            self.net = load_model(self.spec, device=device)
            path = Path(self.spec)
            self.identity = (f"{path.stem}-{_file_digest(path)}" if path.is_file()
                             else self.spec.replace("/", "_"))
        self.net = self.net.to(device).eval()
        for param in self.net.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, patches: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        out = [self.net(patches[i:i + batch_size].to(self.device)).flatten(1).float().cpu()
               for i in range(0, patches.shape[0], batch_size)]
        return torch.nn.functional.normalize(torch.cat(out), dim=1)

    def __repr__(self) -> str:
        return f"Teacher({self.spec!r})"


def _file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def cached_outputs(teacher: Teacher, patches: torch.Tensor, digest: str, cache_dir: str | Path,
                   batch_size: int = 1024) -> torch.Tensor:
    """Teacher outputs for ``patches`` (N,1,32,32), cached under ``cache_dir``.

    ``digest`` identifies the patch set (see :meth:`descplug.train.data.PairSet.digest`); the cache
    file is ``<teacher identity>-<digest>.npy`` (float16).
    """
    cache = Path(cache_dir) / f"{teacher.identity}-{digest}.npy"
    if cache.is_file():
        out = np.load(cache)
        if out.shape[0] != patches.shape[0]:
            raise ValueError(f"{cache} holds {out.shape[0]} rows for {patches.shape[0]} patches; delete it")
        return torch.from_numpy(out.astype(np.float32))
    out = teacher(patches, batch_size).numpy().astype(np.float16)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(cache)
    return torch.from_numpy(out.astype(np.float32))
