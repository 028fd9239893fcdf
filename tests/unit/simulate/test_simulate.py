"""Phantoms (foam, ellipses) with exact projections and the benchmark noise model."""

import h5py
import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

import tomodenoise.simulate as sim
from tomodenoise import recon
from tomodenoise.simulate.ellipses import ellipse_phantom, ellipse_sinogram, random_ellipses
from tomodenoise.simulate.foam import foam_slice, generate_foam, load_spheres, project_foam
from tomodenoise.simulate.noise import photon_counts, poisson_noise


def test_exports():
    for name in ("load_spheres", "generate_foam", "project_foam", "foam_slice", "poisson_noise",
                 "photon_counts", "ellipse_phantom", "ellipse_sinogram", "random_ellipses"):
        assert callable(getattr(sim, name))


# --------------------------------------------------------------------------- ellipses


def test_random_ellipses_reproducible_and_inside():
    a = random_ellipses(64, 5, n_ellipses=7)
    assert a.shape == (7, 6)
    np.testing.assert_array_equal(a, random_ellipses(64, 5, n_ellipses=7))
    assert not np.array_equal(a, random_ellipses(64, 6, n_ellipses=7))
    reach = np.hypot(a[:, 1], a[:, 2]) + a[:, 3:5].max(axis=1)
    assert np.all(reach <= 32)


def test_ellipse_phantom():
    img = ellipse_phantom(32, 1)
    assert img.shape == (32, 32) and img.dtype == np.float32
    np.testing.assert_array_equal(img, ellipse_phantom(32, np.random.default_rng(1)))
    one = ellipse_phantom(32, ellipses=[1.0, 0.0, 0.0, 10.0, 5.0, 0.0], supersampling=4)
    assert abs(one.sum() - np.pi * 10 * 5) < 2.0  # area
    assert one[15:17, 7:24].min() > 0.99 and one[4:8, 15:17].max() == 0  # long axis along x


def test_ellipse_sinogram_chords():
    e = np.array([[2.0, 0.0, 0.0, 6.0, 3.0, 0.0]])  # a = 6 along x, b = 3 along y
    sino = ellipse_sinogram(e, np.array([0.0, np.pi / 2]), 9)
    assert sino.shape == (2, 9) and sino.dtype == np.float32
    # theta = 0: rays along y -> chord 2b at u = 0; theta = pi / 2: rays along x -> 2a
    assert sino[0, 4] == pytest.approx(2.0 * 6.0)
    assert sino[1, 4] == pytest.approx(2.0 * 12.0)
    assert sino[0, 4 + 3] == pytest.approx(2.0 * 2 * 3.0 * np.sqrt(1 - (3 / 6) ** 2))
    rot = ellipse_sinogram([2.0, 0.0, 0.0, 6.0, 3.0, np.pi / 2], np.array([0.0]), 9)
    assert rot[0, 4] == pytest.approx(24.0)
    # off-centre: the shadow moves by x0 cos + y0 sin; centre= shifts the detector
    off = ellipse_sinogram([1.0, 2.0, -1.0, 1.0, 1.0, 0.0], np.array([0.0, np.pi / 2]), 9)
    assert np.argmax(off[0]) == 6 and np.argmax(off[1]) == 3
    shifted = ellipse_sinogram(e, np.array([0.0]), 9, center=5.0)
    np.testing.assert_allclose(shifted[0, 1:], sino[0, :-1], rtol=1e-6)


def test_ellipse_errors():
    with pytest.raises(ValueError):
        ellipse_sinogram(np.zeros((2, 5)), np.zeros(3), 8)
    with pytest.raises(ValueError):
        ellipse_sinogram([1.0, 0, 0, -1.0, 1.0, 0], np.zeros(3), 8)
    with pytest.raises(ValueError):
        random_ellipses(2)


# --------------------------------------------------------------------------- foam


def test_load_spheres(tmp_path):
    rows = np.array([[0.1, 0.2, 0.3, 0.05, 0.0], [-0.4, 0.0, 0.1, 0.1, 0.0]], np.float32)
    path = tmp_path / "phantom.h5"
    with h5py.File(path, "w") as f:
        f["spheres"] = rows.ravel()
    got = load_spheres(path)
    assert got.dtype == np.float32 and got.shape == (2, 5)
    np.testing.assert_array_equal(got, rows)


