import json

import numpy as np
import pytest

from bench_fixtures import HOMOGRAPHIES, write_sequence
from benchmarks import datasets, sequences
from benchmarks.__main__ import main
from benchmarks.methods import load_methods

H = HOMOGRAPHIES[0]
SHAPE = (240, 320)


def grid_points(n=100, seed=0):
    return np.random.default_rng(seed).uniform([10, 10], [300, 220], (n, 2))


def test_perfect_matcher_on_a_known_homography():
    points0 = grid_points()
    points1 = sequences.warp(points0, H)
    pairs = np.stack([np.arange(100), np.arange(100)], axis=1)
    record = sequences.pair_record(points0, points1, pairs, H, SHAPE)
    assert record["mma"] == [1.0] * 10
    assert record["matches"] == 100
    assert record["corner_error"] < 1e-3
    summary = sequences.summarise([record])
    assert summary["mma"][0] == 1.0 and summary["h_acc"] == {"1": 1.0, "3": 1.0, "5": 1.0}
    assert summary["mma_sd"] == [0.0] * 10


def test_partly_wrong_matches_and_no_matches():
    points0 = grid_points()
    points1 = sequences.warp(points0, H)
    points1[50:] += [2.5, 0]  # half the matches are 2.5 px off
    pairs = np.stack([np.arange(100), np.arange(100)], axis=1)
    record = sequences.pair_record(points0, points1, pairs, H, SHAPE)
    assert record["mma"][:2] == [0.5, 0.5] and record["mma"][2:] == [1.0] * 8
    empty = sequences.pair_record(points0, points1, np.empty((0, 2), np.int64), H, SHAPE)
    assert empty["mma"] == [0.0] * 10 and empty["corner_error"] == np.inf
    summary = sequences.summarise([record, empty])
    assert summary["mma"][0] == 0.25 and summary["matches"] == 50 and summary["h_acc"]["5"] == 0.5
    # the spread of the mean over resampled sets of n pairs, half scoring 0.5 and half 0 at 1 px
    for n in (100, 400):
        spread = sequences.summarise([record, empty] * (n // 2))["mma_sd"]
        assert spread[0] == pytest.approx(0.5 * np.sqrt(0.25 / n), rel=0.1)
        assert spread[2] == pytest.approx(np.sqrt(0.25 / n), rel=0.1)


def test_sift_on_a_fixture_sequence_with_a_broken_image(tmp_path, texture, capsys):
    write_sequence(tmp_path / "v_good", texture)
    write_sequence(tmp_path / "i_broken", texture, HOMOGRAPHIES[:1])
    (tmp_path / "i_broken" / "2.png").write_bytes(b"not an image")
    results = sequences.evaluate(datasets.read_sequences(tmp_path), load_methods(["sift"]), progress=False)
    good, broken = results["sift"]["v"], results["sift"]["i"]
    assert good["pairs"] == 2 and good["failed"] == 0
    assert good["mma"][2] > 0.9 and good["h_acc"]["3"] == 1.0
    assert broken == {"mma": [0.0] * 10, "mma_sd": [0.0] * 10, "matches": 0.0, "h_acc": {"1": 0.0, "3": 0.0, "5": 0.0}, "pairs": 1,
                      "failed": 1}
    assert results["sift"]["all"]["pairs"] == 3 and results["sift"]["all"]["failed"] == 1
    assert "FAILED image" in capsys.readouterr().err


def test_command_line_json_markdown_plot(tmp_path, texture, random_checkpoint):
    write_sequence(tmp_path / "data" / "v_a", texture)
    out = tmp_path / "out"
    code = main(["sequences", "--root", str(tmp_path / "data"), "--baselines", "sift,rootsift", "--model",
                 str(random_checkpoint), "--max-keypoints", "300", "--json", str(out / "r.json"),
                 "--markdown", str(out / "r.md"), "--plot", str(out / "r.png"), "--reference", "sift",
                 "--no-progress"])
    assert code == 0
    doc = json.loads((out / "r.json").read_text())
    assert set(doc) == {"task", "protocol", "data", "results"} and doc["task"] == "sequences"
    assert list(doc["results"]) == ["sift", "rootsift", "tiny4"]
    assert set(doc["results"]["tiny4"]) == {"all", "v"}
    sift, tiny = doc["results"]["sift"]["all"], doc["results"]["tiny4"]["all"]
    assert len(sift["mma"]) == 10 and "mma_vs_reference" not in sift
    assert tiny["reference"] == "sift" and len(tiny["mma_vs_reference_sd"]) == 10
    assert tiny["mma_vs_reference"] == pytest.approx([a - b for a, b in zip(tiny["mma"], sift["mma"])])
    markdown = (out / "r.md").read_text()
    assert "| tiny4 |" in markdown and "| MMA@3 vs sift | paired sd |" in markdown
    assert (out / "r.png").stat().st_size > 0


def test_missing_root_is_a_clear_error(tmp_path, capsys):
    assert main(["sequences", "--root", str(tmp_path / "nope"), "--baselines", "sift", "--model", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.shared
def test_real_viewpoint_sequence(shared_root):
    seqs = datasets.read_sequences(shared_root / "data" / "homography", ["hpatches-v/v_dogman"])
    official = shared_root / "teachers" / "desdis-official" / "DesDis-8.pth"
    results = sequences.evaluate(seqs, load_methods(["sift", str(official)]), max_keypoints=1000, progress=False)
    for method in ("sift", "DesDis-8"):
        assert results[method]["v"]["pairs"] == 5 and results[method]["v"]["failed"] == 0
        assert results[method]["hpatches-v"] == results[method]["v"]
        assert results[method]["all"]["mma"][4] > 0.3
