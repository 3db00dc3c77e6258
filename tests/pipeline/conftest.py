"""Fixtures of the pipeline tests: a random student checkpoint and folders of textured images."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from descplug.models import DesDisNet, save_checkpoint


@pytest.fixture(scope="session")
def random_student(tmp_path_factory) -> Path:
    """A small randomly initialised student (descriptors are meaningless but well-formed)."""
    return save_checkpoint(DesDisNet(width=4).eval(), tmp_path_factory.mktemp("weights") / "random4.pt")


def write_images(folder: Path, names, height: int = 120, width: int = 160) -> list[str]:
    """Write a blob-textured grey image per name (parent folders created); returns the names."""
    for i, name in enumerate(names):
        rng = np.random.default_rng(i)
        image = sum(cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), s) * s for s in (1.5, 4.0))
        image = 255 * (image - image.min()) / (image.max() - image.min())
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image.astype(np.uint8))
    return list(names)


@pytest.fixture
def make_images():
    return write_images


@pytest.fixture
def image_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    write_images(folder, ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.png"])
    return folder
