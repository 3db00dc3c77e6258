"""Training pair sources and the batch sampler, on fixtures written by the tests."""

import cv2
import numpy as np
import pytest
import torch

from descplug import colmap
from descplug.patches import extract_patches
from descplug.train import data


def tiny_pairset(tracks, value_offset=0):
    tracks = np.asarray(tracks, np.int64)
    n = len(tracks)
    patches = np.stack([np.full((32, 32), (i + value_offset) % 256, np.uint8) for i in range(n)])
    return data.PairSet(patches, patches.copy(), tracks, np.zeros((n, 2, 4), np.float32),
                        np.zeros((n, 2), np.int32), ["a.png"])


def test_batches_never_repeat_a_track():
    rng = np.random.default_rng(0)
    tracks = rng.integers(0, 40, 500)
    seen = 0
    for chunk in data.batch_indices(tracks, 32, np.random.default_rng(1)):
        assert len(np.unique(tracks[chunk])) == len(chunk)
        seen += len(chunk)
    assert seen > 0.9 * len(tracks)


def test_a_repeated_source_is_drawn_more_often_but_never_twice_in_a_batch():
    pairs = tiny_pairset(np.arange(40) // 2)  # 20 tracks of 2 pairs
    tripled = pairs.repeat(3)
    assert len(tripled) == 120 and pairs.repeat(1) is pairs
    assert (np.bincount(tripled.tracks) == 6).all()  # the copies keep their track
    assert (tripled.anchors[80:] == pairs.anchors).all()
    batch = next(data.batches(tripled, 20, seed=0))
    assert len(set(batch.tracks.tolist())) == 20


def test_image_batches_draw_negatives_from_one_image_at_a_time():
    images = np.repeat(np.arange(6), 100)  # 6 images x 50 keypoints x 2 warps
    tracks = np.repeat(np.arange(300), 2)
    chunks = data.batch_indices(tracks, 32, np.random.default_rng(1), groups=images)
    assert sum(len(c) for c in chunks) > 0.98 * len(tracks)  # a repeat at a rank boundary is dropped
    for chunk in chunks:
        assert len(np.unique(tracks[chunk])) == len(chunk)
        assert len(np.unique(images[chunk])) <= 2
    assert min(len(np.unique(images[c])) for c in chunks) == 1
    shuffled = data.batch_indices(tracks, 32, np.random.default_rng(1))
    assert np.mean([len(np.unique(images[c])) for c in shuffled]) > 4
    pairs = tiny_pairset(tracks)
    pairs.images[:, 0] = images
    batch = next(data.batches(pairs, 32, seed=0, groups=images))
    assert len(np.unique(images[batch.index.numpy()])) <= 2
    with pytest.raises(ValueError, match="599 batch groups for 600 pairs"):
        next(data.batches(pairs, 32, groups=images[1:]))


def test_similar_groups_gather_alike_tracks_into_balanced_groups():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 5  # four well-separated kinds of keypoint, 50 tracks each
    kind = np.repeat(np.arange(4), 50)
    tracks = np.repeat(rng.permutation(200), 3)  # 3 pairs per track, tracks in random order
    descriptors = centres[kind[tracks]] + rng.normal(0, 0.1, (600, 8))
    groups = data.similar_groups(tracks, descriptors, group_tracks=50)
    assert groups.max() + 1 == 4
    for g in range(4):
        assert len(np.unique(kind[tracks[groups == g]])) == 1  # one kind per group
        assert len(np.unique(tracks[groups == g])) == 50
    for track in np.unique(tracks):
        assert len(np.unique(groups[tracks == track])) == 1  # a track never straddles two groups
    assert np.bincount(data.similar_groups(tracks, descriptors, 30)).max() <= 3 * 30
    assert (data.similar_groups(tracks, descriptors, 50) == groups).all()  # deterministic
    # batches drawn group by group hold one or two groups of alike tracks, never one track twice
    chunks = data.batch_indices(tracks, 50, np.random.default_rng(1), groups)
    assert sum(len(c) for c in chunks) == len(tracks)
    for chunk in chunks:
        assert len(np.unique(tracks[chunk])) == len(chunk)
        assert len(np.unique(kind[tracks[chunk]])) == 1
    with pytest.raises(ValueError, match="group_tracks must be at least 2"):
        data.similar_groups(tracks, descriptors, 1)
    with pytest.raises(ValueError, match="599 descriptors for 600 rows"):
        data.similar_groups(tracks, descriptors[1:], 50)


def test_model_cards_name_the_batch_mix():
    mix = {"batch_mix": "similar", "batch_teacher": "desdis32", "group_tracks": 512}
    assert data.describe_batch_mix(mix) == "one group at a time of at most 512 tracks alike to desdis32"
    assert data.describe_batch_mix({"batch_mix": "image"}) == "one anchor image at a time"
    with pytest.raises(ValueError, match="batch_mix must be one of"):
        data.describe_batch_mix({"batch_mix": "scene"})


def test_batch_stream_is_reproducible_and_resumable():
    pairs = tiny_pairset(np.arange(50) % 20)
    first = [b.index.tolist() for _, b in zip(range(6), data.batches(pairs, 8, seed=3))]
    again = [b.index.tolist() for _, b in zip(range(6), data.batches(pairs, 8, seed=3))]
    assert first == again
    stream = data.batches(pairs, 8, seed=3)
    for _ in range(3):
        last = next(stream)
    resumed = [b.index.tolist() for _, b in zip(range(3), data.batches(pairs, 8, 3, last.epoch, last.position))]
    assert resumed == first[3:]
    batch = next(data.batches(pairs, 8, seed=3))
    assert batch.anchors.shape == (8, 1, 32, 32) and batch.anchors.dtype == torch.float32
    assert float(batch.anchors.max()) <= 1.0


def test_pairset_save_load_concat_split(tmp_path):
    a, b = tiny_pairset([0, 0, 1, 2]), tiny_pairset([0, 1, 1], value_offset=100)
    both = data.PairSet.concat([a, b])
    assert both.tracks.tolist() == [0, 0, 1, 2, 3, 4, 4]
    assert both.images.tolist() == [[0, 0]] * 4 + [[1, 1]] * 3 and both.image_names == ["a.png", "a.png"]
    both.save(tmp_path / "p.npz")
    loaded = data.PairSet.load(tmp_path / "p.npz")
    assert loaded.digest() == both.digest() and loaded.image_names == both.image_names
    train, val = both.split(0.4, seed=0)
    assert len(train) + len(val) == len(both)
    assert not set(train.tracks) & set(val.tracks)
    with pytest.raises(ValueError):
        data.PairSet(a.anchors[:2], a.positives, a.tracks, a.keypoints, a.images)


def test_warp_keypoints_follow_the_image():
    """A keypoint mapped through a rotation + zoom gives the same patch in the warped image."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.random((240, 320)).astype(np.float32), (0, 0), 3)
    image = (image - image.min()) / (image.max() - image.min())
    kps = np.array([[160, 120, 12, 30], [140, 100, 16, 200], [180, 130, 10, 95]], np.float32)
    H = np.vstack([cv2.getRotationMatrix2D((160, 120), 40, 1.3), [0, 0, 1]])
    warped = cv2.warpPerspective(image, H, (320, 240), flags=cv2.INTER_CUBIC)
    mapped = data.warp_keypoints(kps, H)
    assert mapped[:, 2] == pytest.approx(kps[:, 2] * 1.3, rel=1e-4)
    assert mapped[0, :2] == pytest.approx([160, 120], abs=1e-3)
    same = extract_patches(image, kps, 6.0)
    moved = extract_patches(warped, mapped, 6.0)
    wrong = extract_patches(warped, np.c_[mapped[:, :3], (mapped[:, 3] + 40) % 360], 6.0)
    err, err_wrong = (same - moved).abs().mean().item(), (same - wrong).abs().mean().item()
    assert err < 0.01 and err_wrong > 3 * err


def test_warp_pairs_on_an_image_folder(tmp_path, texture):
    cv2.imwrite(str(tmp_path / "t.png"), texture)
    pairs = data.warp_pairs([str(tmp_path / "*.png")], warps_per_image=2, keypoints_per_image=100, seed=0)
    assert len(pairs) > 50 and pairs.image_names == [str(tmp_path / "t.png")]
    assert pairs.tracks.max() < 100 and np.isfinite(pairs.keypoints).all()
    a, p = pairs.anchors.astype(np.float32), pairs.positives.astype(np.float32)
    matched = np.abs(a - p).mean()
    shuffled = np.abs(a - np.roll(p, 7, axis=0)).mean()
    assert matched < 0.8 * shuffled
    with pytest.raises(FileNotFoundError):
        data.warp_pairs([str(tmp_path / "none*.png")])


def test_skimage_images_resolve():
    specs = data.resolve_images(["skimage:*"])
    assert specs[0].startswith("skimage:") and len(specs) == len(data.SKIMAGE_PHOTOS)
    image = data.read_training_image("skimage:astronaut", max_side=256)
    assert image.dtype == np.float32 and max(image.shape) == 256


def write_phototour_folder(root, labels):
    """UBC PhotoTour raw layout: 1024x1024 sheets of 64x64 patches (patch i has grey value i) + info.txt."""
    folder = root / "liberty"
    folder.mkdir(parents=True)
    sheet = np.zeros((1024, 1024), np.uint8)
    for i in range(len(labels)):
        r, c = divmod(i, 16)
        sheet[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64] = i
    cv2.imwrite(str(folder / "patches0000.bmp"), sheet)
    (folder / "info.txt").write_text("".join(f"{label} 0\n" for label in labels))
    (folder / "m50_100000_100000_0.txt").write_text("0 0 0 1 0 0\n")


def test_read_phototour_raw_and_torchvision_cache(tmp_path):
    labels = [5, 5, 5, 7, 8, 8, 9, 10, 10, 10, 10, 11, 12, 13, 14, 15, 16, 16]  # 18 patches, two rows
    write_phototour_folder(tmp_path, labels)
    pairs = data.read_phototour(tmp_path, "liberty")
    assert len(pairs) == 2 + 1 + 3 + 1
    assert pairs.anchors.shape[1:] == (32, 32)
    for a, p, t in zip(pairs.anchors[:, 0, 0], pairs.positives[:, 0, 0], pairs.tracks):
        assert labels[a] == labels[p] == t and a != p
    cache_root = tmp_path / "cache"
    cache_root.mkdir()
    patches = torch.arange(18, dtype=torch.uint8)[:, None, None].expand(18, 64, 64).contiguous()
    torch.save((patches, torch.tensor(labels), torch.zeros(1, 3, dtype=torch.long)), cache_root / "liberty.pt")
    cached = data.read_phototour(cache_root, "liberty")
    assert cached.digest() == pairs.digest()
    assert len(data.read_phototour(tmp_path, "liberty", max_pairs=3)) == 3
    with pytest.raises(FileNotFoundError):
        data.read_phototour(tmp_path, "yosemite")


def test_read_hpatches_release(tmp_path):
    for seq, n in (("v_a", 3), ("i_b", 2)):
        folder = tmp_path / seq
        folder.mkdir()
        for name in ["ref"] + [f"{k}{lvl}" for k in "eht" for lvl in range(1, 6)]:
            stack = np.concatenate([np.full((65, 65), 10 * i + len(name), np.uint8) for i in range(n)])
            cv2.imwrite(str(folder / f"{name}.png"), stack)
    pairs = data.read_hpatches(tmp_path)
    assert len(pairs) == 15 * 5
    assert sorted(set(pairs.tracks.tolist())) == list(range(5))
    assert (pairs.anchors[:, 0, 0] // 10 == pairs.positives[:, 0, 0] // 10).all()
    assert len(data.read_hpatches(tmp_path, sequences=["v_a"], kinds=["e"], levels=[1])) == 3
    (tmp_path / "v_a" / "e1.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError):
        data.read_hpatches(tmp_path, sequences=["v_a"])


def write_colmap_fixture(work, image_dir, texture):
    """A COLMAP model (text files) + hloc features.h5 as descplug.pipeline.sfm leaves them: two images,
    two 3D points (one seen in both images, one in a single image), an image without points."""
    import h5py

    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(image_dir / name), texture)
    model_dir = work / "sfm"
    model_dir.mkdir(parents=True)
    (model_dir / "cameras.txt").write_text("1 SIMPLE_RADIAL 320 240 300 160 120 0\n")
    (model_dir / "images.txt").write_text(
        "# Image list with two lines of data per image:\n"
        "1 1 0 0 0 0 0 0 1 a.png\n10.5 20.5 7 30.5 40.5 -1\n"
        "3 1 0 0 0 0 0 0 1 c.png\n\n"
        "2 1 0 0 0 0 0 0 1 b.png\n11.5 21.5 7\n")
    (model_dir / "points3D.txt").write_text("# 3D point list\n7 0 0 1 255 255 255 0.5 1 0 2 0\n8 0 0 1 0 0 0 0.1 1 1\n")
    with h5py.File(work / "features.h5", "w") as fd:
        for name, kps in (("a.png", [[100, 80], [150, 120]]), ("b.png", [[102, 81]]), ("c.png", [[5, 5]])):
            g = fd.create_group(name)
            g["keypoints"] = np.array(kps, np.float32)
            g["scales"] = np.full(len(kps), 12, np.float32)
            g["oris"] = np.full(len(kps), 45, np.float32)
            g["scores"] = np.ones(len(kps), np.float32)
            g["image_size"] = np.array([320, 240])
            g["descriptors"] = np.zeros((128, len(kps)), np.float32)


def test_sfm_pairs_from_a_colmap_model(tmp_path, texture):
    work, image_dir = tmp_path / "work", tmp_path / "images"
    image_dir.mkdir()
    write_colmap_fixture(work, image_dir, texture)
    names, tracks = colmap.tracks(colmap.read_model(work / "sfm"))
    assert names == {1: "a.png", 3: "c.png", 2: "b.png"}
    assert tracks == [[(1, 0), (2, 0)], [(1, 1)]]
    pairs = data.sfm_pairs(image_dir, work)  # the model exists: no reconstruction
    assert len(pairs) == 1 and pairs.tracks.tolist() == [0]
    kps = sorted(pairs.keypoints[0, :, :2].tolist())
    assert kps == [[100, 80], [102, 81]]
    assert np.abs(pairs.anchors.astype(int) - pairs.positives.astype(int)).mean() < 40
