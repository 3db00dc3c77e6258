"""Pipeline stages with files between them, as hloc does:

    extract   IMAGE_DIR            -> features.h5
    pairs     features.h5          -> pairs.txt          (descplug.pairs)
    match     features.h5, pairs   -> matches.h5
    reconstruct / triangulate      -> COLMAP database and model (descplug.colmap)
    sfm       IMAGE_DIR            -> all of the above in one folder

Stages resume: images (pairs) already in the output file are skipped. An image that cannot be
read or described is reported, counted in the stage's `Report` and skipped; the run goes on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from . import colmap, pairs as pairs_lib
from .api import DescDis, resolve_device
from .detectors import detect
from .handcrafted import rootsift, sift_compute
from .images import load_image
from .io.h5 import (FEATURE_KEYS, MATCH_KEYS, H5Appender, check_names, feature_datasets, feature_names, find_pair,
                    match_datasets, open_h5, pair_key, read_features, read_matches)
from .keypoints import as_keypoint_array
from .matching import match_descriptors

log = logging.getLogger("descplug")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp"}
SIFT_BASELINE = "sift"
SIFT_RATIO = 0.8
EXHAUSTIVE_UP_TO = 50
RETRIEVAL_K = 20


class PipelineError(ValueError):
    """A stage cannot run (bad input); the message names the file."""


@dataclass
class Report:
    """What a stage did: items written, items already there, and (name, reason) of failures."""

    stage: str
    done: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.stage}: {self.done} written, {self.skipped} already done, {len(self.failed)} failed"
        return text + "".join(f"\n  failed: {name}: {reason}" for name, reason in self.failed)


def list_images(image_dir, image_list=None) -> list[str]:
    """POSIX paths relative to `image_dir` of its images (recursive, hidden files skipped), or the
    names listed in the text file `image_list` (one per line)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise PipelineError(f"{image_dir}: image folder not found")
    if image_list is not None:
        if not Path(image_list).is_file():
            raise PipelineError(f"{image_list}: image list not found")
        names = [line.strip() for line in Path(image_list).read_text().splitlines() if line.strip()]
    else:
        names = sorted(
            path.relative_to(image_dir).as_posix()
            for path in image_dir.rglob("*")
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in path.relative_to(image_dir).parts)
        )
    if not names:
        raise PipelineError(f"{image_dir}: no images found (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})")
    try:
        check_names(names)
    except ValueError as error:
        raise PipelineError(f"{image_list or image_dir}: {error}") from None
    return names


