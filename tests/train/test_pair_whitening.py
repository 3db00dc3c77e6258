"""weights/recipes/pair_whitening.py: whitening of a student's output learned from matching pairs,
folded into the network's head."""
import json
import re

import cv2
import pytest
import torch
import torch.nn.functional as F
import yaml

from descplug.models.student import DesDisNet
from descplug.models.zoo import load_model, save_checkpoint


def test_full_power_whitens_the_differences_of_matching_descriptors(recipe_script):
    torch.manual_seed(0)
    mixing = torch.randn(6, 6, dtype=torch.float64)
    anchors = torch.randn(5000, 6, dtype=torch.float64)
    positives = anchors + torch.randn(5000, 6, dtype=torch.float64) @ mixing
    script = recipe_script("pair_whitening")
    matrix = script.pair_whitening(anchors, positives, power=1.0)
    diff = (anchors - positives) @ matrix.T
    assert torch.allclose(diff.T @ diff / len(diff), torch.eye(6, dtype=torch.float64), atol=1e-8)
    half = script.pair_whitening(anchors, positives, power=0.5)
    eig_half = torch.linalg.eigvalsh((anchors - positives).T @ (anchors - positives) / 5000)
    # power 0.5 scales each principal direction of the differences by eigenvalue^(-1/4)
    assert torch.allclose(torch.linalg.svdvals(half).sort().values, (eig_half ** -0.25).sort().values, atol=1e-8)


def test_the_folded_head_gives_the_whitened_descriptor(recipe_script):
    torch.manual_seed(0)
    model = DesDisNet(width=4).eval()
    model.desc[2].running_mean.normal_()
    model.desc[2].running_var.uniform_(0.5, 2.0)
    patches = torch.rand(16, 1, 32, 32)
    script = recipe_script("pair_whitening")
    raw = script.raw_descriptors(model, patches)
    assert torch.allclose(F.normalize(raw, dim=1).float(), model(patches), atol=1e-6)
    matrix = torch.randn(128, 128, dtype=torch.float64)
    script.fold_into_head(model, matrix)
    with torch.no_grad():
        assert torch.allclose(model(patches), F.normalize(raw @ matrix.T, dim=1).float(), atol=1e-5)


def test_whitening_a_student_writes_a_loadable_checkpoint(tmp_path, texture, capsys, recipe_script):
    cv2.imwrite(str(tmp_path / "a.png"), texture)
    torch.manual_seed(0)
    student = save_checkpoint(DesDisNet(width=4).eval(), tmp_path / "student.pt", meta={})
    config = {"data": {"sources": [{"kind": "warp", "images": [str(tmp_path / "*.png")], "warps_per_image": 2,
                                    "keypoints_per_image": 100}], "cache_dir": str(tmp_path / "cache")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "whitened.pt"
    args = ["--config", str(tmp_path / "c.yaml"), "--model", str(student), "--output", str(out)]
    script = recipe_script("pair_whitening")
    assert script.main(args) == 0
    assert "whitened on" in capsys.readouterr().out
    patches = torch.rand(8, 1, 32, 32)
    with torch.no_grad():
        before, after = load_model(student)(patches), load_model(out)(patches)
    assert after.shape == before.shape and not torch.allclose(after, before, atol=1e-3)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["name"] == "whitened" and "pair_whitening.py --config" in card["recipe"]
    assert re.fullmatch(r"pair whitening, power 0.5, from the differences of \d+ matching pairs of all sources "
                        r"of .*c.yaml, folded into the last layer", card["whitening"])
    assert "| output whitening | pair whitening, power 0.5" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit, match="no data source of kind 'sfm'"):
        script.main(args + ["--kind", "sfm"])
