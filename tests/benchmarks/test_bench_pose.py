import json

import cv2
import numpy as np
import pytest

from benchmarks import datasets, pose, report
from benchmarks.__main__ import main
from benchmarks.methods import load_methods
from descplug import demo


def synthetic_views(n=200, seed=0):
    """Exact projections of random 3D points into two cameras; returns points, K0, K1, R, t."""
    rng = np.random.default_rng(seed)
    X = rng.uniform([-2, -2, 4], [2, 2, 8], (n, 3))
    K0 = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    K1 = np.array([[700.0, 0, 330], [0, 690, 250], [0, 0, 1]])
    R = cv2.Rodrigues(np.array([0.05, -0.2, 0.03]))[0]
    t = np.array([1.0, 0.1, -0.2])

    def project(K, points):
        p = points @ K.T
        return p[:, :2] / p[:, 2:]

    return project(K0, X), project(K1, X @ R.T + t), K0, K1, R, t


def test_auc_of_the_exact_pose_is_100_and_known_values():
    assert pose.pose_auc([0.0] * 10) == [1.0, 1.0, 1.0]
    assert pose.pose_auc([np.inf] * 3) == [0.0, 0.0, 0.0]
    # one pair at 2.5 degrees: recall rises linearly from 0 to 1 over [0, 2.5], then stays at 1
    assert pose.pose_auc([2.5], [5]) == [pytest.approx(0.75)]
    assert pose.pose_auc([2.5, np.inf], [5]) == [pytest.approx(0.375)]
    exact = [{"error": 0.0, "matches": 10, "gt_inliers": 10, "failed": False}] * 4
    assert pose.summarise(exact)["auc"] == {"5": 100.0, "10": 100.0, "20": 100.0}
    assert pose.summarise(exact)["auc_sd"] == {"5": 0.0, "10": 0.0, "20": 0.0}


def test_auc_bootstrap_sd_is_the_spread_over_resampled_pairs():
    # half the pairs exact, half failed: the AUC is the success rate, whose spread over resampled
    # sets of n pairs is sqrt(p (1 - p) / n)
    for n in (100, 400):
        records = [{"error": 0.0 if i % 2 else np.inf, "matches": 10, "gt_inliers": 5, "failed": not i % 2}
                   for i in range(n)]
        summary = pose.summarise(records)
        assert summary["auc"]["10"] == pytest.approx(50.0)
        assert summary["auc_sd"]["10"] == pytest.approx(100 * np.sqrt(0.25 / n), rel=0.1)
    errors = [1.0, 3.0, np.inf]
    assert report.bootstrap_sd(errors, pose.pose_auc) == report.bootstrap_sd(errors, pose.pose_auc)  # seeded


def test_auc_over_ransac_orderings_is_their_mean_and_reports_their_spread():
    # two pairs, three orderings: the first pair exact in orderings 0 and 1, failed in 2
    records = [{"error": (0.0, 0.0, np.inf), "matches": 10, "gt_inliers": 10, "failed": False},
               {"error": (0.0, 0.0, 0.0), "matches": 10, "gt_inliers": 10, "failed": False},
               {"error": np.inf, "matches": 0, "gt_inliers": 0, "failed": True}]  # failed: every ordering
    summary = pose.summarise(records)
    per_ordering = np.array([200 / 3, 200 / 3, 100 / 3])
    assert summary["auc"]["10"] == pytest.approx(per_ordering.mean())
    assert summary["auc_ransac_sd"]["10"] == pytest.approx(per_ordering.std(ddof=1))
    assert summary["ransac_orders"] == 3 and summary["failed"] == 1
    assert "auc_ransac_sd" not in pose.summarise([dict(records[1], error=0.0)])


def test_match_orders_start_with_the_matches_as_found_and_are_seeded():
    orders = pose.match_orders(50, 4, seed=7)
    assert len(orders) == 4 and np.array_equal(orders[0], np.arange(50))
    assert all(np.array_equal(np.sort(o), np.arange(50)) for o in orders)
    assert not np.array_equal(orders[1], orders[2])
    assert all(np.array_equal(a, b) for a, b in zip(orders, pose.match_orders(50, 4, seed=7)))


def test_epipolar_distance_of_exact_shifted_and_wrong_matches():
    points0, points1, K0, K1, R, t = synthetic_views()
    assert np.max(pose.epipolar_distances(points0, points1, K0, K1, R, t)) < 1e-6
    assert np.max(pose.epipolar_distances(points0, points1, K0, K1, R, 5 * t)) < 1e-6  # t only up to scale
    # point 1 moved 2 px across its epipolar line: 2 px in image 1, less in image 0 (focal 600 vs 700)
    lines1 = np.c_[points0, np.ones(len(points0))] @ (np.linalg.inv(K1).T @ np.cross(np.eye(3), t) @ R
                                                      @ np.linalg.inv(K0)).T
    normal = lines1[:, :2] / np.linalg.norm(lines1[:, :2], axis=1, keepdims=True)
    shifted = pose.epipolar_distances(points0, points1 + 2 * normal, K0, K1, R, t)
    assert np.all((shifted > 1.6) & (shifted < 2.0))
    wrong = pose.epipolar_distances(points0, np.roll(points1, 1, axis=0), K0, K1, R, t)
    assert np.mean(wrong > pose.EPIPOLAR_THRESHOLD) > 0.9


def test_precision_is_the_mean_over_pairs_with_matches():
    records = [{"error": 1.0, "matches": 10, "gt_inliers": 10, "failed": False},
               {"error": 1.0, "matches": 100, "gt_inliers": 50, "failed": False},
               {"error": np.inf, "matches": 0, "gt_inliers": 0, "failed": False}]
    summary = pose.summarise(records)
    assert summary["precision"] == pytest.approx(75.0) and summary["gt_inliers"] == pytest.approx(20.0)


