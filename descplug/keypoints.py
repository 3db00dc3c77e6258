"""Every accepted keypoint form -> one internal (N, 4) float32 array [x, y, size, angle].

Conventions (OpenCV's and hloc's):
- pixel coordinates: the centre of the top-left pixel is (0, 0);
- size: OpenCV's `KeyPoint.size`, a diameter (about 2 sigma for SIFT);
- angle: OpenCV degrees, clockwise in image coordinates (y points down); -1 (no orientation)
  is read as 0. kornia LAF orientation is the negative of this angle.
The 32x32 patch of a keypoint covers a square of side `magnification * size` pixels.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch


def as_keypoint_array(keypoints, default_size: float) -> np.ndarray:
    """Convert keypoints to an (N, 4) float32 array [x, y, size, angle].

    Accepted: a list/tuple of cv2.KeyPoint; an (N, 2) array (x, y; `default_size` is used),
    (N, 3) (x, y, size) or (N, 4) (x, y, size, angle); a torch LAF tensor (1, N, 2, 3).
    """
    if isinstance(keypoints, torch.Tensor):
        array = laf_to_array(keypoints)
    elif isinstance(keypoints, (list, tuple)) and (len(keypoints) == 0 or isinstance(keypoints[0], cv2.KeyPoint)):
        array = _from_cv(keypoints)
    else:
        array = _from_array(keypoints, default_size)
    _check_values(array)
    return array


def _from_cv(keypoints) -> np.ndarray:
    array = np.empty((len(keypoints), 4), np.float32)
    for i, kp in enumerate(keypoints):
        if not isinstance(kp, cv2.KeyPoint):
            raise TypeError(f"keypoint {i}: expected cv2.KeyPoint, got {type(kp).__name__}")
        array[i] = (kp.pt[0], kp.pt[1], kp.size, kp.angle)
    return array


def _from_array(keypoints, default_size: float) -> np.ndarray:
    try:
        array = np.asarray(keypoints)
    except (TypeError, ValueError) as error:
        raise TypeError(f"keypoints: cannot read as an array ({error})") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"keypoints: expected cv2.KeyPoint objects or a numeric array, got dtype {array.dtype}")
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] not in (2, 3, 4):
        raise ValueError(f"keypoints: expected shape (N, 2), (N, 3) or (N, 4), got {array.shape}")
    out = np.zeros((len(array), 4), np.float32)
    out[:, 2] = default_size
    out[:, : array.shape[1]] = array
    return out


def laf_to_array(laf: torch.Tensor) -> np.ndarray:
    """kornia LAF (1, N, 2, 3) -> [x, y, size, angle]; size = 2 * sqrt(|det A|)."""
    if laf.ndim != 4 or laf.shape[0] != 1 or laf.shape[2:] != (2, 3):
        raise ValueError(f"LAF keypoints: expected shape (1, N, 2, 3), got {tuple(laf.shape)}")
    a = laf[0].detach().double().cpu().numpy()
    scale = np.sqrt(np.abs(a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]))
    angle = np.degrees(np.arctan2(a[:, 1, 0], a[:, 0, 0])) % 360.0
    return np.stack([a[:, 0, 2], a[:, 1, 2], 2 * scale, angle], axis=1).astype(np.float32)


def array_to_laf(array: np.ndarray) -> torch.Tensor:
    """[x, y, size, angle] -> kornia LAF (1, N, 2, 3) with scale size / 2 (inverse of laf_to_array)."""
    x, y, size, angle = (torch.from_numpy(np.asarray(array[:, i], np.float64)) for i in range(4))
    theta = torch.deg2rad(torch.where(angle < 0, torch.zeros_like(angle), angle))
    s = size / 2
    laf = torch.stack(
        [torch.stack([s * theta.cos(), -s * theta.sin(), x], -1), torch.stack([s * theta.sin(), s * theta.cos(), y], -1)],
        dim=1,
    )
    return laf.unsqueeze(0).float()


def _check_values(array: np.ndarray) -> None:
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise ValueError(f"keypoint {int(np.flatnonzero(bad)[0])}: NaN or infinite value in {array[bad][0].tolist()}")
    bad = array[:, 2] <= 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"keypoint {i}: size must be positive, got {float(array[i, 2])}")


def to_cv_keypoints(array: np.ndarray, responses=None) -> list[cv2.KeyPoint]:
    """(N, 2..4) [x, y, size, angle] -> cv2.KeyPoint list (size 1 and angle -1 where missing)."""
    array = np.asarray(array, np.float64)
    out = []
    for i, row in enumerate(array):
        size = row[2] if array.shape[1] > 2 else 1.0
        angle = row[3] if array.shape[1] > 3 else -1.0
        response = float(responses[i]) if responses is not None else 0.0
        out.append(cv2.KeyPoint(float(row[0]), float(row[1]), float(size), float(angle), response))
    return out


def orientation_radians(angles: np.ndarray) -> np.ndarray:
    """OpenCV angles (degrees, -1 = none) -> radians, with 'none' read as 0."""
    return np.where(angles < 0, 0.0, angles) * (math.pi / 180.0)
