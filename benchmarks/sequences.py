"""Task ``sequences``: image matching on homography sequences (image 1 against 2..n).

Protocol: keypoints from one detector (default SIFT, top 2000 by response) are detected once per
image, and every method describes the same keypoints, so differences are the descriptor's alone.
Matching is mutual nearest neighbour (optionally with Lowe's ratio). Per pair of images:

- MMA at 1..10 px: the fraction of matches whose image-1 keypoint, projected by the ground-truth
  homography, lies within the threshold of its matched keypoint (a pair without matches scores 0),
  as D2-Net and R2D2 report it;
- matches: the number of matches;
- homography accuracy: a homography is fitted to the matches with OpenCV RANSAC; the pair is
  correct at e px when the mean distance between the four corners of image 1 mapped by the
  estimated and by the ground-truth homography is <= e (fewer than 4 matches or no fit: wrong).

Results are means over pairs, per group (``i`` for ``i_*`` sequences, ``v`` for ``v_*``, ``other``),
per collection (the top folder of nested sequences: ``oxford``, ``evd``, ...) and over all pairs. A failed image or pair is reported, counted in ``failed`` and scores 0.
"""

import cv2
import numpy as np
from tqdm import tqdm

from descplug.api import resolve_device
from descplug.matching import match_descriptors, matches_to_pairs

from . import datasets, report
from .methods import detect_and_describe, load_methods

THRESHOLDS = tuple(range(1, 11))
HOMOGRAPHY_THRESHOLDS = (1, 3, 5)
GROUPS = ("all", "i", "v", "other")


