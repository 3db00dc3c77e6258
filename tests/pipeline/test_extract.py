"""extract: resume after a kill, bad images, empty folders, re-describing another file's keypoints."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from descplug import pipeline
from descplug.cli import main
from descplug.io.h5 import FEATURE_KEYS, feature_names


def complete_groups(path):
    """Complete image groups, read without taking the file lock (the writer may be running)."""
    with h5py.File(path, "r", locking=False) as fd:
        return {name: fd[name]["descriptors"][()] for name in fd if all(k in fd[name] for k in FEATURE_KEYS)}


def test_killed_run_keeps_every_finished_image_and_resumes(tmp_path, random_student, make_images):
    names = make_images(tmp_path / "images", [f"img{i:02d}.png" for i in range(40)], height=240, width=320)
    out = tmp_path / "features.h5"
    command = [sys.executable, "-m", "descplug.cli", "extract", str(tmp_path / "images"), "--out", str(out),
               "--model", str(random_student), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, before = time.time() + 120, {}
    while time.time() < deadline and process.poll() is None:
        try:
            before = complete_groups(out) if out.exists() else {}
        except (OSError, KeyError, RuntimeError):  # read mid-write (h5py raises any of these): retry
            continue
        if len(before) >= 3:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    survived = complete_groups(out)
    assert 3 <= len(survived) < len(names), "the kill should land in the middle of the run"
    assert set(feature_names(out)) == set(survived)

    report = pipeline.extract(tmp_path / "images", out, model=random_student, device="cpu")
    assert (report.skipped, report.done, report.failed) == (len(survived), len(names) - len(survived), [])
    after = complete_groups(out)
    assert sorted(after) == names
    for name, descriptors in survived.items():
        np.testing.assert_array_equal(after[name], descriptors)


def test_bad_images_are_reported_and_skipped(tmp_path, random_student, make_images, capsys):
    folder = tmp_path / "images"
    make_images(folder, ["good1.png", "good2.png"])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image; ignored")
    out = tmp_path / "features.h5"
    status = main(["extract", str(folder), "--out", str(out), "--model", str(random_student), "--device", "cpu"])
    text = capsys.readouterr().out
    assert status == 1
    assert "2 written" in text and "2 failed" in text
    assert "broken.jpg: cannot decode image file" in text and "empty.png" in text
    assert feature_names(out) == ["good1.png", "good2.png"]
    status = main(["extract", str(folder), "--out", str(out), "--model", str(random_student), "--device", "cpu"])
    assert status == 1 and "0 written, 2 already done, 2 failed" in capsys.readouterr().out


def test_empty_or_missing_folder_is_a_clear_error(tmp_path, random_student, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here")
    assert main(["extract", str(tmp_path / "empty"), "--out", str(tmp_path / "f.h5"), "--model", str(random_student)]) == 2
    assert "no images found" in capsys.readouterr().err
    assert main(["extract", str(tmp_path / "nowhere"), "--out", str(tmp_path / "f.h5"), "--model", str(random_student)]) == 2
    assert "image folder not found" in capsys.readouterr().err
    assert not (tmp_path / "f.h5").exists()


def test_resume_refuses_other_settings(tmp_path, image_dir, random_student):
    out = tmp_path / "features.h5"
    pipeline.extract(image_dir, out, model=random_student, max_keypoints=50, device="cpu")
    with pytest.raises(pipeline.PipelineError, match="other settings.*max_keypoints"):
        pipeline.extract(image_dir, out, model=random_student, max_keypoints=60, device="cpu")
    report = pipeline.extract(image_dir, out, model=random_student, max_keypoints=60, overwrite=True, device="cpu")
    assert report.done == 4


def test_keypoints_from_another_file_are_redescribed(tmp_path, image_dir, random_student):
    source = tmp_path / "other.h5"
    with h5py.File(source, "w") as fd:
        for i, name in enumerate(["a.png", "sub/c.png"]):
            fd[f"{name}/keypoints"] = np.array([[10.0 + i, 20.0], [100.0, 60.5], [0.0, 0.0]], np.float32)
    out = tmp_path / "redescribed.h5"
    report = pipeline.extract(image_dir, out, model=random_student, keypoints_from=source, default_size=8.0, device="cpu")
    assert report.done == 2 and not report.failed
    with h5py.File(out, "r") as fd, h5py.File(source, "r") as src:
        for name in ["a.png", "sub/c.png"]:
            np.testing.assert_array_equal(fd[name]["keypoints"][()], src[name]["keypoints"][()])
            assert fd[name]["descriptors"].shape == (128, 3)
            np.testing.assert_allclose(fd[name]["scales"][()], 8.0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX signals")
def test_sigint_during_a_write_is_deferred(tmp_path):
    from descplug.io.h5 import deferred_signals

    # Python's own SIGINT handler, as in a terminal (a background job, e.g. under nohup, starts with
    # SIGINT ignored, and deferred_signals then rightly keeps ignoring it)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                with h5py.File(tmp_path / "x.h5", "w") as fd:
                    fd["done"] = 1
    finally:
        signal.signal(signal.SIGINT, previous)
    with h5py.File(tmp_path / "x.h5", "r") as fd:
        assert fd["done"][()] == 1
