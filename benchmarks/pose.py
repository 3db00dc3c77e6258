"""Task ``pose``: relative pose of image pairs with ground-truth cameras.

Protocol (as SuperGlue / LoFTR report it): keypoints from one detector (default SIFT, top 4000 by
response) are detected once per image and described by every method; matches are mutual nearest
neighbours (optionally with Lowe's ratio test); the essential matrix is fitted with RANSAC on
intrinsics-normalised points (OpenCV ``findEssentialMat``, threshold in pixels divided by the mean
focal length, confidence 0.99999, at most 1000 iterations as SuperGlue (``--ransac-iterations``),
``recoverPose`` on each candidate, the one with most inliers kept; or pycolmap's estimator through
``descplug.colmap``). The pose error of a pair is
max(rotation error, translation-direction error) in degrees, the translation error taken up to sign
(an essential matrix fixes t only up to sign); a pair without a pose (fewer than 5 matches, no
model) or that failed has an infinite error. AUC of the recall-vs-error curve up to 5, 10 and 20
degrees, in percent.

RANSAC's luck: cv2.RANSAC samples with a fixed seed, so one run's AUC depends on the order of the
matches as much as on the matches (on Sacre Coeur's 45 pairs the AUC@10 of one set of matches
spreads by about 3 points over orderings). ``--ransac-orders K`` runs the estimator on K orderings
of each pair's matches (the first as matched, the others shuffled with a seed per pair) and
reports the mean of the K AUCs (``auc``) and their standard deviation (``auc_ransac_sd``).

Match precision, independent of RANSAC: the percentage of a pair's putative matches within
``--epipolar-threshold`` pixels (default 3) of the ground-truth epipolar lines (the mean of the
distances in both images), averaged over the pairs with matches; ``gt_inliers`` counts those matches.
A match that slides along its epipolar line passes, so this is an upper bound of the true precision.
"""

import zlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from descplug import colmap
from descplug.api import resolve_device
from descplug.matching import match_descriptors, matches_to_pairs

from . import datasets, report
from .methods import detect_and_describe, load_methods

AUC_THRESHOLDS = (5, 10, 20)
MIN_MATCHES = 5
OPENCV_ITERATIONS = 1000  # findEssentialMat's default, as SuperGlue evaluates
EPIPOLAR_THRESHOLD = 3.0  # px


def normalise(points, K):
    """Pixel points (N, 2) -> normalised camera coordinates."""
    return cv2.undistortPoints(np.asarray(points, np.float64).reshape(-1, 1, 2), K, None).reshape(-1, 2)


def estimate_pose_opencv(points0, points1, K0, K1, threshold=1.0, iterations=None, confidence=0.99999):
    """(R, t) of image 1 relative to image 0 from pixel matches, or None (iterations: RANSAC's cap)."""
    if len(points0) < MIN_MATCHES:
        return None
    n0, n1 = normalise(points0, K0), normalise(points1, K1)
    focal = np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]])
    E, mask = cv2.findEssentialMat(n0, n1, np.eye(3), method=cv2.RANSAC, prob=confidence,
                                   threshold=threshold / focal, maxIters=iterations or OPENCV_ITERATIONS)
    if E is None:
        return None
    best = None
    for candidate in np.split(E, len(E) // 3):
        inliers, R, t, _ = cv2.recoverPose(candidate, n0, n1, np.eye(3), 1e9, mask=mask.copy())
        if best is None or inliers > best[0]:
            best = (inliers, R, t.ravel())
    return best[1], best[2]


def estimate_pose_pycolmap(points0, points1, K0, K1, threshold=1.0, iterations=None):
    """(R, t) from pycolmap's essential-matrix LO-RANSAC (through descplug.colmap), or None.
    `iterations` is the opencv estimator's option: evaluate() refuses it for this one."""
    pose = colmap.relative_pose(points0, points1, K0, K1, max_error=threshold)
    return None if pose is None else pose[:2]


ESTIMATORS = {"opencv": estimate_pose_opencv, "pycolmap": estimate_pose_pycolmap}


def epipolar_distances(points0, points1, K0, K1, R, t):
    """Pixel distance of each match to the epipolar lines of the pose x1 = R x0 + t, the mean of
    point 1 to the line of point 0 in image 1 and point 0 to the line of point 1 in image 0."""
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]], np.float64)
    F = np.linalg.inv(K1).T @ tx @ R @ np.linalg.inv(K0)
    h0 = np.c_[np.asarray(points0, np.float64), np.ones(len(points0))]
    h1 = np.c_[np.asarray(points1, np.float64), np.ones(len(points1))]
    lines1, lines0 = h0 @ F.T, h1 @ F  # epipolar lines in image 1 and in image 0
    residual = np.abs(np.sum(h1 * lines1, axis=1))
    return 0.5 * (residual / np.hypot(*lines1[:, :2].T) + residual / np.hypot(*lines0[:, :2].T))


