"""hloc-compatible HDF5 feature and match files.

Feature file: one group per image, named by the image's POSIX path relative to the image folder
(``a/b.png`` is group ``b.png`` inside group ``a``), holding

- ``keypoints``    float32 (N, 2): x, y in original-image pixels, OpenCV convention (the centre of
  the top-left pixel is (0, 0)); ``attrs["uncertainty"]``: localisation noise in pixels
- ``descriptors``  float32, or float16 with ``half``, (D, N)
- ``scores``       float32 (N,): detector response
- ``image_size``   int64 (2,): (W, H) of the original image
- ``scales``       float32 (N,): OpenCV ``KeyPoint.size``, a diameter in original-image pixels
- ``oris``         float32 (N,): OpenCV ``KeyPoint.angle``, degrees, clockwise in image coordinates
  (y down), in [0, 360); -1 where the detector gives no orientation (FAST, GFTT)

Match file: one group per pair, at ``pair_key(name0, name1)``, holding ``matches0`` (N0,): index
into image 1's keypoints or -1 (int16, int32 when image 1 has more than 32767 keypoints) and
``matching_scores0`` float16 (N0,). Readers look a pair up in both orders.

Writes go through `H5Appender`: each batch of groups is written with the file opened, the
group completed and the file closed, with SIGINT/SIGTERM deferred meanwhile, so an interrupted run
leaves a readable file holding every group written before. A group missing a dataset (a crash in
the middle of a write) is not listed as done and is rewritten by the next run.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import h5py
import numpy as np

from ..images import read_image

FEATURE_KEYS = ("keypoints", "descriptors", "scores", "image_size")
MATCH_KEYS = ("matches0", "matching_scores0")


def pair_key(name0: str, name1: str) -> str:
    """hloc's key of the pair (name0, name1) in a match file."""
    return name0.replace("/", "-") + "/" + name1.replace("/", "-")


def check_names(names) -> None:
    """Raise ValueError on duplicate names, names whose hloc pair keys collide (a/b.png, a-b.png)
    and names with white space (pairs files separate names by spaces)."""
    seen: dict[str, str] = {}
    for name in names:
        if any(c.isspace() for c in name):
            raise ValueError(f"image name {name!r} contains white space, which pairs files cannot hold; rename it")
        key = name.replace("/", "-")
        if key in seen:
            other = seen[key]
            if other == name:
                raise ValueError(f"duplicate image name {name!r}")
            raise ValueError(
                f"image names {other!r} and {name!r} collide in hloc pair keys (both become {key!r}); rename one of them"
            )
        seen[key] = name


