"""ASTRA reconstruction: scale, orientation, centre, splits, errors."""

import numpy as np
import pytest

from tomodenoise import recon
from tomodenoise.simulate.ellipses import ellipse_phantom, ellipse_sinogram

ANG32 = np.linspace(0, np.pi, 32, endpoint=False)
ANG48 = np.linspace(0, np.pi, 48, endpoint=False)

# one body, one off-centre feature (pixel units, +y up)
ELL = np.array([[1.0, 0.0, 0.0, 14.0, 10.0, 0.3], [0.5, 5.0, 4.0, 4.0, 3.0, 1.0]])


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def disk_mask(n, radius, x0=0.0, y0=0.0):
    i, j = np.mgrid[:n, :n]
    x, y = j - (n - 1) / 2, (n - 1) / 2 - i
    return (x - x0) ** 2 + (y - y0) ** 2 < radius**2


def test_gpu_available_is_bool():
    assert isinstance(recon.gpu_available(), bool)


@pytest.mark.skipif(recon.gpu_available(), reason="a GPU is present")
def test_use_gpu_yes_without_gpu_raises():
    with pytest.raises(RuntimeError, match="use_cuda"):
        recon.fbp(np.zeros((4, 8), np.float32), ANG32[:4], use_gpu="yes")


def test_use_gpu_bad_value():
    with pytest.raises(ValueError, match="use_gpu"):
        recon.fbp(np.zeros((4, 8), np.float32), ANG32[:4], use_gpu="maybe")


