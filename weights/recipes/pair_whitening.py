"""Learned whitening of a DesDis student's output from its training pairs (the second step of
descplug-w32's recipe). The covariance C of anchor-minus-positive differences of the student's
descriptors before L2 normalisation, over the matching pairs of a training config's sources, gives
W = C^(-power/2); the student then describes a patch by normalise(W x) instead of normalise(x),
with W folded into its last convolution and BatchNorm, so the result is an ordinary DesDis
checkpoint. Directions in which the descriptors of one point vary across views are damped.

    python weights/recipes/pair_whitening.py --config weights/recipes/descplug-w32-stage1.yaml \
        --model runs/recipes/descplug-w32-stage1.pt --kind sfm --power 0.5 --output weights/descplug-w32.pt

Only pairs from the training sources are used (never a benchmark scene). The output's model card
is the input's, with this step added to its recipe and a ``whitening`` entry. Run from the
repository root.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from descplug.models.student import DesDisNet  # noqa: E402
from descplug.models.zoo import load_model, save_checkpoint  # noqa: E402
from descplug.train.card import init_card, write_card  # noqa: E402
from descplug.train.data import PairSet  # noqa: E402
from descplug.train.trainer import load_config, load_sources  # noqa: E402


def raw_descriptors(model: DesDisNet, patches: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The student's output before L2 normalisation, in float64."""
    with torch.no_grad():
        return torch.cat([model.unnormalised(patches[i:i + chunk]).double() for i in range(0, len(patches), chunk)])


def pair_whitening(anchors: torch.Tensor, positives: torch.Tensor, power: float) -> torch.Tensor:
    """C^(-power/2) for C the second moment of ``anchors - positives`` (rows: descriptors)."""
    diff = anchors - positives
    eigval, eigvec = torch.linalg.eigh(diff.T @ diff / len(diff))
    return torch.diag(eigval.clamp_min(1e-12) ** (-power / 2)) @ eigvec.T


def fold_into_head(model: DesDisNet, matrix: torch.Tensor) -> None:
    """Make the model's pre-normalisation output ``matrix @ x`` (x: its current output)."""
    conv, bn = model.desc[1], model.desc[2]
    scaled = matrix * (1.0 / torch.sqrt(bn.running_var.double() + bn.eps))[None, :]
    conv.weight.data = (scaled @ conv.weight.data.double().flatten(1)).reshape(conv.weight.shape).float()
    conv.bias.data = (scaled @ (conv.bias.data.double() - bn.running_mean.double())).float()
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training config whose data sources give the pairs")
    parser.add_argument("--model", required=True, help="DesDis student checkpoint")
    parser.add_argument("--kind", help="use only the sources of this kind (e.g. sfm); default: all")
    parser.add_argument("--power", type=float, default=0.5, help="1: full whitening, 0: none")
    parser.add_argument("--max-pairs", type=int, default=60000)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    config = load_config(args.config)
    sources = [pairs for pairs, source in zip(load_sources(config["data"]), config["data"]["sources"])
               if args.kind in (None, source["kind"])]
    if not sources:
        raise SystemExit(f"{args.config}: no data source of kind {args.kind!r}")
    pairs = PairSet.concat(sources)
    if len(pairs) > args.max_pairs:
        pairs = pairs.subset(np.sort(np.random.default_rng(0).choice(len(pairs), args.max_pairs, replace=False)))
    model = load_model(args.model).eval()
    if not isinstance(model, DesDisNet):
        raise SystemExit(f"{args.model}: not a DesDis student")
    patches = pairs.patches()
    raw = raw_descriptors(model, patches)
    matrix = pair_whitening(raw[:len(pairs)], raw[len(pairs):], args.power)
    fold_into_head(model, matrix)
    check = torch.nn.functional.normalize(raw[:8] @ matrix.T, dim=1).float()
    with torch.no_grad():
        error = (model(patches[:8]) - check).abs().max().item()
    if error > 1e-4:
        raise SystemExit(f"folding the whitening into the head changed the output by {error}")
    card = init_card(args.model) or {"name": Path(args.model).stem, "recipe": f"(checkpoint {args.model})"}
    card.pop("notes", None)
    card["name"] = Path(args.output).stem
    card["description"] = (card.get("description", "") + " Output whitened with the pair whitening of its "
                           f"{args.kind or 'training'} pairs.").strip()
    card["recipe"] += " && python weights/recipes/pair_whitening.py " + " ".join(argv or sys.argv[1:])
    card["whitening"] = (f"pair whitening, power {args.power}, from the differences of {len(pairs)} matching "
                         f"pairs of {args.kind or 'all'} sources of {args.config}, folded into the last layer")
    path = save_checkpoint(model, args.output, meta={"card": card})
    write_card(path, card)
    print(f"{path}: whitened on {len(pairs)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
