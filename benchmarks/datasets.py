"""Readers for the benchmark data layouts.

- homography sequences (``hpatches-sequences-release``): ``<seq>/{1..6}.{ppm,png}`` and ``H_1_k``;
  sequences with fewer images (EVD: ``1.png``, ``2.png``, ``H_1_2``) are accepted;
- HPatches patches (``hpatches-release``): ``<seq>/{ref,e1..e5,h1..h5,t1..t5}.png``, 65x65 patches
  stacked vertically;
- posed images: the IMC calibration layout (``images/``, ``calibration/calibration_<stem>.h5``),
  the Strecha camera-file layout (``images/``, ``cameras/<image>.txt``) and SuperGlue's
  ``*_pairs_with_gt.txt``.

A root may hold one dataset or several (nested up to ``MAX_DEPTH`` folders); every name is the path
relative to the root, so ``oxford/graf`` and ``evd/graf`` do not collide.
"""

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

MAX_DEPTH = 3
IMAGE_EXTENSIONS = (".ppm", ".png", ".jpg", ".jpeg")
PATCH_SIZE = 65
PATCH_TYPES = ("ref",) + tuple(f"{level}{i}" for level in "eht" for i in range(1, 6))


def group_of(name):
    """HPatches sequence group from a sequence name: ``"i"``, ``"v"`` or ``"other"``."""
    base = Path(name).name
    if base.startswith("i_"):
        return "i"
    if base.startswith("v_"):
        return "v"
    return "other"


def _check_root(root):
    root = Path(root)
    if not root.exists():
        raise ValueError(f"data root {root} does not exist")
    return root


def _find(root, is_dataset, layout):
    """Folders under root (root included) for which is_dataset holds, sorted by relative name."""
    root = _check_root(root)
    found = []

    def visit(folder, depth):
        if is_dataset(folder):
            found.append(folder)
        elif depth < MAX_DEPTH:
            for child in sorted(p for p in folder.iterdir() if p.is_dir()):
                visit(child, depth + 1)

    visit(root, 0)
    if not found:
        raise ValueError(f"no {layout} found under {root} (searched {MAX_DEPTH} folders deep)")
    return [(folder.relative_to(root).as_posix() if folder != root else root.name, folder)
            for folder in found]


# ---------------------------------------------------------------- homography sequences

@dataclass
class HomographySequence:
    name: str
    images: list  # paths of images 1..n
    homographies: list  # H_1_k for k = 2..n, each 3x3 float64 (maps image 1 to image k)

    @property
    def group(self):
        return group_of(self.name)

    @property
    def collections(self):
        """The top folder of a nested sequence name (``oxford`` for ``oxford/graf``), else nothing."""
        parts = Path(self.name).parts
        return parts[:1] if len(parts) > 1 else ()


def _sequence_image(folder, index):
    for ext in IMAGE_EXTENSIONS:
        path = folder / f"{index}{ext}"
        if path.exists():
            return path
    return None


def read_homography(path):
    H = np.loadtxt(path, dtype=np.float64)
    if H.shape != (3, 3):
        raise ValueError(f"{path}: expected a 3x3 homography, got shape {H.shape}")
    return H


def read_sequence(folder, name=None):
    folder = Path(folder)
    images = []
    while (path := _sequence_image(folder, len(images) + 1)) is not None:
        images.append(path)
    if len(images) < 2:
        raise ValueError(f"{folder}: a homography sequence needs images 1 and 2 "
                         f"(1.ppm/1.png, 2.ppm/2.png)")
    homographies = []
    for k in range(2, len(images) + 1):
        h_path = folder / f"H_1_{k}"
        if not h_path.exists():
            raise ValueError(f"{folder}: image {images[k - 1].name} has no homography H_1_{k}")
        homographies.append(read_homography(h_path))
    return HomographySequence(name or folder.name, images, homographies)


def read_sequences(root, names=None):
    """All homography sequences under root; names (optional) keeps only those (relative names)."""
    found = _find(root, lambda f: _sequence_image(f, 1) is not None,
                  "homography sequence (<seq>/1.ppm or 1.png)")
    sequences = [read_sequence(folder, name) for name, folder in found]
    return _select(sequences, names)


def _select(items, names):
    if names is None:
        return items
    by_name = {item.name: item for item in items}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"not found under the root: {', '.join(missing)}")
    return [by_name[n] for n in names]


# ---------------------------------------------------------------- HPatches patches

@dataclass
class PatchSequence:
    name: str
    folder: Path

    @property
    def group(self):
        return group_of(self.name)

    def load(self):
        """``{type: uint8 (N, 65, 65)}`` for the 16 patch types; checks the layout."""
        patches = {}
        for kind in PATCH_TYPES:
            path = self.folder / f"{kind}.png"
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise ValueError(f"{self.folder}: missing or unreadable {kind}.png")
            height, width = image.shape
            if width != PATCH_SIZE or height % PATCH_SIZE:
                raise ValueError(f"{path}: expected 65x65 patches stacked vertically, "
                                 f"got a {width}x{height} image")
            patches[kind] = image.reshape(-1, PATCH_SIZE, PATCH_SIZE)
        counts = {len(p) for p in patches.values()}
        if len(counts) != 1:
            raise ValueError(f"{self.folder}: patch files hold different patch counts {sorted(counts)}")
        return patches


def read_patch_sequences(root, names=None):
    found = _find(root, lambda f: (f / "ref.png").exists(), "HPatches patch sequence (<seq>/ref.png)")
    return _select([PatchSequence(name, folder) for name, folder in found], names)


