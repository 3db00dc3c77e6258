"""Task ``hpatches-patches``: the HPatches patch benchmark (verification, matching, retrieval mAP).

Protocol: the official Python implementation (hpatches-benchmark, ``python/utils/tasks.py``),
reimplemented: patches (65x65 in ``hpatches-release``) are resized to 32x32 with ``cv2.resize`` as the
reference implementations do, descriptors are compared by L2 distance, and

- verification: positive pairs (same patch index, two different images among ref, 1..4 of a level),
  intra-sequence negatives (another index of the same sequence) and inter-sequence negatives (a
  random patch of another sequence; the official lists may, rarely, draw the same one); AP on the
  imbalanced set (all negatives + the first 20% of the positives), averaged over intra and inter;
  also the balanced ROC AUC;
- matching: every patch of ref against the patches of image k (nearest neighbour); AP of the
  correct-nearest-neighbour ranking (all patches count as positives); mean over the 5 images and
  the sequences of a type (``i``, ``v``, other), then over the types present;
- retrieval: queries are ref patches (std > 10), the 5 positives the same patch in images 1..5,
  the distractors ref patches of other sequences; AP for pools of the first 100 ... 20000
  distractors, averaged over the pool sizes and the queries.

The official pair/query lists (``tasks/*.csv``) are not available here: they are drawn with the same
rules from a seeded generator, with sizes as options (official: 1M verification pairs, 5000
queries, 20000 distractors). Values are percentages.
"""

import json
import zlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from descplug.detectors import detect
from descplug.images import load_image
from descplug.patches import cv2_pyramid

from . import datasets, report
from .methods import load_methods

LEVELS = {"e": "easy", "h": "hard", "t": "tough"}
TYPE_GROUPS = ("i", "v", "other")
POOL_SIZES = (100, 500, 1000, 5000, 10000, 15000, 20000)
INPUT_SIZE = 32
QUERY_MIN_STD = 10.0
SMALL = 1e-10  # the official metrics' guard against 0 / 0


# ---------------------------------------------------------------- metrics (official semantics)

def _tpfp(scores, labels, numpos=None):
    """Cumulative true/false positives down the ranking (a -inf score is never retrieved)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.int64)
    p = int(labels.sum())
    if numpos is not None:
        if numpos < p:
            raise ValueError(f"numpos {numpos} is smaller than the {p} positive labels")
        scores = np.r_[scores, np.full(numpos - p, -np.inf)]
        labels = np.r_[labels, np.ones(numpos - p, np.int64)]
        p = numpos
    order = np.argsort(-scores, kind="mergesort")
    labels = labels[order[scores[order] > -np.inf]]
    tp = np.r_[0, np.cumsum(labels == 1)]
    fp = np.r_[0, np.cumsum(labels == 0)]
    return tp, fp, p, len(scores) - p


def average_precision(scores, labels, numpos=None):
    """Area under the precision-recall curve (trapezoid), higher score = retrieved first."""
    tp, fp, p, _ = _tpfp(scores, labels, numpos)
    recall = tp / max(p, SMALL)
    precision = np.maximum(tp, SMALL) / np.maximum(tp + fp, SMALL)
    return float(np.trapezoid(precision, recall))


def roc_auc(scores, labels):
    tp, fp, p, n = _tpfp(scores, labels)
    return float(np.trapezoid(tp / max(p, SMALL), fp / max(n, SMALL)))


def retrieval_ap(positive_dist, distractor_dist, pool_sizes=POOL_SIZES):
    """AP of the official retrieval task for each pool size, without sorting the pool.

    The pool of size k is the positives followed by the first k - P distractors; a positive ranks
    after every distractor strictly closer (ties go to the positives, listed first).
    """
    positives = np.sort(np.asarray(positive_dist, np.float64))
    n_pos = len(positives)
    closer = np.cumsum(np.asarray(distractor_dist)[None, :] < positives[:, None], axis=1)
    j = np.arange(1, n_pos + 1)
    aps = []
    for k in pool_sizes:
        m = min(max(k - n_pos, 0), closer.shape[1])
        rank = j + (closer[:, m - 1] if m > 0 else 0)
        before = np.where(rank > 1, np.maximum(j - 1, SMALL) / np.maximum(rank - 1, SMALL), 1.0)
        aps.append(float(np.mean((before + j / rank) / 2)))
    return aps


def _distances(a, b):
    """L2 distance matrix."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


