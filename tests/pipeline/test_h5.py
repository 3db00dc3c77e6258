"""hloc layouts: files written by the pipeline, read back with plain h5py as hloc's readers do."""
import cv2
import h5py
import numpy as np
import pytest

from descplug import pipeline
from descplug.detectors import detect
from descplug.images import load_image
from descplug.io.h5 import check_names, match_datasets, pair_key, validate
from descplug.matching import match_descriptors

NAMES = ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.png"]


def hloc_list_names(path):
    """hloc.utils.io.list_h5_names: the parents of every dataset."""
    names = []
    with h5py.File(path, "r", libver="latest") as fd:
        fd.visititems(lambda _, obj: names.append(obj.parent.name.strip("/")) if isinstance(obj, h5py.Dataset) else None)
    return sorted(set(names))


def hloc_find_pair(fd, name0, name1):
    """hloc.utils.io.find_pair (the new-style keys): (key, reversed)."""
    if pair_key(name0, name1) in fd:
        return pair_key(name0, name1), False
    if pair_key(name1, name0) in fd:
        return pair_key(name1, name0), True
    raise ValueError(f"no pair {name0} {name1}")


def hloc_get_matches(path, name0, name1):
    with h5py.File(path, "r", libver="latest") as fd:
        key, reverse = hloc_find_pair(fd, name0, name1)
        matches = fd[key]["matches0"].__array__()
        scores = fd[key]["matching_scores0"].__array__()
    idx = np.where(matches != -1)[0]
    matches = np.stack([idx, matches[idx]], -1)
    if reverse:
        matches = np.flip(matches, -1)
    return matches, scores[idx]


@pytest.fixture
def extracted(tmp_path, image_dir, random_student):
    features = tmp_path / "features.h5"
    report = pipeline.extract(image_dir, features, model=random_student, max_keypoints=300, resize_max=0, device="cpu")
    assert report.done == len(NAMES) and not report.failed
    return features


def test_feature_file_follows_hloc_layout(extracted, image_dir):
    assert hloc_list_names(extracted) == sorted(NAMES)
    with h5py.File(extracted, "r") as fd:
        for name in NAMES:
            group = fd[name]
            kpts, desc = group["keypoints"][()], group["descriptors"][()]
            n = len(kpts)
            assert 0 < n <= 300
            assert kpts.dtype == np.float32 and kpts.shape == (n, 2)
            assert desc.dtype == np.float32 and desc.shape == (128, n)
            np.testing.assert_allclose(np.linalg.norm(desc, axis=0), 1, atol=1e-4)
            assert group["scores"].shape == group["scales"].shape == group["oris"].shape == (n,)
            assert group["image_size"][()].tolist() == [160, 120]  # (W, H)
            assert group["keypoints"].attrs["uncertainty"] == pytest.approx(1.0)
            # OpenCV pixel convention: exactly the detector's KeyPoint.pt, size and angle
            detected = detect(load_image(image_dir / name), "sift", 300)
            np.testing.assert_allclose(kpts, [kp.pt for kp in detected], atol=1e-4)
            np.testing.assert_allclose(group["scales"][()], [kp.size for kp in detected], rtol=1e-5)
            np.testing.assert_allclose(group["oris"][()], [kp.angle for kp in detected], atol=1e-3)


def test_resized_detection_gives_original_pixels(tmp_path, image_dir, random_student):
    features = tmp_path / "resized.h5"
    pipeline.extract(image_dir, features, model=random_student, max_keypoints=200, resize_max=80, half=True, device="cpu")
    gray = load_image(image_dir / "a.png")
    small = cv2.resize(gray, (80, 60), interpolation=cv2.INTER_AREA)
    detected = detect(small, "sift", 200)
    expected = (np.array([kp.pt for kp in detected]) + 0.5) * 2.0 - 0.5
    with h5py.File(features, "r") as fd:
        np.testing.assert_allclose(fd["a.png/keypoints"][()], expected, atol=1e-4)
        np.testing.assert_allclose(fd["a.png/scales"][()], [2 * kp.size for kp in detected], rtol=1e-5)
        assert fd["a.png/keypoints"].dtype == np.float32  # never float16
        assert fd["a.png/descriptors"].dtype == np.float16
        assert fd["a.png/image_size"][()].tolist() == [160, 120]
        assert fd["a.png/keypoints"].attrs["uncertainty"] == pytest.approx(2.0)
    assert validate(features, image_dir=image_dir) == []