def test_pose_error_is_up_to_the_sign_of_t():
    R = cv2.Rodrigues(np.array([0.0, 0.1, 0.0]))[0]
    t = np.array([1.0, 0, 0])
    assert pose.pose_error(R, -t, R, t) == pytest.approx(0.0, abs=1e-6)
    assert pose.pose_error(np.eye(3), t, R, t) == pytest.approx(np.degrees(0.1))


@pytest.mark.parametrize("estimator", sorted(pose.ESTIMATORS))
def test_estimators_recover_an_exact_pose(estimator):
    points0, points1, K0, K1, R, t = synthetic_views()
    R_est, t_est = pose.ESTIMATORS[estimator](points0, points1, K0, K1)
    assert pose.pose_error(R_est, t_est, R, t) < 0.1
    assert pose.ESTIMATORS[estimator](points0[:4], points1[:4], K0, K1) is None


def test_iteration_cap_is_an_opencv_option():
    points0, points1, K0, K1, R, t = synthetic_views()
    assert pose.pose_error(*pose.estimate_pose_opencv(points0, points1, K0, K1, iterations=50), R, t) < 0.1
    with pytest.raises(ValueError, match="opencv only"):
        pose.evaluate([], [], estimator="pycolmap", iterations=100)


def test_rendered_scene_with_a_failed_image(rendered_scene, tmp_path, capsys):
    root, _ = rendered_scene
    scene = datasets.read_pose_scenes(root)[0]
    pairs = scene.pairs(max_gap=1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    failing = datasets.PosePair("x", "y", broken, pairs[0].image1, pairs[0].K0, pairs[0].K1, pairs[0].R, pairs[0].t)
    results = pose.evaluate([("room", pairs), ("bad", [failing])], load_methods(["sift"]), max_keypoints=1000,
                            progress=False)
    room, bad = results["sift"]["room"], results["sift"]["bad"]
    assert room["pairs"] == 5 and room["failed"] == 0 and room["auc"]["5"] > 70
    zero = {"5": 0.0, "10": 0.0, "20": 0.0}
    assert room["precision"] > 60 and room["gt_inliers"] <= room["matches"]
    assert bad == {"auc": zero, "auc_sd": zero, "pairs": 1, "matches": 0.0, "gt_inliers": 0.0, "precision": 0.0,
                   "median_error": np.inf, "failed": 1}
    assert results["sift"]["all"]["pairs"] == 6
    assert "FAILED image" in capsys.readouterr().err
    repeated = pose.evaluate([("room", pairs)], load_methods(["sift"]), max_keypoints=1000, progress=False,
                             orders=3)["sift"]["room"]
    assert repeated["ransac_orders"] == 3 and repeated["auc_ransac_sd"]["5"] >= 0
    assert {k: repeated[k] for k in ("matches", "gt_inliers", "precision")} == \
        {k: room[k] for k in ("matches", "gt_inliers", "precision")}  # RANSAC's orderings leave the matches alone
    with pytest.raises(ValueError, match="--ransac-orders must be at least 1"):
        pose.evaluate([("room", pairs)], load_methods(["sift"]), orders=0)


def test_command_line_on_a_pairs_with_gt_file(rendered_scene, tmp_path):
    root, truth = rendered_scene
    K = demo.intrinsics().ravel()
    lines = []
    for a, b in [("view_00.png", "view_01.png"), ("view_02.png", "view_03.png")]:
        (Ra, ta), (Rb, tb) = truth[a], truth[b]
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = Rb @ Ra.T, tb - Rb @ Ra.T @ ta
        lines.append(" ".join([a, b, "0", "0", *(f"{v:.17g}" for v in [*K, *K, *T.ravel()])]))
    pairs_file = tmp_path / "room_pairs_with_gt.txt"
    pairs_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "pose.json"
    common = ["pose", "--root", str(pairs_file), "--image-dir", str(root / "images"), "--baselines", "sift,rootsift",
              "--model", "", "--ratio", "0.9", "--max-keypoints", "800", "--ransac-orders", "2", "--no-progress"]
    markdown = tmp_path / "pose.md"
    assert main(common + ["--reference", "rootsift", "--json", str(out), "--markdown", str(markdown)]) == 0
    doc = json.loads(out.read_text())
    assert doc["data"]["scenes"] == {"room_pairs_with_gt": 2}
    rootsift, sift = doc["results"]["rootsift"]["all"], doc["results"]["sift"]["all"]
    assert rootsift["pairs"] == 2
    assert rootsift["auc"]["10"] > 50
    assert rootsift["ransac_orders"] == 2 and "mean over 2 RANSAC runs" in doc["protocol"]
    assert sift["reference"] == "rootsift" and "auc_vs_reference" not in rootsift
    assert sift["auc_vs_reference"]["10"] == pytest.approx(sift["auc"]["10"] - rootsift["auc"]["10"])
    assert "| AUC@10 vs rootsift | paired sd |" in markdown.read_text()
    assert main(common + ["--reference", "DesDis-16"]) == 2


@pytest.mark.shared
def test_real_pairs(shared_root):
    scenes = datasets.read_pose_scenes(shared_root / "data" / "pose", ["strecha/fountain-P11"])
    pairs = scenes[0].pairs(max_gap=1)[:3]
    results = pose.evaluate([("fountain", pairs)], load_methods(["sift"]), max_keypoints=2000, progress=False)
    assert results["sift"]["all"]["failed"] == 0 and results["sift"]["all"]["auc"]["10"] > 50
