"""Export of a finished store as multiscale OME-Zarr (NGFF 0.4) and ImageJ TIFF."""

import json

import numpy as np
import pytest
import tifffile
import zarr

from tomodenoise import export as ex
from tomodenoise.cli import main
from tomodenoise.io.store import ScanStore


def _fake_store(root, nt=1, nc=1, nz=6, ny=130, nx=133, k=3, z_chunk=4, attrs=None, time=None, denoised=True):
    """A store as `tomodenoise run` leaves it: sinogram, K split reconstructions, denoised volume."""
    rng = np.random.default_rng(0)
    sino = rng.random((nt, nc, nz, 8, nx), dtype=np.float32)
    store = ScanStore.create(root, sino, np.linspace(0, np.pi, 8, endpoint=False), z_chunk=z_chunk,
                             attrs={"scan_id": "foam", **(attrs or {})}, time=time,
                             time_attrs={"units": "s"} if time is not None else None)
    recon = rng.normal(size=(k, nt, nc, nz, ny, nx)).astype(np.float32)
    store.init_array("recon", {"split": k, "y": ny, "x": nx})
    store.write_region("recon", (slice(None),) * 6, recon)
    store.mark_stage("reconstruct")
    den = rng.normal(size=(nt, nc, nz, ny, nx)).astype(np.float32)
    if denoised:
        store.init_array("denoised", {"y": ny, "x": nx})
        store.write_region("denoised", (slice(None),) * 5, den)
        store.mark_stage("denoise")
    return store, den, recon


def _mean2(a, z=False):
    """2x2 (2x2x2) block means written out by hand, odd remainders dropped."""
    ny, nx = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    a = a[..., :ny, :nx]
    out = (a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2]) / 4
    if z:
        nz = out.shape[-3] // 2 * 2
        out = (out[..., 0:nz:2, :, :] + out[..., 1:nz:2, :, :]) / 2
    return out