def warp(points, H):
    """Apply a 3x3 homography to (N, 2) points."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    projected = np.c_[points, np.ones(len(points))] @ H.T
    return projected[:, :2] / projected[:, 2:]


def corners(shape):
    h, w = shape[:2]
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)


def pair_record(points0, points1, pairs, H, shape0, ransac_threshold=3.0):
    """Metrics of one image pair from matched keypoints (pairs: (M, 2) indices)."""
    matched0, matched1 = points0[pairs[:, 0]], points1[pairs[:, 1]]
    if len(pairs):
        errors = np.linalg.norm(warp(matched0, H) - matched1, axis=1)
        mma = [float(np.mean(errors <= t)) for t in THRESHOLDS]
    else:
        mma = [0.0] * len(THRESHOLDS)
    corner_error = np.inf
    if len(pairs) >= 4:
        H_est, _ = cv2.findHomography(matched0, matched1, cv2.RANSAC, ransac_threshold)
        if H_est is not None:
            c = corners(shape0)
            corner_error = float(np.mean(np.linalg.norm(warp(c, H_est) - warp(c, H), axis=1)))
    return {"mma": mma, "matches": len(pairs), "corner_error": corner_error, "failed": False}


FAILED = {"mma": [0.0] * len(THRESHOLDS), "matches": 0, "corner_error": np.inf, "failed": True}


def summarise(records):
    """Mean metrics over pair records."""
    n = len(records)
    if n == 0:
        return None
    errors = np.array([r["corner_error"] for r in records])
    mma = np.array([r["mma"] for r in records])
    return {
        "mma": mma.mean(axis=0).tolist(),
        "mma_sd": report.bootstrap_sd(mma, lambda resampled: resampled.mean(axis=0)),
        "matches": float(np.mean([r["matches"] for r in records])),
        "h_acc": {str(t): float(np.mean(errors <= t)) for t in HOMOGRAPHY_THRESHOLDS},
        "pairs": n,
        "failed": sum(r["failed"] for r in records),
    }


def evaluate(sequences, methods, detector="sift", max_keypoints=2000, ratio=None, ransac_threshold=3.0,
             device="cpu", progress=True, reference=None):
    """results {METHOD: {GROUP: metrics}} over all image pairs (1, k) of the sequences. reference: a
    method's name; every other method's metrics then hold its paired MMA difference to it."""
    report.check_reference(reference, methods)
    records = {m.name: [] for m in methods}  # (groups, record)
    for seq in tqdm(sequences, desc="sequences", disable=not progress):
        groups = (seq.group, *seq.collections)
        features = [detect_and_describe(path, methods, detector, max_keypoints) for path in seq.images]
        for method in methods:
            for k, H in enumerate(seq.homographies, start=1):
                pair = (features[0], features[k])
                if any(f is None or method.name not in f[2] for f in pair):
                    records[method.name].append((groups, FAILED))  # reported when described
                    continue
                (shape0, points0, desc0), (_, points1, desc1) = pair
                try:
                    matches0, _ = match_descriptors(desc0[method.name], desc1[method.name], mutual=True,
                                                    ratio=ratio, device=device)
                    record = pair_record(points0, points1, matches_to_pairs(matches0), H, shape0, ransac_threshold)
                except Exception as error:
                    report.failure(f"{method.name} on {seq.name} 1-{k + 1}", error)
                    record = FAILED
                records[method.name].append((groups, record))
    groups = GROUPS + tuple(sorted({c for seq in sequences for c in seq.collections}))
    results = report.by_group(records, groups, summarise)
    if reference is not None:
        paired = report.paired_differences(records, reference, groups, lambda recs: np.array([r["mma"] for r in recs]),
                                           lambda mma: mma.mean(axis=0))
        for name, by_group in paired.items():
            for group, (difference, sd) in by_group.items():
                results[name][group].update(reference=reference, mma_vs_reference=difference, mma_vs_reference_sd=sd)
    return results


def protocol_text(detector, max_keypoints, ratio, ransac_threshold, reference=None):
    matcher = "mutual nearest neighbour" + (f" + ratio test {ratio}" if ratio else "")
    return (f"Homography sequences, image 1 against 2..n; {detector} keypoints (top {max_keypoints} by "
            f"response) detected once and described by every method; {matcher}; MMA at 1..10 px (D2-Net / "
            f"R2D2 definition, a pair without matches scores 0; sd: its standard deviation over 1000 "
            f"resamplings of the pairs); homography accuracy: mean corner error <= 1/3/5 px after OpenCV "
            f"RANSAC ({ransac_threshold} px)." + report.paired_text(reference))


def markdown_sections(results):
    columns = [("MMA@1", "all", "mma", 0), ("MMA@3", "all", "mma", 2), ("MMA@3 sd", "all", "mma_sd", 2),
               ("MMA@5", "all", "mma", 4), ("MMA@10", "all", "mma", 9), ("matches", "all", "matches", None),
               ("H@1", "all", "h_acc", "1"), ("H@3", "all", "h_acc", "3"), ("H@5", "all", "h_acc", "5"),
               ("pairs", "all", "pairs", None), ("failed", "all", "failed", None)]
    columns[3:3] = report.reference_columns(results, "all", "MMA@3", "mma_vs_reference", 2)
    sections = [("all pairs", report.table(results, columns, digits=3))]
    titles = {"i": "illumination (i_*)", "v": "viewpoint (v_*)", "other": "other sequences"}
    for group in dict.fromkeys(g for groups in results.values() for g in groups):
        if group != "all":
            title = titles.get(group, f"collection {group}")
            group_columns = [(h, group, m, k) for h, _, m, k in columns]
            sections.append((title, report.table(results, group_columns, digits=3)))
    return sections


def plot(results, path):
    panels = list(dict.fromkeys(g for groups in results.values() for g in groups))
    curves = {g: {m: groups[g]["mma"] for m, groups in results.items() if g in groups} for g in panels}
    report.plot_curves(THRESHOLDS, curves, panels, "threshold (px)", "MMA", "Mean matching accuracy", path,
                       ylim=(0, 1))


def add_arguments(parser):
    parser.add_argument("--root", required=True,
                        help="folder of homography sequences (<seq>/1.ppm|png, H_1_k), nested up to 3 levels")
    parser.add_argument("--sequences", nargs="+", help="only these sequences (names relative to --root)")
    parser.add_argument("--detector", default="sift", help="keypoint detector (default: sift)")
    parser.add_argument("--max-keypoints", type=int, default=2000, help="keypoints per image (default: 2000)")
    parser.add_argument("--ratio", type=float, help="Lowe's ratio test on top of mutual NN (default: off)")
    parser.add_argument("--ransac-threshold", type=float, default=3.0, help="homography RANSAC px (default: 3)")
    report.add_reference_argument(parser)


def run(args, specs):
    seqs = datasets.read_sequences(args.root, args.sequences)
    device = resolve_device(args.device)
    results = evaluate(seqs, load_methods(specs, device, args.detector), args.detector, args.max_keypoints, args.ratio,
                       args.ransac_threshold, device, progress=not args.no_progress, reference=args.reference)
    data = {"root": str(args.root), "sequences": [s.name for s in seqs],
            "pairs": sum(len(s.homographies) for s in seqs)}
    protocol = protocol_text(args.detector, args.max_keypoints, args.ratio, args.ransac_threshold, args.reference)
    return report.document("sequences", protocol, data, results), markdown_sections(results)
