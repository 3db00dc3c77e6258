"""Config-driven training of a patch descriptor (``descplug train --config CONFIG.yaml``).

The config (YAML) is merged over DEFAULTS (a `base:` key names a config it is merged over first);
see weights/recipes/*.yaml for complete examples.
A run builds (or reloads from the cache) its PairSet, computes (or reloads) the teachers'
outputs, fits the teachers' whitening, and trains with a progress bar showing the loss and the
validation figure (top-1 accuracy of anchor->positive nearest neighbour on held-out tracks).
``run_dir/last.pt`` is written every ``checkpoint_every`` steps; ``resume`` continues from it
exactly (model, optimiser, schedule, data stream and random state). At the end the model is
saved with :func:`descplug.models.zoo.save_checkpoint` and its model card written beside it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from . import losses
from .card import count_macs, count_parameters, hardware, init_card, write_card
from .data import (PairSet, WarpConfig, batches, check_batch_mix, describe_batch_mix, make_batch, read_hpatches,
                   read_phototour, sfm_pairs, similar_groups, warp_pairs)
from .teachers import Teacher, cached_outputs

DEFAULTS = {
    "name": None,
    "description": "",
    "seed": 0,
    "threads": 2,
    "device": "auto",
    "model": {"arch": "desdis", "width": 8, "dim": 128, "dropout": 0.1},
    # a checkpoint (path or shipped name) of the same architecture whose weights start the run
    "init": None,
    # batch_mix: "random" (a batch's pairs from the whole set), "image" (one anchor image at a time) or
    # "similar" (one group at a time of at most group_tracks tracks alike to teacher batch_teacher, see
    # data.similar_groups);
    # a source's optional "repeat: k" draws its pairs k times as often; a warp source's optional
    # "warp: {...}" overrides fields of data.WarpConfig (view changes, photometric changes, jitter)
    "data": {"sources": [], "batch_mix": "random", "batch_teacher": None, "group_tracks": 1024,
             "val_fraction": 0.02, "max_val": 2000, "cache_dir": "runs/cache"},
    "teachers": {},
    "loss": {
        "triplet": {"weight": 1.0, "margin": 1.0, "anchor_swap": True},
        "desdis": {"weight": 0.0, "teacher": None, "p": 1, "negatives": "student"},
        # target: "view" (each patch's own teacher descriptor), "track" (the unit mean of the teacher's
        # descriptors of every training patch of the pair's track, see losses.track_centroids), or a
        # number in [0, 1] that blends them (the weight of the track centroid)
        "cosine": {"weight": 0.0, "teacher": None, "target": "view"},
        "kd": {"weight": 0.0, "teachers": [], "whiten": True, "floor": 0.01, "dim": None,
               "fusion": "maxmin", "tau": 0.05},
        # global orthogonal regularisation of the batch's non-matching pairs (losses.spread_out_regularizer)
        "spread": {"weight": 0.0},
    },
    "optim": {"steps": 1000, "batch_size": 512, "lr": 2e-3, "weight_decay": 1e-4, "warmup": 50},
    "run_dir": None,
    "checkpoint_every": 500,
    "val_every": 100,
    "output": None,
    "recipe": None,
}
SOURCES = ("warp", "sfm", "phototour", "hpatches")


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def check_repeat(source: dict) -> None:
    """A source's optional ``repeat``: how many times over its pairs are drawn (default 1)."""
    repeat = source.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"data source {source.get('kind')!r}: repeat must be a whole number >= 1, got {repeat!r}")


