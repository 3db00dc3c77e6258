import cv2
import numpy as np
import pytest

from descplug.alignment import robust_similarity, rotation_alignment, umeyama


def rotation(vector):
    return cv2.Rodrigues(np.asarray(vector, np.float64))[0]


def test_umeyama_and_the_robust_similarity():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(8, 3))
    s, R, t = 2.5, rotation([0.2, -0.4, 0.1]), np.array([1.0, 2, 3])
    target = s * source @ R.T + t
    for fit in (umeyama(source, target), robust_similarity(source, target, 0.01)[:3]):
        np.testing.assert_allclose(fit[0], s)
        np.testing.assert_allclose(fit[1], R, atol=1e-9)
        np.testing.assert_allclose(fit[2], t, atol=1e-9)
    target[0] += 5  # one badly registered camera
    s_fit, R_fit, _, inliers = robust_similarity(source, target, 0.01)
    assert s_fit == pytest.approx(s) and np.allclose(R_fit, R) and inliers.tolist() == [False] + [True] * 7


def test_rotation_alignment_recovers_a_frame_change():
    A = rotation([0.3, 0.1, -0.2])
    truth = [rotation(v) for v in ([0, 0, 0], [0.1, 0.2, 0], [0, -0.3, 0.4])]
    estimated = [R @ A.T for R in truth]
    np.testing.assert_allclose(rotation_alignment(estimated, truth), A, atol=1e-9)
