"""Training data: matching patch pairs from several sources behind one interface.

Every source returns a :class:`PairSet` -- pairs of 32x32 uint8 patches showing the same scene
point, a track id per pair (the 3D point or source keypoint both patches come from) and the
keypoint metadata ``[x, y, size, angle]`` of both patches (NaN where the format has none).
:func:`batches` turns a PairSet into :class:`Batch` es in which no track appears twice, so every
off-diagonal pair of a batch is a true negative.

Sources:
- :func:`warp_pairs`: self-supervised random homographies + photometric changes of any images;
- :func:`sfm_pairs`: patches of the same 3D point seen in several views of a COLMAP model;
- :func:`read_phototour`: UBC PhotoTour / Brown (torchvision layout);
- :func:`read_hpatches`: ``hpatches-release`` patch files.
"""
from __future__ import annotations

import glob
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

PATCH_SIZE = 32
SKIMAGE_PREFIX = "skimage:"
# The photos bundled in the scikit-image wheel (CC0 / public domain), usable as training images.
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cat", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
                  "text")


@dataclass
class PairSet:
    """Matching patch pairs: ``anchors[i]`` and ``positives[i]`` show track ``tracks[i]``."""

    anchors: np.ndarray  # (N, 32, 32) uint8
    positives: np.ndarray  # (N, 32, 32) uint8
    tracks: np.ndarray  # (N,) int64
    keypoints: np.ndarray  # (N, 2, 4) float32 [x, y, size, angle] of anchor and positive
    images: np.ndarray  # (N, 2) int32 index into image_names, -1 when unknown
    image_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        n = len(self.tracks)
        shapes = {"anchors": (n, PATCH_SIZE, PATCH_SIZE), "positives": (n, PATCH_SIZE, PATCH_SIZE),
                  "keypoints": (n, 2, 4), "images": (n, 2)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"PairSet.{name} has shape {getattr(self, name).shape}, expected {shape}")

    def __len__(self) -> int:
        return len(self.tracks)

    def subset(self, index: np.ndarray) -> "PairSet":
        return PairSet(self.anchors[index], self.positives[index], self.tracks[index],
                       self.keypoints[index], self.images[index], list(self.image_names))

    def repeat(self, times: int) -> "PairSet":
        """Every pair ``times`` times over, each copy under its original track id: a source drawn
        that much more often, whose copies never meet in one batch (a batch holds distinct tracks)."""
        return self if times == 1 else self.subset(np.tile(np.arange(len(self)), times))

    def split(self, val_fraction: float, seed: int = 0) -> tuple["PairSet", "PairSet"]:
        """(train, val) split by track, so that no track is in both."""
        unique = np.unique(self.tracks)
        rng = np.random.default_rng(seed)
        val_tracks = rng.choice(unique, size=max(1, int(round(val_fraction * len(unique)))), replace=False)
        is_val = np.isin(self.tracks, val_tracks)
        return self.subset(np.flatnonzero(~is_val)), self.subset(np.flatnonzero(is_val))

    def patches(self) -> torch.Tensor:
        """All patches as float [0, 1], anchors then positives: (2N, 1, 32, 32)."""
        both = np.concatenate([self.anchors, self.positives])
        return torch.from_numpy(both).float().div_(255.0).unsqueeze(1)

    def digest(self) -> str:
        h = hashlib.sha1()
        for arr in (self.anchors, self.positives, self.tracks):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, anchors=self.anchors, positives=self.positives, tracks=self.tracks,
                     keypoints=self.keypoints, images=self.images,
                     image_names=np.array(self.image_names, dtype=str))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "PairSet":
        with np.load(path) as z:
            return cls(z["anchors"], z["positives"], z["tracks"], z["keypoints"], z["images"],
                       [str(s) for s in z["image_names"]])

    @classmethod
    def concat(cls, sets: Sequence["PairSet"]) -> "PairSet":
        """Concatenate sources; track ids and image indices are offset so they stay distinct."""
        if not sets:
            raise ValueError("nothing to concatenate")
        tracks, images, names, offset = [], [], [], 0
        for s in sets:
            tracks.append(s.tracks + offset)
            offset += int(s.tracks.max()) + 1 if len(s) else 0
            images.append(np.where(s.images >= 0, s.images + len(names), -1).astype(np.int32))
            names.extend(s.image_names)
        return cls(np.concatenate([s.anchors for s in sets]), np.concatenate([s.positives for s in sets]),
                   np.concatenate(tracks), np.concatenate([s.keypoints for s in sets]),
                   np.concatenate(images), names)


