"""Task ``sfm``: reconstruct posed image sets with the descplug pipeline and compare to ground truth.

Per scene and method: ``descplug.pipeline`` extract (SIFT keypoints, detected once by the first
method; every other method describes the same keypoints via ``keypoints_from``), exhaustive pairs,
mutual nearest-neighbour matches, COLMAP geometric verification and incremental mapping (pycolmap).
The largest model is aligned to the ground-truth camera centres with a similarity transform
(Umeyama, made robust by trying every triplet of registered cameras and refitting on the inliers
of the best one: centres within 5% of the scene extent), and the rotations by their chordal mean
over those inliers. Reported: registered images, 3D points,
mean track length, mean reprojection error (px), and per image the rotation error (degrees) and the
camera-position error relative to the scene extent (median distance of the ground-truth centres
to their centroid): medians, and AUC (%) at 1/3/5 degrees and 1/3/5 % of the extent. An
unregistered image, or a scene that fails, has infinite errors.
"""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from descplug import colmap, pipeline
from descplug.alignment import centre, robust_similarity, rotation_alignment

from . import datasets, report
from .methods import method_name
from .pose import pose_auc

ROTATION_THRESHOLDS = (1, 3, 5)  # degrees
POSITION_THRESHOLDS = (1, 3, 5)  # percent of the scene extent
INLIER_FRACTION = 0.05
PIPELINE_SIFT = "rootsift"  # descplug.pipeline's "sift" baseline describes with RootSIFT
DEFAULT_BASELINES = PIPELINE_SIFT


def camera_errors(poses, cameras):
    """Rotation (degrees) and relative position errors of every ground-truth image (inf if missing).

    Centres are aligned by the robust similarity; rotations by the chordal mean over its inliers."""
    names = sorted(cameras)
    gt_centres = np.array([centre(cameras[n].R, cameras[n].t) for n in names])
    extent = float(np.median(np.linalg.norm(gt_centres - gt_centres.mean(0), axis=1)))
    registered = [n for n in names if n in poses]
    rotation = {n: np.inf for n in names}
    position = {n: np.inf for n in names}
    if len(registered) >= 3:
        source = np.array([centre(*poses[n]) for n in registered])
        target = np.array([centre(cameras[n].R, cameras[n].t) for n in registered])
        s, R_s, t_s, inliers = robust_similarity(source, target, INLIER_FRACTION * extent)
        A = rotation_alignment([poses[n][0] for n in np.array(registered)[inliers]],
                               [cameras[n].R for n in np.array(registered)[inliers]])
        for n, c_model, c_gt in zip(registered, source, target):
            cos = (np.trace((poses[n][0] @ A).T @ cameras[n].R) - 1) / 2
            rotation[n] = float(np.degrees(np.arccos(np.clip(cos, -1, 1))))
            position[n] = 100 * float(np.linalg.norm(s * R_s @ c_model + t_s - c_gt)) / extent
    return list(rotation.values()), list(position.values())


def scene_record(stats, poses, cameras):
    rotation, position = camera_errors(poses, cameras)
    return {**{k: stats[k] for k in ("registered_images", "points3D", "mean_track_length", "mean_reprojection_error")},
            "images": len(cameras), "rotation": rotation, "position": position, "failed": False}


def summarise(records):
    if not records:
        return None
    rotation = np.concatenate([r["rotation"] for r in records])
    position = np.concatenate([r["position"] for r in records])
    ok = [r for r in records if not r["failed"]]

    def mean(key):  # over the scenes that produced a model
        return float(np.mean([r[key] for r in ok])) if ok else None

    return {
        "registered_images": int(sum(r["registered_images"] for r in records)),
        "images": int(sum(r["images"] for r in records)),
        "points3D": int(sum(r["points3D"] for r in records)),
        "mean_track_length": mean("mean_track_length"),
        "mean_reprojection_error": mean("mean_reprojection_error"),
        "rotation_median": float(np.median(rotation)),
        "position_median": float(np.median(position)),
        "rotation_auc": {str(t): 100 * a for t, a in zip(ROTATION_THRESHOLDS, pose_auc(rotation, ROTATION_THRESHOLDS))},
        "position_auc": {str(t): 100 * a for t, a in zip(POSITION_THRESHOLDS, pose_auc(position, POSITION_THRESHOLDS))},
        "scenes": len(records),
        "failed": sum(r["failed"] for r in records),
    }