def angle_between(a, b):
    cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def pose_error(R_est, t_est, R_gt, t_gt):
    """max(rotation error, translation-direction error up to sign), degrees."""
    cos = (np.trace(R_est.T @ R_gt) - 1) / 2
    rotation = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    translation = angle_between(t_est, t_gt)
    return max(rotation, min(translation, 180.0 - translation))


def pose_auc(errors, thresholds=AUC_THRESHOLDS):
    """Area under the recall-vs-error curve up to each threshold, normalised to [0, 1]."""
    errors = np.sort(np.asarray(errors, np.float64))
    if len(errors) == 0:
        return [0.0 for _ in thresholds]
    recall = np.arange(1, len(errors) + 1) / len(errors)
    errors, recall = np.r_[0.0, errors], np.r_[0.0, recall]
    aucs = []
    for t in thresholds:
        last = np.searchsorted(errors, t)
        x = np.r_[errors[:last], t]
        y = np.r_[recall[:last], recall[last - 1]]
        aucs.append(float(np.trapezoid(y, x) / t))
    return aucs


def error_matrix(records):
    """(pairs, orderings) pose errors; a record's "error" is one error or one per RANSAC ordering
    (a failed pair's single infinite error stands for every ordering)."""
    errors = [np.atleast_1d(np.asarray(r["error"], np.float64)) for r in records]
    orders = max(len(e) for e in errors)
    return np.array([np.broadcast_to(e, orders) for e in errors])


def aucs_per_ordering(errors):
    """(orderings, thresholds) AUCs of an (pairs, orderings) error matrix."""
    return np.array([pose_auc(column) for column in errors.T])


def mean_auc(errors):
    return aucs_per_ordering(errors).mean(axis=0)


def summarise(records):
    if not records:
        return None
    errors = error_matrix(records)
    precisions = [r["gt_inliers"] / r["matches"] for r in records if r["matches"]]
    summary = {
        "auc": {str(t): 100 * float(a) for t, a in zip(AUC_THRESHOLDS, mean_auc(errors))},
        "auc_sd": {str(t): 100 * s for t, s in zip(AUC_THRESHOLDS, report.bootstrap_sd(errors, mean_auc))},
        "pairs": len(records),
        "matches": float(np.mean([r["matches"] for r in records])),
        "gt_inliers": float(np.mean([r["gt_inliers"] for r in records])),
        "precision": 100 * float(np.mean(precisions)) if precisions else 0.0,
        "median_error": float(np.median(np.median(errors, axis=1))),
        "failed": sum(r["failed"] for r in records),
    }
    if errors.shape[1] > 1:
        spread = aucs_per_ordering(errors).std(axis=0, ddof=1)
        summary["auc_ransac_sd"] = {str(t): 100 * float(s) for t, s in zip(AUC_THRESHOLDS, spread)}
        summary["ransac_orders"] = errors.shape[1]
    return summary


def pair_seed(pair):
    """A pair's own seed, the same whichever scenes or methods a run holds."""
    return zlib.crc32(f"{pair.name0} {pair.name1}".encode())


def match_orders(count, orders, seed):
    """``orders`` index orders of ``count`` matches: as matched, then shuffled (seeded)."""
    rng = np.random.default_rng(seed)
    return [np.arange(count)] + [rng.permutation(count) for _ in range(orders - 1)]


FAILED = {"error": np.inf, "matches": 0, "gt_inliers": 0, "failed": True}


