"""Preprocessing: flat/dark correction, -log, centre of rotation, the whole step."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from tomodenoise.io import RawScan, ScanError, read_scan
from tomodenoise.preprocess import (
    Preprocessed,
    find_center,
    flat_dark_correct,
    minus_log,
    preprocess,
    remove_outliers,
    remove_rings,
)

SHARED = (Path(__file__).parents[3] / ".." / "shared" / "data").resolve()
TOOTH = Path(__file__).parents[3] / "tomodenoise" / "data" / "tooth.h5"


def _shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference data {p} not available")
    return p


# Discs (x0, y0, radius, attenuation) in pixels about the rotation axis: off-centre, asymmetric.
DISCS = [(0.0, 0.0, 30.0, 0.02), (8.0, -5.0, 9.0, 0.05), (-14.0, 10.0, 5.0, -0.015), (17.0, 14.0, 3.0, 0.08)]


def disc_sinogram(angles: np.ndarray, n_det: int, center: float, discs=DISCS, supersample: int = 4,
                  noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Exact (pixel-averaged) parallel-beam line integrals of discs; rotation axis at ``center``."""
    u = (np.arange(n_det * supersample) + 0.5) / supersample - 0.5 - center
    s = np.zeros((angles.size, u.size))
    for x0, y0, r, mu in discs:
        u0 = x0 * np.cos(angles) + y0 * np.sin(angles)
        s += 2 * mu * np.sqrt(np.clip(r * r - (u[None, :] - u0[:, None]) ** 2, 0, None))
    s = s.reshape(angles.size, n_det, supersample).mean(axis=2)
    if noise:
        s += np.random.default_rng(seed).normal(0, noise * s.max(), s.shape)
    return s.astype(np.float32)


# --------------------------------------------------------------------------------------
# flat/dark, -log
# --------------------------------------------------------------------------------------
def test_flat_dark_correct_formula_and_guard():
    rng = np.random.default_rng(0)
    proj = rng.uniform(100, 900, (5, 3, 7))
    flats = rng.uniform(950, 1050, (4, 3, 7))
    darks = rng.uniform(5, 15, (2, 3, 7))
    out = flat_dark_correct(proj, flats, darks)
    assert out.dtype == np.float32 and out.shape == proj.shape
    expected = (proj - darks.mean(0)) / (flats.mean(0) - darks.mean(0))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    # mean fields given directly give the same
    np.testing.assert_allclose(flat_dark_correct(proj, flats.mean(0), darks.mean(0)), out, rtol=1e-6)
    # a dead pixel (flat == dark): guarded, finite, transmission 1
    flats[:, 1, 2] = darks.mean(0)[1, 2]
    out = flat_dark_correct(proj, flats, darks)
    assert np.isfinite(out).all() and np.all(out[:, 1, 2] == 1.0)
    # no darks: dark = 0; no flats: already transmission
    np.testing.assert_allclose(flat_dark_correct(proj, flats[:, :1, :1].repeat(3, 1).repeat(7, 2), None),
                               proj / flats[:, 0, 0].mean(), rtol=1e-5)
    np.testing.assert_array_equal(flat_dark_correct(proj, None, None), proj.astype(np.float32))
    with pytest.raises(ValueError, match="darks without flats"):
        flat_dark_correct(proj, None, darks)
    with pytest.raises(ValueError, match="flats"):
        flat_dark_correct(proj, flats[:, :, :-1], darks)


@pytest.mark.reference
def test_flat_dark_correct_matches_tomopy_normalize():
    ref = _shared("tomopy_reference")
    out = flat_dark_correct(np.load(ref / "tomo.npy"), np.load(ref / "flat.npy"), np.load(ref / "dark.npy"))
    np.testing.assert_allclose(out, np.load(ref / "normalize.npy"), rtol=1e-6, atol=1e-7)


