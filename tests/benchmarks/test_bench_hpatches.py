import json

import numpy as np
import pytest

from bench_fixtures import write_sequence
from benchmarks import datasets
from benchmarks import hpatches_patches as hp
from benchmarks.__main__ import main

N_PATCHES = 40


class Raw:
    """The resized patch itself as the descriptor: identical patches give identical descriptors."""

    name = "raw"

    def describe_patches(self, patches):
        return patches.reshape(len(patches), -1)


class Random:
    """Descriptors unrelated to the patches: chance level."""

    name = "random"

    def __init__(self):
        self.rng = np.random.default_rng(1)

    def describe_patches(self, patches):
        return self.rng.standard_normal((len(patches), 16)).astype(np.float32)


def write_identical_patch_set(root, names=("v_a", "i_b", "c")):
    """Sequences whose 16 patch files all hold the same textured patches."""
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        patches = rng.integers(0, 256, (N_PATCHES, 65, 65), dtype=np.uint8)
        for kind in datasets.PATCH_TYPES:
            datasets.write_patch_file(root / name / f"{kind}.png", patches)
    return datasets.read_patch_sequences(root)


def test_identical_descriptors_give_map_1(tmp_path):
    sequences = write_identical_patch_set(tmp_path)
    results, sizes = hp.evaluate(sequences, [Raw()], n_pairs=3000, n_queries=50, n_distractors=60, progress=False)
    raw = results["raw"]
    for group in ("all", "easy", "hard", "tough"):
        assert raw[group]["verification"] == pytest.approx(100)
        assert raw[group]["verification_auc"] == pytest.approx(100)
        assert raw[group]["matching"] == pytest.approx(100)
        assert raw[group]["retrieval"] == pytest.approx(100)
    assert {g: raw[g] for g in ("i", "v", "other")} == {g: {"matching": pytest.approx(100)} for g in ("i", "v", "other")}
    assert sizes == {"verification_pairs": 3000, "queries": 50, "distractors": 60, "patches": 3 * N_PATCHES}


class Broken:
    name = "broken"

    def describe_patches(self, patches):
        raise RuntimeError("out of memory")


def test_a_failing_method_is_reported_and_the_others_go_on(tmp_path, capsys):
    sequences = write_identical_patch_set(tmp_path)
    results, _ = hp.evaluate(sequences, [Broken(), Raw()], n_pairs=300, n_queries=10, n_distractors=20, progress=False)
    assert results["broken"] == {"all": {"failed": 1}}
    assert results["raw"]["all"]["failed"] == 0 and results["raw"]["all"]["matching"] == pytest.approx(100)
    assert "FAILED broken describing the patches: RuntimeError: out of memory" in capsys.readouterr().err


def test_random_descriptors_give_chance_level(tmp_path):
    sequences = write_identical_patch_set(tmp_path)
    results, _ = hp.evaluate(sequences, [Random()], n_pairs=30000, n_queries=60, n_distractors=80, progress=False)
    chance = results["random"]["all"]
    # imbalanced verification: 1 positive per 5 negatives; balanced ROC: AUC 1/2
    assert chance["verification"] == pytest.approx(100 / 6, abs=1.0)
    assert chance["verification_auc"] == pytest.approx(50, abs=1.0)
    # matching: the nearest neighbour is right 1 time in N_PATCHES
    assert chance["matching"] < 100 / N_PATCHES
    # retrieval: 5 positives among 100 (pool clipped to the 5 + 80 + ... candidates); far below 100
    assert chance["retrieval"] < 25


def test_official_ap_semantics_and_the_fast_retrieval_ap():
    assert hp.average_precision([3, 2, 1], [1, 1, 0]) == pytest.approx(1.0)
    # a positive never retrieved (numpos) caps recall at 1/2
    assert hp.average_precision([1.0], [1], numpos=2) == pytest.approx(0.5)
    assert hp.roc_auc([3, 2, 1, 0], [1, 1, 0, 0]) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        positives, distractors = rng.random(5), rng.random(300)
        pools = (5, 6, 50, 100, 400)
        fast = hp.retrieval_ap(positives, distractors, pools)
        for k, value in zip(pools, fast):
            d = np.r_[positives, distractors][:k]
            labels = np.r_[np.ones(5), np.zeros(len(d) - 5)]
            assert value == pytest.approx(hp.average_precision(-d, labels), abs=1e-9)