def test_load_spheres_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_spheres(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["other"] = np.zeros(5)
    with pytest.raises(ValueError, match="'spheres'") as exc:
        load_spheres(bad)
    assert "bad.h5" in str(exc.value)
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f["spheres"] = np.zeros(7)
    with pytest.raises(ValueError, match="shape"):
        load_spheres(odd)
    notes = tmp_path / "notes.h5"
    notes.write_text("not hdf5")
    with pytest.raises(ValueError, match="HDF5"):
        load_spheres(notes)


def test_generate_foam_valid_and_reproducible():
    foam = generate_foam(7, n_spheres=300, max_radius=0.2)
    assert foam.shape == (300, 5) and foam.dtype == np.float32
    np.testing.assert_array_equal(foam, generate_foam(7, n_spheres=300, max_radius=0.2))
    assert not np.array_equal(foam, generate_foam(8, n_spheres=300, max_radius=0.2))
    f = foam.astype(np.float64)
    r = f[:, 3]
    assert r[0] == pytest.approx(0.2) and np.all(r <= 0.2 + 1e-7) and np.all(r > 0)
    assert np.all(np.diff(r) <= 1e-7)  # largest first
    assert np.all(np.hypot(f[:, 0], f[:, 1]) + r <= 1.0 + 1e-6)  # inside the cylinder
    assert np.all(np.abs(f[:, 2]) <= 1.0) and np.all(f[:, 4] == 0)
    gap = squareform(pdist(f[:, :3])) - (r[:, None] + r[None, :])
    np.fill_diagonal(gap, 1.0)
    assert gap.min() >= -1e-6  # no overlap


def test_generate_foam_errors():
    with pytest.raises(ValueError):
        generate_foam(0, n_spheres=0)
    with pytest.raises(ValueError):
        generate_foam(0, n_spheres=10, max_radius=0)
    with pytest.raises(ValueError):
        generate_foam(0, n_spheres=10, n_trials=5)


def brute_force(spheres, theta, u, z):
    """Line integral of one ray (physical units), straight from the definition."""
    val = 2 * np.sqrt(max(1 - u * u, 0.0))
    s = spheres.astype(np.float64)
    rho2 = s[:, 3] ** 2 - (z - s[:, 2]) ** 2
    m = rho2 > 0
    d = u - (s[m, 0] * np.cos(theta) + s[m, 1] * np.sin(theta))
    return val + np.sum((s[m, 4] - 1) * 2 * np.sqrt(np.clip(rho2[m] - d * d, 0, None)))


def test_project_foam_cylinder_and_centred_sphere():
    ps = 0.1
    ang = np.array([0.0, 1.0])
    # no sphere in these planes: only the cylinder, in pixel units
    far = np.array([[0.0, 0.0, 5.0, 0.5, 0.0]])
    p = project_foam(far, ang, 25, [0.0, 0.3], ps, supersampling=1)
    assert p.shape == (2, 2, 25) and p.dtype == np.float32
    u = (np.arange(25) - 12) * ps
    np.testing.assert_allclose(p[0, 0], 2 * np.sqrt(np.clip(1 - u**2, 0, None)) / ps, rtol=1e-6, atol=1e-5)
    # a void of radius 0.5 at the centre: plane z cuts a circle of radius sqrt(0.25 - z^2)
    cen = np.array([[0.0, 0.0, 0.0, 0.5, 0.0]])
    p = project_foam(cen, ang, 25, [0.0, 0.3], ps, supersampling=1)
    assert p[0, 0, 12] == pytest.approx((2 - 1.0) / ps, rel=1e-6)
    assert p[1, 1, 12] == pytest.approx((2 - 0.8) / ps, rel=1e-6)
    # supersampling averages s x s sub-rays
    p2 = project_foam(cen, ang, 25, 0.0, ps, supersampling=2)
    sub = [brute_force(cen, 0.0, 5 * ps + du, dz) for du in (-ps / 4, ps / 4) for dz in (-ps / 4, ps / 4)]
    assert p2[0, 0, 17] == pytest.approx(np.mean(sub) / ps, rel=1e-6)


def test_project_foam_matches_brute_force():
    foam = generate_foam(3, n_spheres=150)
    foam[::5, 4] = 0.5  # some spheres with non-zero density
    ang = np.linspace(0, np.pi, 12, endpoint=False)
    ps, n_det, s = 2 / 40, 52, 2
    zs = [0.0, 0.37]
    p = project_foam(foam, ang, n_det, zs, ps, supersampling=s)
    rng = np.random.default_rng(0)
    offs = ((np.arange(s) + 0.5) / s - 0.5) * ps
    for _ in range(40):
        iz, a, c = rng.integers(2), rng.integers(12), rng.integers(n_det)
        u = (c - (n_det - 1) / 2) * ps
        want = np.mean([brute_force(foam, ang[a], u + du, zs[iz] + dz) for du in offs for dz in offs]) / ps
        assert p[iz, a, c] == pytest.approx(want, rel=1e-5, abs=1e-4)
    # the chunking of the work does not change the result
    np.testing.assert_allclose(project_foam(foam, ang, n_det, zs, ps, s, max_elems=500), p, rtol=1e-6, atol=1e-5)


def test_project_foam_errors():
    foam = np.array([[0.0, 0.0, 0.0, 0.5, 0.0]])
    ang = np.zeros(3)
    with pytest.raises(ValueError):
        project_foam(foam[:, :4], ang, 10, 0.0, 0.1)
    with pytest.raises(ValueError):
        project_foam(foam, ang, 0, 0.0, 0.1)
    with pytest.raises(ValueError):
        project_foam(foam, ang, 10, 0.0, 0.1, supersampling=0)
    with pytest.raises(ValueError):
        project_foam(foam, ang, 10, 0.0, -0.1)


def test_foam_fbp_orientation():
    """A void at (x, y) = (0.4, 0.25) appears at column (n-1)/2 + x/ps, row (n-1)/2 - y/ps."""
    foam = np.array([[0.4, 0.25, 0.0, 0.25, 0.0]], np.float32)
    n, ps = 40, 2 / 36
    ang = np.linspace(0, np.pi, 64, endpoint=False)
    sino = project_foam(foam, ang, n, 0.0, ps, supersampling=2)
    rec = recon.fbp(sino, ang, use_gpu="no")[0]
    row, col = 19.5 - 0.25 / ps, 19.5 + 0.4 / ps
    assert rec[int(round(row)), int(round(col))] < 0.2
    # material at the mirrored places
    assert rec[int(round(39 - row)), int(round(col))] > 0.8
    assert rec[int(round(row)), int(round(39 - col))] > 0.8
    assert rec[int(round(col)), int(round(row))] > 0.8
    assert abs(rec[19:21, 8:12].mean() - 1.0) < 0.1
    ref = foam_slice(foam, n, 0.0, ps)
    inner = ((np.mgrid[:n, :n] - 19.5) ** 2).sum(0) < 15**2
    assert np.corrcoef(rec[inner], ref[inner])[0, 1] > 0.9


def test_foam_slice():
    foam = np.array([[0.3, -0.2, 0.0, 0.3, 0.0], [0.0, 0.0, 0.9, 0.1, 0.0]], np.float32)
    ps = 2 / 64
    img = foam_slice(foam, 80, 0.1, ps)
    assert img.shape == (80, 80) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    disk_area = np.pi * 1.0**2 / ps**2
    void_area = np.pi * (0.3**2 - 0.1**2) / ps**2
    assert img.sum() == pytest.approx(disk_area - void_area, rel=0.01)
    # void centre: x = 0.3 -> column 39.5 + 9.6, y = -0.2 -> row 39.5 + 6.4
    assert img[46, 49] == 0.0 and img[33, 49] == 1.0 and img[0, 0] == 0.0


# --------------------------------------------------------------------------- noise


def test_poisson_noise_reproducible():
    p = np.full((3, 50), 0.4, np.float32)
    a = poisson_noise(p, 100, rng=1)
    assert a.shape == p.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, poisson_noise(p, 100, rng=np.random.default_rng(1)))
    assert not np.array_equal(a, poisson_noise(p, 100, rng=2))
    c = photon_counts(p, 100, rng=1)
    assert c.dtype == np.float32
    np.testing.assert_array_equal(c, photon_counts(p, 100, rng=1))