def test_fbp_shapes():
    sino = ellipse_sinogram(ELL, ANG32, 40)
    r2 = recon.fbp(sino, ANG32, use_gpu="no")
    assert r2.shape == (1, 40, 40) and r2.dtype == np.float32
    r3 = recon.fbp(np.stack([sino, 2 * sino]), ANG32, n_pixels=24, use_gpu="no")
    assert r3.shape == (2, 24, 24)
    np.testing.assert_allclose(r3[1], 2 * r3[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [2, 4])
def test_mean_of_split_fbps_equals_full_fbp(k):
    sino = np.stack([ellipse_sinogram(ELL, ANG48, 40), ellipse_sinogram(ELL[:1], ANG48, 40)])
    full = recon.fbp(sino, ANG48, use_gpu="no")
    parts = recon.reconstruct_splits(sino, ANG48, k, use_gpu="no")
    assert parts.shape == (k, 2, 40, 40) and parts.dtype == np.float32
    assert rel(parts.mean(axis=0), full) < 1e-5
    # with a centre and another filter too
    kw = dict(center=20.25, filter="hann", use_gpu="no")
    full_c = recon.fbp(sino, ANG48, **kw)
    assert rel(recon.reconstruct_splits(sino, ANG48, k, **kw).mean(axis=0), full_c) < 1e-5


def test_reconstruct_splits_errors():
    sino = np.zeros((1, 8, 10), np.float32)
    with pytest.raises(ValueError):
        recon.reconstruct_splits(sino, ANG32[:8], 1)
    with pytest.raises(ValueError, match="method"):
        recon.reconstruct_splits(sino, ANG32[:8], 2, method="art")


@pytest.mark.parametrize("n_angles", [24, 90])
def test_uniform_disk_reconstructs_to_one(n_angles):
    """Line integrals in pixel units -> attenuation per pixel, whatever the angle count."""
    ang = np.linspace(0, np.pi, n_angles, endpoint=False)
    disk = np.array([[1.0, 1.5, -2.0, 15.0, 15.0, 0.0]])
    rec = recon.fbp(ellipse_sinogram(disk, ang, 48, supersampling=4), ang, use_gpu="no")[0]
    inner = disk_mask(48, 10, 1.5, -2.0)
    assert abs(rec[inner].mean() - 1.0) < 0.01
    outside = disk_mask(48, 23) & ~disk_mask(48, 19, 1.5, -2.0)  # inside the field of view
    assert abs(rec[outside].mean()) < 0.02


def test_pixel_size_scaling():
    sino = ellipse_sinogram(ELL, ANG32, 40)
    a = recon.fbp(sino, ANG32, use_gpu="no")
    b = recon.fbp(sino * 0.01, ANG32, pixel_size=0.01, use_gpu="no")
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_forward_project_line_integrals():
    img = np.zeros((20, 24), np.float32)
    img[5:9, 3:10] = 2.0
    sino = recon.forward_project(img, np.array([0.0, np.pi / 2]), use_gpu="no")
    assert sino.shape == (1, 2, 24) and sino.dtype == np.float32
    # theta = 0: rays along y, detector u = x: column sums
    np.testing.assert_allclose(sino[0, 0], img.sum(axis=0), atol=1e-4)
    # theta = pi / 2: u = y, +y up = decreasing row index
    np.testing.assert_allclose(sino[0, 1, 2:22], img.sum(axis=1)[::-1], atol=1e-4)
    vol = np.stack([img, img])
    assert recon.forward_project(vol, ANG32, n_det=30, use_gpu="no").shape == (2, 32, 30)


def test_forward_project_matches_analytic_sinogram():
    img = ellipse_phantom(40, ellipses=ELL, supersampling=4)
    fp = recon.forward_project(img, ANG32, use_gpu="no")[0]
    assert rel(fp, ellipse_sinogram(ELL, ANG32, 40, supersampling=4)) < 0.02


def test_forward_then_fbp_roundtrip():
    i, j = np.mgrid[:40, :40]
    img = np.exp(-((j - 22.0) ** 2 + (i - 16.0) ** 2) / (2 * 4.0**2)).astype(np.float32)
    img += 0.5 * np.exp(-((j - 14.0) ** 2 + (i - 24.0) ** 2) / (2 * 3.0**2)).astype(np.float32)
    rec = recon.fbp(recon.forward_project(img, ANG48, use_gpu="no"), ANG48, use_gpu="no")[0]
    inner = disk_mask(40, 15)
    assert rel(rec[inner], img[inner]) < 0.05


def test_orientation_upright_and_unflipped():
    ell = np.array([[1.0, 9.0, 6.0, 4.0, 2.0, 0.4]])  # small blob in the upper right
    ph = ellipse_phantom(40, ellipses=ell)
    rec = recon.fbp(ellipse_sinogram(ell, ANG48, 40), ANG48, use_gpu="no")[0]
    w = np.clip(rec, 0, None) * (rec > 0.5 * rec.max())
    i, j = np.mgrid[:40, :40]
    ci, cj = (w * i).sum() / w.sum(), (w * j).sum() / w.sum()  # centre of mass of the blob
    assert abs(cj - (19.5 + 9)) < 0.5 and abs(ci - (19.5 - 6)) < 0.5
    good = np.corrcoef(rec.ravel(), ph.ravel())[0, 1]
    for flipped in (ph[::-1], ph[:, ::-1], ph.T):
        assert good > np.corrcoef(rec.ravel(), flipped.ravel())[0, 1] + 0.5


@pytest.mark.parametrize("shift", [3, -4])
def test_integer_centre_matches_centred_detector(shift):
    w = 40
    centre = (w - 1) / 2 + shift
    sino = ellipse_sinogram(ELL, ANG32, w, center=centre)
    rec = recon.fbp(sino, ANG32, center=centre, use_gpu="no")[0]
    # the padded detector is w + 2 |shift| wide, axis in the middle
    ref = recon.fbp(ellipse_sinogram(ELL, ANG32, w + 2 * abs(shift)), ANG32, n_pixels=w, use_gpu="no")[0]
    assert rel(rec, ref) < 1e-4


@pytest.mark.parametrize("centre", [21.25, 17.9, 16.0, 19.5])
def test_off_centre_axis(centre):
    """An off-centre axis is put back in the middle: as good as a centred scan.

    (Reconstructions of differently sampled sinograms differ in their aliasing, so
    compare each with the phantom rather than with each other.)
    """
    w = 40
    ph = ellipse_phantom(w, ellipses=ELL)
    inner = disk_mask(w, 16)
    ref = recon.fbp(ellipse_sinogram(ELL, ANG48, w, supersampling=4), ANG48, use_gpu="no")[0]
    sino = ellipse_sinogram(ELL, ANG48, w, center=centre, supersampling=4)
    rec = recon.fbp(sino, ANG48, center=centre, use_gpu="no")[0]
    assert rel(rec[inner], ph[inner]) < 1.35 * rel(ref[inner], ph[inner])
    if centre != 19.5:  # ignoring the centre is much worse
        bad = recon.fbp(sino, ANG48, use_gpu="no")[0]
        assert rel(bad[inner], ph[inner]) > 4 * rel(rec[inner], ph[inner])


def test_sirt_scale_and_shape():
    disk = np.array([[1.0, 0.0, 0.0, 11.0, 11.0, 0.0]])
    sino = ellipse_sinogram(disk, ANG32, 32, supersampling=4)
    rec = recon.sirt(np.stack([sino, sino]), ANG32, iterations=150, use_gpu="no")
    assert rec.shape == (2, 32, 32) and rec.dtype == np.float32
    assert abs(rec[0][disk_mask(32, 7)].mean() - 1.0) < 0.03
    pos = recon.sirt(sino, ANG32, iterations=20, min_constraint=0.0, use_gpu="no")
    assert pos.min() >= 0.0


def test_sirt_errors():
    sino = np.zeros((8, 10), np.float32)
    with pytest.raises(ValueError, match="iterations"):
        recon.sirt(sino, ANG32[:8], iterations=0)
    with pytest.raises(ValueError, match="projector"):
        recon.sirt(sino, ANG32[:8], projector="cuda")


def test_filters():
    sino = ellipse_sinogram(ELL, ANG32, 40)
    base = recon.fbp(sino, ANG32, use_gpu="no")
    np.testing.assert_array_equal(recon.fbp(sino, ANG32, filter="Ram-Lak", use_gpu="no"), base)
    for name in ("shepp-logan", "hann", "cosine"):
        r = recon.fbp(sino, ANG32, filter=name, use_gpu="no")
        assert np.all(np.isfinite(r)) and not np.allclose(r, base)
    with pytest.raises(ValueError, match="unknown FBP filter"):
        recon.fbp(sino, ANG32, filter="wiener")


def test_input_errors():
    sino = ellipse_sinogram(ELL, ANG32, 40)
    with pytest.raises(ValueError, match="one angle per projection"):
        recon.fbp(sino, ANG48)
    bad = sino.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        recon.fbp(bad, ANG32)
    with pytest.raises(ValueError, match="n_pixels"):
        recon.fbp(sino, ANG32, n_pixels=0)
    with pytest.raises(ValueError, match="outside the detector"):
        recon.fbp(sino, ANG32, center=45.0)
    with pytest.raises(ValueError):
        recon.fbp(sino[None, None], ANG32)
    with pytest.raises(ValueError):
        recon.forward_project(np.zeros((2, 2, 2, 2)), ANG32)


@pytest.mark.reference
def test_nabu_reference_fbp(shared_data):
    """ASTRA FBP of nabu's MRI sinogram: same scale and orientation as the stored FBP."""
    sino_f = shared_data / "nabu_fbp" / "mri_sino500.npz"
    rec_f = shared_data / "nabu_fbp" / "mri_rec_astra.npz"
    if not (sino_f.exists() and rec_f.exists()):
        pytest.skip("nabu_fbp reference files absent")
    sino = np.load(sino_f)["data"]
    ref = np.load(rec_f)["data"]
    angles = np.linspace(0, np.pi, sino.shape[0], endpoint=False)
    rec = recon.fbp(sino, angles, use_gpu="no")[0]
    assert rec.shape == ref.shape == (512, 512)
    inner = disk_mask(512, 200)
    scale = float((rec[inner] * ref[inner]).sum() / (rec[inner] ** 2).sum())
    assert 0.98 < scale < 1.02
    assert rel(rec[inner], ref[inner]) < 0.02
    for flipped in (rec[::-1], rec[:, ::-1], rec.T):
        assert rel(flipped[inner], ref[inner]) > 0.2


@pytest.mark.gpu
@pytest.mark.skipif(not recon.gpu_available(), reason="needs a CUDA GPU (astra.use_cuda())")
def test_gpu_matches_cpu_scale():
    disk = np.array([[1.0, 1.0, 0.0, 14.0, 14.0, 0.0]])
    sino = ellipse_sinogram(disk, ANG48, 40, supersampling=4)
    inner = disk_mask(40, 9, 1.0, 0.0)
    for n in (ANG48, ANG48[::4]):
        s = sino if n is ANG48 else sino[::4]
        cpu = recon.fbp(s, n, use_gpu="no")[0]
        gpu = recon.fbp(s, n, use_gpu="yes")[0]
        assert abs(gpu[inner].mean() / cpu[inner].mean() - 1) < 0.01
    parts = recon.reconstruct_splits(sino, ANG48, 4, use_gpu="yes")
    assert rel(parts.mean(axis=0), recon.fbp(sino, ANG48, use_gpu="yes")) < 1e-4
    s_cpu = recon.sirt(sino, ANG48, iterations=50, use_gpu="no")[0]
    s_gpu = recon.sirt(sino, ANG48, iterations=50, use_gpu="yes")[0]
    assert abs(s_gpu[inner].mean() / s_cpu[inner].mean() - 1) < 0.02
    fp_cpu = recon.forward_project(ellipse_phantom(40, ellipses=disk), ANG48, use_gpu="no")
    fp_gpu = recon.forward_project(ellipse_phantom(40, ellipses=disk), ANG48, use_gpu="yes")
    assert rel(fp_gpu, fp_cpu) < 0.02