@dataclass
class Batch:
    """A training batch: B matching pairs with distinct tracks."""

    anchors: torch.Tensor  # (B, 1, 32, 32) float [0, 1]
    positives: torch.Tensor  # (B, 1, 32, 32)
    tracks: torch.Tensor  # (B,)
    keypoints: torch.Tensor  # (B, 2, 4)
    index: torch.Tensor  # (B,) rows of the PairSet (to look up cached teacher outputs)
    epoch: int = 0  # where the stream stands after this batch, to resume it
    position: int = 0


def batch_indices(tracks: np.ndarray, batch_size: int, rng: np.random.Generator,
                  groups: np.ndarray | None = None) -> list[np.ndarray]:
    """One epoch of row indices in batches of distinct tracks.

    Rows are shuffled, then ordered by the occurrence rank of their track (first occurrence, second,
    ...), so consecutive chunks hold distinct tracks; the rare repeat at a rank boundary is dropped
    from its chunk for this epoch. With ``groups`` (a group id per row, e.g. the anchor's image) the
    groups come one after another in a random order, each ordered by occurrence rank, so a batch
    draws its negatives from one or two groups: keypoints of the same image, the confusers that
    matching an image pair meets, or tracks alike to a teacher (:func:`similar_groups`). Batches of
    fewer than two pairs are left out.
    """
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2")
    order = rng.permutation(len(tracks))
    shuffled = tracks[order]
    sort = np.argsort(shuffled, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(shuffled[sort])) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[sort] = np.arange(len(order)) - np.repeat(starts, counts)
    if groups is None:
        order = order[np.argsort(ranks, kind="stable")]
    else:
        _, group = np.unique(groups[order], return_inverse=True)
        group_rank = rng.permutation(group.max() + 1)[group]
        order = order[np.lexsort((ranks, group_rank))]
    out = []
    for i in range(0, len(order), batch_size):
        chunk = order[i:i + batch_size]
        _, first = np.unique(tracks[chunk], return_index=True)
        if len(first) >= 2:
            out.append(chunk[np.sort(first)])
    return out


def make_batch(pairs: PairSet, index: np.ndarray) -> Batch:
    def as_float(x):
        return torch.from_numpy(x[index]).float().div_(255.0).unsqueeze(1)

    return Batch(as_float(pairs.anchors), as_float(pairs.positives), torch.from_numpy(pairs.tracks[index]),
                 torch.from_numpy(pairs.keypoints[index]), torch.from_numpy(index))


BATCH_MIXES = ("random", "image", "similar")


def check_batch_mix(mix: str) -> None:
    if mix not in BATCH_MIXES:
        raise ValueError(f"data.batch_mix must be one of {BATCH_MIXES}, got {mix!r}")


def describe_batch_mix(data: dict) -> str:
    """How a run's batches are drawn, in words, for its model card (``data`` is the config's data)."""
    check_batch_mix(data["batch_mix"])
    if data["batch_mix"] == "image":
        return "one anchor image at a time"
    if data["batch_mix"] == "similar":
        return f"one group at a time of at most {data['group_tracks']} tracks alike to {data['batch_teacher']}"
    return "random"


