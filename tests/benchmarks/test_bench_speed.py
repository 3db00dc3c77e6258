import json

import cv2
import pytest

from benchmarks import speed
from benchmarks.__main__ import main


def test_measure_on_a_generated_image(random_checkpoint):
    image = speed.generated_image((240, 320))
    results, data = speed.measure(image, ["sift", "rootsift", str(random_checkpoint)], max_keypoints=300, repeats=1,
                                  device="cpu", progress=False)
    assert list(results) == ["sift", "rootsift", "tiny4"]
    assert results["sift"]["all"]["compute_ratio"] == 1.0
    tiny = results["tiny4"]["all"]
    assert tiny["compute_s"] > 0 and tiny["patches_per_s"] > 0
    assert tiny["compute_ratio"] == pytest.approx(tiny["compute_s"] / results["sift"]["all"]["compute_s"])
    assert tiny["end_to_end_ratio"] > 0
    assert data["keypoints"] == 300 and data["torch_threads"] >= 1 and data["patch_extraction_s"] > 0


def test_command_line(tmp_path, random_checkpoint, capsys):
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), speed.generated_image((200, 300)))
    out = tmp_path / "speed.json"
    assert main(["speed", "--image", str(image), "--model", str(random_checkpoint), "--max-keypoints", "200",
                 "--repeats", "1", "--device", "cpu", "--threads", "1", "--json", str(out), "--no-progress"]) == 0
    doc = json.loads(out.read_text())
    assert doc["data"]["torch_threads"] == 1 and doc["data"]["image"] == str(image)
    assert "| tiny4 |" in capsys.readouterr().out


def test_a_model_that_fails_is_reported(tmp_path, capsys):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    results, _ = speed.measure(speed.generated_image((120, 160)), ["sift", str(broken)], max_keypoints=50, repeats=1,
                               device="cpu", progress=False)
    assert results["broken"] == {"all": {"failed": 1}}
    assert "FAILED timing broken" in capsys.readouterr().err
