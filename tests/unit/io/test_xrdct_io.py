"""XRD-CT / pencil-beam detection next to the other formats, and reader checks not covered in
``test_diffraction.py`` (the round trips live there)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from tomodenoise.io import ScanError, detect_format, read_scan
from tomodenoise.io.diffraction import write_xrdct

NA, NZ, ND = 12, 3, 20


def _nxtomo_with_linked_nxdata(path: Path, link_target: str) -> Path:
    """An NXtomo file (image_key, definition) whose NXdata signal is an external link, as
    Diamond writes them: the detector frames live in a file beside the ``.nxs``."""
    frames = np.random.default_rng(0).uniform(100, 200, (NA + 4, NZ, ND)).astype(np.float32)
    frames[:2] = frames[-2:] = 1000.0  # flats
    keys = np.r_[[1, 1], np.zeros(NA, int), [1, 1]]
    ext = path.parent / "frames" / "det.h5"
    ext.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(ext, "w") as g:
        g["/entry/detector/data"] = frames
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e["definition"] = "NXtomo"
        det = e.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = h5py.ExternalLink("frames/det.h5", "/entry/detector/data")
        det["image_key"] = keys
        s = e.create_group("sample")
        s.attrs["NX_class"] = "NXsample"
        s["rotation_angle"] = np.r_[[0, 0], np.linspace(0, 180, NA, endpoint=False), [180, 180]]
        s["rotation_angle"].attrs["units"] = "degree"
        d = e.create_group("imaging")
        d.attrs.update({"NX_class": "NXdata", "signal": "data", "axes": ["rotation_angle", ".", "."]})
        d["data"] = h5py.ExternalLink(link_target, "/entry/detector/data")
    return path


@pytest.mark.parametrize("target", ["frames/det.h5", "frames/missing.h5"])
def test_an_nxtomo_whose_nxdata_signal_is_an_external_link_still_detects_as_nexus(tmp_path, monkeypatch, target):
    # The XRD-CT probe opens NXdata signals; an external link it cannot open (dangling, or
    # relative to a folder other than the working one) must not break auto-detection.
    p = _nxtomo_with_linked_nxdata(tmp_path / "scan.nxs", target)
    monkeypatch.chdir(tmp_path.parent)
    assert detect_format(p) == "nexus"
    raw = read_scan(p)
    assert raw.projections.shape == (NA, NZ, ND) and raw.channels is None


def test_array_stores_still_detect_as_zarr_and_npz(tmp_path):
    import zarr

    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    g.create_array("sinogram", data=np.zeros((NA, NZ, ND), np.float32))
    assert detect_format(tmp_path / "s.zarr") == "zarr"
    np.savez(tmp_path / "s.npz", sinogram=np.zeros((NA, NZ, ND), np.float32))
    assert detect_format(tmp_path / "s.npz") == "npz"


def test_an_xrdct_zarr_store_in_another_axes_order_with_radians(tmp_path):
    import zarr

    s = np.random.default_rng(1).random((4, NZ, NA, ND)).astype(np.float32)  # (channel, z, angle, translation)
    ang = np.random.default_rng(2).permutation(np.linspace(0, 2 * np.pi, NA, endpoint=False))
    g = zarr.open_group(str(tmp_path / "x.zarr"), mode="w")
    d = g.create_array("data", data=np.transpose(s, (2, 0, 1, 3)))  # (angle, channel, z, translation)
    d.attrs["axes"] = ["angle", "tth", "z", "translation"]
    g.create_array("angle", data=ang).attrs["units"] = "rad"
    g.create_array("tth", data=np.linspace(2, 8, 4)).attrs["units"] = "deg"
    assert detect_format(tmp_path / "x.zarr") == "xrdct"
    raw = read_scan(tmp_path / "x.zarr", slices=(1, 3))
    np.testing.assert_allclose(raw.projections, np.transpose(s[:, 1:3], (0, 2, 1, 3)))
    np.testing.assert_allclose(raw.angles, ang)
    assert raw.attrs["channel_name"] == "tth" and raw.attrs["channel_unit"] == "deg"


def test_xrdct_slices_out_of_range_and_unknown_axes_are_refused(tmp_path):
    s = np.ones((3, NZ, NA, ND), np.float32)
    p = write_xrdct(tmp_path / "x.h5", s, np.linspace(0, 360, NA, endpoint=False), np.arange(3.0))
    with pytest.raises(ScanError, match="slices"):
        read_scan(p, slices=(2, 9))
    with h5py.File(tmp_path / "bad.nxs", "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        g = e.create_group("d")
        g.attrs.update({"NX_class": "NXdata", "signal": "I", "axes": ["theta", "q", "foo", "bar"]})
        g["I"] = np.zeros((NA, 3, NZ, ND))
        g["theta"] = np.linspace(0, 180, NA, endpoint=False)
        g["q"] = np.arange(3.0)
    with pytest.raises(ScanError, match="/entry/d/I"):
        read_scan(tmp_path / "bad.nxs")


def test_negative_xrdct_intensities_are_accepted(tmp_path):
    s = np.random.default_rng(3).normal(0, 1, (2, NZ, NA, ND)).astype(np.float32)  # background-subtracted
    p = write_xrdct(tmp_path / "neg.h5", s, np.linspace(0, 360, NA, endpoint=False), np.arange(2.0))
    assert read_scan(p).projections.min() < 0


def _pencil(path: Path, monitor: np.ndarray, per_point: bool = False) -> np.ndarray:
    rng = np.random.default_rng(4)
    trans = np.ones((NA, 2, 30))
    trans[:, :, 6:24] = rng.uniform(0.2, 0.9, (NA, 2, 18))  # air at both translation ends
    with h5py.File(path, "w") as f:
        e = f.create_group("entry1")
        e.attrs["NX_class"] = "NXentry"
        d = e.create_group("measurement")
        d["data"] = trans * (monitor if per_point else monitor[:, None, None])
        d["theta"] = np.linspace(0, 360, NA, endpoint=False)
        d["theta"].attrs["units"] = "deg"
        d["y"] = np.linspace(-1, 1, 30)
        d["i0"] = monitor
    return trans


def test_a_per_point_monitor_and_a_row_subset(tmp_path):
    mon = np.random.default_rng(5).uniform(500, 1500, (NA, 2, 30))
    trans = _pencil(tmp_path / "pp.nxs", mon, per_point=True)
    assert detect_format(tmp_path / "pp.nxs") == "pencil"
    raw = read_scan(tmp_path / "pp.nxs", slices=(1, 2))
    np.testing.assert_allclose(raw.projections, trans[:, 1:2], atol=1e-5)
    assert raw.attrs["format"] == "pencil" and raw.attrs["monitor_dataset"] == "/entry1/measurement/i0"


def test_a_zero_monitor_is_refused_naming_the_entry(tmp_path):
    _pencil(tmp_path / "zero.nxs", np.r_[np.zeros(1), np.full(NA - 1, 1000.0)])
    with pytest.raises(ScanError, match="/entry1/measurement/i0") as exc:
        read_scan(tmp_path / "zero.nxs")
    assert "monitor" in str(exc.value)
