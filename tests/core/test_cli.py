import subprocess
import sys

import numpy as np
import pytest
import torch
import cv2

import descplug
from descplug.cli import main
from descplug.models import DesDisNet, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(DesDisNet(8).eval(), tmp_path_factory.mktemp("w") / "random8.pt")


def test_version():
    out = subprocess.run([sys.executable, "-m", "descplug.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"descplug {descplug.__version__}"


def test_describe_writes_npz(tmp_path, texture, checkpoint):
    cv2.imwrite(str(tmp_path / "t.png"), texture)
    assert main(["describe", str(tmp_path / "t.png"), "--out", str(tmp_path / "d.npz"), "--model", str(checkpoint), "--device", "cpu"]) == 0
    data = np.load(tmp_path / "d.npz")
    assert data["keypoints"].shape[1] == 4 and data["descriptors"].shape == (len(data["keypoints"]), 128)
    assert data["image_size"].tolist() == [320, 240] and str(data["model"]) == "random8"


def test_describe_bad_image_reports_and_writes_nothing(tmp_path, checkpoint, capsys):
    (tmp_path / "bad.png").write_text("not an image")
    code = main(["describe", str(tmp_path / "bad.png"), "--out", str(tmp_path / "d.npz"), "--model", str(checkpoint)])
    assert code == 2
    assert "cannot decode image file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.png"]


def test_interrupt_is_a_message_not_a_traceback(monkeypatch, capsys, tmp_path):
    import descplug.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_describe", interrupted)
    assert cli.main(["describe", "x.png", "--out", str(tmp_path / "d.npz")]) == 130
    assert "interrupted" in capsys.readouterr().err
