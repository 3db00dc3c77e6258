import cv2
import numpy as np
import pytest

from benchmarks import datasets

from bench_fixtures import HOMOGRAPHIES, write_imc_calibration, write_sequence, write_strecha_camera


def rotation(axis, degrees):
    return cv2.Rodrigues(np.asarray(axis, np.float64) / np.linalg.norm(axis) * np.radians(degrees))[0]


def test_nested_sequences_with_fewer_images_and_groups(tmp_path, texture):
    write_sequence(tmp_path / "hp" / "v_a", texture)
    write_sequence(tmp_path / "hp" / "i_b", texture, ext="ppm")
    write_sequence(tmp_path / "evd" / "c", texture, HOMOGRAPHIES[:1])
    seqs = datasets.read_sequences(tmp_path)
    assert [s.name for s in seqs] == ["evd/c", "hp/i_b", "hp/v_a"]
    assert [s.group for s in seqs] == ["other", "i", "v"]
    assert [s.collections for s in seqs] == [("evd",), ("hp",), ("hp",)]
    assert [len(s.images) for s in seqs] == [2, 3, 3]
    assert seqs[1].images[0].suffix == ".ppm"
    np.testing.assert_allclose(seqs[2].homographies[1], HOMOGRAPHIES[1])
    assert [s.name for s in datasets.read_sequences(tmp_path, ["hp/v_a"])] == ["hp/v_a"]


def test_layout_errors_are_clear(tmp_path, texture):
    with pytest.raises(ValueError, match="does not exist"):
        datasets.read_sequences(tmp_path / "missing")
    with pytest.raises(ValueError, match="no homography sequence"):
        datasets.read_sequences(tmp_path)
    seq = write_sequence(tmp_path / "s", texture)
    with pytest.raises(ValueError, match="not found under the root: nope"):
        datasets.read_sequences(tmp_path, ["nope"])
    (seq / "H_1_3").unlink()
    with pytest.raises(ValueError, match="3.png has no homography H_1_3"):
        datasets.read_sequences(tmp_path)
    (seq / "H_1_3").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="3x3"):
        datasets.read_sequences(tmp_path)


def test_patch_sequences_and_bad_stacks(tmp_path):
    seq = tmp_path / "v_x"
    seq.mkdir()
    patches = np.random.default_rng(0).integers(0, 255, (3, 65, 65), dtype=np.uint8)
    for kind in datasets.PATCH_TYPES:
        datasets.write_patch_file(seq / f"{kind}.png", patches)
    [found] = datasets.read_patch_sequences(tmp_path)
    loaded = found.load()
    assert set(loaded) == set(datasets.PATCH_TYPES)
    np.testing.assert_array_equal(loaded["t5"], patches)
    cv2.imwrite(str(seq / "h2.png"), np.zeros((100, 65), np.uint8))
    with pytest.raises(ValueError, match="65x65 patches stacked vertically"):
        found.load()
    (seq / "h2.png").unlink()
    with pytest.raises(ValueError, match="missing or unreadable h2.png"):
        found.load()


def _cameras():
    K = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])
    poses = [(rotation([0, 1, 0], 5 * i), np.array([0.3 * i, 0.05, 0.1])) for i in range(3)]
    return K, poses


def _check_relative(scene, poses):
    pairs = scene.pairs()
    assert [(p.name0, p.name1) for p in pairs] == [("0.jpg", "1.jpg"), ("0.jpg", "2.jpg"), ("1.jpg", "2.jpg")]
    X = np.array([0.2, -0.1, 4.0])
    for pair, (i, j) in zip(pairs, [(0, 1), (0, 2), (1, 2)]):
        x0 = poses[i][0] @ X + poses[i][1]
        np.testing.assert_allclose(pair.R @ x0 + pair.t, poses[j][0] @ X + poses[j][1], atol=1e-9)
    assert [(p.name0, p.name1) for p in scene.pairs(min_gap=2)] == [("0.jpg", "2.jpg")]
    assert len(scene.pairs(max_gap=1)) == 2


def test_strecha_cameras_are_camera_to_world(tmp_path):
    K, poses = _cameras()
    scene = tmp_path / "strecha" / "s"
    (scene / "images").mkdir(parents=True)
    (scene / "cameras").mkdir()
    for i, (R, t) in enumerate(poses):
        cv2.imwrite(str(scene / "images" / f"{i}.jpg"), np.zeros((8, 8), np.uint8))
        write_strecha_camera(scene / "cameras" / f"{i}.jpg.txt", K, R, t, (640, 480))
    [read] = datasets.read_pose_scenes(tmp_path)
    assert read.name == "strecha/s"
    np.testing.assert_allclose(read.cameras["1.jpg"].K, K)
    _check_relative(read, poses)


def test_imc_calibration_is_world_to_camera(tmp_path):
    K, poses = _cameras()
    (tmp_path / "images").mkdir()
    (tmp_path / "calibration").mkdir()
    for i, (R, t) in enumerate(poses):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.jpg"), np.zeros((8, 8), np.uint8))
        write_imc_calibration(tmp_path / "calibration" / f"calibration_{i}.h5", K, R, t)
    [read] = datasets.read_pose_scenes(tmp_path)
    _check_relative(read, poses)
    (tmp_path / "calibration" / "calibration_2.h5").unlink()
    with pytest.raises(ValueError, match="2.jpg has no calibration_2.h5"):
        datasets.read_pose_scenes(tmp_path)


def test_pairs_with_gt(tmp_path):
    K0, K1 = np.diag([500.0, 500, 1]), np.diag([600.0, 600, 1])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rotation([1, 0, 0], 10), [1, 0, 0]
    numbers = " ".join(f"{v:.17g}" for v in [*K0.ravel(), *K1.ravel(), *T.ravel()])
    path = tmp_path / "pairs.txt"
    path.write_text(f"a.jpg b.jpg 0 0 {numbers}\nc.jpg d.jpg {numbers}\n")
    pairs = datasets.read_pairs_with_gt(path, tmp_path / "img")
    assert [(p.name0, p.image1) for p in pairs] == [("a.jpg", tmp_path / "img" / "b.jpg"),
                                                     ("c.jpg", tmp_path / "img" / "d.jpg")]
    np.testing.assert_allclose(pairs[1].R, T[:3, :3])
    np.testing.assert_allclose(pairs[0].K1, K1)
    path.write_text(f"a.jpg b.jpg 1 0 {numbers}\n")
    with pytest.raises(ValueError, match="EXIF rotations"):
        datasets.read_pairs_with_gt(path)
    path.write_text("a.jpg b.jpg 1 2 3\n")
    with pytest.raises(ValueError, match="expected 36 or 38 fields"):
        datasets.read_pairs_with_gt(path)


def test_splits(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text('{"a": {"name": "a", "test": ["v_x", "i_y"], "train": []}}')
    assert datasets.read_splits(path, "a") == ["v_x", "i_y"]
    with pytest.raises(ValueError, match="no split 'b'"):
        datasets.read_splits(path, "b")