def test_poisson_noise_unbiased_at_high_dose():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1.5, size=(4, 200)).astype(np.float32)  # physical units
    noisy = poisson_noise(p, 1e8, absorption=2.76, rng=rng)
    np.testing.assert_allclose(noisy, p, atol=2e-3)
    # pixel units in, pixel units out
    ps = 2 / 512
    noisy_px = poisson_noise(p / ps, 1e8, rng=rng, pixel_size=ps)
    np.testing.assert_allclose(noisy_px * ps, p, atol=2e-3)


def test_photon_counts_statistics_and_zeros():
    rng = np.random.default_rng(0)
    p = np.full(200_000, 0.5)
    counts = photon_counts(p, 50.0, absorption=2.0, rng=rng, zero_to_one=False)
    assert counts.mean() == pytest.approx(50 * np.exp(-1.0), rel=0.01)
    assert counts.var() == pytest.approx(50 * np.exp(-1.0), rel=0.03)
    # at I0 = 10 on a strongly absorbing ray, zeros occur at the Poisson rate and become 1
    p = np.full(200_000, 0.7)
    lam = 10 * np.exp(-2.76 * 0.7)
    raw = photon_counts(p, 10, rng=rng, zero_to_one=False)
    assert (raw == 0).mean() == pytest.approx(np.exp(-lam), abs=0.005)
    clamped = photon_counts(p, 10, rng=1)
    assert clamped.min() == 1
    noisy = poisson_noise(p, 10, rng=1)
    assert noisy.max() == pytest.approx(np.log(10) / 2.76, rel=1e-6)


