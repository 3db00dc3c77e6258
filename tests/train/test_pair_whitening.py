"""descplug.train.pair_whitening / `descplug whiten`: whitening of a student's output learned from
matching pairs, folded into the network's head."""
import json
import re

import cv2
import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
import yaml

from descplug.cli import main as cli
from descplug.models.student import DesDisNet
from descplug.models.tfeat import TFeat
from descplug.models.zoo import load_model, save_checkpoint
from descplug.train.data import PairSet
from descplug.train.pair_whitening import (fold_into_head, non_matching, pair_whitening, raw_descriptors,
                                             whiten_student)


def test_full_power_whitens_the_differences_of_matching_descriptors():
    torch.manual_seed(0)
    mixing = torch.randn(6, 6, dtype=torch.float64)
    anchors = torch.randn(5000, 6, dtype=torch.float64)
    positives = anchors + torch.randn(5000, 6, dtype=torch.float64) @ mixing
    matrix = pair_whitening(anchors, positives, power=1.0)
    diff = (anchors - positives) @ matrix.T
    assert torch.allclose(diff.T @ diff / len(diff), torch.eye(6, dtype=torch.float64), atol=1e-8)
    half = pair_whitening(anchors, positives, power=0.5)
    eig_half = torch.linalg.eigvalsh((anchors - positives).T @ (anchors - positives) / 5000)
    # power 0.5 scales each principal direction of the differences by eigenvalue^(-1/4), and it is
    # the symmetric root: applied twice it is the full whitening (no rotation of the axes)
    assert torch.allclose(torch.linalg.svdvals(half).sort().values, (eig_half ** -0.25).sort().values, atol=1e-8)
    assert torch.allclose(half, half.T, atol=1e-10)
    assert torch.allclose(half @ half @ half @ half, matrix.T @ matrix, atol=1e-8)  # both C^-1


def test_discriminative_weighting_scales_each_direction_by_its_between_within_ratio():
    torch.manual_seed(0)
    mixing = torch.randn(5, 5, dtype=torch.float64)
    anchors = torch.randn(4000, 5, dtype=torch.float64) * torch.tensor([5.0, 3.0, 1.0, 1.0, 0.5], dtype=torch.float64)
    positives = anchors + torch.randn(4000, 5, dtype=torch.float64) @ mixing * 0.3
    mismatched = anchors - anchors.roll(1, 0)
    within = (anchors - positives).T @ (anchors - positives) / 4000
    between = mismatched.T @ mismatched / 4000
    ratios = torch.from_numpy(scipy.linalg.eigh(between.numpy(), within.numpy(), eigvals_only=True))
    matrix = pair_whitening(anchors, positives, 1.0, mismatched, discriminative=0.5)
    # within variance after W: ratio^0.5 along the generalised eigenvectors; between: ratio^1.5
    w_within = torch.linalg.eigvalsh(matrix @ within @ matrix.T)
    w_between = torch.linalg.eigvalsh(matrix @ between @ matrix.T)
    assert torch.allclose(w_within, ratios ** 0.5, rtol=1e-8)
    assert torch.allclose(w_between, ratios ** 1.5, rtol=1e-8)
    assert ratios.max() / ratios.min() > 10  # the weighting is not a uniform scale here
    plain = pair_whitening(anchors, positives, 1.0)
    assert torch.equal(pair_whitening(anchors, positives, 1.0, mismatched, 0.0), plain)
    with pytest.raises(ValueError, match="needs the differences of mismatched descriptors"):
        pair_whitening(anchors, positives, 1.0, None, 0.5)


def test_non_matching_partners_belong_to_other_tracks():
    tracks = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    rows, partners = non_matching(tracks)
    assert len(rows) > 0 and np.all(tracks[rows] != tracks[partners])
    assert len(set(partners.tolist())) == len(partners)


def test_discriminative_whitening_of_a_single_track_is_a_clear_error():
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 255, (2, 20, 32, 32), dtype=np.uint8)
    one_track = PairSet(patches[0], patches[1], np.zeros(20, np.int64), np.zeros((20, 2, 4), np.float32),
                        np.zeros((20, 2), np.int32), ["a.png"])
    model = DesDisNet(width=4).eval()
    whiten_student(model, one_track, 1.0)  # plain whitening needs matching pairs only
    with pytest.raises(ValueError, match="--discriminative needs pairs of at least two tracks"):
        whiten_student(DesDisNet(width=4).eval(), one_track, 1.0, discriminative=0.5)


