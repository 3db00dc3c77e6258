"""Pair whitening of a DesDis student's output (``descplug whiten``).

The covariance C of anchor-minus-positive differences of the student's descriptors before L2
normalisation, over the matching pairs of a training config's sources, gives W = C^(-power/2); the
student then describes a patch by normalise(W x) instead of normalise(x). Directions in which the
descriptors of one point vary across views are damped (the "learned whitening" of image
retrieval, without its PCA step and without centring). With ``discriminative`` r > 0 the whitened
space is then weighted per direction by (between / within variance)^(r/2), the between variance from
anchor-minus-negative differences of pairs of different tracks (a soft, LDA-like weighting that
keeps all 128 dimensions). W is folded into the last convolution and BatchNorm, so the result is an
ordinary DesDis checkpoint of the same cost.

Only pairs from the config's training sources are used (never a benchmark scene). The output's
model card is the input's, with this step added to its recipe and a ``whitening`` entry.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from descplug.models.student import DesDisNet

from .card import init_card, write_card
from .data import PairSet
from .trainer import load_config, load_sources

MAX_PAIRS = 60000  # pairs drawn at random when the config's sources hold more
FOLD_TOLERANCE = 1e-4  # largest change of a unit descriptor that folding W into the head may make


def raw_descriptors(model: DesDisNet, patches: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The student's output before L2 normalisation, in float64."""
    with torch.no_grad():
        return torch.cat([model.unnormalised(patches[i:i + chunk]).double() for i in range(0, len(patches), chunk)])


def _second_moment(diff: torch.Tensor) -> torch.Tensor:
    return diff.T @ diff / len(diff)


def _symmetric_power(matrix: torch.Tensor, exponent: float) -> torch.Tensor:
    eigval, eigvec = torch.linalg.eigh(matrix)
    return eigvec @ torch.diag(eigval.clamp_min(1e-12) ** exponent) @ eigvec.T


def pair_whitening(anchors: torch.Tensor, positives: torch.Tensor, power: float,
                   mismatched: torch.Tensor | None = None, discriminative: float = 0.0) -> torch.Tensor:
    """W = C^(-power/2) for C the second moment of ``anchors - positives`` (rows: descriptors): the
    symmetric root, so the whitened descriptors keep the axes of the student's own (and stay
    comparable with its teacher's). With ``discriminative`` r > 0, ``mismatched`` (differences of
    descriptors of different tracks) gives D, their second moment; with W D W^T = U diag(l) U^T
    (l: the between / within variance of each direction), the result is U diag(l^(r/2)) U^T W."""
    whitening = _symmetric_power(_second_moment(anchors - positives), -power / 2)
    if not discriminative:
        return whitening
    if mismatched is None:
        raise ValueError("discriminative weighting needs the differences of mismatched descriptors")
    between = whitening @ _second_moment(mismatched) @ whitening.T
    return _symmetric_power(between, discriminative / 2) @ whitening


def non_matching(tracks: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, partners): ``partners[k]`` is a random pair of another track than pair ``rows[k]``."""
    partners = np.random.default_rng(seed).permutation(len(tracks))
    rows = np.flatnonzero(tracks[partners] != tracks)
    return rows, partners[rows]


def fold_into_head(model: DesDisNet, matrix: torch.Tensor) -> None:
    """Make the model's pre-normalisation output ``matrix @ x`` (x: its current output)."""
    conv, bn = model.desc[1], model.desc[2]
    scaled = matrix * (1.0 / torch.sqrt(bn.running_var.double() + bn.eps))[None, :]
    conv.weight.data = (scaled @ conv.weight.data.double().flatten(1)).reshape(conv.weight.shape).float()
    conv.bias.data = (scaled @ (conv.bias.data.double() - bn.running_mean.double())).float()
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)


