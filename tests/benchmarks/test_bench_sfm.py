import cv2
import numpy as np
import pytest

from benchmarks import datasets, sfm
from benchmarks.__main__ import main


def rotation(vector):
    return cv2.Rodrigues(np.asarray(vector, np.float64))[0]


def test_camera_errors_of_an_exact_model_in_another_frame():
    rng = np.random.default_rng(1)
    cameras = {f"{i}.jpg": datasets.Camera(np.eye(3), rotation(rng.normal(size=3) * 0.3), rng.normal(size=3))
               for i in range(5)}
    # the same cameras in a frame scaled by 3 and rotated: X_model = 3 * Q @ X
    Q = rotation([0.0, 0.5, 0.0])
    poses = {n: (c.R @ Q.T, 3 * c.t) for n, c in cameras.items() if n != "4.jpg"}
    rotation_errors, position_errors = sfm.camera_errors(poses, cameras)
    np.testing.assert_allclose(rotation_errors[:4], 0, atol=1e-5)
    np.testing.assert_allclose(position_errors[:4], 0, atol=1e-6)
    assert rotation_errors[4] == position_errors[4] == np.inf  # 4.jpg was not registered


def test_sift_baseline_name_is_explicit(tmp_path):
    with pytest.raises(ValueError, match="RootSIFT"):
        sfm.pipeline_model("sift")
    assert main(["sfm", "--root", str(tmp_path), "--work", str(tmp_path / "w"), "--baselines", "sift",
                 "--model", ""]) == 2


def test_rendered_scene(rendered_scene, tmp_path, capsys):
    root, _ = rendered_scene
    scenes = datasets.read_pose_scenes(root)
    results = sfm.evaluate(scenes, ["rootsift"], tmp_path / "work", max_keypoints=1500, device="cpu", progress=False)
    summary = results["rootsift"]["all"]
    assert summary["registered_images"] == summary["images"] == 6 and summary["failed"] == 0
    assert summary["rotation_median"] < 0.5 and summary["position_median"] < 2
    assert summary["rotation_auc"]["5"] > 80 and summary["points3D"] > 100
    assert set(results["rootsift"]) == {"all", "room"}