def test_the_folded_head_gives_the_whitened_descriptor():
    torch.manual_seed(0)
    model = DesDisNet(width=4).eval()
    model.desc[2].running_mean.normal_()
    model.desc[2].running_var.uniform_(0.5, 2.0)
    patches = torch.rand(16, 1, 32, 32)
    raw = raw_descriptors(model, patches)
    assert torch.allclose(F.normalize(raw, dim=1).float(), model(patches), atol=1e-6)
    matrix = torch.randn(128, 128, dtype=torch.float64)
    fold_into_head(model, matrix)
    with torch.no_grad():
        assert torch.allclose(model(patches), F.normalize(raw @ matrix.T, dim=1).float(), atol=1e-5)


@pytest.fixture
def student_and_config(tmp_path, texture):
    cv2.imwrite(str(tmp_path / "a.png"), texture)
    torch.manual_seed(0)
    student = save_checkpoint(DesDisNet(width=4).eval(), tmp_path / "student.pt", meta={})
    config = {"data": {"sources": [{"kind": "warp", "images": [str(tmp_path / "*.png")], "warps_per_image": 2,
                                    "keypoints_per_image": 100}], "cache_dir": str(tmp_path / "cache")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    return student, tmp_path / "c.yaml"


def test_descplug_whiten_writes_a_loadable_checkpoint_and_card(tmp_path, student_and_config, capsys):
    student, config = student_and_config
    out = tmp_path / "whitened.pt"
    assert cli(["whiten", "--config", str(config), "--model", str(student), "--output", str(out)]) == 0
    assert "whitened on" in capsys.readouterr().out
    patches = torch.rand(8, 1, 32, 32)
    with torch.no_grad():
        before, after = load_model(student)(patches), load_model(out)(patches)
    assert after.shape == before.shape and not torch.allclose(after, before, atol=1e-3)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["name"] == "whitened"
    assert card["recipe"].endswith(f"&& descplug whiten --config {config} --model {student} --power 0.5 "
                                   f"--output {out}")
    assert re.fullmatch(r"pair whitening, power 0.5, from the differences of \d+ matching pairs of all sources "
                        r"of .*c.yaml, folded into the last layer", card["whitening"])
    assert "| output whitening | pair whitening, power 0.5" in out.with_suffix(".md").read_text()


def test_descplug_whiten_discriminative_records_its_weighting(tmp_path, student_and_config):
    student, config = student_and_config
    plain, weighted = tmp_path / "plain.pt", tmp_path / "weighted.pt"
    for out, extra in ((plain, []), (weighted, ["--discriminative", "0.5"])):
        assert cli(["whiten", "--config", str(config), "--model", str(student), "--power", "1",
                    "--output", str(out), *extra]) == 0
    patches = torch.rand(8, 1, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(load_model(plain)(patches), load_model(weighted)(patches), atol=1e-3)
    card = json.loads(weighted.with_suffix(".json").read_text())
    assert card["recipe"].endswith(f"--power 1 --discriminative 0.5 --output {weighted}")
    assert "weighted by (between / within variance)^0.25 per direction" in card["whitening"]


@pytest.mark.parametrize("extra, message", [
    (["--kind", "sfm"], r"c.yaml: no data source of kind 'sfm' \(it has \['warp'\]\)"),
    (["--power", "0"], "--power must be > 0"),
    (["--discriminative", "-1"], "--discriminative must be >= 0"),
])
def test_descplug_whiten_names_bad_arguments_and_writes_nothing(tmp_path, student_and_config, capsys, extra, message):
    student, config = student_and_config
    out = tmp_path / "whitened.pt"
    assert cli(["whiten", "--config", str(config), "--model", str(student), "--output", str(out), *extra]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_descplug_whiten_refuses_a_model_that_is_not_a_desdis_student(tmp_path, student_and_config, capsys):
    _, config = student_and_config
    tfeat = save_checkpoint(TFeat().eval(), tmp_path / "tfeat.pt", meta={})
    out = tmp_path / "whitened.pt"
    assert cli(["whiten", "--config", str(config), "--model", str(tfeat), "--output", str(out)]) == 2
    assert "tfeat.pt: not a DesDis student (TFeat); only those can be whitened" in capsys.readouterr().err
    assert not out.exists()