def test_minus_log_clamps_and_counts():
    t = np.array([[1.0, 0.5, 0.0], [-0.2, np.nan, 1e-9]], dtype=np.float32)
    lines, n = minus_log(t, min_value=1e-6)
    assert n == 4 and lines.dtype == np.float32 and np.isfinite(lines).all()
    np.testing.assert_allclose(lines[0, :2], [0.0, np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(lines[0, 2], -np.log(1e-6), rtol=1e-6)
    with pytest.raises(ValueError):
        minus_log(t, min_value=0)


def test_remove_outliers_and_rings():
    img = np.full((2, 9, 9), 100.0, np.float32)
    img[0, 4, 4] = 5000.0  # a zinger
    out, n = remove_outliers(img, threshold=0.5)
    assert n == 1 and out[0, 4, 4] == 100.0
    sino = disc_sinogram(np.linspace(0, np.pi, 60, endpoint=False), 64, 31.5)
    striped = sino.copy()
    striped[:, 20] += 0.3  # a detector column that reads high: a ring
    fixed = remove_rings(striped[None], size=9)[0]
    assert np.abs(fixed - sino)[:, 20].mean() < 0.25 * 0.3  # most of the stripe is gone
    assert np.abs(fixed - sino)[:, 40:].max() < 0.05  # smooth parts barely touched


# --------------------------------------------------------------------------------------
# centre of rotation
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [-9.3, 0.0, 5.7])
def test_find_center_half_turn(offset):
    n_det = 96
    angles = np.linspace(0, np.pi, 90, endpoint=False)
    true = (n_det - 1) / 2 + offset
    sino = disc_sinogram(angles, n_det, true, noise=0.01)
    assert find_center(sino, angles) == pytest.approx(true, abs=0.25)


@pytest.mark.parametrize("seed", [0, 1])
def test_find_center_very_noisy(seed):
    angles = np.linspace(0, np.pi, 180, endpoint=False)
    sino = disc_sinogram(angles, 96, 50.7, noise=0.2, seed=seed)  # noise sd = 20 % of the maximum
    assert find_center(sino, angles) == pytest.approx(50.7, abs=0.3)


@pytest.mark.parametrize("method", ["vo", "fbp"])
def test_find_center_methods(method):
    n_det = 96
    angles = np.linspace(0, np.pi, 90, endpoint=False)
    true = 51.2
    sino = disc_sinogram(angles, n_det, true, noise=0.01)
    assert find_center(sino, angles, method=method) == pytest.approx(true, abs=0.3)


def test_find_center_full_turn_offset_and_jittered_angles():
    n_det = 96
    rng = np.random.default_rng(1)
    angles = np.deg2rad(90 + np.linspace(0, 360, 120, endpoint=False) + rng.normal(0, 0.02, 120))
    true = 44.6
    sino = disc_sinogram(angles, n_det, true, noise=0.01)
    assert find_center(sino, angles) == pytest.approx(true, abs=0.3)
    # a narrower explicit search range that holds the answer
    assert find_center(sino, angles, search=(35, 55)) == pytest.approx(true, abs=0.3)


def test_find_center_degenerate_and_bad_input():
    angles = np.linspace(0, np.pi, 20, endpoint=False)
    assert find_center(np.ones((20, 32)), angles) == pytest.approx(15.5)  # no structure: the middle
    with pytest.raises(ValueError, match="angles"):
        find_center(np.ones((20, 32)), angles[:-1])
    bad = np.ones((20, 32))
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        find_center(bad, angles)
    with pytest.raises(ValueError, match="fraction"):
        find_center(np.ones((20, 32)), angles, search=0.9)


def test_find_center_tooth():
    """The real tooth scan (shipped in tomodenoise/data): centre ~296 (0-based, width 640)."""
    raw = read_scan(TOOTH, slices=(0, 1))
    lines, _ = minus_log(flat_dark_correct(raw.projections, raw.flats, raw.darks))
    t0 = time.perf_counter()
    c = find_center(lines[:, 0, :], raw.angles)
    elapsed = time.perf_counter() - t0
    assert c == pytest.approx(296.0, abs=1.0)
    assert elapsed < 10.0  # ~0.6 s on one core; generous for a shared CI machine


@pytest.mark.reference
def test_find_center_tomopy_sinogram():
    sino = np.load(_shared("tomopy_reference", "sinogram.npy"))[:, 0, :]
    angles = np.linspace(0, np.pi, sino.shape[0])
    assert find_center(sino, angles) == pytest.approx(45.28, rel=1e-2)


# --------------------------------------------------------------------------------------
# preprocess
# --------------------------------------------------------------------------------------
def _raw_from_lines(lines_sino: np.ndarray, angles: np.ndarray) -> RawScan:
    """Raw counts (angle, z, det) whose flat/dark-corrected -log is ``lines_sino`` (z, angle, det)."""
    flat, dark = 1000.0, 10.0
    proj = dark + (flat - dark) * np.exp(-lines_sino.transpose(1, 0, 2))
    nz, nd = lines_sino.shape[0], lines_sino.shape[2]
    return RawScan(proj, np.full((3, nz, nd), flat), np.full((2, nz, nd), dark), angles, source="synthetic")


def test_preprocess_raw_scan():
    angles = np.linspace(0, np.pi, 60, endpoint=False)
    lines = np.stack([disc_sinogram(angles, 64, 33.4, discs=[(2, 1, 20, 0.02 * (k + 1)), (5, -4, 6, 0.05)])
                      for k in range(3)])
    raw = _raw_from_lines(lines, angles)
    raw.projections[0, 0, 0] = 5.0  # below the dark: clamped before -log
    pre = preprocess(raw)
    assert isinstance(pre, Preprocessed)
    assert pre.sinogram.shape == (3, 60, 64) and pre.sinogram.dtype == np.float32
    assert pre.n_clamped == 1 and pre.info["n_clamped"] == 1
    mask = np.ones_like(lines, bool)
    mask[0, 0, 0] = False
    np.testing.assert_allclose(pre.sinogram[mask], lines[mask], atol=2e-4)
    np.testing.assert_array_equal(pre.angles, angles)
    assert pre.center == pytest.approx(33.4, abs=0.3)
    assert pre.info["center_method"] == "vo+fbp-entropy"
    json.dumps(pre.info)  # goes into the store's attributes
    given = preprocess(raw, center=30.0)
    assert given.center == 30.0 and given.info["center_method"] == "given"


def test_preprocess_preprocessed_input_skips_log():
    angles = np.linspace(0, np.pi, 40, endpoint=False)
    sino = disc_sinogram(angles, 48, 24.0)[None]
    raw = RawScan(sino.transpose(1, 0, 2), None, None, angles, source="s.npy", preprocessed=True)
    pre = preprocess(raw, center=23.5)
    np.testing.assert_array_equal(pre.sinogram, sino)
    assert pre.n_clamped == 0 and pre.center == 23.5


def test_preprocess_without_flats():
    angles = np.linspace(0, np.pi, 20, endpoint=False)
    trans = np.exp(-disc_sinogram(angles, 32, 15.5))[:, None, :]
    pre = preprocess(RawScan(trans, None, None, angles), center=15.5)
    np.testing.assert_allclose(pre.sinogram[0], disc_sinogram(angles, 32, 15.5), atol=1e-5)
    with pytest.raises(ScanError, match="flat fields"):
        preprocess(RawScan(trans * 1000, None, None, angles), center=15.5)


def _angle_warnings(caplog, angles: np.ndarray, **kw) -> tuple[Preprocessed, list[str]]:
    """Preprocess a small disc scan at ``angles``; its info's warnings, and the warnings logged."""
    trans = np.exp(-disc_sinogram(angles, 32, 15.5))[:, None, :]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tomodenoise"):
        pre = preprocess(RawScan(trans, None, None, angles, source="disc.h5"), center=15.5, **kw)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("tomodenoise.")]
    return pre, logged


