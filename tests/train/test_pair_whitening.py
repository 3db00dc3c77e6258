"""descplug.train.pair_whitening / `descplug whiten`: whitening of a student's output learned from
matching pairs, folded into the network's head."""
import json
import re

import cv2
import pytest
import torch
import torch.nn.functional as F
import yaml

from descplug.cli import main as cli
from descplug.models.student import DesDisNet
from descplug.models.tfeat import TFeat
from descplug.models.zoo import load_model, save_checkpoint
from descplug.train.pair_whitening import fold_into_head, pair_whitening, raw_descriptors


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


@pytest.mark.parametrize("extra, message", [
    (["--kind", "sfm"], r"c.yaml: no data source of kind 'sfm' \(it has \['warp'\]\)"),
    (["--power", "0"], "--power must be > 0"),
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