# ---------------------------------------------------------------- task lists (official rules, seeded)

def _kind(level, type_id):
    return "ref" if type_id == 0 else f"{level}{type_id}"


def verification_pairs(counts, n_pairs, rng):
    """Seeded verification lists over sequences with ``counts[s]`` patches: dict of index arrays."""
    counts = np.asarray(counts)
    if len(counts) < 2 or (counts < 2).any():
        raise ValueError("verification needs at least 2 sequences and 2 patches in every sequence")
    s = rng.integers(len(counts), size=n_pairs)
    idx_a = rng.integers(counts[s])
    idx_b = (idx_a + rng.integers(1, counts[s])) % counts[s]
    t1 = rng.integers(5, size=n_pairs)
    t2 = (t1 + rng.integers(1, 5, size=n_pairs)) % 5
    s_inter = (s + rng.integers(1, len(counts), size=n_pairs)) % len(counts)  # another sequence
    idx_inter = rng.integers(counts[s_inter])
    return {"s": s, "idx_a": idx_a, "idx_b": idx_b, "t1": t1, "t2": t2, "s_inter": s_inter, "idx_inter": idx_inter}


def retrieval_lists(ref_std, n_queries, n_distractors, rng):
    """Seeded (seq, idx) query and distractor arrays among textured ref patches (std > 10)."""
    def draw(n):
        s = rng.integers(len(ref_std), size=n)
        idx = rng.integers([len(ref_std[k]) for k in s])
        keep = np.array([ref_std[a][b] > QUERY_MIN_STD for a, b in zip(s, idx)], bool)
        pairs = np.stack([s[keep], idx[keep]], axis=1)
        _, first = np.unique(pairs, axis=0, return_index=True)
        return pairs[np.sort(first)]

    queries = draw(4 * n_queries)[:n_queries]
    distractors = draw(10 * n_distractors)
    taken = {tuple(q) for q in queries}
    distractors = np.array([d for d in distractors if tuple(d) not in taken], np.int64).reshape(-1, 2)
    if len(queries) == 0:
        raise ValueError("retrieval needs textured ref patches (std > 10) in the sequences")
    if len(distractors) == 0:
        raise ValueError(f"the {len(queries)} retrieval queries took every textured ref patch: "
                         "lower --queries to leave distractors")
    return queries, distractors[:n_distractors]


# ---------------------------------------------------------------- evaluation

def resize_patches(patches):
    """uint8 (N, 65, 65) -> float32 (N, 32, 32) in [0, 1], as the reference implementations resize."""
    return np.stack([cv2.resize(p, (INPUT_SIZE, INPUT_SIZE)) for p in patches]).astype(np.float32) / 255


def describe(sequences, method, progress=True):
    """[{kind: (N, D)}] per sequence; raises when a sequence cannot be read or described."""
    out = []
    for seq in tqdm(sequences, desc=f"{method.name}: describe", disable=not progress, leave=False):
        patches = seq.load()
        out.append({kind: method.describe_patches(resize_patches(p)) for kind, p in patches.items()})
    return out


def _stack_level(desc, level):
    """All descriptors of a level in one array, and a function (seq, type id, idx) -> row."""
    counts = np.array([len(d["ref"]) for d in desc])
    offsets = np.r_[0, np.cumsum(6 * counts)[:-1]]
    flat = np.concatenate([d[_kind(level, t)] for d in desc for t in range(6)])
    return flat, lambda s, t, i: offsets[s] + t * counts[s] + i


def _pair_distances(flat, rows0, rows1, chunk=100_000):
    return np.concatenate([np.linalg.norm(flat[rows0[i:i + chunk]] - flat[rows1[i:i + chunk]], axis=1)
                           for i in range(0, len(rows0), chunk)])


