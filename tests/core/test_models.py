"""Architectures, checkpoint layout detection, BatchNorm folding, and the official checkpoints."""
import kornia.feature as KF
import pytest
import torch
import torch.nn.functional as F

from descplug.models import DesDisNet, HardNet, SOSNet, TFeat, build_from_checkpoint, fold_batchnorm, load_model, save_checkpoint


def randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def patches(n=5, seed=0):
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


def desdis_reference(state, x):
    """An independent functional DesDis forward pass straight from the state dict."""
    def bn(t, prefix):
        return (t - state[f"{prefix}.running_mean"].view(1, -1, 1, 1)) / torch.sqrt(state[f"{prefix}.running_var"].view(1, -1, 1, 1) + 1e-5)

    x = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), unbiased=False, keepdim=True) + 1e-5)
    x = F.relu(bn(F.conv2d(x, state["layer1.1.weight"], stride=2, padding=1), "layer1.2"))
    x = F.relu(bn(F.conv2d(x, state["layer2.0.weight"], stride=2, padding=1), "layer2.1"))
    x = F.relu(bn(F.conv2d(x, state["layer3.0.weight"], stride=2, padding=1), "layer3.1"))
    x = F.relu(bn(F.conv2d(x, state["layer3.3.weight"], stride=1, padding=1), "layer3.4"))
    x = bn(F.conv2d(x, state["desc.1.weight"], state["desc.1.bias"]), "desc.2")
    return F.normalize(x.flatten(1), dim=1)


@pytest.mark.parametrize("width", [8, 16, 24, 32])
def test_desdis_family_matches_reference_and_batch_of_one(width):
    net = randomise_bn(DesDisNet(width))
    x = patches()
    out = net(x)
    assert out.shape == (5, 128)
    torch.testing.assert_close(out, desdis_reference(net.state_dict(), x), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(net(x[:1]), out[:1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("ours, theirs", [(HardNet, KF.HardNet), (SOSNet, KF.SOSNet), (TFeat, KF.TFeat)])
def test_kornia_state_dicts_load_and_agree(ours, theirs):
    reference = randomise_bn(theirs(pretrained=False))
    model = build_from_checkpoint(reference.state_dict())
    assert isinstance(model, ours)
    model.eval()
    x = patches()
    torch.testing.assert_close(model(x), F.normalize(reference(x), dim=1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model", [DesDisNet(8), DesDisNet(32), HardNet(), SOSNet()])
def test_fold_batchnorm_keeps_outputs(model):
    model = randomise_bn(model)
    x = patches(7)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)


def test_descplug_checkpoint_round_trip(tmp_path):
    net = randomise_bn(DesDisNet(16))
    path = save_checkpoint(net, tmp_path / "s16.pt", meta={"steps": 3})
    loaded = load_model(path)
    assert isinstance(loaded, DesDisNet) and loaded.width == 16 and loaded.name == "s16"
    torch.testing.assert_close(loaded(patches()), net(patches()))
    assert not list(tmp_path.glob("*.tmp"))


def test_wrapped_state_dict_loads(tmp_path):
    net = DesDisNet(8).eval()
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, tmp_path / "w.pth")
    assert isinstance(load_model(tmp_path / "w.pth"), DesDisNet)


def test_unknown_layout_lists_expected(tmp_path):
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="unrecognised checkpoint layout.*DesDis student"):
        load_model(tmp_path / "odd.pth")


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="cannot read checkpoint .*bad.pt"):
        load_model(tmp_path / "bad.pt")


def test_wrong_shapes_are_reported(tmp_path):
    state = DesDisNet(8).state_dict()
    state["layer3.3.weight"] = torch.zeros(5, 5, 3, 3)
    with pytest.raises(ValueError, match="does not fit DesDisNet.*layer3.3.weight"):
        build_from_checkpoint(state)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        load_model("no-such-model")


def tfeat_reference(state, x):
    x = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), unbiased=False, keepdim=True) + 1e-5)
    x = F.max_pool2d(torch.tanh(F.conv2d(x, state["features.1.weight"], state["features.1.bias"])), 2)
    x = torch.tanh(F.conv2d(x, state["features.4.weight"], state["features.4.bias"]))
    return F.normalize(torch.tanh(F.linear(x.flatten(1), state["descr.0.weight"], state["descr.0.bias"])), dim=1)


def hardtfeat_reference(state, x):
    flat = x.flatten(1)
    x = (x - flat.mean(1).view(-1, 1, 1, 1)) / (flat.std(1).view(-1, 1, 1, 1) + 1e-7)
    x = F.max_pool2d(torch.tanh(F.conv2d(x, state["features.0.weight"], state["features.0.bias"])), 2)
    x = torch.tanh(F.conv2d(x, state["features.3.weight"], state["features.3.bias"]))
    return F.normalize(torch.tanh(F.conv2d(x, state["classifier.1.weight"], state["classifier.1.bias"])).flatten(1), dim=1)


@pytest.mark.shared
def test_every_shared_teacher_loads_and_matches_an_independent_computation(shared_root):
    files = sorted((shared_root / "teachers").rglob("*.pth")) + sorted((shared_root / "teachers").rglob("*.params"))
    assert len(files) >= 8
    x = patches(4, seed=3) * 255
    for path in files:
        model = load_model(path)
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state = raw.get("state_dict", raw)
        with torch.no_grad():
            out = model(x)
            if path.name.startswith("DesDis"):
                expected = desdis_reference(state, x)
            elif path.name.startswith("HardTFeat"):
                expected = hardtfeat_reference(state, x)
            else:
                expected = tfeat_reference(state, x)
        torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4, msg=f"{path.name}")
        assert out.shape == (4, 128)


def test_every_shipped_model_loads_and_has_a_model_card():
    from descplug.models import default_model_name, model_card, shipped_models

    shipped = shipped_models()
    assert default_model_name() in shipped
    for name, path in shipped.items():
        card = model_card(name)
        assert card["name"] == name and card["recipe"].startswith("descplug train --config weights/recipes/")
        assert path.with_suffix(".md").is_file()
        model = load_model(name)
        assert model(patches(2)).shape == (2, model.descriptor_size)


def test_descdis_without_a_model_uses_the_default_student():
    from descplug import DescDis
    from descplug.models import default_model_name

    assert DescDis(device="cpu").name == default_model_name()