def test_match_file_follows_hloc_layout(tmp_path, extracted):
    pairs_path = pipeline.pairs_lib.write_pairs([("sub/c.png", "a.png"), ("a.png", "sub/deeper/d.png")], tmp_path / "pairs.txt")
    matches = tmp_path / "matches.h5"
    report = pipeline.match(extracted, pairs_path, matches, device="cpu")
    assert report.done == 2
    with h5py.File(matches, "r") as fd:
        assert set(fd) == {"sub-c.png", "a.png"} and set(fd["sub-c.png"]) == {"a.png"}
        assert set(fd["a.png"]) == {"sub-deeper-d.png"}
        assert fd["sub-c.png/a.png/matches0"].dtype == np.int16
        assert fd["sub-c.png/a.png/matching_scores0"].dtype == np.float16
        d0, d1 = (fd_desc(extracted, n) for n in ("sub/c.png", "a.png"))
    expected0, scores0 = match_descriptors(d0, d1, mutual=True)
    forward, forward_scores = hloc_get_matches(matches, "sub/c.png", "a.png")
    np.testing.assert_array_equal(forward[:, 1], expected0[forward[:, 0]])
    assert len(forward) == (expected0 >= 0).sum() > 0
    np.testing.assert_allclose(forward_scores, scores0[forward[:, 0]], atol=1e-3)
    backward, _ = hloc_get_matches(matches, "a.png", "sub/c.png")  # looked up in the other order
    np.testing.assert_array_equal(backward, forward[:, ::-1])
    assert validate(extracted, matches, [("a.png", "sub/c.png"), ("sub/deeper/d.png", "a.png")]) == []
    again = pipeline.match(extracted, pairs_path, matches, device="cpu")
    assert (again.done, again.skipped) == (0, 2)


def fd_desc(path, name):
    with h5py.File(path, "r") as fd:
        return fd[name]["descriptors"][()].T.astype(np.float32)


def test_matches0_is_int32_beyond_int16_range():
    assert match_datasets(np.array([-1, 5]), np.zeros(2), 32767)["matches0"].dtype == np.int16
    assert match_datasets(np.array([-1, 40000]), np.zeros(2), 40001)["matches0"].dtype == np.int32


def test_colliding_names_are_rejected(tmp_path, random_student, make_images):
    with pytest.raises(ValueError, match="'a-b.png' and 'a/b.png' collide"):
        check_names(["a-b.png", "a/b.png"])
    with pytest.raises(ValueError, match="duplicate image name 'x.png'"):
        check_names(["x.png", "x.png"])
    with pytest.raises(ValueError, match="'my photo.png' contains white space"):
        check_names(["my photo.png"])
    make_images(tmp_path / "images", ["a/b.png", "a-b.png"])
    with pytest.raises(pipeline.PipelineError, match="collide in hloc pair keys"):
        pipeline.extract(tmp_path / "images", tmp_path / "f.h5", model=random_student, device="cpu")
    assert not (tmp_path / "f.h5").exists()


def test_validator_reports_common_mistakes(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as fd:
        good = fd.create_group("good.png")
        good["keypoints"] = np.array([[1, 2], [3, 4]], np.float32)
        good["keypoints"].attrs["uncertainty"] = 1.0
        good["descriptors"], good["scores"], good["image_size"] = np.ones((8, 2), np.float32), np.ones(2), [10, 10]
        t = fd.create_group("transposed.png")
        t["keypoints"] = np.zeros((3, 2), np.float16)
        t["descriptors"], t["scores"], t["image_size"] = np.ones((3, 8), np.float32), np.ones(3), [10, 10]
        far = fd.create_group("outside.png")
        far["keypoints"] = np.array([[50.0, 1.0]], np.float32)
        far["keypoints"].attrs["uncertainty"] = 1.0
        far["descriptors"], far["scores"], far["image_size"] = np.ones((8, 1), np.float32), np.ones(1), [20, 20]
        fd.create_group("partial.png")["keypoints"] = np.zeros((1, 2), np.float32)
    problems = "\n".join(validate(path, pairs=[("good.png", "missing.png")]))
    assert "keypoints must be float32" in problems and "transposed.png" in problems
    assert "transposed? hloc stores (D, N)" in problems
    assert "outside.png" in problems and "keypoints outside the 20x20 image" in problems
    assert "incomplete group" in problems and "partial.png" in problems
    assert "missing.png" in problems
    assert "good.png':" not in problems