def eval_verification(desc, pairs):
    """{level: (imbalanced AP mean of intra/inter, balanced AUC mean of intra/inter)}."""
    p = pairs
    n = len(p["s"])
    n_imbalanced = n + int(0.2 * n)
    labels = np.r_[np.zeros(n), np.ones(n)]
    out = {}
    for level in LEVELS:
        flat, row = _stack_level(desc, level)
        anchors = row(p["s"], p["t1"], p["idx_a"])
        d_pos = _pair_distances(flat, anchors, row(p["s"], p["t2"], p["idx_a"]))
        aps, aucs = [], []
        for negatives in (row(p["s"], p["t2"], p["idx_b"]), row(p["s_inter"], p["t2"], p["idx_inter"])):
            d_all = np.r_[_pair_distances(flat, anchors, negatives), d_pos]
            aucs.append(roc_auc(-d_all, labels))
            aps.append(average_precision(-d_all[:n_imbalanced], labels[:n_imbalanced]))
        out[level] = (float(np.mean(aps)), float(np.mean(aucs)))
    return out


def eval_matching(desc, groups):
    """{level: {type group: mean AP}} (mean over images 1..5, then over sequences)."""
    out = {}
    for level in LEVELS:
        per_group = {}
        for seq_desc, group in zip(desc, groups):
            ref = seq_desc["ref"]
            truth = np.arange(len(ref))
            aps = []
            for k in range(1, 6):
                D = _distances(ref, seq_desc[f"{level}{k}"])
                nearest = D.argmin(axis=1)
                aps.append(average_precision(-D[truth, nearest], nearest == truth, numpos=len(ref)))
            per_group.setdefault(group, []).append(np.mean(aps))
        out[level] = {g: float(np.mean(v)) for g, v in per_group.items()}
    return out


def eval_retrieval(desc, queries, distractors, pool_sizes=POOL_SIZES, chunk=256):
    """{level: mean AP over queries and pool sizes}."""
    q_desc = np.stack([desc[s]["ref"][i] for s, i in queries])
    d_desc = np.stack([desc[s]["ref"][i] for s, i in distractors])
    sums = {level: 0.0 for level in LEVELS}
    for start in range(0, len(queries), chunk):
        D = _distances(q_desc[start:start + chunk], d_desc)
        for row, (s, i) in enumerate(queries[start:start + chunk]):
            others = D[row][distractors[:, 0] != s]
            for level in LEVELS:
                positives = [np.linalg.norm(q_desc[start + row] - desc[s][f"{level}{k}"][i]) for k in range(1, 6)]
                sums[level] += np.mean(retrieval_ap(positives, others, pool_sizes))
    return {level: total / len(queries) for level, total in sums.items()}


def summarise(verification, matching, retrieval):
    """{GROUP: {METRIC: percent}}: levels easy/hard/tough, sequence types, and all."""
    results = {}
    for level, name in LEVELS.items():
        results[name] = {
            "verification": 100 * verification[level][0],
            "verification_auc": 100 * verification[level][1],
            "matching": 100 * float(np.mean(list(matching[level].values()))),
            "retrieval": 100 * retrieval[level],
        }
    levels = [results[name] for name in LEVELS.values()]
    results["all"] = {metric: float(np.mean([r[metric] for r in levels])) for metric in levels[0]}
    for group in TYPE_GROUPS:
        if group in matching["e"]:
            results[group] = {"matching": 100 * float(np.mean([matching[level][group] for level in LEVELS]))}
    return {"all": results.pop("all"), **results}


