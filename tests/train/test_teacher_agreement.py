"""weights/recipes/teacher_agreement.py: the mean student-teacher cosine on a group of images."""
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_agreement_is_one_for_the_teacher_itself_and_lower_for_a_smaller_student(tmp_path, texture, capsys,
                                                                                recipe_script):
    cv2.imwrite(str(tmp_path / "a.png"), texture)
    w8, w16 = (str(ROOT / f"weights/descplug-{w}.pt") for w in ("w8", "w16"))
    script = recipe_script("teacher_agreement")
    script.main(["--teacher", w16, "--models", w16, w8, "--group", f"tiny={tmp_path}/*.png",
                 "--max-keypoints", "200"])
    header, _, row = capsys.readouterr().out.strip().splitlines()
    assert header == "| images | patches | descplug-w16 | descplug-w8 |"
    label, patches, same, other = (cell.strip() for cell in row.strip("|").split("|"))
    assert label == "tiny" and 100 <= int(patches) <= 200
    assert float(same) == pytest.approx(1.0, abs=1e-3)
    # both students were distilled from DesDis-32: related descriptors, but not the same
    assert 0.5 < float(other) < 0.95


def test_bad_groups_are_named(tmp_path, recipe_script):
    script, w16 = recipe_script("teacher_agreement"), str(ROOT / "weights/descplug-w16.pt")
    with pytest.raises(SystemExit, match="LABEL=GLOB"):
        script.main(["--teacher", w16, "--models", w16, "--group", "no-label"])
    with pytest.raises(SystemExit, match="no image matches"):
        script.main(["--teacher", w16, "--models", w16, "--group", f"x={tmp_path}/*.png"])
