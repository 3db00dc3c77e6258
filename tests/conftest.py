"""Test configuration: the `shared` marker and fixtures used across the suite."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED = Path(os.environ.get("DESCPLUG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    if os.environ.get("DESCPLUG_REQUIRE_SHARED") == "1":
        raise pytest.UsageError(f"DESCPLUG_REQUIRE_SHARED=1 but the shared data folder {SHARED} is missing")
    skip = pytest.mark.skip(reason=f"needs {SHARED}")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_root() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def recipe_script():
    """``recipe_script(name)``: the module of the script ``weights/recipes/<name>.py``."""
    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "weights" / "recipes" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


def textured_image(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """A deterministic uint8 grey image with blobs and edges at several scales (SIFT finds many keypoints)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width), np.float32)
    for sigma in (1.5, 3.0, 6.0):
        noise = rng.standard_normal((height, width)).astype(np.float32)
        image += cv2.GaussianBlur(noise, (0, 0), sigma) * sigma
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.rectangle(image, (x, y), (x + int(rng.integers(8, 40)), y + int(rng.integers(8, 40))), float(rng.uniform(-3, 3)), -1)
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def texture() -> np.ndarray:
    return textured_image()
