"""Aligning an estimated set of cameras to ground truth: similarity (Umeyama), its robust
refit, and the chordal mean rotation between two world frames."""
from __future__ import annotations

from itertools import combinations

import numpy as np


def umeyama(source, target):
    """Similarity (s, R, t) minimising |s R source + t - target|^2; (N, 3) points, N >= 3."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    U, S, Vt = np.linalg.svd(b.T @ a / len(source))
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / max((a * a).sum() / len(source), 1e-12)
    return s, R, mu_t - s * R @ mu_s


def robust_similarity(source, target, threshold):
    """Umeyama refitted on the inliers of the best triplet fit: (s, R, t, inlier mask); N >= 3."""
    best = None
    for triplet in combinations(range(len(source)), 3):
        s, R, t = umeyama(source[list(triplet)], target[list(triplet)])
        inliers = np.linalg.norm(s * source @ R.T + t - target, axis=1) < threshold
        if best is None or inliers.sum() > best.sum():
            best = inliers
    if best.sum() < 3:
        best = np.ones(len(source), bool)
    return (*umeyama(source[best], target[best]), best)


def rotation_alignment(estimated, truth):
    """Rotation A minimising sum |R_est A - R_gt|^2 (chordal mean): world rotations of two frames."""
    U, _, Vt = np.linalg.svd(sum(e.T @ g for e, g in zip(estimated, truth)))
    return U @ np.diag([1, 1, np.linalg.det(U @ Vt)]) @ Vt


def centre(R, t):
    """Camera centre of a world-to-camera pose."""
    return -R.T @ t