class Extractor:
    """Detect (or take) keypoints on an image resized to `resize_max`, describe them with a network
    (`model`, see DescDis) or with OpenCV RootSIFT (`model="sift"`); keypoints are returned in
    original-image pixels."""

    def __init__(self, model=None, detector: str = "sift", max_keypoints: int | None = 4096,
                 resize_max: int | None = 1600, device: str = "auto", default_size: float | None = None):
        self.detector, self.max_keypoints, self.resize_max = detector, max_keypoints, resize_max
        self.network = None if model == SIFT_BASELINE else DescDis(model=model, device=device, detector=detector)
        self.name = SIFT_BASELINE if self.network is None else self.network.name
        self.default_size = default_size or (self.network.default_size if self.network else 12.0)

    def config(self) -> dict:
        """What decides the descriptors; a file is only resumed with the same."""
        return {"model": self.name, "detector": self.detector, "max_keypoints": self.max_keypoints or 0,
                "resize_max": self.resize_max or 0}

    def __call__(self, path, keypoints=None) -> tuple[dict, float]:
        """(datasets, uncertainty) of one image; `keypoints` (N, 2..4) in original pixels, or detected."""
        gray = load_image(path)
        height, width = gray.shape
        small, scale = self._resize(gray)
        if keypoints is None:
            detected = detect(small, self.detector, self.max_keypoints)
            array = as_keypoint_array(list(detected), self.default_size)
            scores = np.array([kp.response for kp in detected], np.float32)
        else:
            array = as_keypoint_array(np.asarray(keypoints, np.float32), self.default_size)
            array[:, :2] = (array[:, :2] + 0.5) / scale - 0.5
            array[:, 2] /= scale.mean()
            scores = np.ones(len(array), np.float32)
        descriptors = self._describe(small, array)
        array[:, :2] = (array[:, :2] + 0.5) * scale - 0.5
        array[:, 2] *= scale.mean()
        datasets = feature_datasets(array[:, :2], descriptors, scores, (width, height), array[:, 2], array[:, 3])
        return datasets, float(scale.mean())

    def _resize(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = gray.shape
        if not self.resize_max or max(height, width) <= self.resize_max:
            return gray, np.ones(2, np.float32)
        factor = self.resize_max / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return small, np.array([width / size[0], height / size[1]], np.float32)

    def _describe(self, image: np.ndarray, array: np.ndarray) -> np.ndarray:
        if self.network is not None:
            return self.network.compute(image, array)[1]
        cv_keypoints = [cv2.KeyPoint(float(x), float(y), float(s), float(a)) for x, y, s, a in array]
        return rootsift(sift_compute(image, cv_keypoints))


def extract(image_dir, out, model=None, detector: str = "sift", max_keypoints: int | None = 4096,
            resize_max: int | None = 1600, image_list=None, keypoints_from=None, default_size: float | None = None,
            half: bool = False, overwrite: bool = False, device: str = "auto") -> Report:
    """Write hloc features of the images of `image_dir` to `out` (see descplug.io.h5)."""
    image_dir = Path(image_dir)
    if keypoints_from is not None:
        names = feature_names(keypoints_from, required=("keypoints",))
        if image_list is not None:
            wanted = set(list_images(image_dir, image_list))
            names = [n for n in names if n in wanted]
        check_names(names)
    else:
        names = list_images(image_dir, image_list)
    extractor = Extractor(model, detector, max_keypoints, resize_max, device, default_size)
    writer = H5Appender(out, FEATURE_KEYS)
    config = dict(extractor.config(), keypoints_from=str(Path(keypoints_from).resolve()) if keypoints_from else "", half=int(half))
    _check_config(out, config, overwrite)
    _write_config(out, config)
    done = set() if overwrite else writer.done()
    report = Report("extract", skipped=sum(n in done for n in names))
    source = open_h5(keypoints_from) if keypoints_from is not None else None
    try:
        for name in tqdm([n for n in names if n not in done], desc="extract", unit="image", disable=None):
            try:
                keypoints = _keypoints_from(source, name, default_size) if source is not None else None
                datasets, uncertainty = extractor(image_dir / name, keypoints)
            except (ValueError, RuntimeError, cv2.error) as error:
                report.failed.append((name, str(error)))
                log.warning("extract: skipped %s: %s", name, error)
                continue
            if half:
                datasets["descriptors"] = datasets["descriptors"].astype(np.float16)
            writer.add(name, datasets, {"keypoints": {"uncertainty": uncertainty}})
            report.done += 1
    finally:
        if source is not None:
            source.close()
    return report


def _keypoints_from(fd, name: str, default_size: float | None) -> np.ndarray:
    """(N, 2) or (N, 4) keypoints of another extractor's file; its scales/oris are used unless
    `default_size` is given."""
    group = fd[name]
    keypoints = group["keypoints"][()].astype(np.float32)
    if default_size is None and "scales" in group and "oris" in group:
        return np.column_stack([keypoints, group["scales"][()], group["oris"][()]]).astype(np.float32)
    return keypoints


def _check_config(path, config: dict, overwrite: bool) -> None:
    if overwrite or not Path(path).exists():
        return
    with open_h5(path) as fd:
        old = {key: fd.attrs[key] for key in config if key in fd.attrs}
    changed = {key: (old[key], value) for key, value in config.items() if key in old and str(old[key]) != str(value)}
    if changed:
        details = ", ".join(f"{key}: file {a!r}, now {b!r}" for key, (a, b) in changed.items())
        raise PipelineError(f"{path} was written with other settings ({details}); use --overwrite or another file")


def _write_config(path, config: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open_h5(path, "a") as fd:
        fd.attrs.update(config)


def make_pairs(features, out, method: str = "auto", k: int = RETRIEVAL_K) -> list[tuple[str, str]]:
    """Write a pairs file: 'exhaustive', 'sequential' (k successors), 'retrieval' (k neighbours), or
    'auto' (exhaustive up to 50 images, else retrieval)."""
    names = feature_names(features)
    if len(names) < 2:
        raise PipelineError(f"{features}: {len(names)} image(s) with features; pairs need at least 2")
    if method == "auto":
        method = "exhaustive" if len(names) <= EXHAUSTIVE_UP_TO else "retrieval"
    if method == "exhaustive":
        pairs = pairs_lib.exhaustive(names)
    elif method == "sequential":
        pairs = pairs_lib.sequential(names, k)
    elif method == "retrieval":
        pairs = pairs_lib.retrieval(features, k, names)
    else:
        raise PipelineError(f"unknown pairing method {method!r}: use exhaustive, sequential, retrieval or auto")
    pairs_lib.write_pairs(pairs, out)
    return pairs


def match(features, pairs_path, out, mutual: bool = True, ratio: float | None = None,
          max_distance: float | None = None, device: str = "auto", overwrite: bool = False) -> Report:
    """Match the descriptors of every listed pair; write hloc matches to `out`."""
    pairs = pairs_lib.read_pairs(pairs_path)
    _check_pair_names(pairs, features, pairs_path)
    device = resolve_device(device)
    writer = H5Appender(out, MATCH_KEYS, batch=32)
    done = set() if overwrite else writer.done()
    todo = [(a, b) for a, b in pairs if pair_key(a, b) not in done and pair_key(b, a) not in done]
    report = Report("match", skipped=len(pairs) - len(todo))
    with open_h5(features) as fd, writer:

        @lru_cache(maxsize=64)
        def descriptors(name: str) -> torch.Tensor:
            return torch.from_numpy(fd[name]["descriptors"][()].T.astype(np.float32)).to(device)

        for a, b in tqdm(todo, desc="match", unit="pair", disable=None):
            d0, d1 = descriptors(a), descriptors(b)
            try:
                matches0, scores0 = match_descriptors(d0, d1, mutual=mutual, ratio=ratio, max_distance=max_distance, device=device)
            except ValueError as error:
                raise PipelineError(f"{features}: cannot match {a} with {b}: {error}") from None
            writer.add(pair_key(a, b), match_datasets(matches0, scores0, len(d1)))
            report.done += 1
    return report


def _check_pair_names(pairs, features, pairs_path) -> None:
    names = set(feature_names(features))
    missing = sorted({n for pair in pairs for n in pair} - names)
    if missing:
        raise PipelineError(f"{pairs_path}: {len(missing)} image(s) have no features in {features}, e.g. {missing[:3]}")


def _check_images(image_dir, names) -> None:
    missing = [n for n in names if not (Path(image_dir) / n).is_file()]
    if missing:
        raise PipelineError(f"{image_dir}: {len(missing)} image(s) of the feature file are missing, e.g. {missing[:3]}")


def build_database(image_dir, features, matches, pairs_path, db_path, camera_model: str = "SIMPLE_RADIAL",
                   single_camera: bool = False, skip_verification: bool = False) -> dict[str, int]:
    """A COLMAP database with the images, keypoints and (verified) matches of the listed pairs."""
    pairs = pairs_lib.read_pairs(pairs_path)
    _check_pair_names(pairs, features, pairs_path)
    names = feature_names(features)
    _check_images(image_dir, names)
    ids, colmap_sizes = colmap.create_database(db_path, image_dir, names, camera_model, single_camera)
    with open_h5(features) as fd:
        wrong = [(n, tuple(fd[n]["image_size"][()].tolist()), colmap_sizes[n]) for n in names
                 if tuple(fd[n]["image_size"][()]) != colmap_sizes[n]]
        if wrong:
            raise PipelineError(f"{features}: image sizes differ from what COLMAP reads (EXIF rotation? another "
                                f"image folder?), e.g. {wrong[0][0]}: features {wrong[0][1]}, COLMAP {wrong[0][2]}")
        colmap.write_keypoints(db_path, ids, ((n, read_features(fd, n)["keypoints"]) for n in names))
    with open_h5(matches) as fd:
        missing = []
        for a, b in pairs:
            try:
                find_pair(fd, a, b)
            except KeyError:
                missing.append((a, b))
        if missing:
            raise PipelineError(f"{matches}: no matches for {len(missing)} pair(s) of {pairs_path}, e.g. {missing[:3]}; run match")
        colmap.write_matches(db_path, ids, ((a, b, read_matches(fd, a, b)[0]) for a, b in pairs), verified=skip_verification)
    if not skip_verification:
        verified = colmap.verify_matches(db_path, pairs_path)
        log.info("geometric verification: %d of %d pairs verified", verified, len(pairs))
    return ids


def reconstruct(image_dir, features, matches, pairs_path, out_dir, camera_model: str = "SIMPLE_RADIAL",
                single_camera: bool = False, skip_verification: bool = False, verbose: bool = False) -> dict:
    """Incremental SfM; the largest model is written to `out_dir` (binary) and `out_dir/text`.
    Returns its statistics (colmap.model_stats), 'images' (how many were given) and 'model' (the
    pycolmap Reconstruction)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    db_path = out_dir / "database.db"
    with colmap.log_level(verbose):
        ids = build_database(image_dir, features, matches, pairs_path, db_path, camera_model, single_camera,
                             skip_verification)
        model = colmap.incremental_mapping(db_path, image_dir, out_dir)
    if model is None:
        raise PipelineError(f"COLMAP found no model for {image_dir}: too few verified matches")
    colmap.write_model(model, out_dir)
    return dict(colmap.model_stats(model), images=len(ids), model=model)


def triangulate(image_dir, features, matches, pairs_path, reference_dir, out_dir, skip_verification: bool = False,
                verbose: bool = False) -> dict:
    """3D points for the fixed cameras of the COLMAP model in `reference_dir`; written like reconstruct."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    db_path = out_dir / "database.db"
    with colmap.log_level(verbose):
        ids = build_database(image_dir, features, matches, pairs_path, db_path, skip_verification=skip_verification)
        model = colmap.triangulate(reference_dir, db_path, image_dir, out_dir)
    colmap.write_model(model, out_dir)
    return dict(colmap.model_stats(model), images=len(ids), model=model)


def sfm(image_dir, out_dir, model=None, detector: str = "sift", max_keypoints: int | None = 4096,
        resize_max: int | None = 1600, pairing: str = "auto", k: int = RETRIEVAL_K, ratio: float | None = None,
        camera_model: str = "SIMPLE_RADIAL", single_camera: bool = False, device: str = "auto",
        verbose: bool = False) -> tuple[list[Report], dict]:
    """extract -> pairs -> match -> reconstruct into `out_dir`; returns (stage reports, model stats).
    Matching is mutual nearest neighbour, with Lowe's ratio test at `ratio`; for the SIFT baseline
    `ratio` defaults to 0.8 (as in COLMAP and hloc), for networks to none."""
    colmap.check_camera_model(camera_model)
    out_dir = Path(out_dir)
    features, pairs_path, matches = out_dir / "features.h5", out_dir / "pairs.txt", out_dir / "matches.h5"
    reports = [extract(image_dir, features, model, detector, max_keypoints, resize_max, device=device)]
    pairs = make_pairs(features, pairs_path, pairing, k)
    log.info("pairs: %d (%s)", len(pairs), pairing)
    if ratio is None and model == SIFT_BASELINE:
        ratio = SIFT_RATIO
    reports.append(match(features, pairs_path, matches, ratio=ratio, device=device))
    stats = reconstruct(image_dir, features, matches, pairs_path, out_dir / "sfm", camera_model, single_camera,
                        verbose=verbose)
    return reports, stats
