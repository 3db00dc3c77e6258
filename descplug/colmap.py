"""The one adapter to pycolmap (its API changes between releases; written for 4.x, tested on 4.2.1).

Everything else in descplug calls these functions with numpy arrays and paths. Conventions:
keypoints given here are in OpenCV pixels (centre of the top-left pixel at (0, 0)) and are written
to the database with COLMAP's +0.5 offset; poses are world-to-camera, x_cam = R @ X + t.
Descriptors are not written to the database: mapping never reads them (as in hloc).
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import pycolmap

MIN_VERSION = (3, 13)
if tuple(int(x) for x in pycolmap.__version__.split(".")[:2]) < MIN_VERSION:
    raise ImportError(f"descplug needs pycolmap >= {'.'.join(map(str, MIN_VERSION))}, found {pycolmap.__version__}")


class ColmapError(ValueError):
    """A COLMAP step failed; the message says which and why."""


@contextlib.contextmanager
def log_level(verbose: bool):
    """COLMAP's own log (glog, on stderr) from INFO up when verbose, else errors only."""
    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def check_camera_model(name: str) -> None:
    models = [model for model in pycolmap.CameraModelId.__members__ if model != "INVALID"]
    if name not in models:
        raise ColmapError(f"unknown camera model {name!r}; COLMAP knows {', '.join(models)}")


def create_database(db_path, image_dir, names, camera_model: str = "SIMPLE_RADIAL", single_camera: bool = False) -> dict[str, int]:
    """A new database holding the named images (cameras guessed from EXIF or size); returns
    (name -> image id, name -> (width, height) as COLMAP reads the image)."""
    check_camera_model(camera_model)
    db_path = Path(db_path)
    if db_path.exists():
        db_path.unlink()
    with _database(db_path):
        pass
    options = pycolmap.ImageReaderOptions()
    options.camera_model = camera_model
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO
    try:
        pycolmap.import_images(db_path, image_dir, mode, list(names), options)
    except (RuntimeError, ValueError) as error:
        raise ColmapError(f"importing images from {image_dir} into {db_path} failed: {error}") from None
    with _database(db_path) as db:
        images = db.read_all_images()
        ids = {image.name: image.image_id for image in images}
        sizes = {image.name: (db.read_camera(image.camera_id).width, db.read_camera(image.camera_id).height) for image in images}
    missing = sorted(set(names) - set(ids))
    if missing:
        raise ColmapError(f"COLMAP could not import {len(missing)} image(s) from {image_dir}, e.g. {missing[:3]}")
    return ids, sizes


@contextlib.contextmanager
def _database(db_path):
    try:
        db = pycolmap.Database.open(Path(db_path))
    except (RuntimeError, ValueError) as error:
        raise ColmapError(f"cannot open COLMAP database {db_path}: {error}") from None
    try:
        yield db
    finally:
        db.close()


def write_keypoints(db_path, image_ids: dict[str, int], keypoints) -> None:
    """Write (name, (N, 2) OpenCV-pixel keypoints) items, adding COLMAP's +0.5 offset."""
    with _database(db_path) as db:
        for name, kpts in keypoints:
            db.write_keypoints(image_ids[name], np.asarray(kpts, np.float32)[:, :2] + 0.5)


def write_matches(db_path, image_ids: dict[str, int], matches, verified: bool = False) -> None:
    """Write (name0, name1, (M, 2) index pairs) items. With `verified`, also store them as the inlier
    matches of an uncalibrated two-view geometry (pycolmap 4.x drops pairs left UNDEFINED)."""
    with _database(db_path) as db:
        for name0, name1, pairs in matches:
            id0, id1 = image_ids[name0], image_ids[name1]
            pairs = np.asarray(pairs, np.uint32).reshape(-1, 2)
            db.write_matches(id0, id1, pairs)
            if verified:
                geometry = pycolmap.TwoViewGeometry()
                geometry.config = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
                geometry.inlier_matches = pairs
                db.write_two_view_geometry(id0, id1, geometry)


def verify_matches(db_path, pairs_path, max_error: float = 4.0, min_inliers: int = 15, seed: int = 0) -> int:
    """Geometric verification of the listed pairs; returns the number of verified pairs."""
    options = pycolmap.TwoViewGeometryOptions()
    options.ransac.max_error = max_error
    options.ransac.random_seed = seed
    options.min_num_inliers = min_inliers
    try:
        pycolmap.verify_matches(Path(db_path), Path(pairs_path), options)
    except (RuntimeError, ValueError) as error:
        raise ColmapError(f"geometric verification of {pairs_path} failed: {error}") from None
    with _database(db_path) as db:
        _, inliers = db.read_two_view_geometry_num_inliers()
    return sum(n > 0 for n in inliers)


def _mapper_options(num_threads: int, seed: int) -> pycolmap.IncrementalPipelineOptions:
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = num_threads
    options.random_seed = seed
    return options