def test_static_ome_zarr_is_ngff_04_multiscale(tmp_path):
    store, den, recon = _fake_store(tmp_path / "foam")
    store.update_attrs(quality={"status": "below_baseline", "reasons": ["edge gradient kept 0.40 < 0.7"], "remedy": "x"})
    written = ex.export(store.root, ["ome-zarr"])
    out = store.root / "export"
    marked = zarr.open_group(str(out / "foam_denoised.ome.zarr"), mode="r").attrs["tomodenoise"]
    assert marked["quality"]["status"] == "below_baseline"  # the verdict travels with the exported volume
    assert written == [out / "foam_denoised.ome.zarr", out / "foam_fbp.ome.zarr"]
    path = out / "foam_denoised.ome.zarr"
    # Zarr format 2 with "/" chunk keys, as NGFF 0.4 requires
    assert (path / ".zgroup").exists()
    zarray = json.loads((path / "0" / ".zarray").read_text())
    assert zarray["zarr_format"] == 2 and zarray["dimension_separator"] == "/" and zarray["dtype"] == "<f4"
    group = zarr.open_group(str(path), mode="r")
    (ms,) = group.attrs["multiscales"]
    assert ms["version"] == "0.4"
    assert [(a["name"], a["type"]) for a in ms["axes"]] == [("z", "space"), ("y", "space"), ("x", "space")]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]  # 130x133 -> 65x66 -> 32x33 (<= 64)
    scales = [d["coordinateTransformations"][0] for d in ms["datasets"]]
    assert all(s["type"] == "scale" for s in scales)
    assert [s["scale"] for s in scales] == [[1, 1, 1], [1, 2, 2], [1, 4, 4]]  # 6 slices: z kept
    assert [group[str(i)].shape for i in range(3)] == [(6, 130, 133), (6, 65, 66), (6, 32, 33)]
    np.testing.assert_array_equal(group["0"][:], den[0, 0])
    np.testing.assert_allclose(group["1"][:], _mean2(den[0, 0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(group["2"][:], _mean2(_mean2(den[0, 0])), rtol=1e-5, atol=1e-6)
    window = group.attrs["omero"]["channels"][0]["window"]
    assert window["min"] == pytest.approx(den.min()) and window["max"] == pytest.approx(den.max())
    fbp = zarr.open_group(str(out / "foam_fbp.ome.zarr"), mode="r")
    np.testing.assert_allclose(fbp["0"][:], recon.mean(axis=0)[0, 0], rtol=1e-5, atol=1e-6)
    assert not list(out.glob("*.partial"))


def test_dynamic_xrdct_volume_keeps_time_and_channel_and_units(tmp_path, monkeypatch):
    monkeypatch.setattr(ex.ngff, "MIN_SIDE", 8)
    store, den, recon = _fake_store(tmp_path / "dyn", nt=2, nc=3, nz=12, ny=20, nx=20, z_chunk=4,
                                    attrs={"geometry": {"pixel_size": 0.65, "pixel_size_unit": "um"}},
                                    time=np.array([0.0, 0.5]))
    ex.export(store.root, ["ome-zarr", "tiff"], out=tmp_path / "out")
    group = zarr.open_group(str(tmp_path / "out" / "foam_denoised.ome.zarr"), mode="r")
    (ms,) = group.attrs["multiscales"]
    assert [(a["name"], a["type"]) for a in ms["axes"]] == [("t", "time"), ("c", "channel"), ("z", "space"),
                                                             ("y", "space"), ("x", "space")]
    assert ms["axes"][0]["unit"] == "second" and ms["axes"][2]["unit"] == "micrometer"
    # 12x20x20 -> 12x10x10 (fewer slices than the side: z kept) -> 6x5x5 (z halved too)
    assert [group[str(i)].shape[2:] for i in range(3)] == [(12, 20, 20), (12, 10, 10), (6, 5, 5)]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    np.testing.assert_allclose(scales, [[0.5, 1, 0.65, 0.65, 0.65], [0.5, 1, 0.65, 1.3, 1.3],
                                        [0.5, 1, 1.3, 2.6, 2.6]])
    np.testing.assert_array_equal(group["0"][:], den)
    np.testing.assert_allclose(group["1"][:], _mean2(den), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(group["2"][:], _mean2(_mean2(den), z=True), rtol=1e-5, atol=1e-6)
    assert len(group.attrs["omero"]["channels"]) == 3

    with tifffile.TiffFile(tmp_path / "out" / "foam_denoised.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "TZCYX"
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.65)
        assert tif.imagej_metadata["unit"] == "micron"
        np.testing.assert_array_equal(tif.asarray(), den.transpose(0, 2, 1, 3, 4))
    fbp = tifffile.imread(tmp_path / "out" / "foam_fbp.tif")
    np.testing.assert_allclose(fbp, recon.mean(axis=0).transpose(0, 2, 1, 3, 4), rtol=1e-5, atol=1e-6)


def test_static_tiff_reads_back_as_zyx(tmp_path):
    store, den, _ = _fake_store(tmp_path / "foam", nz=5, ny=16, nx=12, z_chunk=2)
    written = ex.export(store.root, ["tiff"])
    assert [p.name for p in written] == ["foam_denoised.tif", "foam_fbp.tif"]
    with tifffile.TiffFile(written[0]) as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX" and len(tif.pages) == 5
        data = tif.asarray()
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, den[0, 0])
    ex.export(store.root, ["tiff"])  # a re-run replaces the files
    np.testing.assert_array_equal(tifffile.imread(written[0]), den[0, 0])
    assert not (store.root / "export" / "foam_denoised.ome.zarr").exists()


def test_not_a_store_or_not_denoised_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a tomodenoise store"):
        ex.export(tmp_path)
    store, _, _ = _fake_store(tmp_path / "half", nz=2, ny=8, nx=8, denoised=False)
    with pytest.raises(ValueError, match="run `tomodenoise run` first"):
        ex.export(store.root)
    with pytest.raises(ValueError, match="unknown export format"):
        ex.export(store.root, ["png"])
    assert not (store.root / "export").exists()


def test_voxel_size_from_attrs():
    assert ex.voxel_size({}) == (1.0, None)
    assert ex.voxel_size({"pixel_size": {"value": 2.5, "units": "nm"}}) == (2.5, "nanometer")
    assert ex.voxel_size({"reader": {"pixel_size": 1.3}}) == (1.3, None)
    assert ex.voxel_size({"geometry": {"pixel_size": -1}}) == (1.0, None)


def test_cli_export(tmp_path, capsys):
    store, den, _ = _fake_store(tmp_path / "foam", nz=3, ny=10, nx=10)
    out = tmp_path / "exported"
    assert main(["export", str(store.root), "--format", "tiff", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["foam_denoised.tif", "foam_fbp.tif"]
    np.testing.assert_array_equal(tifffile.imread(out / "foam_denoised.tif"), den[0, 0])
    assert str(out / "foam_denoised.tif") in capsys.readouterr().out
    assert main(["export", str(store.zarr_path)]) == 0  # the scan.zarr itself names the store too
    assert (store.root / "export" / "foam_denoised.ome.zarr" / ".zattrs").exists()
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty")]) == 2
    assert "not a tomodenoise store" in capsys.readouterr().err


def test_run_exports_after_the_report_when_asked(tmp_path):
    from tomodenoise import pipeline
    from tomodenoise.config import ModelConfig, RunConfig
    from tomodenoise.simulate.scan import simulate_foam_scan

    scan = simulate_foam_scan(tmp_path / "foam.h5", size=24, n_angles=32, n_slices=2, i0=200.0, seed=2,
                              n_spheres=40)["scan"]
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(tmp_path / "out")
    cfg.recon.z_chunk = 2
    cfg.model = ModelConfig(name="msd", params={"depth": 3, "width": 1})
    cfg.train.epochs = 1
    cfg.train.patch_size = 16
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.train.progress = False
    cfg.output.previews = 0
    cfg.output.export = ["tiff", "ome-zarr"]
    store = pipeline.run(cfg, progress=False)
    scan_id = store.attrs["scan_id"]
    den = store.open()["denoised"].values[0, 0]
    np.testing.assert_array_equal(tifffile.imread(store.root / "export" / f"{scan_id}_denoised.tif"), den)
    group = zarr.open_group(str(store.root / "export" / f"{scan_id}_fbp.ome.zarr"), mode="r")
    np.testing.assert_allclose(group["0"][:], store.open()["recon"].values.mean(axis=0)[0, 0], rtol=1e-5, atol=1e-6)