def pipeline_model(spec):
    """The pipeline's model argument for a method spec (its SIFT baseline is RootSIFT)."""
    if spec == "sift":
        raise ValueError("the sfm task runs descplug.pipeline, whose SIFT baseline describes with RootSIFT: "
                         "use --baselines rootsift")
    return pipeline.SIFT_BASELINE if spec == PIPELINE_SIFT else spec


def failed_record(n_images):
    return {"registered_images": 0, "points3D": 0, "mean_track_length": 0.0, "mean_reprojection_error": 0.0,
            "images": n_images, "rotation": [np.inf] * n_images, "position": [np.inf] * n_images, "failed": True}


def run_scene(scene, specs, work, max_keypoints, device):
    """{METHOD: record} for one scene; every method describes the first method's keypoints."""
    image_dir = scene.images[0].parent
    records, keypoints_from = {}, None
    for spec in specs:
        name = method_name(spec)
        out = work / scene.name / name
        features, pairs, matches = out / "features.h5", out / "pairs.txt", out / "matches.h5"
        try:
            extracted = pipeline.extract(image_dir, features, pipeline_model(spec), max_keypoints=max_keypoints,
                                         keypoints_from=keypoints_from, device=device, overwrite=True)
            for image, reason in extracted.failed:
                report.failure(f"{name} on image {image_dir / image}", reason)
            keypoints_from = keypoints_from or features
            pipeline.make_pairs(features, pairs, "exhaustive")
            pipeline.match(features, pairs, matches, device=device, overwrite=True)
            stats = pipeline.reconstruct(image_dir, features, matches, pairs, out / "sfm")
            records[name] = scene_record(stats, colmap.camera_poses(stats["model"]), scene.cameras)
        except Exception as error:
            report.failure(f"{name} on scene {scene.name}", error)
            records[name] = failed_record(len(scene.cameras))
    return records


def evaluate(scenes, specs, work, max_keypoints=4096, device="auto", progress=True):
    records = {}
    for scene in tqdm(scenes, desc="sfm scenes", disable=not progress):
        for name, record in run_scene(scene, specs, Path(work), max_keypoints, device).items():
            records.setdefault(name, []).append(((scene.name,), record))
    return report.by_group(records, ["all"] + [scene.name for scene in scenes], summarise)


def add_arguments(parser):
    parser.add_argument("--root", required=True, help="folder of IMC and/or Strecha scenes (see pose)")
    parser.add_argument("--scenes", nargs="+", help="only these scenes (names relative to --root)")
    parser.add_argument("--work", required=True, help="folder for the features, matches and models")
    parser.add_argument("--max-keypoints", type=int, default=4096, help="SIFT keypoints per image (default: 4096)")


def run(args, specs):
    scenes = datasets.read_pose_scenes(args.root, args.scenes)
    for spec in specs:
        pipeline_model(spec)  # fail on 'sift' before any work
    results = evaluate(scenes, specs, args.work, args.max_keypoints, args.device, not args.no_progress)
    protocol = ("descplug.pipeline SfM (SIFT keypoints detected once, exhaustive pairs, mutual NN, COLMAP "
                "verification and incremental mapping); model aligned to the ground-truth centres by a robust "
                "similarity; rotation error (deg) and position error (% of scene extent) per image, "
                "unregistered images count as infinite error.")
    data = {"root": str(args.root), "scenes": {s.name: len(s.images) for s in scenes}, "work": str(args.work)}
    return report.document("sfm", protocol, data, results), markdown_sections(results)


def markdown_sections(results):
    groups = list(dict.fromkeys(g for groups in results.values() for g in groups))
    sections = []
    for group in groups:
        columns = [("registered", group, "registered_images", None), ("images", group, "images", None),
                   ("points", group, "points3D", None), ("track len", group, "mean_track_length", None),
                   ("reproj px", group, "mean_reprojection_error", None),
                   ("rot med °", group, "rotation_median", None), ("pos med %", group, "position_median", None),
                   ("rot AUC@1/3/5", group, "rotation_auc", None), ("pos AUC@1/3/5%", group, "position_auc", None)]
        sections.append((group if group != "all" else "all scenes", report.table(_flatten(results), columns)))
    return sections


def _flatten(results):
    """AUC dicts as one 'a / b / c' string so a table cell shows all three."""
    return {m: {g: {k: (" / ".join(f"{x:.1f}" for x in v.values()) if isinstance(v, dict) else v)
                    for k, v in metrics.items()} for g, metrics in groups.items()} for m, groups in results.items()}


def plot(results, path):
    panels = [(f"rotation AUC@{t}°", "all", "rotation_auc", str(t)) for t in ROTATION_THRESHOLDS]
    report.plot_bars(results, panels, "SfM camera rotation AUC (%)", path)