def test_noise_on_foam_zero_fraction():
    """Few-percent zero counts at I0 = 10 on a foam, as predicted by Poisson statistics."""
    foam = generate_foam(2, n_spheres=800)
    ps = 2 / 32
    ang = np.linspace(0, np.pi, 64, endpoint=False)
    p = project_foam(foam, ang, 48, [0.0, 0.2], ps, supersampling=1)
    counts = photon_counts(p, 10, 2.76, rng=0, pixel_size=ps, zero_to_one=False)
    inside = p > 0
    expected = np.exp(-10 * np.exp(-2.76 * ps * p[inside])).mean()
    frac = (counts[inside] == 0).mean()
    assert 0.005 < frac < 0.5
    assert frac == pytest.approx(expected, abs=0.02)


def test_noise_errors():
    with pytest.raises(ValueError, match="i0"):
        poisson_noise(np.zeros(3), 0)
    with pytest.raises(ValueError, match="absorption"):
        poisson_noise(np.zeros(3), 10, absorption=-1)
    with pytest.raises(ValueError, match="NaN"):
        photon_counts(np.array([np.nan]), 10)


# --------------------------------------------------------------------------- benchmark phantom


@pytest.mark.reference
def test_benchmark_phantom_absorption(shared_data):
    """phantom.h5 with absorption 2.76: ~50 % mean absorption where the cylinder projects."""
    path = shared_data / "foam_n2i" / "phantom.h5"
    if not path.exists():
        pytest.skip("foam_n2i/phantom.h5 absent")
    spheres = load_spheres(path)
    assert spheres.shape == (100_000, 5)
    ps = 2 / 512
    ang = np.linspace(0, np.pi, 16, endpoint=False)
    p = project_foam(spheres, ang, 768, 0.0, ps, supersampling=2)
    phys = p * ps
    inside = phys > 0
    absorption = 1 - np.exp(-2.76 * phys[inside]).mean()
    assert 0.45 < absorption < 0.55
    counts = photon_counts(p, 10, 2.76, rng=0, pixel_size=ps, zero_to_one=False)
    assert 0.002 < (counts == 0).mean() < 0.06
