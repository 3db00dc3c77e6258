"""Descriptor matching: nearest neighbour with mutual check, Lowe's ratio and a distance limit.

Descriptors are L2-normalised before matching, so distances are in [0, 2] and
`score = (1 + cosine) / 2`, as hloc's nearest-neighbour matcher reports. Similarities are
computed in row chunks (memory stays bounded), on CPU or GPU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ROW_CHUNK = 4096


@torch.no_grad()
def match_descriptors(d0, d1, mutual: bool = True, ratio: float | None = None, max_distance: float | None = None,
                      device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Match (N0, D) to (N1, D): matches0 int64 (N0,) (index into d1 or -1) and scores0 float32 (N0,)."""
    a, b = _as_tensor(d0, device), _as_tensor(d1, device)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"descriptor sizes differ: {a.shape[1]} vs {b.shape[1]}")
    n0, n1 = len(a), len(b)
    matches0 = torch.full((n0,), -1, dtype=torch.int64, device=a.device)
    scores0 = torch.zeros(n0, device=a.device)
    if n0 == 0 or n1 == 0:
        return matches0.cpu().numpy(), scores0.cpu().numpy()
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    k = 2 if n1 > 1 else 1
    best_sim, best_idx, second_sim = torch.empty(n0, device=a.device), torch.empty(n0, dtype=torch.int64, device=a.device), None
    if ratio is not None and k == 2:
        second_sim = torch.empty(n0, device=a.device)
    col_best = torch.full((n1,), -2.0, device=a.device)
    col_arg = torch.zeros(n1, dtype=torch.int64, device=a.device)
    for start in range(0, n0, ROW_CHUNK):
        sim = a[start : start + ROW_CHUNK] @ b.T
        top = sim.topk(k, dim=1)
        best_sim[start : start + len(sim)], best_idx[start : start + len(sim)] = top.values[:, 0], top.indices[:, 0]
        if second_sim is not None:
            second_sim[start : start + len(sim)] = top.values[:, 1]
        chunk_best, chunk_arg = sim.max(dim=0)
        better = chunk_best > col_best
        col_best = torch.where(better, chunk_best, col_best)
        col_arg = torch.where(better, chunk_arg + start, col_arg)
    dist = _distance(best_sim)
    keep = torch.ones(n0, dtype=torch.bool, device=a.device)
    if mutual:
        keep &= col_arg[best_idx] == torch.arange(n0, device=a.device)
    if second_sim is not None:
        keep &= dist <= ratio * _distance(second_sim)
    if max_distance is not None:
        keep &= dist <= max_distance
    matches0 = torch.where(keep, best_idx, matches0)
    scores0 = torch.where(keep, (1 + best_sim) / 2, scores0)
    return matches0.cpu().numpy(), scores0.float().cpu().numpy()


def matches_to_pairs(matches0: np.ndarray) -> np.ndarray:
    """matches0 (N0,) with -1 for none -> (M, 2) int64 index pairs (i0, i1)."""
    matches0 = np.asarray(matches0)
    valid = np.flatnonzero(matches0 >= 0)
    return np.stack([valid, matches0[valid]], axis=1).astype(np.int64)


def _distance(sim: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(torch.clamp(2 - 2 * sim, min=0))


def _as_tensor(desc, device) -> torch.Tensor:
    tensor = desc if isinstance(desc, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(desc))
    if tensor.ndim != 2:
        raise ValueError(f"descriptors must be 2-D (N, D), got shape {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=torch.float32)