def training_pairs(config_path: str | Path, kind: str | None, max_pairs: int) -> PairSet:
    """The pairs of the config's sources (of ``kind`` only, if given), at most ``max_pairs`` drawn at random."""
    config = load_config(config_path)
    sources = [pairs for pairs, source in zip(load_sources(config["data"]), config["data"]["sources"])
               if kind in (None, source["kind"])]
    if not sources:
        kinds = sorted({source["kind"] for source in config["data"]["sources"]})
        raise ValueError(f"{config_path}: no data source of kind {kind!r} (it has {kinds})")
    pairs = PairSet.concat(sources)
    if len(pairs) > max_pairs:
        pairs = pairs.subset(np.sort(np.random.default_rng(0).choice(len(pairs), max_pairs, replace=False)))
    return pairs


def whiten_student(model: DesDisNet, pairs: PairSet, power: float, discriminative: float = 0.0) -> None:
    """Fold the pair whitening of ``pairs`` at ``power`` (and ``discriminative`` weighting, its
    negatives drawn from other tracks of ``pairs``) into ``model`` (in eval mode), checked."""
    patches = pairs.patches()
    raw = raw_descriptors(model, patches)
    anchors, positives = raw[:len(pairs)], raw[len(pairs):]
    mismatched = None
    if discriminative:
        rows, partners = non_matching(pairs.tracks)
        if len(rows) == 0:
            raise ValueError("--discriminative needs pairs of at least two tracks")
        mismatched = anchors[rows] - positives[partners]
    matrix = pair_whitening(anchors, positives, power, mismatched, discriminative)
    fold_into_head(model, matrix)
    expected = torch.nn.functional.normalize(raw[:8] @ matrix.T, dim=1).float()
    with torch.no_grad():
        error = (model(patches[:8]) - expected).abs().max().item()
    if error > FOLD_TOLERANCE:
        raise RuntimeError(f"folding the whitening into the head changed the output by {error}")


def whiten_checkpoint(config: str, model_path: str, output: str, kind: str | None = None, power: float = 0.5,
                      max_pairs: int | None = None, discriminative: float = 0.0) -> Path:
    """Whiten the student ``model_path`` with the pairs of ``config``; write ``output`` and its model
    card, whose recipe ends with the ``descplug whiten`` command that does this."""
    from descplug.models.zoo import load_model, save_checkpoint

    if not power > 0:
        raise ValueError(f"--power must be > 0 (1: full whitening), got {power}")
    if discriminative < 0:
        raise ValueError(f"--discriminative must be >= 0 (0: off), got {discriminative}")
    model = load_model(model_path).eval()
    if not isinstance(model, DesDisNet):
        raise ValueError(f"{model_path}: not a DesDis student ({type(model).__name__}); only those can be whitened")
    pairs = training_pairs(config, kind, max_pairs or MAX_PAIRS)
    whiten_student(model, pairs, power, discriminative)
    card = init_card(model_path) or {"name": Path(model_path).stem, "recipe": f"(checkpoint {model_path})"}
    card.pop("notes", None)
    card["name"] = Path(output).stem
    card["description"] = (card.get("description", "") + " Output whitened with the pair whitening of its "
                           f"{kind or 'training'} pairs.").strip()
    command = " ".join(["descplug whiten", f"--config {config}", f"--model {model_path}"]
                       + ([f"--kind {kind}"] if kind else []) + [f"--power {power:g}"]
                       + ([f"--discriminative {discriminative:g}"] if discriminative else [])
                       + ([f"--max-pairs {max_pairs}"] if max_pairs else []) + [f"--output {output}"])
    card["recipe"] += f" && {command}"
    card["whitening"] = (f"pair whitening, power {power}, from the differences of {len(pairs)} matching "
                         f"pairs of {kind or 'all'} sources of {config}"
                         + (f", weighted by (between / within variance)^{discriminative / 2:g} per direction"
                            if discriminative else "") + ", folded into the last layer")
    path = save_checkpoint(model, output, meta={"card": card})
    write_card(path, card)
    print(f"{path}: whitened on {len(pairs)} pairs")
    return path
