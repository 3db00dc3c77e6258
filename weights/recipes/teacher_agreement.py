"""How closely students reproduce their teacher's descriptors, on training photos and on benchmark
images: the mean cosine between each model's descriptor and the teacher's, over the patches of the
top SIFT keypoints of every image in a group. A group of benchmark images only reads them (nothing
is trained here). Prints a markdown table, one row per group.

    python weights/recipes/teacher_agreement.py --teacher ../shared/teachers/desdis-official/DesDis-32.pth \
        --models weights/descplug-w8.pt weights/descplug-w16.pt weights/descplug-w32.pt \
        --group "training photos=../shared/data/sfm/*/images/*" \
        --group "Oxford=../shared/data/homography/oxford/*/[135].png"

Run from the repository root.
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from descplug.detectors import detect, magnification_for  # noqa: E402
from descplug.images import load_image  # noqa: E402
from descplug.keypoints import as_keypoint_array  # noqa: E402
from descplug.patches import extract_patches  # noqa: E402
from descplug.train.teachers import Teacher  # noqa: E402


def group_patches(pattern: str, max_keypoints: int) -> torch.Tensor:
    files = sorted(glob.glob(pattern))
    if not files:
        raise SystemExit(f"no image matches {pattern!r}")
    patches = []
    for path in files:
        image = load_image(path)
        keypoints = as_keypoint_array(detect(image, "sift", max_keypoints=max_keypoints), default_size=1.0)
        patches.append(extract_patches(image, keypoints, magnification_for("sift")))
    return torch.cat(patches)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--group", action="append", required=True, metavar="LABEL=GLOB")
    parser.add_argument("--max-keypoints", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    groups = []
    for spec in args.group:
        label, sep, pattern = spec.partition("=")
        if not sep:
            raise SystemExit(f"--group {spec!r}: write LABEL=GLOB")
        groups.append((label, pattern))
    teacher = Teacher(args.teacher)
    models = {Path(m).stem: Teacher(m) for m in args.models}
    print("| images | patches | " + " | ".join(models) + " |")
    print("|---|---:|" + "---:|" * len(models))
    for label, pattern in groups:
        patches = group_patches(pattern, args.max_keypoints)
        target = teacher(patches)
        cosines = [float((model(patches) * target).sum(1).mean()) for model in models.values()]
        print(f"| {label} | {len(patches)} | " + " | ".join(f"{c:.3f}" for c in cosines) + " |", flush=True)


if __name__ == "__main__":
    main()