def read_splits(path, split):
    """Test sequence names of one split of the official ``splits.json``."""
    with open(path) as f:
        splits = json.load(f)
    if split not in splits:
        raise ValueError(f"{path}: no split {split!r}; known: {', '.join(sorted(splits))}")
    return list(splits[split]["test"])


def write_patch_file(path, patches):
    """Write uint8 (N, 65, 65) patches as one vertical stack."""
    patches = np.asarray(patches, dtype=np.uint8)
    if patches.ndim != 3 or patches.shape[1:] != (PATCH_SIZE, PATCH_SIZE):
        raise ValueError(f"expected (N, 65, 65) patches, got {patches.shape}")
    cv2.imwrite(str(path), patches.reshape(-1, PATCH_SIZE))


# ---------------------------------------------------------------- posed images

@dataclass
class Camera:
    """Pinhole camera, world to camera: ``x_cam = R @ X + t``."""
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray


@dataclass
class PosePair:
    name0: str
    name1: str
    image0: Path
    image1: Path
    K0: np.ndarray
    K1: np.ndarray
    R: np.ndarray  # relative pose 0 -> 1: x1 = R @ x0 + t
    t: np.ndarray


@dataclass
class PoseScene:
    name: str
    images: list  # sorted image paths
    cameras: dict  # image name -> Camera

    def pairs(self, min_gap=1, max_gap=None):
        """All pairs (i < j) of images with min_gap <= j - i (<= max_gap) in sorted order."""
        if min_gap < 1:
            raise ValueError(f"min_gap must be >= 1, got {min_gap}")
        pairs = []
        for i, j in combinations(range(len(self.images)), 2):
            if j - i < min_gap or (max_gap is not None and j - i > max_gap):
                continue
            a, b = self.images[i], self.images[j]
            c0, c1 = self.cameras[a.name], self.cameras[b.name]
            R = c1.R @ c0.R.T
            pairs.append(PosePair(a.name, b.name, a, b, c0.K, c1.K, R, c1.t - R @ c0.t))
        return pairs


def _images(folder):
    images = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise ValueError(f"{folder / 'images'}: no images")
    return images


def _posed_scene(folder, name, camera_path, read_camera):
    """Images of `folder/images` with one camera file each (`camera_path(folder, image)`)."""
    folder = Path(folder)
    images, cameras = _images(folder), {}
    for image in images:
        path = camera_path(folder, image)
        if not path.exists():
            raise ValueError(f"{folder}: image {image.name} has no {path.name} in {path.parent}")
        cameras[image.name] = read_camera(path)
    return PoseScene(name or folder.name, images, cameras)


def read_imc_camera(path):
    """IMC phototourism calibration file: K, R, T (world to camera)."""
    import h5py

    with h5py.File(path, "r") as f:
        return Camera(np.asarray(f["K"], np.float64).reshape(3, 3), np.asarray(f["R"], np.float64).reshape(3, 3),
                      np.asarray(f["T"], np.float64).reshape(3))


def read_imc_scene(folder, name=None):
    """IMC phototourism layout: ``calibration/calibration_<stem>.h5`` beside ``images/``."""
    return _posed_scene(folder, name, lambda f, image: f / "calibration" / f"calibration_{image.stem}.h5", read_imc_camera)


def read_strecha_camera(path):
    """Strecha camera file: K (3 rows), R camera-to-world (3 rows), C (1 row), width height."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(rows) < 7 or any(len(r) != 3 for r in rows[:7]):
        raise ValueError(f"{path}: expected 3 rows K, 3 rows R, 1 row C (3 numbers each)")
    values = np.array(rows[:7], dtype=np.float64)
    K, R_c2w, C = values[:3], values[3:6], values[6]
    return Camera(K, R_c2w.T, -R_c2w.T @ C)


def read_strecha_scene(folder, name=None):
    """Strecha layout: ``cameras/<image name>.txt`` beside ``images/``."""
    return _posed_scene(folder, name, lambda f, image: f / "cameras" / f"{image.name}.txt", read_strecha_camera)


def read_pose_scenes(root, names=None):
    """All IMC and Strecha scenes under root."""
    def kind(folder):
        if not (folder / "images").is_dir():
            return None
        if (folder / "calibration").is_dir():
            return read_imc_scene
        if (folder / "cameras").is_dir():
            return read_strecha_scene
        return None

    found = _find(root, lambda f: kind(f) is not None,
                  "posed image set (images/ with calibration/ or cameras/)")
    return _select([kind(folder)(folder, name) for name, folder in found], names)


def read_pairs_with_gt(path, image_root=None):
    """SuperGlue ``*_pairs_with_gt.txt``: ``name0 name1 [rot0 rot1] K0(9) K1(9) T_0to1(16)``."""
    path = Path(path)
    image_root = Path(image_root) if image_root is not None else path.parent
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (36, 38):
            raise ValueError(f"{path}:{number}: expected 36 or 38 fields "
                             f"(name0 name1 [rot0 rot1] K0 K1 T_0to1), got {len(fields)}")
        if len(fields) == 38:
            if fields[2:4] != ["0", "0"]:
                raise ValueError(f"{path}:{number}: EXIF rotations {fields[2:4]} are not supported")
            fields = fields[:2] + fields[4:]
        numbers = np.array(fields[2:], dtype=np.float64)
        T = numbers[18:].reshape(4, 4)
        pairs.append(PosePair(fields[0], fields[1], image_root / fields[0], image_root / fields[1],
                              numbers[:9].reshape(3, 3), numbers[9:18].reshape(3, 3),
                              T[:3, :3], T[:3, 3]))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs
