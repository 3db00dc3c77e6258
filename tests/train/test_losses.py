"""Loss functions against hand-computed answers."""
import math

import pytest
import torch
import torch.nn.functional as F

from descplug.train import losses


def unit(*degrees):
    t = torch.tensor([math.radians(d) for d in degrees])
    return torch.stack([t.cos(), t.sin()], dim=1)


def chord(degrees):
    return 2 * math.sin(math.radians(degrees) / 2)


def test_triplet_orthogonal_pairs():
    a = torch.eye(2)
    assert losses.triplet_loss(a, a, margin=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.triplet_loss(a, a, margin=2.0).item() == pytest.approx(2 - math.sqrt(2), abs=1e-5)


def test_triplet_anchor_swap():
    a, p = unit(0, 90), unit(0, 10)
    no_swap = ((1 + 0 - chord(10)) + max(0, 1 + chord(80) - chord(90))) / 2
    swap = ((1 + 0 - chord(10)) + (1 + chord(80) - chord(10))) / 2
    assert losses.triplet_loss(a, p, 1.0, anchor_swap=False).item() == pytest.approx(no_swap, abs=1e-5)
    assert losses.triplet_loss(a, p, 1.0, anchor_swap=True).item() == pytest.approx(swap, abs=1e-5)


def test_triplet_needs_two_pairs():
    with pytest.raises(ValueError):
        losses.triplet_loss(torch.eye(2)[:1], torch.eye(2)[:1])


def test_spread_out_regularizer_is_zero_for_orthogonal_negatives_and_penalises_a_shared_direction():
    eye = torch.eye(8)
    assert losses.spread_out_regularizer(eye, eye).item() == pytest.approx(0.0)
    # every descriptor 0.8 along one shared axis: non-matching similarities all 0.64
    shared = F.normalize(torch.cat([torch.full((8, 1), 0.8), 0.6 * torch.eye(8)], dim=1), dim=1)
    assert losses.spread_out_regularizer(shared, shared).item() == pytest.approx(0.64 ** 2 + 0.64 ** 2 - 1 / 9)
    with pytest.raises(ValueError, match="at least two pairs"):
        losses.spread_out_regularizer(eye[:1], eye[:1])


def test_desdis_regularizer_known_values():
    # student: positives cos 1, negatives cos 0; teacher: positives cos 0.5, negatives cos 0.5 (60 deg)
    s = torch.eye(2)
    ta, tp = unit(0, 90), unit(60, 30)
    assert (ta @ tp.t()).diagonal().tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    for negatives in ("student", "teacher", "all"):
        expected_neg = abs(0 - (ta @ tp.t())[0, 1].item())  # both off-diagonal teacher sims are equal
        l1 = losses.desdis_regularizer(s, s, ta, tp, p=1, negatives=negatives)
        l2 = losses.desdis_regularizer(s, s, ta, tp, p=2, negatives=negatives)
        assert l1.item() == pytest.approx(0.5 + expected_neg, abs=1e-5)
        assert l2.item() == pytest.approx(0.25 + expected_neg ** 2, abs=1e-5)


def test_desdis_regularizer_zero_when_student_is_teacher():
    x = F.normalize(torch.randn(8, 16), dim=1)
    y = F.normalize(x + 0.1 * torch.randn(8, 16), dim=1)
    assert losses.desdis_regularizer(x, y, x, y).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        losses.desdis_regularizer(x, y, x, y, p=3)
    with pytest.raises(ValueError):
        losses.desdis_regularizer(x, y, x, y, negatives="random")


def test_desdis_hardest_negative_choice():
    # 3 pairs; the student's hardest negative of row 0 is column 1, the teacher's is column 2
    s_a, s_p = unit(0, 120, 240), unit(0, 20, 200)
    t_a, t_p = unit(0, 120, 240), unit(0, 200, 20)
    sim_s, sim_t = s_a @ s_p.t(), t_a @ t_p.t()
    mask_s = losses._negative_mask(sim_s, sim_t, "student", anchor_swap=False)
    mask_t = losses._negative_mask(sim_s, sim_t, "teacher", anchor_swap=False)
    assert mask_s[0].tolist() == [False, True, False]
    assert mask_t[0].tolist() == [False, False, True]
    assert mask_s.sum() == 3 and not mask_s.diagonal().any()


def test_cosine_distillation():
    assert losses.cosine_distillation(unit(0, 90), unit(60, 90)).item() == pytest.approx(0.25, abs=1e-6)
    with pytest.raises(ValueError):
        losses.cosine_distillation(torch.ones(2, 3), torch.ones(2, 4))


def test_track_centroids_average_every_patch_of_a_track():
    # pairs 0 and 2 show track 5 (anchor at 0 deg, positives at 60 and 120 deg): both get the unit
    # mean of 0, 60, 0, 120 deg; pair 1 (track 3) gets the bisector of its own two views
    anchors, positives = unit(0, 90, 0), unit(60, 0, 120)
    got = losses.track_centroids(anchors, positives, torch.tensor([5, 3, 5]))
    mean5 = F.normalize(unit(0, 60, 0, 120).sum(0), dim=0)
    assert torch.allclose(got[0], mean5, atol=1e-6) and torch.allclose(got[2], mean5, atol=1e-6)
    assert torch.allclose(got[1], unit(45)[0], atol=1e-6)


def test_whitening_gives_identity_covariance_and_floors_eigenvalues():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 4, generator=g) * torch.tensor([5.0, 2.0, 1.0, 0.0]) + 3.0
    w = losses.Whitening.fit(x, floor=0.01)
    z = ((x - w.mean) @ w.projection).double()
    cov = z.t() @ z / (len(z) - 1)
    assert torch.allclose(cov[:3, :3], torch.eye(3, dtype=torch.float64), atol=0.02)
    assert torch.isfinite(w.projection).all()  # the zero-variance direction was floored
    assert losses.Whitening.fit(x, dim=2).projection.shape == (4, 2)
    assert torch.allclose(w(x).norm(dim=1), torch.ones(len(x)), atol=1e-5)


