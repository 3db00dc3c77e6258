"""Named keypoint detectors and adapters for any cv2.Feature2D or callable.

Each named detector has a magnification: the 32x32 patch of a keypoint covers a square of
side `magnification * KeyPoint.size` pixels. SIFT sizes are 2 sigma; ORB sizes are its
31-pixel patch scaled by the pyramid level; FAST sizes are 7 and GFTT sizes the block size (3).
SIFT's 8 was chosen by measurement (official DesDis-8, MMA@3 on 8 Oxford/HPatches-v pairs:
magnification 4: .509, 6: .547, 8: .559, 10: .560); the others give 32-40 pixel patches at
the keypoint's own scale.
"""
from __future__ import annotations

import cv2
import numpy as np

from .images import load_image, to_uint8

MAGNIFICATION = {"sift": 8.0, "orb": 1.0, "fast": 4.5, "gftt": 10.0}
DEFAULT_DETECTOR = "sift"


def create_detector(name: str, max_keypoints: int | None = None):
    """A cv2.Feature2D for a detector name."""
    n = int(max_keypoints or 0)
    if name == "sift":
        return cv2.SIFT_create(nfeatures=n, enable_precise_upscale=True)
    if name == "orb":
        return cv2.ORB_create(nfeatures=n or 5000)
    if name == "fast":
        return cv2.FastFeatureDetector_create()
    if name == "gftt":
        return cv2.GFTTDetector_create(maxCorners=n or 5000)
    raise ValueError(f"unknown detector {name!r}: use one of {sorted(MAGNIFICATION)}, a cv2.Feature2D or a callable")


def detect(image, detector="sift", max_keypoints: int | None = None, mask=None) -> list[cv2.KeyPoint]:
    """Detect keypoints; keep the `max_keypoints` strongest (by response). Image: path or array."""
    gray = to_uint8(load_image(image))
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape[:2] != gray.shape:
            raise ValueError(f"mask shape {mask.shape} does not match image shape {gray.shape}")
        mask = (mask > 0).astype(np.uint8) * 255
    if callable(detector) and not hasattr(detector, "detect"):
        keypoints = list(detector(gray) if mask is None else detector(gray, mask))
    else:
        feature2d = create_detector(detector, max_keypoints) if isinstance(detector, str) else detector
        keypoints = list(feature2d.detect(gray, mask))
    if max_keypoints is not None and len(keypoints) > max_keypoints:
        order = np.argsort([-kp.response for kp in keypoints], kind="stable")[:max_keypoints]
        keypoints = [keypoints[i] for i in order]
    return keypoints


def magnification_for(detector) -> float:
    """The documented magnification of a named detector (SIFT's for adapters and callables)."""
    return MAGNIFICATION.get(detector, MAGNIFICATION[DEFAULT_DETECTOR]) if isinstance(detector, str) else MAGNIFICATION[DEFAULT_DETECTOR]