def evaluate(sequences, methods, n_pairs=1_000_000, n_queries=5000, n_distractors=20000, seed=42, progress=True):
    """results {METHOD: {GROUP: {METRIC: value}}} and the list sizes actually used."""
    rng = np.random.default_rng(seed)
    refs = [seq.load()["ref"] for seq in tqdm(sequences, desc="task lists", disable=not progress, leave=False)]
    pairs = verification_pairs([len(r) for r in refs], n_pairs, rng)
    queries, distractors = retrieval_lists([r.reshape(len(r), -1).std(axis=1) for r in refs],
                                           n_queries, n_distractors, rng)
    groups = [seq.group for seq in sequences]
    results = {}
    for method in tqdm(methods, desc="methods", disable=not progress):
        try:
            desc = describe(sequences, method, progress)
        except Exception as error:  # the method has no result; the others go on
            report.failure(f"{method.name} describing the patches", error)
            results[method.name] = {"all": {"failed": 1}}
            continue
        results[method.name] = summarise(eval_verification(desc, pairs), eval_matching(desc, groups),
                                         eval_retrieval(desc, queries, distractors))
        results[method.name]["all"]["failed"] = 0
    sizes = {"verification_pairs": n_pairs, "queries": len(queries), "distractors": len(distractors),
             "patches": int(sum(len(r) for r in refs))}
    return results, sizes


