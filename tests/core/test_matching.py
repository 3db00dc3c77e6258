import numpy as np
import pytest

import descplug.matching as matching
from descplug.matching import match_descriptors, matches_to_pairs


def unit(n, d=32, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_permutation_is_recovered():
    a = unit(50)
    perm = np.random.default_rng(1).permutation(50)
    m, s = match_descriptors(a, a[perm])
    np.testing.assert_array_equal(perm[m], np.arange(50))
    np.testing.assert_allclose(s, 1.0, atol=1e-5)


def test_mutual_ratio_and_distance():
    e = np.eye(8, dtype=np.float32)
    a = e[:3]
    b = np.stack([e[0] + 0.05 * e[4], e[0] + 0.1 * e[1], e[2] + 0.5 * e[3]])
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    assert match_descriptors(a, b, mutual=False)[0][1] == 1
    assert match_descriptors(a, b, mutual=True)[0][1] == -1  # b[1]'s nearest is a[0], not a[1]
    # a[0]: distances 0.050 to b[0] and 0.0998 to b[1] -> ratio 0.50
    assert match_descriptors(a, b, ratio=0.4)[0][0] == -1
    assert match_descriptors(a, b, ratio=0.6)[0][0] == 0
    # a[2]-b[2] distance is sqrt(2 - 2 / sqrt(1.25)) = 0.46
    assert match_descriptors(a, b, max_distance=0.3)[0][2] == -1
    assert match_descriptors(a, b, max_distance=0.5)[0][2] == 2


def test_chunking_does_not_change_results(monkeypatch):
    a, b = unit(300, seed=3), unit(280, seed=4)
    expected = match_descriptors(a, b, ratio=0.95)
    monkeypatch.setattr(matching, "ROW_CHUNK", 7)
    got = match_descriptors(a, b, ratio=0.95)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], atol=1e-6)


def test_empty_and_single():
    m, s = match_descriptors(np.zeros((0, 8), np.float32), unit(4, 8))
    assert m.shape == (0,) and s.shape == (0,)
    m, _ = match_descriptors(unit(4, 8), unit(1, 8), ratio=0.8)
    assert (m >= -1).all() and m.shape == (4,)
    assert matches_to_pairs(np.array([-1, 2, -1, 0])).tolist() == [[1, 2], [3, 0]]


def test_dimension_mismatch():
    with pytest.raises(ValueError, match="descriptor sizes differ"):
        match_descriptors(unit(3, 8), unit(3, 16))
