"""Method specs -> describers.

A spec is ``"sift"``, ``"rootsift"``, a shipped model name or a checkpoint path. Every describer has
a ``name`` (the METHOD key of the results: the baseline name, the model name or the checkpoint file
stem) and two calls:

- ``describe(image, keypoints)``: grey float32 image in [0, 1] and a list of cv2.KeyPoint ->
  float32 (N, D) descriptors, one per keypoint, in order;
- ``describe_patches(patches)``: float32 (N, 32, 32) patches in [0, 1] -> float32 (N, D).
"""

import cv2
import numpy as np
import torch

from descplug import DescDis
from descplug.detectors import detect
from descplug.handcrafted import rootsift, sift_compute
from descplug.images import load_image
from descplug.models import shipped_models
from descplug.models.zoo import resolve

from . import report

BASELINES = ("sift", "rootsift")
# The official HPatches SIFT baseline describes a P x P patch at a centre keypoint of size P / 5.303.
SIFT_PATCH_RATIO = 5.303


class Handcrafted:
    """OpenCV SIFT or RootSIFT."""

    def __init__(self, name):
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}: use one of {', '.join(BASELINES)}")
        self.name = name

    def _finish(self, desc):
        return rootsift(desc) if self.name == "rootsift" else desc

    def describe(self, image, keypoints):
        return self._finish(sift_compute(image, keypoints))

    def describe_patches(self, patches):
        if len(patches) == 0:
            return np.empty((0, 128), np.float32)
        side = patches.shape[-1]
        centre = [cv2.KeyPoint(side / 2.0, side / 2.0, side / SIFT_PATCH_RATIO)]
        return self._finish(np.concatenate([sift_compute(patch, centre) for patch in patches]))


class Learned:
    """A descplug model (shipped name or checkpoint path) through the DescDis facade."""

    def __init__(self, spec, device="auto", detector="sift"):
        self.model = DescDis(model=spec, device=device, detector=detector)  # the detector's magnification
        self.name = self.model.name

    def describe(self, image, keypoints):
        described, desc = self.model.compute(image, keypoints)
        if len(described) != len(keypoints):
            raise RuntimeError(f"{self.name} described {len(described)} of {len(keypoints)} keypoints")
        return np.asarray(desc, np.float32)

    def describe_patches(self, patches):
        tensor = torch.from_numpy(np.ascontiguousarray(patches, np.float32))[:, None]
        return self.model.describe_patches(tensor).float().cpu().numpy()


def shipped_names():
    """Names of the shipped students (``weights/*.pt``), sorted."""
    return sorted(shipped_models())


def method_name(spec):
    """The METHOD key of a spec without loading it: the baseline name or the checkpoint file stem."""
    return spec if spec in BASELINES else resolve(spec).stem


def method_specs(baselines, models):
    """Specs in table order: baselines (comma-separated string or list), then models (empty ones dropped)."""
    if isinstance(baselines, str):
        baselines = [b.strip() for b in baselines.split(",") if b.strip()]
    return list(baselines) + [m for m in models if m]


def load_methods(specs, device="auto", detector="sift"):
    """One describer per spec (models take the patch magnification of `detector`); METHOD names must be
    unique."""
    methods = [Handcrafted(spec) if spec in BASELINES else Learned(spec, device, detector) for spec in specs]
    names = [m.name for m in methods]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"two methods share the name {', '.join(duplicates)}: "
                         "pass each model once (checkpoints are named by file stem)")
    if not methods:
        raise ValueError("no method to evaluate: give --baselines and/or --model")
    return methods


def detect_and_describe(path, methods, detector="sift", max_keypoints=None):
    """Load and detect once, describe with every method: (image shape, (N, 2) points, {name: descriptors}).

    A failed image is reported and gives None; a method that fails on it is reported and left out."""
    try:
        image = load_image(path)
        keypoints = detect(image, detector, max_keypoints)
    except Exception as error:
        report.failure(f"image {path}", error)
        return None
    descriptors = {}
    for method in methods:
        try:
            descriptors[method.name] = method.describe(image, keypoints)
        except Exception as error:
            report.failure(f"{method.name} on image {path}", error)
    points = np.array([kp.pt for kp in keypoints], np.float64).reshape(-1, 2)
    return image.shape, points, descriptors