def open_h5(path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file, turning h5py's low-level errors into a ValueError naming the file."""
    path = Path(path)
    if mode == "r" and not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        return h5py.File(path, mode)
    except OSError as error:
        raise ValueError(f"{path}: cannot open as HDF5 ({error})") from None


def _complete_groups(fd: h5py.File, required) -> list[str]:
    names = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and all(isinstance(obj.get(k), h5py.Dataset) for k in required):
            names.append(name)

    fd.visititems(visit)
    return names


def feature_names(path, required=FEATURE_KEYS) -> list[str]:
    """Names of the images whose group in a feature file holds the `required` datasets (sorted)."""
    with open_h5(path) as fd:
        return sorted(_complete_groups(fd, required))


def read_features(fd: h5py.File, name: str) -> dict[str, np.ndarray]:
    """Every dataset of an image's group, plus 'uncertainty'."""
    if name not in fd:
        raise KeyError(f"{fd.filename}: no features for image {name!r}")
    group = fd[name]
    features = {key: group[key][()] for key in group if isinstance(group[key], h5py.Dataset)}
    features["uncertainty"] = group["keypoints"].attrs.get("uncertainty", 1.0)
    return features


def find_pair(fd: h5py.File, name0: str, name1: str) -> tuple[str, bool]:
    """(key, reversed) of the pair in a match file, looking in both orders as hloc does."""
    key = pair_key(name0, name1)
    if key in fd:
        return key, False
    key = pair_key(name1, name0)
    if key in fd:
        return key, True
    raise KeyError(f"{fd.filename}: no matches for the pair {name0!r} {name1!r}")


def read_matches(fd: h5py.File, name0: str, name1: str) -> tuple[np.ndarray, np.ndarray]:
    """(M, 2) int64 index pairs (into image 0, image 1) and their (M,) float32 scores."""
    key, reverse = find_pair(fd, name0, name1)
    matches0 = fd[key]["matches0"][()]
    scores0 = fd[key]["matching_scores0"][()]
    idx = np.flatnonzero(matches0 != -1)
    matches = np.stack([idx, matches0[idx]], -1).astype(np.int64)
    if reverse:
        matches = np.flip(matches, -1)
    return matches, scores0[idx].astype(np.float32)


def feature_datasets(keypoints, descriptors, scores, image_size, scales, oris) -> dict:
    """The datasets of one image's group; `descriptors` is (N, D) as computed, stored (D, N)."""
    return {
        "keypoints": np.asarray(keypoints, np.float32).reshape(-1, 2),
        "descriptors": np.ascontiguousarray(np.asarray(descriptors, np.float32).T),
        "scores": np.asarray(scores, np.float32),
        "image_size": np.asarray(image_size, np.int64),
        "scales": np.asarray(scales, np.float32),
        "oris": np.asarray(oris, np.float32),
    }


def match_datasets(matches0, scores0, num_keypoints1: int) -> dict:
    """The datasets of one pair's group (hloc dtypes)."""
    dtype = np.int16 if num_keypoints1 <= 32767 else np.int32
    return {"matches0": np.asarray(matches0).astype(dtype), "matching_scores0": np.asarray(scores0, np.float16)}


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT/SIGTERM until the block ends, then deliver them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in received:
            signal.raise_signal(sig)


class H5Appender:
    """Adds groups to an HDF5 file in batches; each batch is written whole, then the file closed."""

    def __init__(self, path, required, batch: int = 1):
        self.path = Path(path)
        self.required = required
        self.batch = batch
        self.pending: list[tuple[str, dict, dict]] = []

    def done(self) -> set[str]:
        """Names of the complete groups already in the file."""
        if not self.path.exists():
            return set()
        with open_h5(self.path) as fd:
            return set(_complete_groups(fd, self.required))

    def add(self, name: str, datasets: dict, attrs: dict | None = None) -> None:
        """Queue a group `name` holding `datasets` ({key: array}); `attrs` is {dataset key: {attr: value}}."""
        missing = [key for key in self.required if key not in datasets]
        if missing:
            raise ValueError(f"group {name!r}: missing datasets {missing}")
        self.pending.append((name, datasets, attrs or {}))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with deferred_signals(), open_h5(self.path, "a") as fd:
            for name, datasets, attrs in self.pending:
                _write_group(fd, name, datasets, attrs)
        self.pending = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()


def _write_group(fd: h5py.File, name: str, datasets: dict, attrs: dict) -> None:
    if name in fd:
        del fd[name]
    try:
        group = fd.create_group(name)
        for key, value in datasets.items():
            group.create_dataset(key, data=value)
            for attr, attr_value in attrs.get(key, {}).items():
                group[key].attrs[attr] = attr_value
    except BaseException:
        if name in fd:
            del fd[name]
        raise


def validate(features, matches=None, pairs=None, image_dir=None) -> list[str]:
    """Problems of a feature file and optionally a match file, a list of pairs and the image folder:
    names, shapes, dtypes, pixel ranges and pair/match consistency. Empty when all is well."""
    problems: list[str] = []
    with open_h5(features) as fd:
        sizes = _validate_features(fd, problems)
    if image_dir is not None:
        _validate_images(Path(image_dir), sizes, problems)
    if matches is not None:
        with open_h5(matches) as fd:
            _validate_matches(fd, sizes, pairs, problems)
    elif pairs is not None:
        missing = sorted({n for pair in pairs for n in pair} - set(sizes))
        if missing:
            problems.append(f"pairs: {len(missing)} image(s) without features, e.g. {missing[:3]}")
    return problems


def _partial_groups(fd: h5py.File, keys) -> list[str]:
    names = []

    def visit(name, obj):
        present = [k for k in keys if isinstance(obj, h5py.Group) and k in obj]
        if present and len(present) < len(keys):
            names.append(f"{name} (missing {sorted(set(keys) - set(present))})")

    fd.visititems(visit)
    return names


def _validate_features(fd: h5py.File, problems: list[str]) -> dict[str, tuple[int, int, int]]:
    """name -> (num keypoints, W, H) of the valid groups; problems appended."""
    prefix = f"{fd.filename}"
    partial = _partial_groups(fd, FEATURE_KEYS)
    if partial:
        problems.append(f"{prefix}: {len(partial)} incomplete group(s) (an interrupted write?): {partial[:3]}")
    names = sorted(_complete_groups(fd, FEATURE_KEYS))
    if not names:
        problems.append(f"{prefix}: no image groups with {list(FEATURE_KEYS)}")
    try:
        check_names(names)
    except ValueError as error:
        problems.append(f"{prefix}: {error}")
    sizes, dims = {}, set()
    for name in names:
        group, where = fd[name], f"{prefix}: image {name!r}"
        kpts, desc, scores, size = (group[k] for k in FEATURE_KEYS)
        errors = []
        if kpts.ndim != 2 or kpts.shape[1] != 2 or kpts.dtype != np.float32:
            errors.append(f"keypoints must be float32 (N, 2), got {kpts.dtype} {kpts.shape}")
        n = kpts.shape[0]
        if desc.ndim != 2 or desc.dtype not in (np.float32, np.float16):
            errors.append(f"descriptors must be float32 or float16 (D, N), got {desc.dtype} {desc.shape}")
        elif desc.shape[1] != n:
            hint = " (transposed? hloc stores (D, N))" if desc.shape[0] == n else ""
            errors.append(f"descriptors {desc.shape} do not match {n} keypoints{hint}")
        else:
            dims.add(desc.shape[0])
        for key in ("scores", "scales", "oris"):
            if key in group and group[key].shape != (n,):
                errors.append(f"{key} must have shape ({n},), got {group[key].shape}")
        if size.shape != (2,) or not np.issubdtype(size.dtype, np.number) or (size[()] <= 0).any():
            errors.append(f"image_size must be (W, H) > 0, got {size[()]!r}")
        if "uncertainty" not in kpts.attrs:
            errors.append('keypoints.attrs["uncertainty"] is missing')
        if not errors and n:
            xy, (width, height) = kpts[()], size[()]
            if not np.isfinite(xy).all() or not np.isfinite(desc[()]).all():
                errors.append("NaN or infinite keypoints or descriptors")
            elif (xy < -0.5).any() or (xy[:, 0] > width - 0.5).any() or (xy[:, 1] > height - 0.5).any():
                errors.append(f"keypoints outside the {width}x{height} image (max {xy.max(0).tolist()}): resized-image pixels?")
        problems.extend(f"{where}: {error}" for error in errors)
        if not errors:
            sizes[name] = (n, int(size[0]), int(size[1]))
    if len(dims) > 1:
        problems.append(f"{prefix}: descriptor sizes differ between images: {sorted(dims)}")
    return sizes


def _validate_images(image_dir: Path, sizes: dict, problems: list[str]) -> None:
    for name, (_, width, height) in sizes.items():
        try:
            shape = read_image(image_dir / name).shape
        except ValueError as error:
            problems.append(str(error))
            continue
        if (shape[1], shape[0]) != (width, height):
            problems.append(f"{image_dir / name}: image is {shape[1]}x{shape[0]}, features say {width}x{height}")


def _validate_matches(fd: h5py.File, sizes: dict, pairs, problems: list[str]) -> None:
    prefix = f"{fd.filename}"
    partial = _partial_groups(fd, MATCH_KEYS)
    if partial:
        problems.append(f"{prefix}: {len(partial)} incomplete pair group(s): {partial[:3]}")
    by_key = {name.replace("/", "-"): name for name in sizes}
    for key in sorted(_complete_groups(fd, MATCH_KEYS)):
        parts = key.split("/")
        names = [by_key.get(part) for part in parts]
        if len(parts) != 2 or None in names:
            problems.append(f"{prefix}: pair {key!r} does not name two images of the feature file")
            continue
        matches0, scores0 = fd[key]["matches0"], fd[key]["matching_scores0"]
        n0, n1 = sizes[names[0]][0], sizes[names[1]][0]
        where = f"{prefix}: pair {key!r}"
        if not np.issubdtype(matches0.dtype, np.integer) or matches0.shape != (n0,):
            problems.append(f"{where}: matches0 must be integer ({n0},), got {matches0.dtype} {matches0.shape}")
            continue
        values = matches0[()]
        if n0 and (values.min() < -1 or values.max() >= n1):
            problems.append(f"{where}: matches0 indices outside [-1, {n1 - 1}]")
        if scores0.shape != (n0,):
            problems.append(f"{where}: matching_scores0 must have shape ({n0},), got {scores0.shape}")
    for name0, name1 in pairs or []:
        if name0 not in sizes or name1 not in sizes:
            problems.append(f"pairs: {name0!r} {name1!r}: image without valid features")
            continue
        try:
            find_pair(fd, name0, name1)
        except KeyError:
            problems.append(f"pairs: {name0!r} {name1!r}: no matches in {prefix}")