def evaluate(scenes, methods, detector="sift", max_keypoints=4000, ratio=None, estimator="opencv",
             threshold=1.0, iterations=None, device="cpu", progress=True, epipolar_threshold=EPIPOLAR_THRESHOLD,
             orders=1, reference=None):
    """scenes: list of (group name, list of PosePair). results {METHOD: {GROUP: metrics}}.
    orders: RANSAC runs per pair, each on another ordering of the matches (the AUC is their mean).
    reference: a method's name; every other method's metrics then hold its paired AUC difference to it."""
    estimate = ESTIMATORS[estimator]
    if estimator != "opencv" and iterations is not None:
        raise ValueError("--ransac-iterations is an option of --estimator opencv only")
    if orders < 1:
        raise ValueError(f"--ransac-orders must be at least 1, got {orders}")
    report.check_reference(reference, methods)
    records = {m.name: [] for m in methods}  # ((group,), record)
    for group, pairs in tqdm(scenes, desc="scenes", disable=not progress):
        paths = sorted({p.image0 for p in pairs} | {p.image1 for p in pairs})
        features = {path: detect_and_describe(path, methods, detector, max_keypoints)
                    for path in tqdm(paths, desc=f"{group}: features", disable=not progress, leave=False)}
        for pair in tqdm(pairs, desc=f"{group}: pairs", disable=not progress, leave=False):
            for method in methods:
                f0, f1 = features[pair.image0], features[pair.image1]
                if f0 is None or f1 is None or method.name not in f0[2] or method.name not in f1[2]:
                    records[method.name].append(((group,), FAILED))  # reported when described
                    continue
                (_, points0, desc0), (_, points1, desc1) = f0, f1
                desc0, desc1 = desc0[method.name], desc1[method.name]
                try:
                    matches0, _ = match_descriptors(desc0, desc1, mutual=True, ratio=ratio, device=device)
                    pairs01 = matches_to_pairs(matches0)
                    matched0, matched1 = points0[pairs01[:, 0]], points1[pairs01[:, 1]]
                    errors = []
                    for order in match_orders(len(pairs01), orders, pair_seed(pair)):
                        pose = estimate(matched0[order], matched1[order], pair.K0, pair.K1, threshold, iterations)
                        errors.append(np.inf if pose is None else pose_error(*pose, pair.R, pair.t))
                    distances = epipolar_distances(matched0, matched1, pair.K0, pair.K1, pair.R, pair.t)
                    record = {"error": tuple(errors), "matches": len(pairs01),
                              "gt_inliers": int(np.sum(distances <= epipolar_threshold)), "failed": False}
                except Exception as error:
                    report.failure(f"{method.name} on pair {pair.name0} {pair.name1}", error)
                    record = FAILED
                records[method.name].append(((group,), record))
    groups = ["all"] + [group for group, _ in scenes]
    results = report.by_group(records, groups, summarise)
    if reference is not None:
        paired = report.paired_differences(records, reference, groups, error_matrix, mean_auc)
        for name, by_group in paired.items():
            for group, (difference, sd) in by_group.items():
                results[name][group].update(
                    reference=reference,
                    auc_vs_reference={str(t): 100 * d for t, d in zip(AUC_THRESHOLDS, difference)},
                    auc_vs_reference_sd={str(t): 100 * x for t, x in zip(AUC_THRESHOLDS, sd)})
    return results


def protocol_text(detector, max_keypoints, ratio, estimator, threshold, iterations, epipolar_threshold, orders=1,
                  reference=None):
    matcher = "mutual nearest neighbour" + (f" + ratio test {ratio}" if ratio else "")
    cap = f", at most {iterations or OPENCV_ITERATIONS} iterations" if estimator == "opencv" else ""
    repeated = (f"; the AUC is the mean over {orders} RANSAC runs per pair on orderings of its matches (RANSAC sd: "
                f"their spread)" if orders > 1 else "")
    return (f"Relative pose; {detector} keypoints (top {max_keypoints} by response) detected once and "
            f"described by every method; {matcher}; essential matrix by {estimator} RANSAC "
            f"({threshold} px, normalised by the mean focal length{cap}){repeated}; error = max(rotation, translation "
            f"direction) in degrees; AUC (%) at 5/10/20 degrees; failed pairs count as infinite error; "
            f"sd: standard deviation of the AUC over 1000 resamplings of the pairs; precision: percentage of a pair's "
            f"matches within {epipolar_threshold} px of the ground-truth epipolar lines, mean over pairs."
            + report.paired_text(reference))


