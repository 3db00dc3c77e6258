"""A tiny end-to-end training run (a few steps on two small images) and the CLI entry point."""
import json

import cv2
import pytest
import torch
import yaml

from descplug.cli import main as cli_main
from descplug.models.student import DesDisNet
from descplug.models.zoo import load_model, save_checkpoint
from descplug.train.trainer import load_config, train


@pytest.fixture()
def tiny_config(tmp_path, texture):
    cv2.imwrite(str(tmp_path / "a.png"), texture)
    cv2.imwrite(str(tmp_path / "b.png"), cv2.rotate(texture, cv2.ROTATE_90_CLOCKWISE))
    torch.manual_seed(0)
    teacher = save_checkpoint(DesDisNet(width=4).eval(), tmp_path / "teacher.pt", meta={})
    config = {
        "name": "tiny",
        "threads": 1,
        "data": {"sources": [{"kind": "warp", "images": [str(tmp_path / "*.png")], "warps_per_image": 2,
                              "keypoints_per_image": 150}],
                 "cache_dir": str(tmp_path / "cache"), "max_val": 50, "val_fraction": 0.1},
        "model": {"arch": "desdis", "width": 4},
        "teachers": {"net": str(teacher), "rootsift": "rootsift"},
        "loss": {"desdis": {"weight": 1.0, "teacher": "net"}, "cosine": {"weight": 0.5, "teacher": "net"},
                 "kd": {"weight": 1.0, "teachers": ["net", "rootsift"]}},
        "optim": {"steps": 6, "batch_size": 32, "warmup": 2},
        "checkpoint_every": 3, "val_every": 3,
        "run_dir": str(tmp_path / "run"), "output": str(tmp_path / "out" / "tiny.pt"),
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_tiny_training_run_resume_and_card(tiny_config, tmp_path):
    config = load_config(tiny_config)
    out = train(config, progress=False)
    model = load_model(out)
    assert model.descriptor_size == 128
    card = json.loads(out.with_suffix(".json").read_text())
    for key in ("teachers", "data", "recipe", "steps", "wall_time_s", "hardware", "parameters", "macs_per_patch"):
        assert key in card
    assert card["batches"] == "random" and "| batches | random |" in out.with_suffix(".md").read_text()
    assert card["steps"] == 6 and card["parameters"] == sum(p.numel() for p in model.parameters())
    assert out.with_suffix(".md").read_text().startswith("# tiny")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # both teachers' outputs cached
    straight = model.state_dict()

    # the same run stopped after 3 steps and resumed gives the same weights
    assert train(load_config(tiny_config, {"run_dir": str(tmp_path / "r2")}), progress=False, stop_at=3) is None
    resumed = train(load_config(tiny_config, {"run_dir": str(tmp_path / "r2"),
                                              "output": str(tmp_path / "out2" / "tiny.pt")}),
                    resume=True, progress=False)
    for key, value in load_model(resumed).state_dict().items():
        assert torch.allclose(value, straight[key], atol=1e-5), key


def test_cli_train_and_config_errors(tiny_config, tmp_path, capsys):
    code = cli_main(["train", "--config", str(tiny_config), "--steps", "2", "--no-progress",
                     "--run-dir", str(tmp_path / "cli"), "--output", str(tmp_path / "cli.pt")])
    assert code == 0 and (tmp_path / "cli.pt").is_file() and (tmp_path / "cli.json").is_file()
    bad = tmp_path / "bad.yaml"
    for text, message in (("modle: {}", "unknown config keys"),
                          ("data: {batch_mix: scene}", "data.batch_mix must be one of"),
                          ("data: {batch_mix: similar}", "data.batch_mix 'similar' needs data.batch_teacher"),
                          ("loss: {cosine: {target: pair}}", "loss.cosine.target must be one of"),
                          ("loss: {cosine: {target: 1.5}}", "or a number in [0, 1], got 1.5"),
                          ("data: {sources: [{kind: sfm, repeat: 0}]}", "'sfm': repeat must be a whole number")):
        bad.write_text(text + "\n")
        assert cli_main(["train", "--config", str(bad)]) == 2, text
        assert message in capsys.readouterr().err, text
    bad.write_text(yaml.safe_dump({"loss": {"cosine": {"weight": 1.0, "teacher": "nobody"}},
                                   "data": yaml.safe_load(tiny_config.read_text())["data"]}))
    assert cli_main(["train", "--config", str(bad), "--run-dir", str(tmp_path / "bad")]) == 2
    assert "teacher 'nobody'" in capsys.readouterr().err


def test_a_config_is_merged_over_its_base(tiny_config, tmp_path):
    stage2 = tmp_path / "sub" / "stage2.yaml"
    stage2.parent.mkdir()
    stage2.write_text(yaml.safe_dump({"base": "../tiny.yaml", "name": "stage2", "loss": {"kd": {"weight": 5.0}},
                                      "optim": {"steps": 2}}))
    base, config = load_config(tiny_config), load_config(stage2)
    assert config["name"] == "stage2" and config["optim"]["steps"] == 2 and config["loss"]["kd"]["weight"] == 5.0
    assert config["optim"]["batch_size"] == base["optim"]["batch_size"] == 32  # the rest is the base's
    assert config["loss"]["kd"]["teachers"] == base["loss"]["kd"]["teachers"] and config["data"] == base["data"]
    loop = tmp_path / "loop.yaml"
    loop.write_text(yaml.safe_dump({"base": "loop.yaml"}))
    with pytest.raises(ValueError, match="comes back to it"):
        load_config(loop)


def test_init_starts_from_a_checkpoint_of_the_same_network(tiny_config, tmp_path, capsys):
    teacher = yaml.safe_load(tiny_config.read_text())["teachers"]["net"]
    # learning rate 0: the convolutions keep the init checkpoint's weights (BatchNorm statistics move)
    # (seed 1: the fixture's teacher was drawn from seed 0)
    out = train(load_config(tiny_config, {"init": teacher, "seed": 1, "optim": {"lr": 0.0}}), progress=False)
    start, tuned = load_model(teacher).state_dict(), load_model(out).state_dict()
    for key in ("layer1.1.weight", "layer3.3.weight", "desc.1.weight", "desc.1.bias"):
        assert torch.equal(start[key], tuned[key]), key
    assert json.loads(out.with_suffix(".json").read_text())["init"] == teacher
    assert "started from (fine-tuned)" in out.with_suffix(".md").read_text()
    # a fine-tuned card carries the card of the checkpoint it started from (the teacher has none)
    assert json.loads(out.with_suffix(".json").read_text())["init_card"] is None
    again = train(load_config(tiny_config, {"init": str(out), "optim": {"steps": 3},
                                            "output": str(tmp_path / "again.pt")}), progress=False)
    source = json.loads(again.with_suffix(".json").read_text())["init_card"]
    assert source["name"] == "tiny" and source["steps"] == 6 and source["init"] == teacher
    assert f"{out} (tiny: 6 steps, " in again.with_suffix(".md").read_text()
    # without init the same run starts from a random network
    out = train(load_config(tiny_config, {"seed": 1, "optim": {"lr": 0.0}, "output": str(tmp_path / "fresh.pt")}),
                progress=False)
    assert not torch.equal(start["layer1.1.weight"], load_model(out).state_dict()["layer1.1.weight"])

    wider = save_checkpoint(DesDisNet(width=8), tmp_path / "wider.pt")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(tiny_config.read_text()), "init": str(wider)}))
    assert cli_main(["train", "--config", str(bad), "--run-dir", str(tmp_path / "bad")]) == 2
    assert "init" in (err := capsys.readouterr().err) and "{'width': 8" in err and "{'width': 4" in err
    bad.write_text(yaml.safe_dump({**yaml.safe_load(tiny_config.read_text()), "init": str(tmp_path / "missing.pt")}))
    assert cli_main(["train", "--config", str(bad), "--run-dir", str(tmp_path / "bad")]) == 2
    assert "config: init: unknown model" in (err := capsys.readouterr().err) and "missing.pt" in err


