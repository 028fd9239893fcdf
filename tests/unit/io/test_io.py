"""Readers: Data Exchange, NeXus NXtomo, TIFF stacks, NumPy/Zarr arrays, and their errors.

Every file is tiny and made in ``tmp_path``; comparisons with the shared reference data
are marked ``reference`` and skipped when it is absent.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from tomodenoise.io import RawScan, ScanError, detect_format, read_scan
from tomodenoise.io.arrays import read_array
from tomodenoise.io.dxchange import read_dxchange, write_dxchange
from tomodenoise.io.nexus import read_nxtomo
from tomodenoise.io.tiff import read_tiff_stack

SHARED = (Path(__file__).parents[3] / ".." / "shared" / "data").resolve()
TOOTH = Path(__file__).parents[3] / "tomodenoise" / "data" / "tooth.h5"

NA, NZ, ND = 6, 4, 16  # angles, detector rows, detector columns (MIN_DET_WIDTH) of the synthetic scans


def _shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference data {p} not available")
    return p


def _scan_arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    flats = rng.uniform(900, 1100, (3, NZ, ND)).astype(np.float32)
    darks = rng.uniform(5, 15, (2, NZ, ND)).astype(np.float32)
    proj = (rng.uniform(0.2, 0.9, (NA, NZ, ND)) * 1000).astype(np.float32)
    angles_deg = np.linspace(0, 180, NA, endpoint=False)
    return proj, flats, darks, angles_deg


def make_dx(path: Path, *, proj=None, flats="default", darks="default", theta="default",
            theta_units="degrees", drop=()) -> Path:
    """A tiny Data Exchange file written with h5py directly (not through write_dxchange)."""
    p0, f0, d0, a0 = _scan_arrays()
    proj = p0 if proj is None else proj
    flats = f0 if isinstance(flats, str) else flats
    darks = d0 if isinstance(darks, str) else darks
    theta = a0 if isinstance(theta, str) else theta
    with h5py.File(path, "w") as f:
        if "data" not in drop:
            f["/exchange/data"] = proj
        if flats is not None and "data_white" not in drop:
            f["/exchange/data_white"] = flats
        if darks is not None and "data_dark" not in drop:
            f["/exchange/data_dark"] = darks
        if theta is not None and "theta" not in drop:
            f["/exchange/theta"] = theta
            if theta_units:
                f["/exchange/theta"].attrs["units"] = theta_units
    return path


# --------------------------------------------------------------------------------------
# ScanError
# --------------------------------------------------------------------------------------
def test_scan_error_names_file_dataset_expected_and_pickles():
    err = ScanError("scan.h5", "/exchange/theta", "6 angles", found=5)
    msg = str(err)
    assert "scan.h5" in msg and "/exchange/theta" in msg and "expected 6 angles" in msg and "found 5" in msg
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.dataset, back.expected, back.found) == ("scan.h5", "/exchange/theta", "6 angles", 5)
    assert str(back) == msg
    hinted = ScanError("scan.h5", None, "flat fields", "none", hint="give them with input.flats")
    assert str(hinted) == "scan.h5: file: expected flat fields; found none; give them with input.flats"
    assert pickle.loads(pickle.dumps(hinted)).hint == "give them with input.flats"


# --------------------------------------------------------------------------------------
# Data Exchange
# --------------------------------------------------------------------------------------
def test_read_dxchange_tiny(tmp_path):
    path = make_dx(tmp_path / "scan.h5")
    proj, flats, darks, angles_deg = _scan_arrays()
    raw = read_dxchange(path)
    assert isinstance(raw, RawScan)
    assert raw.projections.dtype == np.float32 and raw.projections.shape == (NA, NZ, ND)
    np.testing.assert_array_equal(raw.projections, proj)
    np.testing.assert_array_equal(raw.flats, flats)
    np.testing.assert_array_equal(raw.darks, darks)
    assert raw.angles.dtype == np.float64
    np.testing.assert_allclose(raw.angles, np.deg2rad(angles_deg))
    assert raw.preprocessed is False and raw.source == str(path)
    assert raw.attrs["format"] == "dxchange" and raw.attrs["n_flats"] == 3


def test_read_dxchange_slices_reads_only_those_rows(tmp_path):
    path = make_dx(tmp_path / "scan.h5")
    proj, flats, _, _ = _scan_arrays()
    raw = read_dxchange(path, slices=(1, 3))
    assert raw.projections.shape == (NA, 2, ND) and raw.flats.shape == (3, 2, ND)
    np.testing.assert_array_equal(raw.projections, proj[:, 1:3])
    np.testing.assert_array_equal(raw.flats, flats[:, 1:3])
    assert raw.attrs["rows"] == [1, 3]


def test_read_dxchange_angle_units(tmp_path):
    rad = np.linspace(0, np.pi, NA, endpoint=False)
    raw = read_dxchange(make_dx(tmp_path / "a.h5", theta=rad, theta_units="rad"))
    np.testing.assert_allclose(raw.angles, rad)
    # no units attribute: the angles_unit argument decides (degrees by default)
    raw = read_dxchange(make_dx(tmp_path / "b.h5", theta=rad, theta_units=None), angles_unit="rad")
    np.testing.assert_allclose(raw.angles, rad)
    deg = np.linspace(0, 180, NA, endpoint=False)
    raw = read_dxchange(make_dx(tmp_path / "c.h5", theta=deg, theta_units=None))
    np.testing.assert_allclose(raw.angles, np.deg2rad(deg))
    # an angles file wins over /exchange/theta
    np.savetxt(tmp_path / "angles.txt", deg + 1)
    raw = read_dxchange(tmp_path / "c.h5", angles_file=tmp_path / "angles.txt")
    np.testing.assert_allclose(raw.angles, np.deg2rad(deg + 1))
    # a units attribute that says radians, with values that are clearly degrees
    with pytest.raises(ScanError, match="theta"):
        read_dxchange(make_dx(tmp_path / "d.h5", theta=deg, theta_units="radians"))


def test_read_dxchange_without_flats_and_darks(tmp_path):
    raw = read_dxchange(make_dx(tmp_path / "scan.h5", flats=None, darks=None))
    assert raw.flats is None and raw.darks is None


def test_write_dxchange_round_trip(tmp_path):
    proj, flats, darks, angles_deg = _scan_arrays(1)
    proj = proj.astype(np.uint16)
    out = write_dxchange(tmp_path / "sub" / "rt.h5", proj, flats, darks, np.deg2rad(angles_deg))
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["rt.h5"]  # no temp file left
    with h5py.File(out) as f:
        assert f["/exchange/theta"].attrs["units"] == "degrees"
        np.testing.assert_allclose(f["/exchange/theta"][()], angles_deg)
        assert f["/exchange/data"].dtype == np.uint16
    raw = read_dxchange(out)
    np.testing.assert_array_equal(raw.projections, proj.astype(np.float32))
    np.testing.assert_array_equal(raw.flats, flats)
    np.testing.assert_array_equal(raw.darks, darks)
    np.testing.assert_allclose(raw.angles, np.deg2rad(angles_deg), atol=1e-12)
    assert read_scan(out).projections.shape == proj.shape
    with pytest.raises(ValueError, match="angles"):
        write_dxchange(tmp_path / "bad.h5", proj, flats, darks, np.zeros(NA + 1))
    with pytest.raises(FileExistsError):
        write_dxchange(out, proj, flats, darks, np.deg2rad(angles_deg), overwrite=False)


def _bad_dx(tmp_path: Path, case: str) -> tuple[Path, dict]:
    proj, flats, darks, angles = _scan_arrays()
    path = tmp_path / f"{case}.h5"
    kw: dict = {}
    if case == "missing_file":
        return tmp_path / "nope.h5", kw
    if case == "unreadable":
        path.write_text("this is not an HDF5 file")
        return path, kw
    if case == "no_data":
        return make_dx(path, drop=("data",)), kw
    if case == "no_theta":
        return make_dx(path, drop=("theta",)), kw
    if case == "data_2d":
        return make_dx(path, proj=proj[:, 0]), kw
    if case == "empty_data":
        return make_dx(path, proj=np.zeros((0, NZ, ND), np.float32), theta=np.zeros(0)), kw
    if case == "angles_mismatch":
        return make_dx(path, theta=angles[:-1]), kw
    if case == "nan_data":
        proj[2, 1, 3] = np.nan
        return make_dx(path, proj=proj), kw
    if case == "inf_flat":
        flats[0, 0, 0] = np.inf
        return make_dx(path, flats=flats), kw
    if case == "nan_theta":
        angles[1] = np.nan
        return make_dx(path, theta=angles), kw
    if case == "flat_shape":
        return make_dx(path, flats=flats[:, :, :-1]), kw
    if case == "zero_flats":
        return make_dx(path, flats=np.zeros_like(flats)), kw
    if case == "flat_below_dark":
        return make_dx(path, flats=np.full_like(flats, 5.0), darks=np.full_like(darks, 10.0)), kw
    if case == "saturated_flats":
        return make_dx(path, proj=proj.astype(np.uint16), flats=np.full(flats.shape, 65535, np.uint16),
                       darks=darks.astype(np.uint16)), kw
    if case == "bad_slices":
        return make_dx(path), {"slices": (2, NZ + 1)}
    if case == "bad_units":
        return make_dx(path, theta_units="furlongs"), kw
    raise AssertionError(case)


BAD_DX = {
    "missing_file": (None, "existing"),
    "unreadable": (None, "readable HDF5"),
    "no_data": ("/exchange/data", "projection"),
    "no_theta": ("/exchange/theta", "angles"),
    "data_2d": ("/exchange/data", "3-D"),
    "empty_data": ("/exchange/data", "non-empty"),
    "angles_mismatch": ("/exchange/theta", f"{NA} angles"),
    "nan_data": ("/exchange/data", "finite"),
    "inf_flat": ("/exchange/data_white", "finite"),
    "nan_theta": ("/exchange/theta", "finite"),
    "flat_shape": ("/exchange/data_white", "(z, det)"),
    "zero_flats": ("/exchange/data_white", "signal"),
    "flat_below_dark": ("/exchange/data_white", "brighter"),
    "saturated_flats": ("/exchange/data_white", "unsaturated"),
    "bad_slices": ("/exchange/data", "start < stop"),
    "bad_units": ("/exchange/theta", "deg"),
}


@pytest.mark.parametrize("case", list(BAD_DX))
def test_read_dxchange_bad_input_raises_scan_error(tmp_path, case):
    path, kw = _bad_dx(tmp_path, case)
    dataset, words = BAD_DX[case]
    with pytest.raises(ScanError) as exc:
        read_scan(path, **kw) if case != "unreadable" else read_dxchange(path, **kw)
    err = exc.value
    assert Path(err.path).name == path.name and path.name in str(err)
    if dataset is not None:
        assert err.dataset == dataset and dataset in str(err)
    assert words in str(err)


def test_flats_with_a_few_dead_pixels_are_accepted(tmp_path):
    _, flats, _, _ = _scan_arrays()
    flats[:, 0, 0] = 0.0  # one dead pixel of 64: 1.6 %
    raw = read_dxchange(make_dx(tmp_path / "scan.h5", flats=flats))
    assert raw.flats[:, 0, 0].max() == 0


def test_tooth_dxchange():
    raw = read_scan(TOOTH)
    assert raw.projections.shape == (181, 2, 640) and raw.flats.shape == (10, 2, 640)
    assert raw.darks.shape == (10, 2, 640)
    assert raw.angles[0] == 0 and raw.angles[-1] == pytest.approx(np.deg2rad(179.0055), abs=1e-4)
    assert read_scan(TOOTH, slices=(1, 2)).projections.shape == (181, 1, 640)


# --------------------------------------------------------------------------------------
# NeXus NXtomo
# --------------------------------------------------------------------------------------
def _nx_frames():
    """Frames with 2 flats + 1 dark before, 6 projections, 2 flats + 1 dark after."""
    proj, flats, darks, angles = _scan_arrays()
    keys = np.array([1, 1, 2] + [0] * NA + [1, 1, 2], dtype=np.int32)
    frames = np.concatenate([flats[:2], darks[:1], proj, flats[1:3], darks[1:2]]).astype(np.uint16)
    rot = np.concatenate([[0, 0, 0], angles, [180, 180, 180]]).astype(np.float64)
    return frames, keys, rot


def make_nxtomo(path: Path, *, external: bool = True, keys=None, rot=None, units="degree") -> Path:
    """A standard NXtomo file; the detector data in a separate file behind an external link."""
    frames, k0, r0 = _nx_frames()
    keys = k0 if keys is None else keys
    rot = r0 if rot is None else rot
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e["definition"] = "NXtomo"
        det = e.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        if external:
            ext = path.with_name(path.stem + "_data.h5")
            with h5py.File(ext, "w") as g:
                g["/entry/detector/data"] = frames
            det["data"] = h5py.ExternalLink(ext.name, "/entry/detector/data")
        else:
            det["data"] = frames
        det["image_key"] = keys
        s = e.create_group("sample")
        s.attrs["NX_class"] = "NXsample"
        s["rotation_angle"] = rot
        if units:
            s["rotation_angle"].attrs["units"] = units
        d = e.create_group("data")
        d.attrs["NX_class"] = "NXdata"
        d.attrs["signal"] = "data"
        d["data"] = h5py.SoftLink("/entry/instrument/detector/data")
        d["rotation_angle"] = h5py.SoftLink("/entry/sample/rotation_angle")
        d["image_key"] = h5py.SoftLink("/entry/instrument/detector/image_key")
    return path


def test_read_nxtomo_standard_layout_with_external_link(tmp_path):
    path = make_nxtomo(tmp_path / "scan.nxs")
    proj, flats, darks, angles = _scan_arrays()
    raw = read_nxtomo(path)
    assert raw.projections.shape == (NA, NZ, ND)
    np.testing.assert_array_equal(raw.projections, proj.astype(np.uint16).astype(np.float32))
    assert raw.flats.shape == (4, NZ, ND) and raw.darks.shape == (2, NZ, ND)  # before + after
    np.testing.assert_array_equal(raw.flats, np.concatenate([flats[:2], flats[1:3]]).astype(np.uint16))
    np.testing.assert_array_equal(raw.darks, darks.astype(np.uint16))
    np.testing.assert_allclose(raw.angles, np.deg2rad(angles))
    a = raw.attrs
    assert a["format"] == "nexus" and a["n_flats_before"] == 2 and a["n_flats_after"] == 2
    assert a["n_darks_before"] == 1 and a["n_darks_after"] == 1
    assert detect_format(path) == "nexus"
    sub = read_scan(path, slices=(1, 3))
    np.testing.assert_array_equal(sub.projections, raw.projections[:, 1:3])
    assert sub.flats.shape == (4, 2, ND)


def test_read_nxtomo_searches_diad_like_layout(tmp_path):
    """Data in an NXdata group, image key in an NXdetector, angles by name, a dangling link."""
    frames, keys, rot = _nx_frames()
    ext = tmp_path / "scan-imaging.h5"
    with h5py.File(ext, "w") as g:
        g["/entry/detector/detector"] = frames
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        broken = e.create_group("aaa_broken")  # visited first; its data points nowhere
        broken.attrs["NX_class"] = "NXdata"
        broken["data"] = h5py.ExternalLink("missing.h5", "/entry/detector/detector")
        img = e.create_group("imaging")
        img.attrs["NX_class"] = "NXdata"
        img.attrs["signal"] = "data"
        img.attrs["axes"] = np.array([b"gts_theta_value_set", b".", b"."])
        img["data"] = h5py.ExternalLink(ext.name, "/entry/detector/detector")
        img["gts_theta_value_set"] = h5py.ExternalLink("missing.h5", "/x")  # dangling
        img["gts_theta_value"] = rot
        det = e.create_group("instrument/imaging")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = h5py.ExternalLink(ext.name, "/entry/detector/detector")
        det["image_key"] = keys
    raw = read_nxtomo(path)
    assert raw.attrs["data_path"] == "/entry/imaging/data"
    assert raw.attrs["image_key_path"] == "/entry/instrument/imaging/image_key"
    assert raw.attrs["angles_path"] == "/entry/imaging/gts_theta_value"
    assert raw.projections.shape == (NA, NZ, ND) and raw.flats.shape[0] == 4
    np.testing.assert_allclose(raw.angles, np.deg2rad(_scan_arrays()[3]))


def test_read_nxtomo_angles_in_radians_and_per_projection(tmp_path):
    _, keys, rot = _nx_frames()
    rad = np.deg2rad(rot)
    raw = read_nxtomo(make_nxtomo(tmp_path / "a.nxs", rot=rad, units="rad"))
    np.testing.assert_allclose(raw.angles, rad[keys == 0])
    raw = read_nxtomo(make_nxtomo(tmp_path / "b.nxs", rot=rot[keys == 0]))  # one angle per projection
    np.testing.assert_allclose(raw.angles, np.deg2rad(rot[keys == 0]))


@pytest.mark.parametrize("case,dataset,words", [
    ("no_projections", "/entry/data/image_key", "at least one projection"),
    ("bad_key", "/entry/data/image_key", "image keys"),
    ("angles_mismatch", "/entry/sample/rotation_angle", "one per frame"),
    ("no_image_key", "/entry/data/data", "image_key"),
    ("not_nexus", "/entry/data/data", "NXtomo entry"),
    ("missing_external", "/entry/data/data", "NXtomo entry"),
])
def test_read_nxtomo_bad_input(tmp_path, case, dataset, words):
    path = tmp_path / "scan.nxs"
    _, keys, rot = _nx_frames()
    if case == "no_projections":
        make_nxtomo(path, keys=np.where(keys == 0, 1, keys))
    elif case == "bad_key":
        make_nxtomo(path, keys=np.where(keys == 2, 7, keys))
    elif case == "angles_mismatch":
        make_nxtomo(path, rot=rot[:-2])
    elif case == "no_image_key":
        make_nxtomo(path)
        with h5py.File(path, "a") as f:
            del f["/entry/instrument/detector/image_key"]
            del f["/entry/data/image_key"]
    elif case == "not_nexus":
        with h5py.File(path, "w") as f:
            f["/entry/something"] = np.zeros(3)
    elif case == "missing_external":
        make_nxtomo(path)
        path.with_name("scan_data.h5").unlink()
    with pytest.raises(ScanError) as exc:
        read_nxtomo(path)
    assert exc.value.dataset == dataset and words in str(exc.value) and "scan.nxs" in str(exc.value)


@pytest.mark.reference
def test_read_nxtomo_k11_diad():
    path = _shared("k11_diad_nxtomo", "k11-18014.nxs")
    raw = read_scan(path)
    assert raw.projections.shape == (3001, 22, 26)
    assert raw.flats.shape == (100, 22, 26) and raw.darks.shape == (100, 22, 26)
    assert raw.attrs["n_flats_before"] == 50 and raw.attrs["n_flats_after"] == 50
    assert np.rad2deg(raw.angles[0]) == pytest.approx(90, abs=0.1)
    assert np.rad2deg(raw.angles[-1]) == pytest.approx(270, abs=0.1)
    assert raw.flats.mean() > 10 * raw.darks.mean()
    assert read_scan(path, slices=(5, 9)).projections.shape == (3001, 4, 26)


# --------------------------------------------------------------------------------------
# TIFF
# --------------------------------------------------------------------------------------
def make_tiff_folder(folder: Path, *, angles=True, n=12) -> tuple[Path, np.ndarray]:
    folder.mkdir()
    rng = np.random.default_rng(3)
    proj = rng.integers(100, 1000, (n, NZ, ND)).astype(np.uint16)
    for i in range(n):  # unpadded numbers: natural sort must put p2 before p10
        tifffile.imwrite(folder / f"p{i}.tif", proj[i])
    tifffile.imwrite(folder / "flat_0.tif", np.full((NZ, ND), 1200, np.uint16))
    tifffile.imwrite(folder / "flat_1.tif", np.full((NZ, ND), 1200, np.uint16))
    tifffile.imwrite(folder / "dark_0.tif", np.full((NZ, ND), 10, np.uint16))
    if angles:
        np.savetxt(folder / "angles.txt", np.linspace(0, 180, n, endpoint=False))
    return folder, proj


def test_read_tiff_folder(tmp_path):
    folder, proj = make_tiff_folder(tmp_path / "scan")
    raw = read_scan(folder)
    np.testing.assert_array_equal(raw.projections, proj.astype(np.float32))  # natural order
    assert raw.flats.shape == (2, NZ, ND) and raw.darks.shape == (1, NZ, ND)
    np.testing.assert_allclose(raw.angles, np.deg2rad(np.linspace(0, 180, 12, endpoint=False)))
    sub = read_tiff_stack(folder, slices=(2, 4))
    np.testing.assert_array_equal(sub.projections, proj[:, 2:4].astype(np.float32))
    assert sub.flats.shape == (2, 2, ND)
    # a glob pattern with explicit flats/darks
    raw = read_scan(str(folder / "p*.tif"), angles_file=folder / "angles.txt",
                    flats=folder / "flat_0.tif", darks=np.full((1, NZ, ND), 10.0))
    assert raw.projections.shape == (12, NZ, ND) and raw.flats.shape == (1, NZ, ND)


def test_read_tiff_multipage(tmp_path):
    stack = np.random.default_rng(0).uniform(0.1, 1, (5, NZ, ND)).astype(np.float32)
    path = tmp_path / "stack.tiff"
    tifffile.imwrite(path, stack)
    np.save(tmp_path / "ang.npy", np.linspace(0, np.pi, 5, endpoint=False))
    raw = read_scan(path, angles_file=tmp_path / "ang.npy", angles_unit="rad")
    np.testing.assert_array_equal(raw.projections, stack)
    assert raw.flats is None and raw.darks is None


def test_read_tiff_bad_input(tmp_path):
    folder, _ = make_tiff_folder(tmp_path / "noangles", angles=False)
    with pytest.raises(ScanError, match="angles_file"):
        read_scan(folder)
    folder, _ = make_tiff_folder(tmp_path / "mismatch")
    np.savetxt(folder / "angles.txt", np.arange(5) * 30)
    with pytest.raises(ScanError, match="12 angles"):
        read_scan(folder)
    folder, _ = make_tiff_folder(tmp_path / "shapes")
    tifffile.imwrite(folder / "p99.tif", np.zeros((NZ, ND + 1), np.uint16))
    with pytest.raises(ScanError, match="p99.tif"):
        read_scan(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScanError, match="TIFF files"):
        read_tiff_stack(tmp_path / "empty")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(ScanError, match="bad.tif"):
        read_tiff_stack(bad, angles_file=folder / "angles.txt")


# --------------------------------------------------------------------------------------
# NumPy / Zarr arrays
# --------------------------------------------------------------------------------------
def _sino(z=3, na=8, nd=ND):
    return np.random.default_rng(1).uniform(0, 2, (z, na, nd)).astype(np.float32)


def test_read_npy_sinogram(tmp_path):
    sino = _sino()
    np.save(tmp_path / "s.npy", sino)
    np.savetxt(tmp_path / "a.txt", np.linspace(0, 180, 8, endpoint=False))
    raw = read_scan(tmp_path / "s.npy", angles_file=tmp_path / "a.txt")
    assert raw.preprocessed is True and raw.flats is None
    np.testing.assert_array_equal(raw.projections, sino.transpose(1, 0, 2))  # stored (angle, z, det)
    np.testing.assert_allclose(raw.angles, np.deg2rad(np.linspace(0, 180, 8, endpoint=False)))
    sub = read_scan(tmp_path / "s.npy", angles_file=tmp_path / "a.txt", slices=(1, 2))
    np.testing.assert_array_equal(sub.projections[:, 0], sino[1])
    # 2-D (angle, det) and a <stem>_angles.npy beside it
    np.save(tmp_path / "one.npy", sino[0])
    np.save(tmp_path / "one_angles.npy", np.linspace(0, np.pi, 8, endpoint=False))
    raw = read_array(tmp_path / "one.npy", angles_unit="rad")
    assert raw.projections.shape == (8, 1, ND)


def test_read_npz_sinogram_and_projections(tmp_path):
    sino = _sino()
    rad = np.linspace(0, np.pi, 8, endpoint=False)
    np.savez(tmp_path / "s.npz", sinogram=sino, angles=rad, angles_unit="rad")
    raw = read_scan(tmp_path / "s.npz")
    assert raw.preprocessed and raw.projections.shape == (8, 3, ND)
    np.testing.assert_allclose(raw.angles, rad)
    proj, flats, darks, deg = _scan_arrays()
    np.savez(tmp_path / "p.npz", projections=proj, flats=flats, darks=darks, theta=deg)
    raw = read_scan(tmp_path / "p.npz", slices=(0, 2))
    assert raw.preprocessed is False and raw.projections.shape == (NA, 2, ND) and raw.flats.shape == (3, 2, ND)
    np.testing.assert_allclose(raw.angles, np.deg2rad(deg))


def test_read_zarr_sinogram(tmp_path):
    import zarr

    sino = _sino()
    rad = np.linspace(0, np.pi, 8, endpoint=False)
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    g.create_array("sinogram", data=sino)
    a = g.create_array("angles", data=rad)
    a.attrs["units"] = "rad"
    raw = read_scan(tmp_path / "s.zarr", slices=(1, 3))
    assert raw.preprocessed and detect_format(tmp_path / "s.zarr") == "zarr"
    np.testing.assert_array_equal(raw.projections, sino[1:3].transpose(1, 0, 2))
    np.testing.assert_allclose(raw.angles, rad)
    # the scan store layout (time, channel, z, angle, det) with time = channel = 1
    g = zarr.open_group(str(tmp_path / "t.zarr"), mode="w")
    g.create_array("sinogram", data=sino[None, None])
    g.create_array("angle", data=rad).attrs["units"] = "rad"
    assert read_scan(tmp_path / "t.zarr").projections.shape == (8, 3, ND)


def test_read_array_bad_input(tmp_path):
    np.savez(tmp_path / "nokey.npz", foo=np.zeros((2, 3, 4)))
    with pytest.raises(ScanError, match="foo"):
        read_scan(tmp_path / "nokey.npz")
    np.save(tmp_path / "noang.npy", _sino())
    with pytest.raises(ScanError, match="angles"):
        read_scan(tmp_path / "noang.npy")
    np.save(tmp_path / "a.npy", np.arange(8.0) * 20)
    np.save(tmp_path / "four.npy", np.zeros((2, 2, 8, ND), np.float32))
    with pytest.raises(ScanError, match="sinogram"):
        read_scan(tmp_path / "four.npy", angles_file=tmp_path / "a.npy")
    s = _sino()
    s[0, 1, 2] = np.inf
    np.save(tmp_path / "inf.npy", s)
    with pytest.raises(ScanError, match="finite"):
        read_scan(tmp_path / "inf.npy", angles_file=tmp_path / "a.npy")
    np.save(tmp_path / "ok.npy", _sino())
    np.save(tmp_path / "a7.npy", np.arange(7.0) * 20)
    with pytest.raises(ScanError, match="8 angles"):
        read_scan(tmp_path / "ok.npy", angles_file=tmp_path / "a7.npy")
    with pytest.raises(ScanError, match="start < stop"):
        read_scan(tmp_path / "ok.npy", angles_file=tmp_path / "a.npy", slices=(2, 2))
    (tmp_path / "broken.npy").write_bytes(b"garbage")
    with pytest.raises(ScanError, match="readable"):
        read_scan(tmp_path / "broken.npy")


# --------------------------------------------------------------------------------------
# read_scan dispatch
# --------------------------------------------------------------------------------------
def test_read_scan_dispatch_and_errors(tmp_path):
    make_dx(tmp_path / "dx.h5")
    make_nxtomo(tmp_path / "nx.h5", external=False)
    assert detect_format(tmp_path / "dx.h5") == "dxchange"
    assert detect_format(tmp_path / "nx.h5") == "nexus"
    assert read_scan(tmp_path / "nx.h5").attrs["format"] == "nexus"
    assert read_scan(tmp_path / "dx.h5", format="dxchange").attrs["format"] == "dxchange"
    with pytest.raises(ScanError, match="no such file"):
        read_scan(tmp_path / "missing.h5")
    (tmp_path / "scan.xyz").write_text("?")
    with pytest.raises(ScanError, match="known format"):
        read_scan(tmp_path / "scan.xyz")
    with pytest.raises(ValueError, match="unknown scan format"):
        read_scan(tmp_path / "dx.h5", format="fits")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ScanError, match="Data Exchange"):
        read_scan(tmp_path / "other.h5")
