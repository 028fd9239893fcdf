"""The dynamic (2D+t) phantom: model parser, exact sinograms, the simulated interlaced scan."""

from __future__ import annotations

import numpy as np
import pytest

from tomodenoise.io.dxchange import read_dxchange
from tomodenoise.recon import fbp
from tomodenoise.simulate.dynamic import (
    DEFAULT_ABSORPTION,
    DEFAULT_TEMPORAL_MODEL,
    TemporalObject,
    dynamic_phantom,
    dynamic_sinogram,
    parse_temporal_model,
    simulate_dynamic_scan,
)
from tomodenoise.simulate.ellipses import ellipse_sinogram

LIBRARY = """\
#----------------------------------------------------
# two models in one library
Model : 07;
Components : 01;
TimeSteps : 1;
Object : gaussian 1.0 0.0 0.0 0.3 0.3 0.0;
#----------------------------------------------------
Model : 101;
Components : 03;
TimeSteps : 350;
Object : rectangle 0.3 -0.4 -0.4 0.05 0.05 0.0;
Endvar : 1.0 0.1 0.1 0.5 0.25 -45.0;
Object : ellipse 0.3 -0.75 -0.2 0.05 0.05 0.0;
Endvar : 1.0 0.2 0.7 0.3 0.15 -70.0;
Object : ellipse 0.3 -0.2 -0.75 0.05 0.05 0.0;   # a comment
Endvar : 1.0 0.7 0.2 0.15 0.3 70.0;
"""

RECT = "Model : 1;\nObject : rectangle 1.0 0.2 -0.1 0.8 0.4 30.0;\n"


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(ref.max() ** 2 / np.mean((x - ref) ** 2)))


def test_parse_temporal_model(tmp_path):
    objs = parse_temporal_model(LIBRARY, 101)
    assert [o.kind for o in objs] == ["rectangle", "ellipse", "ellipse"]
    assert objs[0] == TemporalObject("rectangle", (0.3, -0.4, -0.4, 0.05, 0.05, 0.0), (1.0, 0.1, 0.1, 0.5, 0.25, -45.0))
    assert objs[2].end == (1.0, 0.7, 0.2, 0.15, 0.3, 70.0)
    (tmp_path / "lib.dat").write_text(LIBRARY)
    assert parse_temporal_model(tmp_path / "lib.dat", 101) == objs
    assert parse_temporal_model(str(tmp_path / "lib.dat"), 101) == objs
    default = parse_temporal_model(DEFAULT_TEMPORAL_MODEL, 101)
    assert default[:3] == objs and len(default) > 3
    assert all(o.start == o.end for o in default[3:])  # static background: no Endvar
    with pytest.raises(ValueError, match="'gaussian' is not supported"):
        parse_temporal_model(LIBRARY, 7)
    with pytest.raises(ValueError, match="model 5 not found"):
        parse_temporal_model(LIBRARY, 5)
    with pytest.raises(ValueError, match="Components"):
        parse_temporal_model(LIBRARY.replace("Components : 03", "Components : 04"), 101)
    with pytest.raises(ValueError, match="Endvar"):
        parse_temporal_model("Model : 1;\nEndvar : 1 0 0 1 1 0;", 1)
    with pytest.raises(ValueError, match="6 finite numbers"):
        parse_temporal_model("Model : 1;\nObject : ellipse 1 0 0 1;", 1)


def test_ellipses_match_ellipse_sinogram():
    objs = [o for o in parse_temporal_model(DEFAULT_TEMPORAL_MODEL) if o.kind == "ellipse"]
    n, ang = 40, np.linspace(0, np.pi, 30, endpoint=False)
    rows = [(c0, x0 * n / 2, y0 * n / 2, a * n / 2, b * n / 2, np.deg2rad(phi)) for c0, x0, y0, a, b, phi in
            (o.end for o in objs)]
    np.testing.assert_allclose(dynamic_sinogram(objs, ang, 1.0, n), ellipse_sinogram(np.array(rows), ang, n),
                               atol=1e-4)


def test_rectangle_sinogram_matches_raster_fbp():
    objs = parse_temporal_model(RECT, 1)
    n = 32
    ang = np.linspace(0, np.pi, 96, endpoint=False)
    sino = dynamic_sinogram(objs, ang, 0.0, n, supersampling=2)
    # every projection integrates to the area: 0.8 x 0.4 on [-1, 1]^2 is 0.32 * (n / 2)^2 pixels
    fine = dynamic_sinogram(objs, ang, 0.0, n, supersampling=64)
    np.testing.assert_allclose(fine.sum(axis=1), 0.32 * (n / 2) ** 2, rtol=2e-3)
    raster = dynamic_phantom(objs, n)
    assert raster.shape == (n, n) and raster.sum() == pytest.approx(0.32 * (n / 2) ** 2, rel=0.02)
    rec = fbp(sino, ang)[0]
    assert _psnr(rec, raster) > 25
    # upright: centre at x = 0.2 (right of the middle), y = -0.1 (below it)
    rows, cols = np.nonzero(raster > 0.5)
    assert cols.mean() > (n - 1) / 2 and rows.mean() > (n - 1) / 2
    # a rectangle seen along its sides: the plateau is its side length
    side = dynamic_sinogram(parse_temporal_model("Model : 1;\nObject : rectangle 1 0 0 1.0 0.5 0;", 1),
                            np.array([0.0, np.pi / 2]), 0.0, n)
    assert side[0].max() == pytest.approx(0.5 * n / 2) and side[1].max() == pytest.approx(1.0 * n / 2)