def similar_groups(tracks: np.ndarray, descriptors: np.ndarray | torch.Tensor, group_tracks: int) -> np.ndarray:
    """A group id per row: the tracks split into groups of at most ``group_tracks`` tracks whose
    (mean) descriptors are alike. Each split halves a group at the median of its descriptors'
    projection on their principal direction, so groups hold between ``group_tracks / 2`` and
    ``group_tracks`` tracks and are deterministic. Batches drawn group by group
    (:func:`batch_indices`) hold the negatives a descriptor finds hardest, and alike patches."""
    if group_tracks < 2:
        raise ValueError(f"data.group_tracks must be at least 2, got {group_tracks!r}")
    descriptors = np.asarray(descriptors, dtype=np.float64)
    if descriptors.shape[0] != len(tracks):
        raise ValueError(f"{descriptors.shape[0]} descriptors for {len(tracks)} rows")
    ids, inverse = np.unique(tracks, return_inverse=True)
    means = np.zeros((len(ids), descriptors.shape[1]))
    np.add.at(means, inverse, descriptors)
    labels = np.zeros(len(ids), dtype=np.int64)
    pending, done = [np.arange(len(ids))], 0
    while pending:
        members = pending.pop()
        if len(members) <= group_tracks:
            labels[members], done = done, done + 1
            continue
        x = means[members] - means[members].mean(axis=0)
        direction = np.linalg.eigh(x.T @ x)[1][:, -1]
        order = members[np.argsort(x @ direction, kind="stable")]
        pending += [order[:len(order) // 2], order[len(order) // 2:]]
    return labels[inverse]


def batches(pairs: PairSet, batch_size: int, seed: int = 0, epoch: int = 0, position: int = 0,
            groups: np.ndarray | None = None) -> Iterator[Batch]:
    """Endless, reproducible stream of batches: epoch e is shuffled with seed (seed, e). Start at
    (``epoch``, ``position``) -- the values of the last batch seen -- to resume a stream.
    ``groups`` (a group id per row) draws a batch's pairs from one group at a time, e.g. the anchor
    image or :func:`similar_groups` (see :func:`batch_indices`); without, from the whole set."""
    if len(np.unique(pairs.tracks)) < 2:
        raise ValueError("a pair set needs at least two tracks to form negatives")
    if groups is not None and len(groups) != len(pairs):
        raise ValueError(f"{len(groups)} batch groups for {len(pairs)} pairs")
    while True:
        chunks = batch_indices(pairs.tracks, batch_size, np.random.default_rng([seed, epoch]), groups)
        for i in range(position, len(chunks)):
            batch = make_batch(pairs, chunks[i])
            batch.epoch, batch.position = epoch, i + 1
            yield batch
        epoch, position = epoch + 1, 0


# --------------------------------------------------------------------------- images

def resolve_images(specs: Sequence[str]) -> list[str]:
    """Expand image specs: glob patterns / paths, and ``skimage:<name>`` (``skimage:*`` for all
    bundled photos listed in SKIMAGE_PHOTOS)."""
    out = []
    for spec in specs:
        spec = str(spec)
        if spec == SKIMAGE_PREFIX + "*":
            out.extend(SKIMAGE_PREFIX + name for name in SKIMAGE_PHOTOS)
        elif spec.startswith(SKIMAGE_PREFIX):
            out.append(spec)
        else:
            found = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
            if not found or not all(Path(p).is_file() for p in found):
                raise FileNotFoundError(f"no training image matches {spec!r}")
            out.extend(found)
    return out


def read_training_image(spec: str, max_side: int | None = None) -> np.ndarray:
    """Grey float32 [0, 1] image from a path or ``skimage:<name>``, downscaled to ``max_side``."""
    from descplug.images import load_image

    if spec.startswith(SKIMAGE_PREFIX):
        import skimage.data

        name = spec[len(SKIMAGE_PREFIX):]
        if not hasattr(skimage.data, name):
            raise ValueError(f"skimage.data has no image {name!r}")
        array = getattr(skimage.data, name)()
        if array.ndim == 3:  # scikit-image is RGB(A), load_image reads OpenCV's BGR(A)
            array = array[:, :, [2, 1, 0] + ([3] if array.shape[2] == 4 else [])]
        image = load_image(np.ascontiguousarray(array), name=spec)
    else:
        image = load_image(spec)
    scale = 1.0 if max_side is None else min(1.0, max_side / max(image.shape))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


# --------------------------------------------------------------------------- warps

@dataclass
class WarpConfig:
    """Random view changes of the self-supervised source."""

    max_rotation: float = 25.0  # degrees
    scale_range: tuple[float, float] = (0.6, 1.6)
    max_anisotropy: float = 1.3
    max_perspective: float = 0.3  # the homography's w = 1 + p.x varies by up to this across the image
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.4)
    blur_prob: float = 0.4
    max_blur: float = 1.5
    max_noise: float = 0.02
    jpeg_prob: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 90)
    position_jitter: float = 0.5  # px, std of the positive keypoint's position noise
    scale_jitter: float = 0.07  # std of log size
    angle_jitter: float = 4.0  # degrees, std


