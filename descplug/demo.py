"""The embedded demo: a rendered multi-view scene with known cameras, reconstructed end to end.

The scene is a room corner (back wall, side wall, floor) and a free-standing panel, textured with
CC0 photographs bundled in scikit-image (coffee, chelsea, brick, gravel, camera). Views are
rendered by exact plane-induced homographies with a depth test, from cameras on an arc. The whole
chain (extract, pairs, match, COLMAP) runs once with the given descriptor network and once with
OpenCV RootSIFT, and the recovered cameras are compared with the true ones.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import alignment, colmap, pipeline
from .alignment import rotation_alignment, umeyama
from .io.h5 import open_h5

WIDTH, HEIGHT, FOCAL = 640, 480, 700.0
NUM_VIEWS = 8


@dataclass
class Plane:
    """A textured rectangle: corner `origin`, edges `u` (texture x) and `v` (texture y), in world units."""

    origin: tuple
    u: tuple
    v: tuple
    texture: str


PLANES = (
    Plane((-2.5, -1.6, 2.5), (5.0, 0, 0), (0, 3.2, 0), "coffee"),  # back wall
    Plane((-2.5, -1.6, -0.5), (0, 0, 3.0), (0, 3.2, 0), "brick"),  # left wall
    Plane((-2.5, 1.6, -0.5), (5.0, 0, 0), (0, 0, 3.0), "gravel"),  # floor
    Plane((-0.2, -0.9, 0.6), (1.3, 0, 0.6), (0, 1.3, 0), "chelsea"),  # standing panel
    Plane((0.9, -1.6, 1.2), (0, 0, 1.3), (0, 1.6, 0), "camera"),  # panel on the right
)


def intrinsics() -> np.ndarray:
    """The cameras' 3x3 calibration (OpenCV pixel convention)."""
    return np.array([[FOCAL, 0, (WIDTH - 1) / 2], [0, FOCAL, (HEIGHT - 1) / 2], [0, 0, 1]])


def camera_poses(num_views: int = NUM_VIEWS) -> list[tuple[np.ndarray, np.ndarray]]:
    """World-to-camera (R, t) of cameras on an arc around the scene, looking at its middle."""
    target = np.array([0.0, 0.0, 1.2])
    poses = []
    for i, angle in enumerate(np.linspace(-0.45, 0.45, num_views)):
        centre = target + 4.2 * np.array([np.sin(angle), 0, -np.cos(angle)]) + [0, -0.3 + 0.15 * (i % 3), 0]
        forward = (target - centre) / np.linalg.norm(target - centre)
        right = np.cross([0, 1.0, 0], forward)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        R = np.stack([right, down, forward])
        poses.append((R, -R @ centre))
    return poses


def _texture(name: str) -> np.ndarray:
    try:
        from skimage import data  # bundled CC0 photographs; only the demo needs them
    except ImportError:
        raise ValueError("the demo textures come with scikit-image: pip install scikit-image") from None
    image = getattr(data, name)()
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image[:, :, ::-1]
    return image.astype(np.float32)


def render(R: np.ndarray, t: np.ndarray, K: np.ndarray, planes=PLANES, textures=None) -> np.ndarray:
    """One uint8 BGR view: each plane warped by its homography, nearest plane wins."""
    textures = textures or {p.texture: _texture(p.texture) for p in planes}
    image = np.full((HEIGHT, WIDTH, 3), 128.0, np.float32)
    depth = np.full((HEIGHT, WIDTH), np.inf)
    xs, ys = np.meshgrid(np.arange(WIDTH), np.arange(HEIGHT))
    rays = np.linalg.inv(K) @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    for plane in planes:
        texture = textures[plane.texture]
        th, tw = texture.shape[:2]
        o, u, v = (np.asarray(a, np.float64) for a in (plane.origin, plane.u, plane.v))
        # texture pixel (a, b) -> world o + (a + 0.5) / tw * u + (b + 0.5) / th * v
        H = K @ np.column_stack([R @ u / tw, R @ v / th, R @ (o + 0.5 * u / tw + 0.5 * v / th) + t])
        warped = cv2.warpPerspective(texture, H, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderValue=-1)
        normal = R @ np.cross(u, v)
        plane_depth = (normal @ (R @ o + t)) / (normal @ rays)
        plane_depth = plane_depth.reshape(HEIGHT, WIDTH)
        visible = (warped.min(axis=2) >= 0) & (plane_depth > 0) & (plane_depth < depth)
        image[visible] = warped[visible]
        depth[visible] = plane_depth[visible]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def write_scene(out_dir, num_views: int = NUM_VIEWS, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Render the views to `out_dir/view_XX.png` (with mild sensor noise); returns name -> true (R, t)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    textures = {p.texture: _texture(p.texture) for p in PLANES}
    truth = {}
    for i, (R, t) in enumerate(camera_poses(num_views)):
        image = render(R, t, intrinsics(), textures=textures).astype(np.float32)
        image = np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)
        name = f"view_{i:02d}.png"
        cv2.imwrite(str(out_dir / name), image)
        truth[name] = (R, t)
    return truth


