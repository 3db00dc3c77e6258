"""Patch geometry: exact answers on a linear ramp, backend agreement, invariance to rotation/scale.

Tolerances: on the ramp, cv2's remap uses 5-bit fixed-point interpolation weights, so values
agree with the analytic ramp to 1/32 of a pixel step of the ramp (here < 2e-3); the torch
backend agrees with cv2 to 2e-3. Rotated-and-scaled copies: mean absolute patch difference
below 0.03 (intensities in [0, 1]) and descriptor cosine similarity above 0.95.
"""
import math

import cv2
import numpy as np
import pytest
import torch

from descplug.patches import cv2_pyramid, extract_patches, torch_pyramid

H, W = 400, 500
A, B, C = 0.0011, 0.0007, 0.1


def ramp():
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    return (A * x + B * y + C).astype(np.float32)


def expected_patch(x, y, size, angle, magnification, p=32):
    step = magnification * size / p
    off = np.arange(p) - (p - 1) / 2
    u, v = np.meshgrid(off, off)
    t = math.radians(angle)
    px = x + step * (math.cos(t) * u - math.sin(t) * v)
    py = y + step * (math.sin(t) * u + math.cos(t) * v)
    return A * px + B * py + C


@pytest.mark.parametrize("backend", ["cv2", "torch"])
def test_patches_sample_the_documented_geometry(backend):
    rng = np.random.default_rng(0)
    n = 60
    kps = np.stack([rng.uniform(150, 350, n), rng.uniform(150, 250, n), rng.uniform(1, 20, n), rng.uniform(0, 360, n)], 1)
    patches = extract_patches(ramp(), kps.astype(np.float32), magnification=4.0, backend=backend).numpy()[:, 0]
    for patch, (x, y, s, a) in zip(patches, kps):
        np.testing.assert_allclose(patch, expected_patch(x, y, s, a, 4.0), atol=2e-3)


def test_backends_agree_including_border_keypoints(texture):
    gray = texture.astype(np.float32) / 255
    kps = np.array([[0, 0, 3, 0], [-20, 5, 10, 45], [319, 239, 5, 200], [500, 500, 40, 10], [160, 120, 80, 90]], np.float32)
    a = extract_patches(gray, kps, 8.0, backend="cv2")
    b = extract_patches(gray, kps, 8.0, backend="torch")
    assert a.shape == (5, 1, 32, 32) and torch.isfinite(a).all()
    assert (a - b).abs().max() < 2e-3


def test_torch_pyramid_equals_cv2_pyramid(texture):
    gray = texture.astype(np.float32) / 255
    for a, b in zip(cv2_pyramid(gray, 4), torch_pyramid(torch.from_numpy(gray), 4)):
        np.testing.assert_allclose(a, b[0, 0].numpy(), atol=1e-5)


def rotate_and_scale(image, angle_deg, scale):
    """Warp so that image direction (1, 0) turns by +angle (clockwise on screen) and lengths scale."""
    h, w = image.shape
    centre = np.array([w / 2, h / 2])
    t = math.radians(angle_deg)
    m = scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    out_size = (int(w * scale * 1.5), int(h * scale * 1.5))
    shift = np.array(out_size) / 2 - m @ centre
    affine = np.hstack([m, shift[:, None]])
    return cv2.warpAffine(image, affine, out_size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101), affine


def test_rotated_scaled_copy_gives_the_same_patches(texture):
    image = cv2.resize(texture, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    warped, affine = rotate_and_scale(image, 30.0, 1.5)
    kps = np.array([[x, y, 6.0, 10.0] for x in range(200, 460, 40) for y in range(160, 330, 40)], np.float32)
    mapped = kps.copy()
    mapped[:, :2] = kps[:, :2] @ affine[:, :2].T + affine[:, 2]
    mapped[:, 2] *= 1.5
    mapped[:, 3] += 30.0
    p0 = extract_patches(image.astype(np.float32) / 255, kps, 8.0)
    p1 = extract_patches(warped.astype(np.float32) / 255, mapped, 8.0)
    assert (p0 - p1).abs().mean() < 0.03
    from descplug.models import DesDisNet

    torch.manual_seed(0)
    net = DesDisNet(8).eval()
    with torch.no_grad():
        cos = (net(p0) * net(p1)).sum(1)
    assert cos.min() > 0.95


def test_sift_orientation_follows_the_same_convention(texture):
    """OpenCV SIFT angles on a rotated copy shift by +rotation: our angle sign is OpenCV's."""
    image = cv2.resize(texture, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    warped, affine = rotate_and_scale(image, 40.0, 1.0)
    sift = cv2.SIFT_create(500)
    k0, k1 = sift.detect(image), sift.detect(warped)
    p0 = np.array([k.pt for k in k0]) @ affine[:, :2].T + affine[:, 2]
    p1 = np.array([k.pt for k in k1])
    diffs = []
    for i, p in enumerate(p0):
        d = np.linalg.norm(p1 - p, axis=1)
        j = int(d.argmin())
        if d[j] < 1.0 and abs(k0[i].size - k1[j].size) < 0.2 * k0[i].size:
            diffs.append((k1[j].angle - k0[i].angle) % 360)
    assert len(diffs) > 30
    assert abs(np.median(diffs) - 40.0) < 3.0


def test_large_image_and_many_keypoints_stay_bounded():
    """100k keypoints on a 50-megapixel image: patches are cut level by level in bounded chunks."""
    import tracemalloc

    big = np.zeros((7072, 7072), np.float32)
    big[::64] = 1.0
    rng = np.random.default_rng(1)
    kps = np.stack([rng.uniform(0, 7072, 1000), rng.uniform(0, 7072, 1000), np.full(1000, 4.0), np.zeros(1000)], 1)
    patches = extract_patches(big, kps.astype(np.float32), 8.0)
    assert patches.shape == (1000, 1, 32, 32)
    tracemalloc.start()
    small = np.zeros((100, 100), np.float32)
    many = np.tile(np.array([[50, 50, 4.0, 0]], np.float32), (100_000, 1))
    out = extract_patches(small, many, 8.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape[0] == 100_000
    assert peak < 64 * 2**20  # numpy maps for one chunk only, not for all 100k keypoints


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown patch backend"):
        extract_patches(np.zeros((10, 10), np.float32), np.zeros((1, 4), np.float32) + 1, 8.0, backend="opengl")