def test_fusion():
    s1 = torch.tensor([[0.9, 0.1], [0.4, 0.5]])
    s2 = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    assert losses.fuse_similarities([s1, s2], "maxmin").flatten().tolist() == pytest.approx([0.9, 0.1, 0.2, 0.8])
    assert losses.fuse_similarities([s1, s2], "mean").flatten().tolist() == pytest.approx([0.8, 0.2, 0.3, 0.65])
    with pytest.raises(ValueError):
        losses.fuse_similarities([s1], "median")


def test_relational_kl_known_value():
    a = p = torch.eye(2)  # student similarities [[1, 0], [0, 1]]
    target = torch.tensor([[0.5, 0.5], [0.5, 0.5]])  # uniform rows
    tau = 0.5
    q = torch.softmax(torch.tensor([1.0, 0.0]) / tau, 0)
    expected = sum(0.5 * math.log(0.5 / q_i) for q_i in q.tolist())  # KL(uniform || q), every row
    assert losses.relational_kl(a, p, target, tau).item() == pytest.approx(expected, abs=1e-5)
    assert losses.relational_kl(a, p, a @ p.t(), tau).item() == pytest.approx(0.0, abs=1e-6)


def test_multi_teacher_kl():
    x = F.normalize(torch.randn(6, 8), dim=1)
    y = F.normalize(x + 0.3 * torch.randn(6, 8), dim=1)
    assert losses.multi_teacher_kl(x, y, [x], [y]).item() == pytest.approx(0.0, abs=1e-5)
    w = [losses.Whitening.fit(torch.randn(100, 8))]
    value = losses.multi_teacher_kl(x, y, [x], [y], w, fusion="mean")
    assert value.item() >= 0
    with pytest.raises(ValueError):
        losses.multi_teacher_kl(x, y, [x, x], [y, y], w)
