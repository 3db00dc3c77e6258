"""Training losses for patch descriptors.

All functions take L2-normalised descriptors of matching pairs: row i of ``anchors`` matches
row i of ``positives``; every other row of the batch is a negative (the batch sampler guarantees
that no two rows come from the same 3D point / track).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FUSIONS = ("maxmin", "mean")
NEGATIVE_CHOICES = ("student", "teacher", "all")


def distance_matrix(anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between unit vectors: sqrt(2 - 2 a.p), shape (N, N)."""
    sim = anchors @ positives.t()
    return torch.sqrt((2.0 - 2.0 * sim).clamp(min=1e-12))


def _off_diagonal(n: int, device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def hardest_negatives(dist: torch.Tensor, anchor_swap: bool = True) -> torch.Tensor:
    """Index of the hardest (closest) negative for each row, with its distance.

    Returns ``(distance, index, swapped)``: ``index[i]`` is the column (positive) closest to anchor
    i; with ``anchor_swap`` the closest row (anchor) to positive i is used instead when it is
    closer, and ``swapped[i]`` tells which one was chosen.
    """
    n = dist.shape[0]
    masked = dist.masked_fill(~_off_diagonal(n, dist.device), float("inf"))
    row_d, row_i = masked.min(dim=1)
    if not anchor_swap:
        return row_d, row_i, torch.zeros_like(row_i, dtype=torch.bool)
    col_d, col_i = masked.min(dim=0)
    swapped = col_d < row_d
    return torch.where(swapped, col_d, row_d), torch.where(swapped, col_i, row_i), swapped


def triplet_loss(anchors, positives, margin: float = 1.0, anchor_swap: bool = True) -> torch.Tensor:
    """HardNet hardest-in-batch triplet margin loss."""
    if anchors.shape[0] < 2:
        raise ValueError("the triplet loss needs at least two pairs per batch")
    dist = distance_matrix(anchors, positives)
    neg, _, _ = hardest_negatives(dist, anchor_swap)
    return (margin + dist.diagonal() - neg).clamp(min=0).mean()


def spread_out_regularizer(anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Global orthogonal regularisation (Zhang et al., "Learning spread-out local feature
    descriptors", ICCV 2017): unit descriptors spread uniformly over the sphere have non-matching
    inner products of mean 0 and second moment 1/d. Penalises ``mean^2 + max(0, second moment - 1/d)``
    of the batch's non-matching anchor-positive similarities."""
    n, dim = anchors.shape
    if n < 2:
        raise ValueError("the spread-out regulariser needs at least two pairs per batch")
    sim = (anchors @ positives.t())[_off_diagonal(n, anchors.device)]
    return sim.mean() ** 2 + (sim.pow(2).mean() - 1.0 / dim).clamp(min=0)


def _negative_mask(sim_student: torch.Tensor, sim_teacher: torch.Tensor, negatives: str,
                   anchor_swap: bool) -> torch.Tensor:
    """Boolean (N, N) mask of the negative similarities the regulariser compares."""
    n = sim_student.shape[0]
    if negatives == "all":
        return _off_diagonal(n, sim_student.device)
    if negatives not in NEGATIVE_CHOICES:
        raise ValueError(f"negatives must be one of {NEGATIVE_CHOICES}, got {negatives!r}")
    ref = sim_student if negatives == "student" else sim_teacher
    _, idx, swapped = hardest_negatives(-ref.detach(), anchor_swap)  # closest = most similar
    rows = torch.arange(n, device=ref.device)
    mask = torch.zeros(n, n, dtype=torch.bool, device=ref.device)
    # not swapped: (anchor i, positive idx[i]); swapped: (anchor idx[i], positive i)
    mask[torch.where(swapped, idx, rows), torch.where(swapped, rows, idx)] = True
    return mask


def desdis_regularizer(student_a, student_p, teacher_a, teacher_p, p: int = 1,
                       negatives: str = "student", anchor_swap: bool = True) -> torch.Tensor:
    """DesDis teacher-student regulariser.

    Penalises |s_S - s_T|^p between the student's and the frozen teacher's cosine similarities on
    the positive pairs and on the chosen negatives: the hardest negative of each row as the
    ``student`` or the ``teacher`` ranks it, or ``all`` off-diagonal pairs. The result is the mean
    over positives plus the mean over the chosen negatives.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (L1) or 2 (L2), got {p!r}")
    sim_s = student_a @ student_p.t()
    sim_t = teacher_a @ teacher_p.t()
    diff = (sim_s - sim_t).abs() ** p
    neg = _negative_mask(sim_s, sim_t, negatives, anchor_swap)
    return diff.diagonal().mean() + diff[neg].mean()


def cosine_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Descriptor-level distillation: mean (1 - cos(student_i, teacher_i)); needs equal dimensions."""
    if student.shape != teacher.shape:
        raise ValueError(f"cosine distillation needs equal shapes, got {tuple(student.shape)} "
                         f"and {tuple(teacher.shape)}")
    return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()


COSINE_TARGETS = {"view": 0.0, "track": 1.0}  # name -> weight of the track centroid in the target


def track_weight(target) -> float:
    """``loss.cosine.target`` -> weight of the track centroid in the cosine target: "view" (0), "track"
    (1), or a number in [0, 1] that blends the two (see :func:`cosine_targets`)."""
    if isinstance(target, str) and target in COSINE_TARGETS:
        return COSINE_TARGETS[target]
    if isinstance(target, (int, float)) and not isinstance(target, bool) and 0.0 <= target <= 1.0:
        return float(target)
    raise ValueError(f"loss.cosine.target must be one of {sorted(COSINE_TARGETS)} or a number in [0, 1], "
                     f"got {target!r}")


def cosine_targets(view: torch.Tensor, centroid: torch.Tensor | None, weight: float) -> torch.Tensor:
    """Unit ``(1 - weight) * view + weight * centroid``: each patch's target between its own teacher
    descriptor (weight 0) and its track's centroid (weight 1)."""
    if centroid is None or weight == 0.0:
        return view
    return F.normalize((1.0 - weight) * view + weight * centroid, dim=1)


def track_centroids(anchors: torch.Tensor, positives: torch.Tensor, tracks: torch.Tensor) -> torch.Tensor:
    """Per pair, the unit mean of the descriptors of every patch (anchor or positive, in any pair)
    of its track: a target that no single view's appearance pulls away from the track. Shape (N, D)."""
    _, track = torch.unique(tracks, return_inverse=True)
    sums = torch.zeros(int(track.max()) + 1, anchors.shape[1], dtype=anchors.dtype, device=anchors.device)
    sums.index_add_(0, track, anchors).index_add_(0, track, positives)
    return F.normalize(sums, dim=1)[track]


class Whitening(torch.nn.Module):
    """PCA whitening learned from a teacher's descriptors: x -> normalise((x - mean) @ P).

    Eigenvalues below ``floor * mean(eigenvalues)`` are raised to that floor so that directions
    with almost no variance are not blown up; ``dim`` keeps only the leading components.
    """

    def __init__(self, mean: torch.Tensor, projection: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("projection", projection)

    @classmethod
    def fit(cls, descriptors: torch.Tensor, floor: float = 0.01, dim: int | None = None) -> "Whitening":
        x = descriptors.double()
        if x.shape[0] < 2:
            raise ValueError("whitening needs at least two descriptors")
        mean = x.mean(dim=0)
        cov = (x - mean).t() @ (x - mean) / (x.shape[0] - 1)
        eigval, eigvec = torch.linalg.eigh(cov)
        order = eigval.argsort(descending=True)
        eigval, eigvec = eigval[order], eigvec[:, order]
        eigval = eigval.clamp(min=floor * eigval.clamp(min=0).mean().item())
        if dim is not None:
            eigval, eigvec = eigval[:dim], eigvec[:, :dim]
        return cls(mean.float(), (eigvec / eigval.sqrt()).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize((x - self.mean) @ self.projection, dim=1)


def fuse_similarities(sims: list[torch.Tensor], fusion: str = "maxmin") -> torch.Tensor:
    """Fuse the teachers' (N, N) similarity matrices.

    ``maxmin``: the maximum over teachers on the diagonal (positives) and the minimum elsewhere
    (negatives); ``mean``: the mean everywhere.
    """
    stack = torch.stack(sims)
    if fusion == "mean":
        return stack.mean(dim=0)
    if fusion != "maxmin":
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    eye = torch.eye(stack.shape[1], dtype=torch.bool, device=stack.device)
    return torch.where(eye, stack.max(dim=0).values, stack.min(dim=0).values)


def relational_kl(student_a, student_p, target_sim: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """Row-wise KL(softmax(target/tau) || softmax(student/tau)) over anchor->positive rows and
    positive->anchor rows (the transposed matrices), averaged."""
    sim_s = student_a @ student_p.t()
    total = 0.0
    for s, t in ((sim_s, target_sim), (sim_s.t(), target_sim.t())):
        log_p_s = F.log_softmax(s / tau, dim=1)
        log_p_t = F.log_softmax(t / tau, dim=1)
        total = total + F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return total / 2


def multi_teacher_kl(student_a, student_p, teachers_a: list[torch.Tensor], teachers_p: list[torch.Tensor],
                     whitenings: list[Whitening] | None = None, fusion: str = "maxmin",
                     tau: float = 0.05) -> torch.Tensor:
    """Whitened multi-teacher relational distillation.

    Each teacher's descriptors are whitened (when ``whitenings`` is given) and re-normalised, their
    in-batch similarity matrices are fused, and the student is trained with :func:`relational_kl`.
    """
    if len(teachers_a) != len(teachers_p) or not teachers_a:
        raise ValueError("multi_teacher_kl needs one (anchors, positives) pair per teacher")
    if whitenings is not None and len(whitenings) != len(teachers_a):
        raise ValueError("one whitening per teacher")
    sims = []
    for k, (ta, tp) in enumerate(zip(teachers_a, teachers_p)):
        if whitenings is not None:
            ta, tp = whitenings[k](ta), whitenings[k](tp)
        else:
            ta, tp = F.normalize(ta, dim=1), F.normalize(tp, dim=1)
        sims.append(ta @ tp.t())
    return relational_kl(student_a, student_p, fuse_similarities(sims, fusion), tau)
