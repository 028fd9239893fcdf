"""Interlaced Noise2Inverse splits."""

import numpy as np
import pytest

from tomodenoise.splits import split_indices, split_sinogram


def test_split_indices_interlaced():
    idx = split_indices(7, 3)
    assert [s.tolist() for s in idx] == [[0, 3, 6], [1, 4], [2, 5]]
    assert all(s.dtype == np.int64 for s in idx)


@pytest.mark.parametrize("n, k", [(8, 2), (8, 4), (9, 4), (5, 5), (1024, 4)])
def test_split_indices_partition(n, k):
    idx = split_indices(n, k)
    assert len(idx) == k
    allidx = np.sort(np.concatenate(idx))
    np.testing.assert_array_equal(allidx, np.arange(n))
    for j, s in enumerate(idx):
        np.testing.assert_array_equal(s, np.arange(j, n, k))


@pytest.mark.parametrize("n, k", [(8, 1), (8, 0), (8, -2), (4, 5), (0, 2)])
def test_split_indices_bad_k(n, k):
    with pytest.raises(ValueError):
        split_indices(n, k)


def test_split_indices_k_message():
    with pytest.raises(ValueError, match="k=1"):
        split_indices(10, 1)
    with pytest.raises(ValueError, match="exceeds the number of angles"):
        split_indices(3, 4)


def test_split_indices_non_integer():
    with pytest.raises(TypeError):
        split_indices(10, 2.0)


def test_split_sinogram_shapes_and_values():
    rng = np.random.default_rng(0)
    sino = rng.normal(size=(2, 3, 10, 5)).astype(np.float32)  # (time, z, angle, det)
    angles = np.linspace(0, np.pi, 10, endpoint=False)
    parts = split_sinogram(sino, angles, 4)
    assert len(parts) == 4
    assert [p[0].shape for p in parts] == [(2, 3, 3, 5), (2, 3, 3, 5), (2, 3, 2, 5), (2, 3, 2, 5)]
    for j, (s, a) in enumerate(parts):
        assert s.dtype == np.float32 and s.flags.c_contiguous
        np.testing.assert_array_equal(s, sino[..., j::4, :])
        np.testing.assert_array_equal(a, angles[j::4])
    # reassembling gives the original
    back = np.empty_like(sino)
    for j, (s, _) in enumerate(parts):
        back[..., j::4, :] = s
    np.testing.assert_array_equal(back, sino)


def test_split_sinogram_errors():
    angles = np.linspace(0, np.pi, 6, endpoint=False)
    with pytest.raises(ValueError, match="one angle per sinogram row"):
        split_sinogram(np.zeros((5, 4)), angles, 2)
    with pytest.raises(ValueError):
        split_sinogram(np.zeros(6), angles, 2)
    with pytest.raises(ValueError):
        split_sinogram(np.zeros((6, 4)), angles, 7)
