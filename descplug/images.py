"""Image input: paths or arrays -> one grey float32 image in [0, 1].

Accepted arrays: 2-D grey or 3-D BGR/BGRA (OpenCV channel order) in uint8, uint16 or
floating point. Floating-point images are taken to be in [0, 1] when their maximum is at
most 1, else in [0, 255].
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

ImageLike = "str | os.PathLike | np.ndarray"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as OpenCV does (BGR or grey, original bit depth)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError(f"cannot decode image file (not an image or corrupt): {path}")
    return image


def load_image(image, name: str | None = None) -> np.ndarray:
    """Return `image` (a path or an array) as a grey float32 (H, W) array in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        name = name or str(image)
        image = read_image(image)
    name = name or "image"
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array or a path, got {type(image).__name__}")
    if image.size == 0:
        raise ValueError(f"{name}: empty image (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):
            raise ValueError(f"{name}: expected 1, 3 (BGR) or 4 (BGRA) channels, got shape {image.shape}")
    elif image.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D grey or 3-D colour image, got shape {image.shape}")
    gray = _to_unit_float(image, name)
    if gray.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if gray.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        gray = cv2.cvtColor(gray, code)
    return np.ascontiguousarray(gray, dtype=np.float32)


def _to_unit_float(image: np.ndarray, name: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
        if not np.isfinite(image).all():
            raise ValueError(f"{name}: image contains NaN or infinite values")
        return image if image.max() <= 1.0 else image / 255.0
    raise TypeError(f"{name}: unsupported image dtype {image.dtype} (use uint8, uint16 or float)")


def to_uint8(gray: np.ndarray) -> np.ndarray:
    """Grey float image in [0, 1] -> uint8, as OpenCV detectors expect."""
    return np.clip(gray * 255.0 + 0.5, 0, 255).astype(np.uint8)