def test_static_phantom_fbp_matches_raster():
    objs = parse_temporal_model(DEFAULT_TEMPORAL_MODEL)
    n = 64
    ang = np.linspace(0, np.pi, 150, endpoint=False)
    for progress in (0.0, 1.0):
        rec = fbp(dynamic_sinogram(objs, ang, progress, n, supersampling=2), ang)[0]
        assert _psnr(rec, dynamic_phantom(objs, n, progress)) > 25


def test_motion_and_slices_differ():
    objs = parse_temporal_model(DEFAULT_TEMPORAL_MODEL)
    a, b = dynamic_phantom(objs, 32, 0.0), dynamic_phantom(objs, 32, 1.0)
    assert np.abs(a - b).mean() > 0.02
    z0, z1 = dynamic_phantom(objs, 32, 0.5, z=0.0), dynamic_phantom(objs, 32, 0.5, z=0.5)
    assert np.abs(z0 - z1).mean() > 0.005 and z1.sum() < z0.sum()
    with pytest.raises(ValueError, match="z must be"):
        dynamic_phantom(objs, 32, z=1.0)


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("dyn") / "dyn.h5"
    return simulate_dynamic_scan(out, size=32, n_slices=2, n_steps=3, projections_per_step=50.5, i0=1000.0)


def test_simulated_scan_files(scan):
    n_proj = int(np.floor(3 * 50.5))
    assert scan["scan"].exists() and scan["reference"].name == "dyn_truth.npy"
    truth = np.load(scan["reference"])
    assert truth.shape == (3, 1, 2, 32, 32) and truth.dtype == np.float32
    np.testing.assert_allclose(scan["times"], [0.05, 0.15, 0.25])
    assert scan["angles_per_step"].tolist() == [51, 50, 50] and scan["angles_per_step"].sum() == n_proj
    assert not np.allclose(truth[0], truth[2]) and not np.allclose(truth[1, 0, 0], truth[1, 0, 1])
    raw = read_dxchange(scan["scan"])
    assert raw.projections.shape == (n_proj, 2, 32)
    assert raw.flats.shape == (4, 2, 32) and np.all(raw.flats == 1000.0) and np.all(raw.darks == 0)
    assert raw.attrs["timestamps"] == "/exchange/timestamps"
    dt = 0.1 / 50.5
    np.testing.assert_allclose(raw.timestamps, np.arange(n_proj) * dt)
    np.testing.assert_allclose(raw.angles, raw.timestamps * np.pi / 0.1, atol=1e-9)  # 180 deg per 0.1 s
    assert np.all(np.diff(raw.angles) > 0) and raw.angles[-1] > 2 * np.pi
    transmission = raw.projections / 1000.0
    assert 0.3 < transmission.mean() < 0.95


def test_simulated_scan_steps_are_interlaced(scan):
    raw = read_dxchange(scan["scan"])
    step = np.floor(raw.timestamps / 0.1 + 1e-9).astype(int)
    spacing = np.pi / 50.5
    a0, a1 = np.mod(raw.angles[step == 0], np.pi), np.mod(raw.angles[step == 1], np.pi)
    gap = np.abs(a1[:, None] - a0[None, :])
    gap = np.minimum(gap, np.pi - gap).min(axis=1)  # distance to the nearest step-0 angle
    assert np.all(gap > 0.25 * spacing)


def test_integer_projections_per_step_repeat_angles(tmp_path):
    out = simulate_dynamic_scan(tmp_path / "rep.h5", size=16, n_slices=1, n_steps=2, projections_per_step=10)
    raw = read_dxchange(out["scan"])
    np.testing.assert_allclose(np.mod(raw.angles[10:], np.pi), np.mod(raw.angles[:10], np.pi), atol=1e-9)


def test_window_fbp_matches_truth(scan):
    """FBP of one window's noise-free projections (phantom frozen at its centre) ~ its truth."""
    raw = read_dxchange(scan["scan"])
    truth = np.load(scan["reference"])
    objs = parse_temporal_model(DEFAULT_TEMPORAL_MODEL)
    size, factor = 32, DEFAULT_ABSORPTION * 2.0 / 32
    step = np.floor(raw.timestamps / 0.1 + 1e-9).astype(int)
    for k in range(3):
        ang = raw.angles[step == k]
        for iz, z in enumerate(scan["z"]):
            sino = dynamic_sinogram(objs, ang, (k + 0.5) / 3, size, z=float(z), supersampling=2) * factor
            rec = fbp(sino, ang)[0]
            ref = truth[k, 0, iz]
            assert _psnr(rec, ref) > 25 and np.abs(rec - ref).mean() < 0.2 * np.abs(ref).mean()
            assert _psnr(rec, ref) > _psnr(rec, truth[(k + 1) % 3, 0, iz]) + 5  # not another step's truth
    # and the noisy counts, flat-field corrected, are the same line integrals up to noise
    clean = np.exp(-np.stack([dynamic_sinogram(objs, raw.angles, raw.timestamps / 0.3, size, z=float(z),
                                               supersampling=2) for z in scan["z"]], axis=1) * factor)
    assert np.abs(raw.projections / 1000.0 - clean).mean() < 0.03