def test_duplicated_angles_are_warned_about_once_and_kept(caplog):
    angles = np.deg2rad(np.arange(0.0, 180.0, 3.0))  # 60 angles
    angles[[10, 20, 30, 40]] = angles[[9, 19, 29, 39]]  # 4 projections repeat an angle: 27 deg twice first
    pre, logged = _angle_warnings(caplog, angles)
    assert pre.sinogram.shape == (1, 60, 32)  # legal: kept, not refused
    assert len(logged) == 1 and logged == pre.info["warnings"]
    assert "4 projections repeat the angle of another (e.g. 27 deg 2 times)" in logged[0]
    assert logged[0].startswith("disc.h5: ") and "input.angles_unit" in logged[0] and logged[0].count("\n") == 0
    # the projection stream of a dynamic scan repeats its angles every turn: no warning
    assert _angle_warnings(caplog, angles, one_rotation=False)[1] == []


@pytest.mark.parametrize("span_deg, n, endpoint, warned", [
    (180, 128, False, False), (180, 16, False, False), (180, 17, True, False), (360, 90, False, False),
    (360, 91, True, False), (185, 40, True, False), (97, 64, True, True), (120, 40, False, True),
    (270, 64, True, True), (540, 96, False, True),
])
def test_an_angle_span_far_from_180_or_360_is_warned_about(caplog, span_deg, n, endpoint, warned):
    angles = np.deg2rad(np.linspace(0.0, span_deg, n, endpoint=endpoint))
    pre, logged = _angle_warnings(caplog, angles)
    spans = [w for w in pre.info["warnings"] if "angles span" in w]
    assert len(spans) == int(warned) and [w for w in logged if "angles span" in w] == spans
    if warned:
        assert f"the {n} angles span {np.ptp(np.rad2deg(angles)):.4g} degrees: a static scan normally covers " \
               "about 180 or 360" in spans[0] and "input.angles_unit" in spans[0]
        assert ("time.window: angle" in spans[0]) == (span_deg > 360)  # more than a turn: perhaps a dynamic scan
    assert pre.sinogram.shape == (1, n, 32)


def test_preprocess_tooth():
    pre = preprocess(read_scan(TOOTH))
    assert pre.sinogram.shape == (2, 181, 640)
    assert pre.center == pytest.approx(296.0, abs=1.0)
    assert pre.n_clamped == 0 and np.isfinite(pre.sinogram).all()