def _angle(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def pose_errors(estimated: dict, truth: dict) -> dict:
    """Per-image rotation error (degrees) and camera-centre error (fraction of the true cameras'
    extent), after aligning the estimate to the truth (rotation: chordal mean; centres: Umeyama sim3).
    Both dicts map name -> world-to-camera (R, t)."""
    names = sorted(set(estimated) & set(truth))
    if len(names) < 3:
        return {"rotation_deg": {}, "centre": {}}
    align = rotation_alignment([estimated[n][0] for n in names], [truth[n][0] for n in names])
    rotation = {n: _angle(estimated[n][0] @ align @ truth[n][0].T) for n in names}
    src = np.array([alignment.centre(*estimated[n]) for n in names])
    dst = np.array([alignment.centre(*truth[n]) for n in names])
    scale, R, t = umeyama(src, dst)
    extent = np.linalg.norm(dst.max(0) - dst.min(0))
    aligned = scale * src @ R.T + t
    centre = {n: float(np.linalg.norm(a - b) / extent) for n, a, b in zip(names, aligned, dst)}
    return {"rotation_deg": rotation, "centre": centre}


def run_method(image_dir, out_dir, model, truth: dict, **sfm_options) -> dict:
    """sfm on the scene with one descriptor; returns a row of results."""
    start = time.perf_counter()
    reports, stats = pipeline.sfm(image_dir, out_dir, model=model, **sfm_options)
    errors = pose_errors(colmap.camera_poses(stats["model"]), truth)
    with open_h5(Path(out_dir) / "features.h5") as fd:
        model_name = str(fd.attrs["model"])
    rotation, centre = list(errors["rotation_deg"].values()), list(errors["centre"].values())
    return {
        "model": model_name,
        "registered": stats["registered_images"],
        "views": len(truth),
        "points3D": stats["points3D"],
        "reprojection_px": stats["mean_reprojection_error"],
        "rotation_median_deg": float(np.median(rotation)) if rotation else float("nan"),
        "rotation_max_deg": max(rotation, default=float("nan")),
        "centre_max": max(centre, default=float("nan")),
        "failed_images": sum(len(r.failed) for r in reports),
        "seconds": time.perf_counter() - start,
    }


def run(out_dir, model=None, num_views: int = NUM_VIEWS, device: str = "auto") -> dict[str, dict]:
    """Render the scene into `out_dir/images`, reconstruct it with `model` and with SIFT; print and
    return the results per method. A method that fails is reported with its error."""
    out_dir = Path(out_dir)
    truth = write_scene(out_dir / "images", num_views)
    print(f"scene: {num_views} views of {WIDTH}x{HEIGHT}, f = {FOCAL:g} px, in {out_dir / 'images'}")
    results = {}
    for label, method in (("descplug", model), ("baseline", pipeline.SIFT_BASELINE)):
        try:
            row = run_method(out_dir / "images", out_dir / label, method, truth, device=device)
        except ValueError as error:  # e.g. no default model shipped yet (ColmapError is a ValueError)
            print(f"{label}: failed: {error}")
            results[label] = {"error": str(error)}
            continue
        results[label] = row
        print(f"{label} ({row['model']}): registered {row['registered']}/{row['views']}, {row['points3D']} points, "
              f"reprojection {row['reprojection_px']:.2f} px, rotation error median {row['rotation_median_deg']:.3f} "
              f"max {row['rotation_max_deg']:.3f} deg, centre error max {100 * row['centre_max']:.2f}% of the "
              f"camera extent, {row['seconds']:.1f} s")
    return results
