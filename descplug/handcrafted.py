"""Hand-crafted baselines: OpenCV SIFT descriptors at given keypoints, and RootSIFT."""
from __future__ import annotations

import cv2
import numpy as np

from .images import load_image, to_uint8


def sift_compute(image, keypoints: list[cv2.KeyPoint]) -> np.ndarray:
    """OpenCV SIFT descriptors (N, 128) float32 at exactly the given keypoints, in order."""
    gray = to_uint8(load_image(image))
    if len(keypoints) == 0:
        return np.empty((0, 128), np.float32)
    out_kps, desc = cv2.SIFT_create().compute(gray, list(keypoints))
    if desc is None or len(out_kps) != len(keypoints):
        raise RuntimeError(f"OpenCV SIFT described {0 if desc is None else len(out_kps)} of {len(keypoints)} keypoints")
    return desc.astype(np.float32)


def rootsift(desc: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, then square root; rows have L2 norm 1."""
    desc = np.asarray(desc, np.float32)
    return np.sqrt(desc / (np.abs(desc).sum(axis=1, keepdims=True) + eps))
