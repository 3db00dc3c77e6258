"""The `descplug` command line: thin subcommands over the package modules."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import __version__


def _atomic_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_describe(args) -> int:
    from .api import DescDis
    from .images import load_image
    from .keypoints import as_keypoint_array

    dd = DescDis(args.model, device=args.device, magnification=args.magnification, detector=args.detector,
                 max_keypoints=args.max_keypoints)
    gray = load_image(args.image)
    keypoints, desc = dd.detectAndCompute(gray)
    _atomic_npz(Path(args.out), keypoints=as_keypoint_array(list(keypoints), dd.default_size),
                descriptors=desc, image_size=np.array(gray.shape[::-1]), model=np.array(dd.name))
    print(f"{args.image}: {len(keypoints)} keypoints, {desc.shape[1]}-D descriptors ({dd.name}) -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="descplug", description=__doc__)
    parser.add_argument("--version", action="version", version=f"descplug {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("describe", help="detect and describe one image into an .npz "
                       "(keypoints N x 4 [x, y, size, angle], descriptors N x D, image_size [W, H])")
    p.add_argument("image")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--model", default=None, help="shipped model name or checkpoint path (default: best shipped student)")
    p.add_argument("--detector", default="sift", choices=["sift", "orb", "fast", "gftt"])
    p.add_argument("--max-keypoints", type=int, default=4096)
    p.add_argument("--magnification", type=float, default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("train", help="train a patch descriptor from a YAML config (recipes: weights/recipes/)")
    p.add_argument("--config", required=True, help="training config (YAML); see descplug/train/trainer.py DEFAULTS")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--steps", type=int, default=None, help="override optim.steps")
    p.add_argument("--seed", type=int, default=None, help="override seed")
    p.add_argument("--run-dir", default=None, help="override run_dir (checkpoints, log)")
    p.add_argument("--output", default=None, help="override output (the final .pt; its model card goes beside it)")
    p.add_argument("--device", default=None, help="override device (auto, cpu, cuda)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def cmd_train(args) -> int:
        from .train.trainer import run_from_args

        return run_from_args(args)

    p.set_defaults(func=cmd_train)

    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"descplug {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