def random_homography(shape: tuple[int, int], cfg: WarpConfig, rng: np.random.Generator) -> np.ndarray:
    """A random homography about the image centre that keeps the image roughly in view."""
    h, w = shape
    c = np.array([w / 2, h / 2])
    theta = math.radians(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
    s = math.exp(rng.uniform(*np.log(cfg.scale_range)))
    a = math.exp(rng.uniform(-1, 1) * math.log(cfg.max_anisotropy))
    phi = rng.uniform(0, math.pi)
    rot = lambda t: np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])  # noqa: E731
    linear = s * rot(theta) @ rot(phi) @ np.diag([math.sqrt(a), 1 / math.sqrt(a)]) @ rot(-phi)
    p = rng.uniform(-1, 1, 2) * cfg.max_perspective / np.array([w, h])
    h_lin = np.eye(3)
    h_lin[:2, :2] = linear
    h_persp = np.eye(3)
    h_persp[2, :2] = p
    t_in, t_out = np.eye(3), np.eye(3)
    t_in[:2, 2] = -c
    t_out[:2, 2] = c + rng.uniform(-0.1, 0.1, 2) * np.array([w, h])
    return t_out @ h_persp @ h_lin @ t_in


def warp_keypoints(kps: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Map ``[x, y, size, angle]`` keypoints through H: position, size by sqrt|det J| and the
    orientation (OpenCV convention: direction (cos a, sin a) in image coordinates, y down) by the
    local Jacobian J of H."""
    xy1 = np.c_[kps[:, :2], np.ones(len(kps))]
    proj = xy1 @ H.T
    w = proj[:, 2:3]
    xy = proj[:, :2] / w
    # J = (H[:2,:2] - xy' H[2,:2]) / w, per keypoint
    jac = (H[None, :2, :2] - xy[:, :, None] * H[None, 2:3, :2]) / w[:, :, None]
    a = np.radians(kps[:, 3])
    d = np.einsum("nij,nj->ni", jac, np.c_[np.cos(a), np.sin(a)])
    size = kps[:, 2] * np.sqrt(np.abs(np.linalg.det(jac)))
    angle = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 360.0
    return np.c_[xy, size, angle].astype(np.float32)


def photometric(image: np.ndarray, cfg: WarpConfig, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, gamma, blur, noise and JPEG compression of a [0, 1] image."""
    out = image.astype(np.float32)
    out = np.clip((out - 0.5) * rng.uniform(*cfg.contrast) + 0.5 + rng.uniform(-1, 1) * cfg.brightness, 0, 1)
    out = out ** math.exp(rng.uniform(*np.log(cfg.gamma)))
    if rng.random() < cfg.blur_prob:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, cfg.max_blur))
    out = np.clip(out + rng.normal(0, rng.uniform(0, cfg.max_noise), out.shape).astype(np.float32), 0, 1)
    if rng.random() < cfg.jpeg_prob:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        _, buf = cv2.imencode(".jpg", np.round(out * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    return out.astype(np.float32)


def _jitter(kps: np.ndarray, cfg: WarpConfig, rng: np.random.Generator) -> np.ndarray:
    out = kps.copy()
    out[:, :2] += rng.normal(0, cfg.position_jitter, (len(kps), 2))
    out[:, 2] *= np.exp(rng.normal(0, cfg.scale_jitter, len(kps)))
    out[:, 3] = (out[:, 3] + rng.normal(0, cfg.angle_jitter, len(kps))) % 360.0
    return out


def _to_uint8(patches: torch.Tensor) -> np.ndarray:
    return (patches[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _visible(kps: np.ndarray, shape: tuple[int, int], min_size: float, margin: float = 4.0) -> np.ndarray:
    """Keypoints inside the view and not smaller than the detector's smallest keypoint (the
    detector would not find them there)."""
    h, w = shape
    x, y = kps[:, 0], kps[:, 1]
    return (x >= margin) & (y >= margin) & (x <= w - 1 - margin) & (y <= h - 1 - margin) & (kps[:, 2] >= min_size)


def warp_pairs(images: Sequence[str], warps_per_image: int = 10, keypoints_per_image: int = 1000,
               seed: int = 0, max_side: int = 1024, detector: str = "sift",
               magnification: float | None = None, cfg: WarpConfig | None = None,
               progress: bool = False) -> PairSet:
    """Self-supervised pairs: each image is seen as two random views (homography + photometric);
    keypoints detected in the original are mapped into both views, the positive one jittered like
    a detector would, and the pairs where both stay visible are cut with the core extractor at the
    detector's magnification (as inference does). The track of a pair is its source keypoint,
    shared by all warps of one image."""
    from descplug.detectors import detect, magnification_for
    from descplug.keypoints import as_keypoint_array
    from descplug.patches import extract_patches

    cfg = cfg or WarpConfig()
    magnification = magnification or magnification_for(detector)
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("anchors", "positives", "tracks", "keypoints", "images")}
    names, track_offset = [], 0
    specs = resolve_images(images)
    if progress:
        from tqdm import tqdm

        specs = tqdm(specs, desc="warp pairs", unit="image")
    for image_id, spec in enumerate(specs):
        image = read_training_image(spec, max_side)
        names.append(spec)
        kps = as_keypoint_array(detect(image, detector=detector, max_keypoints=keypoints_per_image), default_size=1.0)
        if len(kps) == 0:
            continue
        for _ in range(warps_per_image):
            views = []
            for jitter in (False, True):
                H = random_homography(image.shape, cfg, rng)
                warped = cv2.warpPerspective(image, H, image.shape[::-1], flags=cv2.INTER_LINEAR,
                                             borderMode=cv2.BORDER_REFLECT_101)
                mapped = warp_keypoints(kps, H)
                views.append((photometric(warped, cfg, rng), _jitter(mapped, cfg, rng) if jitter else mapped))
            min_size = float(kps[:, 2].min())
            keep = np.flatnonzero(_visible(views[0][1], image.shape, min_size) &
                                  _visible(views[1][1], image.shape, min_size))
            if len(keep) == 0:
                continue
            for key, (view, vkps) in zip(("anchors", "positives"), views):
                out[key].append(_to_uint8(extract_patches(view, vkps[keep], magnification)))
            out["tracks"].append(track_offset + keep)
            out["keypoints"].append(np.stack([views[0][1][keep], views[1][1][keep]], axis=1))
            out["images"].append(np.full((len(keep), 2), image_id, dtype=np.int32))
        track_offset += len(kps)
    if not out["tracks"]:
        raise ValueError("no keypoint survived the warps; check the images")
    return PairSet(np.concatenate(out["anchors"]), np.concatenate(out["positives"]),
                   np.concatenate(out["tracks"]).astype(np.int64), np.concatenate(out["keypoints"]),
                   np.concatenate(out["images"]), names)


# --------------------------------------------------------------------------- SfM tracks

def sfm_pairs(image_dir: str | Path, work_dir: str | Path, max_keypoints: int = 4096, detector: str = "sift",
              magnification: float | None = None, min_views: int = 2, seed: int = 0) -> PairSet:
    """Patches of the same 3D point in different views, as UBC PhotoTour was made.

    ``image_dir`` is reconstructed with COLMAP through :func:`descplug.pipeline.sfm` (OpenCV
    RootSIFT features, so no learned descriptor biases the tracks) into ``work_dir``, reused when
    its model exists. Each 3D point seen in k >= ``min_views`` images gives k-1 pairs (its views in
    a random order, consecutive ones paired), cut with the core extractor at each view's own
    keypoint position, scale and orientation. The track of a pair is its 3D point.
    """
    from descplug import colmap, pipeline
    from descplug.detectors import magnification_for
    from descplug.images import load_image
    from descplug.io.h5 import open_h5, read_features
    from descplug.patches import extract_patches

    image_dir, work_dir = Path(image_dir), Path(work_dir)
    model_dir = work_dir / "sfm"
    if not any((model_dir / f"points3D.{ext}").is_file() for ext in ("bin", "txt")):
        pipeline.sfm(image_dir, work_dir, model=pipeline.SIFT_BASELINE, detector=detector,
                     max_keypoints=max_keypoints, device="cpu")
    names, tracks = colmap.tracks(colmap.read_model(model_dir))
    magnification = magnification or magnification_for(detector)
    rng = np.random.default_rng(seed)
    views = []  # (track, image_id, point2D_idx) of every pair member, anchors then positives
    for track_id, track in enumerate(tracks):
        if len({image for image, _ in track}) < min_views:
            continue
        order = [track[i] for i in rng.permutation(len(track))]
        for first, second in zip(order[:-1], order[1:]):
            views.append((track_id, *first, *second))
    if not views:
        raise ValueError(f"{work_dir}: the COLMAP model has no 3D point seen in {min_views} images")
    views = np.array(views, np.int64)
    image_ids = sorted(names)
    patches = np.zeros((len(views), 2, PATCH_SIZE, PATCH_SIZE), np.uint8)
    keypoints = np.zeros((len(views), 2, 4), np.float32)
    with open_h5(work_dir / "features.h5") as fd:
        for image_id in image_ids:
            feats = read_features(fd, names[image_id])
            kps = np.c_[feats["keypoints"], feats["scales"], feats["oris"]].astype(np.float32)
            gray = None
            for side in (0, 1):
                rows = np.flatnonzero(views[:, 1 + 2 * side] == image_id)
                if len(rows) == 0:
                    continue
                if gray is None:
                    gray = load_image(image_dir / names[image_id])
                chosen = kps[views[rows, 2 + 2 * side]]
                patches[rows, side] = _to_uint8(extract_patches(gray, chosen, magnification))
                keypoints[rows, side] = chosen
    index = {image_id: i for i, image_id in enumerate(image_ids)}
    images = np.vectorize(index.get)(views[:, [1, 3]]).astype(np.int32)
    return PairSet(patches[:, 0].copy(), patches[:, 1].copy(), views[:, 0], keypoints, images,
                   [str(image_dir / names[i]) for i in image_ids])


# --------------------------------------------------------------------------- patch datasets

def _resize_patches(patches: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 -> (N, 32, 32) uint8 by area averaging."""
    if patches.shape[1:] == (PATCH_SIZE, PATCH_SIZE):
        return patches
    return np.stack([cv2.resize(p, (PATCH_SIZE, PATCH_SIZE), interpolation=cv2.INTER_AREA) for p in patches])


def _pairs_from_labels(patches: np.ndarray, labels: np.ndarray, max_pairs: int | None, seed: int,
                       name: str) -> PairSet:
    """Consecutive patches of the same label (3D point) as pairs: k patches give k-1 pairs."""
    order = np.argsort(labels, kind="stable")
    same = labels[order][1:] == labels[order][:-1]
    first, second = order[:-1][same], order[1:][same]
    if max_pairs is not None and len(first) > max_pairs:
        pick = np.sort(np.random.default_rng(seed).choice(len(first), max_pairs, replace=False))
        first, second = first[pick], second[pick]
    if len(first) == 0:
        raise ValueError(f"{name}: no 3D point has two patches")
    n = len(first)
    return PairSet(_resize_patches(patches[first]), _resize_patches(patches[second]),
                   labels[first].astype(np.int64), np.full((n, 2, 4), np.nan, np.float32),
                   np.full((n, 2), -1, np.int32), [])


def read_phototour(root: str | Path, name: str, max_pairs: int | None = None, seed: int = 0) -> PairSet:
    """UBC PhotoTour / Brown patches in torchvision's layout: ``root/<name>.pt`` (torchvision's
    processed cache: (uint8 patches (N, 64, 64), labels (N,), matches)) or the raw folder
    ``root/<name>/`` with ``patches*.bmp`` (1024x1024 sheets of 16x16 patches of 64x64, row-major)
    and ``info.txt`` (the 3D point id of each patch, first column)."""
    root = Path(root)
    cache = root / f"{name}.pt"
    if cache.is_file():
        data, labels, _ = torch.load(cache, map_location="cpu", weights_only=False)
        patches, labels = np.asarray(data, np.uint8), np.asarray(labels, np.int64)
    else:
        folder = root / name
        info = folder / "info.txt"
        if not info.is_file():
            raise FileNotFoundError(f"PhotoTour {name!r}: neither {cache} nor {info} exists")
        labels = np.array([int(line.split()[0]) for line in info.read_text().split("\n") if line.strip()], np.int64)
        sheets = sorted(folder.glob("*.bmp"))
        if not sheets:
            raise FileNotFoundError(f"PhotoTour {name!r}: no .bmp patch sheets in {folder}")
        tiles = []
        for sheet in sheets:
            image = cv2.imread(str(sheet), cv2.IMREAD_GRAYSCALE)
            if image is None or image.shape != (1024, 1024):
                raise ValueError(f"{sheet}: expected a 1024x1024 grey patch sheet")
            tiles.append(image.reshape(16, 64, 16, 64).transpose(0, 2, 1, 3).reshape(256, 64, 64))
        patches = np.concatenate(tiles)[:len(labels)]
        if len(patches) < len(labels):
            raise ValueError(f"PhotoTour {name!r}: {len(labels)} labels but only {len(patches)} patches")
    return _pairs_from_labels(patches, labels, max_pairs, seed, f"PhotoTour {name}")


HPATCHES_KINDS = ("e", "h", "t")


def read_hpatches(root: str | Path, sequences: Sequence[str] | None = None,
                  kinds: Sequence[str] = HPATCHES_KINDS, levels: Sequence[int] = (1, 2, 3, 4, 5)) -> PairSet:
    """``hpatches-release`` patches: ``root/<seq>/{ref,e1..e5,h1..h5,t1..t5}.png``, 65x65 patches
    stacked vertically; patch i of every file shows the same point, paired with ``ref``. Pass
    ``sequences`` (e.g. a train split from splits.json) to use only those."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if sequences is None else [root / s for s in sequences]
    parts, offset = [], 0
    for folder in folders:
        ref = _read_stack(folder / "ref.png")
        for kind in kinds:
            for level in levels:
                other = _read_stack(folder / f"{kind}{level}.png")
                if len(other) != len(ref):
                    raise ValueError(f"{folder}: {kind}{level}.png has {len(other)} patches, ref.png {len(ref)}")
                n = len(ref)
                parts.append(PairSet(ref, other, offset + np.arange(n, dtype=np.int64),
                                     np.full((n, 2, 4), np.nan, np.float32), np.full((n, 2), -1, np.int32)))
        offset += len(ref)
    if not parts:
        raise ValueError(f"no hpatches-release sequence under {root}")
    out = parts[0] if len(parts) == 1 else PairSet(*(np.concatenate([getattr(p, f) for p in parts])
                                                     for f in ("anchors", "positives", "tracks", "keypoints", "images")))
    return out


def _read_stack(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(f"cannot read {path}")
    side = image.shape[1]
    if image.shape[0] % side:
        raise ValueError(f"{path}: height {image.shape[0]} is not a multiple of the patch side {side}")
    return _resize_patches(image.reshape(-1, side, side))
