"""DescDis: the OpenCV-like facade. Duck-types a cv2 descriptor extractor (it cannot subclass
cv2.Feature2D: OpenCV 5 crashes calling `compute` on a Python subclass).

Differences from OpenCV: `compute` with zero keypoints returns an empty (0, D) float32 array
instead of None, and keypoints are never dropped (border keypoints are described from the
mirrored image).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from .detectors import DEFAULT_DETECTOR, detect, magnification_for
from .images import load_image
from .keypoints import as_keypoint_array
from .models import fold_batchnorm, load_model
from .patches import PATCH_SIZE, extract_patches


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) != "auto":
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class DescDis:
    """Distilled CNN patch descriptor with the cv2.Feature2D descriptor interface.

    model: a shipped name, a checkpoint path, an nn.Module, or None for the default student.
    magnification: patch side / KeyPoint.size; None takes the detector's documented value.
    half: fp16 network on CUDA (None: on for CUDA, off elsewhere).
    """

    def __init__(self, model=None, device="auto", batch_size: int = 2048, magnification: float | None = None,
                 half: bool | None = None, detector=DEFAULT_DETECTOR, max_keypoints: int | None = None,
                 patch_backend: str = "auto"):
        self.device = resolve_device(device)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.detector, self.max_keypoints, self.patch_backend = detector, max_keypoints, patch_backend
        self.magnification = float(magnification if magnification is not None else magnification_for(detector))
        if not np.isfinite(self.magnification) or self.magnification <= 0:
            raise ValueError(f"magnification must be positive, got {magnification}")
        self.half = (self.device.type == "cuda") if half is None else bool(half)
        network = model if isinstance(model, nn.Module) else load_model(model)
        self.name = getattr(network, "name", type(network).__name__)
        self.network = fold_batchnorm(network).to(self.device)
        if self.half:
            self.network = self.network.half()
        self.descriptor_size = int(network.descriptor_size)

    # -- the cv2.Feature2D descriptor interface -------------------------------------------------
    def compute(self, image, keypoints, descriptors=None):
        """Describe `keypoints` in `image`: returns (keypoints as given, float32 (N, D) unit rows).
        `descriptors` mirrors OpenCV's output argument and is not read."""
        gray = load_image(image)
        array = as_keypoint_array(keypoints, default_size=self.default_size)
        return keypoints, self._describe(gray, array)

    def detect(self, image, mask=None):
        return tuple(detect(image, self.detector, self.max_keypoints, mask))

    def detectAndCompute(self, image, mask=None, descriptors=None):  # noqa: N802
        """Detect with this extractor's detector and describe: (tuple of cv2.KeyPoint, float32 (N, D)).
        `descriptors` mirrors OpenCV's output argument and is not read."""
        gray = load_image(image)
        keypoints = tuple(detect(gray, self.detector, self.max_keypoints, mask))
        return keypoints, self._describe(gray, as_keypoint_array(list(keypoints), self.default_size))

    def descriptorSize(self) -> int:  # noqa: N802
        return self.descriptor_size

    def descriptorType(self) -> int:  # noqa: N802
        return cv2.CV_32F

    def defaultNorm(self) -> int:  # noqa: N802
        return cv2.NORM_L2

    def getDefaultName(self) -> str:  # noqa: N802
        return "Feature2D.DescDis"

    def empty(self) -> bool:
        return False

    # -- torch-level access -------------------------------------------------------------------
    @property
    def default_size(self) -> float:
        """KeyPoint size given to (N, 2) keypoints: their patch covers 32x32 image pixels."""
        return PATCH_SIZE / self.magnification

    def extract_patches(self, image, keypoints) -> torch.Tensor:
        """(N, 1, 32, 32) float32 patches in [0, 1] on this extractor's device."""
        array = as_keypoint_array(keypoints, default_size=self.default_size)
        return extract_patches(load_image(image), array, self.magnification, backend=self.patch_backend, device=self.device)

    @torch.inference_mode()
    def describe_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, 32, 32) patches -> (N, D) L2-normalised float32 descriptors, in batches."""
        if not isinstance(patches, torch.Tensor) or patches.ndim != 4 or tuple(patches.shape[1:]) != (1, PATCH_SIZE, PATCH_SIZE):
            shape = tuple(patches.shape) if isinstance(patches, torch.Tensor) else type(patches).__name__
            raise ValueError(f"patches must be a (N, 1, {PATCH_SIZE}, {PATCH_SIZE}) tensor, got {shape}")
        dtype = torch.float16 if self.half else torch.float32
        out = torch.empty((len(patches), self.descriptor_size), device=self.device)
        for start in range(0, len(patches), self.batch_size):
            batch = patches[start : start + self.batch_size].to(self.device, dtype)
            out[start : start + len(batch)] = self.network(batch.contiguous(memory_format=torch.channels_last)).float()
        return out

    def _describe(self, gray: np.ndarray, array: np.ndarray) -> np.ndarray:
        out = np.empty((len(array), self.descriptor_size), np.float32)
        for start in range(0, len(array), self.batch_size):
            chunk = array[start : start + self.batch_size]
            patches = extract_patches(gray, chunk, self.magnification, backend=self.patch_backend, device=self.device)
            out[start : start + len(chunk)] = self.describe_patches(patches).cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"DescDis(model={self.name!r}, device={str(self.device)!r}, magnification={self.magnification})"
