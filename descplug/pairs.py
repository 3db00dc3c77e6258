"""Image pairs to match: exhaustive, sequential, or retrieval by global descriptors.

Retrieval aggregates each image's local descriptors into a VLAD vector (Jegou et al. 2010) over a
k-means codebook learned from the collection, with intra-normalisation and power normalisation,
then PCA-whitens it (learned from the collection, eigenvalues regularised by their mean, as the
collection may be small). The top-K neighbours of every image are found block by block, so memory
grows with N x block, never N x N.

Pairs files are hloc's: one pair per line, two image names separated by a space.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from .io.h5 import check_names, feature_names, open_h5

NUM_CLUSTERS = 64
PCA_DIM = 256
SAMPLE_IMAGES = 2000
SAMPLE_DESCRIPTORS = 100_000
BLOCK = 1024


def exhaustive(names) -> list[tuple[str, str]]:
    """Every unordered pair, in name order."""
    return list(itertools.combinations(sorted(names), 2))


def sequential(names, k: int) -> list[tuple[str, str]]:
    """Each image with its `k` successors in name order (video or sequential captures)."""
    names = sorted(names)
    return [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, min(i + 1 + k, len(names)))]


def retrieval(features_path, k: int, names=None, seed: int = 0) -> list[tuple[str, str]]:
    """Each image with its `k` nearest neighbours by global descriptor; unordered duplicates removed."""
    names = sorted(names or feature_names(features_path))
    if len(names) < 2:
        return []
    descriptors = global_descriptors(features_path, names, seed=seed)
    neighbours = top_k(descriptors, min(k, len(names) - 1))
    return unique_pairs((names[i], names[j]) for i, row in enumerate(neighbours) for j in row)


def unique_pairs(pairs) -> list[tuple[str, str]]:
    """Drop self-pairs and pairs already listed in either order, keeping the first order seen."""
    seen, out = set(), []
    for a, b in pairs:
        if a != b and (a, b) not in seen and (b, a) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def global_descriptors(features_path, names, seed: int = 0) -> np.ndarray:
    """(N, dim) L2-normalised PCA-whitened VLAD descriptors of the named images."""
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(len(names), min(len(names), SAMPLE_IMAGES), replace=False))
    with open_h5(features_path) as fd:
        per_image = max(1, SAMPLE_DESCRIPTORS // len(sample))
        pooled = []
        for i in sample:
            d = _local_descriptors(fd, names[i])
            pooled.append(d[rng.choice(len(d), min(len(d), per_image), replace=False)])
        codebook = kmeans(np.concatenate(pooled), NUM_CLUSTERS, seed=seed)
        mean, projection = fit_whitening(np.concatenate(list(_vlads(fd, [names[i] for i in sample], codebook))))
        # chunk by chunk: an N x (K * D) matrix of raw VLADs would not fit for large collections
        out = np.concatenate([(v - mean) @ projection for v in _vlads(fd, names, codebook)])
    return _normalize(out)


def _vlads(fd, names, codebook: np.ndarray, chunk: int = 64):
    """VLADs of the named images, `chunk` images at a time (few large operations, not many small)."""
    for start in range(0, len(names), chunk):
        yield vlad([_local_descriptors(fd, name) for name in names[start : start + chunk]], codebook)


def _local_descriptors(fd, name: str) -> np.ndarray:
    if name not in fd or "descriptors" not in fd[name]:
        raise ValueError(f"{fd.filename}: no descriptors for image {name!r}")
    return _normalize(fd[name]["descriptors"][()].T.astype(np.float32))


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def kmeans(x: np.ndarray, k: int, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Lloyd's k-means; returns (min(k, len(x)), D) centres."""
    if len(x) == 0:
        raise ValueError("cannot learn a codebook: the images have no descriptors")
    points = torch.from_numpy(x)
    generator = torch.Generator().manual_seed(seed)
    centres = points[torch.randperm(len(points), generator=generator)[:k]].clone()
    for _ in range(iterations):
        assign = torch.cdist(points, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=len(centres))[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return centres.numpy()


def vlad(descriptors: list[np.ndarray], centres: np.ndarray) -> np.ndarray:
    """(B, K * D) VLADs of B images' (N_i, D) descriptors: residuals to the nearest centre summed per
    centre, intra-normalised, signed square root, L2-normalised."""
    x = torch.from_numpy(np.concatenate(descriptors).astype(np.float32))
    c = torch.from_numpy(centres)
    k, dim, batch = len(centres), centres.shape[1], len(descriptors)
    owner = torch.repeat_interleave(torch.arange(batch), torch.tensor([len(d) for d in descriptors]))
    cell = owner * k + (x @ c.T - 0.5 * (c**2).sum(1)).argmax(1)  # (image, nearest centre)
    sums = torch.zeros(batch * k, dim).index_add_(0, cell, x)
    counts = torch.bincount(cell, minlength=batch * k)[:, None]
    residuals = (sums - counts * c.repeat(batch, 1)).view(batch, k, dim)
    v = torch.nn.functional.normalize(residuals, dim=2).view(batch, k * dim)
    return torch.nn.functional.normalize(v.sign() * v.abs().sqrt(), dim=1).numpy()


def fit_whitening(x: np.ndarray, dim: int = PCA_DIM) -> tuple[np.ndarray, np.ndarray]:
    """(mean, projection) of PCA whitening learned from the rows of `x`; eigenvalues are
    regularised by their mean so that a small collection's noise directions are not blown up."""
    mean = x.mean(0)
    keep = max(1, min(dim, len(x) - 1))
    centred = torch.from_numpy(x - mean)
    _, s, v = torch.svd_lowrank(centred, q=min(keep + 10, *x.shape), niter=4)  # randomised: fast for 2000 x 8192
    eig = s[:keep] ** 2 / max(1, len(x) - 1)
    return mean, (v[:, :keep] / torch.sqrt(eig + eig.mean())).numpy()


def top_k(descriptors: np.ndarray, k: int, block: int = BLOCK) -> np.ndarray:
    """(N, k) indices of each row's k most similar other rows (dot product), block by block."""
    x = torch.from_numpy(np.ascontiguousarray(descriptors, np.float32))
    out = []
    for start in range(0, len(x), block):
        sim = x[start : start + block] @ x.T
        rows = torch.arange(len(sim))
        sim[rows, rows + start] = -torch.inf
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out).numpy()


def write_pairs(pairs, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    tmp.replace(path)
    return path


def read_pairs(path) -> list[tuple[str, str]]:
    """Pairs of a pairs file; unordered duplicates and self-pairs removed. Names may not hold spaces."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: pairs file not found")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or line.lstrip().startswith("#"):
            continue
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected two image names, got {line!r}")
        pairs.append((fields[0], fields[1]))
    pairs = unique_pairs(pairs)
    check_names(sorted({n for pair in pairs for n in pair}))
    return pairs