def test_similar_batches_group_tracks_by_the_batch_teacher(tiny_config, tmp_path):
    """batch_mix 'similar' computes the batch teacher's outputs even when no loss term uses it, and
    draws each batch from a group of at most group_tracks alike tracks."""
    import numpy as np

    from descplug.train.data import PairSet
    from descplug.train.trainer import batch_groups, load_sources, teacher_outputs, used_teachers

    config = load_config(tiny_config, {"data": {"batch_mix": "similar", "batch_teacher": "rootsift",
                                                "group_tracks": 16}, "loss": {"kd": {"weight": 0.0}}})
    assert used_teachers(config) == ["net", "rootsift"]
    sources = load_sources(config["data"])
    pairs = PairSet.concat(sources)
    teachers = teacher_outputs(config, sources, [1], "cpu")
    groups = batch_groups(config["data"], pairs, teachers)
    assert groups.max() + 1 >= len(np.unique(pairs.tracks)) / 16
    assert max(len(np.unique(pairs.tracks[groups == g])) for g in range(groups.max() + 1)) <= 16
    out = train(config, progress=False)
    assert any(t.startswith("rootsift") for t in json.loads(out.with_suffix(".json").read_text())["teachers"])


def test_teacher_outputs_stay_aligned_with_training_pairs():
    """After the validation split (truncated to max_val), row i of the teacher outputs is still the
    teacher's description of training pair i."""
    import numpy as np

    from descplug.train.data import PairSet
    from descplug.train.trainer import split_rows

    rng = np.random.default_rng(0)
    n = 60
    anchors = rng.integers(0, 255, (n, 32, 32), dtype=np.uint8)
    pairs = PairSet(anchors, 255 - anchors, np.arange(n) % 30, np.zeros((n, 2, 4), np.float32),
                    np.zeros((n, 2), np.int32))
    both = pairs.patches().flatten(1)[:, :8]  # a "teacher" that copies 8 pixels
    train_pairs, val, teachers, reference = split_rows(pairs, {"copy": both}, 0.3, max_val=5, seed=0)
    assert len(val) == 5 and len(train_pairs) == n - 2 * 9  # 9 of 30 tracks held out, 2 pairs each
    expected = train_pairs.patches().flatten(1)[:, :8]
    assert torch.equal(teachers["copy"], expected)
    assert set(reference) == {"copy"}


