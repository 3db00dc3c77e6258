"""Pair selection: exhaustive, sequential, retrieval by VLAD, pairs files."""
import h5py
import numpy as np
import pytest

from descplug import pairs


def test_exhaustive_and_sequential():
    names = ["c", "a", "b", "d"]
    assert pairs.exhaustive(names) == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]
    assert pairs.sequential(names, 2) == [("a", "b"), ("a", "c"), ("b", "c"), ("b", "d"), ("c", "d")]


def test_top_k_in_blocks_equals_the_dense_answer():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    dense = x @ x.T
    np.fill_diagonal(dense, -np.inf)
    expected = np.argsort(-dense, axis=1)[:, :4]
    np.testing.assert_array_equal(pairs.top_k(x, 4, block=7), expected)


def write_places(path, images_per_place=4, places=3, dim=32, seed=0):
    """Images of a few 'places': each image holds a noisy subset of its place's local descriptors."""
    rng = np.random.default_rng(seed)
    bases = [rng.standard_normal((300, dim)) for _ in range(places)]
    names = {}
    with h5py.File(path, "w") as fd:
        for p, base in enumerate(bases):
            for i in range(images_per_place):
                chosen = base[rng.choice(len(base), 200, replace=False)] + 0.3 * rng.standard_normal((200, dim))
                name = f"place{p}/img{i}.png"
                group = fd.create_group(name)
                group["keypoints"] = rng.uniform(0, 100, (200, 2)).astype(np.float32)
                group["descriptors"] = (chosen / np.linalg.norm(chosen, axis=1, keepdims=True)).T.astype(np.float32)
                group["scores"], group["image_size"] = np.ones(200, np.float32), np.array([100, 100])
                names[name] = p
    return names


def test_retrieval_finds_images_of_the_same_place(tmp_path):
    names = write_places(tmp_path / "features.h5")
    found = pairs.retrieval(tmp_path / "features.h5", k=3)
    assert len(found) == len({frozenset(p) for p in found})  # no pair twice
    assert all(names[a] == names[b] for a, b in found)
    assert {n for pair in found for n in pair} == set(names)
    descriptors = pairs.global_descriptors(tmp_path / "features.h5", sorted(names))
    assert descriptors.shape == (12, 11)  # PCA keeps at most N - 1 dimensions
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1, atol=1e-5)


def test_pairs_file_round_trip_and_errors(tmp_path):
    path = pairs.write_pairs([("a/x.png", "b.png"), ("b.png", "a/x.png"), ("c.png", "c.png")], tmp_path / "p.txt")
    assert pairs.read_pairs(path) == [("a/x.png", "b.png")]
    (tmp_path / "bad.txt").write_text("a.png b.png\nonly-one.png\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected two image names"):
        pairs.read_pairs(tmp_path / "bad.txt")
    (tmp_path / "collide.txt").write_text("a/b.png x.png\na-b.png x.png\n")
    with pytest.raises(ValueError, match="collide"):
        pairs.read_pairs(tmp_path / "collide.txt")