def test_make_patches_writes_the_release_layout(tmp_path, texture):
    write_sequence(tmp_path / "seqs" / "v_x", texture)
    write_sequence(tmp_path / "seqs" / "y", texture[:, ::-1].copy(), [np.eye(3)])  # one target image
    info = hp.make_patches(tmp_path / "seqs", tmp_path / "patches", max_patches=30, progress=False)
    assert info["failed"] == [] and set(info["patches"]) == {"v_x", "y"}
    for sequence in datasets.read_patch_sequences(tmp_path / "patches"):
        patches = sequence.load()
        assert len(patches["ref"]) == info["patches"][sequence.name] > 10
        ref = patches["ref"].reshape(len(patches["ref"]), -1).astype(np.float32)
        easy = patches["e1"].reshape(len(ref), -1).astype(np.float32)
        same = np.mean(np.abs(ref - easy))
        shuffled = np.mean(np.abs(ref - np.roll(easy, 1, axis=0)))
        assert same < 0.6 * shuffled  # the easy patch shows the same place as the ref patch
    assert json.loads((tmp_path / "patches" / "generation.json").read_text())["max_patches"] == 30


def test_identity_homography_without_jitter_reproduces_the_ref_patch(texture):
    keypoints = np.array([[160.0, 120, 8, 30], [100, 90, 5, 200]])
    frames = hp.region_frames(keypoints, hp.HPATCHES_MAGNIFICATION)
    image = texture.astype(np.float32) / 255
    np.testing.assert_allclose(hp.cut_patches(image, np.eye(3) @ frames), hp.cut_patches(image, frames))
    # the frame's x axis points along the keypoint angle (clockwise in image coordinates)
    centre_right = frames[0] @ np.array([1.0, 0, 1])
    np.testing.assert_allclose(centre_right[:2] - [160, 120],
                               8 * hp.HPATCHES_MAGNIFICATION / 2 * np.array([np.cos(np.pi / 6), np.sin(np.pi / 6)]))


def test_command_line_generate_then_evaluate(tmp_path, texture):
    write_sequence(tmp_path / "seqs" / "v_x", texture)
    write_sequence(tmp_path / "seqs" / "v_y", np.ascontiguousarray(texture[::-1]))
    assert main(["make-hpatches-patches", "--root", str(tmp_path / "seqs"), "--out", str(tmp_path / "p"),
                 "--max-patches", "25", "--no-progress"]) == 0
    splits = tmp_path / "splits.json"
    splits.write_text('{"view": {"name": "view", "test": ["v_x", "v_y"]}, "z": {"name": "z", "test": ["v_q"]}}')
    out = tmp_path / "r.json"
    args = ["hpatches-patches", "--root", str(tmp_path / "p"), "--splits", str(splits), "--baselines", "sift",
            "--model", "", "--pairs", "2000", "--queries", "20", "--distractors", "30", "--no-progress"]
    assert main(args + ["--split", "view", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["task"] == "hpatches-patches" and "official Python protocol" in doc["protocol"]
    sift = doc["results"]["sift"]
    assert set(sift) == {"all", "easy", "hard", "tough", "v"}
    assert sift["easy"]["matching"] > sift["tough"]["matching"]
    assert main(args + ["--split", "z"]) == 2


@pytest.mark.shared
def test_patches_from_real_sequences(shared_root, tmp_path):
    homography = shared_root / "data" / "homography" / "hpatches-v"
    info = hp.make_patches(homography, tmp_path, max_patches=40, progress=False)
    assert info["failed"] == [] and all(n == 40 for n in info["patches"].values())
    assert set(datasets.read_splits(shared_root / "data" / "hpatches" / "splits.json", "view")) >= set(info["patches"])
    sequences = datasets.read_patch_sequences(tmp_path)
    results, _ = hp.evaluate(sequences, [Raw()], n_pairs=5000, n_queries=30, n_distractors=60, progress=False)
    raw = results["raw"]
    assert raw["easy"]["matching"] > raw["tough"]["matching"] and raw["v"]["matching"] > 20
