"""COLMAP stages: the rendered scene with known cameras, the database conventions, the shared sets."""
import sqlite3

import numpy as np
import pytest

from descplug import colmap, demo, pipeline
from descplug.cli import main
from descplug.pairs import exhaustive, read_pairs


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    return folder / "images", demo.write_scene(folder / "images", num_views=6)


@pytest.fixture(scope="module")
def sift_run(scene, tmp_path_factory):
    images, truth = scene
    out = tmp_path_factory.mktemp("sift")
    reports, stats = pipeline.sfm(images, out, model="sift", max_keypoints=2048, device="cpu")
    return out, reports, stats


def test_rendered_scene_registers_every_view_accurately(scene, sift_run):
    _, truth = scene
    out, reports, stats = sift_run
    assert all(not r.failed for r in reports)
    assert stats["registered_images"] == len(truth) == 6
    errors = demo.pose_errors(colmap.camera_poses(stats["model"]), truth)
    assert max(errors["rotation_deg"].values()) < 1.0
    assert max(errors["centre"].values()) < 0.02
    assert (out / "sfm" / "images.bin").is_file() and (out / "sfm" / "text" / "images.txt").is_file()


def test_keypoints_enter_the_database_with_the_colmap_offset(sift_run):
    out, _, _ = sift_run
    import h5py

    with h5py.File(out / "features.h5", "r") as fd:
        keypoints = fd["view_00.png/keypoints"][()]
    with sqlite3.connect(out / "sfm" / "database.db") as db:
        image_id, = db.execute("SELECT image_id FROM images WHERE name = 'view_00.png'").fetchone()
        rows, cols, data = db.execute("SELECT rows, cols, data FROM keypoints WHERE image_id = ?", (image_id,)).fetchone()
    stored = np.frombuffer(data, np.float32).reshape(rows, cols)[:, :2]
    np.testing.assert_allclose(stored, keypoints + 0.5)


def test_skip_verification_and_triangulation(scene, sift_run, tmp_path):
    images, truth = scene
    out, _, stats = sift_run
    files = [str(images), str(out / "features.h5"), str(out / "matches.h5"), str(out / "pairs.txt")]
    assert main(["reconstruct", *files, "--out", str(tmp_path / "skip"), "--skip-verification"]) == 0
    assert colmap.model_stats(colmap.read_model(tmp_path / "skip"))["registered_images"] == len(truth)
    assert main(["triangulate", *files, "--reference", str(out / "sfm"), "--out", str(tmp_path / "tri")]) == 0
    triangulated = colmap.read_model(tmp_path / "tri")
    assert colmap.model_stats(triangulated)["points3D"] > 100
    reference = colmap.camera_poses(stats["model"])
    for name, (R, t) in colmap.camera_poses(triangulated).items():
        np.testing.assert_allclose(R, reference[name][0], atol=1e-9)
        np.testing.assert_allclose(t, reference[name][1], atol=1e-9)


def test_images_changed_since_extraction_are_a_clear_error(scene, sift_run, tmp_path, capsys):
    import shutil

    import cv2

    images, _ = scene
    out, _, _ = sift_run
    shutil.copytree(images, tmp_path / "images")
    rotated = cv2.rotate(cv2.imread(str(images / "view_03.png")), cv2.ROTATE_90_CLOCKWISE)
    cv2.imwrite(str(tmp_path / "images" / "view_03.png"), rotated)
    files = [str(tmp_path / "images"), str(out / "features.h5"), str(out / "matches.h5"), str(out / "pairs.txt")]
    assert main(["reconstruct", *files, "--out", str(tmp_path / "sfm")]) == 2
    assert "view_03.png: features (640, 480), COLMAP (480, 640)" in capsys.readouterr().err


def test_unknown_camera_model_is_a_clear_error(scene, tmp_path, capsys):
    images, _ = scene
    assert main(["sfm", str(images), "--out", str(tmp_path), "--camera-model", "PINHOLEX"]) == 2
    assert "unknown camera model 'PINHOLEX'; COLMAP knows SIMPLE_PINHOLE, PINHOLE" in capsys.readouterr().err
    assert not (tmp_path / "features.h5").exists()