def read_config_file(path: str | Path, seen: tuple = ()) -> dict:
    """A config file's mapping, over the file named by its ``base:`` key (relative to its folder) if any."""
    if Path(path).resolve() in seen:
        raise ValueError(f"{path}: its base: chain comes back to it")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a training config must be a YAML mapping")
    base = raw.pop("base", None)
    if base is None:
        return raw
    return merge(read_config_file(Path(path).parent / base, (*seen, Path(path).resolve())), raw)


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    raw = read_config_file(path)
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    config = merge(DEFAULTS, merge(raw, overrides or {}))
    try:
        check_batch_mix(config["data"]["batch_mix"])
        if config["data"]["batch_mix"] == "similar" and not config["data"]["batch_teacher"]:
            raise ValueError("data.batch_mix 'similar' needs data.batch_teacher, the teacher whose descriptors "
                             "group the tracks")
        losses.track_weight(config["loss"]["cosine"]["target"])
        for source in config["data"]["sources"]:
            check_repeat(source)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    config["name"] = config["name"] or Path(path).stem
    config["run_dir"] = config["run_dir"] or f"runs/{config['name']}"
    config["recipe"] = config["recipe"] or f"descplug train --config {path}"
    return config


# --------------------------------------------------------------------------- data and teachers

def build_source(source: dict, progress: bool = True) -> PairSet:
    kind = source.get("kind")
    args = {k: v for k, v in source.items() if k != "kind"}
    if kind == "warp":
        cfg = WarpConfig(**args.pop("warp", {}))
        return warp_pairs(cfg=cfg, progress=progress, **args)
    if kind == "sfm":
        return sfm_pairs(**args)
    if kind == "phototour":
        return read_phototour(**args)
    if kind == "hpatches":
        return read_hpatches(**args)
    raise ValueError(f"unknown data source kind {kind!r}; use one of {SOURCES}")


def load_sources(data: dict, progress: bool = True) -> list[PairSet]:
    """One PairSet per configured source, each cached under ``cache_dir`` by its config's digest
    (without ``repeat``, which :func:`teacher_outputs` and :func:`train` apply)."""
    from descplug.detectors import MAGNIFICATION

    if not data["sources"]:
        raise ValueError("config: data.sources is empty")
    out = []
    for source in data["sources"]:
        source = {k: v for k, v in source.items() if k != "repeat"}
        # the patches depend on the detectors' magnifications too
        key = hashlib.sha1(json.dumps([source, MAGNIFICATION], sort_keys=True).encode()).hexdigest()[:16]
        path = Path(data["cache_dir"]) / f"pairs-{source.get('kind')}-{key}.npz"
        if path.is_file():
            out.append(PairSet.load(path))
        else:
            out.append(build_source(source, progress))
            out[-1].save(path)
    return out


def used_teachers(config: dict) -> list[str]:
    loss, names = config["loss"], []
    if loss["desdis"]["weight"]:
        names.append(loss["desdis"]["teacher"])
    if loss["cosine"]["weight"]:
        names.append(loss["cosine"]["teacher"])
    if loss["kd"]["weight"]:
        names.extend(loss["kd"]["teachers"])
    if config["data"]["batch_mix"] == "similar":
        names.append(config["data"]["batch_teacher"])
    return list(dict.fromkeys(names))


def teacher_outputs(config: dict, sources: list[PairSet], repeats: list[int], device) -> dict[str, torch.Tensor]:
    """name -> (2N, D) outputs of the used teachers for ``PairSet.concat(s.repeat(k) for s, k in
    zip(sources, repeats))``: anchors, then positives. Computed once per source and cached."""
    out = {}
    for name in used_teachers(config):
        if name not in config["teachers"]:
            raise ValueError(f"config: loss or data refer to teacher {name!r}, not defined under 'teachers' "
                             f"({sorted(config['teachers'])})")
        teacher = Teacher(config["teachers"][name], device=device)
        parts = [cached_outputs(teacher, s.patches(), s.digest(), config["data"]["cache_dir"]) for s in sources]
        out[name] = torch.cat([p[:len(s)].repeat(k, 1) for p, s, k in zip(parts, sources, repeats)] +
                              [p[len(s):].repeat(k, 1) for p, s, k in zip(parts, sources, repeats)])
    return out


# --------------------------------------------------------------------------- model and loss