def incremental_mapping(db_path, image_dir, out_dir, num_threads: int = -1, seed: int = 0):
    """Run COLMAP's incremental mapper; return the largest model (most registered images) or None."""
    out_dir = Path(out_dir)
    work = out_dir / "models"
    work.mkdir(parents=True, exist_ok=True)
    try:
        models = pycolmap.incremental_mapping(Path(db_path), Path(image_dir), work, _mapper_options(num_threads, seed))
    except (RuntimeError, ValueError) as error:
        raise ColmapError(f"incremental mapping of {db_path} failed: {error}") from None
    if not models:
        return None
    return max(models.values(), key=lambda model: model.num_reg_images())


def triangulate(reference_dir, db_path, image_dir, out_dir, num_threads: int = -1, seed: int = 0):
    """Triangulate 3D points for the fixed poses of the model in `reference_dir`; the database must hold
    its images by name. Returns the triangulated model (also written to `out_dir`)."""
    reference = read_model(reference_dir)
    with _database(db_path) as db:
        missing = sorted({image.name for image in reference.images.values()} - {image.name for image in db.read_all_images()})
        if missing:
            raise ColmapError(f"{len(missing)} image(s) of the reference model {reference_dir} have no features, e.g. {missing[:3]}")
        reference.transcribe_image_ids_to_database(db)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return pycolmap.triangulate_points(reference, Path(db_path), Path(image_dir), out_dir, True, _mapper_options(num_threads, seed))
    except (RuntimeError, ValueError) as error:
        raise ColmapError(f"triangulation with the poses of {reference_dir} failed: {error}") from None


def read_model(path):
    """Read a COLMAP model (binary or text) from a folder."""
    path = Path(path)
    if not path.is_dir():
        raise ColmapError(f"{path}: no such model folder")
    try:
        return pycolmap.Reconstruction(path)
    except (RuntimeError, ValueError) as error:
        raise ColmapError(f"{path}: cannot read a COLMAP model ({error})") from None


def write_model(model, out_dir) -> tuple[Path, Path]:
    """Write a model as binary files in `out_dir` and as text files in `out_dir/text`; each file is
    written to a temporary folder first, then moved into place (never a half-written file)."""
    out_dir = Path(out_dir)
    text_dir = out_dir / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".model-") as tmp:
        model.write_binary(tmp)
        for path in sorted(Path(tmp).iterdir()):
            path.replace(out_dir / path.name)
        model.write_text(tmp)
        for path in sorted(Path(tmp).iterdir()):
            path.replace(text_dir / path.name)
    return out_dir, text_dir


def model_stats(model) -> dict:
    """Registered images, 3D points, mean track length and mean reprojection error (pixels)."""
    return {
        "registered_images": model.num_reg_images(),
        "points3D": model.num_points3D(),
        "mean_track_length": model.compute_mean_track_length() if model.num_points3D() else 0.0,
        "mean_reprojection_error": model.compute_mean_reprojection_error() if model.num_points3D() else 0.0,
    }


def tracks(model) -> tuple[dict[int, str], list[list[tuple[int, int]]]]:
    """Image names and the tracks of the 3D points, in point-id order (the order of ``points3D.txt``):
    ``({image_id: name}, [[(image_id, point2D_idx), ...] per 3D point])``."""
    names = {image_id: image.name for image_id, image in model.images.items()}
    points = model.points3D
    return names, [[(e.image_id, e.point2D_idx) for e in points[point_id].track.elements]
                   for point_id in sorted(points)]


def camera_poses(model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Registered image name -> (R (3, 3), t (3,)), world-to-camera."""
    poses = {}
    for image in model.images.values():
        if image.has_pose:
            matrix = image.cam_from_world().matrix()
            poses[image.name] = (np.array(matrix[:, :3]), np.array(matrix[:, 3]))
    return poses


def relative_pose(points0, points1, K0, K1, max_error: float = 1.0):
    """Essential-matrix relative pose from matched points and pinhole matrices (both in one pixel
    convention). Returns (R, t, inlier mask) with x1 = R @ x0 + t, |t| = 1, or None when it fails.
    `max_error` is the RANSAC threshold in pixels."""
    p0, p1 = np.asarray(points0, np.float64).reshape(-1, 2), np.asarray(points1, np.float64).reshape(-1, 2)
    if len(p0) < 5:
        return None
    options = pycolmap.RANSACOptions()
    options.max_error = max_error
    result = pycolmap.estimate_relative_pose(_pinhole(K0), p0, _pinhole(K1), p1, options)
    if result is None:
        return None
    matrix = result["cam2_from_cam1"].matrix()
    return np.array(matrix[:, :3]), np.array(matrix[:, 3]), np.asarray(result["inlier_mask"], bool)


def _pinhole(K):
    K = np.asarray(K, np.float64)
    return pycolmap.Camera(model="PINHOLE", width=int(2 * K[0, 2]) + 1, height=int(2 * K[1, 2]) + 1,
                           params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