def test_relative_pose_of_synthetic_points():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (100, 3)) + [0, 0, 5]
    K = demo.intrinsics()
    R_true, t_true = demo.camera_poses(2)[1]
    R0, t0 = demo.camera_poses(2)[0]
    x0 = (K @ (R0 @ points.T + t0[:, None])).T
    x1 = (K @ (R_true @ points.T + t_true[:, None])).T
    R, t, inliers = colmap.relative_pose(x0[:, :2] / x0[:, 2:], x1[:, :2] / x1[:, 2:], K, K)
    R_rel = R_true @ R0.T
    t_rel = t_true - R_rel @ t0
    assert inliers.all()
    assert np.degrees(np.arccos(np.clip((np.trace(R.T @ R_rel) - 1) / 2, -1, 1))) < 0.01
    np.testing.assert_allclose(t, t_rel / np.linalg.norm(t_rel), atol=1e-4)


def test_rendered_scene_with_the_default_student(scene, tmp_path):
    images, truth = scene
    _, stats = pipeline.sfm(images, tmp_path, device="cpu")
    errors = demo.pose_errors(colmap.camera_poses(stats["model"]), truth)
    assert stats["registered_images"] == len(truth)
    assert max(errors["rotation_deg"].values()) < 1.0


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["bundler_kermit", "sceaux_castle"])
@pytest.mark.parametrize("model", ["default", "desdis-official/DesDis-8.pth"])
def test_sfm_registers_every_image_of_the_shared_sets(shared_root, dataset, model, tmp_path, capsys):
    if model == "default":
        model_args = []
    else:
        model_args = ["--model", str(shared_root / "teachers" / model)]
    images = shared_root / "data" / "sfm" / dataset / "images"
    assert main(["sfm", str(images), "--out", str(tmp_path), *model_args]) == 0
    assert "11/11 images registered" in capsys.readouterr().out


def test_cli_pairs_match_and_check(scene, sift_run, tmp_path, capsys):
    images, _ = scene
    out, _, _ = sift_run
    features = str(out / "features.h5")
    assert main(["pairs", features, "--out", str(tmp_path / "p.txt"), "--retrieval", "2"]) == 0
    assert main(["match", features, str(tmp_path / "p.txt"), "--out", str(tmp_path / "m.h5"), "--ratio", "0.9"]) == 0
    assert main(["check", features, str(tmp_path / "m.h5"), str(tmp_path / "p.txt"), "--images", str(images)]) == 0
    assert "ok:" in capsys.readouterr().out
    matched = {frozenset(pair) for pair in read_pairs(tmp_path / "p.txt")}
    unmatched = next(pair for pair in exhaustive(sorted({n for pair in matched for n in pair})) if frozenset(pair) not in matched)
    (tmp_path / "more.txt").write_text(f"{unmatched[0]} {unmatched[1]}\nview_00.png nowhere.png\n")
    assert main(["check", features, str(tmp_path / "m.h5"), str(tmp_path / "more.txt")]) == 1
    text = capsys.readouterr().out
    assert f"{unmatched[0]!r} {unmatched[1]!r}: no matches" in text
    assert "'nowhere.png': image without valid features" in text


@pytest.mark.shared
def test_demo_command_with_an_official_student(shared_root, tmp_path, capsys):
    model = shared_root / "teachers" / "desdis-official" / "DesDis-8.pth"
    assert main(["demo", "--model", str(model), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text.count("registered 8/8") == 2
    truth = {f"view_{i:02d}.png": pose for i, pose in enumerate(demo.camera_poses())}
    for method in ("descplug", "baseline"):
        errors = demo.pose_errors(colmap.camera_poses(colmap.read_model(tmp_path / method / "sfm")), truth)
        assert len(errors["rotation_deg"]) == 8 and max(errors["rotation_deg"].values()) < 1.0
