"""Model names, checkpoint layout detection, and the project's own checkpoint format.

`load_model` accepts a shipped model name (weights/<name>.pt), or the path of:
- a descplug checkpoint: {"format": "descplug", "arch", "config", "state_dict", "meta"};
- an official DesDis student (keys layer1.1.weight ... desc.1.bias), any width;
- a HardNet or SOSNet state dict (kornia layout), a TFeat `.params`, a HardTFeat `.pth`.
Plain state dicts may be wrapped in {"state_dict": ...} or {"model": ...}.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from .hardnet import HardNet, SOSNet
from .student import DesDisNet
from .tfeat import HardTFeat, TFeat

ARCHITECTURES = {cls.arch: cls for cls in (DesDisNet, HardNet, SOSNet, TFeat, HardTFeat)}
EXPECTED_LAYOUTS = (
    "descplug checkpoint ({'format': 'descplug', 'arch', 'config', 'state_dict'}); "
    "DesDis student (layer1.1.weight, layer2.0.weight, layer3.{0,3}.weight, desc.1.{weight,bias}); "
    "HardNet (features.0.weight 32x1x3x3 ... features.19.weight 128x128x8x8); "
    "SOSNet (layers.1.weight ... layers.20.weight); "
    "TFeat (features.1.weight 32x1x7x7, features.4.weight, descr.0.weight 128x4096); "
    "HardTFeat (features.0.weight 32x1x7x7, features.3.weight, classifier.1.weight 128x64x8x8)"
)
DEFAULT_MODEL_FILE = "DEFAULT"


def weights_dirs() -> list[Path]:
    """Where shipped weights are looked up: $DESCPLUG_WEIGHTS, the checkout's weights/, the install prefix."""
    dirs = [Path(os.environ["DESCPLUG_WEIGHTS"])] if os.environ.get("DESCPLUG_WEIGHTS") else []
    dirs += [Path(__file__).resolve().parents[2] / "weights", Path(sys.prefix) / "share" / "descplug" / "weights"]
    return [d for d in dirs if d.is_dir()]


def shipped_models() -> dict[str, Path]:
    """Shipped model name -> checkpoint path (first directory wins)."""
    found: dict[str, Path] = {}
    for directory in weights_dirs():
        for path in sorted(directory.glob("*.pt")):
            found.setdefault(path.stem, path)
    return found


def default_model_name() -> str:
    """The best shipped student, named in weights/DEFAULT."""
    for directory in weights_dirs():
        marker = directory / DEFAULT_MODEL_FILE
        if marker.is_file():
            return marker.read_text().strip()
    raise ValueError(f"no default model: no {DEFAULT_MODEL_FILE} file in {[str(d) for d in weights_dirs()] or 'any weights directory'}")


def model_card(name: str) -> dict:
    """The machine-readable model card (weights/<name>.json) of a shipped model, or {}."""
    path = shipped_models().get(name)
    card = path.with_suffix(".json") if path else None
    return json.loads(card.read_text()) if card and card.is_file() else {}


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A shipped name or an existing checkpoint path -> its path."""
    shipped = shipped_models()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise ValueError(f"unknown model {str(name_or_path)!r}: not a checkpoint file and not a shipped model (shipped: {sorted(shipped) or 'none'})")


def load_model(name_or_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Load a descriptor network in eval mode: (N, 1, 32, 32) patches -> (N, D) unit vectors."""
    path = resolve(default_model_name() if name_or_path is None else name_or_path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise ValueError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from None
    model = build_from_checkpoint(checkpoint, source=str(path))
    model.name = path.stem
    return model.to(device).eval()


def build_from_checkpoint(checkpoint, source: str = "checkpoint") -> nn.Module:
    if isinstance(checkpoint, dict) and checkpoint.get("format") == "descplug":
        arch, config, state = checkpoint.get("arch"), checkpoint.get("config", {}), checkpoint.get("state_dict")
        if arch not in ARCHITECTURES:
            raise ValueError(f"{source}: unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
        model = ARCHITECTURES[arch](**config)
    else:
        state = _unwrap(checkpoint, source)
        model = _model_for_state(state, source)
    _load_state(model, state, source)
    return model


def _unwrap(checkpoint, source: str) -> dict:
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{source}: not a state dict of tensors. Expected one of: {EXPECTED_LAYOUTS}")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def _model_for_state(state: dict, source: str) -> nn.Module:
    shape = lambda key: tuple(state[key].shape) if key in state else None  # noqa: E731
    if shape("layer1.1.weight") and shape("desc.1.weight"):
        width, dim = shape("layer1.1.weight")[0], shape("desc.1.weight")[0]
        return DesDisNet(width=width, dim=dim)
    if shape("features.1.weight") == (32, 1, 7, 7) and "descr.0.weight" in state:
        return TFeat()
    if shape("features.0.weight") == (32, 1, 7, 7) and "classifier.1.weight" in state:
        return HardTFeat()
    if shape("features.0.weight") == (32, 1, 3, 3) and shape("features.19.weight") == (128, 128, 8, 8):
        return HardNet()
    if shape("layers.1.weight") == (32, 1, 3, 3) and "layers.20.weight" in state:
        return SOSNet()
    raise ValueError(f"{source}: unrecognised checkpoint layout (keys {sorted(state)[:6]}...). Expected one of: {EXPECTED_LAYOUTS}")


def _load_state(model: nn.Module, state: dict, source: str) -> None:
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own}  # e.g. HardTFeat's unused SIFT buffers
    missing = sorted(set(own) - set(state))
    wrong = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        raise ValueError(f"{source}: checkpoint does not fit {type(model).__name__}: missing {missing[:5]}, wrong shapes {wrong[:5]}")
    model.load_state_dict(state, strict=False)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the project's checkpoint format atomically (temporary file, then rename)."""
    if getattr(model, "arch", None) not in ARCHITECTURES:
        raise ValueError(f"cannot save {type(model).__name__}: not one of {sorted(ARCHITECTURES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": "descplug", "arch": model.arch, "config": dict(model.config),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta or {}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path
