import numpy as np
import xarray as xr

from tomodenoise.io.store import ScanStore, z_slabs


def _store(tmp_path, nz=10, na=16, nd=20, zc=4):
    rng = np.random.default_rng(0)
    sino = rng.random((1, 1, nz, na, nd), dtype=np.float32)
    angles = np.linspace(0, np.pi, na, endpoint=False)
    return ScanStore.create(tmp_path / "scan", sino, angles, z_chunk=zc, attrs={"config": {"a": 1}}), sino


def test_create_and_open_with_xarray(tmp_path):
    store, sino = _store(tmp_path)
    ds = xr.open_zarr(store.zarr_path)
    assert ds.sinogram.dims == ("time", "channel", "z", "angle", "det")
    np.testing.assert_array_equal(ds.sinogram.values, sino)
    assert ds.angle.attrs["units"] == "rad"
    attrs = store.attrs
    assert attrs["config"] == {"a": 1}
    assert attrs["provenance"]["versions"]["numpy"] == np.__version__
    assert "git_revision" in attrs["provenance"]


def test_init_array_keeps_attrs_and_chunks_are_z_slabs(tmp_path):
    store, _ = _store(tmp_path)
    store.init_array("recon", {"split": 4, "y": 20, "x": 20})
    assert store.attrs["config"] == {"a": 1}
    arr = store.array("recon")
    assert arr.shape == (4, 1, 1, 10, 20, 20)
    assert arr.chunks == (1, 1, 1, 4, 20, 20)
    ds = store.open()
    assert ds.recon.dims == ("split", "time", "channel", "z", "y", "x")


def test_region_writes_are_idempotent_and_resume_keeps_data(tmp_path):
    store, _ = _store(tmp_path)
    store.init_array("recon", {"split": 2, "y": 20, "x": 20})
    data = np.random.default_rng(1).random((4, 20, 20)).astype(np.float32)
    store.write_region("recon", (1, 0, 0, slice(4, 8)), data)
    chunk_files = sorted(p for p in (store.zarr_path / "recon" / "c").rglob("*") if p.is_file())
    assert len(chunk_files) == 1  # one z-slab of one split is exactly one chunk
    first = chunk_files[0].read_bytes()
    store.write_region("recon", (1, 0, 0, slice(4, 8)), data)
    assert chunk_files[0].read_bytes() == first
    np.testing.assert_array_equal(store.array("recon")[1, 0, 0, 4:8], data)
    # re-initialising an existing array of the same shape keeps what was written
    store.init_array("recon", {"split": 2, "y": 20, "x": 20})
    np.testing.assert_array_equal(store.array("recon")[1, 0, 0, 4:8], data)


def test_stage_marks(tmp_path):
    store, _ = _store(tmp_path)
    assert not store.stage_done("reconstruct")
    store.mark_stage("reconstruct", k=4)
    assert store.stage_done("reconstruct")
    assert store.attrs["stages"]["reconstruct"]["k"] == 4
    store.clear_stage("reconstruct")
    assert not store.stage_done("reconstruct")


def test_z_slabs_cover_everything_once():
    slabs = z_slabs(10, 4)
    assert [(s.start, s.stop) for s in slabs] == [(0, 4), (4, 8), (8, 10)]
