"""Bad input that used to be accepted silently, and flats/darks kept apart from the scan.

Each case gives a ScanError of one sentence naming the file or dataset, what was expected,
what was found and the remedy, or (unsorted angles) a warning and a fix-up recorded in the
provenance. Every file is tiny and made in ``tmp_path``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from tomodenoise import pipeline
from tomodenoise.config import InputConfig, ModelConfig, PreprocessConfig, RunConfig
from tomodenoise.io import MIN_DET_WIDTH, RawScan, ScanError, read_scan
from tomodenoise.io.dxchange import read_dxchange, write_dxchange
from tomodenoise.io.nexus import read_nxtomo
from tomodenoise.preprocess import preprocess
from tomodenoise.simulate.scan import simulate_foam_scan

NA, NZ, ND = 24, 3, 24


def one_sentence(err: BaseException) -> str:
    """The message, checked to read as one sentence with what was expected and found."""
    msg = str(err)
    assert "\n" not in msg and not re.search(r"[.!?]\s+[A-Z]", msg), msg
    assert "found none found" not in msg and "expected" in msg and "; found " in msg, msg
    return msg


def _arrays(seed: int = 0, nd: int = ND):
    rng = np.random.default_rng(seed)
    flats = rng.uniform(900, 1100, (3, NZ, nd)).astype(np.float32)
    darks = rng.uniform(5, 15, (2, NZ, nd)).astype(np.float32)
    proj = rng.uniform(200, 900, (NA, NZ, nd)).astype(np.float32)
    return proj, flats, darks


def _dx(path: Path, *, theta=None, units: str | None = "degrees", nd: int = ND, flats="default", darks="default",
        proj=None) -> Path:
    p0, f0, d0 = _arrays(nd=nd)
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = p0 if proj is None else proj
        if flats is not None:
            f["/exchange/data_white"] = f0 if isinstance(flats, str) else flats
        if darks is not None:
            f["/exchange/data_dark"] = d0 if isinstance(darks, str) else darks
        f["/exchange/theta"] = np.linspace(0, 180, NA, endpoint=False) if theta is None else theta
        if units:
            f["/exchange/theta"].attrs["units"] = units
    return path


def _disc_raw(angles: np.ndarray, nd: int = 32, centre: float = 15.5) -> RawScan:
    """Raw counts of a small off-centre disc, whose -log is known."""
    cols = np.arange(nd) - centre
    x0, r = 4.0, 6.0
    s = x0 * np.cos(angles)[:, None]
    chord = 2 * np.sqrt(np.clip(r**2 - (cols[None, :] - s) ** 2, 0, None)) * 0.05
    lines = np.repeat(chord[:, None, :], 2, axis=1)  # (angle, z, det)
    flat, dark = 1000.0, 10.0
    proj = dark + (flat - dark) * np.exp(-lines)
    return RawScan(proj, np.full((2, 2, nd), flat), np.full((1, 2, nd), dark), angles, source="disc.h5")


# --------------------------------------------------------------------------------------
# angles
# --------------------------------------------------------------------------------------
def test_angles_all_the_same_are_refused(tmp_path):
    with pytest.raises(ScanError) as exc:
        read_scan(_dx(tmp_path / "same.h5", theta=np.full(NA, 30.0)))
    msg = one_sentence(exc.value)
    assert exc.value.dataset == "/exchange/theta" and "same.h5" in msg
    assert "span of 0 deg" in msg and f"all {NA} angles equal 30" in msg and "input.angles_file" in msg
    # a RawScan built by hand is checked by the preprocessing too
    raw = _disc_raw(np.full(20, 0.3))
    with pytest.raises(ScanError, match="span of 0 deg"):
        preprocess(raw, center=15.5)


def test_radians_read_as_degrees_are_refused_with_the_unit_to_set(tmp_path):
    rad = np.linspace(0, np.pi, NA, endpoint=False)
    path = _dx(tmp_path / "rad.h5", theta=rad, units=None)
    with pytest.raises(ScanError) as exc:
        read_scan(path)
    msg = one_sentence(exc.value)
    assert exc.value.dataset == "/exchange/theta" and "rad.h5" in msg
    assert "looks like radians" in msg and "input.angles_unit: rad" in msg
    np.testing.assert_allclose(read_scan(path, angles_unit="rad").angles, rad)
    # a units attribute that says degrees wins over angles_unit: the remedy is an angles file
    path = _dx(tmp_path / "attr.h5", theta=rad, units="degrees")
    with pytest.raises(ScanError) as exc:
        read_scan(path, angles_unit="rad")
    assert "units attribute says degrees" in one_sentence(exc.value) and "input.angles_file" in str(exc.value)
    np.savetxt(tmp_path / "rad.txt", rad)
    np.testing.assert_allclose(read_scan(path, angles_file=tmp_path / "rad.txt", angles_unit="rad").angles, rad)
    # an angles file of radians read as degrees, named in the message
    with pytest.raises(ScanError, match=r"rad\.txt: file: .*looks like radians"):
        read_scan(_dx(tmp_path / "ok.h5"), angles_file=tmp_path / "rad.txt")
    # the limit is about 2 pi "degrees": a span of 7 degrees is taken as degrees
    assert read_scan(_dx(tmp_path / "seven.h5", theta=np.linspace(0, 7, NA))).angles.max() == pytest.approx(
        np.deg2rad(7))


def test_unsorted_angles_are_sorted_with_a_warning(caplog):
    rng = np.random.default_rng(4)
    angles = np.linspace(0, np.pi, 40, endpoint=False)
    order = rng.permutation(40)
    sorted_pre = preprocess(_disc_raw(angles), center=15.5)
    assert "projection_order" not in sorted_pre.info and sorted_pre.info["warnings"] == []
    with caplog.at_level(logging.WARNING, logger="tomodenoise"):
        pre = preprocess(_disc_raw(angles[order]), center=15.5)
    np.testing.assert_array_equal(pre.angles, angles)
    np.testing.assert_allclose(pre.sinogram, sorted_pre.sinogram, atol=1e-6)
    assert pre.info["projection_order"] == np.argsort(order).tolist()
    assert pre.info["angles_sorted"] is True
    assert len(pre.info["warnings"]) == 1 and "sorted by angle" in pre.info["warnings"][0]
    recs = [r for r in caplog.records if r.name.startswith("tomodenoise.") and "sorted by angle" in r.getMessage()]
    assert len(recs) == 1 and recs[0].levelno == logging.WARNING
    # monotonic angles (also decreasing ones) are kept in acquisition order, quietly
    down = preprocess(_disc_raw(angles[::-1].copy()), center=15.5)
    np.testing.assert_array_equal(down.angles, angles[::-1])
    assert "projection_order" not in down.info and down.info["warnings"] == []
    # sort_angles=False keeps the order (time-resolved data)
    kept = preprocess(_disc_raw(angles[order]), center=15.5, sort_angles=False)
    np.testing.assert_array_equal(kept.angles, angles[order])


def test_ingest_records_the_acquisition_order_of_sorted_projections(tmp_path):
    sim = simulate_foam_scan(tmp_path / "foam.h5", size=24, n_angles=32, n_slices=2, i0=200.0, seed=2,
                             n_spheres=40)
    raw = read_dxchange(sim["scan"])
    perm = np.random.default_rng(0).permutation(32)
    shuffled = write_dxchange(tmp_path / "shuffled.h5", raw.projections[perm], raw.flats, raw.darks,
                              raw.angles[perm])

    def ingest(path: Path, name: str):
        cfg = RunConfig(model=ModelConfig(name="msd", params={"depth": 3, "width": 1}))
        cfg.input.path, cfg.input.scan_id, cfg.output.root = str(path), name, str(tmp_path / "out")
        cfg.preprocess.center = 11.5
        return pipeline.ingest(cfg)

    a, b = ingest(sim["scan"], "a"), ingest(shuffled, "b")
    np.testing.assert_allclose(b.angles, a.angles)
    np.testing.assert_allclose(b.array("sinogram")[:], a.array("sinogram")[:], atol=1e-6)
    attrs = b.attrs["preprocess"]
    assert attrs["projection_order"] == np.argsort(perm).tolist()  # acquisition index of each stored one
    assert any("sorted by angle" in w for w in attrs["warnings"])
    assert "projection_order" not in a.attrs["preprocess"]
    assert b.attrs["reader"]["format"] == "dxchange" and b.attrs["reader"]["n_flats"] == raw.flats.shape[0]


# --------------------------------------------------------------------------------------
# detector width
# --------------------------------------------------------------------------------------
def test_a_detector_too_narrow_is_refused(tmp_path):
    with pytest.raises(ScanError) as exc:
        read_scan(_dx(tmp_path / "narrow.h5", nd=4))
    msg = one_sentence(exc.value)
    assert exc.value.dataset == "/exchange/data" and "narrow.h5" in msg
    assert f"at least {MIN_DET_WIDTH} pixels wide" in msg and "found 4 pixels" in msg and "(angle, z, det)" in msg
    # a sinogram stack saved with its axes swapped: (z, det, angle) with 40 angles and 8 columns
    np.save(tmp_path / "swapped.npy", np.zeros((2, 40, 8), np.float32))
    np.savetxt(tmp_path / "a.txt", np.linspace(0, 180, 40, endpoint=False))
    with pytest.raises(ScanError, match="at least 16 pixels"):
        read_scan(tmp_path / "swapped.npy", angles_file=tmp_path / "a.txt")
    # the least width accepted, and the preprocessing checks a hand-built scan as well
    assert read_scan(_dx(tmp_path / "ok.h5", nd=MIN_DET_WIDTH)).n_det == MIN_DET_WIDTH
    with pytest.raises(ScanError, match="found 8 pixels"):
        preprocess(_disc_raw(np.linspace(0, np.pi, 20), nd=8, centre=3.5), center=3.5)


# --------------------------------------------------------------------------------------
# zero or negative transmission
# --------------------------------------------------------------------------------------
def test_too_many_clamped_values_fail_with_the_probable_cause():
    angles = np.linspace(0, np.pi, 40, endpoint=False)
    raw = _disc_raw(angles)
    raw.projections[:2, :, :] = 5.0  # below the dark (10) on 2 of 40 projections: 5 %
    with pytest.raises(ScanError) as exc:
        preprocess(raw, center=15.5)
    msg = one_sentence(exc.value)
    assert exc.value.path == "disc.h5" and exc.value.dataset == "projections"
    assert "at most 1 %" in msg and "found 5 % (128 of 2560)" in msg
    assert "darks larger than" in msg and "preprocess.max_clamped_fraction" in msg
    pre = preprocess(raw, center=15.5, max_clamped_fraction=0.05)  # the limit raised: accepted, counted
    assert pre.n_clamped == 128 and pre.info["clamped_fraction"] == pytest.approx(0.05)
    # flats and darks swapped (a RawScan built by hand; the readers refuse such flats already)
    swapped = _disc_raw(angles)
    swapped.flats, swapped.darks = swapped.darks, swapped.flats
    with pytest.raises(ScanError) as exc:  # the guarded division would hide them: transmission 1 everywhere
        preprocess(swapped, center=15.5)
    assert exc.value.dataset == "flats" and "swapped" in one_sentence(exc.value)
    # no flats: transmission values given directly, but a quarter of them negative (-log data?)
    trans = np.exp(-_disc_raw(angles).projections / 1000.0) - 0.5
    with pytest.raises(ScanError) as exc:
        preprocess(RawScan(trans, None, None, angles, source="t.npy"), center=15.5)
    assert "line integrals" in one_sentence(exc.value) and "input.flats" in str(exc.value)
    # a handful of clamped values (noise) stays below the default limit
    raw = _disc_raw(angles)
    raw.projections[0, 0, :3] = 0.0
    assert preprocess(raw, center=15.5).n_clamped == 3


def test_max_clamped_fraction_is_a_config_field_passed_by_ingest(tmp_path):
    assert PreprocessConfig().max_clamped_fraction == 0.01
    with pytest.raises(ValueError):
        PreprocessConfig(max_clamped_fraction=1.5)
    proj, flats, darks = _arrays()
    proj[:3] = 1.0  # below the darks on 3 of 24 projections: 12.5 %
    path = _dx(tmp_path / "dim.h5", proj=proj)
    cfg = RunConfig(model=ModelConfig(name="msd", params={"depth": 3, "width": 1}))
    cfg.input.path, cfg.output.root, cfg.preprocess.center = str(path), str(tmp_path / "out"), 11.5
    with pytest.raises(ScanError, match="12.5 %"):
        pipeline.ingest(cfg)
    cfg.preprocess.max_clamped_fraction = 0.2
    assert pipeline.ingest(cfg).attrs["preprocess"]["max_clamped_fraction"] == 0.2


# --------------------------------------------------------------------------------------
# flats and darks kept apart from the projections
# --------------------------------------------------------------------------------------
def _diamond_tiff(root: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """Diamond-like TIFF layout: projections/, flats/ and darks/ side by side."""
    proj, flats, darks = (a.astype(np.uint16) for a in _arrays(1))
    for name, stack in (("projections", proj), ("flats", flats), ("darks", darks)):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(stack):
            tifffile.imwrite(root / name / f"{i:05d}.tif", img)
    np.savetxt(root / "projections" / "angles.txt", np.linspace(0, 180, NA, endpoint=False))
    return root / "projections", proj, flats, darks


def test_tiff_scan_with_flats_and_darks_in_folders_beside_it(tmp_path):
    folder, proj, flats, darks = _diamond_tiff(tmp_path / "scan")
    raw = read_scan(folder)
    assert raw.flats is None
    with pytest.raises(ScanError) as exc:  # what this scan gave before input.flats existed
        preprocess(raw, center=11.5)
    assert "input.flats" in one_sentence(exc.value)
    raw = read_scan(folder, flats=tmp_path / "scan" / "flats", darks=str(tmp_path / "scan" / "darks" / "*.tif"))
    np.testing.assert_array_equal(raw.flats, flats)
    np.testing.assert_array_equal(raw.darks, darks)
    assert raw.attrs["n_flats"] == 3 and "flats" in raw.attrs["flats_source"]
    sub = read_scan(folder, flats=tmp_path / "scan" / "flats", darks=tmp_path / "scan" / "darks", slices=(1, 3))
    np.testing.assert_array_equal(sub.flats, flats[:, 1:3])
    assert np.isfinite(preprocess(raw, center=11.5).sinogram).all()
    # a multi-page TIFF of projections with a multi-page TIFF of flats
    tifffile.imwrite(tmp_path / "proj.tif", proj)
    tifffile.imwrite(tmp_path / "flats.tif", flats, photometric="minisblack")  # 3 pages, not RGB
    raw = read_scan(tmp_path / "proj.tif", angles_file=folder / "angles.txt", flats=tmp_path / "flats.tif")
    np.testing.assert_array_equal(raw.flats, flats)
    assert raw.darks is None and raw.attrs["flats_source"] == str(tmp_path / "flats.tif")


def test_ingest_reads_input_flats_and_darks(tmp_path):
    folder, _, flats, _ = _diamond_tiff(tmp_path / "scan")
    cfg = RunConfig(input=InputConfig(path=str(folder), flats=str(tmp_path / "scan" / "flats"),
                                      darks=str(tmp_path / "scan" / "darks")),
                    model=ModelConfig(name="msd", params={"depth": 3, "width": 1}))
    cfg.output.root, cfg.preprocess.center = str(tmp_path / "out"), 11.5
    store = pipeline.ingest(cfg)
    reader = store.attrs["reader"]
    assert reader["n_flats"] == 3 and str(tmp_path / "scan" / "flats") in reader["flats_source"]
    assert reader["n_darks"] == 2 and store.attrs["preprocess"]["flat_dark"] == "mean flat and dark"


def test_hdf5_and_npy_fields_for_every_reader(tmp_path):
    proj, flats, darks = _arrays(2)
    angles = np.linspace(0, 180, NA, endpoint=False)
    # a Data Exchange file holding only flats in /exchange/data
    with h5py.File(tmp_path / "flats_dx.h5", "w") as f:
        f["/exchange/data"] = flats * 1.1
    # a NeXus file of 2 darks (key 2) and 3 flats (key 1): given as darks, the key-2 frames are read
    with h5py.File(tmp_path / "refs.nxs", "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        d = e.create_group("instrument/detector")
        d.attrs["NX_class"] = "NXdetector"
        d["data"] = np.concatenate([darks * 0.5, flats])
        d["image_key"] = np.array([2, 2, 1, 1, 1])
    np.save(tmp_path / "flats.npy", flats * 0.9)

    # Data Exchange scan: its own fields replaced
    scan = _dx(tmp_path / "scan.h5")
    raw = read_scan(scan, flats=tmp_path / "flats_dx.h5", darks=tmp_path / "refs.nxs")
    np.testing.assert_allclose(raw.flats, flats * 1.1)
    np.testing.assert_allclose(raw.darks, darks * 0.5)
    assert raw.attrs["flats_source"].endswith("flats_dx.h5:/exchange/data")
    assert raw.attrs["darks_source"].endswith("refs.nxs:/entry/instrument/detector/data")
    # given as flats, the same NeXus file gives its key-1 frames, and rows follow slices
    raw = read_dxchange(scan, flats=tmp_path / "refs.nxs", slices=(0, 2))
    np.testing.assert_allclose(raw.flats, flats[:, 0:2])
    # NeXus scan with flats from a .npy file
    with h5py.File(tmp_path / "scan.nxs", "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        d = e.create_group("instrument/detector")
        d.attrs["NX_class"] = "NXdetector"
        d["data"] = np.concatenate([flats[:1], proj])
        d["image_key"] = np.array([1] + [0] * NA)
        f["/entry/sample/rotation_angle"] = np.r_[0.0, angles]
    raw = read_nxtomo(tmp_path / "scan.nxs", flats=tmp_path / "flats.npy")
    np.testing.assert_allclose(raw.flats, flats * 0.9)
    assert raw.darks is None
    # a bare .npy projection stack with flats and darks: read as raw projections
    np.save(tmp_path / "proj.npy", proj)
    np.save(tmp_path / "darks.npy", darks)
    np.savetxt(tmp_path / "angles.txt", angles)
    raw = read_scan(tmp_path / "proj.npy", angles_file=tmp_path / "angles.txt", flats=tmp_path / "flats.npy",
                    darks=tmp_path / "darks.npy")
    assert raw.preprocessed is False
    np.testing.assert_array_equal(raw.projections, proj)
    np.testing.assert_allclose(raw.darks, darks)
    # an .npz of projections with its own flats: input.flats replaces them, its darks stay
    np.savez(tmp_path / "p.npz", projections=proj, flats=flats, darks=darks, theta=angles)
    raw = read_scan(tmp_path / "p.npz", flats=tmp_path / "flats.npy", slices=(1, 2))
    np.testing.assert_allclose(raw.flats, flats[:, 1:2] * 0.9)
    np.testing.assert_allclose(raw.darks, darks[:, 1:2])
    assert raw.attrs["darks_source"] == "darks"


def test_a_shared_reference_folder_is_split_by_name(tmp_path):
    folder, _, flats, darks = _diamond_tiff(tmp_path / "scan")
    refs = tmp_path / "refs"
    refs.mkdir()
    for i, img in enumerate(flats):
        tifffile.imwrite(refs / f"flat_{i}.tif", img)
    for i, img in enumerate(darks):
        tifffile.imwrite(refs / f"dark_{i}.tif", img)
    raw = read_scan(folder, flats=refs, darks=refs)
    np.testing.assert_array_equal(raw.flats, flats)
    np.testing.assert_array_equal(raw.darks, darks)


def test_bad_flats_and_darks_name_the_file(tmp_path):
    scan = _dx(tmp_path / "scan.h5")
    _, flats, _ = _arrays()
    np.save(tmp_path / "narrow.npy", flats[:, :, :-2])
    with pytest.raises(ScanError) as exc:
        read_scan(scan, flats=tmp_path / "narrow.npy")
    msg = one_sentence(exc.value)
    assert "narrow.npy" in msg and f"(z, det) = ({NZ}, {ND})" in msg and f"shape (3, {NZ}, {ND - 2})" in msg
    with pytest.raises(ScanError) as exc:
        read_scan(scan, darks=tmp_path / "missing")
    assert "missing" in one_sentence(exc.value) and "input.darks" in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScanError, match="dark field files"):
        read_scan(scan, darks=tmp_path / "empty")
    with pytest.raises(ScanError, match="matching the glob"):
        read_scan(scan, flats=str(tmp_path / "nothing_*.tif"))
    (tmp_path / "flats.txt").write_text("1 2 3")
    with pytest.raises(ScanError, match="supported format"):
        read_scan(scan, flats=tmp_path / "flats.txt")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = flats
        f["b"] = flats
    with pytest.raises(ScanError, match="2 3-D datasets: /a, /b"):
        read_scan(scan, flats=tmp_path / "two.h5")
    # flats given for a sinogram (line integrals already) are refused
    np.save(tmp_path / "sino.npz", np.zeros(1))
    np.savez(tmp_path / "sino.npz", sinogram=np.zeros((2, 8, ND), np.float32),
             angles=np.linspace(0, 180, 8, endpoint=False))
    with pytest.raises(ScanError, match="leave input.flats and input.darks empty"):
        read_scan(tmp_path / "sino.npz", flats=tmp_path / "narrow.npy")
    # the flats read are checked like the scan's own: brighter than the darks
    np.save(tmp_path / "dim.npy", np.full((2, NZ, ND), 5.0, np.float32))
    with pytest.raises(ScanError, match="brighter"):
        read_scan(scan, flats=tmp_path / "dim.npy")


def test_nexus_messages_read_as_one_sentence(tmp_path):
    with h5py.File(tmp_path / "nokey.nxs", "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e["data/data"] = np.zeros((4, NZ, ND))
    with pytest.raises(ScanError) as exc:
        read_scan(tmp_path / "nokey.nxs")
    msg = one_sentence(exc.value)
    assert msg.count("found") == 1 and "image_key_path" in msg