def markdown_sections(results):
    groups = list(dict.fromkeys(g for groups in results.values() for g in groups))
    sections = []
    for group in groups:
        columns = [("AUC@5", group, "auc", "5"), ("AUC@10", group, "auc", "10"),
                   ("AUC@10 bootstrap sd", group, "auc_sd", "10"), ("AUC@10 RANSAC sd", group, "auc_ransac_sd", "10"),
                   ("AUC@20", group, "auc", "20"),
                   ("matches", group, "matches", None), ("GT inliers", group, "gt_inliers", None),
                   ("precision (%)", group, "precision", None), ("pairs", group, "pairs", None),
                   ("failed", group, "failed", None)]
        columns[3:3] = report.reference_columns(results, group, "AUC@10", "auc_vs_reference", "10")
        sections.append((group if group != "all" else "all pairs", report.table(results, columns, digits=1)))
    return sections


def plot(results, path):
    panels = [(f"AUC@{t}", "all", "auc", str(t)) for t in AUC_THRESHOLDS]
    report.plot_bars(results, panels, "Relative pose AUC (%)", path)


def add_arguments(parser):
    parser.add_argument("--root", required=True,
                        help="folder of IMC (images/, calibration/) and/or Strecha (images/, cameras/) scenes, "
                             "nested up to 3 levels; or a SuperGlue *_pairs_with_gt.txt file")
    parser.add_argument("--image-dir", help="images of a pairs file (default: the file's folder)")
    parser.add_argument("--scenes", nargs="+", help="only these scenes (names relative to --root)")
    parser.add_argument("--min-gap", type=int, default=1,
                        help="pairs (i, j) of a scene's sorted images with j - i >= MIN_GAP (default: 1, all pairs)")
    parser.add_argument("--max-gap", type=int, help="and j - i <= MAX_GAP (default: no limit)")
    parser.add_argument("--detector", default="sift", help="keypoint detector (default: sift)")
    parser.add_argument("--max-keypoints", type=int, default=4000, help="keypoints per image (default: 4000)")
    parser.add_argument("--ratio", type=float, help="Lowe's ratio test on top of mutual NN, e.g. 0.9 (default: off)")
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS), default="opencv",
                        help="essential-matrix RANSAC (default: opencv)")
    parser.add_argument("--threshold", type=float, default=1.0, help="RANSAC threshold in pixels (default: 1)")
    parser.add_argument("--ransac-iterations", type=int,
                        help=f"iteration cap of the opencv RANSAC (default: {OPENCV_ITERATIONS}, OpenCV's and "
                             "SuperGlue's; low-inlier pairs need more)")
    parser.add_argument("--ransac-orders", type=int, default=1,
                        help="RANSAC runs per pair, each on another ordering of its matches (seeded); the AUC is "
                             "their mean, less dependent on RANSAC's luck (default: 1, the matches as found)")
    report.add_reference_argument(parser)
    parser.add_argument("--epipolar-threshold", type=float, default=EPIPOLAR_THRESHOLD,
                        help="pixels from the ground-truth epipolar lines within which a match counts as "
                             f"correct for the precision figure (default: {EPIPOLAR_THRESHOLD:g})")


def read_scenes(args):
    """[(group, pairs)] from --root: a pairs-with-gt file or a folder of posed scenes."""
    if Path(args.root).is_file():
        return [(Path(args.root).stem, datasets.read_pairs_with_gt(args.root, args.image_dir))]
    scenes = datasets.read_pose_scenes(args.root, args.scenes)
    return [(s.name, s.pairs(args.min_gap, args.max_gap)) for s in scenes]


def run(args, specs):
    scenes = read_scenes(args)
    device = resolve_device(args.device)
    results = evaluate(scenes, load_methods(specs, device, args.detector), args.detector, args.max_keypoints, args.ratio,
                       args.estimator, args.threshold, args.ransac_iterations, device,
                       progress=not args.no_progress, epipolar_threshold=args.epipolar_threshold,
                       orders=args.ransac_orders, reference=args.reference)
    data = {"root": str(args.root), "scenes": {name: len(pairs) for name, pairs in scenes},
            "min_gap": args.min_gap, "max_gap": args.max_gap}
    protocol = protocol_text(args.detector, args.max_keypoints, args.ratio, args.estimator, args.threshold,
                             args.ransac_iterations, args.epipolar_threshold, args.ransac_orders, args.reference)
    return report.document("pose", protocol, data, results), markdown_sections(results)
