"""Scale- and orientation-aware patch extraction: (H, W) grey image + keypoints -> (N, 1, P, P).

Geometry: the patch of keypoint (x, y, size, angle) covers a square of side
`magnification * size` image pixels centred on (x, y), its x axis along the keypoint's
orientation (OpenCV angle, clockwise in image coordinates). Patch pixel (i, j) samples image
point (x, y) + step * R(angle) @ (j - (P-1)/2, i - (P-1)/2), step = magnification * size / P.

Anti-aliasing: each keypoint is sampled bilinearly from the level of a Gaussian pyramid
(OpenCV's pyrDown: 5-tap binomial blur, keep even pixels) whose pixel step is the largest
power of two not above `step`, so the remaining step is in [1, 2). Level l pixel u is image
pixel 2**l * u. Pixels outside the image are read from its mirror (BORDER_REFLECT_101), so
no keypoint is dropped.

Backends share this geometry: "cv2" (one cv2.remap per pyramid level and chunk; fastest on
CPU) and "torch" (batched grid_sample; for GPUs). "auto" picks cv2 on CPU.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .keypoints import orientation_radians

PATCH_SIZE = 32
CHUNK = 1000  # keypoints per remap / grid_sample call: bounds the maps; cv2.remap needs sides < 32767
_REMAP_MAX_SIDE = 32767
_MIN_LEVEL_SIDE = 8


def extract_patches(
    gray: np.ndarray,
    keypoints: np.ndarray,
    magnification: float,
    patch_size: int = PATCH_SIZE,
    backend: str = "auto",
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Cut one (1, P, P) float32 patch per keypoint from a grey float32 image in [0, 1]."""
    device = torch.device(device)
    if backend == "auto":
        backend = "cv2" if device.type == "cpu" else "torch"
    if backend not in ("cv2", "torch"):
        raise ValueError(f"unknown patch backend {backend!r}: use 'auto', 'cv2' or 'torch'")
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, 4)
    if len(keypoints) == 0:
        return torch.empty((0, 1, patch_size, patch_size), device=device)
    levels, steps = sampling_levels(keypoints, magnification, patch_size, gray.shape)
    if backend == "cv2":
        pyramid = cv2_pyramid(gray, int(levels.max()))
        sample = _sample_cv2
    else:
        pyramid = torch_pyramid(torch.from_numpy(gray).to(device), int(levels.max()))
        sample = _sample_torch
    out = torch.empty((len(keypoints), 1, patch_size, patch_size), device=device)
    for level in np.unique(levels):
        index = np.flatnonzero(levels == level)
        for start in range(0, len(index), CHUNK):
            chunk = index[start : start + CHUNK]
            map_x, map_y = sampling_grid(keypoints[chunk], steps[chunk], int(level), patch_size)
            out[torch.from_numpy(chunk).to(device)] = sample(pyramid[level], map_x, map_y, patch_size, device)
    return out


def sampling_levels(keypoints: np.ndarray, magnification: float, patch_size: int, shape) -> tuple[np.ndarray, np.ndarray]:
    """Pyramid level and image-pixel step of each keypoint's patch."""
    steps = magnification * keypoints[:, 2].astype(np.float64) / patch_size
    levels = np.floor(np.log2(np.maximum(steps, 1.0))).astype(np.int64)
    return np.minimum(levels, max_level(shape)), steps


def max_level(shape) -> int:
    """Deepest pyramid level whose shorter side is still at least _MIN_LEVEL_SIDE pixels."""
    side = min(shape[:2])
    level = 0
    while side // 2 >= _MIN_LEVEL_SIDE:
        side = (side + 1) // 2
        level += 1
    return level


def sampling_grid(keypoints: np.ndarray, steps: np.ndarray, level: int, patch_size: int):
    """Coordinates (in level-`level` pixels) of every patch pixel: two (n*P, P) float32 maps."""
    offsets = np.arange(patch_size, dtype=np.float64) - (patch_size - 1) / 2.0
    theta = orientation_radians(keypoints[:, 3].astype(np.float64))
    scale = steps / 2.0**level
    cos, sin = (np.cos(theta) * scale)[:, None, None], (np.sin(theta) * scale)[:, None, None]
    u, v = offsets[None, None, :], offsets[None, :, None]
    cx = (keypoints[:, 0].astype(np.float64) / 2.0**level)[:, None, None]
    cy = (keypoints[:, 1].astype(np.float64) / 2.0**level)[:, None, None]
    map_x = cx + cos * u - sin * v
    map_y = cy + sin * u + cos * v
    n = len(keypoints)
    return (map_x.reshape(n * patch_size, patch_size).astype(np.float32),
            map_y.reshape(n * patch_size, patch_size).astype(np.float32))


def cv2_pyramid(gray: np.ndarray, levels: int) -> list[np.ndarray]:
    pyramid = [np.ascontiguousarray(gray, np.float32)]
    for _ in range(levels):
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    return pyramid


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def torch_pyramid(gray: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The same pyramid as cv2.pyrDown: binomial blur with mirrored borders, even pixels kept."""
    image = gray.float()[None, None]
    kernel = _BINOMIAL.to(image.device)
    pyramid = [image]
    for _ in range(levels):
        padded = F.pad(pyramid[-1], (2, 2, 2, 2), mode="reflect")
        blurred = F.conv2d(F.conv2d(padded, kernel.view(1, 1, 1, 5)), kernel.view(1, 1, 5, 1))
        pyramid.append(blurred[:, :, ::2, ::2])
    return pyramid


def _sample_cv2(level_image, map_x, map_y, patch_size, device):
    if max(level_image.shape) >= _REMAP_MAX_SIDE:  # beyond cv2.remap's limit: same geometry in torch
        return _sample_torch(torch.from_numpy(level_image)[None, None], map_x, map_y, patch_size, device)
    patches = cv2.remap(level_image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return torch.from_numpy(patches).view(-1, 1, patch_size, patch_size).to(device)


def _sample_torch(level_image, map_x, map_y, patch_size, device):
    h, w = level_image.shape[-2:]
    gx = torch.from_numpy(map_x).to(device) * (2.0 / max(w - 1, 1)) - 1.0
    gy = torch.from_numpy(map_y).to(device) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[None]
    patches = F.grid_sample(level_image, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    return patches.view(-1, 1, patch_size, patch_size)