def select_sequences(args):
    sequences = datasets.read_patch_sequences(args.root)
    if args.splits is None:
        return sequences, "all sequences under the root"
    names = set(datasets.read_splits(args.splits, args.split))
    found = {Path(s.name).name for s in sequences}
    missing = sorted(names - found)
    if missing:
        raise ValueError(f"split {args.split!r}: {len(missing)} test sequences missing under {args.root}: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return [s for s in sequences if Path(s.name).name in names], f"split {args.split} of {args.splits}"


def add_arguments(parser):
    parser.add_argument("--root", required=True, help="hpatches-release layout: <seq>/{ref,e1..e5,h1..h5,t1..t5}.png")
    parser.add_argument("--splits", help="the official splits.json (default: use every sequence under --root)")
    parser.add_argument("--split", default="full", help="split name in --splits: a, b, c, full, illum, view "
                                                        "(default: full)")
    parser.add_argument("--pairs", type=int, default=1_000_000, help="verification pairs (default: 1000000)")
    parser.add_argument("--queries", type=int, default=5000, help="retrieval queries (default: 5000)")
    parser.add_argument("--distractors", type=int, default=20000, help="retrieval distractors (default: 20000)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the task lists (default: 42)")


def run(args, specs):
    sequences, selection = select_sequences(args)
    methods = load_methods(specs, args.device)
    results, sizes = evaluate(sequences, methods, args.pairs, args.queries, args.distractors, args.seed,
                              progress=not args.no_progress)
    protocol = ("HPatches patch benchmark following the official Python protocol (hpatches-benchmark): "
                "65x65 patches resized to 32x32, L2 distance; verification = imbalanced mAP (mean of intra "
                "and inter negatives), matching mAP, retrieval mAP over pools of 100..20000 distractors; "
                f"task lists drawn with the official rules from seed {args.seed} (the official CSV lists "
                "are not used); values in %; a method that fails on any patch has no values (failed: 1).")
    data = {"root": str(args.root), "selection": selection, "sequences": [s.name for s in sequences], **sizes}
    return report.document("hpatches-patches", protocol, data, results), markdown_sections(results)


def markdown_sections(results):
    columns = [("verification", "all", "verification", None), ("matching", "all", "matching", None),
               ("retrieval", "all", "retrieval", None)]
    for name in LEVELS.values():
        columns += [(f"{metric[:5]}. {name}", name, metric, None)
                    for metric in ("verification", "matching", "retrieval")]
    columns.append(("failed", "all", "failed", None))
    return [("mAP (%)", report.table(results, columns, digits=2))]


def plot(results, path):
    panels = [(metric, "all", metric, None) for metric in ("verification", "matching", "retrieval")]
    report.plot_bars(results, panels, "HPatches patch mAP (%)", path)


# ---------------------------------------------------------------- make-hpatches-patches

HPATCHES_MAGNIFICATION = 5.303  # patch side / KeyPoint.size: the official SIFT baseline's centre keypoint
# Affine jitter per level: max rotation (deg), max |log scale|, max |log anisotropy|, max translation
# (fraction of the region's half side), each drawn uniformly. Chosen so the median overlap of the
# jittered and original regions is about 0.85 (easy) and 0.72 (hard), as HPatches states, and 0.6
# (tough, our choice).
JITTER = {"e": (10.0, 0.1, 0.1, 0.1), "h": (22.5, 0.225, 0.225, 0.225), "t": (35.0, 0.35, 0.35, 0.35)}


def jitter_matrices(n, level, rng):
    """(n, 3, 3) affine maps of normalised patch coordinates ([-1, 1]^2)."""
    rotation, scale, anisotropy, shift = JITTER[level]
    phi = np.radians(rng.uniform(-rotation, rotation, n))
    s = np.exp(rng.uniform(-scale, scale, n))
    a = np.exp(rng.uniform(-anisotropy, anisotropy, n))
    out = np.zeros((n, 3, 3))
    out[:, 0, 0], out[:, 0, 1] = np.cos(phi) * s * a, -np.sin(phi) * s / a
    out[:, 1, 0], out[:, 1, 1] = np.sin(phi) * s * a, np.cos(phi) * s / a
    out[:, :2, 2] = rng.uniform(-shift, shift, (n, 2))
    out[:, 2, 2] = 1
    return out


def region_frames(keypoints, magnification):
    """(n, 3, 3) maps from normalised patch coordinates to image 1 pixels (descplug patch geometry)."""
    x, y, size, angle = (keypoints[:, i].astype(np.float64) for i in range(4))
    theta = np.radians(np.where(angle < 0, 0.0, angle))
    half = magnification * size / 2
    out = np.zeros((len(keypoints), 3, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = half * np.cos(theta), -half * np.sin(theta), x
    out[:, 1, 0], out[:, 1, 1], out[:, 1, 2] = half * np.sin(theta), half * np.cos(theta), y
    out[:, 2, 2] = 1
    return out


def cut_patches(image, maps, patch_size=datasets.PATCH_SIZE):
    """Sample one patch per 3x3 map (normalised patch coordinates -> image pixels), anti-aliased.

    Each patch is read from the pyramid level (cv2.pyrDown) whose pixel step is the largest power of two
    not above the patch's pixel step at its centre; borders are mirrored.
    """
    grid = (np.arange(patch_size) - (patch_size - 1) / 2) / (patch_size / 2)
    u, v = np.meshgrid(grid, grid)
    coords = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    jacobian_det = np.abs(np.linalg.det(_centre_jacobians(maps)))
    steps = np.sqrt(jacobian_det) * 2 / patch_size
    levels = np.floor(np.log2(np.maximum(steps, 1.0))).astype(int)
    pyramid = cv2_pyramid(image, int(levels.max()))
    out = np.empty((len(maps), patch_size, patch_size), np.float32)
    for n, (M, level) in enumerate(zip(maps, levels)):
        points = M @ coords
        xy = (points[:2] / points[2]) / 2.0**level
        map_x = xy[0].reshape(patch_size, patch_size).astype(np.float32)
        map_y = xy[1].reshape(patch_size, patch_size).astype(np.float32)
        out[n] = cv2.remap(pyramid[level], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out


def _centre_jacobians(maps):
    """2x2 Jacobians of the projective maps at the patch centre (0, 0)."""
    w = maps[:, 2, 2][:, None, None]
    return (maps[:, :2, :2] * w - maps[:, :2, 2:] * maps[:, 2:, :2]) / w**2


def _inside(points, shape):
    h, w = shape[:2]
    return (points[..., 0] >= 0) & (points[..., 0] <= w - 1) & (points[..., 1] >= 0) & (points[..., 1] <= h - 1)


def select_keypoints(keypoints, shapes, homographies, magnification, max_patches):
    """Strongest keypoints whose region lies inside image 1 and, projected, inside every other image;
    a keypoint is dropped when a stronger kept one is closer than half its region's half side at a
    similar size (HPatches clusters overlapping detections)."""
    order = np.argsort(-keypoints[:, 4], kind="stable")
    frames = region_frames(keypoints[order], magnification)
    square = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], np.float64).T
    corners = frames @ square  # (n, 3, 4) in image 1
    ok = _inside(np.moveaxis(corners[:, :2] / corners[:, 2:], 1, 2), shapes[0]).all(axis=1)
    for H, shape in zip(homographies, shapes[1:]):
        projected = H @ corners
        ok &= _inside(np.moveaxis(projected[:, :2] / projected[:, 2:], 1, 2), shape).all(axis=1)
    kept = []
    for i in np.flatnonzero(ok):
        x, y, size = keypoints[order[i], :3]
        if kept:
            other = keypoints[order[kept], :3]
            close = np.hypot(other[:, 0] - x, other[:, 1] - y) < magnification * np.maximum(other[:, 2], size) / 4
            similar = np.abs(np.log2(other[:, 2] / size)) < 0.5
            if (close & similar).any():
                continue
        kept.append(i)
        if len(kept) == max_patches:
            break
    return keypoints[order[kept]]


def make_sequence(seq, out_dir, magnification, max_patches, rng):
    """Write one HPatches-style patch sequence; returns the number of patches."""
    images = [load_image(path) for path in seq.images]
    cv_keypoints = detect(images[0], "sift")
    keypoints = np.array([(*kp.pt, kp.size, kp.angle, kp.response) for kp in cv_keypoints], np.float64).reshape(-1, 5)
    keypoints = select_keypoints(keypoints, [im.shape for im in images], seq.homographies, magnification, max_patches)
    if len(keypoints) < 2:
        raise ValueError(f"{seq.name}: only {len(keypoints)} keypoints have their region inside every image")
    frames = region_frames(keypoints, magnification)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets.write_patch_file(out_dir / "ref.png", _to_uint8(cut_patches(images[0], frames)))
    n_targets = len(seq.homographies)
    for level in LEVELS:
        for k in range(1, 6):
            target = (k - 1) % n_targets  # sequences with fewer than 6 images reuse their images
            maps = seq.homographies[target] @ frames @ jitter_matrices(len(frames), level, rng)
            patches = cut_patches(images[target + 1], maps)
            datasets.write_patch_file(out_dir / f"{level}{k}.png", _to_uint8(patches))
    return len(keypoints)


def _to_uint8(patches):
    return np.clip(np.rint(patches * 255), 0, 255).astype(np.uint8)


def make_patches(root, out, magnification=HPATCHES_MAGNIFICATION, max_patches=1000, seed=0, progress=True):
    """Generate an HPatches-style patch set (hpatches-release layout) from homography sequences."""
    sequences = datasets.read_sequences(root)
    out = Path(out)
    counts = {}
    for seq in tqdm(sequences, desc="make-hpatches-patches", disable=not progress):
        rng = np.random.default_rng([seed, zlib.crc32(seq.name.encode())])
        try:
            counts[seq.name] = make_sequence(seq, out / seq.name, magnification, max_patches, rng)
        except Exception as error:
            report.failure(f"sequence {seq.name}", error)
    if not counts:
        raise ValueError(f"no patch sequence could be made from {root}")
    info = {"source": str(root), "magnification": magnification, "max_patches": max_patches, "seed": seed,
            "jitter": JITTER, "patches": counts, "failed": sorted(s.name for s in sequences if s.name not in counts)}
    (out / "generation.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def add_make_arguments(parser):
    parser.add_argument("--root", required=True, help="homography sequences (<seq>/1.ppm|png, H_1_k)")
    parser.add_argument("--out", required=True, help="output folder (hpatches-release layout)")
    parser.add_argument("--magnification", type=float, default=HPATCHES_MAGNIFICATION,
                        help=f"patch side / SIFT KeyPoint.size (default: {HPATCHES_MAGNIFICATION})")
    parser.add_argument("--max-patches", type=int, default=1000, help="patches per sequence (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="jitter seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def make(args):
    info = make_patches(args.root, args.out, args.magnification, args.max_patches, args.seed, not args.no_progress)
    print(f"wrote {sum(info['patches'].values())} patches in {len(info['patches'])} sequences to {args.out}"
          + (f"; failed: {', '.join(info['failed'])}" if info["failed"] else ""))
