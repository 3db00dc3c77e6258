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

    p = sub.add_parser("whiten", help="whiten a DesDis student's output with the covariance of its descriptor "
                       "differences over a training config's matching pairs (folded into its last layer)")
    p.add_argument("--config", required=True, help="training config whose data sources give the pairs")
    p.add_argument("--model", required=True, help="DesDis student checkpoint (path or shipped name)")
    p.add_argument("--kind", default=None, help="use only the config's sources of this kind (e.g. sfm); default: all")
    p.add_argument("--power", type=float, default=0.5, help="W = C^(-power/2); 1: full whitening (default: 0.5)")
    p.add_argument("--discriminative", type=float, default=0.0,
                   help="then weight each whitened direction by (between / within variance)^(R/2), the between "
                        "variance from pairs of different tracks (LDA-like; default: 0, off)", metavar="R")
    p.add_argument("--max-pairs", type=int, default=None,
                   help="at most this many pairs, drawn at random (default: 60,000)")
    p.add_argument("--output", required=True, help="the whitened checkpoint (.pt; its model card goes beside it)")

    def cmd_whiten(args) -> int:
        from .train.pair_whitening import whiten_checkpoint

        whiten_checkpoint(args.config, args.model, args.output, args.kind, args.power, args.max_pairs,
                          args.discriminative)
        return 0

    p.set_defaults(func=cmd_whiten)

    # -- pipeline: hloc feature/match files and COLMAP (descplug.pipeline, descplug.io.h5) -------
    exit_status = "exit status: 0 done; 1 done, but some images failed (listed); 2 error"
    detectors = ["sift", "orb", "fast", "gftt"]

    def print_reports(reports) -> int:
        for report in reports:
            print(report.summary())
        return 1 if any(report.failed for report in reports) else 0

    def print_model(stats, out) -> None:
        print(f"model in {out}: {stats['registered_images']}/{stats['images']} images registered, "
              f"{stats['points3D']} 3D points, mean track length {stats['mean_track_length']:.2f}, "
              f"mean reprojection error {stats['mean_reprojection_error']:.3f} px")

    p = sub.add_parser("extract", help="detect and describe a folder of images into an hloc feature file",
                       epilog=exit_status)
    p.add_argument("image_dir")
    p.add_argument("--out", required=True, help="feature file (.h5); images already in it are skipped")
    p.add_argument("--model", default=None, help="shipped name or checkpoint path (default: best shipped student); "
                   "'sift' for OpenCV RootSIFT")
    p.add_argument("--detector", default="sift", choices=detectors)
    p.add_argument("--max-keypoints", type=int, default=4096)
    p.add_argument("--resize-max", type=int, default=1600, help="longest image side for detection (0: never resize)")
    p.add_argument("--image-list", default=None, help="text file of image names (relative to IMAGE_DIR), one a line")
    p.add_argument("--keypoints-from", default=None, help="re-describe the keypoints of another hloc feature file")
    p.add_argument("--default-size", type=float, default=None,
                   help="KeyPoint size (pixels) for --keypoints-from keypoints; ignores that file's scales/oris")
    p.add_argument("--half", action="store_true", help="store descriptors as float16")
    p.add_argument("--overwrite", action="store_true", help="re-extract images already in the file")
    p.add_argument("--device", default="auto")

    def cmd_extract(args) -> int:
        from .pipeline import extract

        return print_reports([extract(args.image_dir, args.out, args.model, args.detector, args.max_keypoints,
                                      args.resize_max, args.image_list, args.keypoints_from, args.default_size,
                                      args.half, args.overwrite, args.device)])

    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("check", help="validate hloc feature/match/pairs files (names, shapes, dtypes, consistency)",
                       epilog="exit status: 0 valid, 1 problems found (listed), 2 error")
    p.add_argument("files", nargs="+", metavar="FILE", help="features.h5 [matches.h5] [pairs.txt]")
    p.add_argument("--images", default=None, help="image folder: check the files exist and their sizes")

    def cmd_check(args) -> int:
        from .io.h5 import validate
        from .pairs import read_pairs

        h5_files = [f for f in args.files if not f.endswith(".txt")]
        txt_files = [f for f in args.files if f.endswith(".txt")]
        if not 1 <= len(h5_files) <= 2 or len(txt_files) > 1:
            raise ValueError("expected a feature file, optionally a match file, and optionally a pairs .txt file")
        pairs = read_pairs(txt_files[0]) if txt_files else None
        problems = validate(h5_files[0], h5_files[1] if len(h5_files) > 1 else None, pairs, args.images)
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s) found" if problems else f"ok: {', '.join(args.files)}")
        return 1 if problems else 0

    p.set_defaults(func=cmd_check)

    p = sub.add_parser("pairs", help="write an hloc pairs file from a feature file")
    p.add_argument("features")
    p.add_argument("--out", required=True, help="pairs file (.txt)")
    method = p.add_mutually_exclusive_group(required=True)
    method.add_argument("--exhaustive", action="store_true", help="every pair")
    method.add_argument("--sequential", type=int, metavar="K", help="each image with its K successors by name")
    method.add_argument("--retrieval", type=int, metavar="K", help="each image with its K nearest by VLAD descriptor")

    def cmd_pairs(args) -> int:
        from .pipeline import make_pairs

        method = "exhaustive" if args.exhaustive else "sequential" if args.sequential else "retrieval"
        pairs = make_pairs(args.features, args.out, method, args.sequential or args.retrieval or 0)
        print(f"{len(pairs)} pairs ({method}) -> {args.out}")
        return 0

    p.set_defaults(func=cmd_pairs)

    p = sub.add_parser("match", help="match the descriptors of listed pairs into an hloc match file")
    p.add_argument("features")
    p.add_argument("pairs")
    p.add_argument("--out", required=True, help="match file (.h5); pairs already in it are skipped")
    p.add_argument("--mutual", action=argparse.BooleanOptionalAction, default=True, help="mutual nearest neighbours")
    p.add_argument("--ratio", type=float, default=None, help="Lowe's ratio test threshold (e.g. 0.9)")
    p.add_argument("--max-distance", type=float, default=None, help="largest L2 distance of unit descriptors")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true", help="re-match pairs already in the file")

    def cmd_match(args) -> int:
        from .pipeline import match

        return print_reports([match(args.features, args.pairs, args.out, args.mutual, args.ratio, args.max_distance,
                                    args.device, args.overwrite)])

    p.set_defaults(func=cmd_match)

    def add_colmap_arguments(p, reference: bool) -> None:
        for name in ("image_dir", "features", "matches", "pairs"):
            p.add_argument(name)
        if reference:
            p.add_argument("--reference", required=True, help="COLMAP model folder with the known poses")
        p.add_argument("--out", required=True, help="output folder: database.db, model (binary) and text/")
        p.add_argument("--skip-verification", action="store_true", help="import matches as verified, no RANSAC")
        p.add_argument("--verbose", action="store_true", help="show COLMAP's log")

    p = sub.add_parser("reconstruct", help="COLMAP incremental SfM from hloc feature and match files")
    add_colmap_arguments(p, reference=False)
    p.add_argument("--camera-model", default="SIMPLE_RADIAL", help="COLMAP camera model")
    p.add_argument("--single-camera", action="store_true", help="one camera shared by all images")

    def cmd_reconstruct(args) -> int:
        from .pipeline import reconstruct

        stats = reconstruct(args.image_dir, args.features, args.matches, args.pairs, args.out, args.camera_model,
                            args.single_camera, args.skip_verification, args.verbose)
        print_model(stats, args.out)
        return 0

    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("triangulate", help="COLMAP points for the known poses of an existing model")
    add_colmap_arguments(p, reference=True)

    def cmd_triangulate(args) -> int:
        from .pipeline import triangulate

        stats = triangulate(args.image_dir, args.features, args.matches, args.pairs, args.reference, args.out,
                            args.skip_verification, args.verbose)
        print_model(stats, args.out)
        return 0

    p.set_defaults(func=cmd_triangulate)

    p = sub.add_parser("sfm", help="extract, pairs, match and reconstruct a folder of images in one go",
                       epilog=exit_status)
    p.add_argument("image_dir")
    p.add_argument("--out", required=True, help="output folder: features.h5, pairs.txt, matches.h5, sfm/")
    p.add_argument("--model", default=None, help="as for extract ('sift' for OpenCV RootSIFT)")
    p.add_argument("--detector", default="sift", choices=detectors)
    p.add_argument("--max-keypoints", type=int, default=4096)
    p.add_argument("--resize-max", type=int, default=1600)
    p.add_argument("--pairs", default="auto", choices=["auto", "exhaustive", "sequential", "retrieval"],
                   help="auto: exhaustive up to 50 images, else retrieval")
    p.add_argument("--k", type=int, default=20, help="neighbours for sequential/retrieval pairs")
    p.add_argument("--ratio", type=float, default=None,
                   help="Lowe's ratio test threshold (default: 0.8 for --model sift, none for networks)")
    p.add_argument("--camera-model", default="SIMPLE_RADIAL")
    p.add_argument("--single-camera", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--verbose", action="store_true", help="show COLMAP's log")

    def cmd_sfm(args) -> int:
        from .pipeline import sfm

        reports, stats = sfm(args.image_dir, args.out, args.model, args.detector, args.max_keypoints, args.resize_max,
                             args.pairs, args.k, args.ratio, args.camera_model, args.single_camera, args.device,
                             args.verbose)
        status = print_reports(reports)
        print_model(stats, Path(args.out) / "sfm")
        return status

    p.set_defaults(func=cmd_sfm)

    p = sub.add_parser("demo", help="reconstruct a rendered scene with known cameras, with descplug and SIFT",
                       epilog="exit status: 0 both methods registered every view, 1 otherwise")
    p.add_argument("--out", default=None, help="keep the scene and results here (default: a temporary folder)")
    p.add_argument("--model", default=None, help="shipped name or checkpoint path (default: best shipped student)")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--device", default="auto")

    def cmd_demo(args) -> int:
        from .demo import run

        with tempfile.TemporaryDirectory(prefix="descplug-demo-") as tmp:
            results = run(args.out or tmp, args.model, args.views, args.device)
        return 0 if all("error" not in r and r["registered"] == r["views"] for r in results.values()) else 1

    p.set_defaults(func=cmd_demo)
    # -- end of pipeline commands -----------------------------------------------------------------

    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"descplug {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"descplug {args.command}: interrupted; finished work is kept in the output files", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
