"""The DescDis facade: keypoint forms, OpenCV interoperability, detectors, bad input."""
import cv2
import numpy as np
import pytest
import torch

from descplug import DescDis
from descplug.keypoints import array_to_laf
from descplug.models import DesDisNet, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(DesDisNet(8).eval(), tmp_path_factory.mktemp("w") / "random8.pt")


@pytest.fixture(scope="module")
def dd(checkpoint):
    return DescDis(checkpoint, device="cpu")


def test_keypoint_forms_give_identical_descriptors(dd, texture):
    kps = cv2.SIFT_create(200).detect(texture)
    rows = np.array([[k.pt[0], k.pt[1], k.size, k.angle] for k in kps], np.float32)
    returned, d_cv = dd.compute(texture, kps)
    assert returned is kps
    assert d_cv.dtype == np.float32 and d_cv.shape == (len(kps), 128)
    np.testing.assert_allclose(np.linalg.norm(d_cv, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(dd.compute(texture, rows)[1], d_cv, atol=1e-5)
    np.testing.assert_allclose(dd.compute(texture, array_to_laf(rows))[1], d_cv, atol=1e-4)
    np.testing.assert_allclose(dd.compute(texture, tuple(kps))[1], d_cv, atol=1e-5)


def test_descriptors_follow_keypoint_order_and_batches(checkpoint, texture):
    rows = np.array([[x, y, 4.0, 0.0] for x in range(10, 300, 30) for y in range(10, 230, 30)], np.float32)
    whole = DescDis(checkpoint, device="cpu").compute(texture, rows)[1]
    small = DescDis(checkpoint, device="cpu", batch_size=7).compute(texture, rows[::-1])[1]
    np.testing.assert_allclose(small[::-1], whole, atol=1e-5)


def test_default_scale_for_xy_keypoints(dd, texture):
    xy = np.array([[100.0, 100.0]])
    explicit = np.array([[100.0, 100.0, 32.0 / dd.magnification, 0.0]])
    np.testing.assert_allclose(dd.compute(texture, xy)[1], dd.compute(texture, explicit)[1])


def test_zero_keypoints(dd, texture):
    kps, desc = dd.compute(texture, [])
    assert kps == [] and desc.shape == (0, 128) and desc.dtype == np.float32
    assert dd.compute(texture, np.zeros((0, 2)))[1].shape == (0, 128)


def test_border_keypoints_are_not_dropped(dd, texture):
    rows = np.array([[0, 0, 10, 0], [-50, -50, 10, 0], [319, 239, 30, 45], [1e4, 1e4, 3, 0]], np.float32)
    desc = dd.compute(texture, rows)[1]
    assert desc.shape == (4, 128) and np.isfinite(desc).all()


def test_image_forms(dd, texture, tmp_path):
    kps = np.array([[100.0, 80.0, 5.0, 30.0]])
    ref = dd.compute(texture, kps)[1]
    bgr = cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(tmp_path / "t.png"), bgr)
    np.testing.assert_allclose(dd.compute(bgr, kps)[1], ref, atol=1e-4)
    np.testing.assert_allclose(dd.compute(str(tmp_path / "t.png"), kps)[1], ref, atol=1e-4)
    np.testing.assert_allclose(dd.compute(texture.astype(np.uint16) * 257, kps)[1], ref, atol=1e-4)
    np.testing.assert_allclose(dd.compute(texture.astype(np.float32) / 255, kps)[1], ref, atol=1e-4)
    np.testing.assert_allclose(dd.compute(texture.astype(np.float64), kps)[1], ref, atol=1e-4)


def test_opencv_interoperability(dd, texture):
    kps, desc = dd.detectAndCompute(texture, None)
    assert len(kps) > 50 and all(isinstance(k, cv2.KeyPoint) for k in kps)
    assert dd.descriptorSize() == 128 and dd.descriptorType() == cv2.CV_32F
    assert dd.defaultNorm() == cv2.NORM_L2 and dd.getDefaultName() == "Feature2D.DescDis"
    shifted = np.roll(texture, (5, 7), axis=(0, 1))
    kps2, desc2 = dd.compute(shifted, [cv2.KeyPoint(k.pt[0] + 7, k.pt[1] + 5, k.size, k.angle) for k in kps])
    matcher = cv2.BFMatcher(dd.defaultNorm(), crossCheck=True)
    matches = matcher.match(desc, desc2)
    correct = sum(m.queryIdx == m.trainIdx for m in matches)
    assert correct > 0.8 * len(kps)
    canvas = cv2.drawMatches(texture, kps, shifted, kps2, matches[:20], None)
    assert canvas.shape[:2] == (240, 640)
    knn = cv2.BFMatcher(dd.defaultNorm()).knnMatch(desc, desc2, k=2)
    assert len(knn) == len(kps)


@pytest.mark.parametrize("detector", ["sift", "orb", "fast", "gftt"])
def test_named_detectors(checkpoint, texture, detector):
    dd = DescDis(checkpoint, device="cpu", detector=detector, max_keypoints=100)
    kps, desc = dd.detectAndCompute(texture, None)
    assert 0 < len(kps) <= 100 and desc.shape == (len(kps), 128)


def test_feature2d_callable_and_mask(checkpoint, texture):
    kps, _ = DescDis(checkpoint, device="cpu", detector=cv2.ORB_create(50)).detectAndCompute(texture, None)
    assert 0 < len(kps) <= 50
    grid = lambda img: [cv2.KeyPoint(float(x), float(y), 4.0) for x in (50, 100) for y in (60, 90)]  # noqa: E731
    kps, desc = DescDis(checkpoint, device="cpu", detector=grid).detectAndCompute(texture, None)
    assert len(kps) == 4 and desc.shape == (4, 128)
    mask = np.zeros_like(texture)
    mask[:, :160] = 1
    kps, _ = DescDis(checkpoint, device="cpu").detectAndCompute(texture, mask)
    assert kps and all(k.pt[0] < 165 for k in kps)


def test_max_keypoints_keeps_the_strongest(checkpoint, texture):
    all_kps = DescDis(checkpoint, device="cpu").detect(texture)
    top = DescDis(checkpoint, device="cpu", max_keypoints=10).detect(texture)
    assert len(top) == 10
    assert min(k.response for k in top) >= sorted((k.response for k in all_kps), reverse=True)[9] - 1e-9


def test_torch_level_access(dd, texture):
    patches = dd.extract_patches(texture, np.array([[50.0, 50.0, 4.0, 0.0], [60.0, 70.0, 4.0, 90.0]]))
    assert patches.shape == (2, 1, 32, 32) and patches.dtype == torch.float32
    desc = dd.describe_patches(patches)
    np.testing.assert_allclose(desc.numpy(), dd.compute(texture, np.array([[50.0, 50, 4, 0], [60, 70, 4, 90]]))[1], atol=1e-5)
    with pytest.raises(ValueError, match=r"patches must be a \(N, 1, 32, 32\) tensor"):
        dd.describe_patches(torch.zeros(2, 32, 32))


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.zeros((0, 10), np.uint8), ValueError, "empty image"),
        (np.zeros((4, 4, 4, 4), np.uint8), ValueError, "expected a 2-D grey or 3-D colour image"),
        (np.zeros((10, 10, 2), np.uint8), ValueError, "expected 1, 3"),
        (np.zeros((10, 10), np.int32), TypeError, "unsupported image dtype int32"),
        (np.full((10, 10), np.nan, np.float32), ValueError, "NaN or infinite"),
        ("/no/such/image.png", ValueError, "image file not found: /no/such/image.png"),
        (12, TypeError, "expected a numpy array or a path"),
    ],
)
def test_bad_images(dd, image, error, message):
    with pytest.raises(error, match=message):
        dd.compute(image, np.array([[1.0, 1.0]]))


