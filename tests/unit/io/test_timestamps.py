"""Per-projection acquisition times (and order) read from Data Exchange and NeXus files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from tomodenoise.io.base import to_seconds
from tomodenoise.io.dxchange import read_dxchange, write_dxchange
from tomodenoise.io.errors import ScanError
from tomodenoise.io.nexus import read_nxtomo

NA, NZ, ND = 12, 4, 16


def _arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    proj = rng.uniform(200, 900, (NA, NZ, ND)).astype(np.float32)
    flats = np.full((3, NZ, ND), 1000.0, dtype=np.float32)
    darks = np.zeros((2, NZ, ND), dtype=np.float32)
    angles = np.linspace(0.0, 3 * np.pi, NA, endpoint=False)  # unwrapped, 1.5 turns
    times = 0.25 * np.arange(NA) + 100.0
    return proj, flats, darks, angles, times


# --------------------------------------------------------------------------------------
# Data Exchange
# --------------------------------------------------------------------------------------
def test_dxchange_timestamps_round_trip(tmp_path):
    proj, flats, darks, angles, times = _arrays()
    out = write_dxchange(tmp_path / "scan.h5", proj, flats, darks, angles, timestamps=times)
    with h5py.File(out, "r") as f:
        assert f["/exchange/timestamps"].attrs["units"] == "s"
    raw = read_dxchange(out)
    np.testing.assert_array_equal(raw.timestamps, times)
    assert raw.timestamps.dtype == np.float64
    assert raw.attrs["timestamps"] == "/exchange/timestamps"
    np.testing.assert_allclose(raw.angles, angles)
    sub = read_dxchange(out, slices=(1, 3))  # detector rows only: one time per projection still
    assert sub.projections.shape == (NA, 2, ND)
    np.testing.assert_array_equal(sub.timestamps, times)


def test_dxchange_without_timestamps_gives_none(tmp_path):
    proj, flats, darks, angles, _ = _arrays()
    raw = read_dxchange(write_dxchange(tmp_path / "scan.h5", proj, flats, darks, angles))
    assert raw.timestamps is None and raw.attrs["timestamps"] is None


def test_write_dxchange_refuses_wrong_timestamps(tmp_path):
    proj, flats, darks, angles, times = _arrays()
    with pytest.raises(ValueError, match="timestamps"):
        write_dxchange(tmp_path / "a.h5", proj, flats, darks, angles, timestamps=times[:-1])
    with pytest.raises(ValueError, match="NaN"):
        write_dxchange(tmp_path / "b.h5", proj, flats, darks, angles, timestamps=np.full(NA, np.nan))
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()


def _with_timestamps(path: Path, values, units=None) -> Path:
    proj, flats, darks, angles, _ = _arrays()
    write_dxchange(path, proj, flats, darks, angles)
    with h5py.File(path, "a") as f:
        f["/exchange/timestamps"] = values
        if units is not None:
            f["/exchange/timestamps"].attrs["units"] = units
    return path


def test_dxchange_mismatched_timestamps_refused(tmp_path):
    path = _with_timestamps(tmp_path / "scan.h5", np.arange(NA + 3, dtype=np.float64))
    with pytest.raises(ScanError, match=r"/exchange/timestamps.*12 timestamps.*found 15") as info:
        read_dxchange(path)
    assert info.value.dataset == "/exchange/timestamps"
    nan = _with_timestamps(tmp_path / "nan.h5", np.r_[np.arange(NA - 1.0), np.nan])
    with pytest.raises(ScanError, match="finite timestamps"):
        read_dxchange(nan)
    bad_unit = _with_timestamps(tmp_path / "unit.h5", np.arange(NA, dtype=np.float64), units="furlongs")
    with pytest.raises(ScanError, match="furlongs"):
        read_dxchange(bad_unit)


@pytest.mark.parametrize(("units", "scale"), [("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9),
                                              ("seconds", 1.0), ("", 1.0)])
def test_dxchange_timestamp_units_become_seconds(tmp_path, units, scale):
    ticks = np.arange(NA, dtype=np.int64) * 500 + 7
    raw = read_dxchange(_with_timestamps(tmp_path / "scan.h5", ticks, units=units))
    np.testing.assert_allclose(raw.timestamps, ticks * scale)


def test_dxchange_areadetector_defaults_timestamps(tmp_path):
    """APS layout: /defaults/NDArrayTimeStamp for every saved frame, SaveDest says where it went."""
    proj, flats, darks, angles, _ = _arrays()
    path = write_dxchange(tmp_path / "scan.h5", proj, flats, darks, angles)
    dest = np.r_[np.full(2, 1), np.full(3, 2), np.zeros(NA), np.full(3, 2)].astype(np.int32)
    stamps = 1.0e9 + 0.01 * np.arange(dest.size)
    with h5py.File(path, "a") as f:
        f["/defaults/NDArrayTimeStamp"] = stamps
        f["/defaults/SaveDest"] = dest
    raw = read_dxchange(path)
    np.testing.assert_allclose(raw.timestamps, stamps[dest == 0])
    assert raw.attrs["timestamps"].startswith("/defaults/NDArrayTimeStamp")
    with h5py.File(path, "a") as f:  # cannot be matched to the projections: ignored, not fatal
        del f["/defaults/SaveDest"]
    raw = read_dxchange(path)
    assert raw.timestamps is None and raw.attrs["timestamps"] is None


def test_to_seconds_iso8601_strings():
    t = to_seconds(np.array([b"2024-05-01T10:00:00", b"2024-05-01T10:00:01.5", b"2024-05-01T10:01:00"]),
                   None, "x.h5", "t")
    np.testing.assert_allclose(t, [0.0, 1.5, 60.0])
    t = to_seconds(np.array(["2024-05-01T10:00:00+02:00", "2024-05-01T08:00:02Z"], dtype=object), None, "x", "t")
    np.testing.assert_allclose(t, [0.0, 2.0])
    with pytest.raises(ScanError, match="ISO 8601"):
        to_seconds(np.array([b"yesterday", b"today"]), None, "x.h5", "t")


# --------------------------------------------------------------------------------------
# NeXus NXtomo
# --------------------------------------------------------------------------------------
def _nx_layout():
    """Frames: 2 darks, 3 flats, NA projections, 2 flats; keys and a time per frame."""
    proj, flats, darks, angles, _ = _arrays()
    frames = np.concatenate([darks, flats, proj, flats[:2]]).astype(np.uint16)
    keys = np.r_[np.full(2, 2), np.full(3, 1), np.zeros(NA), np.full(2, 1)].astype(np.int8)
    rot = np.r_[np.zeros(5), np.rad2deg(angles), np.full(2, 540.0)]
    times = 10.0 + 0.5 * np.arange(frames.shape[0])
    return frames, keys, rot, times


def make_nxtomo(path: Path, *, times="default", time_name="timestamp", time_units="s", seq=True,
                holder="detector") -> Path:
    frames, keys, rot, t0 = _nx_layout()
    times = t0 if isinstance(times, str) else times
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e["start_time"] = "2024-05-01T10:00:00"  # a scalar NX_DATE_TIME: not a frame time
        det = e.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = frames
        det["image_key"] = keys
        det["count_time"] = np.full(frames.shape[0], 0.1)  # exposure: never taken for times
        if seq:
            det["sequence_number"] = np.arange(frames.shape[0], dtype=np.int32)
        if times is not None:
            g = det if holder == "detector" else e.require_group(holder)
            if holder != "detector":
                g.attrs["NX_class"] = "NXmonitor"
            g[time_name] = times
            if time_units:
                g[time_name].attrs["units"] = time_units
        s = e.create_group("sample")
        s.attrs["NX_class"] = "NXsample"
        s["rotation_angle"] = rot
        s["rotation_angle"].attrs["units"] = "degree"
        d = e.create_group("data")
        d.attrs["NX_class"] = "NXdata"
        d["data"] = h5py.SoftLink("/entry/instrument/detector/data")
    return path


def test_nxtomo_timestamps_and_sequence_for_projections_only(tmp_path):
    frames, keys, _, times = _nx_layout()
    raw = read_nxtomo(make_nxtomo(tmp_path / "scan.nxs"))
    assert raw.projections.shape == (NA, NZ, ND) and raw.flats.shape == (5, NZ, ND)
    np.testing.assert_allclose(raw.timestamps, times[keys == 0])
    np.testing.assert_array_equal(raw.acquisition_index, np.flatnonzero(keys == 0))
    assert raw.attrs["timestamps"] == "/entry/instrument/detector/timestamp"
    assert raw.attrs["acquisition_index"] == "/entry/instrument/detector/sequence_number"
    sub = read_nxtomo(tmp_path / "scan.nxs", slices=(0, 2))
    np.testing.assert_allclose(sub.timestamps, raw.timestamps)


def test_nxtomo_per_projection_times_in_ms_in_a_monitor(tmp_path):
    ms = 1000.0 * np.arange(NA) + 3.0
    raw = read_nxtomo(make_nxtomo(tmp_path / "scan.nxs", times=ms, time_name="time_stamp", time_units="ms",
                                  holder="control"))
    np.testing.assert_allclose(raw.timestamps, ms / 1000.0)
    assert raw.attrs["timestamps"] == "/entry/control/time_stamp"


def test_nxtomo_iso8601_times(tmp_path):
    frames, keys, _, _ = _nx_layout()
    stamps = [f"2024-05-01T10:00:{i:02d}.250".encode() for i in range(frames.shape[0])]
    raw = read_nxtomo(make_nxtomo(tmp_path / "scan.nxs", times=np.array(stamps), time_units=None))
    np.testing.assert_allclose(raw.timestamps, np.flatnonzero(keys == 0).astype(float))


def test_nxtomo_without_times_gives_none(tmp_path):
    raw = read_nxtomo(make_nxtomo(tmp_path / "scan.nxs", times=None, seq=False))
    assert raw.timestamps is None and raw.acquisition_index is None
    assert raw.attrs["timestamps"] is None and raw.attrs["acquisition_index"] is None


def test_nxtomo_frame_time_durations_are_not_times(tmp_path):
    frames, keys, _, times = _nx_layout()
    raw = read_nxtomo(make_nxtomo(tmp_path / "a.nxs", times=np.full(frames.shape[0], 0.12), time_name="frame_time"))
    assert raw.timestamps is None
    raw = read_nxtomo(make_nxtomo(tmp_path / "b.nxs", times=times, time_name="frame_time"))
    np.testing.assert_allclose(raw.timestamps, times[keys == 0])


def test_nxtomo_explicit_timestamps_path(tmp_path):
    path = make_nxtomo(tmp_path / "scan.nxs", time_name="clock")  # not a name the search knows
    assert read_nxtomo(path).timestamps is None
    frames, keys, _, times = _nx_layout()
    raw = read_nxtomo(path, timestamps_path="/entry/instrument/detector/clock")
    np.testing.assert_allclose(raw.timestamps, times[keys == 0])
    with pytest.raises(ScanError, match="/entry/nothing"):
        read_nxtomo(path, timestamps_path="/entry/nothing")
