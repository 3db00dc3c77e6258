import cv2
import numpy as np
import pytest
import torch

from descplug.keypoints import array_to_laf, as_keypoint_array, laf_to_array, to_cv_keypoints


def test_all_forms_give_the_same_array():
    rows = np.array([[10.5, 20.0, 4.0, 30.0], [0.0, 0.0, 2.0, 350.0]], np.float32)
    cv = [cv2.KeyPoint(float(x), float(y), float(s), float(a)) for x, y, s, a in rows]
    np.testing.assert_allclose(as_keypoint_array(cv, 1.0), rows)
    np.testing.assert_allclose(as_keypoint_array(rows, 1.0), rows)
    np.testing.assert_allclose(as_keypoint_array(rows[:, :3], 1.0)[:, 3], 0.0)
    np.testing.assert_allclose(as_keypoint_array(rows[:, :2], 7.0)[:, 2], 7.0)
    np.testing.assert_allclose(as_keypoint_array(array_to_laf(rows), 1.0), rows, atol=1e-4)
    np.testing.assert_allclose(as_keypoint_array(rows.tolist(), 1.0), rows)


def test_laf_orientation_is_minus_opencv_angle():
    """kornia's LAF from centre/scale/orientation uses orientation = -OpenCV angle."""
    import kornia.feature as KF

    rows = np.array([[5.0, 6.0, 8.0, 40.0]], np.float32)
    laf = KF.laf_from_center_scale_ori(torch.tensor([[[5.0, 6.0]]]), torch.tensor([[[[4.0]]]]), torch.tensor([[[-40.0]]]))
    np.testing.assert_allclose(laf_to_array(laf), rows, atol=1e-4)
    np.testing.assert_allclose(array_to_laf(rows), laf, atol=1e-5)


def test_to_cv_keypoints_round_trip():
    rows = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    np.testing.assert_allclose(as_keypoint_array(to_cv_keypoints(rows), 1.0), rows)
    assert to_cv_keypoints(rows[:, :2])[0].angle == -1


def test_no_orientation_angle_is_kept():
    kp = cv2.KeyPoint(1.0, 2.0, 3.0)  # angle -1
    assert as_keypoint_array([kp], 1.0)[0, 3] == -1


@pytest.mark.parametrize(
    "keypoints, message",
    [
        (np.array([[1.0, 2.0], [np.nan, 3.0]]), "keypoint 1: NaN"),
        (np.array([[1.0, 2.0, 3.0], [1.0, np.inf, 3.0]]), "keypoint 1: NaN or infinite"),
        (np.array([[1.0, 2.0, 3.0], [1.0, 2.0, -1.0]]), "keypoint 1: size must be positive"),
        (np.zeros((3, 5)), r"expected shape \(N, 2\)"),
        (np.array(["a", "b"]), "numeric array"),
        (torch.zeros(2, 3), r"LAF keypoints: expected shape \(1, N, 2, 3\)"),
    ],
)
def test_bad_keypoints_are_named(keypoints, message):
    with pytest.raises((ValueError, TypeError), match=message):
        as_keypoint_array(keypoints, 1.0)


def test_mixed_list_names_the_bad_item():
    with pytest.raises(TypeError, match="keypoint 1: expected cv2.KeyPoint"):
        as_keypoint_array([cv2.KeyPoint(1, 2, 3), (1, 2)], 1.0)
