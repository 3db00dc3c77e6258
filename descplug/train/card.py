"""Model cards: ``weights/<name>.json`` (machine-readable) and ``weights/<name>.md`` rendered from it."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, patch_size: int = 32) -> int:
    """Multiply-accumulates of the convolutions and linear layers for one patch."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, patch_size, patch_size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def hardware() -> str:
    """A short description of the machine a run used."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU {cpu}, {threads} torch thread{'s' if threads > 1 else ''} of {os.cpu_count()} cores"


def write_card(path: str | Path, card: dict) -> None:
    """Write ``<path>.json`` and ``<path>.md`` (``path`` is the checkpoint path or its stem)."""
    path = Path(path).with_suffix("")
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    path.with_suffix(".md").write_text(render_card(card))


def init_card(init: str | None) -> dict | None:
    """The training card stored in checkpoint ``init`` (what a fine-tuning run started from), or None."""
    if not init:
        return None
    from descplug.models.zoo import resolve

    checkpoint = torch.load(resolve(init), map_location="cpu", weights_only=True)
    card = checkpoint.get("meta", {}).get("card") if isinstance(checkpoint, dict) else None
    return {k: v for k, v in card.items() if k != "benchmarks"} if card else None


def read_card(path: str | Path) -> dict:
    return json.loads(Path(path).with_suffix(".json").read_text())


def render_card(card: dict) -> str:
    lines = [f"# {card['name']}", "", card.get("description", ""), "",
             "| | |", "|---|---|"]
    rows = [("architecture", card.get("architecture")), ("parameters", card.get("parameters")),
            ("MACs per patch", card.get("macs_per_patch")), ("descriptor size", card.get("descriptor_size")),
            ("patch magnification (training)", card.get("magnification")),
            ("teachers", ", ".join(card.get("teachers", [])) or "none"), ("losses", card.get("losses")),
            ("training data", card.get("data")), ("steps", card.get("steps")),
            ("batch size", card.get("batch_size")), ("batches", card.get("batches")),
            ("wall time", _duration(card.get("wall_time_s"))),
            ("hardware", card.get("hardware")), ("recipe", f"`{card.get('recipe')}`"),
            ("started from (fine-tuned)", _started_from(card)), ("output whitening", card.get("whitening")),
            ("final validation", card.get("validation"))]
    lines += [f"| {k} | {v} |" for k, v in rows if v is not None]
    bench = card.get("benchmarks", {})
    if bench:
        lines += ["", "## Benchmarks", ""]
        if bench.get("command"):
            lines += [f"Measured with `{bench['command']}`", ""]
        results = bench.get("results", {})
        metrics = sorted({m for r in results.values() for m in r})
        lines += ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for method, r in results.items():
            lines.append(f"| {method} | " + " | ".join(_fmt(r.get(m)) for m in metrics) + " |")
        if bench.get("notes"):
            lines += ["", bench["notes"]]
    if card.get("notes"):
        lines += ["", "## Notes", "", card["notes"]]
    return "\n".join(lines) + "\n"


def _started_from(card: dict) -> str | None:
    source = card.get("init_card")
    if not source:
        return card.get("init")
    return (f"{card['init']} ({source['name']}: {source['steps']} steps, {_duration(source.get('wall_time_s'))}, "
            f"`{source.get('recipe')}`)")


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _duration(seconds) -> str | None:
    if seconds is None:
        return None
    return f"{seconds / 60:.1f} min"
