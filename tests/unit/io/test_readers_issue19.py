"""Issue 19, item 5: real files read right.

- a static scan over a turn with a few projections out of order is not taken for a dynamic
  one; a continuous rotation of more than 1.5 turns is, and the console says so;
- a NeXus file with several entries (fluorescence, absorption, diffraction) is read one
  entry at a time: ``input.entry``, else the first entry a reader understands;
- ``tomodenoise check`` prints the unsorted-angles warning once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from tomodenoise.cli import main
from tomodenoise.config import RunConfig
from tomodenoise.io import RawScan, ScanError, read_scan
from tomodenoise.io.entries import list_entries
from tomodenoise.pipeline.modalities import build_sinograms, window_mode
from tomodenoise.splits import continuous_rotation

NZ, ND = 2, 40


# --- static or dynamic --------------------------------------------------------------------------
def _pencil(path: Path, angles_deg: np.ndarray, seed: int = 0) -> Path:
    """A pencil-beam NeXus scan (data / monitor, no image_key) at ``angles_deg`` in acquisition order."""
    rng = np.random.default_rng(seed)
    na = len(angles_deg)
    x = np.linspace(-1, 1, ND)
    disk = np.clip(1 - (x / 0.6) ** 2, 0, None)  # a centred object, air at both ends
    trans = np.exp(-disk)[None, None] * rng.uniform(0.97, 1.03, (na, NZ, ND))
    mon = rng.uniform(900, 1100, na)
    with h5py.File(path, "w") as f:
        e = f.create_group("entry1")
        e.attrs["NX_class"] = "NXentry"
        d = e.create_group("measurement")
        d["data"] = trans * mon[:, None, None]
        d["theta"] = np.asarray(angles_deg, dtype=np.float64)
        d["theta"].attrs["units"] = "deg"
        d["y"] = x
        d["i0"] = mon
    return path


def _unsorted_357() -> np.ndarray:
    """52 projections over 357 deg; two out of order at the start (7 and 182 before 0): the
    unwrapped angles then seem to go round twice."""
    a = np.linspace(0, 357, 52)
    return a[[1, 26] + [i for i in range(52) if i not in (1, 26)]]


def test_an_unsorted_static_scan_over_357_degrees_reads_static_with_k_4(tmp_path):
    raw = read_scan(_pencil(tmp_path / "pb.nxs", _unsorted_357()))
    cfg = RunConfig()
    assert cfg.time.window == "auto" and cfg.splits.k == 4
    assert window_mode(raw, cfg) is None
    sg = build_sinograms(raw, cfg)
    assert sg.modality == "static" and sg.min_projections == 52 >= cfg.splits.k


def test_check_reads_the_unsorted_scan_as_static_and_warns_once(tmp_path, capsys):
    path = _pencil(tmp_path / "pb.nxs", _unsorted_357())
    assert main(["check", str(path)]) == 0
    cap = capsys.readouterr()
    assert "static scan" in cap.out
    assert (cap.out + cap.err).count("not in order") == 1
    assert "dynamic" not in cap.out + cap.err


def _stream(turns: float, step_deg: float = 7.5) -> np.ndarray:
    return np.deg2rad(np.arange(0, 360 * turns, step_deg) % 360)  # wrapped to one turn, as stored


def _raw(angles: np.ndarray, **kw) -> RawScan:
    proj = np.ones((angles.size, 1, 16), dtype=np.float32)
    return RawScan(proj, None, None, angles, source="stream.h5", **kw)


def test_a_continuous_three_turn_rotation_reads_dynamic_and_says_so_on_the_console(caplog):
    caplog.set_level(logging.INFO, logger="tomodenoise")
    assert window_mode(_raw(_stream(3)), RunConfig()) == "angle"
    lines = [r for r in caplog.records if getattr(r, "console", False) and "dynamic" in r.getMessage()]
    assert len(lines) == 1 and "3.0 turns" in lines[0].getMessage()
    caplog.clear()
    assert window_mode(_raw(_stream(1.2)), RunConfig()) is None  # 1.2 turns: static, nothing said
    assert not [r for r in caplog.records if getattr(r, "console", False)]


def test_the_rotation_is_measured_in_acquisition_order():
    """Three turns stored sorted by angle (the acquisition order in sequence numbers) are dynamic."""
    a = _stream(3)
    order = np.argsort(a, kind="stable")
    raw = _raw(a[order], acquisition_index=order.astype(np.int64))
    assert window_mode(raw, RunConfig()) == "angle"
    assert window_mode(_raw(a[order]), RunConfig()) is None  # without the order: one turn, sorted


def test_continuous_rotation_of_streams():
    deg = np.rad2deg
    assert deg(continuous_rotation(np.deg2rad(_unsorted_357()))) < 400
    assert deg(continuous_rotation(np.deg2rad(np.linspace(0, 357, 52)))) == pytest.approx(357)
    assert deg(continuous_rotation(_stream(3))) == pytest.approx(1072.5)
    assert deg(continuous_rotation(-_stream(3))) == pytest.approx(1072.5)  # rotating backwards
    shuffled = np.random.default_rng(1).permutation(np.linspace(0, 2 * np.pi, 2000, endpoint=False))
    assert continuous_rotation(shuffled) == 0.0
    zigzag = np.deg2rad(np.r_[np.arange(0, 180), np.arange(180, 0, -1), np.arange(0, 180)])
    assert continuous_rotation(zigzag) == 0.0
    assert continuous_rotation(np.zeros(5)) == 0.0 and continuous_rotation(np.zeros(1)) == 0.0


# --- several entries ------------------------------------------------------------------------------
NA = 8


def _nxtomo_entry(f: h5py.File, name: str, *, angles: bool = True, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    flats = rng.uniform(900, 1100, (2, NZ, 16))
    proj = rng.uniform(200, 800, (NA, NZ, 16))
    e = f.create_group(name)
    e.attrs["NX_class"] = "NXentry"
    det = e.create_group("instrument/detector")
    det.attrs["NX_class"] = "NXdetector"
    det["data"] = np.concatenate([flats, proj]).astype(np.float32)
    det["image_key"] = np.r_[[1, 1], np.zeros(NA, int)]
    if angles:
        s = e.create_group("sample")
        s["rotation_angle"] = np.r_[[0.0, 0.0], np.linspace(0, 180, NA, endpoint=False)]
        s["rotation_angle"].attrs["units"] = "degree"


def _fluorescence_entry(f: h5py.File, name: str) -> None:
    """Laid out like a pencil-beam scan (3-D data, theta, monitor, positions), titled fluorescence."""
    e = f.create_group(name)
    e.attrs["NX_class"] = "NXentry"
    e["title"] = "XRF-CT fluorescence map"
    d = e.create_group("measurement")
    d["data"] = np.random.default_rng(5).uniform(1, 9, (NA, NZ, 16))
    d["theta"] = np.linspace(0, 180, NA, endpoint=False)
    d["y"] = np.linspace(-1, 1, 16)
    d["i0"] = np.full(NA, 1000.0)


def _xrdct_entry(f: h5py.File, name: str) -> None:
    e = f.create_group(name)
    e.attrs["NX_class"] = "NXentry"
    g = e.create_group("xrdct")
    g.attrs.update({"NX_class": "NXdata", "signal": "data", "axes": ["q", "z", "rotation_angle", "translation"]})
    g["data"] = np.random.default_rng(6).uniform(0, 1, (3, NZ, NA, 16)).astype(np.float32)
    g["q"] = np.arange(3.0)
    g["z"] = np.arange(NZ)
    g["rotation_angle"] = np.linspace(0, 360, NA, endpoint=False)
    g["rotation_angle"].attrs["units"] = "degrees"
    g["translation"] = np.arange(16.0)


def _three_entries(path: Path, first: str = "fluorescence") -> Path:
    with h5py.File(path, "w") as f:
        if first == "fluorescence":
            _fluorescence_entry(f, "entry1")
        else:  # frames and image keys but no rotation angle: a reader takes it, then fails
            _nxtomo_entry(f, "entry1", angles=False, seed=1)
        _nxtomo_entry(f, "entry2")
        _xrdct_entry(f, "entry3")
    return path


def _console(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "console", False)]


def test_entries_are_listed_with_what_they_hold(tmp_path):
    lines = [e.line for e in list_entries(_three_entries(tmp_path / "multi.nxs"))]
    assert lines == ["entry /entry1: fluorescence, no reader",
                     f"entry /entry2: NXtomo {NA} x {NZ} x 16 (readable)",
                     f"entry /entry3: XRD-CT 3 x {NZ} x {NA} x 16 [q, z, rotation_angle, translation] (readable)"]


def test_the_first_readable_entry_is_read_and_the_console_says_which(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tomodenoise")
    raw = read_scan(_three_entries(tmp_path / "multi.nxs"))
    assert raw.attrs["format"] == "nexus" and raw.attrs["entry"] == "/entry2" and raw.channels is None
    assert raw.projections.shape == (NA, NZ, 16)
    console = _console(caplog)
    assert any("entry /entry1: fluorescence, no reader" in m for m in console)
    assert any("entry /entry2: NXtomo" in m and "(readable)" in m for m in console)
    assert any("reading entry /entry2" in m for m in console)


def test_an_entry_that_fails_to_read_is_skipped_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tomodenoise")
    raw = read_scan(_three_entries(tmp_path / "multi.nxs", first="no_angles"))
    assert raw.attrs["entry"] == "/entry2"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("/entry1" in m and "not read" in m for m in warnings)


@pytest.mark.parametrize("name", ["/entry3", "entry3", "/entry3/"])
def test_input_entry_picks_the_entry(tmp_path, name):
    raw = read_scan(_three_entries(tmp_path / "multi.nxs"), entry=name)
    assert raw.attrs["format"] == "xrdct" and raw.attrs["entry"] == "/entry3"
    assert raw.projections.shape == (3, NA, NZ, 16)


def test_input_entry_with_an_explicit_format_reads_that_entry(tmp_path):
    path = _three_entries(tmp_path / "multi.nxs", first="no_angles")
    raw = read_scan(path, format="nexus", entry="/entry2")
    assert raw.attrs["entry"] == "/entry2"
    with pytest.raises(ScanError, match="rotation angle"):
        read_scan(path, format="nexus", entry="/entry1")


@pytest.mark.parametrize("name, why", [("/entry9", "does not have"), ("/entry1", "no reader")])
def test_a_bad_input_entry_is_one_sentence_listing_the_entries(tmp_path, name, why):
    with pytest.raises(ScanError) as exc:
        read_scan(_three_entries(tmp_path / "multi.nxs"), entry=name)
    msg = str(exc.value)
    assert "\n" not in msg and why in msg and name in msg
    assert all(e in msg for e in ("/entry1", "/entry2", "/entry3"))


def test_the_cli_refuses_a_bad_entry_with_exit_2(tmp_path, capsys):
    path = _three_entries(tmp_path / "multi.nxs")
    assert main(["check", str(path), "--set", "input.entry=/entry9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "/entry2" in err and "Traceback" not in err
    assert main(["check", str(path), "--set", "input.entry=/entry2", "--set", "splits.k=2"]) == 0
    out = capsys.readouterr()
    assert "static scan" in out.out and "reading entry /entry2" in out.err


def test_input_entry_on_a_format_without_entries_is_refused(tmp_path):
    np.save(tmp_path / "s.npy", np.ones((2, 8, 16), dtype=np.float32))
    with pytest.raises(ScanError, match="input.entry"):
        read_scan(tmp_path / "s.npy", entry="/entry1")


def test_a_file_with_one_entry_reads_as_before(tmp_path):
    path = _pencil(tmp_path / "pb.nxs", np.linspace(0, 357, 52))
    assert read_scan(path).attrs["entry"] == "/entry1"
    assert read_scan(path, entry="entry1").attrs["entry"] == "/entry1"
    with pytest.raises(ScanError, match="/entry1"):
        read_scan(path, entry="/entry2")