def build_model(model_cfg: dict) -> torch.nn.Module:
    from descplug.models.zoo import ARCHITECTURES

    cfg = dict(model_cfg)
    arch = cfg.pop("arch")
    if arch not in ARCHITECTURES:
        raise ValueError(f"config: unknown model arch {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**cfg)


class Objective:
    """The configured weighted sum of losses for a batch."""

    def __init__(self, loss_cfg: dict, teachers: dict[str, torch.Tensor], tracks: np.ndarray):
        self.cfg, self.teachers, self.n = loss_cfg, teachers, len(tracks)
        cosine = loss_cfg["cosine"]
        self.track_weight, self.centroids = losses.track_weight(cosine["target"]), None
        if cosine["weight"] and self.track_weight:
            out = teachers[cosine["teacher"]]
            self.centroids = losses.track_centroids(out[:self.n], out[self.n:], torch.from_numpy(tracks))
        kd = loss_cfg["kd"]
        self.whitenings = None
        if kd["weight"] and kd["whiten"]:
            self.whitenings = [losses.Whitening.fit(teachers[t], kd["floor"], kd["dim"]) for t in kd["teachers"]]

    def _pair(self, name: str, batch, device):
        out = self.teachers[name]
        return out[batch.index].to(device), out[batch.index + self.n].to(device)

    def __call__(self, sa, sp, batch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, device, terms = self.cfg, sa.device, {}
        if cfg["triplet"]["weight"]:
            terms["triplet"] = (cfg["triplet"]["weight"], losses.triplet_loss(
                sa, sp, cfg["triplet"]["margin"], cfg["triplet"]["anchor_swap"]))
        if cfg["desdis"]["weight"]:
            ta, tp = self._pair(cfg["desdis"]["teacher"], batch, device)
            terms["desdis"] = (cfg["desdis"]["weight"], losses.desdis_regularizer(
                sa, sp, ta, tp, cfg["desdis"]["p"], cfg["desdis"]["negatives"], cfg["triplet"]["anchor_swap"]))
        if cfg["cosine"]["weight"]:
            ta, tp = self._pair(cfg["cosine"]["teacher"], batch, device)
            centroid = None if self.centroids is None else self.centroids[batch.index].to(device)
            ta, tp = (losses.cosine_targets(t, centroid, self.track_weight) for t in (ta, tp))
            terms["cosine"] = (cfg["cosine"]["weight"], (losses.cosine_distillation(sa, ta)
                                                         + losses.cosine_distillation(sp, tp)) / 2)
        if cfg["kd"]["weight"]:
            kd = cfg["kd"]
            outs = [self._pair(t, batch, device) for t in kd["teachers"]]
            whit = None if self.whitenings is None else [w.to(device) for w in self.whitenings]
            terms["kd"] = (kd["weight"], losses.multi_teacher_kl(
                sa, sp, [o[0] for o in outs], [o[1] for o in outs], whit, kd["fusion"], kd["tau"]))
        if cfg["spread"]["weight"]:
            terms["spread"] = (cfg["spread"]["weight"], losses.spread_out_regularizer(sa, sp))
        if not terms:
            raise ValueError("config: every loss weight is zero")
        total = sum(w * v for w, v in terms.values())
        return total, {k: float(v.detach()) for k, (_, v) in terms.items()}


def split_rows(pairs: PairSet, teachers: dict[str, torch.Tensor], val_fraction: float, max_val: int, seed: int):
    """(train pairs, validation pairs (at most max_val), teacher outputs re-indexed to the training
    pairs, each teacher's validation figure). The split is by track."""
    _, val = pairs.split(val_fraction, seed)
    is_val = np.isin(pairs.tracks, val.tracks)
    train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)[:max_val]
    n = len(pairs)
    val_tracks = torch.from_numpy(pairs.tracks[val_rows])
    reference = {name: top1(out[val_rows], out[n + val_rows], val_tracks) for name, out in teachers.items()}
    train_teachers = {name: torch.cat([out[:n][train_rows], out[n:][train_rows]]) for name, out in teachers.items()}
    return pairs.subset(train_rows), pairs.subset(val_rows), train_teachers, reference


def batch_groups(data: dict, pairs: PairSet, teachers: dict[str, torch.Tensor]) -> np.ndarray | None:
    """The group id per training row that ``data.batch_mix`` asks for (None: random batches)."""
    if data["batch_mix"] == "image":
        return pairs.images[:, 0]
    if data["batch_mix"] == "similar":
        return similar_groups(pairs.tracks, teachers[data["batch_teacher"]][:len(pairs)], data["group_tracks"])
    return None


def top1(anchors: torch.Tensor, positives: torch.Tensor, tracks: torch.Tensor) -> float:
    """Fraction of anchors whose nearest positive (cosine) shows the same track. A track has one
    pair per warp, so the positive of another warp of the same keypoint counts as a hit."""
    nearest = (anchors @ positives.t()).argmax(dim=1).cpu()
    return float((tracks[nearest] == tracks).float().mean())


@torch.no_grad()
def validate(model, val: PairSet, device) -> float:
    """Top-1 accuracy of anchor -> positive nearest neighbour among the validation positives."""
    was_training = model.training
    model.eval()
    batch = make_batch(val, np.arange(len(val)))
    a = torch.cat([model(x.to(device)) for x in batch.anchors.split(1024)])
    p = torch.cat([model(x.to(device)) for x in batch.positives.split(1024)])
    model.train(was_training)
    return top1(a, p, torch.from_numpy(val.tracks))


def start_from(model: torch.nn.Module, init: str) -> None:
    """Copy the weights of checkpoint ``init`` into ``model`` (fine-tuning); both must be the same network."""
    from descplug.models.zoo import load_model

    try:
        source = load_model(init)
    except ValueError as error:
        raise ValueError(f"config: init: {error} (run the recipe that writes it first)") from None
    if (source.arch, dict(source.config)) != (model.arch, dict(model.config)):
        raise ValueError(f"config: init {init!r} is a {source.arch} {dict(source.config)}, but the configured "
                         f"model is a {model.arch} {dict(model.config)}")
    model.load_state_dict(source.state_dict())


# --------------------------------------------------------------------------- the run

def _lr_lambda(optim_cfg: dict):
    steps, warmup = optim_cfg["steps"], optim_cfg["warmup"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, 1.0 - (step - warmup) / max(1, steps - warmup))

    return factor


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(config: dict, resume: bool = False, progress: bool = True, stop_at: int | None = None) -> Path | None:
    """Run a training config; returns the written checkpoint path (``output``), or None when there is
    no output or the run stopped at step ``stop_at`` (as if interrupted: checkpointed, resumable)."""
    start_time = time.time()
    torch.manual_seed(config["seed"])
    torch.set_num_threads(config["threads"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = _device(config["device"])
    run_dir = Path(config["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    sources = load_sources(config["data"], progress)
    repeats = [source.get("repeat", 1) for source in config["data"]["sources"]]
    pairs = PairSet.concat([s.repeat(k) for s, k in zip(sources, repeats)])
    teachers = teacher_outputs(config, sources, repeats, device)
    train_pairs, val, teachers, reference = split_rows(pairs, teachers, config["data"]["val_fraction"],
                                                        config["data"]["max_val"], config["seed"])
    objective = Objective(config["loss"], teachers, train_pairs.tracks)

    model = build_model(config["model"])
    if config["init"] and not resume:
        start_from(model, config["init"])
    model = model.to(device).train()
    optim_cfg = config["optim"]
    optimizer = torch.optim.Adam(model.parameters(), lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(optim_cfg))
    step, epoch, position, elapsed, val_acc = 0, 0, 0, 0.0, float("nan")
    last = run_dir / "last.pt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint {last}")
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, epoch, position = state["step"], state["epoch"], state["position"]
        elapsed, val_acc = state["elapsed"], state["val"]

    stream = batches(train_pairs, optim_cfg["batch_size"], config["seed"], epoch, position,
                     batch_groups(config["data"], train_pairs, teachers))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=optim_cfg["steps"], initial=step, desc=config["name"], unit="step")
    log = open(run_dir / "log.jsonl", "a")
    if reference and not resume:
        log.write(json.dumps({"step": 0, "teacher_val": reference}) + "\n")
    resumed_at = time.time()
    end = optim_cfg["steps"] if stop_at is None else min(stop_at, optim_cfg["steps"])
    while step < end:
        batch = next(stream)
        sa = model(batch.anchors.to(device))
        sp = model(batch.positives.to(device))
        loss, terms = objective(sa, sp, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step, epoch, position = step + 1, batch.epoch, batch.position
        if step % config["val_every"] == 0 or step == optim_cfg["steps"]:
            val_acc = validate(model, val, device)
        log.write(json.dumps({"step": step, "loss": float(loss.detach()), **terms, "val": val_acc}) + "\n")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", val=f"{val_acc:.3f}")
        if step % config["checkpoint_every"] == 0 or step == end:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                        "step": step, "epoch": epoch, "position": position,
                        "elapsed": elapsed + time.time() - resumed_at, "val": val_acc}, last.with_suffix(".tmp"))
            last.with_suffix(".tmp").replace(last)
            log.flush()
    log.close()
    if bar is not None:
        bar.close()
    elapsed += time.time() - resumed_at
    if not config["output"] or step < optim_cfg["steps"]:
        return None
    return save_trained(model.eval(), config, pairs, elapsed, time.time() - start_time, val_acc, len(val), reference)


def save_trained(model, config: dict, pairs: PairSet, train_s: float, total_s: float, val_acc: float,
                 n_val: int, reference: dict[str, float]) -> Path:
    from descplug.detectors import MAGNIFICATION
    from descplug.models.zoo import save_checkpoint

    loss_cfg = config["loss"]
    active = {k: v for k, v in loss_cfg.items() if v["weight"]}
    card = {
        "name": config["name"],
        "description": config["description"],
        "architecture": f"{config['model']['arch']} {config['model']}",
        "parameters": count_parameters(model),
        "macs_per_patch": count_macs(model),
        "descriptor_size": model.descriptor_size,
        "magnification": dict(MAGNIFICATION),
        "teachers": [f"{n}: {config['teachers'][n]}" for n in used_teachers(config)],
        "losses": ", ".join(f"{k} x{v['weight']} {({a: b for a, b in v.items() if a != 'weight'})}"
                            for k, v in active.items()),
        "data": f"{len(pairs)} pairs / {len(np.unique(pairs.tracks))} tracks from {config['data']['sources']}",
        "steps": config["optim"]["steps"],
        "batch_size": config["optim"]["batch_size"],
        "batches": describe_batch_mix(config["data"]),
        "wall_time_s": round(train_s, 1),
        "total_time_s": round(total_s, 1),
        "hardware": hardware(),
        "recipe": config["recipe"],
        "init": config["init"],
        "init_card": init_card(config["init"]),
        "validation": f"top-1 anchor->positive accuracy {val_acc:.3f} on {n_val} held-out pairs"
                      + "".join(f"; teacher {k}: {v:.3f}" for k, v in reference.items()),
        "seed": config["seed"],
    }
    path = save_checkpoint(model.cpu(), config["output"], meta={"card": card, "config": config})
    write_card(path, card)
    return path


def run_from_args(args) -> int:
    """``descplug train``: load the config, apply the command-line overrides, train."""
    overrides = {key: value for key, value in (("run_dir", args.run_dir), ("output", args.output),
                                               ("device", args.device), ("seed", args.seed)) if value is not None}
    if args.steps is not None:
        overrides["optim"] = {"steps": args.steps}
    config = load_config(args.config, overrides)
    path = train(config, resume=args.resume, progress=not args.no_progress)
    print(f"{config['name']}: {config['optim']['steps']} steps -> {path or config['run_dir'] + '/last.pt'}")
    return 0
