"""XRD-CT and pencil-beam readers, and the simulated XRD-CT phantom."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tomodenoise.io import ScanError, detect_format, read_scan
from tomodenoise.io.diffraction import write_xrdct
from tomodenoise.recon import fbp
from tomodenoise.simulate.xrdct_phantom import simulate_xrdct_scan


def _sino(c=5, z=3, a=20, t=24, seed=0):
    return np.random.default_rng(seed).random((c, z, a, t)).astype(np.float32)


def test_xrdct_round_trip_keeps_values_channels_and_angles(tmp_path):
    s = _sino()
    ang = np.random.default_rng(1).permutation(np.linspace(0, 360, 20, endpoint=False))
    q = np.linspace(1, 5, 5)
    p = write_xrdct(tmp_path / "x.h5", s, ang, q)
    assert detect_format(p) == "xrdct"
    raw = read_scan(p, slices=(1, 3))
    assert raw.projections.shape == (5, 20, 2, 24)  # (channel, angle, z, det)
    assert np.allclose(raw.projections, np.transpose(s[:, 1:3], (0, 2, 1, 3)))
    assert np.allclose(raw.channels, q) and raw.attrs["channel_name"] == "q"
    assert np.allclose(raw.angles, np.deg2rad(ang)) and raw.preprocessed


def test_an_nxdata_signal_in_another_axes_order_is_transposed(tmp_path):
    s = _sino()
    p = tmp_path / "perm.nxs"
    with h5py.File(p, "w") as f:
        e = f.create_group("entry1")
        e.attrs["NX_class"] = "NXentry"
        g = e.create_group("data")
        g.attrs.update({"NX_class": "NXdata", "signal": "I", "axes": ["theta", "z", "x", "tth"]})
        g["I"] = np.transpose(s, (2, 1, 3, 0))  # (angle, z, translation, channel)
        g["theta"] = np.linspace(0, 180, 20, endpoint=False)
        g["theta"].attrs["units"] = "deg"
        g["tth"] = np.linspace(2, 12, 5)
        g["tth"].attrs["units"] = "deg"
    raw = read_scan(p)
    assert raw.attrs["channel_name"] == "tth"
    assert np.allclose(raw.projections, np.transpose(s, (0, 2, 1, 3)))


def test_xrdct_zarr_store(tmp_path):
    import zarr

    s = _sino()
    g = zarr.open_group(str(tmp_path / "x.zarr"), mode="w")
    g.create_array("data", data=s)
    g.create_array("theta", data=np.linspace(0, 180, 20, endpoint=False))
    g.create_array("q", data=np.linspace(1, 5, 5))
    assert detect_format(tmp_path / "x.zarr") == "xrdct"
    raw = read_scan(tmp_path / "x.zarr")
    assert raw.projections.shape == (5, 20, 3, 24) and raw.n_channels == 5


def test_bad_xrdct_data_is_refused_naming_the_dataset(tmp_path):
    s = _sino()
    s[2, 1, 3, 4] = np.nan
    p = write_xrdct(tmp_path / "nan.h5", s, np.linspace(0, 180, 20, endpoint=False), np.arange(5.0))
    with pytest.raises(ScanError, match="/entry/xrdct/data"):
        read_scan(p)
    p = tmp_path / "short.h5"
    write_xrdct(p, _sino(), np.linspace(0, 180, 20, endpoint=False), np.arange(5.0))
    with h5py.File(p, "a") as f:
        del f["entry/xrdct/rotation_angle"]
        f["entry/xrdct/rotation_angle"] = np.linspace(0, 180, 19, endpoint=False)
    with pytest.raises(ScanError, match="rotation_angle"):
        read_scan(p)


def _pencil(path, monitor=True):
    rng = np.random.default_rng(2)
    trans = np.ones((30, 2, 40))
    trans[:, :, 8:32] = rng.uniform(0.3, 0.9, (30, 2, 24))  # air at both translation ends
    mon = rng.uniform(900, 1100, 30)
    with h5py.File(path, "w") as f:
        e = f.create_group("entry1")
        e.attrs["NX_class"] = "NXentry"
        d = e.create_group("measurement")
        d["data"] = trans * mon[:, None, None]
        d["theta"] = np.linspace(0, 180, 30, endpoint=False)
        d["x"] = np.linspace(-1, 1, 40)
        if monitor:
            m = e.create_group("monitor")
            m.attrs["NX_class"] = "NXmonitor"
            m["data"] = mon
    return trans


def test_a_pencil_beam_entry_is_read_as_transmission_normalised_by_the_monitor(tmp_path, caplog):
    trans = _pencil(tmp_path / "pb.nxs")
    assert detect_format(tmp_path / "pb.nxs") == "pencil"
    with caplog.at_level("INFO"):
        raw = read_scan(tmp_path / "pb.nxs")
    assert np.allclose(raw.projections, trans, atol=1e-5)
    assert raw.flats is None and not raw.preprocessed
    assert any("entry1" in r.getMessage() and "monitor" in r.getMessage() for r in caplog.records)


def test_a_pencil_beam_entry_without_monitor_is_not_taken_for_one(tmp_path):
    _pencil(tmp_path / "nomon.nxs", monitor=False)
    with pytest.raises(ScanError):
        read_scan(tmp_path / "nomon.nxs", format="pencil")


def test_simulated_xrdct_scan_reads_back_with_unsorted_full_turn_angles(tmp_path):
    out = simulate_xrdct_scan(tmp_path / "x.h5", size=24, n_angles=90, n_channels=16, counts=1e9, seed=1)
    raw = read_scan(out["scan"])
    assert raw.projections.shape == (16, 90, 1, 24) and raw.attrs["modality"] == "xrdct"
    assert np.any(np.diff(raw.angles) < 0) and np.ptp(raw.angles) > 1.9 * np.pi
    truth = np.load(out["reference"])
    assert truth.shape == (1, 16, 1, 24, 24)
    c = int(np.argmax(truth[0, :, 0].sum(axis=(1, 2))))
    rec = fbp(raw.projections[c, :, 0], raw.angles, n_pixels=24, use_gpu="no")
    t = truth[0, c, 0]
    # the FBP of the clean data is the truth, on its scale (sharp discs on 24 px: edges differ)
    assert np.corrcoef(rec.ravel(), t.ravel())[0, 1] > 0.95
    assert abs(rec.sum() / t.sum() - 1) < 0.1


def test_xrdct_noise_follows_the_count_level(tmp_path):
    def noise(counts):
        a = simulate_xrdct_scan(tmp_path / f"a{counts}.h5", size=24, n_angles=30, n_channels=8, counts=counts, seed=4)
        b = simulate_xrdct_scan(tmp_path / "clean.h5", size=24, n_angles=30, n_channels=8, counts=1e9, seed=4)
        ra, rb = read_scan(a["scan"]).projections, read_scan(b["scan"]).projections
        return float(np.std(ra - rb))

    ratio = noise(100.0) / noise(1600.0)
    assert 2.0 < ratio < 8.0  # 1/sqrt(counts): 4x


def test_simulated_xrdct_from_an_ingredients_folder(tmp_path):
    import tifffile

    folder = tmp_path / "ingr"
    folder.mkdir()
    q = np.linspace(1, 6, 50)
    with h5py.File(folder / "Patterns.h5", "w") as f:
        f["q"] = q
        for i, name in enumerate(("Al", "Cu")):
            f[name] = np.exp(-0.5 * ((q - 2 - 2 * i) / 0.05) ** 2)
    labels = np.zeros((40, 40), np.uint8)
    labels[10:18, 10:18], labels[22:30, 20:32] = 1, 2
    tifffile.imwrite(folder / "catalyst_particles_small.tif", labels)
    out = simulate_xrdct_scan(tmp_path / "i.h5", size=20, n_angles=24, ingredients=folder, seed=0)
    assert out["phases"] == ["Al", "Cu"] and len(out["channels"]) == 50
    assert np.load(out["reference"]).max() > 0