def test_corrupt_image_file(dd, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match="cannot decode image file.*broken.jpg"):
        dd.compute(tmp_path / "broken.jpg", np.array([[1.0, 1.0]]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model": "nonexistent-model"}, "unknown model 'nonexistent-model'"),
        ({"device": "cuda:0" if not torch.cuda.is_available() else "nonsense"}, "(CUDA is not available|device)"),
        ({"magnification": -1.0}, "magnification must be positive"),
        ({"batch_size": 0}, "batch_size must be positive"),
    ],
)
def test_bad_construction(checkpoint, kwargs, message):
    args = {"model": checkpoint, "device": "cpu", **kwargs}
    with pytest.raises((ValueError, RuntimeError), match=message):
        DescDis(**args)


def test_unknown_detector(checkpoint, texture):
    with pytest.raises(ValueError, match="unknown detector 'akaze'"):
        DescDis(checkpoint, device="cpu", detector="akaze").detectAndCompute(texture, None)


def test_bad_mask(dd, texture):
    with pytest.raises(ValueError, match="mask shape"):
        dd.detectAndCompute(texture, np.ones((3, 3), np.uint8))


def test_half_precision_network_agrees_with_float(checkpoint, texture):
    """half=True (the CUDA default) runs the network in fp16; descriptors stay within 0.999 cosine."""
    kps = cv2.SIFT_create(300).detect(texture)
    full = DescDis(checkpoint, device="cpu").compute(texture, kps)[1]
    half = DescDis(checkpoint, device="cpu", half=True).compute(texture, kps)[1]
    assert half.dtype == np.float32
    assert (full * half).sum(1).min() > 0.999