def test_teacher_outputs_of_a_repeated_source_follow_its_copies(tmp_path):
    """Each source is described once (one cache file) and its outputs are tiled like its pairs."""
    import numpy as np

    from descplug.train.data import PairSet
    from descplug.train.teachers import Teacher
    from descplug.train.trainer import DEFAULTS, merge, teacher_outputs

    rng = np.random.default_rng(0)

    def pairset(n):
        anchors = rng.integers(0, 255, (n, 32, 32), dtype=np.uint8)
        return PairSet(anchors, 255 - anchors, np.arange(n), np.zeros((n, 2, 4), np.float32),
                       np.zeros((n, 2), np.int32))

    sources, repeats = [pairset(7), pairset(5)], [1, 3]
    config = merge(DEFAULTS, {"teachers": {"rs": "rootsift"}, "loss": {"cosine": {"weight": 1.0, "teacher": "rs"}},
                              "data": {"cache_dir": str(tmp_path)}})
    out = teacher_outputs(config, sources, repeats, "cpu")["rs"]
    pairs = PairSet.concat([s.repeat(k) for s, k in zip(sources, repeats)])
    assert torch.allclose(out, Teacher("rootsift")(pairs.patches()), atol=1e-3)  # the cache is float16
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_top1_counts_another_warp_of_the_same_track_as_a_hit():
    import torch

    from descplug.train.trainer import top1

    e = torch.eye(4)
    anchors = torch.stack([e[0], e[0], e[1], e[2]])  # rows 0 and 1: two warps of track 7
    positives = torch.stack([e[0], e[3], e[1], e[1]])  # row 3's nearest positive is row 2 (track 9)
    tracks = torch.tensor([7, 7, 9, 5])
    assert top1(anchors, positives, tracks) == 0.75


def test_cosine_track_target_pulls_both_views_to_the_track_centroid():
    import numpy as np

    from descplug.train.data import Batch
    from descplug.train.trainer import DEFAULTS, Objective, merge

    e = torch.eye(3)
    teacher = torch.stack([e[0], e[0], e[1], e[2]])  # anchors of tracks 4, 4; positives e1, e2
    cfg = merge(DEFAULTS["loss"], {"triplet": {"weight": 0.0},
                                   "cosine": {"weight": 1.0, "teacher": "t", "target": "track"}})
    objective = Objective(cfg, {"t": teacher}, np.array([4, 4]))
    batch = Batch(*(torch.zeros(1),) * 4, index=torch.tensor([1]))
    centroid = torch.nn.functional.normalize(torch.tensor([[2.0, 1.0, 1.0]]), dim=1)
    _, terms = objective(centroid, centroid, batch)
    assert terms["cosine"] == pytest.approx(0.0, abs=1e-6)
    _, terms = objective(e[0:1], e[2:3], batch)  # each view's own teacher descriptor is not the target
    assert terms["cosine"] > 0.3
    view = Objective(merge(cfg, {"cosine": {"target": "view"}}), {"t": teacher}, np.array([4, 4]))
    assert view(e[0:1], e[2:3], batch)[1]["cosine"] == pytest.approx(0.0, abs=1e-6)
    # a number blends the two: the anchor's target lies between its view (e0) and the centroid
    half = Objective(merge(cfg, {"cosine": {"target": 0.5}}), {"t": teacher}, np.array([4, 4]))
    blend = torch.nn.functional.normalize(e[0:1] + centroid, dim=1)
    blend_p = torch.nn.functional.normalize(e[2:3] + centroid, dim=1)
    assert half(blend, blend_p, batch)[1]["cosine"] == pytest.approx(0.0, abs=1e-6)
    assert half(centroid, centroid, batch)[1]["cosine"] > 0.05
