"""One ASTRA set-up reused over many slabs gives what a fresh fbp/sirt call gives."""

import numpy as np
import pytest

from tomodenoise import recon
from tomodenoise.splits import split_indices


def _sino(rng, z=3, a=24, w=20):
    return rng.random((z, a, w)).astype(np.float32), np.linspace(0, np.pi, a, endpoint=False)


def test_fbp_reconstructor_over_slabs_and_split_rows_equals_fbp():
    rng = np.random.default_rng(1)
    sino, ang = _sino(rng)
    idx = split_indices(len(ang), 3)[1]
    with recon.fbp_reconstructor(ang[idx], sino.shape[2], center=9.3, n_pixels=16, filter="hann",
                                 use_gpu="no") as r:
        for _ in range(2):  # the same set-up, slab after slab
            slab = rng.random(sino.shape).astype(np.float32)
            got = r.reconstruct(slab, rows=idx)
            want = recon.fbp(slab[:, idx], ang[idx], center=9.3, n_pixels=16, filter="hann", use_gpu="no")
            np.testing.assert_array_equal(got, want)
    with pytest.raises(RuntimeError, match="closed"):
        r.reconstruct(sino, rows=idx)
    r.close()  # idempotent


def test_sirt_reconstructor_equals_sirt_and_checks_its_input():
    rng = np.random.default_rng(2)
    sino, ang = _sino(rng, z=2)
    with recon.sirt_reconstructor(ang, sino.shape[2], iterations=5, use_gpu="no") as r:
        np.testing.assert_array_equal(r.reconstruct(sino), recon.sirt(sino, ang, iterations=5, use_gpu="no"))
        with pytest.raises(ValueError, match="does not fit"):
            r.reconstruct(sino[:, :10])
    with pytest.raises(ValueError, match="iterations"):
        recon.sirt_reconstructor(ang, 20, iterations=0)
    with pytest.raises(ValueError, match="unknown FBP filter"):
        recon.fbp_reconstructor(ang, 20, filter="nope")
    with pytest.raises(ValueError, match="angles"):
        recon.fbp_reconstructor(np.array([0.0, np.nan]), 20)
